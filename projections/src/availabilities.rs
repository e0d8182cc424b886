//! Read model `availabilities`: each user's weekly schedules. Owns table `availabilities`.

use aggregates::user::{User, UserEvent};
use cqrs_es::Aggregate;
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::log::LogEvent;
use crate::runtime::ProjectionError;
use crate::user_profiles::parse_id;

/// An availability provisioned in the batch being applied.
struct NewAvailability {
    availability_id: Uuid,
    user_id: Uuid,
    company_id: Option<Uuid>,
    name: String,
    own_timezone: Option<&'static str>,
    schedule: serde_json::Value,
    is_default: bool,
    at: chrono::DateTime<chrono::Utc>,
}

/// Applies a batch to `availabilities` (called by the `users` projector, in its transaction).
pub(crate) async fn apply(
    tx: &mut PgConnection,
    events: &[LogEvent],
) -> Result<(), ProjectionError> {
    // Rows provisioned in this batch are inserted together at the end; a user deleted
    // later in the same batch takes its pending rows with it.
    let mut inserts: Vec<NewAvailability> = Vec::new();
    let mut deleted: Vec<Uuid> = Vec::new();
    for event in events.iter().filter(|e| e.aggregate_type == User::TYPE) {
        match event.decode::<UserEvent>()? {
            UserEvent::AvailabilityProvisioned {
                availability_id,
                name,
                timezone,
                schedule,
                is_default,
                at,
            } => {
                let schedule = serde_json::to_value(&schedule)
                    .map_err(|e| ProjectionError::Invalid(format!("schedule: {e}")))?;
                inserts.push(NewAvailability {
                    availability_id,
                    user_id: parse_id(&event.aggregate_id)?,
                    company_id: event.company_id,
                    name: name.as_str().to_string(),
                    own_timezone: timezone.map(|tz| tz.name()),
                    schedule,
                    is_default,
                    at,
                });
            }
            UserEvent::UserDeleted { .. } => {
                let user_id = parse_id(&event.aggregate_id)?;
                inserts.retain(|row| row.user_id != user_id);
                deleted.push(user_id);
            }
            _ => {}
        }
    }
    if !deleted.is_empty() {
        sqlx::query("DELETE FROM availabilities WHERE user_id = ANY($1)")
            .bind(&deleted)
            .execute(&mut *tx)
            .await?;
    }
    for chunk in inserts.chunks(2000) {
        let mut insert: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO availabilities (availability_id, user_id, company_id, name, own_timezone, schedule, \
             is_default, created_at, updated_at) ",
        );
        insert.push_values(chunk, |mut values, row| {
            values
                .push_bind(row.availability_id)
                .push_bind(row.user_id)
                .push_bind(row.company_id)
                .push_bind(&row.name)
                .push_bind(row.own_timezone)
                .push_bind(&row.schedule)
                .push_bind(row.is_default)
                .push_bind(row.at)
                .push_bind(row.at);
        });
        // A replay (a checkpoint moved back by hand) overwrites the row it finds.
        insert.push(
            " ON CONFLICT (availability_id) DO UPDATE SET user_id = EXCLUDED.user_id, \
             company_id = EXCLUDED.company_id, name = EXCLUDED.name, own_timezone = EXCLUDED.own_timezone, \
             schedule = EXCLUDED.schedule, is_default = EXCLUDED.is_default, \
             created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at",
        );
        insert.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// An availability with the zone in effect (its own, else its user's).
#[derive(Debug, Clone, PartialEq)]
pub struct AvailabilityRow {
    pub availability_id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub own_timezone: Option<String>,
    pub timezone: String,
    pub schedule: serde_json::Value,
    pub is_default: bool,
}

/// The availabilities of one user of `company_id`, oldest first.
pub async fn list_for_user(
    db: impl PgExecutor<'_>,
    company_id: Uuid,
    user_id: Uuid,
) -> Result<Vec<AvailabilityRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT a.availability_id, a.user_id, a.name, a.own_timezone, \
                coalesce(a.own_timezone, u.timezone) AS timezone, a.schedule, a.is_default \
         FROM availabilities a JOIN user_profiles u ON u.user_id = a.user_id \
         WHERE a.user_id = $1 AND a.company_id = $2 ORDER BY a.created_at, a.availability_id",
    )
    .bind(user_id)
    .bind(company_id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AvailabilityRow {
                availability_id: row.try_get("availability_id")?,
                user_id: row.try_get("user_id")?,
                name: row.try_get("name")?,
                own_timezone: row.try_get("own_timezone")?,
                timezone: row.try_get("timezone")?,
                schedule: row.try_get("schedule")?,
                is_default: row.try_get("is_default")?,
            })
        })
        .collect()
}
