//! `kairos-bench load`: a closed-loop HTTP/1.1 keep-alive load generator.
//!
//! Each of `--connections` tasks owns one TCP connection and sends its next request as soon
//! as the previous response has been read in full. Requests that start during the warm-up
//! are not counted; requests that start before the end of `--duration` are counted once they
//! finish; a request still unanswered `--hard-stop` seconds after the end is counted as a
//! timeout and the run ends anyway. Latencies go into a per-connection [`Histogram`].

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;

use crate::client::{ClientError, Connection, Response};
use crate::hist::Histogram;
use crate::template::Template;

#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Concurrent keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Measured seconds, after the warm-up (fractions allowed).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load whose requests are not counted.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Request method (GET, POST, ...).
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Extra request header, 'Name: value' (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// File with one URL per line (blank lines and '#' comments skipped); each request
    /// picks a random line. All URLs must share one scheme://host:port.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "url",
        conflicts_with = "url"
    )]
    pub urls_file: Option<PathBuf>,
    /// The single URL to request (http:// only).
    #[arg(long)]
    pub url: Option<String>,
    // (clap prints a braced n in help text as a line break, hence the wording below.)
    /// Request body template with two placeholders, n and uuid, each written in braces:
    /// n becomes a unique increasing integer per request, each uuid a fresh random UUID.
    /// Sent with content-type application/json unless a --header sets one.
    #[arg(long, value_name = "TEMPLATE")]
    pub body: Option<String>,
    /// The first value of the n placeholder (use a new range per run when it must be unique
    /// in a database).
    #[arg(long, default_value_t = 1)]
    pub counter_start: u64,
    /// Responses with another status are counted as errors (and still timed).
    #[arg(long, default_value_t = 200)]
    pub expect_status: u16,
    /// Stop after this many counted requests.
    #[arg(long)]
    pub max_requests: Option<u64>,
    /// Client runtime threads; 1 keeps the client's CPU share small on a shared machine.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Seconds after the end to wait for unanswered requests before counting them as timeouts.
    #[arg(long, default_value_t = 30.0)]
    pub hard_stop: f64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Counted requests: every outcome, answered or not.
    pub requests: u64,
    /// Responses with an unexpected status plus transport failures.
    pub errors: u64,
    /// Count per HTTP status ("200", "500", ...) and per transport failure ("connect_error",
    /// "io_error", "protocol_error", "timeout"); the values add up to `requests`.
    pub status_counts: BTreeMap<String, u64>,
    /// From the end of the warm-up to the last counted response.
    pub duration_seconds: f64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Mean response body size over the timed (answered) requests.
    pub mean_body_bytes: f64,
}

/// Where a URL points: the address to connect to and what goes on the request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub authority: String,
    pub host: String,
    pub port: u16,
    pub path: String,
}

pub fn parse_url(url: &str) -> anyhow::Result<Target> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("only http:// URLs are supported: {url}"))?;
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let path = path.split('#').next().unwrap_or_default().to_string();
    ensure!(
        !authority.is_empty() && !authority.contains('@'),
        "bad host in URL: {url}"
    );
    ensure!(
        path.bytes().all(|b| b.is_ascii_graphic()),
        "URL path must be ASCII without spaces (percent-encode it): {url}"
    );
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .with_context(|| format!("bad IPv6 host in URL: {url}"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(port) => port
            .parse()
            .with_context(|| format!("bad port in URL: {url}"))?,
        None => 80,
    };
    Ok(Target {
        authority: authority.to_string(),
        host: host.to_string(),
        port,
        path,
    })
}

/// Everything a request needs, serialized once.
struct Plan {
    addr: SocketAddr,
    /// Per URL: the whole request when the body is fixed; the head without its
    /// content-length and final CRLF when the body is a template.
    requests: Vec<Vec<u8>>,
    template: Option<Template>,
    expect_status: u16,
}

