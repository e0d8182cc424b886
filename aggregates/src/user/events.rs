//! What happened to a user: the facts the User aggregate records.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::effects::{Claim, ClaimKind, StoreEffect, StoredEvent};
use crate::meeting_type::MeetingTypeSettings;
use crate::schedule::WeeklySchedule;
use crate::values::{Label, Slug, TimeZoneName};

/// `api-platform` for users created over HTTP, `standard` for a company's owner (section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserType {
    ApiPlatform,
    Standard,
}

impl UserType {
    pub fn as_str(self) -> &'static str {
        match self {
            UserType::ApiPlatform => "api-platform",
            UserType::Standard => "standard",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "api-platform" => Some(UserType::ApiPlatform),
            "standard" => Some(UserType::Standard),
            _ => None,
        }
    }
}

/// Personal fields (`email`, names, slug) are plain strings here: they were validated when
/// decided, and after erasure they read `[erased]` (see `values::ERASED`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all_fields = "camelCase")]
pub enum UserEvent {
    UserCreated {
        user_id: Uuid,
        company_id: Uuid,
        user_type: UserType,
        /// Created with its company, as the owner; an owner cannot be deleted.
        is_owner: bool,
        email: String,
        given_name: String,
        family_name: String,
        slug: String,
        timezone: TimeZoneName,
        created_at: DateTime<Utc>,
    },
    AvailabilityProvisioned {
        availability_id: Uuid,
        name: Label,
        /// `None`: the availability follows the user's time zone.
        timezone: Option<TimeZoneName>,
        schedule: WeeklySchedule,
        is_default: bool,
        at: DateTime<Utc>,
    },
    MeetingTypeProvisioned {
        meeting_type_id: Uuid,
        availability_id: Uuid,
        name: Label,
        slug: Slug,
        settings: MeetingTypeSettings,
        is_default: bool,
        at: DateTime<Utc>,
    },
    UserRenamed {
        given_name: String,
        family_name: String,
        at: DateTime<Utc>,
    },
    UserSlugChanged {
        slug: String,
        at: DateTime<Utc>,
    },
    UserTimezoneChanged {
        timezone: TimeZoneName,
        at: DateTime<Utc>,
    },
    UserDeleted {
        at: DateTime<Utc>,
    },
}

impl UserEvent {
    /// When it happened, for `updatedAt` and `asOf`.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            UserEvent::UserCreated { created_at, .. } => *created_at,
            UserEvent::AvailabilityProvisioned { at, .. }
            | UserEvent::MeetingTypeProvisioned { at, .. }
            | UserEvent::UserRenamed { at, .. }
            | UserEvent::UserSlugChanged { at, .. }
            | UserEvent::UserTimezoneChanged { at, .. }
            | UserEvent::UserDeleted { at } => *at,
        }
    }
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            UserEvent::UserCreated { .. } => "UserCreated",
            UserEvent::AvailabilityProvisioned { .. } => "AvailabilityProvisioned",
            UserEvent::MeetingTypeProvisioned { .. } => "MeetingTypeProvisioned",
            UserEvent::UserRenamed { .. } => "UserRenamed",
            UserEvent::UserSlugChanged { .. } => "UserSlugChanged",
            UserEvent::UserTimezoneChanged { .. } => "UserTimezoneChanged",
            UserEvent::UserDeleted { .. } => "UserDeleted",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

impl StoredEvent for UserEvent {
    fn effects(&self, aggregate_id: &str) -> Vec<StoreEffect> {
        match self {
            UserEvent::UserCreated {
                company_id,
                email,
                slug,
                ..
            } => vec![
                StoreEffect::Claim(Claim {
                    kind: ClaimKind::UserEmail,
                    scope: company_id.to_string(),
                    value: email.to_lowercase(),
                    owner: aggregate_id.to_string(),
                }),
                StoreEffect::Claim(user_slug_claim(aggregate_id, slug)),
            ],
            UserEvent::MeetingTypeProvisioned {
                meeting_type_id,
                slug,
                ..
            } => vec![StoreEffect::Claim(Claim {
                kind: ClaimKind::MeetingTypeSlug,
                scope: aggregate_id.to_string(),
                value: slug.to_string(),
                owner: meeting_type_id.to_string(),
            })],
            UserEvent::UserSlugChanged { slug, .. } => vec![
                StoreEffect::Release {
                    kind: ClaimKind::UserSlug,
                    owner: aggregate_id.to_string(),
                },
                StoreEffect::Claim(user_slug_claim(aggregate_id, slug)),
            ],
            UserEvent::UserDeleted { .. } => {
                vec![StoreEffect::ReleaseAll, StoreEffect::EraseDataSubject]
            }
            UserEvent::AvailabilityProvisioned { .. }
            | UserEvent::UserRenamed { .. }
            | UserEvent::UserTimezoneChanged { .. } => Vec::new(),
        }
    }

    /// By event type name (see [`StoredEvent::personal_fields_of`]); the test
    /// `every_declared_personal_field_is_a_string_of_its_event` keeps it in step with the
    /// variants. Free text a client chooses that is not personal (availability and meeting
    /// type names) is not declared, so it is stored and read as the plain text it is.
    fn erases_subject_of(event_type: &str) -> bool {
        event_type == "UserDeleted"
    }

    fn personal_fields_of(event_type: &str) -> &'static [&'static str] {
        match event_type {
            "UserCreated" => &["email", "givenName", "familyName", "slug"],
            "UserRenamed" => &["givenName", "familyName"],
            "UserSlugChanged" => &["slug"],
            _ => &[],
        }
    }
}

/// User slugs are unique across the installation: the scope is empty.
fn user_slug_claim(user_id: &str, slug: &str) -> Claim {
    Claim {
        kind: ClaimKind::UserSlug,
        scope: String::new(),
        value: slug.to_string(),
        owner: user_id.to_string(),
    }
}
