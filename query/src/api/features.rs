//! `/api/v1/features` (Prometheus 3.9+): what this server supports, by
//! category, in Prometheus's names, so a client such as Grafana can enable
//! the matching editor features. PromQL functions and aggregations are
//! probed through the planner itself (a call Comet cannot plan is `false`),
//! so the answer follows the code instead of a list kept beside it.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::State;
use axum::response::Response;

use super::Api;
use super::respond::success;
use crate::plan::{Grid, PlanError, PlanSettings, plan};

/// Categories of features, each feature enabled or not.
pub type Features = BTreeMap<&'static str, BTreeMap<String, bool>>;

/// Prometheus 3's PromQL functions, as its feature list names them.
const FUNCTIONS: [&str; 90] = [
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "double_exponential_smoothing",
    "end",
    "exp",
    "first_over_time",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_quantiles",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "hour",
    "idelta",
    "increase",
    "info",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "mad_over_time",
    "max_of",
    "max_over_time",
    "min_of",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "range",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_by_label",
    "sort_by_label_desc",
    "sort_desc",
    "sqrt",
    "start",
    "start_timestamp",
    "stddev_over_time",
    "stdvar_over_time",
    "step",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
    "vector",
    "year",
];

/// Prometheus 3's operators and aggregations, each with a query that uses
/// it.
const OPERATORS: [(&str, &str); 35] = [
    ("!=", "up != 1"),
    ("!~", "{job!~\"a\", __name__=\"up\"}"),
    ("%", "up % 2"),
    ("*", "up * up"),
    ("+", "up + up"),
    ("-", "up - up"),
    ("/", "up / up"),
    ("<", "up < 1"),
    ("</", "up </ 1"),
    ("<=", "up <= 1"),
    ("==", "up == 1"),
    ("=~", "{__name__=~\"up\"}"),
    (">", "up > 1"),
    (">/", "up >/ 1"),
    (">=", "up >= 1"),
    ("@", "up @ 100"),
    ("^", "up ^ 2"),
    ("and", "up and up"),
    ("atan2", "up atan2 up"),
    ("avg", "avg(up)"),
    ("bottomk", "bottomk(1, up)"),
    ("count", "count(up)"),
    ("count_values", "count_values(\"v\", up)"),
    ("group", "group(up)"),
    ("limit_ratio", "limit_ratio(0.5, up)"),
    ("limitk", "limitk(1, up)"),
    ("max", "max(up)"),
    ("min", "min(up)"),
    ("or", "up or up"),
    ("quantile", "quantile(0.5, up)"),
    ("stddev", "stddev(up)"),
    ("stdvar", "stdvar(up)"),
    ("sum", "sum(up)"),
    ("topk", "topk(1, up)"),
    ("unless", "up unless up"),
];

/// Whether Comet plans `query`, with `up` as a metric of floats or, for
/// what only native histograms take, of histograms.
fn plans(query: &str) -> bool {
    let grid = Grid::range(1_700_000_000_000, 1_700_000_600_000, 60_000);
    let histograms = PlanSettings {
        histogram_metrics: std::sync::Arc::new(["up".to_string()].into_iter().collect()),
        ..PlanSettings::default()
    };
    [PlanSettings::default(), histograms]
        .iter()
        .any(|settings| match plan(query, grid, settings) {
            Ok(_) => true,
            Err(PlanError::BadData(_) | PlanError::Unsupported(_)) => false,
        })
}

/// Argument lists that between them fit every PromQL function's
/// signature; the parser refuses the ones that do not fit.
const PROBE_ARGUMENTS: [&str; 15] = [
    "",
    "up",
    "up[5m]",
    "0.5",
    "0.5, up",
    "up[5m], 0.5",
    "0.5, up[5m]",
    "up[5m], 0.5, 0.5",
    "0.5, 0.5",
    "up, 0.5",
    "up, 0.5, 0.5",
    "0.5, 0.5, up",
    "up, \"q\", 0.5",
    "up, \"dst\", \"$1\", \"src\", \"(.*)\"",
    "up, \"dst\", \"-\", \"src\"",
];

