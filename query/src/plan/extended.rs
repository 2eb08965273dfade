//! Prometheus 3's `anchored` and `smoothed` selectors (the experimental
//! "extended range selectors"): a window that also sees the sample before
//! it (anchored), or values interpolated at its edges (smoothed).
//!
//! Both read past the plain window by the lookback delta: anchored back,
//! smoothed back and forward. The window's samples then reach the same
//! SQL as every range function (`_vals`, `_ts`, `_n`, the window end `te`
//! and range `R`), with the boundaries at `te - R` and `te`.

use promql_parser::parser::VectorSelector;

use super::{PlanError, functions::RangeFn};

/// How a selector reaches past its plain window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeModifier {
    Plain,
    /// The last sample at or before the window start anchors the window.
    Anchored,
    /// Values are interpolated at the window's edges.
    Smoothed,
}

/// The functions Prometheus allows on an anchored range (sorted, as its
/// error message lists them).
const ANCHORED_FUNCTIONS: [&str; 5] = ["changes", "delta", "increase", "rate", "resets"];
/// The functions Prometheus allows on a smoothed range.
const SMOOTHED_FUNCTIONS: [&str; 3] = ["delta", "increase", "rate"];

impl RangeModifier {
    pub(crate) fn of(vs: &VectorSelector) -> Self {
        if vs.anchored {
            RangeModifier::Anchored
        } else if vs.smoothed {
            RangeModifier::Smoothed
        } else {
            RangeModifier::Plain
        }
    }

    /// How far before the plain window's start samples are read.
    pub(crate) fn before(self, lookback: i64) -> i64 {
        match self {
            RangeModifier::Plain => 0,
            RangeModifier::Anchored | RangeModifier::Smoothed => lookback,
        }
    }

    /// How far after the window's end samples are read.
    pub(crate) fn after(self, lookback: i64) -> i64 {
        match self {
            RangeModifier::Smoothed => lookback,
            RangeModifier::Plain | RangeModifier::Anchored => 0,
        }
    }

    /// Prometheus's error when function `name` may not take a range with
    /// this modifier.
    pub(crate) fn allows(self, name: &str) -> Result<(), PlanError> {
        let (word, allowed): (&str, &[&str]) = match self {
            RangeModifier::Plain => return Ok(()),
            RangeModifier::Anchored => ("anchored", &ANCHORED_FUNCTIONS),
            RangeModifier::Smoothed => ("smoothed", &SMOOTHED_FUNCTIONS),
        };
        if allowed.contains(&name) {
            return Ok(());
        }
        Err(PlanError::BadData(format!(
            "{word} modifier can only be used with: {} - not with {name}",
            allowed.join(", ")
        )))
    }

    /// The range function `name` over such a window (one [`Self::allows`];
    /// the planner checks that first, for every function).
    pub(crate) fn range_fn(self, name: &str) -> Result<RangeFn, PlanError> {
        let smoothed = self == RangeModifier::Smoothed;
        let value = match name {
            "rate" => boundary_difference(smoothed, true, true),
            "increase" => boundary_difference(smoothed, true, false),
            "delta" => boundary_difference(smoothed, false, false),
            // Anchored only: the anchor sample is the first compared.
            "changes" => {
                "toFloat64(arrayCount((x1, x2) -> NOT (x1 = x2 OR (isNaN(x1) AND isNaN(x2))), \
                 arrayPopBack(_av), arrayPopFront(_av)))"
                    .to_string()
            }
            "resets" => "toFloat64(arrayCount((x1, x2) -> x2 < x1, \
                 arrayPopBack(_av), arrayPopFront(_av)))"
                .to_string(),
            other => {
                return Err(PlanError::Unsupported(format!(
                    "{other}() over an anchored or smoothed range is not supported"
                )));
            }
        };
        let (value, present) = match name {
            "changes" | "resets" => (
                // `_av`: the anchor (the last sample at or before the
                // start) and every sample after the start.
                format!("arrayMap(_av -> {value}, [arraySlice(_vals, {ANCHOR})])[1]"),
                // Nothing to measure without a sample after the start.
                "_ts[_n] > te - R".to_string(),
            ),
            _ => (value, boundaries_present(smoothed)),
        };
        Ok(RangeFn {
            value,
            min_samples: 1,
            keeps_name: false,
            aggregate: None,
            present: Some(present),
        })
    }
}

