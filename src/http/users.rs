//! `/v4/user…` (api.md section 2): create, read, list, update and delete platform users.

use aggregates::availability::AvailabilityInput;
use aggregates::effects::ClaimKind;
use aggregates::input::{FieldErrors, Raw};
use aggregates::meeting_type::MeetingTypeInput;
use aggregates::slug;
use aggregates::user::{
    CreatePlatformUser, UpdateProfile, User, UserCommand, UserError, UserEvent, UserType,
};
use aggregates::values::Slug;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cqrs_es::persist::PersistenceError;
use projections::{bookable_windows, user_profiles, users};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::Acting;
use super::error::{ApiError, ApiResult, ErrorBody, database_cause, database_unavailable};
use super::extract::{AppJson, HashedJson, PathParam, QueryMap, parse_path_id};
use super::openapi;
use super::views::{CreatedUser, UserList, UserView};
use crate::commands::{CommandContext, CommandError, IdempotencyKey, Outcome};
use crate::event_store::AppendError;

/// The read models a caller of the user endpoints reads next: a command's answer waits for
/// them (read-your-writes).
pub const USER_READ_MODELS: &[&str] = &[users::NAME, bookable_windows::NAME];

/// Derived slugs race with concurrent creations of namesakes; each lost race moves on to
/// the next free suffix (the first attempt tries the bare derived slug without a lookup).
const SLUG_ATTEMPTS: u32 = 65;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v4/user", get(list_users).post(create_user))
        .route("/v4/user/me", get(me))
        .route(
            "/v4/user/{id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
}

/// `POST /v4/user`. Fields are `Raw` so that every bad one is reported, whatever its kind
/// (hence `serde(default)` everywhere, and `required` said to the schema by hand).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateUserRequest {
    #[serde(default)]
    #[schema(value_type = openapi::Email, required = true)]
    email: Raw<String>,
    #[serde(default)]
    #[schema(value_type = openapi::Label, example = "John", required = true)]
    given_name: Raw<String>,
    #[serde(default)]
    #[schema(value_type = openapi::Label, example = "Smith", required = true)]
    family_name: Raw<String>,
    /// IANA time zone name.
    #[serde(default)]
    #[schema(value_type = openapi::TimeZone, required = true)]
    timezone: Raw<String>,
    /// Derived from the name when omitted; at least 5 characters, unique installation-wide.
    #[serde(default)]
    #[schema(value_type = Option<openapi::UserSlug>)]
    slug: Raw<String>,
    /// Defaults to Monday–Friday 09:00–17:00 in the user's time zone.
    #[serde(default)]
    #[schema(value_type = Option<AvailabilityRequest>)]
    availability: Raw<AvailabilityInput>,
    /// Defaults to "30min Meeting", 30 minutes.
    #[serde(default)]
    #[schema(value_type = Option<MeetingTypeRequest>)]
    meeting_type: Raw<MeetingTypeInput>,
}

/// The `availability` of `POST /v4/user` (documentation of the accepted shape).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AvailabilityRequest {
    /// Defaults to `Business Hours`.
    #[schema(value_type = Option<openapi::Label>, example = "Business Hours")]
    name: Option<String>,
    /// Without it the availability follows the user's time zone, also when that changes.
    #[schema(value_type = Option<openapi::TimeZone>)]
    timezone: Option<String>,
    /// Each day at most once; a missing day is unavailable.
    #[schema(max_items = 7)]
    schedule: Vec<ScheduleDay>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct ScheduleDay {
    #[schema(value_type = openapi::Weekday)]
    day_of_week: String,
    /// Up to 12 per day; may touch, must not overlap.
    #[schema(max_items = 12)]
    intervals: Vec<ScheduleInterval>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ScheduleInterval {
    /// `HH:MM`, 00:00–23:59.
    #[schema(value_type = openapi::TimeFrom)]
    from: String,
    /// `HH:MM`, up to 24:00, after `from`.
    #[schema(value_type = openapi::TimeTo)]
    to: String,
}

/// The flat `meetingType` of `POST /v4/user`.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "camelCase")]
pub struct MeetingTypeRequest {
    #[schema(value_type = openapi::Label, example = "Discovery Call")]
    name: String,
    /// Minutes, 5–480.
    #[schema(example = 45, minimum = 5, maximum = 480)]
    duration: i64,
    /// Derived from the name when omitted.
    #[schema(value_type = Option<openapi::MeetingTypeSlug>)]
    slug: Option<String>,
    /// The slot step in minutes, 5–480; defaults to the duration.
    #[schema(minimum = 5, maximum = 480)]
    slot_interval: Option<i64>,
    /// Minutes, 0–120.
    #[schema(minimum = 0, maximum = 120)]
    buffer_before: Option<i64>,
    /// Minutes, 0–120.
    #[schema(minimum = 0, maximum = 120)]
    buffer_after: Option<i64>,
    /// Minimum notice in minutes, 0–525600.
    #[schema(minimum = 0, maximum = 525600)]
    minimum_notice: Option<i64>,
    /// How far ahead slots are offered, 1–365 days; default 60.
    #[schema(minimum = 1, maximum = 365)]
    horizon_days: Option<i64>,
}

/// `PATCH /v4/user/{id}`: any of these, at least one (none can be `null`); the document adds
/// `minProperties` and the `anyOf` that says so (`openapi::document`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateUserRequest {
    #[serde(default)]
    #[schema(value_type = openapi::Label)]
    given_name: Raw<String>,
    #[serde(default)]
    #[schema(value_type = openapi::Label)]
    family_name: Raw<String>,
    #[serde(default)]
    #[schema(value_type = openapi::UserSlug)]
    slug: Raw<String>,
    #[serde(default)]
    #[schema(value_type = openapi::TimeZone)]
    timezone: Raw<String>,
}

