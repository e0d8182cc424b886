//! Given-when-then tests of every User rule. They speak only in commands, events and errors.

use cqrs_es::test::TestFramework;
use serde_json::json;

use super::*;
use crate::schedule::{Interval, LocalTime};

type UserTest = TestFramework<User>;

fn at() -> DateTime<Utc> {
    "2026-01-15T10:30:00Z".parse().unwrap()
}

fn later() -> DateTime<Utc> {
    "2026-02-01T08:00:00Z".parse().unwrap()
}

const USER: Uuid = Uuid::from_u128(0x10);
const COMPANY: Uuid = Uuid::from_u128(0x20);
const AVAILABILITY: Uuid = Uuid::from_u128(0x30);
const MEETING_TYPE: Uuid = Uuid::from_u128(0x40);
const SOMEONE_ELSE: Uuid = Uuid::from_u128(0x50);

fn berlin() -> TimeZoneName {
    TimeZoneName::parse("Europe/Berlin").unwrap()
}

fn create() -> CreatePlatformUser {
    CreatePlatformUser {
        user_id: USER,
        company_id: COMPANY,
        user_type: UserType::ApiPlatform,
        is_owner: false,
        availability_id: AVAILABILITY,
        meeting_type_id: MEETING_TYPE,
        email: Raw::Given(" John.Smith@Example.com ".into()),
        given_name: Raw::Given("John".into()),
        family_name: Raw::Given("Smith".into()),
        timezone: Raw::Given("Europe/Berlin".into()),
        slug: Raw::Missing,
        availability: Raw::Missing,
        meeting_type: Raw::Missing,
        taken_user_slugs: slug::TakenCandidates::none(),
        at: at(),
    }
}

fn when_created(command: CreatePlatformUser) -> UserCommand {
    UserCommand::CreatePlatformUser(Box::new(command))
}

fn user_created() -> UserEvent {
    UserEvent::UserCreated {
        user_id: USER,
        company_id: COMPANY,
        user_type: UserType::ApiPlatform,
        is_owner: false,
        email: "John.Smith@Example.com".into(),
        given_name: "John".into(),
        family_name: "Smith".into(),
        slug: "john-smith".into(),
        timezone: berlin(),
        created_at: at(),
    }
}

fn default_availability() -> UserEvent {
    UserEvent::AvailabilityProvisioned {
        availability_id: AVAILABILITY,
        name: Label::fixed("Business Hours"),
        timezone: None,
        schedule: WeeklySchedule::business_hours(),
        is_default: true,
        at: at(),
    }
}

fn default_meeting_type() -> UserEvent {
    UserEvent::MeetingTypeProvisioned {
        meeting_type_id: MEETING_TYPE,
        availability_id: AVAILABILITY,
        name: Label::fixed("30min Meeting"),
        slug: Slug::parse("30min-meeting", 1).unwrap(),
        settings: MeetingTypeSettings::with_duration(30),
        is_default: true,
        at: at(),
    }
}

fn existing_user() -> Vec<UserEvent> {
    vec![
        user_created(),
        default_availability(),
        default_meeting_type(),
    ]
}

