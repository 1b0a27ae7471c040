//! The person's own login sessions: where they are logged in, and ending any of them.
//!
//! Listing asks the authorization layer for `me.get`, ending one for `auth.logout` (both need
//! only a login). Ending a session deletes it through the store like a logout, so it is
//! refused by every node before the page answers; ending the session the page was opened
//! with logs this browser out.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::Response;
use tollgate_core::Action;
use tollgate_store::now_ms;

use super::form::{FormData, QueryData};
use super::session::{self, Session};
use super::view::{UserBar, When};
use super::{BASE, PageError, parse_id, render, see_other, user_access};
use crate::state::AppState;

struct SessionRow {
    id: String,
    created: When,
    /// What this node saw most recently, or what the database has.
    last_used: Option<When>,
    expires: When,
    agent: String,
    current: bool,
    end_href: String,
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct SessionsPage {
    user: Option<UserBar>,
    title: String,
    csrf: String,
    rows: Vec<SessionRow>,
    notice: Option<&'static str>,
}

/// A short, readable name for a `User-Agent` ("" when none was sent).
fn agent_label(agent: &str) -> String {
    if agent.trim().is_empty() {
        "Unknown client".to_owned()
    } else {
        agent.to_owned()
    }
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    query: QueryData,
) -> Result<Response, PageError> {
    let access = user_access(&state, &session, Action::MeGet).await?;
    let sessions = state
        .store()
        .sessions_of_user(access.user_id(), now_ms())
        .await?;
    let rows = sessions
        .into_iter()
        .map(|s| {
            // This node may know of a more recent use than the database (written in batches).
            let seen = state.credentials().session_last_used(&s.digest);
            let last_used = match (seen, s.last_used) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            SessionRow {
                id: s.id.to_hex(),
                created: When::at(s.creation_date),
                last_used: last_used.map(When::at),
                expires: When::at(s.expiration_date),
                agent: agent_label(&s.user_agent),
                current: s.digest == session.digest,
                end_href: format!("{BASE}/sessions/{}/end", s.id),
            }
        })
        .collect();
    let notice = query
        .get("ended")
        .map(|_| "The session has ended: it no longer works anywhere.");
    Ok(render(&SessionsPage {
        user: Some(session.bar()),
        title: "Sessions".to_owned(),
        csrf: session.csrf.clone(),
        rows,
        notice,
    }))
}

pub async fn end(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    form: FormData,
) -> Result<Response, PageError> {
    session.check_csrf(&form)?;
    let access = user_access(&state, &session, Action::AuthLogout).await?;
    let id = parse_id(&id, "This session")?;
    let current = state
        .store()
        .sessions_of_user(access.user_id(), now_ms())
        .await?
        .into_iter()
        .any(|s| s.id == id && s.digest == session.digest);
    state
        .store()
        .end_session(access.user_id(), id)
        .await
        .map_err(|e| PageError::Api(crate::error::ApiError::from_store(e, "This session")))?;
    tracing::info!(user = %access.user_id(), "user ended a session from the console");
    if current {
        let mut res = see_other(&format!("{BASE}/login?loggedout=1"));
        res.headers_mut().append(
            header::SET_COOKIE,
            session::clear_session_cookie(state.settings()),
        );
        return Ok(res);
    }
    Ok(see_other(&format!("{BASE}/sessions?ended=1")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_without_a_user_agent_are_named() {
        assert_eq!(agent_label(""), "Unknown client");
        assert_eq!(agent_label("curl/8.5"), "curl/8.5");
    }
}
