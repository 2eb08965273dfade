//! The managed local ClickHouse: Comet's embedded default.
//!
//! When no ClickHouse URL is configured, Comet runs a real ClickHouse 25.8
//! server as a supervised child process. The server comes from the `chdb`
//! wheel (installed in a Python venv by `scripts/setup.sh`), whose shared
//! library exports `clickhouse-server`'s entry point; a small launcher script
//! calls it. The server listens on loopback only, keeps its data under
//! Comet's data directory, is restarted if it dies, and is stopped with
//! Comet.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge, Registry};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

mod cluster;
mod zookeeper;

pub use cluster::{CLUSTER_NAME, ClusterNode, ClusterShape, ManagedCluster};
pub use zookeeper::ManagedZooKeeper;

const LAUNCHER: &str = include_str!("launch_clickhouse.py");
/// The chdb release whose library exports the server entry point.
pub const CHDB_VERSION: &str = "3.7.2";

/// Where and how to run the managed server.
#[derive(Debug, Clone)]
pub struct ManagedSettings {
    /// Python venv with `chdb` installed.
    pub venv: PathBuf,
    /// The server's own directory (data, logs, config).
    pub data_dir: PathBuf,
    pub http_port: u16,
    pub tcp_port: u16,
    pub startup_timeout: Duration,
    /// How long a clean shutdown may take before the server is killed.
    pub shutdown_timeout: Duration,
    /// This server's place in a managed cluster; `None` for a single server.
    pub cluster: Option<ClusterNode>,
}

#[derive(Debug, Error)]
pub enum ManagedError {
    #[error(
        "the managed ClickHouse needs a Python venv with chdb=={CHDB_VERSION} at {venv}, and \
         {missing} is missing; run `scripts/setup.sh` (it needs python3 >= 3.8), set \
         --managed-clickhouse-venv, or use your own server with --clickhouse-url"
    )]
    MissingVenv { venv: PathBuf, missing: PathBuf },
    #[error(
        "port {port} (managed ClickHouse {what} port) on 127.0.0.1 is in use; stop what holds \
         it or choose another with --managed-clickhouse-{what}-port"
    )]
    PortInUse { port: u16, what: &'static str },
    #[error("cannot prepare the managed ClickHouse directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the managed cluster needs ZooKeeper, and its launcher {launcher} is missing; run \
         `scripts/install-zookeeper.sh` (Debian's ZooKeeper 3.8, unpacked into .tools) or set \
         --zookeeper"
    )]
    MissingZooKeeper { launcher: PathBuf },
    #[error("cannot start the managed ZooKeeper with {launcher}")]
    SpawnZooKeeper {
        launcher: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the managed ClickHouse with the venv's python")]
    Spawn(#[source] std::io::Error),
    #[error("the managed ClickHouse exited during start-up ({status}); its last log lines:\n{log}")]
    ExitedEarly { status: String, log: String },
    #[error(
        "the managed ClickHouse did not answer on 127.0.0.1:{port} within {waited:?}; see {log}"
    )]
    NotReady {
        port: u16,
        waited: Duration,
        log: PathBuf,
    },
}

/// Counters about the managed server, registered in Comet's /metrics.
#[derive(Clone)]
pub struct ManagedMetrics {
    restarts: IntCounter,
    up: IntGauge,
}

impl ManagedMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let restarts = IntCounter::new(
            "comet_managed_clickhouse_restarts_total",
            "Times the managed ClickHouse server died and was restarted.",
        )?;
        let up = IntGauge::new(
            "comet_managed_clickhouse_up",
            "1 while the managed ClickHouse server process is running.",
        )?;
        registry.register(Box::new(restarts.clone()))?;
        registry.register(Box::new(up.clone()))?;
        Ok(Self { restarts, up })
    }

    /// Metrics that are not exported anywhere (tests, one-off tools).
    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).unwrap_or_else(|_| unreachable!("fresh registry"))
    }
}

/// A running managed server and its supervisor.
pub struct ManagedClickHouse {
    http_port: u16,
    stop: watch::Sender<bool>,
    supervisor: JoinHandle<()>,
}

