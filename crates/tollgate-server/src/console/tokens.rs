//! Security → Application API Tokens: the list, the new-token form and its reveal dialog,
//! a token's detail page, the active toggle and deletion.
//!
//! Every handler asks the authorization layer for the action it performs and changes tokens
//! only through the token service the REST handlers use too (`service::tokens`).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tollgate_core::registry::application_resources;
use tollgate_core::{Action, Grant, Scope, Summary};
use tollgate_store::Id;
use tollgate_store::console::NewReveal;
use tollgate_store::tokens::{TOKEN_FIELDS, TokenChange, TokenRecord, TokenStatus};

use super::form::{FormData, QueryData};
use super::session::{Session, clear_reveal_cookie, reveal_cookie, reveal_pad};
use super::view::{self, AppNav, UserBar, When};
use super::{BASE, PageError, allowed, app_access, parse_id, render, see_other};
use crate::error::ApiError;
use crate::extract::ListParams;
use crate::service::lifecycle::{self, State as Life};
use crate::service::tokens::{self as service, TokenError, TokenRequest, Verb, last_used};
use crate::state::AppState;
use tollgate_store::posture::Posture;

/// Tokens per page of the list.
const PER_PAGE: i64 = 50;

fn tokens_href(app: Id) -> String {
    format!("{BASE}/applications/{app}/tokens")
}

fn token_href(app: Id, token: Id) -> String {
    format!("{BASE}/applications/{app}/tokens/{token}")
}

async fn app_nav(state: &AppState, app: Id) -> Result<AppNav, PageError> {
    let a = state
        .store()
        .application(app)
        .await
        .map_err(|e| ApiError::from_store(e, "Application"))?;
    Ok(AppNav {
        id: a.id.to_string(),
        name: a.name,
        section: "security",
    })
}

fn summary_of(t: &TokenRecord) -> Summary {
    Scope::parse(&t.scope).map_or(Summary::Custom, |s| s.summary())
}

fn is_expired(t: &TokenRecord) -> bool {
    t.expiration_date
        .is_some_and(|e| e <= tollgate_store::now_ms())
}

// ---------------------------------------------------------------------------------------
// The list

struct TokenRow {
    name: String,
    href: String,
    summary: &'static str,
    creator: String,
    creator_is_token: bool,
    expires: Option<When>,
    expired: bool,
    last_used: Option<When>,
    active: bool,
    /// What the token is now (Active, Inactive, Expired, Retired), from `service::lifecycle`.
    state_label: &'static str,
    /// Expired or retired: refused whatever its switch says, so no switch is shown.
    ended: bool,
    /// "Expires in 5 days".
    expires_in: Option<String>,
    expiring_soon: bool,
    /// Why it was switched off (an idle deactivation, a leak report), if not by hand.
    reason: Option<String>,
    status_href: String,
    delete_href: String,
}

/// The secret of a token just created, shown once in the reveal dialog.
struct Reveal {
    secret: String,
    token_name: String,
    file_name: String,
    close_href: String,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct ListPage {
    user: Option<UserBar>,
    title: String,
    nav: AppNav,
    csrf: String,
    rows: Vec<TokenRow>,
    total: i64,
    filter: String,
    descending: bool,
    sort_href: String,
    list_href: String,
    /// This very list (sort, filter, page), for the toggle to come back to.
    return_href: String,
    new_href: String,
    /// The application's token policy page.
    policy_href: String,
    can_add: bool,
    can_toggle: bool,
    can_delete: bool,
    prev_href: Option<String>,
    next_href: Option<String>,
    page_label: Option<String>,
    notice: Option<String>,
    reveal: Option<Reveal>,
    /// The posture summary (issue 13): each category's count and the link that filters by it.
    posture: Vec<super::posture::PostureItem>,
    /// The posture filter in force, in words ("never used"), and the list without it.
    posture_on: Option<&'static str>,
    posture_name: String,
    show_all_href: String,
    clear_href: String,
}

/// What the list shows: sort direction, filter, posture category, page.
struct ListView {
    descending: bool,
    filter: String,
    posture: Option<Posture>,
    page: i64,
}

impl ListView {
    fn from_query(q: &QueryData) -> ListView {
        ListView {
            descending: q.get("dir") == Some("desc"),
            filter: q.get("q").unwrap_or("").trim().to_owned(),
            // An unknown category (a typed URL) is no filter.
            posture: q.get("posture").and_then(Posture::parse),
            page: q
                .get("page")
                .and_then(|p| p.parse::<i64>().ok())
                .filter(|p| *p >= 0)
                .unwrap_or(0),
        }
    }

