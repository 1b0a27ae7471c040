//! State reports committed together (the group commit, `src/group_commit.rs`, on SQLite and
//! on PostgreSQL): many concurrent requests each get exactly the answer they would have had
//! alone, and every acknowledged report is stored.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::Barrier;
use tollgate_core::attribute::Stored;
use tollgate_store::devices::{Device, DeviceFields, HistoryQuery};
use tollgate_store::states::Report;
use tollgate_store::tokens::{Creator, NewToken, TokenStatus};
use tollgate_store::{Actor, Backend, Id, Revoked, Store, StoreError, StoreOptions, now_ms};
use tollgate_testkit::{Case, case};

use crate::support::{fresh, rand_digest, user};

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            concurrent_reports_are_each_stored_and_committed_together,
            multi_thread = 4
        ),
        case!(
            refused_requests_write_nothing_and_do_not_disturb_the_others,
            multi_thread = 4
        ),
        case!(
            a_value_the_database_refuses_fails_only_its_own_request,
            multi_thread = 4
        ),
        case!(values_and_meta_come_back_exactly_as_sent, multi_thread = 4),
        case!(
            a_full_disk_answers_each_request_for_itself,
            multi_thread = 4
        )
        .once(),
    ]
}

async fn app_and_actor(s: &Store) -> (Id, Actor) {
    let owner = user(s, &format!("{}@example.com", Id::generate())).await;
    let app = crate::support::app(s, owner, "group commit").await;
    (app, Actor::operator())
}

async fn token_actor(s: &Store, app: Id, status: TokenStatus) -> Actor {
    let t = s
        .create_token(
            &Actor::operator(),
            &NewToken {
                application_id: app,
                digest: rand_digest(),
                name: "gateway",
                description: "",
                scope: &["device.sendState".to_owned()],
                status,
                expiration_date: None,
                restrictions: None,
                usage_limit: None,
                carve_from: None,
                creator: Creator {
                    kind: "user",
                    id: app,
                    name: "fixture".into(),
                },
            },
        )
        .await
        .unwrap();
    Actor::api_token(t.id, app)
}

fn attr(name: &str, data_type: &str) -> Map<String, Value> {
    json!({ "name": name, "dataType": data_type })
        .as_object()
        .unwrap()
        .clone()
}

async fn device(s: &Store, app: Id, data_type: &str) -> Device {
    s.create_device(
        &Actor::operator(),
        app,
        &DeviceFields {
            name: "d".into(),
            device_class: "standalone".into(),
            attributes: vec![attr("v", data_type)],
            ..Default::default()
        },
        &[],
    )
    .await
    .unwrap()
}

/// `count` reports of `v` at distinct times from `t0`, refused (as the server's check would)
/// when the device does not declare `v`.
fn reports(
    t0: i64,
    count: usize,
    value: Stored,
) -> impl Fn(&Device) -> Result<Vec<Report>, StoreError> + Send + 'static {
    move |d: &Device| {
        if d.attribute_type("v").is_none() {
            return Err(StoreError::Corrupt("v is not an attribute".into()));
        }
        Ok((0..count)
            .map(|i| Report {
                time: t0 + i as i64,
                meta: None,
                values: vec![("v".to_owned(), value.clone())],
            })
            .collect())
    }
}

async fn stored(s: &Store, device: Id) -> usize {
    s.states(
        device,
        &["v"],
        &HistoryQuery {
            start: 0,
            end: i64::MAX,
            limit: 1000,
            descending: false,
        },
    )
    .await
    .unwrap()
    .len()
}

