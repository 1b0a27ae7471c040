//! Token-event webhooks over HTTP (issue 15, item 4): `applicationTokenWebhooks.*`,
//! `applicationTokenWebhook.*`, all extensions to the reference API (at `/token-webhooks`:
//! the reference's own `webhooks` are Losant's inbound workflow webhooks). The rules are
//! `service::webhooks`; delivery is `crate::webhooks`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_store::Id;
use tollgate_store::webhooks::{Delivery, Webhook};

use crate::api::success;
use crate::auth::AppAccess;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Path, Query, RequestBody};
use crate::service::webhooks as service;
use crate::state::AppState;
use crate::time::iso;

/// An endpoint as the API shows it (never its secret).
pub fn webhook_json(w: &Webhook) -> Value {
    json!({
        "id": w.id,
        "webhookId": w.id,
        "applicationId": w.application_id,
        "url": w.url,
        "events": w.events,
        "enabled": w.enabled,
        "creationDate": iso(w.creation_date),
        "lastUpdated": iso(w.last_updated),
    })
}

/// A delivery as the API shows it, with the event it sends.
pub fn delivery_json(d: &Delivery) -> Value {
    let event: Value = serde_json::from_str(&d.payload).unwrap_or(Value::Null);
    json!({
        "id": d.event_id,
        "webhookId": d.webhook_id,
        "applicationId": d.application_id,
        "eventType": d.event_type,
        "status": d.status,
        "attempts": d.attempts,
        "creationDate": iso(d.creation_date),
        "firstAttemptAt": d.first_attempt_at.map(iso),
        "lastAttemptAt": d.last_attempt_at.map(iso),
        "nextAttemptAt": d.next_attempt_at.map(iso),
        "lastStatusCode": d.last_status_code,
        "lastError": d.last_error,
        "event": event,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPost {
    url: String,
    events: Option<Vec<String>>,
    enabled: Option<bool>,
}

impl RequestBody for WebhookPost {
    const SCHEMA: &'static str = "tokenWebhookPost";
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPatch {
    url: Option<String>,
    events: Option<Vec<String>>,
    enabled: Option<bool>,
}

impl RequestBody for WebhookPatch {
    const SCHEMA: &'static str = "tokenWebhookPatch";
}

pub async fn list(State(state): State<AppState>, access: AppAccess) -> ApiResult<Json<Value>> {
    let items: Vec<Value> = state
        .store()
        .webhooks(access.application())
        .await
        .map_err(|e| ApiError::from_store(e, "Application"))?
        .iter()
        .map(webhook_json)
        .collect();
    Ok(Json(json!({
        "items": items,
        "count": items.len(),
        "totalCount": items.len(),
        "applicationId": access.application(),
    })))
}

/// `applicationTokenWebhooks.post`: 201 with the endpoint and its `signingSecret`, shown in
/// this answer only.
pub async fn create(
    State(state): State<AppState>,
    access: AppAccess,
    Body(body): Body<WebhookPost>,
) -> ApiResult<Response> {
    let request = service::Request {
        url: body.url,
        events: body.events,
        enabled: body.enabled,
    };
    let (w, secret) =
        service::create(&state, &access.actor(), access.application(), request).await?;
    let mut out = webhook_json(&w);
    out["signingSecret"] = json!(secret.expose());
    let mut res = (StatusCode::CREATED, Json(out)).into_response();
    crate::api::login::no_store(&mut res);
    Ok(res)
}

pub async fn get(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, id)): Path<(Id, Id)>,
) -> ApiResult<Json<Value>> {
    let store = state.store();
    let w = store
        .webhook(access.application(), id)
        .await
        .map_err(|e| ApiError::from_store(e, "Webhook"))?;
    let (pending, delivered, failed) = store
        .delivery_counts(access.application(), id)
        .await
        .map_err(|e| ApiError::from_store(e, "Webhook"))?;
    let mut out = webhook_json(&w);
    out["deliveryCounts"] = json!({ "pending": pending, "delivered": delivered, "failed": failed });
    Ok(Json(out))
}

pub async fn patch(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, id)): Path<(Id, Id)>,
    Body(body): Body<WebhookPatch>,
) -> ApiResult<Json<Value>> {
    let w = service::update(
        &state,
        &access.actor(),
        access.application(),
        id,
        body.url,
        body.events,
        body.enabled,
    )
    .await?;
    Ok(Json(webhook_json(&w)))
}

pub async fn delete(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, id)): Path<(Id, Id)>,
) -> ApiResult<Json<Value>> {
    state
        .store()
        .delete_webhook(&access.actor(), access.application(), id)
        .await
        .map_err(|e| ApiError::from_store(e, "Webhook"))?;
    Ok(success())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeliveriesQuery {
    page: Option<i64>,
    per_page: Option<i64>,
    status: Option<String>,
}

/// The most deliveries on one page.
pub const MAX_PER_PAGE: i64 = 1000;

pub async fn deliveries(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, id)): Path<(Id, Id)>,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<Json<Value>> {
    let page = q.page.unwrap_or(0);
    let per_page = q.per_page.unwrap_or(100);
    if page < 0 || !(1..=MAX_PER_PAGE).contains(&per_page) {
        return Err(ApiError::validation(format!(
            "page must be 0 or more and perPage from 1 to {MAX_PER_PAGE}"
        )));
    }
    let status = q.status.filter(|s| !s.is_empty());
    if let Some(s) = &status
        && ![
            tollgate_store::webhooks::PENDING,
            tollgate_store::webhooks::DELIVERED,
            tollgate_store::webhooks::FAILED,
        ]
        .contains(&s.as_str())
    {
        return Err(ApiError::validation(
            "status must be pending, delivered or failed",
        ));
    }
    let store = state.store();
    store
        .webhook(access.application(), id)
        .await
        .map_err(|e| ApiError::from_store(e, "Webhook"))?;
    let found = store
        .deliveries(access.application(), id, status.as_deref(), page, per_page)
        .await
        .map_err(|e| ApiError::from_store(e, "Webhook"))?;
    let items: Vec<Value> = found.items.iter().map(delivery_json).collect();
    Ok(Json(json!({
        "items": items,
        "count": items.len(),
        "totalCount": found.total,
        "page": page,
        "perPage": per_page,
        "webhookId": id,
        "applicationId": access.application(),
    })))
}

pub async fn retry_delivery(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, id, delivery)): Path<(Id, Id, Id)>,
) -> ApiResult<Json<Value>> {
    let d = state
        .store()
        .retry_delivery(&access.actor(), access.application(), id, delivery)
        .await
        .map_err(|e| ApiError::from_store(e, "Delivery"))?;
    Ok(Json(delivery_json(&d)))
}
