//! The two baseline servers `make bench` compares Kairos with, served like Kairos serves
//! (plain `axum::serve` on a multi-threaded runtime):
//!
//! - `serve-static`, the framework ceiling: every GET answers a fixed JSON body.
//! - `serve-sql`, the database floor: `GET /q/{a}/{b}` runs one SQL query with the two path
//!   segments bound as text and answers the first column of every row as a JSON array.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sqlx::Row as _;
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::net::TcpListener;

#[derive(clap::Args, Debug, Clone)]
pub struct StaticArgs {
    /// Address to listen on; port 0 picks a free one (printed as `listening on ADDR`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: String,
    /// File whose bytes every response carries, as application/json.
    #[arg(long, value_name = "PATH")]
    pub body_file: PathBuf,
}

#[derive(clap::Args, Debug, Clone)]
pub struct SqlArgs {
    /// Address to listen on; port 0 picks a free one (printed as `listening on ADDR`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: String,
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Maximum connections of the pool.
    #[arg(long, default_value_t = 20)]
    pub pool_size: u32,
    /// SQL with `$1` and `$2` bound as text to the path segments of `/q/{a}/{b}`; its first
    /// column must be text (cast it in the SQL, e.g. `SELECT id::text ... WHERE x = $1::uuid`).
    #[arg(long)]
    pub query: String,
}

/// Binds `bind` and prints `listening on ADDR` (flushed), so a script can read the port.
pub async fn bind_and_announce(bind: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    let addr = listener.local_addr()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()?;
    Ok(listener)
}

/// Every GET path answers `body` as application/json.
pub fn static_router(body: Bytes) -> Router {
    let handler = move || {
        let body = body.clone();
        async move {
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
        }
    };
    Router::new().fallback(get(handler))
}

struct SqlState {
    pool: PgPool,
    query: String,
}

pub fn sql_router(pool: PgPool, query: String) -> Router {
    Router::new()
        .route("/q/{a}/{b}", get(sql_handler))
        .with_state(Arc::new(SqlState { pool, query }))
}

async fn sql_handler(
    State(state): State<Arc<SqlState>>,
    Path((a, b)): Path<(String, String)>,
) -> Response {
    let rows = match sqlx::query(&state.query)
        .bind(a)
        .bind(b)
        .fetch_all(&state.pool)
        .await
    {
        Ok(rows) => rows,
        Err(error) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("query failed: {error}"),
            )
                .into_response();
        }
    };
    let values: Result<Vec<Option<String>>, _> = rows
        .iter()
        .map(|row| row.try_get::<Option<String>, _>(0))
        .collect();
    match values {
        Ok(values) => axum::Json(values).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("first column is not text: {error}"),
        )
            .into_response(),
    }
}

pub async fn serve_static(args: &StaticArgs) -> anyhow::Result<()> {
    let body = std::fs::read(&args.body_file)
        .with_context(|| format!("reading {}", args.body_file.display()))?;
    let listener = bind_and_announce(&args.bind).await?;
    serve_until_signal(listener, static_router(Bytes::from(body))).await
}

pub async fn serve_sql(args: &SqlArgs) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(args.pool_size)
        .connect(&args.database_url)
        .await
        .context("connecting to the database")?;
    let listener = bind_and_announce(&args.bind).await?;
    serve_until_signal(listener, sql_router(pool.clone(), args.query.clone())).await?;
    pool.close().await;
    Ok(())
}

/// Serves until SIGTERM or SIGINT, then lets in-flight requests finish for up to 5 s.
pub async fn serve_until_signal(listener: TcpListener, router: Router) -> anyhow::Result<()> {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let deadline = async move {
        let _ = stop_rx.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    tokio::select! {
        result = std::future::IntoFuture::into_future(server) => result.context("serving")?,
        () = deadline => eprintln!("kairos-bench: connections still open 5 s after the signal; stopping"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
