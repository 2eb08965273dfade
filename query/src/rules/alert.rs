//! The alerting-rule state machine, as Prometheus runs it: each label set
//! the expression returns is an alert that is pending from its first
//! evaluation, firing once it has been pending for `for`, kept firing for
//! `keep_firing_for` after it stops matching, then inactive (resolved) and
//! kept for 15 minutes so Alertmanager hears of the resolution.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use comet_schema::fingerprint::fingerprint;

use super::template::{TemplateData, expand};
use crate::value::{LabelPairs, Sample};

/// How long a resolved alert is kept (and re-sent as resolved).
pub const RESOLVED_RETENTION: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule: times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Sorted, with `alertname`, without `__name__`.
    pub labels: LabelPairs,
    pub annotations: LabelPairs,
    pub state: AlertState,
    pub value: f64,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub last_sent_at: Option<i64>,
    pub valid_until: i64,
    pub keep_firing_since: Option<i64>,
}

impl Alert {
    /// Whether Alertmanager must hear of it now: firing or resolved alerts,
    /// once per resend delay, and at once after a resolution.
    fn needs_sending(&self, ts: i64, resend_delay: Duration) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        let last = self.last_sent_at;
        if let Some(resolved) = self.resolved_at
            && last.is_none_or(|l| resolved > l)
        {
            return true;
        }
        match last {
            None => true,
            Some(l) => l + (resend_delay.as_millis() as i64) < ts,
        }
    }
}

/// What alert templates may use besides the alert's own labels and value.
#[derive(Debug, Clone, Default)]
pub struct AlertContext {
    pub external_labels: LabelPairs,
    pub external_url: String,
}

/// The alerts of one alerting rule.
#[derive(Debug, Clone, Default)]
pub struct AlertSet {
    pub active: HashMap<u64, Alert>,
    /// False until the `for` state was restored after a start; ALERTS
    /// series are written only from then on.
    pub restored: bool,
}

/// A sample to write: labels (with `__name__`) and value.
pub type OutputSample = (LabelPairs, f64);

fn set_label(labels: &mut LabelPairs, name: &str, value: String) {
    labels.retain(|(n, _)| n != name);
    if !value.is_empty() {
        labels.push((name.to_string(), value));
    }
}

fn sorted(mut labels: LabelPairs) -> LabelPairs {
    labels.sort();
    labels
}

/// The alerting rule's parameters.
pub struct AlertRuleParams<'a> {
    pub name: &'a str,
    pub labels: &'a [(String, String)],
    pub annotations: &'a [(String, String)],
    pub hold: Duration,
    pub keep_firing_for: Duration,
    /// 0 = unlimited.
    pub limit: usize,
}

