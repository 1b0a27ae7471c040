//! `me.get`: the logged-in user.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tollgate_store::applications::Owner;

use crate::auth::UserAccess;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::time::iso;

pub async fn get(State(state): State<AppState>, access: UserAccess) -> ApiResult<Json<Value>> {
    let user = state.store().user(access.user_id()).await?;
    let app_count = state
        .store()
        .count_applications(Owner::User(user.id))
        .await?;
    let full_name = format!("{} {}", user.first_name, user.last_name)
        .trim()
        .to_owned();
    let mut me = json!({
        "id": user.id,
        "userId": user.id,
        "email": user.email,
        "lastName": user.last_name,
        "creationDate": iso(user.creation_date),
        "lastUpdated": iso(user.last_updated),
        "passwordLastUpdated": iso(user.password_last_updated),
        "emailVerified": true,
        "needsToVerifyEmail": false,
        "twoFactorAuthEnabled": false,
        "summary": { "appCount": app_count },
    });
    // The reference requires a non-empty first name when there is one at all.
    if !user.first_name.is_empty() {
        me["firstName"] = json!(user.first_name);
    }
    if !full_name.is_empty() {
        me["fullName"] = json!(full_name);
    }
    Ok(Json(me))
}
