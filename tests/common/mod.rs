//! Integration-test harness: one real ClickHouse server per test run, a
//! database of its own for every test, and helpers to run the `comet`
//! binary as a child process.
//!
//! The server is the one named by `COMET_TEST_CLICKHOUSE_URL` (the test
//! command `scripts/test.sh` starts one for the whole run), or, when that is
//! unset, a managed ClickHouse started once per test binary through
//! `comet clickhouse`.

#![allow(dead_code)]

pub mod api;
pub mod cluster;
pub mod peers;
pub mod sender;
pub mod throttle;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use comet_schema::migrate::{latest_version, migrate};
use comet_schema::{RetryPolicy, SchemaOptions, Store, StoreSettings, Topology};

pub const COMET: &str = env!("CARGO_BIN_EXE_comet");

/// The workspace root (where `.chdb-venv` lives).
pub fn workspace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The chdb venv tests use for managed servers.
pub fn chdb_venv() -> PathBuf {
    std::env::var_os("COMET_MANAGED_CLICKHOUSE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join(".chdb-venv"))
}

/// A free TCP port on 127.0.0.1 (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// URL of the run's ClickHouse server.
pub fn clickhouse_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("COMET_TEST_CLICKHOUSE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => start_shared_clickhouse(),
    })
    .clone()
}

/// Starts `comet clickhouse` from a thread that lives as long as the test
/// process, with a parent-death signal, so the server goes when we go.
fn start_shared_clickhouse() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let dir = tempfile::tempdir().expect("temp dir");
        let (child, url) = spawn_clickhouse(dir.path());
        tx.send(url).expect("send URL");
        // Keep the thread (the parent of record for PDEATHSIG) and the
        // temporary directory alive for the whole process.
        let _keep = (dir, child);
        loop {
            std::thread::park();
        }
    });
    rx.recv_timeout(Duration::from_secs(180))
        .expect("the test ClickHouse did not start; is the chdb venv there (scripts/setup.sh)?")
}

/// Runs `comet clickhouse` (a managed ClickHouse server) in `dir` on free
/// loopback ports; returns the process and the server's URL once it answers.
pub fn spawn_clickhouse(dir: &std::path::Path) -> (Child, String) {
    spawn_clickhouse_on(dir, free_port(), free_port())
}

