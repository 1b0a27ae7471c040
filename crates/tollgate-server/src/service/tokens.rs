//! Application API tokens: the one place that decides whether a token may be created,
//! changed (renamed, described, deactivated, reactivated) or deleted, and then does it.
//! `api::tokens` (REST) and `console::tokens` both call these functions.
//!
//! Each rule is a plain function of *who acts* ([`Authority`]), *the token it acts on* (the
//! one to be created, or the stored one as it is now) and *the change asked for*
//! ([`Request`]), answering with a typed refusal ([`TokenError`]) that each client words in
//! its own way. For a change or deletion the rules run inside the store's write transaction,
//! against the token row locked there ([`tollgate_store::Store::update_token`]), so what they
//! judge is what is changed, and a concurrent change cannot slip in between.
//!
//! The rules today:
//! * a name is 1 to 255 characters; an expiry is in the future;
//! * **authority**: one may create, change or delete only a token one could have created:
//!   its scope within one's own (the subset rule of `tollgate_core::scope`, which also covers
//!   actions added in later versions) and its expiry no later than one's own. A token's
//!   authority is its own scope and expiry; a user's is their role's (edit and admin: every
//!   application action, no expiry).
//!
//! The operator (`tollgate tokens deactivate|delete` at the server's command line, see
//! `crate::admin`) holds the database itself and is neither a token nor a role, so the
//! authority rule does not apply to them; every other rule does, and their changes take the
//! same store writes ([`Actor::operator`]), with the same change notices, as the API's.

use tollgate_core::restrictions::Restrictions;
use tollgate_core::secret::{Secret, SecretKind};
use tollgate_core::{Action, Role, Scope, ScopeError};
use tollgate_store::tokens::{NewToken, TokenChange, TokenRecord, TokenStatus};
use tollgate_store::{Actor, Id, Store, StoreError, now_ms};

use crate::auth::AppAccess;
use crate::error::{ApiError, some_of};
use crate::state::AppState;
use crate::time::iso;
use crate::validate;

/// Who acts, as far as the token rules care: the most a token they manage may do, and the
/// latest it may expire.
#[derive(Clone, Debug)]
pub struct Authority {
    pub by: ActingAs,
    pub scope: Scope,
    /// `None`: never expires (a user, or a token without expiry).
    pub expires: Option<i64>,
    /// The acting token's restrictions (none for a user): a token it manages is within each.
    pub restrictions: Restrictions,
}

/// Whose authority it is (the refusals say "this API token" or "your role").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActingAs {
    Token,
    Role(Role),
}

impl Authority {
    /// The authority of the caller a capability was granted to.
    pub fn of(access: &AppAccess) -> Authority {
        let (scope, expires) = access.creation_bound();
        let by = match access.role() {
            Some(role) => ActingAs::Role(role),
            None => ActingAs::Token,
        };
        Authority {
            by,
            scope,
            expires,
            restrictions: access.restrictions(),
        }
    }
}

/// What is asked of a token.
#[derive(Clone, Copy, Debug)]
pub enum Request<'a> {
    Create(&'a TokenRequest),
    Change(&'a TokenChange),
    Delete,
}

impl Request<'_> {
    fn verb(&self) -> Verb {
        match self {
            Request::Create(_) => Verb::Create,
            Request::Change(_) => Verb::Change,
            Request::Delete => Verb::Delete,
        }
    }
}

/// The kind of request, for the wording of refusals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Create,
    Change,
    Delete,
}

impl Verb {
    /// The registry action the request performs.
    pub fn action(self) -> Action {
        match self {
            Verb::Create => Action::ApplicationApiTokensPost,
            Verb::Change => Action::ApplicationApiTokenPatch,
            Verb::Delete => Action::ApplicationApiTokenDelete,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Change => "change",
            Verb::Delete => "delete",
        }
    }
}

