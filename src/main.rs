//! `kairos`: the server and its command line. Thin on purpose: parse, run, report.

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = kairos::cli::Cli::parse();
    let failure = cli.failure_status();
    match kairos::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kairos: error: {error:#}");
            std::process::ExitCode::from(failure)
        }
    }
}