/// Create a platform user with its default (or given) availability and meeting type.
#[utoipa::path(post, path = "/v4/user", tag = "users", request_body = CreateUserRequest,
    params(("Idempotency-Key" = Option<openapi::IdempotencyKey>, Header, description = "Replays return the first response")),
    responses(
        (status = 201, body = CreatedUser),
        (status = 400, description = "Every invalid field", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "A user with this email already exists / Slug already taken / \
            the Idempotency-Key was used with another request, or its result was deleted since", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("apiKey" = [])))]
pub async fn create_user(
    State(state): State<AppState>,
    acting: Acting,
    headers: HeaderMap,
    HashedJson(body, digest): HashedJson<CreateUserRequest>,
) -> ApiResult<Response> {
    let idempotency =
        idempotency_key(&headers, acting.caller.company_id, "POST /v4/user", &digest)?;
    let context = CommandContext {
        new_aggregate: true,
        ..acting.command_context()
    };
    let user_id = Uuid::now_v7();
    let availability_id = Uuid::now_v7();
    let meeting_type_id = Uuid::now_v7();
    let explicit_slug = matches!(body.slug, Raw::Given(_));
    let slug_base = match (&body.given_name, &body.family_name) {
        (Raw::Given(given), Raw::Given(family)) => {
            slug::base_of(&format!("{} {}", given.trim(), family.trim()))
        }
        _ => slug::FALLBACK_BASE.to_string(),
    };
    let public_url = state.public_url.clone();
    let respond = |events: &[UserEvent]| {
        (
            201,
            serde_json::to_value(created_user(events, &public_url)).unwrap_or(Value::Null),
        )
    };

    let mut attempt = 0;
    let outcome = loop {
        // The first attempt assumes the derived slug is free (most are) and spares the
        // lookup; a taken one costs a refused append, then the bounded lookup says which
        // candidate is next (and a loser of a race for it looks again).
        let taken_user_slugs = if explicit_slug || attempt == 0 {
            slug::TakenCandidates::none()
        } else {
            state
                .bus
                .store()
                .taken_user_slug_candidates(
                    &slug_base,
                    slug::first_suffix(&slug_base, Slug::USER_MIN_LEN),
                )
                .await?
        };
        let command = UserCommand::CreatePlatformUser(Box::new(CreatePlatformUser {
            user_id,
            company_id: acting.caller.company_id,
            user_type: UserType::ApiPlatform,
            is_owner: false,
            availability_id,
            meeting_type_id,
            email: body.email.clone(),
            given_name: body.given_name.clone(),
            family_name: body.family_name.clone(),
            timezone: body.timezone.clone(),
            slug: body.slug.clone(),
            availability: body.availability.clone(),
            meeting_type: body.meeting_type.clone(),
            taken_user_slugs,
            at: state.bus.clock().now(),
        }));
        let result = state
            .bus
            .execute_idempotent::<User>(
                &user_id.to_string(),
                command,
                &context,
                idempotency.as_ref(),
                respond,
            )
            .await;
        match result {
            Err(CommandError::ClaimTaken {
                kind: ClaimKind::UserSlug,
                ..
            }) if !explicit_slug && attempt < SLUG_ATTEMPTS => {
                attempt += 1;
            }
            other => break other.map_err(user_error)?,
        }
    };
    match outcome {
        Outcome::Replayed {
            status,
            body,
            position,
        } => {
            state.bus.wait_for(USER_READ_MODELS, position).await;
            Ok(replayed(status, body))
        }
        Outcome::Committed(committed) => {
            state
                .bus
                .wait_for(USER_READ_MODELS, committed.position)
                .await;
            Ok((
                StatusCode::CREATED,
                Json(created_user(&committed.events, &state.public_url)),
            )
                .into_response())
        }
    }
}