impl Plan {
    async fn new(args: &LoadArgs) -> anyhow::Result<Self> {
        let urls: Vec<String> = match (&args.url, &args.urls_file) {
            (Some(url), None) => vec![url.clone()],
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(str::to_string)
                .collect(),
            _ => bail!("give exactly one of --url and --urls-file"),
        };
        ensure!(!urls.is_empty(), "no URL to request");
        let targets = urls
            .iter()
            .map(|url| parse_url(url))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let first = &targets[0];
        if let Some(other) = targets
            .iter()
            .find(|t| (&t.host, t.port) != (&first.host, first.port))
        {
            bail!(
                "all URLs must use one host and port: {}:{} and {}:{}",
                first.host,
                first.port,
                other.host,
                other.port
            );
        }
        let addr = tokio::net::lookup_host((first.host.as_str(), first.port))
            .await
            .with_context(|| format!("resolving {}", first.host))?
            .next()
            .with_context(|| format!("{} resolves to no address", first.host))?;

        let method = args.method.to_ascii_uppercase();
        ensure!(
            !method.is_empty() && method.bytes().all(|b| b.is_ascii_alphabetic()),
            "bad method {method:?}"
        );
        let mut headers = Vec::new();
        let (mut has_host, mut has_content_type) = (false, false);
        for header in &args.headers {
            let (name, value) = header
                .split_once(':')
                .with_context(|| format!("header must be 'Name: value': {header:?}"))?;
            let (name, value) = (name.trim(), value.trim());
            ensure!(
                !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_graphic())
                    && !value.contains(['\r', '\n']),
                "bad header {header:?}"
            );
            ensure!(
                !name.eq_ignore_ascii_case("content-length")
                    && !name.eq_ignore_ascii_case("transfer-encoding"),
                "the body framing headers are set by kairos-bench: {header:?}"
            );
            has_host |= name.eq_ignore_ascii_case("host");
            has_content_type |= name.eq_ignore_ascii_case("content-type");
            write!(headers, "{name}: {value}\r\n")?;
        }
        let template = args.body.as_deref().map(Template::parse);
        let fixed_body = match &template {
            Some(template) => template.as_static(),
            None if matches!(method.as_str(), "POST" | "PUT" | "PATCH") => Some(Vec::new()),
            None => None,
        };
        let mut requests = Vec::with_capacity(targets.len());
        for target in &targets {
            let mut request = Vec::with_capacity(256);
            write!(request, "{method} {} HTTP/1.1\r\n", target.path)?;
            if !has_host {
                write!(request, "host: {}\r\n", target.authority)?;
            }
            request.extend_from_slice(&headers);
            if args.body.is_some() && !has_content_type {
                request.extend_from_slice(b"content-type: application/json\r\n");
            }
            if let Some(body) = &fixed_body {
                write!(request, "content-length: {}\r\n\r\n", body.len())?;
                request.extend_from_slice(body);
            } else if template.is_none() {
                request.extend_from_slice(b"\r\n");
            }
            requests.push(request);
        }
        Ok(Self {
            addr,
            requests,
            template: if fixed_body.is_some() { None } else { template },
            expect_status: args.expect_status,
        })
    }

    /// The bytes of the next request to URL `idx`, rendering the body template if any.
    fn request<'a>(
        &'a self,
        idx: usize,
        scratch: &'a mut Scratch,
        counter: &AtomicU64,
        rng: &mut StdRng,
    ) -> &'a [u8] {
        let Some(template) = &self.template else {
            return &self.requests[idx];
        };
        scratch.body.clear();
        template.render(&mut scratch.body, counter, rng);
        scratch.request.clear();
        scratch.request.extend_from_slice(&self.requests[idx]);
        let _ = write!(
            scratch.request,
            "content-length: {}\r\n\r\n",
            scratch.body.len()
        );
        scratch.request.extend_from_slice(&scratch.body);
        &scratch.request
    }
}

#[derive(Default)]
struct Scratch {
    request: Vec<u8>,
    body: Vec<u8>,
}

#[derive(Clone, Copy)]
struct Times {
    warm_end: Instant,
    end: Instant,
    hard: Instant,
}

struct Shared {
    counter: AtomicU64,
    started: AtomicU64,
    max_requests: Option<u64>,
}

enum Outcome {
    Answered(Response),
    ConnectError,
    Failed(ClientError),
}

struct Stats {
    hist: Histogram,
    statuses: Vec<u64>,
    connect_errors: u64,
    io_errors: u64,
    protocol_errors: u64,
    timeouts: u64,
    body_bytes: u64,
    last_counted: Option<Instant>,
}