    fn href(&self, app: Id, descending: bool, page: i64) -> String {
        let mut q = Vec::new();
        if descending {
            q.push("dir=desc".to_owned());
        }
        if !self.filter.is_empty() {
            q.push(format!("q={}", view::urlencode(&self.filter)));
        }
        if let Some(p) = self.posture {
            q.push(format!("posture={}", p.name()));
        }
        if page > 0 {
            q.push(format!("page={page}"));
        }
        let base = tokens_href(app);
        if q.is_empty() {
            base
        } else {
            format!("{base}?{}", q.join("&"))
        }
    }
}

async fn render_list(
    state: &AppState,
    session: &Session,
    app: Id,
    lv: &ListView,
    notice: Option<String>,
    reveal: Option<Reveal>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let access = app_access(state, session, Action::ApplicationApiTokensGet, app).await?;
    let app = access.application();
    let params = ListParams {
        sort_field: Some("name".to_owned()),
        sort_direction: Some(if lv.descending { "desc" } else { "asc" }.to_owned()),
        page: Some(lv.page.to_string()),
        per_page: Some(PER_PAGE.to_string()),
        filter_field: (!lv.filter.is_empty()).then(|| "name".to_owned()),
        // A filter box finds names containing the text (`*` works as a wildcard too).
        filter: (!lv.filter.is_empty()).then(|| format!("*{}*", lv.filter)),
    };
    let spec = params.spec(&TOKEN_FIELDS)?;
    let page = crate::api::token_posture::page(state, app, lv.posture, &spec).await?;
    let posture = super::posture::summary(state, app, lv.posture, |p| {
        ListView {
            descending: lv.descending,
            filter: lv.filter.clone(),
            posture: Some(p),
            page: 0,
        }
        .href(app, lv.descending, 0)
    })
    .await?;
    let now = tollgate_store::now_ms();
    let rows = page
        .items
        .iter()
        .map(|t| TokenRow {
            name: t.name.clone(),
            href: token_href(app, t.id),
            summary: summary_of(t).label(),
            creator: t.creator.name.clone(),
            creator_is_token: t.creator.kind == "apiToken",
            expires: t.expiration_date.map(When::at),
            expired: is_expired(t),
            last_used: last_used(state, t).map(When::at),
            active: t.status == TokenStatus::Active,
            state_label: Life::of(t, now).label(),
            ended: matches!(Life::of(t, now), Life::Expired | Life::Retired),
            expires_in: lifecycle::expires_in(t.expiration_date, now),
            expiring_soon: state
                .leads()
                .expiring_soon(t.application_id, t.expiration_date, now),
            reason: t
                .life
                .deactivation_reason
                .as_ref()
                .map(|r| match r.as_str() {
                    tollgate_store::policy::IDLE => "Deactivated: idle".to_owned(),
                    other => format!("Deactivated: {other}"),
                }),
            status_href: format!("{}/status", token_href(app, t.id)),
            delete_href: format!("{}/delete", token_href(app, t.id)),
        })
        .collect();
    let pages = (page.total + PER_PAGE - 1) / PER_PAGE;
    let page_label = (pages > 1).then(|| format!("Page {} of {pages}", lv.page + 1));
    let page_html = ListPage {
        user: Some(session.bar()),
        title: "Application API Tokens".to_owned(),
        nav: app_nav(state, app).await?,
        csrf: session.csrf.clone(),
        rows,
        total: page.total,
        filter: lv.filter.clone(),
        descending: lv.descending,
        sort_href: lv.href(app, !lv.descending, 0),
        list_href: tokens_href(app),
        return_href: lv.href(app, lv.descending, lv.page),
        new_href: format!("{}/new", tokens_href(app)),
        policy_href: format!("{BASE}/applications/{app}/token-policy"),
        can_add: allowed(state, session, Action::ApplicationApiTokensPost, app).await,
        can_toggle: allowed(state, session, Action::ApplicationApiTokenPatch, app).await,
        can_delete: allowed(state, session, Action::ApplicationApiTokenDelete, app).await,
        prev_href: (lv.page > 0).then(|| lv.href(app, lv.descending, lv.page - 1)),
        next_href: (lv.page + 1 < pages).then(|| lv.href(app, lv.descending, lv.page + 1)),
        page_label,
        notice,
        reveal,
        posture,
        posture_on: lv.posture.map(super::posture::words),
        posture_name: lv.posture.map_or("", Posture::name).to_owned(),
        show_all_href: ListView {
            posture: None,
            filter: lv.filter.clone(),
            ..*lv
        }
        .href(app, lv.descending, 0),
        clear_href: ListView {
            filter: String::new(),
            ..*lv
        }
        .href(app, lv.descending, 0),
    };
    Ok((status, render(&page_html)).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Path(app): Path<String>,
    query: QueryData,
) -> Result<Response, PageError> {
    let app = parse_id(&app, "Application")?;
    let notice = match query.get("notice") {
        Some("activated") => Some("The token is active again: requests with it are accepted."),
        Some("deactivated") => {
            Some("The token is inactive: requests with it are refused until you activate it.")
        }
        Some("deleted") => Some("The token was deleted: requests with it are refused."),
        _ => None,
    };
    render_list(
        &state,
        &session,
        app,
        &ListView::from_query(&query),
        notice.map(str::to_owned),
        None,
        StatusCode::OK,
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Adding a token

struct ActionItem {
    name: &'static str,
    label: String,
    description: &'static str,
    method: &'static str,
    path: String,
    checked: bool,
}

struct ResourceGroup {
    resource: &'static str,
    label: String,
    actions: Vec<ActionItem>,
}

/// Every application action, grouped by resource, straight from the registry.
fn checklist(app: Id, checked: &[&str]) -> Vec<ResourceGroup> {
    let app_id = app.to_string();
    application_resources()
        .into_iter()
        .map(|(resource, defs)| ResourceGroup {
            resource,
            label: view::humanize(resource),
            actions: defs
                .into_iter()
                .map(|d| ActionItem {
                    name: d.name,
                    label: view::humanize(d.verb()),
                    description: d.description,
                    method: d.method.as_str(),
                    path: d.path.replace("{applicationId}", &app_id),
                    checked: checked.contains(&d.name),
                })
                .collect(),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "token_new.html")]
struct NewTokenPage {
    user: Option<UserBar>,
    title: String,
    nav: AppNav,
    csrf: String,
    action_href: String,
    cancel_href: String,
    name: String,
    description: String,
    never_expires: bool,
    expires_local: String,
    /// The expiry field still holds the suggested one year from now (the script turns it
    /// into the reader's local time).
    preset: bool,
    scope_mode: String,
    groups: Vec<ResourceGroup>,
    name_error: Option<String>,
    expiry_error: Option<String>,
    scope_error: Option<String>,
    /// Devices, addresses, rate and usage limit (each optional).
    limits: super::restrictions_form::RestrictionFields,
    /// This form's one-time key: the form can create one token, however often it is sent.
    form_key: String,
    /// Pre-filled as a narrower replacement of this token (its name and detail link).
    replacing: Option<(String, String)>,
}

impl NewTokenPage {
    fn blank(session: &Session, nav: AppNav, app: Id) -> NewTokenPage {
        NewTokenPage {
            user: Some(session.bar()),
            title: "Add Application Token".to_owned(),
            nav,
            csrf: session.csrf.clone(),
            action_href: tokens_href(app),
            cancel_href: tokens_href(app),
            name: String::new(),
            description: String::new(),
            never_expires: false,
            expires_local: view::datetime_local(view::one_year_after(tollgate_store::now_ms())),
            preset: true,
            scope_mode: "all".to_owned(),
            groups: checklist(app, &[]),
            name_error: None,
            expiry_error: None,
            limits: Default::default(),
            scope_error: None,
            form_key: new_form_key(),
            replacing: None,
        }
    }
}

/// How long a token form's key is accepted (and remembered once used).
pub const FORM_KEY_TTL_MS: i64 = 24 * 3600 * 1000;
/// How long a new token's secret waits for the page that shows it.
const REVEAL_TTL_MS: i64 = 5 * 60 * 1000;

/// `<issued at, ms>.<128 random bits, hex>`.
fn new_form_key() -> String {
    let random = super::session::to_hex(
        &tollgate_core::secret::Secret::generate(tollgate_core::secret::SecretKind::UserSession)
            .digest()[..16],
    );
    format!("{}.{random}", tollgate_store::now_ms())
}

/// A form key this server could have issued and that has not expired.
fn form_key_valid(key: &str) -> bool {
    let Some((at, random)) = key.split_once('.') else {
        return false;
    };
    let now = tollgate_store::now_ms();
    at.parse::<i64>()
        .is_ok_and(|at| at <= now + 60_000 && now - at < FORM_KEY_TTL_MS)
        && random.len() == 32
        && random.bytes().all(|b| b.is_ascii_hexdigit())
}

fn reveal_href(app: Id, reveal: Id) -> String {
    format!("{}/reveal/{reveal}", tokens_href(app))
}

/// `secret XOR pad`, byte by byte (the pad is as long as the secret).
fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Send the browser to the page that shows a new token's secret once (after a creation or
/// a roll). The secret is shown on the page the browser is sent to, not in this answer: a
/// reload there repeats a GET, never the POST. Only the sealed secret waits in the
/// database; the pad that unseals it goes to this browser alone, in a cookie.
pub(super) async fn reveal_once(
    state: &AppState,
    session: &Session,
    app: Id,
    record: &TokenRecord,
    secret: &tollgate_core::secret::Secret,
) -> Result<Response, PageError> {
    let mut pad = vec![0u8; secret.expose().len()];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut pad);
    let pad = &pad;
    let sealed = xor(secret.expose().as_bytes(), pad);
    let reveal = state
        .store()
        .put_reveal(&NewReveal {
            user_id: session.user_id,
            application_id: app,
            token_id: record.id,
            token_name: &record.name,
            sealed: &sealed,
            expires_at: tollgate_store::now_ms() + REVEAL_TTL_MS,
        })
        .await?;
    let mut res = see_other(&reveal_href(app, reveal));
    res.headers_mut().append(
        header::SET_COOKIE,
        reveal_cookie(
            state.settings(),
            &super::session::to_hex(pad),
            REVEAL_TTL_MS / 1000,
        ),
    );
    Ok(res)
}

pub async fn new_page(
    State(state): State<AppState>,
    session: Session,
    Path(app): Path<String>,
    query: QueryData,
) -> Result<Response, PageError> {
    let app = parse_id(&app, "Application")?;
    let access = app_access(&state, &session, Action::ApplicationApiTokensPost, app).await?;
    let app = access.application();
    let nav = app_nav(&state, app).await?;
    let mut page = NewTokenPage::blank(&session, nav, app);
    // "Create a narrower replacement": the form pre-filled from a token and its usage.
    // Nothing is created until the form is sent.
    if let Some(from) = query.get("from") {
        let from = parse_id(from, "API token")?;
        let read = app_access(&state, &session, Action::ApplicationApiTokenGet, app).await?;
        app_access(&state, &session, Action::ApplicationApiTokenUsage, app).await?;
        let t = state
            .store()
            .token(read.application(), from)
            .await
            .map_err(|e| ApiError::from_store(e, "API token"))?;
        let suggested = super::usage::suggested_scope(&state, app, from).await?;
        let checked: Vec<&str> = suggested.iter().map(String::as_str).collect();
        page.name = t.name.clone();
        page.description = t.description.clone();
        page.scope_mode = "custom".to_owned();
        page.groups = checklist(app, &checked);
        page.limits = super::usage::restriction_fields(&t);
        page.replacing = Some((t.name.clone(), token_href(app, t.id)));
    }
    Ok(render(&page))
}

pub async fn create(
    State(state): State<AppState>,
    session: Session,
    Path(app): Path<String>,
    form: FormData,
) -> Result<Response, PageError> {
    session.check_csrf(&form)?;
    let app = parse_id(&app, "Application")?;
    let access = app_access(&state, &session, Action::ApplicationApiTokensPost, app).await?;
    let app = access.application();

    // Read the form back into the page, so that a refusal shows it as it was sent.
    let mut page = NewTokenPage::blank(&session, app_nav(&state, app).await?, app);
    page.name = form.text("name").trim().to_owned();
    page.description = form.text("description").trim().to_owned();
    page.never_expires = form.get("expiry") == Some("never");
    page.expires_local = form.text("expires_at").to_owned();
    page.preset = false;
    page.scope_mode = match form.get("scope_mode") {
        Some(m @ ("read" | "custom" | "bounded")) => m.to_owned(),
        _ => "all".to_owned(),
    };
    let checked: Vec<&str> = form.all("action").collect();
    page.groups = checklist(app, &checked);
    page.limits = super::restrictions_form::RestrictionFields::read(&form);
    let form_key = form.text("form_key").to_owned();
    if !form_key_valid(&form_key) {
        return Err(PageError::Api(ApiError::validation(
            "This form has expired or was not sent whole: open Add Application Token again",
        )));
    }
    page.form_key = form_key.clone();
    if let Some(used) = state
        .store()
        .used_form_key(&form_key, session.user_id)
        .await?
    {
        return already_submitted(&state, &session, app, &used.token_name).await;
    }

    let expiration_date = if page.never_expires {
        Ok(None)
    } else {
        // The script sends the reader's local time converted to UTC; without it, the field's
        // value is read as UTC (which the page says).
        form.get("expires_iso")
            .filter(|s| !s.is_empty())
            .and_then(crate::time::parse_iso)
            .or_else(|| view::parse_datetime_local(&page.expires_local))
            .map(Some)
            .ok_or(())
    };
    let scope = match page.scope_mode.as_str() {
        "read" => vec![tollgate_core::scope::ALL_APPLICATION_READ.to_owned()],
        "bounded" => vec![tollgate_core::scope::ALL_APPLICATION_BOUNDED.to_owned()],
        "custom" => checked.iter().map(|s| (*s).to_owned()).collect(),
        _ => vec![tollgate_core::scope::ALL_APPLICATION.to_owned()],
    };

    let restrictions = page.limits.restrictions();
    let result = match (expiration_date, restrictions) {
        (_, Err(e)) => {
            page.limits.error = Some(e);
            None
        }
        (Err(()), _) => {
            page.expiry_error = Some("Enter a date and time, or choose Never expires.".to_owned());
            None
        }
        (Ok(expiration_date), Ok(restrictions)) => Some(
            service::create(
                &state,
                &access,
                TokenRequest {
                    name: page.name.clone(),
                    description: page.description.clone(),
                    scope: Some(scope),
                    expiration_date,
                    status: TokenStatus::Active,
                    restrictions,
                    form_key: Some((form_key.clone(), session.user_id)),
                },
            )
            .await,
        ),
    };
    let status = match result {
        Some(Ok((record, secret))) => {
            return reveal_once(&state, &session, app, &record, &secret).await;
        }
        None => StatusCode::BAD_REQUEST,
        Some(Err(e)) => match e {
            TokenError::Name => {
                page.name_error = Some(if page.name.is_empty() {
                    "Enter a name for the token.".to_owned()
                } else {
                    "The name can be at most 255 characters long.".to_owned()
                });
                StatusCode::BAD_REQUEST
            }
            TokenError::Scope(tollgate_core::ScopeError::Empty) => {
                page.scope_error = Some(
                    "Choose at least one action, or choose All permissions or Read only."
                        .to_owned(),
                );
                StatusCode::BAD_REQUEST
            }
            TokenError::Scope(e) => {
                page.scope_error = Some(format!("These permissions are not valid: {e}."));
                StatusCode::BAD_REQUEST
            }
            TokenError::PastExpiry => {
                page.expiry_error = Some(
                    "This date is in the past: choose a future date, or Never expires.".to_owned(),
                );
                StatusCode::BAD_REQUEST
            }
            TokenError::TooPowerful {
                verb: Verb::Create,
                excess,
                ..
            } => {
                page.scope_error = Some(format!(
                    "A token cannot be given more than you may do yourself: your role does not allow {}.",
                    excess.join(", ")
                ));
                StatusCode::FORBIDDEN
            }
            TokenError::Outlives {
                verb: Verb::Create,
                limit,
                ..
            } => {
                page.expiry_error = Some(format!(
                    "A token cannot outlive its creator: choose a date no later than {}.",
                    When::at(limit).text
                ));
                StatusCode::FORBIDDEN
            }
            TokenError::AlreadySubmitted => {
                return already_submitted(&state, &session, app, &page.name).await;
            }
            TokenError::Restrictions(problems) => {
                page.limits.error = Some(format!("{}.", problems.join("; ")));
                StatusCode::BAD_REQUEST
            }
            TokenError::Other(e) if e.status == StatusCode::BAD_REQUEST => {
                page.name_error = Some(format!("{}.", e.message));
                StatusCode::BAD_REQUEST
            }
            e => return Err(e.into()),
        },
    };
    Ok((status, render(&page)).into_response())
}

// ---------------------------------------------------------------------------------------
// A token's page

struct ActionLine {
    label: String,
    name: &'static str,
    description: &'static str,
    method: &'static str,
    path: String,
}

struct GrantGroup {
    label: String,
    actions: Vec<ActionLine>,
}

#[derive(Template)]
#[template(path = "token.html")]
struct DetailPage {
    user: Option<UserBar>,
    title: String,
    nav: AppNav,
    csrf: String,
    list_href: String,
    form_href: String,
    delete_href: String,
    name: String,
    description: String,
    active: bool,
    summary: &'static str,
    scope: Vec<String>,
    future_note: &'static str,
    future_resources: String,
    groups: Vec<GrantGroup>,
    /// Its restrictions in plain words (empty: none), and its uses left with a usage limit.
    limits: Vec<String>,
    uses_remaining: Option<i64>,
    expires: Option<When>,
    expired: bool,
    creator: String,
    creator_is_token: bool,
    created: When,
    updated: When,
    last_used: Option<When>,
    can_edit: bool,
    can_delete: bool,
    name_error: Option<String>,
    notice: Option<&'static str>,
    life: super::lifecycle::LifeView,
    lineage: super::lineage::LineageView,
    /// What it did (issue 13): `None` when the reader may not see its usage.
    usage: Option<super::usage::UsageView>,
}

/// What a scope grants, listed by action (what it allows today), and what it will also grant
/// when actions are added.
fn granted(app: Id, t: &TokenRecord) -> (Vec<GrantGroup>, &'static str, String) {
    let Ok(scope) = Scope::parse(&t.scope) else {
        return (Vec::new(), "", String::new());
    };
    let allowed = scope.compile();
    let app_id = app.to_string();
    let groups = application_resources()
        .into_iter()
        .filter_map(|(resource, defs)| {
            let actions: Vec<ActionLine> = defs
                .into_iter()
                .filter(|d| allowed.contains(d.action))
                .map(|d| ActionLine {
                    label: view::humanize(d.verb()),
                    name: d.name,
                    description: d.description,
                    method: d.method.as_str(),
                    path: d.path.replace("{applicationId}", &app_id),
                })
                .collect();
            (!actions.is_empty()).then(|| GrantGroup {
                label: view::humanize(resource),
                actions,
            })
        })
        .collect();
    let grants = scope.grants();
    let resources: Vec<String> = grants
        .iter()
        .filter_map(|g| match g {
            Grant::Resource(r) => Some(view::humanize(r)),
            _ => None,
        })
        .collect();
    let note = if grants.contains(&Grant::All) {
        "It also gets every application action added in the future."
    } else if grants.contains(&Grant::AllBounded) {
        "It also gets every application action added in the future, except changes to API tokens."
    } else if grants.contains(&Grant::AllRead) {
        "It also gets every read action added in the future."
    } else if !resources.is_empty() {
        "It also gets actions added in the future to these resources:"
    } else {
        "Actions added in the future are not included."
    };
    (groups, note, resources.join(", "))
}

/// What the detail page shows besides the token itself.
#[derive(Default)]
struct DetailState {
    /// The settings form as it was sent (name, description, active), when it was refused.
    edited: Option<(String, String, bool)>,
    name_error: Option<String>,
    notice: Option<&'static str>,
}

async fn render_detail(
    state: &AppState,
    session: &Session,
    app: Id,
    token: Id,
    extra: DetailState,
    status: StatusCode,
) -> Result<Response, PageError> {
    let access = app_access(state, session, Action::ApplicationApiTokenGet, app).await?;
    let app = access.application();
    let t = state
        .store()
        .token(app, token)
        .await
        .map_err(|e| ApiError::from_store(e, "API token"))?;
    let (groups, future_note, future_resources) = granted(app, &t);
    let (name, description, active) = extra.edited.unwrap_or((
        t.name.clone(),
        t.description.clone(),
        t.status == TokenStatus::Active,
    ));
    let page = DetailPage {
        user: Some(session.bar()),
        title: t.name.clone(),
        nav: app_nav(state, app).await?,
        csrf: session.csrf.clone(),
        list_href: tokens_href(app),
        form_href: token_href(app, t.id),
        delete_href: format!("{}/delete", token_href(app, t.id)),
        name,
        description,
        active,
        summary: summary_of(&t).label(),
        scope: t.scope.clone(),
        future_note,
        future_resources,
        groups,
        limits: tollgate_core::restrictions::Restrictions::from_stored(t.restrictions.as_deref())
            .map(|r| super::restrictions_form::describe(&r))
            .unwrap_or_default(),
        uses_remaining: t
            .unleased_uses
            .map(|u| u + state.credentials().counters().leased_here(t.id)),
        expires: t.expiration_date.map(When::at),
        expired: is_expired(&t),
        creator: t.creator.name.clone(),
        creator_is_token: t.creator.kind == "apiToken",
        created: When::at(t.creation_date),
        updated: When::at(t.last_updated),
        last_used: last_used(state, &t).map(When::at),
        can_edit: allowed(state, session, Action::ApplicationApiTokenPatch, app).await,
        can_delete: allowed(state, session, Action::ApplicationApiTokenDelete, app).await,
        name_error: extra.name_error,
        notice: extra.notice,
        life: super::lifecycle::LifeView::of(state, session, &t).await,
        lineage: super::lineage::LineageView::of(state, &t).await,
        usage: if allowed(state, session, Action::ApplicationApiTokenUsage, app).await {
            let replace = allowed(state, session, Action::ApplicationApiTokensPost, app)
                .await
                .then(|| super::usage::replace_href(app, t.id));
            Some(super::usage::panel(state, app, &t, replace).await?)
        } else {
            None
        },
    };
    Ok((status, render(&page)).into_response())
}

pub async fn detail(
    State(state): State<AppState>,
    session: Session,
    Path((app, token)): Path<(String, String)>,
    query: QueryData,
) -> Result<Response, PageError> {
    let app = parse_id(&app, "Application")?;
    let token = parse_id(&token, "API token")?;
    let notice = match query.get("notice") {
        Some("saved") => Some("Your changes were saved."),
        _ => None,
    };
    render_detail(
        &state,
        &session,
        app,
        token,
        DetailState {
            notice,
            ..DetailState::default()
        },
        StatusCode::OK,
    )
    .await
}

fn status_field(form: &FormData) -> Result<Option<TokenStatus>, PageError> {
    match form.get("status") {
        None => Ok(None),
        Some(s) => TokenStatus::parse(s).map(Some).ok_or_else(|| {
            PageError::Api(ApiError::validation(
                "The status must be Active or Inactive",
            ))
        }),
    }
}

pub async fn save(
    State(state): State<AppState>,
    session: Session,
    Path((app, token)): Path<(String, String)>,
    form: FormData,
) -> Result<Response, PageError> {
    session.check_csrf(&form)?;
    let app = parse_id(&app, "Application")?;
    let token = parse_id(&token, "API token")?;
    let access = app_access(&state, &session, Action::ApplicationApiTokenPatch, app).await?;
    let name = form.text("name").trim().to_owned();
    let description = form.text("description").trim().to_owned();
    let status = status_field(&form)?;
    let change = TokenChange {
        name: Some(name.clone()),
        description: Some(description.clone()),
        status,
    };
    // "Also switch off the tokens it created": `PATCH …?cascade=true`'s service call.
    let cascade = form.get("cascade") == Some("on") && status == Some(TokenStatus::Inactive);
    let result = if cascade {
        crate::service::lineage::cascade_change(&state, &access, token, &change)
            .await
            .map(|_| token)
    } else {
        service::change(&state, &access, token, &change)
            .await
            .map(|t| t.id)
    };
    match result.map_err(TokenError::into_api) {
        Ok(id) => Ok(see_other(&format!(
            "{}?notice=saved",
            token_href(access.application(), id)
        ))),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            let message = if name.is_empty() {
                "Enter a name for the token.".to_owned()
            } else {
                format!("{}.", e.message)
            };
            render_detail(
                &state,
                &session,
                app,
                token,
                DetailState {
                    edited: Some((name, description, status != Some(TokenStatus::Inactive))),
                    name_error: Some(message),
                    notice: None,
                },
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// A token form sent a second time (a reload of the POST, a double click): nothing new was
/// created, and the list says so.
async fn already_submitted(
    state: &AppState,
    session: &Session,
    app: Id,
    token_name: &str,
) -> Result<Response, PageError> {
    render_list(
        state,
        session,
        app,
        &ListView {
            descending: false,
            filter: String::new(),
            posture: None,
            page: 0,
        },
        Some(format!(
            "This form was sent already and created the token “{token_name}”: no second token was created. Its secret was shown once and cannot be shown again."
        )),
        None,
        StatusCode::CONFLICT,
    )
    .await
}

/// The page a new token's creation redirects to: the list with the secret shown once. The
/// sealed secret is taken (read and deleted) from the database and unsealed with the pad in
/// this browser's cookie, which is cleared; a reload finds nothing and says so.
pub async fn reveal(
    State(state): State<AppState>,
    session: Session,
    Path((app, reveal)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let app = parse_id(&app, "Application")?;
    let reveal_id = parse_id(&reveal, "Token")?;
    let access = app_access(&state, &session, Action::ApplicationApiTokensGet, app).await?;
    let app = access.application();
    let pad = reveal_pad(state.settings(), &headers).and_then(from_hex);
    let taken = match &pad {
        Some(_) => {
            state
                .store()
                .take_reveal(reveal_id, session.user_id)
                .await?
        }
        None => None,
    };
    let lv = ListView {
        descending: false,
        filter: String::new(),
        posture: None,
        page: 0,
    };
    let shown = match (taken, pad) {
        (Some(r), Some(pad)) if r.application_id == app && pad.len() == r.sealed.len() => {
            String::from_utf8(xor(&r.sealed, &pad))
                .ok()
                .map(|secret| (r.token_name, secret))
        }
        _ => None,
    };
    let mut res = match shown {
        Some((token_name, secret)) => {
            let notice = format!("The token “{token_name}” was created.");
            render_list(
                &state,
                &session,
                app,
                &lv,
                Some(notice),
                Some(Reveal {
                    file_name: view::file_name(&token_name),
                    token_name,
                    secret,
                    close_href: tokens_href(app),
                }),
                StatusCode::OK,
            )
            .await?
        }
        None => {
            render_list(
                &state,
                &session,
                app,
                &lv,
                Some(
                    "This token's secret was shown once already and cannot be shown again. If it was not saved, create a new token and delete this one."
                        .to_owned(),
                ),
                None,
                StatusCode::GONE,
            )
            .await?
        }
    };
    res.headers_mut()
        .append(header::SET_COOKIE, clear_reveal_cookie(state.settings()));
    Ok(res)
}

/// The list's active/inactive toggle.
pub async fn set_status(
    State(state): State<AppState>,
    session: Session,
    Path((app, token)): Path<(String, String)>,
    form: FormData,
) -> Result<Response, PageError> {
    session.check_csrf(&form)?;
    let app = parse_id(&app, "Application")?;
    let token = parse_id(&token, "API token")?;
    let access = app_access(&state, &session, Action::ApplicationApiTokenPatch, app).await?;
    // Where to go back to is decided before anything changes.
    let list = tokens_href(access.application());
    let back = form
        .get("return")
        .and_then(|r| super::safe_path(r, &list))
        .unwrap_or(list);
    let Some(status) = status_field(&form)? else {
        return Err(PageError::Api(ApiError::validation(
            "The status must be Active or Inactive",
        )));
    };
    match status {
        TokenStatus::Active => service::reactivate(&state, &access, token).await?,
        TokenStatus::Inactive => service::deactivate(&state, &access, token).await?,
    };
    let notice = match status {
        TokenStatus::Active => "activated",
        TokenStatus::Inactive => "deactivated",
    };
    let sep = if back.contains('?') { '&' } else { '?' };
    Ok(see_other(&format!("{back}{sep}notice={notice}")))
}

#[derive(Template)]
#[template(path = "token_delete.html")]
struct DeletePage {
    user: Option<UserBar>,
    title: String,
    nav: AppNav,
    csrf: String,
    name: String,
    form_href: String,
    cancel_href: String,
    /// Tokens descending from this one: the page offers to delete them too.
    descendants: i64,
}

pub async fn delete_page(
    State(state): State<AppState>,
    session: Session,
    Path((app, token)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let app = parse_id(&app, "Application")?;
    let token = parse_id(&token, "API token")?;
    let access = app_access(&state, &session, Action::ApplicationApiTokenDelete, app).await?;
    let app = access.application();
    let t = state
        .store()
        .token(app, token)
        .await
        .map_err(|e| ApiError::from_store(e, "API token"))?;
    let descendants = super::lineage::LineageView::of(&state, &t)
        .await
        .descendant_count;
    Ok(render(&DeletePage {
        user: Some(session.bar()),
        title: format!("Delete {}", t.name),
        nav: app_nav(&state, app).await?,
        csrf: session.csrf.clone(),
        name: t.name,
        form_href: format!("{}/delete", token_href(app, token)),
        cancel_href: token_href(app, token),
        descendants,
    }))
}

pub async fn delete(
    State(state): State<AppState>,
    session: Session,
    Path((app, token)): Path<(String, String)>,
    form: FormData,
) -> Result<Response, PageError> {
    session.check_csrf(&form)?;
    let app = parse_id(&app, "Application")?;
    let token = parse_id(&token, "API token")?;
    let access = app_access(&state, &session, Action::ApplicationApiTokenDelete, app).await?;
    // The same service call as `DELETE …?cascade=true`: the subtree in one transaction, each
    // token audited, refused whole if the user could not have created one of them.
    if form.get("cascade") == Some("on") {
        crate::service::lineage::cascade_delete(&state, &access, token)
            .await
            .map_err(TokenError::into_api)?;
    } else {
        service::delete(&state, &access, token).await?;
    }
    Ok(see_other(&format!(
        "{}?notice=deleted",
        tokens_href(access.application())
    )))
}
