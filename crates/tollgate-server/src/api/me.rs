//! `me.*`: the logged-in user's own account (profile, password, two-factor authentication)
//! and the invitations waiting for them (`me.invites`, `me.respondToInvite`).

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_core::secret::{Digest, Secret, SecretKind};
use tollgate_store::applications::Owner;
use tollgate_store::invites::{AnswerError, INVITE_TTL_MS, InviteAnswer};
use tollgate_store::users::{ProfileChange, User};
use tollgate_store::{Id, StoreError, now_ms};

use crate::api::login::{check_password, check_second_factor, open_secret};
use crate::api::refuse_unsupported;
use crate::auth::UserAccess;
use crate::auth::passwords;
use crate::auth::two_factor;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, ClientAddr, Path, RequestBody};
use crate::state::AppState;
use crate::time::iso;

/// `me.invites`: invitations addressed to the user's email, with the organization's name and
/// who invited them.
pub async fn invites(State(state): State<AppState>, access: UserAccess) -> ApiResult<Json<Value>> {
    let user = state.store().user(access.user_id()).await?;
    let now = tollgate_store::now_ms();
    let items = state
        .store()
        .invites_for_email(&user.email)
        .await?
        .into_iter()
        .map(|i| {
            let mut by = json!({});
            if !i.invited_by_name.is_empty() {
                by["fullName"] = json!(i.invited_by_name);
            }
            if let Some(email) = &i.invited_by_email {
                by["email"] = json!(email);
            }
            json!({
                "id": i.invite.id,
                "orgName": i.org_name,
                "role": i.invite.role.as_str(),
                "inviteDate": iso(i.invite.invite_date),
                "ttl": INVITE_TTL_MS,
                "expired": i.invite.has_expired(now),
                "invitedBy": by,
            })
        })
        .collect();
    Ok(Json(Value::Array(items)))
}

#[derive(Deserialize)]
pub struct InviteAction {
    action: String,
}

impl RequestBody for InviteAction {
    const SCHEMA: &'static str = "orgInviteActionUser";
}

/// `me.respondToInvite`: `accept` joins the organization with the invitation's role (in the
/// same transaction that removes the invitation); `reject` and `dismiss` remove it.
pub async fn respond_to_invite(
    State(state): State<AppState>,
    access: UserAccess,
    Path(invite): Path<Id>,
    Body(body): Body<InviteAction>,
) -> ApiResult<Json<Value>> {
    let (answer, result) = match body.action.as_str() {
        "accept" => (InviteAnswer::Accept, "accepted"),
        "reject" => (InviteAnswer::Reject, "rejected"),
        _ => (InviteAnswer::Reject, "dismissed"),
    };
    let user = state.store().user(access.user_id()).await?;
    match state
        .store()
        .answer_invite(&access.actor(), invite, user.id, &user.email, answer)
        .await
    {
        Ok(found) => {
            tracing::info!(org = %found.org_id, invite = %invite, user = %user.id, result, "invitation answered");
            Ok(Json(json!({ "result": result, "orgId": found.org_id })))
        }
        Err(AnswerError::NotFound) => Err(ApiError::not_found("Invitation")),
        Err(AnswerError::Expired) => {
            let mut e = ApiError::validation(
                "This invitation has expired: ask the organization's administrator for a new one",
            );
            e.status = StatusCode::GONE;
            e.kind = "Gone";
            Err(e)
        }
        Err(AnswerError::AlreadyMember) => Err(ApiError::conflict(
            "You are a member of this organization already; the invitation was removed",
        )),
        Err(AnswerError::Store(e)) => Err(e.into()),
    }
}

pub async fn get(State(state): State<AppState>, access: UserAccess) -> ApiResult<Json<Value>> {
    let user = state.store().user(access.user_id()).await?;
    Ok(Json(me_json(&state, &user).await?))
}

