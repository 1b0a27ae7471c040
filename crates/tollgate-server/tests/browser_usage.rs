//! What a token did, in a real headless Chromium (issue 13), and the bounded preset of the add
//! form (issue 14): a token's usage panel after real requests, "Create a narrower
//! replacement" to a new token, the posture summary's filters, and the audit log page, at
//! desktop and phone width. Uses the WebDriver harness of `browser_console.rs`; screenshots go
//! to `target/browser-screenshots/token_usage/`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};
use tollgate_testkit::{Case, Need, case};

use crate::browser_console::{Browser, admin_token, api_json, server, within};
use crate::common::process::{ADMIN_EMAIL, ADMIN_PASSWORD};

const AGENT: &str = "lobby-screen/3.1";

/// One request with `token` and a user agent; the status.
fn call(base: &str, method: &str, path: &str, token: &str, body: &str) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nUser-Agent: {AGENT}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    String::from_utf8_lossy(&raw)[9..12].parse().unwrap()
}

/// The counts of the usage table's rows: `[action, outcome class, missing, [1, 7, 30, 90]]`.
async fn usage_rows(b: &Browser) -> Vec<Value> {
    b.js("return [...document.querySelectorAll('#usage-counts tbody tr[data-action]')].map(r => [r.dataset.action, r.className, r.dataset.missing || null, [...r.querySelectorAll('td.num')].map(td => Number(td.textContent))])")
        .await
        .as_array()
        .unwrap()
        .clone()
}

