//! Token lineage (issue 15, item 6): a token created by a token is its child; deleting or
//! deactivating a token "with cascade" applies to it and every token descending from it.
//!
//! The authority rule holds for the whole subtree: one may cascade from a token only if one
//! could have created *every* token in it (each within one's scope, restrictions and
//! expiry, as `service::tokens::check_existing` decides for a single token). The rules run
//! inside the store's write transaction against the locked rows
//! ([`tollgate_store::Store::cascade_deactivate`], [`tollgate_store::Store::cascade_delete`]),
//! so a token minted into the subtree meanwhile is judged too, or cannot be minted. A
//! refusal names the first token at fault and changes nothing.
//!
//! Without cascade, a token's children keep working when it is deleted or deactivated
//! (`service::tokens::delete`, `change`), and its detail says so ([`lineage_json`]).

use serde_json::{Value, json};
use tollgate_store::lineage::{Cascaded, LineageCounts};
use tollgate_store::tokens::{TokenChange, TokenRecord, TokenStatus};
use tollgate_store::{Id, StoreError};

use crate::auth::AppAccess;
use crate::error::ApiError;
use crate::service::tokens::{Authority, Request, TokenError, check_existing};
use crate::state::AppState;

/// The most descendants `applicationApiToken.descendants` lists in one answer (its
/// `totalCount` counts them all).
pub const MAX_LISTED_DESCENDANTS: i64 = 1_000;

/// The token that created `t`, if a token did.
pub fn parent_of(t: &TokenRecord) -> Option<Id> {
    (t.creator.kind == "apiToken").then_some(t.creator.id)
}

/// The refusal of a cascade because of `t`, a descendant of the token asked for.
fn in_subtree(t: &TokenRecord, e: TokenError) -> TokenError {
    let mut api = e.into_api();
    let inner = api.message.to_string();
    api.message = format!(
        "Cascade refused, nothing was changed: the token \"{}\" ({}) descends from this one and is beyond your authority. {inner}",
        t.name, t.id
    )
    .into();
    TokenError::Other(api)
}

/// Each token of the subtree (the root first) passes the rules for `request`.
fn check_subtree(
    authority: &Authority,
    root: &TokenRecord,
    descendants: &[TokenRecord],
    root_request: Request<'_>,
    each_request: Request<'_>,
) -> Result<(), TokenError> {
    check_existing(authority, root, root_request)?;
    for d in descendants {
        check_existing(authority, d, each_request).map_err(|e| in_subtree(d, e))?;
    }
    Ok(())
}

/// Deactivate token `token_id` and every token descending from it (`PATCH …?cascade=true`
/// with `status: inactive`; the token itself may be renamed in the same change).
pub async fn cascade_change(
    state: &AppState,
    access: &AppAccess,
    token_id: Id,
    change: &TokenChange,
) -> Result<Cascaded, TokenError> {
    if change.status != Some(TokenStatus::Inactive) {
        return Err(ApiError::validation(
            "cascade=true applies to a deactivation (status: inactive) or a deletion only: \
             reactivate tokens one by one",
        )
        .into());
    }
    crate::service::tokens::check_change(change)?;
    let authority = Authority::of(access);
    let each = TokenChange {
        status: Some(TokenStatus::Inactive),
        ..TokenChange::default()
    };
    let done = state
        .store()
        .cascade_deactivate(
            &access.actor(),
            access.application(),
            token_id,
            change,
            |root, descendants| {
                check_subtree(
                    &authority,
                    root,
                    descendants,
                    Request::Change(change),
                    Request::Change(&each),
                )
            },
        )
        .await?;
    tracing::info!(
        token = %token_id,
        descendants = done.descendants.len(),
        "API token deactivated with its descendants"
    );
    Ok(done)
}

/// Delete token `token_id` and every token descending from it (`DELETE …?cascade=true`).
pub async fn cascade_delete(
    state: &AppState,
    access: &AppAccess,
    token_id: Id,
) -> Result<Cascaded, TokenError> {
    let authority = Authority::of(access);
    let done = state
        .store()
        .cascade_delete(
            &access.actor(),
            access.application(),
            token_id,
            |root, descendants| {
                check_subtree(
                    &authority,
                    root,
                    descendants,
                    Request::Delete,
                    Request::Delete,
                )
            },
        )
        .await?;
    tracing::info!(
        token = %token_id,
        descendants = done.descendants.len(),
        "API token deleted with its descendants"
    );
    Ok(done)
}

/// What a token's detail says about its lineage: its parent (and whether that token still
/// exists), how many tokens descend from it, and what happens to them without cascade.
pub async fn lineage_json(state: &AppState, t: &TokenRecord) -> Result<Value, ApiError> {
    let store = state.store();
    let counts: LineageCounts = store
        .lineage_counts(t.application_id, t.id)
        .await
        .map_err(|e| ApiError::from_store(e, "API token"))?;
    let mut v = json!({
        "childCount": counts.children,
        "descendantCount": counts.descendants,
        "descendantsWithoutCascade": "keepWorking",
        "note": note(counts),
    });
    if let Some(parent) = parent_of(t) {
        let exists = match store.token(t.application_id, parent).await {
            Ok(_) => true,
            Err(StoreError::NotFound) => false,
            Err(e) => return Err(ApiError::from_store(e, "API token")),
        };
        v["parentApiTokenId"] = json!(parent);
        v["parentExists"] = json!(exists);
    }
    Ok(v)
}

/// "2 tokens were created by this token (3 descend from it in all): they keep working if it
/// is deleted or deactivated without cascade=true".
pub fn note(counts: LineageCounts) -> String {
    if counts.descendants == 0 {
        return "No token was created by this token.".to_owned();
    }
    let n = counts.children;
    let mut s = format!(
        "{n} token{} {} created by this token",
        if n == 1 { "" } else { "s" },
        if n == 1 { "was" } else { "were" }
    );
    if counts.descendants > n {
        s.push_str(&format!(" ({} descend from it in all)", counts.descendants));
    }
    s.push_str(
        ": they keep working if it is deleted or deactivated without cascade=true; \
         with cascade=true they are deleted or deactivated with it.",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_counts_children_and_says_they_keep_working() {
        assert_eq!(
            note(LineageCounts::default()),
            "No token was created by this token."
        );
        let one = note(LineageCounts {
            children: 1,
            descendants: 1,
        });
        assert!(one.starts_with("1 token was created by this token: they keep working"));
        let many = note(LineageCounts {
            children: 2,
            descendants: 5,
        });
        assert!(
            many.starts_with("2 tokens were created by this token (5 descend from it in all)"),
            "{many}"
        );
    }
}
