//! Every dashboard in `grafana/dashboards/` runs unchanged on Comet and
//! agrees with Prometheus.
//!
//! Two real node_exporters are scraped every second by a real Prometheus
//! (3.5 LTS), which also scrapes itself and Comet's own /metrics and
//! remote-writes everything to Comet. After the run the scrape targets are
//! removed (by a config reload) and the remote-write queue drains, so Comet
//! holds exactly what Prometheus's TSDB holds. Then every templating query
//! and every panel target of every dashboard (panels nested in rows
//! included, repeated rows once per value) is expanded the way Grafana
//! expands it and sent, as Grafana sends it, to both servers: each must
//! succeed on both and give the same series with the same values.
//!
//! The Grafana rules followed (Grafana 10-12, `public/app/features/
//! templating`, `packages/grafana-prometheus`, `pkg/promlib`):
//! - `$__interval`: range / max data points rounded to a "nice" interval,
//!   at least the data source's `timeInterval` (the scrape interval) or the
//!   target's own min interval; it is also the query_range step.
//! - `$__rate_interval` = max($__interval + scrape interval, 4 x scrape
//!   interval); `$__range` = the range in whole seconds + `s`, `$__range_s`,
//!   `$__range_ms`; start and end aligned down to the step.
//! - `$var`, `${var}`, `${var:fmt}`, `[[var]]`: a multi-value or All
//!   variable becomes `(a|b)` of regex-escaped values (a lone value just
//!   escaped); All with a custom all value becomes that value as is.
//! - `label_values(label)` -> `/api/v1/label/<label>/values`,
//!   `label_values(selector, label)` -> the same with `match[]` (the
//!   Prometheus >= 2.24 path; the `/api/v1/series` path older versions use
//!   is compared too), `query_result(expr)` -> an instant query,
//!   `label_names()` -> labels.
//!
//! The reference is Prometheus 3.5 LTS, whose semantics Comet follows
//! (left-open range windows, 3.x rate extrapolation), so queries are
//! evaluated on whole seconds as Grafana sends them: a window edge that
//! lands exactly on a scrape counts the same on both sides.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::CometProcess;
use common::peers::{NodeExporter, Prometheus, sum_metric};
use serde_json::Value;

/// Scrape interval of the test Prometheus (and the data source's
/// `timeInterval` as Grafana would be configured for it).
const SCRAPE_SECONDS: u64 = 1;
/// How long Prometheus scrapes and writes before the comparison.
const RUN: Duration = Duration::from_secs(36);
/// The compared range starts this long after the run started, so that rate
/// windows at its start are full.
const RANGE_START_OFFSET: u64 = 10;
/// Relative and absolute tolerance of value comparisons: both servers hold
/// the same samples; only floating-point summation order may differ.
const REL_TOLERANCE: f64 = 1e-6;
const ABS_TOLERANCE: f64 = 1e-9;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

fn dashboards_dir() -> PathBuf {
    common::workspace_dir().join("grafana/dashboards")
}

// ---------------------------------------------------------------------
// Reading dashboards
// ---------------------------------------------------------------------

/// One query target of a panel.
#[derive(Debug, Clone)]
struct Target {
    expr: String,
    instant: bool,
    /// The target's (or panel's) min interval, e.g. `10s`.
    min_interval: Option<String>,
    interval_factor: u64,
}

/// A panel with its targets, and the variable its row or itself repeats by.
#[derive(Debug, Clone)]
struct Panel {
    title: String,
    repeat: Option<String>,
    max_data_points: u64,
    targets: Vec<Target>,
}

/// A templating variable.
#[derive(Debug, Clone)]
struct Variable {
    name: String,
    kind: String,
    query: String,
    multi: bool,
    include_all: bool,
    all_value: Option<String>,
    regex: String,
    sort: u64,
}

struct Dashboard {
    file: String,
    variables: Vec<Variable>,
    panels: Vec<Panel>,
}

fn read_dashboards() -> Vec<Dashboard> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dashboards_dir())
        .expect("grafana/dashboards exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "expected the dashboards, found {files:?}");
    files.iter().map(|f| read_dashboard(f)).collect()
}

fn read_dashboard(path: &Path) -> Dashboard {
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).unwrap();
    let doc: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));
    assert!(doc["uid"].is_string(), "{file} has no uid");
    assert!(doc["title"].is_string(), "{file} has no title");
    let variables = doc["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| Variable {
            name: v["name"].as_str().expect("variable name").to_string(),
            kind: v["type"].as_str().unwrap_or("query").to_string(),
            query: match &v["query"] {
                Value::String(s) => s.clone(),
                Value::Object(o) => o
                    .get("query")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            },
            multi: v["multi"].as_bool().unwrap_or(false),
            include_all: v["includeAll"].as_bool().unwrap_or(false),
            all_value: v["allValue"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            regex: v["regex"].as_str().unwrap_or_default().to_string(),
            sort: v["sort"].as_u64().unwrap_or(0),
        })
        .collect();

    // Top-level panels; a row's panels are nested when it is collapsed and
    // follow it otherwise. A row's repeat applies to all of its panels.
    let mut panels = Vec::new();
    let mut row_repeat: Option<String> = None;
    for top in doc["panels"].as_array().expect("panels") {
        if top["type"] == "row" {
            row_repeat = top["repeat"].as_str().map(str::to_string);
            for nested in top["panels"].as_array().into_iter().flatten() {
                panels.push(read_panel(&file, nested, row_repeat.clone()));
            }
        } else {
            panels.push(read_panel(&file, top, row_repeat.clone()));
        }
    }
    Dashboard {
        file,
        variables,
        panels,
    }
}

