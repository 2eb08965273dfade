//! A real replicated, sharded ClickHouse cluster for the tests of one test
//! binary: `comet clickhouse --cluster 2x2` (four ClickHouse 25.8 servers
//! and Debian's ZooKeeper 3.8 on loopback), started once and stopped with
//! the test process; each test makes its own database.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::{COMET, chdb_venv, set_parent_death_signal, workspace_dir};

pub const SHARDS: usize = 2;
pub const REPLICAS: usize = 2;

/// The ZooKeeper launcher `scripts/install-zookeeper.sh` makes.
fn zookeeper_launcher() -> PathBuf {
    std::env::var_os("COMET_TEST_ZOOKEEPER_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join(".tools/zookeeper"))
        .join("bin/comet-zookeeper")
}

/// The HTTP URLs of the test cluster's nodes, shard by shard (started once
/// per test binary, stopped with it).
pub fn cluster_urls() -> &'static [String] {
    &cluster().urls
}

/// The test cluster: its nodes' URLs and its data directory.
pub struct Cluster {
    pub urls: Vec<String>,
    pub dir: PathBuf,
}

pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let launcher = zookeeper_launcher();
        assert!(
            launcher.exists(),
            "{} is missing: run scripts/install-zookeeper.sh",
            launcher.display()
        );
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut cmd = Command::new(COMET);
            cmd.args(["clickhouse", "--log-level", "warn", "--cluster"])
                .arg(format!("{SHARDS}x{REPLICAS}"))
                .arg("--zookeeper")
                .arg(&launcher)
                .arg("--data-dir")
                .arg(dir.path())
                .arg("--managed-clickhouse-venv")
                .arg(chdb_venv())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            set_parent_death_signal(&mut cmd);
            let mut child: Child = cmd.spawn().expect("cannot run comet clickhouse --cluster");
            let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
            let urls: Vec<String> = (0..SHARDS * REPLICAS)
                .map(|_| lines.next().and_then(Result::ok).unwrap_or_default())
                .collect();
            tx.send((urls, dir.path().to_path_buf()))
                .expect("send URLs");
            // The parent of record for PDEATHSIG, and the data, live as
            // long as the test process.
            let _keep = (dir, child);
            loop {
                std::thread::park();
            }
        });
        let (urls, dir) = rx
            .recv_timeout(Duration::from_secs(300))
            .expect("the test cluster did not start");
        assert!(
            urls.iter().all(|u| u.starts_with("http://")),
            "comet clickhouse --cluster printed {urls:?}"
        );
        Cluster { urls, dir }
    })
}

impl Cluster {
    /// The pid of the ClickHouse server of `shard`'s `replica` (1-based),
    /// if it runs: the process whose command line names its config.
    pub fn server_pid(&self, shard: usize, replica: usize) -> Option<u32> {
        let config = self
            .dir
            .join("clickhouse")
            .join(format!("shard{shard}-replica{replica}"))
            .join("config.xml");
        process_with_argument(&config)
    }

    /// The pid of the cluster's ZooKeeper.
    pub fn zookeeper_pid(&self) -> Option<u32> {
        process_with_argument(&self.dir.join("clickhouse/zookeeper/zoo.cfg"))
    }
}

/// A process with `argument` on its command line (paths compared after
/// resolving links, as the launchers are given absolute paths).
fn process_with_argument(argument: &Path) -> Option<u32> {
    let wanted = std::fs::canonicalize(argument).ok()?;
    let wanted = wanted.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == wanted)
                .then_some(pid)
        })
}
