//! Serving the router on a TCP listener, with the limits a public port needs (issue 15, item 3).
//!
//! `axum::serve` sets no timer, so hyper's header-read timeout never fires there, and it
//! accepts connections until the process runs out of descriptors. Here every connection is
//! served by hyper's HTTP/1 builder with a timer, and at most [`ConnectionLimits::max_connections`]
//! are open at once:
//!
//! - **Header-read timeout.** Hyper starts it whenever it waits for a request head: on a new
//!   connection and on a kept-alive one after each response. So it bounds both a client that
//!   stops mid-headers (slowloris) and an idle keep-alive connection; one timer, as hyper has no
//!   separate idle timeout for HTTP/1.
//! - **Connection cap.** A connection holds a semaphore permit from accept to close. At the cap
//!   the loop stops accepting: new connections wait in the kernel's listen backlog (and are
//!   refused by it once that is full), so descriptors stay bounded and nothing crashes.
//! - **Stalled sockets.** A connection whose socket makes no progress reading or writing for
//!   as long as a request head may take is closed, so a client that never reads its answers
//!   cannot keep its slot (`tokio-io-timeout`).
//! - **Header size.** A request head may hold [`MAX_HEADER_BYTES`] (`431` beyond), so that a
//!   stalled connection buffers kilobytes, not hyper's default of several hundred.
//! - **Graceful shutdown.** When `shutdown` resolves the loop stops accepting, idle connections
//!   close at once and in-flight requests finish before [`run`] returns; a connection still
//!   open after [`SHUTDOWN_GRACE`] (a client that never reads its answer) is abandoned.
//!
//! Each request carries `ConnectInfo<SocketAddr>` (the peer), which authentication uses to
//! limit failed attempts per source.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_io_timeout::TimeoutStream;
use tower::ServiceExt;

/// Connection limits of [`run`]; `KAIROS_HEADER_READ_TIMEOUT_SECS` and
/// `KAIROS_MAX_CONNECTIONS` in production (see `config.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From the moment the server waits for a request (a new connection, or a kept-alive one
    /// after its last response) until the request's head is complete. Also the idle
    /// keep-alive timeout.
    pub header_read_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
}

/// How long shutdown waits for open connections. Requests end within the edge's 30 s
/// timeout and a stalled head within the header timeout (at most 30 s), so only a peer that
/// does not read its answer is left then.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(35);

/// The largest request head (request line and headers) read; ours need a few hundred bytes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }
}

/// Raises this process's soft open-file limit to its hard limit (as Go's runtime does at
/// start) and returns the soft limit now in force; `None` where it cannot be read.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
            tracing::warn!(%error, "could not raise the open-file limit");
        }
        rlimit::getrlimit(rlimit::Resource::NOFILE)
            .ok()
            .map(|(soft, _)| soft)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Descriptors kept free besides the request pool (projector pool, listener, logs, the
/// migrator), when the cap is derived from the open-file limit.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// `wanted`, lowered so that connections, `pool_size` database connections and
/// [`RESERVED_DESCRIPTORS`] fit in `open_file_limit`.
pub fn cap_to_open_files(wanted: usize, open_file_limit: Option<u64>, pool_size: u32) -> usize {
    let Some(limit) = open_file_limit else {
        return wanted;
    };
    let reserved = RESERVED_DESCRIPTORS + u64::from(pool_size);
    let room = limit.saturating_sub(reserved).max(1);
    wanted
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Connection tasks hold a receiver each: `changed` tells them to wind down, and the sender
    // sees every receiver gone once the last connection closed.
    let (stop, stopping) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
        };
        // Answers are written whole, and Nagle's algorithm would only delay the last segment.
        let _ = stream.set_nodelay(true);
        // A socket that makes no progress either way for as long as a request head may take
        // is given up: a client that stops reading its answer (or sending its body) would
        // otherwise hold its connection slot for good.
        let mut stream = TimeoutStream::new(stream);
        stream.set_read_timeout(Some(limits.header_read_timeout));
        stream.set_write_timeout(Some(limits.header_read_timeout));
        let stream = Box::pin(stream);
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: axum::http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let (builder, mut stopping) = (builder.clone(), stopping.clone());
        tokio::spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    drop(stopping);
    // Every connection task sees the change, finishes its request and drops its receiver.
    let _ = stop.send(());
    if tokio::time::timeout(SHUTDOWN_GRACE, stop.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = stop.receiver_count(),
            "connections still open after the shutdown grace period are abandoned"
        );
    }
    Ok(())
}

/// Errors of `accept` that concern one connection (it was reset before we took it) are
/// skipped; others (out of descriptors, out of memory) would repeat at once, so the loop
/// pauses before it tries again rather than spinning.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The peer of a request served by [`run`] (none for a router driven in-process).
pub fn peer(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| *address)
}

#[cfg(test)]
mod tests {
    use super::cap_to_open_files;

    #[test]
    fn the_connection_cap_leaves_room_for_other_descriptors() {
        assert_eq!(cap_to_open_files(10_000, Some(1024), 20), 748);
        assert_eq!(cap_to_open_files(500, Some(1024), 20), 500);
        assert_eq!(cap_to_open_files(10_000, Some(100), 20), 1);
        assert_eq!(cap_to_open_files(10_000, None, 20), 10_000);
    }
}
