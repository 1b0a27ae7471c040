//! Application API tokens. Only the SHA-256 digest of a token's secret is stored.

use sqlx::Row;
use sqlx::any::AnyRow;

use serde_json::{Value, json};

use crate::actor::{Actor, Credential, Lock, Revoked};
use crate::audit::{self, Entry, Place, Target};
use crate::ids::from_db;
use crate::list::{Fields, ListSpec, Page, Sort, glob_to_like, page_sql};
use crate::notify::{Change, Part};
use crate::{Id, Result, Store, StoreError, WriteTx};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenStatus {
    Active,
    Inactive,
}

impl TokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Active => "active",
            TokenStatus::Inactive => "inactive",
        }
    }

    pub fn parse(s: &str) -> Option<TokenStatus> {
        match s {
            "active" => Some(TokenStatus::Active),
            "inactive" => Some(TokenStatus::Inactive),
            _ => None,
        }
    }
}

/// Who created a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creator {
    /// `user`, `apiToken` or `flow`.
    pub kind: &'static str,
    pub id: Id,
    /// The user's email or the token's name, as it was at creation.
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct TokenRecord {
    pub id: Id,
    /// SHA-256 of the secret: what the credential cache is keyed by. Never shown.
    pub digest: [u8; 32],
    pub application_id: Id,
    pub name: String,
    pub description: String,
    pub scope: Vec<String>,
    pub status: TokenStatus,
    pub expiration_date: Option<i64>,
    pub creator: Creator,
    pub creation_date: i64,
    pub last_updated: i64,
    pub last_used: Option<i64>,
    /// The restrictions as stored (a JSON object; `None`: none), fixed at creation.
    pub restrictions: Option<String>,
    /// With a usage limit: uses not yet leased to a node or carved out for a child.
    pub unleased_uses: Option<i64>,
    /// Lifecycle (see [`crate::lifecycle`]): when a rolled token stops working, the token it
    /// was rolled from, why it was switched off.
    pub life: Lifecycle,
}

/// What [`crate::lifecycle`] records about a token beyond the Losant fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lifecycle {
    /// A rolled token stops working at this time (its `expiration_date` is no later).
    pub retires_at: Option<i64>,
    /// The token this one was rolled from.
    pub rolled_from: Option<Id>,
    /// Why the token was switched off, when something other than a plain PATCH did it.
    pub deactivation_reason: Option<String>,
    /// When the token was last switched on again after being inactive (idleness counts
    /// from the latest of creation, last use and this).
    pub activated_at: Option<i64>,
}

/// What verifying a token needs, and nothing more (the credential cache holds one per token,
/// so it is kept small).
#[derive(Clone, Debug)]
pub struct TokenKey {
    pub id: Id,
    pub application_id: Id,
    /// The stored scope, as its JSON text: equal scopes share one parsed form in the cache.
    pub scope_json: String,
    pub status: TokenStatus,
    pub expiration_date: Option<i64>,
    pub last_used: Option<i64>,
    /// The stored restrictions' JSON text (`None`: none), compiled when the token is cached.
    pub restrictions_json: Option<String>,
}

const KEY_COLUMNS: &str =
    "id, application_id, scope, status, expiration_date, last_used, restrictions";

fn key_from_row(row: &AnyRow) -> Result<TokenKey> {
    // Borrowed reads: a preload decodes a million of these.
    let status: &str = row.try_get("status")?;
    Ok(TokenKey {
        id: from_db(row.try_get::<&str, _>("id")?)?,
        application_id: from_db(row.try_get::<&str, _>("application_id")?)?,
        scope_json: row.try_get("scope")?,
        status: TokenStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("bad status {status:?}")))?,
        expiration_date: row.try_get("expiration_date")?,
        last_used: row.try_get("last_used")?,
        restrictions_json: row.try_get("restrictions")?,
    })
}

