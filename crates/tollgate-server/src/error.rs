//! The one error type of the API: `{"type": "...", "message": "..."}` with the right status.
//!
//! Messages are written for the person holding the credential. They never contain a secret:
//! request values are not echoed (schema errors are masked), credentials are described by
//! what is wrong with them, not by their text, and every message is passed through
//! [`tollgate_core::secret::redact`] when the error is made and again when it is sent, so a
//! string with a secret's shape that reached a message anyway (a token pasted as a scope,
//! quoted, upper-cased, after `Bearer `…) is replaced, wherever it sits.

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
    /// For the log only (never sent): what went wrong behind a 5xx.
    pub detail: Option<String>,
    /// For 429 and 503: seconds until a retry may succeed (`Retry-After`).
    pub retry_after: Option<u64>,
    /// For 401: the request carried no credential at all, so its `WWW-Authenticate`
    /// challenge names no error (RFC 6750 §3.1).
    pub no_credentials: bool,
    /// More response headers (a rate limit's `RateLimit-*` fields): lowercase names.
    pub headers: Vec<(&'static str, String)>,
}

/// The longest message a client is sent. Messages that list offending items name the first
/// few and count the rest ([`some_of`]); this is the backstop.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// How many offending items a message names before it counts the rest.
pub const NAMED_ITEMS: usize = 5;

