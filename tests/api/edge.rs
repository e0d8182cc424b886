//! The edge under abuse (issue 15, items 3 and 4), over real TCP: slow and idle connections,
//! the connection cap, floods of bad keys, and probes called in a loop. The server runs
//! in-process on 127.0.0.1 port 0 through `kairos::http::run`, as `kairos serve` runs it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aggregates::company::{Company, CompanyCommand};
use kairos::commands::CommandContext;
use kairos::http::ConnectionLimits;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::helpers::{TestApp, eventually, spawn_app};

/// A test app served on a real socket.
struct Served {
    address: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn serve(app: &TestApp, limits: ConnectionLimits) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(kairos::http::run(
        listener,
        app.router.clone(),
        limits,
        async move {
            let _ = stopped.await;
        },
    ));
    Served {
        address,
        stop,
        task,
    }
}

impl Served {
    async fn connect(&self) -> BufReader<TcpStream> {
        BufReader::new(TcpStream::connect(self.address).await.unwrap())
    }

    /// Stops accepting and waits for `run` to return (open connections close first).
    async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("run returns after shutdown")
            .unwrap()
            .unwrap();
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: serde_json::Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One `GET` on a kept-alive connection, HTTP/1.1 written by hand.
async fn get(
    connection: &mut BufReader<TcpStream>,
    path: &str,
    key: Option<&str>,
) -> std::io::Result<Answer> {
    let authorization = key
        .map(|key| format!("Authorization: Bearer {key}\r\n"))
        .unwrap_or_default();
    connection
        .get_mut()
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: kairos\r\n{authorization}\r\n").as_bytes())
        .await?;
    let mut line = String::new();
    if connection.read_line(&mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        connection.read_line(&mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').expect("a header line");
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; length];
    connection.read_exact(&mut body).await?;
    Ok(Answer {
        status,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    })
}

/// Waits until the server closes `connection` (EOF or reset); how long that took, or `None`
/// if it was still open after `within`.
async fn closed_within(
    connection: &mut BufReader<TcpStream>,
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 256];
    tokio::time::timeout(within, async {
        loop {
            match connection.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

fn random_key() -> String {
    kairos::api_keys::generate().token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_stops_mid_headers_is_closed_by_the_server_within_30_seconds() {
    let app = spawn_app().await;
    // The production default, unchanged (the configuration refuses anything over 30 s).
    let limits = ConnectionLimits::default();
    assert_eq!(limits.header_read_timeout, Duration::from_secs(30));
    let served = serve(&app, limits).await;
    let mut slow = served.connect().await;
    slow.get_mut()
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: kairos\r\nX-Slow: ")
        .await
        .unwrap();
    let closed = closed_within(&mut slow, Duration::from_secs(40))
        .await
        .expect("the server kept a connection open that stopped mid-headers");
    // Hyper's timer started when the connection was accepted, just before our clock; the
    // margin is for a busy test machine waking the timer late.
    assert!(closed <= Duration::from_secs(33), "closed after {closed:?}");
    assert!(closed >= Duration::from_secs(25), "closed after {closed:?}");
    served.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_and_shutdown_closes_the_rest() {
    let app = spawn_app().await;
    let served = serve(
        &app,
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(2),
            ..ConnectionLimits::default()
        },
    )
    .await;
    let mut idle = served.connect().await;
    let key = app.company.api_key.clone();
    assert_eq!(
        get(&mut idle, "/v4/user/me", Some(&key))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        get(&mut idle, "/v4/user/me", Some(&key))
            .await
            .unwrap()
            .status,
        200,
        "kept alive"
    );
    let closed = closed_within(&mut idle, Duration::from_secs(10))
        .await
        .expect("an idle keep-alive connection stayed open");
    assert!(
        closed >= Duration::from_millis(1500),
        "closed after {closed:?}"
    );

    // Shutdown: idle connections close, `run` returns.
    let mut open = served.connect().await;
    assert_eq!(
        get(&mut open, "/health/live", None).await.unwrap().status,
        200
    );
    served.stop().await;
    assert!(
        closed_within(&mut open, Duration::from_secs(1))
            .await
            .is_some()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_request_in_progress_finish_before_run_returns() {
    let app = spawn_app().await;
    let served = serve(&app, ConnectionLimits::default()).await;
    let mut started = served.connect().await;
    started
        .get_mut()
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: k\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let Served { stop, task, .. } = served;
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !task.is_finished(),
        "run returned with a request in progress"
    );
    started.get_mut().write_all(b"\r\n").await.unwrap();
    let mut line = String::new();
    started.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run returns once the last request is answered")
        .unwrap()
        .unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_16_kib_is_refused_with_431_and_the_connection_closed() {
    let app = spawn_app().await;
    let served = serve(&app, ConnectionLimits::default()).await;
    let mut fine = served.connect().await;
    let padding = "a".repeat(8 * 1024);
    fine.get_mut()
        .write_all(
            format!("GET /health/live HTTP/1.1\r\nHost: k\r\nX-Pad: {padding}\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut line = String::new();
    fine.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");

    let mut huge = served.connect().await;
    let padding = "a".repeat(17 * 1024);
    // The server may close before all of it is written; what it answered is what counts.
    let _ = huge
        .get_mut()
        .write_all(
            format!("GET /health/live HTTP/1.1\r\nHost: k\r\nX-Pad: {padding}\r\n\r\n").as_bytes(),
        )
        .await;
    let mut line = String::new();
    huge.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 431"), "{line}");
    assert!(
        closed_within(&mut huge, Duration::from_secs(5))
            .await
            .is_some()
    );
    served.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_idle_connections_do_not_stop_real_requests() {
    // Both ends of every connection live in this process.
    let open_files = kairos::http::serve::raise_open_file_limit().unwrap_or(u64::MAX);
    assert!(
        open_files >= 2_600,
        "this test needs 2600 open files; the hard limit allows {open_files}"
    );
    let app = spawn_app().await;
    let served = serve(&app, ConnectionLimits::default()).await;
    let mut idle = Vec::new();
    for n in 0..1_000 {
        let mut connection = served.connect().await;
        if n % 2 == 0 {
            // Half of them start a request and stall, as a slowloris client does.
            connection
                .get_mut()
                .write_all(b"GET /v4/user/me HTTP/1.1\r\nHost: k")
                .await
                .unwrap();
        }
        idle.push(connection);
    }
    let key = app.company.api_key.clone();
    let mut client = served.connect().await;
    for _ in 0..20 {
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            get(&mut client, "/v4/user/me", Some(&key)),
        )
        .await
        .expect("a real request waited behind idle connections")
        .unwrap();
        assert_eq!(answer.status, 200);
    }
    // And on fresh connections too: the cap is not reached.
    for _ in 0..5 {
        let mut fresh = served.connect().await;
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            get(&mut fresh, "/health/live", None),
        )
        .await
        .expect("a new connection waited behind idle ones")
        .unwrap();
        assert_eq!(answer.status, 200);
    }
    drop(idle);
    served.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_connection_cap_a_new_connection_waits_until_one_closes() {
    let app = spawn_app().await;
    let served = serve(
        &app,
        ConnectionLimits {
            max_connections: 5,
            ..ConnectionLimits::default()
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut connection = served.connect().await;
        assert_eq!(
            get(&mut connection, "/health/live", None)
                .await
                .unwrap()
                .status,
            200
        );
        held.push(connection);
    }
    // The sixth is taken by the kernel's backlog but not served while five are open.
    let mut waiting = served.connect().await;
    let pending = tokio::spawn(async move {
        let answer = get(&mut waiting, "/health/live", None).await;
        (answer, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !pending.is_finished(),
        "a sixth connection was served over the cap of five"
    );
    let released = Instant::now();
    drop(held.pop());
    let (answer, answered) = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the waiting connection was not served after one closed")
        .unwrap();
    assert_eq!(answer.unwrap().status, 200);
    assert!(answered >= released);
    // The server is still whole: the held connections still answer.
    for connection in &mut held {
        assert_eq!(
            get(connection, "/health/live", None).await.unwrap().status,
            200
        );
    }
    drop(held);
    served.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_gives_up_its_connection_slot() {
    let app = spawn_app().await;
    let served = serve(
        &app,
        ConnectionLimits {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(2),
        },
    )
    .await;
    // The one slot: a client that asks for the OpenAPI document a thousand times over and
    // reads nothing, with a small receive buffer, so the server's writes stall at once.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut greedy = socket.connect(served.address).await.unwrap();
    let requests = "GET /openapi.json HTTP/1.1\r\nhost: kairos\r\n\r\n".repeat(1000);
    let writer = tokio::spawn(async move {
        let _ = greedy.write_all(requests.as_bytes()).await;
        // Held open, never read.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(greedy);
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Another client waits for the slot; it gets it once the stalled one is given up.
    let mut next = served.connect().await;
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        get(&mut next, "/health/live", None),
    )
    .await
    .expect("the stalled client kept the only connection slot");
    assert_eq!(answer.unwrap().status, 200);
    writer.abort();
    served.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_keys_from_24_tasks_for_10_seconds_do_not_slow_a_real_client() {
    let app = spawn_app().await;
    let served = serve(&app, ConnectionLimits::default()).await;
    let key = app.company.api_key.clone();
    let (real_id, _) = kairos::api_keys::parse_token(&key).unwrap();
    // The real client's key is known to this process before the flood starts.
    let mut client = served.connect().await;
    assert_eq!(
        get(&mut client, "/v4/user/me", Some(&key))
            .await
            .unwrap()
            .status,
        200
    );

    let flood_ends = Instant::now() + Duration::from_secs(10);
    let attackers: Vec<_> = (0..24)
        .map(|n| {
            let address = served.address;
            tokio::spawn(async move {
                let (mut unauthorized, mut too_many, mut other) = (0u32, 0u32, 0u32);
                let mut connection = BufReader::new(TcpStream::connect(address).await.unwrap());
                let mut i = 0u64;
                while Instant::now() < flood_ends {
                    i += 1;
                    // Mostly well-formed unknown keys (each needs a lookup), some garbage,
                    // and guesses at the real key's secret.
                    let token = match (n + i as usize) % 5 {
                        0 => format!("ak_live:{}:", Uuid::new_v4()),
                        1 => "not-a-key".to_string(),
                        2 => format!("ak_live:{real_id}:guessed"),
                        _ => random_key(),
                    };
                    match get(&mut connection, "/v4/user/me", Some(&token)).await {
                        Ok(answer) => match answer.status {
                            401 => unauthorized += 1,
                            429 => too_many += 1,
                            _ => other += 1,
                        },
                        Err(_) => {
                            connection = BufReader::new(TcpStream::connect(address).await.unwrap());
                        }
                    }
                }
                (unauthorized, too_many, other)
            })
        })
        .collect();

    let mut slowest = Duration::ZERO;
    let mut answered = 0;
    while Instant::now() < flood_ends {
        let started = Instant::now();
        let answer = get(&mut client, "/v4/user/me", Some(&key)).await.unwrap();
        slowest = slowest.max(started.elapsed());
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        answered += 1;
    }
    let (mut unauthorized, mut too_many, mut other) = (0, 0, 0);
    for attacker in attackers {
        let (u, t, o) = attacker.await.unwrap();
        (unauthorized, too_many, other) = (unauthorized + u, too_many + t, other + o);
    }
    assert!(
        answered >= 50,
        "the real client got {answered} answers in 10 s"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "slowest real request: {slowest:?}"
    );
    assert_eq!(other, 0);
    // One source: a burst of 60 and one a second after it, about 70 in 10 s; the rest 429.
    assert!(
        unauthorized <= 80,
        "{unauthorized} failed authentications were let through"
    );
    assert!(too_many > 0);
    served.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_over_the_limit_answer_429_with_retry_after_but_a_real_key_still_works()
 {
    let app = spawn_app().await;
    // A process started after the company's key was issued: it knows the key is real.
    let process = app.another_process().await;
    let served = serve(&process, ConnectionLimits::default()).await;
    let mut connection = served.connect().await;
    // The default budget: 60 failures a minute per address, in a burst.
    for n in 0..60 {
        let token = if n % 2 == 0 {
            random_key()
        } else {
            "garbage".to_string()
        };
        let answer = get(&mut connection, "/v4/user/me", Some(&token))
            .await
            .unwrap();
        assert_eq!(answer.status, 401, "failure {n}: {:?}", answer.body);
    }
    let answer = get(&mut connection, "/v4/user/me", Some(&random_key()))
        .await
        .unwrap();
    assert_eq!(answer.status, 429);
    assert_eq!(answer.body["statusCode"], 429);
    assert_eq!(answer.body["error"], "Too Many Requests");
    assert_eq!(answer.body["message"], "Too Many Requests");
    let retry_after: u64 = answer
        .header("retry-after")
        .expect("a Retry-After header")
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    // Missing keys count as failures too.
    assert_eq!(
        get(&mut connection, "/v4/user/me", None)
            .await
            .unwrap()
            .status,
        429
    );

    // The company's key, never used through this process, from the same address: served at
    // once, and on and on while the address's failures keep answering 429.
    let key = app.company.api_key.clone();
    for _ in 0..5 {
        let answer = get(&mut connection, "/v4/user/me", Some(&key))
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(
            get(&mut connection, "/v4/user/me", Some(&random_key()))
                .await
                .unwrap()
                .status,
            429
        );
    }
    served.stop().await;
    process.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_id_is_remembered_until_a_key_with_that_id_is_issued_in_any_process() {
    let a = spawn_app().await;
    let b = a.another_process().await;
    let key = kairos::api_keys::generate();
    let status = async |app: &TestApp| app.get("/v4/user/me").key(&key.token).send().await.status;
    let unknown_ids = |app: &TestApp| {
        app.kairos
            .as_ref()
            .unwrap()
            .state
            .caches
            .api_keys
            .unknown_len()
    };
    // Both processes answer 401 and remember the id (once their listeners follow).
    for app in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(10), async || {
                status(app).await == 401 && unknown_ids(app) == 1
            })
            .await,
            "the unknown id was not remembered"
        );
    }

    let company = a.company.company_id;
    let context = CommandContext {
        metadata: kairos::event_store::EventMetadata {
            origin: "cli",
            company_id: Some(company),
            ..Default::default()
        },
        company_id: Some(company),
        new_aggregate: false,
    };
    a.bus()
        .execute::<Company>(
            &company.to_string(),
            CompanyCommand::IssueApiKey {
                key_id: key.key_id,
                secret_hash: key.secret_hash_hex.clone(),
                days: 30,
                at: a.clock_now(),
            },
            &context,
        )
        .await
        .unwrap();
    // Without invalidation both would answer 401 from memory forever.
    for app in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(10), async || status(app).await == 200).await,
            "a process kept refusing a key issued after its id was remembered as unknown"
        );
        assert_eq!(unknown_ids(app), 0);
    }
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_and_metrics_probe_the_database_at_most_once_a_second() {
    let app = spawn_app().await;
    let state = app.kairos.as_ref().unwrap().state.clone();
    let started = Instant::now();
    let callers: Vec<_> = (0..16)
        .map(|n| {
            let app_router = app.router.clone();
            tokio::spawn(async move {
                use tower::ServiceExt;
                let path = if n % 2 == 0 {
                    "/health/ready"
                } else {
                    "/metrics"
                };
                let mut calls = 0;
                while started.elapsed() < Duration::from_millis(2_500) {
                    let request = axum::http::Request::get(path)
                        .body(axum::body::Body::empty())
                        .unwrap();
                    let response = app_router.clone().oneshot(request).await.unwrap();
                    assert_eq!(response.status(), 200, "{path}");
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    let mut calls = 0;
    for caller in callers {
        calls += caller.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let (ready, metrics) = (state.probes.ready.runs(), state.probes.projectors.runs());
    assert!(calls > 100, "only {calls} calls");
    // At most one probe per started second (plus the first), per endpoint.
    let bound = seconds.ceil() as u64 + 1;
    assert!(
        (1..=bound).contains(&ready),
        "{ready} readiness probes in {seconds:.1} s for {calls} calls"
    );
    assert!(
        (1..=bound).contains(&metrics),
        "{metrics} status probes in {seconds:.1} s"
    );
    app.stop().await;
}

/// `kairos serve` itself, as a child process: the environment reaches the limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kairos_serve_reads_its_connection_and_authentication_limits_from_the_environment() {
    let app = spawn_app().await;
    let serve = |bind: &str, header_timeout: &str| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kairos"));
        command
            .args(["serve", "--no-migrate"])
            .env("DATABASE_URL", &app.db.url)
            .env("KAIROS_MASTER_KEY", &app.master_key)
            .env("KAIROS_BIND", bind)
            .env("KAIROS_HEADER_READ_TIMEOUT_SECS", header_timeout)
            .env("KAIROS_MAX_CONNECTIONS", "3")
            .env("KAIROS_AUTH_FAILURES_PER_MINUTE", "2")
            .env("RUST_LOG", "warn")
            .kill_on_drop(true);
        command
    };
    let refused = serve("127.0.0.1:0", "31").output().await.unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("KAIROS_HEADER_READ_TIMEOUT_SECS must be between 1 and 30"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = serve(&address.to_string(), "2").spawn().unwrap();
    let connect = async || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match TcpStream::connect(address).await {
                Ok(stream) => return BufReader::new(stream),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(error) => panic!("kairos serve did not listen: {error}"),
            }
        }
    };

    // KAIROS_AUTH_FAILURES_PER_MINUTE=2: the third failure from this address is a 429.
    let mut client = connect().await;
    for expected in [401, 401, 429] {
        let answer = get(&mut client, "/v4/user/me", Some("garbage"))
            .await
            .unwrap();
        assert_eq!(answer.status, expected);
    }
    // KAIROS_HEADER_READ_TIMEOUT_SECS=2: the idle client and a stalled one are closed.
    let mut stalled = connect().await;
    stalled
        .get_mut()
        .write_all(b"GET /health/live HTTP/1.1\r\n")
        .await
        .unwrap();
    for connection in [&mut client, &mut stalled] {
        let closed = closed_within(connection, Duration::from_secs(10))
            .await
            .expect("a connection outlived KAIROS_HEADER_READ_TIMEOUT_SECS");
        assert!(closed <= Duration::from_secs(4), "closed after {closed:?}");
    }
    // KAIROS_MAX_CONNECTIONS=3: a fourth connection waits while three are open.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut connection = connect().await;
        assert_eq!(
            get(&mut connection, "/health/live", None)
                .await
                .unwrap()
                .status,
            200
        );
        held.push(connection);
    }
    let mut fourth = connect().await;
    let waited = tokio::time::timeout(
        Duration::from_millis(700),
        get(&mut fourth, "/health/live", None),
    )
    .await;
    assert!(
        waited.is_err(),
        "a fourth connection was served over the cap"
    );
    drop(held);
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        // The request written above is answered once a slot frees.
        let mut line = String::new();
        fourth.read_line(&mut line).await.unwrap();
        line
    })
    .await
    .expect("the waiting connection was never served");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // SIGTERM: a graceful stop, exit status 0.
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("kairos serve did not stop on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    app.stop().await;
}