/// [`spawn_clickhouse`] on given ports, so a stopped server can come back
/// at the same URL.
pub fn spawn_clickhouse_on(
    dir: &std::path::Path,
    http_port: u16,
    tcp_port: u16,
) -> (Child, String) {
    let mut cmd = Command::new(COMET);
    cmd.args(["clickhouse", "--log-level", "warn", "--data-dir"])
        .arg(dir)
        .arg("--managed-clickhouse-venv")
        .arg(chdb_venv())
        .arg("--managed-clickhouse-http-port")
        .arg(http_port.to_string())
        .arg("--managed-clickhouse-tcp-port")
        .arg(tcp_port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    set_parent_death_signal(&mut cmd);
    let mut child = cmd.spawn().expect("cannot run comet clickhouse");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("reading the URL");
    let url = line.trim().to_string();
    assert!(
        url.starts_with("http://"),
        "comet clickhouse printed {url:?}; run scripts/setup.sh first"
    );
    (child, url)
}

/// Makes the kernel send SIGTERM to the child when this thread exits.
pub fn set_parent_death_signal(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A unique database name for one test.
pub fn unique_database(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn store_settings(database: &str) -> StoreSettings {
    StoreSettings {
        url: clickhouse_url(),
        user: "default".into(),
        password: String::new(),
        database: database.into(),
        tls_ca_file: None,
        connect_timeout: Duration::from_secs(5),
        compression: true,
        query_timeout: Duration::from_secs(60),
        retry: RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
        },
        topology_settings: Vec::new(),
    }
}

/// A database of its own, migrated to the latest schema.
pub struct TestDb {
    pub store: Store,
    pub options: SchemaOptions,
}

impl TestDb {
    pub async fn new() -> Self {
        Self::with_retention(Some(Duration::from_secs(30 * 86400))).await
    }

    pub async fn with_retention(retention: Option<Duration>) -> Self {
        let db = Self::empty(retention);
        migrate(&db.store, &db.options, latest_version())
            .await
            .expect("migrate the test database");
        db
    }

    /// A database name and store, with nothing created yet.
    pub fn empty(retention: Option<Duration>) -> Self {
        let database = unique_database("comet_test");
        let store = Store::new(store_settings(&database)).expect("store");
        Self {
            store,
            options: SchemaOptions {
                database,
                retention,
                topology: Topology::SingleNode,
            },
        }
    }

    pub fn name(&self) -> &str {
        &self.options.database
    }

    /// Runs a query and returns ClickHouse's TSV output (for assertions).
    pub async fn text(&self, sql: &str) -> String {
        http_query(sql).await
    }
}

/// Runs `sql` over ClickHouse's HTTP interface and returns the body,
/// panicking on an error status.
pub async fn http_query(sql: &str) -> String {
    http_query_on(&clickhouse_url(), sql).await
}

/// [`http_query`] on the ClickHouse server at `url`.
pub async fn http_query_on(url: &str, sql: &str) -> String {
    let response = reqwest::Client::new()
        .post(url)
        .body(sql.to_string())
        .send()
        .await
        .expect("ClickHouse HTTP request");
    let status = response.status();
    let body = response.text().await.expect("ClickHouse response body");
    assert!(status.is_success(), "{sql}\n-> {status}: {body}");
    body
}

/// `comet serve` on a new database named after `prefix`, plus `extra`
/// flags; returns the process (not yet ready) and the database.
pub fn serve_new_database(prefix: &str, extra: &[&str]) -> (CometProcess, String) {
    let database = unique_database(prefix);
    (serve_database(&database, extra), database)
}

/// `comet serve` on `database` of the test ClickHouse, plus `extra` flags
/// (not yet ready).
pub fn serve_database(database: &str, extra: &[&str]) -> CometProcess {
    let url = clickhouse_url();
    let mut args = vec![
        "serve",
        "--clickhouse-url",
        &url,
        "--clickhouse-database",
        database,
    ];
    args.extend_from_slice(extra);
    CometProcess::spawn(&args)
}

/// Runs `comet <args>` to the end; fails the test unless it succeeds, and
/// returns its stdout.
pub async fn comet_stdout(args: &[&str]) -> String {
    let output = tokio::process::Command::new(COMET)
        .args(args)
        .output()
        .await
        .expect("comet runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "comet {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The value of the first line of `/metrics` text starting with `prefix`
/// (0 when absent).
pub fn metric_value(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A `comet` child process.
pub struct CometProcess {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl CometProcess {
    /// Runs `comet <args>` with stderr captured to a file; the HTTP port is
    /// chosen here and passed as --listen-address.
    pub fn spawn(args: &[&str]) -> Self {
        Self::spawn_on(args, free_port())
    }

    /// [`CometProcess::spawn`] listening on `port`, so a restarted Comet
    /// comes back at the same address.
    pub fn spawn_on(args: &[&str], port: u16) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("comet.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(COMET);
        cmd.args(args)
            .arg("--listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .env("COMET_DATA_DIR", dir.path().join("data"))
            .env("COMET_LOG_LEVEL", "info")
            // Tests run side by side: no fixed OTLP ports unless a test
            // asks for them with flags (flags win over the environment).
            .env("COMET_OTLP_GRPC_LISTEN_ADDRESS", "")
            .env("COMET_OTLP_HTTP_LISTEN_ADDRESS", "")
            .stdout(Stdio::null())
            .stderr(log_file);
        set_parent_death_signal(&mut cmd);
        let child = cmd.spawn().expect("spawn comet");
        Self {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self._dir.path().join("data")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Comet's own `/metrics` (text format).
    pub async fn metrics_text(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("/metrics body")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until /-/ready answers 200.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("comet exited ({status}) before ready:\n{}", self.log_text());
            }
            if let Ok(r) = client.get(self.url("/-/ready")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "comet not ready after {timeout:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the process to exit on its own.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "comet still running after {timeout:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        self.wait_exit(Duration::from_secs(60)).await
    }
}

impl Drop for CometProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