impl Stats {
    fn new() -> Self {
        Self {
            hist: Histogram::new(),
            statuses: vec![0; 1000],
            connect_errors: 0,
            io_errors: 0,
            protocol_errors: 0,
            timeouts: 0,
            body_bytes: 0,
            last_counted: None,
        }
    }

    fn record(&mut self, outcome: &Outcome, latency: Duration) {
        match outcome {
            Outcome::Answered(response) => {
                self.hist
                    .record(latency.as_micros().try_into().unwrap_or(u64::MAX));
                self.statuses[usize::from(response.status).min(999)] += 1;
                self.body_bytes += response.body_bytes;
            }
            Outcome::ConnectError => self.connect_errors += 1,
            Outcome::Failed(ClientError::Protocol(_)) => self.protocol_errors += 1,
            Outcome::Failed(ClientError::Io(_) | ClientError::Closed) => self.io_errors += 1,
        }
    }

    fn merge(&mut self, other: &Stats) {
        self.hist.merge(&other.hist);
        for (mine, theirs) in self.statuses.iter_mut().zip(&other.statuses) {
            *mine += theirs;
        }
        self.connect_errors += other.connect_errors;
        self.io_errors += other.io_errors;
        self.protocol_errors += other.protocol_errors;
        self.timeouts += other.timeouts;
        self.body_bytes += other.body_bytes;
        self.last_counted = self.last_counted.max(other.last_counted);
    }

    fn report(&self, expect_status: u16, duration: Duration) -> Report {
        let mut status_counts = BTreeMap::new();
        let mut errors = 0;
        for (status, &count) in self
            .statuses
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
        {
            status_counts.insert(status.to_string(), count);
            if status != usize::from(expect_status) {
                errors += count;
            }
        }
        for (name, count) in [
            ("connect_error", self.connect_errors),
            ("io_error", self.io_errors),
            ("protocol_error", self.protocol_errors),
            ("timeout", self.timeouts),
        ] {
            if count > 0 {
                status_counts.insert(name.to_string(), count);
                errors += count;
            }
        }
        let requests = status_counts.values().sum();
        let seconds = duration.as_secs_f64();
        let ms = |micros: u64| micros as f64 / 1000.0;
        let answered = self.hist.count();
        Report {
            requests,
            errors,
            status_counts,
            duration_seconds: seconds,
            requests_per_second: if seconds > 0.0 {
                requests as f64 / seconds
            } else {
                0.0
            },
            p50_ms: ms(self.hist.quantile(0.50)),
            p90_ms: ms(self.hist.quantile(0.90)),
            p99_ms: ms(self.hist.quantile(0.99)),
            max_ms: ms(self.hist.max()),
            mean_ms: self.hist.mean() / 1000.0,
            mean_body_bytes: if answered > 0 {
                self.body_bytes as f64 / answered as f64
            } else {
                0.0
            },
        }
    }
}

fn seconds(value: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("{what} must be a non-negative number of seconds"))
}

/// Runs the load described by `args` and reports on the counted requests.
pub async fn run(args: &LoadArgs) -> anyhow::Result<Report> {
    ensure!(args.connections > 0, "--connections must be at least 1");
    let duration = seconds(args.duration, "--duration")?;
    ensure!(!duration.is_zero(), "--duration must be positive");
    let warmup = seconds(args.warmup, "--warmup")?;
    let hard_stop = seconds(args.hard_stop, "--hard-stop")?;
    let plan = Arc::new(Plan::new(args).await?);
    let shared = Arc::new(Shared {
        counter: AtomicU64::new(args.counter_start),
        started: AtomicU64::new(0),
        max_requests: args.max_requests,
    });
    let start = Instant::now();
    let later = |at: Instant, by: Duration| {
        at.checked_add(by)
            .context("--warmup, --duration and --hard-stop are too long")
    };
    let warm_end = later(start, warmup)?;
    let end = later(warm_end, duration)?;
    let times = Times {
        warm_end,
        end,
        hard: later(end, hard_stop)?,
    };
    let workers: Vec<_> = (0..args.connections)
        .map(|_| tokio::spawn(worker(Arc::clone(&plan), Arc::clone(&shared), times)))
        .collect();
    let mut total = Stats::new();
    for worker in workers {
        total.merge(&worker.await.context("load worker panicked")?);
    }
    let measured = total
        .last_counted
        .unwrap_or(warm_end.max(Instant::now().min(end)))
        .saturating_duration_since(warm_end);
    Ok(total.report(plan.expect_status, measured))
}