/// 48 gateways each send 10 single-report requests, all released together: every request is
/// answered `Ok(1)`, every report is stored, and fewer transactions than requests committed
/// them.
async fn concurrent_reports_are_each_stored_and_committed_together() {
    let f = fresh().await;
    let s = f.store.clone();
    let (app, _) = app_and_actor(&s).await;
    let (gateways, each) = (48usize, 10usize);
    let mut devices = Vec::new();
    for _ in 0..gateways {
        devices.push(device(&s, app, "number").await.id);
    }
    let actor = token_actor(&s, app, TokenStatus::Active).await;
    let before = s.group_commit_stats();
    let barrier = Arc::new(Barrier::new(gateways));
    let t0 = now_ms() - 60_000;
    let tasks: Vec<_> = devices
        .iter()
        .map(|&d| {
            let (s, actor, barrier) = (s.clone(), actor.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let mut answers = Vec::new();
                for i in 0..each {
                    answers.push(
                        s.insert_reports(
                            &actor,
                            app,
                            d,
                            reports(t0 + i as i64, 1, Stored::Num(1.0)),
                        )
                        .await,
                    );
                }
                answers
            })
        })
        .collect();
    for t in tasks {
        for a in t.await.unwrap() {
            assert_eq!(a.unwrap(), 1);
        }
    }
    for &d in &devices {
        assert_eq!(stored(&s, d).await, each, "reports of one gateway");
    }
    let after = s.group_commit_stats();
    let (batches, requests) = (
        after.batches - before.batches,
        after.requests - before.requests,
    );
    eprintln!("group commit: {requests} requests in {batches} transactions");
    assert_eq!(requests, (gateways * each) as u64);
    assert!(
        batches < requests,
        "{requests} requests took {batches} transactions: nothing was committed together"
    );
}

/// Requests released together, a quarter valid, the others refused for their own reason (a
/// revoked token, a device of another application, a report the check refuses): each gets
/// its own answer, and only the valid ones' reports are stored.
async fn refused_requests_write_nothing_and_do_not_disturb_the_others() {
    let f = fresh().await;
    let s = f.store.clone();
    let (app, _) = app_and_actor(&s).await;
    let (other_app, _) = app_and_actor(&s).await;
    let live = token_actor(&s, app, TokenStatus::Active).await;
    let revoked = token_actor(&s, app, TokenStatus::Inactive).await;
    let rounds = 20;
    let t0 = now_ms() - 60_000;
    for round in 0..rounds {
        let valid = device(&s, app, "number").await.id;
        let foreign = device(&s, other_app, "number").await.id;
        let text_only = device(&s, app, "string").await.id;
        let barrier = Arc::new(Barrier::new(4));
        let go = |actor: Actor, d: Id, value: Stored| {
            let (s, barrier) = (s.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let check = reports(t0 + round, 3, value.clone());
                // The text device's check refuses numbers, as the server's would.
                s.insert_reports(&actor, app, d, move |dev: &Device| {
                    let text = dev
                        .attributes
                        .iter()
                        .any(|a| a.get("dataType") == Some(&json!("string")));
                    if text && matches!(value, Stored::Num(_)) {
                        return Err(StoreError::Corrupt("v takes text".into()));
                    }
                    check(dev)
                })
                .await
            })
        };
        let ok = go(live.clone(), valid, Stored::Num(2.0));
        let by_revoked = go(revoked.clone(), valid, Stored::Num(3.0));
        let elsewhere = go(live.clone(), foreign, Stored::Num(4.0));
        let refused = go(live.clone(), text_only, Stored::Num(5.0));
        assert_eq!(ok.await.unwrap().unwrap(), 3, "round {round}");
        assert!(
            matches!(
                by_revoked.await.unwrap(),
                Err(StoreError::Revoked(Revoked::TokenInactive))
            ),
            "round {round}"
        );
        assert!(
            matches!(elsewhere.await.unwrap(), Err(StoreError::NotFound)),
            "round {round}"
        );
        assert!(
            matches!(refused.await.unwrap(), Err(StoreError::Corrupt(_))),
            "round {round}"
        );
        assert_eq!(
            stored(&s, valid).await,
            3,
            "round {round}: only the valid request"
        );
        assert_eq!(stored(&s, foreign).await, 0);
        assert_eq!(stored(&s, text_only).await, 0);
        let last = s.last_value(valid, "v", 0, i64::MAX).await.unwrap();
        assert!(
            matches!(last, Some((_, Stored::Num(n))) if n == 2.0),
            "round {round}: the revoked token's value was stored: {last:?}"
        );
    }
}

