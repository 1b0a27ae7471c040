//! Token lifecycle over HTTP (issue 15): the lifecycle fields of a token object,
//! `applicationApiToken.roll` and `tokens.revoke` (leak reports). Both actions are extensions
//! to the reference API; the rules are `service::lifecycle`.

use std::borrow::Cow;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_store::Id;
use tollgate_store::tokens::TokenRecord;

use crate::api::tokens::token_json;
use crate::auth::AppAccess;
use crate::auth::throttle::{Key, Kind, Rate};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, ClientAddr, Path, RequestBody};
use crate::limits;
use crate::service::lifecycle::{self as service, MAX_REPORTED_TOKENS, RollRequest, State as Life};
use crate::time::{iso, parse_iso};

/// Leak reports from one client address: 10 in a row, then one every 6 seconds.
pub const LEAK_REPORT_RATE: Rate = Rate {
    burst: 10,
    interval: Duration::from_secs(6),
};

/// The answer to every well-formed leak report, whatever it named.
pub const LEAK_REPORT_ANSWER: &str = "Thank you: every live Tollgate API token among these has been deactivated. This answer is the same whether or not any was";

/// The lifecycle fields of a token object (extensions to the reference's `apiToken`):
/// `state` (`active`, `inactive`, `expired`, `retired`: what the token is now, which the
/// stored `status` switch alone does not say), `stateLabel`, `expiresIn` ("Expires in 5
/// days"), `expiringSoon` (within the first warning lead time), `retiresAt`,
/// `rolledFromId`, `deactivationReason`.
pub fn add_fields(v: &mut Value, t: &TokenRecord, now: i64) {
    let state = Life::of(t, now);
    v["state"] = json!(state.as_str());
    v["stateLabel"] = json!(state.label());
    if let Some(text) = service::expires_in(t.expiration_date, now) {
        v["expiresIn"] = json!(text);
    }
    v["expiringSoon"] = json!(service::expiring_soon(t.expiration_date, now));
    if let Some(r) = t.life.retires_at {
        v["retiresAt"] = json!(iso(r));
    }
    if let Some(from) = t.life.rolled_from {
        v["rolledFromId"] = json!(from);
    }
    if let Some(reason) = &t.life.deactivation_reason {
        v["deactivationReason"] = json!(reason);
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollBody {
    overlap_seconds: i64,
    /// Absent: the default; `null`: never; a date-time.
    #[serde(default, deserialize_with = "present")]
    expiration_date: Option<Option<String>>,
}

/// Tell an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl RequestBody for RollBody {
    const SCHEMA: &'static str = "apiTokenRoll";
}

/// `applicationApiToken.roll`: 201 with the new token and its secret (shown in this response
/// only), `rolledFromId` naming the old token, which keeps working until its `retiresAt`.
pub async fn roll(
    State(state): State<crate::state::AppState>,
    access: AppAccess,
    Path((_, token_id)): Path<(Id, Id)>,
    Body(body): Body<RollBody>,
) -> ApiResult<Response> {
    let expiration_date = match body.expiration_date {
        None => None,
        Some(None) => Some(None),
        Some(Some(s)) => Some(Some(parse_iso(&s).ok_or_else(|| {
            ApiError::validation(
                "expirationDate must be an ISO 8601 date-time, e.g. 2027-01-31T12:00:00.000Z, or null for never",
            )
        })?)),
    };
    let request = RollRequest {
        overlap_seconds: body.overlap_seconds,
        expiration_date,
    };
    let (new, _old, secret) = service::roll(&state, &access, token_id, request).await?;
    let mut out = token_json(&state, &new);
    out["token"] = json!(secret.expose());
    let mut res = (StatusCode::CREATED, Json(out)).into_response();
    crate::api::login::no_store(&mut res);
    Ok(res)
}

#[derive(Deserialize)]
pub struct LeakReport {
    tokens: Vec<String>,
}

impl RequestBody for LeakReport {
    const SCHEMA: &'static str = "tokenLeakReport";

    fn precheck(body: &Value) -> Result<(), ApiError> {
        match body.get("tokens").and_then(Value::as_array) {
            Some(t) => limits::at_most("tokens", t.len(), MAX_REPORTED_TOKENS),
            None => Ok(()),
        }
    }
}

/// `tokens.revoke`: no credentials; every live token among those named is deactivated with
/// the reason "reported as leaked". The answer is always 202 with the same body, so that it
/// cannot tell anyone whether a string is a live token; rate-limited per client address
/// (429) before anything is looked up.
pub async fn revoke(
    State(state): State<crate::state::AppState>,
    ClientAddr(client): ClientAddr,
    Body(report): Body<LeakReport>,
) -> ApiResult<Response> {
    let key = match client {
        Some(ip) => Key::address(ip),
        None => Key {
            kind: Kind::Address,
            value: Cow::Borrowed(b""),
        },
    };
    // Every report counts against the address (the attempt is never marked a success).
    let _attempt = state.leak_throttle().attempt(&[key]).map_err(|r| {
        ApiError::too_many_requests(r.message("leak reports"), r.retry_after_secs())
    })?;
    let by = tollgate_store::Actor::anonymous(client);
    service::report_leaks(state.store(), &report.tokens, &by).await?;
    let body = json!({ "accepted": true, "message": LEAK_REPORT_ANSWER });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}
