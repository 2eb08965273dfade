//! `comet bench ingest`: a load generator for remote-write, OTLP/gRPC and
//! OTLP/HTTP. It pre-encodes requests (so the generator's own encoding cost
//! stays out of the figures), sends them at a target rate with a number of
//! concurrent senders, retries what the receiver asks to be retried, and
//! prints throughput, latency and the receiver's CPU seconds per million
//! samples (data points for OTLP). It works against any receiver of those
//! protocols (Comet, VictoriaMetrics, Prometheus, a collector).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use comet_schema::prompb::v1;
use prost::Message;

use crate::bench_otlp::{self, OtlpShape, Outcome};

/// What the load generator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchProtocol {
    /// Prometheus remote-write 1.0 to <URL><PATH>
    RemoteWrite,
    /// OTLP/gRPC MetricsService/Export to --otlp-endpoint
    OtlpGrpc,
    /// OTLP/HTTP protobuf to <--otlp-endpoint>/v1/metrics
    OtlpHttp,
}

#[derive(Debug, Clone, Args)]
pub struct BenchIngestArgs {
    /// Protocol to send
    #[arg(long, value_enum, default_value_t = BenchProtocol::RemoteWrite)]
    pub protocol: BenchProtocol,
    /// Base URL of the receiver; remote-write requests go to <URL><PATH>,
    /// and its <URL>/metrics gives the receiver's CPU time
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub url: String,
    /// Remote-write path on the receiver
    #[arg(long, default_value = "/api/v1/write")]
    pub path: String,
    /// Distinct series; every round writes one sample to each
    #[arg(long, default_value_t = 100_000)]
    pub series: usize,
    /// Samples per request (Prometheus sends up to 2000)
    #[arg(long, default_value_t = 2000)]
    pub samples_per_request: usize,
    /// Target samples per second; 0 sends as fast as the receiver takes them
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Samples to send in all (rounded up to whole rounds over --series)
    #[arg(long, default_value_t = 10_000_000)]
    pub samples: usize,
    /// Requests in flight at once (like Prometheus's shards)
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Where to read the receiver's process_cpu_seconds_total (default: <URL>/metrics)
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Extra process ids whose CPU time counts as the receiver's (e.g. its ClickHouse)
    #[arg(long = "cpu-pid", value_name = "PID")]
    pub cpu_pids: Vec<u32>,
    /// Remote-write only: after the run against --url, send the same
    /// pre-encoded requests to this second receiver (e.g. VictoriaMetrics
    /// at http://127.0.0.1:8428) and report both side by side
    #[arg(long, value_name = "URL")]
    pub compare: Option<String>,
    /// Where to read the second receiver's process_cpu_seconds_total
    /// (default: <COMPARE>/metrics)
    #[arg(long, value_name = "URL")]
    pub compare_metrics_url: Option<String>,
    /// Extra process ids whose CPU time counts as the second receiver's
    #[arg(long = "compare-cpu-pid", value_name = "PID")]
    pub compare_cpu_pids: Vec<u32>,
    /// Metric name prefix of the generated series
    #[arg(long, default_value = "comet_bench")]
    pub prefix: String,
    /// OTLP receiver (default http://127.0.0.1:4317 for gRPC, :4318 for HTTP)
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// OTLP: metrics per request
    #[arg(long, default_value_t = 100)]
    pub otlp_metrics: usize,
    /// OTLP: data points per metric (each its own series)
    #[arg(long, default_value_t = 7)]
    pub otlp_points: usize,
    /// OTLP: attributes per data point
    #[arg(long, default_value_t = 10)]
    pub otlp_attributes: usize,
}

impl BenchIngestArgs {
    fn otlp_shape(&self) -> OtlpShape {
        OtlpShape {
            metrics: self.otlp_metrics,
            points: self.otlp_points,
            attributes: self.otlp_attributes,
        }
    }

