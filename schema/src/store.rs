//! The ClickHouse client Comet uses everywhere: RowBinary inserts, typed
//! selects, timeouts, and retries with backoff on transient errors only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use clickhouse::{
    Client, Row, RowOwned, RowRead, RowWrite, error::Error as ClickHouseError, query::Query,
};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use thiserror::Error;
use tracing::{debug, warn};

use crate::ddl::{SchemaOptions, Topology};

/// How to reach ClickHouse and how patiently.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `http://host:8123` or `https://host:8443`.
    pub url: String,
    pub user: String,
    pub password: String,
    pub database: String,
    /// Extra CA certificates (PEM) trusted for `https://` URLs, on top of
    /// the Mozilla roots.
    pub tls_ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// LZ4-compress inserts and results on the wire. Worth it over a network;
    /// pure CPU cost on loopback (the managed server).
    pub compression: bool,
    /// Upper bound of one statement, enforced client-side and sent to the
    /// server as `max_execution_time` so it stops working too.
    pub query_timeout: Duration,
    pub retry: RetryPolicy,
    /// ClickHouse settings sent with every statement: what the topology
    /// needs for durable inserts and correct queries
    /// ([`crate::SchemaOptions::topology_settings`]).
    pub topology_settings: Vec<(&'static str, String)>,
}

/// Exponential backoff with jitter for transient failures.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: usize,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("invalid ClickHouse settings: {0}")]
    Settings(String),
    /// The message includes the client error, so it is not a `source`.
    #[error("{operation} failed: {error}")]
    ClickHouse {
        operation: String,
        error: ClickHouseError,
    },
    #[error("ClickHouse at {url} did not answer within {waited:?}: {last_error}")]
    Unreachable {
        url: String,
        waited: Duration,
        last_error: String,
    },
}

impl StoreError {
    /// True when retrying later may succeed (ClickHouse down, overloaded,
    /// timing out); false when the request itself is wrong.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::ClickHouse { error, .. } => is_transient(error),
            StoreError::Unreachable { .. } => true,
            StoreError::Settings(_) => false,
        }
    }
}

/// ClickHouse server error codes that are worth retrying.
const TRANSIENT_CODES: &[u32] = &[
    3,   // UNEXPECTED_END_OF_FILE
    159, // TIMEOUT_EXCEEDED
    164, // READONLY (replica lost Keeper session)
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    203, // NO_FREE_CONNECTION
    209, // SOCKET_TIMEOUT
    210, // NETWORK_ERROR
    241, // MEMORY_LIMIT_EXCEEDED
    242, // TABLE_IS_READ_ONLY
    252, // TOO_MANY_PARTS
    285, // TOO_FEW_LIVE_REPLICAS
    319, // UNKNOWN_STATUS_OF_INSERT
    425, // SYSTEM_ERROR
    439, // CANNOT_SCHEDULE_TASK
    999, // KEEPER_EXCEPTION
];

/// Classifies a client error as transient (retry) or permanent.
pub fn is_transient(err: &ClickHouseError) -> bool {
    match err {
        ClickHouseError::Network(_) | ClickHouseError::TimedOut => true,
        ClickHouseError::BadResponse(message) => {
            server_error_code(message).is_some_and(|code| TRANSIENT_CODES.contains(&code))
        }
        _ => false,
    }
}

/// Extracts `NNN` from a server message like `Code: 159. DB::Exception: ...`.
pub fn server_error_code(message: &str) -> Option<u32> {
    let rest = &message[message.find("Code: ")? + "Code: ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A handle on one ClickHouse database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    client: Client,
    settings: Arc<StoreSettings>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.settings.url)
            .field("database", &self.settings.database)
            .finish()
    }
}

