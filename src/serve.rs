//! The long-running commands: `serve`, `clickhouse` and `migrate`.

use anyhow::{Context, anyhow};
use axum::Router;
use comet_ingest::kafka::{KafkaIngest, KafkaMetrics, MessageDecoder};
use comet_ingest::otlp::{self, OtlpReceiver};
use comet_ingest::{IngestMetrics, Writer, remote_write};
use std::sync::Arc;

use comet_query::engine::Engine;
use comet_query::remote_read;
use comet_query::rules::{Notifier, Ruler, SampleSink};
use comet_schema::managed::{ManagedClickHouse, ManagedMetrics};
use comet_schema::migrate::{latest_version, migrate};
use comet_schema::{Store, store::error_chain};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::auth::{self, Auth};
use crate::clickhouse_stats::ClickHouseStats;
use crate::cluster_stats::ClusterStats;
use crate::config::Config;
use crate::direct_writer::DirectWriter;
use crate::http::{self, AppState};
use crate::{telemetry, tls};

/// ClickHouse as Comet uses it: the store, and the managed server behind it
/// when Comet runs its own.
pub(crate) struct Backend {
    pub(crate) store: Store,
    managed: Option<ManagedClickHouse>,
}

impl Backend {
    /// [`Backend::connect`], then migrates the schema.
    pub(crate) async fn start(config: &Config, registry: &Registry) -> anyhow::Result<Self> {
        let backend = Self::connect(config, registry).await?;
        match backend.migrate(config).await {
            Ok(()) => Ok(backend),
            Err(err) => {
                backend.shutdown().await;
                Err(err)
            }
        }
    }

    /// Starts the managed server if no URL is configured and waits until
    /// ClickHouse answers; the schema is left as it is (for tools with
    /// databases of their own).
    pub(crate) async fn connect(config: &Config, registry: &Registry) -> anyhow::Result<Self> {
        let managed = match &config.clickhouse.url {
            Some(_) => None,
            None => {
                info!(venv = %config.managed_clickhouse.venv.display(), "no ClickHouse URL configured; starting the managed ClickHouse");
                let metrics = ManagedMetrics::new(registry)?;
                Some(ManagedClickHouse::start(config.managed_settings(), metrics).await?)
            }
        };
        let url = match (&managed, &config.clickhouse.url) {
            (Some(m), _) => m.url(),
            (None, Some(url)) => url.clone(),
            (None, None) => unreachable!("managed is started when no URL is set"),
        };
        let mut backend = Self {
            store: Store::new(config.store_settings(url))?,
            managed,
        };
        let topology = async {
            backend.wait_until_reachable(config).await?;
            backend
                .store
                .for_topology(&config.schema_options(), &config.clickhouse.insert_quorum)
                .await
                .map_err(anyhow::Error::from)
        };
        match topology.await {
            Ok(store) => {
                backend.store = store;
                Ok(backend)
            }
            Err(err) => {
                backend.shutdown().await;
                Err(err)
            }
        }
    }

    async fn wait_until_reachable(&self, config: &Config) -> anyhow::Result<()> {
        let store = &self.store;
        store
            .wait_until_reachable(config.clickhouse.startup_timeout)
            .await
            .map_err(|e| {
                anyhow!(
                    "{}; check that ClickHouse is running and --clickhouse-url, user and password are right",
                    error_chain(&e)
                )
            })?;
        let version = store.server_version().await?;
        info!(url = %store.settings().url, %version, database = store.database(), "connected to ClickHouse");
        Ok(())
    }

    async fn migrate(&self, config: &Config) -> anyhow::Result<()> {
        let store = &self.store;
        let report = migrate(store, &config.schema_options(), latest_version())
            .await
            .context("schema migration failed")?;
        info!(
            from = report.from_version,
            to = report.to_version,
            applied = ?report.applied,
            retention_changed = report.retention_changed,
            "schema is up to date"
        );
        for table in &report.outdated_sort_keys {
            warn!(
                table = %table,
                "table is sorted series first, as before Comet sorted samples hour first: queries \
                 read whole days of each series; `comet migrate --resort-samples` rebuilds it"
            );
        }
        Ok(())
    }

