//! The store's lifecycle writes (issue 15) on both backends: a roll inserts the new token and
//! retires the old one in one transaction, two rolls of one token released together make
//! exactly one new token, and a leak report switches off only live tokens, once.

use std::sync::Arc;

use tokio::sync::Barrier;
use tollgate_store::lifecycle::{LEAKED, RollPlan};
use tollgate_store::tokens::{Creator, TokenRecord, TokenStatus};
use tollgate_store::{Actor, Id, Store, StoreError, now_ms};
use tollgate_testkit::{Case, case};

use crate::support::{app, fresh, rand_digest, token, user};

fn plan(retires_at: i64) -> RollPlan {
    RollPlan {
        digest: rand_digest(),
        expiration_date: None,
        creator: Creator {
            kind: "user",
            id: Id::generate(),
            name: "roller@example.com".into(),
        },
        retires_at,
    }
}

/// The rule the server applies: a token is rolled once.
fn once(t: &TokenRecord, retires_at: i64) -> Result<RollPlan, StoreError> {
    if t.life.retires_at.is_some() {
        return Err(StoreError::Conflict("a roll of this token"));
    }
    Ok(plan(retires_at))
}

async fn a_roll_retires_the_old_token_and_copies_its_settings() {
    let f = fresh().await;
    let owner = user(&f.store, "o@example.com").await;
    let app = app(&f.store, owner, "a").await;
    let far = now_ms() + 86_400_000;
    let old = token(&f.store, app, "ingest", Some(far)).await;
    let at = now_ms() + 5_000;
    let rolled = f
        .store
        .roll_token(&Actor::operator(), app, old.id, |t| once(t, at))
        .await
        .unwrap();
    assert_eq!(rolled.new.name, "ingest");
    assert_eq!(rolled.new.scope, old.scope);
    assert_eq!(rolled.new.life.rolled_from, Some(old.id));
    assert_eq!(rolled.new.expiration_date, None);
    assert_eq!(rolled.old.life.retires_at, Some(at));
    assert_eq!(
        rolled.old.expiration_date,
        Some(at),
        "retirement is its expiry"
    );
    // As stored.
    let stored_old = f.store.token(app, old.id).await.unwrap();
    assert_eq!(stored_old.life.retires_at, Some(at));
    assert_eq!(stored_old.expiration_date, Some(at));
    let stored_new = f.store.token(app, rolled.new.id).await.unwrap();
    assert_eq!(stored_new.life.rolled_from, Some(old.id));
    assert_eq!(stored_new.status, TokenStatus::Active);
    // A retirement later than the expiry leaves the expiry.
    let soon = token(&f.store, app, "soon", Some(now_ms() + 1_000_000)).await;
    let r = f
        .store
        .roll_token(&Actor::operator(), app, soon.id, |t| once(t, far))
        .await
        .unwrap();
    assert_eq!(r.old.expiration_date, soon.expiration_date);
    // A refusal by the rules writes nothing.
    let e = f
        .store
        .roll_token(&Actor::operator(), app, old.id, |t| once(t, at))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    let mut names = Vec::new();
    f.store
        .for_each_token(Some(app), |t| names.push(t.name))
        .await
        .unwrap();
    assert_eq!(names.len(), 4, "{names:?}");
}

async fn two_rolls_of_one_token_make_one_new_token() {
    let f = fresh().await;
    let owner = user(&f.store, "o@example.com").await;
    let app = app(&f.store, owner, "a").await;
    let store: Store = f.store.clone();
    let mut violations = 0;
    const ROUNDS: usize = 50;
    for _ in 0..ROUNDS {
        let old = token(&store, app, "t", None).await;
        let barrier = Arc::new(Barrier::new(2));
        let spawn = |b: Arc<Barrier>| {
            let s = store.clone();
            tokio::spawn(async move {
                b.wait().await;
                s.roll_token(&Actor::operator(), app, old.id, |t| {
                    once(t, now_ms() + 60_000)
                })
                .await
            })
        };
        let (x, y) = (spawn(barrier.clone()), spawn(barrier));
        let (x, y) = (x.await.unwrap(), y.await.unwrap());
        let ok = [&x, &y].iter().filter(|r| r.is_ok()).count();
        let refused = [&x, &y]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Conflict(_) | StoreError::Contention(_))))
            .count();
        let mut successors = 0;
        store
            .for_each_token(Some(app), |t| {
                successors += usize::from(t.life.rolled_from == Some(old.id));
            })
            .await
            .unwrap();
        if ok != 1 || refused != 1 || successors != 1 {
            violations += 1;
        }
    }
    println!("{violations} of {ROUNDS} rounds with a violation");
    assert_eq!(violations, 0);
}

async fn a_leak_report_switches_off_live_tokens_only() {
    let f = fresh().await;
    let owner = user(&f.store, "o@example.com").await;
    let app = app(&f.store, owner, "a").await;
    let live = token(&f.store, app, "live", None).await;
    let expired = token(&f.store, app, "expiring", Some(now_ms() + 300)).await;
    let off = token(&f.store, app, "off", None).await;
    f.store
        .update_token(
            &Actor::operator(),
            app,
            off.id,
            &tollgate_store::tokens::TokenChange {
                status: Some(TokenStatus::Inactive),
                ..Default::default()
            },
            crate::support::allow,
        )
        .await
        .unwrap();
    while now_ms() <= expired.expiration_date.unwrap() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let revoked = f
        .store
        .revoke_leaked(
            &Actor::operator(),
            &[live.digest, expired.digest, off.digest, rand_digest()],
        )
        .await
        .unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].id, live.id);
    assert_eq!(revoked[0].application_id, app);
    let t = f.store.token(app, live.id).await.unwrap();
    assert_eq!(t.status, TokenStatus::Inactive);
    assert_eq!(t.life.deactivation_reason.as_deref(), Some(LEAKED));
    assert_eq!(
        f.store
            .token(app, off.id)
            .await
            .unwrap()
            .life
            .deactivation_reason,
        None,
        "a token switched off by hand keeps no reason"
    );
    // Reported again: nothing more to do.
    assert!(
        f.store
            .revoke_leaked(&Actor::operator(), &[live.digest])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        f.store
            .revoke_leaked(&Actor::operator(), &[])
            .await
            .unwrap()
            .is_empty()
    );
    // Switched on again, the reason goes.
    let t = f
        .store
        .update_token(
            &Actor::operator(),
            app,
            live.id,
            &tollgate_store::tokens::TokenChange {
                status: Some(TokenStatus::Active),
                ..Default::default()
            },
            crate::support::allow,
        )
        .await
        .unwrap();
    assert_eq!(t.life.deactivation_reason, None);
    assert_eq!(
        f.store
            .token(app, live.id)
            .await
            .unwrap()
            .life
            .deactivation_reason,
        None
    );
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(a_roll_retires_the_old_token_and_copies_its_settings),
        case!(two_rolls_of_one_token_make_one_new_token, multi_thread = 4),
        case!(a_leak_report_switches_off_live_tokens_only),
    ]
}
