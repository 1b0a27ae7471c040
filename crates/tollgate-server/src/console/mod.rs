//! The console: server-rendered pages for people, under `/console` (the REST API owns
//! `/applications/...`; `/` redirects here).
//!
//! Pages use the same rules as the REST API, never their own:
//! * the session cookie holds a user-session secret (`tgus_…`) that is verified by
//!   [`Credentials::verify`](crate::auth::Credentials::verify), exactly like a bearer token;
//! * every page asks [`auth::decide`](crate::auth::decide) for the registry action it performs
//!   (the token list is `applicationApiTokens.get`, creating one `applicationApiTokens.post`…)
//!   and gets the same capability a REST handler gets; whether edit controls are shown is the
//!   same question asked for the write action;
//! * writes go through the functions the REST handlers call (`service::tokens::create`, …).
//!
//! Templates are compiled into the binary (askama, `templates/`), and so are the stylesheet
//! and script (`assets/`). See `docs/console.md` for the pages and the security measures.

mod account;
mod apps;
mod assets;
mod audit;
mod auth_pages;
mod form;
mod lifecycle;
mod lineage;
mod policy;
mod posture;
mod restrictions_form;
mod session;
mod sessions;
mod tokens;
mod usage;
mod view;
mod webhooks;

use askama::Template;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use tollgate_core::Action;
use tollgate_store::Id;

use crate::auth::{self, Access, AppAccess, Target, UserAccess};
use crate::error::ApiError;
use crate::state::AppState;

pub use session::Session;
/// Compare two strings in time that does not depend on where they differ.
pub use session::same as same_text;

/// Where the console lives.
pub const BASE: &str = "/console";

/// The console's routes. Merged into the application next to the REST API; none of its paths
/// is a REST path.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route(
            "/console",
            get(|| async { Redirect::to("/console/applications") }),
        )
        .route(
            "/console/",
            get(|| async { Redirect::to("/console/applications") }),
        )
        .route(
            "/console/login",
            get(auth_pages::login_page).post(auth_pages::login),
        )
        .route("/console/logout", post(auth_pages::logout))
        .route("/console/sessions", get(sessions::list))
        .route("/console/sessions/{session}/end", post(sessions::end))
        .route("/console/static/{file}", get(assets::serve))
        .route(
            "/console/account",
            get(account::show).post(account::save_profile),
        )
        .route("/console/account/password", post(account::change_password))
        .route(
            "/console/account/two-factor",
            get(account::setup).post(account::enable),
        )
        .route(
            "/console/account/two-factor/disable",
            post(account::disable),
        )
        .route("/console/applications", get(apps::list).post(apps::create))
        .route("/console/applications/new", get(apps::new_page))
        .route("/console/applications/{app}", get(apps::overview))
        .route("/console/applications/{app}/audit-log", get(audit::list))
        .route(
            "/console/applications/{app}/token-policy",
            get(policy::page).post(policy::save),
        )
        .route(
            "/console/applications/{app}/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/console/applications/{app}/webhooks/{hook}",
            get(webhooks::detail),
        )
        .route(
            "/console/applications/{app}/webhooks/{hook}/toggle",
            post(webhooks::toggle),
        )
        .route(
            "/console/applications/{app}/webhooks/{hook}/delete",
            post(webhooks::delete),
        )
        .route(
            "/console/applications/{app}/webhooks/{hook}/deliveries/{event}/retry",
            post(webhooks::retry),
        )
        .route(
            "/console/applications/{app}/tokens",
            get(tokens::list).post(tokens::create),
        )
        .route(
            "/console/applications/{app}/tokens/new",
            get(tokens::new_page),
        )
        .route(
            "/console/applications/{app}/tokens/reveal/{reveal}",
            get(tokens::reveal),
        )
        .route(
            "/console/applications/{app}/tokens/{token}",
            get(tokens::detail).post(tokens::save),
        )
        .route(
            "/console/applications/{app}/tokens/{token}/status",
            post(tokens::set_status),
        )
        .route(
            "/console/applications/{app}/tokens/{token}/roll",
            post(lifecycle::roll),
        )
        .route(
            "/console/applications/{app}/tokens/{token}/delete",
            get(tokens::delete_page).post(tokens::delete),
        )
        .route("/console/{*rest}", any(not_found))
        .layer(middleware::from_fn(security_headers))
}

/// Headers on every console response: no caching (pages carry CSRF tokens, the reveal dialog
/// a secret), no framing, no sniffing, a strict content policy (scripts and styles only from
/// the console's own files, so nothing injected can run).
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}

