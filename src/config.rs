//! Comet's configuration: one YAML file, overridden by environment
//! variables, overridden by command-line flags (flag > env > file > default).
//! The flags and their `COMET_*` variables are defined in `cli.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::http::StatusCode;
use bytesize::ByteSize;
use comet_ingest::kafka::{KafkaSettings, MessageFormat};
use comet_ingest::otlp::{
    DeltaPolicy, ExponentialPolicy, OtlpSettings, TranslateSettings, TranslationStrategy,
};
use comet_ingest::remote_write::RemoteWriteSettings;
use comet_ingest::remote_write::decode::DecodeOptions;
use comet_ingest::writer::WriterSettings;
use comet_query::api::{ApiLimits, ApiSettings, CacheSettings};
use comet_query::plan::PlanSettings;
use comet_query::remote_read::RemoteReadSettings;
use comet_query::rules::{NotifierSettings, RestorePolicy, RulerSettings};
use comet_schema::labels::LabelLimits;
use comet_schema::managed::ManagedSettings;
use comet_schema::{NameValidation, RetryPolicy, SchemaOptions, StoreSettings, Topology};
use serde::{Deserialize, Serialize};

use crate::cli::ConfigArgs;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP API (Prometheus API, remote-write, /metrics).
    pub listen_address: String,
    /// Comet's own files; the managed ClickHouse keeps its data here.
    pub data_dir: PathBuf,
    /// How long samples are kept ("0s" keeps them forever).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How long a clean shutdown may take before Comet gives up on it.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    pub log: LogConfig,
    pub http: HttpConfig,
    pub clickhouse: ClickHouseConfig,
    pub managed_clickhouse: ManagedClickHouseConfig,
    pub ingest: IngestConfig,
    pub remote_write: RemoteWriteConfig,
    pub otlp: OtlpConfig,
    pub kafka: KafkaConfig,
    pub remote_read: RemoteReadConfig,
    pub query: QueryConfig,
    pub rules: RulesConfig,
}

/// Recording and alerting rules, and the Alertmanagers alerts go to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Paths and globs of Prometheus rule files.
    pub rule_files: Vec<String>,
    /// Interval of groups that set none.
    #[serde(with = "humantime_serde")]
    pub evaluation_interval: Duration,
    /// Alertmanager base URLs; alerts go to each one's `/api/v2/alerts`.
    pub alertmanagers: Vec<String>,
    /// Labels added to alerts sent (when they lack them) and given to
    /// templates as `$externalLabels`.
    pub external_labels: BTreeMap<String, String>,
    /// Base of alerts' generator URLs and `$externalURL`; unset:
    /// `http://<hostname>:<port of listen_address>`.
    pub external_url: Option<String>,
    /// Firing alerts are re-sent to Alertmanager this often.
    #[serde(with = "humantime_serde")]
    pub resend_delay: Duration,
    /// Alerts waiting to be sent; beyond it the oldest are dropped.
    pub notification_queue_capacity: usize,
    /// Time allowed for one post to an Alertmanager.
    #[serde(with = "humantime_serde")]
    pub notification_timeout: Duration,
    /// Further attempts after a failed post.
    pub notification_max_retries: usize,
    /// After a restart, the `for` state is restored from samples no older
    /// than this.
    #[serde(with = "humantime_serde")]
    pub outage_tolerance: Duration,
    /// After a restart, a restored alert fires no sooner than this.
    #[serde(with = "humantime_serde")]
    pub for_grace_period: Duration,
}

impl Default for RulesConfig {
    fn default() -> Self {
        let ruler = RulerSettings::default();
        let notifier = NotifierSettings::default();
        Self {
            rule_files: Vec::new(),
            evaluation_interval: ruler.evaluation_interval,
            alertmanagers: Vec::new(),
            external_labels: BTreeMap::new(),
            external_url: None,
            resend_delay: ruler.resend_delay,
            notification_queue_capacity: notifier.queue_capacity,
            notification_timeout: notifier.timeout,
            notification_max_retries: notifier.max_retries,
            outage_tolerance: ruler.restore.outage_tolerance,
            for_grace_period: ruler.restore.for_grace_period,
        }
    }
}

/// The batcher/writer shared by every source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Flush a batch once it holds this many samples.
    pub batch_max_samples: usize,
    /// Flush before the linger ends once a batch holds this many samples
    /// and ClickHouse has a free insert slot.
    pub batch_min_samples: usize,
    /// Flush a batch at the latest this long after it started.
    #[serde(with = "humantime_serde")]
    pub batch_linger: Duration,
    /// Ceiling on memory held by accepted, not yet stored data; beyond it
    /// senders are told to retry.
    pub max_buffered_bytes: ByteSize,
    /// ClickHouse inserts in flight at once.
    pub max_concurrent_inserts: usize,
    /// Memory for the series registry: validated series, so known series
    /// skip validation, and the day each one's series row was last written.
    pub series_cache_bytes: ByteSize,
    /// Most labels of one series, `__name__` included (0: no limit); a
    /// series over it is refused with a 400, the rest of the request kept.
    pub max_labels_per_series: usize,
    /// Longest label name in bytes (0: no limit).
    pub max_label_name_bytes: usize,
    /// Longest label value (and metric name) in bytes (0: no limit).
    pub max_label_value_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        let w = WriterSettings::default();
        Self {
            batch_max_samples: w.max_batch_samples,
            batch_min_samples: w.min_batch_samples,
            batch_linger: w.linger,
            max_buffered_bytes: ByteSize::b(w.max_buffered_bytes as u64),
            max_concurrent_inserts: w.max_concurrent_inserts,
            series_cache_bytes: ByteSize::b(w.series_cache_bytes),
            max_labels_per_series: w.label_limits.max_labels,
            max_label_name_bytes: w.label_limits.max_name_bytes,
            max_label_value_bytes: w.label_limits.max_value_bytes,
        }
    }
}

/// Name validation scheme for incoming series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NameScheme {
    Legacy,
    Utf8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Largest compressed request body (413 above it).
    pub max_request_bytes: ByteSize,
    /// Largest body after snappy decompression (413 above it).
    pub max_decompressed_bytes: ByteSize,
    pub name_validation: NameScheme,
    /// Remote-write 2.0: store a 0 sample at a series' created timestamp.
    pub created_timestamp_zero_ingestion: bool,
    /// HTTP status when the buffer is full: 503 (Prometheus retries it) or
    /// 429 (retried only by senders configured to).
    pub overload_status: u16,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        let rw = RemoteWriteSettings::default();
        Self {
            max_request_bytes: ByteSize::b(rw.max_request_bytes as u64),
            max_decompressed_bytes: ByteSize::b(rw.decode.max_decompressed_bytes as u64),
            name_validation: NameScheme::Legacy,
            created_timestamp_zero_ingestion: false,
            overload_status: 503,
        }
    }
}

