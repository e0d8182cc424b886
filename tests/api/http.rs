//! The HTTP skeleton: authentication, the error envelope for everything that can go wrong,
//! request ids, rate limits, health, metrics and the OpenAPI document.

use axum::http::Method;
use chrono::Duration;
use kairos::provisioning;
use serde_json::{Value, json};

use crate::helpers::{AppOptions, spawn_app, spawn_app_with, user_body};

// Multi-threaded: revocation must reach the in-memory keys whatever thread serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_authentication_error_has_its_status_and_message() {
    let app = spawn_app().await;
    let key = app.company.api_key.clone();
    let (_, key_id, secret) = {
        let mut parts = key.splitn(3, ':');
        (
            parts.next().unwrap().to_string(),
            parts.next().unwrap().to_string(),
            parts.next().unwrap().to_string(),
        )
    };

    app.get("/v4/user/me")
        .no_key()
        .send()
        .await
        .assert_error(401, "Missing authorization header");
    app.get("/v4/user/me")
        .no_key()
        .header("authorization", "   ")
        .send()
        .await
        .assert_error(401, "Missing authorization header");
    for bad in [
        "not-a-key".to_string(),
        format!("ak_test:{key_id}:{secret}"),
        format!("ak_live:{}:{secret}", uuid::Uuid::new_v4()),
        format!("ak_live:{key_id}:wrong-secret"),
        format!("ak_live:not-a-uuid:{secret}"),
    ] {
        app.get("/v4/user/me")
            .key(&bad)
            .send()
            .await
            .assert_error(401, "Invalid API key");
    }
    app.get("/v4/user/me")
        .no_key()
        .header("authorization", &format!("Basic {key}"))
        .send()
        .await
        .assert_error(401, "Invalid API key");
    let ok = app
        .get("/v4/user/me")
        .no_key()
        .header("authorization", &format!("bearer {key}"))
        .send()
        .await;
    assert_eq!(ok.status, 200, "the scheme is case-insensitive");

    // Expired: a 1-day key, a clock two days on.
    let short = provisioning::issue_key(app.bus(), app.company.company_id, 1)
        .await
        .unwrap();
    assert_eq!(
        app.get("/v4/user/me")
            .key(&short.api_key)
            .send()
            .await
            .status,
        200
    );
    app.clock.advance(Duration::days(2));
    app.get("/v4/user/me")
        .key(&short.api_key)
        .send()
        .await
        .assert_error(401, "API key has expired");
    // A wrong secret of an expired key is still just invalid: nothing is revealed.
    app.get("/v4/user/me")
        .key(&format!("ak_live:{}:nope", short.api_key_id))
        .send()
        .await
        .assert_error(401, "Invalid API key");
    app.clock.advance(Duration::days(-2));

    // Revoked: invalid at once.
    provisioning::revoke_key(app.bus(), short.api_key_id)
        .await
        .unwrap();
    app.get("/v4/user/me")
        .key(&short.api_key)
        .send()
        .await
        .assert_error(401, "Invalid API key");
    assert_eq!(
        app.get("/v4/user/me").send().await.status,
        200,
        "other keys keep working"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_acting_user_header_must_name_a_user_of_the_company() {
    let app = spawn_app().await;
    let other = app.another_company("Globex").await;
    app.get("/v4/user/me")
        .acting_as(other.owner_user_id)
        .send()
        .await
        .assert_error(404, "User not found");
    app.get("/v4/user/me")
        .acting_as(uuid::Uuid::new_v4())
        .send()
        .await
        .assert_error(404, "User not found");
    let malformed = app.get("/v4/user/me").acting_as("not-a-uuid").send().await;
    malformed.assert_error(400, "x-meetergo-api-user-id must be a UUID");
    assert_eq!(malformed.field_errors()[0].0, "x-meetergo-api-user-id");

    let user = app
        .create_user(user_body("acting@example.com", "Act", "Ing"))
        .await;
    let me = app
        .get("/v4/user/me")
        .acting_as(user["userId"].as_str().unwrap())
        .send()
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["email"], "acting@example.com");
    let owner = app.get("/v4/user/me").send().await;
    assert_eq!(
        owner.body["id"],
        app.company.owner_user_id.to_string(),
        "without the header: the owner"
    );
    assert_eq!(owner.body["userType"], "standard");
    app.stop().await;
}

