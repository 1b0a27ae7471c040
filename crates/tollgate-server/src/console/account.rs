//! The person's own account: name, password, two-factor authentication. Each page asks the
//! authorization layer for its `me.*` action and calls the functions the REST handlers call.

use askama::Template;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tollgate_core::Action;

use super::form::{FormData, QueryData};
use super::session::{self, Session};
use super::view::UserBar;
use super::{BASE, PageError, render, see_other, user_access};
use crate::api::me;
use crate::error::ApiError;
use crate::extract::ClientAddr;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    user: Option<UserBar>,
    title: String,
    email: String,
    first_name: String,
    last_name: String,
    two_factor: bool,
    recovery_left: i64,
    notice: Option<&'static str>,
    profile_error: Option<String>,
    password_error: Option<String>,
    two_factor_error: Option<String>,
}

async fn account_page(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    notice: Option<&'static str>,
    errors: [Option<String>; 3],
) -> Result<Response, PageError> {
    let access = user_access(state, session, Action::MeGet).await?;
    let user = state.store().user(access.user_id()).await?;
    let recovery_left = if user.two_factor_enabled() {
        state.store().count_recovery_codes(user.id).await?
    } else {
        0
    };
    let [profile_error, password_error, two_factor_error] = errors;
    let page = AccountPage {
        user: Some(session.bar()),
        title: "Account".to_owned(),
        email: user.email.clone(),
        first_name: user.first_name.clone(),
        last_name: user.last_name.clone(),
        two_factor: user.two_factor_enabled(),
        recovery_left,
        notice,
        profile_error,
        password_error,
        two_factor_error,
    };
    Ok((status, render(&page)).into_response())
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    query: QueryData,
) -> Result<Response, PageError> {
    let notice = match query.get("notice") {
        Some("profile") => Some("Your name was saved."),
        Some("password") => Some(
            "Your password was changed. Every other session of yours has ended; this browser stays logged in.",
        ),
        Some("2fa-off") => Some("Two-factor authentication is off."),
        _ => None,
    };
    account_page(&state, &session, StatusCode::OK, notice, Default::default()).await
}

/// A 400 from the shared rules is shown next to its form; anything else is an error page.
fn field_error(e: ApiError) -> Result<String, PageError> {
    if e.status == StatusCode::BAD_REQUEST {
        Ok(e.message.into_owned())
    } else {
        Err(PageError::Api(e))
    }
}

pub async fn save_profile(
    State(state): State<AppState>,
    session: Session,
    form: FormData,
) -> Result<Response, PageError> {
    session.check_csrf(&form)?;
    let access = user_access(&state, &session, Action::MePatch).await?;
    let first = form.text("firstName").to_owned();
    let last = form.text("lastName").to_owned();
    if first.chars().count() > 1024 || last.chars().count() > 1024 {
        let e = Some("A name is at most 1024 characters.".to_owned());
        return account_page(
            &state,
            &session,
            StatusCode::BAD_REQUEST,
            None,
            [e, None, None],
        )
        .await;
    }
    match me::update_profile(&state, &access, Some(first), Some(last)).await {
        Ok(_) => Ok(see_other(&format!("{BASE}/account?notice=profile"))),
        Err(e) => {
            let e = Some(field_error(e)?);
            account_page(
                &state,
                &session,
                StatusCode::BAD_REQUEST,
                None,
                [e, None, None],
            )
            .await
        }
    }
}

