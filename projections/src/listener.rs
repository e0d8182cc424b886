//! The runtime's listener: one `LISTEN` connection per process that relays notifications.
//!
//! Appends wake the local leaders, checkpoints of other processes update [`Progress`], cache
//! notices reach their caches, sync markers answer [`Progress`]'s waits. Whenever the listener
//! does not follow its channels (at start, after a lost connection) the caches stand aside
//! until it does again, and polling covers the projectors' progress meanwhile.
//!
//! A connection can be lost without closing: after a failover, or a network path that drops
//! packets, the socket stays open and simply goes silent, and a listener blocked in a read
//! would wait forever while the caches served values nobody invalidates any more. So:
//!
//! - the listener sends itself a heartbeat marker every [`ListenerConfig::heartbeat_interval`]
//!   over its own connection; a marker that has not come back within
//!   [`ListenerConfig::heartbeat_timeout`] counts as a lost connection (caches stand aside,
//!   the listener reconnects). This bounds how long a silent socket goes unnoticed, whatever
//!   the network does.
//! - the connection asks the server for TCP keepalives (`tcp_keepalives_*`), so the server
//!   drops a backend whose client vanished. sqlx 0.8 cannot set keepalives on the client's
//!   socket (an open feature request upstream); the heartbeat covers that side. Without the
//!   server's probes, a dead listening backend would also hold back the cleanup of
//!   PostgreSQL's notification queue, which every listener must have read before it shrinks.
//! - each connection comes from a pool of its own: a lost connection is abandoned with its
//!   pool (sqlx's drop sends `UNLISTEN` and waits for the answer, which on a silent socket
//!   lasts until the kernel gives up on the write), so a dead listener can never take a
//!   connection from the projectors.
//!
//! When the connection is lost, the caches stand aside *before* the process is told it no
//! longer follows: [`Progress`] takes "not following" to mean there is no cache notice left
//! to wait for, which is only true once the caches serve nothing.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::log::LogPosition;
use crate::runtime::{
    CHECKPOINTS_CHANNEL, EVENTS_CHANNEL, Progress, SYNC_CHANNEL, Shutdown, Subscription,
};

/// Tunables of the listener's connection and liveness checks.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Where to `LISTEN`, if not the projectors' database options (a direct connection, for
    /// example, where the others go through a transaction-pooling proxy that cannot LISTEN).
    pub connect: Option<PgConnectOptions>,
    /// How often the listener checks that its connection still delivers.
    pub heartbeat_interval: Duration,
    /// How long a heartbeat marker may take to come back before the connection counts as
    /// lost. Also bounds connecting and subscribing.
    pub heartbeat_timeout: Duration,
    /// The server probes an idle connection after this long (`tcp_keepalives_idle`), then
    /// every `keepalive_interval`, `keepalive_count` times, before dropping it.
    pub keepalive_idle: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_count: u32,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            connect: None,
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(5),
            keepalive_idle: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(10),
            keepalive_count: 3,
        }
    }
}

impl ListenerConfig {
    /// `base` with the server-side keepalive settings added to its startup options.
    fn connect_options(&self, base: &PgConnectOptions) -> PgConnectOptions {
        let seconds = |d: Duration| d.as_secs().max(1).to_string();
        self.connect
            .clone()
            .unwrap_or_else(|| base.clone())
            .options([
                ("tcp_keepalives_idle", seconds(self.keepalive_idle)),
                ("tcp_keepalives_interval", seconds(self.keepalive_interval)),
                ("tcp_keepalives_count", self.keepalive_count.to_string()),
            ])
    }
}

