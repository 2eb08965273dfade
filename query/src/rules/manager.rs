//! The ruler: one task per rule group evaluating it on its interval,
//! aligned as Prometheus aligns groups (an offset within the interval from
//! the hash of the group's name and file, so groups spread out and keep
//! their slot across restarts); reloads that keep alert state; restoring
//! the `for` state after a start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comet_schema::fingerprint::fingerprint;
use prometheus::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::SampleSink;
use super::alert::AlertContext;
use super::file::{FileError, GroupSpec, load_files};
use super::group::{Evaluator, GroupState, RuleMetrics, group_key, lock};
use super::notifier::Notifier;
use super::restore::{RestorePolicy, restore_for_state};
use crate::engine::Engine;

/// The ruler's configuration.
#[derive(Debug, Clone)]
pub struct RulerSettings {
    /// Paths and globs of rule files.
    pub rule_files: Vec<String>,
    /// Interval of groups that set none.
    pub evaluation_interval: Duration,
    pub external_labels: Vec<(String, String)>,
    /// Base of alerts' generator URLs and `$externalURL`.
    pub external_url: String,
    /// Firing alerts are re-sent this often.
    pub resend_delay: Duration,
    pub restore: RestorePolicy,
}

impl Default for RulerSettings {
    fn default() -> Self {
        Self {
            rule_files: Vec::new(),
            evaluation_interval: Duration::from_secs(60),
            external_labels: Vec::new(),
            external_url: "http://localhost:9090".into(),
            resend_delay: Duration::from_secs(60),
            restore: RestorePolicy {
                outage_tolerance: Duration::from_secs(3600),
                for_grace_period: Duration::from_secs(600),
            },
        }
    }
}

/// A group being evaluated.
pub struct RunningGroup {
    pub state: Arc<Mutex<GroupState>>,
    cancel: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl RunningGroup {
    async fn stop(&self) {
        self.cancel.cancel();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

struct Inner {
    settings: RulerSettings,
    evaluator: Evaluator,
    groups: RwLock<Vec<Arc<RunningGroup>>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    last_reload_ok: Mutex<(bool, SystemTime)>,
}

/// Handle to the ruler; cheap to clone.
#[derive(Clone)]
pub struct Ruler {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ruler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ruler")
            .field("rule_files", &self.inner.settings.rule_files)
            .finish()
    }
}

/// Why the rules could not be (re)loaded.
#[derive(Debug, thiserror::Error)]
#[error("error loading rules: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct LoadError(pub Vec<FileError>);

impl Ruler {
    /// Loads the rule files and starts evaluating them. Invalid files stop
    /// the start, as in Prometheus.
    pub async fn start(
        settings: RulerSettings,
        engine: Engine,
        sink: Arc<dyn SampleSink>,
        notifier: Option<Notifier>,
        registry: &Registry,
    ) -> Result<Self, StartError> {
        let metrics = RuleMetrics::new(registry).map_err(StartError::Metrics)?;
        let evaluator = Evaluator {
            engine,
            sink,
            notifier,
            context: AlertContext {
                external_labels: settings.external_labels.clone(),
                external_url: settings.external_url.clone(),
            },
            resend_delay: settings.resend_delay,
            metrics,
        };
        let ruler = Self {
            inner: Arc::new(Inner {
                settings,
                evaluator,
                groups: RwLock::new(Vec::new()),
                reloading: tokio::sync::Mutex::new(()),
                last_reload_ok: Mutex::new((true, SystemTime::now())),
            }),
        };
        ruler.reload().await.map_err(StartError::Load)?;
        Ok(ruler)
    }

    /// The groups, in file and file order.
    pub fn groups(&self) -> Vec<Arc<Mutex<GroupState>>> {
        self.inner
            .groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|g| Arc::clone(&g.state))
            .collect()
    }

    /// Whether the last reload worked, and when it happened.
    pub fn last_reload(&self) -> (bool, SystemTime) {
        *self
            .inner
            .last_reload_ok
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Re-reads the rule files. On an error the running rules stay as they
    /// are. Groups that did not change keep running untouched; changed
    /// ones take over their predecessor's alerts.
    pub async fn reload(&self) -> Result<(), LoadError> {
        let _one = self.inner.reloading.lock().await;
        let settings = &self.inner.settings;
        let specs = match load_files(&settings.rule_files, settings.evaluation_interval) {
            Ok(specs) => specs,
            Err(errors) => {
                *self
                    .inner
                    .last_reload_ok
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = (false, SystemTime::now());
                let err = LoadError(errors);
                warn!(error = %err, "rule files not loaded; the previous rules stay");
                return Err(err);
            }
        };
        let old: Vec<Arc<RunningGroup>> = self
            .inner
            .groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut old_by_key: HashMap<String, Arc<RunningGroup>> = old
            .iter()
            .map(|g| (lock(&g.state).key(), Arc::clone(g)))
            .collect();
        let mut next = Vec::with_capacity(specs.len());
        let mut to_stop = Vec::new();
        // Only groups of the first load restore `for` state; later ones
        // are new rules whose alerts have no history.
        let first_load = old.is_empty();
        for spec in specs {
            let key = group_key(&spec);
            match old_by_key.remove(&key) {
                Some(running) if lock(&running.state).spec == spec => next.push(running),
                Some(running) => {
                    let mut state = GroupState::new(spec);
                    state.copy_state_from(&lock(&running.state));
                    to_stop.push(running);
                    next.push(self.spawn(state, false));
                }
                None => next.push(self.spawn(GroupState::new(spec), first_load)),
            }
        }
        let removed: Vec<Arc<RunningGroup>> = old_by_key.into_values().collect();
        for g in to_stop.iter().chain(&removed) {
            g.stop().await;
        }
        // Series of removed groups end now, as Prometheus marks them stale.
        for g in &removed {
            let (key, stale) = {
                let s = lock(&g.state);
                (s.key(), stale_series(&s))
            };
            self.inner.evaluator.metrics.group_removed(&key);
            if !stale.is_empty()
                && let Err(e) = self.inner.evaluator.sink.write(stale).await
            {
                warn!(group = %key, error = %e, "cannot mark a removed group's series stale");
            }
        }
        let count = next.len();
        *self.inner.groups.write().unwrap_or_else(|e| e.into_inner()) = next;
        *self
            .inner
            .last_reload_ok
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = (true, SystemTime::now());
        info!(groups = count, "rules loaded");
        Ok(())
    }

    fn spawn(&self, state: GroupState, restore: bool) -> Arc<RunningGroup> {
        self.inner.evaluator.metrics.group_started(&state.spec);
        let state = Arc::new(Mutex::new(state));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_group(
            Arc::clone(&self.inner),
            Arc::clone(&state),
            cancel.clone(),
            restore,
        ));
        Arc::new(RunningGroup {
            state,
            cancel,
            task: Mutex::new(Some(task)),
        })
    }

    /// Stops every group after its evaluation in progress.
    pub async fn stop(&self) {
        let groups: Vec<Arc<RunningGroup>> = self
            .inner
            .groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for g in groups {
            g.stop().await;
        }
    }
}

/// Stale markers for every series a group's rules wrote last.
fn stale_series(state: &GroupState) -> Vec<comet_schema::TimeSeries> {
    let now = now_ms();
    let mut out = Vec::new();
    for rule in &state.rules {
        for labels in &rule.previous_series {
            if let Ok(labels) = comet_schema::labels::Labels::new(
                labels.iter().cloned(),
                comet_schema::labels::NameValidation::Utf8,
            ) {
                out.push(comet_schema::TimeSeries {
                    labels,
                    samples: vec![comet_schema::Sample {
                        timestamp_ms: now,
                        value: comet_schema::model::stale_nan(),
                    }],
                });
            }
        }
    }
    out
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The group's offset within its interval, in nanoseconds: Prometheus's
/// hash of the labels `{file, name}`.
pub fn group_offset_ns(spec: &GroupSpec) -> u64 {
    let hash = fingerprint([("file", spec.file.as_str()), ("name", spec.name.as_str())]);
    hash % (spec.interval.as_nanos().max(1) as u64)
}

/// The group's latest slot at or before `now_ns` (Prometheus's
/// `EvalTimestamp`), in nanoseconds.
pub fn eval_timestamp_ns(spec: &GroupSpec, now_ns: i128) -> i128 {
    let interval = spec.interval.as_nanos().max(1) as i128;
    let offset = group_offset_ns(spec) as i128;
    let adjusted = now_ns - offset;
    let base = adjusted - adjusted.rem_euclid(interval);
    base + offset
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or_default()
}

async fn sleep_until_ns(t_ns: i128, cancel: &CancellationToken) -> bool {
    let wait = (t_ns - now_ns()).max(0) as u64;
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_nanos(wait)) => true,
        _ = cancel.cancelled() => false,
    }
}

