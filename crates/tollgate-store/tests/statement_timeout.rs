//! PostgreSQL sessions carry the configured `statement_timeout` (issue 12, item 3): a
//! statement running past it is cancelled by the server and reported as unavailable (the API
//! answers 503), so nothing keeps a backend busy after the request that asked has gone.
//! Needs TOLLGATE_TEST_POSTGRES_URL (a server on which databases may be created).

use std::time::{Duration, Instant};

use tollgate_store::{Store, StoreOptions};

async fn fresh_database() -> Option<String> {
    let server = match std::env::var("TOLLGATE_TEST_POSTGRES_URL") {
        Ok(s) if !s.is_empty() => s,
        _ if std::env::var("TOLLGATE_REQUIRE_ALL").is_ok_and(|v| v == "1") => {
            panic!("TOLLGATE_TEST_POSTGRES_URL is required")
        }
        _ => {
            eprintln!("NOT RUN: set TOLLGATE_TEST_POSTGRES_URL");
            return None;
        }
    };
    sqlx::any::install_default_drivers();
    let admin = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&server)
        .await
        .unwrap();
    let name = format!("tg_test_{}", tollgate_store::Id::generate());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
    Some(format!("{base}/{name}"))
}

#[tokio::test]
async fn statements_past_the_timeout_are_cancelled_and_unavailable() {
    let Some(url) = fresh_database().await else {
        return;
    };
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
