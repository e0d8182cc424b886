//! The weekly schedule of an availability (api.md section 3).
//!
//! Times are minutes after local midnight, `0..=1440`; `24:00` (1440) is allowed as an end.
//! Within one day intervals are sorted and may touch but never overlap. Touching intervals
//! across midnight are merged later, by the slot rule, not here: the schedule keeps what the
//! client wrote so it can be shown back unchanged.

use std::fmt;

use chrono::Weekday;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::input::{FieldErrors, Raw};

/// At most this many intervals a day (section 3).
pub const MAX_INTERVALS_PER_DAY: usize = 12;
const MINUTES_PER_DAY: u16 = 24 * 60;

/// A local wall-clock time of day, `00:00` to `24:00`, in whole minutes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalTime(u16);

impl LocalTime {
    pub const MIDNIGHT: LocalTime = LocalTime(0);
    pub const END_OF_DAY: LocalTime = LocalTime(MINUTES_PER_DAY);

    /// Exactly `HH:MM` in ASCII digits with `00:00 ≤ t ≤ 24:00`. Checked byte by byte:
    /// `u16::from_str` would also take a sign (`+9:00`, `09:+5`).
    pub fn parse(raw: &str) -> Option<Self> {
        let &[h1, h2, b':', m1, m2] = raw.as_bytes() else {
            return None;
        };
        if ![h1, h2, m1, m2].iter().all(u8::is_ascii_digit) {
            return None;
        }
        let digit = |b: u8| u16::from(b - b'0');
        let h = digit(h1) * 10 + digit(h2);
        let m = digit(m1) * 10 + digit(m2);
        if m >= 60 || h > 24 || (h == 24 && m != 0) {
            return None;
        }
        Some(Self(h * 60 + m))
    }

    pub fn from_minutes(minutes: u16) -> Option<Self> {
        (minutes <= MINUTES_PER_DAY).then_some(Self(minutes))
    }

    /// Minutes after local midnight, `0..=1440`.
    pub fn minutes(self) -> u16 {
        self.0
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl fmt::Debug for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for LocalTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LocalTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        LocalTime::parse(&raw).ok_or_else(|| D::Error::custom(format!("invalid time {raw:?}")))
    }
}

/// `[from, to)` in local wall-clock time, `from < to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    pub from: LocalTime,
    pub to: LocalTime,
}

impl Interval {
    pub fn new(from: LocalTime, to: LocalTime) -> Option<Self> {
        (from < to).then_some(Self { from, to })
    }
}

/// Intervals for each weekday, Monday first; sorted, non-overlapping (touching allowed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WeeklySchedule {
    days: [Vec<Interval>; 7],
}

impl WeeklySchedule {
    /// Monday to Friday, 09:00–17:00: the default of `POST /v4/user` (section 2).
    pub fn business_hours() -> Self {
        let nine_to_five = Interval::new(
            LocalTime::from_minutes(9 * 60).expect("09:00"),
            LocalTime::from_minutes(17 * 60).expect("17:00"),
        )
        .expect("09:00 < 17:00");
        let mut schedule = Self::default();
        for day in [
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
        ] {
            schedule.days[day.num_days_from_monday() as usize] = vec![nine_to_five];
        }
        schedule
    }

    /// Builds a schedule from per-day interval lists, enforcing the invariants.
    pub fn from_days(days: [Vec<Interval>; 7]) -> Result<Self, String> {
        let mut schedule = Self::default();
        for (index, mut intervals) in days.into_iter().enumerate() {
            intervals.sort_by_key(|i| i.from);
            if intervals.windows(2).any(|pair| pair[1].from < pair[0].to) {
                return Err("intervals overlap".into());
            }
            if intervals.len() > MAX_INTERVALS_PER_DAY {
                return Err(format!("at most {MAX_INTERVALS_PER_DAY} intervals a day"));
            }
            schedule.days[index] = intervals;
        }
        Ok(schedule)
    }