/// A new token as its creator asks for it; [`create`] applies the rules.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub name: String,
    pub description: String,
    /// Scope strings; `None` means the default, `["all.Application"]`.
    pub scope: Option<Vec<String>>,
    /// Milliseconds since the epoch; `None` never expires.
    pub expiration_date: Option<i64>,
    pub status: TokenStatus,
    /// Devices, addresses, rate and usage limit (fixed at creation; default: none).
    pub restrictions: Restrictions,
    /// The console's one-time form key and the user submitting it: the token is created only
    /// if the key was never used, in the same transaction that marks it used.
    pub form_key: Option<(String, Id)>,
}

/// Why a token was not created, changed or deleted. The REST API and the console word these
/// differently (the console puts them beside the field at fault), so the rules answer with a
/// type, not a text.
#[derive(Debug)]
pub enum TokenError {
    /// The name is empty or longer than 255 characters.
    Name,
    /// The scope names something that is not an application permission, or nothing.
    Scope(ScopeError),
    /// The expiry is not in the future.
    PastExpiry,
    /// The token (to be created, or to be changed or deleted) reaches beyond the actor:
    /// `excess` are its grants at fault, `bound` the actor's own scope.
    TooPowerful {
        verb: Verb,
        by: ActingAs,
        excess: Vec<String>,
        bound: Vec<String>,
    },
    /// The actor expires at `limit`, and the token would live longer (`expires`: when it
    /// expires, `None` never).
    Outlives {
        verb: Verb,
        limit: i64,
        expires: Option<i64>,
    },
    /// The restriction fields are malformed: every problem.
    Restrictions(Vec<String>),
    /// The token's restrictions are wider than the actor's, in the dimensions named.
    LooserRestrictions { verb: Verb, reasons: Vec<String> },
    /// The one-time form key was used already: nothing was created.
    AlreadySubmitted,
    /// Anything else (the store, a vanished credential, the text rules); already an API answer.
    Other(ApiError),
}

impl From<ApiError> for TokenError {
    fn from(e: ApiError) -> Self {
        TokenError::Other(e)
    }
}

/// What the store says during a change or deletion (a token that is not there is the API
/// token that was not found).
impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        TokenError::Other(ApiError::from_store(e, "API token"))
    }
}

impl TokenError {
    /// The REST API's answer.
    pub fn into_api(self) -> ApiError {
        match self {
            TokenError::Name => {
                ApiError::validation("name must be between 1 and 255 characters long")
            }
            TokenError::Scope(e) => ApiError::validation(format!("Invalid scope: {e}")),
            TokenError::PastExpiry => ApiError::validation(
                "expirationDate is in the past: choose a future date, or leave it out for a token that never expires",
            ),
            TokenError::TooPowerful {
                verb: Verb::Create,
                excess,
                bound,
                ..
            } => ApiError::forbidden(
                Verb::Create.action(),
                format!(
                    "A token cannot be more powerful than its creator: {} would reach beyond the creator's scope ({})",
                    some_of(&excess),
                    some_of(&bound)
                ),
            ),
            TokenError::TooPowerful {
                verb,
                by,
                excess,
                bound,
            } => ApiError::forbidden(
                verb.action(),
                format!(
                    "{} cannot {} a token more powerful than {}: that token's {} would reach beyond {} ({}). \
                     A token may change or delete only tokens it could have created",
                    who(by),
                    verb.word(),
                    itself(by),
                    some_of(&excess),
                    whose_scope(by),
                    some_of(&bound)
                ),
            ),
            TokenError::Outlives {
                verb: Verb::Create,
                limit,
                ..
            } => ApiError::forbidden(
                Verb::Create.action(),
                format!(
                    "A token cannot outlive its creator, which expires at {}: set an expirationDate no later than that",
                    iso(limit)
                ),
            ),
            TokenError::Outlives {
                verb,
                limit,
                expires,
            } => ApiError::forbidden(
                verb.action(),
                format!(
                    "This API token cannot {} a token that outlives it: that token {}, and this one expires at {}. \
                     A token may change or delete only tokens it could have created",
                    verb.word(),
                    match expires {
                        None => "never expires".to_owned(),
                        Some(e) => format!("expires at {}", iso(e)),
                    },
                    iso(limit)
                ),
            ),
            TokenError::Restrictions(problems) => {
                ApiError::validation(format!("Invalid restrictions: {}", problems.join("; ")))
            }
            TokenError::LooserRestrictions { verb, reasons } => ApiError::forbidden(
                verb.action(),
                match verb {
                    Verb::Create => format!(
                        "A token cannot be more powerful than its creator: {}",
                        reasons.join("; ")
                    ),
                    _ => format!(
                        "This API token cannot {} a token less restricted than itself: that token's {}. \
                         A token may change or delete only tokens it could have created",
                        verb.word(),
                        reasons.join("; ")
                    ),
                },
            ),
            TokenError::AlreadySubmitted => {
                ApiError::conflict("This form was submitted already: no second token was created")
            }
            TokenError::Other(e) => e,
        }
    }
}

