//! The `kairos` command line, run as a real process against a test database.

use std::process::Output;

use serde_json::Value;

use crate::helpers::spawn_app;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

#[tokio::test]
async fn company_create_prints_json_with_a_key_that_works_at_once() {
    let app = spawn_app().await;
    let output = app
        .cli(&[
            "company",
            "create",
            "--name",
            "Initech",
            "--owner-email",
            "bill@initech.example.com",
            "--owner-given-name",
            "Bill",
            "--owner-family-name",
            "Lumbergh",
            "--timezone",
            "America/Chicago",
            "--key-days",
            "7",
            "--json",
        ])
        .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let created: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    for field in [
        "companyId",
        "ownerUserId",
        "apiKeyId",
        "apiKey",
        "expiresAt",
    ] {
        assert!(created.get(field).is_some(), "{field} in {created}");
    }
    let key = created["apiKey"].as_str().unwrap();
    let me = app.get("/v4/user/me").key(key).send().await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["email"], "bill@initech.example.com");
    assert_eq!(me.body["userType"], "standard");
    assert_eq!(me.body["id"], created["ownerUserId"]);
    app.stop().await;
}

#[tokio::test]
async fn company_create_reports_every_bad_field_and_creates_nothing() {
    let app = spawn_app().await;
    let events_before = app.scalar("SELECT count(*) FROM events").await;
    let output = app
        .cli(&[
            "company",
            "create",
            "--name",
            "",
            "--owner-email",
            "nope",
            "--owner-given-name",
            "B",
            "--owner-family-name",
            "L",
            "--timezone",
            "Mars/Base",
            "--key-days",
            "91",
        ])
        .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in ["name", "days", "owner.email", "owner.timezone"] {
        assert!(stderr.contains(expected), "{expected} in {stderr}");
    }
    let events_after = app.scalar("SELECT count(*) FROM events").await;
    assert_eq!(events_after, events_before);
    app.stop().await;
}

#[tokio::test]
async fn api_key_create_and_revoke_take_effect_at_once() {
    let app = spawn_app().await;
    let company = app.company.company_id.to_string();
    let output = app
        .cli(&[
            "api-key",
            "create",
            "--company",
            &company,
            "--days",
            "90",
            "--json",
        ])
        .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let issued: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    let key = issued["apiKey"].as_str().unwrap();
    assert_eq!(app.get("/v4/user/me").key(key).send().await.status, 200);

    let revoke = app
        .cli(&["api-key", "revoke", issued["apiKeyId"].as_str().unwrap()])
        .await;
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    app.get("/v4/user/me")
        .key(key)
        .send()
        .await
        .assert_error(401, "Invalid API key");

    let bad_days = app
        .cli(&["api-key", "create", "--company", &company, "--days", "0"])
        .await;
    assert!(!bad_days.status.success());
    let unknown = app
        .cli(&["api-key", "revoke", &uuid::Uuid::new_v4().to_string()])
        .await;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("API key not found"));
    app.stop().await;
}

#[tokio::test]
async fn commands_that_need_the_master_key_refuse_to_run_without_it() {
    let app = spawn_app().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(["serve"])
        .env("DATABASE_URL", &app.db.url)
        .env_remove("KAIROS_MASTER_KEY")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("KAIROS_MASTER_KEY is not set"));
    app.stop().await;
}

