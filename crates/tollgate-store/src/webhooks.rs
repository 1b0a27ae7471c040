//! Token event notifications (issue 15, item 4): webhook endpoints of an application and the
//! queue of their deliveries.
//!
//! **The audit log is the event source.** Every token change records its audit entry through
//! [`crate::audit::record`], inside the change's own transaction. When the entry's action is a
//! token event ([`event_type`]), that same function inserts, with one `INSERT … SELECT`, one
//! queued delivery per enabled endpoint of the application subscribed to the event
//! ([`fan_out`]). So a delivery exists exactly when its change committed, and a change that
//! rolls back queues nothing. The event's id is the audit entry's id: a receiver sees the same
//! id on every attempt and can drop duplicates by it.
//!
//! **Delivery** is the server's worker: it claims due deliveries with one conditional
//! statement ([`Store::claim_deliveries`]: a claim that expires, so a node that dies while
//! sending leaves the delivery to be claimed again later), sends them, and records each
//! outcome only under its own claim ([`Store::finish_delivery`]). Two workers (two nodes on
//! one PostgreSQL database, or two processes on one SQLite file) never hold a claim on one
//! delivery at once. The queue is in the database, so it survives a restart.
//!
//! The signing secret is stored sealed (encrypted by the server with its secret key); the
//! store never sees it in clear.

use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::actor::{Actor, Lock};
use crate::audit::{self, Entry, Place, Target};
use crate::ids::from_db;
use crate::list::Page;
use crate::{Backend, Id, Result, Store, StoreError, WriteTx};

/// Every event type an endpoint can subscribe to, with the audit action it comes from.
pub const EVENT_TYPES: &[&str] = &[
    "token.created",
    "token.deleted",
    "token.rolled",
    "token.leaked",
    "token.deactivated",
    "token.expiring",
    "token.expired",
    "token.idleDeactivated",
    "token.retired",
];

/// The event type of an audit entry, if it is a token event: its action (`resource.verb`,
/// as the registry names it) and the body it recorded.
pub fn event_type(action: &str, body: &Value) -> Option<&'static str> {
    Some(match action {
        "applicationApiTokens.post" => "token.created",
        "applicationApiToken.delete" => "token.deleted",
        "applicationApiToken.roll" => "token.rolled",
        "tokens.revoke" => "token.leaked",
        "applicationApiToken.patch" if body["status"] == "inactive" => "token.deactivated",
        "applicationApiToken.expiring" => "token.expiring",
        "applicationApiToken.expired" => "token.expired",
        "applicationApiToken.idleDeactivated" => "token.idleDeactivated",
        "applicationApiToken.retired" => "token.retired",
        _ => return None,
    })
}

/// Inside `tx` (the transaction recording audit entry `event_id`): queue one delivery of the
/// event per enabled endpoint of `application` subscribed to `kind`. One statement.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn fan_out(
    tx: &mut WriteTx,
    application: Id,
    event_id: &str,
    kind: &str,
    time: i64,
    token: Option<&Target>,
    actor: Value,
    body: &Value,
) -> Result<()> {
    let payload = json!({
        "id": event_id,
        "type": kind,
        "time": audit::iso(time),
        "applicationId": application.to_hex(),
        "token": token.map(|t| json!({ "id": t.id.to_hex(), "name": t.name })),
        "actor": actor,
        "data": body,
    });
    sqlx::query(
        "INSERT INTO webhook_deliveries (webhook_id, event_id, application_id, event_type, \
         payload, status, attempts, creation_date, next_attempt_at) \
         SELECT id, $1, application_id, $2, $3, 'pending', 0, $4, $4 FROM webhooks \
         WHERE application_id = $5 AND enabled = 1 AND events LIKE $6",
    )
    .bind(event_id)
    .bind(kind)
    .bind(payload.to_string())
    .bind(time)
    .bind(application.to_hex())
    .bind(format!("%,{kind},%"))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A webhook endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub id: Id,
    pub application_id: Id,
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    /// The signing secret, sealed by the server (never in clear here).
    pub secret_sealed: String,
    pub creation_date: i64,
    pub last_updated: i64,
}

