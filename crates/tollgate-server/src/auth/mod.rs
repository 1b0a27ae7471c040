//! The one authentication-and-authorization layer.
//!
//! Every route is wrapped in [`guard`] with the registry action it serves. The guard
//! authenticates the bearer secret (user session or application token alike), resolves the
//! application or organization the path names, decides whether the action is allowed, and
//! hands the handler a *capability*: [`AppAccess`], [`OrgAccess`] or [`UserAccess`]. Their
//! constructors are private to this module, so a handler cannot run without the decision
//! having been made, and store calls for application data take the application id from the
//! capability, not from the path.
//!
//! Order of answers: no or bad credentials → 401; malformed path ids → 400; an application or
//! organization the caller cannot see (whether or not it exists) → 404; visible but not
//! permitted → 403 naming the action.

pub mod credentials;
pub mod passwords;
pub mod throttle;
pub mod two_factor;
pub mod usage;

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use tollgate_core::permissions::{role_actions, role_token_bound};
use tollgate_core::secret::Digest;
use tollgate_core::{Action, Family, Role, Scope};
use tollgate_store::tokens::Creator;
use tollgate_store::{Actor, Id, StoreError};

pub use credentials::{Credentials, Principal, SessionEntry, TokenEntry};

use crate::error::ApiError;
use crate::observe::{Credential, Seen};
use crate::state::AppState;

/// What a route names as its target.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    None,
    Org(Id),
    Application(Id),
}

/// What runs in front of every REST route's handler (`handler`, called only when `action` is
/// allowed; `routes::Guarded` wraps each handler in it).
pub async fn guard<F, Fut>(state: AppState, action: Action, req: Request, handler: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let (mut parts, body) = req.into_parts();
    let mut credential = Credential::None;
    // For per-token usage (cheap clones of two header values, only when it is recorded).
    let probe = state.usage().enabled().then(|| UsageProbe::of(&parts));
    let mut expires = None;
    let (mut res, admitted) =
        match authorize_request(&state, action, &mut parts, &mut credential, &mut expires).await {
            Ok(()) => (handler(Request::from_parts(parts, body)).await, true),
            Err(e) => (e.into_response(), false),
        };
    // A token close to its expiry says so on every response to it (from the cached entry).
    crate::service::lifecycle::warn_of_expiry(&mut res, expires, tollgate_store::now_ms());
    if let Some(probe) = probe {
        probe.record(&state, action, &credential, admitted, res.status().as_u16());
    }
    // For the request log and the latency histograms.
    res.extensions_mut().insert(Seen { action, credential });
    res
}

/// What per-token usage needs of a request, taken before the request moves on.
struct UsageProbe {
    authorization: Option<axum::http::HeaderValue>,
    user_agent: Option<axum::http::HeaderValue>,
    client: Option<IpAddr>,
}

impl UsageProbe {
    fn of(parts: &Parts) -> UsageProbe {
        UsageProbe {
            authorization: parts.headers.get(header::AUTHORIZATION).cloned(),
            user_agent: parts.headers.get(header::USER_AGENT).cloned(),
            client: parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        }
    }

    /// Count the request against the token that made it, admitted or refused. A refused
    /// secret is looked up in the credential cache only (an inactive or expired token was
    /// put there when it was verified); unknown secrets belong to no token.
    fn record(
        self,
        state: &AppState,
        action: Action,
        credential: &Credential,
        admitted: bool,
        status: u16,
    ) {
        let token = match credential {
            Credential::Token(id) => Some(*id),
            Credential::Rejected => self
                .authorization
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' '))
                .and_then(|(_, secret)| state.credentials().cached_token_id(secret.trim())),
            _ => None,
        };
        let Some(token) = token else { return };
        let outcome = if admitted { 0 } else { status };
        let user_agent = self.user_agent.as_ref().and_then(|v| v.to_str().ok());
        state
            .usage()
            .record(token, action, outcome, status, self.client, user_agent);
    }
}

