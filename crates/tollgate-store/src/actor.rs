//! Who performs a write, and the check every write makes of that credential inside its own
//! transaction.
//!
//! A request is authorized from the credential caches, and its database work may start much
//! later (a slow pool, a stalled node). So every write a request performs carries an
//! [`Actor`] and re-checks, in the same transaction as the change, that the credential still
//! holds: the token row exists, is active, unexpired and in that application; the session row
//! exists and is unexpired. On PostgreSQL the check locks the credential's row (`FOR KEY
//! SHARE`) and every revocation locks it `FOR UPDATE` (deletion locks it anyway), so the two
//! serialize: either the revocation waits until the write has committed, or the write's check
//! sees the revocation and nothing is written. On SQLite write transactions take turns (see
//! `Store::begin_write`), which gives the same order. Hence: no write authorized by a
//! credential commits after its revocation has committed.
//!
//! Lock order, the same in every write so that two writes never wait for each other in a
//! circle: a credential's parents before the credential (the application before its token, the
//! user before their session), the credential before what the write changes, and rows of one
//! table in id order.

use std::fmt;

use crate::{Backend, Id, Result, StoreError, WriteTx};

/// Who performs a write. Built by the server's capabilities from the verified credential;
/// the operator's commands (`tollgate …` at the command line) act as [`Actor::operator`].
///
/// A struct with private fields rather than a bare enum, so that what is recorded about an
/// actor (a display name, the client's address: the audit log's needs) can grow without
/// changing every caller.
#[derive(Clone, PartialEq, Eq)]
pub struct Actor {
    credential: Credential,
    /// The client's address, for the audit log (none for the operator, or when unknown).
    client: Option<std::net::IpAddr>,
}

/// The credential an [`Actor`] acts with.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// An application API token, valid in one application.
    ApiToken { id: Id, application: Id },
    /// A user's login session, by the SHA-256 digest of its secret (what the database keys
    /// sessions by; never the secret itself).
    UserSession { user: Id, digest: [u8; 32] },
    /// Whoever runs the `tollgate` command on the server: nothing to re-check.
    Operator,
    /// Someone without credentials, by the only write open to them: a leak report
    /// (`tokens.revoke`). Nothing to re-check; recorded with the client's address.
    Anonymous,
    /// Tollgate itself: the background jobs (idle deactivation, expiry and retirement
    /// announcements) on the node holding their lease. Nothing to re-check.
    System,
}

impl Actor {
    pub fn api_token(id: Id, application: Id) -> Actor {
        Actor {
            credential: Credential::ApiToken { id, application },
            client: None,
        }
    }

    pub fn user_session(user: Id, digest: [u8; 32]) -> Actor {
        Actor {
            credential: Credential::UserSession { user, digest },
            client: None,
        }
    }

    pub fn operator() -> Actor {
        Actor {
            credential: Credential::Operator,
            client: None,
        }
    }

    /// Tollgate's own background work.
    pub fn system() -> Actor {
        Actor {
            credential: Credential::System,
            client: None,
        }
    }

    /// Someone unauthenticated (a leak report), acting from `client`.
    pub fn anonymous(client: Option<std::net::IpAddr>) -> Actor {
        Actor {
            credential: Credential::Anonymous,
            client,
        }
    }

    /// The same actor, acting from `client` (recorded in the audit log).
    pub fn acting_from(mut self, client: Option<std::net::IpAddr>) -> Actor {
        self.client = client;
        self
    }

    /// The client's address, if known.
    pub fn client(&self) -> Option<std::net::IpAddr> {
        self.client
    }

    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// `apiToken`, `user`, `operator` or `anonymous`: the kind recorded beside the id (as the reference
    /// names creators, e.g. a flow's `createdByType`).
    pub fn kind(&self) -> &'static str {
        match self.credential {
            Credential::ApiToken { .. } => "apiToken",
            Credential::UserSession { .. } => "user",
            Credential::Operator => "operator",
            Credential::Anonymous => "anonymous",
            Credential::System => "system",
        }
    }

    /// The token's or the user's id (the operator has none).
    pub fn id(&self) -> Option<Id> {
        match self.credential {
            Credential::ApiToken { id, .. } => Some(id),
            Credential::UserSession { user, .. } => Some(user),
            Credential::Operator | Credential::Anonymous | Credential::System => None,
        }
    }

    /// The acting token's id, if a token acts.
    pub fn token(&self) -> Option<Id> {
        match self.credential {
            Credential::ApiToken { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The acting user, if a user acts.
    pub fn user(&self) -> Option<Id> {
        match self.credential {
            Credential::UserSession { user, .. } => Some(user),
            _ => None,
        }
    }
}

impl fmt::Debug for Actor {
    // The session digest is not a secret, but nothing needs it in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id() {
            Some(id) => write!(f, "Actor({} {id})", self.kind()),
            None => write!(f, "Actor({})", self.kind()),
        }
    }
}

