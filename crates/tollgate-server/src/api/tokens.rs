//! Application API tokens: `applicationApiTokens.*`, `applicationApiToken.*`.
//!
//! The secret is generated here, returned in the creation response only, and stored as its
//! SHA-256 digest. Scope and expiry are fixed at creation; a token (or user) can only create
//! tokens no more powerful and no longer-lived than itself.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_core::Scope;
use tollgate_core::secret::{Secret, SecretKind};
use tollgate_store::tokens::{NewToken, TOKEN_FIELDS, TokenChange, TokenRecord, TokenStatus};
use tollgate_store::{Id, now_ms};

use crate::api::success;
use crate::auth::AppAccess;
use crate::error::some_of;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, ListParams, Path, Query, RequestBody};
use crate::limits;
use crate::state::AppState;
use crate::time::{iso, parse_iso};
use crate::validate;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenPost {
    name: String,
    #[serde(default)]
    description: String,
    expiration_date: Option<String>,
    scope: Option<Vec<String>>,
    status: Option<String>,
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

/// A token as the API shows it (never with its secret).
pub fn token_json(state: &AppState, t: &TokenRecord) -> Value {
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
    if let Some(u) = last_used(state, t) {
        v["lastUsedDate"] = json!(iso(u));
    }
    v
}

/// When a token was last used: this node may have seen a use the database has not been told
/// of yet.
pub fn last_used(state: &AppState, t: &TokenRecord) -> Option<i64> {
    t.last_used.max(state.credentials().last_used(&t.digest))
}

pub async fn list(
    State(state): State<AppState>,
    access: AppAccess,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<Value>> {
    let spec = params.spec(&TOKEN_FIELDS)?;
    let page = state
        .store()
        .list_tokens(access.application(), &spec)
        .await?;
    let items = page.items.iter().map(|t| token_json(&state, t)).collect();
    let mut out = params.envelope(&spec, &TOKEN_FIELDS, items, page.total);
    out["ownerId"] = json!(access.application());
    out["ownerType"] = json!("application");
    Ok(Json(out))
}

/// A new token as its creator asks for it; [`create_token`] applies the rules.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub name: String,
    pub description: String,
    /// Scope strings; `None` means the default, `["all.Application"]`.
    pub scope: Option<Vec<String>>,
    /// Milliseconds since the epoch; `None` never expires.
    pub expiration_date: Option<i64>,
    pub status: TokenStatus,
    /// The console's one-time form key and the user submitting it: the token is created only
    /// if the key was never used, in the same transaction that marks it used.
    pub form_key: Option<(String, Id)>,
}

/// Why a token was not created. The REST API and the console word these differently (the
/// console puts them beside the field at fault), so the rules answer with a type, not a text.
#[derive(Debug)]
pub enum CreateTokenError {
    /// The name is empty or longer than 255 characters.
    Name,
    /// The scope names something that is not an application permission, or nothing.
    Scope(tollgate_core::ScopeError),
    /// The expiry is not in the future.
    PastExpiry,
    /// The scope reaches beyond the creator's: `excess` are the grants at fault, `bound` the
    /// creator's own scope.
    TooPowerful {
        excess: Vec<String>,
        bound: Vec<String>,
    },
    /// The creator expires at `limit`, and the token would live longer.
    OutlivesCreator { limit: i64 },
    /// The one-time form key was used already: nothing was created.
    AlreadySubmitted,
    /// Anything else (the store, the text rules); already an API answer.
    Other(ApiError),
}

impl From<ApiError> for CreateTokenError {
    fn from(e: ApiError) -> Self {
        CreateTokenError::Other(e)
    }
}

impl CreateTokenError {
    /// The REST API's answer.
    pub fn into_api(self) -> ApiError {
        let action = tollgate_core::Action::ApplicationApiTokensPost;
        match self {
            CreateTokenError::Name => {
                ApiError::validation("name must be between 1 and 255 characters long")
            }
            CreateTokenError::Scope(e) => ApiError::validation(format!("Invalid scope: {e}")),
            CreateTokenError::PastExpiry => ApiError::validation(
                "expirationDate is in the past: choose a future date, or leave it out for a token that never expires",
            ),
            CreateTokenError::TooPowerful { excess, bound } => ApiError::forbidden(
                action,
                format!(
                    "A token cannot be more powerful than its creator: {} would reach beyond the creator's scope ({})",
                    some_of(&excess),
                    some_of(&bound)
                ),
            ),
            CreateTokenError::OutlivesCreator { limit } => ApiError::forbidden(
                action,
                format!(
                    "A token cannot outlive its creator, which expires at {}: set an expirationDate no later than that",
                    iso(limit)
                ),
            ),
            CreateTokenError::AlreadySubmitted => {
                ApiError::conflict("This form was submitted already: no second token was created")
            }
            CreateTokenError::Other(e) => e,
        }
    }
}

/// Create a token: the one place the creation rules live (the REST handler and the console
/// both call it). The scope must parse, the expiry must be in the future, and the token may be
/// no more powerful and no longer-lived than whoever creates it. Returns the stored token and
/// its secret, which the caller shows once and then drops.
pub async fn create_token(
    state: &AppState,
    access: &AppAccess,
    request: TokenRequest,
) -> Result<(TokenRecord, Secret), CreateTokenError> {
    let name_len = request.name.chars().count();
    if name_len == 0 || name_len > 255 {
        return Err(CreateTokenError::Name);
    }
    // The same text rules and limits as the REST body's schema, for the console too.
    validate::name_field("applicationApiTokenPost", "name", &request.name)?;
    validate::text_field(
        "applicationApiTokenPost",
        "description",
        &request.description,
    )?;
    let scope = match &request.scope {
        None => Scope::all(),
        Some(items) => Scope::parse(items).map_err(CreateTokenError::Scope)?,
    };
    if request.expiration_date.is_some_and(|at| at <= now_ms()) {
        return Err(CreateTokenError::PastExpiry);
    }
    let (bound, bound_expiry) = access.creation_bound();
    if let Err(excess) = scope.within(&bound) {
        return Err(CreateTokenError::TooPowerful {
            excess,
            bound: bound.to_strings(),
        });
    }
    if let Some(limit) = bound_expiry
        && request.expiration_date.is_none_or(|e| e > limit)
    {
        return Err(CreateTokenError::OutlivesCreator { limit });
    }
    let secret = Secret::generate(SecretKind::ApplicationToken);
    let scope_strings = scope.to_strings();
    let new = NewToken {
        application_id: access.application(),
        digest: secret.digest(),
        name: &request.name,
        description: &request.description,
        scope: &scope_strings,
        status: request.status,
        expiration_date: request.expiration_date,
        creator: access.creator(state).await?,
    };
    let created = match &request.form_key {
        None => state.store().create_token(&new).await,
        Some((key, user)) => state.store().create_token_once(&new, key, *user).await,
    };
    let record = match created {
        Err(tollgate_store::StoreError::Conflict("this form")) => {
            return Err(CreateTokenError::AlreadySubmitted);
        }
        other => other.map_err(|e| ApiError::from_store(e, "Application"))?,
    };
    tracing::info!(token = %record.id, application = %record.application_id, creator = %record.creator.id, "API token created");
    Ok((record, secret))
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
        form_key: None,
    };
    let (record, secret) = create_token(&state, &access, request)
        .await
        .map_err(CreateTokenError::into_api)?;
    let mut out = token_json(&state, &record);
    // The only response that ever carries the secret: no cache may keep it.
    out["token"] = json!(secret.expose());
    let mut res = (StatusCode::CREATED, Json(out)).into_response();
    crate::api::login::no_store(&mut res);
    Ok(res)
}