/// The user as `me.get` shows them.
pub async fn me_json(state: &AppState, user: &User) -> ApiResult<Value> {
    let app_count = state
        .store()
        .count_applications(Owner::User(user.id))
        .await?;
    let full_name = format!("{} {}", user.first_name, user.last_name)
        .trim()
        .to_owned();
    let mut me = json!({
        "id": user.id,
        "userId": user.id,
        "email": user.email,
        "lastName": user.last_name,
        "creationDate": iso(user.creation_date),
        "lastUpdated": iso(user.last_updated),
        "passwordLastUpdated": iso(user.password_last_updated),
        "emailVerified": true,
        "needsToVerifyEmail": false,
        "twoFactorAuthEnabled": user.two_factor_enabled(),
        "summary": { "appCount": app_count },
    });
    // The reference requires a non-empty first name when there is one at all.
    if !user.first_name.is_empty() {
        me["firstName"] = json!(user.first_name);
    }
    if !full_name.is_empty() {
        me["fullName"] = json!(full_name);
    }
    Ok(me)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MePatch {
    first_name: Option<String>,
    last_name: Option<String>,
}

const ME_UNSUPPORTED: &[(&str, &str)] = &[
    (
        "email",
        "the email is the login; an administrator can create a user with another one",
    ),
    ("password", "change it with me.changePassword"),
    (
        "currentCredentials",
        "only the name fields can change here; passwords change with me.changePassword",
    ),
    (
        "tokenCutoff",
        "sessions end with me.changePassword (every other session) or by logging out",
    ),
    ("companyName", "only firstName and lastName are kept"),
    ("title", "only firstName and lastName are kept"),
    ("phoneNumber", "only firstName and lastName are kept"),
    ("location", "only firstName and lastName are kept"),
    ("url", "only firstName and lastName are kept"),
];

impl RequestBody for MePatch {
    const SCHEMA: &'static str = "mePatch";
    fn precheck(body: &Value) -> Result<(), ApiError> {
        refuse_unsupported(body, ME_UNSUPPORTED)
    }
}

/// `me.patch`: the name fields.
pub async fn patch(
    State(state): State<AppState>,
    access: UserAccess,
    Body(body): Body<MePatch>,
) -> ApiResult<Json<Value>> {
    let user = update_profile(&state, &access, body.first_name, body.last_name).await?;
    Ok(Json(me_json(&state, &user).await?))
}

/// Change the name fields (the REST handler and the console call this).
pub async fn update_profile(
    state: &AppState,
    access: &UserAccess,
    first_name: Option<String>,
    last_name: Option<String>,
) -> ApiResult<User> {
    let change = ProfileChange {
        first_name: first_name.map(|s| s.trim().to_owned()),
        last_name: last_name.map(|s| s.trim().to_owned()),
    };
    if change.first_name.as_deref() == Some("") {
        return Err(ApiError::validation(
            "firstName cannot be empty (leave it out to keep it)",
        ));
    }
    Ok(state
        .store()
        .update_profile(&access.actor(), access.user_id(), &change)
        .await?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangePassword {
    password: String,
    new_password: String,
    two_factor_code: Option<String>,
    #[serde(default)]
    invalidate_existing_tokens: bool,
    #[serde(rename = "tokenTTL")]
    token_ttl: Option<u64>,
}

impl RequestBody for ChangePassword {
    const SCHEMA: &'static str = "changePassword";
    fn precheck(body: &Value) -> Result<(), ApiError> {
        // Say what the new password lacks, rather than that it fails a pattern.
        if let Some(p) = body.get("newPassword").and_then(Value::as_str) {
            passwords::check_new_password(p).map_err(ApiError::validation)?;
        }
        Ok(())
    }
}

/// `me.changePassword`.
pub async fn change_password(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    access: UserAccess,
    headers: axum::http::HeaderMap,
    Body(body): Body<ChangePassword>,
) -> ApiResult<Json<Value>> {
    let ttl = body
        .token_ttl
        .filter(|secs| *secs > 0)
        .map(|secs| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX));
    let keep = (!body.invalidate_existing_tokens).then_some(access.session());
    let proof = Proof {
        password: body.password,
        two_factor_code: body.two_factor_code.as_deref(),
        client,
        user_agent: crate::api::login::user_agent(&headers),
    };
    let changed = change_own_password(&state, &access, proof, body.new_password, keep, ttl).await?;
    Ok(Json(
        json!({ "userId": access.user_id(), "token": changed.secret.expose() }),
    ))
}

/// What the user proves a password change with: the current password, the two-factor code
/// when it is enabled, and where the request came from (for the login throttle).
pub struct Proof<'a> {
    pub password: String,
    pub two_factor_code: Option<&'a str>,
    pub client: Option<IpAddr>,
    /// The `User-Agent` of the request, kept with the new session.
    pub user_agent: &'a str,
}

/// What a password change gives back.
pub struct PasswordChanged {
    /// A new session for the caller.
    pub secret: Secret,
    pub expires: i64,
    /// How many sessions ended.
    pub ended: usize,
}

/// Change the caller's own password: the current password (and two-factor code, if enabled)
/// is checked, the new one must follow the rule, and every session of the user ends except
/// `keep`, in the same transaction, on every node. A new session is opened and returned (the
/// REST handler and the console's password page call this).
pub async fn change_own_password(
    state: &AppState,
    access: &UserAccess,
    proof: Proof<'_>,
    new_password: String,
    keep: Option<&Digest>,
    ttl_ms: Option<i64>,
) -> ApiResult<PasswordChanged> {
    let user = state.store().user(access.user_id()).await?;
    let proof_agent = proof.user_agent;
    reauthenticate(
        state,
        &user,
        proof.password,
        proof.two_factor_code,
        proof.client,
    )
    .await?;
    passwords::check_new_password(&new_password).map_err(ApiError::validation)?;
    let hash = passwords::hash(new_password).await.map_err(|e| {
        tracing::error!(error = %e, "password hashing failed");
        ApiError::internal()
    })?;
    let ended = state
        .store()
        .set_password(&access.actor(), user.id, &hash, keep)
        .await?;
    let max = state.settings().session_ttl_ms;
    let expires = now_ms().saturating_add(ttl_ms.map_or(max, |t| t.min(max)));
    let secret = Secret::generate(SecretKind::UserSession);
    state
        .store()
        .create_login_session(&secret.digest(), user.id, expires, &hash, proof_agent)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::unauthorized(
                "The password changed again or the account was disabled meanwhile: log in again",
            ),
            e => e.into(),
        })?;
    tracing::info!(user = %user.id, sessions_ended = ended, "password changed");
    Ok(PasswordChanged {
        secret,
        expires,
        ended,
    })
}

