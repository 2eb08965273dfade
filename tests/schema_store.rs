//! The schema, migrations and store client against a real ClickHouse.

mod common;

use std::time::Duration;

use comet_schema::ddl::{DATA_TABLES, SchemaOptions, Topology};
use comet_schema::migrate::{
    MIGRATIONS, MigrationError, applied_versions, latest_version, migrate, resort_sample_tables,
};
use comet_schema::model::{STALE_NAN_BITS, stale_nan};
use comet_schema::rows::{MetadataRow, SampleRow, SeriesRow, day_of_timestamp_ms};
use comet_schema::{Labels, Metadata, MetricType, NameValidation, Sample, Store, StoreError};
use common::{TestDb, http_query, store_settings};

/// `system.tables.engine_full` of one table (engine, keys, TTL, settings).
async fn engine_full(db: &TestDb, table: &str) -> String {
    db.text(&format!(
        "SELECT engine_full FROM system.tables WHERE database = '{}' AND name = '{table}' FORMAT TSVRaw",
        db.name()
    ))
    .await
}

#[tokio::test]
async fn migrations_create_the_designed_tables() {
    let db = TestDb::new().await;
    let tables = db
        .text(&format!(
            "SELECT name, engine, sorting_key, partition_key FROM system.tables \
             WHERE database = '{}' ORDER BY name FORMAT TSVRaw",
            db.name()
        ))
        .await;
    assert_eq!(
        tables,
        "comet_schema_migrations\tReplacingMergeTree\tversion\t\n\
         comet_schema_settings\tReplacingMergeTree\tname\t\n\
         exemplars\tReplacingMergeTree\tmetric_name, fingerprint, timestamp_ms\ttoDate(toDateTime(intDiv(timestamp_ms, 1000), 'UTC'))\n\
         histograms\tMergeTree\tmetric_name, intDiv(timestamp_ms, 3600000), fingerprint, timestamp_ms\ttoDate(toDateTime(intDiv(timestamp_ms, 1000), 'UTC'))\n\
         kafka_batches\tReplacingMergeTree\tconsumer_group, topic, partition, first_offset\t\n\
         metadata\tReplacingMergeTree\tmetric_family_name, type, unit, help\t\n\
         samples\tMergeTree\tmetric_name, intDiv(timestamp_ms, 3600000), fingerprint, timestamp_ms\ttoDate(toDateTime(intDiv(timestamp_ms, 1000), 'UTC'))\n\
         series\tReplacingMergeTree\tmetric_name, date, fingerprint\ttoYYYYMM(date)\n\
         series_activity\tAggregatingMergeTree\thour, metric_name, fingerprint\ttoYYYYMM(hour)\n\
         series_activity_histograms_mv\tMaterializedView\t\t\n\
         series_activity_mv\tMaterializedView\t\t\n"
    );
    // Kafka batches are deduplicated by token within this window.
    for table in ["samples", "exemplars", "histograms"] {
        let engine = db
            .text(&format!(
                "SELECT engine_full FROM system.tables WHERE database = '{}' AND name = '{table}'",
                db.name()
            ))
            .await;
        assert!(
            engine.contains("non_replicated_deduplication_window = 10000"),
            "{table}: {engine}"
        );
    }
    let columns = db
        .text(&format!(
            "SELECT table, name, type, compression_codec FROM system.columns \
             WHERE database = '{}' AND table IN ('samples', 'series') ORDER BY table, position FORMAT TSV",
            db.name()
        ))
        .await;
    assert_eq!(
        columns,
        "samples\tmetric_name\tLowCardinality(String)\t\n\
         samples\tfingerprint\tUInt64\t\n\
         samples\ttimestamp_ms\tInt64\tCODEC(DoubleDelta, ZSTD(1))\n\
         samples\tvalue\tFloat64\tCODEC(Gorilla(8), ZSTD(1))\n\
         series\tdate\tDate\tCODEC(Delta(2), ZSTD(1))\n\
         series\tmetric_name\tLowCardinality(String)\t\n\
         series\tfingerprint\tUInt64\t\n\
         series\tlabels\tMap(LowCardinality(String), String)\tCODEC(ZSTD(1))\n"
    );
    let ttl = engine_full(&db, "samples").await;
    assert!(
        ttl.contains(
            "TTL toDateTime(intDiv(timestamp_ms, 1000), 'UTC') + toIntervalSecond(2592000)"
        ),
        "{ttl}"
    );
    assert!(ttl.contains("ttl_only_drop_parts = 1"), "{ttl}");
}

