//! Two requests released together, through the whole server (guard, caches, handler, store),
//! hundreds of rounds, on both backends: whatever order their transactions commit in, both
//! changes survive, and an invariant holds (issue 11, item 1). The store's own race cases
//! (`tollgate-store` `tests/concurrency.rs`) release the store writes directly; these prove
//! that no handler merges or checks from a copy read before the write (a cache, a
//! separate read).

use std::future::Future;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Barrier;
use tollgate_core::Role;
use tollgate_store::orgs::MemberChange;
use tollgate_store::tokens::TokenStatus;
use tollgate_store::{Actor, Id};
use tollgate_testkit::{Case, case};

use crate::common::{Resp, TestApp};

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            rename_and_deactivate_requests_both_survive,
            multi_thread = 4
        ),
        case!(admins_demoting_each_other_leave_an_admin, multi_thread = 4),
        case!(
            device_and_application_patches_both_survive,
            multi_thread = 4
        ),
    ]
}

/// Send `a` and `b` at the same moment (each on its own task) and wait for both answers.
async fn race<A, B>(a: A, b: B) -> (Resp, Resp)
where
    A: Future<Output = Resp> + Send + 'static,
    B: Future<Output = Resp> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let (ba, bb) = (barrier.clone(), barrier);
    let ta = tokio::spawn(async move {
        ba.wait().await;
        a.await
    });
    let tb = tokio::spawn(async move {
        bb.wait().await;
        b.await
    });
    (ta.await.unwrap(), tb.await.unwrap())
}

/// The owner renames a token while switching it off in a second request: the token ends up
/// renamed *and* inactive, and is refused from then on (before the fix, on PostgreSQL, the
/// rename wrote the old status back in about a third of the rounds).
async fn rename_and_deactivate_requests_both_survive() {
    let t = Arc::new(TestApp::new().await);
    let owner = t.user("owner@example.com").await;
    let session = t.session_for(owner).await;
    let app = t.app_of(owner, "Plant").await;
    let rounds = 200;
    let mut violations = 0;
    for i in 0..rounds {
        let (id, secret) = t
            .raw_token(app, &["all.Application"], TokenStatus::Active, None)
            .await;
        // The token is in the caches when the race starts (as a token in use would be).
        t.get(&format!("/applications/{app}"), &secret)
            .await
            .expect(200);
        let path = format!("/applications/{app}/tokens/{id}");
        let name = format!("renamed {i}");
        let (t1, t2, p1, p2, s1, s2, n) = (
            t.clone(),
            t.clone(),
            path.clone(),
            path.clone(),
            session.clone(),
            session.clone(),
            name.clone(),
        );
        let (r1, r2) = race(
            async move { t1.patch(&p1, &s1, json!({ "status": "inactive" })).await },
            async move { t2.patch(&p2, &s2, json!({ "name": n })).await },
        )
        .await;
        assert_eq!((r1.status.as_u16(), r2.status.as_u16()), (200, 200));
        let after = t.get(&path, &session).await.expect(200);
        let refused = t.get(&format!("/applications/{app}"), &secret).await.status;
        if after["status"] != "inactive" || after["name"] != name.as_str() || refused != 401 {
            violations += 1;
        }
    }
    eprintln!("rename vs deactivate over HTTP: {violations} of {rounds} rounds with a violation");
    assert_eq!(
        violations, 0,
        "{violations} of {rounds} rounds left the token active or not renamed"
    );
}

