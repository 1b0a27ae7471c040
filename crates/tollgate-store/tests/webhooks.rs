//! Token-event webhooks in the store (issue 15, item 4), both backends: the audit log is the
//! event source (every token event queues one delivery per enabled, subscribed endpoint, in
//! the change's transaction, with the audit entry's id as the event id; a change that rolls
//! back queues nothing), the background jobs' events (expiring, expired, idle-deactivated,
//! retired) too, and two workers never hold a claim on one delivery at once.

use std::collections::HashSet;

use serde_json::{Value, json};
use tollgate_store::audit::{AuditFilter, AuditQuery, LogOf};
use tollgate_store::list::{ListSpec, Sort};
use tollgate_store::tokens::{TokenChange, TokenStatus};
use tollgate_store::webhooks::{
    Claimed, EVENT_TYPES, NewWebhook, Next, Outcome, TokenEvent, Webhook, WebhookChange,
};
use tollgate_store::{Actor, Id, Store, StoreError, now_ms};
use tollgate_testkit::{Case, case};

use crate::support::{allow, app, fresh, rand_digest, token, user};

async fn hook(store: &Store, app: Id, events: &[&str], enabled: bool) -> Webhook {
    let events: Vec<String> = events.iter().map(|e| (*e).to_owned()).collect();
    store
        .create_webhook(
            &Actor::operator(),
            app,
            &NewWebhook {
                id: Id::generate(),
                url: "http://127.0.0.1:9/hook",
                events: &events,
                enabled,
                secret_sealed: "v1:sealed",
            },
        )
        .await
        .unwrap()
}

async fn events_of(store: &Store, app: Id, hook: Id) -> Vec<(String, Value)> {
    let page = store.deliveries(app, hook, None, 0, 1000).await.unwrap();
    let mut out: Vec<(String, Value)> = page
        .items
        .iter()
        .map(|d| {
            assert_eq!(d.status, "pending");
            assert_eq!(d.attempts, 0);
            (
                d.event_type.clone(),
                serde_json::from_str(&d.payload).unwrap(),
            )
        })
        .collect();
    out.reverse(); // oldest first
    out
}

