//! Applications: the list, creating one, an application's overview.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Map;
use tollgate_core::Action;
use tollgate_store::Id;
use tollgate_store::applications::{APPLICATION_FIELDS, Application, Owner};
use tollgate_store::orgs::ORG_FIELDS;

use super::form::{FormData, QueryData};
use super::session::Session;
use super::view::{AppNav, UserBar, When};
use super::{BASE, PageError, allowed, app_access, parse_id, render, see_other, user_access};
use crate::api::applications::create_application;
use crate::extract::ListParams;
use crate::state::AppState;

/// The most applications or organizations one page lists.
const PAGE: &str = "1000";

fn all_of(
    fields: &tollgate_store::list::Fields,
) -> Result<tollgate_store::list::ListSpec, PageError> {
    let params = ListParams {
        per_page: Some(PAGE.to_owned()),
        ..ListParams::default()
    };
    Ok(params.spec(fields)?)
}

struct AppRow {
    href: String,
    name: String,
    description: String,
    owner: String,
    created: When,
}

#[derive(Template)]
#[template(path = "apps.html")]
struct AppsPage {
    user: Option<UserBar>,
    title: String,
    apps: Vec<AppRow>,
    total: i64,
    notice: Option<&'static str>,
}

/// How an application's owner reads: "Your sandbox", "Sandbox of …", or the organization.
async fn owner_label(
    state: &AppState,
    session: &Session,
    owner: Owner,
) -> Result<String, PageError> {
    Ok(match owner {
        Owner::User(id) if id == session.user_id => "Your sandbox".to_owned(),
        Owner::User(id) => format!("Sandbox of {}", state.store().user(id).await?.email),
        Owner::Organization(id) => state.store().org(id).await?.name,
    })
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    query: QueryData,
) -> Result<Response, PageError> {
    let access = user_access(&state, &session, Action::ApplicationsGet).await?;
    let page = state
        .store()
        .list_applications_for_user(access.user_id(), None, &all_of(&APPLICATION_FIELDS)?)
        .await?;
    let mut apps = Vec::with_capacity(page.items.len());
    for app in &page.items {
        apps.push(AppRow {
            href: format!("{BASE}/applications/{}", app.id),
            name: app.name.clone(),
            description: app.description.clone(),
            owner: owner_label(&state, &session, app.owner).await?,
            created: When::at(app.creation_date),
        });
    }
    let notice = match query.get("notice") {
        Some("deleted") => Some("The application was deleted."),
        _ => None,
    };
    Ok(render(&AppsPage {
        user: Some(session.bar()),
        title: "Applications".to_owned(),
        apps,
        total: page.total,
        notice,
    }))
}

struct OwnerChoice {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "app_new.html")]
struct NewAppPage {
    user: Option<UserBar>,
    title: String,
    name: String,
    description: String,
    owners: Vec<OwnerChoice>,
    name_error: Option<String>,
    owner_error: Option<String>,
}

/// Where the person may create an application: their sandbox, and each organization where
/// the authorization layer allows `applications.post`.
async fn owner_choices(
    state: &AppState,
    session: &Session,
    selected: &str,
) -> Result<Vec<OwnerChoice>, PageError> {
    let mut out = vec![OwnerChoice {
        value: "sandbox".to_owned(),
        label: format!("My sandbox ({})", session.email),
        selected: selected == "sandbox" || selected.is_empty(),
    }];
    let orgs = state
        .store()
        .list_orgs_for_user(session.user_id, &all_of(&ORG_FIELDS)?)
        .await?;
    let access = user_access(state, session, Action::ApplicationsPost).await?;
    for org in orgs.items {
        if access
            .in_org(state, org.id, Action::ApplicationsPost)
            .await
            .is_ok()
        {
            let value = org.id.to_string();
            out.push(OwnerChoice {
                selected: selected == value,
                label: format!("Organization: {}", org.name),
                value,
            });
        }
    }
    Ok(out)
}

