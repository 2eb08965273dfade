//! The Prometheus HTTP API (`/api/v1/...`) over the PromQL engine and the
//! series catalog, with Prometheus's JSON shapes, error types and status
//! codes, so Grafana, promtool and Prometheus API clients work unchanged.
//!
//! - `params`: request parameters as Prometheus parses them;
//! - `respond`: the JSON envelope, errors, and value encoding;
//! - `query`: `query`, `query_range`, `format_query`, `parse_query`;
//! - `catalog`: series, label names and values, metadata, exemplars and
//!   cardinality statistics from ClickHouse;
//! - `status`: build, config, flags, runtime info, targets (empty), and
//!   the ruler's rules and alerts;
//! - `cache`: the moka caches (matcher -> series, label names/values,
//!   step-aligned range-query results).

mod cache;
mod catalog;
mod features;
mod format;
mod params;
mod query;
mod respond;
mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use comet_schema::Store;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tracing::debug;

pub use cache::CacheSettings;

use crate::engine::Engine;
use crate::plan::PlanSettings;

/// Bounds on every query, with Prometheus-style errors beyond them.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// Longest a query may run (a request's `timeout` can only shorten it).
    pub query_timeout: Duration,
    /// Most rows ClickHouse may read for one query.
    pub max_samples: u64,
    /// Most series in one query result.
    pub max_series: u64,
    /// Most memory ClickHouse may use for one query, in bytes.
    pub max_memory_bytes: u64,
    /// Most points per series of a range query (Prometheus: 11,000).
    pub max_points_per_series: i64,
    /// Most series the series endpoint returns, and most values the label
    /// endpoints return, when the request sets no lower `limit`.
    pub max_catalog_results: u64,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            query_timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_series: 500_000,
            max_memory_bytes: 1 << 30,
            max_points_per_series: 11_000,
            max_catalog_results: 1_000_000,
        }
    }
}

/// Everything the API needs to know besides the store.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub plan: PlanSettings,
    pub limits: ApiLimits,
    pub cache: CacheSettings,
    /// Queries slower than this are logged with their PromQL and SQL.
    pub slow_query_threshold: Duration,
    /// `/api/v1/status/config`: the running configuration as YAML, secrets
    /// removed.
    pub config_yaml: String,
    /// `/api/v1/status/flags`: option name -> value.
    pub flags: BTreeMap<String, String>,
    /// How long samples are kept, for `/api/v1/status/runtimeinfo`.
    pub retention: String,
    pub version: String,
    /// The ruler behind `/api/v1/rules`, `/api/v1/alerts` and
    /// `POST /-/reload`; without one the lists are empty.
    pub ruler: Option<crate::rules::Ruler>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            plan: PlanSettings::default(),
            limits: ApiLimits::default(),
            cache: CacheSettings::default(),
            slow_query_threshold: Duration::from_secs(5),
            config_yaml: String::new(),
            flags: BTreeMap::new(),
            retention: "0s".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            ruler: None,
        }
    }
}

/// The API's metrics.
#[derive(Clone)]
struct ApiMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    rows_read: IntCounterVec,
    bytes_read: IntCounterVec,
    cache: IntCounterVec,
}

impl ApiMetrics {
    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "comet_api_requests_total",
                "Prometheus API requests by endpoint and status code.",
            ),
            &["endpoint", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "comet_api_request_duration_seconds",
                "Time to answer a Prometheus API request, by endpoint.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0,
            ]),
            &["endpoint"],
        )?;
        let rows_read = IntCounterVec::new(
            Opts::new(
                "comet_query_clickhouse_read_rows_total",
                "Rows ClickHouse read to answer queries, by endpoint.",
            ),
            &["endpoint"],
        )?;
        let bytes_read = IntCounterVec::new(
            Opts::new(
                "comet_query_clickhouse_read_bytes_total",
                "Bytes ClickHouse read to answer queries, by endpoint.",
            ),
            &["endpoint"],
        )?;
        let cache = IntCounterVec::new(
            Opts::new(
                "comet_query_cache_requests_total",
                "Cache lookups by cache and result (hit, miss; partial for range results \
                 of which only the newest steps were computed).",
            ),
            &["cache", "result"],
        )?;
        for c in [&requests, &rows_read, &bytes_read, &cache] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(duration.clone()))?;
        Ok(Self {
            requests,
            duration,
            rows_read,
            bytes_read,
            cache,
        })
    }
}

/// What the handlers share.
#[derive(Clone)]
struct Api {
    inner: Arc<ApiInner>,
}

struct ApiInner {
    engine: Engine,
    store: Store,
    settings: ApiSettings,
    metrics: ApiMetrics,
    caches: cache::Caches,
    started: SystemTime,
}

impl std::ops::Deref for Api {
    type Target = ApiInner;
    fn deref(&self) -> &ApiInner {
        &self.inner
    }
}

impl Api {
    /// Turns a handler's outcome into the response, counting it by
    /// endpoint and status code.
    fn answer(
        &self,
        endpoint: &str,
        started: Instant,
        outcome: Result<Response, respond::ApiError>,
    ) -> Response {
        let response = match outcome {
            Ok(response) => response,
            Err(error) => {
                debug!(endpoint, error_type = error.kind.as_str(), error = %error.message, "API error");
                error.into_response()
            }
        };
        self.metrics
            .requests
            .with_label_values(&[endpoint, response.status().as_str()])
            .inc();
        self.metrics
            .duration
            .with_label_values(&[endpoint])
            .observe(started.elapsed().as_secs_f64());
        response
    }
}

/// The router serving the Prometheus HTTP API under `/api/v1`.
pub fn router(
    store: Store,
    settings: ApiSettings,
    registry: &Registry,
) -> prometheus::Result<Router> {
    let metrics = ApiMetrics::new(registry)?;
    let caches = cache::Caches::new(&settings.cache, metrics.cache.clone());
    let api = Api {
        inner: Arc::new(ApiInner {
            engine: Engine::new(store.clone(), settings.plan.clone()),
            store,
            settings,
            metrics,
            caches,
            started: SystemTime::now(),
        }),
    };
    let reload = axum::routing::post(status::reload).put(status::reload);
    Ok(Router::new()
        .route("/-/reload", reload)
        .route("/api/v1/query", get(query::instant).post(query::instant))
        .route("/api/v1/query_range", get(query::range).post(query::range))
        .route(
            "/api/v1/format_query",
            get(query::format).post(query::format),
        )
        .route("/api/v1/parse_query", get(query::parse).post(query::parse))
        .route("/api/v1/series", get(catalog::series).post(catalog::series))
        .route("/api/v1/labels", get(catalog::labels).post(catalog::labels))
        .route("/api/v1/label/{name}/values", get(catalog::label_values))
        .route("/api/v1/metadata", get(catalog::metadata))
        .route(
            "/api/v1/query_exemplars",
            get(catalog::exemplars).post(catalog::exemplars),
        )
        .route("/api/v1/status/tsdb", get(catalog::tsdb))
        .route("/api/v1/status/buildinfo", get(status::buildinfo))
        .route("/api/v1/features", get(features::handler))
        .route("/api/v1/status/config", get(status::config))
        .route("/api/v1/status/flags", get(status::flags))
        .route("/api/v1/status/runtimeinfo", get(status::runtimeinfo))
        .route("/api/v1/targets", get(status::targets))
        .route("/api/v1/rules", get(status::rules))
        .route("/api/v1/alerts", get(status::alerts))
        .with_state(api))
}
