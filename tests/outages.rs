//! Outages under a real sender: a Prometheus 3.5 scrapes node_exporter
//! every second and remote-writes to Comet while ClickHouse is killed,
//! Comet is killed, or ClickHouse answers slowly. Afterwards ClickHouse
//! must hold exactly the samples Prometheus delivered and holds in its own
//! TSDB (each once; a sample a retry stored twice shows in the row count
//! only), with nothing failed or dropped on the way.
//!
//! Every wait is bounded and no assertion depends on timing: the outages
//! last fixed times, but what is checked is counts after the sender's
//! queue settled.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::CometProcess;
use common::peers::sum_metric;
use common::sender::{Sender, Stored, settle_and_count};
use common::throttle::ThrottledProxy;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const START: Duration = Duration::from_secs(120);
/// Healthy sending before and after each outage.
const BEFORE: Duration = Duration::from_secs(8);
const AFTER: Duration = Duration::from_secs(5);

/// The processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            children.push(pid);
        }
    }
    children
}

fn sigkill(pid: u32) {
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// (a) ClickHouse is SIGKILLed for 30 s and restarted on the same ports
/// and data: Comet answers 503 meanwhile, Prometheus retries, and once the
/// server is back everything arrives, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_killed_for_30s_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (http_port, tcp_port) = (common::free_port(), common::free_port());
    let (server, url) = common::spawn_clickhouse_on(dir.path(), http_port, tcp_port);
    let mut server: Child = server;
    let database = common::unique_database("comet_outage_ch");
    let mut comet = CometProcess::spawn(&[
        "serve",
        "--clickhouse-url",
        &url,
        "--clickhouse-database",
        &database,
        "--clickhouse-max-retries",
        "1",
        "--clickhouse-connect-timeout",
        "1s",
    ]);
    comet.wait_ready(START).await;
    let mut sender = Sender::start(&comet.url("/api/v1/write")).await;
    let log = |comet: &CometProcess| format!("--- comet log:\n{}", comet.log_text());
    sender.run_for(BEFORE, &|| log(&comet)).await;

    // The server process (the python launcher of `comet clickhouse`) dies
    // first, then its supervisor, before it can restart it.
    let servers = children_of(server.id());
    assert!(
        !servers.is_empty(),
        "no ClickHouse server under comet clickhouse"
    );
    for pid in servers {
        sigkill(pid);
    }
    let _ = server.kill();
    let _ = server.wait();
    let killed = Instant::now();
    let before_outage = sender.counters().await;
    while killed.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sender.assert_nothing_lost(&|| log(&comet)).await;
        if let Ok(Some(status)) = comet.child.try_wait() {
            panic!("comet exited ({status}) during the outage\n{}", log(&comet));
        }
    }
    let during_outage = sender.counters().await;
    let metrics = comet.metrics_text().await;

    // Restarted from this thread, which outlives the test: the server's
    // parent-death signal follows the spawning thread.
    let (_server, _) = common::spawn_clickhouse_on(dir.path(), http_port, tcp_port);
    // Ready again once it reaches ClickHouse.
    comet.wait_ready(START).await;
    sender.run_for(AFTER, &|| log(&comet)).await;

    let (stored, counters) = settle_and_count(&mut sender, &url, &database, &|| log(&comet)).await;
    eprintln!(
        "outages/clickhouse: before the outage {before_outage:?}\n  at its end {during_outage:?}\n  \
         settled {counters:?}\n  stored {stored:?}"
    );
    assert!(
        during_outage.retried > before_outage.retried,
        "Prometheus retried nothing during the outage: {during_outage:?}"
    );
    assert!(
        sum_metric(&metrics, "comet_ingest_requests_rejected_total") > 0.0
            || sum_metric(&metrics, "comet_ingest_insert_failures_total") > 0.0,
        "Comet counted no refused write during the outage:\n{metrics}"
    );
    assert!(comet.terminate().await.success(), "{}", log(&comet));
}

