//! An application's audit log in the console: who changed what, newest first, a page at a
//! time. The page asks for `applicationAuditLogs.get`, the action behind
//! `GET /applications/{applicationId}/audit-logs`, and reads the same store query.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use tollgate_core::Action;
use tollgate_store::audit::{AUDIT_FIELDS, AuditEntry, AuditFilter, AuditQuery, LogOf};

use super::form::QueryData;
use super::session::Session;
use super::view::{AppNav, UserBar, When};
use super::{BASE, PageError, app_access, parse_id, render};
use crate::error::ApiError;
use crate::extract::ListParams;
use crate::state::AppState;

/// Entries per page.
const PER_PAGE: i64 = 50;

struct EntryRow {
    when: When,
    /// "User", "API token", "Operator".
    actor_kind: String,
    actor: String,
    /// `applicationApiTokens.post`.
    action: String,
    /// "API token “Gateway”".
    target: String,
    status: i64,
    ok: bool,
    address: String,
    /// The recorded body (secrets redacted when it was written), as compact JSON.
    body: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    user: Option<UserBar>,
    title: String,
    nav: AppNav,
    rows: Vec<EntryRow>,
    total: i64,
    prev_href: Option<String>,
    next_href: Option<String>,
    page_label: Option<String>,
}

fn actor_kind(t: &str) -> String {
    match t {
        "ApiToken" | "apiToken" => "API token".to_owned(),
        "User" | "user" => "User".to_owned(),
        "Operator" => "Operator".to_owned(),
        "Anonymous" => "Leak report (no credentials)".to_owned(),
        "System" => "Tollgate (background job)".to_owned(),
        other => super::view::humanize(other),
    }
}

fn row(e: &AuditEntry) -> EntryRow {
    // In one application's log the primary target is mostly the application itself: the
    // secondary one (the token, device, flow changed) says more.
    let target = e
        .secondary_target
        .as_ref()
        .or(e.primary_target.as_ref())
        .map_or_else(String::new, |t| {
            let kind = super::view::humanize(&t.kind);
            match &t.name {
                Some(n) => format!("{kind} “{n}”"),
                None => format!("{kind} {}", t.id),
            }
        });
    let body = match &e.request_body {
        serde_json::Value::Null => String::new(),
        serde_json::Value::Object(m) if m.is_empty() => String::new(),
        v => v.to_string(),
    };
    EntryRow {
        when: When::at_seconds(e.creation_date),
        actor_kind: actor_kind(&e.actor_type),
        actor: e
            .actor_name
            .clone()
            .or_else(|| e.actor_id.map(|i| i.to_string()))
            .unwrap_or_default(),
        action: format!("{}.{}", e.request_resource, e.request_action),
        target,
        status: e.response_status,
        ok: (200..400).contains(&e.response_status),
        address: e.client_address.clone().unwrap_or_default(),
        body,
    }
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Path(app): Path<String>,
    query: QueryData,
) -> Result<Response, PageError> {
    let app = parse_id(&app, "Application")?;
    let access = app_access(&state, &session, Action::ApplicationAuditLogsGet, app).await?;
    let app = access.application();
    let page_no = query
        .get("page")
        .and_then(|p| p.parse::<i64>().ok())
        .filter(|p| *p >= 0)
        .unwrap_or(0);
    let params = ListParams {
        sort_field: Some("creationDate".to_owned()),
        sort_direction: Some("desc".to_owned()),
        page: Some(page_no.to_string()),
        per_page: Some(PER_PAGE.to_string()),
        ..ListParams::default()
    };
    let spec = params.spec(&AUDIT_FIELDS)?;
    let q = AuditQuery {
        log: LogOf::Application(app),
        start: None,
        end: None,
        filter: AuditFilter::default(),
    };
    let page = state.store().audit_logs(&q, &spec).await?;
    let a = state
        .store()
        .application(app)
        .await
        .map_err(|e| ApiError::from_store(e, "Application"))?;
    let href = |p: i64| {
        let base = format!("{BASE}/applications/{app}/audit-log");
        if p == 0 {
            base
        } else {
            format!("{base}?page={p}")
        }
    };
    let pages = (page.total + PER_PAGE - 1) / PER_PAGE;
    Ok(render(&AuditPage {
        user: Some(session.bar()),
        title: "Audit Log".to_owned(),
        nav: AppNav {
            id: a.id.to_string(),
            name: a.name,
            section: "audit",
        },
        rows: page.items.iter().map(row).collect(),
        total: page.total,
        prev_href: (page_no > 0).then(|| href(page_no - 1)),
        next_href: (page_no + 1 < pages).then(|| href(page_no + 1)),
        page_label: (pages > 1).then(|| format!("Page {} of {pages}", page_no + 1)),
    }))
}
