//! Workflows as stored definitions: `flows.*`, `flow.*`. Running them is not implemented;
//! `enabled` is stored and returned.

use std::collections::HashSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tollgate_store::flows::{FLOW_FIELDS, Flow, FlowChange};
use tollgate_store::{Id, Part};

use crate::api::success;
use crate::auth::AppAccess;
use crate::error::{ApiError, ApiResult, Refusal};
use crate::extract::{Body, ListParams, Path, Query, RequestBody};
use crate::limits;
use crate::state::AppState;
use crate::time::iso;

const FLOW_CLASSES: &[&str] = &["cloud", "edge", "embedded", "experience", "customNode"];

/// A body whose fields (beyond `name` and `flowClass`) form the stored definition.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct FlowPost(Map<String, Value>);

impl RequestBody for FlowPost {
    const SCHEMA: &'static str = "flowPost";

    fn precheck(body: &Value) -> Result<(), ApiError> {
        check_triggers(Self::SCHEMA, body)
    }
}

#[derive(Deserialize)]
#[serde(transparent)]
pub struct FlowPatch(Map<String, Value>);

impl RequestBody for FlowPatch {
    const SCHEMA: &'static str = "flowPatch";

    fn precheck(body: &Value) -> Result<(), ApiError> {
        if body.get("defaultVersionId").is_some_and(|v| !v.is_null()) {
            return Err(ApiError::validation(
                "defaultVersionId is not supported by this server: it has no workflow versions",
            ));
        }
        check_triggers(Self::SCHEMA, body)
    }
}