/// (b) Comet is SIGKILLed and restarted on the same port: what it
/// acknowledged before is stored, what it had not is resent by
/// Prometheus, and every sample ends up stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comet_killed_and_restarted_loses_nothing_acknowledged() {
    let clickhouse = common::clickhouse_url();
    let database = common::unique_database("comet_outage_comet");
    let port = common::free_port();
    let args = [
        "serve",
        "--clickhouse-url",
        &clickhouse,
        "--clickhouse-database",
        &database,
    ];
    let mut comet = CometProcess::spawn_on(&args, port);
    comet.wait_ready(START).await;
    let mut sender = Sender::start(&comet.url("/api/v1/write")).await;
    let log = |comet: &CometProcess| format!("--- comet log:\n{}", comet.log_text());
    sender.run_for(BEFORE, &|| log(&comet)).await;

    // SIGKILL: no shutdown, no flush; what Comet acknowledged was stored
    // before the acknowledgement.
    let first_log = comet.log_text();
    comet.child.kill().expect("SIGKILL comet");
    comet.child.wait().expect("reap comet");
    let acknowledged = Stored::read(&clickhouse, &database).await;
    let killed = Instant::now();
    while killed.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sender.assert_nothing_lost(&|| first_log.clone()).await;
    }
    // Nothing is written while Comet is down.
    assert_eq!(
        Stored::read(&clickhouse, &database).await,
        acknowledged,
        "rows appeared while Comet was down"
    );
    let during_outage = sender.counters().await;

    let mut comet = CometProcess::spawn_on(&args, port);
    comet.wait_ready(START).await;
    sender.run_for(AFTER, &|| log(&comet)).await;
    let (stored, counters) =
        settle_and_count(&mut sender, &clickhouse, &database, &|| log(&comet)).await;
    eprintln!(
        "outages/comet: stored when killed {acknowledged:?}\n  at the outage's end \
         {during_outage:?}\n  settled {counters:?}\n  stored {stored:?}"
    );
    assert!(
        stored.distinct > acknowledged.distinct,
        "nothing stored after the restart: {stored:?}"
    );
    assert!(
        during_outage.retried > 0.0,
        "Prometheus retried nothing while Comet was down: {during_outage:?}"
    );
    assert!(comet.terminate().await.success(), "{}", log(&comet));
}

/// (c) ClickHouse answers slowly: every insert crawls through a proxy at
/// 4 KB/s for 20 s. Comet holds at most its buffer budget (64 KiB) and refuses the
/// rest with 503 (Prometheus retries), and once inserts are fast again
/// everything arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clickhouse_gets_backpressure_not_memory() {
    const BUDGET: u64 = 64 * 1024;
    let upstream = common::clickhouse_url();
    let address = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let proxy = ThrottledProxy::start(&address).await;
    let database = common::unique_database("comet_outage_slow");
    let budget = BUDGET.to_string();
    let mut comet = CometProcess::spawn(&[
        "serve",
        "--clickhouse-url",
        &proxy.url(),
        "--clickhouse-database",
        &database,
        "--ingest-max-buffered-bytes",
        &budget,
        "--ingest-batch-linger",
        "200ms",
    ]);
    comet.wait_ready(START).await;
    let pid = comet.child.id();
    // Four shards from the start: four requests in flight, more than the
    // budget holds (a request of 500 samples is 32 KB in Comet's
    // accounting, metadata about 50 KB: each fits alone).
    let mut sender =
        Sender::start_with_queue(&comet.url("/api/v1/write"), &["min_shards: 4"]).await;
    let log = |comet: &CometProcess| format!("--- comet log:\n{}", comet.log_text());
    sender.run_for(BEFORE, &|| log(&comet)).await;
    let refused_before = sum_metric(
        &comet.metrics_text().await,
        "comet_ingest_backpressure_total",
    );
    let rss_before_kib = memory_kib(pid, "VmRSS");

    proxy.throttle(4 * 1024);
    let throttled = Instant::now();
    let mut most_buffered = 0.0f64;
    while throttled.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let metrics = comet.metrics_text().await;
        most_buffered = most_buffered.max(sum_metric(&metrics, "comet_ingest_buffered_bytes"));
        sender.assert_nothing_lost(&|| log(&comet)).await;
    }
    let during = sender.counters().await;
    let metrics = comet.metrics_text().await;
    let backpressure = sum_metric(&metrics, "comet_ingest_backpressure_total") - refused_before;
    proxy.throttle(0);

    sender.run_for(AFTER, &|| log(&comet)).await;
    let (stored, counters) =
        settle_and_count(&mut sender, &upstream, &database, &|| log(&comet)).await;
    let peak_rss_kib = memory_kib(pid, "VmHWM");
    eprintln!(
        "outages/slow: RSS {rss_before_kib} KiB before, peak {peak_rss_kib} KiB; most buffered \
         {most_buffered} bytes of {BUDGET}; {backpressure} writes refused\n  at the throttle's \
         end {during:?}\n  settled {counters:?}\n  stored {stored:?}"
    );
    assert!(
        backpressure > 0.0,
        "no write was refused while inserts crawled:\n{metrics}"
    );
    assert!(
        most_buffered <= BUDGET as f64,
        "Comet buffered {most_buffered} bytes, over its budget of {BUDGET}"
    );
    assert!(
        during.retried > 0.0,
        "Prometheus retried nothing while Comet refused writes: {during:?}"
    );
    // What stays is the budget, not the backlog: that waits in
    // Prometheus's WAL.
    assert!(
        peak_rss_kib <= rss_before_kib + 64 * 1024,
        "Comet's memory grew from {rss_before_kib} KiB to a peak of {peak_rss_kib} KiB"
    );
    assert!(comet.terminate().await.success(), "{}", log(&comet));
}