async fn authorize_request(
    state: &AppState,
    action: Action,
    parts: &mut Parts,
    credential: &mut Credential,
    expires: &mut Option<(i64, i64)>,
) -> Result<(), ApiError> {
    if action.def().family == Family::Public {
        return Ok(());
    }
    let presented = bearer(&parts.headers)?;
    *credential = Credential::Rejected;
    let principal = state.credentials().verify(presented).await?;
    *credential = match &principal {
        Principal::Token(t) => {
            *expires = t
                .expires
                .map(|e| (e, state.leads().first(t.application_id)));
            Credential::Token(t.id)
        }
        Principal::User(s) => Credential::User(s.user_id),
    };
    let target = target_of(parts).await?;
    // The client's address: the connection's peer, or what a trusted proxy forwarded
    // (`--trusted-proxy`); recorded with the write (audit) and checked by address rules.
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let client = crate::restrict::addresses::client_address(
        peer,
        &parts.headers,
        &state.settings().trusted_proxies,
    );
    match decide(state, principal, action, target)
        .await?
        .acting_from(client)
    {
        Access::App(a) => {
            if let Some(compiled) = a.token().and_then(|t| t.restrictions.clone()) {
                check_restrictions(state, &a, &compiled, client, parts).await?;
            }
            parts.extensions.insert(a).map(drop)
        }
        Access::Org(o) => parts.extensions.insert(o).map(drop),
        Access::User(u) => parts.extensions.insert(u).map(drop),
    };
    Ok(())
}

/// Run a restricted token's checks (`crate::restrict`) with the request's context: the
/// client's address, the device the path names (looked up only for a device restriction),
/// and the time.
async fn check_restrictions(
    state: &AppState,
    access: &AppAccess,
    compiled: &crate::restrict::Compiled,
    client: Option<std::net::IpAddr>,
    parts: &mut Parts,
) -> Result<(), ApiError> {
    let device = match compiled.needs_device() {
        false => None,
        true => match device_of(parts).await? {
            None => None,
            Some(id) => Some(
                state
                    .devices()
                    .get(access.application(), id)
                    .await
                    .map_err(|e| ApiError::from_store(e, "Device"))?,
            ),
        },
    };
    let ctx = crate::restrict::Context {
        action: access.action(),
        client,
        device: device.as_deref().map(|d| &**d),
        now: std::time::Instant::now(),
    };
    compiled.check(&ctx).await
}

/// The `deviceId` the path names, if any.
async fn device_of(parts: &mut Parts) -> Result<Option<Id>, ApiError> {
    let params = RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|e| ApiError::validation(format!("Invalid path: {}", e.body_text())))?;
    for (name, value) in &params {
        if name == "deviceId" {
            return value.parse::<Id>().map(Some).map_err(|_| {
                ApiError::validation("deviceId is not valid: ids are 24 hexadecimal characters")
            });
        }
    }
    Ok(None)
}

/// The bearer secret of a request.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    // Two credentials in one request: which one is meant is ambiguous (and proxies disagree
    // on which they pass on), so neither is used.
    let count = headers.get_all(header::AUTHORIZATION).iter().count();
    if count > 1 {
        return Err(ApiError::validation(format!(
            "The request has {count} Authorization headers: send exactly one"
        )));
    }
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| ApiError {
        no_credentials: true,
        ..ApiError::unauthorized(
            "Authorization required: send an Authorization: Bearer <token> header",
        )
    })?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("Invalid Authorization header"))?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| {
        ApiError::unauthorized("Invalid Authorization header: expected Bearer <token>")
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized(
            "Invalid Authorization header: expected Bearer <token>",
        ));
    }
    Ok(token.trim())
}

