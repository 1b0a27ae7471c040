//! Token lineage (issue 15, item 6) on both backends: descendants are found through the
//! recorded creator, a cascade deactivates or deletes the whole subtree in one transaction
//! with one audit entry per token, a refusal by the rules changes nothing, and a cascade
//! released together with a child minting a grandchild never leaves a live token in the
//! subtree (a hundred rounds and more, each way).

use std::sync::Arc;

use tokio::sync::Barrier;
use tollgate_store::audit::{AUDIT_SORTS, AuditEntry, AuditFilter, AuditQuery, LogOf};
use tollgate_store::lineage::{Cascaded, LineageCounts, cascade_reason};
use tollgate_store::list::ListSpec;
use tollgate_store::tokens::{Creator, NewToken, TokenChange, TokenRecord, TokenStatus};
use tollgate_store::{Actor, Id, Store, StoreError};
use tollgate_testkit::{Case, case};

use crate::support::{app, fresh, rand_digest, token, user};

/// A token minted by token `parent` (acting as itself, as the server's creation does).
async fn child(
    store: &Store,
    app: Id,
    parent: &TokenRecord,
    name: &str,
) -> Result<TokenRecord, StoreError> {
    let scope = vec!["all.Application".to_owned()];
    store
        .create_token(
            &Actor::api_token(parent.id, app),
            &NewToken {
                application_id: app,
                digest: rand_digest(),
                name,
                description: "",
                scope: &scope,
                status: TokenStatus::Active,
                expiration_date: None,
                restrictions: None,
                usage_limit: None,
                carve_from: None,
                creator: Creator {
                    kind: "apiToken",
                    id: parent.id,
                    name: parent.name.clone(),
                },
            },
        )
        .await
}

fn deactivate() -> TokenChange {
    TokenChange {
        status: Some(TokenStatus::Inactive),
        ..TokenChange::default()
    }
}

fn allow_all(_: &TokenRecord, _: &[TokenRecord]) -> Result<(), StoreError> {
    Ok(())
}

async fn log_of(store: &Store, app: Id) -> Vec<AuditEntry> {
    let q = AuditQuery {
        log: LogOf::Application(app),
        start: None,
        end: None,
        filter: AuditFilter::default(),
    };
    let spec = ListSpec {
        sort: AUDIT_SORTS[0].1,
        descending: false,
        page: 0,
        per_page: 1000,
        filter: None,
    };
    store.audit_logs(&q, &spec).await.unwrap().items
}

/// root → a → (b, c), root → d; `other` is no relative.
struct Tree {
    app: Id,
    root: TokenRecord,
    a: TokenRecord,
    b: TokenRecord,
    c: TokenRecord,
    d: TokenRecord,
    other: TokenRecord,
}

async fn tree(store: &Store) -> Tree {
    let owner = user(store, "o@example.com").await;
    let app = app(store, owner, "a").await;
    let root = token(store, app, "root", None).await;
    let a = child(store, app, &root, "a").await.unwrap();
    let b = child(store, app, &a, "b").await.unwrap();
    let c = child(store, app, &a, "c").await.unwrap();
    let d = child(store, app, &root, "d").await.unwrap();
    let other = token(store, app, "other", None).await;
    Tree {
        app,
        root,
        a,
        b,
        c,
        d,
        other,
    }
}

