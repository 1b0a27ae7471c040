//! Token policies (issue 15, item 2) and the background jobs that apply them, and the lease
//! that lets exactly one node of a cluster run those jobs.
//!
//! **Policies.** An application may have a token policy, and an organization a default for
//! its applications. Each field is optional at each level: an application's unset field takes
//! its organization's, an organization's unset field the built-in default
//! ([`Effective::of`]). A policy write is one statement (an upsert that changes only the fields
//! given) with its audit entry, in one transaction; it changes no token.
//!
//! **Jobs.** Each job looks at the tokens as they are now, not at timers, so a node that
//! takes over, or a cluster that was down for a week, catches up on its first run; and each
//! announcement is one conditional `UPDATE` of a marker column with its audit entry in the
//! same transaction, so it is made exactly once however often, and on however many nodes,
//! the job runs. Idle deactivation switches tokens off exactly as a leak report does (rows
//! locked in id order, change notices committed with the write): every node refuses them
//! before the job's write returns.
//!
//! **Lease.** [`Store::take_lease`] is one conditional upsert: it succeeds for the holder
//! (renewal) or when the lease has run out (takeover), never for two nodes at once.

use serde_json::{Value, json};
use sqlx::Row;

use crate::actor::{Actor, Lock};
use crate::audit::{self, Entry, Place, Target};
use crate::ids::from_db;
use crate::notify::{Change, Part};
use crate::{Id, Result, Store, StoreError};

pub const DAY_MS: i64 = 86_400_000;

/// The warning lead times when no policy says otherwise: 30, 7 and 1 days before expiry.
pub const DEFAULT_WARNING_LEADS_MS: [i64; 3] = [30 * DAY_MS, 7 * DAY_MS, DAY_MS];

/// The reason an idle token is switched off with (its `deactivationReason`).
pub const IDLE: &str = "idle";

/// The name of the lease on the background jobs.
pub const JOBS_LEASE: &str = "background-jobs";

/// The fields of one policy (one level: an application's own, or an organization's default).
/// `None`: not set at this level.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyFields {
    /// New tokens may not expire later than this after their creation.
    pub max_lifetime_ms: Option<i64>,
    /// New tokens must have an expiry.
    pub expiry_required: Option<bool>,
    /// A token unused for this long is switched off.
    pub idle_deactivation_ms: Option<i64>,
    /// Expiry warnings this long before expiry, longest first.
    pub warning_leads_ms: Option<Vec<i64>>,
}

/// A change of a policy: for each field, `None` leaves it as it is, `Some(None)` unsets it
/// (the level below applies again), `Some(Some(v))` sets it.
#[derive(Clone, Debug, Default)]
pub struct PolicyPatch {
    pub max_lifetime_ms: Option<Option<i64>>,
    pub expiry_required: Option<Option<bool>>,
    pub idle_deactivation_ms: Option<Option<i64>>,
    pub warning_leads_ms: Option<Option<Vec<i64>>>,
}

/// Where an effective value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Application,
    Organization,
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Application => "application",
            Source::Organization => "organization",
            Source::Default => "default",
        }
    }
}

/// The policy that applies to an application's tokens: each field with where it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    pub max_lifetime_ms: (Option<i64>, Source),
    pub expiry_required: (bool, Source),
    pub idle_deactivation_ms: (Option<i64>, Source),
    pub warning_leads_ms: (Vec<i64>, Source),
}

fn pick<T: Clone>(app: &Option<T>, org: Option<&Option<T>>) -> Option<(T, Source)> {
    if let Some(v) = app {
        return Some((v.clone(), Source::Application));
    }
    if let Some(Some(v)) = org {
        return Some((v.clone(), Source::Organization));
    }
    None
}