#[derive(Clone, Debug)]
pub struct NewToken<'a> {
    pub application_id: Id,
    pub digest: [u8; 32],
    pub name: &'a str,
    pub description: &'a str,
    pub scope: &'a [String],
    pub status: TokenStatus,
    pub expiration_date: Option<i64>,
    pub creator: Creator,
    /// Restrictions as a JSON object (`None`: none).
    pub restrictions: Option<&'a str>,
    /// Its usage limit, if it has one (also in `restrictions`): counted in `token_quotas`.
    pub usage_limit: Option<i64>,
    /// The creating token whose remaining uses the usage limit is carved out of, if the
    /// creator has a usage limit itself.
    pub carve_from: Option<Id>,
}

/// What a PATCH may change: nothing else about a token is mutable.
#[derive(Clone, Debug, Default)]
pub struct TokenChange {
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: Option<TokenStatus>,
}

pub const TOKEN_FIELDS: Fields = Fields {
    sortable: &[
        ("name", Sort::Text("name")),
        ("status", Sort::Text("status")),
        ("id", Sort::Number("id")),
        ("creationDate", Sort::Number("creation_date")),
        ("lastUpdated", Sort::Number("last_updated")),
        ("expirationDate", Sort::NumberOrNever("expiration_date")),
    ],
    filterable: &[("name", "name"), ("status", "status")],
    default_sort: "name",
};

pub(crate) const TOKEN_COLUMNS: &str = "id, digest, application_id, name, description, scope, status, \
    expiration_date, creator_type, creator_id, creator_name, creation_date, last_updated, last_used, \
    retires_at, rolled_from_id, deactivation_reason, activated_at, restrictions, \
    (SELECT q.quota - q.leased FROM token_quotas q WHERE q.token_id = api_tokens.id) AS unleased";

fn creator_kind(s: &str) -> Result<&'static str> {
    ["user", "apiToken", "flow"]
        .into_iter()
        .find(|k| *k == s)
        .ok_or_else(|| StoreError::Corrupt(format!("bad creator type {s:?}")))
}

fn digest_from_row(row: &AnyRow) -> Result<[u8; 32]> {
    let digest: Vec<u8> = row.try_get("digest")?;
    digest
        .try_into()
        .map_err(|_| StoreError::Corrupt("a token digest is not 32 bytes".into()))
}

pub(crate) fn token_from_row(row: &AnyRow) -> Result<TokenRecord> {
    let status: String = row.try_get("status")?;
    Ok(TokenRecord {
        id: from_db(&row.try_get::<String, _>("id")?)?,
        digest: digest_from_row(row)?,
        application_id: from_db(&row.try_get::<String, _>("application_id")?)?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        scope: serde_json::from_str(&row.try_get::<String, _>("scope")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        status: TokenStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("bad status {status:?}")))?,
        expiration_date: row.try_get("expiration_date")?,
        creator: Creator {
            kind: creator_kind(&row.try_get::<String, _>("creator_type")?)?,
            id: from_db(&row.try_get::<String, _>("creator_id")?)?,
            name: row.try_get("creator_name")?,
        },
        creation_date: row.try_get("creation_date")?,
        last_updated: row.try_get("last_updated")?,
        last_used: row.try_get("last_used")?,
        restrictions: row.try_get("restrictions")?,
        unleased_uses: row.try_get("unleased")?,
        life: Lifecycle {
            retires_at: row.try_get("retires_at")?,
            rolled_from: row
                .try_get::<Option<String>, _>("rolled_from_id")?
                .map(|s| from_db(&s))
                .transpose()?,
            deactivation_reason: row.try_get("deactivation_reason")?,
            activated_at: row.try_get("activated_at")?,
        },
    })
}

impl Store {
    /// Store a new token created by `actor`; other nodes hear of it.
    pub async fn create_token(&self, actor: &Actor, new: &NewToken<'_>) -> Result<TokenRecord> {
        // The application row stays locked until commit: it cannot be deleted under the insert.
        let mut tx = self
            .begin_in_application(actor, new.application_id, Lock::KeyShare)
            .await?;
        let record = self.insert_token(&mut tx, actor, new).await?;
        let change = Change::Token {
            id: record.id,
            digest: record.digest,
        };
        self.commit_with(tx, &[change]).await?;
        Ok(record)
    }

