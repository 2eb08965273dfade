//! Real peer programs as child processes for integration tests:
//! Prometheus 3.5 LTS (Debian sid's package, unpacked into `.tools` by
//! `scripts/install-prometheus3.sh`), and node_exporter, Alertmanager and
//! VictoriaMetrics as Debian bookworm packages them
//! (`scripts/install-peers.sh` installs them).
//!
//! Each peer listens on a free port of 127.0.0.1 only, keeps its data in a
//! temporary directory of its own, writes stdout and stderr to a log file
//! there, gets a parent-death signal (so it goes when the test thread goes)
//! and is killed when dropped. Every wait is bounded; a failure panics with
//! the peer's log.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a peer gets to answer its readiness endpoint.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one HTTP request to a peer may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How many lines of a peer's log go into a panic message.
const LOG_TAIL_LINES: usize = 200;

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("HTTP client")
}

/// One running peer program.
pub struct PeerProcess {
    name: &'static str,
    child: Child,
    port: u16,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl PeerProcess {
    /// Runs `program` with the arguments `args` makes from the peer's
    /// directory and port.
    pub fn spawn(
        name: &'static str,
        program: &str,
        args: impl FnOnce(&Path, u16) -> Vec<String>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = super::free_port();
        let log = dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(program);
        cmd.args(args(dir.path(), port))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        super::set_parent_death_signal(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}); install the peers with scripts/install-peers.sh")
        });
        Self {
            name,
            child,
            port,
            log,
            dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the peer's log.
    pub fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let skip = lines.len().saturating_sub(LOG_TAIL_LINES);
        lines[skip..].join("\n")
    }

    /// Panics (with the log) if the peer has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}); its log ({}):\n{}",
                self.name,
                self.log.display(),
                self.log_text()
            );
        }
    }

    /// Panics with `message` and the peer's log.
    pub fn fail(&self, message: &str) -> ! {
        panic!(
            "{}: {message}\n--- {} log ({}):\n{}",
            self.name,
            self.name,
            self.log.display(),
            self.log_text()
        )
    }

    /// Blocks until the port accepts TCP connections.
    pub fn wait_listening(&mut self, timeout: Duration) {
        let started = Instant::now();
        loop {
            self.assert_running();
            if TcpStream::connect_timeout(
                &([127, 0, 0, 1], self.port).into(),
                Duration::from_millis(200),
            )
            .is_ok()
            {
                return;
            }
            if started.elapsed() > timeout {
                self.fail(&format!(
                    "not listening on {} after {timeout:?}",
                    self.address()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `GET path` answers 200.
    pub async fn wait_http_ok(&mut self, path: &str, timeout: Duration) {
        let client = http_client();
        let url = format!("{}{path}", self.url());
        let started = Instant::now();
        loop {
            self.assert_running();
            let last = match client.get(&url).send().await {
                Ok(r) if r.status() == 200 => return,
                Ok(r) => r.status().to_string(),
                Err(e) => e.to_string(),
            };
            if started.elapsed() > timeout {
                self.fail(&format!(
                    "GET {url} not 200 after {timeout:?} (last: {last})"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GET `path` (with `query`), expecting 200; returns the body.
    pub async fn get_text(&self, path: &str, query: &[(&str, String)]) -> String {
        let url = format!("{}{path}", self.url());
        let full = reqwest::Url::parse_with_params(&url, query)
            .unwrap_or_else(|e| self.fail(&format!("bad URL {url}: {e}")));
        let response = match http_client().get(full).send().await {
            Ok(r) => r,
            Err(e) => self.fail(&format!("GET {url}: {e}")),
        };
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status != 200 {
            self.fail(&format!("GET {url} {query:?} -> {status}: {body}"));
        }
        body
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            return status;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if started.elapsed() > timeout {
                self.fail(&format!("still running {timeout:?} after SIGTERM"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Prometheus node_exporter (`prometheus-node-exporter`).
pub struct NodeExporter {
    pub process: PeerProcess,
}

impl NodeExporter {
    /// Starts node_exporter and waits until it listens.
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    pub fn start_with_args(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut process =
            PeerProcess::spawn("node_exporter", "prometheus-node-exporter", |_, port| {
                let mut args = vec![format!("--web.listen-address=127.0.0.1:{port}")];
                args.extend(extra);
                args
            });
        process.wait_listening(READY_TIMEOUT);
        Self { process }
    }

    /// `127.0.0.1:PORT`, what a scrape config targets.
    pub fn address(&self) -> String {
        self.process.address()
    }
}

/// The reference Prometheus: `$COMET_TEST_PROMETHEUS`, else the 3.5 LTS
/// binary `scripts/install-prometheus3.sh` unpacks into `.tools`. Comet
/// follows Prometheus 3's semantics, so that is what every comparison runs
/// against (not bookworm's 2.42 in /usr/bin, kept only for `promtool`).
pub fn prometheus_binary() -> String {
    if let Some(path) = std::env::var_os("COMET_TEST_PROMETHEUS") {
        return path.to_string_lossy().into_owned();
    }
    let path = super::workspace_dir().join(".tools/prometheus-3/usr/bin/prometheus");
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-prometheus3.sh (or set COMET_TEST_PROMETHEUS)",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// A Prometheus server (with `--web.enable-lifecycle`, so it reloads on
/// `POST /-/reload`).
pub struct Prometheus {
    pub process: PeerProcess,
    config: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus with `config_yaml` as its configuration file.
    /// Call [`Prometheus::wait_ready`] before using it.
    pub fn start(config_yaml: &str) -> Self {
        Self::start_with_args(config_yaml, &[])
    }

    pub fn start_with_args(config_yaml: &str, extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut config = PathBuf::new();
        let program = prometheus_binary();
        let process = PeerProcess::spawn("prometheus", &program, |dir, port| {
            config = dir.join("prometheus.yml");
            std::fs::write(&config, config_yaml).expect("write prometheus.yml");
            let mut args = vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--web.enable-lifecycle".to_string(),
                "--log.level=info".to_string(),
            ];
            args.extend(extra);
            args
        });
        Self { process, config }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.process.url()
    }

    /// Waits until `/-/ready` answers 200.
    pub async fn wait_ready(&mut self) {
        self.process.wait_http_ok("/-/ready", READY_TIMEOUT).await;
    }

    /// Replaces the configuration and reloads it (`POST /-/reload`).
    pub async fn reload(&mut self, config_yaml: &str) {
        self.process.assert_running();
        std::fs::write(&self.config, config_yaml).expect("write prometheus.yml");
        let url = format!("{}/-/reload", self.url());
        let response = match http_client().post(&url).send().await {
            Ok(r) => r,
            Err(e) => self.process.fail(&format!("POST {url}: {e}")),
        };
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status != 200 {
            self.process
                .fail(&format!("POST {url} -> {status}: {body}"));
        }
    }

    /// Calls an API endpoint, expects `"status": "success"` and returns
    /// the `data` field.
    pub async fn api(&self, path: &str, params: &[(&str, String)]) -> Value {
        let body = self.process.get_text(path, params).await;
        let value: Value = serde_json::from_str(&body).unwrap_or_else(|e| {
            self.process
                .fail(&format!("{path}: bad JSON ({e}): {body}"))
        });
        if value["status"] != "success" {
            self.process
                .fail(&format!("{path} {params:?} did not succeed: {body}"));
        }
        value["data"].clone()
    }

    /// An instant query at the server's current time; returns `data`
    /// (`{"resultType": ..., "result": ...}`).
    pub async fn query(&self, promql: &str) -> Value {
        self.api("/api/v1/query", &[("query", promql.to_string())])
            .await
    }

    /// An instant query at `time` (Unix seconds); returns `data`.
    pub async fn query_at(&self, promql: &str, time: f64) -> Value {
        self.api(
            "/api/v1/query",
            &[
                ("query", promql.to_string()),
                ("time", format!("{time:.3}")),
            ],
        )
        .await
    }

    /// A range query; returns `data`.
    pub async fn query_range(&self, promql: &str, start: f64, end: f64, step: f64) -> Value {
        self.api(
            "/api/v1/query_range",
            &[
                ("query", promql.to_string()),
                ("start", format!("{start:.3}")),
                ("end", format!("{end:.3}")),
                ("step", format!("{step}")),
            ],
        )
        .await
    }

    /// The active scrape targets (`/api/v1/targets`).
    pub async fn active_targets(&self) -> Vec<Value> {
        let data = self.api("/api/v1/targets", &[]).await;
        data["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Prometheus's own metrics (`/metrics`, text format).
    pub async fn metrics_text(&self) -> String {
        self.process.get_text("/metrics", &[]).await
    }

    /// The sum of every series of Prometheus's own `/metrics` that matches
    /// `selector`: a metric name, optionally with `{label="value",...}`
    /// that the series' labels must include. 0 when none matches.
    pub async fn metric_value(&self, selector: &str) -> f64 {
        sum_metric(&self.metrics_text().await, selector)
    }

    /// SIGTERM, then waits (bounded) for the exit, so the remote-write
    /// queues flush (within `--storage.remote.flush-deadline`, 1m).
    pub async fn stop(&mut self) -> ExitStatus {
        self.process.terminate(Duration::from_secs(90)).await
    }
}

/// A Prometheus Alertmanager, without clustering.
pub struct Alertmanager {
    pub process: PeerProcess,
}

impl Alertmanager {
    /// Starts Alertmanager with `config_yaml`; call `wait_ready`.
    pub fn start(config_yaml: &str) -> Self {
        let process = PeerProcess::spawn("alertmanager", "prometheus-alertmanager", |dir, port| {
            let config = dir.join("alertmanager.yml");
            std::fs::write(&config, config_yaml).expect("write alertmanager.yml");
            vec![
                format!("--config.file={}", config.display()),
                format!("--storage.path={}", dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                // An empty address turns the cluster listener (0.0.0.0:9094) off.
                "--cluster.listen-address=".to_string(),
            ]
        });
        Self { process }
    }

    pub fn url(&self) -> String {
        self.process.url()
    }

    pub async fn wait_ready(&mut self) {
        self.process.wait_http_ok("/-/ready", READY_TIMEOUT).await;
    }
}

/// A single-node VictoriaMetrics.
pub struct VictoriaMetrics {
    pub process: PeerProcess,
}

impl VictoriaMetrics {
    /// Starts VictoriaMetrics; call `wait_ready`.
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    pub fn start_with_args(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let process = PeerProcess::spawn("victoria-metrics", "victoria-metrics", |dir, port| {
            let mut args = vec![
                format!("-httpListenAddr=127.0.0.1:{port}"),
                format!("-storageDataPath={}", dir.join("data").display()),
            ];
            args.extend(extra);
            args
        });
        Self { process }
    }

    pub fn url(&self) -> String {
        self.process.url()
    }

    /// Waits until `/health` answers 200.
    pub async fn wait_ready(&mut self) {
        self.process.wait_http_ok("/health", READY_TIMEOUT).await;
    }
}

/// Sums the samples of a text exposition that match `selector` (see
/// [`Prometheus::metric_value`]).
pub fn sum_metric(text: &str, selector: &str) -> f64 {
    let (name, wanted) = split_series(selector);
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, rest) = match line.rfind('}') {
                Some(end) if line.contains('{') => (&line[..=end], &line[end + 1..]),
                _ => line.split_at(line.find(' ')?),
            };
            let (series_name, labels) = split_series(series.trim());
            if series_name != name || !wanted.iter().all(|w| labels.contains(w)) {
                return None;
            }
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// `name{a="b",c="d"}` into the name and its label pairs (values
/// unescaped only as far as `\"` and `\\`).
fn split_series(series: &str) -> (&str, Vec<(String, String)>) {
    let Some(open) = series.find('{') else {
        return (series, Vec::new());
    };
    let name = &series[..open];
    let body = series[open + 1..].trim_end_matches('}');
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(escaped) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push((key.trim().to_string(), value));
    }
    (name, labels)
}
