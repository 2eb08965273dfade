//! `comet rules check` and `comet rules test` (promtool's `check rules` and
//! `test rules`), and the ingest writer as the ruler's sample sink.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use comet_ingest::batch::{SeriesSamples, WriteBatch};
use comet_ingest::metrics::IngestMetrics;
use comet_ingest::series::Series;
use comet_ingest::writer::{Writer, WriterSettings};
use comet_query::rules::SampleSink;
use comet_query::rules::file::read_file;
use comet_query::rules::unittest::RuleTester;
use comet_schema::{Store, TimeSeries};

use crate::cli::ConfigArgs;
use crate::config::Config;
use crate::serve::Backend;

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Prometheus rule files
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    /// Rule unit-test files in promtool's format
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// The ingest writer as a sink: `write` returns once ClickHouse accepted
/// the samples, so the next rule sees them.
pub struct WriterSink {
    writer: Writer,
}

impl WriterSink {
    /// A writer of its own that flushes at once: rule output is small and
    /// each rule waits for its acknowledgement, so lingering only delays
    /// the group.
    pub fn start(store: &Store, metrics: IngestMetrics) -> Self {
        let settings = WriterSettings {
            min_batch_samples: 1,
            linger: Duration::from_millis(5),
            max_buffered_bytes: 64 << 20,
            series_cache_bytes: 16 << 20,
            ..WriterSettings::default()
        };
        Self {
            writer: Writer::start(store.clone(), settings, metrics),
        }
    }

    pub async fn shutdown(&self) {
        self.writer.shutdown().await;
    }
}

impl SampleSink for WriterSink {
    fn write(
        &self,
        series: Vec<TimeSeries>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        let batch = WriteBatch {
            series: series
                .into_iter()
                .map(|s| SeriesSamples::new(Arc::new(Series::new(s.labels)), s.samples))
                .collect(),
            ..WriteBatch::default()
        };
        Box::pin(async move {
            self.writer
                .write(batch, "rules")
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// `comet rules check`: promtool's output and exit status.
pub fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let mut failed = 0;
    for path in &args.files {
        println!("Checking {}", path.display());
        match read_file(path, Duration::from_secs(60)) {
            Ok(groups) => {
                let rules: usize = groups.iter().map(|g| g.rules.len()).sum();
                println!("  SUCCESS: {rules} rules found");
            }
            Err(e) => {
                failed += 1;
                println!("  FAILED:");
                for error in &e.errors {
                    println!("{}: {error}", e.file);
                }
            }
        }
        println!();
    }
    if failed > 0 {
        bail!(
            "{failed} of {} rule files failed the check",
            args.files.len()
        );
    }
    Ok(())
}

/// `comet rules test`: promtool's output and exit status.
pub async fn test(config: Config, args: TestArgs) -> anyhow::Result<()> {
    // Each test group gets a database of its own: the configured one is
    // not touched.
    let backend = Backend::connect(&config, &prometheus::Registry::new()).await?;
    let tester = RuleTester::new(backend.store.settings().clone(), config.plan_settings());
    let mut failed = 0;
    let mut outcome = Ok(());
    for path in &args.files {
        println!("Unit Testing:  {}", path.display());
        let metrics = IngestMetrics::new(&prometheus::Registry::new())?;
        let open = |store: &Store| -> Result<Arc<dyn SampleSink>, String> {
            Ok(Arc::new(WriterSink::start(store, metrics.clone())))
        };
        match tester.run_file(path, open).await {
            Ok(report) if report.passed() => println!("  SUCCESS"),
            Ok(report) => {
                failed += 1;
                println!("  FAILED:");
                for e in &report.errors {
                    println!("{e}");
                }
            }
            Err(e) => {
                failed += 1;
                println!("  FAILED:");
                println!("    {e}");
                if e.contains("ClickHouse") {
                    outcome = Err(anyhow::anyhow!(e));
                    break;
                }
            }
        }
        println!();
    }
    backend.shutdown().await;
    outcome?;
    if failed > 0 {
        bail!("{failed} of {} rule test files failed", args.files.len());
    }
    Ok(())
}
