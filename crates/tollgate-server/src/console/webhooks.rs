//! An application's token-event webhooks in the console (issue 15, item 4): the endpoints
//! (add one, its signing secret shown on the answer page only; switch on or off; delete),
//! and each endpoint's deliveries with their status. Every form goes through
//! `service::webhooks` or the store call the REST handlers make, behind the same registry
//! actions.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use tollgate_core::Action;
use tollgate_store::webhooks::{EVENT_TYPES, Webhook};

use super::form::{FormData, QueryData};
use super::session::Session;
use super::view::{AppNav, UserBar, When};
use super::{BASE, PageError, allowed, app_access, parse_id, render, see_other};
use crate::error::ApiError;
use crate::service::webhooks as service;
use crate::state::AppState;

struct HookRow {
    id: String,
    url: String,
    events: String,
    enabled: bool,
    created: When,
    href: String,
    toggle_href: String,
    delete_href: String,
}

struct EventChoice {
    name: &'static str,
    label: String,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct WebhooksPage {
    user: Option<UserBar>,
    title: String,
    nav: AppNav,
    csrf: String,
    rows: Vec<HookRow>,
    can_write: bool,
    create_href: String,
    events: Vec<EventChoice>,
    notice: Option<&'static str>,
    /// Right after an endpoint was added: its secret, shown on this answer only.
    secret: Option<String>,
}

fn event_label(e: &str) -> String {
    match e {
        "token.created" => "Created".into(),
        "token.deleted" => "Deleted".into(),
        "token.rolled" => "Rolled".into(),
        "token.leaked" => "Reported as leaked".into(),
        "token.deactivated" => "Deactivated".into(),
        "token.expiring" => "Expiring soon".into(),
        "token.expired" => "Expired".into(),
        "token.idleDeactivated" => "Deactivated for idleness".into(),
        "token.retired" => "Retired after a roll".into(),
        other => other.to_owned(),
    }
}

fn row(app: tollgate_store::Id, w: &Webhook) -> HookRow {
    let base = format!("{BASE}/applications/{app}/webhooks/{}", w.id);
    HookRow {
        id: w.id.to_string(),
        url: w.url.clone(),
        events: if w.events.len() == EVENT_TYPES.len() {
            "All token events".to_owned()
        } else {
            w.events
                .iter()
                .map(|e| event_label(e))
                .collect::<Vec<_>>()
                .join(", ")
        },
        enabled: w.enabled,
        created: When::at(w.creation_date),
        toggle_href: format!("{base}/toggle"),
        delete_href: format!("{base}/delete"),
        href: base,
    }
}

async fn nav(state: &AppState, app: tollgate_store::Id) -> Result<AppNav, PageError> {
    let a = state
        .store()
        .application(app)
        .await
        .map_err(|e| ApiError::from_store(e, "Application"))?;
    Ok(AppNav {
        id: a.id.to_string(),
        name: a.name,
        section: "webhooks",
    })
}

async fn page(
    state: &AppState,
    session: &Session,
    app: tollgate_store::Id,
    notice: Option<&'static str>,
    secret: Option<String>,
) -> Result<Response, PageError> {
    let hooks = state.store().webhooks(app).await?;
    let can_write = allowed(state, session, Action::ApplicationTokenWebhooksPost, app).await;
    let mut res = render(&WebhooksPage {
        user: Some(session.bar()),
        title: "Webhooks".to_owned(),
        nav: nav(state, app).await?,
        csrf: session.csrf.clone(),
        rows: hooks.iter().map(|w| row(app, w)).collect(),
        can_write,
        create_href: format!("{BASE}/applications/{app}/webhooks"),
        events: EVENT_TYPES
            .iter()
            .map(|e| EventChoice {
                name: e,
                label: event_label(e),
            })
            .collect(),
        notice,
        secret,
    });
    crate::api::login::no_store(&mut res);
    Ok(res)
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Path(app): Path<String>,
    query: QueryData,
) -> Result<Response, PageError> {
    let app = parse_id(&app, "Application")?;
    let access = app_access(&state, &session, Action::ApplicationTokenWebhooksGet, app).await?;
    let notice = match query.get("notice") {
        Some("deleted") => Some("The webhook was deleted, with its queued deliveries."),
        Some("enabled") => Some("The webhook is on: new token events are sent to it."),
        Some("disabled") => Some("The webhook is off: no new events are queued for it."),
        _ => None,
    };
    page(&state, &session, access.application(), notice, None).await
}

/// Add an endpoint: the answer shows its signing secret, once.
pub async fn create(
    State(state): State<AppState>,
    session: Session,
    Path(app): Path<String>,
    form: FormData,
) -> Result<Response, PageError> {
    session.check_csrf(&form)?;
    let app = parse_id(&app, "Application")?;
    let access = app_access(&state, &session, Action::ApplicationTokenWebhooksPost, app).await?;
    let chosen: Vec<String> = form.all("events").map(str::to_owned).collect();
    let request = service::Request {
        url: form.text("url").to_owned(),
        events: (!chosen.is_empty()).then_some(chosen),
        enabled: Some(true),
    };
    let (_w, secret) =
        service::create(&state, &access.actor(), access.application(), request).await?;
    page(
        &state,
        &session,
        access.application(),
        Some("The webhook was added."),
        Some(secret.expose().to_owned()),
    )
    .await
}

/// Switch an endpoint on or off.
pub async fn toggle(
    State(state): State<AppState>,
    session: Session,
    Path((app, hook)): Path<(String, String)>,
    form: FormData,
) -> Result<Response, PageError> {
    session.check_csrf(&form)?;
    let app = parse_id(&app, "Application")?;
    let hook = parse_id(&hook, "Webhook")?;
    let access = app_access(&state, &session, Action::ApplicationTokenWebhookPatch, app).await?;
    let on = form.get("enabled") == Some("true");
    service::update(
        &state,
        &access.actor(),
        access.application(),
        hook,
        None,
        None,
        Some(on),
    )
    .await?;
    let notice = if on { "enabled" } else { "disabled" };
    Ok(see_other(&format!(
        "{BASE}/applications/{app}/webhooks?notice={notice}"
    )))
}

pub async fn delete(
    State(state): State<AppState>,
    session: Session,
    Path((app, hook)): Path<(String, String)>,
    form: FormData,
) -> Result<Response, PageError> {
    session.check_csrf(&form)?;
    let app = parse_id(&app, "Application")?;
    let hook = parse_id(&hook, "Webhook")?;
    let access = app_access(&state, &session, Action::ApplicationTokenWebhookDelete, app).await?;
    state
        .store()
        .delete_webhook(&access.actor(), access.application(), hook)
        .await
        .map_err(|e| ApiError::from_store(e, "Webhook"))?;
    Ok(see_other(&format!(
        "{BASE}/applications/{app}/webhooks?notice=deleted"
    )))
}

struct DeliveryRow {
    event_id: String,
    event: String,
    token: String,
    status: String,
    attempts: i64,
    created: When,
    last_attempt: Option<When>,
    next_attempt: Option<When>,
    last_result: String,
    retry_href: String,
}

#[derive(Template)]
#[template(path = "webhook.html")]
struct WebhookPage {
    user: Option<UserBar>,
    title: String,
    nav: AppNav,
    csrf: String,
    hook: HookRow,
    rows: Vec<DeliveryRow>,
    total: i64,
    pending: i64,
    delivered: i64,
    failed: i64,
    can_retry: bool,
    back_href: String,
    notice: Option<&'static str>,
}

/// Deliveries shown on the endpoint's page (the API pages through all of them).
const SHOWN: i64 = 100;

/// An endpoint and its latest deliveries.
pub async fn detail(
    State(state): State<AppState>,
    session: Session,
    Path((app, hook)): Path<(String, String)>,
    query: QueryData,
) -> Result<Response, PageError> {
    let app = parse_id(&app, "Application")?;
    let hook = parse_id(&hook, "Webhook")?;
    let access = app_access(
        &state,
        &session,
        Action::ApplicationTokenWebhookDeliveries,
        app,
    )
    .await?;
    let app = access.application();
    let store = state.store();
    let w = store
        .webhook(app, hook)
        .await
        .map_err(|e| ApiError::from_store(e, "Webhook"))?;
    let found = store.deliveries(app, hook, None, 0, SHOWN).await?;
    let (pending, delivered, failed) = store.delivery_counts(app, hook).await?;
    let base = format!("{BASE}/applications/{app}/webhooks/{hook}");
    let rows = found
        .items
        .iter()
        .map(|d| {
            let event: serde_json::Value =
                serde_json::from_str(&d.payload).unwrap_or(serde_json::Value::Null);
            let last_result = match (d.last_status_code, &d.last_error) {
                (Some(code), None) => format!("HTTP {code}"),
                (_, Some(e)) => e.clone(),
                (None, None) => "not attempted yet".to_owned(),
            };
            DeliveryRow {
                event_id: d.event_id.to_string(),
                event: event_label(&d.event_type),
                token: event["token"]["name"].as_str().unwrap_or("").to_owned(),
                status: d.status.clone(),
                attempts: d.attempts,
                created: When::at(d.creation_date),
                last_attempt: d.last_attempt_at.map(When::at),
                next_attempt: d.next_attempt_at.map(When::at),
                last_result,
                retry_href: format!("{base}/deliveries/{}/retry", d.event_id),
            }
        })
        .collect();
    let notice = query
        .get("retried")
        .map(|_| "The delivery was queued again: it is sent within moments.");
    Ok(render(&WebhookPage {
        user: Some(session.bar()),
        title: "Webhook deliveries".to_owned(),
        nav: nav(&state, app).await?,
        csrf: session.csrf.clone(),
        hook: row(app, &w),
        rows,
        total: found.total,
        pending,
        delivered,
        failed,
        can_retry: allowed(
            &state,
            &session,
            Action::ApplicationTokenWebhookRetryDelivery,
            app,
        )
        .await,
        back_href: format!("{BASE}/applications/{app}/webhooks"),
        notice,
    }))
}

pub async fn retry(
    State(state): State<AppState>,
    session: Session,
    Path((app, hook, event)): Path<(String, String, String)>,
    form: FormData,
) -> Result<Response, PageError> {
    session.check_csrf(&form)?;
    let app = parse_id(&app, "Application")?;
    let hook = parse_id(&hook, "Webhook")?;
    let event = parse_id(&event, "Delivery")?;
    let access = app_access(
        &state,
        &session,
        Action::ApplicationTokenWebhookRetryDelivery,
        app,
    )
    .await?;
    state
        .store()
        .retry_delivery(&access.actor(), access.application(), hook, event)
        .await
        .map_err(|e| ApiError::from_store(e, "Delivery"))?;
    Ok(see_other(&format!(
        "{BASE}/applications/{app}/webhooks/{hook}?retried=1"
    )))
}
