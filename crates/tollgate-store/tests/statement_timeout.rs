//! PostgreSQL sessions carry the configured `statement_timeout` (issue 12, item 3): a
//! statement running past it is cancelled by the server and reported as unavailable (the API
//! answers 503), so nothing keeps a backend busy after the request that asked has gone.
//! PostgreSQL pass only (SQLite has no statement timeout; its writers wait their turn).

use std::time::{Duration, Instant};

use tollgate_store::{Store, StoreOptions};
use tollgate_testkit::{Case, case};

async fn statements_past_the_timeout_are_cancelled_and_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let url = tollgate_testkit::fresh_database_url(dir.path()).await;
    let store = Store::open(
        &url,
        &StoreOptions {
            statement_timeout: Some(Duration::from_millis(300)),
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    // Every pooled session has it, not just the first.
    for _ in 0..3 {
        let shown: String = sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(shown, "300ms");
    }
    let started = Instant::now();
    let err = sqlx::query("SELECT pg_sleep(5)")
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let err = tollgate_store::StoreError::from(err);
    assert!(err.is_unavailable(), "{err:?}");
    assert!(err.is_timeout(), "{err:?}");
    // Without the option, there is no limit (as for `tollgate db copy`).
    let unlimited = Store::open(&url, &StoreOptions::default()).await.unwrap();
    let shown: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(unlimited.pool())
        .await
        .unwrap();
    assert_eq!(shown, "0");
}

pub fn cases() -> Vec<Case> {
    vec![case!(statements_past_the_timeout_are_cancelled_and_unavailable).postgres_pass()]
}
