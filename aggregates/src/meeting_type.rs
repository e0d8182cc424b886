//! Meeting-type settings and their limits (api.md section 4).

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::input::{FieldErrors, Raw};
use crate::slots::SlotSettings;
use crate::values::{Label, Slug};

pub const DURATION_MINUTES: RangeInclusive<i64> = 5..=480;
pub const SLOT_INTERVAL_MINUTES: RangeInclusive<i64> = 5..=480;
pub const BUFFER_MINUTES: RangeInclusive<i64> = 0..=120;
pub const MINIMUM_NOTICE_MINUTES: RangeInclusive<i64> = 0..=525_600;
pub const HORIZON_DAYS: RangeInclusive<i64> = 1..=365;

/// The default meeting type of `POST /v4/user` (section 2): 30 minutes, step = duration,
/// no buffers, no minimum notice, 60 days ahead.
pub const DEFAULT_NAME: &str = "30min Meeting";
pub const DEFAULT_DURATION_MINUTES: u32 = 30;
pub const DEFAULT_HORIZON_DAYS: u32 = 60;

/// How a meeting type's slots are laid out; every value within the limits above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeetingTypeSettings {
    pub duration_minutes: u32,
    pub slot_interval_minutes: u32,
    pub buffer_before_minutes: u32,
    pub buffer_after_minutes: u32,
    pub minimum_notice_minutes: u32,
    pub horizon_days: u32,
}

impl Default for MeetingTypeSettings {
    fn default() -> Self {
        Self::with_duration(DEFAULT_DURATION_MINUTES)
    }
}

impl MeetingTypeSettings {
    /// The defaults around a given duration: the step equals the duration.
    pub fn with_duration(duration_minutes: u32) -> Self {
        Self {
            duration_minutes,
            slot_interval_minutes: duration_minutes,
            buffer_before_minutes: 0,
            buffer_after_minutes: 0,
            minimum_notice_minutes: 0,
            horizon_days: DEFAULT_HORIZON_DAYS,
        }
    }

    pub fn slot_settings(&self) -> SlotSettings {
        SlotSettings {
            duration_minutes: self.duration_minutes,
            step_minutes: self.slot_interval_minutes,
            buffer_before_minutes: self.buffer_before_minutes,
            buffer_after_minutes: self.buffer_after_minutes,
            minimum_notice_minutes: self.minimum_notice_minutes,
            horizon_days: self.horizon_days,
        }
    }
}

/// A meeting type as the User aggregate keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeetingType {
    pub id: Uuid,
    pub availability_id: Uuid,
    pub name: Label,
    pub slug: Slug,
    pub settings: MeetingTypeSettings,
    pub enabled: bool,
}

/// The flat `meetingType` object of `POST /v4/user` as the client sent it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeetingTypeInput {
    #[serde(default)]
    pub name: Raw<String>,
    #[serde(default)]
    pub duration: Raw<i64>,
    #[serde(default)]
    pub slug: Raw<String>,
    #[serde(default)]
    pub slot_interval: Raw<i64>,
    #[serde(default)]
    pub buffer_before: Raw<i64>,
    #[serde(default)]
    pub buffer_after: Raw<i64>,
    #[serde(default)]
    pub minimum_notice: Raw<i64>,
    #[serde(default)]
    pub horizon_days: Raw<i64>,
}

/// A meeting type as the client asked for it, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedMeetingType {
    pub name: Label,
    pub slug: Option<Slug>,
    pub settings: MeetingTypeSettings,
}