/// Follows every channel for as long as the runtime runs (see the module documentation).
pub(crate) async fn listen(
    base: PgConnectOptions,
    config: ListenerConfig,
    wake: Arc<Notify>,
    progress: Progress,
    subscriptions: Vec<Subscription>,
    mut shutdown: Shutdown,
) {
    let options = config.connect_options(&base);
    let mut backoff = Duration::from_millis(100);
    let mut channels = vec![EVENTS_CHANNEL, CHECKPOINTS_CHANNEL, SYNC_CHANNEL];
    channels.extend(subscriptions.iter().map(|s| s.channel));
    // Names this listener in its heartbeat markers, which no other process or wait takes for
    // its own.
    let beat_origin = format!("beat-{:016x}", rand::random::<u64>());
    while !shutdown.is_triggered() {
        stop_following(&progress, &subscriptions);
        let followed = tokio::time::timeout(config.heartbeat_timeout, async {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                .acquire_timeout(config.heartbeat_timeout)
                .connect_lazy_with(options.clone());
            let mut listener = PgListener::connect_with(&pool).await?;
            // A lost connection is replaced here, with a fresh pool, not inside sqlx.
            listener.eager_reconnect(false);
            listener.listen_all(channels.iter().copied()).await?;
            Ok::<_, sqlx::Error>(listener)
        });
        let mut listener = match followed.await {
            Ok(Ok(listener)) => listener,
            failed => {
                match failed {
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "cannot LISTEN for log notifications; polling meanwhile")
                    }
                    _ => tracing::warn!(
                        "connecting to LISTEN for log notifications timed out; polling meanwhile"
                    ),
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.wait() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        for subscription in &subscriptions {
            (subscription.on_followed)();
        }
        progress.set_following(true);
        // Appends made while not listening may be waiting.
        wake.notify_waiters();
        backoff = Duration::from_millis(100);
        let mut heartbeat = Heartbeat::new(&config, &beat_origin);
        loop {
            let notification = tokio::select! {
                received = listener.try_recv() => received,
                _ = tokio::time::sleep_until(heartbeat.next_deadline()) => {
                    match heartbeat.due(Instant::now()) {
                        Beat::Send(payload) => {
                            // Over the listener's own connection: its answer and the marker
                            // both travel the socket whose liveness is in question. A
                            // notification arriving meanwhile is buffered, not lost.
                            let sent = tokio::time::timeout(
                                config.heartbeat_timeout,
                                sqlx::query("SELECT pg_notify($1, $2)")
                                    .bind(SYNC_CHANNEL)
                                    .bind(payload)
                                    .execute(&mut listener),
                            )
                            .await;
                            if !matches!(sent, Ok(Ok(_))) {
                                tracing::warn!(
                                    "the LISTEN connection did not answer a heartbeat; reconnecting"
                                );
                                break;
                            }
                            continue;
                        }
                        Beat::Lost => {
                            tracing::warn!(
                                "a heartbeat marker did not come back on the LISTEN connection; reconnecting"
                            );
                            break;
                        }
                        Beat::Wait => continue,
                    }
                }
                _ = shutdown.wait() => return,
            };
            match notification {
                Ok(Some(notification)) => match notification.channel() {
                    EVENTS_CHANNEL => wake.notify_waiters(),
                    CHECKPOINTS_CHANNEL => {
                        if let Some((name, position)) =
                            parse_checkpoint_notice(notification.payload())
                        {
                            progress.publish(name, position);
                        }
                    }
                    SYNC_CHANNEL => {
                        if !heartbeat.returned(notification.payload(), Instant::now()) {
                            progress.marker_received(notification.payload());
                        }
                    }
                    channel => {
                        for subscription in subscriptions.iter().filter(|s| s.channel == channel) {
                            (subscription.on_notice)(notification.payload());
                        }
                    }
                },
                // The connection was lost: whatever was sent meanwhile is gone.
                Ok(None) => {
                    tracing::warn!("log notifications were interrupted; reconnecting");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "log notifications interrupted; reconnecting");
                    break;
                }
            }
        }
        // Stand aside at once: dropping the listener below may take long on a silent socket
        // (sqlx's drop waits for its UNLISTEN in a task of its own, but only after this).
        stop_following(&progress, &subscriptions);
        drop(listener);
    }
}

/// Notices may be missed from now on. The caches stand aside first, and only then is the
/// process told: a wait that sees "not following" skips its sync marker, trusting that no
/// cache serves anything that a notice in flight would have dropped.
fn stop_following(progress: &Progress, subscriptions: &[Subscription]) {
    for subscription in subscriptions {
        (subscription.on_unfollowed)();
    }
    progress.set_following(false);
}

fn parse_checkpoint_notice(payload: &str) -> Option<(&str, LogPosition)> {
    let mut parts = payload.split(' ');
    let name = parts.next()?;
    let tx_id = parts.next()?.parse().ok()?;
    let position = parts.next()?.parse().ok()?;
    Some((name, LogPosition { tx_id, position }))
}

