//! Organization invitations follow the reference: pending until the invitee accepts
//! (`me.invites`, `me.respondToInvite`), listed and revoked by administrators
//! (`org.pendingInvites`, `org.revokeInvite`), and `org.inviteMember` answers the same
//! whether or not the email has an account.

use crate::common::TestApp;
use serde_json::{Value, json};
use tollgate_testkit::{Case, case};

/// The keys of every item of a list, sorted.
fn shapes(list: &Value) -> Vec<Vec<String>> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let mut k: Vec<String> = i.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        })
        .collect()
}

async fn invitations_are_pending_until_accepted_and_do_not_reveal_accounts() {
    let t = TestApp::new().await;
    let (_, admin) = t.login("admin@example.com").await;
    let member_id = t.user("member@example.com").await;
    let member = t.session_for(member_id).await;
    let org = t
        .post("/orgs", &admin, json!({ "name": "Acme" }))
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let invites = format!("/orgs/{org}/invites");

    // An email with an account and one without: the same status and the same shape, and
    // nothing about the account (no user id, no name).
    let known = t
        .post(
            &invites,
            &admin,
            json!({ "email": "member@example.com", "role": "edit" }),
        )
        .await;
    let unknown = t
        .post(
            &invites,
            &admin,
            json!({ "email": "nobody@example.com", "role": "edit" }),
        )
        .await;
    assert_eq!((known.status.as_u16(), unknown.status.as_u16()), (200, 200));
    let (known, unknown) = (known.body, unknown.body);
    assert_eq!(shapes(&known)[0], shapes(&unknown)[1]);
    let text = unknown.to_string() + &known.to_string();
    assert!(!text.contains(&member_id.to_string()), "{text}");
    assert!(
        !text.contains("firstName") && !text.contains("userId"),
        "{text}"
    );
    let item = &known[0];
    assert_eq!(item["email"], "member@example.com");
    assert_eq!(item["role"], "edit");
    assert_eq!(item["hasExpired"], false);
    assert_eq!(item["ttl"], 7 * 24 * 3600 * 1000_i64);

    // Nobody joined.
    let o = t.get(&format!("/orgs/{org}"), &admin).await.expect(200);
    assert_eq!(o["members"].as_array().unwrap().len(), 1);
    assert_eq!(t.get(&format!("/orgs/{org}"), &member).await.status, 404);
    let pending = t.get(&invites, &admin).await.expect(200);
    assert_eq!(pending.as_array().unwrap().len(), 2);

    // The invitee sees their invitation (and only theirs) and accepts it.
    let mine = t.get("/me/invites", &member).await.expect(200);
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine[0]["orgName"], "Acme");
    assert_eq!(mine[0]["role"], "edit");
    assert_eq!(mine[0]["invitedBy"]["email"], "admin@example.com");
    let id = mine[0]["id"].as_str().unwrap().to_owned();
    // Someone else cannot answer it.
    let other_id = t.user("other@example.com").await;
    let other = t.session_for(other_id).await;
    let r = t
        .post(
            &format!("/me/invites/{id}"),
            &other,
            json!({ "action": "accept" }),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = t
        .post(
            &format!("/me/invites/{id}"),
            &member,
            json!({ "action": "maybe" }),
        )
        .await;
    assert_eq!(r.status, 400);
    let answer = t
        .post(
            &format!("/me/invites/{id}"),
            &member,
            json!({ "action": "accept" }),
        )
        .await
        .expect(200);
    assert_eq!(answer, json!({ "result": "accepted", "orgId": org }));
    let o = t.get(&format!("/orgs/{org}"), &member).await.expect(200);
    let roles: Vec<(Value, Value)> = o["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["email"].clone(), m["role"].clone()))
        .collect();
    assert!(
        roles.contains(&(json!("member@example.com"), json!("edit"))),
        "{roles:?}"
    );
    // Used up: answering again is a 404, and it is no longer pending.
    let r = t
        .post(
            &format!("/me/invites/{id}"),
            &member,
            json!({ "action": "accept" }),
        )
        .await;
    assert_eq!(r.status, 404);
    let pending = t.get(&invites, &admin).await.expect(200);
    assert_eq!(pending.as_array().unwrap().len(), 1);
    // A member already: inviting them again says so.
    let r = t
        .post(
            &invites,
            &admin,
            json!({ "email": "Member@Example.com", "role": "view" }),
        )
        .await;
    assert_eq!(r.status, 409);

    // Revoking: the remaining invitation goes; an unknown id is a 404; no id is a 400.
    let nobody = pending[0]["id"].as_str().unwrap().to_owned();
    let left = t
        .delete(&format!("{invites}?inviteId={nobody}"), &admin)
        .await
        .expect(200);
    assert_eq!(left, json!([]));
    assert_eq!(
        t.delete(&format!("{invites}?inviteId={nobody}"), &admin)
            .await
            .status,
        404
    );
    assert_eq!(t.delete(&invites, &admin).await.status, 400);

    // Only administrators see or manage invitations.
    assert_eq!(t.get(&invites, &member).await.status, 403);
    assert_eq!(
        t.post(
            &invites,
            &member,
            json!({ "email": "x@example.com", "role": "view" })
        )
        .await
        .status,
        403
    );
}

async fn rejected_and_expired_invitations_make_nobody_a_member() {
    let t = TestApp::new().await;
    let (_, admin) = t.login("admin@example.com").await;
    let uid = t.user("member@example.com").await;
    let member = t.session_for(uid).await;
    let org = t
        .post("/orgs", &admin, json!({ "name": "Acme" }))
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let invites = format!("/orgs/{org}/invites");
    t.post(
        &invites,
        &admin,
        json!({ "email": "member@example.com", "role": "view" }),
    )
    .await
    .expect(200);
    let id = t.get("/me/invites", &member).await.expect(200)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = t
        .post(
            &format!("/me/invites/{id}"),
            &member,
            json!({ "action": "reject" }),
        )
        .await
        .expect(200);
    assert_eq!(answer["result"], "rejected");
    assert_eq!(t.get(&format!("/orgs/{org}"), &member).await.status, 404);
    assert_eq!(t.get(&invites, &admin).await.expect(200), json!([]));

    // An expired invitation is a 410 and is removed.
    t.post(
        &invites,
        &admin,
        json!({ "email": "member@example.com", "role": "view" }),
    )
    .await
    .expect(200);
    sqlx::query("UPDATE org_invites SET expires_at = 1")
        .execute(t.store().pool())
        .await
        .unwrap();
    let mine = t.get("/me/invites", &member).await.expect(200);
    assert_eq!(mine[0]["expired"], true);
    let id = mine[0]["id"].as_str().unwrap().to_owned();
    let r = t
        .post(
            &format!("/me/invites/{id}"),
            &member,
            json!({ "action": "accept" }),
        )
        .await;
    assert_eq!(r.status, 410, "{}", r.body);
    assert_eq!(r.body["type"], "Gone");
    assert_eq!(t.get(&format!("/orgs/{org}"), &member).await.status, 404);
    assert_eq!(t.get("/me/invites", &member).await.expect(200), json!([]));
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(invitations_are_pending_until_accepted_and_do_not_reveal_accounts),
        case!(rejected_and_expired_invitations_make_nobody_a_member),
    ]
}
