//! The router, derived from the action registry.
//!
//! Each registry entry becomes one route at its method and path, wrapped in the authorization
//! guard for that action. `handler` is the only table from actions to handler functions: an
//! exhaustive `match`, so a registry entry without a handler does not compile.

use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, MethodRouter, on};
use tollgate_core::{Action, Method, REGISTRY};

use crate::api::{
    applications, audit, data, devices, flows, lifecycle, lineage, login, me, orgs, policy,
    token_usage, tokens, webhooks,
};
use crate::auth;
use crate::error::ApiError;
use crate::state::AppState;

fn handler(action: Action) -> MethodRouter<AppState> {
    use Action::*;
    let m = match action.def().method {
        Method::Get => MethodFilter::GET,
        Method::Post => MethodFilter::POST,
        Method::Patch => MethodFilter::PATCH,
        Method::Delete => MethodFilter::DELETE,
    };
    match action {
        AuthAuthenticateUser => on(m, login::authenticate_user),
        AuthLogout => on(m, login::logout),
        TokensRevoke => on(m, lifecycle::revoke),
        MeGet => on(m, me::get),
        MePatch => on(m, me::patch),
        MeChangePassword => on(m, me::change_password),
        MeGenerateTwoFactorAuth => on(m, me::generate_two_factor),
        MeEnableTwoFactorAuth => on(m, me::enable_two_factor),
        MeDisableTwoFactorAuth => on(m, me::disable_two_factor),
        MeInvites => on(m, me::invites),
        MeRespondToInvite => on(m, me::respond_to_invite),
        OrgsGet => on(m, orgs::list),
        OrgsPost => on(m, orgs::create),
        OrgGet => on(m, orgs::get),
        OrgPatch => on(m, orgs::patch),
        OrgDelete => on(m, orgs::delete),
        OrgInviteMember => on(m, orgs::invite_member),
        OrgPendingInvites => on(m, orgs::pending_invites),
        OrgRevokeInvite => on(m, orgs::revoke_invite),
        OrgModifyMember => on(m, orgs::modify_member),
        OrgRemoveMember => on(m, orgs::remove_member),
        AuditLogsGet => on(m, audit::org_list),
        AuditLogGet => on(m, audit::org_get),
        OrgTokenPolicyGet => on(m, policy::org_get),
        OrgTokenPolicyPatch => on(m, policy::org_patch),
        ApplicationsGet => on(m, applications::list),
        ApplicationsPost => on(m, applications::create),
        ApplicationGet => on(m, applications::get),
        ApplicationPatch => on(m, applications::patch),
        ApplicationDelete => on(m, applications::delete),
        ApplicationApiTokensGet => on(m, tokens::list),
        ApplicationApiTokensPost => on(m, tokens::create),
        ApplicationApiTokenGet => on(m, tokens::get),
        ApplicationApiTokenPatch => on(m, tokens::patch),
        ApplicationApiTokenDelete => on(m, tokens::delete),
        ApplicationApiTokenUsage => on(m, token_usage::get),
        ApplicationAuditLogsGet => on(m, audit::application_list),
        ApplicationApiTokenRoll => on(m, lifecycle::roll),
        ApplicationApiTokenDescendants => on(m, lineage::descendants),
        ApplicationTokenPolicyGet => on(m, policy::application_get),
        ApplicationTokenPolicyPatch => on(m, policy::application_patch),
        ApplicationTokenWebhooksGet => on(m, webhooks::list),
        ApplicationTokenWebhooksPost => on(m, webhooks::create),
        ApplicationTokenWebhookGet => on(m, webhooks::get),
        ApplicationTokenWebhookPatch => on(m, webhooks::patch),
        ApplicationTokenWebhookDelete => on(m, webhooks::delete),
        ApplicationTokenWebhookDeliveries => on(m, webhooks::deliveries),
        ApplicationTokenWebhookRetryDelivery => on(m, webhooks::retry_delivery),
        DevicesGet => on(m, devices::list),
        DevicesPost => on(m, devices::create),
        DeviceGet => on(m, devices::get),
        DevicePatch => on(m, devices::patch),
        DeviceDelete => on(m, devices::delete),
        DeviceSendState => on(m, devices::send_state),
        DeviceGetState => on(m, devices::get_state),
        DeviceGetCompositeState => on(m, devices::get_composite_state),
        DeviceSendCommand => on(m, devices::send_command),
        DeviceGetCommand => on(m, devices::get_command),
        DataTimeSeriesQuery => on(m, data::time_series_query),
        DataLastValueQuery => on(m, data::last_value_query),
        FlowsGet => on(m, flows::list),
        FlowsPost => on(m, flows::create),
        FlowGet => on(m, flows::get),
        FlowPatch => on(m, flows::patch),
        FlowDelete => on(m, flows::delete),
    }
}

/// `501 NotImplemented` naming the reference action. Written directly, not as an
/// [`ApiError`]: the name comes from the reference catalog, never from the request, and
/// error messages' redaction would hide names as long as a secret
/// (`applicationCertificateAuthorities.get`).
fn not_implemented(name: &str) -> axum::response::Response {
    let body = serde_json::json!({
        "type": "NotImplemented",
        "message": format!("{name} is not implemented by this server"),
    });
    (StatusCode::NOT_IMPLEMENTED, axum::Json(body)).into_response()
}

/// Every registry action at its route, each behind the authorization guard.
pub fn api_router(state: &AppState) -> Router<AppState> {
    let mut router = Router::new();
    for def in REGISTRY {
        let guarded = handler(def.action).layer(middleware::from_fn_with_state(
            (state.clone(), def.action),
            auth::guard,
        ));
        router = router.route(def.path, guarded);
    }
    // The reference's other actions, at their real routes (merged with a registry route of the
    // same path where there is one).
    for a in crate::catalog::unimplemented() {
        let name: &'static str = &a.name;
        let filter = match a.method {
            Method::Get => MethodFilter::GET,
            Method::Post => MethodFilter::POST,
            Method::Patch => MethodFilter::PATCH,
            Method::Delete => MethodFilter::DELETE,
        };
        router = router.route(
            &a.path,
            on(filter, move || async move { not_implemented(name) }),
        );
    }
    router
        .fallback(|| async { ApiError::not_found("The requested path").into_response() })
        .method_not_allowed_fallback(|| async {
            let mut e = ApiError::validation("This path does not accept that method");
            e.status = StatusCode::METHOD_NOT_ALLOWED;
            e.kind = "MethodNotAllowed";
            e.into_response()
        })
}
