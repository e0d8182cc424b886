//! Read model `meeting_types`: each user's meeting types. Owns table `meeting_types`.

use aggregates::user::{User, UserEvent};
use async_trait::async_trait;
use cqrs_es::Aggregate;
use sqlx::{PgConnection, PgExecutor, Row};
use uuid::Uuid;

use crate::log::LogEvent;
use crate::runtime::{ProjectionError, Projector};
use crate::user_profiles::parse_id;

pub const NAME: &str = "meeting_types";

pub struct MeetingTypesProjector;

#[async_trait]
impl Projector for MeetingTypesProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["meeting_types"]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[LogEvent],
    ) -> Result<(), ProjectionError> {
        for event in events.iter().filter(|e| e.aggregate_type == User::TYPE) {
            match event.decode::<UserEvent>()? {
                UserEvent::MeetingTypeProvisioned {
                    meeting_type_id,
                    availability_id,
                    name,
                    slug,
                    settings,
                    is_default,
                    at,
                } => {
                    sqlx::query(
                        "INSERT INTO meeting_types (meeting_type_id, user_id, company_id, availability_id, name, \
                         slug, duration_minutes, slot_interval_minutes, buffer_before_minutes, \
                         buffer_after_minutes, minimum_notice_minutes, horizon_days, enabled, is_default, \
                         created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, true, $13, $14, $14)",
                    )
                    .bind(meeting_type_id)
                    .bind(parse_id(&event.aggregate_id)?)
                    .bind(event.company_id)
                    .bind(availability_id)
                    .bind(name.as_str())
                    .bind(slug.as_str())
                    .bind(settings.duration_minutes as i32)
                    .bind(settings.slot_interval_minutes as i32)
                    .bind(settings.buffer_before_minutes as i32)
                    .bind(settings.buffer_after_minutes as i32)
                    .bind(settings.minimum_notice_minutes as i32)
                    .bind(settings.horizon_days as i32)
                    .bind(is_default)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                UserEvent::UserDeleted { .. } => {
                    sqlx::query("DELETE FROM meeting_types WHERE user_id = $1")
                        .bind(parse_id(&event.aggregate_id)?)
                        .execute(&mut *tx)
                        .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A meeting type as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MeetingTypeRow {
    pub meeting_type_id: Uuid,
    pub user_id: Uuid,
    pub availability_id: Uuid,
    pub name: String,
    pub slug: String,
    pub duration_minutes: i32,
    pub slot_interval_minutes: i32,
    pub buffer_before_minutes: i32,
    pub buffer_after_minutes: i32,
    pub minimum_notice_minutes: i32,
    pub horizon_days: i32,
    pub enabled: bool,
    pub is_default: bool,
}

/// The meeting type `meeting_type_id` of user `user_id` in `company_id`, if it exists.
pub async fn find(
    db: impl PgExecutor<'_>,
    company_id: Uuid,
    user_id: Uuid,
    meeting_type_id: Uuid,
) -> Result<Option<MeetingTypeRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT meeting_type_id, user_id, availability_id, name, slug, duration_minutes, slot_interval_minutes, \
                buffer_before_minutes, buffer_after_minutes, minimum_notice_minutes, horizon_days, enabled, is_default \
         FROM meeting_types WHERE meeting_type_id = $1 AND user_id = $2 AND company_id = $3",
    )
    .bind(meeting_type_id)
    .bind(user_id)
    .bind(company_id)
    .fetch_optional(db)
    .await?;
    row.map(|row| {
        Ok(MeetingTypeRow {
            meeting_type_id: row.try_get("meeting_type_id")?,
            user_id: row.try_get("user_id")?,
            availability_id: row.try_get("availability_id")?,
            name: row.try_get("name")?,
            slug: row.try_get("slug")?,
            duration_minutes: row.try_get("duration_minutes")?,
            slot_interval_minutes: row.try_get("slot_interval_minutes")?,
            buffer_before_minutes: row.try_get("buffer_before_minutes")?,
            buffer_after_minutes: row.try_get("buffer_after_minutes")?,
            minimum_notice_minutes: row.try_get("minimum_notice_minutes")?,
            horizon_days: row.try_get("horizon_days")?,
            enabled: row.try_get("enabled")?,
            is_default: row.try_get("is_default")?,
        })
    })
    .transpose()
}
