//! `/api/v1/status/{buildinfo,config,flags,runtimeinfo}`, `/api/v1/targets`
//! (empty: Comet scrapes nothing), the ruler's `/api/v1/rules` and
//! `/api/v1/alerts`, and `POST /-/reload` of the rule files.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Api;
use super::params::Params;
use super::respond::{ApiError, success};
use crate::rules::api::{RuleFilter, alerts_data, rules_data};
use crate::rules::group::GroupState;

/// The Prometheus release whose HTTP API Comet answers like. Clients such
/// as Grafana read `version` to decide which API features to use.
pub const PROMETHEUS_API_VERSION: &str = "2.53.0";

pub async fn buildinfo(State(api): State<Api>) -> Response {
    let started = Instant::now();
    let data = json!({
        "version": PROMETHEUS_API_VERSION,
        "revision": format!("comet-{}", api.settings.version),
        "branch": "HEAD",
        "buildUser": "comet",
        "buildDate": "",
        "goVersion": "",
    });
    api.answer("buildinfo", started, Ok(success(&data, &[])))
}

pub async fn config(State(api): State<Api>) -> Response {
    let started = Instant::now();
    let data = json!({ "yaml": api.settings.config_yaml });
    api.answer("config", started, Ok(success(&data, &[])))
}

pub async fn flags(State(api): State<Api>) -> Response {
    let started = Instant::now();
    api.answer("flags", started, Ok(success(&api.settings.flags, &[])))
}

pub async fn runtimeinfo(State(api): State<Api>) -> Response {
    let started = Instant::now();
    let start_time = humantime::format_rfc3339_millis(api.started).to_string();
    let (reload_ok, reloaded) = match &api.settings.ruler {
        Some(ruler) => {
            let (ok, at) = ruler.last_reload();
            (ok, humantime::format_rfc3339_millis(at).to_string())
        }
        None => (true, start_time.clone()),
    };
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let data = json!({
        "startTime": start_time,
        "CWD": cwd,
        "reloadConfigSuccess": reload_ok,
        "lastConfigTime": reloaded,
        "corruptionCount": 0,
        "goroutineCount": 0,
        "GOMAXPROCS": threads,
        "GOMEMLIMIT": 0,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": api.settings.retention,
    });
    api.answer("runtimeinfo", started, Ok(success(&data, &[])))
}

pub async fn targets(State(api): State<Api>) -> Response {
    let started = Instant::now();
    let data = json!({ "activeTargets": [], "droppedTargets": [], "droppedTargetCounts": {} });
    api.answer("targets", started, Ok(success(&data, &[])))
}

pub async fn rules(State(api): State<Api>, params: Params) -> Response {
    let started = Instant::now();
    let answer = RuleFilter::new(
        params.get("type"),
        params.all("rule_name[]"),
        params.all("rule_group[]"),
        params.all("file[]"),
    )
    .map_err(ApiError::bad_data)
    .map(|filter| success(&rules_data(&rule_groups(&api), &filter), &[]));
    api.answer("rules", started, answer)
}

pub async fn alerts(State(api): State<Api>) -> Response {
    let started = Instant::now();
    let groups = rule_groups(&api);
    api.answer("alerts", started, Ok(success(&alerts_data(&groups), &[])))
}

/// The ruler's groups (none without a ruler).
fn rule_groups(api: &Api) -> Vec<Arc<Mutex<GroupState>>> {
    api.settings
        .ruler
        .as_ref()
        .map(|r| r.groups())
        .unwrap_or_default()
}

/// `POST|PUT /-/reload`: re-reads the rule files (Prometheus's lifecycle
/// endpoint); the running rules stay when the new files are invalid.
pub async fn reload(State(api): State<Api>) -> Response {
    let Some(ruler) = &api.settings.ruler else {
        return StatusCode::OK.into_response();
    };
    match ruler.reload().await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
    }
}
