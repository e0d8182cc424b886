//! `kairos-bench`: a closed-loop HTTP/1.1 load generator ([`load`]), the baselines that
//! `make bench` measures Kairos against ([`serve`], [`raw_users`], [`copy_events`]) and the
//! summary of a run ([`summarize`]). See README.md.

pub mod client;
pub mod copy_events;
pub mod hist;
pub mod load;
pub mod raw_users;
pub mod serve;
pub mod summarize;
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
    /// User-creation baseline: Kairos's writes for one user as raw SQL, one transaction each.
    RawUsers(raw_users::RawUsersArgs),
    /// Rebuild baseline: COPY the whole events table out (3 runs by default); report the fastest.
    CopyEvents(copy_events::CopyArgs),
    /// Read a bench run's JSON files; print the table and write summary.json.
    Summarize(summarize::SummarizeArgs),
}
