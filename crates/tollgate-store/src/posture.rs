//! The posture of an application's tokens: how many are never used, idle, never expiring,
//! all-powerful, expiring soon, expired, inactive, or created by other tokens. Each category
//! is one SQL condition, used both to count and to filter the token list.

use crate::list::{ListSpec, Page};
use crate::tokens::TokenRecord;
use crate::{Id, Result, Store};

const DAY_MS: i64 = crate::usage::DAY_MS;

/// One category of the posture summary; its API name is [`Posture::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Posture {
    NeverUsed,
    /// Used, but not in the last 90 days.
    Idle90Days,
    NeverExpires,
    AllPermissions,
    /// Not expired yet, and expiring within 30 days.
    ExpiringWithin30Days,
    Expired,
    Inactive,
    CreatedByTokens,
}

impl Posture {
    pub const ALL: [Posture; 8] = [
        Posture::NeverUsed,
        Posture::Idle90Days,
        Posture::NeverExpires,
        Posture::AllPermissions,
        Posture::ExpiringWithin30Days,
        Posture::Expired,
        Posture::Inactive,
        Posture::CreatedByTokens,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Posture::NeverUsed => "neverUsed",
            Posture::Idle90Days => "idle90Days",
            Posture::NeverExpires => "neverExpires",
            Posture::AllPermissions => "allPermissions",
            Posture::ExpiringWithin30Days => "expiringWithin30Days",
            Posture::Expired => "expired",
            Posture::Inactive => "inactive",
            Posture::CreatedByTokens => "createdByTokens",
        }
    }

    pub fn parse(name: &str) -> Option<Posture> {
        Posture::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The SQL condition at time `now` (milliseconds; a number this server computed, never
    /// input, written into the SQL).
    pub(crate) fn condition(self, now: i64) -> String {
        match self {
            Posture::NeverUsed => "last_used IS NULL".into(),
            Posture::Idle90Days => format!("last_used < {}", now - 90 * DAY_MS),
            Posture::NeverExpires => "expiration_date IS NULL".into(),
            Posture::AllPermissions => "scope LIKE '%\"all.Application\"%'".into(),
            Posture::ExpiringWithin30Days => format!(
                "expiration_date > {now} AND expiration_date <= {}",
                now + 30 * DAY_MS
            ),
            Posture::Expired => format!("expiration_date <= {now}"),
            Posture::Inactive => "status = 'inactive'".into(),
            Posture::CreatedByTokens => "creator_type = 'apiToken'".into(),
        }
    }
}

impl Store {
    /// How many of `application`'s tokens are in each category at `now`, in [`Posture::ALL`]
    /// order (one query).
    pub async fn token_posture(&self, application: Id, now: i64) -> Result<Vec<(Posture, i64)>> {
        Ok(self.token_posture_until(application, now).await?.0)
    }

    /// [`Store::token_posture`], and until when (milliseconds, inclusive) the counts stay the
    /// same unless a token changes: the first instant after `now` at which a token becomes
    /// idle, expiring within 30 days, or expired (`i64::MAX`: never).
    pub async fn token_posture_until(
        &self,
        application: Id,
        now: i64,
    ) -> Result<(Vec<(Posture, i64)>, i64)> {
        let (d90, d30) = (90 * DAY_MS, 30 * DAY_MS);
        let mut sums: Vec<String> = Posture::ALL
            .iter()
            .map(|p| {
                format!(
                    "COALESCE(SUM(CASE WHEN {} THEN 1 ELSE 0 END), 0)",
                    p.condition(now)
                )
            })
            .collect();
        // Each category's condition, as time passes: idle once now > last_used + 90 days;
        // expiring within 30 days once now >= expiration - 30 days; expired once now >=
        // expiration. The last instant before the first such flip:
        sums.push(format!(
            "MIN(CASE WHEN last_used + {d90} >= {now} THEN last_used + {d90} END)"
        ));
        sums.push(format!(
            "MIN(CASE WHEN expiration_date - {d30} > {now} THEN expiration_date - {d30} - 1 END)"
        ));
        sums.push(format!(
            "MIN(CASE WHEN expiration_date > {now} THEN expiration_date - 1 END)"
        ));
        let sql = format!(
            "SELECT {} FROM api_tokens WHERE application_id = $1",
            sums.join(", ")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(application.to_hex())
            .fetch_one(&self.pool)
            .await?;
        use sqlx::Row;
        let counts = Posture::ALL
            .iter()
            .enumerate()
            .map(|(i, p)| Ok((*p, row.try_get::<i64, _>(i)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut until = i64::MAX;
        for i in Posture::ALL.len()..Posture::ALL.len() + 3 {
            if let Some(t) = row.try_get::<Option<i64>, _>(i)? {
                until = until.min(t);
            }
        }
        Ok((counts, until))
    }

    /// One page of `application`'s tokens in `posture` at `now`.
    pub async fn list_tokens_in(
        &self,
        application: Id,
        posture: Posture,
        now: i64,
        spec: &ListSpec,
    ) -> Result<Page<TokenRecord>> {
        self.list_tokens_where(application, Some(&posture.condition(now)), spec)
            .await
    }
}
