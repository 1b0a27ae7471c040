//! The credential cache under a lease (several nodes): used only while the change feed is up
//! and a heartbeat has come back recently; a change made behind the node's back is seen once
//! the lease runs out.

mod common;

use std::time::{Duration, Instant};

use common::TestApp;
use tollgate_server::auth::CacheState;
use tollgate_server::auth::credentials::monotonic_us;
use tollgate_store::tokens::TokenStatus;

#[tokio::test]
async fn under_a_lease_the_cache_is_used_only_while_it_is_renewed() {
    let t = TestApp::new().await;
    let user = t.user("lease@example.com").await;
    let app = t.app_of(user, "leased").await;
    let (id, secret) = t
        .raw_token(app, &["all.Application"], TokenStatus::Active, None)
        .await;
    let creds = t.state.credentials();
    assert_eq!(creds.cache_state(), CacheState::SingleNode);

    let lease = Duration::from_millis(300);
    creds.require_lease(lease);
    assert_eq!(creds.cache_state(), CacheState::FeedDown);
    // Feed down: verified against the database, not cached.
    creds.verify(&secret).await.unwrap();
    assert_eq!(creds.cached_tokens(), 0);

    // Feed up but no heartbeat back yet: still not cached.
    creds.set_trusted(true);
    assert_eq!(creds.cache_state(), CacheState::LeaseLapsed);
    creds.verify(&secret).await.unwrap();
    assert_eq!(creds.cached_tokens(), 0);

    // A heartbeat came back: cached from now on.
    creds.renew_lease(monotonic_us(Instant::now()));
    assert_eq!(creds.cache_state(), CacheState::Live);
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
    tokio::time::sleep(lease + Duration::from_millis(50)).await;
    assert_eq!(creds.cache_state(), CacheState::LeaseLapsed);
    let refused = creds.verify(&secret).await.unwrap_err();
    assert_eq!(refused.status, 401);
    assert!(refused.message.contains("inactive"), "{}", refused.message);

    // A heartbeat stamped too long ago does not renew the lease.
    assert_eq!(creds.lease_lapses(), 0);
    creds.renew_lease(monotonic_us(Instant::now()) - 400_000);
    assert_eq!(creds.cache_state(), CacheState::LeaseLapsed);
    // Each heartbeat that comes back after the lease ran out is counted as a lapse.
    assert_eq!(creds.lease_lapses(), 1);

    // Losing the feed drops the cache and the lease; regaining it needs a fresh heartbeat.
    creds.renew_lease(monotonic_us(Instant::now()));
    sqlx::query("UPDATE api_tokens SET status = 'active' WHERE id = $1")
        .bind(id.to_hex())
        .execute(t.store().pool())
        .await
        .unwrap();
    creds.verify(&secret).await.unwrap();
    assert_eq!(creds.cached_tokens(), 1);
    creds.set_trusted(false);
    assert_eq!(creds.cached_tokens(), 0);
    assert_eq!(creds.cache_state(), CacheState::FeedDown);
    creds.set_trusted(true);
    assert_eq!(creds.cache_state(), CacheState::LeaseLapsed);
}
