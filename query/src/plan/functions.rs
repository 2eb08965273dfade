//! PromQL functions: range functions over windows, per-sample math, label
//! manipulation, and the functions that make or read scalars.

use promql_parser::parser::{Call, Expr};

use super::extended::RangeModifier;
use super::native_ops::FLOAT_COLUMNS;
use super::stages::let_in;
use super::{Grid, Matrix, Node, PlanError, Planner, Scalar, Source, bad, label_value, lit};

/// How a range function's value is computed from a window (`_vals`,
/// `_ts`, `_n`, the step `t` and the range `R` in ms are in scope).
pub(crate) struct RangeFn {
    /// The value; may use the extra arguments as `p1`, `p2`.
    pub value: String,
    /// Least samples needed for a result.
    pub min_samples: usize,
    /// A further condition on the window for a result, if any.
    pub present: Option<String>,
    /// Whether the result keeps the metric name.
    pub keeps_name: bool,
    /// The same value from one ClickHouse aggregate over each window,
    /// where that is exactly Prometheus's: series-major plans then copy
    /// no window out of the series' arrays.
    pub aggregate: Option<WindowAggregate>,
}

impl RangeFn {
    /// The condition on a window for a result.
    pub(crate) fn present(&self) -> String {
        let least = format!("_n >= {}", self.min_samples);
        match &self.present {
            Some(more) => format!("{least} AND {more}"),
            None => least,
        }
    }
}

/// An aggregate `arrayReduceInRanges` computes over every window of a
/// series' sample arrays `ts` and `sv`.
pub(crate) struct WindowAggregate {
    /// The aggregate function, with its combinators.
    pub function: &'static str,
    /// Its argument arrays, over `ts` and `sv`.
    pub arguments: &'static str,
    /// The value from the aggregate's result `_agg` (and `_n`).
    pub value: &'static str,
}

/// `quantile` as Prometheus computes it over an ascending array `sorted`.
pub(crate) fn quantile_sql(phi: &str, sorted: &str) -> String {
    format!(
        "multiIf(isNaN({phi}), nan, {phi} < 0, -inf, {phi} > 1, inf, length({sorted}) = 0, nan, \
         arrayElement({sorted}, toUInt64(greatest(0, floor({phi} * (length({sorted}) - 1)))) + 1) \
           * (1 - ({phi} * (length({sorted}) - 1) - floor({phi} * (length({sorted}) - 1)))) \
         + arrayElement({sorted}, toUInt64(least(toFloat64(length({sorted})) - 1, greatest(0, floor({phi} * (length({sorted}) - 1))) + 1)) + 1) \
           * ({phi} * (length({sorted}) - 1) - floor({phi} * (length({sorted}) - 1))))"
    )
}

/// The rounding errors Neumaier's step (Prometheus's `kahanSumInc`) adds
/// to the compensation, one per value of `values` given their running sums
/// `sums` (`arrayCumSum` adds in order, so these are the sums Prometheus's
/// loop sees).
fn kahan_errors(values: &str, sums: &str) -> String {
    format!(
        "arrayMap((x, p, t) -> if(abs(p) >= abs(x), (p - t) + x, (x - t) + p), \
           {values}, arrayPopBack(arrayPushFront({sums}, 0)), {sums})"
    )
}

/// `body` over `values` bound as `{p}_v` and their running sums as `{p}_s`
/// (`arrayCumSum` adds in order, so these are the sums Prometheus's loop
/// sees), each the parameter of one lambda over one-element arrays:
/// ClickHouse would evaluate every textual copy again. ClickHouse's
/// analyzer pays for every level of lambdas, and more than linearly for a
/// lambda's size, so values without a lambda of their own are written
/// twice rather than bound in a level of their own.
fn with_running_sums(values: &str, p: &str, body: &str) -> String {
    let (v, sums) = (format!("{p}_v"), format!("{p}_s"));
    if values.contains("->") {
        let sums_of_v = format!("arrayCumSum({v})");
        let_in(&[(&v, values)], &let_in(&[(&sums, &sums_of_v)], body))
    } else {
        let sums_of_values = format!("arrayCumSum({values})");
        let_in(&[(&v, values), (&sums, &sums_of_values)], body)
    }
}

/// The Kahan-Neumaier compensation of the values bound by
/// [`with_running_sums`] as `{p}_v` and `{p}_s`: the sum of each step's
/// rounding error, added in order (Prometheus's `kahanSumInc` without a
/// fold).
fn kahan_compensation(p: &str) -> String {
    format!(
        "arrayCumSum({})[-1]",
        kahan_errors(&format!("{p}_v"), &format!("{p}_s"))
    )
}

/// The compensated total of the values bound by [`with_running_sums`]. A
/// sum that became infinite never becomes finite again, and Prometheus
/// drops the compensation then, so it only counts while the total is
/// finite.
fn kahan_total(p: &str) -> String {
    format!(
        "if(isFinite({p}_s[-1]), {p}_s[-1] + {}, {p}_s[-1])",
        kahan_compensation(p)
    )
}

/// Kahan-Neumaier summation as Prometheus's `kahanSumInc` does it.
pub(crate) fn kahan_sum(values: &str) -> String {
    with_running_sums(values, "_ks", &kahan_total("_ks"))
}

/// [`kahan_sum`] of each array of `arrays` (an array of arrays, one per
/// step), NULL for an empty one. The running sums are a second array over
/// the steps, so the per-step lambda binds nothing.
pub(crate) fn kahan_sum_each(arrays: &str) -> String {
    each_with_running_sums(arrays, "_ks", &kahan_total("_ks"))
}

