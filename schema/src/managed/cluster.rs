//! A managed replicated, sharded ClickHouse cluster on loopback: one
//! ZooKeeper and `shards x replicas` managed servers that know each other
//! through `remote_servers`, with `{shard}`/`{replica}` macros, interserver
//! replication and the distributed DDL queue. For trying Comet's cluster
//! mode on one machine, and for the tests of it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use tracing::info;

use super::{ManagedClickHouse, ManagedError, ManagedMetrics, ManagedSettings, ManagedZooKeeper};

/// The name of the managed cluster in every node's `remote_servers`: what
/// `--clickhouse-cluster` names.
pub const CLUSTER_NAME: &str = "comet";

/// `SHARDSxREPLICAS`, e.g. `2x2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterShape {
    pub shards: usize,
    pub replicas: usize,
}

impl FromStr for ClusterShape {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("expected SHARDSxREPLICAS such as 2x2 (1 to 8 each), got {s:?}");
        let (shards, replicas) = s.split_once(['x', 'X']).ok_or_else(err)?;
        let shards: usize = shards.trim().parse().map_err(|_| err())?;
        let replicas: usize = replicas.trim().parse().map_err(|_| err())?;
        if !(1..=8).contains(&shards) || !(1..=8).contains(&replicas) {
            return Err(err());
        }
        Ok(Self { shards, replicas })
    }
}

impl fmt::Display for ClusterShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.shards, self.replicas)
    }
}

/// One server's place in the cluster and what it must know of the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// 1-based.
    pub shard: usize,
    /// 1-based, within the shard.
    pub replica: usize,
    pub interserver_port: u16,
    pub zookeeper_port: u16,
    /// The native (TCP) port of every replica of every shard.
    pub shards: Vec<Vec<u16>>,
}

impl ClusterNode {
    /// The server configuration elements that make this server a node. The
    /// `{replica}` macro is unique in the whole cluster: Comet's own
    /// bookkeeping tables are one replicated table across all nodes.
    /// `internal_replication`: a Distributed insert writes each shard's
    /// rows to one replica and replication copies them, so rows are not
    /// written twice.
    pub(crate) fn server_config(&self) -> String {
        let shards: String = self
            .shards
            .iter()
            .map(|replicas| {
                let replicas: String = replicas
                    .iter()
                    .map(|port| {
                        format!(
                            "                <replica><host>127.0.0.1</host><port>{port}</port></replica>\n"
                        )
                    })
                    .collect();
                format!(
                    "            <shard>\n                <internal_replication>true</internal_replication>\n{replicas}            </shard>\n"
                )
            })
            .collect();
        format!(
            r#"    <!-- Node {shard}.{replica} of the managed cluster "{CLUSTER_NAME}". -->
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>{interserver}</interserver_http_port>
    <zookeeper>
        <node><host>127.0.0.1</host><port>{zookeeper}</port></node>
        <session_timeout_ms>30000</session_timeout_ms>
    </zookeeper>
    <macros>
        <shard>{shard}</shard>
        <replica>shard{shard}-replica{replica}</replica>
        <cluster>{CLUSTER_NAME}</cluster>
    </macros>
    <remote_servers>
        <{CLUSTER_NAME}>
{shards}        </{CLUSTER_NAME}>
    </remote_servers>
    <distributed_ddl>
        <path>/clickhouse/task_queue/ddl</path>
    </distributed_ddl>
"#,
            shard = self.shard,
            replica = self.replica,
            interserver = self.interserver_port,
            zookeeper = self.zookeeper_port,
        )
    }
}

/// A running managed cluster.
pub struct ManagedCluster {
    zookeeper: ManagedZooKeeper,
    nodes: Vec<ManagedClickHouse>,
}

/// A free TCP port on loopback (free when asked).
fn free_port() -> Result<u16, ManagedError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| ManagedError::Io {
            path: PathBuf::from("127.0.0.1:0"),
            source,
        })
}