#[tokio::test]
async fn second_start_is_a_no_op_and_upgrade_applies_the_rest() {
    let db = TestDb::empty(Some(Duration::from_secs(86400)));
    // An "old" Comet that knew only the first migration.
    let first = migrate(&db.store, &db.options, 1).await.unwrap();
    assert_eq!(first.applied, vec![1]);
    assert!(first.retention_changed);
    // The upgrade applies the rest.
    let upgrade = migrate(&db.store, &db.options, latest_version())
        .await
        .unwrap();
    assert_eq!(upgrade.from_version, 1);
    let rest: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).skip(1).collect();
    assert_eq!(upgrade.applied, rest);
    assert!(!upgrade.retention_changed);
    // A second start changes nothing.
    let again = migrate(&db.store, &db.options, latest_version())
        .await
        .unwrap();
    assert!(again.applied.is_empty());
    assert!(!again.retention_changed);
    assert_eq!(again.from_version, latest_version());
    let versions = applied_versions(&db.store, &db.options).await.unwrap();
    assert_eq!(versions.len(), MIGRATIONS.len());
}

#[tokio::test]
async fn sample_tables_sorted_series_first_are_reported_and_resorted() {
    // A database made before the hour-first sort key: its samples table
    // sorted series first (as migration 1 then made it), with rows.
    let db = TestDb::empty(Some(Duration::from_secs(30 * 86400)));
    db.store
        .execute(&db.options.create_database())
        .await
        .unwrap();
    db.store
        .execute(&format!(
            "CREATE TABLE `{}`.samples (metric_name LowCardinality(String), fingerprint UInt64, \
             timestamp_ms Int64 CODEC(DoubleDelta, ZSTD(1)), value Float64 CODEC(Gorilla, ZSTD(1))) \
             ENGINE = MergeTree PARTITION BY toDate(toDateTime(intDiv(timestamp_ms, 1000), 'UTC')) \
             ORDER BY (metric_name, fingerprint, timestamp_ms)",
            db.name()
        ))
        .await
        .unwrap();
    // Three days of two series, now and in the days before.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    db.store
        .execute(&format!(
            "INSERT INTO `{}`.samples SELECT 'm', number % 2, {now_ms} - intDiv(number, 2) * 3600000, number \
             FROM numbers(144)",
            db.name()
        ))
        .await
        .unwrap();
    let report = migrate(&db.store, &db.options, latest_version())
        .await
        .unwrap();
    assert_eq!(report.outdated_sort_keys, vec!["samples".to_string()]);

    let rebuilt = resort_sample_tables(&db.store, &db.options).await.unwrap();
    assert_eq!(rebuilt, vec!["samples".to_string()]);
    let name = db.name();
    assert_eq!(
        db.text(&format!(
            "SELECT sorting_key, engine_full LIKE '%TTL%', engine_full LIKE '%non_replicated_deduplication_window = 10000%' \
             FROM system.tables WHERE database = '{name}' AND name LIKE 'samples%' FORMAT TSVRaw"
        ))
        .await,
        "metric_name, intDiv(timestamp_ms, 3600000), fingerprint, timestamp_ms\t1\t1\n"
    );
    // Every row is there once, and new rows still reach the activity view.
    assert_eq!(
        db.text(&format!(
            "SELECT count(), uniqExact(fingerprint, timestamp_ms), sum(value) FROM `{name}`.samples FORMAT TSVRaw"
        ))
        .await,
        "144\t144\t10296\n"
    );
    db.store
        .execute(&format!(
            "INSERT INTO `{name}`.samples VALUES ('fresh', 7, {now_ms}, 1)"
        ))
        .await
        .unwrap();
    assert_eq!(
        db.text(&format!(
            "SELECT count() FROM `{name}`.series_activity WHERE metric_name = 'fresh' FORMAT TSVRaw"
        ))
        .await,
        "1\n"
    );
    // Done: nothing to report or to do again.
    let report = migrate(&db.store, &db.options, latest_version())
        .await
        .unwrap();
    assert!(report.outdated_sort_keys.is_empty(), "{report:?}");
    assert!(
        resort_sample_tables(&db.store, &db.options)
            .await
            .unwrap()
            .is_empty()
    );
    // Every table a migration creates has the current key.
    let fresh = TestDb::new().await;
    let report = migrate(&fresh.store, &fresh.options, latest_version())
        .await
        .unwrap();
    assert!(report.outdated_sort_keys.is_empty(), "{report:?}");
}

