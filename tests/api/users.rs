//! `/v4/user…` end to end (api.md section 2): every endpoint and error, concurrency of the
//! uniqueness rules, slugs, tenancy, deletion, and read-your-writes.

use std::collections::HashMap;

use futures::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, user_body};

fn id(body: &Value) -> &str {
    body["userId"].as_str().unwrap()
}

#[tokio::test]
async fn creating_a_user_answers_201_with_its_ids_and_a_get_right_after_shows_it() {
    let app = spawn_app().await;
    let created = app
        .create_user(user_body(" John.Smith@Example.com ", " John ", "Smith"))
        .await;
    assert_eq!(created["companyId"], app.company.company_id.to_string());
    assert_eq!(
        created["bookingUrl"],
        "http://localhost:8080/john-smith/30min-meeting"
    );
    for field in ["userId", "availabilityId", "meetingTypeId"] {
        assert!(
            uuid::Uuid::parse_str(created[field].as_str().unwrap()).is_ok(),
            "{field}"
        );
    }

    // Read-your-writes: no sleep, no retry.
    let user = app.get(&format!("/v4/user/{}", id(&created))).send().await;
    assert_eq!(user.status, 200, "{}", user.text);
    let body = &user.body;
    assert_eq!(body["id"], created["userId"]);
    assert_eq!(body["email"], "John.Smith@Example.com");
    assert_eq!(body["givenName"], "John");
    assert_eq!(body["familyName"], "Smith");
    assert_eq!(body["fullName"], "John Smith");
    assert_eq!(body["slug"], "john-smith");
    assert_eq!(body["timezone"], "Europe/Berlin");
    assert_eq!(body["userType"], "api-platform");
    assert_eq!(body["isAdmin"], false);
    assert_eq!(body["defaultAvailabilityId"], created["availabilityId"]);
    assert_eq!(body["defaultMeetingTypeId"], created["meetingTypeId"]);
    let created_at = body["createdAt"].as_str().unwrap();
    assert!(
        created_at.ends_with('Z') && created_at.len() == 20,
        "no fractional seconds: {created_at}"
    );

    // The default availability and meeting type exist in their read models.
    let availability = projections::availabilities::list_for_user(
        &app.pool,
        app.company.company_id,
        id(&created).parse().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(availability.len(), 1);
    assert_eq!(availability[0].name, "Business Hours");
    assert_eq!(availability[0].timezone, "Europe/Berlin");
    assert_eq!(
        availability[0].schedule,
        json!(
            ["monday", "tuesday", "wednesday", "thursday", "friday"]
                .iter()
                .map(|d| json!({"dayOfWeek": d, "intervals": [{"from": "09:00", "to": "17:00"}]}))
                .collect::<Vec<_>>()
        )
    );
    let meeting_type = projections::meeting_types::find(
        &app.pool,
        app.company.company_id,
        id(&created).parse().unwrap(),
        created["meetingTypeId"].as_str().unwrap().parse().unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        (
            meeting_type.name.as_str(),
            meeting_type.slug.as_str(),
            meeting_type.duration_minutes
        ),
        ("30min Meeting", "30min-meeting", 30)
    );
    assert_eq!(
        (
            meeting_type.slot_interval_minutes,
            meeting_type.horizon_days,
            meeting_type.minimum_notice_minutes
        ),
        (30, 60, 0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_custom_availability_and_meeting_type_are_provisioned_as_given() {
    let app = spawn_app().await;
    let created = app
        .create_user(json!({
            "email": "custom@example.com", "givenName": "Cus", "familyName": "Tom", "timezone": "America/New_York",
            "slug": "custom-user",
            "availability": {"name": "Tokyo Hours", "timezone": "Asia/Tokyo", "schedule": [
                {"dayOfWeek": "monday", "intervals": [{"from": "09:00", "to": "12:00"}, {"from": "13:00", "to": "17:00"}]},
                {"dayOfWeek": "friday", "intervals": [{"from": "09:00", "to": "15:00"}]}]},
            "meetingType": {"name": "Discovery Call", "duration": 45, "slotInterval": 15, "bufferBefore": 5,
                            "bufferAfter": 10, "minimumNotice": 120, "horizonDays": 30}
        }))
        .await;
    assert_eq!(
        created["bookingUrl"],
        "http://localhost:8080/custom-user/discovery-call"
    );
    let user_id = id(&created).parse().unwrap();
    let availability =
        projections::availabilities::list_for_user(&app.pool, app.company.company_id, user_id)
            .await
            .unwrap()
            .remove(0);
    assert_eq!(
        (availability.name.as_str(), availability.timezone.as_str()),
        ("Tokyo Hours", "Asia/Tokyo")
    );
    assert_eq!(
        availability.schedule[0]["intervals"][1],
        json!({"from": "13:00", "to": "17:00"})
    );
    let meeting_type = projections::meeting_types::find(
        &app.pool,
        app.company.company_id,
        user_id,
        created["meetingTypeId"].as_str().unwrap().parse().unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        (
            meeting_type.duration_minutes,
            meeting_type.slot_interval_minutes,
            meeting_type.buffer_before_minutes,
            meeting_type.buffer_after_minutes,
            meeting_type.minimum_notice_minutes,
            meeting_type.horizon_days
        ),
        (45, 15, 5, 10, 120, 30)
    );
    app.stop().await;
}

#[tokio::test]
async fn every_invalid_field_of_a_creation_is_reported_together_and_nothing_is_created() {
    let app = spawn_app().await;
    let events_before = app.scalar("SELECT count(*) FROM events").await;
    let response = app
        .post("/v4/user")
        .json(json!({
            "email": "not an email", "givenName": "", "familyName": 7, "timezone": "Mars/Olympus", "slug": "Bad Slug",
            "availability": {"schedule": [
                {"dayOfWeek": "monday", "intervals": [{"from": "09:00", "to": "12:00"}, {"from": "11:00", "to": "13:00"}]},
                {"dayOfWeek": "noday", "intervals": []}]},
            "meetingType": {"name": "x", "duration": 481}
        }))
        .send()
        .await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.body["message"],
        "8 fields are invalid: email, givenName, familyName, timezone, slug, availability.schedule[0].intervals[1], availability.schedule[1].dayOfWeek, meetingType.duration"
    );
    assert_eq!(
        response.field_errors(),
        [
            ("email", "email must be a valid email address"),
            ("givenName", "givenName must not be empty"),
            ("familyName", "familyName must be a string, not a number"),
            ("timezone", "Invalid timezone"),
            ("slug", "slug may contain only lowercase letters a-z, digits and single hyphens between them"),
            ("availability.schedule[0].intervals[1]", "intervals overlap"),
            ("availability.schedule[1].dayOfWeek", "dayOfWeek must be one of monday, tuesday, wednesday, thursday, friday, saturday, sunday"),
            ("meetingType.duration", "duration must be between 5 and 480 minutes"),
        ]
        .map(|(f, m)| (f.to_string(), m.to_string()))
    );
    let missing = app.post("/v4/user").json(json!({})).send().await;
    assert_eq!(
        missing
            .field_errors()
            .iter()
            .map(|(f, _)| f.as_str())
            .collect::<Vec<_>>(),
        ["email", "givenName", "familyName", "timezone"]
    );
    let names = app
        .post("/v4/user")
        .json(json!({"email": "a@example.com", "givenName": "A\u{0}B", "familyName": "x".repeat(101), "timezone": "UTC"}))
        .send()
        .await;
    assert_eq!(names.field_errors().len(), 2, "{}", names.text);
    let short_slug = app
        .post("/v4/user")
        .json(json!({"email": "s@example.com", "givenName": "S", "familyName": "S", "timezone": "UTC", "slug": "abcd"}))
        .send()
        .await;
    short_slug.assert_error(400, "slug must be at least 5 characters");
    let events_after = app.scalar("SELECT count(*) FROM events").await;
    assert_eq!(events_after, events_before);
    app.stop().await;
}

#[tokio::test]
async fn schedule_times_are_exactly_hh_mm_in_ascii_digits() {
    let app = spawn_app().await;
    for (i, bad) in ["+9:00", "09:+5", "9:00", "09:00:00", "-0:30", "٠٩:٠٠"]
        .into_iter()
        .enumerate()
    {
        let response = app
            .post("/v4/user")
            .json(json!({
                "email": format!("times{i}@example.com"), "givenName": "Ti", "familyName": "Mes",
                "timezone": "UTC", "availability": {"schedule": [
                    {"dayOfWeek": "monday", "intervals": [{"from": "08:00", "to": bad}]}]}
            }))
            .send()
            .await;
        response.assert_error(400, "to must be a time HH:MM between 00:00–24:00");
        assert_eq!(
            response.field_errors()[0].0,
            "availability.schedule[0].intervals[0].to",
            "{bad}"
        );
    }
    assert_eq!(app.scalar("SELECT count(*) FROM user_profiles").await, 1);
    app.create_user(json!({
        "email": "times@example.com", "givenName": "Ti", "familyName": "Mes", "timezone": "UTC",
        "availability": {"schedule": [
            {"dayOfWeek": "monday", "intervals": [{"from": "00:00", "to": "24:00"}]}]}
    }))
    .await;
    app.stop().await;
}

#[tokio::test]
async fn the_same_email_in_another_case_is_409_and_an_explicit_slug_taken_is_409() {
    let app = spawn_app().await;
    app.create_user(user_body("dup@example.com", "Dup", "One"))
        .await;
    app.post("/v4/user")
        .json(user_body("DUP@Example.COM", "Dup", "Two"))
        .send()
        .await
        .assert_error(409, "A user with this email already exists");
    app.create_user(json!({"email": "s1@example.com", "givenName": "S", "familyName": "One", "timezone": "UTC", "slug": "taken-slug"}))
        .await;
    app.post("/v4/user")
        .json(json!({"email": "s2@example.com", "givenName": "S", "familyName": "Two", "timezone": "UTC", "slug": "taken-slug"}))
        .send()
        .await
        .assert_error(409, "Slug already taken");
    // Emails are unique per company only: another company may use the same address.
    let other = app.another_company("Umbrella").await;
    let elsewhere = app
        .post("/v4/user")
        .key(&other.api_key)
        .json(user_body("dup@example.com", "Dup", "Elsewhere"))
        .send()
        .await;
    assert_eq!(elsewhere.status, 201, "{}", elsewhere.text);
    app.stop().await;
}

#[tokio::test]
async fn fifty_simultaneous_creations_with_one_email_give_one_user_and_forty_nine_conflicts() {
    let app = spawn_app().await;
    let cases = [
        "race@example.com",
        "RACE@example.com",
        "Race@Example.com",
        "race@EXAMPLE.COM",
        " race@example.com ",
    ];
    let calls = (0..50).map(|i| {
        app.post("/v4/user")
            .json(user_body(
                cases[i % cases.len()],
                "Race",
                &format!("Runner{i}"),
            ))
            .send()
    });
    let responses = join_all(calls).await;
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for response in &responses {
        *by_status.entry(response.status.as_u16()).or_default() += 1;
        if response.status == 409 {
            response.assert_error(409, "A user with this email already exists");
        }
    }
    assert_eq!(
        by_status,
        HashMap::from([(201, 1), (409, 49)]),
        "{by_status:?}"
    );
    let winner = responses.iter().find(|r| r.status == 201).unwrap();
    let users = app
        .scalar("SELECT count(*) FROM user_profiles WHERE lower(email) = 'race@example.com'")
        .await;
    assert_eq!(users, 1);
    let created_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'User' AND aggregate_id <> $1",
    )
    .bind(app.company.owner_user_id.to_string())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        created_events, 3,
        "exactly the three events of the one user"
    );
    assert_eq!(app.count_events(id(&winner.body)).await, 3);
    app.stop().await;
}

#[tokio::test]
async fn fifty_simultaneous_creations_with_one_slug_across_two_companies_give_one_user() {
    let app = spawn_app().await;
    let other = app.another_company("Hooli").await;
    let calls = (0..50).map(|i| {
        let call = app.post("/v4/user").json(
            json!({"email": format!("slug{i}@example.com"), "givenName": "Slug",
            "familyName": "Racer", "timezone": "UTC", "slug": "the-one-slug"}),
        );
        let call = if i % 2 == 0 {
            call
        } else {
            call.key(&other.api_key)
        };
        call.send()
    });
    let responses = join_all(calls).await;
    let created: Vec<_> = responses.iter().filter(|r| r.status == 201).collect();
    assert_eq!(
        created.len(),
        1,
        "{:?}",
        responses
            .iter()
            .map(|r| r.status.as_u16())
            .collect::<Vec<_>>()
    );
    for response in responses.iter().filter(|r| r.status != 201) {
        response.assert_error(409, "Slug already taken");
    }
    let holders = app
        .scalar("SELECT count(*) FROM user_profiles WHERE slug = 'the-one-slug'")
        .await;
    assert_eq!(holders, 1);
    let user_streams: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT aggregate_id) FROM events WHERE event_type = 'UserCreated' AND aggregate_id NOT IN ($1, $2)",
    )
    .bind(app.company.owner_user_id.to_string())
    .bind(other.owner_user_id.to_string())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(user_streams, 1);
    assert_eq!(app.count_events(id(&created[0].body)).await, 3);
    app.stop().await;
}

