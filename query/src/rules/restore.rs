//! Restoring the `for` clock of pending alerts after a restart, from the
//! ALERTS_FOR_STATE series (value: when the alert became active, in Unix
//! seconds), with Prometheus's outage tolerance and grace period.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use clickhouse::Row;
use comet_schema::Store;
use serde::Deserialize;
use tracing::{info, warn};

use super::file::RuleKind;
use super::group::{GroupState, lock};
use crate::value::LabelPairs;

/// How restoring treats an outage.
#[derive(Debug, Clone, Copy)]
pub struct RestorePolicy {
    /// Samples older than this before the restore are not used.
    pub outage_tolerance: Duration,
    /// An alert restored to fire sooner than this gets this long.
    pub for_grace_period: Duration,
}

#[derive(Debug, Row, Deserialize)]
struct LastSample {
    labels: Vec<(String, String)>,
    t: i64,
    v: f64,
}

/// The last non-NaN ALERTS_FOR_STATE sample of every series in
/// `[ts - tolerance, ts]`, by label set without `__name__`.
async fn last_for_state(
    store: &Store,
    ts: i64,
    tolerance: Duration,
) -> Result<HashMap<LabelPairs, (i64, f64)>, String> {
    let start = ts - tolerance.as_millis() as i64;
    let sql = "WITH matched AS (
            SELECT fingerprint, any(labels) AS series_labels FROM series
            WHERE metric_name = 'ALERTS_FOR_STATE'
              AND date >= toDate(fromUnixTimestamp64Milli({start:Int64}, 'UTC'))
              AND date <= toDate(fromUnixTimestamp64Milli({end:Int64}, 'UTC'))
            GROUP BY fingerprint
        )
        SELECT any(m.series_labels) AS labels, max(s.timestamp_ms) AS t,
               argMax(s.value, s.timestamp_ms) AS v
        FROM samples AS s INNER JOIN matched AS m ON m.fingerprint = s.fingerprint
        WHERE s.metric_name = 'ALERTS_FOR_STATE'
          AND s.fingerprint IN (SELECT fingerprint FROM matched)
          AND s.timestamp_ms >= {start:Int64} AND s.timestamp_ms <= {end:Int64}
          AND NOT isNaN(s.value)
        GROUP BY s.fingerprint";
    let q = store
        .client()
        .query(sql)
        .param("start", start)
        .param("end", ts);
    let rows: Vec<LastSample> = store
        .fetch_all(q, "ALERTS_FOR_STATE restore")
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut labels: LabelPairs = r
                .labels
                .into_iter()
                .filter(|(n, v)| n != "__name__" && !v.is_empty())
                .collect();
            labels.sort();
            (labels, (r.t, r.v))
        })
        .collect())
}

/// Prometheus's `RestoreForState` at `ts` (Unix ms): each active alert
/// found in ALERTS_FOR_STATE gets back its `ActiveAt`, moved later by the
/// time Comet was down, and no sooner to fire than the grace period.
/// Every alerting rule is marked restored, even when the query failed.
pub async fn restore_for_state(
    store: &Store,
    group: &Mutex<GroupState>,
    ts: i64,
    policy: RestorePolicy,
) {
    let needs_query = lock(group).rules.iter().any(|r| match &r.spec.kind {
        RuleKind::Alerting { hold, .. } => *hold >= policy.for_grace_period,
        RuleKind::Recording => false,
    });
    let found = if needs_query {
        match last_for_state(store, ts, policy.outage_tolerance).await {
            Ok(found) => found,
            Err(e) => {
                warn!(error = %e, "cannot read ALERTS_FOR_STATE; alerts start their `for` anew");
                HashMap::new()
            }
        }
    } else {
        HashMap::new()
    };
    let grace = policy.for_grace_period.as_millis() as i64;
    let mut g = lock(group);
    let group_name = g.spec.name.clone();
    for rule in &mut g.rules {
        let RuleKind::Alerting { hold, .. } = &rule.spec.kind else {
            continue;
        };
        let hold = hold.as_millis() as i64;
        // Shorter than the grace period: restoring could only delay it.
        if hold >= grace {
            for alert in rule.alerts.active.values_mut() {
                let Some(&(down_at, value)) = found.get(&alert.labels) else {
                    continue;
                };
                let active_at = (value * 1000.0) as i64;
                let remaining = hold - (down_at - active_at);
                let restored = if remaining <= 0 {
                    // It was firing: the next evaluation fires it again.
                    active_at
                } else if remaining < grace {
                    ts + grace - hold
                } else {
                    active_at + (ts - down_at)
                };
                info!(
                    group = %group_name,
                    alert = %rule.spec.name,
                    active_at = restored,
                    "restored the `for` state of an alert"
                );
                alert.active_at = restored;
            }
        }
        rule.alerts.restored = true;
    }
}
