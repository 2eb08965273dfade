//! `comet bench query`: PromQL range-query latency of Comet side by side
//! with Prometheus and VictoriaMetrics, every system timed over HTTP.
//!
//! It generates a dashboard-shaped data set deterministically (request
//! counters with a few resets, a classic latency histogram, a memory gauge,
//! `up`) and loads the same samples into each system: through Comet's
//! ingest writer into a ClickHouse database of its own; with
//! `--prometheus`, into TSDB blocks that `promtool` builds from OpenMetrics
//! text; with `--victoria-metrics`, through VictoriaMetrics's Prometheus
//! text import. Comet's Prometheus API is served in process on a loopback
//! port with its results cache off; Prometheus and VictoriaMetrics run as
//! child processes on loopback ports over temporary data directories
//! (VictoriaMetrics with its response cache off).
//!
//! Each query is timed the same way on every system: `POST
//! /api/v1/query_range` until the last byte of the body, so JSON encoding
//! is included and parsing is not. Runs are interleaved (each run times
//! every query on Comet, Prometheus and VictoriaMetrics in turn), so load
//! on the machine affects all alike. The report gives p50/p95 per query
//! and system, the p50 ratios to Prometheus with their geometric mean,
//! whether the results agree (Comet with Prometheus, VictoriaMetrics with
//! Comet), each binary's version and the machine's cores, load and free
//! memory at start and end, as a text table and as Markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use comet_ingest::{IngestMetrics, Series, SeriesSamples, WriteBatch, Writer, WriterSettings};
use comet_query::api::{ApiSettings, CacheSettings};
use comet_query::engine::QueryRange;
use comet_query::value::format_labels;
use comet_schema::ddl::{SAMPLES, SERIES};
use comet_schema::migrate::{latest_version, migrate};
use comet_schema::{
    Labels, NameValidation, RetryPolicy, Sample, SchemaOptions, Store, StoreSettings, Topology,
};
use prometheus::Registry;
use serde::Deserialize;

use crate::bench_api::{cache_counts, serve_api};

fn duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// The ClickHouse a bench loads its data set into.
#[derive(Debug, Clone, Args)]
pub struct BenchClickHouseArgs {
    /// HTTP URL of the ClickHouse the data set is loaded into and queried
    /// from, e.g. the one `comet clickhouse` prints
    #[arg(
        long,
        env = "COMET_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123",
        value_name = "URL"
    )]
    pub clickhouse_url: String,
    /// ClickHouse user
    #[arg(
        long,
        env = "COMET_CLICKHOUSE_USER",
        default_value = "default",
        value_name = "USER"
    )]
    pub clickhouse_user: String,
    /// ClickHouse password; prefer the environment variable to the flag
    #[arg(
        long,
        env = "COMET_CLICKHOUSE_PASSWORD",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub clickhouse_password: String,
    /// Cluster name (from the servers' remote_servers): the data set goes
    /// into Replicated tables behind Distributed ones, as
    /// `comet serve --clickhouse-cluster` makes them
    #[arg(long, env = "COMET_CLICKHOUSE_CLUSTER", value_name = "NAME")]
    pub clickhouse_cluster: Option<String>,
}