impl Effective {
    /// An application's own fields over its organization's (if it has one) over the
    /// built-in defaults (no maximum lifetime, expiry not required, no idle deactivation,
    /// warnings 30, 7 and 1 days ahead).
    pub fn of(app: &PolicyFields, org: Option<&PolicyFields>) -> Effective {
        let max = pick(&app.max_lifetime_ms, org.map(|o| &o.max_lifetime_ms));
        let req = pick(&app.expiry_required, org.map(|o| &o.expiry_required));
        let idle = pick(
            &app.idle_deactivation_ms,
            org.map(|o| &o.idle_deactivation_ms),
        );
        let leads = pick(&app.warning_leads_ms, org.map(|o| &o.warning_leads_ms));
        Effective {
            max_lifetime_ms: max.map_or((None, Source::Default), |(v, s)| (Some(v), s)),
            expiry_required: req.unwrap_or((false, Source::Default)),
            idle_deactivation_ms: idle.map_or((None, Source::Default), |(v, s)| (Some(v), s)),
            warning_leads_ms: leads.unwrap_or((DEFAULT_WARNING_LEADS_MS.to_vec(), Source::Default)),
        }
    }

    /// The longest warning lead time (0: none).
    pub fn first_lead_ms(&self) -> i64 {
        self.warning_leads_ms.0.iter().copied().max().unwrap_or(0)
    }
}

/// An application's policy as stored: its own fields, and its organization's default.
#[derive(Clone, Debug)]
pub struct ApplicationPolicy {
    pub application_id: Id,
    /// The organization owning the application (`None`: a sandbox application).
    pub org_id: Option<Id>,
    pub own: PolicyFields,
    pub org: Option<PolicyFields>,
}

impl ApplicationPolicy {
    pub fn effective(&self) -> Effective {
        Effective::of(&self.own, self.org.as_ref())
    }
}

const POLICY_COLUMNS: &str =
    "max_lifetime_ms, expiry_required, idle_deactivation_ms, warning_leads_ms";

fn leads_from(text: Option<String>) -> Result<Option<Vec<i64>>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

fn fields_from_row(row: &sqlx::any::AnyRow, prefix: &str) -> Result<PolicyFields> {
    let col = |c: &str| format!("{prefix}{c}");
    Ok(PolicyFields {
        max_lifetime_ms: row.try_get(col("max_lifetime_ms").as_str())?,
        expiry_required: row
            .try_get::<Option<i64>, _>(col("expiry_required").as_str())?
            .map(|v| v != 0),
        idle_deactivation_ms: row.try_get(col("idle_deactivation_ms").as_str())?,
        warning_leads_ms: leads_from(row.try_get(col("warning_leads_ms").as_str())?)?,
    })
}

/// A time span in days, for the API and audit entries (fractions kept).
pub fn days(ms: i64) -> Value {
    if ms % DAY_MS == 0 {
        json!(ms / DAY_MS)
    } else {
        json!(ms as f64 / DAY_MS as f64)
    }
}

/// The audit body of a policy change: the fields given, in days.
fn patch_body(patch: &PolicyPatch) -> Value {
    let opt = |v: &Option<Option<i64>>| v.map(|v| v.map_or(Value::Null, days));
    audit::fields([
        ("maxLifetimeDays", opt(&patch.max_lifetime_ms)),
        (
            "expiryRequired",
            patch
                .expiry_required
                .map(|v| v.map_or(Value::Null, Value::Bool)),
        ),
        ("idleDeactivationDays", opt(&patch.idle_deactivation_ms)),
        (
            "warningLeadDays",
            patch.warning_leads_ms.as_ref().map(|v| {
                v.as_ref().map_or(Value::Null, |l| {
                    Value::Array(l.iter().map(|m| days(*m)).collect())
                })
            }),
        ),
    ])
}

/// A token a background job announced or switched off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announced {
    pub id: Id,
    pub application_id: Id,
}

/// What one run of the jobs did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobReport {
    pub idle_deactivated: Vec<Announced>,
    pub expiring: Vec<Announced>,
    pub expired: Vec<Announced>,
    pub retired: Vec<Announced>,
}

/// Most tokens one job transaction handles (the rest in the next ones).
const BATCH: usize = 500;

/// The candidate columns the jobs read, with both levels of policy beside each token.
/// The applications whose effective policy may deactivate idle tokens (their own policy's
/// period, or their organization's). Idle deactivation looks only at their tokens, through
/// `api_tokens_application`, instead of reading every token each interval.
const IDLE_POLICY_APPLICATIONS: &str = "SELECT application_id FROM application_token_policies \
    WHERE idle_deactivation_ms IS NOT NULL \
    UNION SELECT pa.id FROM applications pa JOIN org_token_policies po \
    ON pa.owner_type = 'organization' AND po.org_id = pa.owner_id \
    WHERE po.idle_deactivation_ms IS NOT NULL";

