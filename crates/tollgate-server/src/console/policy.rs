//! An application's token policy in the console (issue 15, item 2): the effective values
//! and where each comes from, a form for the application's own fields (for those allowed
//! `applicationTokenPolicy.patch`), and the tokens that break the policy, each a link. The
//! page asks for `applicationTokenPolicy.get`, and saving calls the same service functions as
//! `PATCH /applications/{applicationId}/token-policy`.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Map, Value};
use tollgate_core::Action;
use tollgate_store::Id;
use tollgate_store::policy::{PolicyFields, Source, days};

use super::form::{FormData, QueryData};
use super::session::Session;
use super::view::{AppNav, UserBar, When};
use super::{BASE, PageError, allowed, app_access, parse_id, render, see_other};
use crate::error::ApiError;
use crate::service::policy as service;
use crate::state::AppState;

/// One row of the effective policy.
struct Rule {
    label: &'static str,
    /// The field's API name (`maxLifetimeDays`), also the row's id.
    field: &'static str,
    value: String,
    source: &'static str,
}

struct ViolatorRow {
    name: String,
    href: String,
    rules: String,
    expires: Option<When>,
}

#[derive(Template)]
#[template(path = "token_policy.html")]
struct PolicyPage {
    user: Option<UserBar>,
    title: String,
    nav: AppNav,
    csrf: String,
    form_href: String,
    tokens_href: String,
    rules: Vec<Rule>,
    can_edit: bool,
    /// The application's own fields, as the form shows them (empty: not set here).
    own_max: String,
    own_required: &'static str,
    own_idle: String,
    own_leads: String,
    has_org: bool,
    violators: Vec<ViolatorRow>,
    violator_count: usize,
    notice: Option<&'static str>,
    error: Option<String>,
}

fn source_label(s: Source) -> &'static str {
    match s {
        Source::Application => "this application",
        Source::Organization => "organization default",
        Source::Default => "built-in default",
    }
}

fn days_text(ms: Option<i64>) -> String {
    ms.map_or_else(String::new, |m| days(m).to_string())
}

fn rule_label(rule: &str) -> &'static str {
    match rule {
        service::MAX_LIFETIME => "lives longer than the maximum lifetime",
        service::EXPIRY_REQUIRED => "never expires",
        service::IDLE_DEACTIVATION => "idle (will be deactivated)",
        _ => "breaks the policy",
    }
}

fn policy_href(app: Id) -> String {
    format!("{BASE}/applications/{app}/token-policy")
}

