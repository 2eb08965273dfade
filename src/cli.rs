//! Command-line interface. Every option of the configuration file has a
//! flag and a `COMET_*` environment variable here; precedence is
//! flag > environment > file > default.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use bytesize::ByteSize;

use crate::config::{
    KafkaFormat, LogFormat, NameScheme, OtlpDelta, OtlpExponential, OtlpTranslation, SoleWriter,
};

#[derive(Debug, Parser)]
#[command(
    name = "comet",
    version,
    about = "Comet: a Prometheus-compatible metrics platform on ClickHouse",
    long_about = "Comet takes metrics in over Prometheus remote-write, OTLP and Kafka, stores them \
                  in ClickHouse, and answers PromQL behind the Prometheus HTTP API.\n\n\
                  Configuration comes from a YAML file (--config), overridden by COMET_* \
                  environment variables, overridden by flags. `comet config` prints the result."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run Comet: the HTTP API and ingest, on the configured ClickHouse or,
    /// when no --clickhouse-url is set, on a managed local ClickHouse.
    Serve(ConfigArgs),
    /// Run only ingest: the Kafka consumer and the remote-write and OTLP
    /// receivers, with /metrics and health checks but no query API or
    /// rules (scale ingest by running more of these in one Kafka group).
    Ingest(ConfigArgs),
    /// Run only the managed local ClickHouse in the foreground until
    /// interrupted, printing its URL (for tools, tests and debugging); with
    /// --cluster, a replicated, sharded cluster of them on loopback.
    Clickhouse(ClickhouseArgs),
    /// Create or upgrade the ClickHouse schema, then exit.
    Migrate(MigrateArgs),
    /// Print the effective configuration (file + environment + flags) as YAML.
    Config(ConfigArgs),
    /// Run PromQL test scripts (Prometheus's promqltest format) against the
    /// engine and ClickHouse: a fresh database per file, data loaded through
    /// the ingest path, each instant `eval` also checked as the middle step
    /// of a range query (as upstream does); prints per-file pass counts and
    /// `N passed, M failed`.
    Promqltest(crate::promqltest::PromqltestArgs),
    /// Print the single ClickHouse SQL statement a PromQL query becomes (with
    /// its parameters as `SET param_...` lines), without running it.
    Explain(crate::explain::ExplainArgs),
    /// Check rule files (like `promtool check rules`) or run rule unit
    /// tests (like `promtool test rules`) against Comet's engine.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Load generators that print throughput and latency.
    #[command(subcommand)]
    Bench(BenchCommand),
}

// Parsed once per run: the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate Prometheus rule files; prints `SUCCESS: N rules found` or
    /// each problem in Prometheus's words, and fails on any problem.
    Check(crate::rules::CheckArgs),
    /// Run rule unit-test files (promtool's format: rule_files, tests with
    /// input_series, alert_rule_test, promql_expr_test) against the engine
    /// and ClickHouse, each test in a fresh database loaded through the
    /// ingest writer.
    Test(crate::rules::TestArgs),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Send pre-encoded remote-write requests to a receiver (Comet or any
    /// other) at a target rate; print samples/s, p50/p99 latency and the
    /// receiver's CPU seconds per million samples.
    Ingest(crate::bench::BenchIngestArgs),
    /// Load a dashboard-shaped data set (1,000 series x 6 h by default) into
    /// ClickHouse and time PromQL range queries on it; print p50/p95 latency
    /// per query, optionally beside a Prometheus holding the same data.
    Query(crate::bench_query::BenchQueryArgs),
    /// Load 100,000 series and time the Prometheus HTTP API over HTTP: the
    /// label and series endpoints uncached and cached, and a dashboard's
    /// range queries refreshed with the results cache.
    Api(crate::bench_api::BenchApiArgs),
    /// Fill a Kafka topic with remote-write messages, then measure how fast
    /// a Comet consuming it drains it (messages/s, samples/s with commit
    /// after insert, lag over time, CPU seconds per million samples).
    Kafka(crate::bench_kafka::BenchKafkaArgs),
}

fn user_and_hash(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((user, hash)) => Ok((user.to_string(), hash.to_string())),
        None => Err("expected USER:BCRYPT_HASH".into()),
    }
}

fn name_and_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) => Ok((name.trim().to_string(), value.to_string())),
        None => Err("expected NAME=VALUE".into()),
    }
}

fn topic_format(s: &str) -> Result<(String, KafkaFormat), String> {
    let (topic, format) = name_and_value(s)?;
    let format = <KafkaFormat as clap::ValueEnum>::from_str(&format, false)?;
    Ok((topic, format))
}

fn duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// `comet migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    /// Also rebuild the sample tables of a database made before Comet
    /// sorted samples hour first (the start-up log warns of them), while
    /// Comet keeps running: new rows go to the rebuilt table at once, older
    /// days return to queries as they are copied, one day at a time. Safe
    /// to interrupt and run again. Single server only
    #[arg(long)]
    pub resort_samples: bool,
}

