//! The heartbeat and the change listener have connections of their own: with every pooled
//! connection held by a long transaction, the cache lease is still renewed (and cached
//! credentials are still answered), and a revocation still waits for the other node.
//!
//! Runs in the PostgreSQL pass, on `TOLLGATE_TEST_PG_SERVER` (scripts/test.sh sets it).

use std::time::{Duration, Instant};

use crate::common::process::pg_server;
use tollgate_server::freshness::CacheState;
use tollgate_server::{AppState, Settings};
use tollgate_store::tokens::{Creator, NewToken, TokenStatus};
use tollgate_store::users::NewUser;
use tollgate_store::{Store, StoreOptions};
use tollgate_testkit::{Case, case};

const LEASE: Duration = Duration::from_millis(200);

async fn node(db: &str, pool: u32) -> AppState {
    let store = Store::open(
        db,
        &StoreOptions {
            max_connections: pool,
            acquire_timeout: Duration::from_millis(300),
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let state = AppState::new(
        store,
        Settings {
            change_lease: LEASE,
            ..Settings::default()
        },
    );
    tollgate_server::changes::spawn(&state, None);
    state
}

async fn wait_live(state: &AppState) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while state.freshness().state() != CacheState::Live {
        assert!(
            Instant::now() < deadline,
            "never live: {:?}",
            state.freshness().state()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn a_saturated_pool_does_not_lapse_the_lease() {
    let db = crate::common::fresh_pg_database(&pg_server()).await;
    // A token, stored before the node starts (so that no change notice of it is on its way).
    let setup = Store::connect(&db).await.unwrap();
    let user = setup
        .create_user(&NewUser {
            email: "pool@example.com",
            password_hash: "x",
            first_name: "",
            last_name: "",
        })
        .await
        .unwrap();
    let app = setup
        .create_application(
            &tollgate_store::Actor::operator(),
            tollgate_store::applications::Owner::User(user.id),
            "pool",
            "",
            &Default::default(),
        )
        .await
        .unwrap();
    let secret = tollgate_core::secret::Secret::generate(
        tollgate_core::secret::SecretKind::ApplicationToken,
    );
    let scope = vec!["all.Application".to_owned()];
    setup
        .create_token(
            &tollgate_store::Actor::operator(),
            &NewToken {
                application_id: app.id,
                digest: secret.digest(),
                name: "t",
                description: "",
                scope: &scope,
                status: TokenStatus::Active,
                expiration_date: None,
                restrictions: None,
                usage_limit: None,
                carve_from: None,
                creator: Creator {
                    kind: "user",
                    id: user.id,
                    name: "pool@example.com".into(),
                },
            },
        )
        .await
        .unwrap();
    setup.close().await;
    // A node with a pool of one connection; the token verified once, so that it is cached.
    let a = node(&db, 1).await;
    wait_live(&a).await;
    a.credentials().verify(secret.expose()).await.unwrap();
    assert_eq!(a.credentials().cached_tokens(), 1);
    let lapses = a.freshness().lease_lapses();

    // A long transaction holds the pool's only connection.
    let mut held = a.store().pool().begin().await.unwrap();
    sqlx::query("SELECT 1").execute(&mut *held).await.unwrap();
    // The pool is exhausted: anything that needs it gives up.
    assert!(a.store().ping().await.unwrap_err().is_unavailable());

    // For ten leases, the cache stays live (so heartbeats keep coming back), and the cached
    // token is answered from memory.
    let from_cache = a
        .credentials()
        .counts
        .from_cache
        .load(std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let mut samples = 0;
    while started.elapsed() < LEASE * 10 {
        assert_eq!(
            a.freshness().state(),
            CacheState::Live,
            "the lease lapsed {:?} into the saturation",
            started.elapsed()
        );
        a.credentials().verify(secret.expose()).await.unwrap();
        samples += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(samples > 20);
    assert_eq!(a.freshness().lease_lapses(), lapses);
    assert_eq!(
        a.credentials()
            .counts
            .from_cache
            .load(std::sync::atomic::Ordering::Relaxed),
        from_cache + samples
    );
    held.rollback().await.unwrap();
    a.store().ping().await.unwrap();
}

/// A second node whose pool is saturated still acknowledges a revocation through its own
/// connection, so the revoking node answers long before the saturated node's lease would
/// have run out.
async fn a_saturated_node_still_acknowledges() {
    let db = crate::common::fresh_pg_database(&pg_server()).await;
    let a = node(&db, 4).await;
    let b = node(&db, 1).await;
    wait_live(&a).await;
    wait_live(&b).await;
    let user = a
        .store()
        .create_user(&NewUser {
            email: "ack@example.com",
            password_hash: "x",
            first_name: "",
            last_name: "",
        })
        .await
        .unwrap();
    let _held = b.store().pool().begin().await.unwrap();
    let digest = [5u8; 32];
    a.store()
        .create_session(&digest, user.id, tollgate_store::now_ms() + 60_000)
        .await
        .unwrap();
    let confirmed = |s: &AppState| {
        s.cluster()
            .unwrap()
            .confirm
            .counts
            .confirmed
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = confirmed(&a);
    a.store().delete_session(&digest).await.unwrap();
    assert_eq!(confirmed(&a), before + 1, "B acknowledged");
    assert_eq!(
        a.cluster()
            .unwrap()
            .confirm
            .counts
            .lapsed
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(a_saturated_pool_does_not_lapse_the_lease, multi_thread = 2).postgres_pass(),
        case!(a_saturated_node_still_acknowledges, multi_thread = 2).postgres_pass(),
    ]
}