fn idle_candidates_sql() -> String {
    format!(
        "{CANDIDATE_SQL} WHERE t.application_id IN ({IDLE_POLICY_APPLICATIONS}) \
         AND t.status = 'active' AND t.retires_at IS NULL \
         AND (t.expiration_date IS NULL OR t.expiration_date > $1) \
         AND (ap.idle_deactivation_ms IS NOT NULL OR op.idle_deactivation_ms IS NOT NULL)"
    )
}

fn expiring_candidates_sql() -> String {
    format!(
        "{CANDIDATE_SQL} WHERE t.retires_at IS NULL AND t.expiration_date > $1 \
         AND t.expiration_date <= $2"
    )
}

const EXPIRED_WHERE: &str =
    "t.retires_at IS NULL AND t.expired_announced = 0 AND t.expiration_date <= $1";
const RETIRED_WHERE: &str = "t.retired_announced = 0 AND t.retires_at <= $1";

/// Each job's question for candidate tokens (name, SQL with `$n` parameters, their count):
/// for the test that none of them reads every token.
pub fn job_queries() -> Vec<(&'static str, String, usize)> {
    vec![
        ("idle deactivation", idle_candidates_sql(), 1),
        ("expiry warnings", expiring_candidates_sql(), 2),
        (
            "expired",
            format!("{CANDIDATE_SQL} WHERE {EXPIRED_WHERE}"),
            1,
        ),
        (
            "retired",
            format!("{CANDIDATE_SQL} WHERE {RETIRED_WHERE}"),
            1,
        ),
    ]
}

const CANDIDATE_SQL: &str = "SELECT t.id, t.application_id, t.name, t.status, t.expiration_date, \
    t.creation_date, t.last_used, t.activated_at, t.retires_at, t.expiry_warned_ms, \
    ap.max_lifetime_ms AS a_max_lifetime_ms, ap.expiry_required AS a_expiry_required, \
    ap.idle_deactivation_ms AS a_idle_deactivation_ms, ap.warning_leads_ms AS a_warning_leads_ms, \
    op.org_id AS o_org_id, op.max_lifetime_ms AS o_max_lifetime_ms, \
    op.expiry_required AS o_expiry_required, op.idle_deactivation_ms AS o_idle_deactivation_ms, \
    op.warning_leads_ms AS o_warning_leads_ms \
    FROM api_tokens t JOIN applications a ON a.id = t.application_id \
    LEFT JOIN application_token_policies ap ON ap.application_id = t.application_id \
    LEFT JOIN org_token_policies op ON a.owner_type = 'organization' AND op.org_id = a.owner_id";

struct Candidate {
    id: Id,
    application_id: Id,
    name: String,
    expiration_date: Option<i64>,
    creation_date: i64,
    last_used: Option<i64>,
    activated_at: Option<i64>,
    expiry_warned_ms: Option<i64>,
    policy: Effective,
}

fn candidate(row: &sqlx::any::AnyRow) -> Result<Candidate> {
    let own = fields_from_row(row, "a_")?;
    let org_present: Option<String> = row.try_get("o_org_id")?;
    let org = match org_present {
        Some(_) => Some(fields_from_row(row, "o_")?),
        None => None,
    };
    Ok(Candidate {
        id: from_db(&row.try_get::<String, _>("id")?)?,
        application_id: from_db(&row.try_get::<String, _>("application_id")?)?,
        name: row.try_get("name")?,
        expiration_date: row.try_get("expiration_date")?,
        creation_date: row.try_get("creation_date")?,
        last_used: row.try_get("last_used")?,
        activated_at: row.try_get("activated_at")?,
        expiry_warned_ms: row.try_get("expiry_warned_ms")?,
        policy: Effective::of(&own, org.as_ref()),
    })
}

/// When a token's idleness started counting: the latest of its creation, last use and
/// reactivation.
pub fn idle_since(creation: i64, last_used: Option<i64>, activated_at: Option<i64>) -> i64 {
    creation
        .max(last_used.unwrap_or(i64::MIN))
        .max(activated_at.unwrap_or(i64::MIN))
}

