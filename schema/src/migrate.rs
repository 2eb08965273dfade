//! Versioned, idempotent schema migrations.
//!
//! Applied versions are recorded in `comet_schema_migrations`; every
//! statement is `IF NOT EXISTS`, so a crash half-way or two Comets starting
//! at once only repeat harmless work. The retention (the tables' TTL) is
//! reconciled on every start from `comet_schema_settings`, so changing
//! `retention` and restarting is enough.

use thiserror::Error;
use tracing::info;

use crate::ddl::quote_string;
use crate::ddl::{
    DATA_TABLES, EXEMPLARS, HISTOGRAMS, METADATA, SAMPLES, SAMPLES_ORDER_BY, SERIES, SchemaOptions,
    TableSpec, Topology,
};
use crate::store::{Store, StoreError};

/// One step of the schema's history. Never edit a released migration; add
/// a new one.
pub struct Migration {
    pub version: u32,
    pub description: &'static str,
    statements: fn(&SchemaOptions) -> Vec<String>,
}

impl Migration {
    pub fn statements(&self, options: &SchemaOptions) -> Vec<String> {
        (self.statements)(options)
    }
}

/// The schema's history, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "create series table",
        statements: |o| o.create_table(&SERIES),
    },
    Migration {
        version: 2,
        description: "create samples table",
        statements: |o| o.create_table(&SAMPLES),
    },
    Migration {
        version: 3,
        description: "create metadata table",
        statements: |o| o.create_table(&METADATA),
    },
    Migration {
        version: 4,
        description: "create exemplars table",
        statements: |o| o.create_table(&EXEMPLARS),
    },
    Migration {
        version: 5,
        description: "create series_activity table and view",
        statements: |o| o.create_series_activity(),
    },
    Migration {
        version: 6,
        description: "deduplication window and the Kafka batch ledger for exactly-once Kafka ingest",
        statements: kafka_exactly_once,
    },
    Migration {
        version: 7,
        description: "create histograms table (native histograms) and its series_activity view",
        statements: native_histograms,
    },
];

/// The histogram table, its feed into `series_activity`, and (on a single
/// server) the same deduplication window as `samples`, so a batch written
/// again under its `insert_deduplication_token` stores its histograms once.
fn native_histograms(o: &SchemaOptions) -> Vec<String> {
    let mut statements = o.create_histograms();
    statements.extend(deduplication_window(o, HISTOGRAMS.name));
    statements
}

/// On a single server, the statement that gives `table` the deduplication
/// window (replicated tables have one by default).
fn deduplication_window(o: &SchemaOptions, table: &str) -> Option<String> {
    (o.topology == Topology::SingleNode).then(|| {
        format!(
            "ALTER TABLE {} MODIFY SETTING non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}",
            o.qualified(table)
        )
    })
}

/// Kafka batches are inserted with an `insert_deduplication_token`; a
/// plain MergeTree only honours it with a deduplication window (replicated
/// tables have one by default). The ledger records each batch's offset
/// range before it is inserted, so a replay after a crash cuts the same
/// batches and reuses their tokens.
fn kafka_exactly_once(o: &SchemaOptions) -> Vec<String> {
    let mut statements: Vec<String> = [SAMPLES.name, EXEMPLARS.name]
        .into_iter()
        .filter_map(|table| deduplication_window(o, table))
        .collect();
    statements.push(format!(
        "CREATE TABLE IF NOT EXISTS {}{} (consumer_group String, topic String, partition Int32, \
         first_offset Int64, last_offset Int64, planned_at DateTime64(3, 'UTC') DEFAULT now64(3)) \
         ENGINE = {} ORDER BY (consumer_group, topic, partition, first_offset) \
         TTL toDateTime(planned_at) + toIntervalDay(7)",
        o.qualified(KAFKA_BATCHES_TABLE),
        o.on_cluster(),
        bookkeeping_engine(o, KAFKA_BATCHES_TABLE, Some("planned_at")),
    ));
    statements
}

/// Inserts per table whose tokens ClickHouse remembers.
const DEDUPLICATION_WINDOW: u32 = 10_000;

/// Offset ranges of Kafka batches, recorded before each insert.
pub const KAFKA_BATCHES_TABLE: &str = "kafka_batches";

/// The newest version this build knows.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

const MIGRATIONS_TABLE: &str = "comet_schema_migrations";
const SETTINGS_TABLE: &str = "comet_schema_settings";
const RETENTION_SETTING: &str = "retention_seconds";