#[tokio::test]
async fn every_error_the_server_produces_uses_the_envelope() {
    let app = spawn_app().await;

    let malformed = app
        .post("/v4/user")
        .header("content-type", "application/json")
        .raw_body("{\"email\": \"a@b.co\", ")
        .send()
        .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.body["statusCode"], 400);
    assert_eq!(malformed.body["error"], "Bad Request");
    assert_eq!(malformed.field_errors()[0].0, "body");
    assert!(
        malformed.body["message"]
            .as_str()
            .unwrap()
            .starts_with("Malformed JSON at line 1"),
        "{}",
        malformed.text
    );

    let wrong_type = app
        .post("/v4/user")
        .header("content-type", "text/plain")
        .raw_body("hello")
        .send()
        .await;
    wrong_type.assert_error(415, "Content-Type must be application/json");
    let no_type = app.post("/v4/user").raw_body("{}").send().await;
    no_type.assert_error(415, "Content-Type must be application/json");
    // No body at all: that is what to say, whatever the content type.
    let owner = format!("/v4/user/{}", app.company.owner_user_id);
    for request in [app.post("/v4/user"), app.patch(&owner)] {
        request
            .raw_body("")
            .send()
            .await
            .assert_error(400, "Request body is required");
    }

    let huge = json!({"email": "a@example.com", "givenName": "x".repeat(70 * 1024)});
    let too_large = app.post("/v4/user").json(huge).send().await;
    too_large.assert_error(413, "Request body must not exceed 64 KiB");

    let invalid_utf8 = app
        .post("/v4/user")
        .header("content-type", "application/json")
        .raw_body(b"{\"email\": \"\xff\xfe\"}".to_vec())
        .send()
        .await;
    assert_eq!(invalid_utf8.status, 400);
    assert_eq!(invalid_utf8.field_errors()[0].0, "body");

    app.get("/v4/nothing-here")
        .send()
        .await
        .assert_error(404, "Route not found");
    app.get("/v4/nothing-here")
        .no_key()
        .send()
        .await
        .assert_error(404, "Route not found");
    app.method(Method::PUT, "/v4/user")
        .send()
        .await
        .assert_error(405, "Method not allowed for this route");
    app.method(Method::DELETE, "/v4/user/me")
        .send()
        .await
        .assert_error(405, "Method not allowed for this route");

    for response in [&malformed, &wrong_type, &too_large] {
        assert!(
            response.header("x-request-id").is_some(),
            "errors carry x-request-id too"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn x_request_id_is_echoed_when_sane_and_generated_otherwise() {
    let app = spawn_app().await;
    let echoed = app
        .get("/v4/user/me")
        .header("x-request-id", "client-req-42")
        .send()
        .await;
    assert_eq!(echoed.header("x-request-id"), Some("client-req-42"));

    let generated = app.get("/v4/user/me").send().await;
    let id = generated.header("x-request-id").unwrap();
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "generated ids are UUIDs: {id}"
    );

    let unsafe_id = app
        .get("/v4/user/me")
        .header("x-request-id", "bad id with spaces")
        .send()
        .await;
    let replaced = unsafe_id.header("x-request-id").unwrap();
    assert_ne!(replaced, "bad id with spaces");
    assert!(uuid::Uuid::parse_str(replaced).is_ok());

    let unauthenticated = app
        .get("/v4/user/me")
        .no_key()
        .header("x-request-id", "trace-me")
        .send()
        .await;
    assert_eq!(unauthenticated.header("x-request-id"), Some("trace-me"));

    // The request id reaches the events' metadata.
    let created = app
        .post("/v4/user")
        .header("x-request-id", "create-req-7")
        .json(user_body("meta@example.com", "Meta", "Data"))
        .send()
        .await;
    let user_id = created.body["userId"].as_str().unwrap();
    let metadata: serde_json::Value =
        sqlx::query_scalar("SELECT metadata FROM events WHERE aggregate_id = $1 AND sequence = 1")
            .bind(user_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(metadata["requestId"], "create-req-7");
    assert_eq!(metadata["apiKeyId"], app.company.api_key_id.to_string());
    assert_eq!(
        metadata["actingUserId"],
        app.company.owner_user_id.to_string()
    );
    assert_eq!(metadata["companyId"], app.company.company_id.to_string());
    app.stop().await;
}

#[tokio::test]
async fn over_its_rate_limit_a_key_gets_429_with_retry_after() {
    let app = spawn_app_with(AppOptions {
        rate_limit_per_minute: 2,
        ..Default::default()
    })
    .await;
    for remaining in (0..4).rev() {
        let response = app.get("/v4/user/me").send().await;
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-ratelimit-limit"), Some("4"));
        assert_eq!(
            response.header("x-ratelimit-remaining"),
            Some(remaining.to_string().as_str())
        );
    }
    let limited = app.get("/v4/user/me").send().await;
    limited.assert_error(429, "Too Many Requests");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    app.stop().await;
}

#[tokio::test]
async fn health_metrics_and_the_openapi_document_are_served() {
    let app = spawn_app().await;
    let live = app.get("/health/live").no_key().send().await;
    assert_eq!(live.body, json!({"status": "ok"}));
    let ready = app.get("/health/ready").no_key().send().await;
    assert_eq!(ready.body, json!({"status": "ready"}));

    app.get("/v4/user/me").send().await;
    let metrics = app.get("/metrics").no_key().send().await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text.contains(
            "kairos_http_requests_total{method=\"GET\",route=\"/v4/user/me\",status=\"200\"}"
        ),
        "{}",
        metrics.text
    );
    assert!(
        metrics
            .text
            .contains("kairos_http_request_duration_seconds_bucket")
    );
    assert!(
        metrics
            .text
            .contains("kairos_projector_lag_events{projector=\"users\"}")
    );

    let openapi = app.get("/openapi.json").no_key().send().await;
    assert!(openapi.body["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in ["/v4/user", "/v4/user/me", "/v4/user/{id}"] {
        assert!(
            openapi.body["paths"].get(path).is_some(),
            "{path} is documented"
        );
    }
    assert!(
        openapi.body["components"]["schemas"]
            .get("ErrorBody")
            .is_some()
    );
    // Section 2: the four fields a creation cannot do without are required in the schema
    // too, not only in the handler, for clients generated from this document.
    let mut required: Vec<&str> =
        openapi.body["components"]["schemas"]["CreateUserRequest"]["required"]
            .as_array()
            .map(|fields| fields.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
    required.sort_unstable();
    assert_eq!(required, ["email", "familyName", "givenName", "timezone"]);
    // PATCH: every field optional, none nullable (a null is refused, not a way to clear).
    let update = &openapi.body["components"]["schemas"]["UpdateUserRequest"];
    assert!(update.get("required").is_none(), "{update}");
    for field in ["givenName", "familyName", "slug", "timezone"] {
        let reference = update["properties"][field]["$ref"]
            .as_str()
            .unwrap_or_default();
        let schema = reference.trim_start_matches("#/components/schemas/");
        assert_eq!(
            openapi.body["components"]["schemas"][schema]["type"], "string",
            "{field}: {update}"
        );
    }
    let docs = app.get("/docs").no_key().send().await;
    assert!(docs.text.contains("/openapi.json"));
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_states_the_constraints_and_answers_the_server_enforces() {
    let app = spawn_app().await;
    let doc = app.get("/openapi.json").no_key().send().await.body;
    let schemas = &doc["components"]["schemas"];
    let param = |path: &str, method: &str, name: &str| -> Value {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))["schema"]
            .clone()
    };
    // Ranges.
    for (path, name) in [("/v4/user", "limit"), ("/v4/audit/events", "limit")] {
        let limit = param(path, "get", name);
        assert_eq!(
            (limit["minimum"].as_i64(), limit["maximum"].as_i64()),
            (Some(1), Some(100)),
            "{path}"
        );
    }
    let meeting_type = &schemas["MeetingTypeRequest"]["properties"];
    assert_eq!(meeting_type["slotInterval"]["minimum"], 5);
    assert_eq!(meeting_type["slotInterval"]["maximum"], 480);
    assert_eq!(meeting_type["horizonDays"]["minimum"], 1);
    // A PATCH needs one of its fields, not just any member.
    let update = &schemas["UpdateUserRequest"];
    assert_eq!(update["minProperties"], 1);
    assert_eq!(
        update["anyOf"].as_array().map(Vec::len),
        Some(4),
        "{update}"
    );
    // Formats and patterns.
    assert_eq!(
        param("/v4/user/{userId}/bookable-windows", "get", "startDate")["format"],
        "date"
    );
    assert_eq!(param("/v4/user/{id}", "get", "asOf")["format"], "date-time");
    assert_eq!(param("/v4/user/{id}", "get", "id")["format"], "uuid");
    assert_eq!(
        schemas["TimeFrom"]["pattern"],
        "^([01][0-9]|2[0-3]):[0-5][0-9]$"
    );
    let zones = schemas["TimeZone"]["enum"].as_array().unwrap();
    for zone in ["Europe/Berlin", "Etc/GMT+5", "UTC"] {
        assert!(zones.contains(&json!(zone)), "{zone}");
    }
    assert!(!zones.contains(&json!("Mars/Olympus")));
    // Every authenticated operation lists the answers any of them can give, and the
    // acting-user header as a UUID.
    let mut authenticated = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if operation.get("security").is_none() {
                continue;
            }
            authenticated += 1;
            for status in ["400", "401", "404", "429", "503"] {
                assert!(
                    operation["responses"].get(status).is_some(),
                    "{method} {path} does not list {status}"
                );
            }
            assert_eq!(
                param(path, method, "x-meetergo-api-user-id")["format"],
                "uuid"
            );
        }
    }
    assert_eq!(authenticated, 9);
    assert!(
        doc["paths"]["/v4/user"]["post"]["responses"]
            .get("415")
            .is_some()
    );
    app.stop().await;
}