impl Store {
    /// Builds the client; does no I/O.
    pub fn new(settings: StoreSettings) -> Result<Self, StoreError> {
        if !(settings.url.starts_with("http://") || settings.url.starts_with("https://")) {
            return Err(StoreError::Settings(format!(
                "ClickHouse URL {:?} must start with http:// or https://",
                settings.url
            )));
        }
        let http_client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            // ClickHouse closes idle keep-alive connections after 3 s.
            .pool_idle_timeout(Duration::from_secs(2))
            .build(connector(&settings)?);
        let mut client = Client::with_http_client(http_client)
            .with_url(settings.url.trim_end_matches('/'))
            .with_user(&settings.user)
            .with_password(&settings.password)
            // Our row types are pinned to the DDL by tests; skipping the
            // per-table schema fetch keeps inserts on plain RowBinary.
            .with_validation(false)
            .with_compression(if settings.compression {
                clickhouse::Compression::Lz4
            } else {
                clickhouse::Compression::None
            })
            .with_setting(
                "max_execution_time",
                settings.query_timeout.as_secs().max(1).to_string(),
            );
        for (name, value) in &settings.topology_settings {
            client = client.with_setting(*name, value.as_str());
        }
        Ok(Self {
            client,
            settings: Arc::new(settings),
        })
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    /// The server and database this store writes to: the key of the
    /// process-wide registries that writers and engines share
    /// (`histogram_names`, `recent_writes`).
    pub fn identity(&self) -> (String, String) {
        (self.settings().url.clone(), self.database().to_string())
    }

    pub fn database(&self) -> &str {
        &self.settings.database
    }

    /// The client with the configured database selected.
    pub fn client(&self) -> Client {
        self.client.clone().with_database(&self.settings.database)
    }

    /// The client with no database selected (to create the database).
    pub fn server_client(&self) -> Client {
        self.client.clone()
    }

    /// One `SELECT 1` within the connect timeout, without retry.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let query = self.client.query("SELECT 1");
        let attempt = tokio::time::timeout(self.settings.connect_timeout, query.fetch_one::<u8>());
        match attempt.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(StoreError::ClickHouse {
                operation: "ping".into(),
                error,
            }),
            Err(_) => Err(StoreError::ClickHouse {
                operation: "ping".into(),
                error: ClickHouseError::TimedOut,
            }),
        }
    }

    /// Pings until ClickHouse answers or `timeout` has passed.
    pub async fn wait_until_reachable(&self, timeout: Duration) -> Result<(), StoreError> {
        let started = Instant::now();
        loop {
            let err = match self.ping().await {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            if !err.is_transient() || started.elapsed() >= timeout {
                return Err(StoreError::Unreachable {
                    url: self.settings.url.clone(),
                    waited: started.elapsed(),
                    last_error: error_chain(&err),
                });
            }
            debug!(error = %err, "ClickHouse not reachable yet");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The server's version string, e.g. `25.8.2.1`.
    pub async fn server_version(&self) -> Result<String, StoreError> {
        self.fetch_one(self.client.query("SELECT version()"), "read server version")
            .await
    }

    /// The fewest replicas any shard of `cluster` has, from the server's
    /// `remote_servers`; 0 when it does not know the cluster.
    pub async fn cluster_min_replicas(&self, cluster: &str) -> Result<u64, StoreError> {
        self.fetch_one(
            self.client
                .query(
                    "SELECT toUInt64(min(replicas)) FROM (SELECT shard_num, count() AS replicas \
                     FROM system.clusters WHERE cluster = ? GROUP BY shard_num)",
                )
                .bind(cluster),
            "read the cluster's replicas",
        )
        .await
    }

    /// This store with the settings `options`' topology needs
    /// ([`SchemaOptions::topology_settings`]), an insert quorum of `auto`
    /// resolved to a majority of the smallest shard's replicas. A cluster
    /// the server does not know, or a quorum larger than a shard, is an
    /// error.
    pub async fn for_topology(
        &self,
        options: &SchemaOptions,
        quorum: &str,
    ) -> Result<Self, StoreError> {
        let quorum = match &options.topology {
            Topology::SingleNode => return Ok(self.clone()),
            Topology::Cluster { name } => {
                let replicas = self.cluster_min_replicas(name).await?;
                if replicas == 0 {
                    return Err(StoreError::Settings(format!(
                        "cluster {name:?} is not in the ClickHouse server's remote_servers"
                    )));
                }
                match quorum {
                    "auto" => (replicas / 2 + 1).to_string(),
                    n if n.parse::<u64>().is_ok_and(|n| n > replicas) => {
                        return Err(StoreError::Settings(format!(
                            "an insert quorum of {n} cannot be met: a shard of cluster {name:?} \
                             has {replicas} replicas"
                        )));
                    }
                    n => n.to_string(),
                }
            }
        };
        Self::new(StoreSettings {
            topology_settings: options.topology_settings(&quorum),
            ..(*self.settings).clone()
        })
    }

    /// Runs a statement that returns nothing (DDL), retrying transient
    /// failures.
    pub async fn execute(&self, sql: &str) -> Result<(), StoreError> {
        let client = self.client.clone();
        self.with_retry(&summarise(sql), || {
            let query = client.query(sql);
            async move { query.execute().await }
        })
        .await
    }

    /// Inserts `rows` into `table` (of the configured database) as one
    /// RowBinary insert. The whole batch is resent on a transient failure.
    /// `T` names the row type; rows may borrow (`T::Value<'_>`).
    pub async fn insert<T>(&self, table: &str, rows: &[T::Value<'_>]) -> Result<(), StoreError>
    where
        T: Row + RowWrite,
    {
        self.insert_deduplicated::<T>(table, rows, None).await
    }

    /// [`Store::insert`] with an `insert_deduplication_token`: ClickHouse
    /// keeps the tokens of the table's recent inserts (its deduplication
    /// window) and drops an insert whose token it has seen, so replaying
    /// the same rows under the same token stores them once.
    pub async fn insert_deduplicated<T>(
        &self,
        table: &str,
        rows: &[T::Value<'_>],
        token: Option<&str>,
    ) -> Result<(), StoreError>
    where
        T: Row + RowWrite,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let mut client = self.client();
        if let Some(token) = token {
            client = client
                .with_setting("insert_deduplicate", "1")
                .with_setting("insert_deduplication_token", token);
        }
        let operation = format!("insert of {} rows into {table}", rows.len());
        // Each attempt is bounded by the query timeout in `with_retry`.
        self.with_retry(&operation, || {
            let client = client.clone();
            async move {
                let mut insert = client.insert::<T>(table).await?;
                for row in rows {
                    insert.write(row).await?;
                }
                insert.end().await
            }
        })
        .await
    }

    /// Runs a typed select, retrying transient failures.
    pub async fn fetch_all<T>(&self, query: Query, what: &str) -> Result<Vec<T>, StoreError>
    where
        T: RowOwned + RowRead,
    {
        self.with_retry(what, || {
            let query = query.clone();
            async move { query.fetch_all::<T>().await }
        })
        .await
    }

    /// Runs a select returning exactly one row, retrying transient failures.
    pub async fn fetch_one<T>(&self, query: Query, what: &str) -> Result<T, StoreError>
    where
        T: RowOwned + RowRead,
    {
        self.with_retry(what, || {
            let query = query.clone();
            async move { query.fetch_one::<T>().await }
        })
        .await
    }

    async fn with_retry<T, F, Fut>(&self, operation: &str, attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClickHouseError>>,
    {
        let policy = self.settings.retry;
        let timeout = self.settings.query_timeout;
        let mut attempt = attempt;
        let timed = || {
            let fut = attempt();
            async move {
                match tokio::time::timeout(timeout, fut).await {
                    Ok(result) => result,
                    Err(_) => Err(ClickHouseError::TimedOut),
                }
            }
        };
        timed
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(policy.initial_backoff)
                    .with_max_delay(policy.max_backoff)
                    .with_max_times(policy.max_retries)
                    .with_jitter(),
            )
            .when(is_transient)
            .notify(|err, delay| {
                warn!(operation, error = %err, retry_in = ?delay, "transient ClickHouse error, retrying");
            })
            .await
            .map_err(|error| StoreError::ClickHouse {
                operation: operation.to_string(),
                error,
            })
    }
}

/// The first line of a statement, for logs and errors.
fn summarise(sql: &str) -> String {
    let first = sql.lines().next().unwrap_or_default();
    if first.len() > 120 {
        let mut end = 120;
        while !first.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &first[..end])
    } else {
        first.to_string()
    }
}

/// An error and its causes on one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// A connector with a connect timeout and rustls (Mozilla roots plus an
/// optional CA file), so `https://` URLs work with private CAs.
fn connector(
    settings: &StoreSettings,
) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, StoreError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = &settings.tls_ca_file {
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
            StoreError::Settings(format!("cannot read CA file {}: {e}", path.display()))
        })?;
        for cert in certs {
            let cert = cert.map_err(|e| {
                StoreError::Settings(format!("bad certificate in {}: {e}", path.display()))
            })?;
            roots.add(cert).map_err(|e| {
                StoreError::Settings(format!("bad certificate in {}: {e}", path.display()))
            })?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Settings(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();

    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(settings.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.set_nodelay(true);
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_parsed() {
        assert_eq!(
            server_error_code("Code: 159. DB::Exception: Timeout exceeded"),
            Some(159)
        );
        assert_eq!(server_error_code("no code here"), None);
    }

    #[test]
    fn transient_classification() {
        assert!(is_transient(&ClickHouseError::TimedOut));
        assert!(is_transient(&ClickHouseError::BadResponse(
            "Code: 252. DB::Exception: Too many parts".into()
        )));
        assert!(!is_transient(&ClickHouseError::BadResponse(
            "Code: 62. DB::Exception: Syntax error".into()
        )));
        assert!(!is_transient(&ClickHouseError::BadResponse(
            "Code: 60. DB::Exception: Unknown table".into()
        )));
    }

    #[test]
    fn settings_reject_bad_url() {
        let err = Store::new(StoreSettings {
            url: "localhost:8123".into(),
            user: "default".into(),
            password: String::new(),
            database: "comet".into(),
            tls_ca_file: None,
            connect_timeout: Duration::from_secs(1),
            compression: true,
            query_timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            topology_settings: Vec::new(),
        })
        .unwrap_err();
        assert!(err.to_string().contains("must start with http://"));
    }

    #[test]
    fn long_statements_are_summarised() {
        let long = "x".repeat(500);
        assert_eq!(summarise(&long).len(), 123);
        assert_eq!(summarise("SELECT 1\nFROM t"), "SELECT 1");
    }
}
