//! `info(v, [selector])` (Prometheus 3, experimental): each series of `v` gains
//! the data labels of the info series (`target_info` unless the selector
//! names others) that share its identifying labels, `instance` and `job`,
//! at each step. An info series is read like `v`'s first selector (its `@`
//! and offset included), and of two info series of one metric with the same
//! identifying labels the one with the newer sample wins.

use std::time::Duration;

use promql_parser::label::{MatchOp, Matcher, Matchers};
use promql_parser::parser::{Call, Expr, Offset, VectorSelector};

use super::functions::unparen;
use super::{Grid, Node, PlanError, Planner, bad, fail_if, label_value, offset_ms};
use crate::matchers::value_condition;

/// The labels that tie a series to its info series.
const IDENTIFYING_LABELS: [&str; 2] = ["instance", "job"];

/// The info metric when the selector names none.
const TARGET_INFO: &str = "target_info";

impl Planner {
    pub(crate) fn info(&mut self, call: &Call, grid: &Grid) -> Result<Node, PlanError> {
        let args = &call.args.args;
        let selector = match args.get(1).map(|a| unparen(a)) {
            None => None,
            Some(Expr::VectorSelector(vs)) => Some(vs),
            Some(_) => {
                return Err(bad(
                    "expected label selectors as the second argument to \"info\" function",
                ));
            }
        };
        let mut name_matchers = Vec::new();
        let mut data_matchers = Vec::new();
        if let Some(vs) = selector {
            if let Some(name) = &vs.name {
                name_matchers.push(Matcher::new(MatchOp::Equal, "__name__", name));
            }
            for m in &vs.matchers.matchers {
                if m.name == "__name__" {
                    name_matchers.push(m.clone());
                } else {
                    data_matchers.push(m.clone());
                }
            }
        }
        let name_matchers = effective_name_matchers(name_matchers)?;
        // Without a match, a series stays unless a data matcher needs a value.
        let needs_match = data_matchers.iter().any(|m| !m.is_match(""));
        let data_names: Vec<String> = data_matchers.iter().map(|m| m.name.clone()).collect();

        let (at, offset) = self.info_time(&args[0]);
        let base = self.vector(&args[0], grid)?;
        let info_selector = VectorSelector {
            name: None,
            matchers: Matchers::new(
                data_matchers
                    .into_iter()
                    .chain(name_matchers.clone())
                    .collect(),
            ),
            offset: (offset != 0).then(|| {
                let d = Duration::from_millis(offset.unsigned_abs());
                if offset > 0 {
                    Offset::Pos(d)
                } else {
                    Offset::Neg(d)
                }
            }),
            at: None,
            offset_expr: None,
            anchored: false,
            smoothed: false,
        };
        // The value of an info row is its sample's time, to pick the newest.
        let infos = if self.may_read_histograms(&info_selector) {
            let rel = self.mixed_selector(&info_selector, at, grid, true)?;
            let float_only = fail_if(&[("is_h", "'info sample should be float'")]);
            format!("SELECT labels, t, v, dn FROM ({rel}) WHERE {float_only}")
        } else {
            self.vector_selector(&info_selector, at, grid, true)?
        };

        let identifying: Vec<String> = IDENTIFYING_LABELS.iter().map(|l| l.to_string()).collect();
        let info_key = self.keep_labels(&identifying, "labels");
        let base_key = self.keep_labels(&identifying, "b.labels");
        let name = label_value("'__name__'", "labels");
        let is_info: Vec<String> = name_matchers
            .iter()
            .map(|m| value_condition(&m.into(), "_name", &mut self.params))
            .collect();
        let is_info = is_info.join(" AND ");
        let wanted = if data_names.is_empty() {
            "1".to_string()
        } else {
            format!("has({}, x.1)", self.strings(&data_names))
        };
        let duplicate =
            "concat('found duplicate series for info metric ', _in, ' at ', toString(_t))";
        let conflicting = "concat('conflicting label: ', \
             arrayFirst(n -> countEqual(arrayMap(x -> x.1, _cand), n) > 1, arrayMap(x -> x.1, _cand)))";
        let unique_info = fail_if(&[("v = _mx AND _ties > 1", duplicate)]);
        let no_conflict = fail_if(&[(
            "length(arrayDistinct(arrayMap(x -> x.1, _cand))) < length(_cand)",
            conflicting,
        )]);
        let keep = if needs_match { "notEmpty(_infos)" } else { "1" };
        // An info series itself (its name matching the selector's) is left
        // as it is; others gain the labels of every info metric matched.
        Ok(Node::Vector(format!(
            "SELECT if(_skip, labels, arraySort(arrayConcat(labels, \
                 arrayFilter(x -> NOT has(arrayMap(y -> y.1, labels), x.1), _cand)))) AS labels, t, v, dn \
             FROM (\
               SELECT labels, t, v, dn, _skip, _infos, \
                 arrayDistinct(arrayFilter(x -> x.1 != '__name__' AND {wanted}, arrayFlatten(_infos))) AS _cand \
               FROM (\
                 SELECT b.labels AS labels, b.t AS t, any(b.v) AS v, any(b.dn) AS dn, any(b._skip) AS _skip, \
                   groupArrayIf(i._il, notEmpty(i._ikey) AND NOT b._skip) AS _infos \
                 FROM (SELECT labels, t, v, dn, {is_info} AS _skip \
                       FROM (SELECT labels, t, v, dn, {name} AS _name FROM ({base}))) AS b \
                 LEFT JOIN (\
                   SELECT _il, _t, _ikey FROM (\
                     SELECT labels AS _il, t AS _t, {info_key} AS _ikey, {name} AS _in, v, \
                       max(v) OVER (PARTITION BY _in, _ikey, t) AS _mx, \
                       count() OVER (PARTITION BY _in, _ikey, t, v) AS _ties \
                     FROM ({infos})) \
                   WHERE v = _mx AND {unique_info}\
                 ) AS i ON {base_key} = i._ikey AND b.t = i._t \
                 GROUP BY b.labels, b.t\
               ) WHERE _skip OR {keep}\
             ) WHERE {no_conflict}"
        )))
    }