async fn slug_of(app: &TestApp, given: &str, family: &str, email: &str) -> String {
    let created = app.create_user(user_body(email, given, family)).await;
    let user = app.get(&format!("/v4/user/{}", id(&created))).send().await;
    user.body["slug"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn slugs_are_derived_from_names_as_the_spec_tables_them() {
    let app = spawn_app().await;
    let long_given = "Maximilian".repeat(10);
    let long_family = "Oberbergmeister".repeat(7);
    let table = [
        ("John", "Smith", "john-smith"),
        ("Jörg", "Müller", "jorg-muller"),
        ("Zoë", "Ångström", "zoe-angstrom"),
        ("李", "王", "li-wang"),
        ("Иван", "Петров", "ivan-petrov"),
        ("Νίκος", "Παπαδόπουλος", "nikos-papadopoulos"),
        ("🎉", "✨", "user-1"),
        ("A", "B", "a-b-1"),
        ("Party 🎉", "Person", "party-person"),
        ("John", "Smith", "john-smith-2"),
        ("John", "Smith", "john-smith-3"),
    ];
    for (i, (given, family, expected)) in table.iter().enumerate() {
        let slug = slug_of(&app, given, family, &format!("slug{i}@example.com")).await;
        assert_eq!(&slug, expected, "{given} {family}");
    }
    let long = slug_of(
        &app,
        &long_given[..100],
        &long_family[..100],
        "long@example.com",
    )
    .await;
    assert!(
        long.len() <= 58 && long.starts_with("maximilian") && !long.ends_with('-'),
        "{long}"
    );
    // A second 李 王 takes the next suffix of its transliteration; a second name with no
    // letter or digit the next fallback suffix.
    assert_eq!(
        slug_of(&app, "李", "王", "li2@example.com").await,
        "li-wang-2"
    );
    assert_eq!(slug_of(&app, "★", "♥", "stars@example.com").await, "user-2");
    app.stop().await;
}

/// Claims `user-1` … `user-{count}` as if that many users without a letter in their names
/// existed (in other companies: user slugs are unique across the installation).
async fn claim_user_slugs(app: &TestApp, count: i64) {
    sqlx::query(
        "INSERT INTO claims (kind, scope, value, owner_id, aggregate_type, aggregate_id) \
         SELECT 'user-slug', '', 'user-' || n, gen_random_uuid()::text, 'User', gen_random_uuid()::text \
         FROM generate_series(1, $1) n",
    )
    .bind(count)
    .execute(&app.owner)
    .await
    .unwrap();
    sqlx::query("ANALYZE claims")
        .execute(&app.owner)
        .await
        .unwrap();
}

#[tokio::test]
async fn after_a_slug_collision_the_next_suffix_is_found_by_one_bounded_index_read() {
    let app = spawn_app().await;
    claim_user_slugs(&app, 5_000).await;
    // Also many slugs that merely start with the base, which a prefix scan would read.
    sqlx::query(
        "INSERT INTO claims (kind, scope, value, owner_id, aggregate_type, aggregate_id) \
         SELECT 'user-slug', '', 'user-' || n || '-x', 'o', 'User', 'a' FROM generate_series(1, 2000) n",
    )
    .execute(&app.owner)
    .await
    .unwrap();
    assert_eq!(
        slug_of(&app, "🎉", "✨", "party1@example.com").await,
        "user-5001"
    );

    // The query as a prepared statement's generic plan (what a pooled connection settles
    // on): index reads only, and no more rows than the plain slug, the lowest suffixes and
    // the highest.
    let mut connection = app.pool.acquire().await.unwrap();
    sqlx::query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut *connection)
        .await
        .unwrap();
    let plan: Value = sqlx::query_scalar(&format!(
        "EXPLAIN (ANALYZE, FORMAT JSON) {}",
        kairos::event_store::TAKEN_USER_SLUG_CANDIDATES
    ))
    .bind("user")
    .bind(1_i64)
    .bind(aggregates::slug::LOWEST_TAKEN as i64)
    .fetch_one(&mut *connection)
    .await
    .unwrap();
    let mut scans = Vec::new();
    collect_scans(&plan[0]["Plan"], &mut scans);
    assert!(
        scans.iter().all(|(node, _, _)| node.starts_with("Index")),
        "{scans:?}"
    );
    assert!(
        scans
            .iter()
            .any(|(_, index, _)| index == "claims_user_slug_suffix"),
        "{scans:?}"
    );
    let read: i64 = scans.iter().map(|(_, _, rows)| rows).sum();
    assert!(
        read <= 2 + aggregates::slug::LOWEST_TAKEN as i64,
        "read {read} rows: {scans:?}"
    );
    drop(connection);

    // A gap among the lowest suffixes is still the smallest free one.
    sqlx::query("DELETE FROM claims WHERE kind = 'user-slug' AND value = 'user-7'")
        .execute(&app.owner)
        .await
        .unwrap();
    assert_eq!(
        slug_of(&app, "★", "♥", "party2@example.com").await,
        "user-7"
    );
    assert_eq!(
        slug_of(&app, "★", "♥", "party3@example.com").await,
        "user-5002"
    );
    app.stop().await;
}

/// (node type, index name, actual rows) of every scan node of an EXPLAIN (FORMAT JSON) plan.
fn collect_scans(node: &Value, scans: &mut Vec<(String, String, i64)>) {
    let node_type = node["Node Type"].as_str().unwrap_or_default();
    if node_type.contains("Scan") {
        scans.push((
            node_type.to_string(),
            node["Index Name"].as_str().unwrap_or_default().to_string(),
            node["Actual Rows"].as_i64().unwrap_or_default()
                + node["Rows Removed by Filter"].as_i64().unwrap_or_default()
                + node["Rows Removed by Index Recheck"]
                    .as_i64()
                    .unwrap_or_default(),
        ));
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        collect_scans(child, scans);
    }
}

#[tokio::test]
async fn simultaneous_creations_with_one_derived_slug_each_get_their_own_suffix() {
    let app = spawn_app().await;
    let calls = (0..12).map(|i| {
        app.post("/v4/user")
            .json(user_body(&format!("twin{i}@example.com"), "Twin", "Name"))
            .send()
    });
    let responses = join_all(calls).await;
    let mut slugs = Vec::new();
    for response in &responses {
        assert_eq!(response.status, 201, "{:?}", response.body);
        let user = app
            .get(&format!("/v4/user/{}", id(&response.body)))
            .send()
            .await;
        slugs.push(user.body["slug"].as_str().unwrap().to_string());
    }
    slugs.sort();
    let mut expected: Vec<String> = (2..=12).map(|n| format!("twin-name-{n}")).collect();
    expected.push("twin-name".into());
    expected.sort();
    assert_eq!(slugs, expected);
    app.stop().await;
}

#[tokio::test]
async fn listing_pages_through_the_company_and_filters_by_user_type() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.create_user(user_body(
            &format!("list{i}@example.com"),
            "List",
            &format!("User{i}"),
        ))
        .await;
    }
    let all = app.get("/v4/user").send().await;
    assert_eq!(
        (
            all.body["total"].as_i64(),
            all.body["count"].as_i64(),
            all.body["skip"].as_i64()
        ),
        (Some(6), Some(6), Some(0))
    );
    assert_eq!(
        all.body["users"][0]["userType"], "standard",
        "oldest first: the owner"
    );
    let page = app.get("/v4/user?limit=2&skip=2").send().await;
    assert_eq!(page.body["count"], 2);
    assert_eq!(page.body["total"], 6);
    assert_eq!(page.body["users"][0]["familyName"], "User1");
    let platform = app.get("/v4/user?userType=api-platform").send().await;
    assert_eq!(platform.body["total"], 5);
    let standard = app.get("/v4/user?userType=standard").send().await;
    assert_eq!(standard.body["total"], 1);

    let bad = app
        .get("/v4/user?limit=0&skip=-1&userType=admin")
        .send()
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.field_errors()
            .iter()
            .map(|(f, _)| f.as_str())
            .collect::<Vec<_>>(),
        ["limit", "skip", "userType"]
    );
    assert_eq!(app.get("/v4/user?limit=101").send().await.status, 400);
    assert_eq!(app.get("/v4/user?limit=abc").send().await.status, 400);
    app.stop().await;
}

