//! Token lineage (issue 15, item 6): a token created by a token is its child (the creator is
//! recorded at creation, `creator_type = 'apiToken'`); its descendants are its children,
//! their children, and so on, within its application. Deleting or deactivating a token
//! "with cascade" applies to the whole subtree in one locked transaction, with one audit
//! entry per token and one change notice per token, so every node refuses each of them
//! before the write returns, as after a manual deactivation ([`Store::commit_with`]).
//!
//! A token deleted without cascade leaves its children in place: they keep working and keep
//! naming it as their creator, but they are no longer anyone's descendants (the walk goes
//! through existing tokens only).
//!
//! **Why the cascade locks the application row `FOR UPDATE`.** A child may be minting a
//! grandchild while its ancestor is cascaded. Every token creation locks its application
//! (`FOR KEY SHARE`, see [`crate::actor`]) before it inserts, and holds that lock until it
//! commits. The cascade locks the application `FOR UPDATE` *before* it reads the subtree,
//! so it waits for every creation in flight to commit and then, in a later statement (a new
//! snapshot at READ COMMITTED), sees the tokens they made; a creation that comes later waits
//! for the cascade and then finds its creating token inactive or deleted (its credential
//! check, [`crate::actor::check`]), and writes nothing. Either way no token of the subtree
//! survives. (On SQLite, write transactions take turns, which gives the same order.) The
//! application lock is held for the cascade's own transaction only; waiting for the nodes
//! to drop the tokens happens after the commit.

use serde_json::json;
use sqlx::Row;

use crate::actor::{Actor, Lock};
use crate::audit;
use crate::notify::Change;
use crate::tokens::{
    TOKEN_COLUMNS, TokenChange, TokenRecord, TokenStatus, audit_token, token_from_row,
};
use crate::{Id, Result, Store, StoreError, WriteTx};

/// Deeper than any real chain of tokens minting tokens; the walk stops there (a guard, since
/// a cycle cannot be stored: a creator exists before what it creates).
const MAX_DEPTH: i64 = 10_000;

/// The recursive walk from token `$2` of application `$1`: `sub(id, depth)`, its
/// descendants (depth 1: its children). Written once for every query that needs it.
fn walk() -> String {
    format!(
        "WITH RECURSIVE sub(id, depth) AS ( \
           SELECT id, CAST(1 AS BIGINT) FROM api_tokens \
             WHERE application_id = $1 AND creator_type = 'apiToken' AND creator_id = $2 \
           UNION \
           SELECT t.id, sub.depth + 1 FROM api_tokens t JOIN sub ON t.creator_id = sub.id \
             WHERE t.application_id = $1 AND t.creator_type = 'apiToken' AND sub.depth < {MAX_DEPTH} \
         )"
    )
}

/// A descendant and how far below the token it is (1: a child).
#[derive(Clone, Debug)]
pub struct Descendant {
    pub token: TokenRecord,
    pub depth: i64,
}

/// How many tokens descend from a token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineageCounts {
    /// Tokens it created itself.
    pub children: i64,
    /// Its children, their children, and so on.
    pub descendants: i64,
}

/// What a cascade did.
#[derive(Clone, Debug)]
pub struct Cascaded {
    /// The token the cascade was asked for, as the write left it (for a deletion: as it was).
    pub root: TokenRecord,
    /// Its descendants the cascade changed (deactivated: those that were active; deleted:
    /// all), in id order, as the write left them (for a deletion: as they were).
    pub descendants: Vec<TokenRecord>,
}

/// The reason a cascaded deactivation gives each descendant it switches off.
pub fn cascade_reason(root: Id) -> String {
    format!("deactivated with token {root}, which it descends from (cascade)")
}

