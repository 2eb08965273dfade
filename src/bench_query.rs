//! `comet bench query`: end-to-end PromQL latency on a dashboard-shaped data
//! set. It generates the data set deterministically (request counters with
//! a few resets, a classic latency histogram, a memory gauge), loads it into
//! a database of its own through the ingest writer, and times range queries
//! through the PromQL engine (plan, one ClickHouse statement, shaping).
//! With `--prometheus` it also builds Prometheus blocks of the same data
//! with `promtool`, starts that Prometheus on a free loopback port, and times
//! the same queries over its HTTP API, so both stand side by side, with the
//! number of series each returned and whether the results agree.

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
use comet_query::engine::{Engine, QueryRange};
use comet_query::plan::PlanSettings;
use comet_query::value::{QueryValue, format_labels};
use comet_schema::ddl::quote_identifier;
use comet_schema::migrate::{latest_version, migrate};
use comet_schema::{
    Labels, NameValidation, RetryPolicy, Sample, SchemaOptions, Store, StoreSettings, Topology,
};
use serde::Deserialize;

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
}

#[derive(Debug, Clone, Args)]
pub struct BenchQueryArgs {
    #[command(flatten)]
    pub clickhouse: BenchClickHouseArgs,
    /// Database for the data set; DROPPED and recreated at every run, so
    /// never name one holding data you want to keep
    #[arg(long, default_value = "comet_bench_query", value_name = "NAME")]
    pub database: String,
    /// Series in the data set, rounded up to whole targets of 20 series
    /// (6 request counters, 13 histogram series, 1 gauge)
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
    /// Timed runs of each query; p50 and p95 are taken over these
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Untimed runs of each query before the timed ones
    #[arg(long, default_value_t = 2)]
    pub warmups: usize,
    /// A PromQL query to time instead of the built-in dashboard set;
    /// repeat for several
    #[arg(long = "query", value_name = "PROMQL")]
    pub queries: Vec<String>,
    /// Prometheus binary (e.g. Debian's /usr/bin/prometheus): also load the
    /// data set into a Prometheus of its own and time the same queries there
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
    /// promtool binary that turns the data set into Prometheus blocks
    /// [default: the promtool beside --prometheus]
    #[arg(long, value_name = "FILE")]
    pub promtool: Option<PathBuf>,
    /// Directory for the OpenMetrics file and Prometheus's data, kept
    /// afterwards [default: a temporary directory, removed at the end]
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

/// Eight queries shaped like the panels of a service dashboard.
pub const DASHBOARD_QUERIES: [&str; 8] = [
    "rate(http_requests_total[5m])",
    "sum by (job) (rate(http_requests_total[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "topk(5, rate(http_requests_total[5m]))",
    "avg_over_time(node_memory_free_bytes[10m])",
    "sum(rate(http_requests_total{status=\"500\"}[5m])) / on() sum(rate(http_requests_total[5m]))",
    "count by (status) (http_requests_total)",
    "max_over_time(rate(http_requests_total[5m])[30m:1m])",
];

// ---------------------------------------------------------------------------
// The data set

/// Series per target (one job/instance pair).
pub(crate) const SERIES_PER_TARGET: usize = 20;
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
        let families = [
            ("http_requests", "counter", "http_requests_total"),
            (
                "http_request_duration_seconds",
                "histogram",
                "http_request_duration_seconds_",
            ),
            ("node_memory_free_bytes", "gauge", "node_memory_free_bytes"),
        ];
        let mut line = String::new();
        for (family, kind, prefix) in families {
            writeln!(out, "# TYPE {family} {kind}")?;
            for s in self.series.iter().filter(|s| s.name().starts_with(prefix)) {
                let mut head = s.name().to_string();
                head.push('{');
                let mut first = true;
                for (n, v) in s.labels.iter().filter(|(n, _)| n != "__name__") {
                    if !first {
                        head.push(',');
                    }
                    first = false;
                    let _ = write!(head, "{n}=\"{}\"", escape_label_value(v));
                }
                head.push('}');
                for (k, v) in s.values.iter().enumerate() {
                    let t = s.timestamps[k];
                    line.clear();
                    let _ = writeln!(line, "{head} {v} {}.{:03}", t / 1000, t % 1000);
                    out.write_all(line.as_bytes())?;
                }
            }
        }
        writeln!(out, "# EOF")?;
        out.flush()?;
        Ok(())
    }
}

fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

// ---------------------------------------------------------------------------
// Comet: load and query

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
    }
}

