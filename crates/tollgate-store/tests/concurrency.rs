//! Store writes under concurrency, the same cases on SQLite and on PostgreSQL (both passes):
//! every write applies one change in one transaction, merges a PATCH into the row as it is
//! when the change commits, keeps its invariants in that transaction, and re-checks its
//! credential there.
//!
//! Each race releases its two operations together (a barrier, on a multi-thread runtime, each
//! with its own pooled connection), so they really overlap. Measured before the writes were
//! fixed (the commit "Store races measured on today's API"), on PostgreSQL: a rename undid a
//! concurrent deactivation in 128 and 217 of 300 rounds, two admins demoting each other left
//! no admin in 114 and 123 of 200, and application, organization, flow and device PATCHes lost
//! one of two changes in 87 to 193 of 200; a state report outlived its attribute's removal in
//! 127 and 139 of 200 (also 132 and 164 of 200 on SQLite, where the handler merged devices
//! from a stale copy).

use std::future::Future;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::Barrier;
use tollgate_core::Role;
use tollgate_core::attribute::Stored;
use tollgate_store::applications::{ApplicationChange, Owner};
use tollgate_store::devices::{Device, DeviceFields, DevicePatch, Tag};
use tollgate_store::flows::FlowChange;
use tollgate_store::orgs::{MemberChange, OrgChange};
use tollgate_store::states::Report;
use tollgate_store::tokens::{Creator, NewToken, TokenChange, TokenRecord, TokenStatus};
use tollgate_store::users::NewUser;
use tollgate_store::{Actor, Id, Revoked, Store, StoreError, now_ms};
use tollgate_testkit::{Case, case};

use crate::support::{allow, fresh};

