//! What readers of the history are shown (issue 15, items 7 and 16): verifiers of secrets
//! never, and a user's history a page at a time, as the audit log pages.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, user_body};

/// Every page of `path` (which has its own query), following `lastPosition`.
async fn all_pages(app: &TestApp, path: &str, limit: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = app
            .get(&format!("{path}?after={after}&limit={limit}"))
            .send()
            .await;
        assert_eq!(page.status, 200, "{}", page.text);
        let batch = page.body["events"].as_array().unwrap().clone();
        assert_eq!(page.body["count"], batch.len());
        assert!(batch.len() <= limit);
        if batch.is_empty() {
            assert_eq!(page.body["lastPosition"], Value::Null);
            return events;
        }
        assert_eq!(page.body["lastPosition"], batch.last().unwrap()["position"]);
        after = page.body["lastPosition"].as_i64().unwrap();
        events.extend(batch);
    }
}

#[tokio::test]
async fn audit_answers_leave_out_an_api_keys_secret_hash_yet_the_chain_verifies_from_the_stored_event()
 {
    let app = spawn_app().await;
    let issued = kairos::provisioning::issue_key(app.bus(), app.company.company_id, 7)
        .await
        .unwrap();
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT payload->>'secretHash' FROM events WHERE event_type = 'ApiKeyIssued'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored.len(), 2, "the first key and this one");
    assert!(stored.iter().all(|hash| hash.len() == 64), "{stored:?}");

    let keys = app
        .get("/v4/audit/events?type=ApiKeyIssued&limit=100")
        .send()
        .await;
    assert_eq!(keys.status, 200, "{}", keys.text);
    assert_eq!(keys.body["count"], 2);
    for event in keys.body["events"].as_array().unwrap() {
        let payload = event["payload"].as_object().unwrap();
        assert!(!payload.contains_key("secretHash"), "{event}");
        for kept in ["keyId", "issuedAt", "expiresAt"] {
            assert!(payload.contains_key(kept), "{kept} is still shown: {event}");
        }
    }
    assert!(
        keys.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["payload"]["keyId"] == issued.api_key_id.to_string())
    );
    let everything = app.get("/v4/audit/events?limit=100").send().await;
    for hash in &stored {
        assert!(
            !everything.text.contains(hash.as_str()),
            "no answer carries a stored hash"
        );
    }

    let verified = kairos::audit::verify_chains(&app.pool, None).await.unwrap();
    assert_eq!(
        verified.first_broken, None,
        "the stored events still verify"
    );
    assert_eq!(
        verified.events_checked, 6,
        "company, two keys, owner (three)"
    );
    app.stop().await;
}

/// A user with `changes` renames after its creation (3 events): `changes + 3` events.
async fn user_with_history(app: &TestApp, email: &str, changes: usize) -> String {
    let created = app.create_user(user_body(email, "Hist", "Ory")).await;
    let user_id = created["userId"].as_str().unwrap().to_string();
    for i in 0..changes {
        let renamed = app
            .patch(&format!("/v4/user/{user_id}"))
            .json(json!({"familyName": format!("Ory{i}")}))
            .send()
            .await;
        assert_eq!(renamed.status, 200, "{}", renamed.text);
    }
    user_id
}

#[tokio::test]
async fn a_users_history_pages_with_after_and_limit_like_the_audit_log() {
    let app = spawn_app().await;
    let user = user_with_history(&app, "pages@example.com", 19).await;
    // Another user's events interleave in the log; they are not in this history.
    let other = user_with_history(&app, "other@example.com", 1).await;
    let path = format!("/v4/user/{user}/history");

    let first = app.get(&path).send().await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["count"], 20, "20 by default");
    let everything = app.get(&format!("{path}?limit=100")).send().await;
    let everything = everything.body["events"].as_array().unwrap().clone();
    assert_eq!(everything.len(), 22);
    assert_eq!(
        &first.body["events"].as_array().unwrap()[..],
        &everything[..20]
    );
    let sequences: Vec<i64> = everything
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=22).collect::<Vec<_>>());
    assert!(everything.iter().all(|e| e["aggregateId"] == user.as_str()));

    for limit in [1, 3, 7] {
        assert_eq!(
            all_pages(&app, &path, limit).await,
            everything,
            "pages of {limit} give the whole history once, in order"
        );
    }
    let last = everything.last().unwrap()["position"].as_i64().unwrap();
    let past_the_end = app.get(&format!("{path}?after={last}")).send().await;
    assert_eq!(past_the_end.status, 200, "{}", past_the_end.text);
    assert_eq!(past_the_end.body["count"], 0);
    assert_eq!(
        app.get(&format!("/v4/user/{other}/history?after=0"))
            .send()
            .await
            .body["count"],
        4
    );
    app.stop().await;
}

