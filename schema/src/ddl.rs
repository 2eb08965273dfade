//! ClickHouse DDL for Comet's tables, rendered from one description for
//! both a single server and a cluster.
//!
//! Single server: plain `MergeTree` family tables.
//! Cluster: every table becomes a `Replicated*MergeTree` table `<name>_local`
//! on each node plus a `Distributed` table `<name>` over it, both created
//! `ON CLUSTER`. `series` and `samples` are sharded by fingerprint so all of a
//! series' rows live on one shard and range functions run shard-locally.

use std::time::Duration;

/// Where the tables live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    SingleNode,
    /// A cluster named in the server's `remote_servers`, with `{shard}` and
    /// `{replica}` macros defined on every node and Keeper configured.
    Cluster {
        name: String,
    },
}

/// What the rendered DDL depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaOptions {
    pub database: String,
    /// How long samples are kept; `None` keeps them forever.
    pub retention: Option<Duration>,
    pub topology: Topology,
}

/// The MergeTree flavour of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    /// MergeTree.
    Plain,
    /// Rows with the same ORDER BY key merge their aggregate columns.
    Aggregating,
    /// Rows with the same ORDER BY key collapse at merge time, keeping the
    /// one with the highest version column (or the last inserted).
    Replacing { version: Option<&'static str> },
}

/// One Comet table, described once.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    pub name: &'static str,
    pub(crate) columns: &'static [(&'static str, &'static str)],
    engine: Engine,
    partition_by: Option<&'static str>,
    order_by: &'static str,
    /// A `DateTime` expression; the retention is added to it to form the TTL.
    ttl_base: Option<&'static str>,
    sharding_key: &'static str,
    settings: &'static [&'static str],
}

/// One row per series per UTC day it is active. Label matchers run here
/// first to find fingerprints, which then select samples.
pub const SERIES: TableSpec = TableSpec {
    name: "series",
    columns: &[
        ("date", "Date CODEC(Delta, ZSTD(1))"),
        ("metric_name", "LowCardinality(String)"),
        ("fingerprint", "UInt64"),
        (
            "labels",
            "Map(LowCardinality(String), String) CODEC(ZSTD(1))",
        ),
    ],
    engine: Engine::Replacing { version: None },
    partition_by: Some("toYYYYMM(date)"),
    order_by: "(metric_name, date, fingerprint)",
    // A series row stays one day longer than the samples of that day.
    ttl_base: Some("toDateTime(date, 'UTC') + toIntervalDay(1)"),
    sharding_key: "fingerprint",
    settings: &[],
};

impl TableSpec {
    /// The same table under another name (a rebuild's new table).
    pub fn renamed(&self, name: &'static str) -> TableSpec {
        TableSpec { name, ..*self }
    }
}

/// The sort key of the sample tables: a metric's samples hour by hour,
/// each hour series by series. A query reads the hours its range touches
/// (plus the lookback), not all of each series' day: with the series
/// first, every series' rows fill whole granules and a query over the last
/// hour read the whole day so far (10,000 series, a day at 15 s: `rate`
/// over the last hour 1.1 s, over the last minute 0.9 s; with the hour
/// first 0.4 s and 0.09 s). Databases created before keep their key until
/// rebuilt (README, "Storage").
pub const SAMPLES_ORDER_BY: &str =
    "(metric_name, intDiv(timestamp_ms, 3600000), fingerprint, timestamp_ms)";

/// Float samples.
pub const SAMPLES: TableSpec = TableSpec {
    name: "samples",
    columns: &[
        ("metric_name", "LowCardinality(String)"),
        ("fingerprint", "UInt64"),
        ("timestamp_ms", "Int64 CODEC(DoubleDelta, ZSTD(1))"),
        ("value", "Float64 CODEC(Gorilla, ZSTD(1))"),
    ],
    engine: Engine::Plain,
    partition_by: Some("toDate(toDateTime(intDiv(timestamp_ms, 1000), 'UTC'))"),
    order_by: SAMPLES_ORDER_BY,
    ttl_base: Some("toDateTime(intDiv(timestamp_ms, 1000), 'UTC')"),
    sharding_key: "fingerprint",
    // Expired data goes a whole part at a time, which is cheap.
    settings: &["ttl_only_drop_parts = 1"],
};

