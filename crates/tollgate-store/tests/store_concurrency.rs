//! BASELINE (today's API): races that must not lose a change.
mod common;

use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::Barrier;
use tollgate_core::Role;
use tollgate_core::attribute::Stored;
use tollgate_store::Store;
use tollgate_store::applications::{ApplicationChange, Owner};
use tollgate_store::devices::{DeviceFields, Tag};
use tollgate_store::orgs::MemberChange;
use tollgate_store::states::Report;
use tollgate_store::tokens::{Creator, NewToken, TokenChange, TokenStatus};
use tollgate_store::users::NewUser;

async fn user(s: &Store, email: &str) -> tollgate_store::Id {
    s.create_user(&NewUser {
        email,
        password_hash: "x",
        first_name: "",
        last_name: "",
    })
    .await
    .unwrap()
    .id
}

async fn race<A, B, FA, FB>(a: FA, b: FB) -> (A, B)
where
    FA: std::future::Future<Output = A> + Send + 'static,
    FB: std::future::Future<Output = B> + Send + 'static,
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

async fn token_case(s: Store, rounds: usize) -> usize {
    let u = user(
        &s,
        &format!("owner{}@example.com", tollgate_store::Id::generate()),
    )
    .await;
    let app = s
        .create_application(Owner::User(u), "app", "", &Map::new())
        .await
        .unwrap()
        .id;
    let mut bad = 0;
    for i in 0..rounds {
        let t = s
            .create_token(&NewToken {
                application_id: app,
                digest: rand_digest(),
                name: "t",
                description: "",
                scope: &["all.Application".to_owned()],
                status: TokenStatus::Active,
                expiration_date: None,
                creator: Creator {
                    kind: "user",
                    id: u,
                    name: "o".into(),
                },
            })
            .await
            .unwrap();
        let (s1, s2) = (s.clone(), s.clone());
        let name = format!("renamed {i}");
        let n2 = name.clone();
        let id = t.id;
        let (r1, r2) = race(
            async move {
                s1.update_token(
                    app,
                    id,
                    &TokenChange {
                        status: Some(TokenStatus::Inactive),
                        ..Default::default()
                    },
                )
                .await
            },
            async move {
                s2.update_token(
                    app,
                    id,
                    &TokenChange {
                        name: Some(n2),
                        ..Default::default()
                    },
                )
                .await
            },
        )
        .await;
        r1.unwrap();
        r2.unwrap();
        let after = s.token(app, id).await.unwrap();
        if after.status != TokenStatus::Inactive || after.name != name {
            bad += 1;
        }
    }
    bad
}

fn rand_digest() -> [u8; 32] {
    let id = tollgate_store::Id::generate().to_hex();
    let mut d = [0u8; 32];
    d[..24].copy_from_slice(id.as_bytes());
    d
}

