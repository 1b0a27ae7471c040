//! The one error type of the API: `{"type": "...", "message": "..."}` with the right status.
//!
//! Messages are written for the person holding the credential. They never contain a secret:
//! request values are not echoed (schema errors are masked), and credentials are described by
//! what is wrong with them, not by their text.

use std::borrow::Cow;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tollgate_core::Action;
use tollgate_store::{Revoked, StoreError};

/// Header naming the action a 403 needed, for tools.
pub const REQUIRED_ACTION_HEADER: HeaderName =
    HeaderName::from_static("x-tollgate-required-action");

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: Cow<'static, str>,
    /// For 403: the action that was needed.
    pub required: Option<Action>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            required: None,
        }
    }

    /// 400: the request is malformed or breaks a rule.
    pub fn validation(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Validation", message)
    }

    /// 401: no credentials, or credentials that are not (or no longer) valid.
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    /// 403: valid credentials without the permission `action` needs.
    pub fn forbidden(action: Action, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            required: Some(action),
            ..Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
        }
    }

    /// 404, naming the kind of thing that was not found ("Application", "API token").
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{what} was not found"),
        )
    }

    pub fn conflict(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The database is unavailable; try again shortly",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Something went wrong on the server; it has been logged",
        )
    }

    /// Map a store error, naming `what` when it is a not-found.
    pub fn from_store(e: StoreError, what: &str) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found(what),
            StoreError::Conflict(thing) => ApiError::conflict(format!("{thing} already exists")),
            StoreError::LastAdmin => ApiError::validation(
                "An organization must keep at least one administrator: make another member an admin first",
            ),
            StoreError::UnknownReference(id) => {
                ApiError::validation(format!("{id} is not an application of this organization"))
            }
            StoreError::UnknownDevice { field } => ApiError::validation(format!(
                "{field} does not name a device of this application"
            )),
            // The credential held when the request was authorized and not when its write
            // came to commit: the write was refused in its own transaction.
            StoreError::Revoked(why) => ApiError::unauthorized(match why {
                Revoked::TokenInactive | Revoked::TokenDeleted => {
                    "This API token was deactivated or deleted: nothing was changed"
                }
                Revoked::TokenExpired => "This API token has expired: nothing was changed",
                Revoked::SessionEnded => {
                    "This session has ended: nothing was changed; log in again"
                }
                Revoked::SessionExpired => {
                    "This session has expired: nothing was changed; log in again"
                }
            }),
            StoreError::NoLongerAdmin => ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "You are no longer an administrator of this organization (another administrator changed your role meanwhile): nothing was changed",
            ),
            StoreError::Contention(_) => ApiError::conflict(
                "This change collided with a concurrent change of the same records and was not made: send it again",
            ),
            e if e.is_unavailable() => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::unavailable()
            }
            e => {
                tracing::error!(error = ?e, "store error");
                ApiError::internal()
            }
        }
    }
}

/// What a store write that runs the server's checks inside its transaction can answer: the
/// checks' own refusal, or a store error not yet worded (so the caller can still name what
/// was not found).
#[derive(Debug)]
pub enum Refusal {
    Api(ApiError),
    Store(StoreError),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Api(e)
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Store(e)
    }
}

impl Refusal {
    /// The answer, naming `what` if something was not found.
    pub fn named(self, what: &str) -> ApiError {
        match self {
            Refusal::Api(e) => e,
            Refusal::Store(e) => ApiError::from_store(e, what),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::from_store(e, "The requested resource")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            message: &'a str,
        }
        let body = Body {
            kind: self.kind,
            message: &self.message,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(action) = self.required {
            headers.insert(
                REQUIRED_ACTION_HEADER,
                HeaderValue::from_static(action.name()),
            );
        }
        response
    }
}