pub async fn change_password(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: axum::http::HeaderMap,
    session: Session,
    form: FormData,
) -> Result<Response, PageError> {
    session.check_csrf(&form)?;
    let access = user_access(&state, &session, Action::MeChangePassword).await?;
    let new = form.text("newPassword");
    if new != form.text("confirmPassword") {
        let e = Some("The new password and its confirmation differ.".to_owned());
        return account_page(
            &state,
            &session,
            StatusCode::BAD_REQUEST,
            None,
            [None, e, None],
        )
        .await;
    }
    let code = Some(form.text("twoFactorCode").trim()).filter(|c| !c.is_empty());
    // Every session ends, this browser's too: it continues with the new session below.
    let proof = me::Proof {
        password: form.text("password").to_owned(),
        two_factor_code: code,
        client,
        user_agent: crate::api::login::user_agent(&headers),
    };
    let changed = me::change_own_password(&state, &access, proof, new.to_owned(), None, None).await;
    match changed {
        Ok(changed) => {
            let mut res = see_other(&format!("{BASE}/account?notice=password"));
            res.headers_mut().append(
                header::SET_COOKIE,
                session::session_cookie(state.settings(), changed.secret.expose(), changed.expires),
            );
            Ok(res)
        }
        Err(e) => {
            let e = Some(field_error(e)?);
            account_page(
                &state,
                &session,
                StatusCode::BAD_REQUEST,
                None,
                [None, e, None],
            )
            .await
        }
    }
}

#[derive(Template)]
#[template(path = "two_factor.html")]
struct TwoFactorPage {
    user: Option<UserBar>,
    title: String,
    key: String,
    key_uri: String,
    error: Option<String>,
    /// After enabling: the recovery codes, shown this once.
    codes: Vec<String>,
}

/// Set-up: a new key (replacing any earlier unconfirmed one), shown with the form that
/// confirms it.
pub async fn setup(State(state): State<AppState>, session: Session) -> Result<Response, PageError> {
    let access = user_access(&state, &session, Action::MeGenerateTwoFactorAuth).await?;
    let user = state.store().user(access.user_id()).await?;
    if user.two_factor_enabled() {
        return Ok(see_other(&format!("{BASE}/account")));
    }
    let (key, key_uri) = me::generate_key(&state, &access).await?;
    Ok(render(&TwoFactorPage {
        user: Some(session.bar()),
        title: "Two-factor authentication".to_owned(),
        key,
        key_uri,
        error: None,
        codes: Vec::new(),
    }))
}

pub async fn enable(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    session: Session,
    form: FormData,
) -> Result<Response, PageError> {
    session.check_csrf(&form)?;
    let access = user_access(&state, &session, Action::MeEnableTwoFactorAuth).await?;
    let key = form.text("key").to_owned();
    let result = me::enable(
        &state,
        &access,
        form.text("password").to_owned(),
        form.text("twoFactorCode"),
        Some(&key),
        client,
    )
    .await;
    match result {
        Ok(codes) => Ok(render(&TwoFactorPage {
            user: Some(session.bar()),
            title: "Two-factor authentication is on".to_owned(),
            key: String::new(),
            key_uri: String::new(),
            error: None,
            codes,
        })),
        Err(e) => {
            let message = field_error(e)?;
            // The same key again (it is still the pending one), so the app need not change.
            let user = state.store().user(access.user_id()).await?;
            let (key, key_uri) = match &user.totp_pending {
                Some(sealed) => {
                    let secret = crate::api::login::open_secret(&state, user.id, sealed)?;
                    crate::auth::two_factor::key_and_uri(&secret, &user.email)
                }
                None => me::generate_key(&state, &access).await?,
            };
            let page = TwoFactorPage {
                user: Some(session.bar()),
                title: "Two-factor authentication".to_owned(),
                key,
                key_uri,
                error: Some(message),
                codes: Vec::new(),
            };
            Ok((StatusCode::BAD_REQUEST, render(&page)).into_response())
        }
    }
}

pub async fn disable(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    session: Session,
    form: FormData,
) -> Result<Response, PageError> {
    session.check_csrf(&form)?;
    let access = user_access(&state, &session, Action::MeDisableTwoFactorAuth).await?;
    match me::disable(
        &state,
        &access,
        form.text("password").to_owned(),
        form.text("twoFactorCode"),
        client,
    )
    .await
    {
        Ok(()) => Ok(see_other(&format!("{BASE}/account?notice=2fa-off"))),
        Err(e) => {
            let e = Some(field_error(e)?);
            account_page(
                &state,
                &session,
                StatusCode::BAD_REQUEST,
                None,
                [None, None, e],
            )
            .await
        }
    }
}