/// The 1-based index of the window's first sample to use: the last sample
/// at or before the start `te - R` (not counting the window's last), else
/// the first.
const ANCHOR: &str = "greatest(1, arrayCount(x -> x <= te - R, arrayPopBack(_ts)))";

/// The 1-based index of the window's last sample to use: smoothed, the
/// first sample at or after the end (not counting the last), else the last.
fn last_index(smoothed: bool) -> String {
    if smoothed {
        "if(arrayFirstIndex(x -> x >= te, arrayPopBack(_ts)) = 0, _n, \
            arrayFirstIndex(x -> x >= te, arrayPopBack(_ts)))"
            .to_string()
    } else {
        "_n".to_string()
    }
}

/// Whether the window holds what a difference needs: a sample after the
/// start and, smoothed, one at or before the end.
fn boundaries_present(smoothed: bool) -> String {
    let after_start = format!("_ts[{}] > te - R", last_index(smoothed));
    if smoothed {
        format!("{after_start} AND _ts[{ANCHOR}] <= te")
    } else {
        after_start
    }
}

/// The value at time `t` on the line between samples `a` and `b` (1-based
/// SQL indexes); a counter that reset between them starts again from 0.
fn interpolate(a: &str, b: &str, t: &str, counter: bool) -> String {
    let y1 = if counter {
        format!("if(_vals[{b}] < _vals[{a}], 0, _vals[{a}])")
    } else {
        format!("_vals[{a}]")
    };
    format!("({y1} + (_vals[{b}] - {y1}) * ({t} - _ts[{a}]) / (_ts[{b}] - _ts[{a}]))")
}

/// The values at the window's two boundaries, over the indexes `_f` and
/// `_l` (see [`ANCHOR`] and [`last_index`]): the anchor's and the last
/// sample's, or, smoothed, values interpolated at the start and the end.
fn boundaries(smoothed: bool, counter: bool) -> (String, String) {
    if smoothed {
        (
            format!(
                "if(_ts[_f] < te - R, {}, _vals[_f])",
                interpolate("_f", "_f + 1", "te - R", counter)
            ),
            format!(
                "if(_l > 1 AND _ts[_l] > te, {}, _vals[_l])",
                interpolate("_l - 1", "_l", "te", counter)
            ),
        )
    } else {
        ("_vals[_f]".to_string(), "_vals[_l]".to_string())
    }
}

/// `f` of the samples strictly inside the window (between the boundary
/// samples), bound to `_in`.
fn with_inner(f: &str) -> String {
    format!(
        "arrayMap(_in -> {f}, \
           [arrayMap((_i0, _i1) -> if(_i1 >= _i0, arraySlice(_vals, _i0, _i1 - _i0 + 1), []), \
             [_f + (_ts[_f] <= te - R)], [_l - (_ts[_l] >= te)])[1]])[1]"
    )
}

/// `body` with the boundary indexes `_f`, `_l` and values `_lv`, `_rv`
/// bound.
fn with_boundaries(smoothed: bool, counter: bool, body: &str) -> String {
    let (left, right) = boundaries(smoothed, counter);
    format!(
        "arrayMap((_f, _l) -> arrayMap((_lv, _rv) -> {body}, [{left}], [{right}])[1], \
           [{ANCHOR}], [{last}])[1]",
        last = last_index(smoothed),
    )
}

