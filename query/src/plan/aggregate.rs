//! Aggregations: `sum`, `avg`, `topk`, ... grouped by step and by the
//! `by`/`without` labels.

use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use super::functions::{kahan_sum, mean_array, quantile_sql, sort_nan_first, unparen};
use super::go_text::go_float_text;
use super::{Grid, Node, PlanError, Planner, Scalar, bad};

impl Planner {
    /// The grouping key over the label column `col`, and the `dn` of a
    /// group over the members' column `dn_col` (`by (__name__)` keeps the
    /// name, dropped later if any member's name was to be dropped).
    pub(super) fn group_key(
        &mut self,
        modifier: &Option<LabelModifier>,
        col: &str,
        dn_col: &str,
    ) -> (String, String) {
        let Some(modifier) = modifier else {
            return (
                "CAST([], 'Array(Tuple(String, String))')".into(),
                "toUInt8(0)".into(),
            );
        };
        let keeps_name = matches!(modifier, LabelModifier::Include(ls) if ls.labels.iter().any(|n| n == "__name__"));
        let dn = if keeps_name {
            format!("max({dn_col})")
        } else {
            "toUInt8(0)".into()
        };
        (self.grouping_labels(modifier, col), dn)
    }

    /// The input of an aggregation with columns `_l, _t, _v, _dn` and, when
    /// the aggregation takes a number, `_p`.
    fn aggregation_input(&mut self, rel: &str, param: Option<Scalar>) -> String {
        match param {
            None => format!("SELECT labels AS _l, t AS _t, v AS _v, dn AS _dn FROM ({rel})"),
            Some(p) => {
                let (from, value) = self.with_scalar(rel, p, "p1");
                format!(
                    "SELECT a.labels AS _l, a.t AS _t, a.v AS _v, a.dn AS _dn, {value} AS _p FROM {from}"
                )
            }
        }
    }

    pub(crate) fn aggregate(&mut self, a: &AggregateExpr, grid: &Grid) -> Result<Node, PlanError> {
        match self.node(&a.expr, grid)? {
            Node::Mixed(rel) => {
                let op = a.op.to_string().to_lowercase();
                self.mixed_aggregate(a, &op, &rel, grid)
            }
            input => self.aggregate_node(a, input, grid),
        }
    }

