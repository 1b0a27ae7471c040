//! REST handlers, one module per resource family. Handlers do not check permissions: they
//! receive a capability from the authorization layer (`crate::auth`).

pub mod applications;
pub mod audit;
pub mod data;
pub mod devices;
pub mod flows;
pub mod lifecycle;
pub mod lineage;
pub mod login;
pub mod me;
pub mod orgs;
pub mod policy;
pub mod token_posture;
pub mod token_usage;
pub mod tokens;
pub mod webhooks;

use serde_json::{Map, Value, json};

use crate::error::ApiError;

/// `{"success": true}`.
pub fn success() -> axum::Json<Value> {
    axum::Json(json!({ "success": true }))
}

/// Refuse fields of the reference schema that this server does not support, by name.
pub fn refuse_unsupported(body: &Value, fields: &[(&str, &str)]) -> Result<(), ApiError> {
    for (field, why) in fields {
        if body.get(*field).is_some() {
            return Err(ApiError::validation(format!(
                "{field} is not supported by this server: {why}"
            )));
        }
    }
    Ok(())
}

/// Merge kept-but-uninterpreted fields into a response object (known fields win).
pub fn with_extra(mut out: Value, extra: &Map<String, Value>) -> Value {
    if let Value::Object(o) = &mut out {
        for (k, v) in extra {
            o.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    out
}

/// A JSON body already rendered (what `axum::Json` would send: the same bytes and header).
pub fn json_bytes(body: axum::body::Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