/// Drops and recreates the database, loads the data set through the
/// writer, and merges the tables to their settled state.
pub(crate) async fn load_comet(store: &Store, dataset: &Dataset) -> anyhow::Result<()> {
    let database = store.database().to_string();
    store
        .execute(&format!(
            "DROP DATABASE IF EXISTS {} SYNC",
            quote_identifier(&database)
        ))
        .await?;
    let options = SchemaOptions {
        database: database.clone(),
        retention: None,
        topology: Topology::SingleNode,
    };
    migrate(store, &options, latest_version())
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
    for table in ["series", "samples"] {
        store
            .execute(&format!(
                "OPTIMIZE TABLE {}.{table} FINAL",
                quote_identifier(&database)
            ))
            .await?;
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

/// A query's result, comparable across engines: series by label set, each
/// with its points (ms, value).
type SeriesSet = BTreeMap<Vec<(String, String)>, Vec<(i64, f64)>>;

fn comet_result(value: QueryValue) -> SeriesSet {
    let mut out = SeriesSet::new();
    match value {
        QueryValue::Matrix(series) => {
            for s in series {
                out.insert(s.labels, s.points.iter().map(|p| (p.t, p.v)).collect());
            }
        }
        QueryValue::Vector(samples) => {
            for s in samples {
                out.insert(s.labels, vec![(s.point.t, s.point.v)]);
            }
        }
        QueryValue::Scalar(p) => {
            out.insert(Vec::new(), vec![(p.t, p.v)]);
        }
        QueryValue::String { .. } => {}
    }
    out
}

/// Timings of one query on one engine, and its result or why it failed.
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

/// Runs `run` `warmups` times untimed, then `runs` times timed; returns the
/// timings and the last answer. A failure ends the runs (a failing query
/// fails every time).
pub(crate) async fn measure<T, F, Fut>(
    warmups: usize,
    runs: usize,
    mut run: F,
) -> (Vec<Duration>, Result<T, String>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut latencies = Vec::with_capacity(runs);
    let mut last = Err("no run".to_string());
    for i in 0..warmups + runs {
        let started = Instant::now();
        let result = run().await;
        let took = started.elapsed();
        if result.is_err() {
            return (Vec::new(), result);
        }
        if i >= warmups {
            latencies.push(took);
        }
        last = result;
    }
    (latencies, last)
}

// ---------------------------------------------------------------------------
// Prometheus

/// A Prometheus child process, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn version_of(program: &Path) -> String {
    Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown version".into())
}

/// Builds blocks of the data set with promtool in `dir/data` and starts
/// Prometheus on them.
async fn start_prometheus(
    dataset: &Dataset,
    prometheus: &Path,
    promtool: &Path,
    dir: &Path,
    client: &reqwest::Client,
) -> anyhow::Result<Prometheus> {
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
    )?;
    let port = free_port()?;
    let log = dir.join("prometheus.log");
    let out = std::fs::File::create(&log)?;
    let child = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg("--storage.tsdb.retention.time=100y")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("cannot run {}", prometheus.display()))?;
    let mut server = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!(
                "Prometheus exited ({status}) before it was ready:\n{}",
                tail(&server.log, 20)
            );
        }
        if let Ok(r) = client.get(format!("{}/-/ready", server.url)).send().await
            && r.status().is_success()
        {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "Prometheus not ready after 120s:\n{}",
                tail(&server.log, 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(server)
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

async fn prometheus_query(
    client: &reqwest::Client,
    url: &str,
    query: &str,
    range: QueryRange,
) -> Result<bytes::Bytes, String> {
    let seconds = |ms: i64| format!("{}.{:03}", ms / 1000, ms % 1000);
    let mut endpoint =
        reqwest::Url::parse(&format!("{url}/api/v1/query_range")).map_err(|e| e.to_string())?;
    endpoint
        .query_pairs_mut()
        .append_pair("query", query)
        .append_pair("start", &seconds(range.start_ms))
        .append_pair("end", &seconds(range.end_ms))
        .append_pair("step", &seconds(range.step_ms));
    let response = client
        .get(endpoint)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(match prometheus_result(&body) {
            Err(e) => format!("{status}: {e}"),
            Ok(_) => status.to_string(),
        });
    }
    Ok(body)
}

fn prometheus_result(body: &[u8]) -> Result<SeriesSet, String> {
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

/// Whether two results agree: a short verdict for the table and, when they
/// differ, where first or most.
struct Agreement {
    verdict: String,
    detail: Option<String>,
}

/// Compares two results: same series, same timestamps, values equal to a
/// relative 1e-6 (ClickHouse and Go may add in different orders). Times in
/// the detail are relative to `end_ms`, the end of the query range.
fn agreement(comet: &SeriesSet, prometheus: &SeriesSet, end_ms: i64) -> Agreement {
    let at = |t: i64| {
        let before = Duration::from_millis((end_ms - t).max(0) as u64);
        format!("end-{}", humantime::format_duration(before))
    };
    let only_comet: Vec<_> = comet
        .keys()
        .filter(|k| !prometheus.contains_key(*k))
        .collect();
    let only_prom: Vec<_> = prometheus
        .keys()
        .filter(|k| !comet.contains_key(*k))
        .collect();
    if !only_comet.is_empty() || !only_prom.is_empty() {
        let mut detail = Vec::new();
        if let Some(l) = only_comet.first() {
            detail.push(format!("only in Comet: {}", format_labels(l)));
        }
        if let Some(l) = only_prom.first() {
            detail.push(format!("only in Prometheus: {}", format_labels(l)));
        }
        return Agreement {
            verdict: format!(
                "DIFF: series ({} only in Comet, {} only in Prometheus)",
                only_comet.len(),
                only_prom.len()
            ),
            detail: Some(detail.join("; ")),
        };
    }
    let mut points = 0;
    let mut worst: Option<(f64, String)> = None;
    for (labels, a) in comet {
        let b = &prometheus[labels];
        if a.iter().map(|p| p.0).ne(b.iter().map(|p| p.0)) {
            let span = |s: &[(i64, f64)]| match (s.first(), s.last()) {
                (Some(f), Some(l)) => format!("{} points {} .. {}", s.len(), at(f.0), at(l.0)),
                _ => "no points".to_string(),
            };
            return Agreement {
                verdict: "DIFF: timestamps".into(),
                detail: Some(format!(
                    "{}: Comet {}, Prometheus {}",
                    format_labels(labels),
                    span(a),
                    span(b)
                )),
            };
        }
        for ((t, x), (_, y)) in a.iter().zip(b) {
            points += 1;
            if x.is_nan() && y.is_nan() || x == y {
                continue;
            }
            let rel = (x - y).abs() / x.abs().max(y.abs());
            let rel = if rel.is_nan() { f64::INFINITY } else { rel };
            if worst.as_ref().is_none_or(|(w, _)| rel > *w) {
                let where_ = format!(
                    "{} at {}: Comet {x}, Prometheus {y}",
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
        DASHBOARD_QUERIES.iter().map(|q| q.to_string()).collect()
    } else {
        args.queries.clone()
    };
    let promtool = args.prometheus.as_ref().map(|p| {
        args.promtool
            .clone()
            .unwrap_or_else(|| p.with_file_name("promtool"))
    });

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

    let store = Store::new(store_settings(&args.clickhouse, &args.database))?;
    store
        .wait_until_reachable(Duration::from_secs(30))
        .await
        .with_context(|| format!("ClickHouse at {} is not reachable; start one with `comet clickhouse` and pass its URL as --clickhouse-url", args.clickhouse.clickhouse_url))?;
    let clickhouse_version = store.server_version().await?;
    let started = Instant::now();
    load_comet(&store, &dataset).await?;
    eprintln!(
        "bench: loaded into ClickHouse {clickhouse_version} (database {}) in {:.1?}",
        args.database,
        started.elapsed()
    );

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    // Dropped in this order: Prometheus stops before its directory goes.
    let prometheus = match (&args.prometheus, &promtool) {
        (Some(binary), Some(promtool)) => {
            let work_dir = WorkDir::new(args.work_dir.as_deref(), now_ms)?;
            let dir = work_dir.path.join("prometheus");
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let server = start_prometheus(&dataset, binary, promtool, &dir, &client).await?;
            Some((server, version_of(binary), work_dir))
        }
        _ => None,
    };

    // Comet first, then Prometheus, one query at a time.
    let engine = Engine::new(store, PlanSettings::default());
    let mut rows = Vec::new();
    for query in &queries {
        eprintln!("bench: {query}");
        let (latencies, result) = measure(args.warmups, args.runs, || async {
            engine.query(query, range).await.map_err(|e| e.to_string())
        })
        .await;
        let comet = Measured {
            latencies,
            result: result.map(comet_result),
        };
        let prom = match &prometheus {
            Some((server, ..)) => {
                let (latencies, result) = measure(args.warmups, args.runs, || {
                    prometheus_query(&client, &server.url, query, range)
                })
                .await;
                // Parsed outside the timing.
                Some(Measured {
                    latencies,
                    result: result.and_then(|body| prometheus_result(&body)),
                })
            }
            None => None,
        };
        rows.push((query.clone(), comet, prom));
    }

    // The report.
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "comet bench query: {} series ({} targets), {} h at {} scrape interval = {} samples",
        dataset.series.len(),
        targets,
        args.hours,
        humantime::format_duration(args.scrape_interval),
        dataset.samples()
    );
    println!(
        "range queries over the last {} at {} step ({} points per series); {} runs after {} warm-ups",
        humantime::format_duration(args.range),
        humantime::format_duration(args.step),
        (range.end_ms - range.start_ms) / step_ms + 1,
        args.runs,
        args.warmups
    );
    println!("machine: {cores} cores; ClickHouse {clickhouse_version}");
    if let Some((_, version, _)) = &prometheus {
        println!("Prometheus: {version}");
    }
    println!(
        "Comet time: plan + ClickHouse statement + shaping, in process; Prometheus time: HTTP query_range to the last byte"
    );
    println!();
    print!("{}", table(&rows, prometheus.is_some(), range.end_ms));
    let notes: Vec<String> = rows
        .iter()
        .enumerate()
        .flat_map(|(i, (_, comet, prom))| {
            let mut lines = Vec::new();
            if let Err(e) = &comet.result {
                lines.push(format!("#{} Comet error: {}", i + 1, one_line(e)));
            }
            if let Some(Measured { result: Err(e), .. }) = prom {
                lines.push(format!("#{} Prometheus error: {}", i + 1, one_line(e)));
            }
            if let (Ok(a), Some(Measured { result: Ok(b), .. })) = (&comet.result, prom)
                && let Some(detail) = agreement(a, b, range.end_ms).detail
            {
                lines.push(format!("#{} {}", i + 1, one_line(&detail)));
            }
            lines
        })
        .collect();
    if !notes.is_empty() {
        println!();
        for line in notes {
            println!("{line}");
        }
    }
    Ok(())
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
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

type TableRow = (String, Measured, Option<Measured>);

/// The results as an aligned text table, the query last.
fn table(rows: &[TableRow], with_prometheus: bool, end_ms: i64) -> String {
    let ms = |d: Option<Duration>| {
        d.map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64() * 1e3))
    };
    let cells = |m: &Measured| -> [String; 3] {
        match &m.result {
            Ok(r) => [
                ms(m.percentile(0.5)),
                ms(m.percentile(0.95)),
                r.len().to_string(),
            ],
            Err(_) => ["error".into(), "-".into(), "-".into()],
        }
    };
    let mut header = vec!["#", "Comet p50 ms", "p95 ms", "series"];
    if with_prometheus {
        header.extend(["Prometheus p50 ms", "p95 ms", "series", "results"]);
    }
    header.push("query");
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for (i, (query, comet, prom)) in rows.iter().enumerate() {
        let mut line = vec![(i + 1).to_string()];
        line.extend(cells(comet));
        if with_prometheus && let Some(prom) = prom {
            line.extend(cells(prom));
            line.push(match (&comet.result, &prom.result) {
                (Ok(a), Ok(b)) => agreement(a, b, end_ms).verdict,
                _ => "-".into(),
            });
        }
        line.push(query.clone());
        lines.push(line);
    }
    let columns = lines[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (c, cell) in line.iter().enumerate() {
            if c + 1 == columns {
                text.push_str(cell);
            } else if c == 0 || c + 2 == columns && with_prometheus {
                // Left-aligned: the number and the agreement note.
                let _ = write!(text, "{cell:<w$}  ", w = widths[c]);
            } else {
                let _ = write!(text, "{cell:>w$}  ", w = widths[c]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_set_is_deterministic_and_well_formed() {
        let a = Dataset::generate(3, 240, 15_000, 1_700_000_000_000);
        let b = Dataset::generate(3, 240, 15_000, 1_700_000_000_000);
        assert_eq!(a.series.len(), 60);
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
        assert_eq!(text.lines().filter(|l| l.starts_with("# TYPE")).count(), 3);
        assert_eq!(
            text.lines().filter(|l| !l.starts_with('#')).count(),
            dataset.samples()
        );
        assert!(text.contains(
            "http_request_duration_seconds_bucket{instance=\"host-0000:8080\",job=\"api\",le=\"+Inf\"}"
        ));
        let t = dataset.series[0].timestamps[0];
        assert!(text.contains(&format!(" {}.{:03}\n", t / 1000, t % 1000)));
    }

    #[test]
    fn results_are_compared_by_series_and_value() {
        let one = |v: f64| -> SeriesSet {
            [(vec![("a".to_string(), "b".to_string())], vec![(1, v)])]
                .into_iter()
                .collect()
        };
        let verdict = |a: &SeriesSet, b: &SeriesSet| agreement(a, b, 1).verdict;
        assert!(verdict(&one(1.0), &one(1.0 + 1e-12)).starts_with("same"));
        assert!(verdict(&one(1.0), &one(f64::NAN)).starts_with("DIFF: values"));
        assert!(verdict(&one(1.0), &SeriesSet::new()).starts_with("DIFF: series"));
        let detail = agreement(&one(1.0), &one(2.0), 60_001).detail.unwrap();
        assert_eq!(
            detail,
            "largest difference: {a=\"b\"} at end-1m: Comet 1, Prometheus 2"
        );
        let prom = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"b"},"values":[[0.001,"1"]]}]}}"#;
        assert!(verdict(&one(1.0), &prometheus_result(prom).unwrap()).starts_with("same"));
        let err = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(prometheus_result(err).unwrap_err(), "parse error");
    }
}
