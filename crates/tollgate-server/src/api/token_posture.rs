//! The posture summary on `applicationApiTokens.get` (extension fields `posture` and
//! `postureFilter`, and the query parameter `posture`): how many of the application's tokens
//! are never used, idle for 90+ days, never expiring, all-powerful, expiring within 30 days,
//! expired, inactive, or created by other tokens; `?posture=<name>` lists only those.

use serde_json::{Map, Value, json};
use tollgate_store::list::{ListSpec, Page};
use tollgate_store::posture::Posture;
use tollgate_store::tokens::TokenRecord;
use tollgate_store::{Id, Part};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The `posture` query parameter.
pub fn parse(value: Option<&str>) -> Result<Option<Posture>, ApiError> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => Posture::parse(v).map(Some).ok_or_else(|| {
            let names: Vec<&str> = Posture::ALL.iter().map(|p| p.name()).collect();
            ApiError::validation(format!("posture must be one of {}", names.join(", ")))
        }),
    }
}

/// Last-used times this node holds in memory are written first, so "never used" and
/// "idle" see them.
async fn flush(state: &AppState) {
    if let Err(e) = state.credentials().flush_last_used().await {
        tracing::warn!(error = %e, "could not record last-used times before a posture query");
    }
}

/// One page of the list, of one category when asked.
pub async fn page(
    state: &AppState,
    application: Id,
    posture: Option<Posture>,
    spec: &ListSpec,
) -> ApiResult<Page<TokenRecord>> {
    Ok(match posture {
        None => state.store().list_tokens(application, spec).await?,
        Some(p) => {
            flush(state).await;
            let now = tollgate_store::now_ms();
            state
                .store()
                .list_tokens_in(application, p, now, spec)
                .await?
        }
    })
}

/// The summary, and the last instant at which it holds unless a token changes.
struct Summary {
    counts: Value,
    until: i64,
}

/// `{"neverUsed": n, …}` over every token of the application. Answered from memory while the
/// freshness gate allows (`read_cache`) and until the first instant at which a token's time
/// moves it into another category (idle, expiring, expired); tokens change only with a
/// change notice, last-used times included (their flush, just above, sends one).
pub async fn summary(state: &AppState, application: Id) -> ApiResult<Value> {
    flush(state).await;
    let store = state.store();
    let summary = state
        .reads()
        .get(
            application,
            Part::Tokens,
            "posture",
            |s: &Summary| tollgate_store::now_ms() <= s.until,
            |_| true,
            || async {
                let (counts, until) = store
                    .token_posture_until(application, tollgate_store::now_ms())
                    .await?;
                let map: Map<String, Value> = counts
                    .into_iter()
                    .map(|(p, n)| (p.name().to_owned(), json!(n)))
                    .collect();
                Ok::<_, ApiError>(Summary {
                    counts: Value::Object(map),
                    until,
                })
            },
        )
        .await?;
    Ok(summary.counts.clone())
}