/// Check each trigger against the one branch of the schema's `oneOf` for its type, so that a
/// mistake is named ("triggers/0/config: ...") rather than reported as "matches no branch".
fn check_triggers(schema: &str, body: &Value) -> Result<(), ApiError> {
    if let Some(nodes) = body.get("nodes").and_then(Value::as_array) {
        limits::at_most("nodes", nodes.len(), limits::MAX_NODES)?;
    }
    let Some(triggers) = body.get("triggers").and_then(Value::as_array) else {
        return Ok(());
    };
    limits::at_most("triggers", triggers.len(), limits::MAX_TRIGGERS)?;
    let branches = crate::schemas::raw(schema)
        .and_then(|s| s.pointer("/properties/triggers/items/oneOf"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, trigger) in triggers.iter().enumerate() {
        let Some(ty) = trigger.get("type").and_then(Value::as_str) else {
            return Err(ApiError::validation(format!(
                "triggers/{i}: a trigger needs a type"
            )));
        };
        let branch = branches.iter().find(|b| {
            b.pointer("/properties/type/enum")
                .and_then(Value::as_array)
                .is_some_and(|e| e.iter().any(|t| t == ty))
        });
        let Some(branch) = branch else {
            return Err(ApiError::validation(format!(
                "triggers/{i}/type is not a trigger type of the reference (e.g. deviceId, deviceTag, timer, webhook, event)"
            )));
        };
        crate::schemas::validate_part(branch, trigger).map_err(|e| {
            let detail = e.message.trim_start_matches("Invalid request: ");
            let sep = if detail.starts_with('/') { "" } else { ": " };
            ApiError::validation(format!("Invalid request: /triggers/{i}{sep}{detail}"))
        })?;
    }
    Ok(())
}

/// Checks the schema cannot express: node ids are unique and every output refers to a node
/// of the flow; global keys are unique and their `json` is JSON.
fn check_definition(def: &Map<String, Value>) -> Result<(), ApiError> {
    let empty = Vec::new();
    let list = |k: &str| def.get(k).and_then(Value::as_array).unwrap_or(&empty);
    let mut ids = HashSet::new();
    for (i, node) in list("nodes").iter().enumerate() {
        if let Some(id) = node.get("id").and_then(Value::as_str)
            && !ids.insert(id)
        {
            return Err(ApiError::validation(format!(
                "nodes/{i}: the node id {id} is used twice; node ids must be unique"
            )));
        }
    }
    for field in ["triggers", "nodes"] {
        for (i, item) in list(field).iter().enumerate() {
            let outputs = item.get("outputIds").and_then(Value::as_array);
            for target in outputs
                .into_iter()
                .flatten()
                .flat_map(|o| o.as_array().into_iter().flatten())
            {
                let target = target.as_str().unwrap_or_default();
                if !ids.contains(target) {
                    return Err(ApiError::validation(format!(
                        "{field}/{i}/outputIds: {target} is not the id of a node of this workflow"
                    )));
                }
            }
        }
    }
    let mut keys = HashSet::new();
    for (i, global) in list("globals").iter().enumerate() {
        let key = global
            .get("key")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !keys.insert(key) {
            return Err(ApiError::validation(format!(
                "globals/{i}: the key {key} is used twice; global keys must be unique"
            )));
        }
        let text = global
            .get("json")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if serde_json::from_str::<Value>(text).is_err() {
            return Err(ApiError::validation(format!(
                "globals/{i}/json ({key}) is not valid JSON"
            )));
        }
    }
    Ok(())
}

pub fn flow_json(f: &Flow) -> Value {
    let mut out = Map::new();
    for (k, v) in &f.definition {
        out.insert(k.clone(), v.clone());
    }
    let fixed = json!({
        "id": f.id,
        "flowId": f.id,
        "applicationId": f.application_id,
        "name": f.name,
        "flowClass": f.flow_class,
        "createdById": f.created_by.id,
        "createdByType": f.created_by.kind,
        "lastUpdatedById": f.last_updated_by.id,
        "lastUpdatedByType": f.last_updated_by.kind,
        "creationDate": iso(f.creation_date),
        "lastUpdated": iso(f.last_updated),
    });
    if let Value::Object(fixed) = fixed {
        out.extend(fixed);
    }
    Value::Object(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    #[serde(flatten)]
    list: ListParams,
    flow_class: Option<String>,
    trigger_filter: Option<Value>,
    query: Option<String>,
}

/// Answered from memory while the freshness gate allows (`read_cache`), by query string: the
/// body depends on the application's flows and the query only, and flows change only with a
/// change notice.
pub async fn list(
    State(state): State<AppState>,
    access: AppAccess,
    RawQuery(raw): RawQuery,
    Query(query): Query<ListQuery>,
) -> ApiResult<Response> {
    if query.trigger_filter.is_some() || query.query.as_deref().is_some_and(|q| !q.is_empty()) {
        return Err(ApiError::validation(
            "triggerFilter and query are not supported by this server: use filterField/filter and flowClass",
        ));
    }
    let spec = query.list.spec(&FLOW_FIELDS)?;
    // The reference lists cloud workflows unless asked for another class.
    let class = query
        .flow_class
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "cloud".into());
    if !FLOW_CLASSES.contains(&class.as_str()) {
        return Err(ApiError::validation(format!(
            "flowClass must be one of {}",
            FLOW_CLASSES.join(", ")
        )));
    }
    let app = access.application();
    let store = state.store();
    let body = state
        .reads()
        .get(
            app,
            Part::Flows,
            raw.as_deref().unwrap_or(""),
            |_| true,
            |_| true,
            || async {
                let page = store.list_flows(app, &class, &spec).await?;
                let items = page.items.iter().map(flow_json).collect();
                let mut out = query.list.envelope(&spec, &FLOW_FIELDS, items, page.total);
                out["applicationId"] = json!(app);
                out["flowClass"] = json!(class);
                Ok::<_, ApiError>(Bytes::from(out.to_string()))
            },
        )
        .await?;
    Ok(crate::api::json_bytes(Bytes::clone(&body)))
}

pub async fn create(
    State(state): State<AppState>,
    access: AppAccess,
    Body(FlowPost(mut def)): Body<FlowPost>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = def
        .remove("name")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let class = def
        .remove("flowClass")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "cloud".into());
    for (k, default) in [
        ("description", json!("")),
        ("enabled", json!(true)),
        ("triggers", json!([])),
        ("nodes", json!([])),
        ("globals", json!([])),
    ] {
        def.entry(k).or_insert(default);
    }
    if def.get("iconData").is_some_and(Value::is_null) {
        def.remove("iconData");
    }
    check_definition(&def)?;
    let flow = state
        .store()
        .create_flow(&access.actor(), access.application(), &name, &class, &def)
        .await
        .map_err(|e| ApiError::from_store(e, "Application"))?;
    tracing::info!(flow = %flow.id, application = %flow.application_id, "workflow created");
    Ok((StatusCode::CREATED, Json(flow_json(&flow))))
}

pub async fn get(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, id)): Path<(Id, Id)>,
) -> ApiResult<Json<Value>> {
    let flow = state
        .store()
        .flow(access.application(), id)
        .await
        .map_err(|e| ApiError::from_store(e, "Workflow"))?;
    Ok(Json(flow_json(&flow)))
}

pub async fn patch(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, id)): Path<(Id, Id)>,
    Body(FlowPatch(changes)): Body<FlowPatch>,
) -> ApiResult<Json<Value>> {
    let mut change = FlowChange::default();
    for (k, v) in changes {
        match k.as_str() {
            "name" => change.name = v.as_str().map(str::to_owned),
            "defaultVersionId" => {}
            _ => {
                change.definition.insert(k, v);
            }
        }
    }
    // Merged into the flow as it is when the change commits, and checked there.
    let flow = state
        .store()
        .update_flow(
            &access.actor(),
            access.application(),
            id,
            &change,
            |merged| check_definition(&merged.definition).map_err(Refusal::from),
        )
        .await
        .map_err(|e| e.named("Workflow"))?;
    Ok(Json(flow_json(&flow)))
}

pub async fn delete(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, id)): Path<(Id, Id)>,
) -> ApiResult<Json<Value>> {
    state
        .store()
        .delete_flow(&access.actor(), access.application(), id)
        .await
        .map_err(|e| ApiError::from_store(e, "Workflow"))?;
    tracing::info!(flow = %id, "workflow deleted");
    Ok(success())
}