/// The listener's liveness check: one marker at a time, each due back within the timeout.
struct Heartbeat<'a> {
    origin: &'a str,
    interval: Duration,
    timeout: Duration,
    sent: u64,
    /// When the marker in flight must be back by, if one is.
    awaited: Option<Instant>,
    next_send: Instant,
}

enum Beat {
    /// Time to send this payload on the sync channel.
    Send(String),
    /// The marker in flight is overdue: the connection no longer delivers.
    Lost,
    /// Nothing is due yet (a timer fired early).
    Wait,
}

impl<'a> Heartbeat<'a> {
    fn new(config: &ListenerConfig, origin: &'a str) -> Self {
        Self {
            origin,
            interval: config.heartbeat_interval,
            timeout: config.heartbeat_timeout,
            sent: 0,
            awaited: None,
            next_send: Instant::now() + config.heartbeat_interval,
        }
    }

    fn next_deadline(&self) -> Instant {
        self.awaited.unwrap_or(self.next_send)
    }

    fn due(&mut self, now: Instant) -> Beat {
        match self.awaited {
            Some(deadline) if now >= deadline => Beat::Lost,
            Some(_) => Beat::Wait,
            None if now >= self.next_send => {
                self.sent += 1;
                self.awaited = Some(now + self.timeout);
                Beat::Send(format!("{} {}", self.origin, self.sent))
            }
            None => Beat::Wait,
        }
    }

    /// Whether `payload` is this listener's heartbeat (then it is consumed here).
    fn returned(&mut self, payload: &str, now: Instant) -> bool {
        let Some((origin, marker)) = payload.split_once(' ') else {
            return false;
        };
        if origin != self.origin {
            return false;
        }
        if marker.parse::<u64>().ok() == Some(self.sent) {
            self.awaited = None;
            self.next_send = now + self.interval;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn caches_stand_aside_before_the_process_is_told_the_listener_stopped_following() {
        let progress = Progress::new(&[]);
        progress.set_following(true);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let following = progress.following();
        let record = seen.clone();
        let subscription = Subscription {
            channel: "test",
            on_notice: Arc::new(|_| {}),
            on_unfollowed: Arc::new(move || record.lock().unwrap().push(*following.borrow())),
            on_followed: Arc::new(|| {}),
        };
        stop_following(&progress, &[subscription]);
        assert_eq!(
            *seen.lock().unwrap(),
            [true],
            "the cache stood aside while the process still believed it followed"
        );
        assert!(!*progress.following().borrow());
    }

    #[test]
    fn a_heartbeat_that_does_not_come_back_in_time_means_the_connection_is_lost() {
        let config = ListenerConfig {
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(2),
            ..ListenerConfig::default()
        };
        let mut heartbeat = Heartbeat::new(&config, "beat-a");
        let start = Instant::now();
        assert!(matches!(heartbeat.due(start), Beat::Wait));
        let sent_at = heartbeat.next_deadline();
        let Beat::Send(payload) = heartbeat.due(sent_at) else {
            panic!("a marker is due after the interval");
        };
        assert!(
            !heartbeat.returned("beat-b 1", sent_at),
            "another listener's"
        );
        assert!(
            !heartbeat.returned("0123456789abcdef 1", sent_at),
            "a wait's"
        );
        // It came back: the next one is due an interval later.
        let back = sent_at + Duration::from_millis(1);
        assert!(heartbeat.returned(&payload, back));
        assert_eq!(heartbeat.next_deadline(), back + Duration::from_secs(5));
        let sent_at = heartbeat.next_deadline();
        let Beat::Send(_) = heartbeat.due(sent_at) else {
            panic!("the second marker is due");
        };
        // It never comes back.
        assert_eq!(heartbeat.next_deadline(), sent_at + Duration::from_secs(2));
        assert!(matches!(
            heartbeat.due(sent_at + Duration::from_secs(1)),
            Beat::Wait
        ));
        assert!(matches!(
            heartbeat.due(heartbeat.next_deadline()),
            Beat::Lost
        ));
    }

    #[test]
    fn the_connection_asks_the_server_for_keepalives() {
        let options = ListenerConfig::default().connect_options(&PgConnectOptions::new());
        let startup = options.get_options().unwrap_or_default();
        for setting in [
            "tcp_keepalives_idle=30",
            "tcp_keepalives_interval=10",
            "tcp_keepalives_count=3",
        ] {
            assert!(startup.contains(setting), "{startup}");
        }
    }
}
