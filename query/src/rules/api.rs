//! `/api/v1/rules` and `/api/v1/alerts` in Prometheus's JSON: groups with
//! their rules in file order, alerting and recording rules in one list
//! told apart by `type`, times as Go prints them (RFC 3339 with trimmed
//! nanoseconds, `0001-01-01T00:00:00Z` before the first evaluation), alert
//! values as Go's `%e` shortest form.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::alert::Alert;
use super::file::RuleKind;
use super::group::{GroupState, RuleState, lock};

/// Which rules `/api/v1/rules` lists (`type`, `rule_name[]`,
/// `rule_group[]`, `file[]`).
#[derive(Debug, Clone, Default)]
pub struct RuleFilter {
    /// `Some(true)`: alerting rules only; `Some(false)`: recording only.
    pub alerting: Option<bool>,
    pub rule_names: HashSet<String>,
    pub groups: HashSet<String>,
    pub files: HashSet<String>,
}

impl RuleFilter {
    /// Reads the parameters; an unknown `type` is Prometheus's error.
    pub fn new(
        kind: Option<&str>,
        rule_names: Vec<&str>,
        groups: Vec<&str>,
        files: Vec<&str>,
    ) -> Result<Self, String> {
        let alerting = match kind.map(|k| k.to_ascii_lowercase()) {
            None => None,
            Some(k) if k.is_empty() => None,
            Some(k) if k == "alert" => Some(true),
            Some(k) if k == "record" => Some(false),
            Some(k) => return Err(format!("not supported value {k:?}")),
        };
        let set = |v: Vec<&str>| v.into_iter().map(str::to_string).collect();
        Ok(Self {
            alerting,
            rule_names: set(rule_names),
            groups: set(groups),
            files: set(files),
        })
    }

    fn is_set(&self) -> bool {
        self.alerting.is_some()
            || !self.rule_names.is_empty()
            || !self.groups.is_empty()
            || !self.files.is_empty()
    }
}

/// Go's `time.Time` JSON for Unix nanoseconds, in UTC.
pub fn go_time_ns(ns: i128) -> String {
    let secs = ns.div_euclid(1_000_000_000) as i64;
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    let Some(t) = chrono::DateTime::from_timestamp(secs, nanos) else {
        return "0001-01-01T00:00:00Z".into();
    };
    let mut out = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if nanos > 0 {
        out.push('.');
        out.push_str(format!("{nanos:09}").trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Go's `time.Time` JSON for Unix milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    go_time_ns(ms as i128 * 1_000_000)
}

fn system_time(t: Option<SystemTime>) -> String {
    match t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
        Some(d) => go_time_ns(d.as_nanos() as i128),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`.
pub fn go_float_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{v:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// A float64 as Go's encoding/json writes it: whole numbers without a
/// fraction (`60`, not `60.0`).
fn go_number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        Value::from(v as i64)
    } else {
        Value::from(v)
    }
}

fn labels_json(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

fn alert_json(a: &Alert) -> Value {
    let mut out = json!({
        "labels": labels_json(&a.labels),
        "annotations": labels_json(&a.annotations),
        "state": a.state.as_str(),
        "activeAt": rfc3339_ms(a.active_at),
        "value": go_float_e(a.value),
    });
    if let (Some(since), Value::Object(map)) = (a.keep_firing_since, &mut out) {
        map.insert("keepFiringSince".into(), Value::String(rfc3339_ms(since)));
    }
    out
}

fn rule_json(rule: &RuleState) -> Value {
    let mut out = match &rule.spec.kind {
        RuleKind::Alerting {
            hold,
            keep_firing_for,
            annotations,
        } => json!({
            "state": rule.alerts.state().as_str(),
            "name": rule.spec.name,
            "query": rule.query,
            "duration": go_number(hold.as_secs_f64()),
            "keepFiringFor": go_number(keep_firing_for.as_secs_f64()),
            "labels": labels_json(&rule.spec.labels),
            "annotations": labels_json(annotations),
            "alerts": rule.alerts.active_alerts().into_iter().map(alert_json).collect::<Vec<_>>(),
            "health": rule.health.as_str(),
            "evaluationTime": go_number(rule.evaluation_time.as_secs_f64()),
            "lastEvaluation": system_time(rule.last_evaluation),
            "type": "alerting",
        }),
        RuleKind::Recording => {
            let mut v = json!({
                "name": rule.spec.name,
                "query": rule.query,
                "health": rule.health.as_str(),
                "evaluationTime": go_number(rule.evaluation_time.as_secs_f64()),
                "lastEvaluation": system_time(rule.last_evaluation),
                "type": "recording",
            });
            // `omitempty` in Prometheus.
            if !rule.spec.labels.is_empty()
                && let Value::Object(map) = &mut v
            {
                map.insert("labels".into(), labels_json(&rule.spec.labels));
            }
            v
        }
    };
    if let (Some(e), Value::Object(map)) = (&rule.last_error, &mut out) {
        map.insert("lastError".into(), Value::String(e.clone()));
    }
    out
}

/// The `data` of `/api/v1/rules`.
pub fn rules_data(groups: &[Arc<Mutex<GroupState>>], filter: &RuleFilter) -> Value {
    let mut out = Vec::new();
    for group in groups {
        let g = lock(group);
        if !filter.groups.is_empty() && !filter.groups.contains(&g.spec.name) {
            continue;
        }
        if !filter.files.is_empty() && !filter.files.contains(&g.spec.file) {
            continue;
        }
        let rules: Vec<Value> = g
            .rules
            .iter()
            .filter(|r| filter.alerting.is_none_or(|a| a == r.spec.is_alerting()))
            .filter(|r| filter.rule_names.is_empty() || filter.rule_names.contains(&r.spec.name))
            .map(rule_json)
            .collect();
        if filter.is_set() && rules.is_empty() {
            continue;
        }
        out.push(json!({
            "name": g.spec.name,
            "file": g.spec.file,
            "rules": rules,
            "interval": go_number(g.spec.interval.as_secs_f64()),
            "limit": g.spec.limit,
            "evaluationTime": go_number(g.evaluation_time.as_secs_f64()),
            "lastEvaluation": system_time(g.last_evaluation),
        }));
    }
    json!({ "groups": out })
}

/// The `data` of `/api/v1/alerts`: every pending or firing alert.
pub fn alerts_data(groups: &[Arc<Mutex<GroupState>>]) -> Value {
    let mut alerts = Vec::new();
    for group in groups {
        let g = lock(group);
        for rule in &g.rules {
            alerts.extend(rule.alerts.active_alerts().into_iter().map(alert_json));
        }
    }
    json!({ "alerts": alerts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formats() {
        assert_eq!(go_float_e(1.0), "1e+00");
        assert_eq!(go_float_e(35.0), "3.5e+01");
        assert_eq!(go_float_e(0.00012), "1.2e-04");
        assert_eq!(go_float_e(-2e120), "-2e+120");
        assert_eq!(go_time_ns(0), "1970-01-01T00:00:00Z");
        assert_eq!(go_time_ns(1_500_000_000), "1970-01-01T00:00:01.5Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(system_time(None), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn filters() {
        assert!(RuleFilter::new(Some("bad"), vec![], vec![], vec![]).is_err());
        let f = RuleFilter::new(Some("alert"), vec!["A"], vec![], vec![]).unwrap();
        assert_eq!(f.alerting, Some(true));
        assert!(f.is_set());
        assert!(!RuleFilter::default().is_set());
    }
}
