//! `kairos-bench`: see README.md. Parse, build the runtime the subcommand wants, run.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use kairos_bench::{Cli, Command, copy_events, load, raw_users, serve, summarize};

/// The kairos server's allocator, so a baseline differs from it only in what it does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        // Multi-threaded like Kairos: the baseline pays for its JSON and hashing as Kairos does.
        Command::RawUsers(args) => {
            let report = server_runtime()?.block_on(raw_users::run(&args))?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{report}");
            }
            Ok(())
        }
        Command::CopyEvents(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            let runs = runtime.block_on(copy_events::run(&args))?;
            let fastest = copy_events::fastest(&runs).context("no run")?;
            if args.json {
                println!("{}", serde_json::to_string(fastest)?);
            } else {
                for (i, run) in runs.iter().enumerate() {
                    println!("run {}: {run}", i + 1);
                }
                println!("fastest of {} runs: {fastest}", runs.len());
            }
            Ok(())
        }
        Command::Summarize(args) => {
            let summary = summarize::run(&args)?;
            println!("{}", summary.table());
            println!("wrote {}", args.out.display());
            Ok(())
        }
    }
}

/// What `#[tokio::main]` builds for Kairos: a worker thread per core.
fn server_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}