/// `body` for each array of `arrays` (an array of arrays, one per step),
/// NULL for an empty one, with the array as `{p}_v` and its running sums
/// as `{p}_s`, both parameters of the one lambda over the steps.
fn each_with_running_sums(arrays: &str, p: &str, body: &str) -> String {
    format!(
        "arrayMap(({p}_v, {p}_s) -> if(empty({p}_v), NULL, toFloat64({body})), \
           {arrays}, arrayMap(c -> arrayCumSum(c), {arrays}))"
    )
}

/// The compensation term after adding `inc` to `sum` (Neumaier's step, as
/// Prometheus's `kahanSumInc`), given the old compensation `c`.
fn kahan_c(inc: &str, sum: &str, c: &str) -> String {
    format!(
        "if(isInfinite({sum} + {inc}), 0, if(abs({sum}) >= abs({inc}), \
         {c} + (({sum} - ({sum} + {inc})) + {inc}), {c} + (({inc} - ({sum} + {inc})) + {sum})))"
    )
}

/// How a plan computes means (`avg`, `avg_over_time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Means {
    /// The compensated sum over the count; a mean whose running sum
    /// overflows stops the statement with [`EXACT_MEANS_MARKER`], and the
    /// plan's fallback (planned with [`Means::Exact`]) runs instead. The
    /// incremental mean's fold costs ClickHouse's analyzer about 50 ms in
    /// every statement that has a mean, and is needed only for sums beyond
    /// ±1.8e308.
    Fast,
    /// Prometheus's whole algorithm, the incremental mean included.
    Exact,
}

/// The message that stops a [`Means::Fast`] statement whose mean overflows.
pub const EXACT_MEANS_MARKER: &str = "COMET_EXACT_MEANS_NEEDED";

/// The mean as Prometheus computes it: the compensated sum divided by the
/// count; once the running sum would overflow, a compensated incremental
/// mean from that value on (so the order of `values` matters there, as in
/// Prometheus).
pub(crate) fn mean_array(values: &str, means: Means) -> String {
    with_running_sums(values, "_ms", &mean_of_running_sums(means))
}

/// [`mean_array`] of each array of `arrays` (an array of arrays, one per
/// step), NULL for an empty one; as [`kahan_sum_each`], the running sums
/// are an array over the steps of their own.
pub(crate) fn mean_each(arrays: &str, means: Means) -> String {
    each_with_running_sums(arrays, "_ms", &mean_of_running_sums(means))
}

/// The mean of the values bound by [`with_running_sums`] as `_ms_v` and
/// `_ms_s`.
fn mean_of_running_sums(means: Means) -> String {
    let overflows =
        |sum: &str| format!("isInfinite({sum}) AND NOT arrayExists(x -> isInfinite(x), _ms_v)");
    match means {
        // The total is bound once, and the condition is written once, in
        // throwIf alone: inside a lambda `if` evaluates both branches, so
        // `if(c, throwIf(c), ..)` paid for the condition twice.
        Means::Fast => let_in(
            &[("_ms_t", &kahan_total("_ms"))],
            &format!(
                "if(throwIf({}, '{EXACT_MEANS_MARKER}') = 0, _ms_t / length(_ms_v), 0)",
                overflows("_ms_t")
            ),
        ),
        Means::Exact => {
            // The first value whose running sum is infinite switches to the
            // incremental mean, starting from the mean of the values before
            // it; that needs the running compensations `_ms_c` too.
            let sum = "if(isFinite(_ms_s[-1]), _ms_s[-1] + _ms_c[-1], _ms_s[-1])";
            let at = "arrayFirstIndex(x -> isInfinite(x), _ms_s)";
            let step = format!(
                "arrayMap((i, m, c) -> (m + i, {}), [x / k], [((k - 1) / k) * acc.1], [((k - 1) / k) * acc.2])[1]",
                kahan_c("i", "m", "c")
            );
            let incremental = format!(
                "arrayMap(p -> if(p < 2, {sum} / length(_ms_v), arrayMap(r -> r.1 + r.2, [arrayFold((acc, x, k) -> {step}, \
                   arraySlice(_ms_v, p), arraySlice(arrayEnumerate(_ms_v), p), \
                   (_ms_s[p - 1] / (p - 1), _ms_c[p - 1] / (p - 1)))])[1]), [{at}])[1]"
            );
            let_in(
                &[(
                    "_ms_c",
                    &format!("arrayCumSum({})", kahan_errors("_ms_v", "_ms_s")),
                )],
                &format!(
                    "if({}, {incremental}, {sum} / length(_ms_v))",
                    overflows(sum)
                ),
            )
        }
    }
}

/// An array sorted ascending with NaN first, as Go's `sort.Float64s`.
pub(crate) fn sort_nan_first(values: &str) -> String {
    format!("arraySort(x -> (NOT isNaN(x), x), {values})")
}

fn extrapolated(counter: bool, rate: bool) -> String {
    let correction = if counter {
        " + arraySum(arrayMap((x1, x2) -> if(x2 < x1, x1, 0), arrayPopBack(_vals), arrayPopFront(_vals)))"
    } else {
        ""
    };
    let per_second = if rate { " / (R / 1000)" } else { "" };
    let si = "((_ts[_n] - _ts[1]) / 1000)";
    let avg = format!("({si} / (_n - 1))");
    let dstart0 = "((_ts[1] - (te - R)) / 1000)";
    let dstart1 = format!("if({dstart0} >= {avg} * 1.1, {avg} / 2, {dstart0})");
    let res = format!("(_vals[_n] - _vals[1]{correction})");
    // A counter is not extrapolated below zero.
    let dstart = if counter {
        format!(
            "if({res} > 0 AND _vals[1] >= 0, least({dstart1}, {si} * (_vals[1] / {res})), {dstart1})"
        )
    } else {
        dstart1
    };
    let dend0 = "((te - _ts[_n]) / 1000)";
    let dend = format!("if({dend0} >= {avg} * 1.1, {avg} / 2, {dend0})");
    format!("{res} * (({si} + {dstart} + {dend}) / {si}){per_second}")
}

