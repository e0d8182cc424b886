//! Configuration, only from the environment (api.md section 10). Every variable is listed in
//! the README.

use std::time::Duration;

use anyhow::{Context, bail};

use crate::http::ConnectionLimits;
/// Memory for bookable windows by default: every user of a few hundred thousand with office
/// hours, or some ten thousand with the heaviest schedules (the rest load on use).
pub const DEFAULT_WINDOWS_CACHE_MB: u64 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone)]
pub struct Config {
    /// `DATABASE_URL`: the primary (appends and queries). Required. Best a login that is only
    /// a member of `kairos_service`; the owner's works too.
    pub database_url: String,
    /// `KAIROS_MIGRATE_DATABASE_URL`: the owner's URL, for migrations and rebuilds (the only
    /// work that needs the owner's rights). Default: `DATABASE_URL`.
    pub migrate_database_url: Option<String>,
    /// `KAIROS_BIND`, default `127.0.0.1:8080`.
    pub bind: String,
    /// `KAIROS_PUBLIC_URL`: base of booking URLs; default `http://{KAIROS_BIND}`.
    pub public_url: Option<String>,
    /// `KAIROS_MASTER_KEY`: 32 random bytes, base64; wraps the per-user data keys.
    pub master_key: Option<String>,
    /// `KAIROS_LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// `KAIROS_RATE_LIMIT_PER_MINUTE`: per API key, default 100 (bursts to twice that); 0 = off.
    pub rate_limit_per_minute: u32,
    /// `KAIROS_DB_POOL_SIZE`: connections for requests, default 20.
    pub pool_size: u32,
    /// `KAIROS_READ_YOUR_WRITES_TIMEOUT_MS`: how long a command waits for read models, default 5000.
    pub read_your_writes_timeout: Duration,
    /// `KAIROS_HEADER_READ_TIMEOUT_SECS` (default 30, 1 to 30) and `KAIROS_MAX_CONNECTIONS`
    /// (default 10000; lowered to fit the open-file limit when serving).
    pub connections: ConnectionLimits,
    /// `KAIROS_AUTH_FAILURES_PER_MINUTE`: failed authentications per source address, default
    /// 60 (bursts to that many); 0 turns the limit off.
    pub auth_failures_per_minute: u32,
    /// `KAIROS_WINDOWS_CACHE_MB`: memory for bookable windows, in MiB, default 256.
    pub windows_cache_bytes: u64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("public_url", &self.public_url)
            .field("master_key", &self.master_key.as_ref().map(|_| "<set>"))
            .field("log_format", &self.log_format)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("pool_size", &self.pool_size)
            .field("connections", &self.connections)
            .field("auth_failures_per_minute", &self.auth_failures_per_minute)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let database_url = var("DATABASE_URL").context(
            "DATABASE_URL is not set: point it at a PostgreSQL database, or use `make run`, which starts one",
        )?;
        // A users bound no longer bounds memory (one user can cost a hundred times another);
        // ignoring it silently would leave an operator believing it still applies.
        if var("KAIROS_WINDOWS_CACHE_USERS").is_some() {
            bail!(
                "KAIROS_WINDOWS_CACHE_USERS was replaced by KAIROS_WINDOWS_CACHE_MB (memory for bookable windows, in MiB, default {DEFAULT_WINDOWS_CACHE_MB})"
            );
        }
        let log_format = match var("KAIROS_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("KAIROS_LOG_FORMAT must be text or json, not {other:?}"),
        };
        let number = |name: &str, default: u64| -> anyhow::Result<u64> {
            match var(name) {
                None => Ok(default),
                Some(raw) => raw
                    .trim()
                    .parse()
                    .with_context(|| format!("{name} must be a non-negative integer")),
            }
        };
        let defaults = ConnectionLimits::default();
        Ok(Self {
            database_url,
            migrate_database_url: var("KAIROS_MIGRATE_DATABASE_URL"),
            bind: var("KAIROS_BIND").unwrap_or_else(|| "127.0.0.1:8080".to_string()),
            public_url: var("KAIROS_PUBLIC_URL"),
            master_key: var("KAIROS_MASTER_KEY"),
            log_format,
            rate_limit_per_minute: u32::try_from(number("KAIROS_RATE_LIMIT_PER_MINUTE", 100)?)
                .context("KAIROS_RATE_LIMIT_PER_MINUTE is too large")?,
            pool_size: u32::try_from(number("KAIROS_DB_POOL_SIZE", 20)?.max(2))
                .context("KAIROS_DB_POOL_SIZE is too large")?,
            read_your_writes_timeout: Duration::from_millis(number(
                "KAIROS_READ_YOUR_WRITES_TIMEOUT_MS",
                5000,
            )?),
            connections: ConnectionLimits {
                header_read_timeout: header_read_timeout(number(
                    "KAIROS_HEADER_READ_TIMEOUT_SECS",
                    defaults.header_read_timeout.as_secs(),
                )?)?,
                max_connections: match number(
                    "KAIROS_MAX_CONNECTIONS",
                    defaults.max_connections as u64,
                )? {
                    0 => bail!("KAIROS_MAX_CONNECTIONS must be at least 1"),
                    n => usize::try_from(n).context("KAIROS_MAX_CONNECTIONS is too large")?,
                },
            },
            auth_failures_per_minute: u32::try_from(number("KAIROS_AUTH_FAILURES_PER_MINUTE", 60)?)
                .context("KAIROS_AUTH_FAILURES_PER_MINUTE is too large")?,
            windows_cache_bytes: number("KAIROS_WINDOWS_CACHE_MB", DEFAULT_WINDOWS_CACHE_MB)?
                .checked_mul(1 << 20)
                .context("KAIROS_WINDOWS_CACHE_MB is too large")?,
        })
    }

    /// The URL owner-only work (migrations, rebuilds) connects with.
    pub fn owner_url(&self) -> &str {
        self.migrate_database_url
            .as_deref()
            .unwrap_or(&self.database_url)
    }

    /// The master key, which every command that writes or reads personal data needs.
    pub fn keyring(&self) -> anyhow::Result<projections::keyring::Keyring> {
        let encoded = self.master_key.as_deref().context(
            "KAIROS_MASTER_KEY is not set: it wraps the per-user data keys (32 random bytes, base64, e.g. \
             `head -c 32 /dev/urandom | base64`); `make run` keeps one in .data/master.key",
        )?;
        projections::keyring::Keyring::from_base64(encoded).context("KAIROS_MASTER_KEY is invalid")
    }

    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| default_public_url(&self.bind))
            .trim_end_matches('/')
            .to_string()
    }
}