/// Why the acting credential no longer holds (the server answers 401 and writes nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revoked {
    /// The token was deactivated.
    TokenInactive,
    /// The token (or its application) was deleted, or it is not a token of this application.
    TokenDeleted,
    TokenExpired,
    /// The session was ended (logout) or its user removed.
    SessionEnded,
    SessionExpired,
}

/// Row locks, by strength. PostgreSQL takes them with `SELECT … FOR …`; SQLite needs none,
/// because its write transactions take turns and hold the database's write lock throughout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lock {
    /// The row must not be deleted or revoked meanwhile; others may read and lock it too.
    KeyShare,
    /// This transaction is about to change the row from what it read: nobody else may change
    /// or revoke it, or hold it for a write that depends on it, until this one commits.
    Update,
}

impl Lock {
    /// The locking clause for `backend` (with a leading space), to append to a `SELECT`.
    pub(crate) fn clause(self, backend: Backend) -> &'static str {
        match (backend, self) {
            (Backend::Sqlite, _) => "",
            (Backend::Postgres, Lock::KeyShare) => " FOR KEY SHARE",
            (Backend::Postgres, Lock::Update) => " FOR UPDATE",
        }
    }

    /// The clause limited to one table of a join (`FOR KEY SHARE OF t`).
    fn clause_of(self, backend: Backend, table: &str) -> String {
        match backend {
            Backend::Sqlite => String::new(),
            Backend::Postgres => format!("{} OF {table}", self.clause(backend)),
        }
    }
}

/// Whether a token holds at `now`, from its row as read inside the write's transaction
/// (`None`: no such token in that application, or no such application): its status and
/// expiration date.
pub(crate) fn token_holds(row: Option<(&str, Option<i64>)>, now: i64) -> Result<()> {
    match row {
        None => Err(StoreError::Revoked(Revoked::TokenDeleted)),
        Some((status, _)) if status != "active" => Err(StoreError::Revoked(Revoked::TokenInactive)),
        Some((_, Some(expires))) if expires <= now => {
            Err(StoreError::Revoked(Revoked::TokenExpired))
        }
        Some(_) => Ok(()),
    }
}

/// Check, inside `tx`, that `actor`'s credential still holds, and keep it locked until the
/// transaction ends. A token's application is locked before the token (with `app_lock` when
/// the write goes on to change the application row itself: taking the strong lock first, not
/// upgrading it later, is what keeps two such writes from deadlocking).
pub(crate) async fn check(tx: &mut WriteTx, actor: &Actor, app_lock: Lock) -> Result<()> {
    let backend = tx.backend;
    let now = crate::now_ms();
    match actor.credential {
        Credential::Operator | Credential::Anonymous | Credential::System => Ok(()),
        Credential::ApiToken { id, application } => {
            // One statement: the CTE locks the application first (it must produce its row
            // before the join can produce the token's, which is locked last).
            let sql = format!(
                "WITH app AS MATERIALIZED (SELECT id FROM applications WHERE id = $2{}) \
                 SELECT t.status, t.expiration_date FROM api_tokens t JOIN app ON app.id = t.application_id \
                 WHERE t.id = $1{}",
                app_lock.clause(backend),
                Lock::KeyShare.clause_of(backend, "t"),
            );
            let row: Option<(String, Option<i64>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id.to_hex())
                .bind(application.to_hex())
                .fetch_optional(&mut **tx)
                .await?;
            token_holds(row.as_ref().map(|(s, e)| (s.as_str(), *e)), now)
        }
        Credential::UserSession { user, digest } => {
            let sql = format!(
                "WITH u AS MATERIALIZED (SELECT id FROM users WHERE id = $2{}) \
                 SELECT s.expiration_date FROM sessions s JOIN u ON u.id = s.user_id \
                 WHERE s.digest = $1{}",
                Lock::KeyShare.clause(backend),
                Lock::KeyShare.clause_of(backend, "s"),
            );
            let expires: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(digest.to_vec())
                .bind(user.to_hex())
                .fetch_optional(&mut **tx)
                .await?;
            match expires {
                None => Err(StoreError::Revoked(Revoked::SessionEnded)),
                Some(e) if e <= now => Err(StoreError::Revoked(Revoked::SessionExpired)),
                Some(_) => Ok(()),
            }
        }
    }
}

/// Lock application `app` (`NotFound` when it is gone). A token actor's check has locked it
/// already; a user's write locks it after the session, as every write does.
pub(crate) async fn lock_application(tx: &mut WriteTx, app: Id, lock: Lock) -> Result<()> {
    let sql = format!(
        "SELECT id FROM applications WHERE id = $1{}",
        lock.clause(tx.backend)
    );
    sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
        .bind(app.to_hex())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(())
}
