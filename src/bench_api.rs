//! `comet bench api`: the Prometheus HTTP API over a large data set. It
//! loads the dashboard-shaped data set of `comet bench query` (100,000
//! series by default) and serves the API in-process on a loopback port,
//! then times, over real HTTP:
//!
//! - the label and series endpoints as Grafana calls them, each run with a
//!   new time range (so ClickHouse answers, not the cache), then repeated
//!   (from the cache);
//! - a dashboard of aggregating panels, each cold (no cached answer), then
//!   loaded and refreshed every step, its window sliding forward like a
//!   live Grafana dashboard's, under both results cache policies (this
//!   process the sole writer, as with the managed ClickHouse; or only steps
//!   past the freshness window, as with an external one), with the cache's
//!   hits and misses and ClickHouse's peak memory per panel.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use clap::Args;
use comet_query::api::{ApiSettings, router};
use comet_schema::Store;
use prometheus::Registry;

use crate::bench_query::{
    AGGREGATING_PANELS, BenchClickHouseArgs, Dataset, SERIES_PER_TARGET, connect, load_comet, mib,
    peak_memory_by_query, percentile,
};

#[derive(Debug, Clone, Args)]
pub struct BenchApiArgs {
    #[command(flatten)]
    pub clickhouse: BenchClickHouseArgs,
    /// Database for the data set; DROPPED and recreated at every run, so
    /// never name one holding data you want to keep
    #[arg(long, default_value = "comet_bench_api", value_name = "NAME")]
    pub database: String,
    /// Series in the data set, rounded up to whole targets of 21 series
    #[arg(long, default_value_t = 100_000)]
    pub series: usize,
    /// Minutes of data at a 15 s scrape interval, ending at the current minute
    #[arg(long, default_value_t = 30)]
    pub minutes: u32,
    /// Timed runs of each catalog request
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Dashboard refreshes, one step apart
    #[arg(long, default_value_t = 10)]
    pub refreshes: usize,
    /// Load nothing: reuse the data set a previous run left in --database
    #[arg(long)]
    pub reuse: bool,
}

const SCRAPE_MS: i64 = 15_000;
/// The dashboard's step and refresh interval.
const REFRESH_STEP_MS: i64 = 30_000;

/// The catalog requests Grafana makes: (what, path, match[]).
const CATALOG: [(&str, &str, Option<&str>); 6] = [
    ("label names", "/api/v1/labels", None),
    ("metric names", "/api/v1/label/__name__/values", None),
    ("job values", "/api/v1/label/job/values", None),
    (
        "instance values, match[]",
        "/api/v1/label/instance/values",
        Some("{__name__=\"http_requests_total\",status=\"500\"}"),
    ),
    (
        "series, match[]",
        "/api/v1/series",
        Some("http_requests_total{method=\"GET\",status=\"500\"}"),
    ),
    (
        "label names, match[]",
        "/api/v1/labels",
        Some("{__name__=~\"http_request_duration.*\"}"),
    ),
];