fn who(by: ActingAs) -> &'static str {
    match by {
        ActingAs::Token => "This API token",
        ActingAs::Role(_) => "Your role",
    }
}

fn itself(by: ActingAs) -> &'static str {
    match by {
        ActingAs::Token => "itself",
        ActingAs::Role(_) => "your role allows",
    }
}

fn whose_scope(by: ActingAs) -> String {
    match by {
        ActingAs::Token => "this token's scope".to_owned(),
        ActingAs::Role(role) => format!("what the {role} role allows"),
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        e.into_api()
    }
}

// ---------------------------------------------------------------------------------------
// The rules: functions of (who acts, the target token, the change asked for).

/// Names are 1 to 255 characters.
pub fn check_name(request: Request<'_>) -> Result<(), TokenError> {
    let name = match request {
        Request::Create(r) => Some(&r.name),
        Request::Change(c) => c.name.as_ref(),
        Request::Delete => None,
    };
    match name.map(|n| n.chars().count()) {
        Some(0) => Err(TokenError::Name),
        Some(n) if n > 255 => Err(TokenError::Name),
        _ => Ok(()),
    }
}

/// One may act only on a token one could have created: its scope within `authority`'s, its
/// expiry (`expires`; `None` never) no later than `authority`'s.
pub fn check_authority(
    authority: &Authority,
    scope: &Scope,
    expires: Option<i64>,
    restrictions: &Restrictions,
    request: Request<'_>,
) -> Result<(), TokenError> {
    let verb = request.verb();
    // Each dimension of the restrictions within the actor's (devices, addresses, rate,
    // usage limit); the usage limit is also carved out of the actor's remaining uses when
    // the token is stored.
    if let Err(reasons) = restrictions.within(&authority.restrictions) {
        return Err(TokenError::LooserRestrictions { verb, reasons });
    }
    if let Err(excess) = scope.within(&authority.scope) {
        return Err(TokenError::TooPowerful {
            verb,
            by: authority.by,
            excess,
            bound: authority.scope.to_strings(),
        });
    }
    if let Some(limit) = authority.expires
        && expires.is_none_or(|e| e > limit)
    {
        return Err(TokenError::Outlives {
            verb,
            limit,
            expires,
        });
    }
    Ok(())
}

/// Every rule for changing or deleting `target` as it is now.
pub fn check_existing(
    authority: &Authority,
    target: &TokenRecord,
    request: Request<'_>,
) -> Result<(), TokenError> {
    check_name(request)?;
    let scope = Scope::parse(&target.scope).map_err(|_| {
        tracing::error!(token = %target.id, "stored token scope no longer parses");
        TokenError::Other(ApiError::internal())
    })?;
    let restrictions = Restrictions::from_stored(target.restrictions.as_deref()).map_err(|e| {
        tracing::error!(token = %target.id, error = %e, "stored token restrictions no longer parse");
        TokenError::Other(ApiError::internal())
    })?;
    check_authority(
        authority,
        &scope,
        target.expiration_date,
        &restrictions,
        request,
    )
}

