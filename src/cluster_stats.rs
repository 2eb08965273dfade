//! The health of a ClickHouse cluster on Comet's /metrics, read every
//! [`crate::clickhouse_stats::REFRESH`] from every node (`clusterAllReplicas`): which nodes answer,
//! and per replica its read-only tables (lost Keeper session), replication
//! queue and delay. These are what tells an operator that acknowledged
//! inserts will soon fail (a shard without enough live replicas for the
//! insert quorum) or that a replica is falling behind.

use comet_schema::Store;
use comet_schema::ddl::quote_string;
use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};
use tokio_util::sync::CancellationToken;

use crate::clickhouse_stats::every_refresh;

#[derive(Clone)]
pub struct ClusterStats {
    cluster: String,
    replicas: IntGauge,
    answering: IntGauge,
    readonly: IntGaugeVec,
    queue: IntGaugeVec,
    delay: IntGaugeVec,
}

impl ClusterStats {
    pub fn new(registry: &Registry, cluster: &str) -> prometheus::Result<Self> {
        let per_replica =
            |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["shard", "replica"]);
        let stats = Self {
            cluster: cluster.to_string(),
            replicas: IntGauge::new(
                "comet_clickhouse_cluster_replicas",
                "Replicas (servers) of Comet's ClickHouse cluster in remote_servers.",
            )?,
            answering: IntGauge::new(
                "comet_clickhouse_cluster_replicas_answering",
                "Replicas of Comet's ClickHouse cluster that answered the last health read.",
            )?,
            readonly: per_replica(
                "comet_clickhouse_replica_readonly_tables",
                "Read-only replicated tables of Comet's database on a replica (no Keeper session: \
                 inserts through it fail).",
            )?,
            queue: per_replica(
                "comet_clickhouse_replication_queue",
                "Replication tasks (fetches, merges) waiting on a replica, over Comet's tables.",
            )?,
            delay: per_replica(
                "comet_clickhouse_replication_delay_seconds",
                "How far a replica is behind the newest data of its shard (absolute_delay).",
            )?,
        };
        registry.register(Box::new(stats.replicas.clone()))?;
        registry.register(Box::new(stats.answering.clone()))?;
        for g in [&stats.readonly, &stats.queue, &stats.delay] {
            registry.register(Box::new(g.clone()))?;
        }
        Ok(stats)
    }

    /// Reads every node's `system.replicas` once and sets the gauges;
    /// replicas that did not answer leave them.
    pub async fn refresh(&self, store: &Store) -> Result<(), comet_schema::store::StoreError> {
        let cluster = quote_string(&self.cluster);
        let configured: u64 = store
            .fetch_one(
                store.server_client().query(&format!(
                    "SELECT count() FROM system.clusters WHERE cluster = {cluster}"
                )),
                "read the cluster's replicas",
            )
            .await?;
        // `getMacro` is evaluated on each node; nodes that are down are
        // skipped instead of failing the read.
        let rows: Vec<(String, String, u64, u64, u64)> = store
            .fetch_all(
                store
                    .server_client()
                    .query(&format!(
                        "SELECT getMacro('shard') AS shard, getMacro('replica') AS replica, \
                                sum(is_readonly), sum(queue_size), max(absolute_delay) \
                         FROM clusterAllReplicas({cluster}, system.replicas) \
                         WHERE database = ? GROUP BY shard, replica ORDER BY shard, replica \
                         SETTINGS skip_unavailable_shards = 1"
                    ))
                    .bind(store.database()),
                "read the cluster's replica health",
            )
            .await?;
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.replicas.set(gauge(configured));
        self.answering.set(gauge(rows.len() as u64));
        for g in [&self.readonly, &self.queue, &self.delay] {
            g.reset();
        }
        for (shard, replica, readonly, queue, delay) in rows {
            let labels = [shard.as_str(), replica.as_str()];
            self.readonly
                .with_label_values(&labels)
                .set(gauge(readonly));
            self.queue.with_label_values(&labels).set(gauge(queue));
            self.delay.with_label_values(&labels).set(gauge(delay));
        }
        Ok(())
    }

    /// Refreshes the gauges every [`crate::clickhouse_stats::REFRESH`] until `stop` is cancelled.
    pub fn spawn(self, store: Store, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        every_refresh("ClickHouse cluster health", stop, move || {
            let (stats, store) = (self.clone(), store.clone());
            async move { stats.refresh(&store).await }
        })
    }
}
