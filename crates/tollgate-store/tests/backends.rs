//! The same store cases on SQLite and PostgreSQL: what the server relies on must not depend on
//! the backend. (Concurrency cases — two writes released together, hundreds of rounds — live
//! beside these.)

use std::sync::{Arc, Mutex};

use sqlx::Row;
use tollgate_store::list::{Filter, ListSpec, Sort};
use tollgate_store::tokens::{TOKEN_FIELDS, TokenChange, TokenStatus};
use tollgate_store::{Actor, Change, Store, StoreError, now_ms};
use tollgate_testkit::{Case, case};

use crate::support::{allow, app, fresh, token, user};

/// Opening an already-migrated database applies nothing twice and loses nothing.
async fn reopening_a_migrated_database_changes_nothing() {
    let f = fresh().await;
    let owner = user(&f.store, "owner@example.com").await;
    let app = app(&f.store, owner, "plant").await;
    let versions = migration_versions(&f.store).await;
    assert!(!versions.is_empty(), "migrations are recorded");
    f.store.close().await;

    let again = Store::connect_with(&f.url, 2).await.expect("reopen");
    assert_eq!(migration_versions(&again).await, versions);
    assert_eq!(again.application(app).await.unwrap().name, "plant");
    assert_eq!(again.count_users().await.unwrap(), 1);
}