    /// Samples (remote-write) or data points (OTLP) per request.
    fn per_request(&self) -> usize {
        match self.protocol {
            BenchProtocol::RemoteWrite => self.samples_per_request,
            _ => self.otlp_shape().points_per_request(),
        }
    }
}

/// A pre-encoded request and the samples in it.
pub(crate) struct Request {
    pub(crate) body: bytes::Bytes,
    /// OTLP/gRPC: the encoded resource.
    grpc_resource: Option<bytes::Bytes>,
    pub(crate) samples: usize,
}

/// The remote-write load: `samples` in all over `series` series, in
/// requests of `samples_per_request`.
pub(crate) struct RemoteWriteShape<'a> {
    pub(crate) series: usize,
    pub(crate) samples: usize,
    pub(crate) samples_per_request: usize,
    pub(crate) prefix: &'a str,
}

/// Pre-encoded OTLP requests, round-major: each round sends one point to
/// every series, one request per block of `metrics x points` series.
fn encode_otlp_requests(args: &BenchIngestArgs) -> Vec<Request> {
    let shape = args.otlp_shape();
    let blocks = args.series.div_ceil(shape.points_per_request()).max(1);
    let rounds = args
        .samples
        .div_ceil(blocks * shape.points_per_request())
        .max(1);
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let first_ns = now_ns - rounds as u64 * 1_000_000_000;
    let started = Instant::now();
    let mut requests = Vec::with_capacity(blocks * rounds);
    for round in 0..rounds {
        let time_ns = first_ns + round as u64 * 1_000_000_000;
        for block in 0..blocks {
            let encoded = bench_otlp::encode(shape, &args.prefix, block, time_ns, round);
            requests.push(Request {
                body: encoded.body,
                grpc_resource: Some(encoded.resource),
                samples: shape.points_per_request(),
            });
        }
        if round % 10 == 9 || round + 1 == rounds {
            eprintln!(
                "bench: encoded round {}/{rounds} ({} requests, {:.1?})",
                round + 1,
                requests.len(),
                started.elapsed()
            );
        }
    }
    requests
}

/// Pre-encoded requests: round-major, so timestamps only move forward.
pub(crate) fn encode_requests(args: &RemoteWriteShape<'_>) -> Vec<Request> {
    let rounds = args.samples.div_ceil(args.series).max(1);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    // One second apart, ending now: recent enough for any receiver.
    let first_ms = now_ms - rounds as i64 * 1000;
    let label = |n: &str, v: String| v1::Label {
        name: n.into(),
        value: v,
    };
    let mut bodies = Vec::new();
    let mut encoder = snap::raw::Encoder::new();
    let started = Instant::now();
    for round in 0..rounds {
        let ts = first_ms + round as i64 * 1000;
        for first in (0..args.series).step_by(args.samples_per_request) {
            let chunk = first..(first + args.samples_per_request).min(args.series);
            let samples = chunk.len();
            let timeseries = chunk
                .map(|i| v1::TimeSeries {
                    labels: vec![
                        label("__name__", format!("{}_metric_{}", args.prefix, i % 100)),
                        label("cpu", (i % 8).to_string()),
                        label("instance", format!("host-{}:9100", i % 1000)),
                        label("job", "bench".into()),
                        label("mode", ["idle", "user", "system", "iowait"][i % 4].into()),
                        label("series", i.to_string()),
                    ],
                    samples: vec![v1::Sample {
                        value: (round * i) as f64,
                        timestamp: ts,
                    }],
                    ..Default::default()
                })
                .collect();
            let raw = v1::WriteRequest {
                timeseries,
                metadata: vec![],
            }
            .encode_to_vec();
            bodies.push(Request {
                body: bytes::Bytes::from(encoder.compress_vec(&raw).unwrap_or_default()),
                grpc_resource: None,
                samples,
            });
        }
        if round % 10 == 9 || round + 1 == rounds {
            eprintln!(
                "bench: encoded round {}/{rounds} ({} requests, {:.1?})",
                round + 1,
                bodies.len(),
                started.elapsed()
            );
        }
    }
    bodies
}