    /// `a` over its already compiled argument `input`.
    pub(crate) fn aggregate_node(
        &mut self,
        a: &AggregateExpr,
        input: Node,
        grid: &Grid,
    ) -> Result<Node, PlanError> {
        let op = a.op.to_string().to_lowercase();
        if let Node::Series(series) = &input
            && let Some(rel) = self.series_aggregate(a, series, &op)
        {
            return Ok(Node::Series(rel));
        }
        let (key, dn) = self.group_key(&a.modifier, "_l", "_dn");
        let rel = self.rows_of(input, &a.expr, grid)?;
        let simple = |agg: &str| -> String { agg.to_string() };
        let value = match op.as_str() {
            "sum" => Some(kahan_sum("groupArray(_v)")),
            "avg" => Some(mean_array("groupArray(_v)", self.means)),
            "min" => Some(simple(
                "if(countIf(NOT isNaN(_v)) = 0, nan, minIf(_v, NOT isNaN(_v)))",
            )),
            "max" => Some(simple(
                "if(countIf(NOT isNaN(_v)) = 0, nan, maxIf(_v, NOT isNaN(_v)))",
            )),
            "count" => Some(simple("toFloat64(count())")),
            "group" => Some(simple("toFloat64(1)")),
            "stddev" => Some(simple(
                "if(countIf(isNaN(_v) OR isInfinite(_v)) > 0, nan, stddevPopStable(_v))",
            )),
            "stdvar" => Some(simple(
                "if(countIf(isNaN(_v) OR isInfinite(_v)) > 0, nan, varPopStable(_v))",
            )),
            _ => None,
        };
        if let Some(value) = value {
            let input = self.aggregation_input(&rel, None);
            return Ok(Node::Vector(format!(
                "SELECT {key} AS labels, _t AS t, toFloat64({value}) AS v, {dn} AS dn \
                 FROM ({input}) GROUP BY labels, t"
            )));
        }
        let param = a
            .param
            .as_ref()
            .ok_or_else(|| bad(format!("aggregation {op} needs a parameter")))?;
        match op.as_str() {
            "quantile" => {
                let phi = self.scalar(param, grid)?;
                let input = self.aggregation_input(&rel, Some(phi));
                let value = quantile_sql("any(_p)", &sort_nan_first("groupArray(_v)"));
                Ok(Node::Vector(format!(
                    "SELECT {key} AS labels, _t AS t, toFloat64({value}) AS v, {dn} AS dn \
                     FROM ({input}) GROUP BY labels, t"
                )))
            }
            "topk" | "bottomk" | "limitk" => {
                let k = self.scalar(param, grid)?;
                if let Scalar::Lit(x) = k
                    && x.is_nan()
                {
                    return Err(bad("Parameter value is NaN"));
                }
                let order = match op.as_str() {
                    "topk" => "isNaN(_v) ASC, _v DESC",
                    "bottomk" => "isNaN(_v) ASC, _v ASC",
                    // Any k series; the lowest label sets, deterministically.
                    _ => "_l ASC",
                };
                let input = self.aggregation_input(&rel, Some(k));
                Ok(Node::Vector(format!(
                    "SELECT _l AS labels, _t AS t, _v AS v, _dn AS dn FROM (\
                       SELECT _l, _t, _v, _dn, _p, \
                       row_number() OVER (PARTITION BY _g, _t ORDER BY {order}) AS _rn \
                       FROM (SELECT *, {key} AS _g FROM ({input}))\
                     ) WHERE _rn <= _p AND _p >= 1"
                )))
            }
            "limit_ratio" => {
                let ratio = self.scalar(param, grid)?;
                if let Scalar::Lit(x) = ratio
                    && x.is_nan()
                {
                    return Err(bad("Ratio value is NaN"));
                }
                let input = self.aggregation_input(&rel, Some(ratio));
                // Prometheus keeps a series by where the hash of its label
                // set (the fingerprint's bytes) falls in [0, 1): below the
                // ratio, or at or above 1 + ratio for a negative one.
                let labels = format!("if(_dn = 1, {}, _l)", super::drop_name("_l"));
                Ok(Node::Vector(format!(
                    "SELECT _l AS labels, _t AS t, _v AS v, _dn AS dn FROM (\
                       SELECT _l, _t, _v, _dn, greatest(-1.0, least(1.0, _p)) AS _r, \
                       toFloat64(xxHash64(arrayStringConcat(arrayMap(x -> concat(x.1, '\\xff', x.2, '\\xff'), {labels})))) \
                         / toFloat64(18446744073709551615) AS _offset \
                       FROM ({input})\
                     ) WHERE (_r >= 0 AND _offset < _r) OR (_r < 0 AND _offset >= 1 + _r)"
                )))
            }
            "count_values" => {
                let input = self.aggregation_input(&rel, None);
                self.count_values(a, &key, &input, &go_float_text("_v"))
            }
            other => Err(PlanError::Unsupported(format!(
                "aggregation {other} is not supported yet"
            ))),
        }
    }

    /// `count_values` with the label named by `a`'s parameter, over `input`
    /// (columns `_l`, `_t` and those `key` and `text` read), each sample
    /// counted under its value's `text`. Groups are counted by their
    /// labels once the value is set, as Prometheus does: a label the
    /// value overwrites no longer tells groups apart.
    pub(super) fn count_values(
        &mut self,
        a: &AggregateExpr,
        key: &str,
        input: &str,
        text: &str,
    ) -> Result<Node, PlanError> {
        let param = a
            .param
            .as_ref()
            .ok_or_else(|| bad("aggregation count_values needs a parameter"))?;
        let label = match unparen(param) {
            Expr::StringLiteral(s) => s.val.clone(),
            _ => return Err(bad("expected string literal as count_values() label")),
        };
        if label.is_empty() {
            return Err(bad(format!("invalid label name {label:?}")));
        }
        let lp = self.string(&label);
        Ok(Node::Vector(format!(
            "SELECT arraySort(arrayPushBack(arrayFilter(x -> x.1 != {lp}, _g), ({lp}, _s))) AS labels, \
               _t AS t, toFloat64(count()) AS v, toUInt8(0) AS dn \
             FROM (SELECT {key} AS _g, _t, {text} AS _s FROM ({input})) \
             GROUP BY labels, t"
        )))
    }
}
