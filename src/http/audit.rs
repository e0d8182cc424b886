//! The event history (api.md section 7): `GET /v4/audit/events` and
//! `GET /v4/user/{id}/history`. The log itself is their subject, so these are the only
//! handlers that read the `events` table (through `projections::log`). Personal fields are
//! opened with their user's data key, or read `[erased]` once the user was deleted; fields
//! that verify secrets (`aggregates::withheld`) are left out.

use std::collections::HashMap;

use aggregates::input::FieldErrors;
use aggregates::user::User;
use aggregates::withheld::withhold;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use cqrs_es::Aggregate;
use projections::log::{self, AuditQuery, LogEvent};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::Acting;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{PathParam, QueryMap, parse_path_id};
use super::views::instant;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v4/audit/events", get(audit_events))
        .route("/v4/user/{id}/history", get(user_history))
}

/// One event as auditors read it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// Global position: unique, assigned at insert. Pass the last one you received as `after`.
    pub position: i64,
    pub event_id: Uuid,
    #[schema(example = "User")]
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// 1, 2, … within the aggregate.
    pub sequence: i64,
    #[serde(rename = "type")]
    #[schema(example = "UserCreated")]
    pub event_type: String,
    #[schema(example = "1")]
    pub version: String,
    #[schema(example = "2024-01-15T10:30:00Z")]
    pub recorded_at: String,
    /// `requestId`, `apiKeyId`, `actingUserId`, `companyId`, `origin`.
    #[schema(value_type = Object)]
    pub metadata: Value,
    #[schema(value_type = Object)]
    pub payload: Value,
}

impl From<LogEvent> for EventView {
    /// Secrets' verifiers (`aggregates::withheld`) are left out: the log keeps them and its
    /// hashes cover them, but no reader of the history is shown one.
    fn from(mut event: LogEvent) -> Self {
        withhold(&event.aggregate_type, &event.event_type, &mut event.payload);
        Self {
            position: event.position,
            event_id: event.event_id,
            aggregate_type: event.aggregate_type,
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            event_type: event.event_type,
            version: event.event_version,
            recorded_at: instant(event.recorded_at),
            metadata: event.metadata,
            payload: event.payload,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    pub events: Vec<EventView>,
    pub count: usize,
    /// The position to pass as `after` for the next page (`null` when the page is empty).
    pub last_position: Option<i64>,
}

/// api.md section 0's list limits; section 7 replaces only `skip`, by the `after` cursor.
const MAX_PAGE: i64 = 100;
const DEFAULT_PAGE: i64 = 20;

/// Your company's events in the log's order (commit order), for auditors and for
/// integrations that follow the log. Paging with `after` never skips an event, even one
/// committed late by a slow writer.
#[utoipa::path(get, path = "/v4/audit/events", tag = "audit",
    params(
        ("after" = Option<i64>, Query, minimum = 0, description = "Position of the last event received (exclusive); 0 or absent: from the start"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "1–100, default 20"),
        ("aggregateId" = Option<super::openapi::FilterText>, Query, description = "Only this aggregate's events"),
        ("type" = Option<super::openapi::FilterText>, Query, description = "Only events of this type, e.g. UserCreated")),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("apiKey" = [])))]