async fn descendants_are_found_through_the_recorded_creator() {
    let f = fresh().await;
    let t = tree(&f.store).await;
    let (items, counts) = f.store.descendants(t.app, t.root.id, 100).await.unwrap();
    assert_eq!(
        counts,
        LineageCounts {
            children: 2,
            descendants: 4
        }
    );
    let got: Vec<(String, i64)> = items
        .iter()
        .map(|d| (d.token.name.clone(), d.depth))
        .collect();
    // Nearest first, then by creation.
    assert_eq!(
        got,
        vec![
            ("a".into(), 1),
            ("d".into(), 1),
            ("b".into(), 2),
            ("c".into(), 2)
        ]
    );
    assert_eq!(items[2].token.creator.id, t.a.id);
    let (few, counts) = f.store.descendants(t.app, t.root.id, 1).await.unwrap();
    assert_eq!(few.len(), 1, "the limit applies to the list");
    assert_eq!(counts.descendants, 4, "the count does not");
    let kids: Vec<String> = f
        .store
        .children(t.app, t.a.id, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(kids, vec!["b", "c"]);
    assert_eq!(
        f.store.lineage_counts(t.app, t.b.id).await.unwrap(),
        LineageCounts::default()
    );
    assert_eq!(
        f.store.lineage_counts(t.app, t.other.id).await.unwrap(),
        LineageCounts::default()
    );
    // Another application's view of the token: nothing.
    let elsewhere = app(&f.store, user(&f.store, "x@example.com").await, "b").await;
    assert_eq!(
        f.store.lineage_counts(elsewhere, t.root.id).await.unwrap(),
        LineageCounts::default()
    );
}

async fn a_cascade_deactivates_the_subtree_in_one_audited_write() {
    let f = fresh().await;
    let t = tree(&f.store).await;
    // c was switched off already: it stays off, unchanged, and is not audited again.
    f.store
        .update_token(&Actor::operator(), t.app, t.c.id, &deactivate(), |_| {
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let before = log_of(&f.store, t.app).await.len();
    let change = TokenChange {
        name: Some("root (revoked)".into()),
        ..deactivate()
    };
    let Cascaded { root, descendants } = f
        .store
        .cascade_deactivate(&Actor::operator(), t.app, t.root.id, &change, allow_all)
        .await
        .unwrap();
    assert_eq!(root.name, "root (revoked)");
    assert_eq!(root.status, TokenStatus::Inactive);
    let mut changed: Vec<Id> = descendants.iter().map(|d| d.id).collect();
    let mut expected = vec![t.a.id, t.b.id, t.d.id];
    changed.sort();
    expected.sort();
    assert_eq!(changed, expected);
    for x in [&t.root, &t.a, &t.b, &t.c, &t.d] {
        let now = f.store.token(t.app, x.id).await.unwrap();
        assert_eq!(now.status, TokenStatus::Inactive, "{}", x.name);
    }
    for x in [&t.a, &t.b, &t.d] {
        let now = f.store.token(t.app, x.id).await.unwrap();
        assert_eq!(
            now.life.deactivation_reason.as_deref(),
            Some(cascade_reason(t.root.id).as_str())
        );
    }
    assert_eq!(
        f.store.token(t.app, t.other.id).await.unwrap().status,
        TokenStatus::Active,
        "no relative is touched"
    );
    let log = log_of(&f.store, t.app).await;
    let new: Vec<&AuditEntry> = log[before..].iter().collect();
    assert_eq!(new.len(), 4, "one entry per token changed: {new:?}");
    for e in &new {
        assert_eq!(e.request_action, "patch");
        assert_eq!(e.request_body["status"], "inactive");
    }
    let of = |id: Id| {
        new.iter()
            .find(|e| e.secondary_target.as_ref().map(|s| s.id) == Some(id))
            .unwrap_or_else(|| panic!("no entry for {id}"))
    };
    assert_eq!(of(t.root.id).request_body["cascade"], true);
    assert_eq!(of(t.root.id).request_body["name"], "root (revoked)");
    assert_eq!(of(t.b.id).request_body["cascadeFrom"], t.root.id.to_hex());
    assert_eq!(
        of(t.b.id).request_path_params["apiTokenId"],
        t.b.id.to_hex()
    );
}

async fn a_cascade_deletes_the_subtree_and_a_plain_delete_leaves_children() {
    let f = fresh().await;
    let t = tree(&f.store).await;
    // Without cascade: a's children keep working, and are nobody's descendants any more.
    f.store
        .delete_token(&Actor::operator(), t.app, t.a.id, |_| {
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let b = f.store.token(t.app, t.b.id).await.unwrap();
    assert_eq!(b.status, TokenStatus::Active);
    assert_eq!(b.creator.id, t.a.id, "it still names its creator");
    assert_eq!(
        f.store.lineage_counts(t.app, t.root.id).await.unwrap(),
        LineageCounts {
            children: 1,
            descendants: 1
        }
    );
    let before = log_of(&f.store, t.app).await.len();
    let done = f
        .store
        .cascade_delete(&Actor::operator(), t.app, t.root.id, allow_all)
        .await
        .unwrap();
    assert_eq!(
        done.descendants.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![t.d.id]
    );
    for gone in [&t.root, &t.d] {
        assert!(matches!(
            f.store.token(t.app, gone.id).await,
            Err(StoreError::NotFound)
        ));
    }
    for kept in [&t.b, &t.c, &t.other] {
        f.store.token(t.app, kept.id).await.unwrap();
    }
    let log = log_of(&f.store, t.app).await;
    let new = &log[before..];
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(new.iter().all(|e| e.request_action == "delete"));
    assert!(
        new.iter()
            .any(|e| e.request_body["cascadeFrom"] == t.root.id.to_hex())
    );
}

async fn a_refused_cascade_changes_nothing() {
    let f = fresh().await;
    let t = tree(&f.store).await;
    let before = log_of(&f.store, t.app).await.len();
    // The rules see the root and every descendant, locked.
    let refuse_b = |root: &TokenRecord, ds: &[TokenRecord]| {
        assert_eq!(root.id, t.root.id);
        assert_eq!(ds.len(), 4);
        if ds.iter().any(|d| d.id == t.b.id) {
            return Err(StoreError::Conflict("b"));
        }
        Ok(())
    };
    let e = f
        .store
        .cascade_deactivate(
            &Actor::operator(),
            t.app,
            t.root.id,
            &deactivate(),
            refuse_b,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict("b")));
    let e = f
        .store
        .cascade_delete(&Actor::operator(), t.app, t.root.id, |_, _| {
            Err(StoreError::Conflict("b"))
        })
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict("b")));
    for x in [&t.root, &t.a, &t.b, &t.c, &t.d] {
        assert_eq!(
            f.store.token(t.app, x.id).await.unwrap().status,
            TokenStatus::Active
        );
    }
    assert_eq!(log_of(&f.store, t.app).await.len(), before);
    // A token that is not there, or not this application's: NotFound.
    let e = f
        .store
        .cascade_delete(&Actor::operator(), t.app, Id::generate(), allow_all)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound));
    // An inactive acting token cascades nothing (its credential check fails first).
    let e = f
        .store
        .cascade_deactivate(
            &Actor::api_token(t.c.id, t.app),
            t.app,
            t.c.id,
            &deactivate(),
            allow_all,
        )
        .await;
    assert!(
        e.is_ok(),
        "an active token may switch itself off with cascade"
    );
    let e = f
        .store
        .cascade_delete(&Actor::api_token(t.c.id, t.app), t.app, t.c.id, allow_all)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Revoked(_)), "{e:?}");
}