    pub fn intervals(&self, day: Weekday) -> &[Interval] {
        &self.days[day.num_days_from_monday() as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.days.iter().all(Vec::is_empty)
    }

    /// Parses the schedule array of a request. Field paths are relative (`[0].intervals[1]`),
    /// for the caller to prefix with `schedule`.
    pub fn parse(days: Vec<DayInput>) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut result: [Vec<Interval>; 7] = Default::default();
        let mut seen = [false; 7];
        for (i, day) in days.into_iter().enumerate() {
            let weekday = day
                .day_of_week
                .required(&format!("[{i}].dayOfWeek"), &mut errors)
                .and_then(|name| match parse_weekday(&name) {
                    Some(weekday) => Some(weekday),
                    None => {
                        errors.push(
                            format!("[{i}].dayOfWeek"),
                            "dayOfWeek must be one of monday, tuesday, wednesday, thursday, friday, saturday, sunday",
                        );
                        None
                    }
                });
            if let Some(weekday) = weekday {
                let index = weekday.num_days_from_monday() as usize;
                if seen[index] {
                    errors.push(
                        format!("[{i}].dayOfWeek"),
                        format!("{} appears more than once", weekday_name(weekday)),
                    );
                }
                seen[index] = true;
            }
            let Some(intervals) = day
                .intervals
                .required(&format!("[{i}].intervals"), &mut errors)
            else {
                continue;
            };
            if intervals.len() > MAX_INTERVALS_PER_DAY {
                errors.push(
                    format!("[{i}].intervals"),
                    format!("at most {MAX_INTERVALS_PER_DAY} intervals a day"),
                );
                continue;
            }
            let mut parsed: Vec<(usize, Interval)> = Vec::new();
            for (j, interval) in intervals.into_iter().enumerate() {
                let path = format!("[{i}].intervals[{j}]");
                let from = parse_time(interval.from, &path, "from", &mut errors);
                let to = parse_time(interval.to, &path, "to", &mut errors);
                if let (Some(from), Some(to)) = (from, to) {
                    match Interval::new(from, to) {
                        Some(interval) => parsed.push((j, interval)),
                        None => errors.push(path, "from must be before to"),
                    }
                }
            }
            parsed.sort_by_key(|(_, interval)| interval.from);
            for pair in parsed.windows(2) {
                let ((_, earlier), (j, later)) = (pair[0], pair[1]);
                if later.from < earlier.to {
                    errors.push(format!("[{i}].intervals[{j}]"), "intervals overlap");
                }
            }
            if let Some(weekday) = weekday {
                result[weekday.num_days_from_monday() as usize] =
                    parsed.into_iter().map(|(_, interval)| interval).collect();
            }
        }
        errors.finish(|| Self { days: result })
    }
}

/// `from` (00:00–23:59) or `to` (00:00–24:00) of the interval at `path`.
fn parse_time(
    raw: Raw<String>,
    path: &str,
    name: &'static str,
    errors: &mut FieldErrors,
) -> Option<LocalTime> {
    let is_end = name == "to";
    let mut own = FieldErrors::new();
    let parsed = raw.required(name, &mut own).and_then(|text| {
        let allowed = if is_end {
            "00:00–24:00"
        } else {
            "00:00–23:59"
        };
        match LocalTime::parse(&text) {
            Some(time) if is_end || time < LocalTime::END_OF_DAY => Some(time),
            _ => {
                own.push(
                    name,
                    format!("{name} must be a time HH:MM between {allowed}"),
                );
                None
            }
        }
    });
    errors.extend_nested(path, own);
    parsed
}

const WEEKDAYS: [(Weekday, &str); 7] = [
    (Weekday::Mon, "monday"),
    (Weekday::Tue, "tuesday"),
    (Weekday::Wed, "wednesday"),
    (Weekday::Thu, "thursday"),
    (Weekday::Fri, "friday"),
    (Weekday::Sat, "saturday"),
    (Weekday::Sun, "sunday"),
];

fn parse_weekday(raw: &str) -> Option<Weekday> {
    let lower = raw.trim().to_ascii_lowercase();
    WEEKDAYS
        .iter()
        .find(|(_, name)| *name == lower)
        .map(|(day, _)| *day)
}

pub fn weekday_name(day: Weekday) -> &'static str {
    WEEKDAYS[day.num_days_from_monday() as usize].1
}

/// One element of the `schedule` array as the client sent it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DayInput {
    #[serde(default)]
    pub day_of_week: Raw<String>,
    #[serde(default)]
    pub intervals: Raw<Vec<IntervalInput>>,
}

/// One interval as the client sent it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct IntervalInput {
    #[serde(default)]
    pub from: Raw<String>,
    #[serde(default)]
    pub to: Raw<String>,
}

/// The wire form, shared by events and API responses: only days with intervals, Monday first.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DayWire {
    day_of_week: String,
    intervals: Vec<Interval>,
}

