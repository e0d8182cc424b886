//! Idempotency keys outlive what their request created (issue 15, item 8): erasing a user
//! keeps a tombstone of the request that created it, so replaying that request does not
//! create the user again.

use serde_json::json;

use crate::helpers::{spawn_app, user_body};

#[tokio::test]
async fn replaying_the_creation_of_a_deleted_user_answers_409_instead_of_creating_it_again() {
    let app = spawn_app().await;
    let body = user_body("once@example.com", "Only", "Once");
    let first = app
        .post("/v4/user")
        .header("Idempotency-Key", "create-once")
        .json(body.clone())
        .send()
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let user_id = first.body["userId"].as_str().unwrap().to_string();
    assert_eq!(
        app.delete(&format!("/v4/user/{user_id}"))
            .send()
            .await
            .status,
        204
    );
    let users = app.get("/v4/user").send().await.body["total"].clone();
    let created_events = app
        .scalar("SELECT count(*) FROM events WHERE event_type = 'UserCreated'")
        .await;

    let replay = app
        .post("/v4/user")
        .header("Idempotency-Key", "create-once")
        .json(body.clone())
        .send()
        .await;
    replay.assert_error(
        409,
        "This request was already processed; its result has since been deleted",
    );
    assert_eq!(replay.header("idempotent-replayed"), None);
    assert_eq!(app.get("/v4/user").send().await.body["total"], users);
    assert_eq!(
        app.scalar("SELECT count(*) FROM events WHERE event_type = 'UserCreated'")
            .await,
        created_events,
        "nothing was appended"
    );

    // The tombstone: which request and how it was answered, nothing of what it said.
    let (status, body_erased, erased): (i16, bool, bool) = sqlx::query_as(
        "SELECT response_status, response_body IS NULL, erased_at IS NOT NULL \
         FROM idempotency_keys WHERE key = 'create-once'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((status, body_erased, erased), (201, true, true));

    // The same key with another request is still the mismatch it always was, and the freed
    // email can be used again by a new request.
    app.post("/v4/user")
        .header("Idempotency-Key", "create-once")
        .json(json!({"email": "other@example.com", "givenName": "An", "familyName": "Other"}))
        .send()
        .await
        .assert_error(
            409,
            "This Idempotency-Key was already used with a different request",
        );
    let again = app
        .post("/v4/user")
        .header("Idempotency-Key", "create-again")
        .json(body)
        .send()
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_ne!(again.body["userId"], user_id.as_str());
    app.stop().await;
}
