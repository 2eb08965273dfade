//! The HTTP skeleton every API is mounted on: health, readiness, /metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use comet_schema::Store;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::sync::OnceCell;
use tower::ServiceExt;

/// What the skeleton's handlers share.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// What exists once start-up is done.
struct Ready {
    store: Store,
    /// The APIs (ingest, query).
    api: Router,
}

struct Inner {
    registry: Registry,
    /// Set once ClickHouse answered and the schema is migrated.
    ready: OnceCell<Ready>,
    shutting_down: AtomicBool,
}

impl AppState {
    pub fn new(registry: Registry) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry,
                ready: OnceCell::new(),
                shutting_down: AtomicBool::new(false),
            }),
        }
    }

    /// Mounts the APIs and marks start-up as done: from now on readiness
    /// follows ClickHouse.
    pub fn set_ready(&self, store: Store, api: Router) {
        let _ = self.inner.ready.set(Ready { store, api });
    }

    /// Readiness turns false while draining, so load balancers stop first.
    pub fn set_shutting_down(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .route("/metrics", get(metrics))
        .fallback(forward_to_api)
        .with_state(state)
}

/// Everything but the skeleton goes to the APIs, which exist only once
/// ClickHouse is up; until then the answer is 503 so senders retry.
async fn forward_to_api(State(state): State<AppState>, request: Request) -> Response {
    match state.inner.ready.get() {
        Some(ready) => match ready.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            "Comet is starting\n",
        )
            .into_response(),
    }
}

async fn healthy() -> &'static str {
    "Comet is Healthy.\n"
}

/// 200 once migrations are done and while ClickHouse answers a ping.
async fn ready(State(state): State<AppState>) -> Response {
    let not_ready = (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n");
    if state.inner.shutting_down.load(Ordering::SeqCst) {
        return not_ready.into_response();
    }
    match state.inner.ready.get() {
        Some(ready) if ready.store.ping().await.is_ok() => "Comet is Ready.\n".into_response(),
        _ => not_ready.into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&state.inner.registry.gather(), &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, encoder.format_type())], body).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}