pub async fn run(args: BenchApiArgs) -> anyhow::Result<()> {
    if args.series == 0 || args.minutes == 0 || args.runs == 0 {
        bail!("--series, --minutes and --runs must be at least 1");
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let last_ms = now_ms / 60_000 * 60_000;
    let store = connect(&args.clickhouse, &args.database).await?;
    let end_ms = if args.reuse {
        last_ms
    } else {
        let targets = args.series.div_ceil(SERIES_PER_TARGET);
        let scrapes = (i64::from(args.minutes) * 60_000 / SCRAPE_MS) as usize;
        let started = Instant::now();
        let dataset = Dataset::generate(targets, scrapes, SCRAPE_MS, last_ms);
        load_comet(&store, &args.clickhouse.schema(&args.database), &dataset).await?;
        eprintln!(
            "bench: loaded {} series x {} scrapes in {:.1?}",
            dataset.series.len(),
            dataset.scrapes,
            started.elapsed()
        );
        dataset.end_ms
    };

    // The API in-process, over real HTTP on loopback, once per results
    // cache policy: as with the managed ClickHouse (this process the sole
    // writer) and as with an external one (only steps older than the
    // freshness window cached).
    let policies = [("sole writer", true), ("freshness 10m", false)];
    let mut apis = Vec::new();
    for (name, sole_writer) in policies {
        let registry = Registry::new();
        let mut settings = ApiSettings::default();
        settings.cache.results_sole_writer = sole_writer;
        let (base, server) = serve_api(store.clone(), settings, &registry).await?;
        apis.push(Policy {
            name,
            base,
            registry,
            server,
        });
    }
    let base = apis[0].base.clone();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;

    println!(
        "\nCatalog endpoints, {} series, last hour (p50 / p95 ms over {} runs)\n",
        args.series, args.runs
    );
    println!("| request | ClickHouse p50 | p95 | cached p50 | p95 | results |");
    println!("|---|---|---|---|---|---|");
    for (what, path, matcher) in CATALOG {
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        let mut results = 0;
        for run in 0..args.runs as i64 {
            // A new end each run: a new cache key, so ClickHouse answers.
            let end = end_ms - run;
            let (took, n) = catalog(&client, &base, path, matcher, end - 3_600_000, end).await?;
            cold.push(took);
            results = n;
        }
        for _ in 0..args.runs {
            let (took, _) =
                catalog(&client, &base, path, matcher, end_ms - 3_600_000, end_ms).await?;
            warm.push(took);
        }
        println!(
            "| {what} | {:.1} | {:.1} | {:.2} | {:.2} | {results} |",
            ms(percentile(&cold, 0.5)),
            ms(percentile(&cold, 0.95)),
            ms(percentile(&warm, 0.5)),
            ms(percentile(&warm, 0.95)),
        );
    }

    dashboard(&args, &store, &client, &apis, end_ms).await?;
    for api in apis {
        api.server.abort();
    }
    Ok(())
}

/// The API served with one results cache policy.
struct Policy {
    name: &'static str,
    base: String,
    registry: Registry,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// The large dashboard: each aggregating panel cold (a range no cached
/// answer covers) `--runs` times, then the dashboard loaded and refreshed
/// `--refreshes` times one step apart as Grafana does, under each results
/// cache policy, the policies interleaved load by load (each refresh a
/// partial hit computing only the steps the policy cannot reuse); p50/p95
/// per panel, with ClickHouse's peak memory per panel.
async fn dashboard(
    args: &BenchApiArgs,
    store: &Store,
    client: &reqwest::Client,
    apis: &[Policy],
    end_ms: i64,
) -> anyhow::Result<()> {
    let since = SystemTime::now();
    let last_end = end_ms / REFRESH_STEP_MS * REFRESH_STEP_MS;
    let panels = AGGREGATING_PANELS.len();
    let mut cold = vec![Vec::new(); panels];
    let mut refresh = vec![vec![Vec::new(); panels]; apis.len()];
    let mut series = vec![0; panels];
    // Cold: every run a range aligned differently (a new cache key) and
    // ending before the refreshes' ranges, panels interleaved.
    for run in 0..args.runs as i64 {
        let end = last_end - REFRESH_STEP_MS * (args.refreshes as i64 + 1) - 1 - run;
        for (i, query) in AGGREGATING_PANELS.iter().enumerate() {
            let (took, n) = range_query(client, &apis[0].base, query, end - 3_600_000, end).await?;
            cold[i].push(took);
            series[i] = n;
        }
    }
    let mut totals = vec![Vec::new(); apis.len()];
    let mut before: Vec<_> = apis.iter().map(|a| cache_counts(&a.registry)).collect();
    for load in 0..=args.refreshes as i64 {
        let end = last_end - (args.refreshes as i64 - load) * REFRESH_STEP_MS;
        for (p, api) in apis.iter().enumerate() {
            let started = Instant::now();
            for (i, query) in AGGREGATING_PANELS.iter().enumerate() {
                let (took, _) = range_query(client, &api.base, query, end - 3_600_000, end).await?;
                // The first load fills the cache; the refreshes are timed.
                if load > 0 {
                    refresh[p][i].push(took);
                }
            }
            let after = cache_counts(&api.registry);
            totals[p].push((
                started.elapsed(),
                after.0 - before[p].0,
                after.1 - before[p].1,
                after.2 - before[p].2,
            ));
            before[p] = after;
        }
    }
    let queries: Vec<String> = AGGREGATING_PANELS.iter().map(|q| q.to_string()).collect();
    let peaks = peak_memory_by_query(store, store.database(), &queries, since).await;

    println!(
        "\nDashboard of {panels} aggregating panels (1 h range, step 30 s): cold over {} runs, refresh over {} refreshes one step apart (p50 / p95 ms), under each results cache policy\n",
        args.runs, args.refreshes
    );
    let names: Vec<String> = apis
        .iter()
        .map(|a| format!("refresh p50 ({0}) | refresh p95 ({0})", a.name))
        .collect();
    println!(
        "| panel | cold p50 | cold p95 | {} | CH peak MiB | series | query |",
        names.join(" | ")
    );
    println!(
        "|---|---:|---:|{}---:|---:|---|",
        "---:|---:|".repeat(apis.len())
    );
    for (i, query) in AGGREGATING_PANELS.iter().enumerate() {
        let peak = peaks
            .as_ref()
            .and_then(|p| p[i])
            .map_or("unknown".to_string(), mib);
        let refreshes: Vec<String> = refresh
            .iter()
            .map(|r| {
                format!(
                    "{:.1} | {:.1}",
                    ms(percentile(&r[i], 0.5)),
                    ms(percentile(&r[i], 0.95))
                )
            })
            .collect();
        println!(
            "| {} | {:.1} | {:.1} | {} | {peak} | {} | `{query}` |",
            i + 1,
            ms(percentile(&cold[i], 0.5)),
            ms(percentile(&cold[i], 0.95)),
            refreshes.join(" | "),
            series[i],
        );
    }
    for (p, api) in apis.iter().enumerate() {
        println!("\nResults cache policy: {}\n", api.name);
        println!("| load | total ms | cache hits | partial | misses |");
        println!("|---|---|---|---|---|");
        for (load, (took, hits, partial, misses)) in totals[p].iter().enumerate() {
            let what = if load == 0 {
                "first".to_string()
            } else {
                format!("refresh {load}")
            };
            println!(
                "| {what} | {:.0} | {hits} | {partial} | {misses} |",
                took.as_secs_f64() * 1000.0
            );
        }
        let (hits, partial, misses) = cache_counts(&api.registry);
        let lookups = (hits + partial + misses).max(1);
        println!(
            "\nresults cache: {hits} hits, {partial} partial hits (only the steps after the reusable ones computed), {misses} misses: {:.0}% served at least partly from the cache",
            100.0 * (hits + partial) as f64 / lookups as f64
        );
    }
    Ok(())
}

/// Serves the Prometheus API in process over real HTTP on a free loopback
/// port: its base URL and the server task (abort it to stop).
pub(crate) async fn serve_api(
    store: Store,
    settings: ApiSettings,
    registry: &Registry,
) -> anyhow::Result<(String, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let api = router(store, settings, registry)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, api).await });
    Ok((base, server))
}