/// The warning lead time to announce for a token expiring at `expires`, at `now`: the
/// shortest lead time already reached and shorter than the one announced last (`warned`).
/// Lead times passed while nobody ran the job are not announced late: only the nearest.
pub fn due_lead(leads: &[i64], expires: i64, now: i64, warned: Option<i64>) -> Option<i64> {
    let left = expires - now;
    if left <= 0 {
        return None;
    }
    let nearest = leads.iter().copied().filter(|l| left <= *l).min()?;
    match warned {
        Some(w) if w <= nearest => None,
        _ => Some(nearest),
    }
}

fn token_entry(action: &'static str, id: Id, application: Id, name: &str, body: Value) -> Entry {
    Entry {
        place: Place::Application(application),
        action,
        status: 200,
        primary: None,
        secondary: Some(Target::new("ApiToken", id, name)),
        path_params: audit::path(&[("applicationId", application), ("apiTokenId", id)]),
        body,
    }
}

impl Store {
    /// Application `app`'s policy: its own fields and its organization's default.
    pub async fn application_policy(&self, app: Id) -> Result<ApplicationPolicy> {
        let sql = "SELECT a.owner_type, a.owner_id, ap.application_id AS a_present, \
             ap.max_lifetime_ms AS a_max_lifetime_ms, ap.expiry_required AS a_expiry_required, \
             ap.idle_deactivation_ms AS a_idle_deactivation_ms, \
             ap.warning_leads_ms AS a_warning_leads_ms, op.org_id AS o_org_id, \
             op.max_lifetime_ms AS o_max_lifetime_ms, op.expiry_required AS o_expiry_required, \
             op.idle_deactivation_ms AS o_idle_deactivation_ms, \
             op.warning_leads_ms AS o_warning_leads_ms \
             FROM applications a \
             LEFT JOIN application_token_policies ap ON ap.application_id = a.id \
             LEFT JOIN org_token_policies op ON a.owner_type = 'organization' AND op.org_id = a.owner_id \
             WHERE a.id = $1";
        let row = sqlx::query(sql)
            .bind(app.to_hex())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        let owner_type: String = row.try_get("owner_type")?;
        let org_id = if owner_type == "organization" {
            Some(from_db(&row.try_get::<String, _>("owner_id")?)?)
        } else {
            None
        };
        let org = match row.try_get::<Option<String>, _>("o_org_id")? {
            Some(_) => Some(fields_from_row(&row, "o_")?),
            None => org_id.map(|_| PolicyFields::default()),
        };
        Ok(ApplicationPolicy {
            application_id: app,
            org_id,
            own: fields_from_row(&row, "a_")?,
            org,
        })
    }

