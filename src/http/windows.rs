//! `GET /v4/user/{userId}/bookable-windows` (api.md section 5), served from the precomputed
//! read model through its in-memory cache: no slot is computed on a request, and the
//! `events` table is never read.

use std::borrow::Cow;
use std::str::FromStr;

use aggregates::input::FieldErrors;
use aggregates::slots::resolve_local;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Offset, TimeZone};
use chrono_tz::Tz;
use projections::user_profiles;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::Acting;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{PathParam, parse_path_id};
use super::openapi;

/// The longest range one query may ask for, in days (inclusive of both dates).
const MAX_RANGE_DAYS: i64 = 62;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v4/user/{user_id}/bookable-windows", get(bookable_windows))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WindowsView {
    /// Slot start instants, ascending, without duplicates: UTC with `Z` without `timezone`,
    /// else with that zone's offset.
    #[schema(value_type = Vec<chrono::DateTime<chrono::Utc>>,
        example = json!(["2024-01-15T08:00:00Z", "2024-01-15T08:30:00Z"]))]
    pub windows: Vec<String>,
}

/// The query, parsed.
struct WindowsQuery {
    start: NaiveDate,
    end: NaiveDate,
    meeting_type_id: Option<Uuid>,
    timezone: Option<Tz>,
}

/// The four parameters as sent (the last occurrence wins), decoded without copying when
/// nothing is percent-encoded.
#[derive(Default)]
struct RawWindowsQuery<'a> {
    start_date: Option<Cow<'a, str>>,
    end_date: Option<Cow<'a, str>>,
    meeting_type_id: Option<Cow<'a, str>>,
    timezone: Option<Cow<'a, str>>,
}

impl<'a> RawWindowsQuery<'a> {
    fn from_query(query: &'a str) -> Self {
        let mut raw = Self::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "startDate" => &mut raw.start_date,
                "endDate" => &mut raw.end_date,
                "meetingTypeId" => &mut raw.meeting_type_id,
                "timezone" => &mut raw.timezone,
                _ => continue,
            };
            *slot = Some(value);
        }
        raw
    }

    fn get(&self, name: &str) -> Option<&str> {
        let value = match name {
            "startDate" => &self.start_date,
            "endDate" => &self.end_date,
            "meetingTypeId" => &self.meeting_type_id,
            _ => &self.timezone,
        };
        value.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
}

/// `YYYY-MM-DD` exactly.
fn parse_date(raw: &str) -> Option<NaiveDate> {
    let bytes = raw.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        bytes[range].iter().try_fold(0u32, |n, b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(
        i32::try_from(number(0..4)?).ok()?,
        number(5..7)?,
        number(8..10)?,
    )
}

/// `raw` with every space turned back into the `+` it was before form decoding.
fn plus_restored(raw: &str) -> Cow<'_, str> {
    match raw.contains(' ') {
        true => Cow::Owned(raw.replace(' ', "+")),
        false => Cow::Borrowed(raw),
    }
}

/// Whether instants in `zone` are written in section 0's UTC form, with `Z`: the zone is
/// `UTC` or `Etc/UTC` (or one of tzdata's other names for that very zone).
fn writes_utc_with_z(zone: Tz) -> bool {
    matches!(
        zone,
        Tz::UTC
            | Tz::Etc__UTC
            | Tz::Etc__UCT
            | Tz::Etc__Universal
            | Tz::Etc__Zulu
            | Tz::UCT
            | Tz::Universal
            | Tz::Zulu
    )
}