    /// When the info series are read: as the first selector of `expr` is,
    /// its `@` (or the innermost enclosing subquery's) and the offsets up to
    /// that `@`.
    fn info_time(&self, expr: &Expr) -> (Option<i64>, i64) {
        let mut path: Vec<&Expr> = Vec::new();
        let Some(vs) = first_selector(expr, &mut path) else {
            return (None, 0);
        };
        let mut at = self.at_ms(&vs.at);
        let mut offset = offset_ms(&vs.offset);
        for e in path.iter().rev() {
            if at.is_some() {
                break;
            }
            if let Expr::Subquery(sq) = e {
                offset += offset_ms(&sq.offset);
                at = self.at_ms(&sq.at);
            }
        }
        (at, offset)
    }
}

/// The first vector selector of `expr` as Prometheus walks it, with the
/// expressions enclosing it in `path`.
fn first_selector<'a>(expr: &'a Expr, path: &mut Vec<&'a Expr>) -> Option<&'a VectorSelector> {
    match expr {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        _ => {
            path.push(expr);
            let children = super::guard::children(expr);
            for child in children {
                if let Some(vs) = first_selector(child, path) {
                    return Some(vs);
                }
            }
            path.pop();
            None
        }
    }
}

/// The `__name__` matchers that pick info series: as given when one is
/// positive; with `.+_info` added when all are negative; `target_info`
/// when there are none.
fn effective_name_matchers(matchers: Vec<Matcher>) -> Result<Vec<Matcher>, PlanError> {
    if matchers
        .iter()
        .any(|m| matches!(m.op, MatchOp::Equal | MatchOp::Re(_)))
    {
        return Ok(matchers);
    }
    if matchers.is_empty() {
        return Ok(vec![Matcher::new(MatchOp::Equal, "__name__", TARGET_INFO)]);
    }
    let any_info = Matcher::new(
        MatchOp::Re(regex::Regex::new("^(?:.+_info)$").map_err(|e| bad(e.to_string()))?),
        "__name__",
        ".+_info",
    );
    Ok(std::iter::once(any_info).chain(matchers).collect())
}