// ---------------------------------------------------------------------------------------
// The operations.

/// Create a token. The scope must parse, the expiry must be in the future, and the token may
/// be no more powerful and no longer-lived than whoever creates it. Returns the stored token
/// and its secret, which the caller shows once and then drops.
pub async fn create(
    state: &AppState,
    access: &AppAccess,
    request: TokenRequest,
) -> Result<(TokenRecord, Secret), TokenError> {
    check_name(Request::Create(&request))?;
    // The same text rules and limits as the REST body's schema, for the console too.
    validate::name_field("applicationApiTokenPost", "name", &request.name)?;
    validate::text_field(
        "applicationApiTokenPost",
        "description",
        &request.description,
    )?;
    let scope = match &request.scope {
        None => Scope::all(),
        Some(items) => Scope::parse(items).map_err(TokenError::Scope)?,
    };
    if request.expiration_date.is_some_and(|at| at <= now_ms()) {
        return Err(TokenError::PastExpiry);
    }
    // The application's token policy (maximum lifetime, expiry required).
    crate::service::policy::check_new(state.store(), access.application(), request.expiration_date)
        .await?;
    // A new token's scope and expiry are the request's: the rules need nothing stored.
    let authority = Authority::of(access);
    check_authority(
        &authority,
        &scope,
        request.expiration_date,
        &request.restrictions,
        Request::Create(&request),
    )?;
    // A child of a rate-limited token also draws from its family's bucket (the topmost
    // rate-limited ancestor's), so minting more tokens does not multiply the rate.
    let mut restrictions = request.restrictions.clone();
    if let (Some(parent_rate), Some(t), Some(rate)) = (
        &authority.restrictions.rate,
        access.token(),
        restrictions.rate.as_mut(),
    ) {
        rate.shared = Some(parent_rate.family(&t.id.to_string()));
    }
    let stored_restrictions = restrictions.to_stored();
    let usage_limit = request
        .restrictions
        .quota
        .map(|q| i64::try_from(q.uses).unwrap_or(i64::MAX));
    // A child's usage limit comes out of its creator's remaining uses.
    let carve_from = match (usage_limit, access.token()) {
        (Some(_), Some(t)) if authority.restrictions.quota.is_some() => Some(t.id),
        _ => None,
    };
    let secret = Secret::generate(SecretKind::ApplicationToken);
    let scope_strings = scope.to_strings();
    let new = NewToken {
        application_id: access.application(),
        digest: secret.digest(),
        name: &request.name,
        description: &request.description,
        scope: &scope_strings,
        status: request.status,
        expiration_date: request.expiration_date,
        creator: access.creator(state).await?,
        restrictions: stored_restrictions.as_deref(),
        usage_limit,
        carve_from,
    };
    let actor = access.actor();
    let created = match &request.form_key {
        None => state.store().create_token(&actor, &new).await,
        Some((key, user)) => {
            state
                .store()
                .create_token_once(&actor, &new, key, *user)
                .await
        }
    };
    let record = match created {
        Err(StoreError::Conflict("this form")) => return Err(TokenError::AlreadySubmitted),
        other => other.map_err(|e| ApiError::from_store(e, "Application"))?,
    };
    tracing::info!(token = %record.id, application = %record.application_id, creator = %record.creator.id, "API token created");
    Ok((record, secret))
}

/// Change a token's name, description or status (nothing else about a token changes).
pub async fn change(
    state: &AppState,
    access: &AppAccess,
    token_id: Id,
    change: &TokenChange,
) -> Result<TokenRecord, TokenError> {
    let request = Request::Change(change);
    check_change(change)?;
    let authority = Authority::of(access);
    let t = state
        .store()
        .update_token(
            &access.actor(),
            access.application(),
            token_id,
            change,
            |target| check_existing(&authority, target, request),
        )
        .await?;
    tracing::info!(token = %t.id, status = t.status.as_str(), "API token updated");
    Ok(t)
}

