//! `/api/v1/status/{buildinfo,config,flags,runtimeinfo}` and the lists
//! Comet has nothing in yet: `/api/v1/targets` (Comet scrapes nothing),
//! `/api/v1/rules` and `/api/v1/alerts` (until the ruler lands).

use std::time::Instant;

use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::Api;
use super::respond::success;

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
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let data = json!({
        "startTime": start_time,
        "CWD": cwd,
        "reloadConfigSuccess": true,
        "lastConfigTime": start_time,
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

pub async fn rules(State(api): State<Api>) -> Response {
    let started = Instant::now();
    let data = json!({ "groups": [] });
    api.answer("rules", started, Ok(success(&data, &[])))
}

pub async fn alerts(State(api): State<Api>) -> Response {
    let started = Instant::now();
    let data = json!({ "alerts": [] });
    api.answer("alerts", started, Ok(success(&data, &[])))
}
