//! Operations that pass native histograms through without computing on
//! them: the set operators, comparisons between two vectors (two
//! histograms compare for (in)equality), `limitk`/`limit_ratio`, and
//! the functions that only ask whether a series is present (`absent`,
//! `timestamp`).
//!
//! They work on the mixed row form `(labels, t, v, h, is_h, dn)` of
//! [`super::native`]; a float operand joins it with an empty histogram.

use promql_parser::parser::AggregateExpr;

use super::binary::op_sql;
use super::native::no_histogram;
use super::native_arith::HistogramFloatOp;
use super::{Grid, Node, PlanError, Planner, Scalar};

/// The columns of a mixed relation, in order.
pub(crate) const MIXED_COLUMNS: &str = "labels, t, v, h, is_h, dn";

/// The columns of a float row relation, in order.
pub(crate) const FLOAT_COLUMNS: &str = "labels, t, v, dn";

/// Whether histograms `a` and `b` are the same, as Prometheus's
/// `FloatHistogram.Equals` decides it: every part but the counter-reset
/// hint, the counts and the sum bit for bit.
pub(crate) fn histograms_equal(a: &str, b: &str) -> String {
    let bits =
        |h: &str, counts: &str| format!("arrayMap(x -> reinterpretAsUInt64(x), {h}.{counts})");
    format!(
        "({a}.schema = {b}.schema AND {a}.zero_threshold = {b}.zero_threshold \
          AND reinterpretAsUInt64({a}.zero_count) = reinterpretAsUInt64({b}.zero_count) \
          AND reinterpretAsUInt64({a}.count) = reinterpretAsUInt64({b}.count) \
          AND reinterpretAsUInt64({a}.sum) = reinterpretAsUInt64({b}.sum) \
          AND {a}.positive_index = {b}.positive_index AND {pa} = {pb} \
          AND {a}.negative_index = {b}.negative_index AND {na} = {nb} \
          AND {a}.custom_values = {b}.custom_values)",
        pa = bits(a, "positive_counts"),
        pb = bits(b, "positive_counts"),
        na = bits(a, "negative_counts"),
        nb = bits(b, "negative_counts"),
    )
}

impl Planner {
    /// An instant vector in the mixed row form; `None` for what is not
    /// an instant vector.
    pub(crate) fn mixed_rows(&self, node: &Node, grid: &Grid) -> Option<String> {
        let floats = match node {
            Node::Mixed(rel) => return Some(rel.clone()),
            Node::Vector(rel) => rel.clone(),
            Node::Series(rel) => self.series_rows(rel, grid),
            _ => return None,
        };
        Some(format!(
            "SELECT labels, t, v, {none} AS h, toUInt8(0) AS is_h, dn FROM ({floats})",
            none = no_histogram()
        ))
    }

    /// Every sample of an instant vector, histograms included (with the
    /// value 0), as float rows: for what only asks which series are
    /// present at a step.
    pub(crate) fn present_rows(
        &self,
        node: Node,
        expr: &promql_parser::parser::Expr,
        grid: &Grid,
    ) -> Result<String, PlanError> {
        match node {
            Node::Mixed(rel) => Ok(format!("SELECT {FLOAT_COLUMNS} FROM ({rel})")),
            other => self.rows_of(other, expr, grid),
        }
    }

    /// Arithmetic or a trim between a mixed relation and a scalar: floats
    /// as without histograms, histograms as [`HistogramFloatOp`] says;
    /// what Prometheus leaves undefined (`h + 1`, `2 / h`, `x </ 1`) has
    /// no result.
    pub(crate) fn mixed_scalar(
        &mut self,
        op: &str,
        rel: &str,
        s: Scalar,
        scalar_left: bool,
    ) -> Result<Node, PlanError> {
        let (from, x) = self.with_scalar(rel, s, "p1");
        let trim = matches!(op, "</" | ">/");
        let float = if trim {
            "toFloat64(0)".to_string()
        } else if scalar_left {
            op_sql(op, &x, "a.v")?
        } else {
            op_sql(op, "a.v", &x)?
        };
        let histogram_op = HistogramFloatOp::of(op, !scalar_left);
        let histogram = histogram_op.map_or_else(no_histogram, |o| o.apply("a.h", &x));
        let keep = match (trim, histogram_op.is_some()) {
            (true, _) => "a.is_h",
            (false, true) => "1",
            (false, false) => "NOT a.is_h",
        };
        let dn = if trim { "a.dn" } else { "toUInt8(1)" };
        Ok(Node::Mixed(format!(
            "SELECT a.labels AS labels, a.t AS t, toFloat64({float}) AS v, \
               if(a.is_h, {histogram}, a.h) AS h, a.is_h AS is_h, {dn} AS dn \
             FROM {from} WHERE {keep}"
        )))
    }

    /// `-h`: floats negated, histograms times -1.
    pub(crate) fn mixed_negation(rel: &str) -> Node {
        let negated = HistogramFloatOp::Mul.apply("h", "-1");
        Node::Mixed(format!(
            "SELECT labels, t, -v AS v, if(is_h, {negated}, h) AS h, is_h, toUInt8(1) AS dn \
             FROM ({rel})"
        ))
    }

    /// `limitk` and `limit_ratio` over floats and histograms: the series
    /// are chosen by their labels alone, whatever their samples hold, so
    /// the choice is made on the rows as floats and the chosen rows keep
    /// their histograms.
    pub(crate) fn mixed_limit(
        &mut self,
        a: &AggregateExpr,
        rel: &str,
        grid: &Grid,
    ) -> Result<Node, PlanError> {
        let rows = Node::Vector(format!("SELECT {FLOAT_COLUMNS} FROM ({rel})"));
        let chosen = match self.aggregate_node(a, rows, grid)? {
            Node::Vector(chosen) => chosen,
            _ => return Err(PlanError::Unsupported("limitk over histograms".into())),
        };
        Ok(Node::Mixed(format!(
            "SELECT {MIXED_COLUMNS} FROM ({rel}) WHERE (labels, t) IN (SELECT labels, t FROM ({chosen}))"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Grid, PlanKind, PlanSettings, plan};

    fn settings() -> PlanSettings {
        super::super::native::with_histograms(&["h"])
    }

    #[test]
    fn set_operators_and_limits_keep_histograms() {
        for query in [
            "h and x",
            "x or h",
            "h unless on (job) x",
            "limitk(2, h)",
            "limit_ratio(0.5, h)",
            "h == h",
            "h != on (job) h",
        ] {
            let planned = plan(query, Grid::range(0, 60_000, 15_000), &settings())
                .unwrap_or_else(|e| panic!("{query}: {e}"));
            assert_eq!(planned.kind, PlanKind::Mixed, "{query}");
        }
    }

    #[test]
    fn comparisons_with_bool_and_presence_read_both_kinds() {
        for query in ["h == bool h", "absent(h)", "timestamp(h)"] {
            let planned = plan(query, Grid::instant(60_000), &settings())
                .unwrap_or_else(|e| panic!("{query}: {e}"));
            assert_eq!(planned.kind, PlanKind::Vector, "{query}");
            assert!(planned.sql.contains("FROM histograms"), "{query}");
        }
    }
}