/// A SQLite database from before migration 13 (reports and points in rowid tables, as
/// migration 2 made them) keeps every report and point when it is opened, its two tables
/// become WITHOUT ROWID, and deleting the device still takes its points (the foreign key
/// came along).
async fn points_move_to_tables_without_rowid_with_every_row() {
    let f = fresh().await;
    // A new database starts compact: migration 13's dropped tables left no free pages (they
    // would make /health's full-disk check see room).
    let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
        .fetch_one(f.store.pool())
        .await
        .unwrap();
    assert_eq!(free, 0);
    let owner = user(&f.store, "owner@example.com").await;
    let app = app(&f.store, owner, "plant").await;
    let device = crate::support::device(&f.store, app, "pump").await.id;
    // Back to version 12: the tables as migration 2 defines them, with rows in them.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP TABLE device_points; DROP TABLE device_reports; {OLD_TABLES} \
         DELETE FROM tollgate_migrations WHERE version = 13;"
    )))
    .execute(f.store.pool())
    .await
    .unwrap();
    for t in 0..50_i64 {
        sqlx::query("INSERT INTO device_reports (device_id, time, meta) VALUES ($1, $2, $3)")
            .bind(device.to_hex())
            .bind(t)
            .bind((t == 7).then_some(r#"{"batch":7}"#))
            .execute(f.store.pool())
            .await
            .unwrap();
        for (attribute, num, txt) in [
            ("temp", Some(t as f64 / 2.0), None),
            ("label", None, Some(format!("at {t}"))),
        ] {
            sqlx::query("INSERT INTO device_points (device_id, attribute, time, num, txt) VALUES ($1, $2, $3, $4, $5)")
                .bind(device.to_hex())
                .bind(attribute)
                .bind(t)
                .bind(num)
                .bind(txt)
                .execute(f.store.pool())
                .await
                .unwrap();
        }
    }
    assert!(
        !table_sql(&f.store, "device_points")
            .await
            .contains("WITHOUT ROWID")
    );
    f.store.close().await;

    let again = Store::connect_with(&f.url, 2)
        .await
        .expect("reopen and migrate");
    assert!(migration_versions(&again).await.contains(&13));
    for table in ["device_reports", "device_points"] {
        let sql = table_sql(&again, table).await;
        assert!(sql.ends_with("WITHOUT ROWID"), "{sql}");
    }
    let one = |sql: &'static str| {
        let pool = again.pool().clone();
        async move { sqlx::query(sql).fetch_one(&pool).await.unwrap() }
    };
    let r = one("SELECT COUNT(*) AS n, SUM(time) AS t, MAX(meta) AS m FROM device_reports").await;
    assert_eq!(
        (
            r.get::<i64, _>("n"),
            r.get::<i64, _>("t"),
            r.get::<String, _>("m")
        ),
        (50, 1225, r#"{"batch":7}"#.to_owned())
    );
    let p = one(
        "SELECT COUNT(*) AS n, SUM(num) AS s, MAX(txt) AS x, COUNT(txt) AS c FROM device_points",
    )
    .await;
    assert_eq!(
        (
            p.get::<i64, _>("n"),
            p.get::<f64, _>("s"),
            p.get::<String, _>("x"),
            p.get::<i64, _>("c")
        ),
        (100, 612.5, "at 9".to_owned(), 50)
    );
    again
        .delete_device(&Actor::operator(), app, device)
        .await
        .unwrap();
    let left = one(
        "SELECT (SELECT COUNT(*) FROM device_points) + (SELECT COUNT(*) FROM device_reports) AS n",
    )
    .await;
    assert_eq!(left.get::<i64, _>("n"), 0);
}

/// The two tables as migration 2 created them (version 12 and before).
const OLD_TABLES: &str = "CREATE TABLE device_reports (device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE, \
     time BIGINT NOT NULL, meta TEXT, PRIMARY KEY (device_id, time)); \
     CREATE TABLE device_points (device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE, \
     attribute TEXT NOT NULL, time BIGINT NOT NULL, num DOUBLE PRECISION, txt TEXT, \
     PRIMARY KEY (device_id, attribute, time));";

async fn table_sql(store: &Store, table: &str) -> String {
    sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = $1")
        .bind(table)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn migration_versions(store: &Store) -> Vec<i64> {
    sqlx::query("SELECT version FROM tollgate_migrations ORDER BY version")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<i64, _>("version"))
        .collect()
}

/// A token is found by the digest of its secret until it is deleted; every change reaches this
/// node's change hook after commit, with the token's id and digest.
async fn tokens_are_found_by_digest_and_every_change_is_announced() {
    let f = fresh().await;
    let heard: Arc<Mutex<Vec<Change>>> = Arc::default();
    let sink = heard.clone();
    f.store
        .on_change(Arc::new(move |c| sink.lock().unwrap().push(c.clone())));
    let owner = user(&f.store, "owner@example.com").await;
    let app = app(&f.store, owner, "plant").await;
    let t = token(&f.store, app, "gateway", None).await;
    let expected = Change::Token {
        id: t.id,
        digest: t.digest,
    };

    let key = f.store.token_by_digest(&t.digest).await.unwrap().unwrap();
    assert_eq!((key.id, key.application_id), (t.id, app));
    assert_eq!(key.status, TokenStatus::Active);
    assert_eq!(key.scope_json, r#"["all.Application"]"#);

    let changed = f
        .store
        .update_token(
            &Actor::operator(),
            app,
            t.id,
            &TokenChange {
                status: Some(TokenStatus::Inactive),
                ..Default::default()
            },
            allow,
        )
        .await
        .unwrap();
    assert_eq!(changed.status, TokenStatus::Inactive);
    assert_eq!(changed.name, "gateway", "fields not in the change are kept");
    let key = f.store.token_by_digest(&t.digest).await.unwrap().unwrap();
    assert_eq!(key.status, TokenStatus::Inactive);

    // Another application's id finds nothing and changes nothing.
    let other = crate::support::app(&f.store, owner, "other").await;
    assert!(matches!(
        f.store
            .delete_token(&Actor::operator(), other, t.id, allow)
            .await,
        Err(StoreError::NotFound)
    ));
    f.store
        .delete_token(&Actor::operator(), app, t.id, allow)
        .await
        .unwrap();
    assert!(f.store.token_by_digest(&t.digest).await.unwrap().is_none());
    assert_eq!(
        *heard.lock().unwrap(),
        vec![expected.clone(), expected.clone(), expected],
        "create, update and delete are each announced once; the refused delete is not"
    );
}

/// Text sorts case-insensitively and byte-wise on both backends, "never expires" sorts after
/// every date, and a glob's `%` and `_` are literal characters.
async fn lists_sort_and_filter_the_same_on_both_backends() {
    let f = fresh().await;
    let owner = user(&f.store, "owner@example.com").await;
    let app = app(&f.store, owner, "plant").await;
    let now = now_ms();
    for (name, expires) in [
        ("beta", Some(now + 3_000_000)),
        ("Alpha", None),
        ("_under", Some(now + 1_000_000)),
        ("100% sure", Some(now + 2_000_000)),
        ("alpha2", Some(now + 4_000_000)),
        ("Émile", None),
    ] {
        token(&f.store, app, name, expires).await;
    }
    let names = |spec: ListSpec| {
        let store = f.store.clone();
        async move {
            store
                .list_tokens(app, &spec)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|t| t.name)
                .collect::<Vec<_>>()
        }
    };
    let by = |sort: Sort, descending: bool| ListSpec {
        sort,
        descending,
        page: 0,
        per_page: 100,
        filter: None,
    };
    assert_eq!(
        names(by(Sort::Text("name"), false)).await,
        ["100% sure", "_under", "Alpha", "alpha2", "beta", "Émile"]
    );
    assert_eq!(
        names(by(Sort::NumberOrNever("expiration_date"), false)).await[..4],
        ["_under", "100% sure", "beta", "alpha2"]
    );
    let filtered = |glob: &str| ListSpec {
        filter: Some(Filter {
            column: "name",
            glob: glob.to_owned(),
        }),
        ..by(Sort::Text("name"), false)
    };
    assert_eq!(names(filtered("ALPHA*")).await, ["Alpha", "alpha2"]);
    assert_eq!(names(filtered("100%*")).await, ["100% sure"]);
    assert_eq!(names(filtered("_*")).await, ["_under"]);
    let page = f
        .store
        .list_tokens(
            app,
            &ListSpec {
                page: 1,
                per_page: 4,
                ..by(Sort::Text("name"), false)
            },
        )
        .await
        .unwrap();
    assert_eq!(page.total, 6);
    assert_eq!(
        page.items
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["beta", "Émile"]
    );
    assert!(TOKEN_FIELDS.sortable.iter().any(|(f, _)| *f == "name"));
}

/// Several nodes flush what they saw; a late flush of an older time never moves it back.
async fn last_used_times_never_move_backwards() {
    let f = fresh().await;
    let owner = user(&f.store, "owner@example.com").await;
    let app = app(&f.store, owner, "plant").await;
    let t = token(&f.store, app, "gateway", None).await;
    let t0 = now_ms() - now_ms().rem_euclid(60_000);
    f.store.record_last_used(&[(t.id, t0)]).await.unwrap();
    f.store
        .record_last_used(&[(t.id, t0 - 120_000)])
        .await
        .unwrap();
    assert_eq!(f.store.token(app, t.id).await.unwrap().last_used, Some(t0));
    f.store
        .record_last_used(&[(t.id, t0 + 60_000)])
        .await
        .unwrap();
    assert_eq!(
        f.store.token(app, t.id).await.unwrap().last_used,
        Some(t0 + 60_000)
    );
    // An unknown token in a batch does not spoil the rest.
    let other = token(&f.store, app, "other", None).await;
    f.store
        .record_last_used(&[(tollgate_store::Id::generate(), t0), (other.id, t0)])
        .await
        .unwrap();
    assert_eq!(
        f.store.token(app, other.id).await.unwrap().last_used,
        Some(t0)
    );
}

/// Emails are unique whatever their case; the second user is a conflict and is not created.
async fn a_second_user_with_the_same_email_is_a_conflict() {
    let f = fresh().await;
    user(&f.store, "Ada@Example.com").await;
    let again = f
        .store
        .create_user(&tollgate_store::users::NewUser {
            email: "ada@example.COM",
            password_hash: "$argon2id$x",
            first_name: "A",
            last_name: "L",
        })
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(f.store.count_users().await.unwrap(), 1);
}

/// Deleting an application deletes its tokens and devices with it (foreign keys on both
/// backends), and announces the application so caches drop its tokens.
async fn deleting_an_application_takes_its_tokens_and_devices() {
    let f = fresh().await;
    let heard: Arc<Mutex<Vec<Change>>> = Arc::default();
    let sink = heard.clone();
    let owner = user(&f.store, "owner@example.com").await;
    let app = app(&f.store, owner, "plant").await;
    let keep = crate::support::app(&f.store, owner, "keep").await;
    let t = token(&f.store, app, "gateway", None).await;
    let kept = token(&f.store, keep, "gateway", None).await;
    let device = crate::support::device(&f.store, app, "pump").await;
    f.store
        .on_change(Arc::new(move |c| sink.lock().unwrap().push(c.clone())));
    f.store
        .delete_application(&Actor::operator(), app)
        .await
        .unwrap();
    assert!(f.store.token_by_digest(&t.digest).await.unwrap().is_none());
    assert!(matches!(
        f.store.device(app, device.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        f.store
            .token_by_digest(&kept.digest)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        heard.lock().unwrap().contains(&Change::Application(app)),
        "{:?}",
        heard.lock().unwrap()
    );
}

/// A device's reports and points go with it, whether the device is deleted or its
/// application is. On PostgreSQL the two tables have no foreign key (migration 14: checking
/// each row's key took a fifth of batched ingest's time): a trigger on `devices` does the
/// cascade, and `db check` finds a row of a missing device.
async fn device_state_goes_with_its_device_and_its_application() {
    use tollgate_core::attribute::Stored;
    use tollgate_store::states::Report;
    let f = fresh().await;
    let owner = user(&f.store, "owner@example.com").await;
    let app = app(&f.store, owner, "plant").await;
    let pump = crate::support::device(&f.store, app, "pump").await.id;
    let valve = crate::support::device(&f.store, app, "valve").await.id;
    for device in [pump, valve] {
        let n = f
            .store
            .insert_reports(&Actor::operator(), app, device, |_| {
                Ok::<_, StoreError>(
                    (0..5)
                        .map(|t| Report {
                            time: 1_000 + t,
                            meta: None,
                            values: vec![
                                ("temp".to_owned(), Stored::Num(t as f64)),
                                ("mode".to_owned(), Stored::Txt("on".to_owned())),
                            ],
                        })
                        .collect(),
                )
            })
            .await
            .unwrap();
        assert_eq!(n, 5);
    }
    let rows = |d| crate::support::state_rows(&f.store, d);
    assert_eq!((rows(pump).await, rows(valve).await), ((5, 10), (5, 10)));
    f.store
        .delete_device(&Actor::operator(), app, pump)
        .await
        .unwrap();
    assert_eq!((rows(pump).await, rows(valve).await), ((0, 0), (5, 10)));
    f.store
        .delete_application(&Actor::operator(), app)
        .await
        .unwrap();
    assert_eq!(rows(valve).await, (0, 0));
    let report = f.store.check().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    if f.store.backend() == tollgate_store::Backend::Postgres {
        // Written by hand past the store (which always locks the device first): the check
        // is what finds it.
        sqlx::query("INSERT INTO device_points (device_id, attribute, time, num) VALUES ($1, 'temp', 1, 1.0)")
            .bind(valve.to_hex())
            .execute(f.store.pool())
            .await
            .unwrap();
        let report = f.store.check().await.unwrap();
        assert_eq!(
            report.problems,
            ["device_points: 1 row of a device that does not exist"]
        );
    }
}

/// PostgreSQL: a change committed through one store reaches a listener on another connection,
/// and a rolled-back write announces nothing.
async fn committed_changes_reach_listeners_and_nothing_else_does() {
    use std::time::Duration;
    use tollgate_store::cluster::ClusterConnection;
    use tollgate_store::notify::{Listener, Notice, node_channel};
    let f = fresh().await;
    let me = tollgate_store::Id::generate();
    let timeout = Duration::from_secs(5);
    let mut listener = Listener::connect(
        f.store.url(),
        &node_channel(me),
        true,
        "store-test",
        timeout,
    )
    .await
    .unwrap();
    let mut marker = ClusterConnection::connect(f.store.url(), "store-test-marker", timeout)
        .await
        .unwrap();
    let owner = user(&f.store, "owner@example.com").await;
    let app = app(&f.store, owner, "plant").await;
    // Refused (another application): nothing committed, nothing announced.
    let other = crate::support::app(&f.store, owner, "other").await;
    let t = token(&f.store, app, "gateway", None).await;
    assert!(
        f.store
            .delete_token(&Actor::operator(), other, t.id, allow)
            .await
            .is_err()
    );
    // A barrier travels on the changes' channel, so it arrives after every change committed
    // before it was sent.
    marker.barrier(me, 7).await.unwrap();
    let mut notices = Vec::new();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("a notice within 10 s")
            .unwrap();
        if n == (Notice::Barrier { origin: me, n: 7 }) {
            break;
        }
        notices.push(n);
    }
    assert_eq!(
        notices,
        vec![Notice::Change(Change::Token {
            id: t.id,
            digest: t.digest
        })],
        "only the creation was announced, before the marker sent after it"
    );
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(reopening_a_migrated_database_changes_nothing),
        case!(points_move_to_tables_without_rowid_with_every_row).once(),
        case!(tokens_are_found_by_digest_and_every_change_is_announced),
        case!(lists_sort_and_filter_the_same_on_both_backends),
        case!(last_used_times_never_move_backwards),
        case!(a_second_user_with_the_same_email_is_a_conflict),
        case!(deleting_an_application_takes_its_tokens_and_devices),
        case!(device_state_goes_with_its_device_and_its_application),
        case!(committed_changes_reach_listeners_and_nothing_else_does).postgres_pass(),
    ]
}
