//! Per-token usage on both backends: nodes' counts add up, the recent history keeps each
//! token's newest 100, and a token deleted before a flush is skipped (its rows go with it).

use tollgate_store::Actor;
use tollgate_store::usage::{RecentRequest, UsageCount};
use tollgate_testkit::{Case, case};

use crate::support::{allow, app, fresh, token, user};

fn count(token: tollgate_store::Id, action: &'static str, outcome: u16, n: u64) -> UsageCount {
    UsageCount {
        token,
        action,
        day: 20_000,
        outcome,
        count: n,
    }
}

fn request(token: tollgate_store::Id, at: i64) -> RecentRequest {
    RecentRequest {
        token,
        at,
        action: "device.get".into(),
        status: 200,
        client_address: Some("192.0.2.1".into()),
        user_agent: Some("probe/1".into()),
    }
}

async fn counts_from_several_nodes_add_up_and_history_keeps_the_newest_100() {
    let f = fresh().await;
    let owner = user(&f.store, "owner@example.com").await;
    let app = app(&f.store, owner, "plant").await;
    let t = token(&f.store, app, "CI", None).await;
    // Two nodes flush the same token, action and day: neither overwrites the other.
    let node_a = [
        count(t.id, "device.get", 0, 5),
        count(t.id, "application.patch", 403, 2),
    ];
    let node_b = [
        count(t.id, "device.get", 0, 7),
        count(t.id, "device.get", 401, 1),
    ];
    let history: Vec<RecentRequest> = (0..120).map(|i| request(t.id, 1_000 + i)).collect();
    f.store
        .add_token_usage(&node_a, &history[..60])
        .await
        .unwrap();
    f.store
        .add_token_usage(&node_b, &history[60..])
        .await
        .unwrap();
    let stored = f.store.token_usage(t.id, 0).await.unwrap();
    assert_eq!(
        stored,
        [
            ("application.patch".to_owned(), 20_000, 403, 2),
            ("device.get".to_owned(), 20_000, 0, 12),
            ("device.get".to_owned(), 20_000, 401, 1),
        ]
    );
    assert!(f.store.token_usage(t.id, 20_001).await.unwrap().is_empty());
    let recent = f.store.token_requests(t.id).await.unwrap();
    assert_eq!(recent.len(), 100);
    assert_eq!((recent[0].at, recent[99].at), (1_119, 1_020));
    assert_eq!(recent[0], request(t.id, 1_119));

    // A token deleted before the flush: its counts are skipped, the rest are written.
    let gone = token(&f.store, app, "gone", None).await;
    f.store
        .delete_token(&Actor::operator(), app, gone.id, allow)
        .await
        .unwrap();
    f.store
        .add_token_usage(
            &[
                count(gone.id, "device.get", 0, 1),
                count(t.id, "device.get", 0, 1),
            ],
            &[request(gone.id, 5)],
        )
        .await
        .unwrap();
    assert!(f.store.token_usage(gone.id, 0).await.unwrap().is_empty());
    assert!(f.store.token_requests(gone.id).await.unwrap().is_empty());
    assert_eq!(f.store.token_usage(t.id, 0).await.unwrap()[1].3, 13);
    // Pruning removes days before the bound only.
    assert_eq!(f.store.prune_token_usage(20_000).await.unwrap(), 0);
    assert_eq!(f.store.prune_token_usage(20_001).await.unwrap(), 3);
    assert!(f.store.token_usage(t.id, 0).await.unwrap().is_empty());
    f.store
        .add_token_usage(&[count(t.id, "device.get", 0, 1)], &[])
        .await
        .unwrap();
    // Deleting the token takes its usage with it.
    f.store
        .delete_token(&Actor::operator(), app, t.id, allow)
        .await
        .unwrap();
    assert!(f.store.token_usage(t.id, 0).await.unwrap().is_empty());
    assert!(f.store.token_requests(t.id).await.unwrap().is_empty());
}

pub fn cases() -> Vec<Case> {
    vec![case!(
        counts_from_several_nodes_add_up_and_history_keeps_the_newest_100
    )]
}