/// Native histogram samples, one row each, next to `samples` with the same
/// sort key, partitioning and TTL; the series' labels are in `series`
/// under the same fingerprint.
///
/// Buckets are kept by absolute index with absolute counts, in the layout
/// received (remote-write 1.0's spans and deltas are decoded at ingest,
/// nothing is compacted). Integer histograms fill the integer columns,
/// float histograms the `_float` ones; the other flavour's columns hold
/// 0 or empty arrays, which cost next to nothing. The staleness marker is
/// a `sum` of the stale NaN, bit-exact (Gorilla is lossless).
///
/// Layout chosen by measurement (`scripts/measure_native_histograms.sh`,
/// ClickHouse 25.8: 100 series x 1000 samples 15 s apart, schema 3, 20
/// populated buckets, counts growing; bytes on disk after `OPTIMIZE TABLE
/// ... FINAL`): 36.4 bytes per histogram sample with integer counts in
/// `UInt64` arrays under Delta+ZSTD (the bucket counts are 27 of them; the
/// Delta of the flattened arrays is the difference to the neighbouring
/// bucket, as Prometheus's own encoding), against 76.0 bytes for the same
/// data as 23 classic series (20 `le` buckets, `+Inf`, `_count`, `_sum`)
/// in `samples`. `Float64` counts would cost 47.5 (ZSTD) or 60.7 (Gorilla)
/// and lose integers above 2^53, hence the separate flavours; T64 instead
/// of Delta gave 37.5. Index arrays under Delta cost 0.3 bytes.
pub const HISTOGRAMS: TableSpec = TableSpec {
    name: "histograms",
    columns: &[
        ("metric_name", "LowCardinality(String)"),
        ("fingerprint", "UInt64"),
        ("timestamp_ms", "Int64 CODEC(DoubleDelta, ZSTD(1))"),
        ("start_timestamp_ms", "Int64 CODEC(DoubleDelta, ZSTD(1))"),
        ("float_histogram", "Bool"),
        ("schema", "Int8"),
        (
            "reset_hint",
            "Enum8('unknown' = 0, 'reset' = 1, 'not_reset' = 2, 'gauge' = 3)",
        ),
        ("zero_threshold", "Float64 CODEC(Gorilla, ZSTD(1))"),
        ("zero_count", "UInt64 CODEC(Delta, ZSTD(1))"),
        ("count", "UInt64 CODEC(Delta, ZSTD(1))"),
        ("zero_count_float", "Float64 CODEC(ZSTD(1))"),
        ("count_float", "Float64 CODEC(ZSTD(1))"),
        ("sum", "Float64 CODEC(Gorilla, ZSTD(1))"),
        ("positive_index", "Array(Int32) CODEC(Delta, ZSTD(1))"),
        ("positive_counts", "Array(UInt64) CODEC(Delta, ZSTD(1))"),
        ("positive_counts_float", "Array(Float64) CODEC(ZSTD(1))"),
        ("negative_index", "Array(Int32) CODEC(Delta, ZSTD(1))"),
        ("negative_counts", "Array(UInt64) CODEC(Delta, ZSTD(1))"),
        ("negative_counts_float", "Array(Float64) CODEC(ZSTD(1))"),
        ("custom_values", "Array(Float64) CODEC(ZSTD(1))"),
    ],
    engine: Engine::Plain,
    partition_by: Some("toDate(toDateTime(intDiv(timestamp_ms, 1000), 'UTC'))"),
    order_by: SAMPLES_ORDER_BY,
    ttl_base: Some("toDateTime(intDiv(timestamp_ms, 1000), 'UTC')"),
    sharding_key: "fingerprint",
    settings: &["ttl_only_drop_parts = 1"],
};