/// What a window's least-squares line gives.
#[derive(Clone, Copy)]
enum Regression {
    /// The slope (`deriv`).
    Slope,
    /// The line's value `p1` seconds after the intercept time
    /// (`predict_linear`).
    Predicted,
}

/// The slope, or the predicted value, of the least-squares line through
/// the window with `x` in seconds relative to `intercept_time`
/// (Prometheus's `linearRegression`). The offsets and the constant-values
/// flag, then the sums, are bound once as parameters of one lambda each:
/// every textual copy would be evaluated again, and ClickHouse's analyzer
/// pays for every level of lambdas and far more for tuples in them.
fn linear_regression(intercept_time: &str, what: Regression) -> String {
    // The sums over `_lr_x` and `_vals`: x, xy, x², y.
    let slope = "(_lr_sxy - _lr_sx * _lr_sy / _n) / (_lr_sx2 - _lr_sx * _lr_sx / _n)";
    // All values equal: slope 0 and intercept the value, NaN for both
    // when it is infinite.
    let (constant, general) = match what {
        Regression::Slope => (
            "if(isInfinite(_vals[1]), nan, 0)".to_string(),
            slope.to_string(),
        ),
        Regression::Predicted => (
            "if(isInfinite(_vals[1]), nan, 0 * p1 + _vals[1])".to_string(),
            format!("({slope}) * p1 + (_lr_sy / _n - ({slope}) * _lr_sx / _n)"),
        ),
    };
    let sums = let_in(
        &[
            ("_lr_sx", "arrayReduce('sumKahan', _lr_x)"),
            (
                "_lr_sxy",
                "arraySum(arrayMap((x1, y1) -> x1 * y1, _lr_x, _vals))",
            ),
            (
                "_lr_sx2",
                "arrayReduce('sumKahan', arrayMap(x1 -> x1 * x1, _lr_x))",
            ),
            ("_lr_sy", "arraySum(_vals)"),
        ],
        &general,
    );
    let_in(
        &[
            (
                "_lr_x",
                &format!("arrayMap(x1 -> (x1 - {intercept_time}) / 1000, _ts)"),
            ),
            ("_lr_c", "arrayAll(y1 -> y1 = _vals[1], _vals)"),
        ],
        &format!("if(_lr_c, {constant}, {sums})"),
    )
}