fn read_panel(file: &str, panel: &Value, row_repeat: Option<String>) -> Panel {
    let title = panel["title"].as_str().unwrap_or("").to_string();
    let repeat = panel["repeat"].as_str().map(str::to_string).or(row_repeat);
    let panel_interval = panel["interval"].as_str().map(str::to_string);
    // Grafana's default: the panel's width in pixels (24 columns over a
    // 1920-pixel screen).
    let width = panel["gridPos"]["w"].as_u64().unwrap_or(12) * 80;
    let max_data_points = panel["maxDataPoints"].as_u64().unwrap_or(width);
    let targets = panel["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| !t["hide"].as_bool().unwrap_or(false))
        .filter_map(|t| {
            let expr = t["expr"].as_str()?.to_string();
            Some(Target {
                expr,
                instant: t["instant"].as_bool().unwrap_or(false)
                    && !t["range"].as_bool().unwrap_or(false),
                min_interval: t["interval"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .or_else(|| panel_interval.clone()),
                interval_factor: t["intervalFactor"].as_u64().unwrap_or(1).max(1),
            })
        })
        .collect::<Vec<_>>();
    assert!(
        panel["type"] == "text" || !targets.is_empty(),
        "{file}: panel {title:?} has no query"
    );
    Panel {
        title,
        repeat,
        max_data_points,
        targets,
    }
}

// ---------------------------------------------------------------------
// Grafana's interpolation
// ---------------------------------------------------------------------

/// A variable's current value.
#[derive(Debug, Clone)]
enum Current {
    /// One value (a single-value variable, or one repetition).
    One(String),
    /// Several selected values, or All without a custom all value.
    Many(Vec<String>),
    /// All with a custom all value, used as is.
    Custom(String),
}

/// What a variable is formatted with: `multi`/`includeAll` variables are
/// regex-escaped (the query puts them in `=~`).
#[derive(Debug, Clone)]
struct Bound {
    current: Current,
    regex_context: bool,
}

/// `prometheusSpecialRegexEscape`: regex metacharacters get a backslash,
/// itself escaped for the PromQL string the value ends up in.
fn regex_escape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\\\\\"),
            '$' | '^' | '*' | '{' | '}' | '[' | ']' | '\'' | '+' | '?' | '.' | '(' | ')' | '|' => {
                out.push_str("\\\\");
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `prometheusRegularEscape`: backslashes and quotes only.
fn regular_escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "\\\\'")
}

fn format_bound(bound: &Bound) -> String {
    match &bound.current {
        Current::Custom(v) => v.clone(),
        Current::One(v) if bound.regex_context => regex_escape(v),
        Current::One(v) => regular_escape(v),
        Current::Many(values) => {
            let escaped: Vec<String> = values.iter().map(|v| regex_escape(v)).collect();
            match escaped.len() {
                1 => escaped[0].clone(),
                _ => format!("({})", escaped.join("|")),
            }
        }
    }
}

/// The built-in time variables of one query.
#[derive(Debug, Clone)]
struct TimeVars {
    interval_ms: u64,
    rate_interval_ms: u64,
    range_ms: u64,
}

impl TimeVars {
    fn value(&self, name: &str) -> Option<String> {
        let range_s = (self.range_ms as f64 / 1000.0).round() as u64;
        Some(match name {
            "__interval" => format_interval(self.interval_ms),
            "__interval_ms" => self.interval_ms.to_string(),
            "__rate_interval" => go_duration(self.rate_interval_ms),
            "__rate_interval_ms" => self.rate_interval_ms.to_string(),
            "__range" => format!("{range_s}s"),
            "__range_s" => range_s.to_string(),
            "__range_ms" => self.range_ms.to_string(),
            _ => return None,
        })
    }
}

/// Grafana's `gtime.FormatInterval`: the largest unit, truncated.
fn format_interval(ms: u64) -> String {
    const UNITS: [(u64, &str); 6] = [
        (365 * 86_400_000, "y"),
        (7 * 86_400_000, "w"),
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    for (size, unit) in UNITS {
        if ms >= size {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Go's `time.Duration.String()` for whole milliseconds (`4s`, `1m0s`).
fn go_duration(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let secs = if rest % 1000 == 0 {
        format!("{}s", rest / 1000)
    } else {
        format!("{}s", rest as f64 / 1000.0)
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// Replaces `$name`, `${name}`, `${name:format}` and `[[name]]` the way
/// Grafana's template service does; unknown names stay as they are.
fn interpolate(text: &str, vars: &BTreeMap<String, Bound>, time: Option<&TimeVars>) -> String {
    let lookup = |name: &str| -> Option<String> {
        if let Some(t) = time
            && let Some(v) = t.value(name)
        {
            return Some(v);
        }
        vars.get(name).map(format_bound)
    };
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("${")
            && let Some(end) = after.find('}')
        {
            let inner = &after[..end];
            let name = inner.split(':').next().unwrap_or_default();
            let format = inner.split_once(':').map(|(_, f)| f);
            if let Some(value) = lookup(name) {
                let value = match (format, vars.get(name)) {
                    (Some("raw"), Some(Bound { current, .. })) => match current {
                        Current::One(v) | Current::Custom(v) => v.clone(),
                        Current::Many(vs) => vs.join(","),
                    },
                    (Some("regex"), Some(b)) => format_bound(&Bound {
                        current: b.current.clone(),
                        regex_context: true,
                    }),
                    _ => value,
                };
                out.push_str(&value);
                rest = &after[end + 1..];
                continue;
            }
        }
        if let Some(after) = rest.strip_prefix("[[")
            && let Some(end) = after.find("]]")
            && let Some(value) = lookup(after[..end].split(':').next().unwrap_or_default())
        {
            out.push_str(&value);
            rest = &after[end + 2..];
            continue;
        }
        if let Some(after) = rest.strip_prefix('$') {
            let len = after.find(|c: char| !word(c)).unwrap_or(after.len());
            if len > 0
                && let Some(value) = lookup(&after[..len])
            {
                out.push_str(&value);
                rest = &after[len..];
                continue;
            }
        }
        let c = rest.chars().next().unwrap();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Grafana's `rangeutil.roundInterval`.
fn round_interval(ms: u64) -> u64 {
    const STEPS: [(u64, u64); 28] = [
        (15, 10),
        (35, 20),
        (75, 50),
        (150, 100),
        (350, 200),
        (750, 500),
        (1_500, 1_000),
        (3_500, 2_000),
        (7_500, 5_000),
        (12_500, 10_000),
        (17_500, 15_000),
        (25_000, 20_000),
        (45_000, 30_000),
        (90_000, 60_000),
        (210_000, 120_000),
        (450_000, 300_000),
        (750_000, 600_000),
        (1_050_000, 900_000),
        (1_500_000, 1_200_000),
        (2_700_000, 1_800_000),
        (5_400_000, 3_600_000),
        (9_000_000, 7_200_000),
        (16_200_000, 10_800_000),
        (32_400_000, 21_600_000),
        (86_400_000, 43_200_000),
        (604_800_000, 86_400_000),
        (1_814_400_000, 604_800_000),
        (3_628_800_000, 2_592_000_000),
    ];
    STEPS
        .iter()
        .find(|(below, _)| ms < *below)
        .map_or(31_536_000_000, |(_, v)| *v)
}

/// A duration like `15s`, `1m`, `500ms` in milliseconds.
fn parse_interval(text: &str) -> u64 {
    let text = text.trim_start_matches('>');
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n
        .parse()
        .unwrap_or_else(|_| panic!("bad interval {text:?}"));
    n * match unit {
        "ms" => 1,
        "s" | "" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => panic!("bad interval unit {other:?} in {text:?}"),
    }
}

/// The step and time variables of one target over `range_ms`. The target's
/// min interval, when set, is both the lower bound of `$__interval` and the
/// scrape interval `$__rate_interval` assumes (pkg/promlib).
fn time_vars(target: &Target, max_data_points: u64, range_ms: u64) -> TimeVars {
    let scrape_ms = target
        .min_interval
        .as_deref()
        .map_or(SCRAPE_SECONDS * 1000, parse_interval);
    let interval = round_interval(range_ms / max_data_points.max(1)).max(scrape_ms);
    // At most 11000 points per series.
    let safe = round_interval(range_ms / 11_000);
    let interval_ms = interval.max(safe) * target.interval_factor;
    TimeVars {
        interval_ms,
        rate_interval_ms: (interval_ms + scrape_ms).max(4 * scrape_ms),
        range_ms,
    }
}

// ---------------------------------------------------------------------
// Talking to both servers
// ---------------------------------------------------------------------

/// One server's answer: `data`, or what went wrong.
type Answer = Result<Value, String>;

struct Servers {
    client: reqwest::Client,
    comet: String,
    prometheus: String,
    /// Time spent waiting for each server's answers to the compared
    /// queries (Comet, Prometheus): reported, never asserted.
    spent: std::sync::Mutex<(Duration, Duration)>,
}

impl Servers {
    /// POSTs a form to `path` on `base` (as Grafana's data source does
    /// for queries); returns `data`, or the error text.
    async fn post(&self, base: &str, path: &str, form: &[(&str, String)]) -> Answer {
        let request = self.client.post(format!("{base}{path}")).form(form);
        Self::send(request, path).await
    }

    /// GET with `params` in the URL (Grafana's label values and series
    /// requests).
    async fn get(&self, base: &str, path: &str, params: &[(&str, String)]) -> Answer {
        let request = self.client.get(format!("{base}{path}")).query(params);
        Self::send(request, path).await
    }

    async fn send(request: reqwest::RequestBuilder, path: &str) -> Answer {
        let response = request.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| e.to_string())?;
        let value: Value =
            serde_json::from_str(&body).map_err(|e| format!("{status}: bad JSON ({e}): {body}"))?;
        if !status.is_success() || value["status"] != "success" {
            return Err(format!("{status}: {body}"));
        }
        Ok(value["data"].clone())
    }

    /// The same POST to both, one after the other: (Comet, Prometheus).
    async fn both(&self, path: &str, form: &[(&str, String)]) -> (Answer, Answer) {
        let started = Instant::now();
        let comet = self.post(&self.comet, path, form).await;
        let comet_took = started.elapsed();
        let started = Instant::now();
        let prometheus = self.post(&self.prometheus, path, form).await;
        let prometheus_took = started.elapsed();
        if let Ok(mut spent) = self.spent.lock() {
            spent.0 += comet_took;
            spent.1 += prometheus_took;
        }
        (comet, prometheus)
    }

    /// The same GET to both: (Comet, Prometheus).
    async fn both_get(&self, path: &str, params: &[(&str, String)]) -> (Answer, Answer) {
        (
            self.get(&self.comet, path, params).await,
            self.get(&self.prometheus, path, params).await,
        )
    }
}

/// A query result as comparable series: labels -> [(t, value)].
fn series_of(data: &Value) -> BTreeMap<String, Vec<(f64, String)>> {
    let point = |p: &Value| -> (f64, String) {
        (
            p[0].as_f64().expect("timestamp"),
            p[1].as_str().expect("value string").to_string(),
        )
    };
    let mut out = BTreeMap::new();
    match data["resultType"].as_str() {
        Some("scalar") | Some("string") => {
            out.insert("{}".to_string(), vec![point(&data["result"])]);
        }
        _ => {
            for s in data["result"].as_array().expect("result array") {
                let labels: BTreeMap<String, String> =
                    serde_json::from_value(s["metric"].clone()).expect("labels");
                let mut points: Vec<(f64, String)> = s["values"]
                    .as_array()
                    .map(|vs| vs.iter().map(point).collect())
                    .unwrap_or_default();
                if s["value"].is_array() {
                    points.push(point(&s["value"]));
                }
                out.insert(format!("{labels:?}"), points);
            }
        }
    }
    out
}

fn close(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) if x.is_nan() && y.is_nan() => true,
        (Ok(x), Ok(y)) => (x - y).abs() <= ABS_TOLERANCE + REL_TOLERANCE * x.abs().max(y.abs()),
        _ => false,
    }
}

/// Why two results differ, if they do.
fn difference(comet: &Value, prometheus: &Value) -> Option<String> {
    if comet["resultType"] != prometheus["resultType"] {
        return Some(format!(
            "result types {} vs {}",
            comet["resultType"], prometheus["resultType"]
        ));
    }
    let (c, p) = (series_of(comet), series_of(prometheus));
    let (ck, pk): (BTreeSet<_>, BTreeSet<_>) = (c.keys().collect(), p.keys().collect());
    if ck != pk {
        return Some(format!(
            "series differ: only on Comet {:?}; only on Prometheus {:?}",
            ck.difference(&pk).collect::<Vec<_>>(),
            pk.difference(&ck).collect::<Vec<_>>()
        ));
    }
    for (labels, cp) in &c {
        let pp = &p[labels];
        if cp.len() != pp.len() {
            return Some(format!(
                "{labels}: {} points on Comet, {} on Prometheus\ncomet: {cp:?}\nprometheus: {pp:?}",
                cp.len(),
                pp.len()
            ));
        }
        for ((ct, cv), (pt, pv)) in cp.iter().zip(pp) {
            if (ct - pt).abs() > 1e-6 || !close(cv, pv) {
                return Some(format!(
                    "{labels}: at {ct} Comet has {cv}, Prometheus at {pt} has {pv}"
                ));
            }
        }
    }
    None
}

fn has_data(data: &Value) -> bool {
    match data["resultType"].as_str() {
        Some("scalar") | Some("string") => true,
        _ => data["result"].as_array().is_some_and(|r| !r.is_empty()),
    }
}

// ---------------------------------------------------------------------
// Variables
// ---------------------------------------------------------------------

/// Runs a variable's query on both servers; they must agree. Returns the
/// options (before regex filtering and sorting).
async fn variable_options(
    servers: &Servers,
    query: &str,
    start: u64,
    end: u64,
    failures: &mut Vec<String>,
) -> Vec<String> {
    let query = query.trim();
    let time = [("start", start.to_string()), ("end", end.to_string())];
    let inner = |prefix: &str| -> Option<String> {
        query
            .strip_prefix(prefix)
            .and_then(|q| q.trim().strip_prefix('('))
            .and_then(|q| q.strip_suffix(')'))
            .map(|q| q.trim().to_string())
    };
    let mut compared: Vec<(String, Answer, Answer)> = Vec::new();
    let values_of = |data: &Value| -> Vec<String> {
        data.as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let options = if let Some(args) = inner("label_values") {
        let (selector, label) = match args.rfind(',') {
            Some(i) => (
                Some(args[..i].trim().to_string()),
                args[i + 1..].trim().to_string(),
            ),
            None => (None, args.clone()),
        };
        let mut form = time.to_vec();
        if let Some(selector) = &selector {
            form.push(("match[]", selector.clone()));
        }
        let path = format!("/api/v1/label/{label}/values");
        // Grafana sends label values requests as GET (the API has no POST).
        let (c, p) = servers.both_get(&path, &form).await;
        let options = c.as_ref().map(values_of).unwrap_or_default();
        compared.push((format!("{path} {form:?}"), c, p));
        if let Some(selector) = &selector {
            // The /api/v1/series path of Prometheus < 2.24.
            let form = vec![
                ("match[]", selector.clone()),
                ("start", start.to_string()),
                ("end", end.to_string()),
            ];
            let (c, p) = servers.both_get("/api/v1/series", &form).await;
            let label_set = |r: &Answer| -> Answer {
                r.clone().map(|data| {
                    let set: BTreeSet<String> = data
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s[&label].as_str().map(str::to_string))
                        .collect();
                    Value::from(set.into_iter().collect::<Vec<_>>())
                })
            };
            let (c2, p2) = (label_set(&c), label_set(&p));
            if let Ok(series) = &c
                && let Ok(prom) = &p
                && series.as_array().map(Vec::len) != prom.as_array().map(Vec::len)
            {
                failures.push(format!(
                    "variable {query}: /api/v1/series gives {} series on Comet, {} on Prometheus",
                    series.as_array().map_or(0, Vec::len),
                    prom.as_array().map_or(0, Vec::len)
                ));
            }
            compared.push((format!("/api/v1/series {form:?}"), c2, p2));
        }
        options
    } else if let Some(expr) = inner("query_result") {
        let form = vec![("query", expr.clone()), ("time", end.to_string())];
        let (c, p) = servers.both("/api/v1/query", &form).await;
        let options = c
            .as_ref()
            .ok()
            .map(|data| {
                series_of(data)
                    .into_iter()
                    .flat_map(|(labels, points)| {
                        points
                            .into_iter()
                            .map(move |(t, v)| format!("{labels} {v} {t}"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        compared.push((format!("query_result({expr})"), c, p));
        options
    } else if query.starts_with("label_names") {
        let (c, p) = servers.both_get("/api/v1/labels", &time).await;
        let options = c.as_ref().map(values_of).unwrap_or_default();
        compared.push(("/api/v1/labels".to_string(), c, p));
        options
    } else {
        panic!("unsupported variable query {query:?}");
    };
    for (what, c, p) in compared {
        match (c, p) {
            (Ok(c), Ok(p)) => {
                let sorted = |v: &Value| -> Vec<String> {
                    let mut s = values_of(v);
                    s.sort();
                    s
                };
                if c != p && sorted(&c) != sorted(&p) {
                    failures.push(format!(
                        "variable {query}: {what}: Comet {c} vs Prometheus {p}"
                    ));
                }
            }
            (c, p) => failures.push(format!(
                "variable {query}: {what} failed: Comet {c:?}, Prometheus {p:?}"
            )),
        }
    }
    options
}

/// Resolves a dashboard's variables in order, each as Grafana does on load:
/// All where offered, else the first option.
async fn resolve_variables(
    servers: &Servers,
    dashboard: &Dashboard,
    start: u64,
    end: u64,
    failures: &mut Vec<String>,
    counts: &mut Counts,
) -> (BTreeMap<String, Bound>, BTreeMap<String, Vec<String>>) {
    let mut bound = BTreeMap::new();
    let mut options_of = BTreeMap::new();
    for var in &dashboard.variables {
        let mut options: Vec<String> = match var.kind.as_str() {
            "query" => {
                let query = interpolate(&var.query, &bound, None);
                counts.variables += 1;
                let options = variable_options(servers, &query, start, end, failures).await;
                if !options.is_empty() {
                    counts.variables_with_data += 1;
                }
                options
            }
            "custom" => var.query.split(',').map(|s| s.trim().to_string()).collect(),
            "constant" | "textbox" => vec![var.query.clone()],
            "interval" => var.query.split(',').map(|s| s.trim().to_string()).collect(),
            // A data source variable selects the data source, not a query.
            "datasource" | "adhoc" => continue,
            other => panic!("{}: unsupported variable type {other}", dashboard.file),
        };
        assert!(
            var.regex.is_empty(),
            "{}: variable {}: regex filters are not supported by this test",
            dashboard.file,
            var.name
        );
        match var.sort {
            0 => {}
            1 | 3 | 5 => options.sort(),
            _ => {
                options.sort();
                options.reverse();
            }
        }
        options.dedup();
        let current = if var.include_all {
            match &var.all_value {
                Some(all) => Current::Custom(all.clone()),
                None => Current::Many(options.clone()),
            }
        } else if let Some(first) = options.first() {
            if var.multi {
                Current::Many(vec![first.clone()])
            } else {
                Current::One(first.clone())
            }
        } else {
            Current::One(String::new())
        };
        bound.insert(
            var.name.clone(),
            Bound {
                current,
                regex_context: var.multi || var.include_all,
            },
        );
        options_of.insert(var.name.clone(), options);
    }
    (bound, options_of)
}

// ---------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------

#[derive(Debug, Default)]
struct Counts {
    panels: usize,
    /// Runs of repeated panels (one per value of the variable).
    repetitions: usize,
    queries: usize,
    with_data: usize,
    agreed: usize,
    variables: usize,
    variables_with_data: usize,
}

/// The test Prometheus's configuration; `targets` (node_exporters and
/// Comet) `None` keeps the jobs but scrapes nothing.
fn prometheus_config(
    targets: Option<(&[String], &str)>,
    comet: &CometProcess,
    self_address: &str,
) -> String {
    let (node, comet_target) = match targets {
        Some((nodes, comet)) => (format!("{nodes:?}"), format!("['{comet}']")),
        None => ("[]".to_string(), "[]".to_string()),
    };
    let own = if targets.is_some() {
        format!("['{self_address}']")
    } else {
        "[]".to_string()
    };
    format!(
        r#"global:
  scrape_interval: {SCRAPE_SECONDS}s
  scrape_timeout: {SCRAPE_SECONDS}s
  evaluation_interval: 1m
scrape_configs:
  - job_name: node
    static_configs:
      - targets: {node}
  - job_name: prometheus
    static_configs:
      - targets: {own}
  - job_name: comet
    static_configs:
      - targets: {comet_target}
remote_write:
  - url: {url}
    remote_timeout: 30s
    queue_config:
      batch_send_deadline: 1s
      max_samples_per_send: 2000
"#,
        url = comet.url("/api/v1/write")
    )
}

/// Remote-write counters summed over queues.
async fn remote_counters(prometheus: &Prometheus) -> (f64, f64, f64, f64) {
    let text = prometheus.metrics_text().await;
    (
        sum_metric(&text, "prometheus_remote_storage_samples_in_total"),
        sum_metric(&text, "prometheus_remote_storage_samples_total"),
        sum_metric(&text, "prometheus_remote_storage_samples_pending"),
        sum_metric(&text, "prometheus_remote_storage_samples_failed_total")
            + sum_metric(&text, "prometheus_remote_storage_samples_dropped_total"),
    )
}

/// Sends some API requests to Comet during the run, so the overview's
/// query panels have data to show (what Grafana itself would send).
async fn exercise_api(servers: &Servers, now: u64) {
    let range = [
        (
            "query",
            "sum by (mode) (rate(node_cpu_seconds_total[4s]))".to_string(),
        ),
        ("start", (now - 20).to_string()),
        ("end", now.to_string()),
        ("step", "1".to_string()),
    ];
    let instant = [("query", "up".to_string()), ("time", now.to_string())];
    let labels = [("start", (now - 20).to_string()), ("end", now.to_string())];
    for _ in 0..3 {
        let _ = servers
            .post(&servers.comet, "/api/v1/query_range", &range)
            .await;
        let _ = servers
            .post(&servers.comet, "/api/v1/query", &instant)
            .await;
        let _ = servers
            .post(&servers.comet, "/api/v1/labels", &labels)
            .await;
        let _ = servers
            .get(&servers.comet, "/api/v1/label/job/values", &labels)
            .await;
    }
    // A bad query: an error on the errors panel.
    let _ = servers
        .post(
            &servers.comet,
            "/api/v1/query",
            &[("query", "rate(up".to_string())],
        )
        .await;
    // OTLP in (a second source on the ingest panels; the metric names are
    // no dashboard's), and a remote-write request that is not snappy (a
    // rejected request).
    let shape = comet_ingest::otlp::synthetic::OtlpShape {
        metrics: 2,
        points: 2,
        attributes: 2,
    };
    let otlp =
        comet_ingest::otlp::synthetic::request(shape, "dashboards_test", 0, now * 1_000_000_000, 1);
    let _ = servers
        .client
        .post(format!("{}/api/v1/otlp/v1/metrics", servers.comet))
        .header("Content-Type", "application/x-protobuf")
        .body(prost::Message::encode_to_vec(&otlp))
        .send()
        .await;
    let _ = servers
        .client
        .post(format!("{}/api/v1/write", servers.comet))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body("not snappy")
        .send()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_agree_with_prometheus() {
    let dashboards = read_dashboards();
    let test_started = Instant::now();

    let (mut comet, _db) = common::serve_new_database("comet_dash", &[]);
    comet.wait_ready(Duration::from_secs(120)).await;
    // Two node_exporters: two instances for the multi-value variables and
    // the repeated row.
    let nodes = [NodeExporter::start(), NodeExporter::start()];
    let node_addresses: Vec<String> = nodes.iter().map(NodeExporter::address).collect();
    let comet_address = format!("127.0.0.1:{}", comet.port);

    // Prometheus's own port is chosen when it starts: start with its own
    // job empty, then reload with everything once the port is known.
    let mut prometheus = Prometheus::start(&prometheus_config(None, &comet, ""));
    prometheus.wait_ready().await;
    let self_address = prometheus.process.address();
    let running_config = prometheus_config(
        Some((&node_addresses, &comet_address)),
        &comet,
        &self_address,
    );
    prometheus.reload(&running_config).await;

    let servers = Servers {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        comet: comet.url(""),
        prometheus: prometheus.url(),
        spent: Default::default(),
    };

    // Wait until all targets are up.
    let waiting = Instant::now();
    loop {
        let targets = prometheus.active_targets().await;
        if targets.len() == nodes.len() + 2 && targets.iter().all(|t| t["health"] == "up") {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "targets not all up within 60 s: {targets:?}\n--- prometheus log:\n{}",
            prometheus.process.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The run.
    let run_start = unix_now();
    let started = Instant::now();
    let mut exercised = 0;
    while started.elapsed() < RUN {
        tokio::time::sleep(Duration::from_secs(1)).await;
        prometheus.process.assert_running();
        if let Ok(Some(status)) = comet.child.try_wait() {
            panic!("comet exited ({status}):\n{}", comet.log_text());
        }
        let elapsed = started.elapsed().as_secs();
        if elapsed >= 8 && elapsed % 6 == 2 && exercised < elapsed {
            exercised = elapsed;
            exercise_api(&servers, unix_now() as u64).await;
        }
    }
    let run_end = unix_now();

    // Stop scraping (keeping the jobs, so the series end with staleness
    // markers) and wait until the remote-write queue has sent everything.
    prometheus
        .reload(&prometheus_config(None, &comet, &self_address))
        .await;
    let removed = Instant::now();
    let mut last = remote_counters(&prometheus).await;
    let mut stable_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = remote_counters(&prometheus).await;
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
        let (samples_in, sent, pending, failed) = now;
        assert_eq!(
            failed,
            0.0,
            "Prometheus could not write to Comet:\n{}",
            comet.log_text()
        );
        if pending == 0.0
            && sent == samples_in
            && removed.elapsed() >= Duration::from_secs(4)
            && stable_since.elapsed() >= Duration::from_secs(2)
        {
            break;
        }
        assert!(
            removed.elapsed() < Duration::from_secs(60),
            "the remote-write queue did not drain: {now:?}\n--- prometheus log:\n{}",
            prometheus.process.log_text()
        );
    }

    // Comet's storage gauges (system.parts) are there for the overview.
    let metrics = servers
        .client
        .get(comet.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for gauge in [
        "comet_clickhouse_parts",
        "comet_clickhouse_disk_bytes",
        "comet_clickhouse_rows",
    ] {
        let value = sum_metric(&metrics, &format!("{gauge}{{table=\"samples\"}}"));
        assert!(
            value > 0.0,
            "{gauge}{{table=\"samples\"}} is {value}:\n{metrics}"
        );
    }

    // The compared range: whole seconds inside the run.
    let start = run_start.ceil() as u64 + RANGE_START_OFFSET;
    let end = run_end.floor() as u64 - 1;
    let range_ms = (end - start) * 1000;
    let mut failures = Vec::new();
    let mut counts = Counts::default();
    let mut no_data = Vec::new();

    for dashboard in &dashboards {
        let (bound, options) =
            resolve_variables(&servers, dashboard, start, end, &mut failures, &mut counts).await;
        for panel in &dashboard.panels {
            // A repeated panel runs once per value of its variable.
            let repetitions: Vec<BTreeMap<String, Bound>> = match &panel.repeat {
                None => vec![bound.clone()],
                Some(var) => {
                    let values = options
                        .get(var)
                        .unwrap_or_else(|| panic!("{}: no variable {var}", dashboard.file));
                    assert!(
                        !values.is_empty(),
                        "{}: panel {:?} repeats by {var}, which has no values; failures:\n{}",
                        dashboard.file,
                        panel.title,
                        failures.join("\n")
                    );
                    values
                        .iter()
                        .map(|value| {
                            let mut scoped = bound.clone();
                            let regex_context = scoped[var].regex_context;
                            scoped.insert(
                                var.clone(),
                                Bound {
                                    current: Current::One(value.clone()),
                                    regex_context,
                                },
                            );
                            scoped
                        })
                        .collect()
                }
            };
            counts.panels += 1;
            if panel.repeat.is_some() {
                counts.repetitions += repetitions.len();
            }
            for vars in &repetitions {
                for target in &panel.targets {
                    let time = time_vars(target, panel.max_data_points, range_ms);
                    let expr = interpolate(&target.expr, vars, Some(&time));
                    // Only `$1`-style regex references may stay.
                    let left = expr
                        .match_indices('$')
                        .any(|(i, _)| !expr[i + 1..].starts_with(|c: char| c.is_ascii_digit()));
                    assert!(
                        !left && !expr.contains("[["),
                        "{}: panel {:?}: variables left in {expr}",
                        dashboard.file,
                        panel.title
                    );
                    let step_s = time.interval_ms as f64 / 1000.0;
                    let align = |t: u64| {
                        let aligned = ((t as f64 / step_s).floor() * step_s) as u64;
                        aligned.to_string()
                    };
                    let (path, form) = if target.instant {
                        (
                            "/api/v1/query",
                            vec![("query", expr.clone()), ("time", end.to_string())],
                        )
                    } else {
                        (
                            "/api/v1/query_range",
                            vec![
                                ("query", expr.clone()),
                                ("start", align(start)),
                                ("end", align(end)),
                                ("step", format!("{step_s}")),
                            ],
                        )
                    };
                    counts.queries += 1;
                    let what = format!("{} / {:?}: {expr}", dashboard.file, panel.title);
                    match servers.both(path, &form).await {
                        (Ok(c), Ok(p)) => {
                            if has_data(&c) || has_data(&p) {
                                counts.with_data += 1;
                            } else {
                                no_data.push(what.clone());
                            }
                            match difference(&c, &p) {
                                None => counts.agreed += 1,
                                Some(diff) => failures.push(format!("{what}\n  {diff}")),
                            }
                        }
                        (c, p) => failures.push(format!(
                            "{what}\n  failed: Comet {:?}\n  Prometheus {:?}",
                            c.err(),
                            p.err()
                        )),
                    }
                }
            }
        }
    }

    eprintln!(
        "dashboards: {} dashboards, {} panels ({} runs of repeated ones), range {}s; \
         {} variable queries ({} with values); {} panel queries, {} returned data, \
         {} agreed; {} failures; {:.0}s in all",
        dashboards.len(),
        counts.panels,
        counts.repetitions,
        end - start,
        counts.variables,
        counts.variables_with_data,
        counts.queries,
        counts.with_data,
        counts.agreed,
        failures.len(),
        test_started.elapsed().as_secs_f64()
    );
    for q in &no_data {
        eprintln!("dashboards: no data on either side: {q}");
    }
    if let Ok(spent) = servers.spent.lock() {
        eprintln!(
            "dashboards: the {} panel queries took {:.2}s on Comet and {:.2}s on Prometheus \
             (sequential, debug build of Comet; a report, not a benchmark)",
            counts.queries,
            spent.0.as_secs_f64(),
            spent.1.as_secs_f64()
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} queries failed or disagreed:\n{}\n--- comet log:\n{}",
        failures.len(),
        counts.queries,
        failures.join("\n\n"),
        comet
            .log_text()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        counts.variables, counts.variables_with_data,
        "every variable query has values"
    );
    // Kafka panels have no data here (no Kafka); nearly everything else does.
    assert!(
        counts.with_data * 4 >= counts.queries * 3,
        "only {} of {} queries returned data",
        counts.with_data,
        counts.queries
    );
}

// ---------------------------------------------------------------------
// The test's own machinery
// ---------------------------------------------------------------------

#[test]
fn variables_expand_as_grafana_expands_them() {
    let bound = |current, regex_context| Bound {
        current,
        regex_context,
    };
    let vars: BTreeMap<String, Bound> = [
        ("job".to_string(), bound(Current::One("node".into()), false)),
        (
            "instance".to_string(),
            bound(
                Current::Many(vec!["10.0.0.1:9100".into(), "host-b:9100".into()]),
                true,
            ),
        ),
        (
            "one".to_string(),
            bound(Current::Many(vec!["a.b".into()]), true),
        ),
        ("all".to_string(), bound(Current::Custom(".+".into()), true)),
    ]
    .into_iter()
    .collect();
    let time = TimeVars {
        interval_ms: 15_000,
        rate_interval_ms: 60_000,
        range_ms: 3_600_000,
    };
    assert_eq!(
        interpolate(
            r#"rate(x{job="$job", instance=~"${instance}", a=~"[[one]]", b=~"$all"}[$__rate_interval])"#,
            &vars,
            Some(&time)
        ),
        r#"rate(x{job="node", instance=~"(10\\.0\\.0\\.1:9100|host-b:9100)", a=~"a\\.b", b=~".+"}[1m0s])"#
    );
    assert_eq!(
        interpolate(
            "$__interval $__interval_ms $__range $__range_s $__range_ms ${job:raw} $unknown",
            &vars,
            Some(&time)
        ),
        "15s 15000 3600s 3600 3600000 node $unknown"
    );
    // Grafana's interval arithmetic.
    assert_eq!(round_interval(3_600_000 / 1_000), 5_000);
    assert_eq!(format_interval(90_000), "1m");
    assert_eq!(go_duration(4_000), "4s");
    let target = Target {
        expr: String::new(),
        instant: false,
        min_interval: Some("5s".into()),
        interval_factor: 1,
    };
    let t = time_vars(&target, 960, 25_000);
    assert_eq!((t.interval_ms, t.rate_interval_ms), (5_000, 20_000));
}

#[test]
fn differences_are_found() {
    let matrix = |value: &str| {
        serde_json::json!({"resultType": "matrix", "result": [
            {"metric": {"job": "node"}, "values": [[1.0, "1"], [2.0, value]]}
        ]})
    };
    assert_eq!(difference(&matrix("2"), &matrix("2.0000000001")), None);
    assert_eq!(difference(&matrix("NaN"), &matrix("NaN")), None);
    assert!(difference(&matrix("2"), &matrix("2.1")).is_some());
    assert!(difference(&matrix("2"), &matrix("NaN")).is_some());
    let other = serde_json::json!({"resultType": "matrix", "result": [
        {"metric": {"job": "other"}, "values": [[1.0, "1"], [2.0, "2"]]}
    ]});
    assert!(difference(&matrix("2"), &other).is_some());
    let fewer = serde_json::json!({"resultType": "matrix", "result": [
        {"metric": {"job": "node"}, "values": [[1.0, "1"]]}
    ]});
    assert!(difference(&matrix("2"), &fewer).is_some());
    let empty = serde_json::json!({"resultType": "matrix", "result": []});
    assert!(difference(&matrix("2"), &empty).is_some());
}

#[test]
fn every_panel_is_read_nested_and_repeated_ones_included() {
    for dashboard in read_dashboards() {
        let text = std::fs::read_to_string(dashboards_dir().join(&dashboard.file)).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        let top = doc["panels"].as_array().unwrap();
        let nested: usize = top
            .iter()
            .map(|p| p["panels"].as_array().map_or(0, Vec::len))
            .sum();
        let rows = top.iter().filter(|p| p["type"] == "row").count();
        assert_eq!(
            dashboard.panels.len(),
            top.len() - rows + nested,
            "{}",
            dashboard.file
        );
        let exprs = text.matches("\"expr\":").count();
        let targets: usize = dashboard.panels.iter().map(|p| p.targets.len()).sum();
        assert_eq!(targets, exprs, "{}: every target is read", dashboard.file);
        if dashboard.file == "node-exporter-host.json" {
            assert!(nested > 0, "a collapsed row with nested panels");
            assert!(
                dashboard
                    .panels
                    .iter()
                    .any(|p| p.repeat.as_deref() == Some("instance")),
                "a row repeated by instance"
            );
        }
    }
}
