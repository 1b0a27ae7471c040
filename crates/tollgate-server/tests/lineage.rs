//! Token lineage (issue 15, item 6) over the API and the console, both passes: a token
//! created by a token names its parent; a token's detail counts its descendants and says
//! they keep working without cascade; `?cascade=true` deactivates or deletes the whole
//! subtree, each token audited and refused on the very next request (on every node: the
//! PostgreSQL pass starts three); a cascade obeys the authority rule for every token in it.

use serde_json::{Value, json};
use tollgate_core::secret::{Secret, SecretKind};
use tollgate_store::tokens::{Creator, NewToken, TokenStatus};
use tollgate_store::{Actor, Id};
use tollgate_testkit::{Case, case};

use crate::common::TestApp;
use crate::common::console::{console_login, get as page};

fn secret(created: &Value) -> String {
    created["token"].as_str().unwrap().to_owned()
}

fn id(created: &Value) -> String {
    created["id"].as_str().unwrap().to_owned()
}

/// parent (made by the admin) → child → grandchild, each minted by the one before.
async fn family(t: &TestApp, admin: &str, app: Id, tag: &str) -> [Value; 3] {
    let parent = t
        .api_token(admin, app, json!({ "name": format!("{tag} parent") }))
        .await;
    let child = t
        .api_token(
            &secret(&parent),
            app,
            json!({ "name": format!("{tag} child") }),
        )
        .await;
    let grandchild = t
        .api_token(
            &secret(&child),
            app,
            json!({ "name": format!("{tag} grandchild") }),
        )
        .await;
    [parent, child, grandchild]
}

async fn works(t: &TestApp, app: Id, token: &Value) -> u16 {
    t.get(&format!("/applications/{app}"), &secret(token))
        .await
        .status
        .as_u16()
}

async fn lineage_is_shown_and_children_survive_without_cascade() {
    let t = TestApp::new().await;
    let (user, admin) = t.login("admin@example.com").await;
    let app = t.app_of(user, "Plant").await;
    let tokens = format!("/applications/{app}/tokens");
    let [parent, child, grandchild] = family(&t, &admin, app, "a").await;
    assert_eq!(child["parentApiTokenId"], parent["id"], "{child}");
    assert_eq!(child["creatorType"], "apiToken");
    assert!(
        parent.get("parentApiTokenId").is_none(),
        "made by a user: no parent token"
    );

    let d = t
        .get(&format!("{tokens}/{}", id(&child)), &admin)
        .await
        .expect(200);
    assert_eq!(d["parentApiTokenId"], parent["id"]);
    assert_eq!(d["lineage"]["parentApiTokenId"], parent["id"]);
    assert_eq!(d["lineage"]["parentExists"], true);
    assert_eq!(d["lineage"]["childCount"], 1);
    let d = t
        .get(&format!("{tokens}/{}", id(&parent)), &admin)
        .await
        .expect(200);
    assert_eq!(d["lineage"]["childCount"], 1);
    assert_eq!(d["lineage"]["descendantCount"], 2);
    assert_eq!(d["lineage"]["descendantsWithoutCascade"], "keepWorking");
    let note = d["lineage"]["note"].as_str().unwrap();
    assert!(note.contains("keep working"), "{note}");
    let list = t.get(&tokens, &admin).await.expect(200);
    let listed = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == grandchild["id"])
        .unwrap();
    assert_eq!(listed["parentApiTokenId"], child["id"]);

    let ds = t
        .get(&format!("{tokens}/{}/descendants", id(&parent)), &admin)
        .await
        .expect(200);
    assert_eq!(ds["totalCount"], 2);
    assert_eq!(ds["childCount"], 1);
    let items = ds["items"].as_array().unwrap();
    assert_eq!(
        items
            .iter()
            .map(|i| (i["name"].as_str().unwrap(), i["depth"].as_i64().unwrap()))
            .collect::<Vec<_>>(),
        vec![("a child", 1), ("a grandchild", 2)]
    );
    assert_eq!(items[1]["parentApiTokenId"], child["id"]);
    assert!(items.iter().all(|i| i.get("token").is_none()), "no secret");
    t.get(&format!("{tokens}/{}/descendants", Id::generate()), &admin)
        .await
        .expect(404);

    // Without cascade the children keep working.
    t.patch(
        &format!("{tokens}/{}", id(&parent)),
        &admin,
        json!({ "status": "inactive" }),
    )
    .await
    .expect(200);
    assert_eq!(works(&t, app, &parent).await, 401);
    assert_eq!(works(&t, app, &child).await, 200);
    assert_eq!(works(&t, app, &grandchild).await, 200);
    // Deleting the child alone: the grandchild keeps working and still names its parent,
    // which the detail says no longer exists.
    t.delete(&format!("{tokens}/{}", id(&child)), &admin)
        .await
        .expect(200);
    assert_eq!(works(&t, app, &grandchild).await, 200);
    let d = t
        .get(&format!("{tokens}/{}", id(&grandchild)), &admin)
        .await
        .expect(200);
    assert_eq!(d["parentApiTokenId"], child["id"]);
    assert_eq!(d["lineage"]["parentExists"], false);
    let d = t
        .get(&format!("{tokens}/{}", id(&parent)), &admin)
        .await
        .expect(200);
    assert_eq!(d["lineage"]["descendantCount"], 0);
}