pub async fn audit_events(
    State(state): State<AppState>,
    acting: Acting,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<EventPage>> {
    let mut errors = FieldErrors::new();
    let (after, limit) = page_parameters(&query, &mut errors);
    let mut filter = |name: &str| {
        let value = query.get(name).filter(|v| !v.is_empty())?;
        // Postgres refuses NUL in text, and no id or type holds a control character.
        if value.len() > 200 || value.chars().any(char::is_control) {
            errors.push(
                name,
                format!("{name} must be at most 200 characters, without control characters"),
            );
            return None;
        }
        Some(value.clone())
    };
    let aggregate_id = filter("aggregateId");
    let event_type = filter("type");
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let audit = AuditQuery {
        company_id: acting.caller.company_id,
        after,
        limit,
        aggregate_id,
        event_type,
    };
    let mut connection = state.pool.acquire().await?;
    let mut events = log::audit_page(&mut connection, &audit)
        .await
        .map_err(log_error)?
        .ok_or_else(|| {
            ApiError::field(
                "after",
                "after must be the position of an event you received",
            )
        })?;
    log::open_personal_fields(&mut connection, state.bus.store().keyring(), &mut events)
        .await
        .map_err(log_error)?;
    let last_position = events.last().map(|e| e.position);
    let events: Vec<EventView> = events.into_iter().map(EventView::from).collect();
    Ok(Json(EventPage {
        count: events.len(),
        events,
        last_position,
    }))
}

/// `after` and `limit` of a page of the history, each bad one reported in `errors`.
fn page_parameters(
    query: &HashMap<String, String>,
    errors: &mut FieldErrors,
) -> (Option<i64>, i64) {
    let after = match query.get("after") {
        None => None,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(position) if position >= 0 => Some(position),
            _ => {
                errors.push(
                    "after",
                    "after must be a non-negative integer (an event position)",
                );
                None
            }
        },
    };
    let limit = match query.get("limit") {
        None => DEFAULT_PAGE,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(limit) if (1..=MAX_PAGE).contains(&limit) => limit,
            _ => {
                errors.push("limit", "limit must be an integer between 1 and 100");
                DEFAULT_PAGE
            }
        },
    };
    (after, limit)
}

/// One of your users' events in order, a page at a time as the audit log pages (`after` the
/// last position received, `limit` 1–100, default 20); a deleted user's history stays, with
/// its personal fields reading `[erased]`.
#[utoipa::path(get, path = "/v4/user/{id}/history", tag = "audit",
    params(
        ("id" = Uuid, Path),
        ("after" = Option<i64>, Query, minimum = 0, description = "Position of the last event received (exclusive); 0 or absent: from the first"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "1–100, default 20")),
    responses(
        (status = 200, body = EventPage),
        (status = 400, description = "A malformed id, after or limit", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("apiKey" = [])))]
pub async fn user_history(
    State(state): State<AppState>,
    acting: Acting,
    PathParam(id): PathParam,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<EventPage>> {
    let user_id = parse_path_id(&id, "id")?;
    let mut errors = FieldErrors::new();
    let (after, limit) = page_parameters(&query, &mut errors);
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let mut connection = state.pool.acquire().await?;
    let page = log::stream_page(
        &mut connection,
        acting.caller.company_id,
        User::TYPE,
        &user_id.to_string(),
        after,
        limit,
    )
    .await
    .map_err(log_error)?;
    let Some(mut events) = page else {
        return Err(ApiError::NotFound("User not found"));
    };
    log::open_personal_fields(&mut connection, state.bus.store().keyring(), &mut events)
        .await
        .map_err(log_error)?;
    let last_position = events.last().map(|e| e.position);
    let events: Vec<EventView> = events.into_iter().map(EventView::from).collect();
    Ok(Json(EventPage {
        count: events.len(),
        events,
        last_position,
    }))
}

/// A user's events of `company_id`, personal fields opened.
pub async fn user_events(
    state: &AppState,
    company_id: Uuid,
    user_id: Uuid,
) -> ApiResult<Vec<LogEvent>> {
    let mut connection = state.pool.acquire().await?;
    let mut events = log::company_stream(
        &mut connection,
        company_id,
        User::TYPE,
        &user_id.to_string(),
    )
    .await
    .map_err(log_error)?;
    log::open_personal_fields(&mut connection, state.bus.store().keyring(), &mut events)
        .await
        .map_err(log_error)?;
    Ok(events)
}

fn log_error(error: log::LogError) -> ApiError {
    match error {
        log::LogError::Database(e) => e.into(),
        other => ApiError::Internal(other.to_string()),
    }
}