pub(super) fn range_fn(name: &str, means: Means) -> Option<RangeFn> {
    let f = |value: &str, min_samples: usize| RangeFn {
        value: value.to_string(),
        min_samples,
        keeps_name: false,
        aggregate: None,
        present: None,
    };
    // The extreme of the values that are not NaN; NaN when all are (Go's
    // loop takes any value over a NaN, and a NaN over nothing).
    let extreme = |function: &'static str, value: &str| RangeFn {
        aggregate: Some(WindowAggregate {
            function,
            arguments: "sv, arrayMap(x -> NOT isNaN(x), sv)",
            value: "ifNull(_agg, nan)",
        }),
        ..f(value, 1)
    };
    Some(match name {
        "count_over_time" => f("toFloat64(_n)", 1),
        "sum_over_time" => f(&kahan_sum("_vals"), 1),
        "avg_over_time" => f(&mean_array("_vals", means), 1),
        "min_over_time" => extreme(
            "minOrNullIf",
            "if(arrayAll(x -> isNaN(x), _vals), nan, arrayMin(arrayFilter(x -> NOT isNaN(x), _vals)))",
        ),
        "max_over_time" => extreme(
            "maxOrNullIf",
            "if(arrayAll(x -> isNaN(x), _vals), nan, arrayMax(arrayFilter(x -> NOT isNaN(x), _vals)))",
        ),
        "last_over_time" => RangeFn {
            keeps_name: true,
            aggregate: Some(WindowAggregate {
                function: "anyLast",
                arguments: "sv",
                value: "_agg",
            }),
            ..f("_vals[_n]", 1)
        },
        "first_over_time" => RangeFn {
            keeps_name: true,
            aggregate: Some(WindowAggregate {
                function: "any",
                arguments: "sv",
                value: "_agg",
            }),
            ..f("_vals[1]", 1)
        },
        "ts_of_last_over_time" => RangeFn {
            aggregate: Some(WindowAggregate {
                function: "anyLast",
                arguments: "ts",
                value: "_agg / 1000",
            }),
            ..f("_ts[_n] / 1000", 1)
        },
        "ts_of_first_over_time" => RangeFn {
            aggregate: Some(WindowAggregate {
                function: "any",
                arguments: "ts",
                value: "_agg / 1000",
            }),
            ..f("_ts[1] / 1000", 1)
        },
        "ts_of_max_over_time" => f(
            "if(arrayAll(x -> isNaN(x), _vals), _ts[_n] / 1000, \
             _ts[arrayLastIndex(x -> x = arrayMax(arrayFilter(y -> NOT isNaN(y), _vals)), _vals)] / 1000)",
            1,
        ),
        "ts_of_min_over_time" => f(
            "if(arrayAll(x -> isNaN(x), _vals), _ts[_n] / 1000, \
             _ts[arrayLastIndex(x -> x = arrayMin(arrayFilter(y -> NOT isNaN(y), _vals)), _vals)] / 1000)",
            1,
        ),
        "present_over_time" => f("toFloat64(1)", 1),
        "stddev_over_time" => f("arrayReduce('stddevPopStable', _vals)", 1),
        "stdvar_over_time" => f("arrayReduce('varPopStable', _vals)", 1),
        "quantile_over_time" => f(&quantile_sql("p1", &sort_nan_first("_vals")), 1),
        "mad_over_time" => f(
            &format!(
                "if(arrayExists(x -> isNaN(x), _vals), nan, {})",
                quantile_sql(
                    "0.5",
                    &format!(
                        "arraySort(arrayMap(x -> abs(x - ({})), _vals))",
                        quantile_sql("0.5", "arraySort(_vals)")
                    ),
                )
            ),
            1,
        ),
        "changes" => f(
            "toFloat64(arrayCount((x1, x2) -> NOT (x1 = x2 OR (isNaN(x1) AND isNaN(x2))), arrayPopBack(_vals), arrayPopFront(_vals)))",
            1,
        ),
        "resets" => f(
            "toFloat64(arrayCount((x1, x2) -> x2 < x1, arrayPopBack(_vals), arrayPopFront(_vals)))",
            1,
        ),
        "rate" => f(&extrapolated(true, true), 2),
        "increase" => f(&extrapolated(true, false), 2),
        "delta" => f(&extrapolated(false, false), 2),
        "irate" => f(
            "if(_vals[_n] < _vals[_n - 1], _vals[_n], _vals[_n] - _vals[_n - 1]) / ((_ts[_n] - _ts[_n - 1]) / 1000)",
            2,
        ),
        "idelta" => f("_vals[_n] - _vals[_n - 1]", 2),
        "deriv" => f(&linear_regression("_ts[1]", Regression::Slope), 2),
        "predict_linear" => f(&linear_regression("t", Regression::Predicted), 2),
        "double_exponential_smoothing" | "holt_winters" => f(
            "arrayFold((acc, x) -> (acc.1 + 1, acc.3, \
               p1 * x + (1 - p1) * (acc.3 + if(acc.1 = 1, acc.4, p2 * (acc.3 - acc.2) + (1 - p2) * acc.4)), \
               if(acc.1 = 1, acc.4, p2 * (acc.3 - acc.2) + (1 - p2) * acc.4)), \
             arrayPopFront(_vals), (toFloat64(1), toFloat64(0), _vals[1], _vals[2] - _vals[1])).3",
            2,
        ),
        _ => return None,
    })
}

/// A vector whose labels a function rewrites: its relation, the value
/// columns to carry, and the node kind to wrap the result in.
type LabelsInput = (String, &'static str, fn(String) -> Node);

/// Functions of one sample value: SQL over the value `x`.
fn math_fn(name: &str) -> Option<&'static str> {
    Some(match name {
        "abs" => "abs(x)",
        "ceil" => "ceil(x)",
        "floor" => "floor(x)",
        "exp" => "exp(x)",
        "sqrt" => "sqrt(x)",
        "ln" => "log(x)",
        "log2" => "log2(x)",
        "log10" => "log10(x)",
        "sgn" => "if(isNaN(x), x, toFloat64(sign(x)))",
        "sin" => "sin(x)",
        "cos" => "cos(x)",
        "tan" => "tan(x)",
        "asin" => "asin(x)",
        "acos" => "acos(x)",
        "atan" => "atan(x)",
        "sinh" => "sinh(x)",
        "cosh" => "cosh(x)",
        "tanh" => "tanh(x)",
        "asinh" => "asinh(x)",
        "acosh" => "acosh(x)",
        "atanh" => "atanh(x)",
        "deg" => "x * 180 / pi()",
        "rad" => "x * pi() / 180",
        _ => return None,
    })
}

/// Calendar functions of a timestamp in seconds (`d` is its date-time).
fn time_fn(name: &str) -> Option<&'static str> {
    Some(match name {
        "minute" => "toMinute(d)",
        "hour" => "toHour(d)",
        "day_of_week" => "toDayOfWeek(d) % 7",
        "day_of_month" => "toDayOfMonth(d)",
        "day_of_year" => "toDayOfYear(d)",
        "days_in_month" => "toDayOfMonth(toLastDayOfMonth(d))",
        "month" => "toMonth(d)",
        "year" => "toYear(d)",
        _ => return None,
    })
}

pub(crate) fn string_arg(call: &Call, i: usize) -> Result<String, PlanError> {
    match call.args.args.get(i).map(|a| unparen(a)) {
        Some(Expr::StringLiteral(s)) => Ok(s.val.clone()),
        _ => Err(bad(format!(
            "expected string literal as argument {} of {}",
            i + 1,
            call.func.name
        ))),
    }
}

pub(crate) fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}