async fn worker(plan: Arc<Plan>, shared: Arc<Shared>, times: Times) -> Stats {
    let mut stats = Stats::new();
    let mut in_flight = false;
    let hard = tokio::time::Instant::from_std(times.hard);
    let finished = tokio::time::timeout_at(
        hard,
        work(&plan, &shared, times, &mut stats, &mut in_flight),
    )
    .await;
    if finished.is_err() && in_flight {
        // Unanswered at the hard stop: a timeout, even if it was sent during the warm-up.
        stats.timeouts += 1;
        stats.last_counted = Some(Instant::now());
    }
    stats
}

async fn work(plan: &Plan, shared: &Shared, times: Times, stats: &mut Stats, in_flight: &mut bool) {
    let mut rng = StdRng::seed_from_u64(rand::random());
    let mut scratch = Scratch::default();
    let mut connection: Option<Connection> = None;
    let urls = plan.requests.len();
    loop {
        let now = Instant::now();
        if now >= times.end {
            return;
        }
        let counted = now >= times.warm_end;
        if counted
            && let Some(max) = shared.max_requests
            && shared.started.fetch_add(1, Ordering::Relaxed) >= max
        {
            return;
        }
        let idx = if urls == 1 { 0 } else { rng.gen_range(0..urls) };
        let request = plan.request(idx, &mut scratch, &shared.counter, &mut rng);
        *in_flight = true;
        let sent = Instant::now();
        let outcome = exchange(&mut connection, plan.addr, request).await;
        let done = Instant::now();
        *in_flight = false;
        if counted {
            stats.record(&outcome, done - sent);
            stats.last_counted = Some(done);
        }
        if matches!(outcome, Outcome::ConnectError) {
            // Back off instead of spinning while nothing listens.
            let pause = (done + Duration::from_millis(50)).min(times.end);
            tokio::time::sleep_until(tokio::time::Instant::from_std(pause)).await;
        }
    }
}