/// Ask for the password again (and the second factor when enabled), counted by the login
/// throttle. A wrong password here is a 400, not a 401: the session itself is fine.
async fn reauthenticate(
    state: &AppState,
    user: &User,
    password: String,
    two_factor_code: Option<&str>,
    client: Option<IpAddr>,
) -> ApiResult<()> {
    check_password(state, &user.email, password, client)
        .await
        .map_err(|e| {
            if e.status == axum::http::StatusCode::UNAUTHORIZED {
                ApiError::validation("The current password is not right")
            } else {
                e
            }
        })?;
    if user.two_factor_enabled() {
        let code = two_factor_code
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| {
                ApiError::validation(
                    "twoFactorCode is required: this account uses two-factor authentication",
                )
            })?;
        check_second_factor(state, user, code, client)
            .await
            .map_err(|e| {
                if e.status == axum::http::StatusCode::UNAUTHORIZED {
                    ApiError::validation(e.message)
                } else {
                    e
                }
            })?;
    }
    Ok(())
}

/// `me.generateTwoFactorAuth`: a new key, kept (encrypted) until it is confirmed.
pub async fn generate_two_factor(
    State(state): State<AppState>,
    access: UserAccess,
) -> ApiResult<Json<Value>> {
    let (key, uri) = generate_key(&state, &access).await?;
    Ok(Json(json!({ "key": key, "keyUri": uri })))
}

/// Generate and keep a pending TOTP secret; returns its key and `otpauth://` URI. These are
/// the only times the secret leaves the server.
pub async fn generate_key(state: &AppState, access: &UserAccess) -> ApiResult<(String, String)> {
    let user = state.store().user(access.user_id()).await?;
    if user.two_factor_enabled() {
        return Err(already_enabled());
    }
    let secret = two_factor::new_secret();
    let sealed = state.secret_key().seal(user.id, &secret).map_err(|e| {
        tracing::error!(error = %e, "cannot encrypt a two-factor secret");
        ApiError::internal()
    })?;
    state
        .store()
        .set_totp_pending(&access.actor(), user.id, &sealed)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => already_enabled(),
            e => e.into(),
        })?;
    Ok(two_factor::key_and_uri(&secret, &user.email))
}