pub fn cases() -> Vec<Case> {
    vec![
        case!(deactivation_and_rename_both_survive, multi_thread = 4),
        case!(
            tokens_deactivating_each_other_one_wins_without_deadlock,
            multi_thread = 4
        ),
        case!(mutual_demotion_keeps_an_admin, multi_thread = 4),
        case!(device_patches_both_survive, multi_thread = 4),
        case!(
            state_reports_never_outlive_their_attribute,
            multi_thread = 4
        ),
        case!(state_reports_never_outlive_their_device, multi_thread = 4),
        case!(application_patches_both_survive, multi_thread = 4),
        case!(flow_patches_both_survive, multi_thread = 4),
        case!(organization_patches_both_survive, multi_thread = 4),
        case!(
            writes_by_a_revoked_credential_change_nothing,
            multi_thread = 4
        ),
        case!(a_revocation_waits_for_the_writes_it_races, multi_thread = 4),
        case!(
            a_revocation_waits_for_the_state_reports_it_races,
            multi_thread = 4
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// Fixtures

/// Start `a` and `b` at the same moment (each on its own task) and wait for both.
async fn race<A, B>(
    a: impl Future<Output = A> + Send + 'static,
    b: impl Future<Output = B> + Send + 'static,
) -> (A, B)
where
    A: Send + 'static,
    B: Send + 'static,
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

fn digest() -> [u8; 32] {
    let mut d = [0u8; 32];
    d[..24].copy_from_slice(&Id::generate().hex_bytes());
    d[24..].copy_from_slice(&Id::generate().hex_bytes()[16..]);
    d
}

/// A user with a live session, acting as themselves.
async fn user(s: &Store) -> (Id, Actor) {
    let user = s
        .create_user(&NewUser {
            email: &format!("{}@example.com", Id::generate()),
            password_hash: "not a hash",
            first_name: "",
            last_name: "",
        })
        .await
        .unwrap();
    let d = digest();
    s.create_session(&d, user.id, now_ms() + 3_600_000)
        .await
        .unwrap();
    (user.id, Actor::user_session(user.id, d))
}

/// A user with a session and a sandbox application.
async fn owner_and_app(s: &Store) -> (Actor, Id) {
    let (id, actor) = user(s).await;
    let app = s
        .create_application(&actor, Owner::User(id), "app", "", &Map::new())
        .await
        .unwrap()
        .id;
    (actor, app)
}

async fn token(
    s: &Store,
    app: Id,
    scope: &str,
    status: TokenStatus,
    expires: Option<i64>,
) -> TokenRecord {
    s.create_token(
        &Actor::operator(),
        &NewToken {
            application_id: app,
            digest: digest(),
            name: "t",
            description: "",
            scope: &[scope.to_owned()],
            status,
            expiration_date: expires,
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
    .unwrap()
}

fn attr(name: &str) -> Map<String, Value> {
    json!({ "name": name, "dataType": "number" })
        .as_object()
        .unwrap()
        .clone()
}

async fn device(s: &Store, actor: &Actor, app: Id, attrs: &[&str]) -> Device {
    s.create_device(
        actor,
        app,
        &DeviceFields {
            name: "d".into(),
            device_class: "standalone".into(),
            attributes: attrs.iter().map(|a| attr(a)).collect(),
            ..Default::default()
        },
        &[],
    )
    .await
    .unwrap()
}

/// Who sends round `round`'s state report: the session `actor` in even rounds, a new API
/// token of `app` in odd ones. On PostgreSQL only token requests join the group commit, whose
/// batch locks the device in its own read (not `device_for_write`), so both paths are raced.
async fn reporter(s: &Store, actor: &Actor, app: Id, round: usize) -> Actor {
    if round.is_multiple_of(2) {
        actor.clone()
    } else {
        let t = token(s, app, "all.Application", TokenStatus::Active, None).await;
        Actor::api_token(t.id, app)
    }
}

/// A state-report check as the server makes one: every value must belong to a declared
/// attribute of the device as the store's transaction sees it.
fn declared(
    values: &[(&str, f64)],
    now: i64,
) -> impl Fn(&Device) -> Result<Vec<Report>, StoreError> + Send + 'static {
    let values: Vec<(String, Stored)> = values
        .iter()
        .map(|(n, v)| ((*n).to_owned(), Stored::Num(*v)))
        .collect();
    move |d: &Device| {
        if let Some((n, _)) = values.iter().find(|(n, _)| d.attribute_type(n).is_none()) {
            return Err(StoreError::Corrupt(format!("{n} is not an attribute")));
        }
        Ok(vec![Report {
            time: now,
            meta: None,
            values: values.clone(),
        }])
    }
}

// ---------------------------------------------------------------------------------------
// Cases

/// Issue 11's first finding: at READ COMMITTED a rename read the row, a deactivation
/// committed, and the rename wrote the old status back.
async fn deactivation_and_rename_both_survive() {
    let f = fresh().await;
    let s = f.store.clone();
    let (actor, app) = owner_and_app(&s).await;
    let rounds = 300;
    let mut lost = 0;
    for i in 0..rounds {
        let t = token(&s, app, "all.Application", TokenStatus::Active, None).await;
        let name = format!("renamed {i}");
        let (s1, s2, a1, a2, n2, id) = (
            s.clone(),
            s.clone(),
            actor.clone(),
            actor.clone(),
            name.clone(),
            t.id,
        );
        let (r1, r2) = race(
            async move {
                let off = TokenChange {
                    status: Some(TokenStatus::Inactive),
                    ..Default::default()
                };
                s1.update_token(&a1, app, id, &off, allow).await
            },
            async move {
                let rename = TokenChange {
                    name: Some(n2),
                    ..Default::default()
                };
                s2.update_token(&a2, app, id, &rename, allow).await
            },
        )
        .await;
        r1.unwrap();
        r2.unwrap();
        let after = s.token(app, t.id).await.unwrap();
        if after.status != TokenStatus::Inactive || after.name != name {
            lost += 1;
        }
    }
    eprintln!("deactivation_and_rename_both_survive: {lost} of {rounds} rounds with a violation");
    assert_eq!(
        lost, 0,
        "{lost} of {rounds} rounds lost the deactivation or the rename"
    );
}

/// Two tokens switching each other off at once: each write locks both rows in id order, so
/// neither waits for the other in a circle (PostgreSQL would abort one as a deadlock), and
/// the second sees that its own token is already off.
async fn tokens_deactivating_each_other_one_wins_without_deadlock() {
    let f = fresh().await;
    let s = f.store.clone();
    let (_, app) = owner_and_app(&s).await;
    let rounds = 100;
    for _ in 0..rounds {
        let a = token(&s, app, "all.Application", TokenStatus::Active, None).await;
        let b = token(&s, app, "all.Application", TokenStatus::Active, None).await;
        let off = TokenChange {
            status: Some(TokenStatus::Inactive),
            ..Default::default()
        };
        let (s1, s2, o1, o2) = (s.clone(), s.clone(), off.clone(), off);
        let (r1, r2) = race(
            async move {
                s1.update_token(&Actor::api_token(a.id, app), app, b.id, &o1, allow)
                    .await
            },
            async move {
                s2.update_token(&Actor::api_token(b.id, app), app, a.id, &o2, allow)
                    .await
            },
        )
        .await;
        let outcomes = [&r1, &r2].map(|r| match r {
            Ok(_) => "ok",
            Err(StoreError::Revoked(Revoked::TokenInactive)) => "revoked",
            Err(e) => panic!("unexpected refusal: {e:?}"),
        });
        assert!(
            outcomes == ["ok", "revoked"] || outcomes == ["revoked", "ok"],
            "{outcomes:?}"
        );
        let statuses = [
            s.token(app, a.id).await.unwrap().status,
            s.token(app, b.id).await.unwrap().status,
        ];
        assert_eq!(
            statuses
                .iter()
                .filter(|s| **s == TokenStatus::Active)
                .count(),
            1,
            "exactly the winner's token stays on: {statuses:?}"
        );
    }
    eprintln!(
        "tokens_deactivating_each_other: {rounds} rounds, each with one winner and no deadlock"
    );
}

/// The last two admins demote (or remove) each other at once: one change commits, the other
/// is refused because its author is no longer an admin (or would leave none), and an admin
/// always remains.
async fn mutual_demotion_keeps_an_admin() {
    let f = fresh().await;
    let s = f.store.clone();
    let rounds = 200;
    let (mut no_longer_admin, mut last_admin) = (0, 0);
    for i in 0..rounds {
        let (a, actor_a) = user(&s).await;
        let (b, actor_b) = user(&s).await;
        let org = s
            .create_org(&actor_a, "o", "", &Map::new(), a)
            .await
            .unwrap()
            .id;
        let admin = MemberChange {
            role: Some(Role::Admin),
            ..Default::default()
        };
        s.add_member(&actor_a, org, b, &admin).await.unwrap();
        let demote = MemberChange {
            role: Some(Role::Edit),
            ..Default::default()
        };
        let (s1, s2, d1, d2) = (s.clone(), s.clone(), demote.clone(), demote);
        let (r1, r2) = race(
            async move { s1.modify_member(&actor_a, org, b, &d1).await },
            async move {
                if i % 2 == 0 {
                    s2.modify_member(&actor_b, org, a, &d2).await
                } else {
                    s2.remove_member(&actor_b, org, a).await
                }
            },
        )
        .await;
        let refused: Vec<&StoreError> = [&r1, &r2]
            .into_iter()
            .filter_map(|r| r.as_ref().err())
            .collect();
        assert_eq!(
            refused.len(),
            1,
            "round {i}: exactly one change commits: {r1:?} {r2:?}"
        );
        match refused[0] {
            StoreError::NoLongerAdmin => no_longer_admin += 1,
            StoreError::LastAdmin => last_admin += 1,
            e => panic!("round {i}: unexpected refusal {e:?}"),
        }
        let admins = s
            .org_members(org)
            .await
            .unwrap()
            .iter()
            .filter(|m| m.role == Role::Admin)
            .count();
        assert_eq!(admins, 1, "round {i}: one admin remains");
    }
    eprintln!(
        "mutual demotion: {rounds} rounds, refused as no longer admin {no_longer_admin}, as the last admin {last_admin}"
    );
}

/// One PATCH removes an attribute while another renames and tags the device: both survive
/// (the store merges each into the row as it is, not into a copy read earlier).
async fn device_patches_both_survive() {
    let f = fresh().await;
    let s = f.store.clone();
    let (actor, app) = owner_and_app(&s).await;
    let rounds = 200;
    let mut lost = 0;
    for i in 0..rounds {
        let d = device(&s, &actor, app, &["temp", "hum"]).await;
        let tag = Tag {
            key: "k".into(),
            value: format!("v{i}"),
        };
        let drop_hum = DevicePatch {
            attributes: Some(vec![attr("temp")]),
            ..Default::default()
        };
        let rename = DevicePatch {
            name: Some("renamed".into()),
            tags: Some(vec![tag.clone()]),
            extra: json!({ "systemInterval": 60 }).as_object().unwrap().clone(),
            ..Default::default()
        };
        let (s1, s2, a1, a2, id) = (s.clone(), s.clone(), actor.clone(), actor.clone(), d.id);
        let (r1, r2) = race(
            async move { s1.update_device(&a1, app, id, &drop_hum, &[]).await },
            async move { s2.update_device(&a2, app, id, &rename, &[]).await },
        )
        .await;
        r1.unwrap();
        r2.unwrap();
        let after = s.device(app, d.id).await.unwrap();
        if after.attributes != vec![attr("temp")]
            || after.name != "renamed"
            || after.tags != vec![tag]
            || after.extra.get("systemInterval") != Some(&json!(60))
        {
            lost += 1;
        }
        assert_eq!(
            s.query_devices(
                app,
                &[],
                &[(Some("k".into()), Some(format!("v{i}")))],
                None,
                10
            )
            .await
            .unwrap()
            .len(),
            usize::from(lost == 0),
            "the tag index agrees with the device's tags"
        );
    }
    eprintln!("device_patches_both_survive: {lost} of {rounds} rounds with a violation");
    assert_eq!(
        lost, 0,
        "{lost} of {rounds} rounds lost one of the two PATCHes"
    );
}

/// A state report checked against the attributes (from a cache, or a moment ago) races the
/// removal of its attribute: it either commits first and its points are deleted with the
/// attribute, or it sees the removal and is refused. Points of an undeclared attribute are
/// never left behind.
async fn state_reports_never_outlive_their_attribute() {
    let f = fresh().await;
    let s = f.store.clone();
    let (actor, app) = owner_and_app(&s).await;
    let rounds = 200;
    let (mut stray, mut stored_first, mut refused) = (0, 0, 0);
    for round in 0..rounds {
        let d = device(&s, &actor, app, &["temp", "hum"]).await;
        let a1 = reporter(&s, &actor, app, round).await;
        let (s1, s2, a2, id) = (s.clone(), s.clone(), actor.clone(), d.id);
        let now = now_ms();
        let (r1, r2) = race(
            async move {
                s1.insert_reports(&a1, app, id, declared(&[("hum", 1.0)], now))
                    .await
            },
            async move {
                let drop_hum = DevicePatch {
                    attributes: Some(vec![attr("temp")]),
                    ..Default::default()
                };
                s2.update_device(&a2, app, id, &drop_hum, &[]).await
            },
        )
        .await;
        r2.unwrap();
        match r1 {
            Ok(n) => {
                assert_eq!(n, 1);
                stored_first += 1;
            }
            Err(StoreError::Corrupt(_)) => refused += 1,
            Err(e) => panic!("unexpected: {e:?}"),
        }
        if s.last_value(id, "hum", 0, i64::MAX)
            .await
            .unwrap()
            .is_some()
        {
            stray += 1;
        }
        assert!(
            s.states(
                id,
                &["temp", "hum"],
                &tollgate_store::devices::HistoryQuery {
                    start: 0,
                    end: i64::MAX,
                    limit: 10,
                    descending: true,
                }
            )
            .await
            .unwrap()
            .is_empty(),
            "no report is left without values"
        );
    }
    eprintln!(
        "state report vs attribute removal: {rounds} rounds, stored before the removal {stored_first}, refused after it {refused}"
    );
    eprintln!(
        "state_reports_never_outlive_their_attribute: {stray} of {rounds} rounds with a violation"
    );
    assert_eq!(
        stray, 0,
        "{stray} of {rounds} rounds left points of a removed attribute"
    );
}

/// A state report raced against the deletion of its device: either the report commits first
/// and the deletion takes its rows, or the deletion commits first and the report is refused.
/// No row of a deleted device is ever left (on PostgreSQL these tables have no foreign key
/// since migration 14; the device's lock and the deletion's trigger are what hold this).
async fn state_reports_never_outlive_their_device() {
    let f = fresh().await;
    let s = f.store.clone();
    let (actor, app) = owner_and_app(&s).await;
    let rounds = 200;
    let (mut stray, mut stored_first, mut refused) = (0, 0, 0);
    for round in 0..rounds {
        let d = device(&s, &actor, app, &["temp"]).await;
        let a1 = reporter(&s, &actor, app, round).await;
        let (s1, s2, a2, id) = (s.clone(), s.clone(), actor.clone(), d.id);
        let now = now_ms();
        let (r1, r2) = race(
            async move {
                s1.insert_reports(&a1, app, id, declared(&[("temp", 1.0)], now))
                    .await
            },
            async move { s2.delete_device(&a2, app, id).await },
        )
        .await;
        r2.unwrap();
        match r1 {
            Ok(n) => {
                assert_eq!(n, 1);
                stored_first += 1;
            }
            Err(StoreError::NotFound) => refused += 1,
            Err(e) => panic!("unexpected: {e:?}"),
        }
        if crate::support::state_rows(&s, id).await != (0, 0) {
            stray += 1;
        }
    }
    eprintln!(
        "state report vs device deletion: {rounds} rounds, stored before the deletion {stored_first}, refused after it {refused}"
    );
    assert_eq!(
        stray, 0,
        "{stray} of {rounds} rounds left rows of a deleted device"
    );
}

async fn application_patches_both_survive() {
    let f = fresh().await;
    let s = f.store.clone();
    let (id, actor) = user(&s).await;
    let rounds = 200;
    let mut lost = 0;
    for i in 0..rounds {
        let app = s
            .create_application(&actor, Owner::User(id), "app", "", &Map::new())
            .await
            .unwrap()
            .id;
        let name = format!("n{i}");
        let rename = ApplicationChange {
            name: Some(name.clone()),
            ..Default::default()
        };
        let describe = ApplicationChange {
            description: Some("d".into()),
            extra: json!({ "globals": [] }).as_object().unwrap().clone(),
            ..Default::default()
        };
        let (s1, s2, a1, a2) = (s.clone(), s.clone(), actor.clone(), actor.clone());
        let (r1, r2) = race(
            async move { s1.update_application(&a1, app, &rename).await },
            async move { s2.update_application(&a2, app, &describe).await },
        )
        .await;
        r1.unwrap();
        r2.unwrap();
        let after = s.application(app).await.unwrap();
        if after.name != name || after.description != "d" || !after.extra.contains_key("globals") {
            lost += 1;
        }
    }
    eprintln!("application_patches_both_survive: {lost} of {rounds} rounds with a violation");
    assert_eq!(
        lost, 0,
        "{lost} of {rounds} rounds lost one of the two PATCHes"
    );
}

async fn flow_patches_both_survive() {
    let f = fresh().await;
    let s = f.store.clone();
    let (actor, app) = owner_and_app(&s).await;
    let rounds = 200;
    let mut lost = 0;
    for i in 0..rounds {
        let f = s
            .create_flow(&actor, app, "f", "cloud", &Map::new())
            .await
            .unwrap();
        let name = format!("n{i}");
        let rename = FlowChange {
            name: Some(name.clone()),
            ..Default::default()
        };
        let describe = FlowChange {
            definition: json!({ "description": "d" }).as_object().unwrap().clone(),
            ..Default::default()
        };
        let (s1, s2, a1, a2, id) = (s.clone(), s.clone(), actor.clone(), actor.clone(), f.id);
        let (r1, r2) = race(
            async move {
                s1.update_flow(&a1, app, id, &rename, |_| Ok::<_, StoreError>(()))
                    .await
            },
            async move {
                s2.update_flow(&a2, app, id, &describe, |_| Ok::<_, StoreError>(()))
                    .await
            },
        )
        .await;
        r1.unwrap();
        r2.unwrap();
        let after = s.flow(app, f.id).await.unwrap();
        if after.name != name || after.definition.get("description") != Some(&json!("d")) {
            lost += 1;
        }
    }
    eprintln!("flow_patches_both_survive: {lost} of {rounds} rounds with a violation");
    assert_eq!(
        lost, 0,
        "{lost} of {rounds} rounds lost one of the two PATCHes"
    );
}

async fn organization_patches_both_survive() {
    let f = fresh().await;
    let s = f.store.clone();
    let (id, actor) = user(&s).await;
    let rounds = 100;
    let mut lost = 0;
    for i in 0..rounds {
        let org = s
            .create_org(&actor, "o", "", &Map::new(), id)
            .await
            .unwrap()
            .id;
        let name = format!("n{i}");
        let rename = OrgChange {
            name: Some(name.clone()),
            ..Default::default()
        };
        let describe = OrgChange {
            description: Some("d".into()),
            ..Default::default()
        };
        let (s1, s2, a1, a2) = (s.clone(), s.clone(), actor.clone(), actor.clone());
        let (r1, r2) = race(
            async move { s1.update_org(&a1, org, &rename).await },
            async move { s2.update_org(&a2, org, &describe).await },
        )
        .await;
        r1.unwrap();
        r2.unwrap();
        let after = s.org(org).await.unwrap();
        if after.name != name || after.description != "d" {
            lost += 1;
        }
    }
    eprintln!("organization_patches_both_survive: {lost} of {rounds} rounds with a violation");
    assert_eq!(
        lost, 0,
        "{lost} of {rounds} rounds lost one of the two PATCHes"
    );
}

/// Every write a request can make, by a credential revoked after it was authorized: each is
/// refused as revoked, and nothing changes.
async fn writes_by_a_revoked_credential_change_nothing() {
    let f = fresh().await;
    let s = f.store.clone();
    let (owner, app) = owner_and_app(&s).await;
    let d = device(&s, &owner, app, &["temp"]).await;
    let f = s
        .create_flow(&owner, app, "f", "cloud", &Map::new())
        .await
        .unwrap();
    let target = token(&s, app, "device.get", TokenStatus::Active, None).await;

    let inactive = token(&s, app, "all.Application", TokenStatus::Inactive, None).await;
    let expired = token(
        &s,
        app,
        "all.Application",
        TokenStatus::Active,
        Some(now_ms() - 1),
    )
    .await;
    let deleted = token(&s, app, "all.Application", TokenStatus::Active, None).await;
    s.delete_token(&owner, app, deleted.id, allow)
        .await
        .unwrap();
    let (_, ended) = user(&s).await;
    if let tollgate_store::Credential::UserSession { digest, .. } = ended.credential() {
        s.delete_session(digest).await.unwrap();
    }
    let other_app = owner_and_app(&s).await.1;
    let elsewhere = token(&s, other_app, "all.Application", TokenStatus::Active, None).await;
    let cases = [
        (Actor::api_token(inactive.id, app), Revoked::TokenInactive),
        (Actor::api_token(expired.id, app), Revoked::TokenExpired),
        (Actor::api_token(deleted.id, app), Revoked::TokenDeleted),
        (
            Actor::api_token(elsewhere.id, other_app),
            Revoked::TokenDeleted,
        ),
        (ended, Revoked::SessionEnded),
    ];
    let before = snapshot(&s, app, d.id).await;
    for (actor, why) in &cases {
        let mut refusals: Vec<(&str, Result<(), StoreError>)> = Vec::new();
        let r = |x: Result<(), StoreError>| x;
        refusals.push((
            "create_device",
            r(s.create_device(actor, app, &DeviceFields::default(), &[])
                .await
                .map(drop)),
        ));
        refusals.push((
            "update_device",
            r(s.update_device(
                actor,
                app,
                d.id,
                &DevicePatch {
                    name: Some("x".into()),
                    ..Default::default()
                },
                &[],
            )
            .await
            .map(drop)),
        ));
        refusals.push(("delete_device", r(s.delete_device(actor, app, d.id).await)));
        refusals.push((
            "insert_reports",
            r(
                s.insert_reports(actor, app, d.id, declared(&[("temp", 1.0)], now_ms()))
                    .await
                    .map(drop),
            ),
        ));
        refusals.push((
            "insert_command",
            r(s.insert_command(
                actor,
                app,
                d.id,
                &tollgate_store::devices::Command {
                    time: now_ms(),
                    name: "c".into(),
                    payload: None,
                },
            )
            .await),
        ));
        refusals.push((
            "create_flow",
            r(s.create_flow(actor, app, "g", "cloud", &Map::new())
                .await
                .map(drop)),
        ));
        refusals.push((
            "update_flow",
            r(s.update_flow(
                actor,
                app,
                f.id,
                &FlowChange {
                    name: Some("x".into()),
                    ..Default::default()
                },
                |_| Ok::<_, StoreError>(()),
            )
            .await
            .map(drop)),
        ));
        refusals.push(("delete_flow", r(s.delete_flow(actor, app, f.id).await)));
        refusals.push((
            "create_token",
            r(s.create_token(
                actor,
                &NewToken {
                    application_id: app,
                    digest: digest(),
                    name: "n",
                    description: "",
                    scope: &["device.get".to_owned()],
                    status: TokenStatus::Active,
                    expiration_date: None,
                    restrictions: None,
                    usage_limit: None,
                    carve_from: None,
                    creator: Creator {
                        kind: "apiToken",
                        id: app,
                        name: "x".into(),
                    },
                },
            )
            .await
            .map(drop)),
        ));
        refusals.push((
            "update_token",
            r(s.update_token(
                actor,
                app,
                target.id,
                &TokenChange {
                    name: Some("x".into()),
                    ..Default::default()
                },
                allow,
            )
            .await
            .map(drop)),
        ));
        refusals.push((
            "delete_token",
            r(s.delete_token(actor, app, target.id, allow).await),
        ));
        refusals.push((
            "update_application",
            r(s.update_application(
                actor,
                app,
                &ApplicationChange {
                    name: Some("x".into()),
                    ..Default::default()
                },
            )
            .await
            .map(drop)),
        ));
        refusals.push((
            "delete_application",
            r(s.delete_application(actor, app).await),
        ));
        for (write, result) in refusals {
            match result {
                Err(StoreError::Revoked(w)) if w == *why => {}
                other => panic!("{write} by {actor:?}: expected Revoked({why:?}), got {other:?}"),
            }
        }
    }
    assert_eq!(snapshot(&s, app, d.id).await, before, "nothing was written");
}

/// What the refused writes could have changed.
async fn snapshot(
    s: &Store,
    app: Id,
    device: Id,
) -> (String, Vec<String>, Vec<String>, Vec<String>, usize, usize) {
    let spec = all();
    let d = s.device(app, device).await.unwrap();
    let tokens = s.list_tokens(app, &spec).await.unwrap();
    let flows = s.list_flows(app, "cloud", &spec).await.unwrap();
    let devices = s
        .list_devices(app, &Default::default(), &spec)
        .await
        .unwrap();
    let q = tollgate_store::devices::HistoryQuery {
        start: 0,
        end: i64::MAX,
        limit: 100,
        descending: true,
    };
    (
        format!("{}|{}", s.application(app).await.unwrap().name, d.name),
        tokens
            .items
            .iter()
            .map(|t| format!("{} {} {}", t.id, t.name, t.status.as_str()))
            .collect(),
        flows
            .items
            .iter()
            .map(|f| format!("{} {}", f.id, f.name))
            .collect(),
        devices.items.iter().map(|d| d.id.to_string()).collect(),
        s.states(device, &["temp"], &q).await.unwrap().len(),
        s.commands(device, &q).await.unwrap().len(),
    )
}

/// A write by a token racing that token's deactivation: when the deactivation returns,
/// every write the token got committed is already visible, and every later one is refused.
/// (On PostgreSQL the write holds its token's row `FOR KEY SHARE` until it commits and the
/// deactivation takes it `FOR UPDATE`; on SQLite write transactions take turns.)
async fn a_revocation_waits_for_the_writes_it_races() {
    let f = fresh().await;
    let s = f.store.clone();
    let (owner, app) = owner_and_app(&s).await;
    let rounds = 200;
    let (mut before, mut refused) = (0, 0);
    for i in 0..rounds {
        let t = token(&s, app, "all.Application", TokenStatus::Active, None).await;
        let name = format!("by token {i}");
        let (s1, s2, n1, n2, o) = (s.clone(), s.clone(), name.clone(), name, owner.clone());
        let (written, visible_at_revocation) = race(
            async move {
                let fields = DeviceFields {
                    name: n1,
                    device_class: "standalone".into(),
                    ..Default::default()
                };
                s1.create_device(&Actor::api_token(t.id, app), app, &fields, &[])
                    .await
            },
            async move {
                s2.update_token(&o, app, t.id, &switched_off(), allow)
                    .await
                    .unwrap();
                // What anyone reading right after the deactivation was acknowledged sees.
                named(&s2, app, &n2).await
            },
        )
        .await;
        let now_visible = named(&s, app, &format!("by token {i}")).await;
        match written {
            Ok(_) => {
                assert_eq!(
                    visible_at_revocation, 1,
                    "round {i}: a write by the token committed after its deactivation had"
                );
                before += 1;
            }
            Err(StoreError::Revoked(Revoked::TokenInactive)) => {
                assert_eq!(now_visible, 0, "round {i}: a refused write left a device");
                refused += 1;
            }
            Err(e) => panic!("round {i}: unexpected {e:?}"),
        }
    }
    eprintln!(
        "write vs revocation: {rounds} rounds, committed before the revocation {before}, refused after it {refused}"
    );
}

/// The change that switches a token off.
fn switched_off() -> TokenChange {
    TokenChange {
        status: Some(TokenStatus::Inactive),
        ..Default::default()
    }
}

fn all() -> tollgate_store::list::ListSpec {
    tollgate_store::list::ListSpec {
        sort: tollgate_store::list::Sort::Text("name"),
        descending: false,
        page: 0,
        per_page: 1000,
        filter: None,
    }
}

async fn named(s: &Store, app: Id, name: &str) -> usize {
    let spec = all();
    s.list_devices(app, &Default::default(), &spec)
        .await
        .unwrap()
        .items
        .iter()
        .filter(|d| d.name == name)
        .count()
}

/// A state report by a token (committed by the group commit, on both backends) races the
/// token's deactivation, 200 rounds: a report acknowledged `Ok` is visible to a read made
/// right after the deactivation was acknowledged (it committed first), and a report refused
/// as revoked stored nothing.
async fn a_revocation_waits_for_the_state_reports_it_races() {
    let f = fresh().await;
    let s = f.store.clone();
    let (owner, app) = owner_and_app(&s).await;
    let d = device(&s, &owner, app, &["temp"]).await.id;
    let rounds = 200;
    let (mut before, mut refused) = (0, 0);
    let t0 = now_ms() - 60_000;
    for i in 0..rounds {
        let t = token(&s, app, "all.Application", TokenStatus::Active, None).await;
        let at = t0 + i64::from(i);
        let (s1, s2, o) = (s.clone(), s.clone(), owner.clone());
        let (sent, seen_at_revocation) = race(
            async move {
                s1.insert_reports(
                    &Actor::api_token(t.id, app),
                    app,
                    d,
                    declared(&[("temp", 1.0)], at),
                )
                .await
            },
            async move {
                s2.update_token(&o, app, t.id, &switched_off(), allow)
                    .await
                    .unwrap();
                s2.last_value(d, "temp", at, at + 1)
                    .await
                    .unwrap()
                    .is_some()
            },
        )
        .await;
        let stored_now = s.last_value(d, "temp", at, at + 1).await.unwrap().is_some();
        match sent {
            Ok(n) => {
                assert_eq!(n, 1);
                assert!(
                    seen_at_revocation,
                    "round {i}: a report by the token committed after its deactivation had"
                );
                before += 1;
            }
            Err(StoreError::Revoked(Revoked::TokenInactive)) => {
                assert!(!stored_now, "round {i}: a refused report was stored");
                refused += 1;
            }
            Err(e) => panic!("round {i}: unexpected {e:?}"),
        }
    }
    eprintln!(
        "state report vs revocation: {rounds} rounds, committed before the revocation {before}, refused after it {refused}"
    );
}
