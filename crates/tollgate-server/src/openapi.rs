//! The OpenAPI document of what this server implements, generated from the action registry and
//! the reference schemas (served at `GET /openapi.json`; a snapshot test keeps
//! `docs/openapi.json` in step).

use axum::Json;
use axum::Router;
use axum::routing::get;
use serde_json::{Map, Value, json};
use tollgate_core::{Family, REGISTRY};

use crate::schemas;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(document()) }))
}

/// Query parameters documented for the actions this server adds to or extends.
fn query_params(action: &str) -> Vec<Value> {
    let q = |name: &str, description: &str, extension: bool| {
        let mut p = json!({ "name": name, "in": "query", "required": false,
            "schema": { "type": "string" }, "description": description });
        if extension {
            p["x-tollgate-extension"] = json!(true);
        }
        p
    };
    match action {
        "applicationApiTokens.get" => vec![q(
            "posture",
            "Extension: list only the tokens of one posture category (neverUsed, idle90Days, neverExpires, allPermissions, expiringWithin30Days, expired, inactive, createdByTokens). The response's extension field `posture` counts every token of the application per category; `postureFilter` names the category applied.",
            true,
        )],
        "applicationApiToken.patch" => vec![q(
            "cascade",
            "Extension: true to deactivate the token and every token descending from it (the tokens it created, those they created, and so on) in one transaction, each audited and refused on every node before the answer; the body's status must then be inactive. The caller must be able to have created every token in the subtree (else 403 naming the first one, nothing changed). The answer's extension field `cascade` lists the descendants deactivated. Without it (or false) the descendants keep working.",
            true,
        )],
        "applicationApiToken.delete" => vec![q(
            "cascade",
            "Extension: true to delete the token and every token descending from it in one transaction, each audited and refused on every node before the answer; the caller must be able to have created every token in the subtree (else 403, nothing deleted). The answer adds `cascade: {count, apiTokenIds}`. Without it (or false) the descendants keep working.",
            true,
        )],
        "auditLogs.get" | "applicationAuditLogs.get" => vec![
            q(
                "sortField",
                "creationDate (default), responseStatus or actorName",
                false,
            ),
            q(
                "sortDirection",
                "asc or desc (default: desc, newest first)",
                false,
            ),
            q("page", "Zero-based page", false),
            q(
                "perPage",
                "Entries per page, 1 to 1000 (default 100)",
                false,
            ),
            q(
                "start",
                "Earliest creationDate (inclusive): milliseconds since the epoch or ISO 8601",
                false,
            ),
            q(
                "end",
                "Latest creationDate (inclusive): milliseconds since the epoch or ISO 8601",
                false,
            ),
            q(
                "auditLogFilter",
                "The reference auditLogFilter in bracket notation, e.g. auditLogFilter[actor][0][id]=…; entries also carry the extension fields applicationId and clientAddress",
                false,
            ),
        ],
        _ => vec![],
    }
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    let mut used = std::collections::BTreeSet::from(["error"]);
    for def in REGISTRY {
        let params: Vec<Value> = def
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                json!({
                    "name": name, "in": "path", "required": true,
                    "schema": { "type": "string", "pattern": "^[A-Fa-f\\d]{24}$" }
                })
            })
            .chain(query_params(def.name))
            .collect();
        let mut responses = Map::new();
        used.insert(def.response);
        responses.insert(
            def.success.to_string(),
            json!({ "description": "Success", "content": { "application/json": {
                "schema": { "$ref": format!("#/components/schemas/{}", def.response) } } } }),
        );
        let mut errors = vec![("400", "Malformed request")];
        let writes = def.family != Family::Public && !def.read_only;
        if def.family != Family::Public {
            errors.push((
                "401",
                if writes {
                    "Missing, malformed, unknown, expired or inactive credentials; or credentials revoked while the request was in progress (the write re-checks them when it commits: nothing is changed)"
                } else {
                    "Missing, malformed, unknown, expired or inactive credentials"
                },
            ));
            errors.push((
                "403",
                match def.name {
                    "applicationApiTokens.post" => {
                        "Valid credentials without this action (named in X-Tollgate-Required-Action), or a token that would be more powerful or longer-lived than its creator"
                    }
                    "applicationApiToken.patch" | "applicationApiToken.delete" => {
                        "Valid credentials without this action (named in X-Tollgate-Required-Action), or a target token the caller could not have created: its scope reaches further than the caller's, or it outlives the caller"
                    }
                    _ => {
                        "Valid credentials without this action (named in X-Tollgate-Required-Action)"
                    }
                },
            ));
        }
        if writes {
            errors.push((
                "409",
                "A uniqueness rule was broken, or the write collided with a concurrent change of the same records and was not made (send it again)",
            ));
        }
        if def.path.contains('{') {
            errors.push(("404", "Not found, or not visible to the caller"));
        }
        if def.name == tollgate_core::Action::AuthAuthenticateUser.name() {
            errors.push(("401", "Unknown email or wrong password"));
            errors.push((
                "429",
                "Too many failed logins for this account or from this client address (Retry-After says when to try again; see the README's Limits and hardening)",
            ));
        }
        errors.push((
            "503",
            "The database did not answer within the server's --db-timeout-ms, or the server is saturated (Retry-After)",
        ));
        for (code, description) in errors {
            responses.insert(
                code.to_owned(),
                json!({ "description": description, "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/error" } } } }),
            );
        }
        let mut op = json!({
            "operationId": def.name,
            "summary": def.description,
            "tags": [def.resource()],
            "parameters": params,
            "responses": responses,
            "x-tollgate-read-only": def.read_only,
            "x-tollgate-family": def.family.catalog_name(),
        });
        if def.is_extension() {
            op["x-tollgate-extension"] = json!(true);
        }
        if def.family != Family::Public {
            op["security"] = json!([{ "bearer": [] }]);
            op["x-tollgate-min-role"] = json!(def.min_role.as_str());
        }
        if let Some(body) = def.body {
            used.insert(body);
            op["requestBody"] = json!({ "required": true, "content": { "application/json": {
                "schema": { "$ref": format!("#/components/schemas/{body}") } } } });
        }
        let entry = paths
            .entry(def.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[def.method.as_str().to_ascii_lowercase()] = op;
    }
    let mut components = Map::new();
    for name in used {
        if let Some(schema) = schemas::raw(name) {
            components.insert(name.to_owned(), rebase(schema));
        }
    }
    // Definitions the reference schemas carry inline become components of their own.
    if let Some(adq) = schemas::raw("advancedDeviceQuery")
        && components
            .values()
            .any(|v| v.to_string().contains("advancedDeviceQuery"))
    {
        components.insert("advancedDeviceQuery".to_owned(), rebase(adq));
    }
    let not_implemented: Vec<Value> = crate::catalog::unimplemented()
        .iter()
        .map(|a| json!({ "name": a.name, "method": a.method.as_str(), "path": a.path }))
        .collect();
    json!({
        "openapi": "3.1.0",
        "x-tollgate-not-implemented": {
            "description": "The reference's other actions. Each answers 501 {\"type\": \"NotImplemented\", \"message\": \"<name> is not implemented by this server\"} at its method and path, without checking credentials.",
            "actions": not_implemented,
        },
        "info": {
            "title": "Tollgate",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The Losant REST API actions this server implements, each guarded by application API tokens or user sessions.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer",
                "description": "An application API token (tgat_…) or a user session token (tgus_…)" } },
        },
    })
}

/// A reference schema as a component: without `$schema` and inline `definitions`, with refs
/// pointing at components.
fn rebase(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Value::Object(o) = &mut s {
        o.remove("$schema");
        o.remove("definitions");
    }
    let text = s
        .to_string()
        .replace("#/definitions/", "#/components/schemas/");
    serde_json::from_str(&text).expect("rebased schema is JSON")
}