/// SQLite with a page limit, many requests with large values released together until the
/// database is full: when a shared commit fails, each request is written alone and answered
/// for itself. Every request answered `Ok` has its reports stored, every one answered
/// `StorageFull` has none.
async fn a_full_disk_answers_each_request_for_itself() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("full.db").display());
    let store = Store::connect(&url).await.unwrap();
    let (app, _) = app_and_actor(&store).await;
    let devices: Vec<Id> = {
        let mut v = Vec::new();
        for _ in 0..32 {
            v.push(device(&store, app, "string").await.id);
        }
        v
    };
    let (pages,): (i64,) = sqlx::query_as("SELECT page_count FROM pragma_page_count()")
        .fetch_one(store.pool())
        .await
        .unwrap();
    store.close().await;
    let options = StoreOptions {
        sqlite_max_page_count: Some(u64::try_from(pages).unwrap() + 64),
        ..StoreOptions::default()
    };
    let s = Store::open(&url, &options).await.unwrap();
    let actor = Actor::operator();
    let big = Stored::Txt("x".repeat(2000));
    let t0 = now_ms() - 60_000;
    let (mut ok, mut full) = (0, 0);
    for round in 0..40i64 {
        let barrier = Arc::new(Barrier::new(devices.len()));
        let tasks: Vec<_> = devices
            .iter()
            .map(|&d| {
                let (s, actor, barrier, big) =
                    (s.clone(), actor.clone(), barrier.clone(), big.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let r = s
                        .insert_reports(&actor, app, d, reports(t0 + round * 10, 2, big))
                        .await;
                    (d, r)
                })
            })
            .collect();
        for t in tasks {
            let (d, r) = t.await.unwrap();
            let at = s
                .states(
                    d,
                    &["v"],
                    &HistoryQuery {
                        start: t0 + round * 10,
                        end: t0 + round * 10 + 1,
                        limit: 10,
                        descending: false,
                    },
                )
                .await
                .unwrap()
                .len();
            match r {
                Ok(n) => {
                    assert_eq!((n, at), (2, 2), "an acknowledged request lost its reports");
                    ok += 1;
                }
                Err(StoreError::StorageFull(_)) => {
                    assert_eq!(at, 0, "a request refused for a full disk left reports");
                    full += 1;
                }
                Err(e) => panic!("unexpected: {e:?}"),
            }
        }
        if full > 0 && round > 2 {
            break;
        }
    }
    eprintln!("full disk: {ok} requests stored, {full} refused for a full disk");
    assert!(ok > 0 && full > 0, "stored {ok}, refused {full}");
    assert!(
        s.group_commit_stats().failed > 0,
        "no shared commit failed: writing each alone was not tried"
    );
}

/// Text with a NUL character released together with valid reports, many rounds. PostgreSQL
/// refuses NUL in text, which fails (and aborts) the shared transaction: each request of the
/// batch is then written alone and answered for itself, so the valid ones are stored and
/// answered `Ok`, and the refused one stores nothing. SQLite stores NUL like any character:
/// every request is stored there.
async fn a_value_the_database_refuses_fails_only_its_own_request() {
    let f = fresh().await;
    let s = f.store.clone();
    let (app, _) = app_and_actor(&s).await;
    let actor = token_actor(&s, app, TokenStatus::Active).await;
    let t0 = now_ms() - 60_000;
    let valid_each = 7;
    let mut devices = Vec::new();
    for _ in 0..=valid_each {
        devices.push(device(&s, app, "string").await.id);
    }
    let before = s.group_commit_stats();
    for round in 0..20i64 {
        let barrier = Arc::new(Barrier::new(devices.len()));
        let tasks: Vec<_> = devices
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let (s, actor, barrier) = (s.clone(), actor.clone(), barrier.clone());
                let text = if i == 0 { "nul\0here" } else { "fine" };
                tokio::spawn(async move {
                    barrier.wait().await;
                    let check = reports(t0 + round, 1, Stored::Txt(text.to_owned()));
                    (d, s.insert_reports(&actor, app, d, check).await)
                })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            let (d, r) = t.await.unwrap();
            let at = s
                .states(
                    d,
                    &["v"],
                    &HistoryQuery {
                        start: t0 + round,
                        end: t0 + round,
                        limit: 10,
                        descending: false,
                    },
                )
                .await
                .unwrap()
                .len();
            match (i, s.backend()) {
                (0, Backend::Postgres) => {
                    assert!(
                        matches!(r, Err(StoreError::Database(_))),
                        "round {round}: NUL in text: {r:?}"
                    );
                    assert_eq!(at, 0, "round {round}: a refused request left a report");
                }
                _ => {
                    assert_eq!(r.unwrap(), 1, "round {round}, request {i}");
                    assert_eq!(
                        at, 1,
                        "round {round}, request {i}: an acknowledged report is lost"
                    );
                }
            }
        }
    }
    let after = s.group_commit_stats();
    if s.backend() == Backend::Postgres {
        assert!(
            after.failed > before.failed,
            "no batch held the refused value: writing each alone was not tried"
        );
    } else {
        assert_eq!(after.failed, before.failed, "SQLite stores NUL in text");
    }
}

