//! The console's part of token lineage (issue 15, item 6): on a token's detail page, which
//! token created it (with a link while that token exists) and which tokens it created, with
//! the warning that they keep working if it is deleted or deactivated (without cascade,
//! which the REST API offers as `?cascade=true`). Rendered by `templates/token_lineage.html`,
//! included in the detail page.

use tollgate_store::tokens::TokenRecord;

use crate::service::lineage::parent_of;
use crate::state::AppState;

/// Children linked on the page, at most.
const SHOWN_CHILDREN: i64 = 20;

/// A token named on the page: its detail link and its name.
pub struct TokenLink {
    pub href: String,
    pub name: String,
}

/// What the detail page says about a token's lineage.
pub struct LineageView {
    /// The token that created this one: a link while it exists.
    pub parent: Option<TokenLink>,
    /// Its name as recorded at creation, when the parent has been deleted.
    pub parent_gone: Option<String>,
    /// The tokens it created itself (up to [`SHOWN_CHILDREN`]).
    pub children: Vec<TokenLink>,
    pub child_count: i64,
    /// More children than are linked.
    pub more_children: bool,
    /// Its children, their children, and so on.
    pub descendant_count: i64,
}

impl LineageView {
    pub async fn of(state: &AppState, t: &TokenRecord) -> LineageView {
        let base = format!("{}/applications/{}/tokens", super::BASE, t.application_id);
        let store = state.store();
        let (mut parent, mut parent_gone) = (None, None);
        if let Some(p) = parent_of(t) {
            match store.token(t.application_id, p).await {
                Ok(found) => {
                    parent = Some(TokenLink {
                        href: format!("{base}/{p}"),
                        name: found.name,
                    })
                }
                Err(_) => parent_gone = Some(t.creator.name.clone()),
            }
        }
        let read = async {
            let children = store
                .children(t.application_id, t.id, SHOWN_CHILDREN)
                .await?;
            let counts = store.lineage_counts(t.application_id, t.id).await?;
            Ok::<_, tollgate_store::StoreError>((children, counts))
        };
        let (children, counts) = match read.await {
            Ok((items, counts)) => (
                items
                    .into_iter()
                    .map(|c| TokenLink {
                        href: format!("{base}/{}", c.id),
                        name: c.name,
                    })
                    .collect::<Vec<_>>(),
                counts,
            ),
            Err(e) => {
                tracing::warn!(token = %t.id, error = %e, "token lineage not read");
                (Vec::new(), Default::default())
            }
        };
        LineageView {
            more_children: counts.children > children.len() as i64,
            parent,
            parent_gone,
            children,
            child_count: counts.children,
            descendant_count: counts.descendants,
        }
    }
}