/// Translates a Go `regexp.Expand` template (`$1`, `${1}`, `$name`) into
/// an RE2 rewrite (`\1`) for ClickHouse's `replaceRegexpOne`.
fn go_template_to_re2(template: &str, re: &regex::Regex) -> Result<String, PlanError> {
    let mut out = String::new();
    let chars: Vec<char> = template.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            out.push_str("\\\\");
            i += 1;
            continue;
        }
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        // `$$` is a literal dollar.
        if chars.get(i + 1) == Some(&'$') {
            out.push('$');
            i += 2;
            continue;
        }
        let (name, next) = if chars.get(i + 1) == Some(&'{') {
            match chars[i + 2..].iter().position(|&c| c == '}') {
                Some(end) => (
                    chars[i + 2..i + 2 + end].iter().collect::<String>(),
                    i + 3 + end,
                ),
                None => {
                    out.push('$');
                    i += 1;
                    continue;
                }
            }
        } else {
            let len = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_alphanumeric() || **c == '_')
                .count();
            (
                chars[i + 1..i + 1 + len].iter().collect::<String>(),
                i + 1 + len,
            )
        };
        if name.is_empty() {
            out.push('$');
            i += 1;
            continue;
        }
        let index = match name.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => re.capture_names().position(|n| n == Some(name.as_str())),
        };
        match index {
            Some(n) if n < re.captures_len() && n <= 9 => out.push_str(&format!("\\{n}")),
            Some(n) if n < re.captures_len() => {
                return Err(PlanError::Unsupported(format!(
                    "label_replace() references group {n}; at most 9 groups are supported"
                )));
            }
            _ => {}
        }
        i = next;
    }
    Ok(out)
}

impl Planner {
    /// Sets label `name` (a parameter placeholder) to the SQL string `value`
    /// on `labels`, removing it when the value is empty.
    pub(crate) fn set_label(name: &str, value: &str) -> String {
        format!(
            "arraySort(arrayConcat(arrayFilter(x -> x.1 != {name}, labels), \
             if(({value}) = '', CAST([], 'Array(Tuple(String, String))'), [({name}, {value})])))"
        )
    }

    pub(crate) fn call(&mut self, call: &Call, grid: &Grid) -> Result<Node, PlanError> {
        let name = call.func.name;
        let args = &call.args.args;
        for arg in args {
            if let Expr::MatrixSelector(ms) = arg.as_ref() {
                RangeModifier::of(&ms.vs).allows(name)?;
            }
        }
        if let Some(node) = self.native_histogram_call(call, grid)? {
            return Ok(node);
        }
        if let Some(f) = range_fn(name, self.means) {
            return self.range_call(name, f, call, grid);
        }
        if let Some(expr) = math_fn(name) {
            let input = self.node(&args[0], grid)?;
            if let Node::Series(rel) = &input {
                return Ok(Node::Series(self.series_map(rel, expr, "toUInt8(1)")));
            }
            let rel = self.rows_of(input, &args[0], grid)?;
            return Ok(Node::Vector(format!(
                "SELECT labels, t, {expr} AS v, toUInt8(1) AS dn FROM (SELECT labels, t, v AS x FROM ({rel}))"
            )));
        }
        if let Some(expr) = time_fn(name) {
            let rel = match args.first() {
                Some(a) => self.vector(a, grid)?,
                None => format!(
                    "SELECT CAST([], 'Array(Tuple(String, String))') AS labels, t, toFloat64(t) / 1000 AS v, toUInt8(0) AS dn FROM ({})",
                    grid.steps_rel()
                ),
            };
            return Ok(Node::Vector(format!(
                "SELECT labels, t, if(isNaN(v) OR isInfinite(v), nan, toFloat64({expr})) AS v, toUInt8(1) AS dn \
                 FROM (SELECT labels, t, v, dn, fromUnixTimestamp64Second(toInt64(if(isNaN(v) OR isInfinite(v), 0, v)), 'UTC') AS d FROM ({rel}))"
            )));
        }
        match name {
            "time" => Ok(Node::Scalar(Scalar::Expr("toFloat64(t) / 1000".into()))),
            "pi" => Ok(Node::Scalar(Scalar::Lit(std::f64::consts::PI))),
            "step" => Ok(Node::Scalar(Scalar::Lit(self.query_step as f64 / 1000.0))),
            "range" => Ok(Node::Scalar(Scalar::Lit(
                (self.query_end - self.query_start) as f64 / 1000.0,
            ))),
            "start" => Ok(Node::Scalar(Scalar::Lit(self.query_start as f64 / 1000.0))),
            "end" => Ok(Node::Scalar(Scalar::Lit(self.query_end as f64 / 1000.0))),
            "min_of" | "max_of" => {
                let a = self.scalar(&args[0], grid)?;
                let b = self.scalar(&args[1], grid)?;
                let f = if name == "min_of" {
                    "least"
                } else {
                    "greatest"
                };
                if let (Scalar::Lit(x), Scalar::Lit(y)) = (&a, &b) {
                    let v = if x.is_nan() || y.is_nan() {
                        f64::NAN
                    } else if name == "min_of" {
                        x.min(*y)
                    } else {
                        x.max(*y)
                    };
                    return Ok(Node::Scalar(Scalar::Lit(v)));
                }
                let arel = self.scalar_rel(a, grid);
                let brel = self.scalar_rel(b, grid);
                Ok(Node::Scalar(Scalar::Rel(format!(
                    "SELECT x.t AS t, if(isNaN(x.v) OR isNaN(y.v), nan, {f}(x.v, y.v)) AS v \
                     FROM ({arel}) AS x INNER JOIN ({brel}) AS y ON x.t = y.t"
                ))))
            }
            "vector" => {
                let s = self.scalar(&args[0], grid)?;
                let rel = self.scalar_rel(s, grid);
                Ok(Node::Vector(format!(
                    "SELECT CAST([], 'Array(Tuple(String, String))') AS labels, t, v, toUInt8(0) AS dn FROM ({rel})"
                )))
            }
            "scalar" => {
                let rel = self.vector(&args[0], grid)?;
                Ok(Node::Scalar(Scalar::Rel(format!(
                    "SELECT s.t AS t, if(g.c = 1, g.x, nan) AS v FROM ({steps}) AS s \
                     LEFT JOIN (SELECT t, count() AS c, any(v) AS x FROM ({rel}) GROUP BY t) AS g ON s.t = g.t",
                    steps = grid.steps_rel()
                ))))
            }
            "timestamp" => self.timestamp(&args[0], grid),
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => {
                // Ordering applies to instant results at the top (see
                // `sort_order`); inside an expression these are identity.
                Ok(Node::Vector(self.vector(&args[0], grid)?))
            }
            "round" => {
                let rel = self.vector(&args[0], grid)?;
                let nearest = match args.get(1) {
                    Some(a) => self.scalar(a, grid)?,
                    None => Scalar::Lit(1.0),
                };
                let (from, n) = self.with_scalar(&rel, nearest, "p1");
                Ok(Node::Vector(format!(
                    "SELECT a.labels AS labels, a.t AS t, floor(a.v * (1 / {n}) + 0.5) / (1 / {n}) AS v, toUInt8(1) AS dn FROM {from}"
                )))
            }
            "clamp" | "clamp_min" | "clamp_max" => self.clamp(name, args, grid),
            "label_replace" => self.label_replace(call, grid),
            "label_join" => self.label_join(call, grid),
            "absent" => self.absent(call, grid),
            "absent_over_time" => self.absent_over_time(call, grid),
            "histogram_quantile" => self.histogram_quantile(call, grid),
            "histogram_fraction" => self.histogram_fraction(call, grid),
            "histogram_quantiles" => self.histogram_quantiles(call, grid),
            "info" => self.info(call, grid),
            other => Err(PlanError::Unsupported(format!(
                "function {other}() is not supported yet"
            ))),
        }
    }