async fn run_group(
    inner: Arc<Inner>,
    group: Arc<Mutex<GroupState>>,
    cancel: CancellationToken,
    mut restore: bool,
) {
    let spec = lock(&group).spec.clone();
    let key = group_key(&spec);
    let interval = spec.interval.as_nanos().max(1) as i128;
    let metrics = inner.evaluator.metrics.clone();
    // The first evaluation waits for the group's next slot.
    let mut ts = eval_timestamp_ns(&spec, now_ns()) + interval;
    let mut evaluations = 0u32;
    loop {
        if !sleep_until_ns(ts, &cancel).await {
            return;
        }
        let missed = (now_ns() - ts) / interval;
        if missed > 0 {
            // Too late for those slots: skip to the current one.
            metrics
                .missed
                .with_label_values(&[&key])
                .inc_by(missed as u64);
            metrics
                .iterations
                .with_label_values(&[&key])
                .inc_by(missed as u64);
            ts += missed * interval;
        }
        metrics.iterations.with_label_values(&[&key]).inc();
        let ts_ms = (ts / 1_000_000) as i64;
        inner.evaluator.eval_group(&group, ts_ms).await;
        evaluations += 1;
        // Prometheus restores after the second evaluation: by then recording
        // rules the alerts depend on have run once.
        if restore && evaluations >= 2 {
            restore_for_state(
                inner.evaluator.engine.store(),
                &group,
                now_ms(),
                inner.settings.restore,
            )
            .await;
            restore = false;
        }
        ts += interval;
    }
}

/// Errors of [`Ruler::start`].
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("rule metrics: {0}")]
    Metrics(prometheus::Error),
    #[error(transparent)]
    Load(LoadError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, file: &str, interval: u64) -> GroupSpec {
        GroupSpec {
            name: name.into(),
            file: file.into(),
            interval: Duration::from_secs(interval),
            query_offset: Duration::ZERO,
            limit: 0,
            rules: Vec::new(),
        }
    }

    #[test]
    fn slots_are_aligned_by_hash() {
        let g = spec("g", "/rules.yml", 60);
        let offset = group_offset_ns(&g) as i128;
        assert!(offset < 60_000_000_000);
        let now = 1_700_000_000_123_456_789i128;
        let slot = eval_timestamp_ns(&g, now);
        assert!(slot <= now && now - slot < 60_000_000_000);
        assert_eq!((slot - offset).rem_euclid(60_000_000_000), 0);
        // Another group of the same interval gets another slot.
        let h = spec("h", "/rules.yml", 60);
        assert_ne!(group_offset_ns(&g), group_offset_ns(&h));
    }
}
