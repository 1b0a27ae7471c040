//! Organizations and their members: `orgs.*`, `org.*`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tollgate_core::Role;
use tollgate_store::applications::Owner;
use tollgate_store::invites::{INVITE_TTL_MS, Invite, MAX_PENDING_INVITES, NewInvite};
use tollgate_store::orgs::{MemberChange, MfaMode, ORG_FIELDS, Org, OrgChange, ResourceRole};
use tollgate_store::{Id, StoreError};

use crate::api::{refuse_unsupported, success, with_extra};
use crate::auth::{OrgAccess, UserAccess};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, ListParams, Query, RequestBody};
use crate::state::AppState;
use crate::time::iso;

const UNSUPPORTED: &[(&str, &str)] = &[("cardToken", "it has no billing")];

#[derive(Deserialize)]
pub struct OrgPost {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl RequestBody for OrgPost {
    const SCHEMA: &'static str = "orgPost";
    fn precheck(body: &Value) -> Result<(), ApiError> {
        refuse_unsupported(body, UNSUPPORTED)?;
        if body.get("mfaMode").is_some_and(|m| m != "notRequired") {
            return Err(ApiError::validation(
                "mfaMode is set after the organization exists (org.patch), by an administrator whose own account has two-factor authentication",
            ));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgPatch {
    name: Option<String>,
    description: Option<String>,
    mfa_mode: Option<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl RequestBody for OrgPatch {
    const SCHEMA: &'static str = "orgPatch";
    fn precheck(body: &Value) -> Result<(), ApiError> {
        refuse_unsupported(body, UNSUPPORTED)
    }
}

#[derive(Deserialize)]
struct ResourceRoleBody {
    #[serde(rename = "resourceId")]
    resource_id: Id,
    role: String,
}

fn resource_roles(
    roles: Option<Vec<ResourceRoleBody>>,
) -> Result<Option<Vec<ResourceRole>>, ApiError> {
    roles
        .map(|roles| {
            roles
                .into_iter()
                .map(|r| {
                    Ok(ResourceRole {
                        resource_id: r.resource_id,
                        role: parse_role(&r.role)?,
                    })
                })
                .collect()
        })
        .transpose()
}

fn parse_role(s: &str) -> Result<Role, ApiError> {
    s.parse()
        .map_err(|e: tollgate_core::role::UnknownRole| ApiError::validation(e.to_string()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InviteBody {
    email: String,
    role: String,
    application_roles: Option<Vec<ResourceRoleBody>>,
    dashboard_roles: Option<Value>,
}

impl RequestBody for InviteBody {
    const SCHEMA: &'static str = "orgInvitePost";
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberPatch {
    user_id: Id,
    role: Option<String>,
    application_roles: Option<Vec<ResourceRoleBody>>,
    dashboard_roles: Option<Value>,
}

impl RequestBody for MemberPatch {
    const SCHEMA: &'static str = "orgMemberPatch";
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveMemberQuery {
    user_id: Option<String>,
}

/// The organization as the API shows it, with its members.
pub async fn org_json(state: &AppState, org: &Org) -> Result<Value, ApiError> {
    let members = state.store().org_members(org.id).await?;
    let app_count = state
        .store()
        .count_applications(Owner::Organization(org.id))
        .await?;
    let members_json: Vec<Value> = members
        .iter()
        .map(|m| {
            let mut v = json!({
                "userId": m.user_id,
                "email": m.email,
                "role": m.role.as_str(),
                "applicationRoles": m.application_roles.iter().map(|r| json!({
                    "resourceId": r.resource_id, "role": r.role.as_str()
                })).collect::<Vec<_>>(),
                "dashboardRoles": m.dashboard_roles,
            });
            if !m.first_name.is_empty() {
                v["firstName"] = json!(m.first_name);
            }
            if !m.last_name.is_empty() {
                v["lastName"] = json!(m.last_name);
            }
            v
        })
        .collect();
    Ok(with_extra(
        json!({
            "id": org.id,
            "orgId": org.id,
            "name": org.name,
            "description": org.description,
            "creationDate": iso(org.creation_date),
            "lastUpdated": iso(org.last_updated),
            "members": members_json,
            "summary": { "appCount": app_count, "memberCount": members.len() },
            "mfaMode": org.mfa_mode.as_str(),
        }),
        &org.extra,
    ))
}

pub async fn list(
    State(state): State<AppState>,
    access: UserAccess,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<Value>> {
    let spec = params.spec(&ORG_FIELDS)?;
    let page = state
        .store()
        .list_orgs_for_user(access.user_id(), &spec)
        .await?;
    let mut items = Vec::with_capacity(page.items.len());
    for org in &page.items {
        items.push(org_json(&state, org).await?);
    }
    Ok(Json(params.envelope(&spec, &ORG_FIELDS, items, page.total)))
}

pub async fn create(
    State(state): State<AppState>,
    access: UserAccess,
    Body(body): Body<OrgPost>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let org = state
        .store()
        .create_org(
            &access.actor(),
            &body.name,
            &body.description,
            &body.extra,
            access.user_id(),
        )
        .await?;
    tracing::info!(org = %org.id, by = %access.user_id(), "organization created");
    Ok((StatusCode::CREATED, Json(org_json(&state, &org).await?)))
}

pub async fn get(State(state): State<AppState>, access: OrgAccess) -> ApiResult<Json<Value>> {
    let org = state.store().org(access.org()).await.map_err(not_found)?;
    Ok(Json(org_json(&state, &org).await?))
}

pub async fn patch(
    State(state): State<AppState>,
    access: OrgAccess,
    Body(body): Body<OrgPatch>,
) -> ApiResult<Json<Value>> {
    let mfa_mode = match body.mfa_mode.as_deref() {
        None => None,
        Some(m) => Some(MfaMode::parse(m).ok_or_else(|| {
            ApiError::validation("mfaMode must be one of notRequired, adminRequired, required")
        })?),
    };
    if let Some(mode) = mfa_mode
        && mode.requires(access.role())
        && !state
            .store()
            .user(access.user_id())
            .await?
            .two_factor_enabled()
    {
        return Err(ApiError::validation(format!(
            "mfaMode {} would lock you out: enable two-factor authentication for your own account first",
            mode.as_str()
        )));
    }
    let change = OrgChange {
        name: body.name,
        description: body.description,
        mfa_mode,
        extra: body.extra,
    };
    let org = state
        .store()
        .update_org(&access.actor(), access.org(), &change)
        .await
        .map_err(not_found)?;
    Ok(Json(org_json(&state, &org).await?))
}

pub async fn delete(State(state): State<AppState>, access: OrgAccess) -> ApiResult<Json<Value>> {
    state
        .store()
        .delete_org(&access.actor(), access.org())
        .await
        .map_err(not_found)?;
    tracing::info!(org = %access.org(), by = %access.user_id(), "organization deleted");
    Ok(success())
}

/// An invitation as the organization's administrators see it (`orgInvites` items).
fn invite_json(invite: &Invite, now: i64) -> Value {
    let mut v = json!({
        "id": invite.id,
        "email": invite.email,
        "role": invite.role.as_str(),
        "applicationRoles": invite.application_roles.iter().map(|r| json!({
            "resourceId": r.resource_id, "role": r.role.as_str()
        })).collect::<Vec<_>>(),
        "inviteDate": iso(invite.invite_date),
        "ttl": INVITE_TTL_MS,
        "hasExpired": invite.has_expired(now),
    });
    if let Some(d) = &invite.dashboard_roles {
        v["dashboardRoles"] = d.clone();
    }
    v
}

async fn invites_json(state: &AppState, org: Id) -> ApiResult<Json<Value>> {
    let now = tollgate_store::now_ms();
    let invites = state.store().org_invites(org).await.map_err(not_found)?;
    Ok(Json(Value::Array(
        invites.iter().map(|i| invite_json(i, now)).collect(),
    )))
}

/// `org.inviteMember`: record a pending invitation and answer with the organization's pending
/// invitations. Whether the email has an account here is not looked at: the answer is the
/// same either way (no user id, no name), so invitations cannot be used to find out who has
/// an account. The invitee joins only by accepting (`me.respondToInvite`).
pub async fn invite_member(
    State(state): State<AppState>,
    access: OrgAccess,
    Body(body): Body<InviteBody>,
) -> ApiResult<Json<Value>> {
    let role = parse_role(&body.role)?;
    let application_roles = resource_roles(body.application_roles)?.unwrap_or_default();
    let new = NewInvite {
        email: &body.email,
        role,
        application_roles: &application_roles,
        dashboard_roles: body.dashboard_roles.as_ref(),
        invited_by: access.user_id(),
    };
    match state
        .store()
        .create_invite(&access.actor(), access.org(), &new)
        .await
    {
        Ok(invite) => {
            tracing::info!(org = %access.org(), invite = %invite.id, by = %access.user_id(), "invitation created");
        }
        Err(StoreError::Conflict("a member with this email")) => {
            return Err(ApiError::conflict(
                "This email belongs to a member of the organization already: use org.modifyMember to change their role",
            ));
        }
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::validation(format!(
                "The organization has {MAX_PENDING_INVITES} pending invitations, the most allowed: revoke some first"
            )));
        }
        Err(e) => return Err(not_found(e)),
    }
    invites_json(&state, access.org()).await
}

/// `org.pendingInvites`.
pub async fn pending_invites(
    State(state): State<AppState>,
    access: OrgAccess,
) -> ApiResult<Json<Value>> {
    invites_json(&state, access.org()).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeParams {
    invite_id: Option<String>,
}

/// `org.revokeInvite` (`?inviteId=…`): answers with the invitations still pending.
pub async fn revoke_invite(
    State(state): State<AppState>,
    access: OrgAccess,
    Query(params): Query<RevokeParams>,
) -> ApiResult<Json<Value>> {
    let id = params
        .invite_id
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::validation("inviteId is required: the id of the invitation to revoke")
        })?
        .parse::<Id>()
        .map_err(|_| {
            ApiError::validation("inviteId is not valid: ids are 24 hexadecimal characters")
        })?;
    state
        .store()
        .revoke_invite(&access.actor(), access.org(), id)
        .await
        .map_err(|e| ApiError::from_store(e, "Invitation"))?;
    tracing::info!(org = %access.org(), invite = %id, by = %access.user_id(), "invitation revoked");
    invites_json(&state, access.org()).await
}

pub async fn modify_member(
    State(state): State<AppState>,
    access: OrgAccess,
    Body(body): Body<MemberPatch>,
) -> ApiResult<Json<Value>> {
    let change = MemberChange {
        role: body.role.as_deref().map(parse_role).transpose()?,
        application_roles: resource_roles(body.application_roles)?,
        dashboard_roles: body.dashboard_roles,
    };
    state
        .store()
        .modify_member(&access.actor(), access.org(), body.user_id, &change)
        .await
        .map_err(|e| ApiError::from_store(e, "Member"))?;
    let org = state.store().org(access.org()).await.map_err(not_found)?;
    Ok(Json(org_json(&state, &org).await?))
}

pub async fn remove_member(
    State(state): State<AppState>,
    access: OrgAccess,
    Query(query): Query<RemoveMemberQuery>,
) -> ApiResult<Json<Value>> {
    let user_id: Id = query
        .user_id
        .as_deref()
        .ok_or_else(|| ApiError::validation("userId is required: the id of the member to remove"))?
        .parse()
        .map_err(|_| {
            ApiError::validation("userId is not valid: ids are 24 hexadecimal characters")
        })?;
    state
        .store()
        .remove_member(&access.actor(), access.org(), user_id)
        .await
        .map_err(|e| ApiError::from_store(e, "Member"))?;
    let org = state.store().org(access.org()).await.map_err(not_found)?;
    Ok(Json(org_json(&state, &org).await?))
}

fn not_found(e: StoreError) -> ApiError {
    ApiError::from_store(e, "Organization")
}