impl ManagedCluster {
    /// Starts ZooKeeper (`zookeeper_launcher`) and `shape`'s servers, each
    /// in its own directory under `base.data_dir` (`zookeeper`,
    /// `shard1-replica1`, ...), on free loopback ports; waits until all
    /// answer. `base` gives the venv and time limits; its ports are unused.
    pub async fn start(
        shape: ClusterShape,
        base: &ManagedSettings,
        zookeeper_launcher: PathBuf,
    ) -> Result<Self, ManagedError> {
        let zookeeper = ManagedZooKeeper::start(
            &zookeeper_launcher,
            &base.data_dir.join("zookeeper"),
            free_port()?,
            base.startup_timeout,
            base.shutdown_timeout,
        )
        .await?;
        let mut tcp_ports = Vec::new();
        for _ in 0..shape.shards {
            let mut replicas = Vec::new();
            for _ in 0..shape.replicas {
                replicas.push(free_port()?);
            }
            tcp_ports.push(replicas);
        }
        let mut starts = Vec::new();
        for (s, replicas) in tcp_ports.iter().enumerate() {
            for (r, &tcp_port) in replicas.iter().enumerate() {
                let settings = ManagedSettings {
                    venv: base.venv.clone(),
                    data_dir: base
                        .data_dir
                        .join(format!("shard{}-replica{}", s + 1, r + 1)),
                    http_port: free_port()?,
                    tcp_port,
                    startup_timeout: base.startup_timeout,
                    shutdown_timeout: base.shutdown_timeout,
                    cluster: Some(ClusterNode {
                        shard: s + 1,
                        replica: r + 1,
                        interserver_port: free_port()?,
                        zookeeper_port: zookeeper.port(),
                        shards: tcp_ports.clone(),
                    }),
                };
                starts.push(ManagedClickHouse::start(
                    settings,
                    ManagedMetrics::unregistered(),
                ));
            }
        }
        // Side by side: each server takes a few seconds to start.
        let mut nodes = Vec::new();
        let mut first_error = None;
        for started in futures_util::future::join_all(starts).await {
            match started {
                Ok(node) => nodes.push(node),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        if let Some(err) = first_error {
            for node in nodes {
                node.shutdown().await;
            }
            zookeeper.shutdown().await;
            return Err(err);
        }
        info!(%shape, nodes = nodes.len(), "managed cluster is up");
        Ok(Self { zookeeper, nodes })
    }

    /// Every node's HTTP URL, shard by shard, replica by replica.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(ManagedClickHouse::url).collect()
    }

    /// Stops the servers, then ZooKeeper.
    pub async fn shutdown(self) {
        futures_util::future::join_all(self.nodes.into_iter().map(ManagedClickHouse::shutdown))
            .await;
        self.zookeeper.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_print() {
        let shape: ClusterShape = "2x3".parse().unwrap();
        assert_eq!(
            shape,
            ClusterShape {
                shards: 2,
                replicas: 3
            }
        );
        assert_eq!(shape.to_string(), "2x3");
        for bad in ["", "2", "0x2", "2x0", "9x1", "ax2", "2x2x2"] {
            assert!(bad.parse::<ClusterShape>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_node_knows_every_replica_and_its_coordinator() {
        let node = ClusterNode {
            shard: 2,
            replica: 1,
            interserver_port: 9009,
            zookeeper_port: 2181,
            shards: vec![vec![9001, 9002], vec![9003, 9004]],
        };
        let xml = node.server_config();
        assert_eq!(xml.matches("<shard>\n").count(), 2);
        assert_eq!(xml.matches("<replica><host>").count(), 4);
        assert!(xml.contains("<port>9004</port>"));
        assert!(xml.contains("<shard>2</shard>"));
        assert!(xml.contains("<replica>shard2-replica1</replica>"));
        assert!(xml.contains("<port>2181</port>"));
        assert!(xml.contains("<internal_replication>true</internal_replication>"));
        assert!(xml.contains("<interserver_http_port>9009</interserver_http_port>"));
    }
}