/// `rate`, `increase` or `delta` as the difference of the values at the
/// window's two boundaries (Prometheus's `extendedRate`). A counter adds
/// back every reset strictly inside.
fn boundary_difference(smoothed: bool, counter: bool, rate: bool) -> String {
    let correction = if counter {
        format!(
            "+ {}",
            with_inner(
                "arrayMap(_s -> arraySum(arrayMap((x1, x2) -> if(x2 < x1, x1, 0), \
                   arrayPopBack(_s), arrayPopFront(_s))), [arrayConcat([_lv], _in, [_rv])])[1]"
            )
        )
    } else {
        String::new()
    };
    let per_second = if rate { " / (R / 1000)" } else { "" };
    with_boundaries(
        smoothed,
        counter,
        &format!("(_rv - _lv {correction}){per_second}"),
    )
}

/// An anchored or smoothed range vector as a query's result (Prometheus's
/// `extendFloats`): the boundary values at the window's start and end,
/// with the samples strictly inside between them, as an array of `(t, v)`;
/// and the condition for a series to have any.
pub(crate) fn boundary_points(modifier: RangeModifier) -> (String, String) {
    let smoothed = modifier == RangeModifier::Smoothed;
    let points = with_boundaries(
        smoothed,
        false,
        &with_inner(
            "arrayConcat([(te - R, _lv)], \
               arrayZip(arraySlice(_ts, _f + (_ts[_f] <= te - R), length(_in)), _in), [(te, _rv)])",
        ),
    );
    (points, format!("_ts[{}] > te - R", last_index(smoothed)))
}

/// A smoothed instant selector's value at `te`: the sample there, else
/// the line between the samples around it, else the last sample before
/// (Prometheus's `smoothSeries` for floats). The window reads a lookback
/// delta either side.
pub(crate) fn smoothed_instant() -> RangeFn {
    RangeFn {
        value: "arrayMap(_i -> multiIf(_i = 0, _vals[_n], _ts[_i] = te, _vals[_i], \
                  _vals[_i - 1] + (_vals[_i] - _vals[_i - 1]) * (te - _ts[_i - 1]) / (_ts[_i] - _ts[_i - 1])), \
                [arrayFirstIndex(x -> x >= te, _ts)])[1]"
            .to_string(),
        min_samples: 1,
        keeps_name: true,
        aggregate: None,
        // No sample at or before the time: nothing to carry or interpolate.
        present: Some("_ts[1] <= te".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Grid, PlanError, PlanSettings, plan};

    fn instant() -> Grid {
        Grid::instant(1_700_000_000_000)
    }

    #[test]
    fn functions_outside_prometheus_lists_are_refused_with_its_message() {
        let err = |q: &str| plan(q, instant(), &PlanSettings::default()).err();
        assert_eq!(
            err("deriv(x[3m] anchored)"),
            Some(PlanError::BadData(
                "anchored modifier can only be used with: changes, delta, increase, rate, resets - not with deriv"
                    .into()
            ))
        );
        assert_eq!(
            err("resets(x[3m] smoothed)"),
            Some(PlanError::BadData(
                "smoothed modifier can only be used with: delta, increase, rate - not with resets"
                    .into()
            ))
        );
        assert_eq!(err("resets(x[3m] anchored)"), None);
    }

    #[test]
    fn windows_read_a_lookback_delta_past_their_range() {
        // The samples a query reads: (lo, hi] in ms.
        let reads = |q: &str, lo: i64, hi: i64| {
            let sql = plan(q, instant(), &PlanSettings::default()).unwrap().sql;
            assert!(sql.contains(&format!("timestamp_ms > {lo}")), "{q}: {sql}");
            assert!(sql.contains(&format!("timestamp_ms <= {hi}")), "{q}: {sql}");
        };
        // Plain: (t - 3m, t]; anchored: 5 more minutes back; smoothed:
        // also 5 minutes forward.
        reads("rate(x[3m])", 1_699_999_820_000, 1_700_000_000_000);
        reads("rate(x[3m] anchored)", 1_699_999_520_000, 1_700_000_000_000);
        reads("rate(x[3m] smoothed)", 1_699_999_520_000, 1_700_000_300_000);
        reads("x smoothed", 1_699_999_700_000, 1_700_000_300_000);
    }
}
