//! `comet promqltest`: runs the upstream PromQL test scripts against the
//! engine and ClickHouse, prints per-file pass counts, and holds them to a
//! baseline that only ever rises.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use comet_ingest::metrics::IngestMetrics;
use comet_query::promqltest::{FailureKind, FileReport, Runner, Tier, summary};
use comet_schema::Store;
use futures_util::StreamExt;

use crate::cli::ConfigArgs;
use crate::config::Config;
use crate::direct_writer::DirectWriter;
use crate::serve::Backend;

#[derive(Debug, Clone, Args)]
pub struct PromqltestArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    /// PromQL test scripts (`.test` files in Prometheus's promqltest format)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Fail when a file passes fewer cases than this baseline lists
    /// (lines `<file> <passed>`)
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// Raise the baseline's counts to this run's where higher (never lowers
    /// them)
    #[arg(long, requires = "baseline")]
    pub update_baseline: bool,

    /// Print every failing case with its reason
    #[arg(long, short)]
    pub verbose: bool,

    /// How many files run at once, each in its own database (default: the
    /// number of CPUs). ClickHouse analyses each statement on one thread,
    /// so files side by side use the other cores.
    #[arg(long, short, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
}

fn read_baseline(path: &Path) -> anyhow::Result<BTreeMap<String, usize>> {
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read baseline {}", path.display()))?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (file, count) = line
            .split_once(char::is_whitespace)
            .with_context(|| format!("{}:{}: expected `<file> <passed>`", path.display(), i + 1))?;
        let count: usize = count
            .trim()
            .parse()
            .with_context(|| format!("{}:{}: {count:?} is not a count", path.display(), i + 1))?;
        out.insert(file.to_string(), count);
    }
    Ok(out)
}

fn write_baseline(path: &Path, counts: &BTreeMap<String, usize>) -> anyhow::Result<()> {
    let mut text = String::from(
        "# Cases of each upstream PromQL test file that Comet passes.\n\
         # CI fails when a file passes fewer; raise with `comet promqltest --baseline FILE --update-baseline`.\n",
    );
    for (file, count) in counts {
        text.push_str(&format!("{file} {count}\n"));
    }
    std::fs::write(path, text).with_context(|| format!("cannot write baseline {}", path.display()))
}

fn print_report(report: &FileReport, verbose: bool) {
    let tiers: Vec<String> = report
        .tiers
        .iter()
        .map(|(tier, passed, total)| format!("{} {passed}/{total}", tier.name()))
        .collect();
    println!(
        "{}: {} passed, {} failed ({})",
        report.file,
        report.passed,
        report.failed,
        tiers.join(", ")
    );
    for f in &report.failures {
        if verbose || f.kind == FailureKind::Parse {
            let kind = match f.kind {
                FailureKind::Parse => "not parsed by promql-parser",
                FailureKind::Unsupported => "unsupported",
                FailureKind::Sql => "ClickHouse error",
                FailureKind::Mismatch => "wrong result",
            };
            let reason: String = f.reason.chars().take(400).collect();
            println!(
                "  line {} [{}, {kind}] {}\n    {reason}",
                f.line,
                f.tier.name(),
                f.query
            );
        }
    }
}

pub async fn run(config: Config, args: PromqltestArgs) -> anyhow::Result<()> {
    // Each file gets a database of its own: the configured one is not touched.
    let backend = Backend::connect(&config, &prometheus::Registry::new()).await?;
    let runner = Runner {
        store: backend.store.settings().clone(),
        topology: config.schema_options().topology,
        plan: config.plan_settings(),
    };
    let jobs = args.jobs.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    // The largest files first, so the longest one starts at once; each
    // report is printed as its file finishes.
    let mut files = args.files.clone();
    files.sort_by_key(|f| std::cmp::Reverse(std::fs::metadata(f).map_or(0, |m| m.len())));
    let runner = &runner;
    let mut runs = futures_util::stream::iter(files)
        .map(|file| async move {
            runner
                .run_file(&file, |store: &Store| {
                    // Data goes in through the ingest writer, the path every source takes.
                    Ok(DirectWriter::start(
                        store,
                        IngestMetrics::unregistered(),
                        "promqltest",
                    ))
                })
                .await
        })
        .buffer_unordered(jobs);
    let mut reports = Vec::new();
    let mut outcome = Ok(());
    while let Some(run) = runs.next().await {
        match run {
            Ok(report) => {
                print_report(&report, args.verbose);
                reports.push(report);
            }
            Err(e) => {
                outcome = Err(anyhow::anyhow!(e));
                break;
            }
        }
    }
    drop(runs);
    reports.sort_by(|a, b| a.file.cmp(&b.file));
    backend.shutdown().await;
    outcome?;
    let mut tiers: BTreeMap<Tier, (usize, usize)> = BTreeMap::new();
    for r in &reports {
        for (tier, passed, total) in &r.tiers {
            let e = tiers.entry(*tier).or_default();
            e.0 += passed;
            e.1 += total;
        }
    }
    for (tier, (passed, total)) in &tiers {
        println!("{}: {passed}/{total}", tier.name());
    }
    println!("{}", summary(&reports));
    if let Some(path) = &args.baseline {
        let mut baseline = read_baseline(path)?;
        let mut regressions = Vec::new();
        for r in &reports {
            let floor = baseline.get(&r.file).copied().unwrap_or(0);
            if r.passed < floor {
                regressions.push(format!("{}: {} passed, baseline {floor}", r.file, r.passed));
            }
            if args.update_baseline && r.passed > floor {
                baseline.insert(r.file.clone(), r.passed);
            }
        }
        if args.update_baseline {
            write_baseline(path, &baseline)?;
        }
        if !regressions.is_empty() {
            bail!(
                "below the baseline in {}: {}",
                path.display(),
                regressions.join("; ")
            );
        }
    }
    Ok(())
}
