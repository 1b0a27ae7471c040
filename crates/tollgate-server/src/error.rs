//! The one error type of the API: `{"type": "...", "message": "..."}` with the right status.
//!
//! Messages are written for the person holding the credential. They never contain a secret:
//! request values are not echoed (schema errors are masked), and credentials are described by
//! what is wrong with them, not by their text.

use std::borrow::Cow;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tollgate_core::Action;
use tollgate_store::StoreError;

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
    /// For the log only (never sent): what went wrong behind a 5xx.
    pub detail: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            required: None,
            detail: None,
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
            // Logged with the request it belongs to (see `observe`).
            e if e.is_unavailable() => ApiError {
                detail: Some(format!("database unavailable: {e}")),
                ..ApiError::unavailable()
            },
            e => ApiError {
                detail: Some(format!("store error: {e:?}")),
                ..ApiError::internal()
            },
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
        if let Some(detail) = self.detail {
            response
                .extensions_mut()
                .insert(crate::observe::ErrorDetail(detail));
        }
        response
    }
}