/// Why a page could not be shown. Every variant becomes an HTML answer: a redirect to the
/// login page or a page with a message, never JSON.
#[derive(Debug)]
pub enum PageError {
    /// Not logged in, or the session has ended: to the login page, then back to `next`.
    Login { next: String, expired: bool },
    /// The form did not carry this session's CSRF token.
    Csrf,
    /// An answer from the shared rules (not found, forbidden, unavailable, …).
    Api(ApiError),
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        if e.status == StatusCode::UNAUTHORIZED {
            // The session was valid a moment ago (the extractor checked it) and is not now.
            PageError::Login {
                next: format!("{BASE}/applications"),
                expired: true,
            }
        } else {
            PageError::Api(e)
        }
    }
}

impl From<crate::service::tokens::TokenError> for PageError {
    fn from(e: crate::service::tokens::TokenError) -> Self {
        e.into_api().into()
    }
}

impl From<tollgate_store::StoreError> for PageError {
    fn from(e: tollgate_store::StoreError) -> Self {
        PageError::Api(e.into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    title: String,
    message: String,
    status: u16,
    user: Option<view::UserBar>,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Login { next, expired } => {
                let mut target = format!("{BASE}/login?next={}", view::urlencode(&next));
                if expired {
                    target.push_str("&expired=1");
                }
                // (The stale cookie is replaced at the next login.)
                Redirect::to(&target).into_response()
            }
            PageError::Csrf => error_page(
                StatusCode::FORBIDDEN,
                "This form has expired",
                "The form you sent did not come from this page or has expired (for example, after you logged out in another tab). Go back, reload the page and try again.",
            ),
            PageError::Api(e) => {
                let title = match e.status {
                    StatusCode::NOT_FOUND => "Not found",
                    StatusCode::FORBIDDEN => "Not allowed",
                    StatusCode::BAD_REQUEST => "That did not work",
                    StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable",
                    _ => "Something went wrong",
                };
                let mut res = error_page(e.status, title, &e.message);
                if let Some(detail) = e.detail {
                    res.extensions_mut()
                        .insert(crate::observe::ErrorDetail(detail));
                }
                res
            }
        }
    }
}

fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let page = ErrorPage {
        title: title.to_owned(),
        message: message.to_owned(),
        status: status.as_u16(),
        user: None,
    };
    (status, render(&page)).into_response()
}

/// Render a template, or answer 500 (and log why) if it cannot be.
fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>Something went wrong on the server; it has been logged.</p>"),
            )
                .into_response()
        }
    }
}

async fn not_found() -> Response {
    PageError::Api(ApiError::not_found("This page")).into_response()
}

/// A path id; a malformed one is simply "not found" for a person.
fn parse_id(s: &str, what: &str) -> Result<Id, PageError> {
    s.parse::<Id>()
        .map_err(|_| PageError::Api(ApiError::not_found(what)))
}

/// The decision for `action` in application `app`, made by the authorization layer.
async fn app_access(
    state: &AppState,
    session: &Session,
    action: Action,
    app: Id,
) -> Result<AppAccess, PageError> {
    match auth::decide(
        state,
        session.principal.clone(),
        action,
        Target::Application(app),
    )
    .await?
    .acting_from(session.client)
    {
        Access::App(a) => Ok(a),
        _ => Err(PageError::Api(ApiError::internal())),
    }
}

/// Whether `action` would be allowed in `app` (to decide which controls to show).
async fn allowed(state: &AppState, session: &Session, action: Action, app: Id) -> bool {
    app_access(state, session, action, app).await.is_ok()
}

/// The decision for a user-level action (the applications list, creating an application).
async fn user_access(
    state: &AppState,
    session: &Session,
    action: Action,
) -> Result<UserAccess, PageError> {
    match auth::decide(state, session.principal.clone(), action, Target::None)
        .await?
        .acting_from(session.client)
    {
        Access::User(u) => Ok(u),
        _ => Err(PageError::Api(ApiError::internal())),
    }
}

/// `candidate` if it is a same-site relative path under `prefix` that can go in a
/// `Location` header as it is: it starts with `prefix` (which starts with `/`), is not
/// protocol-relative (`//…`), has no backslash, and is printable ASCII only (a CR, LF, NUL or
/// other control character, a space or a non-ASCII character would have to be
/// percent-encoded). Checked before the action it follows, so a bad one never leaves a
/// change made and the answer failed.
pub fn safe_path(candidate: &str, prefix: &str) -> Option<String> {
    let ok = candidate.starts_with(prefix)
        && candidate.starts_with('/')
        && !candidate.starts_with("//")
        && !candidate.contains("//")
        && !candidate.contains('\\')
        && candidate.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| candidate.to_owned())
}

/// A 303 to a console page (after a form was handled). A target that cannot be a header
/// value (never one built here) goes to the console's home instead of failing.
fn see_other(path: &str) -> Response {
    match HeaderValue::from_str(path) {
        Ok(_) => Redirect::to(path).into_response(),
        Err(_) => Redirect::to(&format!("{BASE}/applications")).into_response(),
    }
}
