//! `comet rules check` and `comet rules test` (promtool's `check rules` and
//! `test rules`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use comet_ingest::metrics::IngestMetrics;
use comet_query::rules::SampleSink;
use comet_query::rules::file::read_file;
use comet_query::rules::unittest::RuleTester;
use comet_schema::Store;

use crate::cli::ConfigArgs;
use crate::config::Config;
use crate::direct_writer::DirectWriter;
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
            Ok(Arc::new(DirectWriter::start(
                store,
                metrics.clone(),
                "rules",
            )))
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
