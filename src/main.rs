//! The `comet` binary: command line and wiring only. The work lives in the
//! `comet-schema`, `comet-ingest` and `comet-query` crates.

mod auth;
mod bench;
mod bench_api;
mod bench_kafka;
mod bench_otlp;
mod bench_queries;
mod bench_query;
mod cli;
mod clickhouse_stats;
mod cluster_stats;
mod config;
mod direct_writer;
mod explain;
mod http;
mod promqltest;
mod rules;
mod serve;
mod telemetry;
mod tls;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{BenchCommand, Cli, Command, RulesCommand};
use crate::config::Config;

// Ingest allocates many short-lived strings; mimalloc handles that pattern
// markedly faster than glibc malloc (see the decode benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: what went wrong and, where known, what to do.
            eprintln!("comet: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    let Some(args) = cli.command.config_args() else {
        let bench = match cli.command {
            Command::Bench(bench) => bench,
            Command::Rules(RulesCommand::Check(args)) => return rules::check(&args),
            _ => unreachable!("only bench and rules check run without configuration"),
        };
        return runtime()?.block_on(async move {
            match bench {
                BenchCommand::Ingest(args) => bench::run(args).await,
                BenchCommand::Query(args) => bench_query::run(args).await,
                BenchCommand::Api(args) => bench_api::run(args).await,
                BenchCommand::Kafka(args) => bench_kafka::run(args).await,
            }
        });
    };
    let config = Config::load(args)?;
    if let Command::Config(_) = cli.command {
        print!("{}", config.to_yaml_masked()?);
        return Ok(());
    }
    if let Command::Explain(args) = cli.command {
        return explain::run(config, args);
    }
    telemetry::init_logging(&config.log)?;
    runtime()?.block_on(async move {
        match cli.command {
            Command::Serve(_) => serve::serve(config, serve::Role::All).await,
            Command::Ingest(_) => serve::serve(config, serve::Role::Ingest).await,
            Command::Clickhouse(args) => serve::clickhouse(config, args).await,
            Command::Migrate(args) => serve::migrate_only(config, args.resort_samples).await,
            Command::Promqltest(args) => promqltest::run(config, args).await,
            Command::Rules(RulesCommand::Test(args)) => rules::test(config, args).await,
            Command::Config(_)
            | Command::Explain(_)
            | Command::Bench(_)
            | Command::Rules(RulesCommand::Check(_)) => Ok(()),
        }
    })
}
