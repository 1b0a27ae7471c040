//! Token policies (issue 15, item 2): what a new token must satisfy in an application, which
//! existing tokens break the policy (listed, never changed by a policy write), and the
//! warning lead times every node needs without I/O for the `Tollgate-Token-Expires` header.
//!
//! The effective policy of an application is its own fields over its organization's default
//! over the built-in defaults (`tollgate_store::policy::Effective`); the REST handlers and
//! the console both call these functions.

use std::collections::HashMap;
use std::sync::RwLock;

use serde_json::{Value, json};
use tollgate_store::policy::{
    ApplicationPolicy, DAY_MS, Effective, PolicyFields, PolicyPatch, days, idle_since,
};
use tollgate_store::tokens::{TokenRecord, TokenStatus};
use tollgate_store::{Actor, Id, Store};

use crate::error::ApiError;
use crate::service::lifecycle::{FIRST_WARNING_LEAD_MS, State as Life};
use crate::time::iso;

/// The longest span a policy field may give: 100 years.
pub const MAX_DAYS: f64 = 36_500.0;

/// Most warning lead times one policy may have.
pub const MAX_LEADS: usize = 10;

/// Violating tokens listed in one answer, at most (the count is of all).
pub const MAX_VIOLATORS_LISTED: usize = 100;

/// A rule of a policy, by its API field name.
pub const MAX_LIFETIME: &str = "maxLifetimeDays";
pub const EXPIRY_REQUIRED: &str = "expiryRequired";
pub const IDLE_DEACTIVATION: &str = "idleDeactivationDays";

/// Days (a JSON number, fractions allowed) as milliseconds, or a message naming the field.
fn days_ms(field: &str, v: f64) -> Result<i64, ApiError> {
    if !v.is_finite() || v <= 0.0 || v > MAX_DAYS {
        return Err(ApiError::validation(format!(
            "{field} must be a number of days greater than 0 and at most {MAX_DAYS}, or null to unset it"
        )));
    }
    let ms = (v * DAY_MS as f64).round() as i64;
    if ms < 1_000 {
        return Err(ApiError::validation(format!(
            "{field} must be at least one second (0.0000116 days)"
        )));
    }
    Ok(ms)
}

/// A PATCH body (already valid against `tokenPolicyPatch`) as a store patch, every field
/// checked before anything is written.
pub fn parse_patch(body: &serde_json::Map<String, Value>) -> Result<PolicyPatch, ApiError> {
    let mut patch = PolicyPatch::default();
    for (k, v) in body {
        match k.as_str() {
            MAX_LIFETIME => {
                patch.max_lifetime_ms = Some(match v.as_f64() {
                    None if v.is_null() => None,
                    None => return Err(days_ms(MAX_LIFETIME, f64::NAN).unwrap_err()),
                    Some(d) => Some(days_ms(MAX_LIFETIME, d)?),
                })
            }
            IDLE_DEACTIVATION => {
                patch.idle_deactivation_ms = Some(match v.as_f64() {
                    None if v.is_null() => None,
                    None => return Err(days_ms(IDLE_DEACTIVATION, f64::NAN).unwrap_err()),
                    Some(d) => Some(days_ms(IDLE_DEACTIVATION, d)?),
                })
            }
            EXPIRY_REQUIRED => {
                patch.expiry_required = Some(match v {
                    Value::Null => None,
                    Value::Bool(b) => Some(*b),
                    _ => {
                        return Err(ApiError::validation(
                            "expiryRequired must be true, false or null",
                        ));
                    }
                })
            }
            "warningLeadDays" => {
                patch.warning_leads_ms = Some(match v {
                    Value::Null => None,
                    Value::Array(items) => {
                        if items.len() > MAX_LEADS {
                            return Err(ApiError::validation(format!(
                                "warningLeadDays may hold at most {MAX_LEADS} lead times"
                            )));
                        }
                        let mut leads = Vec::with_capacity(items.len());
                        for i in items {
                            let d = i.as_f64().unwrap_or(f64::NAN);
                            leads.push(days_ms("each of warningLeadDays", d)?);
                        }
                        leads.sort_unstable_by(|a, b| b.cmp(a));
                        leads.dedup();
                        Some(leads)
                    }
                    _ => {
                        return Err(ApiError::validation(
                            "warningLeadDays must be an array of numbers of days, or null",
                        ));
                    }
                })
            }
            other => {
                return Err(ApiError::validation(format!(
                    "{other} is not a token policy field (maxLifetimeDays, expiryRequired, idleDeactivationDays, warningLeadDays)"
                )));
            }
        }
    }
    Ok(patch)
}