pub async fn get(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, token_id)): Path<(Id, Id)>,
) -> ApiResult<Json<Value>> {
    let t = state
        .store()
        .token(access.application(), token_id)
        .await
        .map_err(|e| ApiError::from_store(e, "API token"))?;
    Ok(Json(token_json(&state, &t)))
}

/// Change a token's name, description or status (nothing else about a token changes).
pub async fn update_token(
    state: &AppState,
    access: &AppAccess,
    token_id: Id,
    change: &TokenChange,
) -> ApiResult<TokenRecord> {
    if let Some(name) = &change.name {
        let len = name.chars().count();
        if len == 0 || len > 255 {
            return Err(ApiError::validation(
                "name must be between 1 and 255 characters long",
            ));
        }
        validate::name_field("apiTokenPatch", "name", name)?;
    }
    if let Some(description) = &change.description {
        validate::text_field("apiTokenPatch", "description", description)?;
    }
    let t = state
        .store()
        .update_token(access.application(), token_id, change)
        .await
        .map_err(|e| ApiError::from_store(e, "API token"))?;
    tracing::info!(token = %t.id, status = t.status.as_str(), "API token updated");
    Ok(t)
}

/// Delete a token; it is refused from the very next request on.
pub async fn delete_token(state: &AppState, access: &AppAccess, token_id: Id) -> ApiResult<()> {
    state
        .store()
        .delete_token(access.application(), token_id)
        .await
        .map_err(|e| ApiError::from_store(e, "API token"))?;
    tracing::info!(token = %token_id, "API token deleted");
    Ok(())
}

pub async fn patch(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, token_id)): Path<(Id, Id)>,
    Body(body): Body<TokenPatch>,
) -> ApiResult<Json<Value>> {
    let change = TokenChange {
        name: body.name,
        description: body.description,
        status: status(body.status.as_deref())?,
    };
    let t = update_token(&state, &access, token_id, &change).await?;
    Ok(Json(token_json(&state, &t)))
}

pub async fn delete(
    State(state): State<AppState>,
    access: AppAccess,
    Path((_, token_id)): Path<(Id, Id)>,
) -> ApiResult<Json<Value>> {
    delete_token(&state, &access, token_id).await?;
    Ok(success())
}