impl ManagedClickHouse {
    /// Checks prerequisites, starts the server and waits until it answers.
    pub async fn start(
        settings: ManagedSettings,
        metrics: ManagedMetrics,
    ) -> Result<Self, ManagedError> {
        // Absolute paths: the server runs in its own directory.
        let exe = std::env::current_exe().ok();
        let venv = locate_beside_exe(&settings.venv, exe.as_deref());
        let venv = std::fs::canonicalize(&venv).unwrap_or(venv);
        let python = venv.join("bin").join("python");
        if !python.exists() {
            return Err(ManagedError::MissingVenv {
                venv: settings.venv.clone(),
                missing: python,
            });
        }
        let library = find_chdb_library(&venv).ok_or_else(|| ManagedError::MissingVenv {
            venv: settings.venv.clone(),
            missing: settings
                .venv
                .join("lib/python3.*/site-packages/chdb/_chdb.abi3.so"),
        })?;
        for (port, what) in [(settings.http_port, "http"), (settings.tcp_port, "tcp")] {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                return Err(ManagedError::PortInUse { port, what });
            }
        }

        let layout = Layout::prepare(&settings)?;
        let launch = Launch {
            python,
            library,
            layout,
        };

        let started = Instant::now();
        let mut child = launch.spawn()?;
        metrics.up.set(1);
        if let Err(err) = wait_ready(&mut child, &launch.layout, &settings, started).await {
            metrics.up.set(0);
            let _ = child.kill().await;
            return Err(err);
        }
        info!(
            http_port = settings.http_port,
            tcp_port = settings.tcp_port,
            data = %settings.data_dir.display(),
            took = ?started.elapsed(),
            "managed ClickHouse is up"
        );

        let (stop, stop_rx) = watch::channel(false);
        let http_port = settings.http_port;
        let supervisor = tokio::spawn(supervise(child, launch, settings, metrics, stop_rx));
        Ok(Self {
            http_port,
            stop,
            supervisor,
        })
    }

    /// The HTTP URL Comet's store client should use.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Stops the server cleanly (SIGTERM, then SIGKILL after the timeout).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(err) = self.supervisor.await {
            error!(error = %err, "managed ClickHouse supervisor failed");
        }
    }
}

/// Files and folders of the managed server under its data directory.
struct Layout {
    root: PathBuf,
    config: PathBuf,
    launcher: PathBuf,
    log_dir: PathBuf,
    launcher_log: PathBuf,
}

impl Layout {
    /// Creates the directories and writes the config and launcher.
    fn prepare(settings: &ManagedSettings) -> Result<Self, ManagedError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ManagedError::Io { path, source }
        };
        let dir = &settings.data_dir;
        std::fs::create_dir_all(dir.join("log")).map_err(io(dir))?;
        std::fs::create_dir_all(dir.join("data")).map_err(io(dir))?;
        let root = std::fs::canonicalize(dir).map_err(io(dir))?;
        let log_dir = root.join("log");
        let layout = Self {
            config: root.join("config.xml"),
            launcher: root.join("launch_clickhouse.py"),
            launcher_log: log_dir.join("launcher.log"),
            log_dir,
            root,
        };
        std::fs::write(&layout.config, server_config(&layout.root, settings))
            .map_err(io(&layout.config))?;
        std::fs::write(&layout.launcher, LAUNCHER).map_err(io(&layout.launcher))?;
        Ok(layout)
    }
}

/// How to start one server process.
struct Launch {
    python: PathBuf,
    library: PathBuf,
    layout: Layout,
}

impl Launch {
    fn spawn(&self) -> Result<Child, ManagedError> {
        let mut command = Command::new(&self.python);
        command
            .arg(&self.layout.launcher)
            .arg(&self.library)
            .arg(&self.layout.config)
            .current_dir(&self.layout.root)
            .env("CLICKHOUSE_WATCHDOG_ENABLE", "0");
        spawn_logged(command, &self.layout.launcher_log).map_err(ManagedError::Spawn)
    }
}

/// Starts `command` with its output appended to `log`, in its own process
/// group (a Ctrl-C in the terminal reaches Comet, which then stops its
/// children in order, instead of all at once), killed if dropped.
fn spawn_logged(mut command: Command, log: &Path) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
}

