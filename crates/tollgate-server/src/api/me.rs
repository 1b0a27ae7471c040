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
    Ok(Json(json!({
        "id": user.id,
        "userId": user.id,
        "email": user.email,
        "firstName": user.first_name,
        "lastName": user.last_name,
        "fullName": full_name,
        "creationDate": iso(user.creation_date),
        "lastUpdated": iso(user.last_updated),
        "passwordLastUpdated": iso(user.password_last_updated),
        "emailVerified": true,
        "needsToVerifyEmail": false,
        "twoFactorAuthEnabled": false,
        "summary": { "appCount": app_count },
    })))
}
