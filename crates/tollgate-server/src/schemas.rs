//! The reference JSON schemas, compiled into the binary, and request validation against them.
//!
//! Validating bodies with the reference's own schemas gives exactly its limits (lengths,
//! enums, required and forbidden fields) without a hand-kept copy. Messages are masked: a
//! rejected value is named by its field, never echoed, because it may be a password.

use std::collections::HashMap;
use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::Value;

use crate::error::ApiError;

macro_rules! schemas {
    ($($name:literal),* $(,)?) => {
        /// Every embedded schema: (name, JSON text).
        pub const SCHEMAS: &[(&str, &str)] = &[$(
            ($name, include_str!(concat!("../../../reference/losant-api/schemas/", $name, ".json")))
        ),*];
    };
}

schemas![
    "advancedDeviceQuery",
    "auditLog",
    "auditLogFilter",
    "auditLogs",
    "apiToken",
    "apiTokenPatch",
    "apiTokens",
    "application",
    "applicationApiTokenPost",
    "applicationPatch",
    "applicationPost",
    "applications",
    "authedUser",
    "changePassword",
    "compositeDeviceState",
    "device",
    "deviceCommand",
    "deviceCommands",
    "devicePatch",
    "devicePost",
    "deviceState",
    "deviceStateOrStates",
    "deviceStates",
    "devices",
    "error",
    "flow",
    "flowPatch",
    "flowPost",
    "flows",
    "lastValueData",
    "lastValueQuery",
    "me",
    "mePatch",
    "multiFactorAuthDisable",
    "multiFactorAuthEnable",
    "multiFactorAuthInfo",
    "org",
    "orgInviteActionUser",
    "orgInvitePost",
    "orgInviteResultUser",
    "orgInvites",
    "orgInvitesUser",
    "orgMemberPatch",
    "orgPatch",
    "orgPost",
    "orgs",
    "success",
    "timeSeriesData",
    "timeSeriesQuery",
    "userCredentials",
];

/// Schemas of this server's extensions to the reference API (`crates/tollgate-server/schemas/`):
/// (name, JSON text), validated and published like the reference's.
pub const EXTENSION_SCHEMAS: &[(&str, &str)] = &[
    (
        "apiTokenDescendants",
        include_str!("../schemas/apiTokenDescendants.json"),
    ),
    ("apiTokenRoll", include_str!("../schemas/apiTokenRoll.json")),
    (
        "orgTokenPolicy",
        include_str!("../schemas/orgTokenPolicy.json"),
    ),
    (
        "tokenLeakReport",
        include_str!("../schemas/tokenLeakReport.json"),
    ),
    (
        "tokenLeakReportAccepted",
        include_str!("../schemas/tokenLeakReportAccepted.json"),
    ),
    ("tokenPolicy", include_str!("../schemas/tokenPolicy.json")),
    (
        "tokenPolicyPatch",
        include_str!("../schemas/tokenPolicyPatch.json"),
    ),
    ("tokenUsage", include_str!("../schemas/tokenUsage.json")),
    (
        "tokenWebhookPost",
        include_str!("../schemas/tokenWebhookPost.json"),
    ),
    (
        "tokenWebhookPatch",
        include_str!("../schemas/tokenWebhookPatch.json"),
    ),
    ("tokenWebhook", include_str!("../schemas/tokenWebhook.json")),
    (
        "tokenWebhookCreated",
        include_str!("../schemas/tokenWebhookCreated.json"),
    ),
    (
        "tokenWebhooks",
        include_str!("../schemas/tokenWebhooks.json"),
    ),
    (
        "tokenWebhookDelivery",
        include_str!("../schemas/tokenWebhookDelivery.json"),
    ),
    (
        "tokenWebhookDeliveries",
        include_str!("../schemas/tokenWebhookDeliveries.json"),
    ),
];

struct Compiled {
    raw: HashMap<&'static str, Value>,
    validators: HashMap<&'static str, Validator>,
}

fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let mut raw = HashMap::new();
        let mut validators = HashMap::new();
        for (name, text) in SCHEMAS.iter().chain(EXTENSION_SCHEMAS) {
            let mut schema: Value = serde_json::from_str(text).expect("embedded schema is JSON");
            adjust(name, &mut schema);
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .unwrap_or_else(|e| panic!("embedded schema {name} compiles: {e}"));
            raw.insert(*name, schema);
            validators.insert(*name, validator);
        }
        Compiled { raw, validators }
    })
}

/// Where the reference schemas need help, or our checks say more than the schema would.
fn adjust(name: &str, schema: &mut Value) {
    // The reference's query schemas refer to `#/definitions/advancedDeviceQuery` without
    // carrying that definition (its clients resolve it from a shared file): carry it.
    if schema
        .to_string()
        .contains("#/definitions/advancedDeviceQuery")
    {
        let text = SCHEMAS
            .iter()
            .find(|(n, _)| *n == "advancedDeviceQuery")
            .map(|(_, t)| *t)
            .expect("advancedDeviceQuery is embedded");
        let mut definition: Value = serde_json::from_str(text).expect("embedded schema is JSON");
        if let Value::Object(o) = &mut definition {
            o.remove("$schema");
        }
        schema["definitions"] = serde_json::json!({ "advancedDeviceQuery": definition });
    }
    // The reference's invitation lists wrap their item schema one level too deep
    // (`items.properties` holds `title`, `type` and `properties` as if they were fields):
    // unwrap it, so the items are checked as the reference means them.
    if let Some(inner) = schema
        .get("items")
        .and_then(|i| i.get("properties"))
        .filter(|p| p.get("type") == Some(&Value::String("object".into())))
        .filter(|p| p.get("properties").is_some_and(Value::is_object))
        .cloned()
    {
        schema["items"] = inner;
    }
    // Device attributes may also hold JSON documents (`dataType: "json"`), which the
    // reference's enum of attribute types does not list: add it wherever that enum appears.
    add_json_data_type(schema);
    if name == "applicationApiTokenPost" {
        // The reference lists ~250 scope strings; the scope parser names each unknown one
        // instead, and knows which of them this server implements.
        schema["properties"]["scope"]["items"] =
            serde_json::json!({ "type": "string", "minLength": 1, "maxLength": 1024 });
        // Extensions: the token's restrictions (README, "Restrictions").
        for (name, property) in restriction_properties() {
            schema["properties"][name] = property;
        }
    }
    if name == "apiToken" {
        for (name, property) in restriction_properties() {
            schema["properties"][name] = property;
        }
        schema["properties"]["rateLimit"]["properties"]["sharedWith"] = serde_json::json!({
            "type": "object", "readOnly": true,
            "properties": {
                "apiTokenId": { "type": "string" },
                "requests": { "type": "integer" },
                "perSeconds": { "type": "integer" }
            },
            "description": "Set by the server on a token minted by a rate-limited token: the topmost rate-limited ancestor, whose bucket this token's requests also draw from (never accepted in a request)"
        });
        schema["properties"]["parentApiTokenId"] = serde_json::json!({
            "type": "string", "pattern": "^[A-Fa-f\\d]{24}$", "readOnly": true, "x-tollgate-extension": true,
            "description": "The token that created this one (the creatorId when creatorType is apiToken). Deleting or deactivating that token without cascade=true leaves this one working"
        });
        schema["properties"]["lineage"] = serde_json::json!({
            "type": "object", "readOnly": true, "x-tollgate-extension": true,
            "description": "applicationApiToken.get only: the token's parent and descendants (listed by applicationApiToken.descendants)",
            "properties": {
                "parentApiTokenId": { "type": "string", "pattern": "^[A-Fa-f\\d]{24}$" },
                "parentExists": { "type": "boolean", "description": "false once the parent has been deleted (without cascade)" },
                "childCount": { "type": "integer", "minimum": 0, "description": "Tokens this token created" },
                "descendantCount": { "type": "integer", "minimum": 0, "description": "Its children, their children, and so on" },
                "descendantsWithoutCascade": { "type": "string", "enum": ["keepWorking"], "description": "What happens to the descendants when this token is deleted or deactivated without cascade=true" },
                "note": { "type": "string", "description": "The same in words" }
            }
        });
        schema["properties"]["cascade"] = serde_json::json!({
            "type": "object", "readOnly": true, "x-tollgate-extension": true,
            "description": "The answer to applicationApiToken.patch with cascade=true: the descendants it deactivated",
            "properties": {
                "count": { "type": "integer", "minimum": 0 },
                "apiTokenIds": { "type": "array", "items": { "type": "string", "pattern": "^[A-Fa-f\\d]{24}$" } }
            }
        });
        schema["properties"]["usesRemaining"] = serde_json::json!({
            "type": "integer", "minimum": 0, "x-tollgate-extension": true,
            "description": "With a usageLimit: the uses left (not yet leased by any node, plus this node's unspent lease)"
        });
    }
}