    pub(super) fn range_call(
        &mut self,
        name: &str,
        f: RangeFn,
        call: &Call,
        grid: &Grid,
    ) -> Result<Node, PlanError> {
        let args = &call.args.args;
        // The range vector is the first argument, except for
        // quantile_over_time(φ, m).
        let (matrix_at, scalar_args): (usize, Vec<usize>) = match name {
            "quantile_over_time" => (1, vec![0]),
            "predict_linear" => (0, vec![1]),
            "double_exponential_smoothing" | "holt_winters" => (0, vec![1, 2]),
            _ => (0, vec![]),
        };
        let m = self.matrix(&args[matrix_at], grid)?;
        // Anchored and smoothed windows have functions of their own and no
        // series-major fast path.
        let extended = m.modifier != RangeModifier::Plain;
        let f = if extended {
            m.modifier.range_fn(name)?
        } else {
            f
        };
        let mut scalars = Vec::new();
        for i in scalar_args {
            let s = self.scalar(&args[i], grid)?;
            if matches!(name, "double_exponential_smoothing" | "holt_winters")
                && let Scalar::Lit(x) = s
                && !(x > 0.0 && x < 1.0)
            {
                let which = if scalars.is_empty() {
                    "smoothing"
                } else {
                    "trend"
                };
                return Err(PlanError::BadData(format!(
                    "invalid {which} factor. Expected: 0 < sf < 1, got: {x}"
                )));
            }
            scalars.push(s);
        }
        if !extended {
            if let Some(rel) = self.series_grid_function(name, &m, grid, &scalars, f.keeps_name)? {
                return Ok(Node::Series(rel));
            }
            if let Some(rel) = self.series_window_function(&m, grid, &f, &scalars)? {
                return Ok(Node::Series(rel));
            }
        }
        self.windowed(&m, grid, &f, scalars)
    }

    /// `f` over every window of `m` on `grid`, series-major where it can be.
    pub(crate) fn windowed(
        &mut self,
        m: &Matrix,
        grid: &Grid,
        f: &RangeFn,
        scalars: Vec<Scalar>,
    ) -> Result<Node, PlanError> {
        let dn = if f.keeps_name { "l.dn" } else { "toUInt8(1)" };
        let present = f.present();
        if m.at.is_none() && grid.n() > 0 {
            let (values, labels) = self.window_values(m, grid, &f.value, &present, scalars)?;
            return Ok(Node::Series(
                self.series_of_points(&values, &labels, grid, dn).into(),
            ));
        }
        let rel = self.over_windows(m, grid, &f.value, &present, scalars, dn)?;
        Ok(Node::Vector(rel))
    }

    /// Evaluates `value` over the windows of `m` on `grid`, with scalar
    /// arguments bound to `p1`, `p2`, ... Rows `(labels, t, v, dn)`.
    pub(crate) fn over_windows(
        &mut self,
        m: &Matrix,
        grid: &Grid,
        value: &str,
        present: &str,
        scalars: Vec<Scalar>,
        dn: &str,
    ) -> Result<String, PlanError> {
        let (body, labels) = self.window_values(m, grid, value, present, scalars)?;
        Ok(format!(
            "SELECT l.labels AS labels, b.t AS t, b.v AS v, {dn} AS dn \
             FROM ({body}) AS b INNER JOIN ({labels}) AS l ON b.fp = l.fp"
        ))
    }