/// The header-read timeout is what closes a connection that stops sending (issue 15: within
/// 30 s), so it can be shortened but neither turned off nor lengthened past that.
fn header_read_timeout(seconds: u64) -> anyhow::Result<Duration> {
    if !(1..=30).contains(&seconds) {
        bail!("KAIROS_HEADER_READ_TIMEOUT_SECS must be between 1 and 30, not {seconds}");
    }
    Ok(Duration::from_secs(seconds))
}

/// `http://` and the bind address, except that a wildcard host (`0.0.0.0`, `[::]`, the usual
/// bind in a container) is no address a browser can open: it becomes `localhost`.
fn default_public_url(bind: &str) -> String {
    match bind.parse::<std::net::SocketAddr>() {
        Ok(address) if address.ip().is_unspecified() => {
            format!("http://localhost:{}", address.port())
        }
        _ => format!("http://{bind}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{default_public_url, header_read_timeout};
    use std::time::Duration;

    #[test]
    fn the_header_read_timeout_can_be_shortened_but_not_turned_off_or_lengthened() {
        assert_eq!(header_read_timeout(5).unwrap(), Duration::from_secs(5));
        assert_eq!(header_read_timeout(30).unwrap(), Duration::from_secs(30));
        assert!(header_read_timeout(0).is_err());
        assert!(header_read_timeout(31).is_err());
    }

    #[test]
    fn the_default_public_url_is_the_bind_address_unless_that_is_a_wildcard() {
        assert_eq!(
            default_public_url("127.0.0.1:8080"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(default_public_url("0.0.0.0:8080"), "http://localhost:8080");
        assert_eq!(default_public_url("[::]:9000"), "http://localhost:9000");
        assert_eq!(default_public_url("[::1]:9000"), "http://[::1]:9000");
    }
}