async fn target_of(parts: &mut Parts) -> Result<Target, ApiError> {
    let params = RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|e| ApiError::validation(format!("Invalid path: {}", e.body_text())))?;
    for (name, value) in &params {
        let parse = |what: &str| {
            value.parse::<Id>().map_err(|_| {
                ApiError::validation(format!(
                    "{what} is not valid: ids are 24 hexadecimal characters"
                ))
            })
        };
        match name {
            "applicationId" => return Ok(Target::Application(parse("applicationId")?)),
            "orgId" => return Ok(Target::Org(parse("orgId")?)),
            _ => {}
        }
    }
    Ok(Target::None)
}

/// A decision's result: the capability the handler receives.
pub enum Access {
    App(AppAccess),
    Org(OrgAccess),
    User(UserAccess),
}

impl Access {
    /// The capability, acting from `client` (what its writes record in the audit log).
    pub fn acting_from(self, client: Option<IpAddr>) -> Access {
        match self {
            Access::App(a) => Access::App(AppAccess { client, ..a }),
            Access::Org(o) => Access::Org(o.acting_from(client)),
            Access::User(u) => Access::User(UserAccess { client, ..u }),
        }
    }
}

impl OrgAccess {
    fn acting_from(self, client: Option<IpAddr>) -> OrgAccess {
        OrgAccess { client, ..self }
    }
}

/// Decide whether `principal` may perform `action` on `target`.
pub async fn decide(
    state: &AppState,
    principal: Principal,
    action: Action,
    target: Target,
) -> Result<Access, ApiError> {
    let def = action.def();
    match (def.family, target, principal) {
        (Family::Application, Target::Application(app), Principal::Token(token)) => {
            if token.application_id != app {
                // Another application: answer as if it did not exist, whether or not it does.
                return Err(ApiError::not_found("Application"));
            }
            if !token.allowed().contains(action) {
                return Err(token_forbidden(action));
            }
            Ok(Access::App(AppAccess {
                application: app,
                action,
                who: Who::Token(token),
                client: None,
            }))
        }
        (Family::Application, Target::Application(app), Principal::User(session)) => {
            let (_, role, two_factor_missing) = state
                .store()
                .application_access(app, session.user_id)
                .await
                .map_err(|e| ApiError::from_store(e, "Application"))?;
            if role == Role::None {
                return Err(ApiError::not_found("Application"));
            }
            if two_factor_missing {
                return Err(two_factor_required(action));
            }
            if !role_actions(role).contains(action) {
                return Err(role_forbidden(action, role));
            }
            Ok(Access::App(AppAccess {
                application: app,
                action,
                who: Who::User {
                    user_id: session.user_id,
                    session: session.digest,
                    role,
                },
                client: None,
            }))
        }
        (Family::Organization, Target::Org(org), Principal::User(session)) => {
            Ok(Access::Org(org_access(state, &session, org, action).await?))
        }
        (Family::User | Family::Organization, Target::None, Principal::User(session)) => {
            Ok(Access::User(UserAccess {
                user_id: session.user_id,
                session: session.digest,
                action,
                client: None,
            }))
        }
        (_, _, Principal::Token(_)) => Err(ApiError::forbidden(
            action,
            format!(
                "{} is not available to application API tokens: it needs a user's login (POST /auth/user)",
                action.name()
            ),
        )),
        _ => {
            tracing::error!(action = action.name(), "route and registry family disagree");
            Err(ApiError::internal())
        }
    }
}

/// Decide whether the user of `session` may perform `action` in organization `org`.
async fn org_access(
    state: &AppState,
    session: &SessionEntry,
    org: Id,
    action: Action,
) -> Result<OrgAccess, ApiError> {
    org_access_for(state, session.user_id, session.digest, org, action).await
}

async fn org_access_for(
    state: &AppState,
    user_id: Id,
    session: Digest,
    org: Id,
    action: Action,
) -> Result<OrgAccess, ApiError> {
    let membership = match state.store().org_membership(org, user_id).await {
        Ok(Some(m)) => m,
        Ok(None) | Err(StoreError::NotFound) => return Err(ApiError::not_found("Organization")),
        Err(e) => return Err(e.into()),
    };
    let role = membership.role;
    if membership.two_factor_missing {
        return Err(two_factor_required(action));
    }
    if !role_actions(role).contains(action) {
        return Err(role_forbidden(action, role));
    }
    Ok(OrgAccess {
        org,
        user_id,
        session,
        role,
        action,
        client: None,
    })
}