impl Store {
    /// The descendants of token `id` of `application`, nearest first (then by creation),
    /// at most `limit`; and how many there are in all.
    pub async fn descendants(
        &self,
        application: Id,
        id: Id,
        limit: i64,
    ) -> Result<(Vec<Descendant>, LineageCounts)> {
        let sql = format!(
            "{} SELECT * FROM (SELECT {TOKEN_COLUMNS}, \
             (SELECT MIN(sub.depth) FROM sub WHERE sub.id = api_tokens.id) AS depth \
             FROM api_tokens WHERE application_id = $1 AND id IN (SELECT id FROM sub)) AS found \
             ORDER BY depth, creation_date, id LIMIT $3",
            walk()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(application.to_hex())
            .bind(id.to_hex())
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await?;
        let items = rows
            .iter()
            .map(|row| {
                Ok(Descendant {
                    token: token_from_row(row)?,
                    depth: row.try_get("depth")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let counts = self.lineage_counts(application, id).await?;
        Ok((items, counts))
    }

    /// The tokens token `id` of `application` created itself, oldest first, at most `limit`.
    pub async fn children(&self, application: Id, id: Id, limit: i64) -> Result<Vec<TokenRecord>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE application_id = $1 \
             AND creator_type = 'apiToken' AND creator_id = $2 ORDER BY creation_date, id LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(application.to_hex())
            .bind(id.to_hex())
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// How many children and descendants token `id` of `application` has.
    pub async fn lineage_counts(&self, application: Id, id: Id) -> Result<LineageCounts> {
        let sql = format!(
            "{} SELECT COUNT(DISTINCT id), COUNT(DISTINCT CASE WHEN depth = 1 THEN id END) FROM sub",
            walk()
        );
        let (descendants, children): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(application.to_hex())
            .bind(id.to_hex())
            .fetch_one(&self.pool)
            .await?;
        Ok(LineageCounts {
            children,
            descendants,
        })
    }

    /// Deactivate token `id` of `application` and every token descending from it, as
    /// `actor`, if `authorize` (the server's token rules, given the token and its
    /// descendants as they are now, all locked) allows. The token itself takes the whole of
    /// `change` (its name and description may change too); each active descendant is
    /// switched off with [`cascade_reason`]. One transaction, one audit entry per token
    /// changed, one change notice per token: every node refuses each of them before this
    /// returns.
    pub async fn cascade_deactivate<E: From<StoreError>>(
        &self,
        actor: &Actor,
        application: Id,
        id: Id,
        change: &TokenChange,
        authorize: impl FnOnce(&TokenRecord, &[TokenRecord]) -> Result<(), E>,
    ) -> Result<Cascaded, E> {
        if change.status != Some(TokenStatus::Inactive) {
            return Err(StoreError::Corrupt("a cascade only deactivates".into()).into());
        }
        let mut tx = self.begin_write().await?;
        let (mut root, subtree) = lock_subtree(&mut tx, actor, application, id).await?;
        authorize(&root, &subtree)?;
        let now = crate::now_ms();
        if let Some(n) = &change.name {
            root.name = n.clone();
        }
        if let Some(d) = &change.description {
            root.description = d.clone();
        }
        root.status = TokenStatus::Inactive;
        root.last_updated = now;
        // Every row written here has been locked since it was read.
        sqlx::query(
            "UPDATE api_tokens SET name = $2, description = $3, status = 'inactive', \
             last_updated = $4 WHERE id = $1",
        )
        .bind(id.to_hex())
        .bind(&root.name)
        .bind(&root.description)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        let body = audit::fields([
            ("name", change.name.as_ref().map(|n| json!(n))),
            ("description", change.description.as_ref().map(|d| json!(d))),
            ("status", Some(json!("inactive"))),
            ("cascade", Some(json!(true))),
        ]);
        audit_token(
            &mut tx,
            actor,
            "applicationApiToken.patch",
            200,
            &root,
            body,
        )
        .await?;
        let mut changes = vec![Change::Token {
            id,
            digest: root.digest,
        }];
        let reason = cascade_reason(id);
        let mut changed = Vec::new();
        for mut t in subtree {
            if t.status != TokenStatus::Active {
                continue;
            }
            sqlx::query(
                "UPDATE api_tokens SET status = 'inactive', deactivation_reason = $2, \
                 last_updated = $3 WHERE id = $1",
            )
            .bind(t.id.to_hex())
            .bind(&reason)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            t.status = TokenStatus::Inactive;
            t.last_updated = now;
            t.life.deactivation_reason = Some(reason.clone());
            let body = json!({ "status": "inactive", "cascadeFrom": id.to_hex() });
            audit_token(&mut tx, actor, "applicationApiToken.patch", 200, &t, body).await?;
            changes.push(Change::Token {
                id: t.id,
                digest: t.digest,
            });
            changed.push(t);
        }
        self.commit_with(tx, &changes).await?;
        Ok(Cascaded {
            root,
            descendants: changed,
        })
    }

    /// Delete token `id` of `application` and every token descending from it, as `actor`,
    /// if `authorize` (given the token and its descendants as they are now, all locked)
    /// allows. One transaction, one audit entry per token (recorded before the rows go, so a
    /// token deleting itself is still named as the actor), one change notice per token.
    pub async fn cascade_delete<E: From<StoreError>>(
        &self,
        actor: &Actor,
        application: Id,
        id: Id,
        authorize: impl FnOnce(&TokenRecord, &[TokenRecord]) -> Result<(), E>,
    ) -> Result<Cascaded, E> {
        let mut tx = self.begin_write().await?;
        let (root, subtree) = lock_subtree(&mut tx, actor, application, id).await?;
        authorize(&root, &subtree)?;
        audit_token(
            &mut tx,
            actor,
            "applicationApiToken.delete",
            200,
            &root,
            json!({ "cascade": true }),
        )
        .await?;
        for t in &subtree {
            let body = json!({ "cascadeFrom": id.to_hex() });
            audit_token(&mut tx, actor, "applicationApiToken.delete", 200, t, body).await?;
        }
        let mut changes = Vec::with_capacity(subtree.len() + 1);
        for t in std::iter::once(&root).chain(&subtree) {
            sqlx::query("DELETE FROM api_tokens WHERE id = $1")
                .bind(t.id.to_hex())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            changes.push(Change::Token {
                id: t.id,
                digest: t.digest,
            });
        }
        self.commit_with(tx, &changes).await?;
        Ok(Cascaded {
            root,
            descendants: subtree,
        })
    }
}

/// Lock, inside `tx`, what a cascade from token `root` of `application` by `actor` changes,
/// and check `actor`: the application `FOR UPDATE` first (see the module's note: no token
/// of the application can be created until this transaction ends), with the acting
/// credential; then the token and all its descendants `FOR UPDATE`, in id order. Returns
/// the token and its descendants (id order).
async fn lock_subtree(
    tx: &mut WriteTx,
    actor: &Actor,
    application: Id,
    root: Id,
) -> Result<(TokenRecord, Vec<TokenRecord>)> {
    crate::check_in_application(tx, actor, application, Lock::Update).await?;
    let sql = format!(
        "{} SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE application_id = $1 \
         AND (id = $2 OR id IN (SELECT id FROM sub)) ORDER BY id{}",
        walk(),
        Lock::Update.clause(tx.backend)
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(application.to_hex())
        .bind(root.to_hex())
        .fetch_all(&mut **tx)
        .await?;
    let mut found = None;
    let mut subtree = Vec::with_capacity(rows.len());
    for row in &rows {
        let t = token_from_row(row)?;
        if t.id == root {
            found = Some(t);
        } else {
            subtree.push(t);
        }
    }
    let found = found.ok_or(StoreError::NotFound)?;
    Ok((found, subtree))
}