#[derive(Debug, Error)]
pub enum MigrationError {
    #[error(
        "database {database} has schema version {found}, newer than the {supported} this Comet \
         knows; upgrade Comet or point it at another database"
    )]
    TooNew {
        database: String,
        found: u32,
        supported: u32,
    },
    #[error("schema migration {version} ({description}) failed: {source}")]
    Step {
        version: u32,
        description: &'static str,
        #[source]
        source: StoreError,
    },
    #[error(
        "re-sorting the sample tables is supported on a single server only; on a cluster, \
         rebuild each shard's tables by hand"
    )]
    ResortOnCluster,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a run of [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub from_version: u32,
    pub to_version: u32,
    pub applied: Vec<u32>,
    pub retention_changed: bool,
    /// Sample tables created before [`SAMPLES_ORDER_BY`] and still sorted
    /// series first (right, but a query reads whole days of each series),
    /// or whose [`resort_sample_tables`] was left half done. ClickHouse
    /// cannot change a sort key in place.
    pub outdated_sort_keys: Vec<String>,
}

/// Brings the database up to `up_to` (normally [`latest_version`]) and the
/// TTLs in line with the configured retention.
pub async fn migrate(
    store: &Store,
    options: &SchemaOptions,
    up_to: u32,
) -> Result<MigrationReport, MigrationError> {
    store.execute(&options.create_database()).await?;
    for sql in bookkeeping_tables(options) {
        store.execute(&sql).await?;
    }

    let applied = applied_versions(store, options).await?;
    let from_version = applied.iter().copied().max().unwrap_or(0);
    if from_version > latest_version() {
        return Err(MigrationError::TooNew {
            database: options.database.clone(),
            found: from_version,
            supported: latest_version(),
        });
    }

    let mut report = MigrationReport {
        from_version,
        to_version: from_version,
        applied: Vec::new(),
        retention_changed: false,
        outdated_sort_keys: Vec::new(),
    };
    for migration in MIGRATIONS
        .iter()
        .filter(|m| m.version <= up_to && !applied.contains(&m.version))
    {
        info!(
            version = migration.version,
            description = migration.description,
            "applying schema migration"
        );
        let step_error = |source| MigrationError::Step {
            version: migration.version,
            description: migration.description,
            source,
        };
        for sql in migration.statements(options) {
            store.execute(&sql).await.map_err(step_error)?;
        }
        store
            .execute(&format!(
                "INSERT INTO {} (version, description, comet_version) VALUES ({}, {}, {})",
                options.qualified(MIGRATIONS_TABLE),
                migration.version,
                quote_string(migration.description),
                quote_string(env!("CARGO_PKG_VERSION")),
            ))
            .await
            .map_err(step_error)?;
        report.applied.push(migration.version);
        report.to_version = report.to_version.max(migration.version);
    }

    report.retention_changed = reconcile_retention(store, options).await?;
    report.outdated_sort_keys = outdated_sort_keys(store, options).await?;
    Ok(report)
}

/// The sort key [`SAMPLES_ORDER_BY`] as ClickHouse lists it (without the
/// parentheses).
fn wanted_sort_key() -> &'static str {
    SAMPLES_ORDER_BY
        .trim_start_matches('(')
        .trim_end_matches(')')
}

/// The sample tables a [`resort_sample_tables`] would rebuild, and the
/// name each one's old rows wait under while it runs.
const RESORTED: [(TableSpec, &str); 2] = [
    (SAMPLES, "samples_resorted"),
    (HISTOGRAMS, "histograms_resorted"),
];

/// The sort keys of the tables named `names` that exist.
async fn sort_keys(
    store: &Store,
    options: &SchemaOptions,
    names: &[&str],
) -> Result<Vec<(String, String)>, StoreError> {
    store
        .fetch_all(
            store
                .server_client()
                .query(
                    "SELECT name, sorting_key FROM system.tables WHERE database = ? AND name IN ?",
                )
                .bind(&options.database)
                .bind(names),
            "read the sample tables' sort keys",
        )
        .await
}

