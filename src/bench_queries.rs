//! The queries `comet bench query` times, in its order: one list for the
//! bench and its test (`tests/bench_query.rs` includes this file).

/// Eight queries shaped like the panels of a service dashboard (also the
/// dashboard of `comet bench api`).
pub const DASHBOARD_QUERIES: [&str; 8] = [
    "rate(http_requests_total[5m])",
    "sum by (job) (rate(http_requests_total[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "topk(5, rate(http_requests_total[5m]))",
    "avg_over_time(node_memory_free_bytes[10m])",
    "sum(rate(http_requests_total{status=\"500\"}[5m])) / on() sum(rate(http_requests_total[5m]))",
    "count by (status) (http_requests_total)",
    "max_over_time(rate(http_requests_total[5m])[30m:1m])",
];

/// More panels, timed by `comet bench query` after the dashboard's.
pub const MORE_QUERIES: [&str; 4] = [
    "count by (job) (up)",
    "sum by (instance) (rate(http_requests_total{status!=\"200\"}[5m]))",
    "max by (job) (node_memory_free_bytes) / 1024 / 1024",
    "predict_linear(node_memory_free_bytes[1h], 4*3600) < 0",
];

/// The aggregating panels of `comet bench api`'s large dashboard: what a
/// dashboard over 100,000 series shows (sums, a quantile, a top k, counts,
/// a ratio), each answer a handful of series; all of them among the
/// queries above, whose answers the bench compares with Prometheus's.
pub const AGGREGATING_PANELS: [&str; 6] = [
    DASHBOARD_QUERIES[1],
    DASHBOARD_QUERIES[2],
    DASHBOARD_QUERIES[3],
    DASHBOARD_QUERIES[6],
    DASHBOARD_QUERIES[5],
    MORE_QUERIES[2],
];