async fn demotion_case(s: Store, rounds: usize) -> (usize, usize) {
    let mut no_admin = 0;
    let mut both_ok = 0;
    for i in 0..rounds {
        let a = user(&s, &format!("a{i}@example.com")).await;
        let b = user(&s, &format!("b{i}@example.com")).await;
        let org = s.create_org("o", "", &Map::new(), a).await.unwrap().id;
        s.add_member(
            org,
            b,
            &MemberChange {
                role: Some(Role::Admin),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let (s1, s2) = (s.clone(), s.clone());
        let (r1, r2) = race(
            async move {
                s1.modify_member(
                    org,
                    b,
                    &MemberChange {
                        role: Some(Role::Edit),
                        ..Default::default()
                    },
                )
                .await
            },
            async move {
                s2.modify_member(
                    org,
                    a,
                    &MemberChange {
                        role: Some(Role::Edit),
                        ..Default::default()
                    },
                )
                .await
            },
        )
        .await;
        if r1.is_ok() && r2.is_ok() {
            both_ok += 1;
        }
        let admins = s
            .org_members(org)
            .await
            .unwrap()
            .iter()
            .filter(|m| m.role == Role::Admin)
            .count();
        if admins == 0 {
            no_admin += 1;
        }
    }
    (no_admin, both_ok)
}

async fn app_case(s: Store, rounds: usize) -> usize {
    let u = user(
        &s,
        &format!("owner{}@example.com", tollgate_store::Id::generate()),
    )
    .await;
    let mut bad = 0;
    for i in 0..rounds {
        let app = s
            .create_application(Owner::User(u), "app", "", &Map::new())
            .await
            .unwrap()
            .id;
        let (s1, s2) = (s.clone(), s.clone());
        let name = format!("n{i}");
        let n2 = name.clone();
        let (r1, r2) = race(
            async move {
                s1.update_application(
                    app,
                    &ApplicationChange {
                        name: Some(n2),
                        ..Default::default()
                    },
                )
                .await
            },
            async move {
                s2.update_application(
                    app,
                    &ApplicationChange {
                        description: Some("d".into()),
                        ..Default::default()
                    },
                )
                .await
            },
        )
        .await;
        r1.unwrap();
        r2.unwrap();
        let after = s.application(app).await.unwrap();
        if after.name != name || after.description != "d" {
            bad += 1;
        }
    }
    bad
}

fn attr(name: &str) -> Map<String, Value> {
    json!({"name": name, "dataType": "number"})
        .as_object()
        .unwrap()
        .clone()
}

/// Today's device PATCH: the handler reads the device, merges, and writes every field.
async fn device_case(s: Store, rounds: usize) -> (usize, usize) {
    let u = user(
        &s,
        &format!("owner{}@example.com", tollgate_store::Id::generate()),
    )
    .await;
    let app = s
        .create_application(Owner::User(u), "app", "", &Map::new())
        .await
        .unwrap()
        .id;
    let mut lost = 0;
    let mut stray = 0;
    for i in 0..rounds {
        let d = s
            .create_device(
                app,
                &DeviceFields {
                    name: "d".into(),
                    device_class: "standalone".into(),
                    attributes: vec![attr("temp"), attr("hum")],
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let id = d.id;
        let (s1, s2) = (s.clone(), s.clone());
        let tag = Tag {
            key: "k".into(),
            value: format!("v{i}"),
        };
        let t2 = tag.clone();
        // one removes `hum`, the other renames and tags
        let (r1, r2) = race(
            async move {
                let old = s1.device(app, id).await?;
                let mut f = DeviceFields::from(&old);
                f.attributes = vec![attr("temp")];
                s1.update_device(app, id, &f).await
            },
            async move {
                let old = s2.device(app, id).await?;
                let mut f = DeviceFields::from(&old);
                f.name = "renamed".into();
                f.tags = vec![t2];
                s2.update_device(app, id, &f).await
            },
        )
        .await;
        r1.unwrap();
        r2.unwrap();
        let after = s.device(app, id).await.unwrap();
        if after.attributes != vec![attr("temp")]
            || after.name != "renamed"
            || after.tags != vec![tag]
        {
            lost += 1;
        }
        // a state report validated against the old attributes, racing the removal
        let d2 = s
            .create_device(
                app,
                &DeviceFields {
                    name: "d".into(),
                    device_class: "standalone".into(),
                    attributes: vec![attr("temp"), attr("hum")],
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let id = d2.id;
        let (s1, s2) = (s.clone(), s.clone());
        let now = tollgate_store::now_ms();
        let (r1, r2) = race(
            async move {
                let old = s1.device(app, id).await?;
                if old.attribute_type("hum").is_none() {
                    return Ok(());
                }
                s1.insert_reports(
                    app,
                    id,
                    &[Report {
                        time: now,
                        meta: None,
                        values: vec![("hum".into(), Stored::Num(1.0))],
                    }],
                )
                .await
            },
            async move {
                let old = s2.device(app, id).await?;
                let mut f = DeviceFields::from(&old);
                f.attributes = vec![attr("temp")];
                s2.update_device(app, id, &f).await.map(drop)
            },
        )
        .await;
        r1.unwrap();
        r2.unwrap();
        if s.last_value(id, "hum", 0, i64::MAX)
            .await
            .unwrap()
            .is_some()
        {
            stray += 1;
        }
    }
    (lost, stray)
}

/// Today's flow PATCH: the handler reads the flow, merges, and writes name and definition.
async fn flow_case(s: Store, rounds: usize) -> usize {
    use tollgate_store::flows::Actor;
    let u = user(
        &s,
        &format!("owner{}@example.com", tollgate_store::Id::generate()),
    )
    .await;
    let app = s
        .create_application(Owner::User(u), "app", "", &Map::new())
        .await
        .unwrap()
        .id;
    let by = Actor {
        kind: "user",
        id: u,
    };
    let mut bad = 0;
    for i in 0..rounds {
        let f = s
            .create_flow(app, "f", "cloud", &Map::new(), &by)
            .await
            .unwrap();
        let id = f.id;
        let (s1, s2) = (s.clone(), s.clone());
        let (b1, b2) = (by.clone(), by.clone());
        let name = format!("n{i}");
        let n2 = name.clone();
        let (r1, r2) = race(
            async move {
                let old = s1.flow(app, id).await?;
                s1.update_flow(app, id, &n2, &old.definition, &b1).await
            },
            async move {
                let old = s2.flow(app, id).await?;
                let mut def = old.definition.clone();
                def.insert("description".into(), json!("d"));
                s2.update_flow(app, id, &old.name, &def, &b2).await
            },
        )
        .await;
        r1.unwrap();
        r2.unwrap();
        let after = s.flow(app, id).await.unwrap();
        if after.name != name || after.definition.get("description") != Some(&json!("d")) {
            bad += 1;
        }
    }
    bad
}

async fn org_patch_case(s: Store, rounds: usize) -> usize {
    use tollgate_store::orgs::OrgChange;
    let u = user(
        &s,
        &format!("owner{}@example.com", tollgate_store::Id::generate()),
    )
    .await;
    let mut bad = 0;
    for i in 0..rounds {
        let org = s.create_org("o", "", &Map::new(), u).await.unwrap().id;
        let (s1, s2) = (s.clone(), s.clone());
        let name = format!("n{i}");
        let n2 = name.clone();
        let (r1, r2) = race(
            async move {
                s1.update_org(
                    org,
                    &OrgChange {
                        name: Some(n2),
                        ..Default::default()
                    },
                )
                .await
            },
            async move {
                s2.update_org(
                    org,
                    &OrgChange {
                        description: Some("d".into()),
                        ..Default::default()
                    },
                )
                .await
            },
        )
        .await;
        r1.unwrap();
        r2.unwrap();
        let after = s.org(org).await.unwrap();
        if after.name != name || after.description != "d" {
            bad += 1;
        }
    }
    bad
}

async fn all(s: Store, label: &str) {
    let flows = flow_case(s.clone(), 200).await;
    let orgs = org_patch_case(s.clone(), 200).await;
    eprintln!("{label}: flow lost change {flows}/200; org patch lost change {orgs}/200");
    let tokens = token_case(s.clone(), 300).await;
    let (no_admin, both) = demotion_case(s.clone(), 200).await;
    let apps = app_case(s.clone(), 200).await;
    let (lost, stray) = device_case(s.clone(), 200).await;
    eprintln!(
        "{label}: token lost deactivation/rename {tokens}/300; org no admin {no_admin}/200 (both succeeded {both}); application lost change {apps}/200; device lost change {lost}/200; stray points {stray}/200"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn baseline_sqlite() {
    let s = common::sqlite().await;
    all(s.store.clone(), "SQLite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn baseline_postgres() {
    let Some(s) = common::postgres().await else {
        return;
    };
    all(s.store.clone(), "PostgreSQL").await;
}