fn invalid(fields: &[(&str, &str)]) -> UserError {
    let mut errors = FieldErrors::new();
    for (field, message) in fields {
        errors.push(*field, *message);
    }
    UserError::Invalid(errors)
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Raw<T> {
    serde_json::from_value(value).unwrap()
}

#[tokio::test]
async fn creating_a_user_with_no_options_provisions_the_defaults() {
    UserTest::with(())
        .given_no_previous_events()
        .when_async(when_created(create()))
        .await
        .then_expect_events(existing_user());
}

#[tokio::test]
async fn creating_a_user_with_a_custom_availability_and_meeting_type_provisions_them() {
    let mut command = create();
    command.availability = from_json(json!({
        "name": "Business Hours",
        "timezone": "America/New_York",
        "schedule": [
            {"dayOfWeek": "monday", "intervals": [{"from": "09:00", "to": "12:00"}, {"from": "13:00", "to": "17:00"}]},
            {"dayOfWeek": "friday", "intervals": [{"from": "09:00", "to": "15:00"}]}
        ]
    }));
    command.meeting_type = from_json(json!({
        "name": "Discovery Call", "duration": 45, "slotInterval": 15, "bufferAfter": 10,
        "minimumNotice": 120, "horizonDays": 30
    }));
    let events = UserTest::with(())
        .given_no_previous_events()
        .when_async(when_created(command))
        .await
        .inspect_result()
        .unwrap();

    let time = |h: u16, m: u16| LocalTime::from_minutes(h * 60 + m).unwrap();
    let mut days: [Vec<Interval>; 7] = Default::default();
    days[0] = vec![
        Interval::new(time(9, 0), time(12, 0)).unwrap(),
        Interval::new(time(13, 0), time(17, 0)).unwrap(),
    ];
    days[4] = vec![Interval::new(time(9, 0), time(15, 0)).unwrap()];
    assert_eq!(
        events[1],
        UserEvent::AvailabilityProvisioned {
            availability_id: AVAILABILITY,
            name: Label::fixed("Business Hours"),
            timezone: Some(TimeZoneName::parse("America/New_York").unwrap()),
            schedule: WeeklySchedule::from_days(days).unwrap(),
            is_default: true,
            at: at(),
        }
    );
    assert_eq!(
        events[2],
        UserEvent::MeetingTypeProvisioned {
            meeting_type_id: MEETING_TYPE,
            availability_id: AVAILABILITY,
            name: Label::fixed("Discovery Call"),
            slug: Slug::parse("discovery-call", 1).unwrap(),
            settings: MeetingTypeSettings {
                duration_minutes: 45,
                slot_interval_minutes: 15,
                buffer_before_minutes: 0,
                buffer_after_minutes: 10,
                minimum_notice_minutes: 120,
                horizon_days: 30,
            },
            is_default: true,
            at: at(),
        }
    );
}

#[tokio::test]
async fn a_custom_availability_without_timezone_follows_the_user() {
    let mut command = create();
    command.availability = from_json(json!({
        "schedule": [{"dayOfWeek": "sunday", "intervals": [{"from": "22:00", "to": "24:00"}]}]
    }));
    let events = UserTest::with(())
        .given_no_previous_events()
        .when_async(when_created(command))
        .await
        .inspect_result()
        .unwrap();
    match &events[1] {
        UserEvent::AvailabilityProvisioned { timezone, name, .. } => {
            assert_eq!(*timezone, None);
            assert_eq!(name.as_str(), "Business Hours");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn every_bad_field_is_reported_together() {
    let mut command = create();
    command.email = Raw::Given("not-an-email".into());
    command.given_name = Raw::Missing;
    command.family_name = Raw::Given("Sm\nith".into());
    command.timezone = Raw::Given("Mars/Olympus".into());
    command.slug = Raw::Given("ab".into());
    command.availability = from_json(json!({
        "timezone": "Nowhere",
        "schedule": [{"dayOfWeek": "monday", "intervals": [
            {"from": "09:00", "to": "12:00"}, {"from": "11:00", "to": "13:00"}]}]
    }));
    command.meeting_type = from_json(json!({"name": "Call", "duration": 1000}));
    UserTest::with(())
        .given_no_previous_events()
        .when_async(when_created(command))
        .await
        .then_expect_error(invalid(&[
            ("email", "email must be a valid email address"),
            ("givenName", "givenName is required"),
            (
                "familyName",
                "familyName must not contain control characters (such as line breaks)",
            ),
            ("timezone", "Invalid timezone"),
            ("slug", "slug must be at least 5 characters"),
            ("availability.timezone", "Invalid timezone"),
            ("availability.schedule[0].intervals[1]", "intervals overlap"),
            (
                "meetingType.duration",
                "duration must be between 5 and 480 minutes",
            ),
        ]));
}

#[tokio::test]
async fn wrong_json_types_are_reported_per_field() {
    let mut command = create();
    command.email = from_json(json!(42));
    command.availability = from_json(json!("weekdays"));
    command.meeting_type = from_json(json!({"name": ["x"], "duration": "30"}));
    UserTest::with(())
        .given_no_previous_events()
        .when_async(when_created(command))
        .await
        .then_expect_error(invalid(&[
            ("email", "email must be a string, not a number"),
            (
                "availability",
                "availability must be an object, not a string",
            ),
            ("meetingType.name", "name must be a string, not an array"),
            (
                "meetingType.duration",
                "duration must be an integer, not a string",
            ),
        ]));
}

#[tokio::test]
async fn the_derived_slug_skips_slugs_already_taken() {
    let mut command = create();
    command.taken_user_slugs = slug::TakenCandidates {
        base: "john-smith".into(),
        plain: true,
        lowest: vec![2],
        highest: Some(2),
    };
    let events = UserTest::with(())
        .given_no_previous_events()
        .when_async(when_created(command))
        .await
        .inspect_result()
        .unwrap();
    match &events[0] {
        UserEvent::UserCreated { slug, .. } => assert_eq!(slug, "john-smith-3"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn an_explicit_slug_is_used_as_given() {
    let mut command = create();
    command.slug = Raw::Given("jsmith".into());
    let events = UserTest::with(())
        .given_no_previous_events()
        .when_async(when_created(command))
        .await
        .inspect_result()
        .unwrap();
    match &events[0] {
        UserEvent::UserCreated { slug, .. } => assert_eq!(slug, "jsmith"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_user_id_is_created_only_once() {
    UserTest::with(())
        .given(existing_user())
        .when_async(when_created(create()))
        .await
        .then_expect_error(UserError::AlreadyExists);
}

#[tokio::test]
async fn renaming_records_both_resulting_names() {
    let update = UpdateProfile {
        company_id: COMPANY,
        given_name: Raw::Given(" Jonathan ".into()),
        at: later(),
        ..Default::default()
    };
    UserTest::with(())
        .given(existing_user())
        .when_async(UserCommand::UpdateProfile(update))
        .await
        .then_expect_events(vec![UserEvent::UserRenamed {
            given_name: "Jonathan".into(),
            family_name: "Smith".into(),
            at: later(),
        }]);
}

#[tokio::test]
async fn changing_the_timezone_and_slug_records_each_change() {
    let update = UpdateProfile {
        company_id: COMPANY,
        timezone: Raw::Given("Asia/Tokyo".into()),
        slug: Raw::Given("johnny".into()),
        at: later(),
        ..Default::default()
    };
    UserTest::with(())
        .given(existing_user())
        .when_async(UserCommand::UpdateProfile(update))
        .await
        .then_expect_events(vec![
            UserEvent::UserSlugChanged {
                slug: "johnny".into(),
                at: later(),
            },
            UserEvent::UserTimezoneChanged {
                timezone: TimeZoneName::parse("Asia/Tokyo").unwrap(),
                at: later(),
            },
        ]);
}

#[tokio::test]
async fn an_update_that_changes_nothing_records_nothing() {
    let update = UpdateProfile {
        company_id: COMPANY,
        given_name: Raw::Given("John".into()),
        timezone: Raw::Given("Europe/Berlin".into()),
        slug: Raw::Given("john-smith".into()),
        at: later(),
        ..Default::default()
    };
    UserTest::with(())
        .given(existing_user())
        .when_async(UserCommand::UpdateProfile(update))
        .await
        .then_expect_events(vec![]);
}

#[tokio::test]
async fn an_update_cannot_clear_a_field_with_null() {
    UserTest::with(())
        .given(existing_user())
        .when_async(UserCommand::UpdateProfile(UpdateProfile {
            company_id: COMPANY,
            given_name: Raw::Null,
            timezone: Raw::Null,
            ..Default::default()
        }))
        .await
        .then_expect_error(invalid(&[
            ("givenName", "givenName cannot be null"),
            ("timezone", "timezone cannot be null"),
        ]));
}

#[tokio::test]
async fn an_empty_update_is_refused() {
    UserTest::with(())
        .given(existing_user())
        .when_async(UserCommand::UpdateProfile(UpdateProfile {
            company_id: COMPANY,
            ..Default::default()
        }))
        .await
        .then_expect_error(invalid(&[(
            "body",
            "Provide at least one of givenName, familyName, slug, timezone",
        )]));
}

#[tokio::test]
async fn a_bad_update_reports_every_field() {
    let update = UpdateProfile {
        company_id: COMPANY,
        given_name: Raw::Given("".into()),
        family_name: Raw::Given("x".repeat(101)),
        slug: Raw::Given("No Slug".into()),
        timezone: Raw::Given("CET+1".into()),
        at: later(),
    };
    UserTest::with(())
        .given(existing_user())
        .when_async(UserCommand::UpdateProfile(update))
        .await
        .then_expect_error(invalid(&[
            ("givenName", "givenName must not be empty"),
            ("familyName", "familyName must be at most 100 characters"),
            ("timezone", "Invalid timezone"),
            ("slug", "slug may contain only lowercase letters a-z, digits and single hyphens between them"),
        ]));
}

#[tokio::test]
async fn deleting_a_user_records_it() {
    UserTest::with(())
        .given(existing_user())
        .when_async(UserCommand::DeleteUser {
            company_id: COMPANY,
            acting_user_id: SOMEONE_ELSE,
            at: later(),
        })
        .await
        .then_expect_events(vec![UserEvent::UserDeleted { at: later() }]);
}

#[tokio::test]
async fn the_owner_cannot_be_deleted() {
    let mut owner = existing_user();
    if let UserEvent::UserCreated {
        is_owner,
        user_type,
        ..
    } = &mut owner[0]
    {
        *is_owner = true;
        *user_type = UserType::Standard;
    }
    UserTest::with(())
        .given(owner)
        .when_async(UserCommand::DeleteUser {
            company_id: COMPANY,
            acting_user_id: SOMEONE_ELSE,
            at: later(),
        })
        .await
        .then_expect_error(UserError::CannotDeleteOwner);
}

#[tokio::test]
async fn nobody_deletes_themselves() {
    UserTest::with(())
        .given(existing_user())
        .when_async(UserCommand::DeleteUser {
            company_id: COMPANY,
            acting_user_id: USER,
            at: later(),
        })
        .await
        .then_expect_error(UserError::CannotDeleteYourself);
}

#[tokio::test]
async fn a_deleted_user_is_not_found_for_any_command() {
    let mut deleted = existing_user();
    deleted.push(UserEvent::UserDeleted { at: later() });
    UserTest::with(())
        .given(deleted.clone())
        .when_async(UserCommand::DeleteUser {
            company_id: COMPANY,
            acting_user_id: SOMEONE_ELSE,
            at: later(),
        })
        .await
        .then_expect_error(UserError::NotFound);
    UserTest::with(())
        .given(deleted)
        .when_async(UserCommand::UpdateProfile(UpdateProfile {
            company_id: COMPANY,
            given_name: Raw::Given("Zombie".into()),
            at: later(),
            ..Default::default()
        }))
        .await
        .then_expect_error(UserError::NotFound);
}

#[tokio::test]
async fn a_user_of_another_company_is_not_found() {
    let other_company = Uuid::from_u128(0x99);
    UserTest::with(())
        .given(existing_user())
        .when_async(UserCommand::DeleteUser {
            company_id: other_company,
            acting_user_id: SOMEONE_ELSE,
            at: later(),
        })
        .await
        .then_expect_error(UserError::NotFound);
    UserTest::with(())
        .given(existing_user())
        .when_async(UserCommand::UpdateProfile(UpdateProfile {
            company_id: other_company,
            given_name: Raw::Given("Mallory".into()),
            at: later(),
            ..Default::default()
        }))
        .await
        .then_expect_error(UserError::NotFound);
}

#[tokio::test]
async fn a_user_that_never_existed_is_not_found() {
    UserTest::with(())
        .given_no_previous_events()
        .when_async(UserCommand::DeleteUser {
            company_id: COMPANY,
            acting_user_id: SOMEONE_ELSE,
            at: later(),
        })
        .await
        .then_expect_error(UserError::NotFound);
}

#[test]
fn creation_claims_the_email_per_company_and_the_slug_everywhere() {
    use crate::effects::{Claim, ClaimKind, StoreEffect, StoredEvent};
    let id = USER.to_string();
    assert_eq!(
        user_created().effects(&id),
        vec![
            StoreEffect::Claim(Claim {
                kind: ClaimKind::UserEmail,
                scope: COMPANY.to_string(),
                value: "john.smith@example.com".into(),
                owner: id.clone(),
            }),
            StoreEffect::Claim(Claim {
                kind: ClaimKind::UserSlug,
                scope: String::new(),
                value: "john-smith".into(),
                owner: id.clone(),
            }),
        ]
    );
    assert_eq!(
        UserEvent::UserDeleted { at: at() }.effects(&id),
        vec![StoreEffect::ReleaseAll, StoreEffect::EraseDataSubject]
    );
    assert_eq!(
        user_created().personal_fields(),
        ["email", "givenName", "familyName", "slug"]
    );
}

/// The declaration is by type name; every variant's declared fields must be strings of its
/// payload (a renamed field would otherwise go unsealed), and the registry must agree.
#[test]
fn every_declared_personal_field_is_a_string_of_its_event() {
    use crate::effects::StoredEvent;
    use cqrs_es::DomainEvent;
    let events = [
        user_created(),
        default_availability(),
        default_meeting_type(),
        UserEvent::UserRenamed {
            given_name: "A".into(),
            family_name: "B".into(),
            at: at(),
        },
        UserEvent::UserSlugChanged {
            slug: "a-b-1".into(),
            at: at(),
        },
        UserEvent::UserTimezoneChanged {
            timezone: berlin(),
            at: at(),
        },
        UserEvent::UserDeleted { at: at() },
    ];
    for event in events {
        let payload = crate::effects::payload_of(&event).unwrap();
        assert_eq!(
            crate::effects::erases_subject(User::TYPE, &event.event_type()),
            event
                .effects("u")
                .contains(&crate::effects::StoreEffect::EraseDataSubject),
            "{}: erasure by type and by value disagree",
            event.event_type()
        );
        let declared = crate::effects::personal_fields(User::TYPE, &event.event_type());
        assert_eq!(declared, event.personal_fields());
        for field in declared {
            assert!(
                payload[*field].is_string(),
                "{}: {field} is declared personal but is not a string of it",
                event.event_type()
            );
        }
    }
    // Client free text that is not personal is not declared: it is never opened.
    assert!(crate::effects::personal_fields(User::TYPE, "AvailabilityProvisioned").is_empty());
    assert!(crate::effects::personal_fields(User::TYPE, "MeetingTypeProvisioned").is_empty());
    assert!(crate::effects::personal_fields("Company", "CompanyCreated").is_empty());
    assert!(crate::effects::personal_fields("Nobody", "UserCreated").is_empty());
}
