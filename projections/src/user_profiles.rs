//! Read model `user_profiles`: what `GET /v4/user…` answers. Owns table `user_profiles`.

use aggregates::user::{User, UserEvent, UserType};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use std::collections::HashMap;

use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::log::LogEvent;
use crate::runtime::ProjectionError;

/// A profile created in the batch being applied: it is completed in memory by the batch's
/// later events and inserted with all others in one statement (a user's creation is three
/// events; a rebuild is mostly creations).
struct NewProfile {
    user_id: Uuid,
    company_id: Uuid,
    email: String,
    given_name: String,
    family_name: String,
    slug: String,
    timezone: &'static str,
    user_type: &'static str,
    is_owner: bool,
    default_availability_id: Option<Uuid>,
    default_meeting_type_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Applies a batch to `user_profiles` (called by the `users` projector, in its transaction).
pub(crate) async fn apply(
    tx: &mut PgConnection,
    events: &[LogEvent],
) -> Result<(), ProjectionError> {
    let mut created: Vec<NewProfile> = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    for event in events.iter().filter(|e| e.aggregate_type == User::TYPE) {
        let user_id = parse_id(&event.aggregate_id)?;
        let user_event = event.decode::<UserEvent>()?;
        let at = user_event.at();
        let pending = index.get(&user_id).map(|i| &mut created[*i]);
        match (user_event, pending) {
            (
                UserEvent::UserCreated {
                    company_id,
                    user_type,
                    is_owner,
                    email,
                    given_name,
                    family_name,
                    slug,
                    timezone,
                    created_at,
                    ..
                },
                _,
            ) => {
                index.insert(user_id, created.len());
                created.push(NewProfile {
                    user_id,
                    company_id,
                    email,
                    given_name,
                    family_name,
                    slug,
                    timezone: timezone.name(),
                    user_type: user_type.as_str(),
                    is_owner,
                    default_availability_id: None,
                    default_meeting_type_id: None,
                    created_at,
                    updated_at: created_at,
                });
            }
            (
                UserEvent::AvailabilityProvisioned {
                    availability_id,
                    is_default: true,
                    ..
                },
                Some(row),
            ) => {
                row.default_availability_id = Some(availability_id);
            }
            (
                UserEvent::AvailabilityProvisioned {
                    availability_id,
                    is_default: true,
                    ..
                },
                None,
            ) => {
                sqlx::query(
                    "UPDATE user_profiles SET default_availability_id = $2 WHERE user_id = $1",
                )
                .bind(user_id)
                .bind(availability_id)
                .execute(&mut *tx)
                .await?;
            }
            (
                UserEvent::MeetingTypeProvisioned {
                    meeting_type_id,
                    is_default: true,
                    ..
                },
                Some(row),
            ) => {
                row.default_meeting_type_id = Some(meeting_type_id);
            }
            (
                UserEvent::MeetingTypeProvisioned {
                    meeting_type_id,
                    is_default: true,
                    ..
                },
                None,
            ) => {
                sqlx::query(
                    "UPDATE user_profiles SET default_meeting_type_id = $2 WHERE user_id = $1",
                )
                .bind(user_id)
                .bind(meeting_type_id)
                .execute(&mut *tx)
                .await?;
            }
            (
                UserEvent::AvailabilityProvisioned { .. }
                | UserEvent::MeetingTypeProvisioned { .. },
                _,
            ) => {}
            (
                UserEvent::UserRenamed {
                    given_name,
                    family_name,
                    ..
                },
                Some(row),
            ) => {
                row.given_name = given_name;
                row.family_name = family_name;
                row.updated_at = at;
            }
            (
                UserEvent::UserRenamed {
                    given_name,
                    family_name,
                    ..
                },
                None,
            ) => {
                sqlx::query(
                    "UPDATE user_profiles SET given_name = $2, family_name = $3, updated_at = $4 WHERE user_id = $1",
                )
                .bind(user_id)
                .bind(given_name)
                .bind(family_name)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            (UserEvent::UserSlugChanged { slug, .. }, Some(row)) => {
                row.slug = slug;
                row.updated_at = at;
            }
            (UserEvent::UserSlugChanged { slug, .. }, None) => {
                sqlx::query(
                    "UPDATE user_profiles SET slug = $2, updated_at = $3 WHERE user_id = $1",
                )
                .bind(user_id)
                .bind(slug)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            (UserEvent::UserTimezoneChanged { timezone, .. }, Some(row)) => {
                row.timezone = timezone.name();
                row.updated_at = at;
            }
            (UserEvent::UserTimezoneChanged { timezone, .. }, None) => {
                sqlx::query(
                    "UPDATE user_profiles SET timezone = $2, updated_at = $3 WHERE user_id = $1",
                )
                .bind(user_id)
                .bind(timezone.name())
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            (UserEvent::UserDeleted { .. }, Some(_)) => {
                // Created and deleted within one batch: it never reaches the table.
                if let Some(i) = index.remove(&user_id) {
                    created[i].company_id = Uuid::nil();
                }
            }
            (UserEvent::UserDeleted { .. }, None) => {
                sqlx::query("DELETE FROM user_profiles WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    created.retain(|row| !row.company_id.is_nil());
    for chunk in created.chunks(2000) {
        let mut insert: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO user_profiles (user_id, company_id, email, given_name, family_name, slug, timezone, \
             user_type, is_owner, default_availability_id, default_meeting_type_id, created_at, updated_at) ",
        );
        insert.push_values(chunk, |mut values, row| {
            values
                .push_bind(row.user_id)
                .push_bind(row.company_id)
                .push_bind(&row.email)
                .push_bind(&row.given_name)
                .push_bind(&row.family_name)
                .push_bind(&row.slug)
                .push_bind(row.timezone)
                .push_bind(row.user_type)
                .push_bind(row.is_owner)
                .push_bind(row.default_availability_id)
                .push_bind(row.default_meeting_type_id)
                .push_bind(row.created_at)
                .push_bind(row.updated_at);
        });
        // A replay (a checkpoint moved back by hand) finds the row already there: the event
        // overwrites it, and the events after it bring it forward again.
        insert.push(
            " ON CONFLICT (user_id) DO UPDATE SET company_id = EXCLUDED.company_id, email = EXCLUDED.email, \
             given_name = EXCLUDED.given_name, family_name = EXCLUDED.family_name, slug = EXCLUDED.slug, \
             timezone = EXCLUDED.timezone, user_type = EXCLUDED.user_type, is_owner = EXCLUDED.is_owner, \
             default_availability_id = EXCLUDED.default_availability_id, \
             default_meeting_type_id = EXCLUDED.default_meeting_type_id, \
             created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at",
        );
        insert.build().execute(&mut *tx).await?;
    }
    Ok(())
}

pub(crate) fn parse_id(aggregate_id: &str) -> Result<Uuid, ProjectionError> {
    aggregate_id.parse().map_err(|_| {
        ProjectionError::Invalid(format!("aggregate id {aggregate_id:?} is not a UUID"))
    })
}

/// A user as `GET /v4/user/{id}` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserProfile {
    pub user_id: Uuid,
    pub company_id: Uuid,
    pub email: String,
    pub given_name: String,
    pub family_name: String,
    pub slug: String,
    pub timezone: String,
    pub user_type: UserType,
    pub is_owner: bool,
    pub default_availability_id: Option<Uuid>,
    pub default_meeting_type_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "user_id, company_id, email, given_name, family_name, slug, timezone, user_type, \
     is_owner, default_availability_id, default_meeting_type_id, created_at, updated_at";

fn row_to_profile(row: &sqlx::postgres::PgRow) -> Result<UserProfile, sqlx::Error> {
    let user_type: String = row.try_get("user_type")?;
    Ok(UserProfile {
        user_id: row.try_get("user_id")?,
        company_id: row.try_get("company_id")?,
        email: row.try_get("email")?,
        given_name: row.try_get("given_name")?,
        family_name: row.try_get("family_name")?,
        slug: row.try_get("slug")?,
        timezone: row.try_get("timezone")?,
        user_type: UserType::parse(&user_type).unwrap_or(UserType::ApiPlatform),
        is_owner: row.try_get("is_owner")?,
        default_availability_id: row.try_get("default_availability_id")?,
        default_meeting_type_id: row.try_get("default_meeting_type_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The user `user_id` if it belongs to `company_id` (a foreign user is simply not found).
pub async fn find(
    db: impl PgExecutor<'_>,
    company_id: Uuid,
    user_id: Uuid,
) -> Result<Option<UserProfile>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM user_profiles WHERE user_id = $1 AND company_id = $2");
    let row = sqlx::query(&sql)
        .bind(user_id)
        .bind(company_id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(row_to_profile).transpose()
}

/// Whether `user_id` is a live user of `company_id` (the acting-user header check).
pub async fn exists(
    db: impl PgExecutor<'_>,
    company_id: Uuid,
    user_id: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM user_profiles WHERE user_id = $1 AND company_id = $2)",
    )
    .bind(user_id)
    .bind(company_id)
    .fetch_one(db)
    .await
}

/// One page of a company's users, oldest first, and the total matching.
pub async fn list(
    db: &mut PgConnection,
    company_id: Uuid,
    user_type: Option<UserType>,
    limit: i64,
    skip: i64,
) -> Result<(Vec<UserProfile>, i64), sqlx::Error> {
    let type_filter = user_type.map(UserType::as_str);
    let sql = format!(
        "SELECT {COLUMNS} FROM user_profiles \
         WHERE company_id = $1 AND ($2::text IS NULL OR user_type = $2) \
         ORDER BY created_at, user_id LIMIT $3 OFFSET $4"
    );
    let rows = sqlx::query(&sql)
        .bind(company_id)
        .bind(type_filter)
        .bind(limit)
        .bind(skip)
        .fetch_all(&mut *db)
        .await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM user_profiles WHERE company_id = $1 AND ($2::text IS NULL OR user_type = $2)",
    )
    .bind(company_id)
    .bind(type_filter)
    .fetch_one(&mut *db)
    .await?;
    let users = rows.iter().map(row_to_profile).collect::<Result<_, _>>()?;
    Ok((users, total))
}