fn created_user(events: &[UserEvent], public_url: &str) -> CreatedUser {
    let mut created = CreatedUser {
        user_id: Uuid::nil(),
        availability_id: Uuid::nil(),
        meeting_type_id: Uuid::nil(),
        booking_url: String::new(),
        company_id: Uuid::nil(),
    };
    let mut user_slug = "";
    for event in events {
        match event {
            UserEvent::UserCreated {
                user_id,
                company_id,
                slug,
                ..
            } => {
                created.user_id = *user_id;
                created.company_id = *company_id;
                user_slug = slug;
            }
            UserEvent::AvailabilityProvisioned {
                availability_id, ..
            } => created.availability_id = *availability_id,
            UserEvent::MeetingTypeProvisioned {
                meeting_type_id,
                slug,
                ..
            } => {
                created.meeting_type_id = *meeting_type_id;
                created.booking_url = format!(
                    "{}/{}/{}",
                    public_url.trim_end_matches('/'),
                    user_slug,
                    slug
                );
            }
            _ => {}
        }
    }
    created
}

/// The acting user: the one named by `x-meetergo-api-user-id`, else the company's owner.
#[utoipa::path(get, path = "/v4/user/me", tag = "users",
    params(("x-meetergo-api-user-id" = Option<String>, Header, description = "Act as this user of your company")),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("apiKey" = [])))]
pub async fn me(State(state): State<AppState>, acting: Acting) -> ApiResult<Json<UserView>> {
    find_user(&state, acting.caller.company_id, acting.user_id).await
}

/// One user of your company; with `asOf`, the user as it was at that instant, rebuilt from
/// its events.
#[utoipa::path(get, path = "/v4/user/{id}", tag = "users",
    params(("id" = Uuid, Path),
        ("asOf" = Option<chrono::DateTime<chrono::Utc>>, Query, description = "An RFC 3339 instant: the user as it was then")),
    responses((status = 200, body = UserView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("apiKey" = [])))]
pub async fn get_user(
    State(state): State<AppState>,
    acting: Acting,
    PathParam(id): PathParam,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<UserView>> {
    let user_id = parse_path_id(&id, "id")?;
    match query.get("asOf") {
        None => find_user(&state, acting.caller.company_id, user_id).await,
        Some(raw) => {
            let as_of = parse_as_of(raw)
                .map_err(|_| {
                    ApiError::field(
                        "asOf",
                        "asOf must be an RFC 3339 instant, e.g. 2024-01-15T10:30:00Z",
                    )
                })?
                .with_timezone(&chrono::Utc);
            // An event counts from the instant it happened (its own `at`, which `createdAt`
            // and `updatedAt` show; it is recorded a moment later). Instants are shown to the
            // second (section 0) but events happen within one: an instant given to the second
            // covers that whole second, so `asOf=<createdAt>` finds the user as created. A
            // fractional instant is taken exactly.
            let through = if as_of.timestamp_subsec_nanos() == 0 {
                as_of
                    .checked_add_signed(chrono::Duration::nanoseconds(999_999_999))
                    .unwrap_or(as_of)
            } else {
                as_of
            };
            user_from_log(&state, acting.caller.company_id, user_id, Some(through)).await
        }
    }
}

/// The user as its events say, up to `through` (everything when `None`): for `asOf`, and
/// for the answer to a change of a user whose read model is quarantined.
async fn user_from_log(
    state: &AppState,
    company_id: Uuid,
    user_id: Uuid,
    through: Option<chrono::DateTime<chrono::Utc>>,
) -> ApiResult<Json<UserView>> {
    let mut user = User::default();
    for event in super::audit::user_events(state, company_id, user_id).await? {
        let decoded: UserEvent = event
            .decode()
            .map_err(|e| ApiError::Internal(format!("history of {user_id}: {e}")))?;
        if through.is_some_and(|through| decoded.at() > through) {
            break;
        }
        cqrs_es::Aggregate::apply(&mut user, decoded);
    }
    match user.state() {
        Some(state) if !state.deleted => Ok(Json(UserView::from(state))),
        _ => Err(ApiError::NotFound("User not found")),
    }
}

/// The projectors whose read models a user's profile is served from.
const PROFILE_PROJECTORS: &[&str] = &[projections::users::NAME];

/// Whether a projector has set this user aside ([`projections::quarantine`]): its read
/// model may be stale or missing, so reads of it answer 503 rather than either.
pub fn quarantined(state: &AppState, company_id: Uuid, user_id: Uuid, projectors: &[&str]) -> bool {
    state
        .caches
        .quarantine
        .blocks(company_id, user_id, projectors)
}

/// The 503 a read of a quarantined user answers (the detail goes to the log only).
pub fn quarantined_error(user_id: Uuid) -> ApiError {
    ApiError::Unavailable(format!(
        "user {user_id} is quarantined by a projector; see `kairos projections status`"
    ))
}

/// An RFC 3339 instant from the query string. A `+` offset sent unencoded arrives as a space
/// (form decoding), which no RFC 3339 instant has there: read it as the `+` it was.
fn parse_as_of(raw: &str) -> chrono::ParseResult<chrono::DateTime<chrono::FixedOffset>> {
    let raw = raw.trim();
    chrono::DateTime::parse_from_rfc3339(raw).or_else(|error| match raw.rsplit_once(' ') {
        Some((instant, offset)) => {
            chrono::DateTime::parse_from_rfc3339(&format!("{instant}+{offset}"))
        }
        None => Err(error),
    })
}

async fn find_user(state: &AppState, company_id: Uuid, user_id: Uuid) -> ApiResult<Json<UserView>> {
    if quarantined(state, company_id, user_id, PROFILE_PROJECTORS) {
        return Err(quarantined_error(user_id));
    }
    let user = user_profiles::find(&state.pool, company_id, user_id)
        .await?
        .ok_or(ApiError::NotFound("User not found"))?;
    Ok(Json(user.into()))
}

/// Your company's users, oldest first.
#[utoipa::path(get, path = "/v4/user", tag = "users",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "1–100, default 20"),
        ("skip" = Option<i64>, Query, minimum = 0, description = "≥ 0, default 0"),
        ("userType" = Option<openapi::UserTypeName>, Query, description = "`api-platform` or `standard`")),
    responses((status = 200, body = UserList), (status = 400, body = ErrorBody)),
    security(("apiKey" = [])))]
