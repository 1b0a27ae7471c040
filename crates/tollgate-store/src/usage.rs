//! Per-token usage: request counts per token, action, UTC day and outcome, and each token's
//! most recent requests.
//!
//! Counted in memory on each node (the server's `auth::usage`) and written here in batches:
//! [`Store::add_token_usage`] *adds* a node's counts to what is stored (`INSERT … ON CONFLICT
//! DO UPDATE SET count = count + excluded.count`), so nodes that flush the same token and day
//! never overwrite each other. Tokens deleted meanwhile are skipped (their rows went with
//! them).

use crate::{Id, Result, Store};

/// Most recent requests kept per token.
pub const RECENT_PER_TOKEN: i64 = 100;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// One counter: `count` requests by `token` for `action` on UTC day `day` (days since the
/// epoch) with `outcome` (0: authorized; else the refusal's status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageCount {
    pub token: Id,
    pub action: &'static str,
    pub day: i64,
    pub outcome: u16,
    pub count: u64,
}

/// One request, as the token's recent history keeps it. Never a header but the user agent,
/// never a body, never the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecentRequest {
    pub token: Id,
    pub at: i64,
    pub action: String,
    pub status: u16,
    pub client_address: Option<String>,
    pub user_agent: Option<String>,
}

/// A stored request: `(at, action, status, client_address, user_agent)`.
type RequestRow = (i64, String, i64, Option<String>, Option<String>);

/// Stored counts of one token: `(action, day, outcome, count)`.
pub type StoredCount = (String, i64, u16, i64);

impl Store {
    /// Add `counts` and `recent` requests (gathered by one node since its last flush) in one
    /// transaction, then keep only each token's [`RECENT_PER_TOKEN`] newest requests.
    pub async fn add_token_usage(
        &self,
        counts: &[UsageCount],
        recent: &[RecentRequest],
    ) -> Result<()> {
        if counts.is_empty() && recent.is_empty() {
            return Ok(());
        }
        // Tokens in id order, as every write that touches several tokens' rows takes them.
        let mut counts = counts.to_vec();
        counts.sort_unstable_by_key(|c| (c.token, c.action, c.day, c.outcome));
        let mut tx = self.begin_write().await?;
        for c in &counts {
            sqlx::query(
                "INSERT INTO token_usage (token_id, action, day, outcome, count) \
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM api_tokens WHERE id = $1) \
                 ON CONFLICT (token_id, action, day, outcome) \
                 DO UPDATE SET count = token_usage.count + excluded.count",
            )
            .bind(c.token.to_hex())
            .bind(c.action)
            .bind(c.day)
            .bind(i64::from(c.outcome))
            .bind(i64::try_from(c.count).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        let mut tokens: Vec<Id> = Vec::new();
        for r in recent {
            sqlx::query(
                "INSERT INTO token_requests (id, token_id, at, action, status, client_address, \
                 user_agent) SELECT $1, $2, $3, $4, $5, $6, $7 \
                 WHERE EXISTS (SELECT 1 FROM api_tokens WHERE id = $2)",
            )
            .bind(Id::generate().to_hex())
            .bind(r.token.to_hex())
            .bind(r.at)
            .bind(&r.action)
            .bind(i64::from(r.status))
            .bind(&r.client_address)
            .bind(&r.user_agent)
            .execute(&mut *tx)
            .await?;
            if !tokens.contains(&r.token) {
                tokens.push(r.token);
            }
        }
        tokens.sort_unstable();
        for token in tokens {
            sqlx::query(
                "DELETE FROM token_requests WHERE token_id = $1 AND id NOT IN (\
                 SELECT id FROM token_requests WHERE token_id = $1 \
                 ORDER BY at DESC, id DESC LIMIT $2)",
            )
            .bind(token.to_hex())
            .bind(RECENT_PER_TOKEN)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Delete counts of UTC days before `before_day` (the report looks back 90 days).
    pub async fn prune_token_usage(&self, before_day: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM token_usage WHERE day < $1")
            .bind(before_day)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// A token's stored counts from UTC day `since_day` on.
    pub async fn token_usage(&self, token: Id, since_day: i64) -> Result<Vec<StoredCount>> {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT action, day, outcome, count FROM token_usage \
             WHERE token_id = $1 AND day >= $2 ORDER BY action, day, outcome",
        )
        .bind(token.to_hex())
        .bind(since_day)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(a, d, o, c)| (a, d, u16::try_from(o).unwrap_or(0), c))
            .collect())
    }

    /// A token's most recent requests, newest first.
    pub async fn token_requests(&self, token: Id) -> Result<Vec<RecentRequest>> {
        let rows: Vec<RequestRow> = sqlx::query_as(
            "SELECT at, action, status, client_address, user_agent FROM token_requests \
             WHERE token_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(token.to_hex())
        .bind(RECENT_PER_TOKEN)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(at, action, status, client_address, user_agent)| RecentRequest {
                    token,
                    at,
                    action,
                    status: u16::try_from(status).unwrap_or(0),
                    client_address,
                    user_agent,
                },
            )
            .collect())
    }
}
