//! Applications: `applications.*`, `application.*`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tollgate_core::Action;
use tollgate_store::applications::{APPLICATION_FIELDS, Application, ApplicationChange, Owner};
use tollgate_store::{Id, Part};

use crate::api::{refuse_unsupported, success, with_extra};
use crate::auth::{AppAccess, UserAccess};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, ListParams, Query, RequestBody};
use crate::state::AppState;
use crate::time::iso;

const UNSUPPORTED: &[(&str, &str)] = &[
    ("applicationTemplateId", "it has no application templates"),
    ("archiveConfig", "it does not archive data to cloud storage"),
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationPost {
    name: String,
    #[serde(default)]
    description: String,
    org_id: Option<Id>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl RequestBody for ApplicationPost {
    const SCHEMA: &'static str = "applicationPost";
    fn precheck(body: &Value) -> Result<(), ApiError> {
        refuse_unsupported(body, UNSUPPORTED)
    }
}

#[derive(Deserialize)]
pub struct ApplicationPatch {
    name: Option<String>,
    description: Option<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl RequestBody for ApplicationPatch {
    const SCHEMA: &'static str = "applicationPatch";
    fn precheck(body: &Value) -> Result<(), ApiError> {
        refuse_unsupported(body, UNSUPPORTED)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    #[serde(flatten)]
    list: ListParams,
    org_id: Option<String>,
}

pub fn application_json(app: &Application) -> Value {
    with_extra(
        json!({
            "id": app.id,
            "applicationId": app.id,
            "name": app.name,
            "description": app.description,
            "ownerId": app.owner.id(),
            "ownerType": app.owner.type_name(),
            "creationDate": iso(app.creation_date),
            "lastUpdated": iso(app.last_updated),
        }),
        &app.extra,
    )
}

pub async fn list(
    State(state): State<AppState>,
    access: UserAccess,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let spec = query.list.spec(&APPLICATION_FIELDS)?;
    let org = match query.org_id.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse::<Id>().map_err(|_| {
            ApiError::validation("orgId is not valid: ids are 24 hexadecimal characters")
        })?),
        None => None,
    };
    let page = state
        .store()
        .list_applications_for_user(access.user_id(), org, &spec)
        .await?;
    let items = page.items.iter().map(application_json).collect();
    Ok(Json(query.list.envelope(
        &spec,
        &APPLICATION_FIELDS,
        items,
        page.total,
    )))
}

/// Create an application for `access`'s user: in their sandbox, or in organization `org`
/// when they may create applications there (the same decision a path would get). The REST
/// handler and the console both call this.
pub async fn create_application(
    state: &AppState,
    access: &UserAccess,
    org: Option<Id>,
    name: &str,
    description: &str,
    extra: &Map<String, Value>,
) -> ApiResult<Application> {
    let len = name.chars().count();
    if len == 0 || len > 255 {
        return Err(ApiError::validation(
            "name must be between 1 and 255 characters long",
        ));
    }
    // The same text rules and limits as the REST body's schema, for the console too.
    crate::validate::name_field("applicationPost", "name", name)?;
    crate::validate::text_field("applicationPost", "description", description)?;
    let owner = match org {
        Some(org) => {
            access.in_org(state, org, Action::ApplicationsPost).await?;
            Owner::Organization(org)
        }
        None => Owner::User(access.user_id()),
    };
    let app = state
        .store()
        .create_application(&access.actor(), owner, name, description, extra)
        .await
        .map_err(|e| ApiError::from_store(e, "Organization"))?;
    tracing::info!(application = %app.id, by = %access.user_id(), "application created");
    Ok(app)
}

pub async fn create(
    State(state): State<AppState>,
    access: UserAccess,
    Body(body): Body<ApplicationPost>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let app = create_application(
        &state,
        &access,
        body.org_id,
        &body.name,
        &body.description,
        &body.extra,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(application_json(&app))))
}

/// Answered from memory while the freshness gate allows (`read_cache`): the body depends on
/// the application's row only, which changes only with a change notice.
pub async fn get(State(state): State<AppState>, access: AppAccess) -> ApiResult<Response> {
    let id = access.application();
    let store = state.store();
    let body = state
        .reads()
        .get(
            id,
            Part::Application,
            "",
            |_| true,
            |_| true,
            || async {
                let app = store.application(id).await?;
                Ok::<_, tollgate_store::StoreError>(Bytes::from(application_json(&app).to_string()))
            },
        )
        .await
        .map_err(|e| ApiError::from_store(e, "Application"))?;
    Ok(crate::api::json_bytes(Bytes::clone(&body)))
}

pub async fn patch(
    State(state): State<AppState>,
    access: AppAccess,
    Body(body): Body<ApplicationPatch>,
) -> ApiResult<Json<Value>> {
    let change = ApplicationChange {
        name: body.name,
        description: body.description,
        extra: body.extra,
    };
    let app = state
        .store()
        .update_application(&access.actor(), access.application(), &change)
        .await
        .map_err(|e| ApiError::from_store(e, "Application"))?;
    Ok(Json(application_json(&app)))
}

pub async fn delete(State(state): State<AppState>, access: AppAccess) -> ApiResult<Json<Value>> {
    state
        .store()
        .delete_application(&access.actor(), access.application())
        .await
        .map_err(|e| ApiError::from_store(e, "Application"))?;
    tracing::info!(application = %access.application(), "application deleted");
    Ok(success())
}
