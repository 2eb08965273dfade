//! Comet's own observability: logs (tracing) and the /metrics registry.

use std::io::IsTerminal;

use anyhow::Context;
use prometheus::{IntGauge, Opts, Registry};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global tracing subscriber; logs go to stderr.
pub fn init_logging(config: &LogConfig) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.level)
        .with_context(|| format!("log level {:?} is not a valid filter", config.level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // A subscriber may already be set (tests); keep it.
    let _ = result;
    Ok(())
}

/// Comet's metrics registry, with build info and process metrics.
pub fn registry() -> anyhow::Result<Registry> {
    let registry = Registry::new();
    let build_info = IntGauge::with_opts(
        Opts::new(
            "comet_build_info",
            "A metric with a constant '1' value labelled by the version and revision Comet was built from.",
        )
        .const_label("version", env!("CARGO_PKG_VERSION"))
        .const_label("revision", env!("COMET_GIT_REVISION")),
    )?;
    build_info.set(1);
    registry.register(Box::new(build_info))?;
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    Ok(registry)
}