/// The OTLP receivers and the OpenTelemetry-to-Prometheus translation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// OTLP/gRPC listener (MetricsService/Export); empty to turn it off.
    pub grpc_listen_address: String,
    /// OTLP/HTTP listener (POST /v1/metrics); empty to turn it off. The
    /// main listener serves the same at /api/v1/otlp/v1/metrics.
    pub http_listen_address: String,
    /// Largest request after decompression (gRPC message limit too).
    pub max_request_bytes: ByteSize,
    /// Prometheus's otlp.translation_strategy.
    pub translation_strategy: OtlpTranslation,
    /// Resource attributes added as labels to every series.
    pub promote_resource_attributes: Vec<String>,
    /// Promote every resource attribute but `ignore_resource_attributes`.
    pub promote_all_resource_attributes: bool,
    pub ignore_resource_attributes: Vec<String>,
    /// Keep service.name, service.namespace, service.instance.id in
    /// target_info as well as in job/instance.
    pub keep_identifying_resource_attributes: bool,
    /// otel_scope_name/version/schema_url and otel_scope_<attr> labels.
    pub promote_scope_metadata: bool,
    /// Delta sums and histograms: cumulate (running totals per series in
    /// memory) or reject.
    pub delta_temporality: OtlpDelta,
    /// Exponential histograms: native, classic (converted to le buckets)
    /// or reject.
    pub exponential_histograms: OtlpExponential,
    /// Most classic buckets one exponential histogram point becomes.
    pub max_exponential_buckets: usize,
    /// Store a 0 sample at a counter's start time, once per start time.
    pub created_timestamp_zero_ingestion: bool,
    /// Series whose running totals and start times are remembered.
    pub state_max_series: u64,
    /// Forget a series' running total after this long without points.
    #[serde(with = "humantime_serde")]
    pub state_idle: Duration,
}

/// The Kafka source: on when `brokers` and `topics` are set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers (`host:port,...`); empty turns the source off.
    pub brokers: String,
    /// Consumer group; consumers of one group share the partitions.
    pub group_id: String,
    /// Topics to consume; a name starting with `^` is a regex.
    pub topics: Vec<String>,
    /// Format of messages of topics not in `topic_formats` (a message's
    /// `comet-format` header overrides both).
    pub format: KafkaFormat,
    /// Format by topic.
    pub topic_formats: BTreeMap<String, KafkaFormat>,
    /// librdkafka properties (security, fetch sizes, ...), passed through
    /// to the consumer and the dead-letter producer; they win over Comet's.
    pub librdkafka: BTreeMap<String, String>,
    /// Topic for messages that cannot be decoded or validated; empty to
    /// only log and count them.
    pub dlq_topic: String,
    /// Messages of one partition decoded at once.
    pub workers_per_partition: usize,
    /// Messages queued per partition before the partition is paused...
    pub queue_messages: usize,
    /// ...or bytes of their payloads.
    pub queue_bytes: ByteSize,
    /// A batch (one deduplicated insert) is cut at this many samples...
    pub batch_max_samples: usize,
    /// ...or messages...
    pub batch_max_messages: usize,
    /// ...or this long after its first message.
    #[serde(with = "humantime_serde")]
    pub batch_linger: Duration,
    /// Batches of one partition being inserted at once.
    pub max_inflight_batches: usize,
    /// How often stored offsets are committed.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// How long a revoked partition may take to store what it received
    /// before its in-flight batches are abandoned (and replayed by the next
    /// owner, deduplicated).
    #[serde(with = "humantime_serde")]
    pub revoke_timeout: Duration,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        let k = KafkaSettings::default();
        Self {
            brokers: String::new(),
            group_id: k.group_id,
            topics: Vec::new(),
            format: KafkaFormat::RemoteWrite,
            topic_formats: BTreeMap::new(),
            librdkafka: BTreeMap::new(),
            dlq_topic: String::new(),
            workers_per_partition: k.workers_per_partition,
            queue_messages: k.queue_messages,
            queue_bytes: ByteSize::b(k.queue_bytes as u64),
            batch_max_samples: k.batch_max_samples,
            batch_max_messages: k.batch_max_messages,
            batch_linger: k.batch_linger,
            max_inflight_batches: k.max_inflight_batches,
            commit_interval: k.commit_interval,
            revoke_timeout: k.revoke_timeout,
        }
    }
}

/// Message formats of a Kafka topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum KafkaFormat {
    /// Prometheus remote-write 1.0 (snappy protobuf), as Prometheus,
    /// vmagent and Alloy write it.
    RemoteWrite,
    /// OTLP ExportMetricsServiceRequest, protobuf.
    OtlpProto,
    /// OTLP ExportMetricsServiceRequest, OTLP/JSON.
    OtlpJson,
    /// Prometheus text exposition lines with timestamps.
    PrometheusText,
}

impl From<KafkaFormat> for MessageFormat {
    fn from(f: KafkaFormat) -> Self {
        match f {
            KafkaFormat::RemoteWrite => MessageFormat::RemoteWrite,
            KafkaFormat::OtlpProto => MessageFormat::OtlpProtobuf,
            KafkaFormat::OtlpJson => MessageFormat::OtlpJson,
            KafkaFormat::PrometheusText => MessageFormat::PrometheusText,
        }
    }
}

/// Prometheus's OTLP translation strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum OtlpTranslation {
    #[value(name = "UnderscoreEscapingWithSuffixes")]
    UnderscoreEscapingWithSuffixes,
    #[value(name = "UnderscoreEscapingWithoutSuffixes")]
    UnderscoreEscapingWithoutSuffixes,
    #[serde(rename = "NoUTF8EscapingWithSuffixes")]
    #[value(name = "NoUTF8EscapingWithSuffixes")]
    NoUtf8EscapingWithSuffixes,
    #[value(name = "NoTranslation")]
    NoTranslation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OtlpDelta {
    Cumulate,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OtlpExponential {
    Native,
    Classic,
    Reject,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        let o = OtlpSettings::default();
        Self {
            grpc_listen_address: "0.0.0.0:4317".into(),
            http_listen_address: "0.0.0.0:4318".into(),
            max_request_bytes: ByteSize::b(o.max_request_bytes as u64),
            translation_strategy: OtlpTranslation::UnderscoreEscapingWithSuffixes,
            promote_resource_attributes: Vec::new(),
            promote_all_resource_attributes: false,
            ignore_resource_attributes: Vec::new(),
            keep_identifying_resource_attributes: false,
            promote_scope_metadata: false,
            delta_temporality: OtlpDelta::Cumulate,
            exponential_histograms: OtlpExponential::Native,
            max_exponential_buckets: o.translate.max_exponential_buckets,
            created_timestamp_zero_ingestion: false,
            state_max_series: o.state_max_series,
            state_idle: o.state_idle,
        }
    }
}

