//! The router, derived from the action registry.
//!
//! Each registry entry becomes one route at its method and path, wrapped in the authorization
//! guard for that action. `handler` is the only table from actions to handler functions: an
//! exhaustive `match`, so a registry entry without a handler does not compile.

use std::future::Future;
use std::pin::Pin;

use axum::Router;
use axum::extract::Request;
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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
        AuthAuthenticateUser => guarded(m, action, login::authenticate_user),
        AuthLogout => guarded(m, action, login::logout),
        TokensRevoke => guarded(m, action, lifecycle::revoke),
        MeGet => guarded(m, action, me::get),
        MePatch => guarded(m, action, me::patch),
        MeChangePassword => guarded(m, action, me::change_password),
        MeGenerateTwoFactorAuth => guarded(m, action, me::generate_two_factor),
        MeEnableTwoFactorAuth => guarded(m, action, me::enable_two_factor),
        MeDisableTwoFactorAuth => guarded(m, action, me::disable_two_factor),
        MeInvites => guarded(m, action, me::invites),
        MeRespondToInvite => guarded(m, action, me::respond_to_invite),
        OrgsGet => guarded(m, action, orgs::list),
        OrgsPost => guarded(m, action, orgs::create),
        OrgGet => guarded(m, action, orgs::get),
        OrgPatch => guarded(m, action, orgs::patch),
        OrgDelete => guarded(m, action, orgs::delete),
        OrgInviteMember => guarded(m, action, orgs::invite_member),
        OrgPendingInvites => guarded(m, action, orgs::pending_invites),
        OrgRevokeInvite => guarded(m, action, orgs::revoke_invite),
        OrgModifyMember => guarded(m, action, orgs::modify_member),
        OrgRemoveMember => guarded(m, action, orgs::remove_member),
        AuditLogsGet => guarded(m, action, audit::org_list),
        AuditLogGet => guarded(m, action, audit::org_get),
        OrgTokenPolicyGet => guarded(m, action, policy::org_get),
        OrgTokenPolicyPatch => guarded(m, action, policy::org_patch),
        ApplicationsGet => guarded(m, action, applications::list),
        ApplicationsPost => guarded(m, action, applications::create),
        ApplicationGet => guarded(m, action, applications::get),
        ApplicationPatch => guarded(m, action, applications::patch),
        ApplicationDelete => guarded(m, action, applications::delete),
        ApplicationApiTokensGet => guarded(m, action, tokens::list),
        ApplicationApiTokensPost => guarded(m, action, tokens::create),
        ApplicationApiTokenGet => guarded(m, action, tokens::get),
        ApplicationApiTokenPatch => guarded(m, action, tokens::patch),
        ApplicationApiTokenDelete => guarded(m, action, tokens::delete),
        ApplicationApiTokenUsage => guarded(m, action, token_usage::get),
        ApplicationAuditLogsGet => guarded(m, action, audit::application_list),
        ApplicationApiTokenRoll => guarded(m, action, lifecycle::roll),
        ApplicationApiTokenDescendants => guarded(m, action, lineage::descendants),
        ApplicationTokenPolicyGet => guarded(m, action, policy::application_get),
        ApplicationTokenPolicyPatch => guarded(m, action, policy::application_patch),
        ApplicationTokenWebhooksGet => guarded(m, action, webhooks::list),
        ApplicationTokenWebhooksPost => guarded(m, action, webhooks::create),
        ApplicationTokenWebhookGet => guarded(m, action, webhooks::get),
        ApplicationTokenWebhookPatch => guarded(m, action, webhooks::patch),
        ApplicationTokenWebhookDelete => guarded(m, action, webhooks::delete),
        ApplicationTokenWebhookDeliveries => guarded(m, action, webhooks::deliveries),
        ApplicationTokenWebhookRetryDelivery => guarded(m, action, webhooks::retry_delivery),
        DevicesGet => guarded(m, action, devices::list),
        DevicesPost => guarded(m, action, devices::create),
        DeviceGet => guarded(m, action, devices::get),
        DevicePatch => guarded(m, action, devices::patch),
        DeviceDelete => guarded(m, action, devices::delete),
        DeviceSendState => guarded(m, action, devices::send_state),
        DeviceGetState => guarded(m, action, devices::get_state),
        DeviceGetCompositeState => guarded(m, action, devices::get_composite_state),
        DeviceSendCommand => guarded(m, action, devices::send_command),
        DeviceGetCommand => guarded(m, action, devices::get_command),
        DataTimeSeriesQuery => guarded(m, action, data::time_series_query),
        DataLastValueQuery => guarded(m, action, data::last_value_query),
        FlowsGet => guarded(m, action, flows::list),
        FlowsPost => guarded(m, action, flows::create),
        FlowGet => guarded(m, action, flows::get),
        FlowPatch => guarded(m, action, flows::patch),
        FlowDelete => guarded(m, action, flows::delete),
    }
}

/// A handler behind the authorization guard for its action.
///
/// A `Handler` wrapper rather than a `from_fn` layer on each route: the layer cost, per
/// request, a boxed clone of the route, a boxed `Next` and one more boxed future and `Route`
/// level around the handler's own (BENCHMARKS.md, "Fewer boxed layers"). This costs one boxed
/// future.
#[derive(Clone)]
struct Guarded<H> {
    action: Action,
    handler: H,
}

/// `handler` at `method`, behind the guard for `action`.
fn guarded<H, T>(method: MethodFilter, action: Action, handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    on(method, Guarded { action, handler })
}

impl<H, T> Handler<T, AppState> for Guarded<H>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    type Future = Pin<Box<dyn Future<Output = Response> + Send>>;

    fn call(self, req: Request, state: AppState) -> Self::Future {
        let Guarded { action, handler } = self;
        Box::pin(async move {
            let for_handler = state.clone();
            auth::guard(state, action, req, move |req| {
                handler.call(req, for_handler)
            })
            .await
        })
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
pub fn api_router() -> Router<AppState> {
    let mut router = Router::new();
    for def in REGISTRY {
        router = router.route(def.path, handler(def.action));
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