/// One catalog request: its latency and the number of results.
async fn catalog(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    matcher: Option<&str>,
    start_ms: i64,
    end_ms: i64,
) -> anyhow::Result<(Duration, usize)> {
    let mut params = vec![
        ("start", seconds(start_ms)),
        ("end", seconds(end_ms)),
        ("limit", "40000".to_string()),
    ];
    if let Some(m) = matcher {
        params.push(("match[]", m.to_string()));
    }
    let url = format!("{base}{path}");
    // As Grafana: label values by GET, labels and series by POST.
    let request = if path.starts_with("/api/v1/label/") {
        client.get(url).query(&params)
    } else {
        client.post(url).form(&params)
    };
    let started = Instant::now();
    let body: serde_json::Value = request.send().await?.json().await?;
    let took = started.elapsed();
    if body["status"] != "success" {
        bail!("{path}: {body}");
    }
    Ok((took, body["data"].as_array().map_or(0, Vec::len)))
}

/// A latency in ms for the tables (NaN when nothing was timed).
fn ms(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

/// One range query: its latency to the last byte and its series.
async fn range_query(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    start_ms: i64,
    end_ms: i64,
) -> anyhow::Result<(Duration, usize)> {
    let params = [
        ("query", query.to_string()),
        ("start", seconds(start_ms)),
        ("end", seconds(end_ms)),
        ("step", "30".to_string()),
    ];
    let started = Instant::now();
    let body = client
        .post(format!("{base}/api/v1/query_range"))
        .form(&params)
        .send()
        .await?
        .bytes()
        .await?;
    let took = started.elapsed();
    let body: serde_json::Value = serde_json::from_slice(&body)?;
    if body["status"] != "success" {
        bail!("{query}: {body}");
    }
    Ok((took, body["data"]["result"].as_array().map_or(0, Vec::len)))
}

fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// (hits, partial, misses) of the results cache.
pub(crate) fn cache_counts(registry: &Registry) -> (u64, u64, u64) {
    let mut counts = (0, 0, 0);
    for family in registry.gather() {
        if family.name() != "comet_query_cache_requests_total" {
            continue;
        }
        for m in family.get_metric() {
            let label = |n: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == n)
                    .map(|l| l.value().to_string())
                    .unwrap_or_default()
            };
            if label("cache") != "results" {
                continue;
            }
            let v = m.get_counter().value() as u64;
            match label("result").as_str() {
                "hit" => counts.0 += v,
                "partial" => counts.1 += v,
                _ => counts.2 += v,
            }
        }
    }
    counts
}