/// The rules of a change that need no token: the name first (a bad one is the caller's to
/// fix), then the text rules of the REST body's schema.
pub(crate) fn check_change(change: &TokenChange) -> Result<(), TokenError> {
    check_name(Request::Change(change))?;
    if let Some(name) = &change.name {
        validate::name_field("apiTokenPatch", "name", name)?;
    }
    if let Some(description) = &change.description {
        validate::text_field("apiTokenPatch", "description", description)?;
    }
    Ok(())
}

/// What the operator's change did.
#[derive(Debug)]
pub struct OperatorChange {
    /// The token as it is now.
    pub token: TokenRecord,
    /// The token as it was, read in the change's own transaction.
    pub before: TokenRecord,
}

/// The operator changes token `token_id` of `application` (`tollgate tokens deactivate`):
/// every rule but the authority rule, the same store write as [`change`] and so the same
/// change notices; logged as done by the operator. The error type is the caller's, so that a
/// token that is not there stays the store's `NotFound`.
pub async fn operator_change<E>(
    store: &Store,
    application: Id,
    token_id: Id,
    change: &TokenChange,
) -> Result<OperatorChange, E>
where
    E: From<StoreError> + From<TokenError>,
{
    check_change(change)?;
    let mut before = None;
    let token = store
        .update_token(
            &Actor::operator(),
            application,
            token_id,
            change,
            |current| -> Result<(), E> {
                before = Some(current.clone());
                Ok(())
            },
        )
        .await?;
    let before = before.unwrap_or_else(|| token.clone());
    tracing::info!(
        token = %token.id,
        application = %token.application_id,
        by = "operator",
        status = token.status.as_str(),
        was = before.status.as_str(),
        "API token updated"
    );
    Ok(OperatorChange { token, before })
}

/// The operator deletes token `token_id` of `application` (`tollgate tokens delete`): the
/// same store write as [`delete`], no authority rule; logged as done by the operator.
/// Returns the token as it was, read in the deletion's own transaction.
pub async fn operator_delete<E>(
    store: &Store,
    application: Id,
    token_id: Id,
) -> Result<TokenRecord, E>
where
    E: From<StoreError> + From<TokenError>,
{
    let mut before = None;
    store
        .delete_token(
            &Actor::operator(),
            application,
            token_id,
            |current| -> Result<(), E> {
                before = Some(current.clone());
                Ok(())
            },
        )
        .await?;
    let token = before.ok_or(StoreError::NotFound)?;
    tracing::info!(
        token = %token.id,
        application = %token.application_id,
        by = "operator",
        "API token deleted"
    );
    Ok(token)
}

/// Switch a token off: it is refused from the very next request on.
pub async fn deactivate(
    state: &AppState,
    access: &AppAccess,
    token_id: Id,
) -> Result<TokenRecord, TokenError> {
    set_status(state, access, token_id, TokenStatus::Inactive).await
}

/// Switch a token back on.
pub async fn reactivate(
    state: &AppState,
    access: &AppAccess,
    token_id: Id,
) -> Result<TokenRecord, TokenError> {
    set_status(state, access, token_id, TokenStatus::Active).await
}

async fn set_status(
    state: &AppState,
    access: &AppAccess,
    token_id: Id,
    status: TokenStatus,
) -> Result<TokenRecord, TokenError> {
    let c = TokenChange {
        status: Some(status),
        ..TokenChange::default()
    };
    change(state, access, token_id, &c).await
}