/// The body of a GET, if it answers.
pub(crate) async fn fetch_text(client: &reqwest::Client, url: &str) -> Option<String> {
    client.get(url).send().await.ok()?.text().await.ok()
}

/// The receiver's CPU seconds: its /metrics counter plus extra pids.
pub(crate) async fn cpu_seconds(
    client: &reqwest::Client,
    metrics_url: &str,
    pids: &[u32],
) -> Option<f64> {
    let text = fetch_text(client, metrics_url).await?;
    let own: f64 = text
        .lines()
        .find(|l| l.starts_with("process_cpu_seconds_total"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())?;
    let ticks = 100.0; // USER_HZ on Linux
    let extra: f64 = pids
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks)
        })
        .sum();
    Some(own + extra)
}

pub async fn run(args: BenchIngestArgs) -> anyhow::Result<()> {
    if args.series == 0 || args.per_request() == 0 || args.concurrency == 0 {
        bail!(
            "--series, --concurrency and the request size (--samples-per-request, or --otlp-metrics and --otlp-points) must be at least 1"
        );
    }
    if args.compare.is_some() && args.protocol != BenchProtocol::RemoteWrite {
        bail!("--compare works with --protocol remote-write only");
    }
    let (requests, target, unit) = match args.protocol {
        BenchProtocol::RemoteWrite => (
            encode_requests(&RemoteWriteShape {
                series: args.series,
                samples: args.samples,
                samples_per_request: args.samples_per_request,
                prefix: &args.prefix,
            }),
            Target::remote_write(&args.url, &args.path),
            "samples",
        ),
        protocol => {
            let default_port = if protocol == BenchProtocol::OtlpGrpc {
                4317
            } else {
                4318
            };
            let endpoint = args
                .otlp_endpoint
                .clone()
                .unwrap_or_else(|| format!("http://127.0.0.1:{default_port}"));
            let target = if protocol == BenchProtocol::OtlpGrpc {
                let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
                    .with_context(|| format!("--otlp-endpoint {endpoint:?} is not a URL"))?
                    .connect()
                    .await
                    .with_context(|| format!("cannot connect to OTLP/gRPC at {endpoint}"))?;
                Target::OtlpGrpc(channel)
            } else {
                Target::OtlpHttp(format!("{}/v1/metrics", endpoint.trim_end_matches('/')))
            };
            (encode_otlp_requests(&args), target, "data points")
        }
    };
    let total_samples: usize = requests.iter().map(|r| r.samples).sum();
    let bytes: usize = requests.iter().map(|r| r.body.len()).sum();
    eprintln!(
        "bench: {} requests, {total_samples} {unit}, {:.1} MiB encoded; sending to {}",
        requests.len(),
        bytes as f64 / (1 << 20) as f64,
        target.describe()
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let requests = Arc::new(requests);
    let metrics_url = cpu_metrics_url(args.metrics_url.as_deref(), &args.url);
    let first = send_all(
        &args,
        &client,
        &requests,
        &target,
        &metrics_url,
        &args.cpu_pids,
    )
    .await?;
    first.print(unit, total_samples, &metrics_url);
    let mut reports = vec![(args.url.clone(), first)];
    if let Some(compare) = &args.compare {
        let target = Target::remote_write(compare, &args.path);
        let metrics_url = cpu_metrics_url(args.compare_metrics_url.as_deref(), compare);
        eprintln!("bench: the same requests to {}", target.describe());
        let second = send_all(
            &args,
            &client,
            &requests,
            &target,
            &metrics_url,
            &args.compare_cpu_pids,
        )
        .await?;
        println!("\n{compare}:");
        second.print(unit, total_samples, &metrics_url);
        reports.push((compare.clone(), second));
        println!("\n| receiver | {unit}/s | CPU-s per million {unit} | p50 ms | p99 ms |");
        println!("|---|---:|---:|---:|---:|");
        for (url, r) in &reports {
            println!(
                "| {url} | {:.0} | {} | {:.2} | {:.2} |",
                r.throughput(),
                r.cpu_per_million()
                    .map_or("unknown".to_string(), |c| format!("{c:.2}")),
                r.p50.as_secs_f64() * 1000.0,
                r.p99.as_secs_f64() * 1000.0,
            );
        }
        if let [(_, a), (_, b)] = &reports[..] {
            println!(
                "\nfirst / second: throughput {:.2}x, CPU per million {unit} {}",
                a.throughput() / b.throughput(),
                match (a.cpu_per_million(), b.cpu_per_million()) {
                    (Some(x), Some(y)) => format!("{:.2}x", x / y),
                    _ => "unknown".into(),
                }
            );
        }
    }
    for (url, r) in &reports {
        if r.acked < total_samples as u64 {
            bail!(
                "{url}: {} {unit} were not acknowledged",
                total_samples as u64 - r.acked
            );
        }
    }
    Ok(())
}

/// Where a receiver's `process_cpu_seconds_total` is read: `explicit`, or
/// `<base_url>/metrics`.
fn cpu_metrics_url(explicit: Option<&str>, base_url: &str) -> String {
    explicit.map_or_else(
        || format!("{}/metrics", base_url.trim_end_matches('/')),
        str::to_string,
    )
}

/// What one run against one receiver measured.
struct RunReport {
    acked: u64,
    rejected: u64,
    failed: u64,
    retries: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    /// The receiver's CPU seconds over the run (with its --cpu-pid).
    cpu: Option<f64>,
}

impl RunReport {
    fn throughput(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_per_million(&self) -> Option<f64> {
        self.cpu
            .filter(|_| self.acked > 0)
            .map(|cpu| cpu / (self.acked as f64 / 1e6))
    }

    fn print(&self, unit: &str, total: usize, metrics_url: &str) {
        println!("{unit} sent and acknowledged: {} of {total}", self.acked);
        if self.rejected > 0 {
            println!(
                "{unit} reported rejected by the receiver: {}",
                self.rejected
            );
        }
        println!("failed requests (not retryable): {}", self.failed);
        println!("retried requests: {}", self.retries);
        println!("elapsed: {:.2?}", self.elapsed);
        println!("throughput: {:.0} {unit}/s", self.throughput());
        println!(
            "request latency: p50 {:.2?}, p99 {:.2?}",
            self.p50, self.p99
        );
        match (self.cpu, self.cpu_per_million()) {
            (Some(cpu), Some(per_million)) => println!(
                "receiver CPU: {cpu:.2} s total, {per_million:.2} CPU-seconds per million {unit}"
            ),
            _ => println!("receiver CPU: unknown (no process_cpu_seconds_total at {metrics_url})"),
        }
    }
}

/// Sends every request to `target` with `--concurrency` senders (at
/// `--rate` if set), retrying what the receiver asks to be retried.
async fn send_all(
    args: &BenchIngestArgs,
    client: &reqwest::Client,
    requests: &Arc<Vec<Request>>,
    target: &Target,
    metrics_url: &str,
    cpu_pids: &[u32],
) -> anyhow::Result<RunReport> {
    let cpu_before = cpu_seconds(client, metrics_url, cpu_pids).await;
    let shared = Arc::new(Shared {
        requests: Arc::clone(requests),
        next: AtomicUsize::new(0),
        acked: AtomicU64::new(0),
        retries: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
    });
    let started = Instant::now();
    let interval = (args.rate > 0)
        .then(|| Duration::from_secs_f64(args.per_request() as f64 / args.rate as f64));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let shared = Arc::clone(&shared);
        let client = client.clone();
        let target = target.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = shared.next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = shared.requests.get(i) else {
                    break;
                };
                if let Some(interval) = interval {
                    tokio::time::sleep_until((started + interval * i as u32).into()).await;
                }
                let sent = Instant::now();
                let ok = send_with_retries(&client, &target, request, &shared).await;
                latencies.push(sent.elapsed());
                if ok {
                    shared
                        .acked
                        .fetch_add(request.samples as u64, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.context("sender task")?);
    }
    let elapsed = started.elapsed();
    let cpu_after = cpu_seconds(client, metrics_url, cpu_pids).await;
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(RunReport {
        acked: shared.acked.load(Ordering::Relaxed),
        rejected: shared.rejected.load(Ordering::Relaxed),
        failed: shared.failed.load(Ordering::Relaxed),
        retries: shared.retries.load(Ordering::Relaxed),
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        cpu: cpu_before
            .zip(cpu_after)
            .map(|(before, after)| after - before),
    })
}

/// Where requests go.
#[derive(Clone)]
enum Target {
    RemoteWrite(String),
    OtlpHttp(String),
    OtlpGrpc(tonic::transport::Channel),
}

impl Target {
    fn remote_write(base_url: &str, path: &str) -> Self {
        Target::RemoteWrite(format!("{}{path}", base_url.trim_end_matches('/')))
    }

    fn describe(&self) -> String {
        match self {
            Target::RemoteWrite(url) => format!("remote-write {url}"),
            Target::OtlpHttp(url) => format!("OTLP/HTTP {url}"),
            Target::OtlpGrpc(_) => "OTLP/gRPC".to_string(),
        }
    }
}

struct Shared {
    requests: Arc<Vec<Request>>,
    next: AtomicUsize,
    acked: AtomicU64,
    retries: AtomicU64,
    failed: AtomicU64,
    /// OTLP points the receiver reported as rejected (partial success).
    rejected: AtomicU64,
}

/// Sends one request, retrying what the receiver asks to be retried (5xx,
/// 429, UNAVAILABLE, RESOURCE_EXHAUSTED, network errors) with backoff from
/// 30 ms up to 5 s, like Prometheus. Returns whether it was acknowledged.
async fn send_with_retries(
    client: &reqwest::Client,
    target: &Target,
    request: &Request,
    shared: &Shared,
) -> bool {
    let mut backoff = Duration::from_millis(30);
    for _ in 0..50 {
        let outcome = match (target, &request.grpc_resource) {
            (Target::RemoteWrite(url), _) => send_remote_write(client, url, &request.body).await,
            (Target::OtlpHttp(url), _) => bench_otlp::send_http(client, url, &request.body).await,
            (Target::OtlpGrpc(channel), Some(resource)) => {
                bench_otlp::send_grpc(channel, resource).await
            }
            (Target::OtlpGrpc(_), None) => Outcome::Refused("no gRPC payload".into()),
        };
        match outcome {
            Outcome::Stored { rejected } => {
                shared
                    .rejected
                    .fetch_add(rejected.max(0) as u64, Ordering::Relaxed);
                return true;
            }
            Outcome::Retry => {}
            Outcome::Refused(why) => {
                eprintln!("bench: request refused: {why}");
                shared.failed.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        shared.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    shared.failed.fetch_add(1, Ordering::Relaxed);
    false
}

async fn send_remote_write(client: &reqwest::Client, url: &str, body: &bytes::Bytes) -> Outcome {
    let response = client
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body.clone())
        .send()
        .await;
    match response {
        Ok(r) if r.status().is_success() => Outcome::Stored { rejected: 0 },
        Ok(r) if r.status().is_server_error() || r.status() == 429 => Outcome::Retry,
        Ok(r) => {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            Outcome::Refused(format!("{status}: {}", text.trim()))
        }
        Err(_) => Outcome::Retry,
    }
}