/// `comet clickhouse`.
#[derive(Debug, Clone, Args)]
pub struct ClickhouseArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    /// Run a replicated, sharded cluster instead of one server:
    /// SHARDSxREPLICAS servers (e.g. 2x2) named `comet` in their
    /// remote_servers, coordinated by a ZooKeeper, all on free loopback
    /// ports under --data-dir. Prints every node's URL, one per line, shard
    /// by shard; point Comet at any of them with `--clickhouse-cluster comet`
    #[arg(long, value_name = "SHARDSxREPLICAS")]
    pub cluster: Option<comet_schema::managed::ClusterShape>,

    /// The ZooKeeper launcher a cluster uses (made by
    /// scripts/install-zookeeper.sh); a relative path is also looked for
    /// beside the comet executable and above it
    #[arg(
        long,
        value_name = "FILE",
        default_value = ".tools/zookeeper/bin/comet-zookeeper"
    )]
    pub zookeeper: PathBuf,
}

/// Options shared by every command. Each maps to one configuration key.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// YAML configuration file; see comet.example.yaml for every key.
    #[arg(long, env = "COMET_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address of the HTTP API: Prometheus API, remote-write, /metrics,
    /// /-/healthy, /-/ready [config: listen_address; default 0.0.0.0:9090]
    #[arg(long, env = "COMET_LISTEN_ADDRESS", value_name = "HOST:PORT")]
    pub listen_address: Option<String>,

    /// Directory for Comet's own files; the managed ClickHouse keeps its data
    /// in <DIR>/clickhouse [config: data_dir; default ./comet-data]
    #[arg(long, env = "COMET_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// How long samples are kept, e.g. 15d, 1y; 0s keeps them forever. A
    /// change is applied to the tables' TTL at the next start
    /// [config: retention; default 15d]
    #[arg(long, env = "COMET_RETENTION", value_name = "DURATION", value_parser = duration)]
    pub retention: Option<Duration>,

    /// How long a clean shutdown may take (draining requests, stopping the
    /// managed ClickHouse) [config: shutdown_timeout; default 30s]
    #[arg(long, env = "COMET_SHUTDOWN_TIMEOUT", value_name = "DURATION", value_parser = duration)]
    pub shutdown_timeout: Option<Duration>,

    /// Log filter: a level (error, warn, info, debug, trace) or a tracing
    /// filter such as comet_schema=debug,info [config: log.level; default info]
    #[arg(long, env = "COMET_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Log format [config: log.format; default text]
    #[arg(long, env = "COMET_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// PEM certificate chain for HTTPS on the listen address; with
    /// --http-tls-key-file the listener speaks only HTTPS
    /// [config: http.tls_cert_file; default: plain HTTP]
    #[arg(long, env = "COMET_HTTP_TLS_CERT_FILE", value_name = "FILE")]
    pub http_tls_cert_file: Option<PathBuf>,

    /// PEM private key of --http-tls-cert-file [config: http.tls_key_file]
    #[arg(long, env = "COMET_HTTP_TLS_KEY_FILE", value_name = "FILE")]
    pub http_tls_key_file: Option<PathBuf>,

    /// PEM CA certificates; HTTPS clients must then present a certificate
    /// one of them signed [config: http.tls_client_ca_file]
    #[arg(long, env = "COMET_HTTP_TLS_CLIENT_CA_FILE", value_name = "FILE")]
    pub http_tls_client_ca_file: Option<PathBuf>,

    /// Basic-auth users as USER:BCRYPT_HASH, comma-separated (hashes as in
    /// Prometheus's web config; make one with htpasswd -nBC 10 "" | tr -d
    /// ':\n'). With users or tokens set, every request but /-/healthy needs
    /// credentials [config: http.basic_auth_users; default: none]
    #[arg(
        long,
        env = "COMET_HTTP_BASIC_AUTH_USERS",
        value_name = "USER:HASH,...",
        value_delimiter = ',',
        value_parser = user_and_hash
    )]
    pub http_basic_auth_users: Option<Vec<(String, String)>>,

    /// SHA-256 hex digests of accepted bearer tokens, comma-separated (from
    /// printf %s TOKEN | sha256sum; never the tokens themselves)
    /// [config: http.bearer_tokens; default: none]
    #[arg(
        long,
        env = "COMET_HTTP_BEARER_TOKENS",
        value_name = "SHA256,...",
        value_delimiter = ','
    )]
    pub http_bearer_tokens: Option<Vec<String>>,

    /// URL of an existing ClickHouse server's HTTP interface, e.g.
    /// http://clickhouse:8123 or https://host:8443. When unset, Comet runs
    /// and supervises its own local ClickHouse [config: clickhouse.url]
    #[arg(long, env = "COMET_CLICKHOUSE_URL", value_name = "URL")]
    pub clickhouse_url: Option<String>,

    /// ClickHouse user [config: clickhouse.user; default default]
    #[arg(long, env = "COMET_CLICKHOUSE_USER", value_name = "USER")]
    pub clickhouse_user: Option<String>,

    /// ClickHouse password; prefer the environment variable or the file to a
    /// flag [config: clickhouse.password; default empty]
    #[arg(
        long,
        env = "COMET_CLICKHOUSE_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub clickhouse_password: Option<String>,

    /// Database holding Comet's tables; created if missing
    /// [config: clickhouse.database; default comet]
    #[arg(long, env = "COMET_CLICKHOUSE_DATABASE", value_name = "NAME")]
    pub clickhouse_database: Option<String>,

    /// PEM file of extra CA certificates trusted for https:// URLs, on top of
    /// the Mozilla roots [config: clickhouse.tls_ca_file]
    #[arg(long, env = "COMET_CLICKHOUSE_TLS_CA_FILE", value_name = "FILE")]
    pub clickhouse_tls_ca_file: Option<PathBuf>,

    /// Cluster name (from the servers' remote_servers): tables are created ON
    /// CLUSTER as Replicated *_local tables behind Distributed tables
    /// [config: clickhouse.cluster; default: single server]
    #[arg(long, env = "COMET_CLICKHOUSE_CLUSTER", value_name = "NAME")]
    pub clickhouse_cluster: Option<String>,

    /// In a cluster, how many replicas of each shard must hold an insert's
    /// rows before Comet acknowledges it: `auto` (a majority of the shard's
    /// replicas) or a number (1: one replica; the others copy the rows
    /// later, and a lost disk loses what they had not copied yet)
    /// [config: clickhouse.insert_quorum; default auto]
    #[arg(long, env = "COMET_CLICKHOUSE_INSERT_QUORUM", value_name = "auto|N")]
    pub clickhouse_insert_quorum: Option<String>,

    /// Time allowed to open a connection to ClickHouse
    /// [config: clickhouse.connect_timeout; default 5s]
    #[arg(long, env = "COMET_CLICKHOUSE_CONNECT_TIMEOUT", value_name = "DURATION", value_parser = duration)]
    pub clickhouse_connect_timeout: Option<Duration>,

    /// Time allowed for one statement; also sent as max_execution_time so
    /// ClickHouse stops too [config: clickhouse.query_timeout; default 2m]
    #[arg(long, env = "COMET_CLICKHOUSE_QUERY_TIMEOUT", value_name = "DURATION", value_parser = duration)]
    pub clickhouse_query_timeout: Option<Duration>,

    /// How long start-up waits for ClickHouse to answer before giving up
    /// [config: clickhouse.startup_timeout; default 1m]
    #[arg(long, env = "COMET_CLICKHOUSE_STARTUP_TIMEOUT", value_name = "DURATION", value_parser = duration)]
    pub clickhouse_startup_timeout: Option<Duration>,

    /// Retries of a statement that failed transiently (network, timeout,
    /// overload), with exponential backoff and jitter
    /// [config: clickhouse.max_retries; default 5]
    #[arg(long, env = "COMET_CLICKHOUSE_MAX_RETRIES", value_name = "N")]
    pub clickhouse_max_retries: Option<usize>,

    /// Python venv with chdb for the managed ClickHouse, made by
    /// scripts/setup.sh [config: managed_clickhouse.venv; default .chdb-venv]
    #[arg(long, env = "COMET_MANAGED_CLICKHOUSE_VENV", value_name = "DIR")]
    pub managed_clickhouse_venv: Option<PathBuf>,

    /// HTTP port of the managed ClickHouse, on 127.0.0.1 only
    /// [config: managed_clickhouse.http_port; default 8123]
    #[arg(long, env = "COMET_MANAGED_CLICKHOUSE_HTTP_PORT", value_name = "PORT")]
    pub managed_clickhouse_http_port: Option<u16>,

    /// Native-protocol port of the managed ClickHouse (for clickhouse-client),
    /// on 127.0.0.1 only [config: managed_clickhouse.tcp_port; default 9000]
    #[arg(long, env = "COMET_MANAGED_CLICKHOUSE_TCP_PORT", value_name = "PORT")]
    pub managed_clickhouse_tcp_port: Option<u16>,

    /// How long the managed ClickHouse may take to start
    /// [config: managed_clickhouse.startup_timeout; default 2m]
    #[arg(long, env = "COMET_MANAGED_CLICKHOUSE_STARTUP_TIMEOUT", value_name = "DURATION", value_parser = duration)]
    pub managed_clickhouse_startup_timeout: Option<Duration>,

    /// Flush an ingest batch to ClickHouse once it holds this many samples
    /// [config: ingest.batch_max_samples; default 100000]
    #[arg(long, env = "COMET_INGEST_BATCH_MAX_SAMPLES", value_name = "N")]
    pub ingest_batch_max_samples: Option<usize>,

    /// Flush an ingest batch early, before the linger ends, once it holds
    /// this many samples and an insert slot is free
    /// [config: ingest.batch_min_samples; default 50000]
    #[arg(long, env = "COMET_INGEST_BATCH_MIN_SAMPLES", value_name = "N")]
    pub ingest_batch_min_samples: Option<usize>,

    /// Flush an ingest batch at the latest this long after its first write;
    /// a write is acknowledged only once flushed [config: ingest.batch_linger; default 500ms]
    #[arg(long, env = "COMET_INGEST_BATCH_LINGER", value_name = "DURATION", value_parser = duration)]
    pub ingest_batch_linger: Option<Duration>,

    /// Ceiling on memory held by accepted, not yet stored data; beyond it
    /// remote-write answers 503 with Retry-After [config: ingest.max_buffered_bytes; default 512MiB]
    #[arg(long, env = "COMET_INGEST_MAX_BUFFERED_BYTES", value_name = "SIZE")]
    pub ingest_max_buffered_bytes: Option<ByteSize>,

    /// ClickHouse inserts in flight at once [config: ingest.max_concurrent_inserts; default 2]
    #[arg(long, env = "COMET_INGEST_MAX_CONCURRENT_INSERTS", value_name = "N")]
    pub ingest_max_concurrent_inserts: Option<usize>,

    /// Memory for the series registry: known series skip validation, and
    /// series rows are written once per series per day
    /// [config: ingest.series_cache_bytes; default 256MiB]
    #[arg(long, env = "COMET_INGEST_SERIES_CACHE_BYTES", value_name = "SIZE")]
    pub ingest_series_cache_bytes: Option<ByteSize>,

    /// Most labels of one series, __name__ included; a series over it is
    /// refused with a 400 (the rest of the request is kept), 0 for no limit
    /// [config: ingest.max_labels_per_series; default 100]
    #[arg(long, env = "COMET_INGEST_MAX_LABELS_PER_SERIES", value_name = "N")]
    pub ingest_max_labels_per_series: Option<usize>,

    /// Longest label name in bytes, 0 for no limit
    /// [config: ingest.max_label_name_bytes; default 1024]
    #[arg(long, env = "COMET_INGEST_MAX_LABEL_NAME_BYTES", value_name = "N")]
    pub ingest_max_label_name_bytes: Option<usize>,

    /// Longest label value (and metric name) in bytes, 0 for no limit
    /// [config: ingest.max_label_value_bytes; default 4096]
    #[arg(long, env = "COMET_INGEST_MAX_LABEL_VALUE_BYTES", value_name = "N")]
    pub ingest_max_label_value_bytes: Option<usize>,

    /// Largest compressed remote-write body; larger ones get 413
    /// [config: remote_write.max_request_bytes; default 32MiB]
    #[arg(
        long,
        env = "COMET_REMOTE_WRITE_MAX_REQUEST_BYTES",
        value_name = "SIZE"
    )]
    pub remote_write_max_request_bytes: Option<ByteSize>,

    /// Largest remote-write body after snappy decompression; larger ones get
    /// 413 [config: remote_write.max_decompressed_bytes; default 256MiB]
    #[arg(
        long,
        env = "COMET_REMOTE_WRITE_MAX_DECOMPRESSED_BYTES",
        value_name = "SIZE"
    )]
    pub remote_write_max_decompressed_bytes: Option<ByteSize>,

    /// Metric and label name rules: legacy ([a-zA-Z_:][a-zA-Z0-9_:]*) or utf8
    /// [config: remote_write.name_validation; default legacy]
    #[arg(
        long,
        env = "COMET_REMOTE_WRITE_NAME_VALIDATION",
        value_name = "SCHEME"
    )]
    pub remote_write_name_validation: Option<NameScheme>,

    /// Remote-write 2.0: store a 0 sample at each series' created timestamp,
    /// like Prometheus's created-timestamp-zero-ingestion
    /// [config: remote_write.created_timestamp_zero_ingestion; default false]
    #[arg(
        long,
        env = "COMET_REMOTE_WRITE_CREATED_TIMESTAMP_ZERO_INGESTION",
        value_name = "BOOL"
    )]
    pub remote_write_created_timestamp_zero_ingestion: Option<bool>,

    /// Status answered when the ingest buffer is full: 503 (retried by every
    /// Prometheus) or 429 [config: remote_write.overload_status; default 503]
    #[arg(
        long,
        env = "COMET_REMOTE_WRITE_OVERLOAD_STATUS",
        value_name = "STATUS"
    )]
    pub remote_write_overload_status: Option<u16>,

    /// OTLP/gRPC listener (MetricsService/Export); empty turns it off
    /// [config: otlp.grpc_listen_address; default 0.0.0.0:4317]
    #[arg(long, env = "COMET_OTLP_GRPC_LISTEN_ADDRESS", value_name = "HOST:PORT")]
    pub otlp_grpc_listen_address: Option<String>,

    /// OTLP/HTTP listener (POST /v1/metrics, protobuf or JSON); empty turns
    /// it off. The main listener also serves /api/v1/otlp/v1/metrics
    /// [config: otlp.http_listen_address; default 0.0.0.0:4318]
    #[arg(long, env = "COMET_OTLP_HTTP_LISTEN_ADDRESS", value_name = "HOST:PORT")]
    pub otlp_http_listen_address: Option<String>,

    /// Largest OTLP request after decompression; larger ones get 413 /
    /// RESOURCE_EXHAUSTED [config: otlp.max_request_bytes; default 32MiB]
    #[arg(long, env = "COMET_OTLP_MAX_REQUEST_BYTES", value_name = "SIZE")]
    pub otlp_max_request_bytes: Option<ByteSize>,

    /// How OpenTelemetry names become Prometheus names, as Prometheus's
    /// otlp.translation_strategy [config: otlp.translation_strategy;
    /// default UnderscoreEscapingWithSuffixes]
    #[arg(long, env = "COMET_OTLP_TRANSLATION_STRATEGY", value_name = "STRATEGY")]
    pub otlp_translation_strategy: Option<OtlpTranslation>,

    /// Resource attributes added as labels to every series, comma-separated
    /// [config: otlp.promote_resource_attributes; default none]
    #[arg(
        long,
        env = "COMET_OTLP_PROMOTE_RESOURCE_ATTRIBUTES",
        value_name = "ATTR,...",
        value_delimiter = ','
    )]
    pub otlp_promote_resource_attributes: Option<Vec<String>>,

    /// Promote every resource attribute except the ignored ones
    /// [config: otlp.promote_all_resource_attributes; default false]
    #[arg(
        long,
        env = "COMET_OTLP_PROMOTE_ALL_RESOURCE_ATTRIBUTES",
        value_name = "BOOL"
    )]
    pub otlp_promote_all_resource_attributes: Option<bool>,

    /// Resource attributes not promoted by --otlp-promote-all-resource-attributes,
    /// comma-separated [config: otlp.ignore_resource_attributes; default none]
    #[arg(
        long,
        env = "COMET_OTLP_IGNORE_RESOURCE_ATTRIBUTES",
        value_name = "ATTR,...",
        value_delimiter = ','
    )]
    pub otlp_ignore_resource_attributes: Option<Vec<String>>,

    /// Keep service.name, service.namespace and service.instance.id in
    /// target_info too [config: otlp.keep_identifying_resource_attributes;
    /// default false]
    #[arg(
        long,
        env = "COMET_OTLP_KEEP_IDENTIFYING_RESOURCE_ATTRIBUTES",
        value_name = "BOOL"
    )]
    pub otlp_keep_identifying_resource_attributes: Option<bool>,

    /// Add otel_scope_name, otel_scope_version, otel_scope_schema_url and
    /// otel_scope_<attribute> labels [config: otlp.promote_scope_metadata;
    /// default false]
    #[arg(long, env = "COMET_OTLP_PROMOTE_SCOPE_METADATA", value_name = "BOOL")]
    pub otlp_promote_scope_metadata: Option<bool>,

    /// Delta temporality: cumulate (running total per series, in memory) or
    /// reject [config: otlp.delta_temporality; default cumulate]
    #[arg(long, env = "COMET_OTLP_DELTA_TEMPORALITY", value_name = "POLICY")]
    pub otlp_delta_temporality: Option<OtlpDelta>,

    /// Exponential histograms: native (native histograms, as Prometheus's
    /// OTLP receiver stores them), classic (converted to le buckets) or
    /// reject [config: otlp.exponential_histograms; default native]
    #[arg(long, env = "COMET_OTLP_EXPONENTIAL_HISTOGRAMS", value_name = "POLICY")]
    pub otlp_exponential_histograms: Option<OtlpExponential>,

    /// Most le buckets one exponential histogram point becomes (coarser
    /// scales beyond it) [config: otlp.max_exponential_buckets; default 160]
    #[arg(long, env = "COMET_OTLP_MAX_EXPONENTIAL_BUCKETS", value_name = "N")]
    pub otlp_max_exponential_buckets: Option<usize>,

    /// Store a 0 sample at a counter's, histogram's or summary's start time,
    /// once per start time [config: otlp.created_timestamp_zero_ingestion;
    /// default false]
    #[arg(
        long,
        env = "COMET_OTLP_CREATED_TIMESTAMP_ZERO_INGESTION",
        value_name = "BOOL"
    )]
    pub otlp_created_timestamp_zero_ingestion: Option<bool>,

    /// Series whose delta running totals and start times are remembered
    /// [config: otlp.state_max_series; default 1000000]
    #[arg(long, env = "COMET_OTLP_STATE_MAX_SERIES", value_name = "N")]
    pub otlp_state_max_series: Option<u64>,

    /// Forget a series' running total after this long without points
    /// [config: otlp.state_idle; default 1h]
    #[arg(long, env = "COMET_OTLP_STATE_IDLE", value_name = "DURATION", value_parser = duration)]
    pub otlp_state_idle: Option<Duration>,

    /// Kafka bootstrap brokers (host:port,...); the Kafka source runs when
    /// brokers and topics are set [config: kafka.brokers; default none]
    #[arg(long, env = "COMET_KAFKA_BROKERS", value_name = "HOST:PORT,...")]
    pub kafka_brokers: Option<String>,

    /// Kafka consumer group; Comets of one group share the partitions
    /// [config: kafka.group_id; default comet]
    #[arg(long, env = "COMET_KAFKA_GROUP_ID", value_name = "GROUP")]
    pub kafka_group_id: Option<String>,

    /// Kafka topics to consume, comma-separated; a name starting with ^ is
    /// a regex [config: kafka.topics; default none]
    #[arg(
        long,
        env = "COMET_KAFKA_TOPICS",
        value_name = "TOPIC,...",
        value_delimiter = ','
    )]
    pub kafka_topics: Option<Vec<String>>,

    /// Format of Kafka messages (a message's comet-format header overrides
    /// it) [config: kafka.format; default remote-write]
    #[arg(long, env = "COMET_KAFKA_FORMAT", value_name = "FORMAT")]
    pub kafka_format: Option<KafkaFormat>,

    /// Format per topic, e.g. otel=otlp-proto,lines=prometheus-text
    /// [config: kafka.topic_formats; default none]
    #[arg(
        long,
        env = "COMET_KAFKA_TOPIC_FORMATS",
        value_name = "TOPIC=FORMAT,...",
        value_delimiter = ',',
        value_parser = topic_format
    )]
    pub kafka_topic_formats: Option<Vec<(String, KafkaFormat)>>,

    /// librdkafka properties passed through to the consumer and the
    /// dead-letter producer, e.g. security.protocol=SASL_SSL
    /// [config: kafka.librdkafka; default none]
    #[arg(
        long,
        env = "COMET_KAFKA_LIBRDKAFKA",
        value_name = "KEY=VALUE,...",
        value_delimiter = ',',
        value_parser = name_and_value
    )]
    pub kafka_librdkafka: Option<Vec<(String, String)>>,

    /// Dead-letter topic for messages that cannot be decoded or validated
    /// [config: kafka.dlq_topic; default none: logged and counted only]
    #[arg(long, env = "COMET_KAFKA_DLQ_TOPIC", value_name = "TOPIC")]
    pub kafka_dlq_topic: Option<String>,

    /// Messages of one partition decoded at once
    /// [config: kafka.workers_per_partition; default 2]
    #[arg(long, env = "COMET_KAFKA_WORKERS_PER_PARTITION", value_name = "N")]
    pub kafka_workers_per_partition: Option<usize>,

    /// Messages queued per partition before it is paused (backpressure)
    /// [config: kafka.queue_messages; default 10000]
    #[arg(long, env = "COMET_KAFKA_QUEUE_MESSAGES", value_name = "N")]
    pub kafka_queue_messages: Option<usize>,

    /// Bytes of message payloads queued per partition before it is paused
    /// (backpressure), e.g. 16MiB; keep it above a few of librdkafka's
    /// fetches (`max.partition.fetch.bytes`, 1 MiB by default)
    /// [config: kafka.queue_bytes; default 16MiB]
    #[arg(long, env = "COMET_KAFKA_QUEUE_BYTES", value_name = "SIZE")]
    pub kafka_queue_bytes: Option<ByteSize>,

    /// Cut a Kafka batch (one deduplicated insert) at this many samples
    /// [config: kafka.batch_max_samples; default 200000]
    #[arg(long, env = "COMET_KAFKA_BATCH_MAX_SAMPLES", value_name = "N")]
    pub kafka_batch_max_samples: Option<usize>,

    /// Cut a Kafka batch at this many messages
    /// [config: kafka.batch_max_messages; default 5000]
    #[arg(long, env = "COMET_KAFKA_BATCH_MAX_MESSAGES", value_name = "N")]
    pub kafka_batch_max_messages: Option<usize>,

    /// Cut a Kafka batch this long after its first message
    /// [config: kafka.batch_linger; default 200ms]
    #[arg(long, env = "COMET_KAFKA_BATCH_LINGER", value_name = "DURATION", value_parser = duration)]
    pub kafka_batch_linger: Option<Duration>,

    /// Batches of one partition being inserted at once
    /// [config: kafka.max_inflight_batches; default 2]
    #[arg(long, env = "COMET_KAFKA_MAX_INFLIGHT_BATCHES", value_name = "N")]
    pub kafka_max_inflight_batches: Option<usize>,

    /// How often stored offsets are committed
    /// [config: kafka.commit_interval; default 1s]
    #[arg(long, env = "COMET_KAFKA_COMMIT_INTERVAL", value_name = "DURATION", value_parser = duration)]
    pub kafka_commit_interval: Option<Duration>,

    /// How long a revoked partition may take to store what it received
    /// before its in-flight batches are abandoned (replayed by the next
    /// owner, deduplicated) [config: kafka.revoke_timeout; default 30s]
    #[arg(long, env = "COMET_KAFKA_REVOKE_TIMEOUT", value_name = "DURATION", value_parser = duration)]
    pub kafka_revoke_timeout: Option<Duration>,

    /// Most samples one remote-read request may return
    /// [config: remote_read.max_samples; default 50000000]
    #[arg(long, env = "COMET_REMOTE_READ_MAX_SAMPLES", value_name = "N")]
    pub remote_read_max_samples: Option<usize>,

    /// How far back an instant vector selector looks for the latest sample
    /// (Prometheus's --query.lookback-delta)
    /// [config: query.lookback_delta; default 5m]
    #[arg(long, env = "COMET_QUERY_LOOKBACK_DELTA", value_name = "DURATION", value_parser = duration)]
    pub query_lookback_delta: Option<Duration>,

    /// Step of a subquery written without one (`x[1h:]`); Prometheus uses
    /// its global evaluation_interval
    /// [config: query.default_subquery_step; default 1m]
    #[arg(long, env = "COMET_QUERY_DEFAULT_SUBQUERY_STEP", value_name = "DURATION", value_parser = duration)]
    pub query_default_subquery_step: Option<Duration>,

    /// Longest a PromQL query may run; ClickHouse stops it there too. A
    /// request's `timeout` parameter can only shorten it
    /// [config: query.timeout; default 2m]
    #[arg(long, env = "COMET_QUERY_TIMEOUT", value_name = "DURATION", value_parser = duration)]
    pub query_timeout: Option<Duration>,

    /// Most rows ClickHouse may read for one query (Prometheus's
    /// --query.max-samples) [config: query.max_samples; default 50000000]
    #[arg(long, env = "COMET_QUERY_MAX_SAMPLES", value_name = "N")]
    pub query_max_samples: Option<u64>,

    /// Most series in one query result [config: query.max_series; default 500000]
    #[arg(long, env = "COMET_QUERY_MAX_SERIES", value_name = "N")]
    pub query_max_series: Option<u64>,

    /// Most memory ClickHouse may use for one query, e.g. 1GiB (its
    /// max_memory_usage); a query beyond it fails with a 422
    /// [config: query.max_memory; default 1 GiB]
    #[arg(long, env = "COMET_QUERY_MAX_MEMORY", value_name = "SIZE")]
    pub query_max_memory: Option<ByteSize>,

    /// Most points per series of a range query
    /// [config: query.max_points_per_series; default 11000]
    #[arg(long, env = "COMET_QUERY_MAX_POINTS_PER_SERIES", value_name = "N")]
    pub query_max_points_per_series: Option<i64>,

    /// Queries slower than this are logged at warn level with their PromQL
    /// and SQL [config: query.slow_query_threshold; default 5s]
    #[arg(long, env = "COMET_QUERY_SLOW_QUERY_THRESHOLD", value_name = "DURATION", value_parser = duration)]
    pub query_slow_query_threshold: Option<Duration>,

    /// How long series lists and label names/values are reused by the
    /// series and label endpoints [config: query.catalog_cache_ttl; default 15s]
    #[arg(long, env = "COMET_QUERY_CATALOG_CACHE_TTL", value_name = "DURATION", value_parser = duration)]
    pub query_catalog_cache_ttl: Option<Duration>,

    /// Memory for cached range-query results, e.g. 256MiB (0 disables)
    /// [config: query.results_cache_bytes; default 256 MiB]
    #[arg(long, env = "COMET_QUERY_RESULTS_CACHE_BYTES", value_name = "SIZE")]
    pub query_results_cache_bytes: Option<ByteSize>,

    /// Range-query steps newer than this are never cached, since samples
    /// may still arrive for them; not used when this Comet is the sole
    /// writer [config: query.results_cache_freshness; default 10m]
    #[arg(long, env = "COMET_QUERY_RESULTS_CACHE_FRESHNESS", value_name = "DURATION", value_parser = duration)]
    pub query_results_cache_freshness: Option<Duration>,

    /// Whether every write to the database goes through this Comet; then
    /// the results cache keeps every step up to now and recomputes only
    /// those a later write reaches back to (a dashboard refresh costs its
    /// newest steps). auto: yes with the managed ClickHouse, no with
    /// --clickhouse-url [config: query.results_cache_sole_writer; default auto]
    #[arg(
        long,
        env = "COMET_QUERY_RESULTS_CACHE_SOLE_WRITER",
        value_name = "MODE"
    )]
    pub query_results_cache_sole_writer: Option<SoleWriter>,

    /// Prometheus rule files to evaluate: paths or globs, comma-separated;
    /// re-read on SIGHUP and POST /-/reload [config: rules.rule_files; default: none]
    #[arg(
        long,
        env = "COMET_RULES_FILES",
        value_name = "GLOB,...",
        value_delimiter = ','
    )]
    pub rules_files: Option<Vec<String>>,

    /// Evaluation interval of rule groups that set none
    /// [config: rules.evaluation_interval; default 1m]
    #[arg(long, env = "COMET_RULES_EVALUATION_INTERVAL", value_name = "DURATION", value_parser = duration)]
    pub rules_evaluation_interval: Option<Duration>,

    /// Alertmanager base URLs, comma-separated; alerts are posted to each
    /// one's /api/v2/alerts [config: rules.alertmanagers; default: none]
    #[arg(
        long,
        env = "COMET_RULES_ALERTMANAGERS",
        value_name = "URL,...",
        value_delimiter = ','
    )]
    pub rules_alertmanagers: Option<Vec<String>>,

    /// Labels added to alerts sent to Alertmanager (and $externalLabels in
    /// templates), as NAME=VALUE,... [config: rules.external_labels; default: none]
    #[arg(
        long,
        env = "COMET_RULES_EXTERNAL_LABELS",
        value_name = "NAME=VALUE,...",
        value_delimiter = ',',
        value_parser = name_and_value
    )]
    pub rules_external_labels: Option<Vec<(String, String)>>,

    /// Base URL of alerts' generator links and $externalURL
    /// [config: rules.external_url; default http://<hostname>:<listen port>]
    #[arg(long, env = "COMET_RULES_EXTERNAL_URL", value_name = "URL")]
    pub rules_external_url: Option<String>,

    /// How often firing alerts are re-sent to Alertmanager
    /// [config: rules.resend_delay; default 1m]
    #[arg(long, env = "COMET_RULES_RESEND_DELAY", value_name = "DURATION", value_parser = duration)]
    pub rules_resend_delay: Option<Duration>,

    /// Alerts waiting to be sent to Alertmanager; beyond it the oldest are
    /// dropped [config: rules.notification_queue_capacity; default 10000]
    #[arg(
        long,
        env = "COMET_RULES_NOTIFICATION_QUEUE_CAPACITY",
        value_name = "N"
    )]
    pub rules_notification_queue_capacity: Option<usize>,

    /// Time allowed for one post to an Alertmanager
    /// [config: rules.notification_timeout; default 10s]
    #[arg(long, env = "COMET_RULES_NOTIFICATION_TIMEOUT", value_name = "DURATION", value_parser = duration)]
    pub rules_notification_timeout: Option<Duration>,

    /// Further attempts after a failed post to an Alertmanager (network
    /// error, 5xx, 429) [config: rules.notification_max_retries; default 3]
    #[arg(long, env = "COMET_RULES_NOTIFICATION_MAX_RETRIES", value_name = "N")]
    pub rules_notification_max_retries: Option<usize>,

    /// After a restart, alerts' `for` state is restored from ALERTS_FOR_STATE
    /// samples no older than this (Prometheus's
    /// --rules.alert.for-outage-tolerance) [config: rules.outage_tolerance; default 1h]
    #[arg(long, env = "COMET_RULES_OUTAGE_TOLERANCE", value_name = "DURATION", value_parser = duration)]
    pub rules_outage_tolerance: Option<Duration>,

    /// After a restart, a restored alert fires no sooner than this; rules
    /// with a shorter `for` are not restored (Prometheus's
    /// --rules.alert.for-grace-period) [config: rules.for_grace_period; default 10m]
    #[arg(long, env = "COMET_RULES_FOR_GRACE_PERIOD", value_name = "DURATION", value_parser = duration)]
    pub rules_for_grace_period: Option<Duration>,
}

impl Command {
    /// The configuration options, for commands that use the configuration.
    pub fn config_args(&self) -> Option<&ConfigArgs> {
        match self {
            Command::Serve(a) | Command::Ingest(a) | Command::Config(a) => Some(a),
            Command::Migrate(m) => Some(&m.config),
            Command::Clickhouse(c) => Some(&c.config),
            Command::Promqltest(p) => Some(&p.config),
            Command::Explain(e) => Some(&e.config),
            Command::Rules(RulesCommand::Test(t)) => Some(&t.config),
            Command::Rules(RulesCommand::Check(_)) | Command::Bench(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_option_is_documented() {
        let cmd = Cli::command();
        for sub in cmd.get_subcommands() {
            assert!(sub.get_about().is_some(), "{}", sub.get_name());
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "--{id} has no help");
            }
        }
    }
}