/// Whether Comet evaluates function `name` (with some arguments it takes).
fn evaluates(name: &str) -> bool {
    PROBE_ARGUMENTS
        .iter()
        .any(|args| plans(&format!("{name}({args})")))
}

fn flags(pairs: &[(&str, bool)]) -> BTreeMap<String, bool> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Everything this build supports (computed once: the planner's answers
/// do not change while it runs).
pub fn features() -> &'static Features {
    static FEATURES: OnceLock<Features> = OnceLock::new();
    FEATURES.get_or_init(|| {
        let mut all = Features::new();
        all.insert(
            "api",
            flags(&[
                ("admin", false),
                ("exclude_alerts", false),
                ("label_values_match", true),
                ("lifecycle", true),
                ("otlp_write_receiver", true),
                ("query_stats", true),
                ("query_warnings", true),
                ("remote_write_receiver", true),
                ("time_range_labels", true),
                ("time_range_series", true),
            ]),
        );
        all.insert(
            "promql",
            flags(&[
                ("anchored", plans("rate(up[5m] anchored)")),
                ("at_modifier", true),
                ("bool", true),
                ("by", true),
                ("delayed_name_removal", true),
                (
                    "duration_expr",
                    plans("rate(up[step() + 1m] offset -(1h * 2))"),
                ),
                ("fill", plans("up + fill(0) up")),
                ("fill_left", plans("up + fill_left(0) up")),
                ("fill_right", plans("up + fill_right(0) up")),
                ("group_left", true),
                ("group_right", true),
                ("ignoring", true),
                ("negative_offset", true),
                ("offset", true),
                ("on", true),
                ("per_query_lookback_delta", true),
                ("per_step_stats", false),
                ("smoothed", plans("rate(up[5m] smoothed) + up smoothed")),
                ("subqueries", true),
                ("type_and_unit_labels", false),
                ("without", true),
            ]),
        );
        all.insert(
            "promql_functions",
            FUNCTIONS
                .iter()
                .map(|f| (f.to_string(), evaluates(f)))
                .collect(),
        );
        all.insert(
            "promql_operators",
            OPERATORS
                .iter()
                .map(|(op, query)| (op.to_string(), plans(query)))
                .collect(),
        );
        all.insert(
            "rules",
            flags(&[
                ("concurrent_rule_eval", false),
                ("keep_firing_for", true),
                ("query_offset", true),
            ]),
        );
        all.insert(
            "prometheus",
            flags(&[
                ("agent_mode", false),
                ("auto_reload_config", false),
                ("server_mode", true),
            ]),
        );
        all
    })
}

pub async fn handler(State(api): State<Api>) -> Response {
    let started = Instant::now();
    api.answer("features", started, Ok(success(features(), &[])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_comet_evaluates_are_enabled() {
        let functions = &features()["promql_functions"];
        for f in [
            "rate",
            "histogram_quantile",
            "histogram_fraction",
            "histogram_quantiles",
            "clamp",
            "label_replace",
            "label_join",
            "info",
            "vector",
            "time",
        ] {
            assert!(functions[f], "{f}");
        }
        // Functions of native histograms alone, and what is not there.
        assert!(functions["histogram_count"]);
        assert!(!functions["start_timestamp"]);
        assert_eq!(functions.len(), FUNCTIONS.len());
        let operators = &features()["promql_operators"];
        for op in ["+", "atan2", "topk", "limitk", "count_values", "@", "=~"] {
            assert!(operators[op], "{op}");
        }
        // The trim operators, which only trim native histograms.
        assert!(operators[">/"] && operators["</"]);
        for feature in ["fill", "anchored", "smoothed", "duration_expr"] {
            assert!(features()["promql"][feature], "{feature}");
        }
    }
}
