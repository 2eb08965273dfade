//! ClickHouse storage gauges on Comet's /metrics: active parts, bytes on
//! disk and rows of each table of Comet's database, read from
//! `system.parts` of the server Comet talks to every [`REFRESH`].
//!
//! In cluster mode that is the one node Comet's URL names (its `*_local`
//! tables), not the whole cluster.

use std::time::Duration;

use comet_schema::Store;
use comet_schema::store::error_chain;
use prometheus::{IntGaugeVec, Opts, Registry};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How often the gauges are refreshed.
pub const REFRESH: Duration = Duration::from_secs(15);

/// The gauges, labelled by table.
#[derive(Clone)]
pub struct ClickHouseStats {
    parts: IntGaugeVec,
    disk_bytes: IntGaugeVec,
    rows: IntGaugeVec,
}

impl ClickHouseStats {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let gauge = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["table"]);
        let stats = Self {
            parts: gauge(
                "comet_clickhouse_parts",
                "Active data parts of each table of Comet's ClickHouse database.",
            )?,
            disk_bytes: gauge(
                "comet_clickhouse_disk_bytes",
                "Bytes on disk of the active parts of each table of Comet's ClickHouse database.",
            )?,
            rows: gauge(
                "comet_clickhouse_rows",
                "Rows in the active parts of each table of Comet's ClickHouse database.",
            )?,
        };
        for g in [&stats.parts, &stats.disk_bytes, &stats.rows] {
            registry.register(Box::new(g.clone()))?;
        }
        Ok(stats)
    }

    /// Reads `system.parts` once and sets the gauges; tables without active
    /// parts any more are dropped from them.
    pub async fn refresh(&self, store: &Store) -> Result<(), comet_schema::store::StoreError> {
        let rows: Vec<(String, u64, u64, u64)> = store
            .fetch_all(
                store
                    .server_client()
                    .query(
                        "SELECT table, count(), sum(bytes_on_disk), sum(rows) \
                         FROM system.parts WHERE database = ? AND active \
                         GROUP BY table ORDER BY table",
                    )
                    .bind(store.database()),
                "read table parts",
            )
            .await?;
        for g in [&self.parts, &self.disk_bytes, &self.rows] {
            g.reset();
        }
        for (table, parts, bytes, count) in rows {
            let set = |g: &IntGaugeVec, v: u64| {
                g.with_label_values(&[table.as_str()])
                    .set(i64::try_from(v).unwrap_or(i64::MAX))
            };
            set(&self.parts, parts);
            set(&self.disk_bytes, bytes);
            set(&self.rows, count);
        }
        Ok(())
    }

    /// Refreshes the gauges every [`REFRESH`] until `stop` is cancelled.
    pub fn spawn(self, store: Store, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        every_refresh("ClickHouse table statistics", stop, move || {
            let (stats, store) = (self.clone(), store.clone());
            async move { stats.refresh(&store).await }
        })
    }
}

/// Runs `refresh` every [`REFRESH`] until `stop` is cancelled. A failed
/// read is logged and leaves the last values.
pub fn every_refresh<F, Fut>(
    what: &'static str,
    stop: CancellationToken,
    mut refresh: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), comet_schema::store::StoreError>> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            // A read retrying against an unreachable server must not
            // hold up shutdown.
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                result = refresh() => result,
            };
            match result {
                Ok(()) => debug!(what, "refreshed"),
                Err(err) => warn!(what, error = %error_chain(&err), "cannot read"),
            }
        }
    })
}
