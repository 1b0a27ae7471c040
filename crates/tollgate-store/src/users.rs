//! Users and their login sessions.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::ids::from_db;
use crate::notify::Change;
use crate::{Id, Result, Store, StoreError};

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
                            last_updated, password_last_updated";

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

    /// Record a new session by the digest of its secret.
    pub async fn create_session(
        &self,
        digest: &[u8; 32],
        user_id: Id,
        expires: i64,
    ) -> Result<Session> {
        self.create_session_from(digest, user_id, expires, "").await
    }

    /// Record a new session by the digest of its secret, with the `User-Agent` of the login
    /// (cut to [`MAX_USER_AGENT`] characters).
    pub async fn create_session_from(
        &self,
        digest: &[u8; 32],
        user_id: Id,
        expires: i64,
        user_agent: &str,
    ) -> Result<Session> {
        let session = Session {
            id: Id::generate(),
            user_id,
            expiration_date: expires,
        };
        let user_agent: String = user_agent.chars().take(MAX_USER_AGENT).collect();
        sqlx::query(
            "INSERT INTO sessions (id, digest, user_id, creation_date, expiration_date, user_agent) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(session.id.to_hex())
        .bind(digest.to_vec())
        .bind(user_id.to_hex())
        .bind(crate::now_ms())
        .bind(expires)
        .bind(user_agent)
        .execute(&self.pool)
        .await?;
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