    /// The applications of organization `org`, by id.
    pub async fn org_application_ids(&self, org: Id) -> Result<Vec<Id>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM applications WHERE owner_type = 'organization' AND owner_id = $1 \
             ORDER BY id",
        )
        .bind(org.to_hex())
        .fetch_all(&self.pool)
        .await?;
        ids.iter().map(|i| from_db(i)).collect()
    }

    /// Organization `org`'s default policy (all unset when it has none).
    pub async fn org_policy(&self, org: Id) -> Result<PolicyFields> {
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM orgs WHERE id = $1")
            .bind(org.to_hex())
            .fetch_optional(&self.pool)
            .await?;
        exists.ok_or(StoreError::NotFound)?;
        let row = sqlx::query(
            "SELECT max_lifetime_ms, expiry_required, idle_deactivation_ms, warning_leads_ms \
             FROM org_token_policies WHERE org_id = $1",
        )
        .bind(org.to_hex())
        .fetch_optional(&self.pool)
        .await?;
        row.map_or(Ok(PolicyFields::default()), |r| fields_from_row(&r, ""))
    }

    /// The first warning lead time of every application whose policy (or organization's
    /// default) sets its lead times; the others use the default's.
    pub async fn first_leads(&self) -> Result<Vec<(Id, i64)>> {
        let rows = sqlx::query(
            "SELECT a.id, ap.warning_leads_ms AS a_leads, op.warning_leads_ms AS o_leads \
             FROM applications a \
             LEFT JOIN application_token_policies ap ON ap.application_id = a.id \
             LEFT JOIN org_token_policies op ON a.owner_type = 'organization' AND op.org_id = a.owner_id \
             WHERE ap.warning_leads_ms IS NOT NULL OR op.warning_leads_ms IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let app = from_db(&row.try_get::<String, _>("id")?)?;
            let leads = match leads_from(row.try_get("a_leads")?)? {
                Some(l) => l,
                None => leads_from(row.try_get("o_leads")?)?.unwrap_or_default(),
            };
            out.push((app, leads.into_iter().max().unwrap_or(0)));
        }
        Ok(out)
    }

    /// Change application `app`'s own policy, as `actor`: one upsert of the fields given, with
    /// its audit entry (`applicationTokenPolicy.patch`), in one transaction that has locked
    /// the application and checked the actor. Returns the policy as it is afterwards.
    pub async fn set_application_policy(
        &self,
        actor: &Actor,
        app: Id,
        patch: &PolicyPatch,
    ) -> Result<ApplicationPolicy> {
        let mut tx = self
            .begin_in_application(actor, app, Lock::KeyShare)
            .await?;
        upsert(
            &mut tx,
            "application_token_policies",
            "application_id",
            app,
            patch,
        )
        .await?;
        let entry = Entry {
            place: Place::Application(app),
            action: "applicationTokenPolicy.patch",
            status: 200,
            primary: None,
            secondary: None,
            path_params: audit::path(&[("applicationId", app)]),
            body: patch_body(patch),
        };
        audit::record(&mut tx, actor, entry).await?;
        let change = Change::Reads {
            application: Some(app),
            part: Part::Tokens,
        };
        self.commit_with(tx, &[change]).await?;
        self.application_policy(app).await
    }

    /// Change organization `org`'s default policy, as `actor`: as
    /// [`Store::set_application_policy`], audited as `orgTokenPolicy.patch`.
    pub async fn set_org_policy(
        &self,
        actor: &Actor,
        org: Id,
        patch: &PolicyPatch,
    ) -> Result<PolicyFields> {
        let mut tx = self.begin_as(actor).await?;
        let sql = format!(
            "SELECT id FROM orgs WHERE id = $1{}",
            Lock::KeyShare.clause(tx.backend)
        );
        sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
            .bind(org.to_hex())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        upsert(&mut tx, "org_token_policies", "org_id", org, patch).await?;
        let entry = Entry {
            place: Place::Org(org),
            action: "orgTokenPolicy.patch",
            status: 200,
            primary: None,
            secondary: None,
            path_params: audit::path(&[("orgId", org)]),
            body: patch_body(patch),
        };
        audit::record(&mut tx, actor, entry).await?;
        let change = Change::Reads {
            application: None,
            part: Part::Tokens,
        };
        self.commit_with(tx, &[change]).await?;
        self.org_policy(org).await
    }

    // -----------------------------------------------------------------------------------
    // The lease.

    /// Take or renew lease `name` for `holder` until `now + ttl_ms`: one statement, which
    /// succeeds when nobody holds the lease, when it has run out, or when `holder` holds it
    /// already. Returns whether `holder` holds it now.
    pub async fn take_lease(&self, name: &str, holder: Id, ttl_ms: i64) -> Result<bool> {
        let now = crate::now_ms();
        let row = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.expires_at < $4 OR leases.holder = excluded.holder \
             RETURNING holder",
        )
        .bind(name)
        .bind(holder.to_hex())
        .bind(now.saturating_add(ttl_ms))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Give lease `name` up, if `holder` holds it (a node stopping: another takes over at its
    /// next try instead of waiting for the lease to run out).
    pub async fn release_lease(&self, name: &str, holder: Id) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder.to_hex())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Who holds lease `name`, until when (`None`: nobody has taken it).
    pub async fn lease_holder(&self, name: &str) -> Result<Option<(Id, i64)>> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT holder, expires_at FROM leases WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(h, e)| Ok((from_db(&h)?, e))).transpose()
    }

    // -----------------------------------------------------------------------------------
    // The jobs.

    /// Run every job once, at `now`: idle deactivation, expiry warnings, expiry and
    /// retirement announcements. Each is idempotent; see the module documentation.
    pub async fn run_token_jobs(&self, now: i64) -> Result<JobReport> {
        Ok(JobReport {
            idle_deactivated: self.deactivate_idle(now).await?,
            expiring: self.announce_expiring(now).await?,
            expired: self.announce_expired(now).await?,
            retired: self.announce_retired(now).await?,
        })
    }

    /// Switch off, with the reason [`IDLE`], every active, unexpired token of an application
    /// whose policy has an idle deactivation period, unused (by its last use, creation or
    /// reactivation) for longer than that. As a leak report does: the rows locked in id
    /// order, each audited (`applicationApiToken.idleDeactivated`), every node told before
    /// this returns.
    pub async fn deactivate_idle(&self, now: i64) -> Result<Vec<Announced>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(idle_candidates_sql()))
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        let mut due = Vec::new();
        for row in &rows {
            let c = candidate(row)?;
            if let Some(idle) = c.policy.idle_deactivation_ms.0
                && idle_since(c.creation_date, c.last_used, c.activated_at) < now - idle
            {
                due.push((c, now - idle));
            }
        }
        // Locked in id order (sorted here: an ORDER BY would lead the planner to walk every
        // token in id order instead of the few in question).
        due.sort_unstable_by_key(|(c, _)| c.id);
        let mut done = Vec::new();
        for chunk in due.chunks(BATCH) {
            let mut tx = self.begin_write().await?;
            let mut changes = Vec::new();
            for (c, cutoff) in chunk {
                // Locked, and still idle, active and unexpired: the conditions again, in
                // the statement that switches it off.
                let sql = format!(
                    "SELECT digest FROM api_tokens WHERE id = $1 AND status = 'active' \
                     AND retires_at IS NULL AND (expiration_date IS NULL OR expiration_date > $2) \
                     AND creation_date < $3 AND (last_used IS NULL OR last_used < $3) \
                     AND (activated_at IS NULL OR activated_at < $3){}",
                    Lock::Update.clause(tx.backend)
                );
                let digest: Option<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(c.id.to_hex())
                    .bind(now)
                    .bind(*cutoff)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(digest) = digest else { continue };
                let digest: [u8; 32] = digest
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("a token digest is not 32 bytes".into()))?;
                sqlx::query(
                    "UPDATE api_tokens SET status = 'inactive', deactivation_reason = $2, \
                     last_updated = $3 WHERE id = $1",
                )
                .bind(c.id.to_hex())
                .bind(IDLE)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let idle = c.policy.idle_deactivation_ms.0.unwrap_or_default();
                let body = audit::fields([
                    ("status", Some(json!("inactive"))),
                    ("deactivationReason", Some(json!(IDLE))),
                    ("idleDeactivationDays", Some(days(idle))),
                    (
                        "idleSince",
                        Some(audit::iso(idle_since(
                            c.creation_date,
                            c.last_used,
                            c.activated_at,
                        ))),
                    ),
                ]);
                let entry = token_entry(
                    "applicationApiToken.idleDeactivated",
                    c.id,
                    c.application_id,
                    &c.name,
                    body,
                );
                audit::record(&mut tx, &Actor::system(), entry).await?;
                changes.push(Change::Token { id: c.id, digest });
                done.push(Announced {
                    id: c.id,
                    application_id: c.application_id,
                });
            }
            self.commit_with(tx, &changes).await?;
        }
        Ok(done)
    }

    /// Announce (`applicationApiToken.expiring`, with `leadDays` and `expirationDate`) every
    /// unexpired, unrolled token that has come within a warning lead time of its
    /// application's policy closer than the one announced last. Each lead time at most once
    /// per token; after downtime only the nearest one reached.
    pub async fn announce_expiring(&self, now: i64) -> Result<Vec<Announced>> {
        // The longest lead time anywhere bounds which tokens can be due.
        let mut longest = DEFAULT_WARNING_LEADS_MS[0];
        for table in ["application_token_policies", "org_token_policies"] {
            let sql =
                format!("SELECT warning_leads_ms FROM {table} WHERE warning_leads_ms IS NOT NULL");
            let texts: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(&self.pool)
                .await?;
            for t in texts {
                if let Some(l) = leads_from(Some(t))? {
                    longest = longest.max(l.into_iter().max().unwrap_or(0));
                }
            }
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(expiring_candidates_sql()))
            .bind(now)
            .bind(now.saturating_add(longest))
            .fetch_all(&self.pool)
            .await?;
        let mut due = Vec::new();
        for row in &rows {
            let c = candidate(row)?;
            let Some(expires) = c.expiration_date else {
                continue;
            };
            if let Some(lead) = due_lead(
                &c.policy.warning_leads_ms.0,
                expires,
                now,
                c.expiry_warned_ms,
            ) {
                due.push((c, expires, lead));
            }
        }
        due.sort_unstable_by_key(|(c, _, _)| c.id);
        let mut done = Vec::new();
        for chunk in due.chunks(BATCH) {
            let mut tx = self.begin_write().await?;
            for (c, expires, lead) in chunk {
                let marked = sqlx::query(
                    "UPDATE api_tokens SET expiry_warned_ms = $2 WHERE id = $1 \
                     AND (expiry_warned_ms IS NULL OR expiry_warned_ms > $2) \
                     AND retires_at IS NULL AND expiration_date = $3",
                )
                .bind(c.id.to_hex())
                .bind(*lead)
                .bind(*expires)
                .execute(&mut *tx)
                .await?;
                if marked.rows_affected() == 0 {
                    continue;
                }
                let body = audit::fields([
                    ("leadDays", Some(days(*lead))),
                    ("expirationDate", Some(audit::iso(*expires))),
                ]);
                let entry = token_entry(
                    "applicationApiToken.expiring",
                    c.id,
                    c.application_id,
                    &c.name,
                    body,
                );
                audit::record(&mut tx, &Actor::system(), entry).await?;
                done.push(Announced {
                    id: c.id,
                    application_id: c.application_id,
                });
            }
            tx.commit().await?;
        }
        Ok(done)
    }

    /// Announce (`applicationApiToken.expired`) once every token whose expiry has passed
    /// (a rolled token is announced as retired instead).
    pub async fn announce_expired(&self, now: i64) -> Result<Vec<Announced>> {
        self.announce_once(
            now,
            EXPIRED_WHERE,
            "expired_announced = 1 WHERE id = $1 AND expired_announced = 0 \
             AND retires_at IS NULL AND expiration_date <= $2",
            "applicationApiToken.expired",
            |r| {
                Ok(audit::fields([(
                    "expirationDate",
                    r.try_get::<Option<i64>, _>("expiration_date")?
                        .map(audit::iso),
                )]))
            },
        )
        .await
    }

    /// Announce (`applicationApiToken.retired`) once every rolled token whose overlap has
    /// ended.
    pub async fn announce_retired(&self, now: i64) -> Result<Vec<Announced>> {
        self.announce_once(
            now,
            RETIRED_WHERE,
            "retired_announced = 1 WHERE id = $1 AND retired_announced = 0 AND retires_at <= $2",
            "applicationApiToken.retired",
            |r| {
                Ok(audit::fields([(
                    "retiresAt",
                    r.try_get::<Option<i64>, _>("retires_at")?.map(audit::iso),
                )]))
            },
        )
        .await
    }

    /// The shape of the expired and retired announcements: candidates by `select_where`
    /// (`$1`: now), each marked by `mark` (`$1` the token, `$2` now; conditional, so once)
    /// with its audit entry in the same transaction.
    async fn announce_once(
        &self,
        now: i64,
        select_where: &str,
        mark: &str,
        action: &'static str,
        body: impl Fn(&sqlx::any::AnyRow) -> Result<Value>,
    ) -> Result<Vec<Announced>> {
        // No ORDER BY (see `deactivate_idle`): the partial indexes of migration 0012 find the
        // rows, and they are sorted here.
        let sql = format!("{CANDIDATE_SQL} WHERE {select_where}");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        let mut due = rows
            .iter()
            .map(|row| Ok((candidate(row)?, row)))
            .collect::<Result<Vec<_>>>()?;
        due.sort_unstable_by_key(|(c, _)| c.id);
        let mut done = Vec::new();
        for chunk in due.chunks(BATCH) {
            let mut tx = self.begin_write().await?;
            for (c, row) in chunk {
                let sql = format!("UPDATE api_tokens SET {mark}");
                let marked = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(c.id.to_hex())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                if marked.rows_affected() == 0 {
                    continue;
                }
                let entry = token_entry(action, c.id, c.application_id, &c.name, body(row)?);
                audit::record(&mut tx, &Actor::system(), entry).await?;
                done.push(Announced {
                    id: c.id,
                    application_id: c.application_id,
                });
            }
            tx.commit().await?;
        }
        Ok(done)
    }
}