    pub(crate) async fn shutdown(self) {
        if let Some(managed) = self.managed {
            managed.shutdown().await;
        }
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
fn cancel_on_signal(token: CancellationToken) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received; shutting down"),
            _ = int.recv() => info!("SIGINT received; shutting down"),
        }
        token.cancel();
    });
    Ok(())
}

/// What a Comet process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `comet serve`: ingest, the query API and rules.
    All,
    /// `comet ingest`: the Kafka consumer and the push receivers only.
    Ingest,
}

/// `comet serve` and `comet ingest`.
pub async fn serve(config: Config, role: Role) -> anyhow::Result<()> {
    let registry = telemetry::registry()?;
    let addr = config.listen_address()?;
    // Bind first: a port in use must stop Comet before it starts anything.
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        anyhow!("cannot listen on {addr}: {e}; stop what holds the port or choose another with --listen-address")
    })?;
    let web = &config.http;
    let tls = match (&web.tls_cert_file, &web.tls_key_file) {
        (Some(cert), Some(key)) => Some(tls::server_config(
            cert,
            key,
            web.tls_client_ca_file.as_deref(),
        )?),
        _ => None,
    };
    let (otlp_grpc_addr, otlp_http_addr) = config.otlp_listen_addresses()?;
    let otlp_grpc = bind_otlp(otlp_grpc_addr, "--otlp-grpc-listen-address").await?;
    let otlp_http = bind_otlp(otlp_http_addr, "--otlp-http-listen-address").await?;
    let auth = Auth::new(&web.basic_auth_users, &web.bearer_tokens, &registry)?;
    info!(
        %addr,
        tls = tls.is_some(),
        client_certificates = web.tls_client_ca_file.is_some(),
        authentication = auth.is_some(),
        "HTTP API listening"
    );

    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone())?;
    let state = AppState::new(registry.clone());
    let app = auth::protect(http::router(state.clone()), auth.clone());
    let server = spawn_server(listener, app, tls.clone(), &shutdown);

    let started = async {
        let backend = Backend::start(&config, &registry).await?;
        match api(&config, role, &backend.store, &registry).await {
            Ok(services) => Ok((backend, services)),
            Err(err) => {
                backend.shutdown().await;
                Err(err)
            }
        }
    };
    let started = tokio::select! {
        started = started => started,
        _ = shutdown.cancelled() => {
            warn!("interrupted during start-up");
            let _ = server.await;
            return Ok(());
        }
    };
    let (backend, services) = match started {
        Ok(started) => started,
        Err(err) => {
            shutdown.cancel();
            let _ = server.await;
            return Err(err);
        }
    };
    let Services {
        router,
        writer,
        receiver,
        rules,
        kafka,
    } = services;
    if let Some(rules) = &rules {
        reload_on_sighup(rules.ruler.clone())?;
    }
    let stats_stop = CancellationToken::new();
    let mut stats =
        vec![ClickHouseStats::new(&registry)?.spawn(backend.store.clone(), stats_stop.clone())];
    if let Some(cluster) = &config.clickhouse.cluster {
        stats.push(
            ClusterStats::new(&registry, cluster)?.spawn(backend.store.clone(), stats_stop.clone()),
        );
    }
    state.set_ready(backend.store.clone(), router);
    // The OTLP listeners serve once the receiver exists; until then their
    // connections wait in the backlog.
    let mut servers = vec![("HTTP API", server)];
    if let Some(listener) = otlp_grpc {
        info!(addr = %listener.local_addr()?, "OTLP/gRPC listening");
        let app = auth::protect(otlp::grpc::router(receiver.clone()), auth.clone());
        servers.push((
            "OTLP/gRPC",
            spawn_server(listener, app, tls.clone(), &shutdown),
        ));
    }
    if let Some(listener) = otlp_http {
        info!(addr = %listener.local_addr()?, "OTLP/HTTP listening");
        let app = auth::protect(otlp::http::router(receiver.clone()), auth.clone());
        servers.push((
            "OTLP/HTTP",
            spawn_server(listener, app, tls.clone(), &shutdown),
        ));
    }
    info!(?role, "Comet is ready");

    shutdown.cancelled().await;
    state.set_shutting_down();
    let deadline = tokio::time::Instant::now() + config.shutdown_timeout;
    for (name, server) in servers {
        match tokio::time::timeout_at(deadline, server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => error!(error = %err, server = name, "server failed"),
            Ok(Err(err)) => error!(error = %err, server = name, "server task failed"),
            Err(_) => {
                warn!(timeout = ?config.shutdown_timeout, server = name, "requests still running at shutdown; dropping them")
            }
        }
    }
    stats_stop.cancel();
    for task in stats {
        let _ = task.await;
    }
    if let Some(kafka) = kafka {
        // Stores and commits what it received, before the writer stops.
        kafka.shutdown(config.shutdown_timeout).await;
    }
    if let Some(rules) = rules {
        // Evaluations in progress finish and write their output first.
        rules.ruler.stop().await;
        rules.notifier_stop.cancel();
        rules.sink.shutdown().await;
    }
    // Everything acknowledged is stored already; this stores what was
    // accepted but not yet acknowledged.
    writer.shutdown().await;
    backend.shutdown().await;
    info!("Comet stopped");
    Ok(())
}