    /// The token's row, inside `tx`, which has locked the application and checked the actor
    /// ([`Store::begin_in_application`]), with its audit entry; the caller commits, announcing
    /// the change.
    pub(crate) async fn insert_token(
        &self,
        tx: &mut crate::WriteTx,
        actor: &Actor,
        new: &NewToken<'_>,
    ) -> Result<TokenRecord> {
        let now = crate::now_ms();
        let record = TokenRecord {
            id: Id::generate(),
            digest: new.digest,
            application_id: new.application_id,
            name: new.name.to_owned(),
            description: new.description.to_owned(),
            scope: new.scope.to_vec(),
            status: new.status,
            expiration_date: new.expiration_date,
            creator: new.creator.clone(),
            creation_date: now,
            last_updated: now,
            last_used: None,
            restrictions: new.restrictions.map(str::to_owned),
            unleased_uses: new.usage_limit,
            life: Lifecycle::default(),
        };
        if let (Some(uses), Some(parent)) = (new.usage_limit, new.carve_from) {
            // Carved out of the creator's uses not yet handed out, or refused: one statement.
            let carved = sqlx::query(
                "UPDATE token_quotas SET leased = leased + $2 \
                 WHERE token_id = $1 AND quota - leased >= $2",
            )
            .bind(parent.to_hex())
            .bind(uses)
            .execute(&mut **tx)
            .await?;
            if carved.rows_affected() == 0 {
                let remaining: Option<i64> = sqlx::query_scalar(
                    "SELECT quota - leased FROM token_quotas WHERE token_id = $1",
                )
                .bind(parent.to_hex())
                .fetch_optional(&mut **tx)
                .await?;
                return Err(StoreError::QuotaExceeded {
                    remaining: remaining.unwrap_or(0),
                });
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO api_tokens (id, application_id, digest, name, description, scope, status, \
             expiration_date, creator_type, creator_id, creator_name, creation_date, last_updated, \
             restrictions) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(record.id.to_hex())
        .bind(new.application_id.to_hex())
        .bind(new.digest.to_vec())
        .bind(new.name)
        .bind(new.description)
        .bind(serde_json::to_string(new.scope).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        .bind(new.status.as_str())
        .bind(new.expiration_date)
        .bind(new.creator.kind)
        .bind(new.creator.id.to_hex())
        .bind(&new.creator.name)
        .bind(now)
        .bind(now)
        .bind(new.restrictions)
        .execute(&mut **tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        if let Some(uses) = new.usage_limit {
            sqlx::query("INSERT INTO token_quotas (token_id, quota) VALUES ($1, $2)")
                .bind(record.id.to_hex())
                .bind(uses)
                .execute(&mut **tx)
                .await?;
        }
        let body = audit::fields([
            ("name", Some(json!(new.name))),
            ("description", Some(json!(new.description))),
            ("scope", Some(json!(new.scope))),
            ("status", Some(json!(new.status.as_str()))),
            ("expirationDate", new.expiration_date.map(audit::iso)),
        ]);
        audit_token(tx, actor, "applicationApiTokens.post", 201, &record, body).await?;
        Ok(record)
    }

    /// A token of `application`; a token of another application is `NotFound`.
    pub async fn token(&self, application: Id, id: Id) -> Result<TokenRecord> {
        let sql =
            format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1 AND application_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_hex())
            .bind(application.to_hex())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        token_from_row(&row)
    }

    /// Call `f` with the digest and key of every stored token, streaming (for preloading the
    /// credential cache; a million tokens do not have to fit in one result set).
    pub async fn for_each_token_key(&self, mut f: impl FnMut([u8; 32], TokenKey)) -> Result<()> {
        use futures_util::TryStreamExt;
        let sql = format!("SELECT digest, {KEY_COLUMNS} FROM api_tokens");
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            f(digest_from_row(&row)?, key_from_row(&row)?);
        }
        Ok(())
    }

    /// A token by id, whatever its application (for cache refreshes).
    pub async fn token_by_id(&self, id: Id) -> Result<Option<TokenRecord>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_hex())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Every token, or every token of `application`, ordered by application, then name (the
    /// operator's `tollgate tokens list`), streamed to `f` so a million tokens need not fit
    /// in memory at once.
    pub async fn for_each_token(
        &self,
        application: Option<Id>,
        mut f: impl FnMut(TokenRecord),
    ) -> Result<()> {
        use futures_util::TryStreamExt;
        let filter = if application.is_some() {
            " WHERE application_id = $1"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens{filter} ORDER BY application_id, name, id"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(app) = application {
            q = q.bind(app.to_hex());
        }
        let mut rows = q.fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            f(token_from_row(&row)?);
        }
        Ok(())
    }

    /// The key of the token whose secret has this digest.
    pub async fn token_by_digest(&self, digest: &[u8; 32]) -> Result<Option<TokenKey>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_tokens WHERE digest = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(digest.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    pub async fn list_tokens(&self, application: Id, spec: &ListSpec) -> Result<Page<TokenRecord>> {
        self.list_tokens_where(application, None, spec).await
    }

    /// [`Store::list_tokens`], narrowed by `extra`, an SQL condition written by this crate
    /// (the posture categories), never input.
    pub(crate) async fn list_tokens_where(
        &self,
        application: Id,
        extra: Option<&str>,
        spec: &ListSpec,
    ) -> Result<Page<TokenRecord>> {
        let cond = match extra {
            Some(c) => format!(" FROM api_tokens WHERE application_id = $1 AND ({c})"),
            None => " FROM api_tokens WHERE application_id = $1".to_owned(),
        };
        let (list, count) = page_sql(
            self.backend,
            &format!("SELECT {TOKEN_COLUMNS}{cond}"),
            &format!("SELECT COUNT(*){cond}"),
            1,
            spec,
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(list)).bind(application.to_hex());
        let mut c = sqlx::query_scalar(sqlx::AssertSqlSafe(count)).bind(application.to_hex());
        if let Some(f) = &spec.filter {
            q = q.bind(glob_to_like(&f.glob));
            c = c.bind(glob_to_like(&f.glob));
        }
        let rows = q.fetch_all(&self.pool).await?;
        let total: i64 = c.fetch_one(&self.pool).await?;
        Ok(Page {
            items: rows.iter().map(token_from_row).collect::<Result<_>>()?,
            total,
        })
    }

    /// Change a token's name, description or status, as `actor`, if `authorize` (the
    /// server's token rules, given the token as it is now) allows; other nodes hear of it.
    ///
    /// One locked transaction: the token is read `FOR UPDATE`, so no other change of it can
    /// commit between the read the rules and the merge see and the write (at READ COMMITTED a
    /// plain read-then-write would let a concurrent rename write back an old status). A
    /// deactivation holding this lock also waits for writes the token is doing (see
    /// [`crate::actor`]).
    pub async fn update_token<E: From<StoreError>>(
        &self,
        actor: &Actor,
        application: Id,
        id: Id,
        change: &TokenChange,
        authorize: impl FnOnce(&TokenRecord) -> Result<(), E>,
    ) -> Result<TokenRecord, E> {
        let mut tx = self.begin_write().await?;
        let current = lock_for_change(&mut tx, actor, application, id).await?;
        authorize(&current)?;
        let current_status = current.status;
        let mut record = current;
        if let Some(n) = &change.name {
            record.name = n.clone();
        }
        if let Some(d) = &change.description {
            record.description = d.clone();
        }
        if let Some(s) = change.status {
            record.status = s;
        }
        record.last_updated = crate::now_ms();
        // Writing the merged fields back is safe only because the row has been locked since
        // it was read.
        if record.status == TokenStatus::Active {
            record.life.deactivation_reason = None;
            if current_status == TokenStatus::Inactive {
                record.life.activated_at = Some(record.last_updated);
            }
        }
        sqlx::query(
            "UPDATE api_tokens SET name = $2, description = $3, status = $4, last_updated = $5, \
             deactivation_reason = CASE WHEN $4 = 'active' THEN NULL ELSE deactivation_reason END, \
             activated_at = CASE WHEN $4 = 'active' AND status <> 'active' THEN $5 ELSE activated_at END \
             WHERE id = $1",
        )
        .bind(id.to_hex())
        .bind(&record.name)
        .bind(&record.description)
        .bind(record.status.as_str())
        .bind(record.last_updated)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        let body = audit::fields([
            ("name", change.name.as_ref().map(|n| json!(n))),
            ("description", change.description.as_ref().map(|d| json!(d))),
            ("status", change.status.map(|s| json!(s.as_str()))),
        ]);
        audit_token(
            &mut tx,
            actor,
            "applicationApiToken.patch",
            200,
            &record,
            body,
        )
        .await?;
        let change = Change::Token {
            id,
            digest: record.digest,
        };
        self.commit_with(tx, &[change]).await?;
        Ok(record)
    }

    /// Delete a token, as `actor`, if `authorize` (given the token as it is now) allows; other
    /// nodes hear of it. Deleting the row waits for writes the token is doing, as a
    /// deactivation does.
    pub async fn delete_token<E: From<StoreError>>(
        &self,
        actor: &Actor,
        application: Id,
        id: Id,
        authorize: impl FnOnce(&TokenRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut tx = self.begin_write().await?;
        let current = lock_for_change(&mut tx, actor, application, id).await?;
        authorize(&current)?;
        // Recorded first: a token deleting itself is still named as the actor.
        let body = json!({});
        audit_token(
            &mut tx,
            actor,
            "applicationApiToken.delete",
            200,
            &current,
            body,
        )
        .await?;
        sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(id.to_hex())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        let change = Change::Token {
            id,
            digest: current.digest,
        };
        Ok(self.commit_with(tx, &[change]).await?)
    }

    /// Record when tokens were last used, in one transaction. Never moves a time backwards
    /// (several nodes flush their own observations).
    pub async fn record_last_used(&self, uses: &[(Id, i64)]) -> Result<()> {
        self.record_last_used_unless(uses, || false).await
    }

    /// [`Store::record_last_used`], by a node whose cached token answers may already show
    /// these times: once committed, `shown_here` says whether they do (it holds them in
    /// memory). If so the change is announced to the other nodes, whose answers go, but not
    /// applied on this one. (On PostgreSQL this node's listener hears the notice too, and
    /// drops them then.)
    pub async fn record_last_used_unless(
        &self,
        uses: &[(Id, i64)],
        shown_here: impl FnOnce() -> bool,
    ) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        // Rows in id order, as every write that locks several tokens takes them.
        let mut uses = uses.to_vec();
        uses.sort_unstable_by_key(|(id, _)| *id);
        let mut tx = self.begin_write().await?;
        for (id, at) in &uses {
            sqlx::query(
                "UPDATE api_tokens SET last_used = $2 WHERE id = $1 \
                 AND (last_used IS NULL OR last_used < $2)",
            )
            .bind(id.to_hex())
            .bind(*at)
            .execute(&mut *tx)
            .await?;
        }
        // Token reads show the last-used time (and the posture counts it): cached ones go.
        let change = Change::Reads {
            application: None,
            part: Part::Tokens,
        };
        crate::notify::send(self.backend(), &mut tx, &change).await?;
        tx.commit().await?;
        if !shown_here() {
            self.applied(std::slice::from_ref(&change));
        }
        // (Read answers are nobody's to wait for: there is nothing to propagate.)
        Ok(())
    }

    /// Lease up to `want` uses of a token's usage limit for this node: one statement, which
    /// never hands out more than the quota whatever the number of nodes leasing at once.
    /// Returns the uses granted (0: the limit is reached) and how many remain unleased
    /// afterwards; `None` if the token has no usage limit (or no longer exists).
    pub async fn lease_uses(&self, token: Id, want: i64) -> Result<Option<(i64, i64)>> {
        let row = sqlx::query(
            "UPDATE token_quotas SET \
               leased = CASE WHEN quota - leased < $2 THEN quota ELSE leased + $2 END, \
               last_grant = CASE WHEN quota - leased < $2 THEN quota - leased ELSE $2 END \
             WHERE token_id = $1 RETURNING last_grant, quota - leased AS remaining",
        )
        .bind(token.to_hex())
        .bind(want.max(0))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("last_grant")?, r.try_get("remaining")?)))
            .transpose()
    }

    /// Uses of a token's usage limit not yet leased to a node or carved out for a child
    /// (`None`: no usage limit).
    pub async fn unleased_uses(&self, token: Id) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT quota - leased FROM token_quotas WHERE token_id = $1")
                .bind(token.to_hex())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// How many tokens an application has (for summaries).
    pub async fn count_tokens(&self, application: Id) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens WHERE application_id = $1")
                .bind(application.to_hex())
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

