//! Sends alerts to Alertmanagers over their v2 API (`POST
//! /api/v2/alerts`): a bounded queue (the oldest alerts are dropped when it
//! overflows, as Prometheus does), batches of up to 64 alerts sent to every
//! Alertmanager at once, retries of failed posts, and counters of what was
//! sent, dropped and failed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use serde::Serialize;
use tokio::sync::Notify;
use tracing::{debug, warn};

use super::alert::Alert;

/// Alerts per request, as Prometheus batches them.
const MAX_BATCH: usize = 64;

#[derive(Debug, Clone)]
pub struct NotifierSettings {
    /// Alertmanager base URLs (`http://am:9093`); `/api/v2/alerts` is
    /// appended.
    pub alertmanagers: Vec<String>,
    /// Alerts waiting to be sent; beyond it the oldest are dropped.
    pub queue_capacity: usize,
    /// Time allowed for one post.
    pub timeout: Duration,
    /// Further attempts after a failed post (connection error or 5xx).
    pub max_retries: usize,
    /// Labels added to every alert that lacks them.
    pub external_labels: Vec<(String, String)>,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        Self {
            alertmanagers: Vec::new(),
            queue_capacity: 10_000,
            timeout: Duration::from_secs(10),
            max_retries: 3,
            external_labels: Vec::new(),
        }
    }
}

/// An alert as Alertmanager's v2 API takes it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PostableAlert {
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// Prometheus's notification: starts when it fired, ends when resolved
/// or, while firing, when its validity runs out.
pub fn postable(
    alert: &Alert,
    generator_url: &str,
    external: &[(String, String)],
) -> PostableAlert {
    let mut labels: std::collections::BTreeMap<String, String> =
        alert.labels.iter().cloned().collect();
    for (k, v) in external {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let ends = alert.resolved_at.unwrap_or(alert.valid_until);
    PostableAlert {
        labels,
        annotations: alert.annotations.iter().cloned().collect(),
        starts_at: super::api::rfc3339_ms(alert.fired_at.unwrap_or(alert.active_at)),
        ends_at: super::api::rfc3339_ms(ends),
        generator_url: generator_url.to_string(),
    }
}

#[derive(Clone)]
struct Metrics {
    sent: IntCounterVec,
    errors: IntCounterVec,
    dropped: IntCounter,
    queue_length: IntGauge,
    queue_capacity: IntGauge,
    alertmanagers: IntGauge,
}

impl Metrics {
    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let sent = IntCounterVec::new(
            Opts::new(
                "prometheus_notifications_sent_total",
                "Total number of alerts sent.",
            ),
            &["alertmanager"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "prometheus_notifications_errors_total",
                "Total number of errors sending alert notifications.",
            ),
            &["alertmanager"],
        )?;
        let dropped = IntCounter::new(
            "prometheus_notifications_dropped_total",
            "Total number of alerts dropped due to errors when sending to Alertmanager or a full queue.",
        )?;
        let queue_length = IntGauge::new(
            "prometheus_notifications_queue_length",
            "The number of alert notifications in the queue.",
        )?;
        let queue_capacity = IntGauge::new(
            "prometheus_notifications_queue_capacity",
            "The capacity of the alert notifications queue.",
        )?;
        let alertmanagers = IntGauge::new(
            "prometheus_notifications_alertmanagers_discovered",
            "The number of alertmanagers discovered and active.",
        )?;
        registry.register(Box::new(sent.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(queue_length.clone()))?;
        registry.register(Box::new(queue_capacity.clone()))?;
        registry.register(Box::new(alertmanagers.clone()))?;
        Ok(Self {
            sent,
            errors,
            dropped,
            queue_length,
            queue_capacity,
            alertmanagers,
        })
    }
}

struct Shared {
    settings: NotifierSettings,
    queue: Mutex<VecDeque<PostableAlert>>,
    more: Notify,
    metrics: Metrics,
    client: reqwest::Client,
}

/// Handle to the notifier; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("alertmanagers", &self.shared.settings.alertmanagers)
            .finish()
    }
}

impl Notifier {
    /// Starts the sender task; it stops when `stop` is notified.
    pub fn start(
        settings: NotifierSettings,
        registry: &Registry,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<Self, prometheus::Error> {
        let metrics = Metrics::new(registry)?;
        metrics.queue_capacity.set(settings.queue_capacity as i64);
        metrics
            .alertmanagers
            .set(settings.alertmanagers.len() as i64);
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| prometheus::Error::Msg(format!("HTTP client: {e}")))?;
        let shared = Arc::new(Shared {
            settings,
            queue: Mutex::new(VecDeque::new()),
            more: Notify::new(),
            metrics,
            client,
        });
        tokio::spawn(run(Arc::clone(&shared), stop));
        Ok(Self { shared })
    }

    /// The external labels added to every alert.
    pub fn external_labels(&self) -> &[(String, String)] {
        &self.shared.settings.external_labels
    }