/// Where a file of the checkout is (the venv, the ZooKeeper launcher): the
/// path as given when it exists (absolute, or relative to the working
/// directory); else a relative path is looked for beside the executable and
/// in the directories above it, so a Comet started elsewhere
/// (`/srv/comet/target/release/comet serve` from `/`) still finds its
/// checkout's `.chdb-venv`.
pub fn locate_beside_exe(path: &Path, exe: Option<&Path>) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    exe.and_then(Path::parent)
        .into_iter()
        .flat_map(Path::ancestors)
        .map(|dir| dir.join(path))
        .find(|candidate| candidate.exists())
        .unwrap_or_else(|| path.to_path_buf())
}

/// Looks for `lib/python3.*/site-packages/chdb/_chdb.abi3.so` in the venv.
fn find_chdb_library(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    std::fs::read_dir(&lib)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages/chdb/_chdb.abi3.so"))
        .find(|p| p.exists())
}

async fn wait_ready(
    child: &mut Child,
    layout: &Layout,
    settings: &ManagedSettings,
    started: Instant,
) -> Result<(), ManagedError> {
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ManagedError::ExitedEarly {
                status: status.to_string(),
                log: last_log_lines(
                    &[
                        layout.launcher_log.clone(),
                        layout.log_dir.join("clickhouse-server.err.log"),
                    ],
                    15,
                ),
            });
        }
        if ping(settings.http_port).await {
            return Ok(());
        }
        if started.elapsed() > settings.startup_timeout {
            return Err(ManagedError::NotReady {
                port: settings.http_port,
                waited: started.elapsed(),
                log: layout.log_dir.join("clickhouse-server.err.log"),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET /ping` answered with `Ok.`.
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /ping HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response.ends_with(b"Ok.\n"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Ok(true))
    )
}

/// Restarts the server when it dies, with a growing delay so a server that
/// cannot start does not spin; stops it when asked.
async fn supervise(
    mut child: Child,
    launch: Launch,
    settings: ManagedSettings,
    metrics: ManagedMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut delay = Duration::from_secs(1);
    let mut started = Instant::now();
    loop {
        tokio::select! {
            status = child.wait() => {
                metrics.up.set(0);
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                warn!(%status, "managed ClickHouse exited unexpectedly");
            }
            _ = stop.changed() => {
                terminate(&mut child, "ClickHouse", settings.shutdown_timeout).await;
                metrics.up.set(0);
                return;
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            delay = Duration::from_secs(1);
        }
        loop {
            info!(restart_in = ?delay, "restarting the managed ClickHouse");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(30));
            match launch.spawn() {
                Ok(next) => {
                    child = next;
                    started = Instant::now();
                    metrics.restarts.inc();
                    metrics.up.set(1);
                    break;
                }
                Err(err) => error!(error = %err, "cannot restart the managed ClickHouse"),
            }
        }
    }
}

/// SIGTERM, wait, then SIGKILL; `what` names the process in the logs.
async fn terminate(child: &mut Child, what: &str, timeout: Duration) {
    let Some(pid) = child.id() else { return };
    info!(pid, "stopping the managed {what}");
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_err() {
        return;
    }
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(_) => info!("managed {what} stopped"),
        Err(_) => {
            warn!(?timeout, "managed {what} did not stop in time; killing it");
            let _ = child.kill().await;
        }
    }
}

/// The last `n` lines of each of `files` that exists, indented, for an
/// error message.
fn last_log_lines(files: &[PathBuf], n: usize) -> String {
    let mut lines = Vec::new();
    for file in files {
        if let Ok(text) = std::fs::read_to_string(file) {
            let tail: Vec<&str> = text.lines().rev().take(n).collect();
            lines.extend(tail.into_iter().rev().map(|l| format!("  {l}")));
        }
    }
    if lines.is_empty() {
        "  (no log output)".to_string()
    } else {
        lines.join("\n")
    }
}

/// Escapes text for an XML element.
fn xml_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The server's configuration: loopback only, data and logs under `root`,
/// one passwordless `default` user reachable from loopback only.
fn server_config(root: &Path, settings: &ManagedSettings) -> String {
    let root = xml_text(&root.to_string_lossy());
    format!(
        r#"<!-- Written by Comet at every start of the managed ClickHouse; edits are lost. -->
<clickhouse>
    <logger>
        <level>information</level>
        <log>{root}/log/clickhouse-server.log</log>
        <errorlog>{root}/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>3</count>
        <console>0</console>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http}</http_port>
    <tcp_port>{tcp}</tcp_port>
    <path>{root}/data/</path>
    <tmp_path>{root}/data/tmp/</tmp_path>
    <user_files_path>{root}/data/user_files/</user_files_path>
    <format_schema_path>{root}/data/format_schemas/</format_schema_path>
    <timezone>UTC</timezone>
    <mark_cache_size>536870912</mark_cache_size>
    <!-- Each statement with its duration, rows read and peak memory; Comet
         puts the PromQL it answers in log_comment. Kept a week. -->
    <query_log>
        <database>system</database>
        <table>query_log</table>
        <flush_interval_milliseconds>7500</flush_interval_milliseconds>
        <engine>ENGINE = MergeTree PARTITION BY event_date ORDER BY (event_date, event_time) TTL event_date + INTERVAL 7 DAY DELETE</engine>
    </query_log>
    <max_server_memory_usage_to_ram_ratio>0.75</max_server_memory_usage_to_ram_ratio>
{cluster}
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
            <access_management>1</access_management>
        </default>
    </users>
    <profiles>
        <default/>
    </profiles>
    <quotas>
        <default/>
    </quotas>
</clickhouse>
"#,
        http = settings.http_port,
        tcp = settings.tcp_port,
        cluster = settings
            .cluster
            .as_ref()
            .map(ClusterNode::server_config)
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_venv_is_found_from_the_executable_wherever_comet_starts() {
        let root = tempfile::tempdir().unwrap();
        let checkout = root.path().join("checkout");
        std::fs::create_dir_all(checkout.join(".venv-test/bin")).unwrap();
        std::fs::create_dir_all(checkout.join("target/release")).unwrap();
        let exe = checkout.join("target/release/comet");
        // A relative path that is not under the working directory.
        let relative = Path::new(".venv-test");
        assert!(!relative.exists());
        assert_eq!(
            locate_beside_exe(relative, Some(&exe)),
            checkout.join(".venv-test")
        );
        // An absolute path, or nothing found, stays as given.
        let absolute = root.path().join("elsewhere");
        assert_eq!(locate_beside_exe(&absolute, Some(&exe)), absolute);
        assert_eq!(
            locate_beside_exe(Path::new(".missing-venv"), Some(&exe)),
            Path::new(".missing-venv")
        );
    }

    fn settings(venv: &Path) -> ManagedSettings {
        ManagedSettings {
            venv: venv.to_path_buf(),
            data_dir: venv.join("data"),
            http_port: 18123,
            tcp_port: 19000,
            startup_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
            cluster: None,
        }
    }

    #[test]
    fn config_is_loopback_only_and_escaped() {
        let cfg = server_config(Path::new("/data/a&b"), &settings(Path::new("/v")));
        assert!(cfg.contains("<listen_host>127.0.0.1</listen_host>"));
        assert!(cfg.contains("<http_port>18123</http_port>"));
        assert!(cfg.contains("<path>/data/a&amp;b/data/</path>"));
        assert!(!cfg.contains("0.0.0.0"));
    }

    #[tokio::test]
    async fn missing_venv_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = ManagedClickHouse::start(
            settings(&dir.path().join("nope")),
            ManagedMetrics::unregistered(),
        )
        .await
        .err()
        .unwrap();
        let text = err.to_string();
        assert!(text.contains("scripts/setup.sh"), "{text}");
        assert!(text.contains("--clickhouse-url"), "{text}");
        // Nothing was created for a start that could not happen.
        assert!(!dir.path().join("nope").exists());
    }

    #[tokio::test]
    async fn busy_port_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path();
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(venv.join("bin/python"), "").unwrap();
        let lib = venv.join("lib/python3.11/site-packages/chdb");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("_chdb.abi3.so"), "").unwrap();
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut s = settings(venv);
        s.http_port = busy.local_addr().unwrap().port();
        let err = ManagedClickHouse::start(s, ManagedMetrics::unregistered())
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, ManagedError::PortInUse { what: "http", .. }),
            "{err}"
        );
        assert!(!venv.join("data").exists());
    }
}
