//! The one place that decides status codes and the error body (api.md section 0):
//!
//! ```json
//! {"statusCode": 400, "message": "…", "error": "Bad Request",
//!  "errors": [{"field": "startDate", "message": "…"}]}
//! ```
//!
//! A 5xx never carries internals: the cause is logged here, once, inside the request's span
//! (which carries the request id), and the client gets a generic sentence.

use aggregates::input::{FieldError, FieldErrors};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with every bad field.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 400 with every bad field and a sentence of the spec's own for them.
    #[error("{0}")]
    ValidationMessage(String, Vec<FieldError>),
    /// 400 that is not about a single field (or names it in the sentence).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("rate limited")]
    TooManyRequests { retry_after_seconds: u64 },
    /// 503: the database cannot be reached (or the request ran out of time).
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure; the detail is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The error body every failing request answers with.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[schema(example = 400)]
    pub status_code: u16,
    #[schema(example = "Invalid date format. Use YYYY-MM-DD")]
    pub message: String,
    #[schema(example = "Bad Request")]
    pub error: String,
    /// Present for validation failures: every failing field, not just the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldErrorBody>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldErrorBody {
    #[schema(example = "startDate")]
    pub field: String,
    #[schema(example = "Invalid date format. Use YYYY-MM-DD")]
    pub message: String,
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError {
            field: field.to_string(),
            message: message.into(),
        }])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::ValidationMessage(..) | ApiError::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> ErrorBody {
        let status = self.status();
        let (message, errors) = match self {
            ApiError::Validation(errors) => {
                let message = match errors.as_slice() {
                    [only] => only.message.clone(),
                    // Name every bad field in the sentence too; `errors` says what is wrong.
                    _ => format!(
                        "{} fields are invalid: {}",
                        errors.len(),
                        errors
                            .iter()
                            .map(|e| e.field.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                (message, Some(field_bodies(errors)))
            }
            ApiError::ValidationMessage(message, errors) => {
                (message.clone(), Some(field_bodies(errors)))
            }
            ApiError::BadRequest(message)
            | ApiError::Forbidden(message)
            | ApiError::Conflict(message) => (message.clone(), None),
            ApiError::Unauthorized(message) | ApiError::NotFound(message) => {
                (message.to_string(), None)
            }
            ApiError::MethodNotAllowed => ("Method not allowed for this route".to_string(), None),
            ApiError::PayloadTooLarge => ("Request body must not exceed 64 KiB".to_string(), None),
            ApiError::UnsupportedMediaType => {
                ("Content-Type must be application/json".to_string(), None)
            }
            ApiError::TooManyRequests { .. } => ("Too Many Requests".to_string(), None),
            ApiError::Unavailable(_) => (
                "Service temporarily unavailable; retry shortly".to_string(),
                None,
            ),
            ApiError::Internal(_) => ("Internal server error".to_string(), None),
        };
        ErrorBody {
            status_code: status.as_u16(),
            message,
            error: status.canonical_reason().unwrap_or("Error").to_string(),
            errors,
        }
    }
}

fn field_bodies(errors: &[FieldError]) -> Vec<FieldErrorBody> {
    errors
        .iter()
        .map(|e| FieldErrorBody {
            field: e.field.clone(),
            message: e.message.clone(),
        })
        .collect()
}

impl From<FieldErrors> for ApiError {
    fn from(errors: FieldErrors) -> Self {
        ApiError::Validation(errors.into_vec())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if database_unavailable(&error) {
            ApiError::Unavailable(error.to_string())
        } else {
            ApiError::Internal(error.to_string())
        }
    }
}

/// Whether `error` says the database cannot serve now, rather than that Kairos is wrong: a
/// 503, not a 500.
pub fn database_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        // 57014: statement_timeout, the database is overloaded. Class 08 (connection
        // exception) and 57P01–57P05 (shutting down, restarting, not yet accepting): the
        // database went away under a pooled connection, which is then discarded, so a retry
        // finds a fresh one.
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code == "57014" || code.starts_with("08") || code.starts_with("57P")
        }),
        _ => false,
    }
}

/// The database error somewhere in `error`'s chain of causes, if any (errors from other
/// crates, such as cqrs-es's, carry it boxed).
pub fn database_cause<'a>(
    mut error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a sqlx::Error> {
    loop {
        if let Some(database) = error.downcast_ref::<sqlx::Error>() {
            return Some(database);
        }
        error = error.source()?;
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(detail) => tracing::error!(%detail, "request failed"),
            ApiError::Unavailable(detail) => tracing::warn!(%detail, "request failed: unavailable"),
            _ => tracing::debug!(status = status.as_u16(), error = %self, "request refused"),
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        if let ApiError::TooManyRequests {
            retry_after_seconds,
        } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after_seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