async fn a_cascade_stops_the_whole_subtree_at_once_and_audits_each_token() {
    let t = TestApp::new().await;
    let (user, admin) = t.login("admin@example.com").await;
    let app = t.app_of(user, "Plant").await;
    let tokens = format!("/applications/{app}/tokens");
    let [parent, child, grandchild] = family(&t, &admin, app, "b").await;
    let unrelated = t.api_token(&admin, app, json!({ "name": "other" })).await;
    for token in [&parent, &child, &grandchild] {
        assert_eq!(works(&t, app, token).await, 200);
    }
    let at = format!("{tokens}/{}", id(&parent));
    // Only a deactivation cascades; the flag is a boolean.
    let r = t
        .patch(
            &format!("{at}?cascade=true"),
            &admin,
            json!({ "status": "active" }),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.message().contains("cascade=true"), "{}", r.body);
    let r = t
        .patch(
            &format!("{at}?cascade=true"),
            &admin,
            json!({ "name": "x" }),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = t
        .patch(
            &format!("{at}?cascade=maybe"),
            &admin,
            json!({ "status": "inactive" }),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(works(&t, app, &child).await, 200, "nothing changed");

    let done = t
        .patch(
            &format!("{at}?cascade=true"),
            &admin,
            json!({ "status": "inactive" }),
        )
        .await
        .expect(200);
    assert_eq!(done["status"], "inactive");
    assert_eq!(done["cascade"]["count"], 2, "{done}");
    // Refused on the very next request.
    for token in [&parent, &child, &grandchild] {
        let r = t.get(&format!("/applications/{app}"), &secret(token)).await;
        assert_eq!(r.status, 401, "{}", token["name"]);
        assert_eq!(r.message(), "This API token is inactive");
    }
    assert_eq!(works(&t, app, &unrelated).await, 200);
    let d = t
        .get(&format!("{tokens}/{}", id(&grandchild)), &admin)
        .await
        .expect(200);
    let reason = d["deactivationReason"].as_str().unwrap();
    assert!(reason.contains(&id(&parent)), "{reason}");
    // One audit entry per token.
    let log = t
        .get(
            &format!("/applications/{app}/audit-logs?perPage=1000"),
            &admin,
        )
        .await
        .expect(200);
    let cascaded: Vec<&Value> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["requestBody"]["cascadeFrom"] == parent["id"])
        .collect();
    assert_eq!(cascaded.len(), 2, "{log}");
    for e in &cascaded {
        assert_eq!(e["requestAction"], "patch");
        assert_eq!(e["requestBody"]["status"], "inactive");
    }
    assert!(
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["requestBody"]["cascade"] == true
                && e["requestPathParams"]["apiTokenId"] == parent["id"])
    );

    // A deletion with cascade: every token of the subtree is gone.
    let [p2, c2, g2] = family(&t, &admin, app, "c").await;
    let r = t
        .delete(&format!("{tokens}/{}?cascade=true", id(&p2)), &admin)
        .await
        .expect(200);
    assert_eq!(r["success"], true);
    assert_eq!(r["cascade"]["count"], 2);
    for token in [&p2, &c2, &g2] {
        assert_eq!(works(&t, app, token).await, 401);
        t.get(&format!("{tokens}/{}", id(token)), &admin)
            .await
            .expect(404);
    }
    // A token may cascade from itself (it is in its own subtree's authority).
    let [p3, c3, _] = family(&t, &admin, app, "d").await;
    t.delete(&format!("{tokens}/{}?cascade=true", id(&c3)), &secret(&c3))
        .await
        .expect(200);
    assert_eq!(works(&t, app, &p3).await, 200);
    assert_eq!(works(&t, app, &c3).await, 401);
}

