//! Rules and alerts end to end: a real Alertmanager receiving Comet's
//! alerts (pending, firing after `for`, a restart that keeps the `for`
//! clock, resolution), reloads that keep alert state, `/api/v1/rules` and
//! `/api/v1/alerts` next to a real Prometheus 3.5 running the same rule
//! file, and `comet rules check|test` next to `promtool`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use comet_schema::prompb::v1;
use serde_json::Value;

use common::api::now_ms;
use common::peers::{Alertmanager, Prometheus};
use common::{COMET, CometProcess, clickhouse_url, metric_value, serve_new_database};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

fn gauge(name: &str, labels: &[(&str, &str)], value: f64, t: i64) -> v1::TimeSeries {
    let mut all: Vec<v1::Label> = labels
        .iter()
        .map(|(n, v)| v1::Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect();
    all.push(v1::Label {
        name: "__name__".into(),
        value: name.into(),
    });
    all.sort_by(|a, b| a.name.cmp(&b.name));
    v1::TimeSeries {
        labels: all,
        samples: vec![v1::Sample {
            value,
            timestamp: t,
        }],
        ..Default::default()
    }
}

/// Writes `probe_success{instance="web-1",job="blackbox"}` with the
/// current value every 500 ms to every URL in `targets`, until dropped.
struct Feeder {
    value: Arc<Mutex<f64>>,
    targets: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Feeder {
    fn start(targets: Vec<String>, value: f64) -> Self {
        let value = Arc::new(Mutex::new(value));
        let targets = Arc::new(Mutex::new(targets));
        let (v, t) = (Arc::clone(&value), Arc::clone(&targets));
        let task = tokio::spawn(async move {
            let client = client();
            loop {
                let current = *v.lock().unwrap();
                let request = v1::WriteRequest {
                    timeseries: vec![gauge(
                        "probe_success",
                        &[("instance", "web-1"), ("job", "blackbox")],
                        current,
                        now_ms(),
                    )],
                    ..Default::default()
                };
                let urls = t.lock().unwrap().clone();
                for url in urls {
                    // Comet restarting refuses writes for a moment.
                    let body = snap::raw::Encoder::new()
                        .compress_vec(&prost::Message::encode_to_vec(&request))
                        .expect("snappy");
                    let _ = client
                        .post(&url)
                        .header("Content-Encoding", "snappy")
                        .header("Content-Type", "application/x-protobuf")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .body(body)
                        .send()
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Self {
            value,
            targets,
            task,
        }
    }

    fn set(&self, value: f64) {
        *self.value.lock().unwrap() = value;
    }

    fn retarget(&self, targets: Vec<String>) {
        *self.targets.lock().unwrap() = targets;
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn get_json(url: &str) -> Value {
    let response = client().get(url).send().await.expect("GET");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert!(status.is_success(), "GET {url}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"))
}

/// Polls `check` every 250 ms until it returns `Some`, at most `timeout`.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn rfc3339_ms(text: &str) -> i64 {
    let t = humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The alerts of Comet's `/api/v1/alerts` named `name`.
async fn comet_alerts(comet: &CometProcess, name: &str) -> Vec<Value> {
    let body = get_json(&comet.url("/api/v1/alerts")).await;
    assert_eq!(body["status"], "success", "{body}");
    body["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["labels"]["alertname"] == name)
        .cloned()
        .collect()
}

const E2E_RULES: &str = r#"
groups:
  - name: probes
    interval: 1s
    rules:
      - record: probe:success:min
        expr: min by (instance, job) (probe_success)
      - alert: ProbeFailing
        expr: probe:success:min == 0
        for: 30s
        labels:
          severity: page
          service: "{{ $labels.job }}"
        annotations:
          summary: "Probe {{ $labels.instance }} failing (value {{ $value }})"
          cluster: "{{ $externalLabels.cluster }}"
"#;

/// An Alertmanager configuration that receives and sends nothing on.
const NULL_RECEIVER: &str =
    "route:\n  receiver: 'null'\n  group_wait: 1s\nreceivers:\n  - name: 'null'\n";

/// A real Alertmanager, a rule file, and the flags of a Comet that
/// evaluates the file and sends its alerts there (plus `extra`).
struct RulesToAlertmanager {
    am: Alertmanager,
    am_url: String,
    rules: String,
    extra: Vec<String>,
    _dir: tempfile::TempDir,
}

impl RulesToAlertmanager {
    async fn start(rules_yaml: &str, extra: &[&str]) -> Self {
        let mut am = Alertmanager::start(NULL_RECEIVER);
        am.wait_ready().await;
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules.yml");
        std::fs::write(&rules, rules_yaml).unwrap();
        Self {
            am_url: am.url(),
            am,
            rules: rules.display().to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _dir: dir,
        }
    }

    fn flags(&self) -> Vec<&str> {
        let mut flags = vec![
            "--rules-files",
            &self.rules,
            "--rules-alertmanagers",
            &self.am_url,
            "--ingest-batch-linger",
            "50ms",
        ];
        flags.extend(self.extra.iter().map(String::as_str));
        flags
    }
}

#[tokio::test]
async fn alertmanager_receives_alerts_and_restarts_keep_the_for_clock() {
    let setup = RulesToAlertmanager::start(
        E2E_RULES,
        &[
            "--rules-resend-delay",
            "2s",
            "--rules-external-labels",
            "cluster=test",
            "--rules-for-grace-period",
            "1s",
        ],
    )
    .await;
    let (am, rules_path, flags) = (&setup.am, &setup.rules, setup.flags());
    let (mut comet, database) = serve_new_database("comet_rules_am", &flags);
    comet.wait_ready(Duration::from_secs(120)).await;
    let feeder = Feeder::start(vec![comet.url("/api/v1/write")], 0.0);

    // Pending first, with the recording rule's output (same group, earlier
    // rule) as its input.
    let pending = wait_for("a pending alert", Duration::from_secs(30), || async {
        let alerts = comet_alerts(&comet, "ProbeFailing").await;
        alerts.into_iter().find(|a| a["state"] == "pending")
    })
    .await;
    let active_at = rfc3339_ms(pending["activeAt"].as_str().unwrap());
    assert_eq!(pending["labels"]["service"], "blackbox", "{pending}");
    assert_eq!(pending["labels"]["instance"], "web-1");
    assert_eq!(
        pending["annotations"]["summary"], "Probe web-1 failing (value 0)",
        "{pending}"
    );
    assert_eq!(pending["annotations"]["cluster"], "test");
    // ALERTS is queryable like any series.
    let alerts_series = wait_for("ALERTS series", Duration::from_secs(20), || async {
        let body = get_json(&format!(
            "{}?query=ALERTS%7Balertname%3D%22ProbeFailing%22%7D",
            comet.url("/api/v1/query")
        ))
        .await;
        let result = body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (!result.is_empty()).then_some(result)
    })
    .await;
    assert_eq!(alerts_series[0]["metric"]["alertstate"], "pending");

    // Restart well before `for` (30 s) is over.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        comet_alerts(&comet, "ProbeFailing").await[0]["state"],
        "pending"
    );
    let status = comet.terminate().await;
    assert!(status.success(), "{}", comet.log_text());
    let down_at = now_ms();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut comet = common::serve_database(&database, &flags);
    comet.wait_ready(Duration::from_secs(120)).await;
    let ready_at = now_ms();
    feeder.retarget(vec![comet.url("/api/v1/write")]);

    // The restored clock: the time pending before the restart counts, the
    // time Comet was down is added (Prometheus's restore semantics).
    let restored = wait_for("the restored alert", Duration::from_secs(30), || async {
        comet_alerts(&comet, "ProbeFailing")
            .await
            .into_iter()
            .find(|a| rfc3339_ms(a["activeAt"].as_str().unwrap()) < ready_at - 5_000)
    })
    .await;
    let restored_at = rfc3339_ms(restored["activeAt"].as_str().unwrap());
    let downtime = ready_at - down_at;
    assert!(
        restored_at >= active_at + downtime - 2_000 && restored_at <= active_at + downtime + 8_000,
        "activeAt {active_at} became {restored_at}; down {downtime} ms\n{}",
        comet.log_text()
    );

    // Firing in Alertmanager with the rule's labels, the external labels
    // and the expanded annotations.
    let am_alerts = format!("{}/api/v2/alerts", am.url());
    let fired = wait_for(
        "the alert in Alertmanager",
        Duration::from_secs(60),
        || async {
            let alerts = get_json(&am_alerts).await;
            alerts
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["labels"]["alertname"] == "ProbeFailing")
                .cloned()
        },
    )
    .await;
    let labels = &fired["labels"];
    assert_eq!(labels["severity"], "page", "{fired}");
    assert_eq!(labels["service"], "blackbox");
    assert_eq!(labels["instance"], "web-1");
    assert_eq!(labels["job"], "blackbox");
    assert_eq!(labels["cluster"], "test", "external label");
    assert_eq!(
        fired["annotations"]["summary"],
        "Probe web-1 failing (value 0)"
    );
    assert!(
        fired["generatorURL"]
            .as_str()
            .unwrap()
            .contains("/graph?g0.expr=probe%3Asuccess%3Amin+%3D%3D+0"),
        "{fired}"
    );
    assert_eq!(fired["status"]["state"], "active");
    // Fired at the restored clock's end, well before a fresh 30 s clock
    // started at the restart would have.
    let starts_at = rfc3339_ms(fired["startsAt"].as_str().unwrap());
    assert!(
        starts_at >= restored_at + 30_000 - 1_000 && starts_at < ready_at + 30_000 - 4_000,
        "fired at {starts_at}; restored activeAt {restored_at}, ready at {ready_at}"
    );
    assert_eq!(
        comet_alerts(&comet, "ProbeFailing").await[0]["state"],
        "firing"
    );

    // The data changes: resolved in Comet and in Alertmanager.
    feeder.set(1.0);
    wait_for("resolution in Comet", Duration::from_secs(30), || async {
        comet_alerts(&comet, "ProbeFailing")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    wait_for(
        "resolution in Alertmanager",
        Duration::from_secs(30),
        || async {
            let alerts = get_json(&am_alerts).await;
            let still = alerts.as_array().unwrap().iter().any(|a| {
                a["labels"]["alertname"] == "ProbeFailing"
                    && rfc3339_ms(a["endsAt"].as_str().unwrap()) > now_ms()
            });
            (!still).then_some(())
        },
    )
    .await;

    let metrics = client()
        .get(comet.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let am_key = format!(
        "prometheus_notifications_sent_total{{alertmanager=\"{}/api/v2/alerts\"}}",
        am.url()
    );
    assert!(metric_value(&metrics, &am_key) >= 2.0, "{metrics}");
    assert_eq!(
        metric_value(&metrics, "prometheus_notifications_dropped_total"),
        0.0
    );
    let group = format!("{{rule_group=\"{rules_path};probes\"}}");
    assert!(
        metric_value(
            &metrics,
            &format!("prometheus_rule_group_iterations_total{group}")
        ) > 5.0,
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            &format!("prometheus_rule_group_interval_seconds{group}")
        ),
        1.0
    );
    assert!(metrics.contains("prometheus_rule_group_iterations_missed_total"));
    assert!(metrics.contains("prometheus_rule_group_last_duration_seconds"));
    drop(feeder);
}

const RELOAD_RULES: &str = r#"
groups:
  - name: slow
    interval: 1s
    rules:
      - alert: AlwaysPending
        expr: vector(1)
        for: 1h
        annotations:
          summary: "first"
"#;

#[tokio::test]
async fn reloads_keep_alert_state() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RELOAD_RULES).unwrap();
    let rules_path = rules.display().to_string();
    let (mut comet, _db) =
        serve_new_database("comet_rules_reload", &["--rules-files", &rules_path]);
    comet.wait_ready(Duration::from_secs(120)).await;
    let first = wait_for("a pending alert", Duration::from_secs(30), || async {
        comet_alerts(&comet, "AlwaysPending")
            .await
            .into_iter()
            .next()
    })
    .await;
    let annotation = |summary: &str| RELOAD_RULES.replace("\"first\"", &format!("\"{summary}\""));

    // POST /-/reload with a changed group: the alert keeps its clock.
    std::fs::write(&rules, annotation("second")).unwrap();
    let response = client().post(comet.url("/-/reload")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let after = wait_for(
        "the reloaded annotation",
        Duration::from_secs(30),
        || async {
            comet_alerts(&comet, "AlwaysPending")
                .await
                .into_iter()
                .find(|a| a["annotations"]["summary"] == "second")
        },
    )
    .await;
    assert_eq!(after["activeAt"], first["activeAt"]);

    // SIGHUP does the same.
    std::fs::write(&rules, annotation("third")).unwrap();
    let pid = nix::unistd::Pid::from_raw(comet.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let after = wait_for("the SIGHUP reload", Duration::from_secs(30), || async {
        comet_alerts(&comet, "AlwaysPending")
            .await
            .into_iter()
            .find(|a| a["annotations"]["summary"] == "third")
    })
    .await;
    assert_eq!(after["activeAt"], first["activeAt"]);

    // A broken file is refused with Prometheus's message; the rules stay.
    std::fs::write(
        &rules,
        "groups:\n  - name: slow\n    rules:\n      - alert: X\n        expr: 'sum('\n",
    )
    .unwrap();
    let response = client().post(comet.url("/-/reload")).send().await.unwrap();
    assert_eq!(response.status(), 500);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("group \"slow\", rule 1, \"X\": could not parse expression"),
        "{text}"
    );
    assert_eq!(comet_alerts(&comet, "AlwaysPending").await.len(), 1);
    let info = get_json(&comet.url("/api/v1/status/runtimeinfo")).await;
    assert_eq!(info["data"]["reloadConfigSuccess"], false);
}

const TWO_RULERS: &str = r#"
groups:
  - name: probes
    interval: 1s
    rules:
      - record: probe:success:min
        expr: min by (instance, job) (probe_success)
      - alert: ProbeDown
        expr: probe:success:min == 0
        labels:
          severity: page
"#;

/// Two Comets in front of one database, both running the same rules (how
/// Comet scales out: every Comet evaluates): both evaluate the groups at
/// the same aligned times, so what they record lands on the same (series,
/// time) and reads keep it once, and Alertmanager merges their identical
/// alerts into one.
#[tokio::test]
async fn two_comets_running_the_same_rules_record_and_alert_once() {
    let setup = RulesToAlertmanager::start(TWO_RULERS, &["--rules-resend-delay", "1s"]).await;
    let (am_url, flags) = (&setup.am_url, setup.flags());
    let (mut first, database) = serve_new_database("comet_rules_two", &flags);
    first.wait_ready(Duration::from_secs(120)).await;
    let mut second = common::serve_database(&database, &flags);
    second.wait_ready(Duration::from_secs(120)).await;
    let _feeder = Feeder::start(vec![first.url("/api/v1/write")], 0.0);

    // Both fire it; Alertmanager holds one alert.
    for comet in [&first, &second] {
        wait_for(
            "a firing alert on each Comet",
            Duration::from_secs(30),
            || async {
                comet_alerts(comet, "ProbeDown")
                    .await
                    .into_iter()
                    .find(|a| a["state"] == "firing")
            },
        )
        .await;
    }
    let am_alerts = wait_for(
        "the alert in Alertmanager",
        Duration::from_secs(30),
        || async {
            let alerts = get_json(&format!("{am_url}/api/v2/alerts")).await;
            let alerts = alerts.as_array().cloned().unwrap_or_default();
            (!alerts.is_empty()).then_some(alerts)
        },
    )
    .await;
    assert_eq!(am_alerts.len(), 1, "{am_alerts:?}");
    assert_eq!(am_alerts[0]["labels"]["alertname"], "ProbeDown");

    // They record at the same aligned times: one offset within the second,
    // never two values at one time (identical inserts are even stored
    // once: the samples table deduplicates repeated blocks).
    let url = clickhouse_url();
    let (rows, times, offsets, valued) = wait_for(
        "ten recorded evaluations",
        Duration::from_secs(60),
        || async {
            let text = common::http_query_on(
                &url,
                &format!(
                    "SELECT count(), uniqExact(timestamp_ms), uniqExact(timestamp_ms % 1000), \
                            uniqExact(timestamp_ms, value) \
                     FROM {database}.samples WHERE metric_name = 'probe:success:min' FORMAT TSV"
                ),
            )
            .await;
            let n: Vec<u64> = text
                .split_whitespace()
                .map(|f| f.parse().unwrap())
                .collect();
            (n[1] >= 10).then(|| (n[0], n[1], n[2], n[3]))
        },
    )
    .await;
    assert_eq!(
        offsets, 1,
        "evaluation times not aligned: {rows} rows at {times} times"
    );
    assert_eq!(
        valued, times,
        "a time with two values: {rows} rows at {times} times"
    );
    // A query sees one sample per time.
    let body = get_json(&format!(
        "{}?query=count_over_time(probe%3Asuccess%3Amin%5B5s%5D)",
        second.url("/api/v1/query")
    ))
    .await;
    let per_5s: f64 = body["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    assert!(per_5s <= 5.0, "{body}");
    for comet in [&mut first, &mut second] {
        assert!(comet.terminate().await.success(), "{}", comet.log_text());
    }
}

/// Object keys and value types, recursively (arrays by their first item).
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::String(_) => Value::String("string".into()),
        Value::Number(_) => Value::String("number".into()),
        Value::Bool(_) => Value::String("bool".into()),
        Value::Null => Value::Null,
    }
}

const API_RULES: &str = r#"
groups:
  - name: api
    interval: 1s
    limit: 100
    rules:
      - record: job:probe_success:sum
        expr: sum by (job) (probe_success)
        labels:
          source: recording
      - alert: Firing
        expr: probe_success == 0
        labels:
          severity: "{{ $labels.job }}"
        annotations:
          summary: "{{ $labels.instance }} at {{ $value }}"
      - alert: Pending
        expr: probe_success < 1
        for: 1h
        keep_firing_for: 5m
  - name: other
    interval: 1s
    rules:
      - record: nothing
        expr: absent(probe_success)
"#;

/// The values both servers must agree on, without times and durations of
/// evaluations.
fn comparable_rules(data: &Value) -> Value {
    let mut v = data.clone();
    for g in v["groups"].as_array_mut().unwrap() {
        let g = g.as_object_mut().unwrap();
        g.remove("evaluationTime");
        g.remove("lastEvaluation");
        for r in g["rules"].as_array_mut().unwrap() {
            let r = r.as_object_mut().unwrap();
            r.remove("evaluationTime");
            r.remove("lastEvaluation");
            if let Some(alerts) = r.get_mut("alerts") {
                for a in alerts.as_array_mut().unwrap() {
                    a.as_object_mut().unwrap().remove("activeAt");
                }
            }
        }
    }
    v
}

#[tokio::test]
async fn rules_and_alerts_api_match_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("api_rules.yml");
    std::fs::write(&rules, API_RULES).unwrap();
    let rules_path = rules.display().to_string();
    let mut prometheus = Prometheus::start_with_args(
        &format!("global:\n  evaluation_interval: 1s\nrule_files:\n  - {rules_path}\n"),
        &["--web.enable-remote-write-receiver"],
    );
    prometheus.wait_ready().await;
    let (mut comet, _db) = serve_new_database("comet_rules_api", &["--rules-files", &rules_path]);
    comet.wait_ready(Duration::from_secs(120)).await;
    let _feeder = Feeder::start(
        vec![
            comet.url("/api/v1/write"),
            format!("{}/api/v1/write", prometheus.url()),
        ],
        0.0,
    );

    let ready = |data: &Value| {
        data["groups"].as_array().is_some_and(|gs| {
            gs.iter().all(|g| {
                g["rules"].as_array().unwrap().iter().all(|r| {
                    r["health"] == "ok"
                        && (r["type"] == "recording" || !r["alerts"].as_array().unwrap().is_empty())
                })
            })
        })
    };
    let prom_url = format!("{}/api/v1/rules", prometheus.url());
    let prom_rules = wait_for("Prometheus's rules", Duration::from_secs(60), || async {
        let body = get_json(&prom_url).await;
        ready(&body["data"]).then(|| body["data"].clone())
    })
    .await;
    let comet_rules = wait_for("Comet's rules", Duration::from_secs(60), || async {
        let body = get_json(&comet.url("/api/v1/rules")).await;
        ready(&body["data"]).then(|| body["data"].clone())
    })
    .await;
    assert_eq!(shape(&comet_rules), shape(&prom_rules), "rules shape");
    assert_eq!(
        comparable_rules(&comet_rules),
        comparable_rules(&prom_rules),
        "rules"
    );

    let prom_alerts = get_json(&format!("{}/api/v1/alerts", prometheus.url())).await;
    let comet_alerts = get_json(&comet.url("/api/v1/alerts")).await;
    assert_eq!(shape(&comet_alerts), shape(&prom_alerts), "alerts shape");
    let states = |v: &Value| -> BTreeSet<(String, String, String)> {
        v["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["labels"].to_string(),
                    a["annotations"].to_string(),
                    format!("{} {}", a["state"], a["value"]),
                )
            })
            .collect()
    };
    assert_eq!(states(&comet_alerts), states(&prom_alerts));

    // Filters, on both servers (Prometheus 3.5 has them all).
    let rule_names = |data: &Value| -> Vec<(String, Vec<String>)> {
        data["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                let names = g["rules"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["name"].as_str().unwrap().to_string())
                    .collect();
                (g["name"].as_str().unwrap().to_string(), names)
            })
            .collect()
    };
    for query in [
        "type=alert&rule_name[]=Pending".to_string(),
        format!("rule_group[]=other&file[]={rules_path}"),
        "type=record".to_string(),
    ] {
        let ours = get_json(&format!("{}?{query}", comet.url("/api/v1/rules"))).await;
        let theirs = get_json(&format!("{}/api/v1/rules?{query}", prometheus.url())).await;
        assert_eq!(rule_names(&ours), rule_names(&theirs), "?{query}");
        assert!(!rule_names(&ours).is_empty(), "?{query} selects something");
    }
    for server in [
        comet.url("/api/v1/rules"),
        format!("{}/api/v1/rules", prometheus.url()),
    ] {
        let response = client()
            .get(format!("{server}?type=nonsense"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{server}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errorType"], "bad_data", "{server}");
    }
}

fn run(program: &str, args: &[&str], dir: &Path) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("COMET_CLICKHOUSE_URL", clickhouse_url())
        .env("COMET_LOG_LEVEL", "warn")
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn rules_dir() -> PathBuf {
    common::workspace_dir().join("tests/rules")
}

#[test]
fn rules_check_agrees_with_promtool() {
    let dir = rules_dir();
    let (ok, comet) = run(COMET, &["rules", "check", "rules.yml"], &dir);
    assert!(ok, "{comet}");
    let (ok, promtool) = run("promtool", &["check", "rules", "rules.yml"], &dir);
    assert!(ok, "{promtool}");
    assert!(comet.contains("SUCCESS: 3 rules found"), "{comet}");
    assert!(promtool.contains("SUCCESS: 3 rules found"), "{promtool}");

    let (ok, comet) = run(COMET, &["rules", "check", "bad.yml"], &dir);
    assert!(!ok, "{comet}");
    let (ok, promtool) = run("promtool", &["check", "rules", "bad.yml"], &dir);
    assert!(!ok, "{promtool}");
    // The same problems in the same words (promtool adds line:column).
    let problems = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("bad.yml: "))
            .map(|l| {
                let l = l
                    .split_once(": group ")
                    .map(|(pos, rest)| {
                        if pos.chars().all(|c| c.is_ascii_digit() || c == ':') {
                            format!("group {rest}")
                        } else {
                            l.to_string()
                        }
                    })
                    .unwrap_or_else(|| l.to_string());
                // Position prefixes (`12:5: `) of group-level messages.
                let l = match l.split_once(": ") {
                    Some((pos, rest)) if pos.chars().all(|c| c.is_ascii_digit() || c == ':') => {
                        rest.to_string()
                    }
                    _ => l,
                };
                // promql-parser does not give the parse error's position.
                l.split(": could not parse expression")
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    let (c, p) = (problems(&comet), problems(&promtool));
    assert_eq!(c.len(), 5, "{comet}");
    assert_eq!(c, p, "\ncomet:\n{comet}\npromtool:\n{promtool}");
}

#[test]
fn rules_test_agrees_with_promtool() {
    let dir = rules_dir();
    let (ok, comet) = run(COMET, &["rules", "test", "rules_test.yml"], &dir);
    assert!(ok, "{comet}");
    assert!(
        comet.contains("Unit Testing:  rules_test.yml\n  SUCCESS"),
        "{comet}"
    );
    let (ok, promtool) = run("promtool", &["test", "rules", "rules_test.yml"], &dir);
    assert!(ok, "{promtool}");

    let (ok, comet) = run(COMET, &["rules", "test", "failing_test.yml"], &dir);
    assert!(!ok, "{comet}");
    let (ok, promtool) = run("promtool", &["test", "rules", "failing_test.yml"], &dir);
    assert!(!ok, "{promtool}");
    for text in [&comet, &promtool] {
        assert!(text.contains("alertname: InstanceDown, time: 1m"), "{text}");
        assert!(text.contains("expr: \"up\", time: 1m"), "{text}");
    }
}
