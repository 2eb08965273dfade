//! `comet explain`: prints the ClickHouse SQL a PromQL query becomes, ready
//! to paste into `clickhouse client`.

use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Args;
use comet_query::engine::QueryRange;
use comet_query::plan::{self, system_time_ms};

use crate::cli::ConfigArgs;
use crate::config::Config;

#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    /// The PromQL query
    #[arg(value_name = "PROMQL")]
    pub query: String,

    /// Evaluation time of an instant query, or the start of a range query
    /// with --end and --step: unix seconds or RFC 3339 [default: now]
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,

    /// End of a range query: unix seconds or RFC 3339
    #[arg(long, value_name = "TIME", requires = "step")]
    pub end: Option<String>,

    /// Step of a range query: a duration (`30s`) or seconds
    #[arg(long, value_name = "DURATION", requires = "end")]
    pub step: Option<String>,

    /// Plan this metric as one with native histogram samples (a running
    /// Comet knows which are from ClickHouse; explain does not connect).
    /// Repeat for several
    #[arg(long, value_name = "METRIC")]
    pub histogram_metric: Vec<String>,

    /// Plan the `--histogram-metric` names as having no float samples
    /// either (as a running Comet does when ClickHouse says so): their
    /// selectors read histograms alone
    #[arg(long, requires = "histogram_metric")]
    pub histograms_only: bool,
}

/// Unix seconds (`1700000000.5`) or RFC 3339, in milliseconds.
fn parse_time(text: &str) -> anyhow::Result<i64> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Ok((seconds * 1000.0).round() as i64);
    }
    let t = humantime::parse_rfc3339_weak(text)
        .with_context(|| format!("{text:?} is neither unix seconds nor an RFC 3339 time"))?;
    Ok(system_time_ms(t))
}

fn parse_step(text: &str) -> anyhow::Result<i64> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Ok((seconds * 1000.0).round() as i64);
    }
    let d: Duration =
        humantime::parse_duration(text).with_context(|| format!("{text:?} is not a duration"))?;
    Ok(d.as_millis() as i64)
}

pub fn run(config: Config, args: ExplainArgs) -> anyhow::Result<()> {
    let start = match &args.start {
        Some(t) => parse_time(t)?,
        None => system_time_ms(SystemTime::now()),
    };
    let range = match (&args.end, &args.step) {
        (Some(end), Some(step)) => {
            let end = parse_time(end)?;
            let step = parse_step(step)?;
            if step <= 0 {
                bail!("--step must be positive");
            }
            if end < start {
                bail!("--end is before --start");
            }
            QueryRange {
                start_ms: start,
                end_ms: end,
                step_ms: step,
            }
        }
        _ => QueryRange::instant(start),
    };
    let histogram_metrics: std::sync::Arc<std::collections::BTreeSet<String>> =
        std::sync::Arc::new(args.histogram_metric.iter().cloned().collect());
    let settings = plan::PlanSettings {
        histogram_only_metrics: if args.histograms_only {
            histogram_metrics.clone()
        } else {
            Default::default()
        },
        histogram_metrics,
        ..config.plan_settings()
    };
    let plan =
        plan::plan(&args.query, range.grid(), &settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    print!("{}", plan.explain());
    Ok(())
}