/// "a, b, c, d, e and 19,995 more": the first [`NAMED_ITEMS`] of `items`, joined, and how
/// many more there are.
pub fn some_of<S: AsRef<str>>(items: &[S]) -> String {
    let named: Vec<&str> = items.iter().take(NAMED_ITEMS).map(AsRef::as_ref).collect();
    let mut out = named.join(", ");
    if items.len() > NAMED_ITEMS {
        out.push_str(&format!(" and {} more", items.len() - NAMED_ITEMS));
    }
    out
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        ApiError {
            status,
            kind,
            message: redacted(message.into()),
            required: None,
            detail: None,
            retry_after: None,
            no_credentials: false,
            headers: Vec::new(),
        }
    }

    /// 413: the body is larger than the server accepts.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!(
                "The request body is larger than the limit of {} ({limit} bytes)",
                human_bytes(limit)
            ),
        )
    }

    /// 507: the database's disk is full. Nothing was written; reads still work.
    pub fn storage_full() -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "InsufficientStorage",
            "The database's disk is full: nothing was written. Reads still work; writes work \
             again as soon as space is freed on the database's disk",
        )
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

    /// 403: the token's restrictions (not its scope) refuse the request; the message names
    /// the rule. No `X-Tollgate-Required-Action`: a broader scope would not help.
    pub fn restricted(_action: Action, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
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

    /// 503 for a statement the database cancelled at its `statement_timeout`.
    pub fn unavailable_timeout() -> Self {
        ApiError {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The database did not finish this request in time (the server's --db-timeout-ms); try again shortly or ask for less",
            )
        }
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The database is unavailable; try again shortly",
        )
    }

    /// 503 for a request whose database work did not finish within the deadline.
    pub fn database_timeout(timeout: std::time::Duration) -> Self {
        ApiError {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                format!(
                    "The database did not answer within {} ms (the server's --db-timeout-ms); try again shortly",
                    timeout.as_millis()
                ),
            )
        }
    }

    /// 503 with a reason and a retry hint, for work refused because a bound is reached.
    pub fn busy(message: impl Into<Cow<'static, str>>, retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                message,
            )
        }
    }

    /// 429: too many attempts; `retry_after` seconds until the next is allowed.
    pub fn too_many_requests(message: impl Into<Cow<'static, str>>, retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message)
        }
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
            StoreError::QuotaExceeded { remaining } => ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "A token cannot be more powerful than its creator: its usageLimit is carved out of the creator's remaining uses, and the creator has {remaining} left to give"
                ),
            ),
            StoreError::NoLongerAdmin => ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "You are no longer an administrator of this organization (another administrator changed your role meanwhile): nothing was changed",
            ),
            StoreError::Contention(_) => ApiError::conflict(
                "This change collided with a concurrent change of the same records and was not made: send it again",
            ),
            // Logged with the request it belongs to (see `observe`).
            e if e.is_storage_full() => ApiError {
                detail: Some(format!("write refused: the database's disk is full: {e:?}")),
                ..ApiError::storage_full()
            },
            e if e.is_unavailable() => {
                let detail = Some(format!("database unavailable: {e}"));
                if e.is_timeout() {
                    ApiError {
                        detail,
                        ..ApiError::unavailable_timeout()
                    }
                } else if e.is_pool_timeout() {
                    ApiError {
                        detail,
                        ..ApiError::busy(
                            "No database connection answered within the server's --db-timeout-ms: the database is down, unreachable or saturated; try again shortly",
                            1,
                        )
                    }
                } else {
                    ApiError {
                        detail,
                        ..ApiError::unavailable()
                    }
                }
            }
            e => ApiError {
                detail: Some(format!("store error: {e:?}")),
                ..ApiError::internal()
            },
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
        // Fields are public and may have been changed since `new`: redact again, then
        // shorten (in that order, so a cut cannot leave part of a secret unrecognised).
        let message = redacted(self.message);
        let message = match message.char_indices().nth(MAX_MESSAGE_CHARS) {
            Some((cut, _)) => format!("{}… (message shortened)", &message[..cut]),
            None => message.to_string(),
        };
        let body = Body {
            kind: self.kind,
            message: &message,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(challenge) = challenge(self.status, self.no_credentials, self.required) {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
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

/// The RFC 6750 challenge of a 401 or 403, beside the JSON body: `error="invalid_token"` for a
/// credential that is not (or no longer) valid, none when there was no credential, and
/// `error="insufficient_scope"` with the scope strings that would grant the action for a 403.
fn challenge(
    status: StatusCode,
    no_credentials: bool,
    required: Option<Action>,
) -> Option<HeaderValue> {
    let value = match status {
        StatusCode::UNAUTHORIZED if no_credentials => "Bearer".to_owned(),
        StatusCode::UNAUTHORIZED => r#"Bearer error="invalid_token""#.to_owned(),
        StatusCode::FORBIDDEN => match required {
            // Scope strings are `resource.action` and `all.Application…`: no quotes or
            // backslashes, so they sit in a quoted-string as they are.
            Some(action) if action.def().family == tollgate_core::Family::Application => format!(
                r#"Bearer error="insufficient_scope", scope="{}""#,
                tollgate_core::scope::granting(&action).join(" ")
            ),
            _ => r#"Bearer error="insufficient_scope""#.to_owned(),
        },
        _ => return None,
    };
    HeaderValue::from_str(&value).ok()
}

/// The message with anything of a secret's shape hidden.
fn redacted(message: Cow<'static, str>) -> Cow<'static, str> {
    match tollgate_core::secret::redact(&message) {
        Cow::Borrowed(_) => message,
        Cow::Owned(clean) => Cow::Owned(clean),
    }
}

/// 1048576 → "1 MiB".
fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_name_a_few_and_count_the_rest() {
        assert_eq!(some_of(&["a", "b"]), "a, b");
        let many: Vec<String> = (0..20_000).map(|i| format!("x{i}")).collect();
        assert_eq!(some_of(&many), "x0, x1, x2, x3, x4 and 19995 more");
    }

    #[tokio::test]
    async fn long_messages_are_cut_and_retry_after_is_sent() {
        let res = ApiError::validation("y".repeat(50_000)).into_response();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(bytes.len() < MAX_MESSAGE_CHARS + 100, "{}", bytes.len());
        let res = ApiError::too_many_requests("slow down", 7).into_response();
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()[header::RETRY_AFTER], "7");
    }
}
