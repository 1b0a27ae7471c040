//! `auth.authenticateUser`: email, password and (when enabled) a two-factor code in, a
//! session token out.

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_core::secret::{Secret, SecretKind};
use tollgate_store::users::User;
use tollgate_store::{Id, now_ms};

use crate::auth::passwords::{self, HashError};
use crate::auth::throttle::{Attempt, Key};
use crate::auth::two_factor;
use crate::auth::{UserAccess, bearer};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, ClientAddr, RequestBody};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserCredentials {
    email: String,
    password: String,
    two_factor_code: Option<String>,
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
        body.two_factor_code.as_deref(),
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

/// The message for a user with two-factor authentication who sent no code.
pub const CODE_REQUIRED: &str = "This account uses two-factor authentication: send twoFactorCode, the 6-digit code from your authenticator app (or one of your recovery codes)";

/// Check an email, password and (if the user has enabled it) two-factor code, and open a
/// session for `ttl_ms` (capped at the server's session lifetime). Returns the user, the
/// session secret (`tgus_…`, shown to the caller once and stored only as its digest) and when
/// the session ends. `user_agent` is kept with the session (the console lists a user's
/// sessions by it). The REST login and the console's login form both call this.
///
/// Before any password is hashed, and again before a two-factor code is checked, the attempt
/// is put to the login throttle (the account and the client address): a throttled attempt is
/// a 429 whether or not the password or code is right, and a wrong code counts as a failed
/// login. Failed logins are logged with the email and the client address, never the password
/// or the code.
pub async fn open_session(
    state: &AppState,
    email: &str,
    password: String,
    two_factor_code: Option<&str>,
    ttl_ms: Option<i64>,
    user_agent: &str,
    client: Option<IpAddr>,
) -> ApiResult<(Id, Secret, i64)> {
    let user = check_password(state, email, password, client).await?;
    if user.disabled_at.is_some() {
        return Err(ApiError::unauthorized(
            "This account is disabled: ask an administrator to enable it (tollgate user enable)",
        ));
    }
    if user.two_factor_enabled() {
        let code = two_factor_code
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| ApiError::unauthorized(CODE_REQUIRED))?;
        check_second_factor(state, &user, code, client).await?;
    }
    let max = state.settings().session_ttl_ms;
    let ttl = ttl_ms.map_or(max, |t| t.min(max));
    let expires = now_ms().saturating_add(ttl);
    let secret = Secret::generate(SecretKind::UserSession);
    match state
        .store()
        .create_login_session(
            &secret.digest(),
            user.id,
            expires,
            &user.password_hash,
            user_agent,
        )
        .await
    {
        Ok(_) => {}
        // Disabled, or the password changed, after the check above.
        Err(tollgate_store::StoreError::NotFound) => {
            return Err(ApiError::unauthorized("Invalid email or password"));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(user = %user.id, client = ?client, "user logged in");
    Ok((user.id, secret, expires))
}

/// Put a guess of a login factor for `email` from `client` to the login throttle: a 429
/// (with when to retry) when the account or the address has failed too often.
fn throttled<'a>(
    state: &'a AppState,
    email: &str,
    client: Option<IpAddr>,
) -> ApiResult<Attempt<'a>> {
    let mut keys = vec![Key::account(email)];
    keys.extend(client.map(Key::address));
    state.login_throttle().attempt(&keys).map_err(|r| {
        if r.first {
            tracing::warn!(email = ?email, client = ?client, retry_after_secs = r.retry_after_secs(), "login throttled");
        } else {
            tracing::debug!(email = ?email, client = ?client, "login throttled");
        }
        ApiError::too_many_requests(r.message("logins"), r.retry_after_secs())
    })
}

/// Check `password` for the account `email`, counted by the login throttle. The same answer,
/// after the same work, for an unknown email and a wrong password.
pub async fn check_password(
    state: &AppState,
    email: &str,
    password: String,
    client: Option<IpAddr>,
) -> ApiResult<User> {
    let attempt = throttled(state, email, client)?;
    // A password check that did not happen: the attempt does not count.
    let unchecked = |e: HashError| match e {
        HashError::Busy { threads, queue } => {
            tracing::warn!(email = ?email, client = ?client, "login refused: password checks are saturated");
            ApiError::busy(
                format!(
                    "The server is checking as many passwords as it can ({threads} at a time, {queue} waiting): try again in a second"
                ),
                1,
            )
        }
        e => {
            tracing::error!(error = %e, "password check failed");
            ApiError::internal()
        }
    };
    // A place among the password checks first: a login the hashing queue would refuse is
    // refused before it takes a database connection.
    let _admitted = match passwords::admit() {
        Ok(a) => a,
        Err(e) => {
            attempt.succeeded();
            return Err(unchecked(e));
        }
    };
    let user = state.store().user_by_email(email).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let verified = match passwords::verify(password, stored).await {
        Ok(v) => v,
        Err(e) => {
            attempt.succeeded();
            return Err(unchecked(e));
        }
    };
    let (true, Some(user)) = (verified, user) else {
        attempt.failed();
        tracing::warn!(email = ?email, client = ?client, "login failed: unknown email or wrong password");
        return Err(ApiError::unauthorized("Invalid email or password"));
    };
    attempt.succeeded();
    Ok(user)
}

/// Check a second factor of `user`, who has two-factor authentication enabled: a TOTP code
/// (each time step accepted once) or an unused recovery code (used up). Counted by the login
/// throttle exactly like a password (the same account and address buckets).
pub async fn check_second_factor(
    state: &AppState,
    user: &User,
    code: &str,
    client: Option<IpAddr>,
) -> ApiResult<()> {
    let attempt = throttled(state, &user.email, client)?;
    let ok = match second_factor_ok(state, user, code).await {
        Ok(ok) => ok,
        Err(e) => {
            // Nothing was decided: the attempt does not count.
            attempt.succeeded();
            return Err(e);
        }
    };
    if ok {
        attempt.succeeded();
        Ok(())
    } else {
        attempt.failed();
        tracing::warn!(user = %user.id, client = ?client, "login failed: wrong two-factor code");
        Err(ApiError::unauthorized(
            "Invalid two-factor code: use the current code from your authenticator app (each code works once) or an unused recovery code",
        ))
    }
}

async fn second_factor_ok(state: &AppState, user: &User, code: &str) -> ApiResult<bool> {
    if two_factor::is_recovery_code(code) {
        let used = state
            .store()
            .use_recovery_code(user.id, &two_factor::recovery_digest(code))
            .await?;
        if used {
            tracing::info!(user = %user.id, "a recovery code was used");
        }
        return Ok(used);
    }
    let Some(sealed) = &user.totp_secret else {
        return Ok(false);
    };
    let secret = open_secret(state, user.id, sealed)?;
    match two_factor::check_code(&secret, code, now_ms()) {
        Some(step) => Ok(state.store().accept_totp_step(user.id, step).await?),
        None => Ok(false),
    }
}

/// Decrypt a stored TOTP secret; a key problem is logged (never the secret) and answered 500.
pub fn open_secret(state: &AppState, user: Id, sealed: &str) -> ApiResult<Vec<u8>> {
    state.secret_key().open(user, sealed).map_err(|e| {
        tracing::error!(user = %user, error = %e, "cannot decrypt a two-factor secret");
        ApiError::internal()
    })
}
