//! A ZooKeeper for the managed cluster: the coordinator its replicated
//! tables and `ON CLUSTER` DDL need (the chdb server is built without
//! ClickHouse Keeper). It is Debian's ZooKeeper 3.8, unpacked by
//! `scripts/install-zookeeper.sh` with a launcher that takes a `zoo.cfg`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::ManagedError;

/// A running standalone ZooKeeper on loopback, restarted when it dies.
pub struct ManagedZooKeeper {
    port: u16,
    stop: watch::Sender<bool>,
    supervisor: JoinHandle<()>,
}

/// How to start the ZooKeeper process.
struct Launch {
    launcher: PathBuf,
    /// How long a clean stop may take before it is killed.
    shutdown_timeout: Duration,
    config: PathBuf,
    dir: PathBuf,
    log: PathBuf,
}

impl Launch {
    fn spawn(&self) -> Result<Child, ManagedError> {
        let mut command = Command::new(&self.launcher);
        command.arg(&self.config).current_dir(&self.dir);
        super::spawn_logged(command, &self.log).map_err(|source| ManagedError::SpawnZooKeeper {
            launcher: self.launcher.clone(),
            source,
        })
    }
}

impl ManagedZooKeeper {
    /// Writes its config under `dir`, starts `launcher` on `port` and waits
    /// (up to `timeout`) until it answers `ruok` with `imok`.
    pub async fn start(
        launcher: &Path,
        dir: &Path,
        port: u16,
        timeout: Duration,
        shutdown_timeout: Duration,
    ) -> Result<Self, ManagedError> {
        if !launcher.exists() {
            return Err(ManagedError::MissingZooKeeper {
                launcher: launcher.to_path_buf(),
            });
        }
        // Absolute: ZooKeeper runs in its own directory.
        let launcher =
            std::fs::canonicalize(launcher).map_err(|source| ManagedError::SpawnZooKeeper {
                launcher: launcher.to_path_buf(),
                source,
            })?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ManagedError::Io { path, source }
        };
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(io(&data))?;
        let dir = std::fs::canonicalize(dir).map_err(io(dir))?;
        let config = dir.join("zoo.cfg");
        std::fs::write(&config, zoo_cfg(&dir.join("data"), port)).map_err(io(&config))?;
        let launch = Launch {
            launcher,
            shutdown_timeout,
            config,
            log: dir.join("zookeeper.log"),
            dir,
        };
        let mut child = launch.spawn()?;
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(ManagedError::ExitedEarly {
                    status: status.to_string(),
                    log: super::last_log_lines(std::slice::from_ref(&launch.log), 15),
                });
            }
            if ruok(port).await {
                break;
            }
            if started.elapsed() > timeout {
                let _ = child.kill().await;
                return Err(ManagedError::NotReady {
                    port,
                    waited: started.elapsed(),
                    log: launch.log,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        info!(port, took = ?started.elapsed(), "managed ZooKeeper is up");
        let (stop, stop_rx) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(child, launch, stop_rx));
        Ok(Self {
            port,
            stop,
            supervisor,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops it (SIGTERM, then SIGKILL after its shutdown timeout).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.supervisor.await;
    }
}

/// Restarts ZooKeeper when it dies (after a second, so one that cannot
/// start does not spin); stops it when asked.
async fn supervise(mut child: Child, launch: Launch, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                warn!(%status, "managed ZooKeeper exited unexpectedly; restarting it");
            }
            _ = stop.changed() => {
                super::terminate(&mut child, "ZooKeeper", launch.shutdown_timeout).await;
                return;
            }
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
            match launch.spawn() {
                Ok(next) => {
                    child = next;
                    break;
                }
                Err(err) => warn!(error = %err, "cannot restart the managed ZooKeeper"),
            }
        }
    }
}

/// A standalone server on loopback only, with only the four-letter
/// commands a health check needs and no admin web server.
fn zoo_cfg(data: &Path, port: u16) -> String {
    format!(
        "# Written by Comet at every start of the managed ZooKeeper; edits are lost.\n\
         tickTime=2000\n\
         dataDir={}\n\
         clientPort={port}\n\
         clientPortAddress=127.0.0.1\n\
         maxClientCnxns=0\n\
         admin.enableServer=false\n\
         4lw.commands.whitelist=ruok,srvr\n\
         autopurge.purgeInterval=1\n",
        data.display()
    )
}

/// `ruok` answered with `imok`.
async fn ruok(port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"ruok").await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer == b"imok")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Ok(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_listens_on_loopback_only() {
        let cfg = zoo_cfg(Path::new("/d"), 2181);
        assert!(cfg.contains("clientPortAddress=127.0.0.1\n"));
        assert!(cfg.contains("clientPort=2181\n"));
        assert!(cfg.contains("admin.enableServer=false"));
    }
}