    /// The value of `value` over each window of `m` on `grid`: rows `(fp,
    /// t, v)`, one per series and step whose window meets `present`; and
    /// the labels `(fp, labels, dn)` of the series.
    pub(crate) fn window_values(
        &mut self,
        m: &Matrix,
        grid: &Grid,
        value: &str,
        present: &str,
        scalars: Vec<Scalar>,
    ) -> Result<(String, String), PlanError> {
        let eval = match m.at {
            Some(t) => Grid::instant(t),
            None => *grid,
        };
        let (windows, labels) = self.windows(m, &eval)?;
        // `te` is when the window ends, `tout` the step it answers for: they
        // differ under `@`, where one window serves every step.
        let windows = match m.at {
            Some(_) => format!(
                "SELECT fp, t AS te, tout, w FROM ({windows}) ARRAY JOIN {} AS tout",
                grid.steps()
            ),
            None => format!("SELECT fp, t AS te, t AS tout, w FROM ({windows})"),
        };
        let mut from = format!("({windows}) AS win");
        let mut binds = Vec::new();
        for (i, s) in scalars.into_iter().enumerate() {
            let p = format!("p{}", i + 1);
            match s {
                Scalar::Lit(x) => binds.push(format!("{} AS {p}", lit(x))),
                Scalar::Expr(e) => binds.push(format!("toFloat64({e}) AS {p}")),
                Scalar::Rel(rel) => {
                    // Scalars of a subquery's own steps are not supported;
                    // on the query grid they join by step.
                    from = format!(
                        "{from} INNER JOIN (SELECT t AS {p}_t, v AS {p}_v FROM ({rel})) AS {p}_s ON win.tout = {p}_s.{p}_t"
                    );
                    binds.push(format!("{p}_v AS {p}"));
                }
            }
        }
        let binds = binds.iter().map(|b| format!("{b}, ")).collect::<String>();
        let range = m.range;
        let body = format!(
            "SELECT win.fp AS fp, win.tout AS t, win.te AS te, {binds}{range} AS R, \
             arrayMap(x -> x.2, win.w) AS _vals, arrayMap(x -> x.1, win.w) AS _ts, length(win.w) AS _n, \
             toFloat64({value}) AS v \
             FROM {from} WHERE {present}"
        );
        Ok((body, labels))
    }

    fn clamp(&mut self, name: &str, args: &[Box<Expr>], grid: &Grid) -> Result<Node, PlanError> {
        let rel = self.vector(&args[0], grid)?;
        let first = self.scalar(&args[1], grid)?;
        let (from, a) = self.with_scalar(&rel, first, "p1");
        let (from, value, cond) = match name {
            "clamp_min" => (
                from,
                format!("if(isNaN(a.v) OR isNaN({a}), nan, greatest(a.v, {a}))"),
                "1".to_string(),
            ),
            "clamp_max" => (
                from,
                format!("if(isNaN(a.v) OR isNaN({a}), nan, least(a.v, {a}))"),
                "1".to_string(),
            ),
            _ => {
                let second = self.scalar(&args[2], grid)?;
                // Join the second scalar onto the first join's result.
                let inner = format!(
                    "SELECT a.labels AS labels, a.t AS t, a.v AS v, a.dn AS dn, {a} AS lo FROM {from}"
                );
                let (from2, b) = self.with_scalar(&inner, second, "p2");
                (
                    from2,
                    format!(
                        "if(isNaN(a.v) OR isNaN(a.lo) OR isNaN({b}), nan, greatest(a.lo, least({b}, a.v)))"
                    ),
                    format!("NOT (a.lo > {b})"),
                )
            }
        };
        Ok(Node::Vector(format!(
            "SELECT a.labels AS labels, a.t AS t, {value} AS v, toUInt8(1) AS dn FROM {from} WHERE {cond}"
        )))
    }

    /// The parameter of a `label_replace`/`label_join` destination label and
    /// the result's `dn`: writing `__name__` keeps the name.
    fn destination(
        &mut self,
        function: &str,
        dst: &str,
    ) -> Result<(String, &'static str), PlanError> {
        if dst.is_empty() {
            return Err(bad(format!(
                "invalid destination label name in {function}(): {dst}"
            )));
        }
        let dn = if dst == "__name__" {
            "toUInt8(0)"
        } else {
            "dn"
        };
        Ok((self.string(dst), dn))
    }

    /// A vector argument for a function that only rewrites labels: its
    /// relation, the value columns to carry, and how to wrap the result
    /// (series-major inputs stay series-major).
    fn labels_input(&mut self, arg: &Expr, grid: &Grid) -> Result<LabelsInput, PlanError> {
        Ok(match self.node(arg, grid)? {
            Node::Series(rel) => (rel.sql(), "vals", |sql| Node::Series(sql.into())),
            other => (self.rows_of(other, arg, grid)?, "t, v", Node::Vector),
        })
    }

    fn label_replace(&mut self, call: &Call, grid: &Grid) -> Result<Node, PlanError> {
        let (rel, cols, wrap) = self.labels_input(&call.args.args[0], grid)?;
        let dst = string_arg(call, 1)?;
        let replacement = string_arg(call, 2)?;
        let src = string_arg(call, 3)?;
        let regex = string_arg(call, 4)?;
        let anchored = format!("^(?s:{regex})$");
        let re = regex::Regex::new(&anchored).map_err(|_| {
            bad(format!(
                "invalid regular expression in label_replace(): {regex}"
            ))
        })?;
        let (dst_p, dn) = self.destination("label_replace", &dst)?;
        let rewrite = go_template_to_re2(&replacement, &re)?;
        let src_p = self.string(&src);
        let re_p = self.string(&anchored);
        let rewrite_p = self.string(&rewrite);
        let set = Self::set_label(&dst_p, "_new");
        let src = label_value(&src_p, "labels");
        Ok(wrap(format!(
            "SELECT if(match(_src, {re_p}), {set}, labels) AS labels, {cols}, {dn} AS dn \
             FROM (SELECT labels, {cols}, dn, {src} AS _src, \
                   replaceRegexpOne(_src, {re_p}, {rewrite_p}) AS _new FROM ({rel}))"
        )))
    }

