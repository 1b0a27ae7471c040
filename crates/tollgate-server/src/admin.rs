//! The operator's token commands: `tollgate tokens list|show|deactivate|delete|revoke`.
//!
//! The operator holds the database, not a user or a token, so there is no scope to check (the
//! token service's authority rule does not apply): what the commands may do is what an
//! application's administrator may do through the API (`applicationApiToken.patch` with
//! `status: inactive`, `applicationApiToken.delete`), through the same token service
//! (`crate::service::tokens`) and store writes, as `tollgate_store::Actor::operator`. Those
//! commit the same change notices as the API, so the revocation guarantee is the same: the
//! command attaches to the running servers first (`crate::datadir::attach_command`: on
//! SQLite the server's control socket, on PostgreSQL the cluster), and each write returns only
//! once every running server has applied its change. Every change is logged
//! as made by the operator (`by="operator"`), with the token and application ids.

use serde_json::Value;
use tollgate_store::tokens::{TokenChange, TokenRecord, TokenStatus};
use tollgate_store::{Id, Store, StoreError};

use crate::api::tokens::record_json;
use crate::service::tokens::{self, TokenError};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0:?} is not a token id: ids are 24 hexadecimal characters")]
    BadId(String),
    #[error("there is no API token with the id {0}")]
    NoToken(Id),
    #[error("there is no application with the id {0}")]
    NoApplication(Id),
    /// A rule of the token service refused the change.
    #[error("{}", .0.message)]
    Refused(crate::error::ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TokenError> for AdminError {
    fn from(e: TokenError) -> Self {
        AdminError::Refused(e.into_api())
    }
}

/// Parse an id given on the command line.
pub fn parse_id(s: &str) -> Result<Id, AdminError> {
    s.trim()
        .parse()
        .map_err(|_| AdminError::BadId(s.to_owned()))
}

/// A token as the API shows it (`applicationApiToken.get`), never with its secret.
pub fn token_json(t: &TokenRecord) -> Value {
    record_json(t, t.last_used)
}

/// Every token, or the tokens of one application, ordered by application and name.
pub async fn list_tokens(
    store: &Store,
    application: Option<Id>,
) -> Result<Vec<TokenRecord>, AdminError> {
    if let Some(app) = application {
        match store.application(app).await {
            Ok(_) => {}
            Err(StoreError::NotFound) => return Err(AdminError::NoApplication(app)),
            Err(e) => return Err(e.into()),
        }
    }
    let mut out = Vec::new();
    store.for_each_token(application, |t| out.push(t)).await?;
    Ok(out)
}

/// One token, whatever its application.
pub async fn token(store: &Store, id: Id) -> Result<TokenRecord, AdminError> {
    store.token_by_id(id).await?.ok_or(AdminError::NoToken(id))
}

/// What a deactivation did.
#[derive(Debug)]
pub struct Deactivated {
    pub token: TokenRecord,
    /// False when the token was inactive already (nothing changed but its `lastUpdated`).
    pub changed: bool,
}

/// Deactivate a token: it is refused from the very next request on (and can be activated
/// again through the API or the console). Through the token service
/// ([`tokens::operator_change`]).
pub async fn deactivate_token(store: &Store, id: Id) -> Result<Deactivated, AdminError> {
    let current = token(store, id).await?;
    let change = TokenChange {
        status: Some(TokenStatus::Inactive),
        ..TokenChange::default()
    };
    let done: tokens::OperatorChange =
        tokens::operator_change(store, current.application_id, id, &change)
            .await
            .map_err(|e| not_found_is(e, id))?;
    Ok(Deactivated {
        changed: done.before.status != TokenStatus::Inactive,
        token: done.token,
    })
}

/// Delete a token: it is refused from the very next request on. Returns it as it was.
/// Through the token service ([`tokens::operator_delete`]).
pub async fn delete_token(store: &Store, id: Id) -> Result<TokenRecord, AdminError> {
    let current = token(store, id).await?;
    tokens::operator_delete(store, current.application_id, id)
        .await
        .map_err(|e| not_found_is(e, id))
}

/// The token went away between reading it and changing it: it is not there.
fn not_found_is(e: AdminError, id: Id) -> AdminError {
    match e {
        AdminError::Store(StoreError::NotFound) => AdminError::NoToken(id),
        e => e,
    }
}

/// The summary `tollgate tokens list --json` prints per token.
pub fn list_json(tokens: &[TokenRecord]) -> Value {
    Value::Array(tokens.iter().map(token_json).collect())
}

/// Who created the token, for the table.
pub fn creator_label(t: &TokenRecord) -> String {
    let c = &t.creator;
    match c.kind {
        "user" => format!("user {}", c.name),
        "apiToken" => format!("token {}", c.name),
        other => format!("{other} {}", c.name),
    }
}

/// Deactivate every live token among `presented` (secrets, as a leak report names them) with
/// the reason "reported as leaked": the same service function and store write as
/// `POST /tokens/revoke`, a thousand at a time; logged as the operator's.
pub async fn revoke_leaked(
    store: &Store,
    presented: &[String],
) -> Result<Vec<tollgate_store::lifecycle::Revoked>, AdminError> {
    let mut out = Vec::new();
    for chunk in presented.chunks(crate::service::lifecycle::MAX_REPORTED_TOKENS) {
        let revoked = crate::service::lifecycle::report_leaks(
            store,
            chunk,
            &tollgate_store::Actor::operator(),
        )
        .await
        .map_err(AdminError::Refused)?;
        out.extend(revoked);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(matches!(parse_id("nope"), Err(AdminError::BadId(_))));
        let id = Id::generate();
        assert_eq!(parse_id(&format!(" {id} ")).unwrap(), id);
        assert_eq!(serde_json::json!(id), serde_json::json!(id.to_hex()));
    }
}