async fn texts(b: &Browser, css: &str) -> Vec<String> {
    let v = b
        .js(&format!(
            "return [...document.querySelectorAll({css:?})].map(e => e.textContent.trim())"
        ))
        .await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

async fn token_usage_suggestion_and_posture_in_the_browser() {
    within(usage_flow()).await;
}

async fn usage_flow() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
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
    let tokens = format!("/applications/{app}/tokens");
    let make = |body: Value| api_json(&base, "POST", &tokens, Some(&admin), body);
    let screen = make(json!({
        "name": "Lobby screen",
        "description": "The wall display in the lobby",
        "scope": ["application.get", "devices.get", "device.get", "applicationApiTokens.get"],
        "expirationDate": "2031-06-01T12:00:00.000Z",
    }));
    let screen_id = screen["id"].as_str().unwrap().to_owned();
    let secret = screen["token"].as_str().unwrap().to_owned();
    make(json!({ "name": "Deployer", "scope": ["all.Application"] }));
    let dormant = make(
        json!({ "name": "Dormant", "scope": ["application.get"], "expirationDate": "2031-06-01T12:00:00.000Z" }),
    );
    api_json(
        &base,
        "PATCH",
        &format!("{tokens}/{}", dormant["id"].as_str().unwrap()),
        Some(&admin),
        json!({ "status": "inactive" }),
    );

    // The screen token: three authorized requests, two refused for a missing permission.
    let app_path = format!("/applications/{app}");
    for _ in 0..2 {
        assert_eq!(call(&base, "GET", &app_path, &secret, ""), 200);
    }
    assert_eq!(
        call(&base, "GET", &format!("{app_path}/devices"), &secret, ""),
        200
    );
    for _ in 0..2 {
        assert_eq!(
            call(
                &base,
                "POST",
                &format!("{app_path}/devices"),
                &secret,
                r#"{"name":"x"}"#
            ),
            403
        );
    }

    let mut b = Browser::start("token_usage", dir.path()).await;
    b.log_in(&base, ADMIN_EMAIL, ADMIN_PASSWORD, None).await;
    let list = format!("{base}/console/applications/{app}/tokens");
    b.goto(&list).await;
    // The posture summary: each count is a link to the list filtered by it.
    assert_eq!(b.text("#posture-inactive .posture-count").await, "1");
    assert_eq!(b.text("#posture-allPermissions .posture-count").await, "1");
    assert_eq!(b.text("#posture-neverExpires .posture-count").await, "1");
    b.shot("tokens-posture").await;
    b.nav("#posture-inactive").await;
    assert_eq!(b.token_names().await, ["Dormant"]);
    assert!(
        b.text("#posture-filter")
            .await
            .contains("Showing only tokens that are inactive")
    );
    assert_eq!(
        b.text("#token-count").await,
        "1 item (tokens that are inactive)"
    );
    b.shot("tokens-posture-inactive").await;
    b.nav("#posture-show-all").await;
    assert_eq!(
        b.token_names().await,
        ["Deployer", "Dormant", "Lobby screen"]
    );
    b.nav("#posture-allPermissions").await;
    assert_eq!(b.token_names().await, ["Deployer"]);
    b.nav("#posture-show-all").await;

    // The usage panel of the screen token.
    b.click_link("Lobby screen").await;
    let rows = usage_rows(&b).await;
    let row = |action: &str, class: &str| {
        rows.iter()
            .find(|r| r[0] == action && r[1] == class)
            .unwrap_or_else(|| panic!("no {class} row for {action}: {rows:?}"))
            .clone()
    };
    assert_eq!(row("application.get", "authorized")[3], json!([2, 2, 2, 2]));
    assert_eq!(row("devices.get", "authorized")[3], json!([1, 1, 1, 1]));
    let refused = row("devices.post", "refused");
    assert_eq!(
        refused[2], "devices.post",
        "the refusal names the missing action"
    );
    assert_eq!(refused[3], json!([2, 2, 2, 2]));
    assert!(
        b.text("#usage-counts tr[data-missing='devices.post'] .outcome")
            .await
            .contains("missing permission devices.post")
    );
    let history = b
        .js("return [...document.querySelectorAll('#usage-recent tbody tr')].map(r => [...r.cells].map(c => c.textContent.trim()))")
        .await;
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 5, "{history:?}");
    assert_eq!(history[0][1], "devices.post", "newest first");
    assert_eq!(history[0][2], "403");
    assert_eq!(history[0][3], "127.0.0.1");
    assert_eq!(history[0][4], AGENT);
    assert_eq!(history[4][1], "application.get");
    assert_eq!(history[4][2], "200");
    assert_eq!(
        texts(&b, "#usage-unused code").await,
        ["applicationApiTokens.get", "device.get"]
    );
    assert_eq!(
        texts(&b, "#usage-suggested code").await,
        ["application.get", "devices.get"]
    );
    assert!(b.text("#usage-missing").await.contains("devices.post"));
    b.check_labels_and_width("token detail with usage").await;
    b.shot("token-usage").await;

    // At phone width: nothing wider than the screen; the history rows stack.
    b.resize(390, 844).await;
    b.check_labels_and_width("token usage on a phone").await;
    let counts_fit = b
        .js("const s = document.querySelector('#usage .table-scroll'); return s.getBoundingClientRect().right <= window.innerWidth")
        .await;
    assert_eq!(counts_fit, json!(true));
    let counts_scroll = b
        .js("const s = document.querySelector('#usage .table-scroll'); return s.scrollWidth <= s.clientWidth")
        .await;
    assert_eq!(
        counts_scroll,
        json!(true),
        "the counts stack: no sideways scrolling"
    );
    let stacked = b
        .js("return getComputedStyle(document.querySelector('#usage-recent td')).display")
        .await;
    assert_eq!(stacked, json!("block"), "history rows stack on a phone");
    b.js("document.getElementById('usage').scrollIntoView()")
        .await;
    b.shot("token-usage-phone").await;

    // "Create a narrower replacement": the add form pre-filled; created only when sent.
    b.nav("#narrower-replacement").await;
    b.wait_path("the add form", |p| p.contains("/tokens/new?from="))
        .await;
    b.check_labels_and_width("narrower replacement form on a phone")
        .await;
    assert!(b.checked("#scope-custom").await);
    let ticked = b
        .js("return [...document.querySelectorAll('.action-box:checked')].map(e => e.value)")
        .await;
    assert_eq!(ticked, json!(["application.get", "devices.get"]));
    assert_eq!(b.prop("#token-name", "value").await, "Lobby screen");
    assert_eq!(
        b.prop("#token-description", "value").await,
        "The wall display in the lobby"
    );
    assert!(b.text("#replacing").await.contains("Lobby screen"));
    b.shot("narrower-replacement-phone").await;
    let before = api_json(&base, "GET", &tokens, Some(&admin), json!(null));
    assert_eq!(before["count"], 3, "nothing created by opening the form");
    b.resize(1280, 900).await;
    b.shot("narrower-replacement").await;
    b.nav("#create-token").await;
    let new_secret = b.prop("#reveal-token", "value").await;
    assert!(new_secret.starts_with("tgat_"), "{new_secret}");
    b.click("#reveal-saved").await;
    b.nav("#reveal-close").await;
    let after = api_json(
        &base,
        "GET",
        &format!("{tokens}?sortField=creationDate&sortDirection=desc"),
        Some(&admin),
        json!(null),
    );
    let newest = &after["items"][0];
    assert_eq!(newest["name"], "Lobby screen");
    assert_ne!(newest["id"], screen_id.as_str());
    assert_eq!(newest["scope"], json!(["application.get", "devices.get"]));
    // It does what the old one did, and no more.
    assert_eq!(call(&base, "GET", &app_path, &new_secret, ""), 200);
    assert_eq!(
        call(&base, "GET", &format!("{app_path}/tokens"), &new_secret, ""),
        403
    );

    // The bounded preset through the form.
    b.goto(&format!("{list}/new")).await;
    assert!(
        b.text("#permissions")
            .await
            .contains("Everything except managing API tokens")
    );
    b.type_into("#token-name", "Integrator").await;
    b.click("#scope-bounded").await;
    b.click("#expiry-never").await;
    b.shot("token-new-bounded").await;
    b.nav("#create-token").await;
    let bounded_secret = b.prop("#reveal-token", "value").await;
    b.click("#reveal-saved").await;
    b.nav("#reveal-close").await;
    let list_now = api_json(
        &base,
        "GET",
        &format!("{tokens}?filterField=name&filter=Integrator"),
        Some(&admin),
        json!(null),
    );
    let bounded = &list_now["items"][0];
    assert_eq!(bounded["scope"], json!(["all.Application.bounded"]));
    assert_eq!(
        call(
            &base,
            "GET",
            &format!("{app_path}/tokens"),
            &bounded_secret,
            ""
        ),
        200
    );
    assert_eq!(
        call(
            &base,
            "POST",
            &format!("{app_path}/tokens"),
            &bounded_secret,
            r#"{"name":"more"}"#
        ),
        403
    );
    b.click_link("Integrator").await;
    assert_eq!(
        b.text("#scope-title").await,
        "Permissions: All permissions except managing API tokens"
    );
    b.shot("token-bounded").await;

    // At phone width: the list filtered to the tokens never used; then the application's
    // audit log, newest first.
    b.resize(390, 844).await;
    b.goto(&format!("{list}?posture=neverUsed")).await;
    b.check_labels_and_width("filtered token list on a phone")
        .await;
    assert_eq!(
        b.token_names().await,
        ["Deployer", "Dormant"],
        "the others made requests"
    );
    b.shot("tokens-posture-phone").await;
    b.nav("#nav-audit-log").await;
    b.check_labels_and_width("audit log on a phone").await;
    let first = b
        .js("return [...document.querySelector('#audit tbody tr').cells].map(c => c.textContent.replace(/\\s+/g, ' ').trim())")
        .await;
    assert!(
        first[1]
            .as_str()
            .unwrap()
            .starts_with("applicationApiTokens.post"),
        "{first}"
    );
    assert!(first[2].as_str().unwrap().contains("Integrator"), "{first}");
    assert!(!b.source().await.contains("tgat_"), "no secret in the log");
    b.shot("audit-log-phone").await;
    b.resize(1280, 900).await;
    b.shot("audit-log").await;
    for s in [&secret, &new_secret, &bounded_secret] {
        assert!(!server.log().contains(s.as_str()), "no secret in the log");
    }
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(token_usage_suggestion_and_posture_in_the_browser)
            .once()
            .needs(Need::Chromium),
    ]
}