async fn every_token_event_queues_one_delivery_per_subscribed_enabled_endpoint() {
    let f = fresh().await;
    let s = &f.store;
    let owner = user(s, "o@example.com").await;
    let app = app(s, owner, "a").await;
    let other_app = crate::support::app(s, owner, "b").await;
    let all = hook(s, app, EVENT_TYPES, true).await;
    let expiring_only = hook(s, app, &["token.expiring"], true).await;
    let off = hook(s, app, EVENT_TYPES, false).await;
    let elsewhere = hook(s, other_app, EVENT_TYPES, true).await;

    let a = token(s, app, "alpha", None).await;
    let b = token(s, app, "beta", None).await;
    let change = TokenChange {
        status: Some(TokenStatus::Inactive),
        ..Default::default()
    };
    s.update_token(&Actor::operator(), app, b.id, &change, allow)
        .await
        .unwrap();
    // A rename is not an event.
    let rename = TokenChange {
        name: Some("beta2".into()),
        ..Default::default()
    };
    s.update_token(&Actor::operator(), app, b.id, &rename, allow)
        .await
        .unwrap();
    let rolled = s
        .roll_token(&Actor::operator(), app, a.id, |_| {
            Ok::<_, StoreError>(tollgate_store::lifecycle::RollPlan {
                digest: rand_digest(),
                expiration_date: None,
                creator: tollgate_store::tokens::Creator {
                    kind: "user",
                    id: owner,
                    name: "o@example.com".into(),
                },
                retires_at: now_ms() + 60_000,
            })
        })
        .await
        .unwrap();
    let revoked = s
        .revoke_leaked(&Actor::anonymous(None), &[rolled.new.digest])
        .await
        .unwrap();
    assert_eq!(revoked.len(), 1);
    for (event, body) in [
        (
            TokenEvent::Expiring,
            json!({ "leadDays": 7, "expirationDate": "2027-01-01T00:00:00.000Z" }),
        ),
        (
            TokenEvent::Expired,
            json!({ "expirationDate": "2027-01-01T00:00:00.000Z" }),
        ),
        (
            TokenEvent::IdleDeactivated,
            json!({ "idleDays": 90, "status": "inactive" }),
        ),
        (
            TokenEvent::Retired,
            json!({ "rolledToId": rolled.new.id.to_hex() }),
        ),
    ] {
        s.record_token_event(&Actor::operator(), app, a.id, "alpha", event, body)
            .await
            .unwrap();
    }
    s.delete_token(&Actor::operator(), app, b.id, allow)
        .await
        .unwrap();

    let got = events_of(s, app, all.id).await;
    let kinds: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "token.created",
            "token.created",
            "token.deactivated",
            "token.created",
            "token.rolled",
            "token.leaked",
            "token.expiring",
            "token.expired",
            "token.idleDeactivated",
            "token.retired",
            "token.deleted",
        ]
    );
    let every: HashSet<&str> = kinds.iter().copied().collect();
    assert_eq!(every.len(), EVENT_TYPES.len(), "every event type was sent");

    // The event: its id is its audit entry's, and it names the token and the application.
    let spec = ListSpec {
        sort: Sort::Number("creation_date"),
        descending: false,
        page: 0,
        per_page: 1000,
        filter: None,
    };
    let log = s
        .audit_logs(
            &AuditQuery {
                log: LogOf::Application(app),
                start: None,
                end: None,
                filter: AuditFilter::default(),
            },
            &spec,
        )
        .await
        .unwrap();
    let ids: HashSet<String> = log.items.iter().map(|e| e.id.to_hex()).collect();
    for (kind, e) in &got {
        assert_eq!(&e["type"], kind);
        assert!(ids.contains(e["id"].as_str().unwrap()), "{e}");
        assert_eq!(e["applicationId"], app.to_hex());
        assert!(e["time"].as_str().unwrap().ends_with('Z'));
        assert!(!e.to_string().contains("tgat_"), "no secret in {e}");
    }
    let (_, expiring) = &got[6];
    assert_eq!(expiring["token"]["id"], a.id.to_hex());
    assert_eq!(expiring["token"]["name"], "alpha");
    assert_eq!(expiring["data"]["leadDays"], 7);
    let (_, rolled_event) = &got[4];
    assert_eq!(rolled_event["data"]["rolledToId"], rolled.new.id.to_hex());
    let (_, leaked) = &got[5];
    assert_eq!(leaked["token"]["id"], rolled.new.id.to_hex());
    assert_eq!(leaked["data"]["deactivationReason"], "reported as leaked");
    assert_eq!(leaked["actor"]["type"], "Anonymous");

    let only: Vec<String> = events_of(s, app, expiring_only.id)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(only, ["token.expiring"]);
    assert!(events_of(s, app, off.id).await.is_empty(), "disabled");
    assert!(
        events_of(s, other_app, elsewhere.id).await.is_empty(),
        "another application's"
    );
    assert_eq!(s.delivery_counts(app, all.id).await.unwrap(), (11, 0, 0));
}