/// The organization's `mfaMode` requires two-factor authentication of this member, who has
/// not enabled it. Their own account actions (`me.*`) stay open, so they can.
fn two_factor_required(action: Action) -> ApiError {
    ApiError::forbidden(
        action,
        format!(
            "This organization requires two-factor authentication for your role before {} (its mfaMode): enable it for your account first (me.generateTwoFactorAuth, then me.enableTwoFactorAuth, or the console's Account page)",
            action.name()
        ),
    )
}

fn token_forbidden(action: Action) -> ApiError {
    let def = action.def();
    ApiError::forbidden(
        action,
        format!(
            "This API token's scope does not include {}: use a token whose scope has one of {}",
            def.name,
            tollgate_core::scope::granting(&action).join(", ")
        ),
    )
}

fn role_forbidden(action: Action, role: Role) -> ApiError {
    let def = action.def();
    ApiError::forbidden(
        action,
        format!(
            "Your role here ({role}) does not allow {}: it needs {} or above",
            def.name, def.min_role
        ),
    )
}

/// Who acts inside an application.
#[derive(Clone, Debug)]
enum Who {
    Token(Arc<TokenEntry>),
    User {
        user_id: Id,
        session: Digest,
        role: Role,
    },
}

/// Permission to perform one action inside one application.
#[derive(Clone, Debug)]
pub struct AppAccess {
    application: Id,
    action: Action,
    who: Who,
    /// The client's address, for the audit log.
    client: Option<IpAddr>,
}

impl AppAccess {
    /// The application the action was granted in; store calls use this id.
    pub fn application(&self) -> Id {
        self.application
    }

    pub fn action(&self) -> Action {
        self.action
    }

    /// Who acts, for the store: every write this capability allows passes it, and the store
    /// re-checks the credential in the write's own transaction.
    pub fn actor(&self) -> Actor {
        let actor = match &self.who {
            Who::Token(t) => Actor::api_token(t.id, t.application_id),
            Who::User {
                user_id, session, ..
            } => Actor::user_session(*user_id, *session),
        };
        actor.acting_from(self.client)
    }

    /// The acting user's effective role in the application, if a user acts.
    pub fn role(&self) -> Option<Role> {
        match &self.who {
            Who::Token(_) => None,
            Who::User { role, .. } => Some(*role),
        }
    }

    /// The token acting, if it is a token.
    pub fn token(&self) -> Option<&TokenEntry> {
        match &self.who {
            Who::Token(t) => Some(t),
            Who::User { .. } => None,
        }
    }

    /// The strongest scope and latest expiry a token created by this caller may have:
    /// a token's own; a user's role's.
    pub fn creation_bound(&self) -> (Scope, Option<i64>) {
        match &self.who {
            Who::Token(t) => (t.scope.scope.clone(), t.expires),
            Who::User { role, .. } => (role_token_bound(*role), None),
        }
    }

    /// The acting token's restrictions (none for a user).
    pub fn restrictions(&self) -> tollgate_core::restrictions::Restrictions {
        match &self.who {
            Who::Token(t) => t
                .restrictions
                .as_ref()
                .map(|c| c.restrictions.clone())
                .unwrap_or_default(),
            Who::User { .. } => Default::default(),
        }
    }

    /// The devices the acting token is restricted to (`None`: every device of the
    /// application). Handlers that list or query devices narrow their answers to these.
    pub fn devices(&self) -> Option<&tollgate_core::restrictions::Devices> {
        match &self.who {
            Who::Token(t) => t.restrictions.as_ref().and_then(|c| c.devices()),
            Who::User { .. } => None,
        }
    }