/// The restriction fields of a token (an extension of the reference's `apiTokenPost` and
/// `apiToken`), documented in the OpenAPI document. Their values are checked by
/// `tollgate_core::restrictions`, which names each problem.
fn restriction_properties() -> Vec<(&'static str, Value)> {
    use serde_json::json;
    use tollgate_core::restrictions::{addresses, devices, quota, rate};
    vec![
        (
            "allowedAddresses",
            json!({
                "type": "array", "minItems": 1, "maxItems": addresses::MAX_NETWORKS,
                "items": { "type": "string", "maxLength": 64 },
                "x-tollgate-extension": true,
                "description": "Networks (CIDR, IPv4 or IPv6; a bare address is a /32 or /128) the token may be used from; other addresses get 403 naming the list"
            }),
        ),
        (
            "deviceIds",
            json!({
                "type": "array", "maxItems": devices::MAX_IDS,
                "items": { "type": "string", "pattern": "^[A-Fa-f\\d]{24}$" },
                "x-tollgate-extension": true,
                "description": "Devices the token reaches (with deviceTags: either); other devices are 404 as if they did not exist"
            }),
        ),
        (
            "deviceTags",
            json!({
                "type": "array", "maxItems": devices::MAX_TAGS,
                "items": {
                    "type": "object",
                    "properties": {
                        "key": { "type": "string", "minLength": 1, "maxLength": 255 },
                        "value": { "type": "string", "maxLength": 255 }
                    },
                    "required": ["key"], "additionalProperties": false
                },
                "x-tollgate-extension": true,
                "description": "Device tags (key, and value; no value: any value of the key): the token reaches devices carrying one of them, as the devices are at each request"
            }),
        ),
        (
            "rateLimit",
            json!({
                "type": "object",
                "properties": {
                    "requests": { "type": "integer", "minimum": 1, "maximum": rate::MAX_REQUESTS },
                    "perSeconds": { "type": "integer", "minimum": 1, "maximum": rate::MAX_PER_SECONDS }
                },
                "required": ["requests", "perSeconds"], "additionalProperties": false,
                "x-tollgate-extension": true,
                "description": "At most `requests` requests in any `perSeconds` seconds (a token bucket, per node); past it 429 with RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset and Retry-After"
            }),
        ),
        (
            "usageLimit",
            json!({
                "type": "integer", "minimum": 1, "maximum": quota::MAX_USES,
                "x-tollgate-extension": true,
                "description": "At most this many authorized requests over the token's life, exact across nodes; past it 429 \"usage limit reached\". A child's usage limit is carved out of its creator's remaining uses"
            }),
        ),
    ]
}

fn add_json_data_type(schema: &mut Value) {
    match schema {
        Value::Object(o) => {
            if let Some(Value::Array(types)) = o.get_mut("dataType").and_then(|d| d.get_mut("enum"))
                && types.iter().any(|t| t == "gps")
                && !types.iter().any(|t| t == "json")
            {
                types.push(Value::String("json".into()));
            }
            o.values_mut().for_each(add_json_data_type);
        }
        Value::Array(items) => items.iter_mut().for_each(add_json_data_type),
        _ => {}
    }
}

/// The schema called `name` (as adjusted), for the OpenAPI document.
pub fn raw(name: &str) -> Option<&'static Value> {
    compiled().raw.get(name)
}

/// Compile every schema now rather than on first use (called at start-up).
pub fn preload() {
    let _ = compiled();
}