/// Binds an OTLP listener early, so a port in use stops Comet at once.
async fn bind_otlp(
    addr: Option<std::net::SocketAddr>,
    flag: &str,
) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    TcpListener::bind(addr).await.map(Some).map_err(|e| {
        anyhow!("cannot listen on {addr}: {e}; stop what holds the port, choose another with {flag}, or turn it off with {flag}=''")
    })
}

type ServerTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// Serves `app` on `listener` (over TLS when configured) until shutdown.
fn spawn_server(
    listener: TcpListener,
    app: Router,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    shutdown: &CancellationToken,
) -> ServerTask {
    let stop = shutdown.clone().cancelled_owned();
    match tls {
        None => tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .into_future(),
        ),
        Some(tls) => tokio::spawn(
            axum::serve(tls::TlsListener::new(listener, tls), app)
                .with_graceful_shutdown(stop)
                .into_future(),
        ),
    }
}

/// What `serve` runs besides the HTTP server.
struct Services {
    /// The ingest and query APIs.
    router: Router,
    /// The writer behind ingest.
    writer: Writer,
    /// The OTLP receiver (also served on its own ports).
    receiver: OtlpReceiver,
    /// Not in the ingest role.
    rules: Option<Rules>,
    /// When Kafka is configured.
    kafka: Option<KafkaIngest>,
}

/// The ruler and what it writes and notifies through.
struct Rules {
    ruler: Ruler,
    /// The writer rule output goes through.
    sink: Arc<DirectWriter>,
    /// Stops the Alertmanager notifier.
    notifier_stop: CancellationToken,
}

/// The ingest and query APIs over `store`, the writer behind ingest, the
/// OTLP receiver, the Kafka consumer, and the ruler (its rule files must be
/// valid for Comet to start). The ingest role has no query API and no rules.
async fn api(
    config: &Config,
    role: Role,
    store: &Store,
    registry: &Registry,
) -> anyhow::Result<Services> {
    let metrics = IngestMetrics::new(registry)?;
    let writer = Writer::start(store.clone(), config.writer_settings(), metrics.clone());
    let receiver = OtlpReceiver::new(writer.clone(), config.otlp_settings(), metrics.clone());
    let mut router = remote_write::router(
        writer.clone(),
        config.remote_write_settings(),
        metrics.clone(),
    )
    .merge(otlp::http::router(receiver.clone()));
    let rules = match role {
        Role::Ingest => None,
        Role::All => {
            let rules = rules(config, store, &metrics, registry).await?;
            let mut api_settings = config.api_settings();
            api_settings.ruler = Some(rules.ruler.clone());
            router = router
                .merge(remote_read::router(
                    store.clone(),
                    config.remote_read_settings(),
                    registry,
                )?)
                .merge(comet_query::api::router(
                    store.clone(),
                    api_settings,
                    registry,
                )?);
            Some(rules)
        }
    };
    let kafka = match config.kafka_settings() {
        None => None,
        Some(settings) => {
            let decoder = MessageDecoder {
                remote_write: config.remote_write_settings().decode,
                otlp: config.otlp_settings().translate,
                otlp_state: receiver.state().clone(),
                registry: writer.registry().clone(),
                name_validation: config.remote_write_settings().decode.name_validation,
            };
            Some(
                KafkaIngest::start(
                    settings,
                    writer.clone(),
                    decoder,
                    store.clone(),
                    KafkaMetrics::new(registry)?,
                    metrics,
                )
                .context("cannot start the Kafka source")?,
            )
        }
    };
    Ok(Services {
        router,
        writer,
        receiver,
        rules,
        kafka,
    })
}

