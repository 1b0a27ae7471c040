//! Application API tokens: `applicationApiTokens.*`, `applicationApiToken.*`.
//!
//! The HTTP side only: bodies in, JSON out. What may be done to a token, and doing it, is
//! `service::tokens` (which the console calls too). The secret is returned in the creation
//! response only.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tollgate_core::Scope;

use tollgate_store::list::Page;
use tollgate_store::tokens::{TOKEN_FIELDS, TokenChange, TokenRecord, TokenStatus};
use tollgate_store::{Id, Part};

use crate::api::lineage::CascadeQuery;
use crate::api::success;
use crate::auth::AppAccess;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, ListParams, Path, Query, RequestBody};
use crate::limits;
use crate::service::lineage;
use crate::service::tokens::{self as service, TokenRequest, last_used};
use crate::state::AppState;
use crate::time::{iso, parse_iso};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenPost {
    name: String,
    #[serde(default)]
    description: String,
    expiration_date: Option<String>,
    scope: Option<Vec<String>>,
    status: Option<String>,
    /// The restriction fields (an extension: `allowedAddresses`, `deviceIds`, `deviceTags`,
    /// `rateLimit`, `usageLimit`), read by `tollgate_core::restrictions`.
    #[serde(flatten)]
    restrictions: serde_json::Map<String, Value>,
}

impl RequestBody for TokenPost {
    const SCHEMA: &'static str = "applicationApiTokenPost";

    fn precheck(body: &Value) -> Result<(), ApiError> {
        match body.get("scope").and_then(Value::as_array) {
            Some(scope) => limits::at_most("scope", scope.len(), limits::MAX_SCOPE_STRINGS),
            None => Ok(()),
        }
    }
}

#[derive(Deserialize)]
pub struct TokenPatch {
    name: Option<String>,
    description: Option<String>,
    status: Option<String>,
}

impl RequestBody for TokenPatch {
    const SCHEMA: &'static str = "apiTokenPatch";

    fn precheck(body: &Value) -> Result<(), ApiError> {
        let fixed: Vec<&str> = ["scope", "expirationDate"]
            .into_iter()
            .filter(|f| body.get(*f).is_some())
            .collect();
        if fixed.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(format!(
                "{} cannot be changed: a token's scope and expiration date are fixed when it is created. \
                 Create a new token with the scope and expiry you need, then delete this one",
                fixed.join(" and ")
            )))
        }
    }
}

fn status(s: Option<&str>) -> Result<Option<TokenStatus>, ApiError> {
    s.map(|s| {
        TokenStatus::parse(s)
            .ok_or_else(|| ApiError::validation("status must be active or inactive"))
    })
    .transpose()
}

/// A token as the API shows it (never with its secret), with its restrictions and, with a
/// usage limit, `usesRemaining`: the uses not yet leased, plus those this node leased and has
/// not spent (another node's unspent lease, at most one block, counts as used until spent).
pub fn token_json(state: &AppState, t: &TokenRecord) -> Value {
    let mut v = record_json(t, last_used(state, t));
    // The first warning lead time is the application's policy's.
    v["expiringSoon"] = json!(state.leads().expiring_soon(
        t.application_id,
        t.expiration_date,
        tollgate_store::now_ms()
    ));
    if let Some(text) = &t.restrictions
        && let Ok(r) = tollgate_core::restrictions::Restrictions::from_stored(Some(text))
        && let Value::Object(map) = &mut v
    {
        r.write(map);
    }
    if let Some(unleased) = t.unleased_uses {
        v["usesRemaining"] = json!(unleased + state.credentials().counters().leased_here(t.id));
    }
    v
}

/// A token as the API shows it, with when it was last used as far as the caller knows.
pub fn record_json(t: &TokenRecord, last_used: Option<i64>) -> Value {
    let summary = Scope::parse(&t.scope)
        .map(|s| s.summary().label())
        .unwrap_or("Custom permissions");
    let mut v = json!({
        "id": t.id,
        "apiTokenId": t.id,
        "ownerId": t.application_id,
        "ownerType": "application",
        "applicationId": t.application_id,
        "name": t.name,
        "description": t.description,
        "scope": t.scope,
        "scopeSummary": summary,
        "status": t.status.as_str(),
        "creatorType": t.creator.kind,
        "creatorId": t.creator.id,
        "creatorName": t.creator.name,
        "creationDate": iso(t.creation_date),
        "lastUpdated": iso(t.last_updated),
    });
    if let Some(e) = t.expiration_date {
        v["expirationDate"] = json!(iso(e));
    }
    if let Some(u) = last_used {
        v["lastUsedDate"] = json!(iso(u));
    }
    crate::api::lifecycle::add_fields(&mut v, t, tollgate_store::now_ms());
    crate::api::lineage::add_fields(&mut v, t);
    v
}