impl Serialize for WeeklySchedule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let days: Vec<DayWire> = WEEKDAYS
            .iter()
            .filter(|(day, _)| !self.intervals(*day).is_empty())
            .map(|(day, name)| DayWire {
                day_of_week: (*name).to_string(),
                intervals: self.intervals(*day).to_vec(),
            })
            .collect();
        days.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for WeeklySchedule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Vec::<DayWire>::deserialize(deserializer)?;
        let mut days: [Vec<Interval>; 7] = Default::default();
        for day in wire {
            let weekday = parse_weekday(&day.day_of_week)
                .ok_or_else(|| D::Error::custom(format!("unknown day {:?}", day.day_of_week)))?;
            days[weekday.num_days_from_monday() as usize] = day.intervals;
        }
        WeeklySchedule::from_days(days).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Result<WeeklySchedule, Vec<(String, String)>> {
        let days: Vec<DayInput> = serde_json::from_value(value).unwrap();
        WeeklySchedule::parse(days).map_err(|errors| {
            errors
                .into_vec()
                .into_iter()
                .map(|e| (e.field, e.message))
                .collect()
        })
    }

    #[test]
    fn a_schedule_round_trips_through_its_wire_form() {
        let wire = json!([
            {"dayOfWeek": "monday", "intervals": [{"from": "09:00", "to": "12:00"}, {"from": "13:00", "to": "17:00"}]},
            {"dayOfWeek": "sunday", "intervals": [{"from": "22:00", "to": "24:00"}]}
        ]);
        let schedule = parse(wire.clone()).unwrap();
        assert_eq!(serde_json::to_value(&schedule).unwrap(), wire);
        let back: WeeklySchedule = serde_json::from_value(wire).unwrap();
        assert_eq!(back, schedule);
    }

    #[test]
    fn touching_intervals_are_allowed_and_sorted() {
        let schedule = parse(json!([{"dayOfWeek": "Tuesday", "intervals": [
            {"from": "13:00", "to": "17:00"}, {"from": "09:00", "to": "13:00"}]}]))
        .unwrap();
        let tuesday = schedule.intervals(Weekday::Tue);
        assert_eq!(tuesday[0].from.to_string(), "09:00");
        assert_eq!(tuesday[1].to.to_string(), "17:00");
    }

    #[test]
    fn every_bad_interval_is_named_with_its_day_and_index() {
        let errors = parse(json!([
            {"dayOfWeek": "monday", "intervals": [{"from": "09:00", "to": "12:00"}, {"from": "11:00", "to": "13:00"}]},
            {"dayOfWeek": "monday", "intervals": [{"from": "10:00", "to": "09:00"}]},
            {"dayOfWeek": "funday", "intervals": [{"from": "24:00", "to": "24:30"}]},
            {"intervals": [{"from": "9", "to": 5}]}
        ]))
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "[0].intervals[1]",
                "[1].dayOfWeek",
                "[1].intervals[0]",
                "[2].dayOfWeek",
                "[2].intervals[0].from",
                "[2].intervals[0].to",
                "[3].dayOfWeek",
                "[3].intervals[0].from",
                "[3].intervals[0].to",
            ]
        );
        assert_eq!(errors[0].1, "intervals overlap");
        assert_eq!(errors[1].1, "monday appears more than once");
        assert_eq!(errors[2].1, "from must be before to");
    }

    #[test]
    fn more_than_twelve_intervals_a_day_are_refused() {
        let intervals: Vec<_> = (0..13)
            .map(|h| json!({"from": format!("{:02}:00", h), "to": format!("{:02}:30", h)}))
            .collect();
        let errors = parse(json!([{"dayOfWeek": "friday", "intervals": intervals}])).unwrap_err();
        assert_eq!(
            errors,
            [(
                "[0].intervals".to_string(),
                "at most 12 intervals a day".to_string()
            )]
        );
    }

    #[test]
    fn local_times_accept_24_00_only_as_an_end() {
        assert_eq!(LocalTime::parse("24:00"), Some(LocalTime::END_OF_DAY));
        assert_eq!(LocalTime::parse("24:01"), None);
        assert_eq!(LocalTime::parse("9:00"), None);
        assert_eq!(LocalTime::parse("09:60"), None);
        assert!(
            parse(
                json!([{"dayOfWeek": "monday", "intervals": [{"from": "00:00", "to": "24:00"}]}])
            )
            .is_ok()
        );
    }

    #[test]
    fn a_time_is_exactly_two_ascii_digits_a_colon_and_two_ascii_digits() {
        for bad in [
            "+9:00",
            "09:+5",
            "9:00",
            "09:00:00",
            "-1:00",
            "09:5",
            " 9:00",
            "09:00 ",
            "０９:００",
            "09.00",
            "0900",
            "",
            ":",
            "24:00:00",
            "+0:00",
        ] {
            assert_eq!(LocalTime::parse(bad), None, "{bad:?}");
            let errors = parse(
                json!([{"dayOfWeek": "monday", "intervals": [{"from": bad, "to": "17:00"}]}]),
            )
            .unwrap_err();
            assert_eq!(
                errors,
                [(
                    "[0].intervals[0].from".to_string(),
                    "from must be a time HH:MM between 00:00–23:59".to_string()
                )],
                "{bad:?}"
            );
        }
        assert_eq!(LocalTime::parse("00:00"), Some(LocalTime::MIDNIGHT));
        assert_eq!(
            LocalTime::parse("23:59").map(LocalTime::minutes),
            Some(1439)
        );
    }
}
