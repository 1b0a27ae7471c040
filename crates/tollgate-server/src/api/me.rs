//! The logged-in user: `me.get`, and the invitations waiting for them (`me.invites`,
//! `me.respondToInvite`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_store::Id;
use tollgate_store::applications::Owner;
use tollgate_store::invites::{AnswerError, INVITE_TTL_MS, InviteAnswer};

use crate::auth::UserAccess;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Path, RequestBody};
use crate::state::AppState;
use crate::time::iso;

/// `me.invites`: invitations addressed to the user's email, with the organization's name and
/// who invited them.
pub async fn invites(State(state): State<AppState>, access: UserAccess) -> ApiResult<Json<Value>> {
    let user = state.store().user(access.user_id()).await?;
    let now = tollgate_store::now_ms();
    let items = state
        .store()
        .invites_for_email(&user.email)
        .await?
        .into_iter()
        .map(|i| {
            let mut by = json!({});
            if !i.invited_by_name.is_empty() {
                by["fullName"] = json!(i.invited_by_name);
            }
            if let Some(email) = &i.invited_by_email {
                by["email"] = json!(email);
            }
            json!({
                "id": i.invite.id,
                "orgName": i.org_name,
                "role": i.invite.role.as_str(),
                "inviteDate": iso(i.invite.invite_date),
                "ttl": INVITE_TTL_MS,
                "expired": i.invite.has_expired(now),
                "invitedBy": by,
            })
        })
        .collect();
    Ok(Json(Value::Array(items)))
}

#[derive(Deserialize)]
pub struct InviteAction {
    action: String,
}

impl RequestBody for InviteAction {
    const SCHEMA: &'static str = "orgInviteActionUser";
}

/// `me.respondToInvite`: `accept` joins the organization with the invitation's role (in the
/// same transaction that removes the invitation); `reject` and `dismiss` remove it.
pub async fn respond_to_invite(
    State(state): State<AppState>,
    access: UserAccess,
    Path(invite): Path<Id>,
    Body(body): Body<InviteAction>,
) -> ApiResult<Json<Value>> {
    let (answer, result) = match body.action.as_str() {
        "accept" => (InviteAnswer::Accept, "accepted"),
        "reject" => (InviteAnswer::Reject, "rejected"),
        _ => (InviteAnswer::Reject, "dismissed"),
    };
    let user = state.store().user(access.user_id()).await?;
    match state
        .store()
        .answer_invite(&access.actor(), invite, user.id, &user.email, answer)
        .await
    {
        Ok(found) => {
            tracing::info!(org = %found.org_id, invite = %invite, user = %user.id, result, "invitation answered");
            Ok(Json(json!({ "result": result, "orgId": found.org_id })))
        }
        Err(AnswerError::NotFound) => Err(ApiError::not_found("Invitation")),
        Err(AnswerError::Expired) => {
            let mut e = ApiError::validation(
                "This invitation has expired: ask the organization's administrator for a new one",
            );
            e.status = StatusCode::GONE;
            e.kind = "Gone";
            Err(e)
        }
        Err(AnswerError::AlreadyMember) => Err(ApiError::conflict(
            "You are a member of this organization already; the invitation was removed",
        )),
        Err(AnswerError::Store(e)) => Err(e.into()),
    }
}

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
