//! The usage panel of a token's detail page (issue 13) and the "Create a narrower
//! replacement" pre-fill of the add form.
//!
//! Everything shown comes from [`crate::api::token_usage::report`], the function behind
//! `GET /applications/{applicationId}/tokens/{apiTokenId}/usage`: this module only turns its
//! answer into rows for the template (`templates/token_usage.html`), so the page and the API
//! can never disagree.

use serde_json::Value;
use tollgate_core::Scope;
use tollgate_core::restrictions::Restrictions;
use tollgate_store::Id;
use tollgate_store::tokens::TokenRecord;

use super::restrictions_form::RestrictionFields;
use super::view::When;
use crate::api::token_usage::{WINDOWS, report};
use crate::error::ApiResult;
use crate::state::AppState;

/// Granted-but-unused actions listed open; more are folded under their count.
const UNUSED_SHOWN_OPEN: usize = 12;

/// One count of the table: its window's label ("7 days", shown beside it on a phone) and the
/// number.
pub struct Cell {
    pub window: &'static str,
    pub n: i64,
}

/// The cells of one row, in [`WINDOWS`] order.
fn cells(counts: impl Iterator<Item = i64>) -> Vec<Cell> {
    WINDOW_LABELS
        .iter()
        .zip(counts)
        .map(|(window, n)| Cell { window, n })
        .collect()
}

/// The labels of [`WINDOWS`].
const WINDOW_LABELS: [&str; 4] = ["Last day", "7 days", "30 days", "90 days"];

/// One line of the counts table: an action and one outcome, over the four windows.
pub struct CountRow {
    pub action: String,
    /// "Authorized", or why it was refused in plain words.
    pub outcome: String,
    pub refused: bool,
    /// A 403 for an action the scope does not grant: the missing permission is the action.
    pub missing: bool,
    /// Counts in [`WINDOWS`] order.
    pub counts: Vec<Cell>,
}

/// The totals of one outcome ("Authorized" or "Refused") over the four windows.
pub struct TotalRow {
    pub label: &'static str,
    pub refused: bool,
    pub counts: Vec<Cell>,
}

/// One of the token's recent requests.
pub struct RecentRow {
    pub when: When,
    pub action: String,
    pub status: i64,
    pub ok: bool,
    pub address: String,
    pub agent: String,
}

