//! `auth.authenticateUser`: email and password in, a session token out.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_core::secret::{Secret, SecretKind};
use tollgate_store::now_ms;

use crate::auth::passwords;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, RequestBody};
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
    Body(body): Body<UserCredentials>,
) -> ApiResult<Json<Value>> {
    if let Some(scopes) = &body.requested_scopes
        && scopes.iter().any(|s| s != "all.User")
    {
        return Err(ApiError::validation(
            "This server issues only all.User session tokens: for narrower access create an application API token",
        ));
    }
    let user = state.store().user_by_email(&body.email).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    // The same answer, after the same work, for an unknown email and a wrong password.
    let (true, Some(user)) = (passwords::verify(body.password, stored).await, user) else {
        return Err(ApiError::unauthorized("Invalid email or password"));
    };
    let max = state.settings().session_ttl_ms;
    let ttl = match body.token_ttl {
        Some(secs) if secs > 0 => i64::try_from(secs.saturating_mul(1000))
            .unwrap_or(max)
            .min(max),
        _ => max,
    };
    let secret = Secret::generate(SecretKind::UserSession);
    state
        .store()
        .create_session(&secret.digest(), user.id, now_ms().saturating_add(ttl))
        .await?;
    tracing::info!(user = %user.id, "user logged in");
    Ok(Json(json!({ "userId": user.id, "token": secret.expose() })))
}