pub async fn new_page(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, PageError> {
    user_access(&state, &session, Action::ApplicationsPost).await?;
    Ok(render(&NewAppPage {
        user: Some(session.bar()),
        title: "Create Application".to_owned(),
        name: String::new(),
        description: String::new(),
        owners: owner_choices(&state, &session, "sandbox").await?,
        name_error: None,
        owner_error: None,
    }))
}

pub async fn create(
    State(state): State<AppState>,
    session: Session,
    form: FormData,
) -> Result<Response, PageError> {
    session.check_csrf(&form)?;
    let access = user_access(&state, &session, Action::ApplicationsPost).await?;
    let name = form.text("name").trim().to_owned();
    let description = form.text("description").trim().to_owned();
    let owner = form.text("owner").to_owned();
    let mut page = NewAppPage {
        user: Some(session.bar()),
        title: "Create Application".to_owned(),
        name: name.clone(),
        description: description.clone(),
        owners: Vec::new(),
        name_error: None,
        owner_error: None,
    };
    let status = if name.is_empty() {
        page.name_error = Some("Enter a name for the application.".to_owned());
        StatusCode::BAD_REQUEST
    } else {
        let org = match owner.as_str() {
            "" | "sandbox" => Ok(None),
            s => s.parse::<Id>().map(Some),
        };
        match org {
            Err(_) => {
                page.owner_error = Some("Choose where the application belongs.".to_owned());
                StatusCode::BAD_REQUEST
            }
            Ok(org) => {
                match create_application(&state, &access, org, &name, &description, &Map::new())
                    .await
                {
                    Ok(app) => {
                        return Ok(see_other(&format!(
                            "{BASE}/applications/{}?notice=created",
                            app.id
                        )));
                    }
                    Err(e) if e.status == StatusCode::BAD_REQUEST => {
                        page.name_error = Some(format!("{}.", e.message));
                        e.status
                    }
                    Err(e)
                        if e.status == StatusCode::FORBIDDEN
                            || e.status == StatusCode::NOT_FOUND =>
                    {
                        page.owner_error = Some(e.message.into_owned());
                        StatusCode::FORBIDDEN
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    };
    page.owners = owner_choices(&state, &session, &owner).await?;
    Ok((status, render(&page)).into_response())
}

#[derive(Template)]
#[template(path = "app.html")]
struct OverviewPage {
    user: Option<UserBar>,
    title: String,
    nav: AppNav,
    app_id: String,
    description: String,
    owner: String,
    created: When,
    updated: When,
    /// `None` when the person may not list tokens.
    token_count: Option<i64>,
    tokens_href: String,
    /// The application's audit log, when the person may read it.
    audit_href: Option<String>,
    notice: Option<&'static str>,
}

pub async fn overview(
    State(state): State<AppState>,
    session: Session,
    Path(app): Path<String>,
    query: QueryData,
) -> Result<Response, PageError> {
    let app = parse_id(&app, "Application")?;
    let access = app_access(&state, &session, Action::ApplicationGet, app).await?;
    let application: Application = state
        .store()
        .application(access.application())
        .await
        .map_err(|e| crate::error::ApiError::from_store(e, "Application"))?;
    let token_count = if allowed(&state, &session, Action::ApplicationApiTokensGet, app).await {
        Some(state.store().count_tokens(access.application()).await?)
    } else {
        None
    };
    let notice = match query.get("notice") {
        Some("created") => Some("The application was created."),
        _ => None,
    };
    Ok(render(&OverviewPage {
        user: Some(session.bar()),
        title: application.name.clone(),
        nav: AppNav {
            id: application.id.to_string(),
            name: application.name.clone(),
            section: "overview",
        },
        app_id: application.id.to_string(),
        description: application.description.clone(),
        owner: owner_label(&state, &session, application.owner).await?,
        created: When::at(application.creation_date),
        updated: When::at(application.last_updated),
        token_count,
        tokens_href: format!("{BASE}/applications/{}/tokens", application.id),
        audit_href: allowed(&state, &session, Action::ApplicationAuditLogsGet, app)
            .await
            .then(|| format!("{BASE}/applications/{}/audit-log", application.id)),
        notice,
    }))
}