/// The authority rule for the whole subtree: a token may cascade only if it could have
/// created every token in it. Tokens minted through the API are always within their
/// parent, so the subtree here holds a broader token recorded as the root's child (as one
/// written by an older release, or restored from elsewhere, would be).
async fn a_cascade_needs_authority_over_every_token_in_the_subtree() {
    let t = TestApp::new().await;
    let (user, admin) = t.login("admin@example.com").await;
    let app = t.app_of(user, "Plant").await;
    let tokens = format!("/applications/{app}/tokens");
    let manager = t
        .api_token(
            &admin,
            app,
            json!({ "name": "manager", "scope": ["applicationApiTokens.post", "applicationApiToken.*", "application.get"] }),
        )
        .await;
    let root = t
        .api_token(
            &secret(&manager),
            app,
            json!({ "name": "root", "scope": ["application.get"] }),
        )
        .await;
    let root_id: Id = id(&root).parse().unwrap();
    let broad_secret = Secret::generate(SecretKind::ApplicationToken);
    let scope = vec!["all.Application".to_owned()];
    let broad = t
        .store()
        .create_token(
            &Actor::operator(),
            &NewToken {
                application_id: app,
                digest: broad_secret.digest(),
                name: "broad",
                description: "",
                scope: &scope,
                status: TokenStatus::Active,
                expiration_date: None,
                restrictions: None,
                usage_limit: None,
                carve_from: None,
                creator: Creator {
                    kind: "apiToken",
                    id: root_id,
                    name: "root".into(),
                },
            },
        )
        .await
        .unwrap();
    let m = secret(&manager);
    let r = t
        .delete(&format!("{tokens}/{root_id}?cascade=true"), &m)
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.message().contains("\"broad\""), "{}", r.body);
    assert!(r.message().contains("nothing was changed"), "{}", r.body);
    let r = t
        .patch(
            &format!("{tokens}/{root_id}?cascade=true"),
            &m,
            json!({ "status": "inactive" }),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(works(&t, app, &root).await, 200, "nothing was changed");
    let b = t
        .get(&format!("{tokens}/{}", broad.id), &admin)
        .await
        .expect(200);
    assert_eq!(b["status"], "active");
    // Without cascade the manager may act on the root, which it could have created.
    t.patch(
        &format!("{tokens}/{root_id}"),
        &m,
        json!({ "status": "inactive" }),
    )
    .await
    .expect(200);
    // The admin's role bounds every token: the cascade goes through.
    let r = t
        .delete(&format!("{tokens}/{root_id}?cascade=true"), &admin)
        .await
        .expect(200);
    assert_eq!(r["cascade"]["apiTokenIds"], json!([broad.id.to_hex()]));
    let r = t
        .get(&format!("/applications/{app}"), broad_secret.expose())
        .await;
    assert_eq!(r.status, 401);
}