    fn label_join(&mut self, call: &Call, grid: &Grid) -> Result<Node, PlanError> {
        let (rel, cols, wrap) = self.labels_input(&call.args.args[0], grid)?;
        let dst = string_arg(call, 1)?;
        let sep = string_arg(call, 2)?;
        let mut sources = Vec::new();
        for i in 3..call.args.args.len() {
            sources.push(string_arg(call, i)?);
        }
        let (dst_p, dn) = self.destination("label_join", &dst)?;
        let sep_p = self.string(&sep);
        let values: Vec<String> = sources
            .iter()
            .map(|s| {
                let p = self.string(s);
                label_value(&p, "labels")
            })
            .collect();
        let joined = if values.is_empty() {
            "''".to_string()
        } else {
            format!("arrayStringConcat([{}], {sep_p})", values.join(", "))
        };
        let set = Self::set_label(&dst_p, "_new");
        Ok(wrap(format!(
            "SELECT {set} AS labels, {cols}, {dn} AS dn \
             FROM (SELECT labels, {cols}, dn, {joined} AS _new FROM ({rel}))"
        )))
    }

    /// The labels `absent()` gives its result: the equality matchers of a
    /// selector argument (a name matched twice is left out).
    fn absent_labels(&mut self, arg: &Expr) -> String {
        let vs = match unparen(arg) {
            Expr::VectorSelector(vs) => Some(vs),
            Expr::MatrixSelector(ms) => Some(&ms.vs),
            _ => None,
        };
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(vs) = vs {
            let mut seen: Vec<(String, usize)> = Vec::new();
            for m in &vs.matchers.matchers {
                if m.name == "__name__" {
                    continue;
                }
                match seen.iter_mut().find(|(n, _)| *n == m.name) {
                    Some((_, c)) => *c += 1,
                    None => seen.push((m.name.clone(), 1)),
                }
            }
            for m in &vs.matchers.matchers {
                let once = seen.iter().any(|(n, c)| *n == m.name && *c == 1);
                if m.name != "__name__"
                    && once
                    && matches!(m.op, promql_parser::label::MatchOp::Equal)
                {
                    pairs.push((m.name.clone(), m.value.clone()));
                }
            }
        }
        pairs.sort();
        let items: Vec<String> = pairs
            .iter()
            .map(|(n, v)| {
                let n = self.string(n);
                let v = self.string(v);
                format!("({n}, {v})")
            })
            .collect();
        format!(
            "CAST([{}], 'Array(Tuple(String, String))')",
            items.join(", ")
        )
    }

    /// `timestamp(v)`: each sample's time, of a selector's own samples
    /// (floats and histograms alike) or of the computed vector's steps.
    /// Kept out of `call`, whose stack frame every nested call pays for.
    #[inline(never)]
    fn timestamp(&mut self, arg: &Expr, grid: &Grid) -> Result<Node, PlanError> {
        let rel = match unparen(arg) {
            Expr::VectorSelector(vs) if self.may_read_histograms(vs) => {
                let at = self.at_ms(&vs.at);
                let rel = self.mixed_selector(vs, at, grid, true)?;
                format!("SELECT {FLOAT_COLUMNS} FROM ({rel})")
            }
            Expr::VectorSelector(vs) => {
                let at = self.at_ms(&vs.at);
                self.vector_selector(vs, at, grid, true)?
            }
            other => {
                let node = self.node(other, grid)?;
                let rel = self.present_rows(node, other, grid)?;
                format!("SELECT labels, t, toFloat64(t) / 1000 AS v, dn FROM ({rel})")
            }
        };
        Ok(Node::Vector(format!(
            "SELECT labels, t, v, toUInt8(1) AS dn FROM ({rel})"
        )))
    }

    fn absent(&mut self, call: &Call, grid: &Grid) -> Result<Node, PlanError> {
        let node = self.node(&call.args.args[0], grid)?;
        let rel = self.present_rows(node, &call.args.args[0], grid)?;
        let labels = self.absent_labels(&call.args.args[0]);
        Ok(Node::Vector(format!(
            "SELECT {labels} AS labels, t, toFloat64(1) AS v, toUInt8(0) AS dn FROM ({steps}) \
             WHERE t NOT IN (SELECT t FROM ({rel}))",
            steps = grid.steps_rel()
        )))
    }

    fn absent_over_time(&mut self, call: &Call, grid: &Grid) -> Result<Node, PlanError> {
        let m = self.matrix(&call.args.args[0], grid)?;
        let present = match self.mixed_present_steps(&call.args.args[0], grid)? {
            Some(steps) => steps,
            None => self.over_windows(&m, grid, "toFloat64(1)", "_n >= 1", vec![], "toUInt8(0)")?,
        };
        let labels = match &m.source {
            Source::Selector(_) => self.absent_labels(&call.args.args[0]),
            Source::Subquery { .. } => "CAST([], 'Array(Tuple(String, String))')".to_string(),
        };
        Ok(Node::Vector(format!(
            "SELECT {labels} AS labels, t, toFloat64(1) AS v, toUInt8(0) AS dn FROM ({steps}) \
             WHERE t NOT IN (SELECT t FROM ({present}))",
            steps = grid.steps_rel()
        )))
    }
}