impl AlertSet {
    /// Applies one evaluation's result at `ts` and returns the ALERTS and
    /// ALERTS_FOR_STATE samples to write (none before the state is
    /// restored).
    pub fn eval(
        &mut self,
        rule: &AlertRuleParams<'_>,
        ts: i64,
        result: &[Sample],
        ctx: &AlertContext,
    ) -> Result<Vec<OutputSample>, String> {
        let mut current: HashMap<u64, Alert> = HashMap::with_capacity(result.len());
        for sample in result {
            let data = TemplateData {
                labels: &sample.labels,
                external_labels: &ctx.external_labels,
                external_url: &ctx.external_url,
                value: sample.point.v,
            };
            let mut labels: LabelPairs = sample
                .labels
                .iter()
                .filter(|(n, _)| n != "__name__")
                .cloned()
                .collect();
            for (name, text) in rule.labels {
                set_label(&mut labels, name, expand(rule.name, text, &data));
            }
            set_label(&mut labels, "alertname", rule.name.to_string());
            let labels = sorted(labels);
            let annotations = rule
                .annotations
                .iter()
                .map(|(name, text)| (name.clone(), expand(rule.name, text, &data)))
                .collect();
            let h = hash(&labels);
            if current.contains_key(&h) {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
            current.insert(
                h,
                Alert {
                    labels,
                    annotations,
                    state: AlertState::Pending,
                    value: sample.point.v,
                    active_at: ts,
                    fired_at: None,
                    resolved_at: None,
                    last_sent_at: None,
                    valid_until: 0,
                    keep_firing_since: None,
                },
            );
        }
        let seen: HashSet<u64> = current.keys().copied().collect();
        for (h, alert) in current {
            match self.active.get_mut(&h) {
                Some(existing) if existing.state != AlertState::Inactive => {
                    existing.value = alert.value;
                    existing.annotations = alert.annotations;
                }
                _ => {
                    self.active.insert(h, alert);
                }
            }
        }
        let keep_ms = rule.keep_firing_for.as_millis() as i64;
        let retention_ms = RESOLVED_RETENTION.as_millis() as i64;
        let hold_ms = rule.hold.as_millis() as i64;
        let mut out = Vec::new();
        let mut active_count = 0;
        let mut remove = Vec::new();
        for (h, a) in self.active.iter_mut() {
            if !seen.contains(h) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && keep_ms > 0 {
                    let since = *a.keep_firing_since.get_or_insert(ts);
                    keep_firing = ts - since < keep_ms;
                }
                if a.state == AlertState::Pending
                    || a.resolved_at.is_some_and(|r| ts - r > retention_ms)
                {
                    remove.push(*h);
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since = None;
            }
            active_count += 1;
            if a.state == AlertState::Pending && ts - a.active_at >= hold_ms {
                a.state = AlertState::Firing;
                a.fired_at = Some(ts);
            }
            if self.restored {
                out.push(alerts_sample(a));
                out.push(for_state_sample(a));
            }
        }
        for h in remove {
            self.active.remove(&h);
        }
        if rule.limit > 0 && active_count > rule.limit {
            self.active.clear();
            return Err(format!(
                "exceeded limit of {} with {active_count} alerts",
                rule.limit
            ));
        }
        Ok(out)
    }

    /// Alerts that are pending or firing, by label set.
    pub fn active_alerts(&self) -> Vec<&Alert> {
        let mut out: Vec<&Alert> = self
            .active
            .values()
            .filter(|a| a.state != AlertState::Inactive)
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// The rule's state: the highest of its alerts'.
    pub fn state(&self) -> AlertState {
        self.active
            .values()
            .map(|a| a.state)
            .max()
            .unwrap_or(AlertState::Inactive)
    }

    /// The alerts Alertmanager must hear of at `ts`, marked as sent; each
    /// is valid for four resend periods (two missed evaluations or sends
    /// are tolerated before Alertmanager resolves it on its own).
    pub fn take_sendable(
        &mut self,
        ts: i64,
        resend_delay: Duration,
        interval: Duration,
    ) -> Vec<Alert> {
        let delta = resend_delay.max(interval).as_millis() as i64;
        let mut out = Vec::new();
        for a in self.active.values_mut() {
            if a.needs_sending(ts, resend_delay) {
                a.last_sent_at = Some(ts);
                a.valid_until = ts + 4 * delta;
                out.push(a.clone());
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

/// The hash Prometheus identifies an alert by (its label set's).
pub fn hash(labels: &[(String, String)]) -> u64 {
    fingerprint(labels.iter().map(|(n, v)| (n.as_str(), v.as_str())))
}

fn alerts_sample(a: &Alert) -> OutputSample {
    let mut labels = a.labels.clone();
    labels.push(("__name__".into(), "ALERTS".into()));
    labels.push(("alertstate".into(), a.state.as_str().into()));
    (sorted(labels), 1.0)
}

fn for_state_sample(a: &Alert) -> OutputSample {
    let mut labels = a.labels.clone();
    labels.push(("__name__".into(), "ALERTS_FOR_STATE".into()));
    // Seconds, as Prometheus stores it.
    ((sorted(labels)), (a.active_at / 1000) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Point;

    const MIN: i64 = 60_000;

    fn sample(instance: &str, v: f64) -> Sample {
        Sample {
            labels: vec![
                ("__name__".into(), "up".into()),
                ("instance".into(), instance.into()),
            ],
            point: Point { t: 0, v },
            histogram: None,
        }
    }

    fn params<'a>(
        labels: &'a [(String, String)],
        ann: &'a [(String, String)],
    ) -> AlertRuleParams<'a> {
        AlertRuleParams {
            name: "Down",
            labels,
            annotations: ann,
            hold: Duration::from_secs(120),
            keep_firing_for: Duration::ZERO,
            limit: 0,
        }
    }

    #[test]
    fn pending_then_firing_then_resolved() {
        let labels = vec![("severity".to_string(), "page".to_string())];
        let ann = vec![(
            "summary".to_string(),
            "{{ $labels.instance }} down: {{ $value }}".to_string(),
        )];
        let rule = params(&labels, &ann);
        let ctx = AlertContext::default();
        let mut set = AlertSet {
            restored: true,
            ..AlertSet::default()
        };
        let out = set.eval(&rule, 0, &[sample("a", 0.0)], &ctx).unwrap();
        assert_eq!(set.state(), AlertState::Pending);
        let alert = set.active_alerts()[0].clone();
        assert_eq!(
            alert.labels,
            vec![
                ("alertname".to_string(), "Down".to_string()),
                ("instance".into(), "a".into()),
                ("severity".into(), "page".into())
            ]
        );
        assert_eq!(alert.annotations[0].1, "a down: 0");
        assert_eq!(out.len(), 2);
        assert!(out[0].0.contains(&("alertstate".into(), "pending".into())));
        assert_eq!(out[1].1, 0.0);
        // Pending alerts are not sent.
        assert!(
            set.take_sendable(0, Duration::from_secs(60), Duration::from_secs(60))
                .is_empty()
        );

        set.eval(&rule, MIN, &[sample("a", 0.0)], &ctx).unwrap();
        assert_eq!(set.state(), AlertState::Pending);
        let out = set.eval(&rule, 2 * MIN, &[sample("a", 0.0)], &ctx).unwrap();
        assert_eq!(set.state(), AlertState::Firing);
        assert!(out[0].0.contains(&("alertstate".into(), "firing".into())));
        let sent = set.take_sendable(2 * MIN, Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].fired_at, Some(2 * MIN));
        assert_eq!(sent[0].valid_until, 2 * MIN + 4 * MIN);
        // Not again before the resend delay.
        set.eval(&rule, 3 * MIN, &[sample("a", 0.0)], &ctx).unwrap();
        assert!(
            set.take_sendable(3 * MIN, Duration::from_secs(60), Duration::from_secs(60))
                .is_empty()
        );

        let out = set.eval(&rule, 4 * MIN, &[], &ctx).unwrap();
        assert!(out.is_empty());
        assert_eq!(set.state(), AlertState::Inactive);
        assert!(set.active_alerts().is_empty());
        let sent = set.take_sendable(4 * MIN, Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!(sent[0].resolved_at, Some(4 * MIN));
        // Kept 15 minutes, then forgotten.
        set.eval(&rule, 19 * MIN, &[], &ctx).unwrap();
        assert_eq!(set.active.len(), 1);
        set.eval(&rule, 20 * MIN, &[], &ctx).unwrap();
        assert!(set.active.is_empty());
    }

    #[test]
    fn pending_alerts_that_stop_are_dropped_and_restart_their_clock() {
        let rule = params(&[], &[]);
        let ctx = AlertContext::default();
        let mut set = AlertSet::default();
        let out = set.eval(&rule, 0, &[sample("a", 1.0)], &ctx).unwrap();
        assert!(out.is_empty(), "nothing is written before the restore");
        set.eval(&rule, MIN, &[], &ctx).unwrap();
        assert!(set.active.is_empty());
        set.eval(&rule, 2 * MIN, &[sample("a", 1.0)], &ctx).unwrap();
        assert_eq!(set.active_alerts()[0].active_at, 2 * MIN);
    }

    #[test]
    fn keep_firing_for() {
        let mut rule = params(&[], &[]);
        rule.hold = Duration::ZERO;
        rule.keep_firing_for = Duration::from_secs(120);
        let ctx = AlertContext::default();
        let mut set = AlertSet::default();
        set.eval(&rule, 0, &[sample("a", 1.0)], &ctx).unwrap();
        assert_eq!(set.state(), AlertState::Firing);
        set.eval(&rule, MIN, &[], &ctx).unwrap();
        assert_eq!(set.state(), AlertState::Firing);
        assert_eq!(set.active_alerts()[0].keep_firing_since, Some(MIN));
        set.eval(&rule, 2 * MIN, &[], &ctx).unwrap();
        assert_eq!(set.state(), AlertState::Firing);
        set.eval(&rule, 3 * MIN, &[], &ctx).unwrap();
        assert_eq!(set.state(), AlertState::Inactive);
    }

    #[test]
    fn limits_and_duplicates() {
        let mut rule = params(&[], &[]);
        rule.limit = 1;
        let ctx = AlertContext::default();
        let mut set = AlertSet::default();
        let err = set
            .eval(&rule, 0, &[sample("a", 1.0), sample("b", 1.0)], &ctx)
            .unwrap_err();
        assert_eq!(err, "exceeded limit of 1 with 2 alerts");
        assert!(set.active.is_empty());
        let labels = vec![("instance".to_string(), "same".to_string())];
        let rule = params(&labels, &[]);
        let err = set
            .eval(&rule, 0, &[sample("a", 1.0), sample("b", 1.0)], &ctx)
            .unwrap_err();
        assert!(err.contains("same labelset"), "{err}");
    }
}