/// One request on the connection, opening one first if needed. A reused connection that the
/// server had closed while idle is replaced and the request sent again, once.
async fn exchange(
    connection: &mut Option<Connection>,
    addr: SocketAddr,
    request: &[u8],
) -> Outcome {
    let mut retried = false;
    loop {
        let reused = connection.is_some();
        let conn = match connection {
            Some(conn) => conn,
            None => match Connection::connect(addr).await {
                Ok(conn) => connection.insert(conn),
                Err(_) => return Outcome::ConnectError,
            },
        };
        match conn.exchange(request).await {
            Ok(response) => {
                if !response.keep_alive {
                    *connection = None;
                }
                return Outcome::Answered(response);
            }
            Err(error) => {
                *connection = None;
                if reused && !retried && matches!(error, ClientError::Closed) {
                    retried = true;
                    continue;
                }
                return Outcome::Failed(error);
            }
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let statuses: Vec<String> = self
            .status_counts
            .iter()
            .map(|(status, count)| format!("{status}={count}"))
            .collect();
        writeln!(f, "requests    {} ({} errors)", self.requests, self.errors)?;
        writeln!(f, "statuses    {}", statuses.join(" "))?;
        writeln!(f, "duration    {:.3} s", self.duration_seconds)?;
        writeln!(f, "throughput  {:.1} req/s", self.requests_per_second)?;
        writeln!(
            f,
            "latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  mean {:.3}",
            self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms, self.mean_ms
        )?;
        write!(f, "body bytes  {:.1} mean", self.mean_body_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t =
            parse_url("http://127.0.0.1:8080/v4/user/abc/bookable-windows?startDate=2026-01-01")
                .unwrap();
        assert_eq!(
            t,
            Target {
                authority: "127.0.0.1:8080".into(),
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/v4/user/abc/bookable-windows?startDate=2026-01-01".into(),
            }
        );
        let t = parse_url("http://localhost").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("localhost", 80, "/")
        );
        let t = parse_url("http://[::1]:9000?x=1#frag").unwrap();
        assert_eq!(
            (
                t.authority.as_str(),
                t.host.as_str(),
                t.port,
                t.path.as_str()
            ),
            ("[::1]:9000", "::1", 9000, "/?x=1")
        );
        assert!(parse_url("https://example.com/").is_err());
        assert!(parse_url("http://host:notaport/").is_err());
        assert!(parse_url("http:///path").is_err());
        assert!(parse_url("http://h/a b").is_err());
    }

    fn args(extra: &[&str]) -> LoadArgs {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            load: LoadArgs,
        }
        let mut argv = vec!["load"];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).load
    }

    #[tokio::test]
    async fn serializes_get_and_templated_post_requests() {
        let plan = Plan::new(&args(&[
            "--url",
            "http://127.0.0.1:1/a?b=c",
            "-H",
            "Authorization: Bearer k",
        ]))
        .await
        .unwrap();
        assert_eq!(
            plan.requests[0],
            b"GET /a?b=c HTTP/1.1\r\nhost: 127.0.0.1:1\r\nAuthorization: Bearer k\r\n\r\n"
        );
        assert!(plan.template.is_none());

        let plan = Plan::new(&args(&[
            "--url",
            "http://127.0.0.1:1/p",
            "--method",
            "post",
            "--body",
            r#"{"i":{n}}"#,
            "--counter-start",
            "41",
        ]))
        .await
        .unwrap();
        let (counter, mut rng, mut scratch) = (
            AtomicU64::new(41),
            StdRng::seed_from_u64(0),
            Scratch::default(),
        );
        let first = plan.request(0, &mut scratch, &counter, &mut rng).to_vec();
        assert_eq!(
            first,
            b"POST /p HTTP/1.1\r\nhost: 127.0.0.1:1\r\ncontent-type: application/json\r\ncontent-length: 8\r\n\r\n{\"i\":41}"
        );
        assert!(
            plan.request(0, &mut scratch, &counter, &mut rng)
                .ends_with(b"{\"i\":42}")
        );

        let plan = Plan::new(&args(&[
            "--url",
            "http://127.0.0.1:1/p",
            "--method",
            "POST",
            "-H",
            "Content-Type: text/plain",
        ]))
        .await
        .unwrap();
        assert_eq!(plan.requests[0], b"POST /p HTTP/1.1\r\nhost: 127.0.0.1:1\r\nContent-Type: text/plain\r\ncontent-length: 0\r\n\r\n");
    }

    #[tokio::test]
    async fn urls_file_lines_must_share_a_host() {
        let dir = std::env::temp_dir().join(format!("kairos-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("urls.txt");
        std::fs::write(
            &file,
            "# comment\nhttp://127.0.0.1:1/a\n\n  http://127.0.0.1:1/b  \r\n",
        )
        .unwrap();
        let plan = Plan::new(&args(&["--urls-file", file.to_str().unwrap()]))
            .await
            .unwrap();
        assert_eq!(plan.requests.len(), 2);
        assert!(plan.requests[1].starts_with(b"GET /b HTTP/1.1\r\n"));
        std::fs::write(&file, "http://127.0.0.1:1/a\nhttp://127.0.0.1:2/b\n").unwrap();
        assert!(
            Plan::new(&args(&["--urls-file", file.to_str().unwrap()]))
                .await
                .is_err()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_server_that_never_answers_ends_in_timeouts_at_the_hard_stop() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        // Accept and hold the connections without reading or answering.
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let report = run(&args(&[
            "--url",
            &url,
            "--connections",
            "3",
            "--warmup",
            "0",
            "--duration",
            "0.2",
            "--hard-stop",
            "0.3",
        ]))
        .await
        .unwrap();
        holder.abort();
        assert_eq!(report.requests, 3);
        assert_eq!(report.errors, 3);
        assert_eq!(report.status_counts.get("timeout"), Some(&3));
    }

    #[tokio::test]
    async fn nothing_listening_is_connect_errors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let report = run(&args(&[
            "--url",
            &url,
            "--connections",
            "2",
            "--warmup",
            "0",
            "--duration",
            "0.2",
        ]))
        .await
        .unwrap();
        assert!(report.requests > 0);
        assert_eq!(report.errors, report.requests);
        assert_eq!(
            report.status_counts.get("connect_error"),
            Some(&report.requests)
        );
        assert_eq!(report.p99_ms, 0.0);
    }
}