pub async fn list_users(
    State(state): State<AppState>,
    acting: Acting,
    QueryMap(query): QueryMap,
) -> ApiResult<Json<UserList>> {
    let mut errors = FieldErrors::new();
    let limit = integer_param(&query, "limit", 20, 1, 100, &mut errors);
    let skip = integer_param(&query, "skip", 0, 0, i64::MAX, &mut errors);
    let user_type = match query.get("userType") {
        None => None,
        Some(raw) => match UserType::parse(raw) {
            Some(user_type) => Some(user_type),
            None => {
                errors.push("userType", "userType must be api-platform or standard");
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let mut connection = state.pool.acquire().await?;
    let (users, total) = user_profiles::list(
        &mut connection,
        acting.caller.company_id,
        user_type,
        limit,
        skip,
    )
    .await?;
    if let Some(user) = users.iter().find(|user| {
        quarantined(
            &state,
            acting.caller.company_id,
            user.user_id,
            PROFILE_PROJECTORS,
        )
    }) {
        return Err(quarantined_error(user.user_id));
    }
    let users: Vec<UserView> = users.into_iter().map(UserView::from).collect();
    Ok(Json(UserList {
        count: users.len(),
        users,
        total,
        skip,
    }))
}

fn integer_param(
    query: &std::collections::HashMap<String, String>,
    name: &str,
    default: i64,
    min: i64,
    max: i64,
    errors: &mut FieldErrors,
) -> i64 {
    let Some(raw) = query.get(name) else {
        return default;
    };
    match raw.trim().parse::<i64>() {
        Ok(value) if (min..=max).contains(&value) => value,
        _ if max == i64::MAX => {
            errors.push(name, format!("{name} must be an integer ≥ {min}"));
            default
        }
        _ => {
            errors.push(
                name,
                format!("{name} must be an integer between {min} and {max}"),
            );
            default
        }
    }
}

/// Rename a user, change its slug or time zone.
#[utoipa::path(patch, path = "/v4/user/{id}", tag = "users", request_body = UpdateUserRequest,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = UserView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Slug already taken", body = ErrorBody)),
    security(("apiKey" = [])))]
pub async fn update_user(
    State(state): State<AppState>,
    acting: Acting,
    PathParam(id): PathParam,
    AppJson(body): AppJson<UpdateUserRequest>,
) -> ApiResult<Json<UserView>> {
    let user_id = parse_path_id(&id, "id")?;
    let command = UserCommand::UpdateProfile(UpdateProfile {
        company_id: acting.caller.company_id,
        given_name: body.given_name,
        family_name: body.family_name,
        slug: body.slug,
        timezone: body.timezone,
        at: state.bus.clock().now(),
    });
    let committed = state
        .bus
        .execute::<User>(&user_id.to_string(), command, &acting.command_context())
        .await
        .map_err(user_error)?;
    state
        .bus
        .wait_for(USER_READ_MODELS, committed.position)
        .await;
    if quarantined(
        &state,
        acting.caller.company_id,
        user_id,
        PROFILE_PROJECTORS,
    ) {
        // The change is recorded; the read model cannot show it. The log can.
        return user_from_log(&state, acting.caller.company_id, user_id, None).await;
    }
    find_user(&state, acting.caller.company_id, user_id).await
}

/// Delete a user: not yourself, not the owner. Its email and slug become free and its
/// personal data is erased from the history.
#[utoipa::path(delete, path = "/v4/user/{id}", tag = "users",
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("apiKey" = [])))]
pub async fn delete_user(
    State(state): State<AppState>,
    acting: Acting,
    PathParam(id): PathParam,
) -> ApiResult<StatusCode> {
    let user_id = parse_path_id(&id, "id")?;
    let command = UserCommand::DeleteUser {
        company_id: acting.caller.company_id,
        acting_user_id: acting.user_id,
        at: state.bus.clock().now(),
    };
    let committed = state
        .bus
        .execute::<User>(&user_id.to_string(), command, &acting.command_context())
        .await
        .map_err(user_error)?;
    state
        .bus
        .wait_for(USER_READ_MODELS, committed.position)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// How a refused user command reads to the client.
pub fn user_error(error: CommandError<UserError>) -> ApiError {
    match error {
        CommandError::Rejected(UserError::Invalid(errors)) => errors.into(),
        CommandError::Rejected(UserError::NotFound) => ApiError::NotFound("User not found"),
        CommandError::Rejected(UserError::AlreadyExists) => {
            ApiError::Conflict("User already exists".into())
        }
        CommandError::Rejected(UserError::CannotDeleteOwner) => {
            ApiError::Forbidden("The company owner cannot be deleted".into())
        }
        CommandError::Rejected(UserError::CannotDeleteYourself) => {
            ApiError::Forbidden("You cannot delete yourself".into())
        }
        CommandError::ClaimTaken { kind, .. } => ApiError::Conflict(
            match kind {
                ClaimKind::UserEmail => "A user with this email already exists",
                ClaimKind::UserSlug => "Slug already taken",
                ClaimKind::MeetingTypeSlug => "Meeting type slug already taken",
            }
            .into(),
        ),
        other => command_error(other),
    }
}

/// The parts of a command failure every endpoint maps the same way.
pub fn command_error<E: std::error::Error>(error: CommandError<E>) -> ApiError {
    match error {
        CommandError::Conflict => {
            ApiError::Conflict("The resource was changed concurrently; retry the request".into())
        }
        CommandError::IdempotencyMismatch => ApiError::Conflict(
            "This Idempotency-Key was already used with a different request".into(),
        ),
        CommandError::ResultErased => ApiError::Conflict(
            "This request was already processed; its result has since been deleted".into(),
        ),
        CommandError::Store(AppendError::Database(e)) => e.into(),
        CommandError::Store(AppendError::Load(
            PersistenceError::ConnectionError(cause) | PersistenceError::UnknownError(cause),
        )) if database_cause(cause.as_ref()).is_some_and(database_unavailable) => {
            ApiError::Unavailable(cause.to_string())
        }
        CommandError::Store(other) => ApiError::Internal(other.to_string()),
        CommandError::Rejected(e) => ApiError::Internal(format!("unmapped rejection: {e}")),
        CommandError::ClaimTaken { kind, .. } => {
            ApiError::Conflict(format!("{} already taken", kind.as_str()))
        }
    }
}

/// The `Idempotency-Key` header, bound to this route and body.
pub fn idempotency_key(
    headers: &HeaderMap,
    company_id: Uuid,
    route: &str,
    body_digest: &str,
) -> ApiResult<Option<IdempotencyKey>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| {
            !key.is_empty() && key.len() <= 255 && key.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::field(
                "Idempotency-Key",
                "Idempotency-Key must be 1–255 visible ASCII characters",
            )
        })?;
    let fingerprint = hex::encode(Sha256::digest(format!("{route}\n{body_digest}")));
    Ok(Some(IdempotencyKey {
        company_id,
        key: key.to_string(),
        fingerprint,
    }))
}

fn replayed(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        "idempotent-replayed",
        axum::http::HeaderValue::from_static("true"),
    );
    response
}
