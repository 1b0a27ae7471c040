//! Token lifecycle writes (issue 15): rolling a token with an overlap, and deactivating the
//! tokens named in a leak report. Each is one locked transaction with its change notices, so
//! its audit entries, written in the same transaction, record exactly what was done: the roll
//! on the old token (and the successor's creation), and each leaked token's deactivation by
//! whoever reported it.
//!
//! **Retirement is expiry.** Rolling sets the old token's `retires_at` and, in the same
//! statement, its `expiration_date` to no later than that. Every place that refuses an
//! expired token (the credential cache on every node, the store's check of the acting
//! credential in each write) therefore refuses a retired one from that instant on, with no
//! background job and no further change notice; the roll itself is announced like any token
//! change, so no node keeps the old expiry cached after the roll has been answered.

use serde_json::Value;

use crate::actor::{Actor, Lock};
use crate::audit;
use crate::notify::Change;
use crate::tokens::{
    Creator, NewToken, TOKEN_COLUMNS, TokenRecord, TokenStatus, audit_token, lock_for_change,
    token_from_row,
};
use crate::{Id, Result, Store, StoreError};

/// The reason a leak report gives a token it deactivates.
pub const LEAKED: &str = "reported as leaked";

/// What a roll does, decided by the server's token rules from the old token as it is now
/// (inside the roll's transaction). The new token takes the old one's name, description and
/// scope (and, once tokens have them, its restrictions) from the locked row itself.
#[derive(Clone, Debug)]
pub struct RollPlan {
    /// SHA-256 of the new token's secret.
    pub digest: [u8; 32],
    /// When the new token expires (`None`: never).
    pub expiration_date: Option<i64>,
    /// Who rolls it: the new token's creator.
    pub creator: Creator,
    /// When the old token stops working (milliseconds since the epoch).
    pub retires_at: i64,
}

/// A token as a roll leaves it.
#[derive(Clone, Debug)]
pub struct Rolled {
    /// The new token.
    pub new: TokenRecord,
    /// The old one, with its `retires_at` (and `expiration_date`) set.
    pub old: TokenRecord,
}

/// A token a leak report switched off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revoked {
    pub id: Id,
    pub application_id: Id,
}

impl Store {
    /// Roll token `id` of `application` as `actor`: in one transaction, lock the acting
    /// credential, the application and the old token (as [`Store::update_token`] does), let
    /// `plan` decide from the old token as it is now, insert the new token (`rolledFromId`:
    /// the old one) and set the old token's retirement. Other nodes hear of both tokens.
    pub async fn roll_token<E: From<StoreError>>(
        &self,
        actor: &Actor,
        application: Id,
        id: Id,
        plan: impl FnOnce(&TokenRecord) -> Result<RollPlan, E>,
    ) -> Result<Rolled, E> {
        let mut tx = self.begin_write().await?;
        let current = lock_for_change(&mut tx, actor, application, id).await?;
        let plan = plan(&current)?;
        let new = NewToken {
            application_id: application,
            digest: plan.digest,
            name: &current.name,
            description: &current.description,
            scope: &current.scope,
            status: TokenStatus::Active,
            expiration_date: plan.expiration_date,
            creator: plan.creator,
            // The successor keeps every restriction; its usage limit is what the rolled token
            // had left, carved out of it (so rolling never adds uses).
            restrictions: current.restrictions.as_deref(),
            usage_limit: current.unleased_uses,
            carve_from: current.unleased_uses.map(|_| id),
        };
        let mut new = self.insert_token(&mut tx, actor, &new).await?;
        sqlx::query("UPDATE api_tokens SET rolled_from_id = $2 WHERE id = $1")
            .bind(new.id.to_hex())
            .bind(id.to_hex())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        new.life.rolled_from = Some(id);
        let now = crate::now_ms();
        let retires_at = plan.retires_at.max(now);
        // The row is locked since it was read: a conditional write of these two columns.
        let sql = format!(
            "UPDATE api_tokens SET retires_at = $2, last_updated = $3, \
             expiration_date = CASE WHEN expiration_date IS NULL OR expiration_date > $2 \
             THEN $2 ELSE expiration_date END WHERE id = $1 RETURNING {TOKEN_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_hex())
            .bind(retires_at)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        let old = token_from_row(&row)?;
        // The successor's own entry (`applicationApiTokens.post`) was written by
        // `insert_token`; this one records the roll on the old token.
        let body = audit::fields([
            ("rolledToId", Some(Value::String(new.id.to_hex()))),
            ("retiresAt", Some(audit::iso(retires_at))),
            ("expirationDate", old.expiration_date.map(audit::iso)),
        ]);
        audit_token(&mut tx, actor, "applicationApiToken.roll", 201, &old, body).await?;
        let changes = [
            Change::Token {
                id,
                digest: old.digest,
            },
            Change::Token {
                id: new.id,
                digest: new.digest,
            },
        ];
        self.commit_with(tx, &changes).await?;
        Ok(Rolled { new, old })
    }

    /// Deactivate, with the reason [`LEAKED`], every active and unexpired token whose secret
    /// has one of `digests` (a leak report). One transaction: the tokens are locked in id
    /// order (the order every write that locks several tokens takes them) and switched off
    /// together; every node drops them before this returns, as for a manual deactivation.
    /// Returns the tokens switched off.
    /// `actor` is who reported them ([`Actor::anonymous`] with the client's address, or the
    /// operator): each token gets its audit entry, inside this transaction.
    pub async fn revoke_leaked(&self, actor: &Actor, digests: &[[u8; 32]]) -> Result<Vec<Revoked>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let now = crate::now_ms();
        let mut tx = self.begin_write().await?;
        let placeholders: Vec<String> = (0..digests.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT id, application_id, digest, name FROM api_tokens WHERE status = 'active' \
             AND (expiration_date IS NULL OR expiration_date > $1) AND digest IN ({}) \
             ORDER BY id{}",
            placeholders.join(", "),
            Lock::Update.clause(tx.backend)
        );
        let mut q =
            sqlx::query_as::<_, (String, String, Vec<u8>, String)>(sqlx::AssertSqlSafe(sql))
                .bind(now);
        for d in digests {
            q = q.bind(d.to_vec());
        }
        let rows = q.fetch_all(&mut *tx).await?;
        let mut revoked = Vec::with_capacity(rows.len());
        let mut changes = Vec::with_capacity(rows.len());
        for (id, application, digest, name) in rows {
            sqlx::query(
                "UPDATE api_tokens SET status = 'inactive', deactivation_reason = $2, \
                 last_updated = $3 WHERE id = $1",
            )
            .bind(&id)
            .bind(LEAKED)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let id = crate::ids::from_db(&id)?;
            let digest: [u8; 32] = digest
                .try_into()
                .map_err(|_| StoreError::Corrupt("a token digest is not 32 bytes".into()))?;
            let application_id = crate::ids::from_db(&application)?;
            let entry = audit::Entry {
                place: audit::Place::Application(application_id),
                action: "tokens.revoke",
                status: 202,
                primary: None,
                secondary: Some(audit::Target::new("ApiToken", id, &name)),
                path_params: audit::path(&[("applicationId", application_id), ("apiTokenId", id)]),
                body: audit::fields([
                    ("status", Some(Value::String("inactive".into()))),
                    ("deactivationReason", Some(Value::String(LEAKED.into()))),
                ]),
            };
            audit::record(&mut tx, actor, entry).await?;
            revoked.push(Revoked { id, application_id });
            changes.push(Change::Token { id, digest });
        }
        self.commit_with(tx, &changes).await?;
        Ok(revoked)
    }
}
