//! Users and their login sessions.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::actor::{Actor, Credential};
use crate::ids::from_db;
use crate::notify::Change;
use crate::{Id, Result, Store, StoreError, WriteTx};

#[derive(Clone, Debug)]
pub struct User {
    pub id: Id,
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub creation_date: i64,
    pub last_updated: i64,
    pub password_last_updated: i64,
    /// When the user was disabled; `None`: active.
    pub disabled_at: Option<i64>,
    /// The TOTP secret, encrypted by the server (two-factor authentication is on when set).
    pub totp_secret: Option<String>,
    /// A TOTP secret generated and not yet confirmed, encrypted by the server.
    pub totp_pending: Option<String>,
}

impl User {
    pub fn two_factor_enabled(&self) -> bool {
        self.totp_secret.is_some()
    }
}

/// What `me.patch` may change; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct ProfileChange {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// A user as `tollgate user list` shows them.
#[derive(Clone, Debug)]
pub struct UserSummary {
    pub id: Id,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub creation_date: i64,
    pub disabled: bool,
    pub two_factor: bool,
    pub sessions: i64,
}

#[derive(Clone, Debug)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub password_hash: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
}

/// A login session: whose, and until when. The secret itself is never stored.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: Id,
    pub user_id: Id,
    pub expiration_date: i64,
}

/// A session as its owner sees it in the console (never its secret or digest).
#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub id: Id,
    pub creation_date: i64,
    pub expiration_date: i64,
    /// Start of the minute it was last used, as far as written (see `record_session_last_used`).
    pub last_used: Option<i64>,
    /// The `User-Agent` of the login request (at most 256 characters kept).
    pub user_agent: String,
    /// Digest of the secret: lets the console tell which session is the one looking.
    pub digest: [u8; 32],
}

/// How much of a login's `User-Agent` is kept.
pub const MAX_USER_AGENT: usize = 256;

/// Emails compare without regard to case or surrounding blanks.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

const USER_COLUMNS: &str = "id, email, password_hash, first_name, last_name, creation_date, \
                            last_updated, password_last_updated, disabled_at, totp_secret, \
                            totp_pending";

fn user_from_row(row: &AnyRow) -> Result<User> {
    Ok(User {
        id: from_db(&row.try_get::<String, _>("id")?)?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        creation_date: row.try_get("creation_date")?,
        last_updated: row.try_get("last_updated")?,
        password_last_updated: row.try_get("password_last_updated")?,
        disabled_at: row.try_get("disabled_at")?,
        totp_secret: row.try_get("totp_secret")?,
        totp_pending: row.try_get("totp_pending")?,
    })
}

