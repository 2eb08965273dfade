//! `comet` as an operator runs it: start, readiness, /metrics, shutdown,
//! and a clear one-line error for each way start-up can go wrong.

mod common;

use std::time::Duration;

use common::{CometProcess, chdb_venv, clickhouse_url, free_port, http_query, unique_database};

const START: Duration = Duration::from_secs(120);

#[tokio::test]
async fn serves_health_ready_and_metrics_on_an_external_clickhouse() {
    let database = unique_database("comet_serve");
    let url = clickhouse_url();
    let mut comet = CometProcess::spawn(&[
        "serve",
        "--clickhouse-url",
        &url,
        "--clickhouse-database",
        &database,
    ]);
    comet.wait_ready(START).await;
    let client = reqwest::Client::new();
    let healthy = client.get(comet.url("/-/healthy")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
    let metrics = client.get(comet.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let body = metrics.text().await.unwrap();
    assert!(body.contains("comet_build_info{revision="), "{body}");
    assert!(body.contains("process_resident_memory_bytes"), "{body}");
    // No managed server when a URL is given.
    assert!(!body.contains("comet_managed_clickhouse_up"), "{body}");
    let tables = http_query(&format!("SHOW TABLES FROM `{database}` FORMAT TSV")).await;
    assert!(tables.contains("samples") && tables.contains("series") && tables.contains("metadata"));

    let status = comet.terminate().await;
    assert!(status.success(), "{status}\n{}", comet.log_text());
    assert!(comet.log_text().contains("Comet stopped"));

    // A second start on the same database works and applies nothing.
    let mut again = CometProcess::spawn(&[
        "serve",
        "--clickhouse-url",
        &url,
        "--clickhouse-database",
        &database,
    ]);
    again.wait_ready(START).await;
    assert!(
        again.log_text().contains("applied=[]"),
        "{}",
        again.log_text()
    );
    assert!(again.terminate().await.success());
}

/// The embedded default: no URL, so comet runs its own ClickHouse, restarts
/// it when it dies, and leaves nothing behind when stopped.
#[tokio::test]
async fn managed_clickhouse_is_started_supervised_and_stopped() {
    let http_port = free_port();
    let mut comet = CometProcess::spawn(&[
        "serve",
        "--managed-clickhouse-venv",
        chdb_venv().to_str().unwrap(),
        "--managed-clickhouse-http-port",
        &http_port.to_string(),
        "--managed-clickhouse-tcp-port",
        &free_port().to_string(),
    ]);
    comet.wait_ready(START).await;
    let data = comet.data_dir().join("clickhouse");
    assert!(data.join("config.xml").exists());
    assert!(data.join("data").is_dir());
    let server_pid = managed_server_pid(&data).expect("a managed server process");

    // Kill it: readiness drops, the supervisor restarts it, readiness returns.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    comet.wait_ready(START).await;
    let metrics = reqwest::get(comet.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("comet_managed_clickhouse_restarts_total 1"),
        "{metrics}"
    );
    let new_pid = managed_server_pid(&data).expect("restarted server");
    assert_ne!(new_pid, server_pid);

    let status = comet.terminate().await;
    assert!(status.success(), "{status}\n{}", comet.log_text());
    // Nothing left behind: the server process is gone and its port is free.
    for _ in 0..50 {
        if managed_server_pid(&data).is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        managed_server_pid(&data),
        None,
        "managed ClickHouse still running"
    );
    assert!(std::net::TcpListener::bind(("127.0.0.1", http_port)).is_ok());
}

/// The pid of a process whose command line names this data directory.
fn managed_server_pid(data: &std::path::Path) -> Option<i32> {
    let needle = data.join("config.xml");
    let needle = needle.to_string_lossy();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // Ignore zombies (state Z) that are merely waiting to be reaped.
            let state = stat.rsplit(')').next()?.split_whitespace().next()?;
            (cmdline.contains(needle.as_ref()) && state != "Z").then_some(pid)
        })
}

/// Runs comet to completion and returns (success, stderr).
async fn run_to_exit(args: &[&str]) -> (bool, String) {
    let mut comet = CometProcess::spawn(args);
    let status = comet.wait_exit(Duration::from_secs(60)).await;
    (status.success(), comet.log_text())
}

