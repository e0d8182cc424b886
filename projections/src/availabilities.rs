//! Read model `availabilities`: each user's weekly schedules. Owns table `availabilities`.

use aggregates::user::{User, UserEvent};
use async_trait::async_trait;
use cqrs_es::Aggregate;
use sqlx::{PgConnection, PgExecutor, Row};
use uuid::Uuid;

use crate::log::LogEvent;
use crate::runtime::{ProjectionError, Projector};
use crate::user_profiles::parse_id;

pub const NAME: &str = "availabilities";

pub struct AvailabilitiesProjector;

#[async_trait]
impl Projector for AvailabilitiesProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["availabilities"]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[LogEvent],
    ) -> Result<(), ProjectionError> {
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
                    let user_id = parse_id(&event.aggregate_id)?;
                    let schedule = serde_json::to_value(&schedule)
                        .map_err(|e| ProjectionError::Invalid(format!("schedule: {e}")))?;
                    sqlx::query(
                        "INSERT INTO availabilities (availability_id, user_id, company_id, name, own_timezone, \
                         schedule, is_default, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                    )
                    .bind(availability_id)
                    .bind(user_id)
                    .bind(event.company_id)
                    .bind(name.as_str())
                    .bind(timezone.map(|tz| tz.name()))
                    .bind(schedule)
                    .bind(is_default)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                UserEvent::UserDeleted { .. } => {
                    sqlx::query("DELETE FROM availabilities WHERE user_id = $1")
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