/// The last two administrators demote each other in two requests released together: one
/// is answered 200, the other refused (403: no longer an administrator, or 400: the last
/// one), and exactly one administrator remains.
async fn admins_demoting_each_other_leave_an_admin() {
    let t = Arc::new(TestApp::new().await);
    let rounds = 150;
    let mut violations = 0;
    for i in 0..rounds {
        let a = t.user(&format!("a{i}@example.com")).await;
        let b = t.user(&format!("b{i}@example.com")).await;
        let (sa, sb) = (t.session_for(a).await, t.session_for(b).await);
        let org = t
            .post("/orgs", &sa, json!({ "name": format!("Org {i}") }))
            .await
            .expect(201);
        let org: Id = org["id"].as_str().unwrap().parse().unwrap();
        t.store()
            .add_member(
                &Actor::operator(),
                org,
                b,
                &MemberChange {
                    role: Some(Role::Admin),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let path = format!("/orgs/{org}/member");
        let (t1, t2, p1, p2) = (t.clone(), t.clone(), path.clone(), path.clone());
        let (r1, r2) = race(
            async move {
                t1.patch(&p1, &sa, json!({ "userId": b.to_string(), "role": "edit" }))
                    .await
            },
            async move {
                t2.patch(&p2, &sb, json!({ "userId": a.to_string(), "role": "edit" }))
                    .await
            },
        )
        .await;
        let mut statuses = [r1.status.as_u16(), r2.status.as_u16()];
        statuses.sort_unstable();
        let admins = t
            .store()
            .org_members(org)
            .await
            .unwrap()
            .iter()
            .filter(|m| m.role == Role::Admin)
            .count();
        let one_refused = statuses == [200, 403] || statuses == [200, 400];
        if !one_refused || admins != 1 {
            eprintln!(
                "round {i}: {statuses:?}, {admins} admins: {} / {}",
                r1.body, r2.body
            );
            violations += 1;
        }
    }
    eprintln!("mutual demotion over HTTP: {violations} of {rounds} rounds with a violation");
    assert_eq!(violations, 0, "{violations} of {rounds} rounds");
}

/// A device renamed while its tags are replaced, and an application renamed while its
/// description changes, each pair in two requests released together: both changes of each
/// pair survive (the device's cached copy is never what is written back).
async fn device_and_application_patches_both_survive() {
    let t = Arc::new(TestApp::new().await);
    let owner = t.user("owner@example.com").await;
    let session = t.session_for(owner).await;
    let app = t.app_of(owner, "Plant").await;
    let rounds = 150;
    let mut violations = 0;
    for i in 0..rounds {
        let device = t
            .post(
                &format!("/applications/{app}/devices"),
                &session,
                json!({
                    "name": "d",
                    "deviceClass": "standalone",
                    "tags": [{ "key": "floor", "value": "1" }],
                    "attributes": [{ "name": "temperature", "dataType": "number" }]
                }),
            )
            .await
            .expect(201);
        let path = format!(
            "/applications/{app}/devices/{}",
            device["id"].as_str().unwrap()
        );
        // Cached, as a device in use would be.
        t.get(&path, &session).await.expect(200);
        let (t1, t2, p1, p2, s1, s2) = (
            t.clone(),
            t.clone(),
            path.clone(),
            path.clone(),
            session.clone(),
            session.clone(),
        );
        let name = format!("device {i}");
        let n = name.clone();
        let (r1, r2) = race(
            async move { t1.patch(&p1, &s1, json!({ "name": n })).await },
            async move {
                t2.patch(
                    &p2,
                    &s2,
                    json!({ "tags": [{ "key": "floor", "value": "2" }] }),
                )
                .await
            },
        )
        .await;
        assert_eq!((r1.status.as_u16(), r2.status.as_u16()), (200, 200));
        let after = t.get(&path, &session).await.expect(200);
        let tags: Vec<Value> = after["tags"].as_array().cloned().unwrap_or_default();
        if after["name"] != name.as_str() || tags != vec![json!({ "key": "floor", "value": "2" })] {
            violations += 1;
        }

        let app_path = format!("/applications/{app}");
        let (t1, t2, p1, p2, s1, s2) = (
            t.clone(),
            t.clone(),
            app_path.clone(),
            app_path.clone(),
            session.clone(),
            session.clone(),
        );
        let (app_name, description) = (format!("Plant {i}"), format!("round {i}"));
        let (n, d) = (app_name.clone(), description.clone());
        let (r1, r2) = race(
            async move { t1.patch(&p1, &s1, json!({ "name": n })).await },
            async move { t2.patch(&p2, &s2, json!({ "description": d })).await },
        )
        .await;
        assert_eq!((r1.status.as_u16(), r2.status.as_u16()), (200, 200));
        let after = t.get(&app_path, &session).await.expect(200);
        if after["name"] != app_name.as_str() || after["description"] != description.as_str() {
            violations += 1;
        }
    }
    eprintln!(
        "device and application PATCHes over HTTP: {violations} of {} PATCH pairs with a violation",
        2 * rounds
    );
    assert_eq!(violations, 0, "{violations} of {} pairs", 2 * rounds);
}
