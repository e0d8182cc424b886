//! `kairos-bench`: see README.md. Parse, build the runtime the subcommand wants, run.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use kairos_bench::{Cli, Command, load, serve};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kairos-bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Load(args) => {
            // One thread by default: the client shares the machine with the server it measures.
            let runtime = if args.threads <= 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(args.threads)
                    .enable_all()
                    .build()
            }
            .context("starting the runtime")?;
            let report = runtime.block_on(load::run(&args))?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{report}");
            }
            Ok(())
        }
        Command::ServeStatic(args) => server_runtime()?.block_on(serve::serve_static(&args)),
        Command::ServeSql(args) => server_runtime()?.block_on(serve::serve_sql(&args)),
    }
}

/// What `#[tokio::main]` builds for Kairos: a worker thread per core.
fn server_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}
