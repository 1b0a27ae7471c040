//! Token-event webhooks in a real headless Chromium (issue 15, item 4): an administrator
//! opens Security › Webhooks, adds an endpoint for two events (its signing secret shown on
//! that page only), a token change reaches the loopback receiver signed with that secret,
//! the endpoint's page lists the delivery as delivered, and it is switched off and deleted.
//! Uses the WebDriver harness of `browser_console.rs`; screenshots go to
//! `target/browser-screenshots/webhooks/`.

use std::time::Duration;

use serde_json::json;
use tollgate_server::webhooks::verify;
use tollgate_testkit::{Case, Need, case};

use crate::browser_console::{Browser, admin_token, api_json, within};
use crate::common::process::{ADMIN_EMAIL, ADMIN_PASSWORD, ServerProcess};
use crate::webhooks::Receiver;

async fn webhooks_page_in_the_browser() {
    within(flow()).await;
}

async fn flow() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::fresh_database_url(dir.path()).await;
    let server = ServerProcess::start(
        dir.path(),
        &db,
        &[
            ("TOLLGATE_WEBHOOK_INTERVAL_MS", "50"),
            ("TOLLGATE_WEBHOOK_RETRY_BASE_MS", "200"),
        ],
    );
    let base = server.url.clone();
    let admin = admin_token(&base);
    let app = api_json(
        &base,
        "POST",
        "/applications",
        Some(&admin),
        json!({ "name": "Greenhouse" }),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = Receiver::start().await;
    // The first attempt is refused: the page shows the retry that follows.
    r.answer(&[500]);

    let mut b = Browser::start("webhooks", dir.path()).await;
    b.log_in(&base, ADMIN_EMAIL, ADMIN_PASSWORD, None).await;
    b.goto(&format!("{base}/console/applications/{app}/tokens"))
        .await;
    b.nav("#nav-webhooks").await;
    assert_eq!(b.text("h1").await, "Webhooks");
    assert_eq!(b.text("#webhook-count").await, "0 webhooks");
    b.check_labels_and_width("webhooks page").await;
    b.type_into("#webhook-url", &r.url).await;
    b.click("input[name=events][value='token.created']").await;
    b.click("input[name=events][value='token.deleted']").await;
    b.shot("webhooks-add").await;
    b.nav("#webhook-add").await;
    let secret = b.text("#webhook-secret").await;
    assert!(
        secret.starts_with("tgwh_") && secret.len() == 69,
        "{secret}"
    );
    assert_eq!(b.text("#webhook-count").await, "1 webhook");
    assert_eq!(b.text(".webhook-url").await, r.url);
    assert!(b.text("#webhooks").await.contains("Created, Deleted"));
    b.shot("webhooks-secret-once").await;
    // Shown once: not on the next visit.
    b.goto(&format!("{base}/console/applications/{app}/webhooks"))
        .await;
    assert!(
        !b.source().await.contains(&secret[5..]),
        "the secret is shown again"
    );

    // A token is created: the event arrives signed with the secret the page showed.
    let tokens = format!("/applications/{app}/tokens");
    let t = api_json(
        &base,
        "POST",
        &tokens,
        Some(&admin),
        json!({ "name": "Gateway" }),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while r.got().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no retry arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = r.got();
    let now = tollgate_store::now_ms() / 1000;
    assert!(verify(
        secret.as_bytes(),
        &got[1].signature,
        &got[1].body,
        now,
        300
    ));
    assert_eq!(got[1].json()["token"]["id"], t["id"]);

    // The endpoint's page: the delivery, delivered on its second attempt.
    b.nav(".webhook-deliveries").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = b.text(".delivery-status").await.to_lowercase();
        if status == "delivered" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.goto(&format!("{}", b.client.current_url().await.unwrap()))
            .await;
    }
    assert_eq!(b.text(".delivery-attempts").await, "2");
    assert!(b.text("#deliveries").await.contains("Gateway"));
    assert!(b.text("#delivery-counts").await.contains("1 delivered"));
    b.check_labels_and_width("webhook deliveries").await;
    b.shot("webhook-deliveries").await;

    // Switched off: the next event is not queued. Then deleted.
    b.nav("a[href$='/webhooks']").await;
    b.nav(".webhook-toggle").await;
    assert_eq!(b.text(".webhook-state").await.to_lowercase(), "disabled");
    assert!(b.text("#notice").await.contains("is off"));
    api_json(
        &base,
        "DELETE",
        &format!("{tokens}/{}", t["id"].as_str().unwrap()),
        Some(&admin),
        json!(null),
    );
    let hooks = api_json(
        &base,
        "GET",
        &format!("/applications/{app}/token-webhooks"),
        Some(&admin),
        json!(null),
    );
    let hook = hooks["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(hooks["items"][0]["enabled"], false);
    let page = api_json(
        &base,
        "GET",
        &format!("/applications/{app}/token-webhooks/{hook}/deliveries"),
        Some(&admin),
        json!(null),
    );
    assert_eq!(page["totalCount"], 1, "nothing queued while off: {page}");
    b.shot("webhooks-disabled").await;
    b.nav(".webhook-delete").await;
    assert_eq!(b.text("#webhook-count").await, "0 webhooks");
    let hooks = api_json(
        &base,
        "GET",
        &format!("/applications/{app}/token-webhooks"),
        Some(&admin),
        json!(null),
    );
    assert_eq!(hooks["count"], 0);
    b.resize(390, 844).await;
    b.check_labels_and_width("webhooks page on a phone").await;
    b.shot("webhooks-phone").await;
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(webhooks_page_in_the_browser, multi_thread = 2)
            .once()
            .needs(Need::Chromium),
    ]
}