/// Type, unit and help per metric family; the newest row wins.
pub const METADATA: TableSpec = TableSpec {
    name: "metadata",
    columns: &[
        ("metric_family_name", "LowCardinality(String)"),
        ("type", "LowCardinality(String)"),
        ("unit", "LowCardinality(String)"),
        ("help", "String"),
        ("last_seen", "DateTime('UTC')"),
    ],
    engine: Engine::Replacing {
        version: Some("last_seen"),
    },
    partition_by: None,
    order_by: "(metric_family_name, type, unit, help)",
    ttl_base: Some("last_seen"),
    sharding_key: "cityHash64(metric_family_name)",
    settings: &[],
};

/// Exemplars (trace references) attached to samples.
pub const EXEMPLARS: TableSpec = TableSpec {
    name: "exemplars",
    columns: &[
        ("metric_name", "LowCardinality(String)"),
        ("fingerprint", "UInt64"),
        ("timestamp_ms", "Int64 CODEC(DoubleDelta, ZSTD(1))"),
        ("value", "Float64 CODEC(Gorilla, ZSTD(1))"),
        (
            "labels",
            "Map(LowCardinality(String), String) CODEC(ZSTD(1))",
        ),
    ],
    engine: Engine::Replacing { version: None },
    partition_by: Some("toDate(toDateTime(intDiv(timestamp_ms, 1000), 'UTC'))"),
    order_by: "(metric_name, fingerprint, timestamp_ms)",
    ttl_base: Some("toDateTime(intDiv(timestamp_ms, 1000), 'UTC')"),
    sharding_key: "fingerprint",
    settings: &["ttl_only_drop_parts = 1"],
};

/// When each series had samples, per UTC hour: the first and last sample
/// time. Filled by a materialized view on `samples`, so the label and
/// series endpoints honour a time range to the minute without scanning
/// samples (the `series` table only knows days). Duplicate rows are
/// harmless: min and max are idempotent.
pub const SERIES_ACTIVITY: TableSpec = TableSpec {
    name: "series_activity",
    columns: &[
        ("hour", "DateTime('UTC') CODEC(Delta, ZSTD(1))"),
        ("metric_name", "LowCardinality(String)"),
        ("fingerprint", "UInt64"),
        ("min_ts", "SimpleAggregateFunction(min, Int64)"),
        ("max_ts", "SimpleAggregateFunction(max, Int64)"),
    ],
    engine: Engine::Aggregating,
    partition_by: Some("toYYYYMM(hour)"),
    order_by: "(hour, metric_name, fingerprint)",
    ttl_base: Some("hour + toIntervalHour(1)"),
    sharding_key: "fingerprint",
    settings: &[],
};

/// The materialized view feeding [`SERIES_ACTIVITY`] from each insert into
/// `samples`, and the same SELECT to backfill what was there before.
const SERIES_ACTIVITY_SELECT: &str = "SELECT toStartOfHour(toDateTime(intDiv(timestamp_ms, 1000), 'UTC')) AS hour, \
     metric_name, fingerprint, min(timestamp_ms) AS min_ts, max(timestamp_ms) AS max_ts \
     FROM {source} GROUP BY hour, metric_name, fingerprint";

/// Every data table, in creation order.
pub const DATA_TABLES: &[TableSpec] = &[
    SERIES,
    SAMPLES,
    METADATA,
    EXEMPLARS,
    SERIES_ACTIVITY,
    HISTOGRAMS,
];