    /// Queues alerts; the oldest are dropped beyond the capacity.
    pub fn send(&self, alerts: Vec<PostableAlert>) {
        if alerts.is_empty() || self.shared.settings.alertmanagers.is_empty() {
            return;
        }
        let capacity = self.shared.settings.queue_capacity.max(1);
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.extend(alerts);
        let over = queue.len().saturating_sub(capacity);
        if over > 0 {
            queue.drain(..over);
            self.shared.metrics.dropped.inc_by(over as u64);
            warn!(
                dropped = over,
                "alert notification queue full; dropped the oldest alerts"
            );
        }
        self.shared.metrics.queue_length.set(queue.len() as i64);
        drop(queue);
        self.shared.more.notify_one();
    }
}

async fn run(shared: Arc<Shared>, stop: tokio_util::sync::CancellationToken) {
    loop {
        let batch: Vec<PostableAlert> = {
            let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            let n = queue.len().min(MAX_BATCH);
            let batch = queue.drain(..n).collect();
            shared.metrics.queue_length.set(queue.len() as i64);
            batch
        };
        if batch.is_empty() {
            tokio::select! {
                _ = shared.more.notified() => continue,
                _ = stop.cancelled() => return,
            }
        }
        let body = match serde_json::to_vec(&batch) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "cannot encode alerts");
                continue;
            }
        };
        let posts = shared
            .settings
            .alertmanagers
            .iter()
            .map(|am| post(&shared, am, body.clone(), batch.len()));
        let delivered = futures_any(posts).await;
        if !delivered {
            shared.metrics.dropped.inc_by(batch.len() as u64);
        }
    }
}

/// Runs every post at once; true when at least one Alertmanager took
/// the batch.
async fn futures_any<F: Future<Output = bool>>(posts: impl Iterator<Item = F>) -> bool {
    join_all(posts.collect()).await.into_iter().any(|ok| ok)
}

async fn join_all<F: Future<Output = bool>>(futures: Vec<F>) -> Vec<bool> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out = vec![None; pinned.len()];
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.unwrap_or(false)).collect()
}

/// Posts one batch to one Alertmanager, retrying what may succeed later.
async fn post(shared: &Shared, base: &str, body: Vec<u8>, count: usize) -> bool {
    let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
    let mut backoff = Duration::from_millis(100);
    for attempt in 0..=shared.settings.max_retries {
        let outcome = shared
            .client
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let retry = match outcome {
            Ok(r) if r.status().is_success() => {
                shared
                    .metrics
                    .sent
                    .with_label_values(&[&url])
                    .inc_by(count as u64);
                debug!(%url, alerts = count, "alerts sent");
                return true;
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                warn!(%url, %status, body = %text.chars().take(200).collect::<String>(), attempt, "Alertmanager refused alerts");
                status.is_server_error() || status.as_u16() == 429
            }
            Err(e) => {
                warn!(%url, error = %e, attempt, "cannot send alerts to Alertmanager");
                true
            }
        };
        shared.metrics.errors.with_label_values(&[&url]).inc();
        if !retry {
            return false;
        }
        if attempt < shared.settings.max_retries {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::alert::AlertState;

    #[test]
    fn postable_alerts_carry_external_labels_and_times() {
        let alert = Alert {
            labels: vec![
                ("alertname".into(), "Down".into()),
                ("cluster".into(), "own".into()),
            ],
            annotations: vec![("summary".into(), "s".into())],
            state: AlertState::Firing,
            value: 1.0,
            active_at: 1_000,
            fired_at: Some(61_000),
            resolved_at: None,
            last_sent_at: Some(61_000),
            valid_until: 301_000,
            keep_firing_since: None,
        };
        let external = vec![
            ("cluster".to_string(), "eu".to_string()),
            ("replica".to_string(), "a".to_string()),
        ];
        let p = postable(&alert, "http://x/graph", &external);
        assert_eq!(p.labels["cluster"], "own");
        assert_eq!(p.labels["replica"], "a");
        assert_eq!(p.starts_at, "1970-01-01T00:01:01Z");
        assert_eq!(p.ends_at, "1970-01-01T00:05:01Z");
        let json = serde_json::to_value(&p).unwrap();
        assert!(json.get("generatorURL").is_some());
    }

    #[tokio::test]
    async fn overflow_drops_the_oldest() {
        let registry = Registry::new();
        let stop = tokio_util::sync::CancellationToken::new();
        stop.cancel();
        let n = Notifier::start(
            NotifierSettings {
                // Nothing listens there; the sender is stopped anyway.
                alertmanagers: vec!["http://127.0.0.1:9".into()],
                queue_capacity: 2,
                ..NotifierSettings::default()
            },
            &registry,
            stop,
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let a = |name: &str| PostableAlert {
            labels: [("alertname".to_string(), name.to_string())].into(),
            annotations: Default::default(),
            starts_at: String::new(),
            ends_at: String::new(),
            generator_url: String::new(),
        };
        n.send(vec![a("1"), a("2"), a("3")]);
        let queue = n.shared.queue.lock().unwrap();
        assert_eq!(queue.len(), 2);
        assert_eq!(queue[0].labels["alertname"], "2");
        assert_eq!(n.shared.metrics.dropped.get(), 1);
    }
}
