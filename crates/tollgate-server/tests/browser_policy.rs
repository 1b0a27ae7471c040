//! The token policy page in a real headless Chromium (issue 15, item 2): reached from the
//! token list, it shows the rules in force and where each comes from; saving a stricter
//! policy lists the tokens that break it (unchanged); a bad value is refused beside the
//! form; an idle period deactivates idle tokens, whose reason the list and the detail show,
//! and the list's switch turns one on again. Screenshots go to
//! `target/browser-screenshots/token_policy/`.

use std::time::Duration;

use serde_json::{Value, json};
use tollgate_testkit::{Case, Need, case};

use crate::browser_console::{Browser, admin_token, api_json, within};
use crate::common::process::{ADMIN_EMAIL, ADMIN_PASSWORD, ServerProcess};

async fn rule(b: &Browser, field: &str) -> (String, String) {
    let v = b
        .js(&format!(
            "const r = document.getElementById('rule-{field}'); return [r.querySelector('.rule-value').textContent, r.querySelector('.rule-source').textContent]"
        ))
        .await;
    (
        v[0].as_str().unwrap().to_owned(),
        v[1].as_str().unwrap().to_owned(),
    )
}

async fn violators(b: &Browser) -> Vec<Value> {
    b.js("return [...document.querySelectorAll('#violators tr.violator')].map(r => [r.querySelector('.row-title').textContent, r.querySelector('.violator-rules').textContent])")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn policy_page_in_the_browser() {
    within(policy_flow()).await;
}

async fn policy_flow() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::fresh_database_url(dir.path()).await;
    let server = ServerProcess::start(
        dir.path(),
        &db,
        &[("TOLLGATE_BACKGROUND_INTERVAL_MS", "200")],
    );
    let base = server.url.clone();
    let admin = admin_token(&base);
    let app = api_json(
        &base,
        "POST",
        "/applications",
        Some(&admin),
        json!({ "name": "Plant" }),
    );
    let app = app["id"].as_str().unwrap().to_owned();
    let iso = tollgate_server::time::iso;
    let mk = |body: Value| {
        api_json(
            &base,
            "POST",
            &format!("/applications/{app}/tokens"),
            Some(&admin),
            body,
        )
    };
    mk(json!({ "name": "forever" }));
    let month = mk(json!({ "name": "month",
        "expirationDate": iso(tollgate_store::now_ms() + 20 * 86_400_000) }));

    let mut b = Browser::start("token_policy", dir.path()).await;
    b.log_in(&base, ADMIN_EMAIL, ADMIN_PASSWORD, None).await;
    b.goto(&format!("{base}/console/applications/{app}/tokens"))
        .await;
    b.nav("#token-policy-link").await;
    assert!(b.path().await.ends_with("/token-policy"));
    assert_eq!(
        rule(&b, "maxLifetimeDays").await,
        ("No maximum".to_owned(), "built-in default".to_owned())
    );
    assert_eq!(rule(&b, "warningLeadDays").await.0, "30, 7, 1");
    assert!(b.text("#no-violators").await.starts_with("None"));
    b.check_labels_and_width("token policy").await;
    b.shot("policy-defaults").await;

    // A stricter policy: the token that never expires is listed, and not changed.
    b.type_into("#max_lifetime_days", "30").await;
    b.js("document.getElementById('expiry_required').value = 'yes'; return null")
        .await;
    b.nav("#policy-save").await;
    assert!(
        b.text("#notice")
            .await
            .contains("Existing tokens are unchanged")
    );
    assert_eq!(
        rule(&b, "maxLifetimeDays").await,
        ("30 days".to_owned(), "this application".to_owned())
    );
    assert_eq!(rule(&b, "expiryRequired").await.0, "Yes");
    let listed = violators(&b).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0][0], "forever");
    assert!(
        listed[0][1].as_str().unwrap().contains("maximum lifetime"),
        "{listed:?}"
    );
    b.shot("policy-violators").await;
    let forever = api_json(
        &base,
        "GET",
        &format!("/applications/{app}/tokens?filterField=name&filter=forever"),
        Some(&admin),
        Value::Null,
    );
    assert_eq!(forever["items"][0]["status"], "active");

    // A bad value: refused beside the form, nothing saved.
    b.type_into("#max_lifetime_days", "0").await;
    b.nav("#policy-save").await;
    assert!(b.text("#policy-error").await.contains("maxLifetimeDays"));
    let p = api_json(
        &base,
        "GET",
        &format!("/applications/{app}/token-policy"),
        Some(&admin),
        Value::Null,
    );
    assert_eq!(p["maxLifetimeDays"], 30);
    b.shot("policy-error").await;

    // An idle period of about 3 seconds: unused tokens are deactivated, with the reason.
    b.goto(&format!("{base}/console/applications/{app}/token-policy"))
        .await;
    b.type_into("#idle_days", "0.000035").await;
    b.nav("#policy-save").await;
    let list = format!("{base}/console/applications/{app}/tokens");
    crate::common::eventually("the idle tokens to be deactivated", Duration::from_secs(60), || async {
        b.goto(&list).await;
        let reasons = b
            .js("return [...document.querySelectorAll('#tokens tr.token-row')].map(r => (r.querySelector('.inactive-reason') || {}).textContent || '')")
            .await;
        (reasons.as_array().unwrap().iter().all(|r| r == "Deactivated: idle")).then_some(())
    })
    .await;
    b.shot("tokens-idle").await;
    b.click_link("month").await;
    assert!(
        b.text("#token-reason")
            .await
            .starts_with("Deactivated: idle")
    );

    // No more idle deactivation; the list's switch turns the token on again.
    b.goto(&format!("{base}/console/applications/{app}/token-policy"))
        .await;
    b.type_into("#idle_days", "").await;
    b.nav("#policy-save").await;
    assert_eq!(rule(&b, "idleDeactivationDays").await.0, "Never");
    b.goto(&list).await;
    let month_id = month["id"].as_str().unwrap();
    b.mark().await;
    b.js(&format!(
        "const f = document.querySelector('form[action$=\"/tokens/{month_id}/status\"]'); f.requestSubmit(); return null"
    ))
    .await;
    b.wait_new_page("the switch").await;
    let d = api_json(
        &base,
        "GET",
        &format!("/applications/{app}/tokens/{month_id}"),
        Some(&admin),
        Value::Null,
    );
    assert_eq!(d["status"], "active");
    assert!(d.get("deactivationReason").is_none(), "{d}");
    b.shot("token-reactivated").await;
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(policy_page_in_the_browser)
            .once()
            .needs(Need::Chromium),
    ]
}