impl BenchClickHouseArgs {
    /// The bench database's schema: no retention (the data may be old).
    pub(crate) fn schema(&self, database: &str) -> SchemaOptions {
        SchemaOptions {
            database: database.to_string(),
            retention: None,
            topology: match &self.clickhouse_cluster {
                Some(name) => Topology::Cluster { name: name.clone() },
                None => Topology::SingleNode,
            },
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct BenchQueryArgs {
    #[command(flatten)]
    pub clickhouse: BenchClickHouseArgs,
    /// Database for the data set; DROPPED and recreated at every run, so
    /// never name one holding data you want to keep
    #[arg(long, default_value = "comet_bench_query", value_name = "NAME")]
    pub database: String,
    /// Series in the data set, rounded up to whole targets of 21 series
    /// (6 request counters, 13 histogram series, a memory gauge and `up`)
    #[arg(long, default_value_t = 1000)]
    pub series: usize,
    /// Hours of data, ending at the current minute
    #[arg(long, default_value_t = 6)]
    pub hours: u32,
    /// Scrape interval of the data set
    #[arg(long, default_value = "15s", value_parser = duration, value_name = "DURATION")]
    pub scrape_interval: Duration,
    /// Time range of every range query, ending where the data ends
    #[arg(long, default_value = "2h", value_parser = duration, value_name = "DURATION")]
    pub range: Duration,
    /// Step of the range queries
    #[arg(long, default_value = "30s", value_parser = duration, value_name = "DURATION")]
    pub step: Duration,
    /// Timed runs of each query on each system; p50 and p95 are taken over
    /// these
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Untimed runs of each query on each system before the timed ones
    #[arg(long, default_value_t = 2)]
    pub warmups: usize,
    /// A PromQL query to time instead of the built-in dashboard set;
    /// repeat for several
    #[arg(long = "query", value_name = "PROMQL")]
    pub queries: Vec<String>,
    /// Prometheus binary (e.g. Prometheus 3.5 LTS): also load the data set
    /// into a Prometheus of its own and time the same queries there
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
    /// promtool binary that turns the data set into Prometheus blocks
    /// (2.x builds blocks 3.x reads) [default: the promtool beside
    /// --prometheus if there is one, else promtool on PATH]
    #[arg(long, value_name = "FILE")]
    pub promtool: Option<PathBuf>,
    /// VictoriaMetrics single-node binary (e.g. Debian's
    /// /usr/bin/victoria-metrics): also load the data set into a
    /// VictoriaMetrics of its own and time the same queries there
    #[arg(long, value_name = "FILE")]
    pub victoria_metrics: Option<PathBuf>,
    /// Directory for the OpenMetrics file and the other systems' data, kept
    /// afterwards [default: a temporary directory, removed at the end]
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

pub use crate::bench_queries::{AGGREGATING_PANELS, DASHBOARD_QUERIES, MORE_QUERIES};

// ---------------------------------------------------------------------------
// The data set

/// Series per target (one job/instance pair): 6 request counters, 13
/// histogram series, a memory gauge and `up`.
pub(crate) const SERIES_PER_TARGET: usize = 21;
const METHODS: [&str; 2] = ["GET", "POST"];
const STATUSES: [&str; 3] = ["200", "404", "500"];
/// Upper bounds of the latency histogram's buckets, before +Inf.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// A small deterministic generator (SplitMix64): the same arguments always
/// give the same data set.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly standard normal (Irwin-Hall of 4).
    fn normal(&mut self) -> f64 {
        (self.unit() + self.unit() + self.unit() + self.unit() - 2.0) * 3f64.sqrt()
    }
}

/// One generated series: labels (sorted by name, with `__name__`) and one
/// value per scrape, at its target's scrape times.
pub(crate) struct GenSeries {
    labels: Vec<(String, String)>,
    values: Vec<f64>,
    timestamps: Arc<[i64]>,
}

impl GenSeries {
    fn name(&self) -> &str {
        self.labels
            .iter()
            .find(|(n, _)| n == "__name__")
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The whole data set: every series has a value at every scrape.
pub(crate) struct Dataset {
    pub(crate) series: Vec<GenSeries>,
    /// The end of the data: every target's last scrape is shortly before.
    pub(crate) end_ms: i64,
    pub(crate) scrapes: usize,
}

impl Dataset {
    pub(crate) fn samples(&self) -> usize {
        self.series.len() * self.scrapes
    }

    /// `targets` targets scraped `scrapes` times `interval_ms` apart, the
    /// last scrapes shortly before `end_ms`. Like real scrapes, each target
    /// has its own phase within the interval and a few ms of jitter, so
    /// samples do not sit on the query grid or on range boundaries (where
    /// Prometheus 2.x's closed and 3.x's left-open ranges would differ).
    pub(crate) fn generate(targets: usize, scrapes: usize, interval_ms: i64, end_ms: i64) -> Self {
        let first_ms = end_ms - (scrapes as i64 - 1) * interval_ms;
        let interval_s = interval_ms as f64 / 1000.0;
        let labels = |pairs: &[(&str, &str)]| {
            let mut v: Vec<(String, String)> = pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            v.sort();
            v
        };
        let mut series = Vec::with_capacity(targets * SERIES_PER_TARGET);
        for t in 0..targets {
            let mut rng = Rng::new(0xc0ffee ^ (t as u64).wrapping_mul(0x1000_0001));
            let job = ["api", "web"][t % 2];
            let instance = format!("host-{t:04}:8080");
            let target_load = 0.5 + rng.unit();
            let phase_ms = interval_ms / 10 + (rng.unit() * 0.8 * interval_ms as f64) as i64;
            let timestamps: Arc<[i64]> = (0..scrapes)
                .map(|k| {
                    let jitter = (rng.unit() * 30.0) as i64;
                    first_ms + k as i64 * interval_ms - phase_ms - jitter
                })
                .collect();
            // A few targets restart once: every counter of theirs resets.
            let restart_at = (t % 10 == 1).then(|| scrapes / 3 + (t * 97) % (scrapes / 3).max(1));

            for method in METHODS {
                for status in STATUSES {
                    let per_second = match status {
                        "200" => 20.0,
                        "404" => 1.0,
                        _ => 0.2,
                    } * if method == "GET" { 1.0 } else { 0.4 }
                        * target_load;
                    let mut value = (rng.unit() * 1e5).round();
                    let mut values = Vec::with_capacity(scrapes);
                    for k in 0..scrapes {
                        if Some(k) == restart_at {
                            value = 0.0;
                        }
                        value += (per_second * interval_s * (0.5 + rng.unit())).round();
                        values.push(value);
                    }
                    series.push(GenSeries {
                        timestamps: Arc::clone(&timestamps),
                        labels: labels(&[
                            ("__name__", "http_requests_total"),
                            ("instance", &instance),
                            ("job", job),
                            ("method", method),
                            ("status", status),
                        ]),
                        values,
                    });
                }
            }

            // The latency histogram: cumulative buckets (one row of counts
            // per scrape), sum and count.
            let mut scraped: Vec<[f64; BUCKETS.len() + 1]> = Vec::with_capacity(scrapes);
            let mut sums = Vec::with_capacity(scrapes);
            let mut counts = [0.0; BUCKETS.len() + 1];
            let mut sum = 0.0;
            let median = 0.06 * (0.7 + 0.6 * rng.unit());
            for k in 0..scrapes {
                if Some(k) == restart_at {
                    counts = [0.0; BUCKETS.len() + 1];
                    sum = 0.0;
                }
                // Latency drifts with a 90-minute cycle.
                let phase = (k as f64 * interval_s / 5400.0) * std::f64::consts::TAU;
                let mu = median.ln() + 0.4 * (phase + t as f64).sin();
                let observations = (target_load * interval_s * (2.0 + 2.0 * rng.unit())) as usize;
                for _ in 0..observations {
                    let latency = (mu + 0.9 * rng.normal()).exp();
                    let bucket = BUCKETS
                        .iter()
                        .position(|le| latency <= *le)
                        .unwrap_or(BUCKETS.len());
                    for c in &mut counts[bucket..] {
                        *c += 1.0;
                    }
                    sum += latency;
                }
                scraped.push(counts);
                sums.push(sum);
            }
            let base = [
                ("instance", instance.as_str()),
                ("job", job),
                ("__name__", "http_request_duration_seconds_bucket"),
            ];
            let bucket = |b: usize| -> Vec<f64> { scraped.iter().map(|row| row[b]).collect() };
            for b in 0..=BUCKETS.len() {
                let le = BUCKETS
                    .get(b)
                    .map_or("+Inf".to_string(), |le| le.to_string());
                let mut pairs = base.to_vec();
                pairs.push(("le", &le));
                series.push(GenSeries {
                    timestamps: Arc::clone(&timestamps),
                    labels: labels(&pairs),
                    values: bucket(b),
                });
            }
            let count = bucket(BUCKETS.len());
            for (name, values) in [
                ("http_request_duration_seconds_sum", sums),
                ("http_request_duration_seconds_count", count),
            ] {
                let mut pairs = base.to_vec();
                pairs[2] = ("__name__", name);
                series.push(GenSeries {
                    timestamps: Arc::clone(&timestamps),
                    labels: labels(&pairs),
                    values,
                });
            }

            // Free memory: a level per host, an hourly wave and noise.
            let level = (4.0 + 8.0 * rng.unit()) * (1u64 << 30) as f64;
            let offset = rng.unit() * std::f64::consts::TAU;
            let values = (0..scrapes)
                .map(|k| {
                    let phase = (k as f64 * interval_s / 3600.0) * std::f64::consts::TAU;
                    let v = level * (1.0 + 0.1 * (phase + offset).sin() + 0.01 * rng.normal());
                    (v / 4096.0).round() * 4096.0
                })
                .collect();
            series.push(GenSeries {
                timestamps: Arc::clone(&timestamps),
                labels: labels(&[
                    ("__name__", "node_memory_free_bytes"),
                    ("instance", &instance),
                    ("job", "node"),
                ]),
                values,
            });

            // The target was up at every scrape.
            series.push(GenSeries {
                timestamps: Arc::clone(&timestamps),
                labels: labels(&[("__name__", "up"), ("instance", &instance), ("job", job)]),
                values: vec![1.0; scrapes],
            });
        }
        debug_assert_eq!(series.len(), targets * SERIES_PER_TARGET);
        Self {
            series,
            end_ms,
            scrapes,
        }
    }

    /// The data set as OpenMetrics text (what `promtool tsdb
    /// create-blocks-from openmetrics` reads): one family after another,
    /// each series' samples in time order.
    fn write_openmetrics(&self, path: &Path) -> anyhow::Result<()> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        for family in FAMILIES {
            writeln!(out, "# TYPE {} {}", family.name, family.kind)?;
            for s in self.series.iter().filter(|s| (family.member)(s.name())) {
                s.write_text(TextFormat::OpenMetrics, &mut out)?;
            }
        }
        writeln!(out, "# EOF")?;
        out.flush()?;
        Ok(())
    }
}

/// A metric family of the data set: its name, type, and which series
/// belong to it.
struct Family {
    name: &'static str,
    kind: &'static str,
    member: fn(&str) -> bool,
}

const FAMILIES: [Family; 4] = [
    Family {
        name: "http_requests",
        kind: "counter",
        member: |n| n == "http_requests_total",
    },
    Family {
        name: "http_request_duration_seconds",
        kind: "histogram",
        member: |n| n.starts_with("http_request_duration_seconds_"),
    },
    Family {
        name: "node_memory_free_bytes",
        kind: "gauge",
        member: |n| n == "node_memory_free_bytes",
    },
    Family {
        name: "up",
        kind: "gauge",
        member: |n| n == "up",
    },
];

/// How sample lines carry their timestamps.
#[derive(Clone, Copy)]
enum TextFormat {
    /// Seconds with a fraction (OpenMetrics, for promtool).
    OpenMetrics,
    /// Integer milliseconds (the Prometheus text format, for
    /// VictoriaMetrics's import).
    Prometheus,
}

impl GenSeries {
    /// One line per sample: `name{labels} value timestamp`.
    fn write_text(&self, format: TextFormat, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let mut head = self.name().to_string();
        head.push('{');
        let mut first = true;
        for (n, v) in self.labels.iter().filter(|(n, _)| n != "__name__") {
            if !first {
                head.push(',');
            }
            first = false;
            let _ = write!(head, "{n}=\"{}\"", escape_label_value(v));
        }
        head.push('}');
        for (v, t) in self.values.iter().zip(self.timestamps.iter()) {
            match format {
                TextFormat::OpenMetrics => {
                    writeln!(out, "{head} {v} {}.{:03}", t / 1000, t % 1000)?
                }
                TextFormat::Prometheus => writeln!(out, "{head} {v} {t}")?,
            }
        }
        Ok(())
    }
}

fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

// ---------------------------------------------------------------------------
// Comet: load

/// Settings for the bench's own database on the given ClickHouse.
pub(crate) fn store_settings(args: &BenchClickHouseArgs, database: &str) -> StoreSettings {
    let url = args.clickhouse_url.trim_end_matches('/').to_string();
    // Like the managed server: no wire compression over loopback.
    let loopback = ["://127.0.0.1", "://localhost", "://[::1]"]
        .iter()
        .any(|h| url.contains(h));
    StoreSettings {
        compression: !loopback,
        url,
        user: args.clickhouse_user.clone(),
        password: args.clickhouse_password.clone(),
        database: database.to_string(),
        tls_ca_file: None,
        connect_timeout: Duration::from_secs(5),
        query_timeout: Duration::from_secs(120),
        retry: RetryPolicy::default(),
        // Set once connected: `Store::for_topology`.
        topology_settings: Vec::new(),
    }
}

/// The bench's store on its ClickHouse, once it answers, with the settings
/// its topology needs.
pub(crate) async fn connect(args: &BenchClickHouseArgs, database: &str) -> anyhow::Result<Store> {
    let store = Store::new(store_settings(args, database))?;
    store
        .wait_until_reachable(Duration::from_secs(30))
        .await
        .with_context(|| format!("ClickHouse at {} is not reachable; start one with `comet clickhouse` and pass its URL as --clickhouse-url", args.clickhouse_url))?;
    Ok(store.for_topology(&args.schema(database), "auto").await?)
}

/// Drops and recreates the database, loads the data set through the
/// writer, and merges the tables to their settled state.
pub(crate) async fn load_comet(
    store: &Store,
    options: &SchemaOptions,
    dataset: &Dataset,
) -> anyhow::Result<()> {
    store.execute(&options.drop_database()).await?;
    migrate(store, options, latest_version())
        .await
        .context("schema migration failed")?;

    let writer = Writer::start(
        store.clone(),
        WriterSettings::default(),
        IngestMetrics::unregistered(),
    );
    let mut tasks = tokio::task::JoinSet::new();
    // Batches of whole series, ~100k samples each.
    let per_batch = (100_000 / dataset.scrapes.max(1)).max(1);
    for chunk in dataset.series.chunks(per_batch) {
        let mut batch = WriteBatch::default();
        for s in chunk {
            let labels = Labels::new(s.labels.iter().cloned(), NameValidation::Legacy)
                .context("generated labels")?;
            let samples = s
                .values
                .iter()
                .zip(s.timestamps.iter())
                .map(|(v, t)| Sample {
                    timestamp_ms: *t,
                    value: *v,
                })
                .collect();
            batch
                .series
                .push(SeriesSamples::new(Arc::new(Series::new(labels)), samples));
        }
        let writer = writer.clone();
        tasks.spawn(async move { writer.write(batch, "bench").await });
    }
    while let Some(result) = tasks.join_next().await {
        result.context("writer task")??;
    }
    writer.shutdown().await;
    for table in [&SERIES, &SAMPLES] {
        store.execute(&options.optimize_final(table)).await?;
    }
    #[derive(clickhouse::Row, Deserialize)]
    struct Count {
        n: u64,
    }
    let stored: Count = store
        .fetch_one(
            store.client().query("SELECT count() AS n FROM samples"),
            "count samples",
        )
        .await?;
    if stored.n != dataset.samples() as u64 {
        bail!(
            "ClickHouse holds {} samples, {} were written",
            stored.n,
            dataset.samples()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Timing over HTTP

/// A query's result, comparable across systems: series by label set, each
/// with its points (ms, value).
type SeriesSet = BTreeMap<Vec<(String, String)>, Vec<(i64, f64)>>;

/// Timings of one query on one system, and its result or why it failed.
struct Measured {
    latencies: Vec<Duration>,
    result: Result<SeriesSet, String>,
}

impl Measured {
    fn percentile(&self, p: f64) -> Option<Duration> {
        percentile(&self.latencies, p)
    }
}

/// The `p` quantile (0..=1) of `latencies` by rank.
pub(crate) fn percentile(latencies: &[Duration], p: f64) -> Option<Duration> {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).copied()
}

fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// One range query as Grafana sends it (POST, form-encoded), answered once
/// the body's last byte is in: the raw body, parsed outside the timing.
async fn range_query(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    range: QueryRange,
) -> Result<bytes::Bytes, String> {
    let params = [
        ("query", query.to_string()),
        ("start", seconds(range.start_ms)),
        ("end", seconds(range.end_ms)),
        ("step", seconds(range.step_ms)),
    ];
    let response = client
        .post(format!("{base}/api/v1/query_range"))
        .form(&params)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(match parse_result(&body) {
            Err(e) => format!("{status}: {e}"),
            Ok(_) => status.to_string(),
        });
    }
    Ok(body)
}

/// An instant query, for checks outside the timing.
async fn instant_query(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    time_ms: i64,
) -> anyhow::Result<SeriesSet> {
    let params = [("query", query.to_string()), ("time", seconds(time_ms))];
    let body = client
        .post(format!("{base}/api/v1/query"))
        .form(&params)
        .send()
        .await?
        .bytes()
        .await?;
    parse_result(&body).map_err(|e| anyhow::anyhow!("{query}: {e}"))
}

#[derive(Deserialize)]
struct PromResponse {
    status: String,
    #[serde(default)]
    data: Option<PromData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum PromData {
    Matrix(Vec<PromSeries>),
    Vector(Vec<PromSample>),
    Scalar((f64, String)),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct PromSeries {
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

#[derive(Deserialize)]
struct PromSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

fn prom_point((t, v): &(f64, String)) -> (i64, f64) {
    ((t * 1000.0).round() as i64, v.parse().unwrap_or(f64::NAN))
}

/// A Prometheus API answer (all three systems speak it) as a series set.
fn parse_result(body: &[u8]) -> Result<SeriesSet, String> {
    let response: PromResponse =
        serde_json::from_slice(body).map_err(|e| format!("unreadable answer: {e}"))?;
    if response.status != "success" {
        return Err(response.error.unwrap_or(response.status));
    }
    let mut out = SeriesSet::new();
    match response.data {
        Some(PromData::Matrix(series)) => {
            for s in series {
                out.insert(
                    s.metric.into_iter().collect(),
                    s.values.iter().map(prom_point).collect(),
                );
            }
        }
        Some(PromData::Vector(samples)) => {
            for s in samples {
                out.insert(s.metric.into_iter().collect(), vec![prom_point(&s.value)]);
            }
        }
        Some(PromData::Scalar(p)) => {
            out.insert(Vec::new(), vec![prom_point(&p)]);
        }
        Some(PromData::String(_)) | None => {}
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Prometheus and VictoriaMetrics

/// A system under test running as a child process, killed when dropped.
struct Server {
    name: &'static str,
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `program` listening on `port`, its output going to
    /// `dir/<name>.log`.
    fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        port: u16,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let log = dir.join(format!("{}.log", name.to_lowercase()));
        let out = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot run {}", program.display()))?;
        Ok(Self {
            name,
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        })
    }

    /// Waits until `path` answers 2xx; fails early if the process exits.
    async fn wait_ready(&mut self, client: &reqwest::Client, path: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before it was ready:\n{}",
                    self.name,
                    tail(&self.log, 20)
                );
            }
            if let Ok(r) = client.get(format!("{}{path}", self.url)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after 120s:\n{}",
                    self.name,
                    tail(&self.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("no free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The first line `program --version` prints (on stdout or stderr); for a
/// build that prints none (Debian's VictoriaMetrics), its Debian package's
/// version.
fn version_of(program: &Path) -> String {
    let first_line = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
    };
    Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| first_line(&o.stdout).or_else(|| first_line(&o.stderr)))
        .or_else(|| {
            debian_package_version(program).map(|v| format!("{v} (--version printed nothing)"))
        })
        .unwrap_or_else(|| "unknown version".into())
}

fn debian_package_version(program: &Path) -> Option<String> {
    let path = std::fs::canonicalize(program).ok()?;
    let owner = Command::new("dpkg-query")
        .arg("-S")
        .arg(&path)
        .output()
        .ok()?;
    let owner = String::from_utf8_lossy(&owner.stdout);
    let package = owner.split(':').next()?.trim();
    if package.is_empty() {
        return None;
    }
    let version = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    (!version.is_empty()).then(|| format!("Debian package {package} {version}"))
}

/// The promtool beside `prometheus` if there is one, else `promtool` on
/// PATH (the Prometheus 3 package has none; a 2.x promtool builds blocks
/// 3.x reads).
fn default_promtool(prometheus: &Path) -> PathBuf {
    let beside = prometheus.with_file_name("promtool");
    if beside.is_file() {
        beside
    } else {
        PathBuf::from("promtool")
    }
}

/// Builds blocks of the data set with promtool in `dir/data` and starts
/// Prometheus on them.
async fn start_prometheus(
    dataset: &Dataset,
    prometheus: &Path,
    promtool: &Path,
    dir: &Path,
    client: &reqwest::Client,
) -> anyhow::Result<Server> {
    let started = Instant::now();
    let openmetrics = dir.join("dataset.om");
    dataset.write_openmetrics(&openmetrics)?;
    let data = dir.join("data");
    let output = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&openmetrics)
        .arg(&data)
        .output()
        .with_context(|| format!("cannot run {}", promtool.display()))?;
    if !output.status.success() {
        bail!(
            "promtool could not build blocks: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    eprintln!(
        "bench: promtool built Prometheus blocks in {:.1?}",
        started.elapsed()
    );
    let _ = std::fs::remove_file(&openmetrics);

    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
    )
    .with_context(|| format!("cannot write {}", config.display()))?;
    let port = free_port()?;
    let args = [
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", data.display()),
        "--storage.tsdb.retention.time=100y".to_string(),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    let mut server = Server::spawn("Prometheus", prometheus, &args, port, dir)?;
    server.wait_ready(client, "/-/ready").await?;
    Ok(server)
}

/// Starts VictoriaMetrics over `dir/data`, imports the data set and waits
/// until every sample is searchable.
async fn start_victoria_metrics(
    dataset: &Dataset,
    binary: &Path,
    dir: &Path,
    client: &reqwest::Client,
) -> anyhow::Result<Server> {
    let started = Instant::now();
    let port = free_port()?;
    let args = [
        format!("-storageDataPath={}", dir.join("data").display()),
        format!("-httpListenAddr=127.0.0.1:{port}"),
        "-retentionPeriod=100y".to_string(),
        // No response cache, no hiding of the newest 30 s, no dedup: it
        // computes every answer from all samples, as the others do.
        "-search.disableCache".to_string(),
        "-search.latencyOffset=0s".to_string(),
        "-dedup.minScrapeInterval=0".to_string(),
    ];
    let mut server = Server::spawn("VictoriaMetrics", binary, &args, port, dir)?;
    server.wait_ready(client, "/health").await?;

    // The Prometheus text format with ms timestamps, ~8 MiB per request.
    const CHUNK: usize = 8 << 20;
    let import = format!("{}/api/v1/import/prometheus", server.url);
    let mut chunk = Vec::with_capacity(CHUNK + (1 << 20));
    for (i, s) in dataset.series.iter().enumerate() {
        s.write_text(TextFormat::Prometheus, &mut chunk)?;
        if chunk.len() >= CHUNK || i + 1 == dataset.series.len() {
            let response = client
                .post(&import)
                .body(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
                .send()
                .await
                .context("VictoriaMetrics import")?;
            let status = response.status();
            if !status.is_success() {
                let text = response.text().await.unwrap_or_default();
                bail!("VictoriaMetrics import: {status}: {}", one_line(&text));
            }
        }
    }

    // Imported rows become searchable asynchronously: flush, then count
    // the samples until all are there.
    let earliest = dataset
        .series
        .iter()
        .filter_map(|s| s.timestamps.first())
        .min()
        .copied()
        .unwrap_or(dataset.end_ms);
    let window_s = (dataset.end_ms - earliest) / 1000 + 60;
    let count = format!("sum(count_over_time({{__name__=~\".+\"}}[{window_s}s]))");
    let expected = dataset.samples() as f64;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = 0.0;
    loop {
        client
            .get(format!("{}/internal/force_flush", server.url))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("VictoriaMetrics force_flush")?;
        let result = instant_query(client, &server.url, &count, dataset.end_ms)
            .await
            .context("VictoriaMetrics sample count")?;
        if let Some((_, v)) = result.values().next().and_then(|points| points.first()) {
            seen = *v;
        }
        if seen == expected {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "VictoriaMetrics shows {seen} of {expected} samples after 120s:\n{}",
                tail(&server.log, 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "bench: loaded into VictoriaMetrics in {:.1?}",
        started.elapsed()
    );
    Ok(server)
}
/// Whether two results agree: a short verdict for the table and, when they
/// differ, where first or most.
struct Agreement {
    verdict: String,
    detail: Option<String>,
}

/// The result with `__name__` removed from every label set.
fn without_name(set: &SeriesSet) -> SeriesSet {
    set.iter()
        .map(|(labels, points)| {
            let labels = labels.iter().filter(|(n, _)| n != "__name__").cloned();
            (labels.collect(), points.clone())
        })
        .collect()
}

/// Compares two systems' results (`names` says whose): same series, same
/// timestamps, values equal to a relative 1e-6 (ClickHouse and Go may add
/// in different orders). Times in the detail are relative to `end_ms`, the
/// end of the query range.
fn agreement(a: &SeriesSet, b: &SeriesSet, names: [&str; 2], end_ms: i64) -> Agreement {
    let [name_a, name_b] = names;
    let at = |t: i64| {
        let before = Duration::from_millis((end_ms - t).max(0) as u64);
        format!("end-{}", humantime::format_duration(before))
    };
    let only_a: Vec<_> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let only_b: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    if !only_a.is_empty() || !only_b.is_empty() {
        // VictoriaMetrics keeps the metric name where PromQL drops it:
        // compare the values all the same when that is the only difference.
        let (unnamed_a, unnamed_b) = (without_name(a), without_name(b));
        if unnamed_a.len() == a.len()
            && unnamed_b.len() == b.len()
            && unnamed_a.keys().eq(unnamed_b.keys())
        {
            let values = agreement(&unnamed_a, &unnamed_b, names, end_ms);
            let named = if only_a
                .iter()
                .any(|l| l.iter().any(|(n, _)| n == "__name__"))
            {
                name_a
            } else {
                name_b
            };
            return Agreement {
                verdict: format!("{}; __name__ only in {named}", values.verdict),
                detail: values.detail,
            };
        }
        let mut detail = Vec::new();
        if let Some(l) = only_a.first() {
            detail.push(format!("only in {name_a}: {}", format_labels(l)));
        }
        if let Some(l) = only_b.first() {
            detail.push(format!("only in {name_b}: {}", format_labels(l)));
        }
        return Agreement {
            verdict: format!(
                "DIFF: series ({} only in {name_a}, {} only in {name_b})",
                only_a.len(),
                only_b.len()
            ),
            detail: Some(detail.join("; ")),
        };
    }
    let mut points = 0;
    let mut worst: Option<(f64, String)> = None;
    for (labels, xs) in a {
        let Some(ys) = b.get(labels) else { continue };
        if xs.iter().map(|p| p.0).ne(ys.iter().map(|p| p.0)) {
            let span = |s: &[(i64, f64)]| match (s.first(), s.last()) {
                (Some(f), Some(l)) => format!("{} points {} .. {}", s.len(), at(f.0), at(l.0)),
                _ => "no points".to_string(),
            };
            return Agreement {
                verdict: "DIFF: timestamps".into(),
                detail: Some(format!(
                    "{}: {name_a} {}, {name_b} {}",
                    format_labels(labels),
                    span(xs),
                    span(ys)
                )),
            };
        }
        for ((t, x), (_, y)) in xs.iter().zip(ys) {
            points += 1;
            if x.is_nan() && y.is_nan() || x == y {
                continue;
            }
            let rel = (x - y).abs() / x.abs().max(y.abs());
            let rel = if rel.is_nan() { f64::INFINITY } else { rel };
            if worst.as_ref().is_none_or(|(w, _)| rel > *w) {
                let where_ = format!(
                    "{} at {}: {name_a} {x}, {name_b} {y}",
                    format_labels(labels),
                    at(*t)
                );
                worst = Some((rel, where_));
            }
        }
    }
    match worst {
        Some((rel, where_)) if rel > 1e-6 => Agreement {
            verdict: format!("DIFF: values (max relative difference {rel:.2e})"),
            detail: Some(format!("largest difference: {where_}")),
        },
        _ => Agreement {
            verdict: format!("same ({points} points)"),
            detail: None,
        },
    }
}

// ---------------------------------------------------------------------------
// The run

/// A system whose queries are timed.
struct System {
    name: &'static str,
    url: String,
    version: String,
}

pub async fn run(args: BenchQueryArgs) -> anyhow::Result<()> {
    if args.series == 0 || args.hours == 0 || args.runs == 0 {
        bail!("--series, --hours and --runs must be at least 1");
    }
    let interval_ms = args.scrape_interval.as_millis() as i64;
    let step_ms = args.step.as_millis() as i64;
    if interval_ms == 0 || step_ms == 0 || args.range.is_zero() {
        bail!("--scrape-interval, --step and --range must be longer than 0");
    }
    let queries: Vec<String> = if args.queries.is_empty() {
        DASHBOARD_QUERIES
            .iter()
            .chain(&MORE_QUERIES)
            .map(|q| q.to_string())
            .collect()
    } else {
        args.queries.clone()
    };
    let promtool = args
        .prometheus
        .as_ref()
        .map(|p| args.promtool.clone().unwrap_or_else(|| default_promtool(p)));

    // The data set, ending at the current minute.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let last_ms = now_ms / 60_000 * 60_000;
    let targets = args.series.div_ceil(SERIES_PER_TARGET);
    let scrapes = (u64::from(args.hours) * 3_600_000 / interval_ms as u64) as usize;
    let started = Instant::now();
    let dataset = Dataset::generate(targets, scrapes.max(1), interval_ms, last_ms);
    eprintln!(
        "bench: generated {} series x {} scrapes = {} samples in {:.1?}",
        dataset.series.len(),
        dataset.scrapes,
        dataset.samples(),
        started.elapsed()
    );
    let range = QueryRange {
        start_ms: dataset.end_ms - args.range.as_millis() as i64,
        end_ms: dataset.end_ms,
        step_ms,
    };

    let store = connect(&args.clickhouse, &args.database).await?;
    let clickhouse_version = store.server_version().await?;
    let started = Instant::now();
    load_comet(&store, &args.clickhouse.schema(&args.database), &dataset).await?;
    eprintln!(
        "bench: loaded into ClickHouse {clickhouse_version} (database {}) in {:.1?}",
        args.database,
        started.elapsed()
    );

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    // Comet's API in process, over loopback HTTP like the others. Its
    // results cache would answer repeated runs from memory: off, so every
    // run plans and queries ClickHouse.
    let registry = Registry::new();
    let settings = ApiSettings {
        cache: CacheSettings {
            results_max_bytes: 0,
            // No step is ever old enough to be cached.
            results_freshness: Duration::from_secs(100 * 365 * 86_400),
            ..CacheSettings::default()
        },
        ..ApiSettings::default()
    };
    let (comet_url, comet_server) = serve_api(store.clone(), settings, &registry).await?;
    let build = if cfg!(debug_assertions) {
        "debug build, timings not representative"
    } else {
        "release build"
    };
    let mut systems = vec![System {
        name: "Comet",
        url: comet_url,
        version: format!(
            "comet {} ({build}) on ClickHouse {clickhouse_version}",
            env!("CARGO_PKG_VERSION")
        ),
    }];

    // Declared before the servers, so dropped after them: each server
    // stops before its directory goes.
    let work_dir = if args.prometheus.is_some() || args.victoria_metrics.is_some() {
        Some(WorkDir::new(args.work_dir.as_deref(), now_ms)?)
    } else {
        None
    };
    let mut servers = Vec::new();
    let mut prometheus = None;
    if let (Some(binary), Some(promtool), Some(work_dir)) = (&args.prometheus, &promtool, &work_dir)
    {
        let dir = work_dir.fresh("prometheus")?;
        let server = start_prometheus(&dataset, binary, promtool, &dir, &client).await?;
        prometheus = Some(systems.len());
        systems.push(System {
            name: "Prometheus",
            url: server.url.clone(),
            version: format!(
                "{}; blocks built by {}",
                version_of(binary),
                version_of(promtool)
            ),
        });
        servers.push(server);
    }
    let mut victoria = None;
    if let (Some(binary), Some(work_dir)) = (&args.victoria_metrics, &work_dir) {
        let dir = work_dir.fresh("victoria-metrics")?;
        let server = start_victoria_metrics(&dataset, binary, &dir, &client).await?;
        victoria = Some(systems.len());
        systems.push(System {
            name: "VictoriaMetrics",
            url: server.url.clone(),
            version: version_of(binary),
        });
        servers.push(server);
    }

    // Interleaved: each run times every query on every system in turn, so
    // a busy moment of the machine costs all of them alike.
    let machine_start = machine_state();
    let timing_started = SystemTime::now();
    let cells = queries.len() * systems.len();
    let mut latencies: Vec<Vec<Duration>> = vec![Vec::with_capacity(args.runs); cells];
    let mut last: Vec<Result<bytes::Bytes, String>> = vec![Err("no run".to_string()); cells];
    for run in 0..args.warmups + args.runs {
        if run < args.warmups {
            eprintln!("bench: warm-up {}/{}", run + 1, args.warmups);
        } else {
            eprintln!("bench: run {}/{}", run - args.warmups + 1, args.runs);
        }
        for (q, query) in queries.iter().enumerate() {
            for (s, system) in systems.iter().enumerate() {
                let cell = q * systems.len() + s;
                // A query that failed fails every time: asked once.
                if run > 0 && last[cell].is_err() {
                    continue;
                }
                let started = Instant::now();
                let result = range_query(&client, &system.url, query, range).await;
                let took = started.elapsed();
                if run >= args.warmups && result.is_ok() {
                    latencies[cell].push(took);
                }
                last[cell] = result;
            }
        }
    }
    let machine_end = machine_state();
    let peak_memory = peak_memory_by_query(&store, &args.database, &queries, timing_started).await;
    comet_server.abort();
    drop(servers);
    let (cache_hits, cache_partial, cache_misses) = cache_counts(&registry);

    // Parsed outside the timing; results[query][system].
    let mut measured = latencies
        .into_iter()
        .zip(last)
        .map(|(latencies, body)| Measured {
            latencies,
            result: body.and_then(|b| parse_result(&b)),
        });
    let results: Vec<Vec<Measured>> = queries
        .iter()
        .map(|_| measured.by_ref().take(systems.len()).collect())
        .collect();

    // The report.
    let points = (range.end_ms - range.start_ms) / step_ms + 1;
    let summary = format!(
        "{} series ({targets} targets) x {} h at a {} scrape interval = {} samples; range queries over the last {} at a {} step ({points} points per series); p50/p95 of {} interleaved runs after {} warm-up runs, each a POST /api/v1/query_range over loopback HTTP timed to the last byte of the body",
        dataset.series.len(),
        args.hours,
        humantime::format_duration(args.scrape_interval),
        dataset.samples(),
        humantime::format_duration(args.range),
        humantime::format_duration(args.step),
        args.runs,
        args.warmups
    );
    let mut context = vec![
        format!("machine at start: {machine_start}"),
        format!("machine at end:   {machine_end}"),
    ];
    for system in &systems {
        context.push(format!("{}: {}", system.name, system.version));
    }
    context.push(format!(
        "Comet's results cache (off): {cache_hits} hits, {cache_partial} partial hits, {cache_misses} misses"
    ));
    if peak_memory.is_none() {
        context.push(
            "ClickHouse's peak memory per query: unknown (its system.query_log is off)".into(),
        );
    }
    let table = report_table(
        &queries,
        &systems,
        &results,
        peak_memory.as_deref(),
        prometheus,
        victoria,
        range.end_ms,
    );

    println!();
    println!("comet bench query: {summary}");
    for line in &context {
        println!("{line}");
    }
    println!();
    print!("{}", table.text());
    let notes = notes(&results, &systems, prometheus, victoria, range.end_ms);
    if !notes.is_empty() {
        println!();
        for line in &notes {
            println!("{line}");
        }
    }
    println!();
    println!("Markdown:");
    println!();
    println!("{summary}.");
    println!();
    for line in &context {
        println!("- {line}");
    }
    println!();
    print!("{}", table.markdown());
    if !notes.is_empty() {
        println!();
        for line in &notes {
            println!("- {line}");
        }
    }
    Ok(())
}

/// The most memory ClickHouse used for any timed statement of each query
/// (bytes, from `system.query_log`, where Comet's statements carry their
/// PromQL as `log_comment`); None when the server keeps no query log.
pub(crate) async fn peak_memory_by_query(
    store: &Store,
    database: &str,
    queries: &[String],
    since: SystemTime,
) -> Option<Vec<Option<u64>>> {
    #[derive(clickhouse::Row, Deserialize)]
    struct Peak {
        promql: String,
        bytes: u64,
    }
    let client = store.client();
    client.query("SYSTEM FLUSH LOGS").execute().await.ok()?;
    let since = since.duration_since(UNIX_EPOCH).ok()?.as_secs();
    let peaks = client
        .query(
            "SELECT log_comment AS promql, max(memory_usage) AS bytes FROM system.query_log \
             WHERE type = 'QueryFinish' AND event_time >= toDateTime(?) \
               AND current_database = ? AND log_comment IN ? \
             GROUP BY log_comment",
        )
        .bind(since)
        .bind(database)
        .bind(queries)
        .fetch_all::<Peak>()
        .await
        .ok()?;
    Some(
        queries
            .iter()
            .map(|q| peaks.iter().find(|p| &p.promql == q).map(|p| p.bytes))
            .collect(),
    )
}

/// Bytes as MiB with one decimal, as the reports print peak memory.
pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / f64::from(1 << 20))
}

/// Cores, load average and available memory, from /proc where there is
/// one.
fn machine_state() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into());
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or("unknown".into(), |kib| {
            format!("{:.1} GiB", kib as f64 / f64::from(1 << 20))
        });
    format!("{cores} cores, load average {load}, MemAvailable {available}")
}

/// The geometric mean of `ratios`, or None without any.
fn geometric_mean(ratios: &[f64]) -> Option<f64> {
    (!ratios.is_empty())
        .then(|| (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp())
}

/// p50 of `a` over p50 of `b`, when both answered.
fn p50_ratio(a: &Measured, b: &Measured) -> Option<f64> {
    if a.result.is_err() || b.result.is_err() {
        return None;
    }
    let (a, b) = (a.percentile(0.5)?, b.percentile(0.5)?);
    (!b.is_zero()).then(|| a.as_secs_f64() / b.as_secs_f64())
}

/// Errors and where results differ, one line each, by query number.
fn notes(
    results: &[Vec<Measured>],
    systems: &[System],
    prometheus: Option<usize>,
    victoria: Option<usize>,
    end_ms: i64,
) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, row) in results.iter().enumerate() {
        for (system, m) in systems.iter().zip(row) {
            if let Err(e) = &m.result {
                lines.push(format!("#{} {} error: {}", i + 1, system.name, one_line(e)));
            }
        }
        for (a, b) in [(Some(0), prometheus), (victoria, Some(0))] {
            if let (Some(a), Some(b)) = (a, b)
                && let (Ok(x), Ok(y)) = (&row[a].result, &row[b].result)
                && let Some(detail) =
                    agreement(x, y, [systems[a].name, systems[b].name], end_ms).detail
            {
                lines.push(format!("#{} {}", i + 1, one_line(&detail)));
            }
        }
    }
    lines
}

/// The results table: per system p50, p95 and series; the p50 ratios to
/// Prometheus with their geometric mean; whether results agree; the query.
fn report_table(
    queries: &[String],
    systems: &[System],
    results: &[Vec<Measured>],
    peak_memory: Option<&[Option<u64>]>,
    prometheus: Option<usize>,
    victoria: Option<usize>,
    end_ms: i64,
) -> Table {
    let ms = |d: Option<Duration>| {
        d.map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64() * 1e3))
    };
    let short = |name: &'static str| {
        if name == "VictoriaMetrics" {
            "VM"
        } else {
            name
        }
    };
    let mut table = Table::default();
    table.column("#", true);
    for (s, system) in systems.iter().enumerate() {
        table.column(&format!("{} p50 ms", short(system.name)), false);
        table.column("p95 ms", false);
        table.column("series", false);
        if s == 0 && peak_memory.is_some() {
            table.column("CH peak MiB", false);
        }
    }
    // Ratios to Prometheus: (numerator, column); agreement: (a, b, column).
    let mut ratios = Vec::new();
    let mut comparisons = Vec::new();
    if let Some(p) = prometheus {
        ratios.push((0, "Comet/Prom p50".to_string()));
        comparisons.push((0, p, "Comet vs Prometheus".to_string()));
        if let Some(v) = victoria {
            ratios.push((v, "VM/Prom p50".to_string()));
        }
    }
    if let Some(v) = victoria {
        comparisons.push((v, 0, format!("{} vs Comet", short(systems[v].name))));
    }
    for (_, column) in &ratios {
        table.column(column, false);
    }
    for (_, _, column) in &comparisons {
        table.column(column, true);
    }
    table.column("query", true);

    let mut all_ratios = vec![Vec::new(); ratios.len()];
    for (i, (query, row)) in queries.iter().zip(results).enumerate() {
        let mut line = vec![(i + 1).to_string()];
        for (s, m) in row.iter().enumerate() {
            match &m.result {
                Ok(r) => line.extend([
                    ms(m.percentile(0.5)),
                    ms(m.percentile(0.95)),
                    r.len().to_string(),
                ]),
                Err(_) => line.extend(["error".into(), "-".into(), "-".into()]),
            }
            if let (0, Some(peaks)) = (s, peak_memory) {
                line.push(peaks[i].map_or("-".into(), mib));
            }
        }
        for (k, (numerator, _)) in ratios.iter().enumerate() {
            let ratio = prometheus.and_then(|p| p50_ratio(&row[*numerator], &row[p]));
            if let Some(r) = ratio {
                all_ratios[k].push(r);
            }
            line.push(ratio.map_or("-".into(), |r| format!("{r:.2}")));
        }
        for (a, b, _) in &comparisons {
            line.push(match (&row[*a].result, &row[*b].result) {
                (Ok(x), Ok(y)) => {
                    agreement(x, y, [systems[*a].name, systems[*b].name], end_ms).verdict
                }
                _ => "-".into(),
            });
        }
        line.push(query.clone());
        table.rows.push(line);
    }
    if !ratios.is_empty() {
        let mut line = vec!["geo. mean".to_string()];
        let memory_column = usize::from(peak_memory.is_some());
        line.extend(std::iter::repeat_n(
            String::new(),
            systems.len() * 3 + memory_column,
        ));
        for ratios in &all_ratios {
            line.push(match geometric_mean(ratios) {
                Some(g) if ratios.len() == queries.len() => format!("{g:.2}"),
                Some(g) => format!("{g:.2} ({} of {})", ratios.len(), queries.len()),
                None => "-".into(),
            });
        }
        line.extend(std::iter::repeat_n(String::new(), comparisons.len() + 1));
        table.rows.push(line);
    }
    table
}

/// A table printed aligned for the terminal and as Markdown.
#[derive(Default)]
struct Table {
    header: Vec<String>,
    /// Per column: left-aligned (text) rather than right (numbers).
    left: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn column(&mut self, name: &str, left: bool) {
        self.header.push(name.to_string());
        self.left.push(left);
    }

    fn text(&self) -> String {
        let lines: Vec<&Vec<String>> = std::iter::once(&self.header).chain(&self.rows).collect();
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| {
                lines
                    .iter()
                    .map(|l| l.get(c).map_or(0, |cell| cell.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for line in lines {
            let mut text = String::new();
            for (c, cell) in line.iter().enumerate() {
                let w = widths[c];
                if c + 1 == line.len() {
                    text.push_str(cell);
                } else if self.left[c] {
                    let _ = write!(text, "{cell:<w$}  ");
                } else {
                    let _ = write!(text, "{cell:>w$}  ");
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }

    /// GitHub-flavoured Markdown; the last column (the query) as code.
    fn markdown(&self) -> String {
        let row = |cells: &[String], code_last: bool| {
            let mut text = String::from("|");
            for (c, cell) in cells.iter().enumerate() {
                let cell = cell.replace('|', "\\|");
                if code_last && c + 1 == cells.len() && !cell.is_empty() {
                    let _ = write!(text, " `{cell}` |");
                } else {
                    let _ = write!(text, " {cell} |");
                }
            }
            text.push('\n');
            text
        };
        let mut out = row(&self.header, false);
        out.push('|');
        for left in &self.left {
            out.push_str(if *left { "---|" } else { "---:|" });
        }
        out.push('\n');
        for line in &self.rows {
            out.push_str(&row(line, true));
        }
        out
    }
}

fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 300 {
        format!("{}...", s.chars().take(300).collect::<String>())
    } else {
        s
    }
}

/// The work directory, removed at the end unless the user named it.
struct WorkDir {
    path: PathBuf,
    remove: bool,
}

impl WorkDir {
    /// The named directory, or a fresh temporary one.
    fn new(named: Option<&Path>, now_ms: i64) -> anyhow::Result<Self> {
        let (path, remove) = match named {
            Some(dir) => (dir.to_path_buf(), false),
            None => (
                std::env::temp_dir()
                    .join(format!("comet-bench-query-{}-{now_ms}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path, remove })
    }

    /// An empty subdirectory: a previous run's data there is removed.
    fn fresh(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.path.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(dir)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_set_is_deterministic_and_well_formed() {
        let a = Dataset::generate(3, 240, 15_000, 1_700_000_000_000);
        let b = Dataset::generate(3, 240, 15_000, 1_700_000_000_000);
        assert_eq!(a.series.len(), 63);
        for (x, y) in a.series.iter().zip(&b.series) {
            assert_eq!(x.labels, y.labels);
            assert_eq!(x.values, y.values);
        }
        // Every label set is distinct and valid.
        let mut seen = std::collections::HashSet::new();
        for s in &a.series {
            Labels::new(s.labels.iter().cloned(), NameValidation::Legacy).unwrap();
            assert!(seen.insert(s.labels.clone()));
            assert_eq!(s.values.len(), 240);
        }
        // Scrapes are in order, before the end, off the 15 s grid.
        for s in &a.series {
            assert!(s.timestamps.windows(2).all(|w| w[0] < w[1]));
            assert!(*s.timestamps.last().unwrap() < a.end_ms);
            assert!(s.timestamps.iter().all(|t| t % 15_000 != 0));
        }
        // Histogram buckets are cumulative at every scrape.
        let buckets: Vec<&GenSeries> = a
            .series
            .iter()
            .filter(|s| s.name() == "http_request_duration_seconds_bucket")
            .take(BUCKETS.len() + 1)
            .collect();
        for k in 0..240 {
            for pair in buckets.windows(2) {
                assert!(pair[0].values[k] <= pair[1].values[k]);
            }
        }
        // Target 1 restarts once: its counters reset.
        let resets = a
            .series
            .iter()
            .filter(|s| s.name() == "http_requests_total")
            .filter(|s| s.values.windows(2).any(|w| w[1] < w[0]))
            .count();
        assert_eq!(resets, 6);
        // One `up` per target.
        let up: Vec<&GenSeries> = a.series.iter().filter(|s| s.name() == "up").collect();
        assert_eq!(up.len(), 3);
        assert!(up.iter().all(|s| s.values.iter().all(|v| *v == 1.0)));
    }

    #[test]
    fn openmetrics_output_is_grouped_by_family() {
        let dataset = Dataset::generate(2, 4, 15_000, 1_700_000_000_000);
        let dir = std::env::temp_dir().join(format!("comet-bench-om-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.om");
        dataset.write_openmetrics(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.lines().filter(|l| l.starts_with("# TYPE")).count(), 4);
        assert_eq!(
            text.lines().filter(|l| !l.starts_with('#')).count(),
            dataset.samples()
        );
        assert!(text.contains(
            "http_request_duration_seconds_bucket{instance=\"host-0000:8080\",job=\"api\",le=\"+Inf\"}"
        ));
        let t = dataset.series[0].timestamps[0];
        assert!(text.contains(&format!(" {}.{:03}\n", t / 1000, t % 1000)));

        // The Prometheus text format: the same lines, timestamps in ms.
        let mut prom = Vec::new();
        dataset.series[0]
            .write_text(TextFormat::Prometheus, &mut prom)
            .unwrap();
        let prom = String::from_utf8(prom).unwrap();
        assert_eq!(prom.lines().count(), dataset.scrapes);
        assert!(prom.ends_with(&format!(" {}\n", dataset.series[0].timestamps[3])));
    }

    #[test]
    fn results_are_compared_by_series_and_value() {
        let one = |v: f64| -> SeriesSet {
            [(vec![("a".to_string(), "b".to_string())], vec![(1, v)])]
                .into_iter()
                .collect()
        };
        let verdict =
            |a: &SeriesSet, b: &SeriesSet| agreement(a, b, ["Comet", "Prometheus"], 1).verdict;
        assert!(verdict(&one(1.0), &one(1.0 + 1e-12)).starts_with("same"));
        assert!(verdict(&one(1.0), &one(f64::NAN)).starts_with("DIFF: values"));
        assert!(verdict(&one(1.0), &SeriesSet::new()).starts_with("DIFF: series"));
        let named: SeriesSet = [(
            vec![
                ("__name__".to_string(), "m".to_string()),
                ("a".to_string(), "b".to_string()),
            ],
            vec![(1, 1.0)],
        )]
        .into_iter()
        .collect();
        assert_eq!(
            agreement(&named, &one(1.0), ["VictoriaMetrics", "Comet"], 1).verdict,
            "same (1 points); __name__ only in VictoriaMetrics"
        );
        let detail = agreement(&one(1.0), &one(2.0), ["Comet", "Prometheus"], 60_001)
            .detail
            .unwrap();
        assert_eq!(
            detail,
            "largest difference: {a=\"b\"} at end-1m: Comet 1, Prometheus 2"
        );
        let prom = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[0.001,"1"]]}]}}"#;
        assert!(verdict(&one(1.0), &parse_result(prom).unwrap()).starts_with("same"));
        let err = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(parse_result(err).unwrap_err(), "parse error");
    }

    #[test]
    fn ratios_are_summarized_by_their_geometric_mean() {
        assert_eq!(geometric_mean(&[]), None);
        let g = geometric_mean(&[0.5, 2.0, 1.0]).unwrap();
        assert!((g - 1.0).abs() < 1e-12);
        let g = geometric_mean(&[2.0, 8.0]).unwrap();
        assert!((g - 4.0).abs() < 1e-12);
    }

    #[test]
    fn tables_print_aligned_and_as_markdown() {
        let mut table = Table::default();
        table.column("#", true);
        table.column("p50 ms", false);
        table.column("query", true);
        table
            .rows
            .push(vec!["1".into(), "12.5".into(), "a or b".into()]);
        table
            .rows
            .push(vec!["2".into(), "3.0".into(), "x{y=~\"a|b\"}".into()]);
        assert_eq!(
            table.text(),
            "#  p50 ms  query\n1    12.5  a or b\n2     3.0  x{y=~\"a|b\"}\n"
        );
        assert_eq!(
            table.markdown(),
            "| # | p50 ms | query |\n|---|---:|---|\n| 1 | 12.5 | `a or b` |\n| 2 | 3.0 | `x{y=~\"a\\|b\"}` |\n"
        );
    }
}