/// Quotes an identifier with backticks, escaping what needs it.
pub fn quote_identifier(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('`');
    for c in name.chars() {
        match c {
            '`' => out.push_str("\\`"),
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out.push('`');
    out
}

/// Quotes a string literal with single quotes, escaping what needs it.
pub fn quote_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

impl SchemaOptions {
    /// ` ON CLUSTER name` in a cluster, empty on a single server.
    pub fn on_cluster(&self) -> String {
        match &self.topology {
            Topology::SingleNode => String::new(),
            Topology::Cluster { name } => format!(" ON CLUSTER {}", quote_identifier(name)),
        }
    }

    /// The settings every statement on the tables needs.
    ///
    /// On a cluster, inserts into the Distributed tables would otherwise be
    /// acknowledged while their rows are still queued on the receiving node
    /// (lost with it, and invisible on the other shards until sent): an
    /// insert waits until every shard that gets rows has them
    /// (`distributed_foreground_insert`), each on `quorum` replicas (`auto`:
    /// a majority, which the caller resolves to a number: ClickHouse 25.8
    /// waits forever on `auto` with one replica); parallel quorum inserts
    /// keep concurrent batches from waiting for each other. Queries whose
    /// `IN` subqueries read another Distributed table run them once and
    /// send the result to every shard (`GLOBAL IN`), which is right
    /// whatever the subquery reads.
    pub fn topology_settings(&self, quorum: &str) -> Vec<(&'static str, String)> {
        match self.topology {
            Topology::SingleNode => Vec::new(),
            Topology::Cluster { .. } => vec![
                ("distributed_product_mode", "global".into()),
                ("distributed_foreground_insert", "1".into()),
                ("insert_quorum", quorum.into()),
                ("insert_quorum_parallel", "1".into()),
            ],
        }
    }

    /// `database`.`table`, quoted.
    pub fn qualified(&self, table: &str) -> String {
        format!(
            "{}.{}",
            quote_identifier(&self.database),
            quote_identifier(table)
        )
    }

    /// `CREATE DATABASE IF NOT EXISTS`.
    pub fn create_database(&self) -> String {
        format!(
            "CREATE DATABASE IF NOT EXISTS {}{}",
            quote_identifier(&self.database),
            self.on_cluster()
        )
    }

    /// `DROP DATABASE`, on every node of a cluster, waiting until its
    /// replicated tables have left Keeper (so it can be created again).
    pub fn drop_database(&self) -> String {
        format!(
            "DROP DATABASE IF EXISTS {}{} SYNC",
            quote_identifier(&self.database),
            self.on_cluster()
        )
    }

    /// Merges `spec`'s table to its settled state (each node's storage
    /// table in a cluster).
    pub fn optimize_final(&self, spec: &TableSpec) -> String {
        format!(
            "OPTIMIZE TABLE {}{} FINAL",
            self.qualified(&self.storage_table(spec)),
            self.on_cluster()
        )
    }

    /// Empties `spec`'s table (each node's storage table in a cluster).
    pub fn truncate(&self, spec: &TableSpec) -> String {
        format!(
            "TRUNCATE TABLE IF EXISTS {}{} SYNC",
            self.qualified(&self.storage_table(spec)),
            self.on_cluster()
        )
    }

    /// The name of the table that holds the rows on a node: the table itself
    /// on a single server, `<name>_local` in a cluster.
    pub fn storage_table(&self, spec: &TableSpec) -> String {
        match self.topology {
            Topology::SingleNode => spec.name.to_string(),
            Topology::Cluster { .. } => format!("{}_local", spec.name),
        }
    }

    /// The statements that create `spec`, idempotently.
    pub fn create_table(&self, spec: &TableSpec) -> Vec<String> {
        let storage = self.storage_table(spec);
        let mut sql = format!(
            "CREATE TABLE IF NOT EXISTS {}{}\n(\n",
            self.qualified(&storage),
            self.on_cluster()
        );
        let columns: Vec<String> = spec
            .columns
            .iter()
            .map(|(name, ty)| format!("    {} {}", quote_identifier(name), ty))
            .collect();
        sql.push_str(&columns.join(",\n"));
        sql.push_str("\n)\n");
        sql.push_str(&format!(
            "ENGINE = {}\n",
            self.engine_clause(spec, &storage)
        ));
        if let Some(p) = spec.partition_by {
            sql.push_str(&format!("PARTITION BY {p}\n"));
        }
        sql.push_str(&format!("ORDER BY {}\n", spec.order_by));
        if let Some(ttl) = self.ttl_expression(spec) {
            sql.push_str(&format!("TTL {ttl}\n"));
        }
        if !spec.settings.is_empty() {
            sql.push_str(&format!("SETTINGS {}\n", spec.settings.join(", ")));
        }
        let mut statements = vec![sql.trim_end().to_string()];
        if let Topology::Cluster { name } = &self.topology {
            statements.push(format!(
                "CREATE TABLE IF NOT EXISTS {}{} AS {}\nENGINE = Distributed({}, {}, {}, {})",
                self.qualified(spec.name),
                self.on_cluster(),
                self.qualified(&storage),
                quote_string(name),
                quote_string(&self.database),
                quote_string(&storage),
                spec.sharding_key
            ));
        }
        statements
    }

    /// Creates [`SERIES_ACTIVITY`], the view that fills it on every insert
    /// into `samples` (on each node's storage table in a cluster), and
    /// backfills it from the samples already stored.
    pub fn create_series_activity(&self) -> Vec<String> {
        let mut statements = self.create_table(&SERIES_ACTIVITY);
        statements.push(self.activity_view("_mv", &SAMPLES));
        // Through the Distributed tables in a cluster, whose sharding key is
        // the same, so every shard gets its own series. Rows the view adds
        // meanwhile only repeat what min/max already know.
        statements.push(format!(
            "INSERT INTO {} {}",
            self.qualified(SERIES_ACTIVITY.name),
            SERIES_ACTIVITY_SELECT.replace("{source}", &self.qualified(SAMPLES.name))
        ));
        statements
    }

    /// Creates [`HISTOGRAMS`] and a second view feeding [`SERIES_ACTIVITY`]
    /// from it, so histogram series show in time-bounded label and series
    /// look-ups as float series do.
    pub fn create_histograms(&self) -> Vec<String> {
        let mut statements = self.create_table(&HISTOGRAMS);
        statements.push(self.activity_view("_histograms_mv", &HISTOGRAMS));
        statements
    }

    /// The materialized view `series_activity{suffix}` that feeds
    /// [`SERIES_ACTIVITY`] from every insert into `source` (each node's
    /// storage table in a cluster).
    fn activity_view(&self, suffix: &str, source: &TableSpec) -> String {
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {}{} TO {} AS {}",
            self.qualified(&format!("{}{suffix}", SERIES_ACTIVITY.name)),
            self.on_cluster(),
            self.qualified(&self.storage_table(&SERIES_ACTIVITY)),
            SERIES_ACTIVITY_SELECT
                .replace("{source}", &self.qualified(&self.storage_table(source)))
        )
    }

    /// The statement that brings an existing table's TTL in line with the
    /// configured retention, or `None` if the table has no TTL.
    pub fn alter_ttl(&self, spec: &TableSpec) -> Option<String> {
        spec.ttl_base?;
        let table = self.qualified(&self.storage_table(spec));
        Some(match self.ttl_expression(spec) {
            Some(ttl) => format!("ALTER TABLE {table}{} MODIFY TTL {ttl}", self.on_cluster()),
            None => format!("ALTER TABLE {table}{} REMOVE TTL", self.on_cluster()),
        })
    }

    fn ttl_expression(&self, spec: &TableSpec) -> Option<String> {
        let base = spec.ttl_base?;
        let retention = self.retention?;
        Some(format!(
            "{base} + toIntervalSecond({})",
            retention.as_secs().max(1)
        ))
    }

    fn engine_clause(&self, spec: &TableSpec, storage: &str) -> String {
        let (name, args) = match spec.engine {
            Engine::Plain => ("MergeTree", Vec::new()),
            Engine::Aggregating => ("AggregatingMergeTree", Vec::new()),
            Engine::Replacing { version } => ("ReplacingMergeTree", version.into_iter().collect()),
        };
        match self.topology {
            Topology::SingleNode => format!("{name}({})", args.join(", ")),
            Topology::Cluster { .. } => {
                let zk_path = format!("/clickhouse/tables/{{shard}}/{}/{}", self.database, storage);
                let mut all = vec![quote_string(&zk_path), quote_string("{replica}")];
                all.extend(args.iter().map(|a| a.to_string()));
                format!("Replicated{name}({})", all.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(retention: Option<Duration>) -> SchemaOptions {
        SchemaOptions {
            database: "comet".into(),
            retention,
            topology: Topology::SingleNode,
        }
    }

    #[test]
    fn samples_single_node() {
        let sql = single(Some(Duration::from_secs(86400))).create_table(&SAMPLES);
        assert_eq!(sql.len(), 1);
        let s = &sql[0];
        assert!(
            s.starts_with("CREATE TABLE IF NOT EXISTS `comet`.`samples`\n"),
            "{s}"
        );
        assert!(s.contains("`timestamp_ms` Int64 CODEC(DoubleDelta, ZSTD(1))"));
        assert!(s.contains("`value` Float64 CODEC(Gorilla, ZSTD(1))"));
        assert!(s.contains("ENGINE = MergeTree()"));
        assert!(s.contains(
            "ORDER BY (metric_name, intDiv(timestamp_ms, 3600000), fingerprint, timestamp_ms)"
        ));
        assert!(s.contains("+ toIntervalSecond(86400)"));
        assert!(s.contains("ttl_only_drop_parts = 1"));
    }

    #[test]
    fn no_retention_means_no_ttl() {
        let opts = single(None);
        assert!(!opts.create_table(&SAMPLES)[0].contains("TTL"));
        assert_eq!(
            opts.alter_ttl(&SAMPLES).unwrap(),
            "ALTER TABLE `comet`.`samples` REMOVE TTL"
        );
    }

    #[test]
    fn cluster_renders_local_and_distributed() {
        let opts = SchemaOptions {
            database: "comet".into(),
            retention: Some(Duration::from_secs(3600)),
            topology: Topology::Cluster {
                name: "metrics".into(),
            },
        };
        let sql = opts.create_table(&SERIES);
        assert_eq!(sql.len(), 2);
        assert!(sql[0].contains("`comet`.`series_local` ON CLUSTER `metrics`"));
        assert!(sql[0].contains(
            "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/comet/series_local', '{replica}')"
        ));
        assert!(
            sql[1]
                .contains("ENGINE = Distributed('metrics', 'comet', 'series_local', fingerprint)")
        );
        let meta = opts.create_table(&METADATA);
        assert!(meta[0].contains("'{replica}', last_seen)"));
        assert_eq!(
            opts.create_database(),
            "CREATE DATABASE IF NOT EXISTS `comet` ON CLUSTER `metrics`"
        );
    }

    #[test]
    fn histograms_single_node_and_cluster() {
        let sql = single(Some(Duration::from_secs(86400))).create_histograms();
        assert_eq!(sql.len(), 2);
        assert!(sql[0].starts_with("CREATE TABLE IF NOT EXISTS `comet`.`histograms`\n"));
        assert!(sql[0].contains(&format!("ORDER BY {SAMPLES_ORDER_BY}")));
        assert!(sql[0].contains("`positive_index` Array(Int32) CODEC(Delta, ZSTD(1))"));
        assert!(sql[0].contains("+ toIntervalSecond(86400)"));
        assert!(sql[1].contains("`series_activity_histograms_mv` TO `comet`.`series_activity`"));
        assert!(sql[1].contains("FROM `comet`.`histograms` GROUP BY"));
        let cluster = SchemaOptions {
            database: "comet".into(),
            retention: None,
            topology: Topology::Cluster { name: "c".into() },
        };
        let sql = cluster.create_histograms();
        assert_eq!(sql.len(), 3);
        assert!(
            sql[0].contains(
                "ReplicatedMergeTree('/clickhouse/tables/{shard}/comet/histograms_local'"
            )
        );
        assert!(sql[1].contains("Distributed('c', 'comet', 'histograms_local', fingerprint)"));
        assert!(sql[2].contains("ON CLUSTER `c` TO `comet`.`series_activity_local`"));
        assert!(sql[2].contains("FROM `comet`.`histograms_local`"));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_identifier("a`b"), "`a\\`b`");
        assert_eq!(quote_string("it's \\"), "'it\\'s \\\\'");
    }
}
