//! `auth.authenticateUser`: email and password in, a session token out.

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_core::secret::{Secret, SecretKind};
use tollgate_store::{Id, now_ms};

use crate::auth::passwords::{self, HashError};
use crate::auth::throttle::Key;
use crate::auth::{UserAccess, bearer};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, ClientAddr, RequestBody};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserCredentials {
    email: String,
    password: String,
    requested_scopes: Option<Vec<String>>,
    /// Seconds the session should last (capped at the server's session lifetime).
    #[serde(rename = "tokenTTL")]
    token_ttl: Option<u64>,
}

impl RequestBody for UserCredentials {
    const SCHEMA: &'static str = "userCredentials";
}

pub async fn authenticate_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientAddr(client): ClientAddr,
    Body(body): Body<UserCredentials>,
) -> ApiResult<Response> {
    if let Some(scopes) = &body.requested_scopes
        && scopes.iter().any(|s| s != "all.User")
    {
        return Err(ApiError::validation(
            "This server issues only all.User session tokens: for narrower access create an application API token",
        ));
    }
    let ttl = body
        .token_ttl
        .filter(|secs| *secs > 0)
        .map(|secs| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX));
    let (user_id, secret, _) = open_session(
        &state,
        &body.email,
        body.password,
        ttl,
        user_agent(&headers),
        client,
    )
    .await?;
    let mut res = Json(json!({ "userId": user_id, "token": secret.expose() })).into_response();
    no_store(&mut res);
    Ok(res)
}

/// Mark a response that carries a secret as not to be kept by any cache.
pub fn no_store(res: &mut Response) {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `auth.logout` (an extension): end the session that authenticates this request. Answers
/// once no node accepts it any more (see `crate::changes`).
pub async fn logout(
    State(state): State<AppState>,
    access: UserAccess,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    // The guard verified this very secret as a user session.
    let digest = tollgate_core::secret::digest(bearer(&headers)?);
    state.store().delete_session(&digest).await?;
    tracing::info!(user = %access.user_id(), "user logged out");
    Ok(crate::api::success())
}

/// The `User-Agent` of a request, as recorded with a session ("" when absent or not text).
pub fn user_agent(headers: &HeaderMap) -> &str {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Check an email and password and open a session for `ttl_ms` (capped at the server's
/// session lifetime). Returns the user, the session secret (`tgus_…`, shown to the caller
/// once and stored only as its digest) and when the session ends. `user_agent` is kept with
/// the session (the console lists a user's sessions by it). The REST login and the console's
/// login form both call this.
///
/// Before any password is hashed the attempt is put to the login throttle (the account and
/// the client address): a throttled attempt is a 429 whether or not the password is right.
/// Failed logins are logged with the email and the client address, never the password.
pub async fn open_session(
    state: &AppState,
    email: &str,
    password: String,
    ttl_ms: Option<i64>,
    user_agent: &str,
    client: Option<IpAddr>,
) -> ApiResult<(Id, Secret, i64)> {
    let mut keys = vec![Key::account(email)];
    keys.extend(client.map(Key::address));
    let attempt = state.login_throttle().attempt(&keys).map_err(|r| {
        if r.first {
            tracing::warn!(email = ?email, client = ?client, retry_after_secs = r.retry_after_secs(), "login throttled");
        } else {
            tracing::debug!(email = ?email, client = ?client, "login throttled");
        }
        ApiError::too_many_requests(r.message("logins"), r.retry_after_secs())
    })?;
    let user = state.store().user_by_email(email).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    // The same answer, after the same work, for an unknown email and a wrong password.
    let verified = match passwords::verify(password, stored).await {
        Ok(v) => v,
        Err(HashError::Busy { threads, queue }) => {
            // Nothing was checked: the attempt does not count.
            attempt.succeeded();
            tracing::warn!(email = ?email, client = ?client, "login refused: password checks are saturated");
            return Err(ApiError::busy(
                format!(
                    "The server is checking as many passwords as it can ({threads} at a time, {queue} waiting): try again in a second"
                ),
                1,
            ));
        }
        Err(e) => {
            attempt.succeeded();
            tracing::error!(error = %e, "password check failed");
            return Err(ApiError::internal());
        }
    };
    let (true, Some(user)) = (verified, user) else {
        attempt.failed();
        tracing::warn!(email = ?email, client = ?client, "login failed: unknown email or wrong password");
        return Err(ApiError::unauthorized("Invalid email or password"));
    };
    attempt.succeeded();
    let max = state.settings().session_ttl_ms;
    let ttl = ttl_ms.map_or(max, |t| t.min(max));
    let expires = now_ms().saturating_add(ttl);
    let secret = Secret::generate(SecretKind::UserSession);
    state
        .store()
        .create_session_from(&secret.digest(), user.id, expires, user_agent)
        .await?;
    tracing::info!(user = %user.id, client = ?client, "user logged in");
    Ok((user.id, secret, expires))
}
