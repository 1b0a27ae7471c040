//! `applicationApiToken.usage` (extension): what one token did — requests per action in the
//! last 1, 7, 30 and 90 days, authorized and refused; its last 100 requests; the actions its
//! scope grants that it did not use in 90 days; and the narrowest scope that would have
//! served it (the explicit actions it used).
//!
//! Counts come from the database after this node's own pending counts are flushed; other
//! nodes' appear once they flush (`--last-used-flush-secs`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tollgate_core::{Action, Scope};
use tollgate_store::Id;
use tollgate_store::usage::DAY_MS;

use crate::auth::AppAccess;
use crate::error::{ApiError, ApiResult};
use crate::extract::Path;
use crate::state::AppState;
use crate::time::iso;

/// The windows reported, in days.
pub const WINDOWS: [i64; 4] = [1, 7, 30, 90];

#[derive(Default)]
struct Tally {
    authorized: i64,
    refused: i64,
    /// Refusals by status (401, 403, 404).
    refused_by: BTreeMap<u16, i64>,
}

impl Tally {
    fn add(&mut self, outcome: u16, count: i64) {
        if outcome == 0 {
            self.authorized += count;
        } else {
            self.refused += count;
            *self.refused_by.entry(outcome).or_default() += count;
        }
    }

    fn json(&self) -> Value {
        let by: serde_json::Map<String, Value> = self
            .refused_by
            .iter()
            .map(|(s, n)| (s.to_string(), json!(n)))
            .collect();
        json!({ "authorized": self.authorized, "refused": self.refused, "refusedByStatus": by })
    }
}

/// The usage report of one token (what the console's token page shows, too).
pub async fn report(state: &AppState, application: Id, token_id: Id) -> ApiResult<Value> {
    if let Err(e) = state.usage().flush(state.store()).await {
        tracing::warn!(error = %e, "could not record token usage before a usage report");
    }
    let token = state
        .store()
        .token(application, token_id)
        .await
        .map_err(|e| ApiError::from_store(e, "API token"))?;
    let today = tollgate_store::now_ms().div_euclid(DAY_MS);
    let rows = state.store().token_usage(token_id, today - 89).await?;
    let mut periods = Vec::new();
    for days in WINDOWS {
        let mut total = Tally::default();
        let mut by_action: BTreeMap<&str, Tally> = BTreeMap::new();
        for (action, day, outcome, count) in &rows {
            if *day > today - days {
                total.add(*outcome, *count);
                by_action
                    .entry(action.as_str())
                    .or_default()
                    .add(*outcome, *count);
            }
        }
        let actions: Vec<Value> = by_action
            .iter()
            .map(|(a, t)| {
                let mut v = t.json();
                v["action"] = json!(a);
                v
            })
            .collect();
        let mut p = total.json();
        p["days"] = json!(days);
        p["actions"] = json!(actions);
        periods.push(p);
    }
    let used: Vec<&str> = rows
        .iter()
        .filter(|(_, _, outcome, _)| *outcome == 0)
        .map(|(a, ..)| a.as_str())
        .collect();
    let refused: Vec<&str> = rows
        .iter()
        .filter(|(_, _, outcome, _)| *outcome == 403)
        .map(|(a, ..)| a.as_str())
        .collect();
    let granted = Scope::parse(&token.scope)
        .map(|s| s.compile())
        .unwrap_or_default();
    let in_order = |keep: &dyn Fn(Action) -> bool| -> Vec<&'static str> {
        Action::application_actions()
            .filter(|d| keep(d.action))
            .map(|d| d.name)
            .collect()
    };
    let unused = in_order(&|a| granted.contains(a) && !used.contains(&a.name()));
    let suggested = in_order(&|a| used.contains(&a.name()));
    let missing = in_order(&|a| refused.contains(&a.name()));
    let recent: Vec<Value> = state
        .store()
        .token_requests(token_id)
        .await?
        .into_iter()
        .map(|r| {
            json!({
                "time": iso(r.at),
                "action": r.action,
                "status": r.status,
                "clientAddress": r.client_address,
                "userAgent": r.user_agent,
            })
        })
        .collect();
    Ok(json!({
        "apiTokenId": token.id,
        "applicationId": token.application_id,
        "name": token.name,
        "description": token.description,
        "scope": token.scope,
        "recording": state.usage().enabled(),
        "periods": periods,
        "recentRequests": recent,
        "grantedUnused": unused,
        "refusedActions": missing,
        "suggestedScope": suggested,
    }))
}

/// `GET /applications/{applicationId}/tokens/{apiTokenId}/usage`.
pub async fn get(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, token_id)): Path<(Id, Id)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(report(&state, access.application(), token_id).await?))
}