/// The audit entry of a change of `token`, inside the change's transaction.
pub(crate) async fn audit_token(
    tx: &mut WriteTx,
    actor: &Actor,
    action: &'static str,
    status: u16,
    token: &TokenRecord,
    body: Value,
) -> Result<()> {
    let mut params = vec![("applicationId", token.application_id)];
    if action != "applicationApiTokens.post" {
        params.push(("apiTokenId", token.id));
    }
    let entry = Entry {
        place: Place::Application(token.application_id),
        action,
        status,
        primary: None,
        secondary: Some(Target::new("ApiToken", token.id, &token.name)),
        path_params: audit::path(&params),
        body,
    };
    audit::record(tx, actor, entry).await
}

/// Lock the token `target` of `application` for a change by `actor`, and check `actor` (see
/// [`crate::actor`]): the application first, then the acting token and the target together,
/// both `FOR UPDATE` in id order (two tokens changing each other at once must not each hold
/// one row and wait for the other). Returns the target as it is now.
pub(crate) async fn lock_for_change(
    tx: &mut WriteTx,
    actor: &Actor,
    application: Id,
    target: Id,
) -> Result<TokenRecord> {
    let lock = Lock::Update.clause(tx.backend);
    let acting = match actor.credential() {
        Credential::ApiToken { id, application: a } => {
            if *a != application {
                return Err(StoreError::Revoked(Revoked::TokenDeleted));
            }
            let found = crate::actor::lock_application(tx, application, Lock::KeyShare).await;
            if let Err(StoreError::NotFound) = found {
                return Err(StoreError::Revoked(Revoked::TokenDeleted));
            }
            found?;
            Some(*id)
        }
        _ => {
            crate::actor::check(tx, actor, Lock::KeyShare).await?;
            crate::actor::lock_application(tx, application, Lock::KeyShare).await?;
            None
        }
    };
    let sql = format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE application_id = $1 AND id IN ($2, $3) \
         ORDER BY id{lock}"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(application.to_hex())
        .bind(target.to_hex())
        .bind(acting.unwrap_or(target).to_hex())
        .fetch_all(&mut **tx)
        .await?;
    let mut found = None;
    let mut acting_ok = acting.is_none();
    for row in &rows {
        let record = token_from_row(row)?;
        if Some(record.id) == acting {
            if record.status != TokenStatus::Active {
                return Err(StoreError::Revoked(Revoked::TokenInactive));
            }
            if record.expiration_date.is_some_and(|e| e <= crate::now_ms()) {
                return Err(StoreError::Revoked(Revoked::TokenExpired));
            }
            acting_ok = true;
        }
        if record.id == target {
            found = Some(record);
        }
    }
    if !acting_ok {
        return Err(StoreError::Revoked(Revoked::TokenDeleted));
    }
    found.ok_or(StoreError::NotFound)
}
