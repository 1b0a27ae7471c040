//! Lineage in a real headless Chromium (issue 15, item 6): a token created by a token names its
//! parent, the parent's page lists its children and says they survive it, and the console's
//! cascade choices (switch off, delete) apply to the whole subtree, as `?cascade=true` does.
//! Screenshots go to `target/browser-screenshots/token_lineage/`.

use serde_json::{Value, json};
use tollgate_testkit::{Case, Need, case};

use crate::browser_console::{Browser, admin_token, api_json, api_status, server, within};
use crate::common::process::{ADMIN_EMAIL, ADMIN_PASSWORD};

async fn lineage_and_cascades_in_the_browser() {
    within(lineage_flow()).await;
}

async fn lineage_flow() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let base = server.url.clone();
    let admin = admin_token(&base);
    let app = api_json(
        &base,
        "POST",
        "/applications",
        Some(&admin),
        json!({ "name": "Orchard" }),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tokens = format!("/applications/{app}/tokens");
    let scope = json!(["all.Application"]);
    let make = |bearer: &str, name: &str| -> Value {
        api_json(
            &base,
            "POST",
            &tokens,
            Some(bearer),
            json!({ "name": name, "scope": scope }),
        )
    };
    // parent → child → grandchild, and a second tree to delete.
    let parent = make(&admin, "Gateway parent");
    let child = make(parent["token"].as_str().unwrap(), "Gateway child");
    let grandchild = make(child["token"].as_str().unwrap(), "Gateway grandchild");
    let doomed = make(&admin, "Old integration");
    let doomed_child = make(doomed["token"].as_str().unwrap(), "Old integration helper");
    let id = |t: &Value| t["id"].as_str().unwrap().to_owned();
    let page = |t: &Value| format!("{base}/console/applications/{app}/tokens/{}", id(t));

    let mut b = Browser::start("token_lineage", dir.path()).await;
    b.log_in(&base, ADMIN_EMAIL, ADMIN_PASSWORD, None).await;

    // The child names its parent, with a link to it.
    b.goto(&page(&child)).await;
    assert_eq!(
        b.text("#lineage-parent").await,
        "Created by token Gateway parent."
    );
    // The parent lists its child, counts the grandchild, and says they survive it.
    b.goto(&page(&parent)).await;
    let note = b.text("#lineage-children-note").await;
    assert!(
        note.starts_with("1 token created by this token (2 with the tokens they created)"),
        "{note}"
    );
    assert!(note.contains("they keep working"), "{note}");
    assert_eq!(b.text("#lineage-children").await, "Gateway child");
    b.check_labels_and_width("token detail with lineage").await;
    b.shot("parent-lineage").await;

    // Switch the parent off with the cascade: all three are refused at once.
    b.click("#status-inactive").await;
    b.click("#cascade-deactivate").await;
    b.shot("parent-cascade-deactivate").await;
    b.nav("#save-token").await;
    assert_eq!(b.text("#token-status").await, "Inactive");
    for t in [&parent, &child, &grandchild] {
        assert_eq!(
            api_status(
                &base,
                &format!("/applications/{app}"),
                t["token"].as_str().unwrap()
            ),
            401,
            "{} still works",
            t["name"]
        );
    }

    // Delete the other tree with the cascade: both are gone.
    b.goto(&format!("{}/delete", page(&doomed))).await;
    assert!(
        b.text("label[for=cascade-delete]")
            .await
            .contains("1 token"),
        "the delete page offers the cascade"
    );
    b.click("#cascade-delete").await;
    b.shot("delete-cascade").await;
    b.nav("#confirm-delete").await;
    for t in [&doomed, &doomed_child] {
        assert_eq!(
            api_status(&base, &format!("{tokens}/{}", id(t)), &admin),
            404,
            "{} was not deleted",
            t["name"]
        );
    }
    // A token without children is offered no cascade.
    b.goto(&format!("{}/delete", page(&grandchild))).await;
    assert!(!b.source().await.contains("cascade-delete"));
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(lineage_and_cascades_in_the_browser)
            .once()
            .needs(Need::Chromium),
    ]
}