/// The PromQL engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// How far back an instant vector selector looks for a sample.
    #[serde(with = "humantime_serde")]
    pub lookback_delta: Duration,
    /// Step of a subquery written without one (`x[1h:]`); Prometheus takes
    /// it from the global `evaluation_interval` (1m by default).
    #[serde(with = "humantime_serde")]
    pub default_subquery_step: Duration,
    /// Longest a PromQL query may run; ClickHouse stops it there.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most rows ClickHouse may read for one query.
    pub max_samples: u64,
    /// Most series in one query result.
    pub max_series: u64,
    /// Most memory ClickHouse may use for one query (its
    /// `max_memory_usage`); beyond it the query fails with a 422.
    pub max_memory: ByteSize,
    /// Most points per series of a range query.
    pub max_points_per_series: i64,
    /// Queries slower than this are logged with their PromQL and SQL.
    #[serde(with = "humantime_serde")]
    pub slow_query_threshold: Duration,
    /// How long series lists and label names/values are reused.
    #[serde(with = "humantime_serde")]
    pub catalog_cache_ttl: Duration,
    /// Memory for cached range-query results.
    pub results_cache_bytes: ByteSize,
    /// Steps newer than this are never cached, unless every write goes
    /// through this Comet (`results_cache_sole_writer`).
    #[serde(with = "humantime_serde")]
    pub results_cache_freshness: Duration,
    /// Whether every write to the database goes through this Comet.
    pub results_cache_sole_writer: SoleWriter,
}

/// Whether every write to the database goes through this Comet (its
/// remote-write, OTLP, Kafka and rules): then the results cache keeps
/// every step up to now and recomputes only those a later write reaches
/// back to. `auto` is yes with the managed ClickHouse, no with a
/// `clickhouse.url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SoleWriter {
    Auto,
    Yes,
    No,
}