impl WindowsQuery {
    /// Every bad parameter is reported, each with the spec's sentence.
    fn parse(query: &RawWindowsQuery<'_>) -> ApiResult<Self> {
        let mut errors = FieldErrors::new();
        let mut missing = false;
        let mut date = |name: &str, errors: &mut FieldErrors| match query.get(name) {
            None => {
                missing = true;
                errors.push(name, "startDate and endDate are required");
                None
            }
            Some(raw) => {
                let parsed = parse_date(raw);
                if parsed.is_none() {
                    errors.push(name, "Invalid date format. Use YYYY-MM-DD");
                }
                parsed
            }
        };
        let start = date("startDate", &mut errors);
        let end = date("endDate", &mut errors);
        if let (Some(start), Some(end)) = (start, end) {
            if end < start {
                errors.push("endDate", "endDate must not be before startDate");
            } else if (end - start).num_days() + 1 > MAX_RANGE_DAYS {
                errors.push("endDate", "Date range must not exceed 62 days");
            }
        }
        // Sent but empty is not "absent": it is not an IANA name either. No IANA name holds a
        // space, so one here is a `+` sent unencoded (`Etc/GMT+5`) that form decoding read
        // as a space: read it as the `+` it was.
        let timezone = match query.timezone.as_deref() {
            None => None,
            Some(raw) => match Tz::from_str(plus_restored(raw).trim()) {
                Ok(tz) => Some(tz),
                Err(_) => {
                    errors.push("timezone", "Invalid timezone");
                    None
                }
            },
        };
        // Like `timezone=`, an empty `meetingTypeId=` is sent, and no UUID.
        let meeting_type_id = match query.meeting_type_id.as_deref() {
            None => None,
            Some(raw) => match Uuid::parse_str(raw.trim()) {
                Ok(id) => Some(id),
                Err(_) => {
                    errors.push("meetingTypeId", "meetingTypeId must be a UUID");
                    None
                }
            },
        };
        match (start, end) {
            (Some(start), Some(end)) if errors.is_empty() => Ok(Self {
                start,
                end,
                meeting_type_id,
                timezone,
            }),
            // The spec's sentence for the most basic mistake leads; `errors` lists them all.
            _ if missing => Err(ApiError::ValidationMessage(
                "startDate and endDate are required".into(),
                errors.into_vec(),
            )),
            _ => Err(errors.into()),
        }
    }
}

/// The bookable start times of a user's meeting type between two dates.
#[utoipa::path(get, path = "/v4/user/{userId}/bookable-windows", tag = "bookable windows",
    params(
        ("userId" = Uuid, Path),
        ("startDate" = NaiveDate, Query, description = "First day, `YYYY-MM-DD`, in the output zone"),
        ("endDate" = NaiveDate, Query, description = "Last day (inclusive), not before startDate and at most 62 days from it"),
        ("meetingTypeId" = Option<Uuid>, Query, description = "Default: the user's default meeting type"),
        ("timezone" = Option<openapi::TimeZone>, Query, description = "Output zone; default: the user's zone, answered in UTC. \
            Instants are written with the zone's offset, or with `Z` for `UTC` and `Etc/UTC`")),
    responses(
        (status = 200, body = WindowsView),
        (status = 400, description = "startDate and endDate are required / Invalid date format. Use YYYY-MM-DD / \
            endDate must not be before startDate / Date range must not exceed 62 days / Invalid timezone", body = ErrorBody),
        (status = 404, description = "User not found / Meeting type not found", body = ErrorBody)),
    security(("apiKey" = [])))]
pub async fn bookable_windows(
    State(state): State<AppState>,
    acting: Acting,
    PathParam(user_id): PathParam,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let user_id = parse_path_id(&user_id, "userId")?;
    let params = WindowsQuery::parse(&RawWindowsQuery::from_query(query.as_deref().unwrap_or("")))?;
    let company_id = acting.caller.company_id;
    // Windows of a user set aside by either projector they come from would be stale.
    if super::users::quarantined(
        &state,
        company_id,
        user_id,
        &[
            projections::users::NAME,
            projections::bookable_windows::NAME,
        ],
    ) {
        return Err(super::users::quarantined_error(user_id));
    }
    let windows = state
        .caches
        .windows
        .get(&state.pool, user_id)
        .await?
        .filter(|w| w.company_id == company_id);
    let Some(windows) = windows else {
        // No windows: either no such user here, or it offers no meeting type.
        return Err(
            if user_profiles::exists(&state.pool, company_id, user_id).await? {
                ApiError::NotFound("Meeting type not found")
            } else {
                ApiError::NotFound("User not found")
            },
        );
    };
    let meeting_type = windows
        .meeting_type(params.meeting_type_id)
        .ok_or(ApiError::NotFound("Meeting type not found"))?;
    let zone = params.timezone.unwrap_or(windows.user_timezone);
    let midnight = |date: NaiveDate| resolve_local(zone, date.and_time(NaiveTime::MIN));
    let from = midnight(params.start);
    let to = midnight(params.end + Duration::days(1));
    let starts = meeting_type.starts_seconds(from, to, state.bus.clock().now());
    let written_with_offset = params.timezone.filter(|zone| !writes_utc_with_z(*zone));
    Ok((
        [(CONTENT_TYPE, "application/json")],
        windows_json(starts, written_with_offset),
    )
        .into_response())
}

