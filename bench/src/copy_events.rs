//! `kairos-bench copy-events`: the "sequential read" baseline for rebuilds.
//!
//! Streams the whole `events` table out of PostgreSQL with
//! `COPY (SELECT * FROM events) TO STDOUT` (text format) over one connection, counting the
//! bytes and the rows (one newline per row: text COPY escapes newlines inside values) and
//! keeping nothing. That is as fast as the log can leave the database; a rebuild also decodes
//! every event and writes the read models. Runs `--runs` times (default 3) and reports the
//! fastest, to damp the noise of a shared machine.

use std::fmt;
use std::pin::Pin;
use std::time::Instant;

use anyhow::{Context as _, ensure};
use serde::Serialize;
use sqlx::postgres::PgConnection;
use sqlx::{Connection as _, Executor as _};

#[derive(clap::Args, Debug, Clone)]
pub struct CopyArgs {
    /// PostgreSQL URL of a Kairos database (the connection runs `SET ROLE kairos_service`).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Runs; the fastest is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Print one JSON object (the fastest run) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CopyReport {
    /// Rows read: every event.
    pub events: u64,
    /// Bytes of COPY text format received.
    pub bytes: u64,
    /// From sending the COPY to its end.
    pub seconds: f64,
    pub events_per_second: f64,
}

impl fmt::Display for CopyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} events, {} bytes in {:.3} s: {:.0} events/s, {:.1} MiB/s",
            self.events,
            self.bytes,
            self.seconds,
            self.events_per_second,
            if self.seconds > 0.0 {
                self.bytes as f64 / self.seconds / (1024.0 * 1024.0)
            } else {
                0.0
            }
        )
    }
}

/// One COPY of the whole table.
pub async fn copy_once(conn: &mut PgConnection) -> anyhow::Result<CopyReport> {
    let started = Instant::now();
    let mut stream = conn
        .copy_out_raw("COPY (SELECT * FROM events) TO STDOUT")
        .await
        .context("starting COPY of events")?;
    let (mut events, mut bytes) = (0u64, 0u64);
    while let Some(chunk) = std::future::poll_fn(|cx| Pin::as_mut(&mut stream).poll_next(cx)).await
    {
        let chunk = chunk.context("reading COPY data")?;
        bytes += chunk.len() as u64;
        events += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(CopyReport {
        events,
        bytes,
        seconds,
        events_per_second: if seconds > 0.0 {
            events as f64 / seconds
        } else {
            0.0
        },
    })
}

/// Every run, in order; the caller reports the fastest ([`fastest`]).
pub async fn run(args: &CopyArgs) -> anyhow::Result<Vec<CopyReport>> {
    ensure!(args.runs > 0, "--runs must be at least 1");
    let mut conn = PgConnection::connect(&args.database_url)
        .await
        .context("connecting to the database")?;
    conn.execute("SET ROLE kairos_service")
        .await
        .context("SET ROLE kairos_service (is the database migrated?)")?;
    let mut runs = Vec::with_capacity(args.runs as usize);
    for _ in 0..args.runs {
        runs.push(copy_once(&mut conn).await?);
    }
    conn.close().await.ok();
    Ok(runs)
}

/// The run with the fewest seconds.
pub fn fastest(runs: &[CopyReport]) -> Option<&CopyReport> {
    runs.iter().min_by(|a, b| a.seconds.total_cmp(&b.seconds))
}
