//! `GET /v4/user/{userId}/bookable-windows` (api.md section 5), served from the precomputed
//! read model through its in-memory cache: no slot is computed on a request, and the
//! `events` table is never read.

use std::collections::HashMap;
use std::str::FromStr;

use aggregates::input::{FieldError, FieldErrors};
use aggregates::slots::resolve_local;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use projections::user_profiles;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::Acting;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{QueryMap, parse_path_id};

/// The longest range one query may ask for, in days (inclusive of both dates).
const MAX_RANGE_DAYS: i64 = 62;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v4/user/{user_id}/bookable-windows", get(bookable_windows))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WindowsView {
    /// Slot start instants, ascending, without duplicates: UTC with `Z` without `timezone`,
    /// else with that zone's offset.
    #[schema(example = json!(["2024-01-15T08:00:00Z", "2024-01-15T08:30:00Z"]))]
    pub windows: Vec<String>,
}

/// The query, parsed.
struct WindowsQuery {
    start: NaiveDate,
    end: NaiveDate,
    meeting_type_id: Option<Uuid>,
    timezone: Option<Tz>,
}

impl WindowsQuery {
    /// Every bad parameter is reported, each with the spec's sentence.
    fn parse(query: &HashMap<String, String>) -> ApiResult<Self> {
        let mut missing = Vec::new();
        for name in ["startDate", "endDate"] {
            if query.get(name).is_none_or(|v| v.trim().is_empty()) {
                missing.push(FieldError {
                    field: name.to_string(),
                    message: "startDate and endDate are required".to_string(),
                });
            }
        }
        if !missing.is_empty() {
            return Err(ApiError::ValidationMessage(
                "startDate and endDate are required".into(),
                missing,
            ));
        }
        let mut errors = FieldErrors::new();
        let date = |name: &str, errors: &mut FieldErrors| {
            let raw = query[name].trim();
            let parsed = (raw.len() == 10)
                .then(|| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok())
                .flatten();
            if parsed.is_none() {
                errors.push(name, "Invalid date format. Use YYYY-MM-DD");
            }
            parsed
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
        let timezone = match query
            .get("timezone")
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        {
            None => None,
            Some(raw) => match Tz::from_str(raw) {
                Ok(tz) => Some(tz),
                Err(_) => {
                    errors.push("timezone", "Invalid timezone");
                    None
                }
            },
        };
        let meeting_type_id = match query
            .get("meetingTypeId")
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        {
            None => None,
            Some(raw) => match Uuid::parse_str(raw) {
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
            _ => Err(errors.into()),
        }
    }
}

/// The bookable start times of a user's meeting type between two dates.
#[utoipa::path(get, path = "/v4/user/{userId}/bookable-windows", tag = "bookable windows",
    params(
        ("userId" = Uuid, Path),
        ("startDate" = String, Query, description = "First day, `YYYY-MM-DD`, in the output zone"),
        ("endDate" = String, Query, description = "Last day (inclusive), at most 62 days after startDate"),
        ("meetingTypeId" = Option<Uuid>, Query, description = "Default: the user's default meeting type"),
        ("timezone" = Option<String>, Query, description = "Output zone (IANA); default: the user's zone, answered in UTC")),
    responses(
        (status = 200, body = WindowsView),
        (status = 400, description = "startDate and endDate are required / Invalid date format. Use YYYY-MM-DD / \
            endDate must not be before startDate / Date range must not exceed 62 days / Invalid timezone", body = ErrorBody),
        (status = 404, description = "User not found / Meeting type not found", body = ErrorBody)),
    security(("apiKey" = [])))]
pub async fn bookable_windows(
    State(state): State<AppState>,
    acting: Acting,
    Path(user_id): Path<String>,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<WindowsView>> {
    let user_id = parse_path_id(&user_id, "userId")?;
    let params = WindowsQuery::parse(&query)?;
    let company_id = acting.caller.company_id;
    let windows = state
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
    let starts = meeting_type.starts(from, to, state.bus.clock().now());
    Ok(Json(WindowsView {
        windows: format_instants(&starts, params.timezone),
    }))
}

fn format_instants(starts: &[DateTime<Utc>], zone: Option<Tz>) -> Vec<String> {
    match zone {
        None => starts
            .iter()
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .collect(),
        Some(tz) => starts
            .iter()
            .map(|t| {
                t.with_timezone(&tz)
                    .to_rfc3339_opts(SecondsFormat::Secs, false)
            })
            .collect(),
    }
}