/// `{"windows":[…]}` written straight into one buffer: this is the hottest response of the
/// API, and the instants need no JSON escaping. Consecutive starts mostly share a local
/// date, so the date is formatted once per day. Without `zone` in UTC with `Z`, else with
/// the zone's offset.
fn windows_json(starts: impl Iterator<Item = i64>, zone: Option<Tz>) -> String {
    let mut body = String::with_capacity(16 + 28 * 96);
    body.push_str("{\"windows\":[");
    let mut day_cache: (i64, [u8; 10]) = (i64::MIN, [0; 10]);
    for (i, start) in starts.enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push('"');
        let offset = zone.map(|tz| {
            let utc = DateTime::from_timestamp(start, 0)
                .unwrap_or_default()
                .naive_utc();
            tz.offset_from_utc_datetime(&utc).fix().local_minus_utc()
        });
        let local = start + i64::from(offset.unwrap_or(0));
        push_rfc3339(&mut body, local, offset, &mut day_cache);
        body.push('"');
    }
    body.push_str("]}");
    body
}

/// Local seconds since the epoch as `YYYY-MM-DDTHH:MM:SS`, then `Z` (no offset given) or
/// `±HH:MM`: RFC 3339 as section 0 writes it, with seconds and no fraction.
fn push_rfc3339(
    out: &mut String,
    local: i64,
    offset_seconds: Option<i32>,
    day_cache: &mut (i64, [u8; 10]),
) {
    fn two(out: &mut String, value: u32) {
        out.push(char::from(b'0' + (value / 10 % 10) as u8));
        out.push(char::from(b'0' + (value % 10) as u8));
    }
    let day = local.div_euclid(86_400);
    if day_cache.0 != day {
        let date = DateTime::from_timestamp(day * 86_400, 0)
            .unwrap_or_default()
            .date_naive();
        let text = format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day());
        let mut bytes = [b'0'; 10];
        bytes.copy_from_slice(&text.as_bytes()[text.len() - 10..]);
        *day_cache = (day, bytes);
    }
    out.push_str(std::str::from_utf8(&day_cache.1).unwrap_or("0000-00-00"));
    let seconds = local.rem_euclid(86_400) as u32;
    out.push('T');
    two(out, seconds / 3600);
    out.push(':');
    two(out, seconds / 60 % 60);
    out.push(':');
    two(out, seconds % 60);
    match offset_seconds {
        None => out.push('Z'),
        Some(offset) => {
            out.push(if offset < 0 { '-' } else { '+' });
            let minutes = offset.unsigned_abs() / 60;
            two(out, minutes / 60);
            out.push(':');
            two(out, minutes % 60);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{SecondsFormat, Utc};

    #[test]
    fn instants_are_written_as_chrono_writes_them() {
        let instants: Vec<DateTime<Utc>> = [
            "2024-01-15T08:00:00Z",
            "2026-03-29T01:30:00Z",
            "2026-10-25T00:30:00Z",
            "1999-12-31T23:59:59Z",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        for zone in [
            None,
            Some(chrono_tz::Europe::Berlin),
            Some(chrono_tz::Asia::Kathmandu),
            Some(chrono_tz::America::St_Johns),
            Some(chrono_tz::UTC),
        ] {
            let seconds = instants.iter().map(DateTime::timestamp);
            let body: serde_json::Value =
                serde_json::from_str(&windows_json(seconds, zone)).unwrap();
            let expected: Vec<String> = instants
                .iter()
                .map(|t| match zone {
                    None => t.to_rfc3339_opts(SecondsFormat::Secs, true),
                    Some(tz) => t
                        .with_timezone(&tz)
                        .to_rfc3339_opts(SecondsFormat::Secs, false),
                })
                .collect();
            assert_eq!(body["windows"], serde_json::json!(expected), "{zone:?}");
        }
        assert_eq!(windows_json(std::iter::empty(), None), "{\"windows\":[]}");
    }
}