/// A new endpoint: the server chose its id (the secret is sealed for it) and checked the rest.
pub struct NewWebhook<'a> {
    pub id: Id,
    pub url: &'a str,
    pub events: &'a [String],
    pub enabled: bool,
    pub secret_sealed: &'a str,
}

/// A change to an endpoint: the fields given.
#[derive(Clone, Debug, Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

const WEBHOOK_COLUMNS: &str =
    "id, application_id, url, events, enabled, secret_sealed, creation_date, last_updated";

fn events_text(events: &[String]) -> String {
    format!(",{},", events.join(","))
}

fn webhook_from_row(row: &AnyRow) -> Result<Webhook> {
    let events: String = row.try_get("events")?;
    Ok(Webhook {
        id: from_db(&row.try_get::<String, _>("id")?)?,
        application_id: from_db(&row.try_get::<String, _>("application_id")?)?,
        url: row.try_get("url")?,
        events: events
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        secret_sealed: row.try_get("secret_sealed")?,
        creation_date: row.try_get("creation_date")?,
        last_updated: row.try_get("last_updated")?,
    })
}

fn webhook_entry(action: &'static str, status: u16, w: &Webhook, body: Value) -> Entry {
    let mut params = vec![("applicationId", w.application_id)];
    if action != "applicationTokenWebhooks.post" {
        params.push(("webhookId", w.id));
    }
    Entry {
        place: Place::Application(w.application_id),
        action,
        status,
        primary: None,
        secondary: Some(Target::new("Webhook", w.id, &w.url)),
        path_params: audit::path(&params),
        body,
    }
}

/// A delivery's state.
pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

/// One event queued for one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub webhook_id: Id,
    /// The event's id (its audit entry's): the delivery's id within its endpoint.
    pub event_id: Id,
    pub application_id: Id,
    pub event_type: String,
    /// The body sent.
    pub payload: String,
    /// [`PENDING`], [`DELIVERED`] or [`FAILED`].
    pub status: String,
    pub attempts: i64,
    pub creation_date: i64,
    pub first_attempt_at: Option<i64>,
    pub last_attempt_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
}

const DELIVERY_COLUMNS: &str = "webhook_id, event_id, application_id, event_type, payload, \
    status, attempts, creation_date, first_attempt_at, last_attempt_at, next_attempt_at, \
    last_status_code, last_error";

fn delivery_from_row(row: &AnyRow) -> Result<Delivery> {
    Ok(Delivery {
        webhook_id: from_db(&row.try_get::<String, _>("webhook_id")?)?,
        event_id: from_db(&row.try_get::<String, _>("event_id")?)?,
        application_id: from_db(&row.try_get::<String, _>("application_id")?)?,
        event_type: row.try_get("event_type")?,
        payload: row.try_get("payload")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        creation_date: row.try_get("creation_date")?,
        first_attempt_at: row.try_get("first_attempt_at")?,
        last_attempt_at: row.try_get("last_attempt_at")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_status_code: row.try_get("last_status_code")?,
        last_error: row.try_get("last_error")?,
    })
}

/// A delivery a worker holds a claim on, with what it needs to send it.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub delivery: Delivery,
    pub url: String,
    pub secret_sealed: String,
    /// The claim's own id: the outcome is written only under it.
    pub claim: String,
}

/// What became of one attempt.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// When the attempt was made.
    pub at: i64,
    /// The receiver's status code, if it answered.
    pub status_code: Option<i64>,
    /// Why it failed (never holding a secret), if it did.
    pub error: Option<String>,
    pub next: Next,
}

/// What a delivery does after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Delivered,
    /// Try again at this time.
    RetryAt(i64),
    Failed,
}