/// Delete a token; it is refused from the very next request on.
pub async fn delete(state: &AppState, access: &AppAccess, token_id: Id) -> Result<(), TokenError> {
    let authority = Authority::of(access);
    state
        .store()
        .delete_token(&access.actor(), access.application(), token_id, |target| {
            check_existing(&authority, target, Request::Delete)
        })
        .await?;
    tracing::info!(token = %token_id, "API token deleted");
    Ok(())
}

/// When a token was last used: this node may have seen a use the database has not been told
/// of yet.
pub fn last_used(state: &AppState, t: &TokenRecord) -> Option<i64> {
    t.last_used.max(state.credentials().last_used(&t.digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(scope: &[&str], expires: Option<i64>) -> Authority {
        Authority {
            by: ActingAs::Token,
            scope: Scope::parse(scope).unwrap(),
            expires,
            restrictions: Restrictions::default(),
        }
    }

    #[test]
    fn a_token_may_act_only_on_tokens_it_could_have_created() {
        let narrow = authority(&["applicationApiToken.patch"], None);
        let broad = Scope::parse(&["all.Application"]).unwrap();
        let change = TokenChange::default();
        match check_authority(
            &narrow,
            &broad,
            None,
            &Restrictions::default(),
            Request::Change(&change),
        ) {
            Err(TokenError::TooPowerful { verb, excess, .. }) => {
                assert_eq!(verb, Verb::Change);
                assert_eq!(excess, vec!["all.Application".to_owned()]);
            }
            other => panic!("expected TooPowerful, got {other:?}"),
        }
        let within = Scope::parse(&["applicationApiToken.patch"]).unwrap();
        assert!(
            check_authority(
                &narrow,
                &within,
                None,
                &Restrictions::default(),
                Request::Delete
            )
            .is_ok()
        );

        let mortal = authority(&["all.Application"], Some(1_000));
        match check_authority(
            &mortal,
            &within,
            None,
            &Restrictions::default(),
            Request::Delete,
        ) {
            Err(TokenError::Outlives {
                verb,
                limit,
                expires,
            }) => assert_eq!((verb, limit, expires), (Verb::Delete, 1_000, None)),
            other => panic!("expected Outlives, got {other:?}"),
        }
        assert!(
            check_authority(
                &mortal,
                &within,
                Some(999),
                &Restrictions::default(),
                Request::Delete
            )
            .is_ok()
        );
        assert!(
            check_authority(
                &mortal,
                &within,
                Some(1_001),
                &Restrictions::default(),
                Request::Delete
            )
            .is_err()
        );
    }

    #[test]
    fn refusals_say_which_grants_reach_too_far_and_what_outlives_what() {
        let e = TokenError::TooPowerful {
            verb: Verb::Change,
            by: ActingAs::Token,
            excess: vec!["all.Application".into()],
            bound: vec!["applicationApiToken.patch".into()],
        }
        .into_api();
        assert_eq!(e.status.as_u16(), 403);
        assert_eq!(e.required, Some(Action::ApplicationApiTokenPatch));
        assert!(
            e.message
                .contains("cannot change a token more powerful than itself")
        );
        assert!(e.message.contains("all.Application"));
        assert!(e.message.contains("(applicationApiToken.patch)"));
        let e = TokenError::Outlives {
            verb: Verb::Delete,
            limit: 0,
            expires: None,
        }
        .into_api();
        assert!(e.message.contains("cannot delete a token that outlives it"));
        assert!(e.message.contains("never expires"));
    }

    #[test]
    fn names_are_checked_only_when_given() {
        let rename = |n: &str| TokenChange {
            name: Some(n.to_owned()),
            ..TokenChange::default()
        };
        assert!(check_name(Request::Change(&rename(""))).is_err());
        assert!(check_name(Request::Change(&rename(&"x".repeat(256)))).is_err());
        assert!(check_name(Request::Change(&rename("ok"))).is_ok());
        assert!(check_name(Request::Change(&TokenChange::default())).is_ok());
        assert!(check_name(Request::Delete).is_ok());
    }
}