/// `applicationApiTokens.get`'s query: the list parameters and the extension `posture`.
#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(flatten)]
    list: ListParams,
    posture: Option<String>,
}

/// A page of tokens as read, and its response body once rendered.
pub struct TokenPage {
    page: Page<TokenRecord>,
    rendered: Mutex<Option<Rendered>>,
}

/// A rendered body and what it holds for: this node's last-used times as they were
/// (`Credentials::shown_uses`), its flushes (the posture counts), and the time until which
/// every token's time-dependent fields and the posture counts stay as they are.
struct Rendered {
    shown_uses: u64,
    flushes: u64,
    until: i64,
    body: Bytes,
}

/// The page of tokens is read from memory while the freshness gate allows (`read_cache`), by
/// query string, unless it holds a token with a usage limit (its remaining uses change with
/// every lease, on every node, without a notice) or is one posture category (whose condition
/// moves with the time). Its body is rendered once and served again while nothing it shows
/// can have changed: not this node's last-used times, nor its flushes of them, nor anything
/// that moves with the clock (each token's state and "expires in", the posture counts).
pub async fn list(
    State(state): State<AppState>,
    access: AppAccess,
    RawQuery(raw): RawQuery,
    Query(query): Query<ListQuery>,
) -> ApiResult<Response> {
    let params = query.list;
    let spec = params.spec(&TOKEN_FIELDS)?;
    let posture = crate::api::token_posture::parse(query.posture.as_deref())?;
    let app = access.application();
    // This node's last-used times first, so that the posture counts see them.
    crate::api::token_posture::flush(&state).await;
    let page = match posture {
        None => {
            let store = state.store();
            state
                .reads()
                .get(
                    app,
                    Part::Tokens,
                    &format!("list:{}", raw.as_deref().unwrap_or("")),
                    |_| true,
                    |p: &TokenPage| p.page.items.iter().all(|t| t.unleased_uses.is_none()),
                    || async {
                        Ok::<_, ApiError>(TokenPage {
                            page: store.list_tokens(app, &spec).await?,
                            rendered: Mutex::new(None),
                        })
                    },
                )
                .await?
        }
        Some(_) => Arc::new(TokenPage {
            page: crate::api::token_posture::page(&state, app, posture, &spec).await?,
            rendered: Mutex::new(None),
        }),
    };
    let credentials = state.credentials();
    let (shown_uses, flushes, now) = (
        credentials.shown_uses(),
        credentials.flushes(),
        tollgate_store::now_ms(),
    );
    if let Some(r) = &*lock(&page.rendered)
        && r.shown_uses == shown_uses
        && r.flushes == flushes
        && now < r.until
    {
        return Ok(json_body(r.body.clone()));
    }
    let page_ref = &page.page;
    let items = page_ref
        .items
        .iter()
        .map(|t| token_json(&state, t))
        .collect();
    let mut out = params.envelope(&spec, &TOKEN_FIELDS, items, page_ref.total);
    out["ownerId"] = json!(access.application());
    out["ownerType"] = json!("application");
    let (counts, holds_until) =
        crate::api::token_posture::summary_until(&state, access.application()).await?;
    out["posture"] = counts;
    if let Some(p) = posture {
        out["postureFilter"] = json!(p.name());
    }
    let body = Bytes::from(out.to_string());
    let until = page_ref
        .items
        .iter()
        .map(|t| crate::service::lifecycle::next_change(t.expiration_date, t.life.retires_at, now))
        .fold(holds_until.saturating_add(1), i64::min);
    *lock(&page.rendered) = Some(Rendered {
        shown_uses,
        flushes,
        until,
        body: body.clone(),
    });
    Ok(json_body(body))
}