#[tokio::test]
async fn patching_renames_reslugs_and_moves_the_timezone_and_a_get_shows_it() {
    let app = spawn_app().await;
    let created = app
        .create_user(user_body("patch@example.com", "Pat", "Ch"))
        .await;
    let path = format!("/v4/user/{}", id(&created));
    let patched = app
        .patch(&path)
        .json(json!({"givenName": "Patricia", "familyName": "Church", "slug": "patricia-c", "timezone": "Asia/Tokyo"}))
        .send()
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["fullName"], "Patricia Church");
    assert_eq!(patched.body["slug"], "patricia-c");
    assert_eq!(patched.body["timezone"], "Asia/Tokyo");
    let fetched = app.get(&path).send().await;
    assert_eq!(fetched.body, patched.body, "read-your-writes");
    // The old slug is free again; the new one is taken.
    app.create_user(json!({"email": "x@example.com", "givenName": "X", "familyName": "Y", "timezone": "UTC", "slug": "pat-ch"}))
        .await;
    app.create_user(json!({"email": "z@example.com", "givenName": "Z", "familyName": "Z", "timezone": "UTC", "slug": "zzzzz"}))
        .await;
    app.patch(&path)
        .json(json!({"slug": "zzzzz"}))
        .send()
        .await
        .assert_error(409, "Slug already taken");

    app.patch(&path).json(json!({})).send().await.assert_error(
        400,
        "Provide at least one of givenName, familyName, slug, timezone",
    );
    let bad = app
        .patch(&path)
        .json(json!({"givenName": "", "timezone": "Nowhere"}))
        .send()
        .await;
    assert_eq!(bad.field_errors().len(), 2);
    // A null cannot clear a field, and is not silently read as "unchanged" either.
    app.patch(&path)
        .json(json!({"familyName": null}))
        .send()
        .await
        .assert_error(400, "familyName cannot be null");
    let email = app
        .patch(&path)
        .json(json!({"email": "new@example.com"}))
        .send()
        .await;
    email.assert_error(
        400,
        "Provide at least one of givenName, familyName, slug, timezone",
    );
    app.stop().await;
}