/// Token events that background jobs record (no request makes them): each is an audit
/// action, and so a webhook event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenEvent {
    /// A token expires within a warning lead time (the body says which: `leadDays`).
    Expiring,
    Expired,
    /// Deactivated after a time without use.
    IdleDeactivated,
    /// A rolled token reached its `retiresAt`.
    Retired,
}

impl TokenEvent {
    /// The audit action.
    pub fn action(self) -> &'static str {
        match self {
            TokenEvent::Expiring => "applicationApiToken.expiring",
            TokenEvent::Expired => "applicationApiToken.expired",
            TokenEvent::IdleDeactivated => "applicationApiToken.idleDeactivated",
            TokenEvent::Retired => "applicationApiToken.retired",
        }
    }
}

impl Store {
    /// Record `event` about token `token` (`name`) of `application` by `actor` (the
    /// operator, for a background job), with `body` (its fields, never a secret): an audit
    /// entry, and so its webhook deliveries, in one transaction. For events that change
    /// nothing else (an expiry warning, an expiry observed); a job that also changes the
    /// token records the entry in that change's own transaction instead.
    pub async fn record_token_event(
        &self,
        actor: &Actor,
        application: Id,
        token: Id,
        name: &str,
        event: TokenEvent,
        body: Value,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let entry = Entry {
            place: Place::Application(application),
            action: event.action(),
            status: 200,
            primary: None,
            secondary: Some(Target::new("ApiToken", token, name)),
            path_params: audit::path(&[("applicationId", application), ("apiTokenId", token)]),
            body,
        };
        audit::record(&mut tx, actor, entry).await?;
        self.commit_with(tx, &[]).await
    }

    /// Add an endpoint to `application`, as `actor` (audited).
    pub async fn create_webhook(
        &self,
        actor: &Actor,
        application: Id,
        new: &NewWebhook<'_>,
    ) -> Result<Webhook> {
        let now = crate::now_ms();
        let mut tx = self
            .begin_in_application(actor, application, Lock::KeyShare)
            .await?;
        let sql = format!(
            "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             RETURNING {WEBHOOK_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(new.id.to_hex())
            .bind(application.to_hex())
            .bind(new.url)
            .bind(events_text(new.events))
            .bind(i64::from(new.enabled))
            .bind(new.secret_sealed)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        let w = webhook_from_row(&row)?;
        let body = json!({ "url": w.url, "events": w.events, "enabled": w.enabled });
        let entry = webhook_entry("applicationTokenWebhooks.post", 201, &w, body);
        audit::record(&mut tx, actor, entry).await?;
        self.commit_with(tx, &[]).await?;
        Ok(w)
    }

    /// The endpoints of `application`, oldest first.
    pub async fn webhooks(&self, application: Id) -> Result<Vec<Webhook>> {
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE application_id = $1 \
             ORDER BY creation_date, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(application.to_hex())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(webhook_from_row).collect()
    }

    /// An endpoint of `application` (`NotFound` for another application's).
    pub async fn webhook(&self, application: Id, id: Id) -> Result<Webhook> {
        let sql =
            format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND application_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_hex())
            .bind(application.to_hex())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        webhook_from_row(&row)
    }