fn already_enabled() -> ApiError {
    ApiError::validation(
        "Two-factor authentication is already enabled: disable it first (me.disableTwoFactorAuth) to set up a new key",
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnableTwoFactor {
    password: String,
    two_factor_code: String,
    two_factor_auth_key: Option<String>,
}

impl RequestBody for EnableTwoFactor {
    const SCHEMA: &'static str = "multiFactorAuthEnable";
}

/// `me.enableTwoFactorAuth`: the user's `me`, plus `twoFactorRecoveryCodes` (shown once).
pub async fn enable_two_factor(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    access: UserAccess,
    Body(body): Body<EnableTwoFactor>,
) -> ApiResult<Json<Value>> {
    let codes = enable(
        &state,
        &access,
        body.password,
        &body.two_factor_code,
        body.two_factor_auth_key.as_deref(),
        client,
    )
    .await?;
    let user = state.store().user(access.user_id()).await?;
    let mut me = me_json(&state, &user).await?;
    me["twoFactorRecoveryCodes"] = json!(codes);
    Ok(Json(me))
}

/// Confirm the pending key with the password and a code from it: two-factor authentication is
/// on, every other session of the user ends (they were opened without it; the one `access`
/// came with stays), and the new recovery codes are returned (only their digests are kept).
pub async fn enable(
    state: &AppState,
    access: &UserAccess,
    password: String,
    code: &str,
    key: Option<&str>,
    client: Option<IpAddr>,
) -> ApiResult<Vec<String>> {
    let user = state.store().user(access.user_id()).await?;
    if user.two_factor_enabled() {
        return Err(already_enabled());
    }
    reauthenticate(state, &user, password, None, client).await?;
    let Some(pending) = &user.totp_pending else {
        return Err(ApiError::validation(
            "There is no two-factor key to confirm: call me.generateTwoFactorAuth first",
        ));
    };
    let secret = open_secret(state, user.id, pending)?;
    if let Some(key) = key {
        let (expected, _) = two_factor::key_and_uri(&secret, &user.email);
        if !crate::console::same_text(&key.to_ascii_uppercase(), &expected) {
            return Err(ApiError::validation(
                "twoFactorAuthKey is not the key me.generateTwoFactorAuth gave last: generate a new one and add that to your authenticator app",
            ));
        }
    }
    let Some(step) = two_factor::check_code(&secret, code, now_ms()) else {
        return Err(ApiError::validation(
            "twoFactorCode is not the current code of this key: check the authenticator app's clock and try the next code",
        ));
    };
    let codes = two_factor::new_recovery_codes();
    let digests: Vec<[u8; 32]> = codes
        .iter()
        .map(|c| two_factor::recovery_digest(c))
        .collect();
    let ended = state
        .store()
        .enable_totp(
            &access.actor(),
            user.id,
            pending,
            step,
            &digests,
            Some(access.session()),
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::validation(
                "A newer two-factor key was generated meanwhile: confirm that one",
            ),
            e => e.into(),
        })?;
    tracing::info!(user = %user.id, sessions_ended = ended, "two-factor authentication enabled");
    Ok(codes)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DisableTwoFactor {
    password: String,
    two_factor_code: String,
}

impl RequestBody for DisableTwoFactor {
    const SCHEMA: &'static str = "multiFactorAuthDisable";
}

/// `me.disableTwoFactorAuth`.
pub async fn disable_two_factor(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    access: UserAccess,
    Body(body): Body<DisableTwoFactor>,
) -> ApiResult<Json<Value>> {
    disable(
        &state,
        &access,
        body.password,
        &body.two_factor_code,
        client,
    )
    .await?;
    let user = state.store().user(access.user_id()).await?;
    Ok(Json(me_json(&state, &user).await?))
}

/// Turn two-factor authentication off, with the password and a code (or recovery code).
/// Refused while an organization of the user requires it of them.
pub async fn disable(
    state: &AppState,
    access: &UserAccess,
    password: String,
    code: &str,
    client: Option<IpAddr>,
) -> ApiResult<()> {
    let user = state.store().user(access.user_id()).await?;
    if !user.two_factor_enabled() {
        return Err(ApiError::validation(
            "Two-factor authentication is not enabled",
        ));
    }
    reauthenticate(state, &user, password, Some(code), client).await?;
    let requiring = state.store().orgs_requiring_two_factor(user.id).await?;
    if let Some(name) = requiring.first() {
        return Err(ApiError::validation(format!(
            "The organization {name:?} requires two-factor authentication for your role: it cannot be disabled while you hold that role"
        )));
    }
    state.store().disable_totp(&access.actor(), user.id).await?;
    tracing::info!(user = %user.id, "two-factor authentication disabled");
    Ok(())
}
