//! Authentication and the acting user (api.md section 1), as extractors.
//!
//! [`Caller`] is a valid API key's company; [`Acting`] adds the user the request acts as:
//! the one named by `x-meetergo-api-user-id`, or the company's owner without the header.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use projections::user_profiles;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::request_id::RequestId;
use crate::api_keys;
use crate::commands::CommandContext;
use crate::event_store::EventMetadata;

pub const ACTING_USER_HEADER: &str = "x-meetergo-api-user-id";

const MISSING: &str = "Missing authorization header";
const INVALID: &str = "Invalid API key";
const EXPIRED: &str = "API key has expired";

/// An authenticated request: whose key it is.
#[derive(Debug, Clone)]
pub struct Caller {
    pub company_id: Uuid,
    pub key_id: Uuid,
    pub owner_user_id: Uuid,
    pub request_id: Option<String>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Every way to fail below costs the peer's address a token of its budget, so a flood
        // of bad keys ends in cheap 429s (see `auth_limit`); a real key costs nothing.
        let guard = &state.auth_guard;
        let source = || super::serve::peer(&parts.extensions).map(|peer| peer.ip());
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .filter(|value| !value.as_bytes().iter().all(u8::is_ascii_whitespace))
            .ok_or_else(|| guard.failed(source(), ApiError::Unauthorized(MISSING)))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| guard.failed(source(), ApiError::Unauthorized(INVALID)))?;
        let (key_id, secret) = api_keys::parse_token(token)
            .ok_or_else(|| guard.failed(source(), ApiError::Unauthorized(INVALID)))?;
        // Whether this request was already charged for reading an unknown key id.
        let mut charged = false;
        let key = state
            .caches
            .api_keys
            .get_gated(&state.pool, key_id, async {
                let (was_charged, permit) = guard.admit_lookup(source(), key_id).await?;
                charged = was_charged;
                Ok::<_, ApiError>(permit)
            })
            .await?;
        let refuse = |message| {
            if charged {
                ApiError::Unauthorized(message)
            } else {
                guard.failed(source(), ApiError::Unauthorized(message))
            }
        };
        let key = key.ok_or_else(|| refuse(INVALID))?;
        if !api_keys::secret_matches(secret, &key.secret_hash) || key.revoked_at.is_some() {
            return Err(refuse(INVALID));
        }
        if key.expires_at <= state.bus.clock().now() {
            return Err(refuse(EXPIRED));
        }
        // A company the companies projector set aside may have key events it has not
        // applied (a revocation that does not decode): serve none of its keys until fixed.
        // One atomic load while nothing is quarantined.
        if state.caches.quarantine.blocks(
            key.company_id,
            key.company_id,
            &[projections::companies::NAME],
        ) {
            return Err(ApiError::Unavailable(format!(
                "company {} is quarantined by a projector; see `kairos projections status`",
                key.company_id
            )));
        }
        if charged {
            guard.remember([key_id]);
        }
        state.rate_limiter.check(
            key_id,
            parts.extensions.get::<super::rate_limit::RateInfoSlot>(),
        )?;
        Ok(Caller {
            company_id: key.company_id,
            key_id,
            owner_user_id: key.owner_user_id,
            request_id: parts.extensions.get::<RequestId>().map(|id| id.0.clone()),
        })
    }
}

/// The user a request acts as.
#[derive(Debug, Clone)]
pub struct Acting {
    pub caller: Caller,
    pub user_id: Uuid,
}

impl FromRequestParts<AppState> for Acting {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let user_id = match parts.headers.get(ACTING_USER_HEADER) {
            None => caller.owner_user_id,
            Some(value) => {
                let user_id = value
                    .to_str()
                    .ok()
                    .and_then(|v| Uuid::parse_str(v.trim()).ok())
                    .ok_or_else(|| {
                        ApiError::field(
                            ACTING_USER_HEADER,
                            format!("{ACTING_USER_HEADER} must be a UUID"),
                        )
                    })?;
                // A quarantined user's profile may be missing: 503, not a wrong 404.
                if super::users::quarantined(
                    state,
                    caller.company_id,
                    user_id,
                    &[projections::users::NAME],
                ) {
                    return Err(super::users::quarantined_error(user_id));
                }
                if !user_profiles::exists(&state.pool, caller.company_id, user_id).await? {
                    return Err(ApiError::NotFound("User not found"));
                }
                user_id
            }
        };
        Ok(Acting { caller, user_id })
    }
}

impl Acting {
    /// The context commands of this request record in their events' metadata.
    pub fn command_context(&self) -> CommandContext {
        CommandContext {
            metadata: EventMetadata {
                request_id: self.caller.request_id.clone(),
                api_key_id: Some(self.caller.key_id),
                acting_user_id: Some(self.user_id),
                company_id: Some(self.caller.company_id),
                origin: "http",
            },
            company_id: Some(self.caller.company_id),
            new_aggregate: false,
        }
    }
}