async fn the_console_detail_page_names_parent_and_children() {
    let t = TestApp::new().await;
    let user = t.user("owner@example.com").await;
    let cookie = console_login(&t, "owner@example.com").await;
    let app = t.app_of(user, "Plant").await;
    let admin = t.session_for(user).await;
    let [parent, child, _] = family(&t, &admin, app, "e").await;
    let base = format!("/console/applications/{app}/tokens");
    let p = page(&t, &format!("{base}/{}", id(&child)), &cookie).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.body.contains(&format!(
            "Created by token <a href=\"{base}/{}\">e parent</a>",
            id(&parent)
        )),
        "{}",
        p.body
    );
    assert!(
        p.body.contains(
            "1 token created by this token — they keep working if you delete it or switch it off."
        ),
        "{}",
        p.body
    );
    let p = page(&t, &format!("{base}/{}", id(&parent)), &cookie).await;
    assert!(
        p.body.contains(
            "1 token created by this token (2 with the tokens they created) — they keep working if you delete it"
        ),
        "{}",
        p.body
    );
    assert!(
        p.body
            .contains(&format!("<a href=\"{base}/{}\">e child</a>", id(&child))),
        "{}",
        p.body
    );
    // Once the parent is gone, the child's page says so.
    t.delete(
        &format!("/applications/{app}/tokens/{}", id(&parent)),
        &admin,
    )
    .await
    .expect(200);
    let p = page(&t, &format!("{base}/{}", id(&child)), &cookie).await;
    assert!(
        p.body
            .contains("Created by token e parent, which has since been deleted."),
        "{}",
        p.body
    );
}

/// Several nodes (PostgreSQL): tokens of a subtree cached on every node are refused by every
/// node on the request right after the cascade's answer, as after a manual deactivation.
fn every_node_refuses_a_cascaded_subtree() {
    use crate::common::process::{ServerProcess, http, pg_server};
    use std::time::Duration;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(crate::common::fresh_pg_database(&pg_server()));
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<ServerProcess> = (0..3)
        .map(|_| ServerProcess::start(dir.path(), &db, &[]))
        .collect();
    for n in &nodes {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while http::call(&n.url, "GET", "/health", None, None).body["cache"] != "live" {
            assert!(std::time::Instant::now() < deadline, "{} not live", n.url);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let a = &nodes[0].url;
    let session = http::admin_session(a);
    let app = http::post(a, "/applications", &session, json!({ "name": "fleet" })).expect(201);
    let app = app["id"].as_str().unwrap().to_owned();
    let probe = format!("/applications/{app}");
    let tokens = format!("{probe}/tokens");
    let mint =
        |by: &str, name: &str| http::post(a, &tokens, by, json!({ "name": name })).expect(201);
    for delete in [false, true] {
        let parent = mint(&session, "parent");
        let child = mint(&secret(&parent), "child");
        let grandchild = mint(&secret(&child), "grandchild");
        for n in &nodes {
            for s in [&child, &grandchild] {
                http::get(&n.url, &probe, &secret(s)).expect(200);
                http::get(&n.url, &probe, &secret(s)).expect(200);
            }
        }
        let at = format!("{tokens}/{}?cascade=true", id(&parent));
        // Answered by the last node, refused by all.
        let last = &nodes[2].url;
        let r = if delete {
            http::delete(last, &at, &session)
        } else {
            http::patch(last, &at, &session, json!({ "status": "inactive" }))
        };
        assert_eq!(r.status, 200, "{}", r.body);
        for n in &nodes {
            for s in [&child, &grandchild] {
                let r = http::get(&n.url, &probe, &secret(s));
                assert_eq!(
                    r.status, 401,
                    "{} accepted {} after the cascade (delete: {delete})",
                    n.url, s["name"]
                );
            }
        }
    }
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(lineage_is_shown_and_children_survive_without_cascade),
        case!(a_cascade_stops_the_whole_subtree_at_once_and_audits_each_token),
        case!(a_cascade_needs_authority_over_every_token_in_the_subtree),
        case!(the_console_detail_page_names_parent_and_children),
        case!(sync every_node_refuses_a_cascaded_subtree).postgres_pass(),
    ]
}