/// A cascade (deactivation, or deletion) from `root` released together with `root`'s child
/// minting a grandchild, `ROUNDS` times: whichever commits first, no live token remains in
/// the subtree afterwards (the grandchild, if it was made, is switched off or deleted too).
async fn a_cascade_racing_a_grandchild_leaves_no_live_token() {
    const ROUNDS: usize = 120;
    let f = fresh().await;
    let store = Arc::new(f.store.clone());
    let owner = user(&store, "o@example.com").await;
    let app = app(&store, owner, "race").await;
    let (mut minted, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        let delete = round % 2 == 1;
        let root = token(&store, app, "root", None).await;
        let kid = child(&store, app, &root, "child").await.unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let cascade = {
            let (store, barrier, root) = (store.clone(), barrier.clone(), root.id);
            tokio::spawn(async move {
                barrier.wait().await;
                if delete {
                    store
                        .cascade_delete(&Actor::operator(), app, root, allow_all)
                        .await
                } else {
                    store
                        .cascade_deactivate(&Actor::operator(), app, root, &deactivate(), allow_all)
                        .await
                }
            })
        };
        let mint = {
            let (store, barrier, kid) = (store.clone(), barrier.clone(), kid.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                child(&store, app, &kid, "grandchild").await
            })
        };
        cascade.await.unwrap().expect("the cascade succeeds");
        let grandchild = match mint.await.unwrap() {
            Ok(g) => {
                minted += 1;
                Some(g)
            }
            Err(StoreError::Revoked(_)) => {
                refused += 1;
                None
            }
            Err(e) => panic!("round {round}: the mint failed otherwise: {e:?}"),
        };
        for id in [Some(root.id), Some(kid.id), grandchild.map(|g| g.id)]
            .into_iter()
            .flatten()
        {
            match store.token_by_id(id).await.unwrap() {
                None => assert!(delete, "round {round}: {id} deleted by a deactivation"),
                Some(t) => {
                    assert!(
                        !delete,
                        "round {round}: {} survived the cascade delete",
                        t.name
                    );
                    assert_eq!(
                        t.status,
                        TokenStatus::Inactive,
                        "round {round}: {} is still live",
                        t.name
                    );
                }
            }
        }
        // Nothing else was minted under the root meanwhile.
        let (rest, _) = store.descendants(app, root.id, 100).await.unwrap();
        assert!(rest.iter().all(|d| d.token.status == TokenStatus::Inactive));
    }
    eprintln!("{ROUNDS} rounds: grandchild minted first {minted} times, refused {refused} times");
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(descendants_are_found_through_the_recorded_creator),
        case!(a_cascade_deactivates_the_subtree_in_one_audited_write),
        case!(a_cascade_deletes_the_subtree_and_a_plain_delete_leaves_children),
        case!(a_refused_cascade_changes_nothing),
        case!(
            a_cascade_racing_a_grandchild_leaves_no_live_token,
            multi_thread = 4
        ),
    ]
}
