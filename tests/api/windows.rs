//! `GET /v4/user/{userId}/bookable-windows` with exact expected strings (api.md section 5),
//! and the bookable windows projector: recomputation on change, horizon upkeep, and rebuild
//! identity. Every expected instant below was worked out by hand from the zone's rules.

use chrono::{DateTime, Duration, Utc};
use projections::bookable_windows::{WindowsCache, load_user_windows};
use serde_json::{Value, json};

use crate::helpers::{AppOptions, TestApp, spawn_app_with, user_body};

/// "Now" for these tests: before every week they ask about.
fn now() -> DateTime<Utc> {
    "2026-02-25T00:00:00Z".parse().unwrap()
}

async fn windows(app: &TestApp, user: &str, query: &str) -> Vec<String> {
    let response = app
        .get(&format!("/v4/user/{user}/bookable-windows?{query}"))
        .send()
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    response.body["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}

/// Every half hour from `first` (inclusive) to `last` (inclusive) on `date`, written with
/// `suffix` (`Z` or an offset).
fn half_hours(date: &str, first: &str, last: &str, suffix: &str) -> Vec<String> {
    let parse = |t: &str| {
        let (h, m) = t.split_once(':').unwrap();
        h.parse::<u32>().unwrap() * 60 + m.parse::<u32>().unwrap()
    };
    (parse(first)..=parse(last))
        .step_by(30)
        .map(|m| format!("{date}T{:02}:{:02}:00{suffix}", m / 60, m % 60))
        .collect()
}

async fn app_at_fixed_now() -> TestApp {
    spawn_app_with(AppOptions {
        now: Some(now()),
        ..Default::default()
    })
    .await
}

fn user_id(created: &Value) -> String {
    created["userId"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_default_user_offers_eighty_slots_a_week_nine_to_half_past_four_local() {
    let app = app_at_fixed_now().await;
    let user = user_id(
        &app.create_user(user_body("default@example.com", "Def", "Ault"))
            .await,
    );

    // Before the EU change Berlin is +01:00: 09:00–16:30 local is 08:00–15:30Z.
    let week = windows(&app, &user, "startDate=2026-03-09&endDate=2026-03-15").await;
    let mut expected = Vec::new();
    for day in [
        "2026-03-09",
        "2026-03-10",
        "2026-03-11",
        "2026-03-12",
        "2026-03-13",
    ] {
        expected.extend(half_hours(day, "08:00", "15:30", "Z"));
    }
    assert_eq!(week.len(), 80);
    assert_eq!(week, expected);

    let local = windows(
        &app,
        &user,
        "startDate=2026-03-09&endDate=2026-03-15&timezone=Europe/Berlin",
    )
    .await;
    let mut expected_local = Vec::new();
    for day in [
        "2026-03-09",
        "2026-03-10",
        "2026-03-11",
        "2026-03-12",
        "2026-03-13",
    ] {
        expected_local.extend(half_hours(day, "09:00", "16:30", "+01:00"));
    }
    assert_eq!(
        local, expected_local,
        "the same instants with the zone's offset"
    );

    // After it, +02:00: the same local times are an hour earlier in UTC.
    let summer = windows(&app, &user, "startDate=2026-04-06&endDate=2026-04-12").await;
    assert_eq!(summer.len(), 80);
    assert_eq!(summer[0], "2026-04-06T07:00:00Z");
    assert_eq!(summer[15], "2026-04-06T14:30:00Z");
    let summer_local = windows(
        &app,
        &user,
        "startDate=2026-04-06&endDate=2026-04-06&timezone=Europe/Berlin",
    )
    .await;
    assert_eq!(
        summer_local,
        half_hours("2026-04-06", "09:00", "16:30", "+02:00")
    );
    app.stop().await;
}

#[tokio::test]
async fn the_custom_example_offers_each_days_exact_list() {
    let app = app_at_fixed_now().await;
    let lunch_break = json!([{"from": "09:00", "to": "12:00"}, {"from": "13:00", "to": "17:00"}]);
    let created = app
        .create_user(json!({
            "email": "custom@example.com", "givenName": "Cus", "familyName": "Tom", "timezone": "Europe/Berlin",
            "availability": {"name": "Business Hours", "schedule": [
                {"dayOfWeek": "monday", "intervals": lunch_break}, {"dayOfWeek": "tuesday", "intervals": lunch_break},
                {"dayOfWeek": "wednesday", "intervals": lunch_break}, {"dayOfWeek": "thursday", "intervals": lunch_break},
                {"dayOfWeek": "friday", "intervals": [{"from": "09:00", "to": "15:00"}]}]},
            "meetingType": {"name": "Discovery Call", "duration": 45}
        }))
        .await;
    let user = user_id(&created);
    let week = windows(
        &app,
        &user,
        "startDate=2026-03-09&endDate=2026-03-15&timezone=Europe/Berlin",
    )
    .await;
    let mut expected = Vec::new();
    for day in ["2026-03-09", "2026-03-10", "2026-03-11", "2026-03-12"] {
        for time in [
            "09:00", "09:45", "10:30", "11:15", "13:00", "13:45", "14:30", "15:15", "16:00",
        ] {
            expected.push(format!("{day}T{time}:00+01:00"));
        }
    }
    for time in [
        "09:00", "09:45", "10:30", "11:15", "12:00", "12:45", "13:30", "14:15",
    ] {
        expected.push(format!("2026-03-13T{time}:00+01:00"));
    }
    assert_eq!(week, expected);
    // Naming the meeting type explicitly gives the same.
    let explicit = windows(
        &app,
        &user,
        &format!(
            "startDate=2026-03-13&endDate=2026-03-13&timezone=Europe/Berlin&meetingTypeId={}",
            created["meetingTypeId"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(explicit, expected[36..]);
    app.stop().await;
}

/// A user in `zone` whose availability (in the same zone) is Monday 09:00–10:00 plus one
/// Sunday interval, with a year's horizon.
async fn dst_user(app: &TestApp, zone: &str, sunday_from: &str, sunday_to: &str) -> String {
    let created = app
        .create_user(json!({
            "email": format!("{}@example.com", zone.replace('/', ".").to_lowercase()),
            "givenName": "Dst", "familyName": zone.replace('/', " "), "timezone": zone,
            "availability": {"schedule": [
                {"dayOfWeek": "monday", "intervals": [{"from": "09:00", "to": "10:00"}]},
                {"dayOfWeek": "sunday", "intervals": [{"from": sunday_from, "to": sunday_to}]}]},
            "meetingType": {"name": "Half Hour", "duration": 30, "horizonDays": 365}
        }))
        .await;
    user_id(&created)
}

#[tokio::test]
async fn berlin_both_changes_with_intervals_starting_in_the_gap_and_in_the_overlap() {
    let app = app_at_fixed_now().await;
    let user = dst_user(&app, "Europe/Berlin", "02:30", "05:00").await;
    // Spring, Sunday 2026-03-29: 02:00–03:00 does not exist. 02:30 moves forward by the gap
    // to 03:30+02:00 = 01:30Z; 05:00+02:00 = 03:00Z.
    assert_eq!(
        windows(&app, &user, "startDate=2026-03-23&endDate=2026-03-29").await,
        strings(&[
            "2026-03-23T08:00:00Z",
            "2026-03-23T08:30:00Z",
            "2026-03-29T01:30:00Z",
            "2026-03-29T02:00:00Z",
            "2026-03-29T02:30:00Z"
        ])
    );
    assert_eq!(
        windows(
            &app,
            &user,
            "startDate=2026-03-29&endDate=2026-03-29&timezone=Europe/Berlin"
        )
        .await,
        strings(&[
            "2026-03-29T03:30:00+02:00",
            "2026-03-29T04:00:00+02:00",
            "2026-03-29T04:30:00+02:00"
        ])
    );
    // Autumn, Sunday 2026-10-25: 02:00–03:00 happens twice. 02:30 takes the earlier
    // instant, 02:30+02:00 = 00:30Z; 05:00+01:00 = 04:00Z: three and a half hours.
    assert_eq!(
        windows(&app, &user, "startDate=2026-10-19&endDate=2026-10-25").await,
        strings(&[
            "2026-10-19T07:00:00Z",
            "2026-10-19T07:30:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T01:30:00Z",
            "2026-10-25T02:00:00Z",
            "2026-10-25T02:30:00Z",
            "2026-10-25T03:00:00Z",
            "2026-10-25T03:30:00Z"
        ])
    );
    assert_eq!(
        windows(
            &app,
            &user,
            "startDate=2026-10-25&endDate=2026-10-25&timezone=Europe/Berlin"
        )
        .await,
        strings(&[
            "2026-10-25T02:30:00+02:00",
            "2026-10-25T02:00:00+01:00",
            "2026-10-25T02:30:00+01:00",
            "2026-10-25T03:00:00+01:00",
            "2026-10-25T03:30:00+01:00",
            "2026-10-25T04:00:00+01:00",
            "2026-10-25T04:30:00+01:00"
        ])
    );
    app.stop().await;
}

#[tokio::test]
async fn new_york_both_changes() {
    let app = app_at_fixed_now().await;
    let user = dst_user(&app, "America/New_York", "01:30", "04:00").await;
    // Spring, Sunday 2026-03-08: 01:30 EST (06:30Z) to 04:00 EDT (08:00Z), the lost hour
    // between: an hour and a half.
    assert_eq!(
        windows(&app, &user, "startDate=2026-03-02&endDate=2026-03-08").await,
        strings(&[
            "2026-03-02T14:00:00Z",
            "2026-03-02T14:30:00Z",
            "2026-03-08T06:30:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-08T07:30:00Z"
        ])
    );
    // Autumn, Sunday 2026-11-01: 01:30 happens twice; the earlier is EDT, 05:30Z; 04:00 EST
    // is 09:00Z.
    assert_eq!(
        windows(
            &app,
            &user,
            "startDate=2026-10-26&endDate=2026-11-01&timezone=America/New_York"
        )
        .await,
        strings(&[
            "2026-10-26T09:00:00-04:00",
            "2026-10-26T09:30:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-01T02:00:00-05:00",
            "2026-11-01T02:30:00-05:00",
            "2026-11-01T03:00:00-05:00",
            "2026-11-01T03:30:00-05:00"
        ])
    );
    app.stop().await;
}

#[tokio::test]
async fn sydney_both_changes() {
    let app = app_at_fixed_now().await;
    let user = dst_user(&app, "Australia/Sydney", "02:30", "05:00").await;
    // DST ends Sunday 2026-04-05 (03:00 AEDT → 02:00 AEST): 02:30 is ambiguous, the earlier
    // is +11:00 = 15:30Z the day before; 05:00+10:00 = 19:00Z.
    assert_eq!(
        windows(&app, &user, "startDate=2026-03-30&endDate=2026-04-05").await,
        strings(&[
            "2026-03-29T22:00:00Z",
            "2026-03-29T22:30:00Z",
            "2026-04-04T15:30:00Z",
            "2026-04-04T16:00:00Z",
            "2026-04-04T16:30:00Z",
            "2026-04-04T17:00:00Z",
            "2026-04-04T17:30:00Z",
            "2026-04-04T18:00:00Z",
            "2026-04-04T18:30:00Z"
        ])
    );
    // DST starts Sunday 2026-10-04 (02:00 AEST → 03:00 AEDT): 02:30 is in the gap, moves to
    // 03:30+11:00 = 16:30Z; 05:00+11:00 = 18:00Z.
    assert_eq!(
        windows(
            &app,
            &user,
            "startDate=2026-09-28&endDate=2026-10-04&timezone=Australia/Sydney"
        )
        .await,
        strings(&[
            "2026-09-28T09:00:00+10:00",
            "2026-09-28T09:30:00+10:00",
            "2026-10-04T03:30:00+11:00",
            "2026-10-04T04:00:00+11:00",
            "2026-10-04T04:30:00+11:00"
        ])
    );
    app.stop().await;
}

#[tokio::test]
async fn lord_howe_and_its_half_hour_shift() {
    let app = app_at_fixed_now().await;
    let user = dst_user(&app, "Australia/Lord_Howe", "01:45", "04:00").await;
    // DST ends Sunday 2026-04-05 (02:00 +11:00 → 01:30 +10:30): 01:45 is ambiguous; the
    // earlier is +11:00 = 14:45Z; 04:00+10:30 = 17:30Z.
    assert_eq!(
        windows(&app, &user, "startDate=2026-03-30&endDate=2026-04-05").await,
        strings(&[
            "2026-03-29T22:00:00Z",
            "2026-03-29T22:30:00Z",
            "2026-04-04T14:45:00Z",
            "2026-04-04T15:15:00Z",
            "2026-04-04T15:45:00Z",
            "2026-04-04T16:15:00Z",
            "2026-04-04T16:45:00Z"
        ])
    );
    // DST starts Sunday 2026-10-04 (02:00 +10:30 → 02:30 +11:00): 01:45+10:30 = 15:15Z to
    // 04:00+11:00 = 17:00Z, an hour and three quarters.
    assert_eq!(
        windows(
            &app,
            &user,
            "startDate=2026-09-28&endDate=2026-10-04&timezone=Australia/Lord_Howe"
        )
        .await,
        strings(&[
            "2026-09-28T09:00:00+10:30",
            "2026-09-28T09:30:00+10:30",
            "2026-10-04T01:45:00+10:30",
            "2026-10-04T02:45:00+11:00",
            "2026-10-04T03:15:00+11:00"
        ])
    );
    app.stop().await;
}

#[tokio::test]
async fn kathmandu_keeps_its_quarter_hour_offset() {
    let app = app_at_fixed_now().await;
    let user = dst_user(&app, "Asia/Kathmandu", "22:00", "23:00").await;
    assert_eq!(
        windows(&app, &user, "startDate=2026-03-09&endDate=2026-03-15").await,
        strings(&[
            "2026-03-09T03:15:00Z",
            "2026-03-09T03:45:00Z",
            "2026-03-15T16:15:00Z",
            "2026-03-15T16:45:00Z"
        ])
    );
    assert_eq!(
        windows(
            &app,
            &user,
            "startDate=2026-03-15&endDate=2026-03-15&timezone=Asia/Kathmandu"
        )
        .await,
        strings(&["2026-03-15T22:00:00+05:45", "2026-03-15T22:30:00+05:45"])
    );
    app.stop().await;
}

#[tokio::test]
async fn a_new_york_user_with_a_tokyo_availability_queried_in_london() {
    let app = app_at_fixed_now().await;
    let created = app
        .create_user(json!({
            "email": "tokyo@example.com", "givenName": "Ny", "familyName": "Tokyo", "timezone": "America/New_York",
            "availability": {"timezone": "Asia/Tokyo", "schedule": [
                {"dayOfWeek": "monday", "intervals": [{"from": "09:00", "to": "10:00"}]}]}
        }))
        .await;
    let user = user_id(&created);
    // Monday 09:00 in Tokyo is Monday 00:00Z. The London week 2026-03-09..15 is
    // [03-09T00:00Z, 03-16T00:00Z): it holds the Monday of 03-09, not that of 03-16.
    assert_eq!(
        windows(
            &app,
            &user,
            "startDate=2026-03-09&endDate=2026-03-15&timezone=Europe/London"
        )
        .await,
        strings(&["2026-03-09T00:00:00+00:00", "2026-03-09T00:30:00+00:00"])
    );
    // Without a zone the dates are the user's (New York, EDT since 03-08):
    // [03-09T04:00Z, 03-16T04:00Z) holds the Monday of 03-16 instead.
    assert_eq!(
        windows(&app, &user, "startDate=2026-03-09&endDate=2026-03-15").await,
        strings(&["2026-03-16T00:00:00Z", "2026-03-16T00:30:00Z"])
    );
    app.stop().await;
}

#[tokio::test]
async fn every_query_error_of_section_5() {
    let app = app_at_fixed_now().await;
    let created = app
        .create_user(user_body("errors@example.com", "Err", "Ors"))
        .await;
    let user = user_id(&created);
    let path = |query: &str| format!("/v4/user/{user}/bookable-windows?{query}");

    let missing = app.get(&path("")).send().await;
    missing.assert_error(400, "startDate and endDate are required");
    assert_eq!(missing.field_errors().len(), 2);
    app.get(&path("startDate=2026-03-09"))
        .send()
        .await
        .assert_error(400, "startDate and endDate are required");
    for bad in [
        "startDate=2026-3-9&endDate=2026-03-10",
        "startDate=09.03.2026&endDate=2026-03-10",
        "startDate=2026-02-30&endDate=2026-03-10",
        "startDate=2026-03-09&endDate=tomorrow",
    ] {
        app.get(&path(bad))
            .send()
            .await
            .assert_error(400, "Invalid date format. Use YYYY-MM-DD");
    }
    app.get(&path("startDate=2026-03-10&endDate=2026-03-09"))
        .send()
        .await
        .assert_error(400, "endDate must not be before startDate");
    // 2026-03-01..05-01 is 62 days, the most allowed; one more day is too many.
    app.get(&path("startDate=2026-03-01&endDate=2026-05-02"))
        .send()
        .await
        .assert_error(400, "Date range must not exceed 62 days");
    assert_eq!(
        app.get(&path("startDate=2026-03-01&endDate=2026-05-01"))
            .send()
            .await
            .status,
        200
    );
    app.get(&path(
        "startDate=2026-03-09&endDate=2026-03-10&timezone=Mars/Olympus",
    ))
    .send()
    .await
    .assert_error(400, "Invalid timezone");
    let several = app
        .get(&path("startDate=x&endDate=y&timezone=Nowhere"))
        .send()
        .await;
    assert_eq!(
        several
            .field_errors()
            .iter()
            .map(|(f, _)| f.as_str())
            .collect::<Vec<_>>(),
        ["startDate", "endDate", "timezone"]
    );
    assert_eq!(
        several.body["message"],
        "3 fields are invalid: startDate, endDate, timezone"
    );
    // A missing date does not hide the other bad parameters.
    let missing_and_bad = app
        .get(&path(
            "endDate=2026-03-10&timezone=Nowhere&meetingTypeId=42",
        ))
        .send()
        .await;
    missing_and_bad.assert_error(400, "startDate and endDate are required");
    assert_eq!(
        missing_and_bad.field_errors(),
        [
            ("startDate", "startDate and endDate are required"),
            ("timezone", "Invalid timezone"),
            ("meetingTypeId", "meetingTypeId must be a UUID"),
        ]
        .map(|(f, m)| (f.to_string(), m.to_string()))
    );
    // An empty zone is not an IANA name.
    app.get(&path("startDate=2026-03-09&endDate=2026-03-10&timezone="))
        .send()
        .await
        .assert_error(400, "Invalid timezone");

    app.get(&format!(
        "/v4/user/{}/bookable-windows?startDate=2026-03-09&endDate=2026-03-10",
        uuid::Uuid::new_v4()
    ))
    .send()
    .await
    .assert_error(404, "User not found");
    app.get(&path(&format!(
        "startDate=2026-03-09&endDate=2026-03-10&meetingTypeId={}",
        uuid::Uuid::new_v4()
    )))
    .send()
    .await
    .assert_error(404, "Meeting type not found");
    let other = app
        .create_user(user_body("other@example.com", "Oth", "Er"))
        .await;
    app.get(&path(&format!(
        "startDate=2026-03-09&endDate=2026-03-10&meetingTypeId={}",
        other["meetingTypeId"].as_str().unwrap()
    )))
    .send()
    .await
    .assert_error(404, "Meeting type not found");

    // A range in the past is an empty answer, not an error.
    assert_eq!(
        windows(&app, &user, "startDate=2025-01-06&endDate=2025-01-12").await,
        Vec::<String>::new()
    );
    // Another company cannot see this user.
    let foreign = app.another_company("Vandelay").await;
    app.get(&path("startDate=2026-03-09&endDate=2026-03-10"))
        .key(&foreign.api_key)
        .send()
        .await
        .assert_error(404, "User not found");
    app.stop().await;
}

#[tokio::test]
async fn an_unencoded_plus_in_the_timezone_is_read_as_a_plus() {
    let app = app_at_fixed_now().await;
    let user = user_id(
        &app.create_user(user_body("plus@example.com", "Pl", "Us"))
            .await,
    );
    // Etc/GMT+5 is five hours behind UTC (POSIX signs). Berlin 09:00–16:30 on Monday
    // 2026-03-09 is 08:00–15:30Z, so 03:00–10:30 at -05:00.
    let expected = half_hours("2026-03-09", "03:00", "10:30", "-05:00");
    let encoded = windows(
        &app,
        &user,
        "startDate=2026-03-09&endDate=2026-03-09&timezone=Etc%2FGMT%2B5",
    )
    .await;
    assert_eq!(encoded, expected);
    let unencoded = windows(
        &app,
        &user,
        "startDate=2026-03-09&endDate=2026-03-09&timezone=Etc/GMT+5",
    )
    .await;
    assert_eq!(unencoded, expected);
    app.stop().await;
}

#[tokio::test]
async fn an_empty_meeting_type_id_is_400_like_an_empty_timezone() {
    let app = app_at_fixed_now().await;
    let user = user_id(
        &app.create_user(user_body("empty@example.com", "Em", "Pty"))
            .await,
    );
    for query in ["meetingTypeId=", "meetingTypeId=%20"] {
        let response = app
            .get(&format!(
                "/v4/user/{user}/bookable-windows?startDate=2026-03-09&endDate=2026-03-09&{query}"
            ))
            .send()
            .await;
        response.assert_error(400, "meetingTypeId must be a UUID");
        assert_eq!(
            response.field_errors(),
            [(
                "meetingTypeId".to_string(),
                "meetingTypeId must be a UUID".to_string()
            )]
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn utc_and_etc_utc_write_instants_with_z_as_section_0_does() {
    let app = app_at_fixed_now().await;
    let user = user_id(
        &app.create_user(user_body("utc@example.com", "Ut", "Cee"))
            .await,
    );
    let in_utc = half_hours("2026-03-09", "08:00", "15:30", "Z");
    for zone in ["UTC", "Etc/UTC", "Etc%2FUTC"] {
        let query = format!("startDate=2026-03-09&endDate=2026-03-09&timezone={zone}");
        assert_eq!(windows(&app, &user, &query).await, in_utc, "{zone}");
    }
    // Another zone at offset zero is not UTC and keeps its offset visible.
    assert_eq!(
        windows(
            &app,
            &user,
            "startDate=2026-03-09&endDate=2026-03-09&timezone=Europe/London"
        )
        .await,
        half_hours("2026-03-09", "08:00", "15:30", "+00:00")
    );
    app.stop().await;
}

#[tokio::test]
async fn minimum_notice_and_horizon_bound_what_is_offered() {
    let app = app_at_fixed_now().await;
    let created = app
        .create_user(json!({"email": "notice@example.com", "givenName": "No", "familyName": "Tice", "timezone": "UTC",
            "meetingType": {"name": "Short notice", "duration": 30, "minimumNotice": 90, "horizonDays": 3}}))
        .await;
    let user = user_id(&created);
    // Now is Wednesday 2026-02-25T00:00Z; UTC business hours 09:00–17:00.
    app.clock.set("2026-02-25T09:10:00Z".parse().unwrap());
    // 90 minutes' notice from 09:10 is 10:40: the grid's next start is 11:00.
    let today = windows(&app, &user, "startDate=2026-02-25&endDate=2026-02-25").await;
    assert_eq!(today, half_hours("2026-02-25", "11:00", "16:30", "Z"));
    // Three days from 09:10 ends at Saturday 09:10: Friday is the last day offered.
    let ahead = windows(&app, &user, "startDate=2026-02-25&endDate=2026-03-06").await;
    assert_eq!(
        ahead.last().map(String::as_str),
        Some("2026-02-27T16:30:00Z")
    );
    app.stop().await;
}

async fn rows(app: &TestApp) -> Vec<Value> {
    sqlx::query_scalar("SELECT to_jsonb(w) FROM bookable_windows w ORDER BY meeting_type_id")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

// Multi-threaded on purpose: projector tasks and handlers then run on different threads, as
// in the server, so the in-memory windows must be invalidated across threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timezone_change_moves_following_availabilities_and_not_those_with_their_own_zone() {
    let app = app_at_fixed_now().await;
    let follows = user_id(
        &app.create_user(user_body("follows@example.com", "Fol", "Lows"))
            .await,
    );
    let pinned = user_id(
        &app.create_user(
            json!({"email": "pinned@example.com", "givenName": "Pin", "familyName": "Ned",
            "timezone": "Europe/Berlin", "availability": {"timezone": "Europe/Berlin", "schedule": [
                {"dayOfWeek": "monday", "intervals": [{"from": "09:00", "to": "10:00"}]}]}}),
        )
        .await,
    );
    let monday = "startDate=2026-03-09&endDate=2026-03-09";
    assert_eq!(
        windows(&app, &follows, monday).await[0],
        "2026-03-09T08:00:00Z"
    );
    for user in [&follows, &pinned] {
        let patched = app
            .patch(&format!("/v4/user/{user}"))
            .json(json!({"timezone": "Asia/Tokyo"}))
            .send()
            .await;
        assert_eq!(patched.status, 200);
    }
    // Read-your-writes: the very next query sees the move. Monday 09:00 Tokyo is 00:00Z;
    // the Tokyo Monday 2026-03-09 is [03-08T15:00Z, 03-09T15:00Z).
    let moved = windows(&app, &follows, monday).await;
    assert_eq!(moved, half_hours("2026-03-09", "00:00", "07:30", "Z"));
    // The pinned availability keeps Berlin; only the output zone (the user's) changed.
    assert_eq!(
        windows(&app, &pinned, monday).await,
        strings(&["2026-03-09T08:00:00Z", "2026-03-09T08:30:00Z"])
    );
    assert_eq!(
        windows(
            &app,
            &pinned,
            "startDate=2026-03-09&endDate=2026-03-09&timezone=Europe/Berlin"
        )
        .await,
        strings(&["2026-03-09T09:00:00+01:00", "2026-03-09T09:30:00+01:00"])
    );
    app.stop().await;
}

#[tokio::test]
async fn windows_follow_the_days_and_rebuild_into_identical_rows() {
    let app = app_at_fixed_now().await;
    let user = user_id(
        &app.create_user(user_body("days@example.com", "Da", "Ys"))
            .await,
    );
    app.create_user(json!({"email": "tokyo2@example.com", "givenName": "Tok", "familyName": "Yo", "timezone": "Asia/Tokyo",
        "meetingType": {"name": "Long", "duration": 90, "slotInterval": 15, "horizonDays": 10}}))
        .await;
    // Default horizon: 60 days from Wednesday 2026-02-25 reaches Saturday 04-25; the last
    // weekday offered is Friday 04-24.
    let last_week = "startDate=2026-04-20&endDate=2026-04-30";
    let before = windows(&app, &user, last_week).await;
    assert_eq!(
        before.last().map(String::as_str),
        Some("2026-04-24T14:30:00Z")
    );

    // Three days pass. The horizon now reaches Wednesday 04-29T00:00Z, but the rows computed
    // on 02-25 end at 04-28 00:00 Berlin; the background upkeep recomputes them.
    let covers = |rows: &[Value]| {
        rows.iter()
            .map(|r| r["covers_until"].clone())
            .collect::<Vec<_>>()
    };
    let old_rows = rows(&app).await;
    app.clock.advance(Duration::days(3));
    let mut after = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        after = windows(&app, &user, last_week).await;
        if after.last().map(String::as_str) == Some("2026-04-28T14:30:00Z") {
            break;
        }
    }
    assert_eq!(
        after.last().map(String::as_str),
        Some("2026-04-28T14:30:00Z"),
        "the horizon moved"
    );
    let live = rows(&app).await;
    assert_ne!(covers(&live), covers(&old_rows));

    // Rebuilding from the events at the same moment gives the same rows.
    sqlx::query("DELETE FROM bookable_windows")
        .execute(&app.pool)
        .await
        .unwrap();
    let target = projections::log::head(&mut app.pool.acquire().await.unwrap())
        .await
        .unwrap();
    sqlx::query("UPDATE projector_checkpoints SET tx_id = '0', position = 0 WHERE projector = 'bookable_windows'")
        .execute(&app.pool)
        .await
        .unwrap();
    app.bus()
        .wait_for(&[projections::bookable_windows::NAME], Some(target))
        .await;
    let mut rebuilt = Vec::new();
    for _ in 0..100 {
        rebuilt = rows(&app).await;
        if rebuilt.len() == live.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    assert_eq!(rebuilt, live);
    app.stop().await;
}

/// A user with the heaviest schedule the API takes: twelve intervals every day, five-minute
/// slots, a year's horizon.
fn heaviest_user_body(n: usize) -> Value {
    let intervals: Vec<Value> = (0..12)
        .map(|k| json!({"from": format!("{:02}:00", 2 * k), "to": format!("{:02}:30", 2 * k)}))
        .collect();
    let days = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let schedule: Vec<Value> = days
        .iter()
        .map(|day| json!({"dayOfWeek": day, "intervals": intervals}))
        .collect();
    let mut body = user_body(&format!("heavy{n}@example.com"), "Heavy", "User");
    body["availability"] = json!({"name": "Always", "schedule": schedule});
    body["meetingType"] =
        json!({"name": "Quick", "duration": 10, "slotInterval": 5, "horizonDays": 365});
    body
}

#[tokio::test]
async fn the_windows_cache_and_its_preload_stay_within_a_budget_in_bytes() {
    let app = spawn_app_with(AppOptions {
        now: Some(now()),
        ..Default::default()
    })
    .await;
    let mut users = Vec::new();
    for n in 0..6 {
        let body = if n % 2 == 0 {
            heaviest_user_body(n)
        } else {
            user_body(&format!("light{n}@example.com"), "Light", "User")
        };
        users.push(
            app.create_user(body).await["userId"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
        );
    }
    let mut weights = Vec::new();
    for user in &users {
        let windows = load_user_windows(&app.pool, *user).await.unwrap().unwrap();
        weights.push(windows.bytes_in_memory());
    }
    assert!(
        weights[0] > 50 * weights[1],
        "a heavy user costs far more than a light one: {weights:?}"
    );

    // Room for about two heavy users: the preload stops there, not at the end of the table.
    let budget = weights[0] * 5 / 2;
    let cache = WindowsCache::new(budget);
    let preloaded = cache.warm(&app.pool).await.unwrap();
    let total = app
        .scalar("SELECT count(DISTINCT user_id) FROM bookable_windows")
        .await as usize;
    assert!(
        preloaded < total,
        "{preloaded} of {total}, {weights:?}, {} of {budget}, {}",
        cache.bytes(),
        cache.budget()
    );
    assert!(preloaded > 0);
    assert!(cache.bytes() <= budget, "{} > {budget}", cache.bytes());

    // Reading every user, heavy and light, again and again keeps within the budget too.
    for _ in 0..3 {
        for user in &users {
            let windows = cache.get(&app.pool, *user).await.unwrap().unwrap();
            assert_eq!(windows.user_id, *user);
            assert!(cache.bytes() <= budget, "{} > {budget}", cache.bytes());
        }
    }
    app.stop().await;
}
