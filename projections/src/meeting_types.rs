//! Read model `meeting_types`: each user's meeting types. Owns table `meeting_types`.

use aggregates::user::{User, UserEvent};
use cqrs_es::Aggregate;
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::log::LogEvent;
use crate::runtime::ProjectionError;
use crate::user_profiles::parse_id;

/// Applies a batch to `meeting_types` (called by the `users` projector, in its transaction).
pub(crate) async fn apply(
    tx: &mut PgConnection,
    events: &[LogEvent],
) -> Result<(), ProjectionError> {
    // Rows provisioned in this batch are inserted together at the end; a user deleted
    // later in the same batch takes its pending rows with it.
    struct Row {
        meeting_type_id: Uuid,
        user_id: Uuid,
        company_id: Option<Uuid>,
        availability_id: Uuid,
        name: String,
        slug: String,
        settings: aggregates::meeting_type::MeetingTypeSettings,
        is_default: bool,
        at: chrono::DateTime<chrono::Utc>,
    }
    let mut inserts: Vec<Row> = Vec::new();
    let mut deleted: Vec<Uuid> = Vec::new();
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
            } => inserts.push(Row {
                meeting_type_id,
                user_id: parse_id(&event.aggregate_id)?,
                company_id: event.company_id,
                availability_id,
                name: name.as_str().to_string(),
                slug: slug.as_str().to_string(),
                settings,
                is_default,
                at,
            }),
            UserEvent::UserDeleted { .. } => {
                let user_id = parse_id(&event.aggregate_id)?;
                inserts.retain(|row| row.user_id != user_id);
                deleted.push(user_id);
            }
            _ => {}
        }
    }
    if !deleted.is_empty() {
        sqlx::query("DELETE FROM meeting_types WHERE user_id = ANY($1)")
            .bind(&deleted)
            .execute(&mut *tx)
            .await?;
    }
    let minutes = |value: u32| i32::try_from(value).unwrap_or(i32::MAX);
    for chunk in inserts.chunks(2000) {
        let mut insert: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO meeting_types (meeting_type_id, user_id, company_id, availability_id, name, slug, \
             duration_minutes, slot_interval_minutes, buffer_before_minutes, buffer_after_minutes, \
             minimum_notice_minutes, horizon_days, enabled, is_default, created_at, updated_at) ",
        );
        insert.push_values(chunk, |mut values, row| {
            values
                .push_bind(row.meeting_type_id)
                .push_bind(row.user_id)
                .push_bind(row.company_id)
                .push_bind(row.availability_id)
                .push_bind(&row.name)
                .push_bind(&row.slug)
                .push_bind(minutes(row.settings.duration_minutes))
                .push_bind(minutes(row.settings.slot_interval_minutes))
                .push_bind(minutes(row.settings.buffer_before_minutes))
                .push_bind(minutes(row.settings.buffer_after_minutes))
                .push_bind(minutes(row.settings.minimum_notice_minutes))
                .push_bind(minutes(row.settings.horizon_days))
                .push_bind(true)
                .push_bind(row.is_default)
                .push_bind(row.at)
                .push_bind(row.at);
        });
        // A replay (a checkpoint moved back by hand) overwrites the row it finds.
        insert.push(
            " ON CONFLICT (meeting_type_id) DO UPDATE SET user_id = EXCLUDED.user_id, \
             company_id = EXCLUDED.company_id, availability_id = EXCLUDED.availability_id, \
             name = EXCLUDED.name, slug = EXCLUDED.slug, duration_minutes = EXCLUDED.duration_minutes, \
             slot_interval_minutes = EXCLUDED.slot_interval_minutes, \
             buffer_before_minutes = EXCLUDED.buffer_before_minutes, \
             buffer_after_minutes = EXCLUDED.buffer_after_minutes, \
             minimum_notice_minutes = EXCLUDED.minimum_notice_minutes, horizon_days = EXCLUDED.horizon_days, \
             enabled = EXCLUDED.enabled, is_default = EXCLUDED.is_default, \
             created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at",
        );
        insert.build().execute(&mut *tx).await?;
    }
    Ok(())
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
