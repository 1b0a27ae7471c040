//! The credential cache under a lease (several nodes): used only while the change feed is up
//! and a heartbeat has come back recently; a change made behind the node's back is seen once
//! the lease runs out.

use std::time::{Duration, Instant};
use tollgate_testkit::{Case, case};

use crate::common::TestApp;
use tollgate_server::freshness::{CacheState, monotonic_us};
use tollgate_store::tokens::TokenStatus;

async fn under_a_lease_the_cache_is_used_only_while_it_is_renewed() {
    let t = TestApp::new().await;
    let user = t.user("lease@example.com").await;
    let app = t.app_of(user, "leased").await;
    let (id, secret) = t
        .raw_token(app, &["all.Application"], TokenStatus::Active, None)
        .await;
    let creds = t.state.credentials();
    assert_eq!(t.state.freshness().state(), CacheState::SingleNode);

    let lease = Duration::from_millis(300);
    t.state.freshness().require_lease(lease);
    t.state.clear_caches();
    assert_eq!(t.state.freshness().state(), CacheState::FeedDown);
    // Feed down: verified against the database, not cached.
    creds.verify(&secret).await.unwrap();
    assert_eq!(creds.cached_tokens(), 0);

    // Feed up but no heartbeat back yet: still not cached.
    t.state.set_change_feed(true);
    assert_eq!(t.state.freshness().state(), CacheState::LeaseLapsed);
    creds.verify(&secret).await.unwrap();
    assert_eq!(creds.cached_tokens(), 0);

    // A heartbeat came back: cached from now on.
    let renewed = Instant::now();
    t.state.freshness().renew_lease(monotonic_us(renewed));
    assert_eq!(t.state.freshness().state(), CacheState::Live);
    creds.verify(&secret).await.unwrap();
    assert_eq!(creds.cached_tokens(), 1);

    // Deactivated behind the node's back (no hook, no notice): the cache still says yes
    // within the lease, which is exactly what the lease bounds...
    sqlx::query("UPDATE api_tokens SET status = 'inactive' WHERE id = $1")
        .bind(id.to_hex())
        .execute(t.store().pool())
        .await
        .unwrap();
    assert!(creds.verify(&secret).await.is_ok());
    // ...and once it runs out, the database is asked.
    crate::common::eventually("the lease runs out", Duration::from_secs(30), || async {
        (t.state.freshness().state() == CacheState::LeaseLapsed).then_some(())
    })
    .await;
    assert!(
        renewed.elapsed() >= lease,
        "the lease lapsed before its length had passed"
    );
    let refused = creds.verify(&secret).await.unwrap_err();
    assert_eq!(refused.status, 401);
    assert!(refused.message.contains("inactive"), "{}", refused.message);

    // A heartbeat stamped too long ago does not renew the lease.
    assert_eq!(t.state.freshness().lease_lapses(), 0);
    t.state
        .freshness()
        .renew_lease(monotonic_us(Instant::now()) - 400_000);
    assert_eq!(t.state.freshness().state(), CacheState::LeaseLapsed);
    // Each heartbeat that comes back after the lease ran out is counted as a lapse.
    assert_eq!(t.state.freshness().lease_lapses(), 1);

    // Losing the feed drops the cache and the lease; regaining it needs a fresh heartbeat.
    t.state
        .freshness()
        .renew_lease(monotonic_us(Instant::now()));
    sqlx::query("UPDATE api_tokens SET status = 'active' WHERE id = $1")
        .bind(id.to_hex())
        .execute(t.store().pool())
        .await
        .unwrap();
    creds.verify(&secret).await.unwrap();
    assert_eq!(creds.cached_tokens(), 1);
    t.state.set_change_feed(false);
    assert_eq!(creds.cached_tokens(), 0);
    assert_eq!(t.state.freshness().state(), CacheState::FeedDown);
    t.state.set_change_feed(true);
    assert_eq!(t.state.freshness().state(), CacheState::LeaseLapsed);
}

pub fn cases() -> Vec<Case> {
    vec![case!(
        under_a_lease_the_cache_is_used_only_while_it_is_renewed
    )]
}