/// The sample tables whose sort key is not [`SAMPLES_ORDER_BY`], or whose
/// re-sort was left half done (old rows still wait in its `_resorted`
/// table).
async fn outdated_sort_keys(
    store: &Store,
    options: &SchemaOptions,
) -> Result<Vec<String>, StoreError> {
    let storage: Vec<String> = RESORTED
        .iter()
        .map(|(spec, _)| options.storage_table(spec))
        .collect();
    let mut names: Vec<&str> = storage.iter().map(String::as_str).collect();
    names.extend(RESORTED.iter().map(|(_, old)| *old));
    let keys = sort_keys(store, options, &names).await?;
    let mut outdated = Vec::new();
    for (name, key) in &keys {
        let table = match name.strip_suffix("_resorted") {
            Some(table) => table,
            None if key != wanted_sort_key() => name.as_str(),
            None => continue,
        };
        if !outdated.iter().any(|t: &String| t == table) {
            outdated.push(table.to_string());
        }
    }
    outdated.sort();
    Ok(outdated)
}

/// Rebuilds the sample tables sorted series first with
/// [`SAMPLES_ORDER_BY`] while Comet keeps writing: an empty table with the
/// new key takes the old one's name at once (`EXCHANGE TABLES`, so new
/// rows and the materialized views go to it), then the old rows are copied
/// into it one day (partition) at a time, each day dropped from the old
/// table once copied. Queries see the older days come back as they are
/// copied. Interrupted, it resumes where it stopped; a day copied twice
/// (a stop between its copy and its drop) leaves duplicate rows, which
/// queries ignore. Returns the tables rebuilt.
pub async fn resort_sample_tables(
    store: &Store,
    options: &SchemaOptions,
) -> Result<Vec<String>, MigrationError> {
    if options.topology != Topology::SingleNode {
        return Err(MigrationError::ResortOnCluster);
    }
    let mut rebuilt = Vec::new();
    for (spec, old_name) in RESORTED {
        let table = spec.name;
        let keys = sort_keys(store, options, &[table, old_name]).await?;
        let key_of = |name: &str| {
            keys.iter()
                .find(|(n, _)| n == name)
                .map(|(_, k)| k.as_str())
        };
        let exchange = format!(
            "EXCHANGE TABLES {} AND {}",
            options.qualified(table),
            options.qualified(old_name)
        );
        match (key_of(table), key_of(old_name)) {
            // Not begun: make the new table and give it the name.
            (Some(current), None) if current != wanted_sort_key() => {
                for sql in options.create_table(&spec.renamed(old_name)) {
                    store.execute(&sql).await?;
                }
                if let Some(sql) = deduplication_window(options, old_name) {
                    store.execute(&sql).await?;
                }
                store.execute(&exchange).await?;
            }
            // Made but not yet given the name.
            (Some(current), Some(made))
                if current != wanted_sort_key() && made == wanted_sort_key() =>
            {
                store.execute(&exchange).await?;
            }
            // Given the name: old rows are still to be copied.
            (Some(_), Some(_)) => {}
            // Sorted already, or no such table.
            _ => continue,
        }
        let days: Vec<String> = store
            .fetch_all(
                store
                    .server_client()
                    .query(
                        "SELECT DISTINCT partition_id FROM system.parts \
                         WHERE database = ? AND table = ? AND active ORDER BY partition_id",
                    )
                    .bind(&options.database)
                    .bind(old_name),
                "list the days to copy",
            )
            .await?;
        for (done, day) in days.iter().enumerate() {
            info!(table, day = %day, done, of = days.len(), "copying a day into the re-sorted table");
            store
                .execute(&format!(
                    "INSERT INTO {} SELECT * FROM {} WHERE _partition_id = {} \
                     SETTINGS insert_deduplicate = 0",
                    options.qualified(table),
                    options.qualified(old_name),
                    quote_string(day)
                ))
                .await?;
            store
                .execute(&format!(
                    "ALTER TABLE {} DROP PARTITION ID {}",
                    options.qualified(old_name),
                    quote_string(day)
                ))
                .await?;
        }
        store
            .execute(&format!("DROP TABLE {} SYNC", options.qualified(old_name)))
            .await?;
        info!(table, days = days.len(), "table re-sorted");
        rebuilt.push(table.to_string());
    }
    Ok(rebuilt)
}

/// Tables that record the schema's own state. In a cluster they are
/// replicated to every node under one Keeper path (not per shard).
fn bookkeeping_tables(options: &SchemaOptions) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {}{} (version UInt32, description String, \
             comet_version String, applied_at DateTime('UTC') DEFAULT now()) \
             ENGINE = {} ORDER BY version",
            options.qualified(MIGRATIONS_TABLE),
            options.on_cluster(),
            bookkeeping_engine(options, MIGRATIONS_TABLE, None),
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {}{} (name String, value String, \
             updated_at DateTime64(3, 'UTC') DEFAULT now64(3)) \
             ENGINE = {} ORDER BY name",
            options.qualified(SETTINGS_TABLE),
            options.on_cluster(),
            bookkeeping_engine(options, SETTINGS_TABLE, Some("updated_at")),
        ),
    ]
}