#[tokio::test]
async fn deleting_frees_the_email_and_the_old_id_answers_404() {
    let app = spawn_app().await;
    let created = app
        .create_user(user_body("gone@example.com", "Gone", "Soon"))
        .await;
    let path = format!("/v4/user/{}", id(&created));
    let deleted = app.delete(&path).send().await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert!(deleted.text.is_empty());
    app.get(&path)
        .send()
        .await
        .assert_error(404, "User not found");
    app.delete(&path)
        .send()
        .await
        .assert_error(404, "User not found");
    app.patch(&path)
        .json(json!({"givenName": "Back"}))
        .send()
        .await
        .assert_error(404, "User not found");
    app.get("/v4/user/me")
        .acting_as(id(&created))
        .send()
        .await
        .assert_error(404, "User not found");
    let list = app.get("/v4/user").send().await;
    assert_eq!(list.body["total"], 1, "only the owner is left");
    for table in ["availabilities", "meeting_types"] {
        let rows: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE user_id = $1"))
                .bind(uuid::Uuid::parse_str(id(&created)).unwrap())
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(rows, 0, "{table}");
    }
    let again = app
        .create_user(user_body("GONE@example.com", "Gone", "Soon"))
        .await;
    assert_ne!(id(&again), id(&created));
    let user = app.get(&format!("/v4/user/{}", id(&again))).send().await;
    assert_eq!(user.body["slug"], "gone-soon", "the slug was freed too");
    app.stop().await;
}