/// What the usage panel shows.
pub struct UsageView {
    /// Usage is recorded on this server (`--token-usage on`).
    pub recording: bool,
    /// "Last day", "7 days", … in [`WINDOWS`] order.
    pub windows: Vec<&'static str>,
    pub totals: Vec<TotalRow>,
    pub rows: Vec<CountRow>,
    pub recent: Vec<RecentRow>,
    /// Granted actions not used in 90 days.
    pub unused: Vec<String>,
    /// Fold the unused list (it is long: a broad scope).
    pub unused_folded: bool,
    /// The explicit actions it used: the narrowest scope that would have served it.
    pub suggested: Vec<String>,
    /// Actions refused for a missing permission (not in the suggestion).
    pub missing: Vec<String>,
    /// The add form pre-filled with the suggestion (when there is one and the reader may add).
    pub replace_href: Option<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A refusal in plain words, by status; `granted` says whether the scope grants the action.
fn refusal(status: u16, action: &str, granted: bool) -> (String, bool) {
    match status {
        401 => ("Refused: token inactive or expired (401)".to_owned(), false),
        403 if !granted => (format!("Refused: missing permission {action} (403)"), true),
        403 => (
            "Refused: outside the token's restrictions (403)".to_owned(),
            false,
        ),
        404 => (
            "Refused: not found — another application, or a device outside its restrictions (404)"
                .to_owned(),
            false,
        ),
        429 => (
            "Refused: rate or usage limit reached (429)".to_owned(),
            false,
        ),
        s => (format!("Refused ({s})"), false),
    }
}

/// The period of `days` in the report.
fn period(report: &Value, days: i64) -> Option<&Value> {
    report["periods"]
        .as_array()?
        .iter()
        .find(|p| p["days"] == days)
}

/// The count of `action` with `outcome` (0: authorized; else a status) in the period.
fn count_in(period: Option<&Value>, action: &str, outcome: u16) -> i64 {
    let Some(a) = period.and_then(|p| {
        p["actions"]
            .as_array()?
            .iter()
            .find(|a| a["action"] == action)
    }) else {
        return 0;
    };
    if outcome == 0 {
        a["authorized"].as_i64().unwrap_or(0)
    } else {
        a["refusedByStatus"][outcome.to_string()]
            .as_i64()
            .unwrap_or(0)
    }
}

impl UsageView {
    /// Build the panel from the API's usage report of `token`.
    pub fn from_report(report: &Value, token: &TokenRecord, replace_href: Option<String>) -> Self {
        let scope = Scope::parse(&token.scope).ok().map(|s| s.compile());
        let grants = |action: &str| {
            scope
                .as_ref()
                .is_some_and(|s| s.iter().any(|a| a.name() == action))
        };
        let periods: Vec<Option<&Value>> = WINDOWS.iter().map(|d| period(report, *d)).collect();
        let totals = [
            ("Authorized", "authorized", false),
            ("Refused", "refused", true),
        ]
        .into_iter()
        .map(|(label, key, refused)| TotalRow {
            label,
            refused,
            counts: cells(
                periods
                    .iter()
                    .map(|p| p.and_then(|p| p[key].as_i64()).unwrap_or(0)),
            ),
        })
        .collect();
        // The widest window holds every (action, outcome) of the narrower ones.
        let mut rows = Vec::new();
        if let Some(actions) = periods
            .last()
            .copied()
            .flatten()
            .and_then(|p| p["actions"].as_array())
        {
            for a in actions {
                let name = a["action"].as_str().unwrap_or_default().to_owned();
                let mut outcomes: Vec<u16> = Vec::new();
                if a["authorized"].as_i64().unwrap_or(0) > 0 {
                    outcomes.push(0);
                }
                if let Some(by) = a["refusedByStatus"].as_object() {
                    outcomes.extend(by.keys().filter_map(|s| s.parse::<u16>().ok()));
                }
                for outcome in outcomes {
                    let (label, missing) = if outcome == 0 {
                        ("Authorized".to_owned(), false)
                    } else {
                        refusal(outcome, &name, grants(&name))
                    };
                    rows.push(CountRow {
                        counts: cells(periods.iter().map(|p| count_in(*p, &name, outcome))),
                        action: name.clone(),
                        outcome: label,
                        refused: outcome != 0,
                        missing,
                    });
                }
            }
        }
        let recent = report["recentRequests"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|r| {
                        let status = r["status"].as_i64().unwrap_or(0);
                        RecentRow {
                            when: When::at_seconds(
                                r["time"]
                                    .as_str()
                                    .and_then(crate::time::parse_iso)
                                    .unwrap_or(0),
                            ),
                            action: r["action"].as_str().unwrap_or_default().to_owned(),
                            status,
                            ok: (200..400).contains(&status),
                            address: r["clientAddress"].as_str().unwrap_or("").to_owned(),
                            agent: r["userAgent"].as_str().unwrap_or("").to_owned(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let unused = strings(&report["grantedUnused"]);
        let suggested = strings(&report["suggestedScope"]);
        let missing = strings(&report["refusedActions"])
            .into_iter()
            .filter(|a| !grants(a))
            .collect();
        UsageView {
            recording: report["recording"].as_bool().unwrap_or(false),
            windows: WINDOW_LABELS.to_vec(),
            totals,
            rows,
            recent,
            unused_folded: unused.len() > UNUSED_SHOWN_OPEN,
            unused,
            replace_href: replace_href.filter(|_| !suggested.is_empty()),
            suggested,
            missing,
        }
    }
}

/// The add form pre-filled as a narrower replacement of `token`.
pub fn replace_href(app: Id, token: Id) -> String {
    format!("{}/applications/{app}/tokens/new?from={token}", super::BASE)
}

/// The usage panel of `token` (the API's report, flushed first).
pub async fn panel(
    state: &AppState,
    app: Id,
    token: &TokenRecord,
    replace_href: Option<String>,
) -> ApiResult<UsageView> {
    let r = report(state, app, token.id).await?;
    Ok(UsageView::from_report(&r, token, replace_href))
}

/// The suggested narrowest scope of `token` (what the narrower replacement is pre-filled
/// with).
pub async fn suggested_scope(state: &AppState, app: Id, token: Id) -> ApiResult<Vec<String>> {
    let r = report(state, app, token).await?;
    Ok(strings(&r["suggestedScope"]))
}

/// A token's restrictions as the add form's fields (for the narrower replacement).
pub fn restriction_fields(token: &TokenRecord) -> RestrictionFields {
    let Ok(r) = Restrictions::from_stored(token.restrictions.as_deref()) else {
        return RestrictionFields::default();
    };
    let mut f = RestrictionFields::default();
    if let Some(d) = &r.devices {
        f.device_ids = d.ids.join("\n");
        f.device_tags = d
            .tags
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
    }
    if let Some(a) = &r.addresses {
        f.addresses = a
            .networks()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
    }
    if let Some(rate) = &r.rate {
        f.rate_requests = rate.requests.to_string();
        f.rate_seconds = rate.per_seconds.to_string();
    }
    if let Some(q) = &r.quota {
        f.usage_limit = q.uses.to_string();
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_in_plain_words() {
        assert_eq!(
            refusal(403, "devices.post", false),
            (
                "Refused: missing permission devices.post (403)".to_owned(),
                true
            )
        );
        assert!(!refusal(403, "devices.post", true).1);
        assert!(refusal(401, "x", true).0.contains("inactive or expired"));
        assert_eq!(WINDOWS, [1, 7, 30, 90], "the labels say these windows");
        let row = cells([1, 2, 3, 4].into_iter());
        assert_eq!((row[0].window, row[3].n), ("Last day", 4));
    }
}
