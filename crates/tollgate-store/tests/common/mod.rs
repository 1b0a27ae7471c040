//! Fresh stores for the store's integration tests: SQLite in a temporary directory, and
//! PostgreSQL on the server named by `TOLLGATE_TEST_POSTGRES_URL` or `TOLLGATE_TEST_PG_SERVER`
//! (a fresh database per store). Without a PostgreSQL server the PostgreSQL half of a test
//! prints NOT RUN, or fails under `TOLLGATE_REQUIRE_ALL=1` (CI).
#![allow(dead_code)]

use tollgate_store::{Id, Store};

/// A store and what keeps it alive (the SQLite file's directory).
pub struct TestStore {
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TestStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

/// Connections per test store: enough for every task of a race to hold one at once.
const POOL: u32 = 8;

pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tollgate.db").display());
    TestStore {
        store: Store::connect_with(&url, POOL).await.expect("open SQLite"),
        _dir: Some(dir),
    }
}

/// The PostgreSQL server to test on, if there is one.
pub fn pg_server() -> Option<String> {
    for name in ["TOLLGATE_TEST_POSTGRES_URL", "TOLLGATE_TEST_PG_SERVER"] {
        if let Ok(v) = std::env::var(name)
            && !v.is_empty()
        {
            return Some(v);
        }
    }
    if std::env::var("TOLLGATE_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!(
            "PostgreSQL is required: set TOLLGATE_TEST_PG_SERVER or TOLLGATE_TEST_POSTGRES_URL (scripts/test.sh does)"
        );
    }
    eprintln!(
        "NOT RUN on PostgreSQL: set TOLLGATE_TEST_PG_SERVER (scripts/pg-throwaway.sh prints one)"
    );
    None
}

/// A store on a fresh database of the PostgreSQL test server, if there is one.
pub async fn postgres() -> Option<TestStore> {
    let server = pg_server()?;
    let name = format!("tg_store_{}", Id::generate());
    sqlx::any::install_default_drivers();
    let admin = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&server)
        .await
        .expect("connect to the PostgreSQL test server");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create test database");
    admin.close().await;
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
    let url = format!("{base}/{name}");
    Some(TestStore {
        store: Store::connect_with(&url, POOL)
            .await
            .expect("open PostgreSQL"),
        _dir: None,
    })
}