#[tokio::test]
async fn nobody_deletes_the_owner_or_themselves() {
    let app = spawn_app().await;
    app.delete(&format!("/v4/user/{}", app.company.owner_user_id))
        .send()
        .await
        .assert_error(403, "The company owner cannot be deleted");
    let user = app
        .create_user(user_body("self@example.com", "Self", "Ish"))
        .await;
    app.delete(&format!("/v4/user/{}", id(&user)))
        .acting_as(id(&user))
        .send()
        .await
        .assert_error(403, "You cannot delete yourself");
    assert_eq!(
        app.get(&format!("/v4/user/{}", id(&user)))
            .send()
            .await
            .status,
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404_and_400() {
    let app = spawn_app().await;
    let unknown = uuid::Uuid::new_v4();
    app.get(&format!("/v4/user/{unknown}"))
        .send()
        .await
        .assert_error(404, "User not found");
    app.patch(&format!("/v4/user/{unknown}"))
        .json(json!({"givenName": "X"}))
        .send()
        .await
        .assert_error(404, "User not found");
    app.delete(&format!("/v4/user/{unknown}"))
        .send()
        .await
        .assert_error(404, "User not found");
    app.get("/v4/user/not-a-uuid")
        .send()
        .await
        .assert_error(400, "id must be a UUID");
    // Not UTF-8 once percent-decoded: still the envelope, not axum's plain text.
    for path in ["/v4/user/%FF", "/v4/user/%FF/history"] {
        app.get(path)
            .send()
            .await
            .assert_error(400, "id must be a UUID");
    }
    app.get("/v4/user/%C3%28/bookable-windows?startDate=2030-01-07&endDate=2030-01-08")
        .send()
        .await
        .assert_error(400, "userId must be a UUID");
    app.stop().await;
}

#[tokio::test]
async fn another_company_sees_none_of_this_companys_users() {
    let app = spawn_app().await;
    let a_user = app
        .create_user(user_body("tenant-a@example.com", "Tenant", "A"))
        .await;
    let other = app.another_company("Soylent").await;
    let b = other.api_key.as_str();
    let a_ids = [
        id(&a_user).to_string(),
        app.company.owner_user_id.to_string(),
    ];
    for a_id in &a_ids {
        let path = format!("/v4/user/{a_id}");
        app.get(&path)
            .key(b)
            .send()
            .await
            .assert_error(404, "User not found");
        app.patch(&path)
            .key(b)
            .json(json!({"givenName": "Mallory"}))
            .send()
            .await
            .assert_error(404, "User not found");
        app.delete(&path)
            .key(b)
            .send()
            .await
            .assert_error(404, "User not found");
        app.get("/v4/user/me")
            .key(b)
            .acting_as(a_id)
            .send()
            .await
            .assert_error(404, "User not found");
        app.get("/v4/user")
            .key(b)
            .acting_as(a_id)
            .send()
            .await
            .assert_error(404, "User not found");
    }
    let listing = app.get("/v4/user").key(b).send().await;
    assert_eq!(listing.body["total"], 1);
    assert_eq!(
        listing.body["users"][0]["id"],
        other.owner_user_id.to_string()
    );
    // Nothing of A changed.
    let unchanged = app.get(&format!("/v4/user/{}", id(&a_user))).send().await;
    assert_eq!(unchanged.body["givenName"], "Tenant");
    app.stop().await;
}

#[tokio::test]
async fn simultaneous_identical_patches_of_one_user_all_succeed_and_record_one_change() {
    let app = spawn_app().await;
    let user = app
        .create_user(user_body("twice@example.com", "Twi", "Ce"))
        .await;
    let user_id = id(&user).to_string();
    let path = format!("/v4/user/{user_id}");
    // Each decided on the same state; the losers of the race reload and find nothing to do.
    // Their claim of the slug is held by the user itself, which is no reason for a 409.
    let calls = (0..20).map(|_| {
        app.patch(&path)
            .json(json!({"slug": "twice-renamed"}))
            .send()
    });
    let responses = join_all(calls).await;
    for response in &responses {
        assert_eq!(response.status, 200, "{}", response.text);
        assert_eq!(response.body["slug"], "twice-renamed");
    }
    assert_eq!(
        app.count_events(&user_id).await,
        4,
        "three at creation, one slug change"
    );
    app.stop().await;
}

#[tokio::test]
async fn two_users_swapping_slugs_at_once_never_get_a_5xx() {
    let app = spawn_app().await;
    let first = id(&app
        .create_user(
            json!({"email": "swap1@example.com", "givenName": "Swap", "familyName": "One",
            "timezone": "UTC", "slug": "swap-slug-a"}),
        )
        .await)
    .to_string();
    let second = id(&app
        .create_user(
            json!({"email": "swap2@example.com", "givenName": "Swap", "familyName": "Two",
            "timezone": "UTC", "slug": "swap-slug-b"}),
        )
        .await)
    .to_string();
    for round in 0..10 {
        let (to_first, to_second) = if round % 2 == 0 {
            ("swap-slug-b", "swap-slug-a")
        } else {
            ("swap-slug-a", "swap-slug-b")
        };
        let (a, b) = futures::join!(
            app.patch(&format!("/v4/user/{first}"))
                .json(json!({"slug": to_first}))
                .send(),
            app.patch(&format!("/v4/user/{second}"))
                .json(json!({"slug": to_second}))
                .send()
        );
        for response in [&a, &b] {
            assert!(
                [200, 409].contains(&response.status.as_u16()),
                "round {round}: {} {}",
                response.status,
                response.text
            );
        }
    }
    // Whatever won, the two slugs stay distinct.
    let mut slugs = Vec::new();
    for user in [&first, &second] {
        slugs.push(app.get(&format!("/v4/user/{user}")).send().await.body["slug"].clone());
    }
    assert_ne!(slugs[0], slugs[1]);
    app.stop().await;
}
