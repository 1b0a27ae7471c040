//! The audit log: `auditLogs.get`, `auditLog.get` (an organization's) and the extension
//! `applicationAuditLogs.get` (one application's, for a sandbox application's owner above all).
//!
//! Entries are written by the store, in the transaction of each change
//! (`tollgate_store::audit`); this module reads them and prunes them after the retention
//! period.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_store::Id;
use tollgate_store::audit::{AUDIT_FIELDS, AuditEntry, AuditFilter, AuditQuery, LogOf, Match};

use crate::auth::{AppAccess, OrgAccess};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ListParams, Path, Query};
use crate::limits;
use crate::state::AppState;
use crate::time::{iso, parse_iso};

/// A list sent as `x[0][…]` (an object keyed by index) or as a sequence.
#[derive(Deserialize)]
#[serde(untagged)]
enum Many<T> {
    List(Vec<T>),
    Indexed(BTreeMap<String, T>),
}

impl<T> Many<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            Many::List(v) => v,
            Many::Indexed(m) => m.into_values().collect(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MatchQuery {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RequestQuery {
    resource: Option<String>,
    action: Option<String>,
}

/// The reference `auditLogFilter`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FilterQuery {
    primary_target: Option<Many<MatchQuery>>,
    secondary_target: Option<Many<MatchQuery>>,
    actor: Option<Many<MatchQuery>>,
    request: Option<Many<RequestQuery>>,
    response_code: Option<Many<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    #[serde(flatten)]
    list: ListParams,
    start: Option<String>,
    end: Option<String>,
    audit_log_filter: Option<FilterQuery>,
}

/// A time bound: milliseconds since the epoch, or an ISO 8601 date-time.
fn bound(value: Option<&str>, name: &str) -> Result<Option<i64>, ApiError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    v.parse::<i64>()
        .ok()
        .or_else(|| parse_iso(v))
        .map(Some)
        .ok_or_else(|| {
            ApiError::validation(format!(
                "{name} must be milliseconds since the epoch or an ISO 8601 date-time"
            ))
        })
}

fn matches(list: Option<Many<MatchQuery>>, name: &str) -> Result<Vec<Match>, ApiError> {
    let list = list.map(Many::into_vec).unwrap_or_default();
    limits::at_most(name, list.len(), limits::MAX_TAG_FILTERS)?;
    list.into_iter()
        .map(|m| {
            let id =
                m.id.map(|s| {
                    s.parse::<Id>().map_err(|_| {
                        ApiError::validation(format!(
                            "auditLogFilter.{name} ids are 24 hexadecimal characters"
                        ))
                    })
                })
                .transpose()?;
            Ok(Match {
                kind: m.kind,
                id,
                name: m.name,
            })
        })
        .collect()
}

fn filter(q: Option<FilterQuery>) -> Result<AuditFilter, ApiError> {
    let q = q.unwrap_or_default();
    let request: Vec<RequestQuery> = q.request.map(Many::into_vec).unwrap_or_default();
    limits::at_most("request", request.len(), limits::MAX_TAG_FILTERS)?;
    let codes: Vec<String> = q.response_code.map(Many::into_vec).unwrap_or_default();
    limits::at_most("responseCode", codes.len(), limits::MAX_TAG_FILTERS)?;
    Ok(AuditFilter {
        primary_target: matches(q.primary_target, "primaryTarget")?,
        secondary_target: matches(q.secondary_target, "secondaryTarget")?,
        actor: matches(q.actor, "actor")?,
        request: request
            .into_iter()
            .map(|r| (r.resource, r.action))
            .collect(),
        response_code: codes
            .iter()
            .map(|c| {
                c.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|c| (100..=599).contains(c))
                    .ok_or_else(|| {
                        ApiError::validation(
                            "auditLogFilter.responseCode entries are HTTP statuses (100-599)",
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
    })
}

/// The actor types the store records for the `tollgate` command, for a leak report (someone
/// without credentials) and for the background jobs: the reference has no such actors, so
/// such entries carry no `actorType` (and no `actorId`); `actorName` is `operator`, `leak
/// report` or `tollgate`.
const NOT_IN_REFERENCE: [&str; 3] = ["Operator", "Anonymous", "System"];

/// An entry as the API shows it: the reference `auditLog` fields, and Tollgate's extras
/// `applicationId` and `clientAddress`.
pub fn entry_json(e: &AuditEntry) -> Value {
    let mut v = json!({
        "id": e.id,
        "auditLogId": e.id,
        "creationDate": iso(e.creation_date),
        "requestResource": e.request_resource,
        "requestAction": e.request_action,
        "requestPathParams": e.request_path_params,
        "requestQueryParams": {},
        "requestBody": e.request_body,
        "responseStatus": e.response_status,
    });
    let mut put = |k: &str, val: Option<Value>| {
        if let Some(val) = val {
            v[k] = val;
        }
    };
    put("orgId", e.org_id.map(|i| json!(i)));
    put("applicationId", e.application_id.map(|i| json!(i)));
    put(
        "actorType",
        (!NOT_IN_REFERENCE.contains(&e.actor_type.as_str())).then(|| json!(e.actor_type)),
    );
    put("actorId", e.actor_id.map(|i| json!(i)));
    put("actorName", e.actor_name.as_ref().map(|n| json!(n)));
    put("clientAddress", e.client_address.as_ref().map(|a| json!(a)));
    for (prefix, t) in [
        ("primaryTarget", &e.primary_target),
        ("secondaryTarget", &e.secondary_target),
    ] {
        if let Some(t) = t {
            put(&format!("{prefix}Id"), Some(json!(t.id)));
            put(&format!("{prefix}Type"), Some(json!(t.kind)));
            put(&format!("{prefix}Name"), t.name.as_ref().map(|n| json!(n)));
        }
    }
    v
}

async fn list(state: &AppState, log: LogOf, q: ListQuery) -> ApiResult<Value> {
    let mut spec = q.list.spec(&AUDIT_FIELDS)?;
    // Newest first unless asked otherwise (a log is read from its end).
    if q.list.sort_direction.as_deref().unwrap_or("").is_empty() {
        spec.descending = true;
    }
    let query = AuditQuery {
        log,
        start: bound(q.start.as_deref(), "start")?,
        end: bound(q.end.as_deref(), "end")?,
        filter: filter(q.audit_log_filter)?,
    };
    let page = state.store().audit_logs(&query, &spec).await?;
    let items = page.items.iter().map(entry_json).collect();
    Ok(q.list.envelope(&spec, &AUDIT_FIELDS, items, page.total))
}

/// `auditLogs.get`: one page of the organization's log.
pub async fn org_list(
    State(state): State<AppState>,
    access: OrgAccess,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let mut out = list(&state, LogOf::Org(access.org()), q).await?;
    out["orgId"] = json!(access.org());
    Ok(Json(out))
}

/// `auditLog.get`: one entry of the organization's log.
pub async fn org_get(
    State(state): State<AppState>,
    access: OrgAccess,
    Path((_, id)): Path<(Id, Id)>,
) -> ApiResult<Json<Value>> {
    let entry = state
        .store()
        .audit_log(LogOf::Org(access.org()), id)
        .await
        .map_err(|e| ApiError::from_store(e, "Audit log"))?;
    Ok(Json(entry_json(&entry)))
}

/// `applicationAuditLogs.get` (extension): one page of the application's log.
pub async fn application_list(
    State(state): State<AppState>,
    access: AppAccess,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let mut out = list(&state, LogOf::Application(access.application()), q).await?;
    out["applicationId"] = json!(access.application());
    Ok(Json(out))
}
