//! Faults on a real replicated, sharded ClickHouse cluster (2 shards x 2
//! replicas and ZooKeeper, `comet clickhouse --cluster 2x2`) under a real
//! sender: a Prometheus 3.5 scrapes node_exporter every second and
//! remote-writes to a Comet in cluster mode (inserts acknowledged once on
//! both replicas of every shard they touch). Afterwards ClickHouse must
//! hold exactly the samples Prometheus delivered and holds in its own TSDB.
//!
//! The faults take fixed times, but what is checked is counts after the
//! sender's queue settled, and answers, never durations. The tests share
//! one cluster and take turns: a fault in one would be a fault in all.

mod common;

use std::time::{Duration, Instant};

use common::CometProcess;
use common::cluster::{Cluster, SHARDS, cluster};
use common::sender::{Sender, settle_and_count};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::Mutex;

const START: Duration = Duration::from_secs(180);
/// Healthy sending before and after each fault.
const BEFORE: Duration = Duration::from_secs(8);
const AFTER: Duration = Duration::from_secs(5);

static TURN: Mutex<()> = Mutex::const_new(());

fn signal(pid: u32, signal: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), signal);
}

/// `comet serve` in cluster mode on the first node, on a new database.
async fn cluster_comet(cluster: &Cluster) -> (CometProcess, String) {
    let database = common::unique_database("comet_cluster_fault");
    let mut comet = CometProcess::spawn(&[
        "serve",
        "--clickhouse-url",
        &cluster.urls[0],
        "--clickhouse-cluster",
        "comet",
        "--clickhouse-database",
        &database,
    ]);
    comet.wait_ready(START).await;
    (comet, database)
}

/// The Comet's log, for failure messages.
fn log(comet: &CometProcess) -> String {
    format!("--- comet log:\n{}", comet.log_text())
}

/// [`cluster_comet`] with a Prometheus remote-writing to it, after
/// [`BEFORE`] of healthy sending.
async fn under_load(cluster: &Cluster) -> (CometProcess, String, Sender) {
    let (comet, database) = cluster_comet(cluster).await;
    let mut sender = Sender::start(&comet.url("/api/v1/write")).await;
    sender.run_for(BEFORE, &|| log(&comet)).await;
    (comet, database, sender)
}

/// A query through Comet's API: its HTTP status and body.
async fn query(comet: &CometProcess, promql: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(comet.url("/api/v1/query"))
        .query(&[("query", promql)])
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("query");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Stops scraping, lets the queue settle and checks that the cluster holds
/// exactly what Prometheus delivered (read through the first node).
async fn settle_and_check(
    sender: &mut Sender,
    cluster: &Cluster,
    database: &str,
    context: &dyn Fn() -> String,
) {
    // The check's own subqueries read Distributed tables too.
    let url = format!("{}/?distributed_product_mode=global", cluster.urls[0]);
    let (stored, counters) = settle_and_count(sender, &url, database, context).await;
    eprintln!("cluster_faults: settled {counters:?}\n  stored {stored:?}");
}

/// One replica of every shard is SIGKILLed under load; `comet clickhouse`
/// restarts them. Queries answer meanwhile (from the other replicas), and
/// every sample Prometheus sent is stored exactly once in the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_of_each_shard_killed_loses_nothing() {
    let _turn = TURN.lock().await;
    let cluster = cluster();
    let (mut comet, database, mut sender) = under_load(cluster).await;

    let victims: Vec<(usize, u32)> = (1..=SHARDS)
        .map(|shard| {
            let pid = cluster
                .server_pid(shard, 2)
                .unwrap_or_else(|| panic!("no server for shard {shard} replica 2"));
            (shard, pid)
        })
        .collect();
    for (_, pid) in &victims {
        signal(*pid, Signal::SIGKILL);
    }
    // Queries are answered by the live replicas while these are down or
    // coming back.
    let (status, body) = query(&comet, "count(up)").await;
    assert_eq!(
        status, 200,
        "query with a replica of each shard down: {body}"
    );
    assert!(body.contains(r#""value":"#), "{body}");

    // Back under new pids (bounded wait; the supervisor retries each second).
    let waiting = Instant::now();
    for (shard, old) in &victims {
        loop {
            match cluster.server_pid(*shard, 2) {
                Some(pid) if pid != *old => break,
                _ => {}
            }
            assert!(
                waiting.elapsed() < Duration::from_secs(120),
                "shard {shard} replica 2 was not restarted"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    sender.run_for(AFTER, &|| log(&comet)).await;
    settle_and_check(&mut sender, cluster, &database, &|| log(&comet)).await;
    assert!(comet.terminate().await.success(), "{}", log(&comet));
}

/// ZooKeeper is frozen (SIGSTOP) for 30 s under load: replicated inserts
/// cannot finish, so Comet answers remote-write with a retryable error and
/// Prometheus retries; once it runs again everything arrives, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_stopped_for_30s_loses_nothing() {
    let _turn = TURN.lock().await;
    let cluster = cluster();
    let (mut comet, database, mut sender) = under_load(cluster).await;

    let zookeeper = cluster.zookeeper_pid().expect("the cluster's ZooKeeper");
    let before = sender.counters().await;
    signal(zookeeper, Signal::SIGSTOP);
    let stopped = Instant::now();
    // Queries need no Keeper: they keep answering.
    let (status, body) = query(&comet, "count(up)").await;
    if status != 200 {
        signal(zookeeper, Signal::SIGCONT);
        panic!("query while ZooKeeper was stopped: {status} {body}");
    }
    while stopped.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(Some(status)) = comet.child.try_wait() {
            signal(zookeeper, Signal::SIGCONT);
            panic!(
                "comet exited ({status}) while ZooKeeper was stopped\n{}",
                log(&comet)
            );
        }
    }
    let during = sender.counters().await;
    signal(zookeeper, Signal::SIGCONT);
    assert!(
        during.retried > before.retried,
        "Prometheus retried nothing while ZooKeeper was stopped: {before:?} -> {during:?}\n{}",
        log(&comet)
    );
    sender.run_for(AFTER, &|| log(&comet)).await;
    settle_and_check(&mut sender, cluster, &database, &|| log(&comet)).await;
    assert!(comet.terminate().await.success(), "{}", log(&comet));
}
