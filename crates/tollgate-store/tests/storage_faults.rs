//! Storage faults at the store level: a full disk, a connection left inside a failed
//! transaction, damaged, emptied and newer databases, concurrent first starts, and the
//! integrity check. SQLite (these are the embedded database's failure modes); the check and
//! the newer-schema refusal also run on PostgreSQL when `TOLLGATE_TEST_POSTGRES_URL` is set.

use std::path::Path;
use tollgate_testkit::{Case, case};

use sqlx::Executor;
use tollgate_store::users::NewUser;
use tollgate_store::{Actor, Id, Store, StoreError, StoreOptions};

fn url_of(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

async fn user(store: &Store, email: &str) -> Id {
    store
        .create_user(&NewUser {
            email,
            password_hash: "not-a-real-hash",
            first_name: "A",
            last_name: "B",
        })
        .await
        .unwrap()
        .id
}

async fn page_count(store: &Store) -> i64 {
    sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// After a COMMIT that failed (on a full disk SQLite rolls back by itself and the driver's
/// ROLLBACK then fails too) the connection still counted as inside a transaction, and every
/// later write on it failed with `InvalidSavePointStatement` until restart. Here the same
/// state is made deterministically: the transaction is ended behind the driver's back.
async fn a_connection_left_inside_a_failed_transaction_is_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        max_connections: 1,
        ..StoreOptions::default()
    };
    let store = Store::open(&url_of(&dir.path().join("t.db")), &options)
        .await
        .unwrap();
    let admin = user(&store, "a@example.com").await;
    {
        let mut tx = store.pool().begin().await.unwrap();
        tx.execute("COMMIT").await.unwrap();
        // Both the driver's COMMIT and (on drop) its ROLLBACK now fail.
        assert!(tx.commit().await.is_err());
    }
    // The one pooled connection was in that state: every write after it must still work.
    for i in 0..3 {
        let org = store
            .create_org(
                &Actor::operator(),
                &format!("org {i}"),
                "",
                &Default::default(),
                admin,
            )
            .await
            .unwrap_or_else(|e| panic!("write {i} after the failed transaction: {e:?}"));
        assert_eq!(store.org(org.id).await.unwrap().name, format!("org {i}"));
    }
}

/// A full database (here: its page limit) refuses writes with `StorageFull`, keeps serving
/// reads, and takes writes again as soon as there is room, without reopening.
async fn a_full_disk_refuses_writes_keeps_reads_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let url = url_of(&dir.path().join("t.db"));
    let store = Store::connect(&url).await.unwrap();
    let admin = user(&store, "a@example.com").await;
    let pages = page_count(&store).await;
    store.close().await;

    let options = StoreOptions {
        sqlite_max_page_count: Some(u64::try_from(pages).unwrap() + 8),
        ..StoreOptions::default()
    };
    let store = Store::open(&url, &options).await.unwrap();
    store.check_writes().await.expect("room to write at first");
    let big = "d".repeat(3000);
    let mut created = Vec::new();
    let full = loop {
        match store
            .create_org(
                &Actor::operator(),
                &format!("org {}", created.len()),
                &big,
                &Default::default(),
                admin,
            )
            .await
        {
            Ok(org) => created.push(org.id),
            Err(e) => break e,
        }
        assert!(created.len() < 100, "the page limit never took effect");
    };
    assert!(full.is_storage_full(), "{full:?}");
    assert_eq!(full.to_string(), "the database's disk is full");
    assert!(!created.is_empty());
    // Writes keep failing the same way while full, and the write check says so.
    let again = store
        .create_org(
            &Actor::operator(),
            "one more",
            &big,
            &Default::default(),
            admin,
        )
        .await
        .unwrap_err();
    assert!(again.is_storage_full(), "{again:?}");
    assert!(store.check_writes().await.unwrap_err().is_storage_full());
    // Reads work.
    assert_eq!(store.org(created[0]).await.unwrap().description, big);
    assert_eq!(store.count_users().await.unwrap(), 1);

    // Space returns (rows deleted free their pages): writes work again at once.
    for id in &created {
        store.delete_org(&Actor::operator(), *id).await.unwrap();
    }
    let org = store
        .create_org(
            &Actor::operator(),
            "after",
            &big,
            &Default::default(),
            admin,
        )
        .await
        .expect("writes recover once there is room");
    assert_eq!(store.org(org.id).await.unwrap().name, "after");
    store
        .check_writes()
        .await
        .expect("the write check recovers");
}

async fn a_file_that_is_not_a_database_is_refused_with_its_name_and_sqlites_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.db");
    std::fs::write(&path, "not a database at all ".repeat(500)).unwrap();
    let started = std::time::Instant::now();
    let e = Store::open(&url_of(&path), &StoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::CannotOpen { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("file is not a database"), "{text}");
    // At once, not after the pool's acquire timeout (5 s).
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
}

/// A database file cut short (a bad copy, a full disk during a restore).
async fn a_truncated_database_is_refused_with_its_name_and_sqlites_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.db");
    let store = Store::connect(&url_of(&path)).await.unwrap();
    let admin = user(&store, "a@example.com").await;
    for i in 0..50 {
        store
            .create_org(
                &Actor::operator(),
                &format!("org {i}"),
                &"x".repeat(2000),
                &Default::default(),
                admin,
            )
            .await
            .unwrap();
    }
    store.checkpoint().await.unwrap();
    store.close().await;
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 3).unwrap();
    drop(file);
    let e = Store::open(&url_of(&path), &StoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::CannotOpen { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("malformed"), "{text}");
}

