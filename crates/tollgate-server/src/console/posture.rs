//! The posture summary at the top of the token list (issue 13): how many of the
//! application's tokens are never used, idle, never expiring, all-powerful, expiring soon,
//! expired, inactive or created by other tokens, each count a link that filters the list.
//!
//! Counts and filters are the API's (`crate::api::token_posture`: `summary` and `page`, the
//! functions behind `applicationApiTokens.get`'s `posture` field and `?posture=` parameter).

use tollgate_store::Id;
use tollgate_store::posture::Posture;

use crate::api::token_posture;
use crate::error::ApiResult;
use crate::state::AppState;

/// One category of the summary.
pub struct PostureItem {
    /// The API name (`neverUsed`), also the query parameter's value.
    pub name: &'static str,
    pub label: &'static str,
    pub count: i64,
    /// The list filtered to this category.
    pub href: String,
    /// This filter is the one in force.
    pub current: bool,
    /// A category a reviewer should look at when it is not empty.
    pub warn: bool,
}

/// The category as a heading of the summary.
pub fn label(p: Posture) -> &'static str {
    match p {
        Posture::NeverUsed => "Never used",
        Posture::Idle90Days => "Idle 90+ days",
        Posture::NeverExpires => "Never expire",
        Posture::AllPermissions => "All permissions",
        Posture::ExpiringWithin30Days => "Expire within 30 days",
        Posture::Expired => "Expired",
        Posture::Inactive => "Inactive",
        Posture::CreatedByTokens => "Created by other tokens",
    }
}

/// The category in a sentence: "Showing only tokens that …".
pub fn words(p: Posture) -> &'static str {
    match p {
        Posture::NeverUsed => "were never used",
        Posture::Idle90Days => "were not used in the last 90 days",
        Posture::NeverExpires => "never expire",
        Posture::AllPermissions => "have all permissions",
        Posture::ExpiringWithin30Days => "expire within 30 days",
        Posture::Expired => "have expired",
        Posture::Inactive => "are inactive",
        Posture::CreatedByTokens => "were created by other API tokens",
    }
}

/// Every category with its count (the API's summary), in [`Posture::ALL`] order.
pub async fn summary(
    state: &AppState,
    app: Id,
    current: Option<Posture>,
    href: impl Fn(Posture) -> String,
) -> ApiResult<Vec<PostureItem>> {
    let counts = token_posture::summary(state, app).await?;
    Ok(Posture::ALL
        .into_iter()
        .map(|p| {
            let count = counts[p.name()].as_i64().unwrap_or(0);
            PostureItem {
                name: p.name(),
                label: label(p),
                count,
                href: href(p),
                current: current == Some(p),
                warn: count > 0
                    && matches!(
                        p,
                        Posture::NeverUsed
                            | Posture::Idle90Days
                            | Posture::AllPermissions
                            | Posture::ExpiringWithin30Days
                    ),
            }
        })
        .collect())
}
