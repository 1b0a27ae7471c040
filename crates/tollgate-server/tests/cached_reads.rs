//! Read actions answered from memory (`read_cache`): after every write of a sequence, each
//! cached read answers exactly what a node with nothing cached reads from the database, and
//! a warm read asks the database nothing (counted in `/metrics`).

use std::time::Duration;

use serde_json::{Value, json};
use tollgate_store::Store;
use tollgate_testkit::{Case, case};

use crate::common::{TestApp, eventually};

/// Database lookups of the cached read actions, from `/metrics`, by part.
pub fn lookups_in(metrics: &str, part: &str) -> u64 {
    let line = format!("tollgate_read_answers_total{{part=\"{part}\",from=\"database\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .unwrap_or_else(|| panic!("no {line} in the metrics:\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

async fn lookups(t: &TestApp, part: &str) -> u64 {
    lookups_in(&t.raw_text("/metrics", None).await.1, part)
}

/// A second node over the same database that keeps nothing between requests: its answers
/// are the database's.
async fn uncached_node(t: &TestApp) -> TestApp {
    let store = Store::connect_with(&t.database_url, 2).await.unwrap();
    TestApp::with_store(store, t.database_url.clone(), tempfile::tempdir().unwrap())
}

/// Every read (`path`, its part): answered by `t` twice, the second time from memory with no
/// database lookup, and both the same bytes as `fresh`'s answer from the database.
async fn same_as_database(
    t: &TestApp,
    fresh: &TestApp,
    s: &str,
    reads: &[(String, &str)],
    step: &str,
) {
    for (path, part) in reads {
        let (status, first) = t.raw_text(path, Some(s)).await;
        assert_eq!(status, 200, "{step}: {path}: {first}");
        let before = lookups(t, part).await;
        let (_, warm) = t.raw_text(path, Some(s)).await;
        assert_eq!(
            lookups(t, part).await,
            before,
            "{step}: the warm read of {path} asked the database"
        );
        assert_eq!(first, warm, "{step}: {path}");
        fresh.state.clear_caches();
        let (status, db) = fresh.raw_text(path, Some(s)).await;
        assert_eq!(status, 200, "{step}: {path}: {db}");
        assert_eq!(
            warm, db,
            "{step}: the cached answer of {path} differs from the database's"
        );
    }
}

async fn cached_reads_equal_the_database_after_every_write() {
    let t = TestApp::new().await;
    let user = t.user("reader@example.com").await;
    let s = t.session_for(user).await;
    let app = t.app_of(user, "Plant").await;
    let fresh = uncached_node(&t).await;
    let base = format!("/applications/{app}");

    let token = t
        .post(&format!("{base}/tokens"), &s, json!({ "name": "first" }))
        .await
        .expect(201);
    let tid = token["id"].as_str().unwrap().to_owned();
    let secret = token["token"].as_str().unwrap().to_owned();

    let mut reads: Vec<(String, &str)> = vec![
        (base.clone(), "application"),
        (format!("{base}/tokens"), "tokens"),
        (
            format!("{base}/tokens?sortField=name&sortDirection=desc&perPage=1"),
            "tokens",
        ),
        (format!("{base}/tokens/{tid}"), "tokens"),
        (format!("{base}/flows"), "flows"),
        (
            format!("{base}/flows?filterField=name&filter=Too*"),
            "flows",
        ),
        (format!("{base}/devices"), "devices"),
        (
            format!("{base}/devices?filterField=name&filter=H*&perPage=5"),
            "devices",
        ),
        (
            format!("{base}/devices?tagFilter[0][key]=floor&tagFilter[0][value]=3"),
            "devices",
        ),
    ];
    same_as_database(&t, &fresh, &s, &reads, "at first").await;

    t.patch(&base, &s, json!({ "name": "Renamed", "description": "d" }))
        .await
        .expect(200);
    same_as_database(&t, &fresh, &s, &reads, "application renamed").await;

    let second = t
        .post(
            &format!("{base}/tokens"),
            &s,
            json!({ "name": "second", "expirationDate": "2031-01-01T00:00:00.000Z" }),
        )
        .await
        .expect(201);
    let second = second["id"].as_str().unwrap().to_owned();
    reads.push((format!("{base}/tokens/{second}"), "tokens"));
    same_as_database(&t, &fresh, &s, &reads, "token created").await;

    t.patch(
        &format!("{base}/tokens/{tid}"),
        &s,
        json!({ "name": "first, renamed", "status": "inactive" }),
    )
    .await
    .expect(200);
    same_as_database(&t, &fresh, &s, &reads, "token renamed and deactivated").await;
    t.patch(
        &format!("{base}/tokens/{tid}"),
        &s,
        json!({ "status": "active" }),
    )
    .await
    .expect(200);
    same_as_database(&t, &fresh, &s, &reads, "token reactivated").await;

    // A use of the token is shown once recorded: the flush is a change like any other.
    t.get(&base, &secret).await.expect(200);
    t.state.credentials().flush_last_used().await.unwrap();
    let listed = t.get(&format!("{base}/tokens/{tid}"), &s).await.expect(200);
    assert!(listed["lastUsedDate"].is_string(), "{listed}");
    same_as_database(&t, &fresh, &s, &reads, "token used").await;

    t.delete(&format!("{base}/tokens/{second}"), &s)
        .await
        .expect(200);
    reads.pop();
    same_as_database(&t, &fresh, &s, &reads, "token deleted").await;

    let flow = json!({
        "name": "Too hot",
        "triggers": [],
        "nodes": [{ "id": "n1", "type": "DebugNode", "config": {} }],
    });
    let f = t.post(&format!("{base}/flows"), &s, flow).await.expect(201);
    let fid = f["id"].as_str().unwrap().to_owned();
    same_as_database(&t, &fresh, &s, &reads, "flow created").await;
    t.patch(
        &format!("{base}/flows/{fid}"),
        &s,
        json!({ "name": "Too hot, really" }),
    )
    .await
    .expect(200);
    same_as_database(&t, &fresh, &s, &reads, "flow renamed").await;
    t.delete(&format!("{base}/flows/{fid}"), &s)
        .await
        .expect(200);
    same_as_database(&t, &fresh, &s, &reads, "flow deleted").await;

    let device = |name: &str, floor: &str| {
        json!({
            "name": name,
            "tags": [{ "key": "floor", "value": floor }],
            "attributes": [{ "name": "temperature", "dataType": "number" }],
        })
    };
    let hall = t
        .post(&format!("{base}/devices"), &s, device("Hall", "3"))
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    same_as_database(&t, &fresh, &s, &reads, "device created").await;
    let attic = t
        .post(&format!("{base}/devices"), &s, device("Attic", "4"))
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    same_as_database(&t, &fresh, &s, &reads, "second device created").await;
    t.patch(
        &format!("{base}/devices/{attic}"),
        &s,
        json!({ "name": "Hallway", "tags": [{ "key": "floor", "value": "3" }] }),
    )
    .await
    .expect(200);
    same_as_database(&t, &fresh, &s, &reads, "device renamed and retagged").await;
    t.delete(&format!("{base}/devices/{hall}"), &s)
        .await
        .expect(200);
    same_as_database(&t, &fresh, &s, &reads, "device deleted").await;

    // Deleting the application: nothing cached about it answers any more.
    t.delete(&base, &s).await.expect(200);
    t.get(&base, &s).await.expect(404);
}

/// The posture counts move with the time (a token expires without any write): the cached
/// summary is good only until the first such instant.
async fn the_posture_summary_follows_the_clock() {
    let t = TestApp::new().await;
    let user = t.user("clock@example.com").await;
    let s = t.session_for(user).await;
    let app = t.app_of(user, "Plant").await;
    let fresh = uncached_node(&t).await;
    let base = format!("/applications/{app}/tokens");
    let expires = tollgate_store::now_ms() + 1500;
    t.post(
        &base,
        &s,
        json!({ "name": "soon", "expirationDate": tollgate_server::time::iso(expires) }),
    )
    .await
    .expect(201);
    let posture = |v: &Value| v["posture"].clone();
    let before = t.get(&base, &s).await.expect(200);
    assert_eq!(posture(&before)["expiringWithin30Days"], 1, "{before}");
    assert_eq!(posture(&before)["expired"], 0);
    let warm = lookups(&t, "tokens").await;
    assert_eq!(
        posture(&t.get(&base, &s).await.expect(200)),
        posture(&before)
    );
    assert_eq!(lookups(&t, "tokens").await, warm, "warm before the expiry");

    eventually("the token's expiry", Duration::from_secs(30), || async {
        (tollgate_store::now_ms() > expires).then_some(())
    })
    .await;
    let after = t.get(&base, &s).await.expect(200);
    assert_eq!(posture(&after)["expired"], 1, "{after}");
    assert_eq!(posture(&after)["expiringWithin30Days"], 0);
    fresh.state.clear_caches();
    assert_eq!(
        t.raw_text(&base, Some(&s)).await.1,
        fresh.raw_text(&base, Some(&s)).await.1
    );
}

/// A token with a usage limit changes with every lease of its uses (on any node, with no
/// notice): answers showing it are read from the database every time.
async fn tokens_with_usage_limits_are_not_kept() {
    let t = TestApp::new().await;
    let user = t.user("quota@example.com").await;
    let s = t.session_for(user).await;
    let app = t.app_of(user, "Plant").await;
    let base = format!("/applications/{app}/tokens");
    let limited = t
        .post(&base, &s, json!({ "name": "limited", "usageLimit": 100 }))
        .await
        .expect(201);
    let id = limited["id"].as_str().unwrap();
    let secret = limited["token"].as_str().unwrap().to_owned();
    let one = format!("{base}/{id}");
    let first = t.get(&one, &s).await.expect(200);
    assert_eq!(first["usesRemaining"], 100, "{first}");
    t.get(&format!("/applications/{app}"), &secret)
        .await
        .expect(200);
    let before = lookups(&t, "tokens").await;
    let again = t.get(&one, &s).await.expect(200);
    assert_eq!(lookups(&t, "tokens").await, before + 1, "read again");
    let fresh = uncached_node(&t).await;
    let db = fresh.get(&one, &s).await.expect(200);
    // This node counts the uses it leased and has not spent; another node shows them spent.
    assert!(
        again["usesRemaining"].as_i64() >= db["usesRemaining"].as_i64(),
        "{again} {db}"
    );
    t.get(&base, &s).await.expect(200);
    let before = lookups(&t, "tokens").await;
    t.get(&base, &s).await.expect(200);
    // The page holding the limited token is read again; the posture summary is kept.
    assert_eq!(lookups(&t, "tokens").await, before + 1);
}

/// Device state answered from memory (`state_cache`): after every write of a sequence (state
/// reports one at a time through the group commit and as a batch written alone, a report at
/// the same time overwriting one, a report ahead of the clock, attributes removed, retyped and
/// added, the device deleted), each cached state read answers exactly what a node with
/// nothing cached reads from the database, and a warm read asks the database nothing.
async fn cached_state_equals_the_database_after_every_write() {
    let t = TestApp::new().await;
    let user = t.user("state@example.com").await;
    let s = t.session_for(user).await;
    let app = t.app_of(user, "Plant").await;
    let fresh = uncached_node(&t).await;
    let base = format!("/applications/{app}");
    let device = |name: &str| {
        json!({
            "name": name,
            "attributes": [
                { "name": "temperature", "dataType": "number" },
                { "name": "label", "dataType": "string" },
                { "name": "on", "dataType": "boolean" },
            ],
        })
    };
    let id = |v: Value| v["id"].as_str().unwrap().to_owned();
    let hall = id(t
        .post(&format!("{base}/devices"), &s, device("Hall"))
        .await
        .expect(201));
    let attic = id(t
        .post(&format!("{base}/devices"), &s, device("Attic"))
        .await
        .expect(201));
    let dev = format!("{base}/devices/{hall}");
    let reads: Vec<(String, &str)> = [
        format!("{dev}/state"),
        format!("{dev}/state?limit=5"),
        format!("{dev}/state?limit=3&sortDirection=asc"),
        format!("{dev}/compositeState"),
        format!("{dev}/compositeState?attributes=temperature,on"),
        format!("{base}/devices/{attic}/compositeState"),
    ]
    .into_iter()
    .map(|p| (p, "state"))
    .collect();
    let lvq = format!("{base}/data/last-value-query");
    let queries = [
        json!({ "attribute": "temperature", "deviceIds": [hall, attic] }),
        json!({ "attribute": "label", "deviceIds": [hall, hall] }),
        json!({ "attribute": "on", "deviceIds": [attic, "0123456789abcdef01234567"] }),
    ];
    let same = |step: &'static str| {
        let (t, fresh, s, reads, lvq, queries) = (&t, &fresh, &s, &reads, &lvq, &queries);
        async move {
            same_as_database(t, fresh, s, reads, step).await;
            for q in queries {
                let first = t.post(lvq, s, q.clone()).await.expect(200);
                let before = lookups(t, "state").await;
                let warm = t.post(lvq, s, q.clone()).await.expect(200);
                assert_eq!(lookups(t, "state").await, before, "{step}: warm {q} asked");
                assert_eq!(first, warm, "{step}: {q}");
                fresh.state.clear_caches();
                let db = fresh.post(lvq, s, q.clone()).await.expect(200);
                assert_eq!(warm, db, "{step}: the cached answer of {q} differs");
            }
        }
    };
    same("no state yet").await;
    let report = |body: Value| {
        let (t, s, dev) = (&t, &s, &dev);
        async move {
            t.post(&format!("{dev}/state"), s, body).await.expect(200);
        }
    };
    report(json!({ "data": { "temperature": 21.5, "on": true } })).await;
    same("one report").await;
    let states = t.get(&format!("{dev}/state"), &s).await.expect(200);
    assert_eq!(states[0]["data"]["temperature"], 21.5, "{states}");
    report(json!({ "data": { "label": "warm" }, "meta": { "from": "test" } })).await;
    same("a second report, with meta").await;
    let now = tollgate_store::now_ms();
    let batch: Vec<Value> = (0..20)
        .map(|i| json!({ "time": now - 100_000 + i * 1000, "data": { "temperature": i } }))
        .collect();
    report(json!(batch)).await;
    same("a batch of 20, written alone").await;
    report(json!({ "time": now - 100_000, "data": { "temperature": 99, "label": "over" } })).await;
    same("a report at the time of another, merged into it").await;
    // A report ahead of the clock is not the newest until its time comes.
    let ahead = tollgate_store::now_ms() + 2500;
    report(json!({ "time": ahead, "data": { "temperature": 30 } })).await;
    same("a report ahead of the clock").await;
    let composite = t
        .get(&format!("{dev}/compositeState"), &s)
        .await
        .expect(200);
    assert_eq!(composite["temperature"]["value"], 21.5, "{composite}");
    eventually("the report's time", Duration::from_secs(30), || async {
        (tollgate_store::now_ms() > ahead).then_some(())
    })
    .await;
    let composite = t
        .get(&format!("{dev}/compositeState"), &s)
        .await
        .expect(200);
    assert_eq!(composite["temperature"]["value"], 30, "{composite}");
    same("the report's time has come").await;
    // Attributes: `label` removed and `on` retyped (their points are deleted), `level` added.
    t.patch(
        &dev,
        &s,
        json!({ "attributes": [
            { "name": "temperature", "dataType": "number" },
            { "name": "on", "dataType": "string" },
            { "name": "level", "dataType": "number" },
        ] }),
    )
    .await
    .expect(200);
    same("attributes removed, retyped and added").await;
    let composite = t
        .get(&format!("{dev}/compositeState"), &s)
        .await
        .expect(200);
    assert!(
        composite.get("label").is_none() && composite.get("on").is_none(),
        "{composite}"
    );
    report(json!({ "data": { "level": 3, "on": "yes" } })).await;
    same("a report of the new attributes").await;
    t.post(
        &format!("{base}/devices/{attic}/state"),
        &s,
        json!({ "data": { "temperature": 5 } }),
    )
    .await
    .expect(200);
    same("the other device reported").await;
    // Deleted: its state is gone (404), and the last-value query leaves it out.
    t.delete(&dev, &s).await.expect(200);
    for (path, _) in &reads[..5] {
        t.get(path, &s).await.expect(404);
    }
    for q in &queries {
        let got = t.post(&lvq, &s, q.clone()).await.expect(200);
        assert!(got.get(&hall).is_none(), "{got}");
        fresh.state.clear_caches();
        assert_eq!(got, fresh.post(&lvq, &s, q.clone()).await.expect(200));
    }
}

/// State reports from many requests at once (committed together by the group commit) while
/// the same device's state is read: once they are all answered, the cached reads show the
/// last of them, as the database does.
async fn cached_state_follows_concurrent_reports() {
    let t = TestApp::new().await;
    let user = t.user("burst@example.com").await;
    let s = t.session_for(user).await;
    let app = t.app_of(user, "Plant").await;
    let fresh = uncached_node(&t).await;
    let base = format!("/applications/{app}");
    let dev = t
        .post(
            &format!("{base}/devices"),
            &s,
            json!({ "name": "d", "attributes": [{ "name": "n", "dataType": "number" }] }),
        )
        .await
        .expect(201);
    let dev = format!("{base}/devices/{}", dev["id"].as_str().unwrap());
    let now = tollgate_store::now_ms();
    let writes = (0..40).map(|i| {
        let (t, s, dev) = (&t, &s, &dev);
        async move {
            t.post(
                &format!("{dev}/state"),
                s,
                json!({ "time": now - 1000 + i, "data": { "n": i } }),
            )
            .await
            .expect(200);
        }
    });
    let reads = (0..40).map(|_| {
        let (t, s, dev) = (&t, &s, &dev);
        async move {
            t.get(&format!("{dev}/compositeState"), s).await.expect(200);
        }
    });
    futures_util::future::join(
        futures_util::future::join_all(writes),
        futures_util::future::join_all(reads),
    )
    .await;
    let got = t
        .get(&format!("{dev}/compositeState"), &s)
        .await
        .expect(200);
    assert_eq!(got["n"]["value"], 39, "{got}");
    fresh.state.clear_caches();
    for path in [
        format!("{dev}/compositeState"),
        format!("{dev}/state?limit=50"),
    ] {
        assert_eq!(
            t.raw_text(&path, Some(&s)).await.1,
            fresh.raw_text(&path, Some(&s)).await.1,
            "{path}"
        );
    }
}

/// A cached state answer is still behind the token check: once a token is deactivated or
/// deleted, the state it read a moment ago from memory is refused to it.
async fn cached_state_is_refused_once_the_token_is_revoked() {
    let t = TestApp::new().await;
    let user = t.user("revoked@example.com").await;
    let s = t.session_for(user).await;
    let app = t.app_of(user, "Plant").await;
    let base = format!("/applications/{app}");
    let dev = t
        .post(
            &format!("{base}/devices"),
            &s,
            json!({ "name": "d", "attributes": [{ "name": "n", "dataType": "number" }] }),
        )
        .await
        .expect(201);
    let device = dev["id"].as_str().unwrap().to_owned();
    let dev = format!("{base}/devices/{device}");
    t.post(&format!("{dev}/state"), &s, json!({ "data": { "n": 1 } }))
        .await
        .expect(200);
    let mut tokens = Vec::new();
    for name in ["deactivated", "deleted"] {
        let tok = t
            .post(
                &format!("{base}/tokens"),
                &s,
                json!({ "name": name, "scope": ["device.getState", "device.getCompositeState", "data.lastValueQuery"] }),
            )
            .await
            .expect(201);
        tokens.push((
            tok["id"].as_str().unwrap().to_owned(),
            tok["token"].as_str().unwrap().to_owned(),
        ));
    }
    let lvq = format!("{base}/data/last-value-query");
    let q = json!({ "attribute": "n", "deviceIds": [device] });
    for (_, secret) in &tokens {
        for _ in 0..2 {
            t.get(&format!("{dev}/state"), secret).await.expect(200);
            t.get(&format!("{dev}/compositeState"), secret)
                .await
                .expect(200);
            t.post(&lvq, secret, q.clone()).await.expect(200);
        }
    }
    let before = lookups(&t, "state").await;
    t.get(&format!("{dev}/state"), &tokens[0].1)
        .await
        .expect(200);
    assert_eq!(lookups(&t, "state").await, before, "answered from memory");
    t.patch(
        &format!("{base}/tokens/{}", tokens[0].0),
        &s,
        json!({ "status": "inactive" }),
    )
    .await
    .expect(200);
    t.delete(&format!("{base}/tokens/{}", tokens[1].0), &s)
        .await
        .expect(200);
    for (_, secret) in &tokens {
        t.get(&format!("{dev}/state"), secret).await.expect(401);
        t.get(&format!("{dev}/compositeState"), secret)
            .await
            .expect(401);
        t.post(&lvq, secret, q.clone()).await.expect(401);
    }
    // The answers are still kept for everyone else.
    let before = lookups(&t, "state").await;
    t.get(&format!("{dev}/state"), &s).await.expect(200);
    assert_eq!(lookups(&t, "state").await, before);
}

/// Token answers and last-used times: a flush of uses this node holds in memory does not
/// reload the cached page (its answers already show them) but does reload the posture
/// counts, and a use shows on the cached page at once; a token's lineage, kept with it,
/// follows the children created through it.
async fn token_answers_follow_uses_and_lineage_without_reloading() {
    let t = TestApp::new().await;
    let user = t.user("uses@example.com").await;
    let s = t.session_for(user).await;
    let app = t.app_of(user, "Plant").await;
    let fresh = uncached_node(&t).await;
    let base = format!("/applications/{app}/tokens");
    let parent = t
        .post(
            &base,
            &s,
            json!({ "name": "parent", "scope": ["all.Application"] }),
        )
        .await
        .expect(201);
    let (pid, psecret) = (
        parent["id"].as_str().unwrap().to_owned(),
        parent["token"].as_str().unwrap().to_owned(),
    );
    let list = t.get(&base, &s).await.expect(200);
    assert_eq!(list["posture"]["neverUsed"], 1, "{list}");
    assert!(list["items"][0].get("lastUsedDate").is_none(), "{list}");
    let one = format!("{base}/{pid}");
    let detail = t.get(&one, &s).await.expect(200);
    assert!(detail.get("lastUsedDate").is_none(), "{detail}");
    // A use: shown on the cached page and detail from memory, before any flush.
    t.get(&format!("/applications/{app}"), &psecret)
        .await
        .expect(200);
    let before = lookups(&t, "tokens").await;
    let detail = t.get(&one, &s).await.expect(200);
    assert!(detail["lastUsedDate"].is_string(), "{detail}");
    assert_eq!(
        lookups(&t, "tokens").await,
        before,
        "the detail, rendered again"
    );
    let before = lookups(&t, "tokens").await;
    let list = t.get(&base, &s).await.expect(200);
    assert!(list["items"][0]["lastUsedDate"].is_string(), "{list}");
    // The flush ran before the page was read (the posture counts need it): only the counts
    // were read again.
    assert_eq!(
        lookups(&t, "tokens").await,
        before + 1,
        "only the posture counts"
    );
    assert_eq!(list["posture"]["neverUsed"], 0, "{list}");
    fresh.state.clear_caches();
    assert_eq!(
        t.raw_text(&base, Some(&s)).await.1,
        fresh.raw_text(&base, Some(&s)).await.1
    );
    let before = lookups(&t, "tokens").await;
    t.get(&base, &s).await.expect(200);
    assert_eq!(lookups(&t, "tokens").await, before, "warm");

    // Lineage: the detail counts the children created through the token.
    let detail = t.get(&one, &s).await.expect(200);
    assert_eq!(detail["lineage"]["childCount"], 0, "{detail}");
    let before = lookups(&t, "tokens").await;
    t.get(&one, &s).await.expect(200);
    assert_eq!(
        lookups(&t, "tokens").await,
        before,
        "the detail and its lineage, warm"
    );
    let child = t
        .post(
            &base,
            &psecret,
            json!({ "name": "child", "scope": ["device.get"] }),
        )
        .await
        .expect(201);
    let cid = child["id"].as_str().unwrap().to_owned();
    let detail = t.get(&one, &s).await.expect(200);
    assert_eq!(detail["lineage"]["childCount"], 1, "{detail}");
    let child_path = format!("{base}/{cid}");
    let c = t.get(&child_path, &s).await.expect(200);
    assert_eq!(c["lineage"]["parentExists"], true, "{c}");
    t.delete(&one, &s).await.expect(200);
    let c = t.get(&child_path, &s).await.expect(200);
    assert_eq!(c["lineage"]["parentExists"], false, "{c}");
    fresh.state.clear_caches();
    assert_eq!(
        t.raw_text(&child_path, Some(&s)).await.1,
        fresh.raw_text(&child_path, Some(&s)).await.1
    );
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(cached_state_equals_the_database_after_every_write),
        case!(cached_state_follows_concurrent_reports),
        case!(cached_state_is_refused_once_the_token_is_revoked),
        case!(token_answers_follow_uses_and_lineage_without_reloading),
        case!(cached_reads_equal_the_database_after_every_write),
        case!(the_posture_summary_follows_the_clock),
        case!(tokens_with_usage_limits_are_not_kept),
    ]
}