    /// Change the fields `change` gives of an endpoint, as `actor`: one statement (audited).
    pub async fn update_webhook(
        &self,
        actor: &Actor,
        application: Id,
        id: Id,
        change: &WebhookChange,
    ) -> Result<Webhook> {
        let mut tx = self
            .begin_in_application(actor, application, Lock::KeyShare)
            .await?;
        let sql = format!(
            "UPDATE webhooks SET url = COALESCE($3, url), events = COALESCE($4, events), \
             enabled = COALESCE($5, enabled), last_updated = $6 \
             WHERE id = $1 AND application_id = $2 RETURNING {WEBHOOK_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_hex())
            .bind(application.to_hex())
            .bind(change.url.clone())
            .bind(change.events.as_deref().map(events_text))
            .bind(change.enabled.map(i64::from))
            .bind(crate::now_ms())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let w = webhook_from_row(&row)?;
        let body = audit::fields([
            ("url", change.url.as_ref().map(|u| json!(u))),
            ("events", change.events.as_ref().map(|e| json!(e))),
            ("enabled", change.enabled.map(|e| json!(e))),
        ]);
        let entry = webhook_entry("applicationTokenWebhook.patch", 200, &w, body);
        audit::record(&mut tx, actor, entry).await?;
        self.commit_with(tx, &[]).await?;
        Ok(w)
    }

    /// Delete an endpoint and its deliveries, as `actor` (audited).
    pub async fn delete_webhook(&self, actor: &Actor, application: Id, id: Id) -> Result<()> {
        let mut tx = self
            .begin_in_application(actor, application, Lock::KeyShare)
            .await?;
        // Deliveries first: SQLite enforces the cascade only where foreign keys are on.
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1 AND application_id = $2")
            .bind(id.to_hex())
            .bind(application.to_hex())
            .execute(&mut *tx)
            .await?;
        let sql = format!(
            "DELETE FROM webhooks WHERE id = $1 AND application_id = $2 RETURNING {WEBHOOK_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_hex())
            .bind(application.to_hex())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let w = webhook_from_row(&row)?;
        let entry = webhook_entry("applicationTokenWebhook.delete", 200, &w, json!({}));
        audit::record(&mut tx, actor, entry).await?;
        self.commit_with(tx, &[]).await
    }

    /// One page (`page` from 0, newest first) of an endpoint's deliveries, with `status` if
    /// given.
    pub async fn deliveries(
        &self,
        application: Id,
        webhook: Id,
        status: Option<&str>,
        page: i64,
        per_page: i64,
    ) -> Result<Page<Delivery>> {
        let filter = "FROM webhook_deliveries WHERE webhook_id = $1 AND application_id = $2 \
                      AND ($3 IS NULL OR status = $3)";
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} {filter} ORDER BY creation_date DESC, event_id DESC \
             LIMIT $4 OFFSET $5"
        );
        let status = status.map(str::to_owned);
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(webhook.to_hex())
            .bind(application.to_hex())
            .bind(status.clone())
            .bind(per_page)
            .bind(page * per_page)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) {filter}")))
                .bind(webhook.to_hex())
                .bind(application.to_hex())
                .bind(status)
                .fetch_one(&self.pool)
                .await?;
        Ok(Page {
            items: rows.iter().map(delivery_from_row).collect::<Result<_>>()?,
            total,
        })
    }

    /// How many deliveries of an endpoint are in each status: (pending, delivered, failed).
    pub async fn delivery_counts(&self, application: Id, webhook: Id) -> Result<(i64, i64, i64)> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*) FROM webhook_deliveries \
             WHERE webhook_id = $1 AND application_id = $2 GROUP BY status",
        )
        .bind(webhook.to_hex())
        .bind(application.to_hex())
        .fetch_all(&self.pool)
        .await?;
        let get = |s: &str| rows.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
        Ok((get(PENDING), get(DELIVERED), get(FAILED)))
    }

    /// One delivery of an endpoint of `application`.
    pub async fn delivery(&self, application: Id, webhook: Id, event: Id) -> Result<Delivery> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE webhook_id = $1 AND event_id = $2 AND application_id = $3"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(webhook.to_hex())
            .bind(event.to_hex())
            .bind(application.to_hex())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        delivery_from_row(&row)
    }

    /// Queue a delivery again now, as `actor`, with a fresh retry window (its attempts are
    /// kept): one conditional statement (audited).
    pub async fn retry_delivery(
        &self,
        actor: &Actor,
        application: Id,
        webhook: Id,
        event: Id,
    ) -> Result<Delivery> {
        let now = crate::now_ms();
        let mut tx = self
            .begin_in_application(actor, application, Lock::KeyShare)
            .await?;
        let sql = format!(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $4, \
             first_attempt_at = NULL, claimed_until = NULL, claim = NULL \
             WHERE webhook_id = $1 AND event_id = $2 AND application_id = $3 \
             RETURNING {DELIVERY_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(webhook.to_hex())
            .bind(event.to_hex())
            .bind(application.to_hex())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let d = delivery_from_row(&row)?;
        let entry = Entry {
            place: Place::Application(application),
            action: "applicationTokenWebhook.retryDelivery",
            status: 200,
            primary: None,
            secondary: Some(Target {
                kind: "Webhook".into(),
                id: webhook,
                name: None,
            }),
            path_params: audit::path(&[
                ("applicationId", application),
                ("webhookId", webhook),
                ("deliveryId", event),
            ]),
            body: json!({ "status": PENDING }),
        };
        audit::record(&mut tx, actor, entry).await?;
        self.commit_with(tx, &[]).await?;
        Ok(d)
    }

    /// Claim up to `limit` deliveries due at `now` (pending, of an enabled endpoint, not
    /// claimed or with a lapsed claim) until `now + claim_ms`: one conditional `UPDATE`. The
    /// conditions are in the outer `WHERE` too, so on PostgreSQL a worker whose candidate row
    /// was claimed meanwhile re-checks it on the claimed version and skips it (and rows
    /// locked by another claim are skipped, not waited for); on SQLite writes take turns.
    pub async fn claim_deliveries(
        &self,
        now: i64,
        claim_ms: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>> {
        let claim = Id::generate().to_hex();
        let due = "status = 'pending' AND next_attempt_at <= $3 \
                   AND (claimed_until IS NULL OR claimed_until < $3)";
        let skip = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE webhook_deliveries SET claimed_until = $1, claim = $2 WHERE {due} \
             AND (webhook_id, event_id) IN (SELECT webhook_id, event_id FROM webhook_deliveries \
             WHERE {due} AND webhook_id IN (SELECT id FROM webhooks WHERE enabled = 1) \
             ORDER BY next_attempt_at LIMIT $4{skip}) RETURNING webhook_id"
        );
        let mut tx = self.begin_write().await?;
        let claimed = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now + claim_ms)
            .bind(&claim)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let cols: Vec<String> = DELIVERY_COLUMNS
            .split(", ")
            .map(|c| format!("d.{}", c.trim()))
            .collect();
        let sql = format!(
            "SELECT {}, w.url AS url, w.secret_sealed AS secret_sealed \
             FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             WHERE d.claim = $1 ORDER BY d.next_attempt_at",
            cols.join(", ")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&claim)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Claimed {
                    delivery: delivery_from_row(row)?,
                    url: row.try_get("url")?,
                    secret_sealed: row.try_get("secret_sealed")?,
                    claim: claim.clone(),
                })
            })
            .collect()
    }

    /// Record the outcome of an attempt at a delivery claimed as `claim`: one conditional
    /// statement, which does nothing if the claim was lost (lapsed and taken by another
    /// worker, or the delivery retried or deleted meanwhile). Returns whether it was written.
    pub async fn finish_delivery(&self, claimed: &Claimed, outcome: &Outcome) -> Result<bool> {
        let (status, next) = match outcome.next {
            Next::Delivered => (DELIVERED, None),
            Next::RetryAt(at) => (PENDING, Some(at)),
            Next::Failed => (FAILED, None),
        };
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = $4, attempts = attempts + 1, \
             first_attempt_at = COALESCE(first_attempt_at, $5), last_attempt_at = $5, \
             next_attempt_at = $6, last_status_code = $7, last_error = $8, \
             claimed_until = NULL, claim = NULL \
             WHERE webhook_id = $1 AND event_id = $2 AND claim = $3",
        )
        .bind(claimed.delivery.webhook_id.to_hex())
        .bind(claimed.delivery.event_id.to_hex())
        .bind(&claimed.claim)
        .bind(status)
        .bind(outcome.at)
        .bind(next)
        .bind(outcome.status_code)
        .bind(outcome.error.clone())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}