impl Store {
    /// Create a user. A second user with the same email is a `Conflict`.
    pub async fn create_user(&self, new: &NewUser<'_>) -> Result<User> {
        let now = crate::now_ms();
        let user = User {
            id: Id::generate(),
            email: normalize_email(new.email),
            password_hash: new.password_hash.to_owned(),
            first_name: new.first_name.to_owned(),
            last_name: new.last_name.to_owned(),
            creation_date: now,
            last_updated: now,
            password_last_updated: now,
            disabled_at: None,
            totp_secret: None,
            totp_pending: None,
        };
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, password_hash, first_name, last_name, creation_date, \
             last_updated, password_last_updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(user.id.to_hex())
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(&user.first_name)
        .bind(&user.last_name)
        .bind(now)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await;
        match inserted.map_err(StoreError::from_sqlx) {
            Ok(_) => Ok(user),
            Err(StoreError::Conflict(_)) => Err(StoreError::Conflict("a user with this email")),
            Err(e) => Err(e),
        }
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(normalize_email(email))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn user(&self, id: Id) -> Result<User> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_hex())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        user_from_row(&row)
    }

    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Record a new session by the digest of its secret, unless the user is disabled or gone
    /// (then `NotFound`): one statement, so no session is opened for a user disabled a moment
    /// ago.
    pub async fn create_session(
        &self,
        digest: &[u8; 32],
        user_id: Id,
        expires: i64,
    ) -> Result<Session> {
        self.insert_session(digest, user_id, expires, None, "")
            .await
    }

    /// Record a new session by the digest of its secret, with the `User-Agent` of the login
    /// (cut to [`MAX_USER_AGENT`] characters), unless the user is disabled or gone.
    pub async fn create_session_from(
        &self,
        digest: &[u8; 32],
        user_id: Id,
        expires: i64,
        user_agent: &str,
    ) -> Result<Session> {
        self.insert_session(digest, user_id, expires, None, user_agent)
            .await
    }

    /// Record a new session after a password check, only if `verified_hash` is still the
    /// user's password hash and the user is not disabled (else `NotFound`). A login that
    /// checked the old password while the password was being changed therefore opens nothing:
    /// the change ends every session, and this one is never created. `user_agent` as in
    /// [`Store::create_session_from`].
    pub async fn create_login_session(
        &self,
        digest: &[u8; 32],
        user_id: Id,
        expires: i64,
        verified_hash: &str,
        user_agent: &str,
    ) -> Result<Session> {
        self.insert_session(digest, user_id, expires, Some(verified_hash), user_agent)
            .await
    }

    async fn insert_session(
        &self,
        digest: &[u8; 32],
        user_id: Id,
        expires: i64,
        verified_hash: Option<&str>,
        user_agent: &str,
    ) -> Result<Session> {
        let session = Session {
            id: Id::generate(),
            user_id,
            expiration_date: expires,
        };
        let user_agent: String = user_agent.chars().take(MAX_USER_AGENT).collect();
        let inserted = sqlx::query(
            "INSERT INTO sessions (id, digest, user_id, creation_date, expiration_date, user_agent) \
             SELECT $1, $2, $3, $4, $5, $7 WHERE EXISTS (SELECT 1 FROM users WHERE id = $3 \
               AND disabled_at IS NULL AND ($6 IS NULL OR password_hash = $6))",
        )
        .bind(session.id.to_hex())
        .bind(digest.to_vec())
        .bind(user_id.to_hex())
        .bind(crate::now_ms())
        .bind(expires)
        .bind(verified_hash)
        .bind(user_agent)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(session)
    }

    /// A user's sessions that have not expired at `now`, most recently used first.
    pub async fn sessions_of_user(&self, user_id: Id, now: i64) -> Result<Vec<SessionInfo>> {
        let rows = sqlx::query(
            "SELECT id, digest, creation_date, expiration_date, last_used, user_agent \
             FROM sessions WHERE user_id = $1 AND expiration_date > $2 \
             ORDER BY COALESCE(last_used, creation_date) DESC, creation_date DESC, id",
        )
        .bind(user_id.to_hex())
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let digest: Vec<u8> = row.try_get("digest")?;
                Ok(SessionInfo {
                    id: from_db(&row.try_get::<String, _>("id")?)?,
                    creation_date: row.try_get("creation_date")?,
                    expiration_date: row.try_get("expiration_date")?,
                    last_used: row.try_get("last_used")?,
                    user_agent: row.try_get("user_agent")?,
                    digest: digest.try_into().map_err(|_| {
                        StoreError::Corrupt("a session digest is not 32 bytes".into())
                    })?,
                })
            })
            .collect()
    }

    /// End one of `user_id`'s sessions by its id; another user's session is `NotFound`. Other
    /// nodes hear of it.
    pub async fn end_session(&self, user_id: Id, session_id: Id) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let row =
            sqlx::query("DELETE FROM sessions WHERE id = $1 AND user_id = $2 RETURNING digest")
                .bind(session_id.to_hex())
                .bind(user_id.to_hex())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
        let digest: Vec<u8> = row.try_get("digest")?;
        let digest: [u8; 32] = digest
            .try_into()
            .map_err(|_| StoreError::Corrupt("a session digest is not 32 bytes".into()))?;
        self.commit_with(tx, &[Change::Session(hex(&digest))]).await
    }

    /// Record when sessions were last used, in one transaction; never moves a time backwards
    /// (several nodes flush their own observations).
    pub async fn record_session_last_used(&self, uses: &[(Id, i64)]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (id, at) in uses {
            sqlx::query(
                "UPDATE sessions SET last_used = $2 WHERE id = $1 \
                 AND (last_used IS NULL OR last_used < $2)",
            )
            .bind(id.to_hex())
            .bind(*at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn session_by_digest(&self, digest: &[u8; 32]) -> Result<Option<Session>> {
        let row =
            sqlx::query("SELECT id, user_id, expiration_date FROM sessions WHERE digest = $1")
                .bind(digest.to_vec())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            Ok(Session {
                id: from_db(&row.try_get::<String, _>("id")?)?,
                user_id: from_db(&row.try_get::<String, _>("user_id")?)?,
                expiration_date: row.try_get("expiration_date")?,
            })
        })
        .transpose()
    }

    /// End a session (logout). Other nodes hear of it.
    pub async fn delete_session(&self, digest: &[u8; 32]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM sessions WHERE digest = $1")
            .bind(digest.to_vec())
            .execute(&mut *tx)
            .await?;
        self.commit_with(tx, &[Change::Session(hex(digest))])
            .await?;
        Ok(())
    }

    /// Begin a write on user `id`'s account by `actor`, who must be that user (by a session
    /// still open, re-checked in this transaction: see [`crate::actor`]) or the operator. Any
    /// other actor has no account of theirs by that id: `NotFound`.
    async fn begin_on_account(&self, actor: &Actor, id: Id) -> Result<WriteTx> {
        match actor.credential() {
            Credential::Operator => {}
            Credential::UserSession { user, .. } if *user == id => {}
            _ => return Err(StoreError::NotFound),
        }
        self.begin_as(actor).await
    }

    /// Change a user's name fields (`me.patch`), as `actor` (the user, by a session
    /// still open, or the operator). Unknown user: `NotFound`.
    pub async fn update_profile(
        &self,
        actor: &Actor,
        id: Id,
        change: &ProfileChange,
    ) -> Result<User> {
        let mut tx = self.begin_on_account(actor, id).await?;
        let updated = sqlx::query(
            "UPDATE users SET first_name = COALESCE($2, first_name), \
             last_name = COALESCE($3, last_name), last_updated = $4 WHERE id = $1",
        )
        .bind(id.to_hex())
        .bind(change.first_name.as_deref())
        .bind(change.last_name.as_deref())
        .bind(crate::now_ms())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        self.user(id).await
    }

    /// Set a user's password hash and end every one of their sessions except `keep` (the one
    /// the change was made with), in one transaction: the ended sessions are announced to
    /// every node and dropped from this node's caches before this returns. Returns how many
    /// sessions ended. As `actor`: the user themself (whose session must still be open when
    /// this commits) or the operator. Unknown user: `NotFound`.
    pub async fn set_password(
        &self,
        actor: &Actor,
        id: Id,
        password_hash: &str,
        keep: Option<&[u8; 32]>,
    ) -> Result<usize> {
        let mut tx = self.begin_on_account(actor, id).await?;
        let now = crate::now_ms();
        let updated = sqlx::query(
            "UPDATE users SET password_hash = $2, password_last_updated = $3, last_updated = $3 \
             WHERE id = $1",
        )
        .bind(id.to_hex())
        .bind(password_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let changes = end_sessions_in(&mut tx, id, keep).await?;
        let ended = changes.len();
        self.commit_with(tx, &changes).await?;
        Ok(ended)
    }

    /// Disable a user (they cannot log in; every session of theirs ends, on every node) or
    /// enable them again, as `actor` (the operator's `tollgate user disable|enable`). Returns
    /// how many sessions ended. Unknown user: `NotFound`.
    pub async fn set_user_disabled(&self, actor: &Actor, id: Id, disabled: bool) -> Result<usize> {
        let mut tx = self.begin_on_account(actor, id).await?;
        let now = crate::now_ms();
        let updated =
            sqlx::query("UPDATE users SET disabled_at = $2, last_updated = $3 WHERE id = $1")
                .bind(id.to_hex())
                .bind(disabled.then_some(now))
                .bind(now)
                .execute(&mut *tx)
                .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let changes = if disabled {
            end_sessions_in(&mut tx, id, None).await?
        } else {
            Vec::new()
        };
        let ended = changes.len();
        self.commit_with(tx, &changes).await?;
        Ok(ended)
    }

    /// Every user, by email, with what an operator needs to see.
    pub async fn list_users(&self) -> Result<Vec<UserSummary>> {
        let rows = sqlx::query(
            "SELECT u.id, u.email, u.first_name, u.last_name, u.creation_date, u.disabled_at, \
             CAST(CASE WHEN u.totp_secret IS NULL THEN 0 ELSE 1 END AS BIGINT) AS two_factor, \
             (SELECT COUNT(*) FROM sessions s WHERE s.user_id = u.id AND s.expiration_date > $1) \
               AS sessions \
             FROM users u ORDER BY u.email",
        )
        .bind(crate::now_ms())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UserSummary {
                    id: from_db(&row.try_get::<String, _>("id")?)?,
                    email: row.try_get("email")?,
                    first_name: row.try_get("first_name")?,
                    last_name: row.try_get("last_name")?,
                    creation_date: row.try_get("creation_date")?,
                    disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
                    two_factor: row.try_get::<i64, _>("two_factor")? != 0,
                    sessions: row.try_get("sessions")?,
                })
            })
            .collect()
    }

    /// Keep a newly generated TOTP secret (encrypted) until the user confirms it. Refused
    /// (`Conflict`) when two-factor authentication is already on. As `actor` (the user, by a session
    /// still open, or the operator).
    pub async fn set_totp_pending(&self, actor: &Actor, id: Id, encrypted: &str) -> Result<()> {
        let mut tx = self.begin_on_account(actor, id).await?;
        let updated =
            sqlx::query("UPDATE users SET totp_pending = $2 WHERE id = $1 AND totp_secret IS NULL")
                .bind(id.to_hex())
                .bind(encrypted)
                .execute(&mut *tx)
                .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::Conflict(
                "two-factor authentication for this user",
            ));
        }
        tx.commit().await
    }

    /// Turn two-factor authentication on with the pending secret `pending` (as read when its
    /// code was checked; if another secret was generated since, `Conflict`), store the
    /// recovery codes' digests, record `step` as used, and end every other session of the
    /// user (they were opened without a second factor), as `actor` (the user, by a session
    /// still open, or the operator). Returns how many sessions ended.
    pub async fn enable_totp(
        &self,
        actor: &Actor,
        id: Id,
        pending: &str,
        step: i64,
        recovery_digests: &[[u8; 32]],
        keep: Option<&[u8; 32]>,
    ) -> Result<usize> {
        let mut tx = self.begin_on_account(actor, id).await?;
        let now = crate::now_ms();
        let updated = sqlx::query(
            "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, \
             totp_last_step = $3, last_updated = $4 \
             WHERE id = $1 AND totp_secret IS NULL AND totp_pending = $2",
        )
        .bind(id.to_hex())
        .bind(pending)
        .bind(step)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::Conflict(
                "another two-factor set-up for this user",
            ));
        }
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(id.to_hex())
            .execute(&mut *tx)
            .await?;
        for digest in recovery_digests {
            sqlx::query("INSERT INTO recovery_codes (user_id, digest) VALUES ($1, $2)")
                .bind(id.to_hex())
                .bind(digest.to_vec())
                .execute(&mut *tx)
                .await?;
        }
        let changes = end_sessions_in(&mut tx, id, keep).await?;
        let ended = changes.len();
        self.commit_with(tx, &changes).await?;
        Ok(ended)
    }

    /// Turn two-factor authentication off: the secret and every recovery code are deleted.
    /// As `actor` (the user, by a session still open, or the operator).
    pub async fn disable_totp(&self, actor: &Actor, id: Id) -> Result<()> {
        let mut tx = self.begin_on_account(actor, id).await?;
        sqlx::query(
            "UPDATE users SET totp_secret = NULL, totp_pending = NULL, totp_last_step = NULL, \
             last_updated = $2 WHERE id = $1",
        )
        .bind(id.to_hex())
        .bind(crate::now_ms())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(id.to_hex())
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// Accept TOTP time step `step` for the user if it is later than the last one accepted
    /// (one statement: two requests with the same code cannot both pass).
    pub async fn accept_totp_step(&self, id: Id, step: i64) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE users SET totp_last_step = $2 WHERE id = $1 AND totp_secret IS NOT NULL \
             AND (totp_last_step IS NULL OR totp_last_step < $2)",
        )
        .bind(id.to_hex())
        .bind(step)
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Use up a recovery code: true if the user had it (it is deleted in the same statement).
    pub async fn use_recovery_code(&self, id: Id, digest: &[u8; 32]) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1 AND digest = $2")
            .bind(id.to_hex())
            .bind(digest.to_vec())
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() == 1)
    }

    /// How many unused recovery codes the user has.
    pub async fn count_recovery_codes(&self, id: Id) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1")
                .bind(id.to_hex())
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Forget sessions that expired before `now`.
    pub async fn purge_expired_sessions(&self, now: i64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM sessions WHERE expiration_date < $1")
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

/// Delete every session of `user` except `keep`, inside `tx`; the changes to announce.
async fn end_sessions_in(
    conn: &mut sqlx::AnyConnection,
    user: Id,
    keep: Option<&[u8; 32]>,
) -> Result<Vec<Change>> {
    // An empty blob never equals a 32-byte digest: "keep nothing".
    let keep = keep.map_or_else(Vec::new, |d| d.to_vec());
    let rows =
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND digest <> $2 RETURNING digest")
            .bind(user.to_hex())
            .bind(keep)
            .fetch_all(&mut *conn)
            .await?;
    rows.iter()
        .map(|row| {
            let digest: Vec<u8> = row.try_get("digest")?;
            let digest: [u8; 32] = digest
                .try_into()
                .map_err(|_| StoreError::Corrupt("a session digest is not 32 bytes".into()))?;
            Ok(Change::Session(hex(&digest)))
        })
        .collect()
}

/// Lowercase hex of a digest (the form used in change notifications).
pub fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A digest from its lowercase hex.
pub fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}
