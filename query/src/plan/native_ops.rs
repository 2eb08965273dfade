//! Operations that pass native histograms through without computing on
//! them: the set operators, comparisons between two vectors (two
//! histograms compare for (in)equality), `limitk`/`limit_ratio`, and
//! the functions that only ask whether a series is present (`absent`,
//! `timestamp`).
//!
//! They work on the mixed row form `(labels, t, v, h, is_h, dn)` of
//! [`super::native`]; a float operand joins it with an empty histogram.

use promql_parser::parser::AggregateExpr;

use super::native::no_histogram;
use super::{Grid, Node, PlanError, Planner};

/// The columns of a mixed relation, in order.
pub(crate) const MIXED_COLUMNS: &str = "labels, t, v, h, is_h, dn";

/// The columns of a float row relation, in order.
pub(crate) const FLOAT_COLUMNS: &str = "labels, t, v, dn";

/// Whether two histogram columns hold the same histogram, as Prometheus's
/// `FloatHistogram.Equals` decides it: every part but the counter-reset
/// hint.
pub(crate) fn histograms_equal(a: &str, b: &str) -> String {
    let parts = |h: &str| {
        format!(
            "({h}.schema, {h}.zero_threshold, {h}.zero_count, {h}.count, {h}.sum, \
             {h}.positive_index, {h}.positive_counts, {h}.negative_index, \
             {h}.negative_counts, {h}.custom_values)"
        )
    };
    format!("({} = {})", parts(a), parts(b))
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
    use std::sync::Arc;

    use super::super::{Grid, PlanKind, PlanSettings, plan};

    fn settings() -> PlanSettings {
        PlanSettings {
            histogram_metrics: Arc::new(["h".to_string()].into_iter().collect()),
            ..PlanSettings::default()
        }
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