#[tokio::test]
async fn history_paging_refuses_bad_parameters_naming_each() {
    let app = spawn_app().await;
    let user = user_with_history(&app, "bad@example.com", 0).await;
    let other = user_with_history(&app, "else@example.com", 0).await;
    let path = format!("/v4/user/{user}/history");
    for (query, field, message) in [
        (
            "limit=0",
            "limit",
            "limit must be an integer between 1 and 100",
        ),
        (
            "limit=101",
            "limit",
            "limit must be an integer between 1 and 100",
        ),
        (
            "limit=ten",
            "limit",
            "limit must be an integer between 1 and 100",
        ),
        (
            "limit=",
            "limit",
            "limit must be an integer between 1 and 100",
        ),
        (
            "after=-1",
            "after",
            "after must be a non-negative integer (an event position)",
        ),
        (
            "after=first",
            "after",
            "after must be a non-negative integer (an event position)",
        ),
    ] {
        let response = app.get(&format!("{path}?{query}")).send().await;
        response.assert_error(400, message);
        assert_eq!(
            response.field_errors(),
            vec![(field.to_string(), message.to_string())],
            "{query}"
        );
    }
    let both = app.get(&format!("{path}?after=x&limit=0")).send().await;
    assert_eq!(both.status, 400, "{}", both.text);
    let fields: Vec<String> = both.field_errors().into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["after", "limit"]);

    // Any position is a cursor: the page holds this user's events after it, nothing else.
    let mine: Vec<i64> = app.get(&path).send().await.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    let theirs = app
        .get(&format!("/v4/user/{other}/history"))
        .send()
        .await
        .body["events"][0]["position"]
        .as_i64()
        .unwrap();
    for after in [mine[0], mine[1] - 1, theirs, 999_999] {
        let expected: Vec<i64> = mine.iter().copied().filter(|p| *p > after).collect();
        let page = app.get(&format!("{path}?after={after}")).send().await;
        assert_eq!(page.status, 200, "after={after}: {}", page.text);
        let positions: Vec<i64> = page.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["position"].as_i64().unwrap())
            .collect();
        assert_eq!(positions, expected, "after={after}");
        assert!(after != mine[0] || positions.len() == 2);
    }
    // An unknown user stays 404, with or without a cursor.
    let unknown = uuid::Uuid::now_v7();
    for query in ["", "?after=0", "?after=1", "?limit=5"] {
        app.get(&format!("/v4/user/{unknown}/history{query}"))
            .send()
            .await
            .assert_error(404, "User not found");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_names_the_history_paging_parameters() {
    let app = spawn_app().await;
    let document = app.get("/openapi.json").no_key().send().await;
    assert_eq!(document.status, 200);
    let operation = &document.body["paths"]["/v4/user/{id}/history"]["get"];
    let parameters: Vec<(&str, &str)> = operation["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap()))
        .collect();
    for expected in [("id", "path"), ("after", "query"), ("limit", "query")] {
        assert!(
            parameters.contains(&expected),
            "{expected:?} in {parameters:?}"
        );
    }
    let schema_of = |name: &str| {
        operation["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["schema"]
            .clone()
    };
    assert_eq!(schema_of("limit")["minimum"], 1, "{operation}");
    assert_eq!(schema_of("limit")["maximum"], 100, "{operation}");
    assert_eq!(schema_of("after")["minimum"], 0, "{operation}");
    assert!(operation["responses"].get("400").is_some(), "{operation}");
    app.stop().await;
}