/// Check `instance` against the schema `name`. All problems are reported in one message.
pub fn validate(name: &str, instance: &Value) -> Result<(), ApiError> {
    let validator = compiled()
        .validators
        .get(name)
        .unwrap_or_else(|| panic!("no embedded schema {name}"));
    report(validator, instance)
}

/// Check `instance` against a part of an embedded schema (such as one workflow trigger's
/// branch). Each part is compiled once, on first use, and kept: compiling per call cost
/// 50 µs per trigger, on the async workers.
pub fn validate_part(schema: &'static Value, instance: &Value) -> Result<(), ApiError> {
    type Parts = std::sync::Mutex<HashMap<usize, std::sync::Arc<Validator>>>;
    static PARTS: OnceLock<Parts> = OnceLock::new();
    let key = std::ptr::from_ref(schema) as usize;
    let parts = PARTS.get_or_init(Parts::default);
    let cached = parts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .cloned();
    let validator = match cached {
        Some(v) => v,
        None => {
            let v = std::sync::Arc::new(jsonschema::options().build(schema).map_err(|e| {
                tracing::error!(error = %e, "embedded schema part does not compile");
                ApiError::internal()
            })?);
            parts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, v.clone());
            v
        }
    };
    report(&validator, instance)
}

fn report(validator: &Validator, instance: &Value) -> Result<(), ApiError> {
    // Most bodies are valid: `is_valid` stops at the first problem and builds no error
    // values, where collecting the errors walks the instance building iterators per node.
    if validator.is_valid(instance) {
        return Ok(());
    }
    let problems: Vec<String> = validator
        .iter_errors(instance)
        .take(5)
        .map(|e| {
            let path = e.instance_path().to_string();
            let field = path
                .rsplit('/')
                .find(|s| !s.is_empty())
                .unwrap_or("the body");
            let text = match e.kind() {
                jsonschema::error::ValidationErrorKind::Enum { options } => {
                    let opts = options.as_array().map(Vec::as_slice).unwrap_or_default();
                    if opts.len() <= 12 {
                        let list: Vec<String> = opts.iter().map(Value::to_string).collect();
                        format!("{field} must be one of {}", list.join(", "))
                    } else {
                        format!("{field} is not one of the accepted values")
                    }
                }
                _ => e.masked_with(field.to_owned()).to_string(),
            };
            if path.is_empty() {
                text
            } else {
                format!("{path}: {text}")
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "Invalid request: {}",
            problems.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_schema_compiles() {
        preload();
        assert_eq!(
            compiled().validators.len(),
            SCHEMAS.len() + EXTENSION_SCHEMAS.len()
        );
    }

    #[test]
    fn valid_bodies_pass_and_invalid_ones_are_reported_as_before() {
        // `report` answers a valid body from `is_valid` alone: the two must agree.
        let valid =
            json!({ "attribute": "temperature", "deviceIds": ["0123456789abcdef01234567"] });
        assert!(validate("lastValueQuery", &valid).is_ok());
        let err = validate(
            "lastValueQuery",
            &json!({ "attribute": "temp erature", "deviceIds": ["xyz"], "extra": 1 }),
        )
        .unwrap_err();
        for part in ["/attribute", "/deviceIds/0", "extra"] {
            assert!(err.message.contains(part), "{part}: {}", err.message);
        }
    }

    #[test]
    fn messages_name_fields_and_never_echo_values() {
        let err = validate(
            "userCredentials",
            &json!({ "email": "a@example.com", "password": "zq9x" }),
        )
        .unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("/password"), "{}", err.message);
        assert!(!err.message.contains("zq9x"), "{}", err.message);

        let err = validate("orgPost", &json!({ "name": "x", "colour": 1 })).unwrap_err();
        assert!(err.message.contains("colour"), "{}", err.message);

        let err = validate("orgPost", &json!({})).unwrap_err();
        assert!(err.message.contains("name"), "{}", err.message);

        let err = validate("apiTokenPatch", &json!({ "status": "paused" })).unwrap_err();
        assert!(
            err.message.contains("\"active\", \"inactive\""),
            "{}",
            err.message
        );
    }
}