async fn an_emptied_database_is_refused_but_a_new_empty_file_is_initialised() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.db");
    let store = Store::connect(&url_of(&path)).await.unwrap();
    user(&store, "a@example.com").await;
    store.close().await;
    assert!(tollgate_store::init_marker(&path).exists());
    std::fs::write(&path, b"").unwrap();
    let e = Store::open(&url_of(&path), &StoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::EmptiedDatabase { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("tollgate.db.initialized"), "{text}");
    // Nothing was written over it.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

    // A 0-byte file where no database ever was (someone ran `touch`) is simply a new one.
    let fresh = tempfile::tempdir().unwrap();
    let path = fresh.path().join("tollgate.db");
    std::fs::write(&path, b"").unwrap();
    let store = Store::connect(&url_of(&path)).await.unwrap();
    assert_eq!(store.count_users().await.unwrap(), 0);
}

/// A fresh database per test, on the backend of the current pass.
async fn fresh_url(dir: &Path) -> String {
    tollgate_testkit::fresh_database_url(dir).await
}

async fn a_newer_schema_is_refused_with_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_url(dir.path()).await;
    let store = Store::connect(&url).await.unwrap();
    let ours: i64 = sqlx::query_scalar("SELECT MAX(version) FROM tollgate_migrations")
        .fetch_one(store.pool())
        .await
        .unwrap();
    sqlx::query("INSERT INTO tollgate_migrations (version, applied_at) VALUES ($1, 0)")
        .bind(ours + 7)
        .execute(store.pool())
        .await
        .unwrap();
    store.close().await;
    let e = Store::open(&url, &StoreOptions::default())
        .await
        .unwrap_err();
    match &e {
        StoreError::NewerSchema { found, supported } => {
            assert_eq!((*found, *supported), (ours + 7, ours))
        }
        other => panic!("{other:?}"),
    }
    let text = e.to_string();
    assert!(text.contains(&format!("version {}", ours + 7)), "{text}");
    assert!(text.contains(&format!("version {ours})")), "{text}");
}

/// Stores opened at once on one new file (as two processes would: separate pools and
/// connections) all succeed; none fails with "table … already exists".
async fn stores_opened_at_once_on_a_new_file_all_succeed() {
    for trial in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let url = url_of(&dir.path().join("tollgate.db"));
        let opens = (0..3).map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Store::connect(&url).await })
        });
        for open in futures_util::future::join_all(opens).await {
            let store = open
                .unwrap()
                .unwrap_or_else(|e| panic!("trial {trial}: {e:?}"));
            assert_eq!(store.count_users().await.unwrap(), 0);
        }
    }
}

async fn the_check_passes_a_sound_database_and_counts_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_url(dir.path()).await;
    let store = Store::connect(&url).await.unwrap();
    let admin = user(&store, "a@example.com").await;
    store
        .create_org(&Actor::operator(), "o", "", &Default::default(), admin)
        .await
        .unwrap();
    let report = store.check().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.schema_version, Some(report.expected_version));
    let count = |t: &str| report.counts.iter().find(|(n, _)| *n == t).unwrap().1;
    assert_eq!(
        (count("users"), count("orgs"), count("org_members")),
        (1, 1, 1)
    );
}

/// A page in the middle of the file overwritten with garbage: the check lists problems.
async fn the_check_lists_the_problems_of_a_damaged_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = Store::connect(&url_of(&path)).await.unwrap();
    let admin = user(&store, "a@example.com").await;
    for i in 0..200 {
        store
            .create_org(
                &Actor::operator(),
                &format!("org {i}"),
                &"x".repeat(500),
                &Default::default(),
                admin,
            )
            .await
            .unwrap();
    }
    store.checkpoint().await.unwrap();
    store.close().await;
    let mut bytes = std::fs::read(&path).unwrap();
    let page = 4096;
    let pages = bytes.len() / page;
    assert!(pages > 20, "{pages} pages");
    // The last pages hold the newest orgs' rows and index entries.
    for b in &mut bytes[(pages - 6) * page + 100..(pages - 2) * page] {
        *b = 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let store = Store::open_existing(&url_of(&path), &StoreOptions::default())
        .await
        .unwrap();
    let report = store.check().await.unwrap();
    assert!(!report.is_ok());
    assert!(
        report.problems.iter().any(|p| p.starts_with("integrity: ")),
        "{:?}",
        report.problems
    );
}

async fn open_existing_does_not_create_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    let e = Store::open_existing(&url_of(&path), &StoreOptions::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("missing.db"), "{e}");
    assert!(!path.exists());
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(a_connection_left_inside_a_failed_transaction_is_not_reused).once(),
        case!(a_full_disk_refuses_writes_keeps_reads_and_recovers).once(),
        case!(a_file_that_is_not_a_database_is_refused_with_its_name_and_sqlites_message).once(),
        case!(a_truncated_database_is_refused_with_its_name_and_sqlites_message).once(),
        case!(an_emptied_database_is_refused_but_a_new_empty_file_is_initialised).once(),
        case!(a_newer_schema_is_refused_with_both_versions),
        case!(
            stores_opened_at_once_on_a_new_file_all_succeed,
            multi_thread = 2
        )
        .once(),
        case!(the_check_passes_a_sound_database_and_counts_its_rows),
        case!(the_check_lists_the_problems_of_a_damaged_file).once(),
        case!(open_existing_does_not_create_a_missing_file).once(),
    ]
}