/// Why a new token (created or rolled) with expiry `expires`, at `now`, breaks `policy`:
/// the message names the rule.
pub fn refuse_new(policy: &Effective, expires: Option<i64>, now: i64) -> Option<String> {
    let (max, max_from) = policy.max_lifetime_ms;
    let (required, req_from) = policy.expiry_required;
    if let Some(max) = max {
        let latest = now + max;
        return match expires {
            None => Some(format!(
                "The token policy ({} maxLifetimeDays: {}) requires an expirationDate no later than {}: a token that never expires is not allowed",
                max_from.as_str(),
                days(max),
                iso(latest)
            )),
            Some(e) if e > latest => Some(format!(
                "The token policy ({} maxLifetimeDays: {}) allows an expirationDate no later than {}",
                max_from.as_str(),
                days(max),
                iso(latest)
            )),
            Some(_) => None,
        };
    }
    if required && expires.is_none() {
        return Some(format!(
            "The token policy ({} expiryRequired: true) requires an expirationDate: a token that never expires is not allowed",
            req_from.as_str()
        ));
    }
    None
}

/// The rules of `policy` an existing token breaks, at `now` (an expired, retired token is
/// past caring and breaks none; an inactive one is still listed for its lifetime).
pub fn broken_rules(
    policy: &Effective,
    t: &TokenRecord,
    last_used: Option<i64>,
    now: i64,
) -> Vec<&'static str> {
    let mut rules = Vec::new();
    if matches!(Life::of(t, now), Life::Expired | Life::Retired) {
        return rules;
    }
    if let Some(max) = policy.max_lifetime_ms.0 {
        let too_long = match t.expiration_date {
            None => true,
            Some(e) => e - t.creation_date > max,
        };
        if too_long {
            rules.push(MAX_LIFETIME);
        }
    }
    if policy.expiry_required.0 && t.expiration_date.is_none() {
        rules.push(EXPIRY_REQUIRED);
    }
    if let Some(idle) = policy.idle_deactivation_ms.0
        && t.status == TokenStatus::Active
        && idle_since(t.creation_date, last_used, t.life.activated_at) < now - idle
    {
        rules.push(IDLE_DEACTIVATION);
    }
    rules
}

/// A token breaking a policy, as listed.
#[derive(Clone, Debug)]
pub struct Violator {
    pub token: TokenRecord,
    pub rules: Vec<&'static str>,
}

/// Every token of `app` that breaks `policy` now (in name order), unchanged.
pub async fn violators(
    state: &crate::state::AppState,
    app: Id,
    policy: &Effective,
) -> Result<Vec<Violator>, ApiError> {
    let now = tollgate_store::now_ms();
    let mut out = Vec::new();
    state
        .store()
        .for_each_token(Some(app), |t| {
            let used = crate::service::tokens::last_used(state, &t);
            let rules = broken_rules(policy, &t, used, now);
            if !rules.is_empty() {
                out.push(Violator { token: t, rules });
            }
        })
        .await?;
    Ok(out)
}

/// Days, or null.
fn opt_days(v: Option<i64>) -> Value {
    v.map_or(Value::Null, days)
}

