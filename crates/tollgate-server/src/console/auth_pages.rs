//! Logging in and out.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tollgate_core::secret;

use super::form::{FormData, QueryData};
use super::session::{self, Session};
use super::{BASE, PageError, render, see_other};
use crate::api::login::open_session;
use crate::extract::ClientAddr;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    user: Option<super::view::UserBar>,
    title: String,
    email: String,
    next: String,
    login_token: String,
    error: Option<String>,
    notice: Option<&'static str>,
    /// The password was right and a two-factor code is needed.
    code_needed: bool,
}

/// Only console pages are places to return to after logging in (no open redirects).
fn safe_next(next: Option<&str>) -> String {
    next.filter(|n| !n.starts_with("/console/login"))
        .and_then(|n| super::safe_path(n, "/console/"))
        .unwrap_or_else(|| format!("{BASE}/applications"))
}

fn login_response(
    state: &AppState,
    status: StatusCode,
    email: String,
    next: String,
    error: Option<String>,
    notice: Option<&'static str>,
) -> Response {
    let login_token = session::new_login_token();
    let code_needed = error.as_deref().is_some_and(|e| e.contains("two-factor"));
    let page = LoginPage {
        code_needed,
        user: None,
        title: "Log in".to_owned(),
        email,
        next,
        login_token: login_token.clone(),
        error,
        notice,
    };
    let mut res = (status, render(&page)).into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        session::login_cookie(state.settings(), &login_token),
    );
    res
}

pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: QueryData,
) -> Response {
    // Already logged in: straight on.
    if let Some(secret) = session::session_secret(state.settings(), &headers)
        && let Ok(crate::auth::Principal::User(_)) = state.credentials().verify(secret).await
    {
        return see_other(&safe_next(query.get("next")));
    }
    let notice = if query.get("expired").is_some() {
        Some("Your session has ended: log in again to continue.")
    } else if query.get("loggedout").is_some() {
        Some("You have logged out.")
    } else {
        None
    };
    login_response(
        &state,
        StatusCode::OK,
        String::new(),
        safe_next(query.get("next")),
        None,
        notice,
    )
}

pub async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    form: FormData,
) -> Response {
    let email = form.text("email").trim().to_owned();
    let next = safe_next(form.get("next"));
    let token_ok = match (
        session::login_token(state.settings(), &headers),
        form.get(session::CSRF_FIELD),
    ) {
        (Some(cookie), Some(field)) => session::same(cookie, field),
        _ => false,
    };
    if !token_ok {
        return login_response(
            &state,
            StatusCode::FORBIDDEN,
            email,
            next,
            Some("This login form has expired: please log in again.".to_owned()),
            None,
        );
    }
    if email.is_empty() || form.text("password").is_empty() {
        return login_response(
            &state,
            StatusCode::BAD_REQUEST,
            email,
            next,
            Some("Enter your email and your password.".to_owned()),
            None,
        );
    }
    let password = form.text("password").to_owned();
    let code = form
        .get("twoFactorCode")
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let agent = crate::api::login::user_agent(&headers);
    match open_session(&state, &email, password, code, None, agent, client).await {
        Ok((_, secret, expires)) => {
            // A session this browser held before is ended, not left behind.
            if let Some(old) = session::session_secret(state.settings(), &headers)
                && let Err(e) = state.store().delete_session(&secret::digest(old)).await
            {
                tracing::warn!(error = %e, "could not end the previous console session");
            }
            let mut res = see_other(&next);
            let h = res.headers_mut();
            h.append(
                header::SET_COOKIE,
                session::session_cookie(state.settings(), secret.expose(), expires),
            );
            h.append(
                header::SET_COOKIE,
                session::clear_login_cookie(state.settings()),
            );
            res
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            let message = if e.message == crate::api::login::CODE_REQUIRED {
                "This account uses two-factor authentication: enter your password again and the code from your authenticator app (or a recovery code)."
            } else if e.message.starts_with("Invalid two-factor code") {
                "That two-factor code is not right (each code works once): enter your password again and the current code."
            } else if e.message.starts_with("This account is disabled") {
                "This account is disabled: ask an administrator to enable it."
            } else {
                "Invalid email or password."
            };
            login_response(
                &state,
                StatusCode::UNAUTHORIZED,
                email,
                next,
                Some(message.to_owned()),
                None,
            )
        }
        Err(e) if e.retry_after.is_some() => {
            // Throttled (429) or every password check busy (503): the form again, saying why
            // and when to come back.
            let mut res = login_response(
                &state,
                e.status,
                email,
                next,
                Some(e.message.to_string()),
                None,
            );
            if let Some(secs) = e.retry_after {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
            }
            res
        }
        Err(e) => PageError::Api(e).into_response(),
    }
}

pub async fn logout(
    State(state): State<AppState>,
    session: Session,
    form: FormData,
) -> Result<Response, PageError> {
    session.check_csrf(&form)?;
    // Deleting the session makes the cookie worthless on every node, not just this browser.
    state.store().delete_session(&session.digest).await?;
    tracing::info!(user = %session.user_id, "user logged out of the console");
    let mut res = see_other(&format!("{BASE}/login?loggedout=1"));
    res.headers_mut().append(
        header::SET_COOKIE,
        session::clear_session_cookie(state.settings()),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_pages_are_returned_to() {
        let home = "/console/applications";
        assert_eq!(
            safe_next(Some("/console/applications/abc/tokens?q=x")),
            "/console/applications/abc/tokens?q=x"
        );
        assert_eq!(safe_next(Some("https://evil.example/")), home);
        assert_eq!(safe_next(Some("//evil.example/console/")), home);
        assert_eq!(safe_next(Some("/console//evil.example")), home);
        assert_eq!(safe_next(Some("/console/\\evil")), home);
        assert_eq!(safe_next(Some("/console/login")), home);
        assert_eq!(safe_next(None), home);
    }
}