async fn a_change_that_rolls_back_queues_nothing() {
    let f = fresh().await;
    let s = &f.store;
    let owner = user(s, "o@example.com").await;
    let app = app(s, owner, "a").await;
    let t = token(s, app, "alpha", None).await;
    let h = hook(s, app, EVENT_TYPES, true).await;
    let change = TokenChange {
        status: Some(TokenStatus::Inactive),
        ..Default::default()
    };
    let refused = s
        .update_token(&Actor::operator(), app, t.id, &change, |_| {
            Err(StoreError::Conflict("refused by the rules"))
        })
        .await;
    assert!(refused.is_err());
    assert!(events_of(s, app, h.id).await.is_empty());
    // Switching the endpoint off stops new events; on again, they are queued.
    let off = WebhookChange {
        enabled: Some(false),
        ..Default::default()
    };
    s.update_webhook(&Actor::operator(), app, h.id, &off)
        .await
        .unwrap();
    token(s, app, "while off", None).await;
    assert!(events_of(s, app, h.id).await.is_empty());
    let on = WebhookChange {
        enabled: Some(true),
        events: Some(vec!["token.deleted".into()]),
        ..Default::default()
    };
    let h2 = s
        .update_webhook(&Actor::operator(), app, h.id, &on)
        .await
        .unwrap();
    assert_eq!(h2.events, ["token.deleted"]);
    assert_eq!(h2.url, h.url, "unchanged fields stay");
    token(s, app, "not subscribed", None).await;
    s.delete_token(&Actor::operator(), app, t.id, allow)
        .await
        .unwrap();
    let kinds: Vec<String> = events_of(s, app, h.id)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(kinds, ["token.deleted"]);
    // Deleting the endpoint deletes its deliveries.
    s.delete_webhook(&Actor::operator(), app, h.id)
        .await
        .unwrap();
    assert!(matches!(
        s.webhook(app, h.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.delivery_counts(app, h.id).await.unwrap(), (0, 0, 0));
}

fn delivered(at: i64) -> Outcome {
    Outcome {
        at,
        status_code: Some(200),
        error: None,
        next: Next::Delivered,
    }
}

/// Two stores (two nodes' pools) claiming at once hold disjoint deliveries; a lapsed claim
/// can be taken again, and the first worker's late outcome is then not written.
async fn two_workers_never_hold_one_delivery() {
    let f = fresh().await;
    let s = &f.store;
    let other = Store::connect_with(&f.url, 8).await.unwrap();
    let owner = user(s, "o@example.com").await;
    let app = app(s, owner, "a").await;
    let h = hook(s, app, &["token.created"], true).await;
    for i in 0..30 {
        token(s, app, &format!("t{i}"), None).await;
    }
    let now = now_ms();
    let mut seen: HashSet<Id> = HashSet::new();
    let mut all: Vec<Claimed> = Vec::new();
    for _ in 0..10 {
        let (a, b) = tokio::join!(
            s.claim_deliveries(now, 60_000, 4),
            other.claim_deliveries(now, 60_000, 4)
        );
        for c in a.unwrap().into_iter().chain(b.unwrap()) {
            assert!(seen.insert(c.delivery.event_id), "claimed twice");
            assert_eq!(c.url, "http://127.0.0.1:9/hook");
            all.push(c);
        }
    }
    assert_eq!(seen.len(), 30);
    assert!(
        s.claim_deliveries(now, 60_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // A claim that lapsed (a node died mid-send) is taken again, once.
    let later = now + 61_000;
    let again = s.claim_deliveries(later, 60_000, 100).await.unwrap();
    assert_eq!(again.len(), 30);
    assert!(
        other
            .claim_deliveries(later, 60_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // The first claim's outcome is not written over the second's.
    assert!(!s.finish_delivery(&all[0], &delivered(later)).await.unwrap());
    let c = again
        .iter()
        .find(|c| c.delivery.event_id == all[0].delivery.event_id)
        .unwrap();
    assert!(other.finish_delivery(c, &delivered(later)).await.unwrap());
    let d = s.delivery(app, h.id, c.delivery.event_id).await.unwrap();
    assert_eq!((d.status.as_str(), d.attempts), ("delivered", 1));
    assert_eq!(d.next_attempt_at, None);
    // A retry is due again at its time, not before.
    let retry = &again[1];
    let out = Outcome {
        at: later,
        status_code: Some(500),
        error: Some("the receiver answered 500".into()),
        next: Next::RetryAt(later + 30_000),
    };
    assert!(s.finish_delivery(retry, &out).await.unwrap());
    let d = s
        .delivery(app, h.id, retry.delivery.event_id)
        .await
        .unwrap();
    assert_eq!((d.status.as_str(), d.attempts), ("pending", 1));
    assert_eq!(d.last_status_code, Some(500));
    assert_eq!(d.first_attempt_at, Some(later));
    let lapsed = later + 61_000;
    let due: Vec<Id> = s
        .claim_deliveries(later + 29_000, 60_000, 100)
        .await
        .unwrap()
        .iter()
        .map(|c| c.delivery.event_id)
        .collect();
    assert!(!due.contains(&retry.delivery.event_id));
    let due: Vec<Id> = s
        .claim_deliveries(lapsed, 60_000, 100)
        .await
        .unwrap()
        .iter()
        .map(|c| c.delivery.event_id)
        .collect();
    assert!(due.contains(&retry.delivery.event_id));
    other.close().await;
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(every_token_event_queues_one_delivery_per_subscribed_enabled_endpoint),
        case!(a_change_that_rolls_back_queues_nothing),
        case!(two_workers_never_hold_one_delivery),
    ]
}