/// Numbers at the edges of `f64`, texts with quotes, backslashes, newlines and non-ASCII,
/// and a report's `meta`, sent together (each request one report, committed in batches; on
/// PostgreSQL they travel as JSON inside the batch's one write statement), and one request
/// of 20 reports (written alone): every value and meta is read back bit for bit. (Not -0.0:
/// SQLite stores a real with an integer value as that integer, so it reads back as 0.)
async fn values_and_meta_come_back_exactly_as_sent() {
    let f = fresh().await;
    let s = f.store.clone();
    let (app, _) = app_and_actor(&s).await;
    let actor = token_actor(&s, app, TokenStatus::Active).await;
    let numbers = [
        0.1 + 0.2,
        1e300,
        -1e-300,
        f64::MIN_POSITIVE,
        5e-324,
        f64::MAX,
        123_456_789.123_456_79,
        -(2f64.powi(53)) - 2.0,
    ];
    let texts = [
        "plain",
        "\"quoted\" and \\ back\\slashed",
        "two\nlines\tand a tab",
        "ünïcödé ✓ 测试 🚀",
        "{\"looks\": [\"like\", \"json\"]}",
        "",
    ];
    let t0 = now_ms() - 60_000;
    let mut sent: Vec<(Id, Stored, Option<Value>)> = Vec::new();
    for (i, n) in numbers.iter().enumerate() {
        let meta = (i % 2 == 0).then(|| json!({ "i": i, "note": "a \"meta\"\n" }));
        sent.push((device(&s, app, "number").await.id, Stored::Num(*n), meta));
    }
    for t in texts {
        sent.push((
            device(&s, app, "string").await.id,
            Stored::Txt(t.into()),
            None,
        ));
    }
    let barrier = Arc::new(Barrier::new(sent.len()));
    let tasks: Vec<_> = sent
        .iter()
        .cloned()
        .map(|(d, v, meta)| {
            let (s, actor, barrier) = (s.clone(), actor.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                s.insert_reports(&actor, app, d, move |_: &Device| {
                    Ok::<_, StoreError>(vec![Report {
                        time: t0,
                        meta: meta.clone(),
                        values: vec![("v".to_owned(), v.clone())],
                    }])
                })
                .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 1);
    }
    let many = device(&s, app, "number").await.id;
    let big: Vec<Report> = (0..20)
        .map(|i| Report {
            time: t0 + i,
            meta: None,
            values: vec![(
                "v".to_owned(),
                Stored::Num(numbers[i as usize % numbers.len()]),
            )],
        })
        .collect();
    let expected_big = big.clone();
    assert_eq!(
        s.insert_reports(&actor, app, many, move |_: &Device| Ok::<_, StoreError>(
            big.clone()
        ))
        .await
        .unwrap(),
        20
    );
    let read = |d: Id| {
        let s = s.clone();
        async move {
            s.states(
                d,
                &["v"],
                &HistoryQuery {
                    start: 0,
                    end: i64::MAX,
                    limit: 100,
                    descending: false,
                },
            )
            .await
            .unwrap()
        }
    };
    let same = |a: &Stored, b: &Stored| match (a, b) {
        (Stored::Num(x), Stored::Num(y)) => x.to_bits() == y.to_bits(),
        (a, b) => a == b,
    };
    for (d, v, meta) in &sent {
        let got = read(*d).await;
        assert_eq!(got.len(), 1, "one report of {v:?}");
        assert!(
            same(&got[0].values["v"], v),
            "sent {v:?}, read {:?}",
            got[0].values["v"]
        );
        assert_eq!(&got[0].meta, meta);
    }
    let got = read(many).await;
    assert_eq!(got.len(), 20);
    for (g, e) in got.iter().zip(&expected_big) {
        assert_eq!(g.time, e.time);
        assert!(
            same(&g.values["v"], &e.values[0].1),
            "at {}: {:?}",
            g.time,
            g.values["v"]
        );
    }
}