fn bookkeeping_engine(options: &SchemaOptions, table: &str, version: Option<&str>) -> String {
    let mut args = Vec::new();
    if let Topology::Cluster { .. } = options.topology {
        let zk_path = format!("/clickhouse/comet/{}/{table}", options.database);
        args.push(quote_string(&zk_path));
        args.push(quote_string("{replica}"));
    }
    args.extend(version.map(str::to_string));
    let name = match options.topology {
        Topology::SingleNode => "ReplacingMergeTree",
        Topology::Cluster { .. } => "ReplicatedReplacingMergeTree",
    };
    if args.is_empty() {
        name.to_string()
    } else {
        format!("{name}({})", args.join(", "))
    }
}

/// Versions recorded as applied.
pub async fn applied_versions(
    store: &Store,
    options: &SchemaOptions,
) -> Result<Vec<u32>, StoreError> {
    let query = store.server_client().query(&format!(
        "SELECT DISTINCT version FROM {} ORDER BY version",
        options.qualified(MIGRATIONS_TABLE)
    ));
    store
        .fetch_all::<u32>(query, "read applied migrations")
        .await
}

/// Sets every data table's TTL to the configured retention if it changed
/// since the last start. Returns whether it changed.
async fn reconcile_retention(store: &Store, options: &SchemaOptions) -> Result<bool, StoreError> {
    let wanted = options
        .retention
        .map_or_else(|| "forever".to_string(), |r| r.as_secs().to_string());
    let query = store.server_client().query(&format!(
        "SELECT argMax(value, updated_at) FROM {} WHERE name = ?",
        options.qualified(SETTINGS_TABLE)
    ));
    let current: String = store
        .fetch_one(query.bind(RETENTION_SETTING), "read retention setting")
        .await?;
    // Tables created by this very run already carry the right TTL, but an
    // ALTER to the same TTL is cheap, so only the comparison matters.
    if current == wanted {
        return Ok(false);
    }
    // Only tables that exist: a partial migration (or an older schema) may
    // not have all of them yet; they get the TTL when created. Removing a TTL
    // from a table without one is an error, so note which have one.
    let existing: Vec<(String, bool)> = store
        .fetch_all(
            store
                .server_client()
                .query(
                    "SELECT name, position(create_table_query, ' TTL ') > 0 \
                     FROM system.tables WHERE database = ?",
                )
                .bind(&options.database),
            "list tables",
        )
        .await?;
    for spec in DATA_TABLES {
        let storage = options.storage_table(spec);
        let Some((_, has_ttl)) = existing.iter().find(|(name, _)| *name == storage) else {
            continue;
        };
        if options.retention.is_none() && !has_ttl {
            continue;
        }
        if let Some(sql) = options.alter_ttl(spec) {
            store.execute(&sql).await?;
        }
    }
    store
        .execute(&format!(
            "INSERT INTO {} (name, value) VALUES ({}, {})",
            options.qualified(SETTINGS_TABLE),
            quote_string(RETENTION_SETTING),
            quote_string(&wanted)
        ))
        .await?;
    if !current.is_empty() {
        info!(from = %current, to = %wanted, "retention changed; table TTLs updated");
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_increasing_and_contiguous() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.description);
        }
        assert_eq!(latest_version(), MIGRATIONS.len() as u32);
    }

    #[test]
    fn bookkeeping_engines() {
        let single = SchemaOptions {
            database: "comet".into(),
            retention: None,
            topology: Topology::SingleNode,
        };
        let sql = bookkeeping_tables(&single);
        assert!(sql[0].contains("ENGINE = ReplacingMergeTree ORDER BY version"));
        assert!(sql[1].contains("ENGINE = ReplacingMergeTree(updated_at) ORDER BY name"));
        let cluster = SchemaOptions {
            topology: Topology::Cluster { name: "c".into() },
            ..single
        };
        let sql = bookkeeping_tables(&cluster);
        assert!(sql[0].contains("ON CLUSTER `c` (version UInt32"));
        assert!(sql[1].contains(
            "ReplicatedReplacingMergeTree('/clickhouse/comet/comet/comet_schema_settings', '{replica}', updated_at)"
        ), "{}", sql[1]);
    }
}
