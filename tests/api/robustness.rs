//! No input may cause a 5xx, a panic or a hang: random bodies, query strings and ids against
//! the real router and database. Every answer must be a 2xx, or a 4xx in the error envelope.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};

use crate::helpers::{TestApp, TestResponse, spawn_app, user_body};

const CASES: usize = 150;

/// Strings a client might send by mistake or malice: empty, blank, huge, control characters,
/// astral-plane text, SQL and path fragments, almost-valid values.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("   ".to_string()),
        Just("x".repeat(5000)),
        Just("\u{0}\u{7}\n\t".to_string()),
        Just("'; DROP TABLE events; --".to_string()),
        Just("../../etc/passwd".to_string()),
        Just("Europe/Berlin".to_string()),
        Just("2026-03-09".to_string()),
        Just("24:00".to_string()),
        Just("a@b.co".to_string()),
        Just("🎉🎉🎉".to_string()),
        "\\PC{0,40}",
        "[0-9:\\-T+Z]{0,25}",
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(1e300)),
        Just(json!(u64::MAX)),
        nasty_string().prop_map(Value::String),
    ]
}

/// Any JSON, nested, with keys drawn mostly from the fields Kairos reads.
fn json_value() -> impl Strategy<Value = Value> {
    let keys = prop_oneof![
        Just("email".to_string()),
        Just("givenName".to_string()),
        Just("familyName".to_string()),
        Just("timezone".to_string()),
        Just("slug".to_string()),
        Just("availability".to_string()),
        Just("schedule".to_string()),
        Just("dayOfWeek".to_string()),
        Just("intervals".to_string()),
        Just("from".to_string()),
        Just("to".to_string()),
        Just("meetingType".to_string()),
        Just("name".to_string()),
        Just("duration".to_string()),
        Just("slotInterval".to_string()),
        Just("bufferBefore".to_string()),
        Just("bufferAfter".to_string()),
        Just("minimumNotice".to_string()),
        Just("horizonDays".to_string()),
        "[a-zA-Z]{1,8}",
    ];
    json_leaf().prop_recursive(4, 40, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A body that is mostly a valid user, with a few fields replaced by anything.
fn mostly_valid_user() -> impl Strategy<Value = Value> {
    let base = json!({
        "email": "base@example.com", "givenName": "Base", "familyName": "User",
        "timezone": "Europe/Berlin",
        "availability": {"schedule": [{"dayOfWeek": "monday", "intervals": [{"from": "09:00", "to": "17:00"}]}]},
        "meetingType": {"name": "Call", "duration": 30}
    });
    let paths = prop::sample::subsequence(
        vec![
            "/email",
            "/givenName",
            "/familyName",
            "/timezone",
            "/slug",
            "/availability",
            "/availability/schedule",
            "/availability/schedule/0/intervals/0/from",
            "/availability/schedule/0/intervals/0/to",
            "/availability/schedule/0/dayOfWeek",
            "/availability/timezone",
            "/meetingType",
            "/meetingType/duration",
            "/meetingType/slotInterval",
            "/meetingType/horizonDays",
            "/meetingType/name",
        ],
        1..4,
    );
    (paths, prop::collection::vec(json_value(), 4)).prop_map(move |(paths, values)| {
        let mut body = base.clone();
        for (path, value) in paths.iter().zip(values) {
            let (parent, key) = path.rsplit_once('/').unwrap();
            if let Some(Value::Object(map)) = body.pointer_mut(parent) {
                map.insert(key.to_string(), value);
            } else if let Some(Value::Array(items)) = body.pointer_mut(parent)
                && let Some(slot) = key.parse::<usize>().ok().and_then(|i| items.get_mut(i))
            {
                *slot = value;
            }
        }
        body
    })
}

fn assert_sane(response: &TestResponse, what: &str) {
    let status = response.status.as_u16();
    assert!(status < 500, "{what} answered {status}: {}", response.text);
    if status >= 400 {
        assert_eq!(
            response.body["statusCode"], status,
            "{what}: {}",
            response.text
        );
        assert!(
            response.body["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {}",
            response.text
        );
    }
}

fn sample<T: std::fmt::Debug>(runner: &mut TestRunner, strategy: &impl Strategy<Value = T>) -> T {
    strategy
        .new_tree(runner)
        .expect("generate a case")
        .current()
}

async fn post_user(app: &TestApp, body: Vec<u8>) -> TestResponse {
    app.post("/v4/user")
        .header("content-type", "application/json")
        .raw_body(body)
        .send()
        .await
}

#[tokio::test]
async fn no_body_makes_user_creation_fail_with_a_5xx() {
    let app = spawn_app().await;
    let mut runner = TestRunner::new(Config::default());
    let any_json = json_value();
    let almost = mostly_valid_user();
    let bytes = prop::collection::vec(any::<u8>(), 0..200);
    for case in 0..CASES {
        let body = match case % 3 {
            0 => serde_json::to_vec(&sample(&mut runner, &any_json)).unwrap(),
            1 => {
                // A fresh email where it was kept, so valid cases get past the claims too.
                let mut body = sample(&mut runner, &almost);
                if body["email"] == "base@example.com" {
                    body["email"] = json!(format!("case{case}@example.com"));
                }
                serde_json::to_vec(&body).unwrap()
            }
            _ => sample(&mut runner, &bytes),
        };
        let response = post_user(&app, body.clone()).await;
        assert_sane(
            &response,
            &format!("POST /v4/user {}", String::from_utf8_lossy(&body)),
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn no_query_or_id_makes_the_read_endpoints_fail_with_a_5xx() {
    let app = spawn_app().await;
    let user = app
        .create_user(crate::helpers::user_body(
            "robust@example.com",
            "Ro",
            "Bust",
        ))
        .await;
    let user_id = user["userId"].as_str().unwrap().to_string();
    let mut runner = TestRunner::new(Config::default());
    let text = nasty_string();
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    // One hostile value at a time, the other parameters valid, so it reaches the database.
    let valid = |name: &str| match name {
        "startDate" => "2026-03-09".to_string(),
        "endDate" => "2026-03-10".to_string(),
        "timezone" => "Europe/Berlin".to_string(),
        "meetingTypeId" => user["meetingTypeId"].as_str().unwrap().to_string(),
        "after" | "skip" => "0".to_string(),
        "limit" => "10".to_string(),
        "aggregateId" => user_id.clone(),
        "type" => "UserCreated".to_string(),
        other => panic!("{other}"),
    };
    let endpoints: [(&str, &[&str]); 3] = [
        (
            "/v4/user/{id}/bookable-windows",
            &["startDate", "endDate", "timezone", "meetingTypeId"],
        ),
        ("/v4/user", &["limit", "skip"]),
        (
            "/v4/audit/events",
            &["after", "limit", "aggregateId", "type"],
        ),
    ];
    for _ in 0..CASES {
        let hostile = sample(&mut runner, &text);
        for (endpoint, params) in endpoints {
            for bad in params.iter() {
                let query: Vec<String> = params
                    .iter()
                    .map(|name| {
                        let value = if name == bad {
                            hostile.clone()
                        } else {
                            valid(name)
                        };
                        format!("{name}={}", encode(&value))
                    })
                    .collect();
                let path = format!("{}?{}", endpoint.replace("{id}", &user_id), query.join("&"));
                assert_sane(&app.get(&path).send().await, &format!("GET {path}"));
            }
        }
        for path in [
            format!("/v4/user/{}", encode(&hostile)),
            format!("/v4/user/{user_id}?asOf={}", encode(&hostile)),
            format!("/v4/user/{}/history", encode(&hostile)),
        ] {
            assert_sane(&app.get(&path).send().await, &format!("GET {path}"));
        }
        for field in ["givenName", "familyName", "timezone", "slug"] {
            let patch = app
                .patch(&format!("/v4/user/{user_id}"))
                .json(json!({ field: hostile }))
                .send()
                .await;
            assert_sane(&patch, &format!("PATCH {field}={hostile:?}"));
        }
    }
    app.stop().await;
}

/// The database drops every connection (a restart, an operator's `pg_terminate_backend`)
/// right after they were used, so the pool hands them out again without a ping: each such
/// connection fails one request with 503 at worst, is discarded, and the service recovers.
/// Never a 500, whether the request reads a read model or runs a command (which loads its
/// aggregate through cqrs-es's reader first).
#[tokio::test]
async fn connections_the_database_drops_answer_503_at_worst_and_the_service_recovers() {
    let app = spawn_app().await;
    let user = app
        .create_user(user_body("dropped@example.com", "Dropped", "Connection"))
        .await;
    let user_path = format!("/v4/user/{}", user["userId"].as_str().unwrap());
    let request = |n: usize| {
        let path = user_path.clone();
        let app = &app;
        async move {
            let response = if n.is_multiple_of(2) {
                app.get("/v4/user/me").send().await
            } else {
                app.patch(&path)
                    .json(json!({"givenName": format!("Renamed {n}")}))
                    .send()
                    .await
            };
            response.status.as_u16()
        }
    };
    for n in 0..6 {
        assert_eq!(request(n).await, 200);
    }
    let dropped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()) AS terminated",
    )
    .fetch_one(&app.owner)
    .await
    .unwrap();
    assert!(dropped > 0, "the service's connections were dropped");

    let mut answers = Vec::new();
    while answers.len() < 200 {
        answers.push(request(answers.len()).await);
        if answers.ends_with(&[200, 200, 200, 200]) {
            break;
        }
    }
    assert!(
        answers.iter().all(|s| *s == 200 || *s == 503),
        "only 200 or 503 while connections are replaced: {answers:?}"
    );
    assert!(
        answers.ends_with(&[200, 200, 200, 200]),
        "the service recovered: {answers:?}"
    );
    app.stop().await;
}
