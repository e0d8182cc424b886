//! Connections. Migrations run as the database owner; everything else runs as the
//! `kairos_service` role, which may only SELECT and INSERT on `events` (see the first
//! migration), switched to by `SET ROLE` as each pooled connection opens.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgPool};

pub const SERVICE_ROLE: &str = "kairos_service";

/// A pooled connection idle this long is pinged before it is handed out.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Applies pending migrations as the owner.
pub async fn migrate(database_url: &str) -> Result<(), sqlx::Error> {
    let pool = owner_pool(database_url, 1).await?;
    MIGRATOR.run(&pool).await?;
    pool.close().await;
    Ok(())
}

/// A pool of owner connections: migrations, rebuild swaps, and tests that tamper.
pub async fn owner_pool(database_url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options(database_url)?)
        .await
}

/// A pool of service-role connections. `statement_timeout` bounds every statement of the
/// request path, so a stuck query answers 503 instead of hanging a client.
pub async fn service_pool(
    database_url: &str,
    max_connections: u32,
    statement_timeout: Option<Duration>,
) -> Result<PgPool, sqlx::Error> {
    pool_with(database_url, max_connections, statement_timeout, false).await
}

/// The projectors' pool. Their commits do not wait for the disk: read models are derived,
/// rows commit together with their checkpoint, and a crash can only lose a tail of projector
/// commits that is then applied again. (Appends, on the request pool, stay synchronous.)
pub async fn projector_pool(
    database_url: &str,
    max_connections: u32,
) -> Result<PgPool, sqlx::Error> {
    pool_with(database_url, max_connections, None, true).await
}

async fn pool_with(
    database_url: &str,
    max_connections: u32,
    statement_timeout: Option<Duration>,
    asynchronous_commit: bool,
) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // sqlx pings every connection it hands out by default: a full round trip before
        // each append and each projector batch. A connection in steady use needs none (a
        // dead one fails its next statement like any other database error); one that sat
        // idle, perhaps across a database restart, is still checked before use.
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE_FOR {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
        .after_connect(move |connection, _meta| {
            Box::pin(async move {
                connection
                    .execute(format!("SET ROLE {SERVICE_ROLE}").as_str())
                    .await?;
                if asynchronous_commit {
                    connection.execute("SET synchronous_commit = off").await?;
                }
                if let Some(timeout) = statement_timeout {
                    connection
                        .execute(
                            format!("SET statement_timeout = {}", timeout.as_millis()).as_str(),
                        )
                        .await?;
                }
                Ok(())
            })
        })
        .connect_with(options(database_url)?)
        .await
}

fn options(database_url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    Ok(PgConnectOptions::from_str(database_url)?.application_name("kairos"))
}