/// A level's own fields, as the API shows them (`null`: not set at this level).
pub fn fields_json(f: &PolicyFields) -> Value {
    json!({
        "maxLifetimeDays": opt_days(f.max_lifetime_ms),
        "expiryRequired": f.expiry_required,
        "idleDeactivationDays": opt_days(f.idle_deactivation_ms),
        "warningLeadDays": f.warning_leads_ms.as_ref().map(|l| l.iter().map(|m| days(*m)).collect::<Vec<_>>()),
    })
}

/// The effective values and where each comes from.
pub fn effective_json(e: &Effective) -> Value {
    json!({
        "maxLifetimeDays": opt_days(e.max_lifetime_ms.0),
        "expiryRequired": e.expiry_required.0,
        "idleDeactivationDays": opt_days(e.idle_deactivation_ms.0),
        "warningLeadDays": e.warning_leads_ms.0.iter().map(|m| days(*m)).collect::<Vec<_>>(),
        "sources": {
            "maxLifetimeDays": e.max_lifetime_ms.1.as_str(),
            "expiryRequired": e.expiry_required.1.as_str(),
            "idleDeactivationDays": e.idle_deactivation_ms.1.as_str(),
            "warningLeadDays": e.warning_leads_ms.1.as_str(),
        },
    })
}

/// An application's policy as `applicationTokenPolicy.get` and `.patch` answer it: the
/// effective values with their sources, the application's own fields, the organization's
/// default, and the tokens that break the effective policy.
pub async fn application_json(
    state: &crate::state::AppState,
    p: &ApplicationPolicy,
) -> Result<Value, ApiError> {
    let e = p.effective();
    let mut out = effective_json(&e);
    out["applicationId"] = json!(p.application_id);
    out["orgId"] = json!(p.org_id);
    out["own"] = fields_json(&p.own);
    out["organizationDefault"] = p.org.as_ref().map_or(Value::Null, fields_json);
    let found = violators(state, p.application_id, &e).await?;
    out["violatorCount"] = json!(found.len());
    out["violators"] = Value::Array(
        found
            .iter()
            .take(MAX_VIOLATORS_LISTED)
            .map(violator_json)
            .collect(),
    );
    Ok(out)
}

pub fn violator_json(v: &Violator) -> Value {
    json!({
        "apiTokenId": v.token.id,
        "applicationId": v.token.application_id,
        "name": v.token.name,
        "status": v.token.status.as_str(),
        "expirationDate": v.token.expiration_date.map(iso),
        "creationDate": iso(v.token.creation_date),
        "rules": v.rules,
    })
}

/// Change application `app`'s own policy (no token is changed); the answer lists the
/// tokens that break the new effective policy.
pub async fn patch_application(
    state: &crate::state::AppState,
    actor: &Actor,
    app: Id,
    patch: &PolicyPatch,
) -> Result<ApplicationPolicy, ApiError> {
    let p = state
        .store()
        .set_application_policy(actor, app, patch)
        .await
        .map_err(|e| ApiError::from_store(e, "Application"))?;
    state.leads().set(app, p.effective().first_lead_ms());
    tracing::info!(application = %app, "token policy changed");
    Ok(p)
}

/// Change organization `org`'s default policy.
pub async fn patch_org(
    state: &crate::state::AppState,
    actor: &Actor,
    org: Id,
    patch: &PolicyPatch,
) -> Result<PolicyFields, ApiError> {
    let p = state
        .store()
        .set_org_policy(actor, org, patch)
        .await
        .map_err(|e| ApiError::from_store(e, "Organization"))?;
    if let Err(e) = state.leads().refresh(state.store()).await {
        tracing::warn!(error = %e, "could not reload warning lead times");
    }
    tracing::info!(org = %org, "organization token policy changed");
    Ok(p)
}

/// Check a new token's expiry against `app`'s effective policy (creation and roll).
pub async fn check_new(store: &Store, app: Id, expires: Option<i64>) -> Result<(), ApiError> {
    let p = store
        .application_policy(app)
        .await
        .map_err(|e| ApiError::from_store(e, "Application"))?;
    match refuse_new(&p.effective(), expires, tollgate_store::now_ms()) {
        Some(why) => Err(ApiError::validation(why)),
        None => Ok(()),
    }
}

