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
pub async fn flush(state: &AppState) {
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

/// The summary, the last instant at which it holds unless a token changes, and the
/// last-used flushes of this node it has seen (a flush that this node's other answers need
/// not follow changes the counts: see `Credentials::flush_last_used`).
struct Summary {
    counts: Value,
    until: i64,
    flushes: u64,
}

/// `{"neverUsed": n, …}` over every token of the application. Answered from memory while the
/// freshness gate allows (`read_cache`) and until the first instant at which a token's time
/// moves it into another category (idle, expiring, expired); tokens change only with a
/// change notice, last-used times included (their flush, just above, sends one).
pub async fn summary(state: &AppState, application: Id) -> ApiResult<Value> {
    Ok(summary_until(state, application).await?.0)
}

/// [`summary`], and the last instant at which it holds unless a token changes or this node
/// records last-used times.
pub async fn summary_until(state: &AppState, application: Id) -> ApiResult<(Value, i64)> {
    flush(state).await;
    let store = state.store();
    let credentials = state.credentials();
    let summary = state
        .reads()
        .get(
            application,
            Part::Tokens,
            "posture",
            |s: &Summary| tollgate_store::now_ms() <= s.until && s.flushes == credentials.flushes(),
            |_| true,
            || async {
                let flushes = credentials.flushes();
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
                    flushes,
                })
            },
        )
        .await?;
    Ok((summary.counts.clone(), summary.until))
}
