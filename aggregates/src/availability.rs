//! Availabilities: a named weekly schedule in a time zone (api.md section 3).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::input::{FieldErrors, Raw};
use crate::schedule::{DayInput, WeeklySchedule};
use crate::values::{Label, TimeZoneName};

/// The name of the availability `POST /v4/user` provisions when none is given.
pub const DEFAULT_NAME: &str = "Business Hours";

/// An availability as the User aggregate keeps it.
///
/// `timezone: None` means "the user's time zone": the availability follows the user when the
/// user's zone changes. One with its own zone keeps it (section 2, `PATCH /v4/user`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Availability {
    pub id: Uuid,
    pub name: Label,
    pub timezone: Option<TimeZoneName>,
    pub schedule: WeeklySchedule,
}

impl Availability {
    /// The zone its schedule is read in, given the user's zone.
    pub fn effective_timezone(&self, user_timezone: TimeZoneName) -> TimeZoneName {
        self.timezone.unwrap_or(user_timezone)
    }
}

/// The `availability` object of `POST /v4/user` as the client sent it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilityInput {
    #[serde(default)]
    pub name: Raw<String>,
    #[serde(default)]
    pub timezone: Raw<String>,
    #[serde(default)]
    pub schedule: Raw<Vec<DayInput>>,
}

/// An availability as the client asked for it, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAvailability {
    pub name: Label,
    pub timezone: Option<TimeZoneName>,
    pub schedule: WeeklySchedule,
}

impl AvailabilityInput {
    /// `schedule` is required; `name` defaults to `Business Hours`; without `timezone` the
    /// availability follows the user's zone. Field paths are relative.
    pub fn parse(self) -> Result<ParsedAvailability, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = match self.name.optional("name", &mut errors) {
            Some(raw) => Label::parse("name", &raw)
                .map_err(|m| errors.push("name", m))
                .ok(),
            None => Some(Label::fixed(DEFAULT_NAME)),
        };
        let timezone = self
            .timezone
            .optional("timezone", &mut errors)
            .and_then(|raw| {
                TimeZoneName::parse(&raw)
                    .map_err(|m| errors.push("timezone", m))
                    .ok()
            });
        let schedule = self
            .schedule
            .required("schedule", &mut errors)
            .and_then(|days| {
                WeeklySchedule::parse(days)
                    .map_err(|nested| errors.extend_nested("schedule", nested))
                    .ok()
            });
        match (name, schedule) {
            (Some(name), Some(schedule)) if errors.is_empty() => Ok(ParsedAvailability {
                name,
                timezone,
                schedule,
            }),
            _ => Err(errors),
        }
    }
}
