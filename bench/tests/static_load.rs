//! `serve-static` in process on 127.0.0.1:0 and `load` against it for about a second.

use clap::Parser as _;
use kairos_bench::{Cli, Command, load, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_against_serve_static_counts_answers_and_orders_percentiles() {
    let body = r#"{"windows":[{"start":"2026-01-05T09:00:00Z","end":"2026-01-05T17:00:00Z"}]}"#;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, serve::static_router(body.into()))
            .await
            .unwrap();
    });

    let url = format!(
        "http://{addr}/v4/user/0190b6c2-0000-7000-8000-000000000001/bookable-windows?startDate=2026-01-05"
    );
    let argv = [
        "kairos-bench",
        "load",
        "--url",
        &url,
        "--connections",
        "4",
        "--warmup",
        "0.2",
        "--duration",
        "1",
        "--json",
    ];
    let Command::Load(args) = Cli::parse_from(argv).command else {
        panic!("not the load subcommand")
    };
    let report = load::run(&args).await.unwrap();
    server.abort();

    assert!(report.requests > 0, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(report.status_counts.get("200"), Some(&report.requests));
    assert!(
        report.p50_ms <= report.p90_ms
            && report.p90_ms <= report.p99_ms
            && report.p99_ms <= report.max_ms,
        "{report:?}"
    );
    assert_eq!(report.mean_body_bytes, body.len() as f64);
    assert!(report.requests_per_second > 0.0 && report.duration_seconds > 0.0);

    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    for field in [
        "requests",
        "errors",
        "statusCounts",
        "durationSeconds",
        "requestsPerSecond",
        "p50Ms",
        "p90Ms",
        "p99Ms",
        "maxMs",
        "meanBodyBytes",
    ] {
        assert!(json.get(field).is_some(), "missing {field} in {json}");
    }
}