async fn render_page(
    state: &AppState,
    session: &Session,
    app: Id,
    notice: Option<&'static str>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let a = state
        .store()
        .application(app)
        .await
        .map_err(|e| ApiError::from_store(e, "Application"))?;
    let p = state
        .store()
        .application_policy(app)
        .await
        .map_err(|e| ApiError::from_store(e, "Application"))?;
    let e = p.effective();
    let never = |v: Option<i64>, none: &str| {
        v.map_or_else(|| none.to_owned(), |m| format!("{} days", days(m)))
    };
    let rules = vec![
        Rule {
            label: "Maximum lifetime of new tokens",
            field: service::MAX_LIFETIME,
            value: never(e.max_lifetime_ms.0, "No maximum"),
            source: source_label(e.max_lifetime_ms.1),
        },
        Rule {
            label: "Expiry required",
            field: service::EXPIRY_REQUIRED,
            value: if e.expiry_required.0 { "Yes" } else { "No" }.to_owned(),
            source: source_label(e.expiry_required.1),
        },
        Rule {
            label: "Deactivate tokens unused for",
            field: service::IDLE_DEACTIVATION,
            value: never(e.idle_deactivation_ms.0, "Never"),
            source: source_label(e.idle_deactivation_ms.1),
        },
        Rule {
            label: "Expiry warnings (days before)",
            field: "warningLeadDays",
            value: e
                .warning_leads_ms
                .0
                .iter()
                .map(|m| days(*m).to_string())
                .collect::<Vec<_>>()
                .join(", "),
            source: source_label(e.warning_leads_ms.1),
        },
    ];
    let found = service::violators(state, app, &e).await?;
    let violators = found
        .iter()
        .take(service::MAX_VIOLATORS_LISTED)
        .map(|v| ViolatorRow {
            name: v.token.name.clone(),
            href: format!("{BASE}/applications/{app}/tokens/{}", v.token.id),
            rules: v
                .rules
                .iter()
                .map(|r| rule_label(r))
                .collect::<Vec<_>>()
                .join("; "),
            expires: v.token.expiration_date.map(When::at),
        })
        .collect();
    let own: &PolicyFields = &p.own;
    Ok(render(&PolicyPage {
        user: Some(session.bar()),
        title: "Token Policy".to_owned(),
        nav: AppNav {
            id: a.id.to_string(),
            name: a.name,
            section: "policy",
        },
        csrf: session.csrf.clone(),
        form_href: policy_href(app),
        tokens_href: format!("{BASE}/applications/{app}/tokens"),
        rules,
        can_edit: allowed(state, session, Action::ApplicationTokenPolicyPatch, app).await,
        own_max: days_text(own.max_lifetime_ms),
        own_required: match own.expiry_required {
            None => "",
            Some(true) => "yes",
            Some(false) => "no",
        },
        own_idle: days_text(own.idle_deactivation_ms),
        own_leads: own.warning_leads_ms.as_ref().map_or_else(String::new, |l| {
            l.iter()
                .map(|m| days(*m).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }),
        has_org: p.org_id.is_some(),
        violator_count: found.len(),
        violators,
        notice,
        error,
    }))
}

pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(app): Path<String>,
    query: QueryData,
) -> Result<Response, PageError> {
    let app = parse_id(&app, "Application")?;
    let access = app_access(&state, &session, Action::ApplicationTokenPolicyGet, app).await?;
    let notice = query.get("notice").filter(|n| *n == "saved").map(|_| "Token policy saved. Existing tokens are unchanged: those that break it are listed below.");
    render_page(&state, &session, access.application(), notice, None).await
}

/// A form field as a JSON value of the policy body: empty is `null` (not set here).
fn number_field(form: &FormData, name: &str, field: &str) -> Result<Value, String> {
    let text = form.get(name).unwrap_or("").trim();
    if text.is_empty() {
        return Ok(Value::Null);
    }
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| format!("{field} must be a number of days, or empty"))
}

fn body_of(form: &FormData) -> Result<Map<String, Value>, String> {
    let mut body = Map::new();
    body.insert(
        service::MAX_LIFETIME.into(),
        number_field(form, "max_lifetime_days", "Maximum lifetime")?,
    );
    body.insert(
        service::EXPIRY_REQUIRED.into(),
        match form.get("expiry_required").unwrap_or("") {
            "yes" => Value::Bool(true),
            "no" => Value::Bool(false),
            _ => Value::Null,
        },
    );
    body.insert(
        service::IDLE_DEACTIVATION.into(),
        number_field(form, "idle_days", "Idle period")?,
    );
    let leads = form.get("warning_lead_days").unwrap_or("").trim();
    let leads = if leads.is_empty() {
        Value::Null
    } else {
        let mut items = Vec::new();
        for part in leads.split(',') {
            let n = part
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .ok_or("Expiry warnings must be numbers of days separated by commas, or empty")?;
            items.push(Value::Number(n));
        }
        Value::Array(items)
    };
    body.insert("warningLeadDays".into(), leads);
    Ok(body)
}

/// Save the form: every field at once (empty: not set for this application).
pub async fn save(
    State(state): State<AppState>,
    session: Session,
    Path(app): Path<String>,
    form: FormData,
) -> Result<Response, PageError> {
    session.check_csrf(&form)?;
    let app = parse_id(&app, "Application")?;
    let access = app_access(&state, &session, Action::ApplicationTokenPolicyPatch, app).await?;
    let app = access.application();
    let patch = match body_of(&form)
        .map_err(ApiError::validation)
        .and_then(|b| service::parse_patch(&b))
    {
        Ok(p) => p,
        Err(e) => {
            return render_page(&state, &session, app, None, Some(e.message.to_string())).await;
        }
    };
    service::patch_application(&state, &access.actor(), app, &patch).await?;
    Ok(see_other(&format!("{}?notice=saved", policy_href(app))))
}
