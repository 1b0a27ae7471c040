//! Token policies over HTTP (issue 15, item 2): `applicationTokenPolicy.get`/`.patch` and
//! `orgTokenPolicy.get`/`.patch`, extensions to the reference API. The rules are
//! `service::policy`; a PATCH changes no token, and its answer lists those that break the
//! new policy.

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

use crate::auth::{AppAccess, OrgAccess};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, RequestBody};
use crate::service::policy as service;
use crate::state::AppState;

/// A token policy change: any of its four fields (checked by `service::policy::parse_patch`
/// after the schema).
#[derive(serde::Deserialize)]
#[serde(transparent)]
pub struct PolicyBody(Map<String, Value>);

impl RequestBody for PolicyBody {
    const SCHEMA: &'static str = "tokenPolicyPatch";
}

/// `applicationTokenPolicy.get`.
pub async fn application_get(
    State(state): State<AppState>,
    access: AppAccess,
) -> ApiResult<Json<Value>> {
    let p = state
        .store()
        .application_policy(access.application())
        .await
        .map_err(|e| ApiError::from_store(e, "Application"))?;
    Ok(Json(service::application_json(&state, &p).await?))
}

/// `applicationTokenPolicy.patch`.
pub async fn application_patch(
    State(state): State<AppState>,
    access: AppAccess,
    Body(PolicyBody(body)): Body<PolicyBody>,
) -> ApiResult<Json<Value>> {
    let patch = service::parse_patch(&body)?;
    let p =
        service::patch_application(&state, &access.actor(), access.application(), &patch).await?;
    Ok(Json(service::application_json(&state, &p).await?))
}

async fn org_json(
    state: &AppState,
    org: tollgate_store::Id,
    f: &tollgate_store::policy::PolicyFields,
) -> Result<Value, ApiError> {
    let mut out = service::fields_json(f);
    out["orgId"] = json!(org);
    let mut found = Vec::new();
    let apps = state
        .store()
        .org_application_ids(org)
        .await
        .map_err(|e| ApiError::from_store(e, "Organization"))?;
    for app in apps {
        let p = state
            .store()
            .application_policy(app)
            .await
            .map_err(|e| ApiError::from_store(e, "Application"))?;
        found.extend(service::violators(state, app, &p.effective()).await?);
    }
    out["violatorCount"] = json!(found.len());
    out["violators"] = Value::Array(
        found
            .iter()
            .take(service::MAX_VIOLATORS_LISTED)
            .map(service::violator_json)
            .collect(),
    );
    Ok(out)
}

/// `orgTokenPolicy.get`.
pub async fn org_get(State(state): State<AppState>, access: OrgAccess) -> ApiResult<Json<Value>> {
    let f = state
        .store()
        .org_policy(access.org())
        .await
        .map_err(|e| ApiError::from_store(e, "Organization"))?;
    Ok(Json(org_json(&state, access.org(), &f).await?))
}

/// `orgTokenPolicy.patch`.
pub async fn org_patch(
    State(state): State<AppState>,
    access: OrgAccess,
    Body(PolicyBody(body)): Body<PolicyBody>,
) -> ApiResult<Json<Value>> {
    let patch = service::parse_patch(&body)?;
    let f = service::patch_org(&state, &access.actor(), access.org(), &patch).await?;
    Ok(Json(org_json(&state, access.org(), &f).await?))
}
