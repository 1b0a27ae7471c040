//! Token lineage over HTTP (issue 15, item 6): `parentApiTokenId` on every token object
//! created by a token, a `lineage` object on a token's detail, the extension action
//! `applicationApiToken.descendants`, and `?cascade=true` on `applicationApiToken.patch`
//! (deactivation) and `applicationApiToken.delete`. The rules are `service::lineage`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_store::Id;
use tollgate_store::lineage::Cascaded;
use tollgate_store::tokens::TokenRecord;

use crate::api::tokens::token_json;
use crate::auth::AppAccess;
use crate::error::{ApiError, ApiResult};
use crate::extract::Path;
use crate::service::lineage::{self as service, MAX_LISTED_DESCENDANTS};
use crate::state::AppState;

/// The query of `applicationApiToken.patch` and `.delete`: the extension `cascade`.
#[derive(Deserialize, Default)]
pub struct CascadeQuery {
    cascade: Option<String>,
}

impl CascadeQuery {
    /// `cascade=true` (or `1`): apply to the token's descendants too; absent, `false` or
    /// `0`: to the token alone.
    pub fn cascade(&self) -> Result<bool, ApiError> {
        match self.cascade.as_deref() {
            None | Some("false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(_) => Err(ApiError::validation("cascade must be true or false")),
        }
    }
}

/// `parentApiTokenId` (an extension: the token that created this one, the reference's
/// `creatorId` when `creatorType` is `apiToken`).
pub fn add_fields(v: &mut Value, t: &TokenRecord) {
    if let Some(parent) = service::parent_of(t) {
        v["parentApiTokenId"] = json!(parent);
    }
}

/// What a cascade's answer adds: the descendants it changed.
pub fn cascade_json(done: &Cascaded) -> Value {
    let ids: Vec<String> = done.descendants.iter().map(|t| t.id.to_hex()).collect();
    json!({ "count": ids.len(), "apiTokenIds": ids })
}

/// `applicationApiToken.descendants`: the tokens created by this token, by the tokens they
/// created, and so on (nearest first), each with its `depth` (1: a child) and
/// `parentApiTokenId`; at most [`MAX_LISTED_DESCENDANTS`], `totalCount` counting all.
pub async fn descendants(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, token_id)): Path<(Id, Id)>,
) -> ApiResult<Json<Value>> {
    let store = state.store();
    // 404 for a token that is not this application's.
    store
        .token(access.application(), token_id)
        .await
        .map_err(|e| ApiError::from_store(e, "API token"))?;
    let (items, counts) = store
        .descendants(access.application(), token_id, MAX_LISTED_DESCENDANTS)
        .await
        .map_err(|e| ApiError::from_store(e, "API token"))?;
    let items: Vec<Value> = items
        .iter()
        .map(|d| {
            let mut v = token_json(&state, &d.token);
            v["depth"] = json!(d.depth);
            v
        })
        .collect();
    Ok(Json(json!({
        "apiTokenId": token_id,
        "applicationId": access.application(),
        "count": items.len(),
        "totalCount": counts.descendants,
        "childCount": counts.children,
        "items": items,
    })))
}