    /// The device restriction as the store narrows lists and queries by it.
    pub fn device_scope(&self) -> Option<tollgate_store::devices::DeviceScope> {
        self.devices()
            .map(|d| tollgate_store::devices::DeviceScope {
                ids: d.ids.iter().filter_map(|i| i.parse().ok()).collect(),
                tags: d
                    .tags
                    .iter()
                    .map(|t| (t.key.clone(), t.value.clone()))
                    .collect(),
            })
    }

    /// The creator recorded on things this caller creates.
    pub async fn creator(&self, state: &AppState) -> Result<Creator, ApiError> {
        match &self.who {
            // The cache does not hold token names (a million of them would cost memory for
            // the rare token that creates tokens): read it.
            Who::Token(t) => {
                let record = match state.store().token(t.application_id, t.id).await {
                    Ok(r) => r,
                    // Deleted since the request was authorized.
                    Err(StoreError::NotFound) => {
                        return Err(
                            StoreError::Revoked(tollgate_store::Revoked::TokenDeleted).into()
                        );
                    }
                    Err(e) => return Err(e.into()),
                };
                Ok(Creator {
                    kind: "apiToken",
                    id: t.id,
                    name: record.name,
                })
            }
            Who::User { user_id, .. } => {
                let user = state.store().user(*user_id).await?;
                Ok(Creator {
                    kind: "user",
                    id: user.id,
                    name: user.email,
                })
            }
        }
    }
}

/// Permission to perform one action on one organization.
#[derive(Clone, Debug)]
pub struct OrgAccess {
    org: Id,
    user_id: Id,
    session: Digest,
    role: Role,
    action: Action,
    client: Option<IpAddr>,
}

impl OrgAccess {
    /// Who acts, for the store (see [`AppAccess::actor`]).
    pub fn actor(&self) -> Actor {
        Actor::user_session(self.user_id, self.session).acting_from(self.client)
    }

    pub fn org(&self) -> Id {
        self.org
    }
    pub fn user_id(&self) -> Id {
        self.user_id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn action(&self) -> Action {
        self.action
    }
}

/// A logged-in user acting for themselves (their profile, their organizations and
/// applications list, creating organizations and applications).
#[derive(Clone, Debug)]
pub struct UserAccess {
    user_id: Id,
    /// Digest of the session the request came with.
    session: Digest,
    action: Action,
    client: Option<IpAddr>,
}

impl UserAccess {
    /// Who acts, for the store (see [`AppAccess::actor`]).
    pub fn actor(&self) -> Actor {
        Actor::user_session(self.user_id, self.session).acting_from(self.client)
    }

    /// Decide whether this user may perform `action` in organization `org` (for targets that
    /// arrive in a body, such as the `orgId` of a new application): the same rule a path
    /// would get.
    pub async fn in_org(
        &self,
        state: &AppState,
        org: Id,
        action: Action,
    ) -> Result<OrgAccess, ApiError> {
        let access = org_access_for(state, self.user_id, self.session, org, action).await?;
        Ok(access.acting_from(self.client))
    }

    pub fn user_id(&self) -> Id {
        self.user_id
    }
    /// Digest of the session secret the request came with.
    pub fn session(&self) -> &tollgate_core::secret::Digest {
        &self.session
    }
    pub fn action(&self) -> Action {
        self.action
    }
}

macro_rules! capability_extractor {
    ($t:ty) => {
        impl<S: Send + Sync> FromRequestParts<S> for $t {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
                parts.extensions.get::<$t>().cloned().ok_or_else(|| {
                    // Only reachable if a route was registered without the guard.
                    tracing::error!(capability = stringify!($t), path = %parts.uri.path(), "unguarded route");
                    ApiError::internal()
                })
            }
        }
    };
}

capability_extractor!(AppAccess);
capability_extractor!(OrgAccess);
capability_extractor!(UserAccess);