impl MeetingTypeInput {
    /// Name and duration are required (section 4); every other setting has its default.
    /// Field paths are relative, for the caller to prefix.
    pub fn parse(self) -> Result<ParsedMeetingType, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = self.name.required("name", &mut errors).and_then(|raw| {
            Label::parse("name", &raw)
                .map_err(|m| errors.push("name", m))
                .ok()
        });
        let slug = self.slug.optional("slug", &mut errors).and_then(|raw| {
            Slug::parse(&raw, 1)
                .map_err(|m| errors.push("slug", m))
                .ok()
        });
        let duration = minutes(
            self.duration.required("duration", &mut errors),
            "duration",
            DURATION_MINUTES,
            "minutes",
            &mut errors,
        );
        let step = minutes(
            self.slot_interval.optional("slotInterval", &mut errors),
            "slotInterval",
            SLOT_INTERVAL_MINUTES,
            "minutes",
            &mut errors,
        );
        let before = minutes(
            self.buffer_before.optional("bufferBefore", &mut errors),
            "bufferBefore",
            BUFFER_MINUTES,
            "minutes",
            &mut errors,
        );
        let after = minutes(
            self.buffer_after.optional("bufferAfter", &mut errors),
            "bufferAfter",
            BUFFER_MINUTES,
            "minutes",
            &mut errors,
        );
        let notice = minutes(
            self.minimum_notice.optional("minimumNotice", &mut errors),
            "minimumNotice",
            MINIMUM_NOTICE_MINUTES,
            "minutes",
            &mut errors,
        );
        let horizon = minutes(
            self.horizon_days.optional("horizonDays", &mut errors),
            "horizonDays",
            HORIZON_DAYS,
            "days",
            &mut errors,
        );
        match (name, duration) {
            (Some(name), Some(duration)) if errors.is_empty() => {
                let mut settings = MeetingTypeSettings::with_duration(duration);
                settings.slot_interval_minutes = step.unwrap_or(duration);
                settings.buffer_before_minutes = before.unwrap_or(0);
                settings.buffer_after_minutes = after.unwrap_or(0);
                settings.minimum_notice_minutes = notice.unwrap_or(0);
                settings.horizon_days = horizon.unwrap_or(DEFAULT_HORIZON_DAYS);
                Ok(ParsedMeetingType {
                    name,
                    slug,
                    settings,
                })
            }
            _ => Err(errors),
        }
    }
}

/// Checks an integer setting against its range, naming the field and unit in the error.
fn minutes(
    value: Option<i64>,
    field: &str,
    range: RangeInclusive<i64>,
    unit: &str,
    errors: &mut FieldErrors,
) -> Option<u32> {
    let value = value?;
    if range.contains(&value) {
        u32::try_from(value).ok()
    } else {
        errors.push(
            field,
            format!(
                "{field} must be between {} and {} {unit}",
                range.start(),
                range.end()
            ),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Result<ParsedMeetingType, Vec<String>> {
        let input: MeetingTypeInput = serde_json::from_value(value).unwrap();
        input.parse().map_err(|errors| {
            errors
                .into_vec()
                .into_iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect()
        })
    }

    #[test]
    fn only_name_and_duration_are_required() {
        let parsed = parse(json!({"name": "Discovery Call", "duration": 45})).unwrap();
        assert_eq!(parsed.settings, MeetingTypeSettings::with_duration(45));
        assert_eq!(parsed.slug, None);
    }

    #[test]
    fn every_setting_out_of_range_is_reported() {
        let errors = parse(
            json!({"duration": 4, "slotInterval": 481, "bufferBefore": -1,
            "bufferAfter": 121, "minimumNotice": 525601, "horizonDays": 0, "slug": "Bad Slug"}),
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "name: name is required",
                "slug: slug may contain only lowercase letters a-z, digits and single hyphens between them",
                "duration: duration must be between 5 and 480 minutes",
                "slotInterval: slotInterval must be between 5 and 480 minutes",
                "bufferBefore: bufferBefore must be between 0 and 120 minutes",
                "bufferAfter: bufferAfter must be between 0 and 120 minutes",
                "minimumNotice: minimumNotice must be between 0 and 525600 minutes",
                "horizonDays: horizonDays must be between 1 and 365 days",
            ]
        );
    }

    #[test]
    fn a_fractional_duration_is_a_type_error() {
        let errors = parse(json!({"name": "x", "duration": 30.5})).unwrap_err();
        assert_eq!(
            errors,
            ["duration: duration must be an integer, not a number"]
        );
    }
}