#[tokio::test]
async fn retention_change_updates_every_ttl() {
    let mut db = TestDb::new().await;
    db.options.retention = Some(Duration::from_secs(7 * 86400));
    let report = migrate(&db.store, &db.options, latest_version())
        .await
        .unwrap();
    assert!(report.retention_changed);
    for spec in DATA_TABLES {
        let engine = engine_full(&db, spec.name).await;
        assert!(
            engine.contains("toIntervalSecond(604800)"),
            "{}: {engine}",
            spec.name
        );
    }
    // Keeping data forever removes the TTL.
    db.options.retention = None;
    assert!(
        migrate(&db.store, &db.options, latest_version())
            .await
            .unwrap()
            .retention_changed
    );
    let engine = engine_full(&db, "samples").await;
    assert!(!engine.contains("TTL"), "{engine}");
}

#[tokio::test]
async fn keeping_data_forever_from_the_start_works() {
    let db = TestDb::with_retention(None).await;
    let again = migrate(&db.store, &db.options, latest_version())
        .await
        .unwrap();
    assert!(again.applied.is_empty());
    let engine = engine_full(&db, "samples").await;
    assert!(!engine.contains("TTL"), "{engine}");
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let db = TestDb::new().await;
    http_query(&format!(
        "INSERT INTO `{}`.comet_schema_migrations (version, description, comet_version) VALUES (999, 'from the future', '9.9.9')",
        db.name()
    ))
    .await;
    let err = migrate(&db.store, &db.options, latest_version())
        .await
        .unwrap_err();
    assert!(
        matches!(err, MigrationError::TooNew { found: 999, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade Comet"), "{err}");
}

#[tokio::test]
async fn rows_round_trip_bit_exact() {
    let db = TestDb::new().await;
    let labels = Labels::new(
        [("__name__", "up"), ("job", "api"), ("instance", "h:1")],
        NameValidation::Legacy,
    )
    .unwrap();
    let fp = labels.fingerprint();
    // Recent data: rows older than the retention are dropped by the TTL.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let recent_ms = now_ms - 3_600_000;
    let values = [
        1.5,
        f64::NAN,
        stale_nan(),
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
    ];
    let samples: Vec<SampleRow> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            SampleRow::new(
                &labels,
                fp,
                Sample {
                    timestamp_ms: recent_ms + i as i64 * 15_000,
                    value: *v,
                },
            )
        })
        .collect();
    db.store
        .insert::<SampleRow>("samples", &samples)
        .await
        .unwrap();
    let read: Vec<SampleRow> = db
        .store
        .fetch_all(
            db.store
                .client()
                .query("SELECT ?fields FROM samples WHERE fingerprint = ? ORDER BY timestamp_ms")
                .bind(fp),
            "read samples",
        )
        .await
        .unwrap();
    assert_eq!(read.len(), values.len());
    for (got, want) in read.iter().zip(values) {
        assert_eq!(got.value.to_bits(), want.to_bits(), "value bits");
    }
    assert_eq!(read[2].value.to_bits(), STALE_NAN_BITS);

    let day = day_of_timestamp_ms(samples[0].timestamp_ms);
    let series = SeriesRow::new(&labels, fp, day);
    db.store
        .insert::<SeriesRow>("series", std::slice::from_ref(&series))
        .await
        .unwrap();
    let read: Vec<SeriesRow> = db
        .store
        .fetch_all(
            db.store.client().query("SELECT ?fields FROM series"),
            "read series",
        )
        .await
        .unwrap();
    assert_eq!(read, vec![series]);
    let date = db
        .text(&format!(
            "SELECT date = toDate(fromUnixTimestamp64Milli({recent_ms}, 'UTC')), labels['job'] \
             FROM `{}`.series FORMAT TSV",
            db.name()
        ))
        .await;
    assert_eq!(date, "1\tapi\n");

    let meta = MetadataRow::new(
        &Metadata {
            metric_family_name: "up".into(),
            metric_type: MetricType::Gauge,
            unit: String::new(),
            help: "1 if the target is up; it's \"quoted\"".into(),
        },
        (now_ms / 1000) as u32,
    );
    db.store
        .insert::<MetadataRow>("metadata", std::slice::from_ref(&meta))
        .await
        .unwrap();
    let read: Vec<MetadataRow> = db
        .store
        .fetch_all(
            db.store.client().query("SELECT ?fields FROM metadata"),
            "read metadata",
        )
        .await
        .unwrap();
    assert_eq!(read, vec![meta]);
}

/// The fingerprint is XXH64 of `name\xFFvalue\xFF...`, which ClickHouse
/// computes too: an independent check of the Rust implementation.
#[tokio::test]
async fn fingerprint_matches_clickhouse_xxhash64() {
    let cases: &[&[(&str, &str)]] = &[
        &[("__name__", "up")],
        &[
            ("__name__", "node_cpu_seconds_total"),
            ("cpu", "0"),
            ("mode", "idle"),
        ],
        &[("__name__", "x"), ("path", "/ä/ö/'quoted'\\")],
    ];
    for pairs in cases {
        let labels = Labels::new(pairs.iter().copied(), NameValidation::Legacy).unwrap();
        let concat: Vec<String> = labels
            .iter()
            .flat_map(|l| [l.name.clone(), l.value.clone()])
            .map(|s| format!("{}, '\\xFF'", comet_schema::ddl::quote_string(&s)))
            .collect();
        let sql = format!("SELECT xxHash64(concat({})) FORMAT TSV", concat.join(", "));
        let got: u64 = http_query(&sql).await.trim().parse().unwrap();
        assert_eq!(labels.fingerprint(), got, "{labels}");
    }
}

/// The cluster variant is rendered from the same source; ClickHouse's own
/// parser must accept every statement.
#[tokio::test]
async fn cluster_ddl_parses() {
    let options = SchemaOptions {
        database: "comet".into(),
        retention: Some(Duration::from_secs(86400)),
        topology: Topology::Cluster {
            name: "metrics".into(),
        },
    };
    let mut statements = vec![options.create_database()];
    for m in MIGRATIONS {
        statements.extend(m.statements(&options));
    }
    for spec in DATA_TABLES {
        statements.extend(options.alter_ttl(spec));
    }
    assert_eq!(
        statements
            .iter()
            .filter(|s| s.contains("Distributed("))
            .count(),
        DATA_TABLES.len()
    );
    for sql in &statements {
        // DDL runs on every node; a backfill goes through Distributed tables.
        if sql.starts_with("INSERT") {
            assert!(sql.contains("`comet`.`series_activity` SELECT"), "{sql}");
        } else {
            assert!(sql.contains("ON CLUSTER `metrics`"), "{sql}");
        }
        let ast = http_query(&format!("EXPLAIN AST {sql}")).await;
        assert!(!ast.is_empty(), "{sql}");
    }
}

#[tokio::test]
async fn permanent_errors_are_not_retried_and_say_what_failed() {
    let db = TestDb::new().await;
    let started = std::time::Instant::now();
    let err = db.store.execute("SELEC broken").await.unwrap_err();
    assert!(!err.is_transient());
    assert!(err.to_string().contains("SELEC broken failed"), "{err}");
    assert!(err.to_string().contains("Code: 62"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn unreachable_server_is_reported_after_the_startup_timeout() {
    let mut settings = store_settings("comet");
    settings.url = format!("http://127.0.0.1:{}", common::free_port());
    let store = Store::new(settings).unwrap();
    let started = std::time::Instant::now();
    let err = store
        .wait_until_reachable(Duration::from_millis(800))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("did not answer"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Transient failures of a statement are retried, then reported.
    let err = store.execute("SELECT 1").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn query_timeout_is_enforced() {
    let database = common::unique_database("comet_timeout");
    let mut settings = store_settings(&database);
    settings.query_timeout = Duration::from_secs(1);
    settings.retry.max_retries = 0;
    let store = Store::new(settings).unwrap();
    let started = std::time::Instant::now();
    let err = store
        .execute("SELECT sleepEachRow(0.5) FROM numbers(5) FORMAT Null")
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(4), "{err}");
    assert!(err.is_transient(), "{err}");
}
