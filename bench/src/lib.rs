//! `kairos-bench`: a closed-loop HTTP/1.1 load generator ([`load`]) and the baseline servers
//! ([`serve`]) that `make bench` measures Kairos against. See README.md.

pub mod client;
pub mod hist;
pub mod load;
pub mod serve;
pub mod template;

/// The command line of `kairos-bench`.
#[derive(clap::Parser, Debug)]
#[command(
    name = "kairos-bench",
    version,
    about = "Load generator and baseline servers for Kairos benchmarks"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Closed-loop HTTP/1.1 keep-alive load against one host; prints latency percentiles.
    Load(load::LoadArgs),
    /// Framework ceiling: answer every GET with a fixed JSON body.
    ServeStatic(serve::StaticArgs),
    /// Database floor: GET /q/{a}/{b} runs one SQL query and answers its first column.
    ServeSql(serve::SqlArgs),
}