/// The ruler, its notifier and the writer of its output.
async fn rules(
    config: &Config,
    store: &Store,
    metrics: &IngestMetrics,
    registry: &Registry,
) -> anyhow::Result<Rules> {
    let sink = Arc::new(DirectWriter::start(store, metrics.clone(), "rules"));
    let notifier_stop = CancellationToken::new();
    let notifier = if config.rules.alertmanagers.is_empty() {
        None
    } else {
        Some(Notifier::start(
            config.notifier_settings(),
            registry,
            notifier_stop.clone(),
        )?)
    };
    let engine = Engine::new(store.clone(), config.plan_settings());
    let rules_sink: Arc<dyn SampleSink> = sink.clone();
    let ruler = Ruler::start(
        config.ruler_settings(),
        engine,
        rules_sink,
        notifier,
        registry,
    )
    .await
    .map_err(|e| anyhow!("{e}; check the files with `comet rules check FILE...`"))?;
    Ok(Rules {
        ruler,
        sink,
        notifier_stop,
    })
}

/// Re-reads the rule files on SIGHUP, as Prometheus does.
fn reload_on_sighup(ruler: Ruler) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup()).context("cannot install SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            info!("SIGHUP received; reloading the rule files");
            // A failed reload keeps the running rules and is logged.
            let _ = ruler.reload().await;
        }
    });
    Ok(())
}

/// `comet clickhouse`: the managed server alone, in the foreground.
pub async fn clickhouse(config: Config, args: crate::cli::ClickhouseArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone())?;
    if let Some(shape) = args.cluster {
        let exe = std::env::current_exe().ok();
        let launcher = comet_schema::managed::locate_beside_exe(&args.zookeeper, exe.as_deref());
        let cluster = comet_schema::managed::ManagedCluster::start(
            shape,
            &config.managed_settings(),
            launcher,
        )
        .await?;
        // The URLs on stdout, alone, so scripts can read them.
        for url in cluster.urls() {
            println!("{url}");
        }
        shutdown.cancelled().await;
        cluster.shutdown().await;
        return Ok(());
    }
    let managed =
        ManagedClickHouse::start(config.managed_settings(), ManagedMetrics::unregistered()).await?;
    // The URL on stdout, alone, so scripts can read it.
    println!("{}", managed.url());
    shutdown.cancelled().await;
    managed.shutdown().await;
    Ok(())
}

/// `comet migrate`.
/// `comet migrate`: the schema brought up to date and, with
/// `resort_samples`, the sample tables rebuilt with the current sort key.
pub async fn migrate_only(config: Config, resort_samples: bool) -> anyhow::Result<()> {
    let backend = Backend::start(&config, &Registry::new()).await?;
    let resorted = if resort_samples {
        comet_schema::migrate::resort_sample_tables(&backend.store, &config.schema_options())
            .await
            .context("re-sorting the sample tables failed")
            .map(Some)
    } else {
        Ok(None)
    };
    backend.shutdown().await;
    if let Some(tables) = resorted? {
        info!(?tables, "sample tables re-sorted");
    }
    Ok(())
}