/// Runs comet with `args` (its own --listen-address) and a data directory;
/// returns (success, stderr).
async fn run_with_data_dir(args: &[&str], data_dir: &std::path::Path) -> (bool, String) {
    let output = tokio::process::Command::new(common::COMET)
        .args(args)
        .env("COMET_DATA_DIR", data_dir)
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_one_clear_line(stderr: &str, wanted: &[&str]) {
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("comet: error: "), "{stderr}");
    for w in wanted {
        assert!(last.contains(w), "missing {w:?} in {last:?}");
    }
}

#[tokio::test]
async fn broken_config_file_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("comet.yaml");
    std::fs::write(&path, "clickhouse:\n  url: [not, a, string\n").unwrap();
    let (ok, stderr) = run_to_exit(&["serve", "--config", path.to_str().unwrap()]).await;
    assert!(!ok);
    assert_one_clear_line(&stderr, &["comet.yaml is not valid"]);
    assert!(!dir.path().join("data").exists());

    std::fs::write(&path, "retention: 1m\n").unwrap();
    let (ok, stderr) = run_to_exit(&["serve", "--config", path.to_str().unwrap()]).await;
    assert!(!ok);
    assert_one_clear_line(&stderr, &["retention 1m is shorter than 1h"]);

    let (ok, stderr) = run_to_exit(&["serve", "--config", "/nonexistent/comet.yaml"]).await;
    assert!(!ok);
    assert_one_clear_line(
        &stderr,
        &["cannot read config file /nonexistent/comet.yaml"],
    );
}

#[tokio::test]
async fn unreachable_clickhouse_is_one_clear_error() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let (ok, stderr) = run_to_exit(&[
        "serve",
        "--clickhouse-url",
        &url,
        "--clickhouse-startup-timeout",
        "1s",
    ])
    .await;
    assert!(!ok);
    assert_one_clear_line(&stderr, &[&url, "did not answer", "--clickhouse-url"]);
}

#[tokio::test]
async fn port_in_use_is_one_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let url = clickhouse_url();
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let (ok, stderr) = run_with_data_dir(
        &[
            "serve",
            "--clickhouse-url",
            &url,
            "--listen-address",
            &listen,
        ],
        &dir.path().join("data"),
    )
    .await;
    assert!(!ok);
    assert_one_clear_line(
        &stderr,
        &[
            "cannot listen on",
            "Address already in use",
            "--listen-address",
        ],
    );
    assert!(!dir.path().join("data").exists());

    // The managed server's ports are checked before anything is created.
    let listen = format!("127.0.0.1:{}", free_port());
    let (ok, stderr) = run_with_data_dir(
        &[
            "serve",
            "--listen-address",
            &listen,
            "--managed-clickhouse-venv",
            chdb_venv().to_str().unwrap(),
            "--managed-clickhouse-http-port",
            &port.to_string(),
        ],
        &dir.path().join("data"),
    )
    .await;
    assert!(!ok);
    assert_one_clear_line(
        &stderr,
        &[&format!("port {port}"), "--managed-clickhouse-http-port"],
    );
    assert!(!dir.path().join("data").exists());
}

#[tokio::test]
async fn missing_venv_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("no-venv");
    let (ok, stderr) = run_to_exit(&[
        "serve",
        "--managed-clickhouse-venv",
        venv.to_str().unwrap(),
        "--managed-clickhouse-http-port",
        &free_port().to_string(),
    ])
    .await;
    assert!(!ok);
    assert_one_clear_line(
        &stderr,
        &["scripts/setup.sh", "python3", "--clickhouse-url"],
    );
}

#[tokio::test]
async fn help_documents_every_command() {
    let output = tokio::process::Command::new(common::COMET)
        .arg("--help")
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["serve", "clickhouse", "migrate", "config"] {
        assert!(help.contains(command), "{help}");
    }
    let output = tokio::process::Command::new(common::COMET)
        .args(["config", "--retention", "30d"])
        .output()
        .await
        .unwrap();
    let yaml = String::from_utf8_lossy(&output.stdout);
    assert!(yaml.contains("retention: 30days"), "{yaml}");
}