impl Default for QueryConfig {
    fn default() -> Self {
        let limits = ApiLimits::default();
        let cache = CacheSettings::default();
        Self {
            lookback_delta: PlanSettings::default().lookback_delta,
            default_subquery_step: PlanSettings::default().default_subquery_step,
            timeout: limits.query_timeout,
            max_samples: limits.max_samples,
            max_series: limits.max_series,
            max_memory: ByteSize::b(limits.max_memory_bytes),
            max_points_per_series: limits.max_points_per_series,
            slow_query_threshold: ApiSettings::default().slow_query_threshold,
            catalog_cache_ttl: cache.catalog_ttl,
            results_cache_bytes: ByteSize::b(cache.results_max_bytes),
            results_cache_freshness: cache.results_freshness,
            results_cache_sole_writer: SoleWriter::Auto,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteReadConfig {
    /// Most samples one remote-read request may return.
    pub max_samples: usize,
}

impl Default for RemoteReadConfig {
    fn default() -> Self {
        Self {
            max_samples: RemoteReadSettings::default().max_samples,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `comet=debug,info`, ...
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// TLS and authentication on the HTTP listener.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// PEM certificate chain; with `tls_key_file`, the listener speaks HTTPS.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// PEM CAs; when set, clients must present a certificate they signed.
    pub tls_client_ca_file: Option<PathBuf>,
    /// user -> bcrypt hash, as Prometheus's web config `basic_auth_users`.
    pub basic_auth_users: BTreeMap<String, String>,
    /// SHA-256 hex digests of accepted bearer tokens.
    pub bearer_tokens: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP(S) URL of an existing server; unset runs the managed one.
    pub url: Option<String>,
    pub user: String,
    pub password: String,
    pub database: String,
    /// Extra CA certificates (PEM) for `https://` URLs.
    pub tls_ca_file: Option<PathBuf>,
    /// Cluster name for `ON CLUSTER` DDL and Distributed tables.
    pub cluster: Option<String>,
    /// In a cluster: replicas per shard that must hold an insert's rows
    /// before it is acknowledged, `auto` (a majority) or a number.
    pub insert_quorum: String,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// How long start-up waits for ClickHouse to answer.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    pub max_retries: usize,
    #[serde(with = "humantime_serde")]
    pub retry_initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max_backoff: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagedClickHouseConfig {
    /// Python venv with chdb, made by `scripts/setup.sh`.
    pub venv: PathBuf,
    pub http_port: u16,
    pub tcp_port: u16,
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_address: "0.0.0.0:9090".into(),
            data_dir: "comet-data".into(),
            retention: Duration::from_secs(15 * 24 * 3600),
            shutdown_timeout: Duration::from_secs(30),
            log: LogConfig::default(),
            http: HttpConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            managed_clickhouse: ManagedClickHouseConfig::default(),
            ingest: IngestConfig::default(),
            remote_write: RemoteWriteConfig::default(),
            otlp: OtlpConfig::default(),
            kafka: KafkaConfig::default(),
            remote_read: RemoteReadConfig::default(),
            query: QueryConfig::default(),
            rules: RulesConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        let retry = RetryPolicy::default();
        Self {
            url: None,
            user: "default".into(),
            password: String::new(),
            database: "comet".into(),
            tls_ca_file: None,
            cluster: None,
            insert_quorum: "auto".into(),
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(120),
            startup_timeout: Duration::from_secs(60),
            max_retries: retry.max_retries,
            retry_initial_backoff: retry.initial_backoff,
            retry_max_backoff: retry.max_backoff,
        }
    }
}

impl Default for ManagedClickHouseConfig {
    fn default() -> Self {
        Self {
            venv: ".chdb-venv".into(),
            http_port: 8123,
            tcp_port: 9000,
            startup_timeout: Duration::from_secs(120),
        }
    }
}

/// Replaces `$target` with the flag/env value when one was given; with
/// `optional`, the target is itself an `Option`.
macro_rules! overlay {
    ($target:expr, $value:expr) => {
        if let Some(v) = $value.clone() {
            $target = v;
        }
    };
    (optional $target:expr, $value:expr) => {
        if let Some(v) = $value.clone() {
            $target = Some(v);
        }
    };
}

impl Config {
    /// Defaults, then the file named by `--config`, then env and flags.
    pub fn load(args: &ConfigArgs) -> anyhow::Result<Self> {
        let mut config = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        config.overlay(args);
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        serde_norway::from_str(&text)
            .with_context(|| format!("config file {} is not valid", path.display()))
    }

    fn overlay(&mut self, a: &ConfigArgs) {
        overlay!(self.listen_address, a.listen_address);
        overlay!(self.data_dir, a.data_dir);
        overlay!(self.retention, a.retention);
        overlay!(self.shutdown_timeout, a.shutdown_timeout);
        overlay!(self.log.level, a.log_level);
        overlay!(self.log.format, a.log_format);
        let http = &mut self.http;
        overlay!(optional http.tls_cert_file, a.http_tls_cert_file);
        overlay!(optional http.tls_key_file, a.http_tls_key_file);
        overlay!(optional http.tls_client_ca_file, a.http_tls_client_ca_file);
        if let Some(users) = &a.http_basic_auth_users {
            http.basic_auth_users = users.iter().cloned().collect();
        }
        overlay!(http.bearer_tokens, a.http_bearer_tokens);
        let ch = &mut self.clickhouse;
        overlay!(optional ch.url, a.clickhouse_url);
        overlay!(ch.user, a.clickhouse_user);
        overlay!(ch.password, a.clickhouse_password);
        overlay!(ch.database, a.clickhouse_database);
        overlay!(optional ch.tls_ca_file, a.clickhouse_tls_ca_file);
        overlay!(optional ch.cluster, a.clickhouse_cluster);
        overlay!(ch.insert_quorum, a.clickhouse_insert_quorum);
        overlay!(ch.connect_timeout, a.clickhouse_connect_timeout);
        overlay!(ch.query_timeout, a.clickhouse_query_timeout);
        overlay!(ch.startup_timeout, a.clickhouse_startup_timeout);
        overlay!(ch.max_retries, a.clickhouse_max_retries);
        let managed = &mut self.managed_clickhouse;
        overlay!(managed.venv, a.managed_clickhouse_venv);
        overlay!(managed.http_port, a.managed_clickhouse_http_port);
        overlay!(managed.tcp_port, a.managed_clickhouse_tcp_port);
        overlay!(
            managed.startup_timeout,
            a.managed_clickhouse_startup_timeout
        );
        let ingest = &mut self.ingest;
        overlay!(ingest.batch_max_samples, a.ingest_batch_max_samples);
        overlay!(ingest.batch_min_samples, a.ingest_batch_min_samples);
        overlay!(ingest.batch_linger, a.ingest_batch_linger);
        overlay!(ingest.max_buffered_bytes, a.ingest_max_buffered_bytes);
        overlay!(
            ingest.max_concurrent_inserts,
            a.ingest_max_concurrent_inserts
        );
        overlay!(ingest.series_cache_bytes, a.ingest_series_cache_bytes);
        overlay!(ingest.max_labels_per_series, a.ingest_max_labels_per_series);
        overlay!(ingest.max_label_name_bytes, a.ingest_max_label_name_bytes);
        overlay!(ingest.max_label_value_bytes, a.ingest_max_label_value_bytes);
        let rw = &mut self.remote_write;
        overlay!(rw.max_request_bytes, a.remote_write_max_request_bytes);
        overlay!(
            rw.max_decompressed_bytes,
            a.remote_write_max_decompressed_bytes
        );
        overlay!(rw.name_validation, a.remote_write_name_validation);
        overlay!(
            rw.created_timestamp_zero_ingestion,
            a.remote_write_created_timestamp_zero_ingestion
        );
        overlay!(rw.overload_status, a.remote_write_overload_status);
        let otlp = &mut self.otlp;
        overlay!(otlp.grpc_listen_address, a.otlp_grpc_listen_address);
        overlay!(otlp.http_listen_address, a.otlp_http_listen_address);
        overlay!(otlp.max_request_bytes, a.otlp_max_request_bytes);
        overlay!(otlp.translation_strategy, a.otlp_translation_strategy);
        overlay!(
            otlp.promote_resource_attributes,
            a.otlp_promote_resource_attributes
        );
        overlay!(
            otlp.promote_all_resource_attributes,
            a.otlp_promote_all_resource_attributes
        );
        overlay!(
            otlp.ignore_resource_attributes,
            a.otlp_ignore_resource_attributes
        );
        overlay!(
            otlp.keep_identifying_resource_attributes,
            a.otlp_keep_identifying_resource_attributes
        );
        overlay!(otlp.promote_scope_metadata, a.otlp_promote_scope_metadata);
        overlay!(otlp.delta_temporality, a.otlp_delta_temporality);
        overlay!(otlp.exponential_histograms, a.otlp_exponential_histograms);
        overlay!(otlp.max_exponential_buckets, a.otlp_max_exponential_buckets);
        overlay!(
            otlp.created_timestamp_zero_ingestion,
            a.otlp_created_timestamp_zero_ingestion
        );
        overlay!(otlp.state_max_series, a.otlp_state_max_series);
        overlay!(otlp.state_idle, a.otlp_state_idle);
        let k = &mut self.kafka;
        overlay!(k.brokers, a.kafka_brokers);
        overlay!(k.group_id, a.kafka_group_id);
        overlay!(k.topics, a.kafka_topics);
        overlay!(k.format, a.kafka_format);
        if let Some(formats) = &a.kafka_topic_formats {
            k.topic_formats = formats.iter().cloned().collect();
        }
        if let Some(properties) = &a.kafka_librdkafka {
            k.librdkafka = properties.iter().cloned().collect();
        }
        overlay!(k.dlq_topic, a.kafka_dlq_topic);
        overlay!(k.workers_per_partition, a.kafka_workers_per_partition);
        overlay!(k.queue_messages, a.kafka_queue_messages);
        overlay!(k.queue_bytes, a.kafka_queue_bytes);
        overlay!(k.batch_max_samples, a.kafka_batch_max_samples);
        overlay!(k.batch_max_messages, a.kafka_batch_max_messages);
        overlay!(k.batch_linger, a.kafka_batch_linger);
        overlay!(k.max_inflight_batches, a.kafka_max_inflight_batches);
        overlay!(k.commit_interval, a.kafka_commit_interval);
        overlay!(k.revoke_timeout, a.kafka_revoke_timeout);
        overlay!(self.remote_read.max_samples, a.remote_read_max_samples);
        let q = &mut self.query;
        overlay!(q.lookback_delta, a.query_lookback_delta);
        overlay!(q.default_subquery_step, a.query_default_subquery_step);
        overlay!(q.timeout, a.query_timeout);
        overlay!(q.max_samples, a.query_max_samples);
        overlay!(q.max_series, a.query_max_series);
        overlay!(q.max_memory, a.query_max_memory);
        overlay!(q.max_points_per_series, a.query_max_points_per_series);
        overlay!(q.slow_query_threshold, a.query_slow_query_threshold);
        overlay!(q.catalog_cache_ttl, a.query_catalog_cache_ttl);
        overlay!(q.results_cache_bytes, a.query_results_cache_bytes);
        overlay!(q.results_cache_freshness, a.query_results_cache_freshness);
        overlay!(
            q.results_cache_sole_writer,
            a.query_results_cache_sole_writer
        );
        let r = &mut self.rules;
        overlay!(r.rule_files, a.rules_files);
        overlay!(r.evaluation_interval, a.rules_evaluation_interval);
        overlay!(r.alertmanagers, a.rules_alertmanagers);
        if let Some(labels) = &a.rules_external_labels {
            r.external_labels = labels.iter().cloned().collect();
        }
        overlay!(optional r.external_url, a.rules_external_url);
        overlay!(r.resend_delay, a.rules_resend_delay);
        overlay!(
            r.notification_queue_capacity,
            a.rules_notification_queue_capacity
        );
        overlay!(r.notification_timeout, a.rules_notification_timeout);
        overlay!(r.notification_max_retries, a.rules_notification_max_retries);
        overlay!(r.outage_tolerance, a.rules_outage_tolerance);
        overlay!(r.for_grace_period, a.rules_for_grace_period);
    }

    /// Checks what serde cannot, so a bad value stops Comet before it has
    /// created anything.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.listen_address()?;
        let http = &self.http;
        if http.tls_cert_file.is_some() != http.tls_key_file.is_some() {
            bail!("http.tls_cert_file and http.tls_key_file must be set together");
        }
        if http.tls_client_ca_file.is_some() && http.tls_cert_file.is_none() {
            bail!("http.tls_client_ca_file needs http.tls_cert_file and http.tls_key_file");
        }
        crate::auth::validate(&http.basic_auth_users, &http.bearer_tokens)?;
        let db = &self.clickhouse.database;
        if db.is_empty() || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!(
                "clickhouse.database {db:?} must be non-empty and use only letters, digits and _"
            );
        }
        let quorum = &self.clickhouse.insert_quorum;
        if quorum != "auto" && !quorum.parse::<u32>().is_ok_and(|n| n >= 1) {
            bail!(
                "clickhouse.insert_quorum {quorum:?} must be auto or a number of replicas (1 or more)"
            );
        }
        if let Some(url) = &self.clickhouse.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bail!("clickhouse.url {url:?} must start with http:// or https://");
        }
        if !self.retention.is_zero() && self.retention < Duration::from_secs(3600) {
            bail!(
                "retention {} is shorter than 1h; use at least 1h, or 0s to keep data forever",
                humantime::format_duration(self.retention)
            );
        }
        let m = &self.managed_clickhouse;
        if self.clickhouse.url.is_none() && (m.http_port == 0 || m.tcp_port == 0) {
            bail!("managed_clickhouse ports must be set (not 0)");
        }
        if m.http_port == m.tcp_port {
            bail!("managed_clickhouse.http_port and tcp_port must differ");
        }
        if ![429, 503].contains(&self.remote_write.overload_status) {
            bail!("remote_write.overload_status must be 429 or 503");
        }
        self.otlp_listen_addresses()?;
        if self.otlp.max_exponential_buckets < 2 {
            bail!("otlp.max_exponential_buckets must be at least 2");
        }
        if self.ingest.batch_max_samples == 0 || self.ingest.max_concurrent_inserts == 0 {
            bail!("ingest.batch_max_samples and ingest.max_concurrent_inserts must be at least 1");
        }
        let r = &self.rules;
        if r.evaluation_interval.is_zero() {
            bail!("rules.evaluation_interval must be longer than 0s");
        }
        for am in &r.alertmanagers {
            if !(am.starts_with("http://") || am.starts_with("https://")) {
                bail!("rules.alertmanagers: {am:?} must start with http:// or https://");
            }
        }
        for name in r.external_labels.keys() {
            if !comet_schema::labels::is_valid_label_name(name, NameValidation::Legacy) {
                bail!("rules.external_labels: {name:?} is not a valid label name");
            }
        }
        Ok(())
    }

    pub fn listen_address(&self) -> anyhow::Result<SocketAddr> {
        self.listen_address.parse().with_context(|| {
            format!(
                "listen_address {:?} is not an address like 0.0.0.0:9090",
                self.listen_address
            )
        })
    }

    /// The OTLP gRPC and HTTP listen addresses; `None` for one turned off.
    pub fn otlp_listen_addresses(
        &self,
    ) -> anyhow::Result<(Option<SocketAddr>, Option<SocketAddr>)> {
        let parse = |key: &str, value: &str| -> anyhow::Result<Option<SocketAddr>> {
            if value.is_empty() {
                return Ok(None);
            }
            value.parse().map(Some).with_context(|| {
                format!("otlp.{key} {value:?} is not an address like 0.0.0.0:4317 (or empty to turn it off)")
            })
        };
        Ok((
            parse("grpc_listen_address", &self.otlp.grpc_listen_address)?,
            parse("http_listen_address", &self.otlp.http_listen_address)?,
        ))
    }

    pub fn otlp_settings(&self) -> OtlpSettings {
        let o = &self.otlp;
        OtlpSettings {
            translate: TranslateSettings {
                strategy: match o.translation_strategy {
                    OtlpTranslation::UnderscoreEscapingWithSuffixes => {
                        TranslationStrategy::UnderscoreEscapingWithSuffixes
                    }
                    OtlpTranslation::UnderscoreEscapingWithoutSuffixes => {
                        TranslationStrategy::UnderscoreEscapingWithoutSuffixes
                    }
                    OtlpTranslation::NoUtf8EscapingWithSuffixes => {
                        TranslationStrategy::NoUtf8EscapingWithSuffixes
                    }
                    OtlpTranslation::NoTranslation => TranslationStrategy::NoTranslation,
                },
                promote_resource_attributes: o.promote_resource_attributes.clone(),
                promote_all_resource_attributes: o.promote_all_resource_attributes,
                ignore_resource_attributes: o.ignore_resource_attributes.clone(),
                keep_identifying_resource_attributes: o.keep_identifying_resource_attributes,
                promote_scope_metadata: o.promote_scope_metadata,
                delta: match o.delta_temporality {
                    OtlpDelta::Cumulate => DeltaPolicy::Cumulate,
                    OtlpDelta::Reject => DeltaPolicy::Reject,
                },
                exponential_histograms: match o.exponential_histograms {
                    OtlpExponential::Native => ExponentialPolicy::Native,
                    OtlpExponential::Classic => ExponentialPolicy::ClassicBuckets,
                    OtlpExponential::Reject => ExponentialPolicy::Reject,
                },
                max_exponential_buckets: o.max_exponential_buckets,
                created_timestamp_zero_samples: o.created_timestamp_zero_ingestion,
                lookback_delta: self.query.lookback_delta,
            },
            max_request_bytes: o.max_request_bytes.as_u64() as usize,
            state_max_series: o.state_max_series,
            state_idle: o.state_idle,
        }
    }

    /// The store settings for a given server URL (the configured one or the
    /// managed server's, reached over loopback without compression).
    pub fn store_settings(&self, url: String) -> StoreSettings {
        let ch = &self.clickhouse;
        StoreSettings {
            compression: ch.url.is_some(),
            url,
            user: ch.user.clone(),
            password: ch.password.clone(),
            database: ch.database.clone(),
            tls_ca_file: ch.tls_ca_file.clone(),
            connect_timeout: ch.connect_timeout,
            query_timeout: ch.query_timeout,
            retry: RetryPolicy {
                max_retries: ch.max_retries,
                initial_backoff: ch.retry_initial_backoff,
                max_backoff: ch.retry_max_backoff,
            },
            // Set once connected: `Store::for_topology` resolves the quorum.
            topology_settings: Vec::new(),
        }
    }

    pub fn schema_options(&self) -> SchemaOptions {
        SchemaOptions {
            database: self.clickhouse.database.clone(),
            retention: (!self.retention.is_zero()).then_some(self.retention),
            topology: match &self.clickhouse.cluster {
                Some(name) => Topology::Cluster { name: name.clone() },
                None => Topology::SingleNode,
            },
        }
    }

    pub fn managed_settings(&self) -> ManagedSettings {
        let m = &self.managed_clickhouse;
        ManagedSettings {
            venv: m.venv.clone(),
            data_dir: self.data_dir.join("clickhouse"),
            http_port: m.http_port,
            tcp_port: m.tcp_port,
            startup_timeout: m.startup_timeout,
            shutdown_timeout: self.shutdown_timeout,
            cluster: None,
        }
    }

    pub fn writer_settings(&self) -> WriterSettings {
        let i = &self.ingest;
        WriterSettings {
            max_batch_samples: i.batch_max_samples,
            min_batch_samples: i.batch_min_samples,
            linger: i.batch_linger,
            max_buffered_bytes: i.max_buffered_bytes.as_u64() as usize,
            max_concurrent_inserts: i.max_concurrent_inserts,
            series_cache_bytes: i.series_cache_bytes.as_u64(),
            label_limits: LabelLimits {
                max_labels: i.max_labels_per_series,
                max_name_bytes: i.max_label_name_bytes,
                max_value_bytes: i.max_label_value_bytes,
            },
        }
    }

    /// The Kafka source's settings, if it is configured.
    pub fn kafka_settings(&self) -> Option<KafkaSettings> {
        let k = &self.kafka;
        if k.brokers.is_empty() || k.topics.is_empty() {
            return None;
        }
        Some(KafkaSettings {
            brokers: k.brokers.clone(),
            group_id: k.group_id.clone(),
            topics: k.topics.clone(),
            format: k.format.into(),
            topic_formats: k
                .topic_formats
                .iter()
                .map(|(topic, f)| (topic.clone(), MessageFormat::from(*f)))
                .collect(),
            librdkafka: k.librdkafka.clone(),
            dlq_topic: (!k.dlq_topic.is_empty()).then(|| k.dlq_topic.clone()),
            workers_per_partition: k.workers_per_partition.max(1),
            queue_messages: k.queue_messages.max(1),
            queue_bytes: usize::try_from(k.queue_bytes.as_u64())
                .unwrap_or(usize::MAX)
                .max(1),
            batch_max_samples: k.batch_max_samples.max(1),
            batch_max_messages: k.batch_max_messages.max(1),
            batch_linger: k.batch_linger,
            max_inflight_batches: k.max_inflight_batches.max(1),
            commit_interval: k.commit_interval,
            revoke_timeout: k.revoke_timeout,
            ..KafkaSettings::default()
        })
    }

    pub fn remote_write_settings(&self) -> RemoteWriteSettings {
        let rw = &self.remote_write;
        RemoteWriteSettings {
            max_request_bytes: rw.max_request_bytes.as_u64() as usize,
            decode: DecodeOptions {
                max_decompressed_bytes: rw.max_decompressed_bytes.as_u64() as usize,
                name_validation: match rw.name_validation {
                    NameScheme::Legacy => NameValidation::Legacy,
                    NameScheme::Utf8 => NameValidation::Utf8,
                },
                created_timestamp_zero_samples: rw.created_timestamp_zero_ingestion,
            },
            overload_status: StatusCode::from_u16(rw.overload_status)
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        }
    }

    /// The Prometheus HTTP API's settings; `flags` are the options as
    /// `/api/v1/status/flags` lists them.
    pub fn api_settings(&self) -> ApiSettings {
        let q = &self.query;
        let mut redacted = self.clone();
        // Secrets (and hashes of them) never leave through the API.
        if !redacted.clickhouse.password.is_empty() {
            redacted.clickhouse.password = "<secret>".into();
        }
        for hash in redacted.http.basic_auth_users.values_mut() {
            *hash = "<secret>".into();
        }
        for digest in &mut redacted.http.bearer_tokens {
            *digest = "<secret>".into();
        }
        let config_yaml = serde_norway::to_string(&redacted).unwrap_or_default();
        let mut flags = std::collections::BTreeMap::new();
        if let Ok(serde_json::Value::Object(sections)) = serde_json::to_value(&redacted) {
            flatten_flags("", &serde_json::Value::Object(sections), &mut flags);
        }
        ApiSettings {
            plan: self.plan_settings(),
            limits: ApiLimits {
                query_timeout: q.timeout,
                max_samples: q.max_samples,
                max_series: q.max_series,
                max_memory_bytes: q.max_memory.as_u64(),
                max_points_per_series: q.max_points_per_series,
                ..ApiLimits::default()
            },
            cache: CacheSettings {
                catalog_ttl: q.catalog_cache_ttl,
                results_max_bytes: q.results_cache_bytes.as_u64(),
                results_freshness: q.results_cache_freshness,
                results_sole_writer: match q.results_cache_sole_writer {
                    SoleWriter::Auto => self.clickhouse.url.is_none(),
                    SoleWriter::Yes => true,
                    SoleWriter::No => false,
                },
                ..CacheSettings::default()
            },
            slow_query_threshold: q.slow_query_threshold,
            config_yaml,
            flags,
            retention: humantime::format_duration(self.retention).to_string(),
            version: env!("CARGO_PKG_VERSION").into(),
            // Set by `serve` once the ruler runs.
            ruler: None,
        }
    }

    pub fn plan_settings(&self) -> PlanSettings {
        PlanSettings {
            lookback_delta: self.query.lookback_delta,
            default_subquery_step: self.query.default_subquery_step,
            // Known per query (see `Engine::settings_now`).
            histogram_metrics: Default::default(),
            histogram_only_metrics: Default::default(),
        }
    }

    pub fn remote_read_settings(&self) -> RemoteReadSettings {
        RemoteReadSettings {
            max_samples: self.remote_read.max_samples,
            ..RemoteReadSettings::default()
        }
    }

    /// The ruler's settings; the external URL defaults to this host's name
    /// and the listen port, as Prometheus's does.
    pub fn ruler_settings(&self) -> RulerSettings {
        let r = &self.rules;
        let external_url = r.external_url.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into());
            let port = self.listen_address().map(|a| a.port()).unwrap_or(9090);
            format!("http://{host}:{port}")
        });
        RulerSettings {
            rule_files: r.rule_files.clone(),
            evaluation_interval: r.evaluation_interval,
            external_labels: r
                .external_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            external_url,
            resend_delay: r.resend_delay,
            restore: RestorePolicy {
                outage_tolerance: r.outage_tolerance,
                for_grace_period: r.for_grace_period,
            },
        }
    }

    pub fn notifier_settings(&self) -> NotifierSettings {
        let r = &self.rules;
        NotifierSettings {
            alertmanagers: r.alertmanagers.clone(),
            queue_capacity: r.notification_queue_capacity,
            timeout: r.notification_timeout,
            max_retries: r.notification_max_retries,
            external_labels: r
                .external_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The configuration as YAML, with the password masked.
    pub fn to_yaml_masked(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        if !shown.clickhouse.password.is_empty() {
            shown.clickhouse.password = "<hidden>".into();
        }
        for (key, value) in shown.kafka.librdkafka.iter_mut() {
            if key.contains("password") || key.contains("secret") {
                *value = "<hidden>".into();
            }
        }
        Ok(serde_norway::to_string(&shown)?)
    }
}

/// `section.option` -> value, as `/api/v1/status/flags` shows options.
fn flatten_flags(
    prefix: &str,
    value: &serde_json::Value,
    out: &mut std::collections::BTreeMap<String, String>,
) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_flags(&key, v, out);
            }
        }
        serde_json::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        serde_json::Value::Null => {
            out.insert(prefix.to_string(), String::new());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> ConfigArgs {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: ConfigArgs,
        }
        let mut argv = vec!["comet"];
        argv.extend_from_slice(extra);
        Wrapper::parse_from(argv).args
    }

    #[test]
    fn otlp_translation_strategies_by_prometheus_name() {
        let parse = |name: &str| {
            serde_norway::from_str::<Config>(&format!("otlp:\n  translation_strategy: {name}\n"))
        };
        let config = parse("NoUTF8EscapingWithSuffixes").unwrap();
        assert_eq!(
            config.otlp_settings().translate.strategy,
            TranslationStrategy::NoUtf8EscapingWithSuffixes
        );
        assert!(parse("nope").is_err());
    }

    #[test]
    fn example_config_is_the_default() {
        let example = Config::from_file(Path::new("comet.example.yaml")).unwrap();
        assert_eq!(example, Config::default());
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "retention: 30d\nclickhouse:\n  url: http://ch:8123\n  database: prod\n",
        )
        .unwrap();
        let config = Config::load(&args(&[
            "--config",
            path.to_str().unwrap(),
            "--clickhouse-database",
            "override",
        ]))
        .unwrap();
        assert_eq!(config.retention, Duration::from_secs(30 * 86400));
        assert_eq!(config.clickhouse.url.as_deref(), Some("http://ch:8123"));
        assert_eq!(config.clickhouse.database, "override");
        assert_eq!(config.listen_address, "0.0.0.0:9090");
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "retention: 30d\nlisten_adress: x\n").unwrap();
        let err = format!("{:#}", Config::from_file(&path).unwrap_err());
        assert!(err.contains("unknown field `listen_adress`"), "{err}");

        std::fs::write(&path, "retention: soon\n").unwrap();
        let err = format!("{:#}", Config::from_file(&path).unwrap_err());
        assert!(err.contains("retention"), "{err}");
    }

    #[test]
    fn validation() {
        let mut c = Config::default();
        c.clickhouse.database = "a-b".into();
        assert!(c.validate().is_err());
        let c = Config {
            retention: Duration::from_secs(60),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let c = Config {
            listen_address: "nowhere".into(),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let c = Config {
            retention: Duration::ZERO,
            ..Config::default()
        };
        c.validate().unwrap();
        assert_eq!(c.schema_options().retention, None);
    }

    /// Every flag must reach the configuration: a flag that parses but is
    /// ignored would silently do nothing.
    #[test]
    fn the_api_never_shows_secrets() {
        let mut config = Config::default();
        config.clickhouse.password = "hunter2".into();
        config
            .http
            .basic_auth_users
            .insert("admin".into(), "$2y$10$abcdefghijklmnopqrstuv".into());
        config.http.bearer_tokens.push("ab".repeat(32));
        let api = config.api_settings();
        let shown = format!("{}{:?}", api.config_yaml, api.flags);
        for secret in ["hunter2", "$2y$10$", &"ab".repeat(32)] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
        assert!(api.config_yaml.contains("admin"));
    }

    #[test]
    fn every_flag_changes_the_configuration() {
        use clap::CommandFactory;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: ConfigArgs,
        }
        let defaults = Config::default();
        let samples: &[(&str, &str)] = &[
            ("listen-address", "127.0.0.1:1"),
            ("data-dir", "/x"),
            ("retention", "2d"),
            ("shutdown-timeout", "9s"),
            ("log-level", "debug"),
            ("log-format", "json"),
            ("http-tls-cert-file", "/cert.pem"),
            ("http-tls-key-file", "/key.pem"),
            ("http-tls-client-ca-file", "/ca.pem"),
            ("http-basic-auth-users", "alice:$2y$10$x"),
            ("http-bearer-tokens", "ab,cd"),
            ("clickhouse-url", "http://h:1"),
            ("clickhouse-user", "u"),
            ("clickhouse-password", "p"),
            ("clickhouse-database", "d"),
            ("clickhouse-tls-ca-file", "/ca.pem"),
            ("clickhouse-cluster", "c"),
            ("clickhouse-insert-quorum", "2"),
            ("clickhouse-connect-timeout", "9s"),
            ("clickhouse-query-timeout", "9s"),
            ("clickhouse-startup-timeout", "9s"),
            ("clickhouse-max-retries", "9"),
            ("managed-clickhouse-venv", "/v"),
            ("managed-clickhouse-http-port", "1"),
            ("managed-clickhouse-tcp-port", "2"),
            ("managed-clickhouse-startup-timeout", "9s"),
            ("ingest-batch-max-samples", "9"),
            ("ingest-batch-min-samples", "9"),
            ("ingest-batch-linger", "9s"),
            ("ingest-max-buffered-bytes", "9KiB"),
            ("ingest-max-concurrent-inserts", "9"),
            ("ingest-series-cache-bytes", "9KiB"),
            ("ingest-max-labels-per-series", "9"),
            ("ingest-max-label-name-bytes", "9"),
            ("ingest-max-label-value-bytes", "9"),
            ("remote-write-max-request-bytes", "9KiB"),
            ("remote-write-max-decompressed-bytes", "9KiB"),
            ("remote-write-name-validation", "utf8"),
            ("remote-write-created-timestamp-zero-ingestion", "true"),
            ("remote-write-overload-status", "429"),
            ("otlp-grpc-listen-address", ""),
            ("otlp-http-listen-address", "127.0.0.1:1"),
            ("otlp-max-request-bytes", "9KiB"),
            ("otlp-translation-strategy", "NoTranslation"),
            ("otlp-promote-resource-attributes", "a.b,c"),
            ("otlp-promote-all-resource-attributes", "true"),
            ("otlp-ignore-resource-attributes", "a.b"),
            ("otlp-keep-identifying-resource-attributes", "true"),
            ("otlp-promote-scope-metadata", "true"),
            ("otlp-delta-temporality", "reject"),
            ("otlp-exponential-histograms", "reject"),
            ("otlp-max-exponential-buckets", "9"),
            ("otlp-created-timestamp-zero-ingestion", "true"),
            ("otlp-state-max-series", "9"),
            ("otlp-state-idle", "9s"),
            ("remote-read-max-samples", "9"),
            ("kafka-brokers", "k:9092"),
            ("kafka-group-id", "g"),
            ("kafka-topics", "a,^b.*"),
            ("kafka-format", "otlp-json"),
            ("kafka-topic-formats", "a=prometheus-text"),
            ("kafka-librdkafka", "fetch.max.bytes=1000"),
            ("kafka-dlq-topic", "dlq"),
            ("kafka-workers-per-partition", "9"),
            ("kafka-queue-messages", "9"),
            ("kafka-queue-bytes", "9KiB"),
            ("kafka-batch-max-samples", "9"),
            ("kafka-batch-max-messages", "9"),
            ("kafka-batch-linger", "9s"),
            ("kafka-max-inflight-batches", "9"),
            ("kafka-commit-interval", "9s"),
            ("kafka-revoke-timeout", "9s"),
            ("query-lookback-delta", "9s"),
            ("query-default-subquery-step", "9s"),
            ("query-timeout", "9s"),
            ("query-max-samples", "9"),
            ("query-max-series", "9"),
            ("query-max-memory", "9MiB"),
            ("query-max-points-per-series", "9"),
            ("query-slow-query-threshold", "9s"),
            ("query-catalog-cache-ttl", "9s"),
            ("query-results-cache-bytes", "9KiB"),
            ("query-results-cache-freshness", "9s"),
            ("query-results-cache-sole-writer", "yes"),
            ("rules-files", "/etc/comet/rules/*.yml"),
            ("rules-evaluation-interval", "9s"),
            ("rules-alertmanagers", "http://am:9093"),
            ("rules-external-labels", "cluster=eu1,replica=a"),
            ("rules-external-url", "http://comet.example"),
            ("rules-resend-delay", "9s"),
            ("rules-notification-queue-capacity", "9"),
            ("rules-notification-timeout", "9s"),
            ("rules-notification-max-retries", "9"),
            ("rules-outage-tolerance", "9s"),
            ("rules-for-grace-period", "9s"),
        ];
        let flags: Vec<String> = Wrapper::command()
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .filter(|l| l != "config" && l != "help")
            .collect();
        for flag in &flags {
            let value = samples
                .iter()
                .find(|(f, _)| f == flag)
                .unwrap_or_else(|| panic!("add --{flag} to this test"))
                .1;
            let parsed = Wrapper::parse_from(["comet", &format!("--{flag}"), value]).args;
            let mut config = Config::default();
            config.overlay(&parsed);
            assert_ne!(
                config, defaults,
                "--{flag} does not change the configuration"
            );
        }
    }

    #[test]
    fn http_section() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        let hash = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";
        let digest = "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0";
        std::fs::write(
            &path,
            format!(
                "http:\n  tls_cert_file: /c.pem\n  tls_key_file: /k.pem\n  \
                 basic_auth_users:\n    alice: '{hash}'\n  bearer_tokens: ['{digest}']\n"
            ),
        )
        .unwrap();
        let config = Config::load(&args(&["--config", path.to_str().unwrap()])).unwrap();
        assert_eq!(config.http.basic_auth_users["alice"], hash);
        assert_eq!(config.http.bearer_tokens, [digest]);
        assert_eq!(
            config.http.tls_cert_file.as_deref(),
            Some(Path::new("/c.pem"))
        );
        // Flags replace the file's users and tokens.
        let config = Config::load(&args(&[
            "--config",
            path.to_str().unwrap(),
            "--http-basic-auth-users",
            &format!("bob:{hash},carol:{hash}"),
            "--http-bearer-tokens",
            &format!("{digest},{}", digest.to_uppercase()),
        ]))
        .unwrap();
        assert_eq!(
            config.http.basic_auth_users.keys().collect::<Vec<_>>(),
            ["bob", "carol"]
        );
        assert_eq!(config.http.bearer_tokens.len(), 2);

        let mut c = Config::default();
        c.http.tls_cert_file = Some("/c.pem".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("together"), "{err}");
        c.http.tls_cert_file = None;
        c.http.tls_client_ca_file = Some("/ca.pem".into());
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.http.bearer_tokens = vec!["plain-token".into()];
        let err = c.validate().unwrap_err().to_string();
        assert!(!err.contains("plain-token"), "{err}");
        let mut c = Config::default();
        c.http
            .basic_auth_users
            .insert("alice".into(), "plain".into());
        assert!(c.validate().is_err());
    }

    #[test]
    fn password_is_masked() {
        let mut c = Config::default();
        c.clickhouse.password = "s3cret".into();
        let yaml = c.to_yaml_masked().unwrap();
        assert!(!yaml.contains("s3cret"));
        assert!(yaml.contains("<hidden>"));
    }
}