#[tokio::test]
async fn the_windows_cache_is_sized_in_mib_and_the_old_users_bound_is_refused_by_name() {
    let serve = |variable: &'static str, value: &'static str| async move {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kairos"))
            .args(["serve"])
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .env_remove("KAIROS_WINDOWS_CACHE_USERS")
            .env_remove("KAIROS_WINDOWS_CACHE_MB")
            .env(variable, value)
            .output()
            .await
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = serve("KAIROS_WINDOWS_CACHE_USERS", "250000").await;
    assert!(
        stderr.contains("KAIROS_WINDOWS_CACHE_USERS was replaced by KAIROS_WINDOWS_CACHE_MB"),
        "{stderr}"
    );
    let stderr = serve("KAIROS_WINDOWS_CACHE_MB", "lots").await;
    assert!(
        stderr.contains("KAIROS_WINDOWS_CACHE_MB must be a non-negative integer"),
        "{stderr}"
    );
}

#[tokio::test]
async fn projections_status_lists_every_projector_with_its_state() {
    let app = spawn_app().await;
    let output = app.cli(&["projections", "status", "--json"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let statuses: Vec<Value> = serde_json::from_str(&stdout(&output)).unwrap();
    let names: Vec<&str> = statuses
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for name in ["bookable_windows", "companies", "users"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    assert!(
        statuses
            .iter()
            .all(|s| s["state"] == "running" && s["lag"] == 0),
        "{statuses:?}"
    );
    let text = app.cli(&["projections", "status"]).await;
    assert!(stdout(&text).contains("bookable_windows"));
    app.stop().await;
}

#[tokio::test]
async fn audit_verify_passes_on_a_clean_log_and_names_a_tampered_event() {
    let app = spawn_app().await;
    let clean = app.cli(&["audit", "verify"]).await;
    assert!(clean.status.success(), "{}", stdout(&clean));
    assert!(stdout(&clean).starts_with("ok: "), "{}", stdout(&clean));

    let (position, event_id): (i64, uuid::Uuid) = sqlx::query_as(
        "SELECT global_position, event_id FROM events WHERE event_type = 'CompanyCreated'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    app.tamper_with_event(
        position,
        "payload = jsonb_set(payload, '{name}', '\"Evil Corp\"')",
    )
    .await;

    let broken = app.cli(&["audit", "verify"]).await;
    assert_eq!(broken.status.code(), Some(1));
    let text = stdout(&broken);
    assert!(
        text.contains(&event_id.to_string()) && text.contains(&format!("position {position}")),
        "{text}"
    );
    app.stop().await;
}

/// "Cannot check" is not "tampered": a database that cannot be read, or no database
/// configured at all, exits 2, not 1 or 0.
#[tokio::test]
async fn audit_verify_exits_2_when_it_cannot_read_the_log() {
    let app = spawn_app().await;
    let (cluster, _) = app.db.url.rsplit_once('/').expect("a database URL");
    for (database_url, says) in [
        (
            format!("{cluster}/no_such_kairos_database"),
            "the log could not be verified",
        ),
        (String::new(), "DATABASE_URL"),
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kairos"))
            .args(["audit", "verify"])
            .env("DATABASE_URL", &database_url)
            .env("KAIROS_MASTER_KEY", &app.master_key)
            .env("RUST_LOG", "warn")
            .output()
            .await
            .expect("run kairos");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{database_url:?}: {stderr}");
        assert!(stderr.contains(says), "{database_url:?}: {stderr}");
    }
    app.stop().await;
}

#[tokio::test]
async fn projections_rebuild_replays_into_shadows_and_reports_its_rate() {
    let app = spawn_app().await;
    app.create_user(crate::helpers::user_body(
        "cli-rebuild@example.com",
        "Cli",
        "Rebuild",
    ))
    .await;
    let output = app.cli(&["projections", "rebuild", "--all"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = stdout(&output);
    assert!(
        text.starts_with("rebuilt companies, users, bookable_windows (6 tables) from 8 events"),
        "{text}"
    );
    assert!(text.contains("events/s"), "{text}");
    let one = app
        .cli(&["projections", "rebuild", "users", "--json"])
        .await;
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let report: Value = serde_json::from_str(&stdout(&one)).unwrap();
    assert_eq!(
        report["tables"],
        serde_json::json!(["user_profiles", "availabilities", "meeting_types"])
    );
    assert_eq!(app.get("/v4/user/me").send().await.status, 200);

    let unknown = app.cli(&["projections", "rebuild", "nope"]).await;
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("known: companies, users, bookable_windows")
    );
    app.stop().await;
}