fn json_body(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

// Never panics while held.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub async fn create(
    State(state): State<AppState>,
    access: AppAccess,
    Body(body): Body<TokenPost>,
) -> ApiResult<Response> {
    let expiration_date = match body.expiration_date.as_deref() {
        None => None,
        Some(s) => Some(parse_iso(s).ok_or_else(|| {
            ApiError::validation(
                "expirationDate must be an ISO 8601 date-time, e.g. 2027-01-31T12:00:00.000Z",
            )
        })?),
    };
    let request = TokenRequest {
        name: body.name,
        description: body.description,
        scope: body.scope,
        expiration_date,
        status: status(body.status.as_deref())?.unwrap_or(TokenStatus::Active),
        restrictions: tollgate_core::restrictions::Restrictions::parse(&body.restrictions)
            .map_err(service::TokenError::Restrictions)?,
        form_key: None,
    };
    let (record, secret) = service::create(&state, &access, request).await?;
    let mut out = token_json(&state, &record);
    // The only response that ever carries the secret: no cache may keep it.
    out["token"] = json!(secret.expose());
    let mut res = (StatusCode::CREATED, Json(out)).into_response();
    crate::api::login::no_store(&mut res);
    Ok(res)
}

/// A token's detail as read (the record and its lineage), and its body once rendered.
pub struct TokenDetail {
    record: TokenRecord,
    lineage: Value,
    rendered: Mutex<Option<Rendered>>,
}

pub async fn get(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, token_id)): Path<(Id, Id)>,
) -> ApiResult<Response> {
    // From memory while the freshness gate allows (`read_cache`), unless the token has a usage
    // limit (see `list`): the record with its lineage (counts of the tokens created through
    // it, whether its parent exists; every token created, changed or deleted drops it), and
    // the body rendered once, served again while this node's last-used times and the token's
    // time-dependent fields stay as they are (see `list`).
    let app = access.application();
    let store = state.store();
    let detail = state
        .reads()
        .get(
            app,
            Part::Tokens,
            &format!("id:{token_id}"),
            |_| true,
            |d: &TokenDetail| d.record.unleased_uses.is_none(),
            || async {
                let record = store
                    .token(app, token_id)
                    .await
                    .map_err(|e| ApiError::from_store(e, "API token"))?;
                // The detail's extension: its parent, its descendants, and what happens to
                // them.
                let lineage = crate::service::lineage::lineage_json(&state, &record).await?;
                Ok::<_, ApiError>(TokenDetail {
                    record,
                    lineage,
                    rendered: Mutex::new(None),
                })
            },
        )
        .await?;
    let (shown_uses, now) = (state.credentials().shown_uses(), tollgate_store::now_ms());
    if let Some(r) = &*lock(&detail.rendered)
        && r.shown_uses == shown_uses
        && now < r.until
    {
        return Ok(json_body(r.body.clone()));
    }
    let t = &detail.record;
    let mut out = token_json(&state, t);
    out["lineage"] = detail.lineage.clone();
    let body = Bytes::from(out.to_string());
    *lock(&detail.rendered) = Some(Rendered {
        shown_uses,
        flushes: 0,
        until: crate::service::lifecycle::next_change(t.expiration_date, t.life.retires_at, now),
        body: body.clone(),
    });
    Ok(json_body(body))
}

pub async fn patch(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, token_id)): Path<(Id, Id)>,
    Query(query): Query<CascadeQuery>,
    Body(body): Body<TokenPatch>,
) -> ApiResult<Json<Value>> {
    let change = TokenChange {
        name: body.name,
        description: body.description,
        status: status(body.status.as_deref())?,
    };
    if query.cascade()? {
        let done = lineage::cascade_change(&state, &access, token_id, &change).await?;
        let mut out = token_json(&state, &done.root);
        out["cascade"] = crate::api::lineage::cascade_json(&done);
        return Ok(Json(out));
    }
    let t = service::change(&state, &access, token_id, &change).await?;
    Ok(Json(token_json(&state, &t)))
}

pub async fn delete(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, token_id)): Path<(Id, Id)>,
    Query(query): Query<CascadeQuery>,
) -> ApiResult<Json<Value>> {
    if query.cascade()? {
        let done = lineage::cascade_delete(&state, &access, token_id).await?;
        return Ok(Json(
            json!({ "success": true, "cascade": crate::api::lineage::cascade_json(&done) }),
        ));
    }
    service::delete(&state, &access, token_id).await?;
    Ok(success())
}
