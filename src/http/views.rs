//! Response bodies, shaped as meetergo's clients read them, and the one way instants are
//! written (RFC 3339, UTC with `Z`, no fractional seconds).

use aggregates::user::UserState;
use chrono::{DateTime, SecondsFormat, Utc};
use projections::user_profiles::UserProfile;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// `2024-01-15T10:30:00Z`.
pub fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A user as `GET /v4/user/me` and friends answer it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: Uuid,
    #[schema(example = "john.smith@example.com")]
    pub email: String,
    #[schema(example = "John")]
    pub given_name: String,
    #[schema(example = "Smith")]
    pub family_name: String,
    #[schema(example = "John Smith")]
    pub full_name: String,
    #[schema(example = "john-smith")]
    pub slug: String,
    #[schema(value_type = super::openapi::TimeZone)]
    pub timezone: String,
    pub company_id: Uuid,
    /// `api-platform` (created with `POST /v4/user`) or `standard` (a company's owner).
    #[schema(value_type = super::openapi::UserTypeName)]
    pub user_type: String,
    /// True for the company's owner.
    pub is_admin: bool,
    pub default_availability_id: Option<Uuid>,
    pub default_meeting_type_id: Option<Uuid>,
    #[schema(format = DateTime, example = "2024-01-15T10:30:00Z")]
    pub created_at: String,
    #[schema(format = DateTime, example = "2024-01-15T10:30:00Z")]
    pub updated_at: String,
}

impl From<UserProfile> for UserView {
    fn from(user: UserProfile) -> Self {
        Self {
            id: user.user_id,
            full_name: format!("{} {}", user.given_name, user.family_name),
            email: user.email,
            given_name: user.given_name,
            family_name: user.family_name,
            slug: user.slug,
            timezone: user.timezone,
            company_id: user.company_id,
            user_type: user.user_type.as_str().to_string(),
            is_admin: user.is_owner,
            default_availability_id: user.default_availability_id,
            default_meeting_type_id: user.default_meeting_type_id,
            created_at: instant(user.created_at),
            updated_at: instant(user.updated_at),
        }
    }
}

impl From<&UserState> for UserView {
    /// A user as its events made it (`GET /v4/user/{id}?asOf=…`).
    fn from(user: &UserState) -> Self {
        Self {
            id: user.id,
            email: user.email.clone(),
            given_name: user.given_name.clone(),
            family_name: user.family_name.clone(),
            full_name: format!("{} {}", user.given_name, user.family_name),
            slug: user.slug.clone(),
            timezone: user.timezone.name().to_string(),
            company_id: user.company_id,
            user_type: user.user_type.as_str().to_string(),
            is_admin: user.is_owner,
            default_availability_id: user.default_availability_id,
            default_meeting_type_id: user.default_meeting_type_id,
            created_at: instant(user.created_at),
            updated_at: instant(user.updated_at),
        }
    }
}

/// `GET /v4/user`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
    pub total: i64,
    pub count: usize,
    pub skip: i64,
}

/// `POST /v4/user` (201).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedUser {
    pub user_id: Uuid,
    pub availability_id: Uuid,
    pub meeting_type_id: Uuid,
    #[schema(example = "http://localhost:8080/john-smith/30min-meeting")]
    pub booking_url: String,
    pub company_id: Uuid,
}