/// Upsert the fields `patch` gives into `table`'s row keyed `key_column = key`: one
/// statement, the other fields untouched (a new row has them unset).
async fn upsert(
    tx: &mut crate::WriteTx,
    table: &str,
    key_column: &str,
    key: Id,
    patch: &PolicyPatch,
) -> Result<()> {
    let leads = match &patch.warning_leads_ms {
        Some(Some(l)) => {
            Some(serde_json::to_string(l).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        }
        _ => None,
    };
    let set = |column: &str, flag: usize| {
        format!("{column} = CASE WHEN ${flag} = 1 THEN excluded.{column} ELSE {table}.{column} END")
    };
    let sql = format!(
        "INSERT INTO {table} ({key_column}, {POLICY_COLUMNS}, last_updated) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT ({key_column}) DO UPDATE SET {}, {}, {}, {}, last_updated = excluded.last_updated",
        set("max_lifetime_ms", 7),
        set("expiry_required", 8),
        set("idle_deactivation_ms", 9),
        set("warning_leads_ms", 10),
    );
    let flag = |given: bool| i64::from(given);
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(key.to_hex())
        .bind(patch.max_lifetime_ms.flatten())
        .bind(patch.expiry_required.flatten().map(i64::from))
        .bind(patch.idle_deactivation_ms.flatten())
        .bind(leads)
        .bind(crate::now_ms())
        .bind(flag(patch.max_lifetime_ms.is_some()))
        .bind(flag(patch.expiry_required.is_some()))
        .bind(flag(patch.idle_deactivation_ms.is_some()))
        .bind(flag(patch.warning_leads_ms.is_some()))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_fields_win_then_the_organization_then_defaults() {
        let app = PolicyFields {
            max_lifetime_ms: Some(10),
            ..Default::default()
        };
        let org = PolicyFields {
            max_lifetime_ms: Some(20),
            idle_deactivation_ms: Some(5),
            ..Default::default()
        };
        let e = Effective::of(&app, Some(&org));
        assert_eq!(e.max_lifetime_ms, (Some(10), Source::Application));
        assert_eq!(e.idle_deactivation_ms, (Some(5), Source::Organization));
        assert_eq!(e.expiry_required, (false, Source::Default));
        assert_eq!(
            e.warning_leads_ms,
            (DEFAULT_WARNING_LEADS_MS.to_vec(), Source::Default)
        );
        assert_eq!(e.first_lead_ms(), 30 * DAY_MS);
        let alone = Effective::of(&PolicyFields::default(), None);
        assert_eq!(alone.max_lifetime_ms, (None, Source::Default));
    }

    #[test]
    fn each_lead_time_is_due_once_and_only_the_nearest_after_downtime() {
        let leads = DEFAULT_WARNING_LEADS_MS;
        let now = 1_000 * DAY_MS;
        assert_eq!(due_lead(&leads, now + 40 * DAY_MS, now, None), None);
        assert_eq!(
            due_lead(&leads, now + 20 * DAY_MS, now, None),
            Some(30 * DAY_MS)
        );
        assert_eq!(
            due_lead(&leads, now + 20 * DAY_MS, now, Some(30 * DAY_MS)),
            None
        );
        assert_eq!(
            due_lead(&leads, now + 5 * DAY_MS, now, Some(30 * DAY_MS)),
            Some(7 * DAY_MS)
        );
        // Down from 20 days before until 12 hours before: only the 1-day warning.
        assert_eq!(
            due_lead(&leads, now + DAY_MS / 2, now, Some(30 * DAY_MS)),
            Some(DAY_MS)
        );
        assert_eq!(due_lead(&leads, now + DAY_MS / 2, now, Some(DAY_MS)), None);
        assert_eq!(due_lead(&leads, now - 1, now, None), None);
    }

    #[test]
    fn idleness_counts_from_the_latest_sign_of_life() {
        assert_eq!(idle_since(5, None, None), 5);
        assert_eq!(idle_since(5, Some(9), None), 9);
        assert_eq!(idle_since(5, Some(9), Some(12)), 12);
        assert_eq!(days(DAY_MS * 3), json!(3));
        assert_eq!(days(DAY_MS / 2), json!(0.5));
    }
}