/// The first warning lead time of each application whose policy sets lead times, in memory
/// on every node (the guard adds `Tollgate-Token-Expires` without I/O). Reloaded by every
/// node's background loop and at once by a node that changes a policy.
#[derive(Default)]
pub struct Leads {
    first: RwLock<HashMap<Id, i64>>,
}

impl Leads {
    /// Application `app`'s first warning lead time, in milliseconds.
    pub fn first(&self, app: Id) -> i64 {
        self.first
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&app)
            .copied()
            .unwrap_or(FIRST_WARNING_LEAD_MS)
    }

    pub fn set(&self, app: Id, first: i64) {
        self.first
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(app, first);
    }

    /// Reload every application's from the database.
    pub async fn refresh(&self, store: &Store) -> tollgate_store::Result<()> {
        let all: HashMap<Id, i64> = store.first_leads().await?.into_iter().collect();
        *self.first.write().unwrap_or_else(|p| p.into_inner()) = all;
        Ok(())
    }

    /// Whether `expires` falls within `app`'s first warning lead time from `now`.
    pub fn expiring_soon(&self, app: Id, expires: Option<i64>, now: i64) -> bool {
        let lead = self.first(app);
        expires.is_some_and(|e| e > now && e - now <= lead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_store::policy::Source;

    fn policy(max: Option<i64>, required: bool) -> Effective {
        Effective {
            max_lifetime_ms: (max, Source::Application),
            expiry_required: (required, Source::Organization),
            idle_deactivation_ms: (None, Source::Default),
            warning_leads_ms: (vec![DAY_MS], Source::Default),
        }
    }

    #[test]
    fn new_tokens_are_refused_naming_the_rule() {
        let now = 1_000 * DAY_MS;
        let p = policy(Some(30 * DAY_MS), false);
        assert!(refuse_new(&p, Some(now + 30 * DAY_MS), now).is_none());
        let why = refuse_new(&p, Some(now + 31 * DAY_MS), now).unwrap();
        assert!(why.contains("maxLifetimeDays: 30"), "{why}");
        assert!(why.contains("application"), "{why}");
        assert!(refuse_new(&p, None, now).unwrap().contains("never expires"));
        let p = policy(None, true);
        let why = refuse_new(&p, None, now).unwrap();
        assert!(
            why.contains("expiryRequired") && why.contains("organization"),
            "{why}"
        );
        assert!(refuse_new(&p, Some(now + 9_999 * DAY_MS), now).is_none());
        assert!(refuse_new(&policy(None, false), None, now).is_none());
    }

    #[test]
    fn patches_are_checked_field_by_field() {
        let parse = |v: Value| parse_patch(v.as_object().unwrap());
        let p = parse(json!({ "maxLifetimeDays": 0.5, "warningLeadDays": [1, 30, 7, 7] })).unwrap();
        assert_eq!(p.max_lifetime_ms, Some(Some(DAY_MS / 2)));
        assert_eq!(
            p.warning_leads_ms,
            Some(Some(vec![30 * DAY_MS, 7 * DAY_MS, DAY_MS]))
        );
        assert_eq!(p.expiry_required, None);
        let p = parse(json!({ "idleDeactivationDays": null, "expiryRequired": false })).unwrap();
        assert_eq!(p.idle_deactivation_ms, Some(None));
        assert_eq!(p.expiry_required, Some(Some(false)));
        for bad in [
            json!({ "maxLifetimeDays": 0 }),
            json!({ "maxLifetimeDays": -3 }),
            json!({ "maxLifetimeDays": "ten" }),
            json!({ "idleDeactivationDays": 40000 }),
            json!({ "warningLeadDays": [1, 0] }),
            json!({ "warningLeadDays": 7 }),
            json!({ "expiryRequired": "yes" }),
            json!({ "maxLifeDays": 3 }),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }
}
