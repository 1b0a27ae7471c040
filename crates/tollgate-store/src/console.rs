//! The console's one-time records.
//!
//! * **Form keys.** Each new-token form carries a random key. The token it creates and the
//!   key's record are written in one transaction ([`Store::create_token_once`]); the key is
//!   the record's primary key, so a second submission of the same form (a reload, a double
//!   click, a resent request) fails as a whole and creates nothing.
//! * **Reveals.** After creating a token the console redirects to a page that shows its
//!   secret. The secret waits for that page here, sealed: only `secret XOR pad` is stored,
//!   and the one-time pad is held by the creating browser in a cookie, so neither the
//!   database nor the browser alone holds the secret. Reading the record deletes it
//!   ([`Store::take_reveal`]), so the secret can be shown once.

use sqlx::Row;

use crate::actor::Lock;
use crate::ids::from_db;
use crate::notify::Change;
use crate::tokens::{NewToken, TokenRecord};
use crate::{Actor, Id, Result, Store, StoreError};

/// A used form key: which token it created.
#[derive(Clone, Debug)]
pub struct UsedFormKey {
    pub token_id: Id,
    pub token_name: String,
    pub used_at: i64,
}

/// A sealed secret waiting to be shown.
#[derive(Clone, Debug)]
pub struct NewReveal<'a> {
    pub user_id: Id,
    pub application_id: Id,
    pub token_id: Id,
    pub token_name: &'a str,
    pub sealed: &'a [u8],
    pub expires_at: i64,
}

#[derive(Clone, Debug)]
pub struct Reveal {
    pub application_id: Id,
    pub token_id: Id,
    pub token_name: String,
    pub sealed: Vec<u8>,
    pub expires_at: i64,
}

impl Store {
    /// Create a token and record `form_key` as used by it, in one transaction. A key used
    /// before: `Conflict`, and nothing is created.
    pub async fn create_token_once(
        &self,
        actor: &Actor,
        new: &NewToken<'_>,
        form_key: &str,
        user: Id,
    ) -> Result<TokenRecord> {
        // As [`Store::create_token`]: the application locked, the actor checked, first.
        let mut tx = self
            .begin_in_application(actor, new.application_id, Lock::KeyShare)
            .await?;
        let claimed = sqlx::query(
            "INSERT INTO console_form_keys (form_key, user_id, application_id, token_id, \
             token_name, used_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(form_key)
        .bind(user.to_hex())
        .bind(new.application_id.to_hex())
        .bind("")
        .bind(new.name)
        .bind(crate::now_ms())
        .execute(&mut *tx)
        .await;
        match claimed.map_err(StoreError::from_sqlx) {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => return Err(StoreError::Conflict("this form")),
            Err(e) => return Err(e),
        }
        let record = self.insert_token(&mut tx, actor, new).await?;
        sqlx::query("UPDATE console_form_keys SET token_id = $1 WHERE form_key = $2")
            .bind(record.id.to_hex())
            .bind(form_key)
            .execute(&mut *tx)
            .await?;
        let change = Change::Token {
            id: record.id,
            digest: record.digest,
        };
        self.commit_with(tx, &[change]).await?;
        Ok(record)
    }

    /// What a used form key created (`None`: the key was never used).
    pub async fn used_form_key(&self, form_key: &str, user: Id) -> Result<Option<UsedFormKey>> {
        let row = sqlx::query(
            "SELECT token_id, token_name, used_at FROM console_form_keys \
             WHERE form_key = $1 AND user_id = $2",
        )
        .bind(form_key)
        .bind(user.to_hex())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(UsedFormKey {
                token_id: from_db(&r.try_get::<String, _>("token_id")?)?,
                token_name: r.try_get("token_name")?,
                used_at: r.try_get("used_at")?,
            })
        })
        .transpose()
    }

    /// Keep a sealed secret for the page that shows it once; returns its id.
    pub async fn put_reveal(&self, reveal: &NewReveal<'_>) -> Result<Id> {
        let id = Id::generate();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO console_reveals (id, user_id, application_id, token_id, token_name, \
             sealed, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.to_hex())
        .bind(reveal.user_id.to_hex())
        .bind(reveal.application_id.to_hex())
        .bind(reveal.token_id.to_hex())
        .bind(reveal.token_name)
        .bind(reveal.sealed.to_vec())
        .bind(reveal.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Take (read and delete, at once) the sealed secret `id` of `user`; `None` if it was
    /// taken already or never existed. An expired one is deleted and not returned.
    pub async fn take_reveal(&self, id: Id, user: Id) -> Result<Option<Reveal>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "DELETE FROM console_reveals WHERE id = $1 AND user_id = $2 \
             RETURNING application_id, token_id, token_name, sealed, expires_at",
        )
        .bind(id.to_hex())
        .bind(user.to_hex())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let Some(r) = row else { return Ok(None) };
        let reveal = Reveal {
            application_id: from_db(&r.try_get::<String, _>("application_id")?)?,
            token_id: from_db(&r.try_get::<String, _>("token_id")?)?,
            token_name: r.try_get("token_name")?,
            sealed: r.try_get("sealed")?,
            expires_at: r.try_get("expires_at")?,
        };
        Ok((reveal.expires_at > crate::now_ms()).then_some(reveal))
    }

    /// Remove reveals past their expiry and form keys used before `keys_before`.
    pub async fn purge_console_records(&self, now: i64, keys_before: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let a = sqlx::query("DELETE FROM console_reveals WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let b = sqlx::query("DELETE FROM console_form_keys WHERE used_at < $1")
            .bind(keys_before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(a + b)
    }
}
