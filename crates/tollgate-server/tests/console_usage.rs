//! The console's view of what tokens did (issue 13) and the bounded preset (issue 14), over
//! HTTP in-process: a token's usage panel (counts, refusals naming the missing action, the
//! recent requests, unused grants, the suggested scope), "Create a narrower replacement", the
//! posture summary and its filters, `all.Application.bounded` through the add form, and the
//! application's audit log page. The browser drives the same pages in `browser_usage.rs`.

use axum::http::Method;
use serde_json::json;
use tollgate_store::Id;
use tollgate_testkit::{Case, case};

use crate::common::TestApp;
use crate::common::console::{Page, console_login, cookie_pair, get, post};

fn secret_of(cookie: &str) -> &str {
    cookie.split_once('=').unwrap().1
}

async fn owner_with_app(t: &TestApp) -> (String, Id) {
    let user = t.user("owner@example.com").await;
    let cookie = console_login(t, "owner@example.com").await;
    let app = t.app_of(user, "Equipment Monitor").await;
    (cookie, app)
}

/// The HTML of the element that starts at the first `start` and ends at the next `end`.
fn slice<'a>(body: &'a str, start: &str, end: &str) -> &'a str {
    let at = body
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in page:\n{body}"));
    let rest = &body[at..];
    &rest[..rest.find(end).map_or(rest.len(), |e| e + end.len())]
}

/// The numbers of the `<td class="num">` cells of one table row.
fn numbers(row: &str) -> Vec<i64> {
    row.split("<td class=\"num\"")
        .skip(1)
        .map(|c| {
            let c = &c[c.find('>').unwrap() + 1..];
            c[..c.find('<').unwrap()].trim().parse().unwrap()
        })
        .collect()
}

/// The counts (1, 7, 30, 90 days) of the usage row of `action` with `outcome` (`authorized`
/// or `refused`).
fn counts(body: &str, outcome: &str, action: &str) -> Vec<i64> {
    numbers(slice(
        body,
        &format!("<tr class=\"{outcome}\" data-action=\"{action}\""),
        "</tr>",
    ))
}

/// Whether the input with `id` carries `checked`.
fn checked(body: &str, id: &str) -> bool {
    let tag = slice(body, &format!("id=\"{id}\""), ">");
    tag.contains(" checked")
}

/// The `href` of the element with `id`.
fn href_of(body: &str, id: &str) -> String {
    let at = body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in page:\n{body}"));
    let open = body[..at].rfind('<').unwrap();
    let tag = &body[open..at + body[at..].find('>').unwrap()];
    let h = tag.find("href=\"").expect("an href") + 6;
    tag[h..h + tag[h..].find('"').unwrap()].replace("&amp;", "&")
}

/// The names of the rows of the token list, in order.
fn listed(page: &Page) -> Vec<String> {
    page.body
        .split("class=\"row-title\" href=\"")
        .skip(1)
        .map(|r| {
            let r = &r[r.find('>').unwrap() + 1..];
            r[..r.find('<').unwrap()].to_owned()
        })
        .collect()
}

async fn usage_panel_shows_what_the_token_did_and_the_narrower_replacement_is_prefilled() {
    let t = TestApp::new().await;
    let (cookie, app) = owner_with_app(&t).await;
    let admin = secret_of(&cookie).to_owned();
    let made = t
        .api_token(
            &admin,
            app,
            json!({
                "name": "Wall screen",
                "description": "lobby display",
                "scope": ["application.get", "devices.get", "device.get"],
                "deviceTags": [{ "key": "site", "value": "north" }],
                "rateLimit": { "requests": 20, "perSeconds": 1 },
                "usageLimit": 1000,
            }),
        )
        .await;
    let secret = made["token"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    let ua = [("user-agent", "wall-screen/2.0")];
    let call = |method: Method, path: String, body: Option<&'static str>| {
        let (t, secret) = (&t, secret.clone());
        async move {
            t.send_raw(method, &path, Some(&secret), body, &ua)
                .await
                .status
                .as_u16()
        }
    };
    for _ in 0..2 {
        assert_eq!(
            call(Method::GET, format!("/applications/{app}"), None).await,
            200
        );
    }
    assert_eq!(
        call(Method::GET, format!("/applications/{app}/devices"), None).await,
        200
    );
    // Outside its scope: refused (403), and counted against it.
    assert_eq!(
        call(
            Method::PATCH,
            format!("/applications/{app}"),
            Some(r#"{"name":"renamed"}"#)
        )
        .await,
        403
    );

    let detail = format!("/console/applications/{app}/tokens/{id}");
    let page = get(&t, &detail, &cookie).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let b = &page.body;
    // Per action and window, authorized and refused apart.
    assert_eq!(counts(b, "authorized", "application.get"), [2, 2, 2, 2]);
    assert_eq!(counts(b, "authorized", "devices.get"), [1, 1, 1, 1]);
    assert_eq!(counts(b, "refused", "application.patch"), [1, 1, 1, 1]);
    assert!(b.contains("data-missing=\"application.patch\""));
    assert!(b.contains("Refused: missing permission application.patch (403)"));
    let totals = |label: &str| numbers(slice(b, &format!("data-outcome=\"{label}\""), "</tr>"));
    assert_eq!(totals("Authorized"), [3, 3, 3, 3]);
    assert_eq!(totals("Refused"), [1, 1, 1, 1]);
    // The page shows the API's report, not numbers of its own.
    let report = t
        .get(&format!("/applications/{app}/tokens/{id}/usage"), &admin)
        .await
        .expect(200);
    for (i, p) in report["periods"].as_array().unwrap().iter().enumerate() {
        assert_eq!(totals("Authorized")[i], p["authorized"].as_i64().unwrap());
        assert_eq!(totals("Refused")[i], p["refused"].as_i64().unwrap());
    }
    // The last requests, newest first, with the user agent.
    let recent = slice(b, "id=\"usage-recent\"", "</table>");
    assert_eq!(recent.matches("<tr class=").count(), 4, "{recent}");
    assert!(recent.contains("wall-screen/2.0"));
    let first = slice(recent, "<tbody>", "</tr>");
    assert!(first.contains("<code>application.patch</code>"), "{first}");
    assert!(first.contains("http-status bad\">403<"), "{first}");
    assert!(b.contains("id=\"usage-recent-title\">Last 4 requests<"));
    // Granted and never used; the suggestion; the refused action is not in it.
    let unused = slice(b, "id=\"usage-unused\"", "</ul>");
    assert!(unused.contains("<code>device.get</code>"), "{unused}");
    assert!(!unused.contains("application.get"), "{unused}");
    let suggested = slice(b, "id=\"usage-suggested\"", "</ul>");
    assert_eq!(
        suggested.matches("<code>").count(),
        2,
        "application.get and devices.get: {suggested}"
    );
    assert!(suggested.contains("<code>application.get</code>"));
    assert!(suggested.contains("<code>devices.get</code>"));
    assert!(slice(b, "id=\"usage-missing\"", "</p>").contains("application.patch"));
    assert!(!b.contains(&secret), "no secret on the page");

    // "Create a narrower replacement": the add form, pre-filled; nothing created yet.
    let href = href_of(b, "narrower-replacement");
    assert_eq!(
        href,
        format!("/console/applications/{app}/tokens/new?from={id}")
    );
    let form = get(&t, &href, &cookie).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let f = &form.body;
    assert!(f.contains("id=\"replacing\""));
    assert!(checked(f, "scope-custom"));
    assert!(!checked(f, "scope-all"));
    assert!(checked(f, "action-application.get"));
    assert!(checked(f, "action-devices.get"));
    assert!(!checked(f, "action-device.get"), "granted but unused");
    assert!(!checked(f, "action-application.patch"), "refused");
    assert!(f.contains("value=\"Wall screen\""));
    assert!(f.contains(">lobby display</textarea>"));
    assert!(f.contains(">site=north</textarea>"), "the same device tag");
    assert!(f.contains("id=\"rate-requests\" name=\"rate_requests\" type=\"number\" min=\"1\" inputmode=\"numeric\" value=\"20\""));
    assert!(f.contains("id=\"usage-limit\" name=\"usage_limit\" type=\"number\" min=\"1\" inputmode=\"numeric\" value=\"1000\""));
    assert_eq!(t.store().count_tokens(app).await.unwrap(), 1);

    // Sent as the browser would: every ticked action.
    let ticked: Vec<String> = f
        .split("class=\"action-box\" name=\"action\" value=\"")
        .skip(1)
        .filter(|s| s[..s.find('>').unwrap()].contains(" checked"))
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .collect();
    assert_eq!(ticked, ["application.get", "devices.get"]);
    let (csrf, key) = (form.csrf(), form.hidden("form_key"));
    let mut fields: Vec<(&str, &str)> = vec![
        ("csrf", &csrf),
        ("form_key", &key),
        ("name", "Wall screen"),
        ("description", "lobby display"),
        ("expiry", "never"),
        ("scope_mode", "custom"),
        ("device_tags", "site=north"),
        ("rate_requests", "20"),
        ("rate_seconds", "1"),
        ("usage_limit", "1000"),
    ];
    for a in &ticked {
        fields.push(("action", a));
    }
    let r = post(
        &t,
        &format!("/console/applications/{app}/tokens"),
        &cookie,
        &fields,
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let list = t
        .get(
            &format!("/applications/{app}/tokens?sortField=creationDate"),
            &admin,
        )
        .await
        .expect(200);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let new = items.iter().find(|i| i["id"] != id.as_str()).unwrap();
    assert_eq!(new["scope"], json!(["application.get", "devices.get"]));
    assert_eq!(new["name"], "Wall screen");
    assert_eq!(
        new["deviceTags"],
        json!([{ "key": "site", "value": "north" }])
    );
    assert_eq!(new["rateLimit"], json!({ "requests": 20, "perSeconds": 1 }));
    assert_eq!(new["usageLimit"], 1000);
    // The reveal page it redirects to works with the pad cookie (as after any creation).
    let pad = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("tollgate_reveal="))
        .unwrap();
    let shown = get(
        &t,
        r.location(),
        &format!("{cookie}; {}", cookie_pair(&pad)),
    )
    .await;
    assert_eq!(shown.status, 200);
}

async fn a_token_never_used_has_no_suggestion_and_no_replacement_button() {
    let t = TestApp::new().await;
    let (cookie, app) = owner_with_app(&t).await;
    let made = t
        .api_token(
            secret_of(&cookie),
            app,
            json!({ "name": "Idle", "scope": ["all.Application.read"] }),
        )
        .await;
    let id = made["id"].as_str().unwrap();
    let page = get(
        &t,
        &format!("/console/applications/{app}/tokens/{id}"),
        &cookie,
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"usage-none\""));
    assert!(page.body.contains("id=\"usage-suggested-none\""));
    assert!(!page.body.contains("id=\"narrower-replacement\""));
    assert!(page.body.contains("id=\"usage-recent-none\""));
    // A broad scope's unused grants are folded under their count.
    let unused = slice(&page.body, "<details class=\"unused\"", "</summary>");
    assert!(!unused.contains(" open"), "{unused}");
    assert!(unused.contains("actions granted and never used"));
    // A pre-fill from a token of another application is "not found".
    let other = t.app_of(t.user("other@example.com").await, "Other").await;
    let r = get(
        &t,
        &format!("/console/applications/{other}/tokens/new?from={id}"),
        &cookie,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
}

async fn posture_counts_link_to_the_filtered_list() {
    let t = TestApp::new().await;
    let (cookie, app) = owner_with_app(&t).await;
    let admin = secret_of(&cookie).to_owned();
    let tokens = format!("/applications/{app}/tokens");
    let soon = tollgate_server::time::iso(tollgate_store::now_ms() + 10 * 86_400_000);
    let deployer = t
        .api_token(
            &admin,
            app,
            json!({ "name": "Deployer", "scope": ["all.Application"] }),
        )
        .await;
    t.api_token(
        &admin,
        app,
        json!({ "name": "Reader", "scope": ["all.Application.read"], "expirationDate": soon }),
    )
    .await;
    let dormant = t
        .api_token(
            &admin,
            app,
            json!({ "name": "Dormant", "scope": ["application.get"], "expirationDate": "2031-01-01T00:00:00.000Z" }),
        )
        .await;
    t.patch(
        &format!("{tokens}/{}", dormant["id"].as_str().unwrap()),
        &admin,
        json!({ "status": "inactive" }),
    )
    .await
    .expect(200);
    // A token made by a token.
    t.api_token(
        deployer["token"].as_str().unwrap(),
        app,
        json!({ "name": "Child", "scope": ["application.get"], "expirationDate": "2031-01-01T00:00:00.000Z" }),
    )
    .await;

    let list_path = format!("/console/applications/{app}/tokens");
    let page = get(&t, &list_path, &cookie).await;
    assert_eq!(page.status, 200);
    assert_eq!(listed(&page), ["Child", "Deployer", "Dormant", "Reader"]);
    // The counts are the API's.
    let api = t.get(&tokens, &admin).await.expect(200);
    let posture = &api["posture"];
    let count_on_page = |name: &str| -> i64 {
        let a = slice(&page.body, &format!("id=\"posture-{name}\""), "</a>");
        let c = slice(a, "class=\"posture-count\">", "</span>");
        c["class=\"posture-count\">".len()..c.len() - "</span>".len()]
            .parse()
            .unwrap()
    };
    for (name, n) in posture.as_object().unwrap() {
        assert_eq!(count_on_page(name), n.as_i64().unwrap(), "{name}");
    }
    assert_eq!(count_on_page("allPermissions"), 1);
    assert_eq!(count_on_page("inactive"), 1);
    assert_eq!(count_on_page("createdByTokens"), 1);
    assert_eq!(count_on_page("expiringWithin30Days"), 1);
    assert_eq!(count_on_page("neverUsed"), 3, "all but Deployer");
    assert!(!page.body.contains("id=\"posture-filter\""));

    // Each count filters the list, says so, and offers the whole list back.
    for (name, expect, words) in [
        ("inactive", vec!["Dormant"], "are inactive"),
        (
            "createdByTokens",
            vec!["Child"],
            "were created by other API tokens",
        ),
        ("allPermissions", vec!["Deployer"], "have all permissions"),
        (
            "expiringWithin30Days",
            vec!["Reader"],
            "expire within 30 days",
        ),
        (
            "neverUsed",
            vec!["Child", "Dormant", "Reader"],
            "were never used",
        ),
    ] {
        let href = href_of(&page.body, &format!("posture-{name}"));
        assert_eq!(href, format!("{list_path}?posture={name}"));
        let filtered = get(&t, &href, &cookie).await;
        assert_eq!(filtered.status, 200);
        assert_eq!(listed(&filtered), expect, "{name}");
        let note = slice(&filtered.body, "id=\"posture-filter\"", "</p>");
        assert!(note.contains(words), "{note}");
        assert_eq!(href_of(&filtered.body, "posture-show-all"), list_path);
        assert!(filtered.body.contains("aria-current=\"true\""));
        let n = expect.len();
        let count = format!(
            "{n} {} (tokens that {words})",
            if n == 1 { "item" } else { "items" }
        );
        assert!(filtered.body.contains(&count), "{count}");
    }
    // With a name filter too; and an empty category says so.
    let both = get(&t, &format!("{list_path}?posture=neverUsed&q=Dor"), &cookie).await;
    assert_eq!(listed(&both), ["Dormant"]);
    assert!(both.body.contains("name=\"posture\" value=\"neverUsed\""));
    let none = get(&t, &format!("{list_path}?posture=expired"), &cookie).await;
    assert_eq!(listed(&none), Vec::<String>::new());
    assert!(
        none.body
            .contains("None of this application's tokens have expired.")
    );
    // An unknown category (a typed URL) is no filter.
    let unknown = get(&t, &format!("{list_path}?posture=bogus"), &cookie).await;
    assert_eq!(unknown.status, 200);
    assert_eq!(listed(&unknown).len(), 4);
}

async fn the_bounded_preset_through_the_add_form() {
    let t = TestApp::new().await;
    let (cookie, app) = owner_with_app(&t).await;
    let new = get(
        &t,
        &format!("/console/applications/{app}/tokens/new"),
        &cookie,
    )
    .await;
    assert!(new.body.contains("id=\"scope-bounded\""));
    assert!(new.body.contains("Everything except managing API tokens"));
    let r = post(
        &t,
        &format!("/console/applications/{app}/tokens"),
        &cookie,
        &[
            ("csrf", &new.csrf()),
            ("form_key", &new.hidden("form_key")),
            ("name", "Integrator"),
            ("expiry", "never"),
            ("scope_mode", "bounded"),
            // Ticked boxes do not count unless Custom is chosen.
            ("action", "application.get"),
        ],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let list = t
        .get(&format!("/applications/{app}/tokens"), secret_of(&cookie))
        .await
        .expect(200);
    let token = &list["items"][0];
    assert_eq!(token["scope"], json!(["all.Application.bounded"]));
    let page = get(
        &t,
        &format!(
            "/console/applications/{app}/tokens/{}",
            token["id"].as_str().unwrap()
        ),
        &cookie,
    )
    .await;
    assert!(
        page.body
            .contains("Permissions: All permissions except managing API tokens")
    );
    assert!(page.body.contains("except changes to API tokens"));
    let scope = slice(&page.body, "id=\"scope\"", "</section>");
    assert!(scope.contains("<code class=\"muted\">applicationApiTokens.get</code>"));
    assert!(scope.contains("<code class=\"muted\">device.get</code>"));
    assert!(!scope.contains("<code class=\"muted\">applicationApiTokens.post</code>"));
    assert!(!scope.contains("<code class=\"muted\">applicationApiToken.delete</code>"));
    // The list names it the same way.
    let listing = get(&t, &format!("/console/applications/{app}/tokens"), &cookie).await;
    assert!(
        listing
            .body
            .contains("All permissions except managing API tokens")
    );
}

async fn the_audit_log_page_lists_entries_newest_first_a_page_at_a_time() {
    let t = TestApp::new().await;
    let (cookie, app) = owner_with_app(&t).await;
    let admin = secret_of(&cookie).to_owned();
    let overview = get(&t, &format!("/console/applications/{app}"), &cookie).await;
    let href = href_of(&overview.body, "audit-log-link");
    assert_eq!(href, format!("/console/applications/{app}/audit-log"));
    for i in 0..51 {
        let made = t
            .api_token(&admin, app, json!({ "name": format!("token {i:02}") }))
            .await;
        assert!(made["token"].as_str().unwrap().starts_with("tgat_"));
    }
    let page = get(&t, &href, &cookie).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("id=\"audit-count\">52 entries<"),
        "the application's creation and 51 tokens"
    );
    let rows: Vec<&str> = page
        .body
        .split("<tr class=\"audit-row\">")
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 50);
    assert!(rows[0].contains("<code>applicationApiTokens.post</code>"));
    assert!(rows[0].contains("“token 50”"), "{}", rows[0]);
    assert!(rows[1].contains("“token 49”"), "{}", rows[1]);
    assert!(rows[0].contains("owner@example.com"), "{}", rows[0]);
    assert!(!page.body.contains("tgat_"), "no secret in the log");
    assert!(page.body.contains("Page 1 of 2"));
    let older = get(&t, &href_of(&page.body, "audit-older"), &cookie).await;
    let rows: Vec<&str> = older
        .body
        .split("<tr class=\"audit-row\">")
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(rows[0].contains("“token 00”"), "{}", rows[0]);
    // The Security menu links to it.
    assert!(
        older
            .body
            .contains("id=\"nav-audit-log\" aria-current=\"page\"")
    );
    let list = get(&t, &format!("/console/applications/{app}/tokens"), &cookie).await;
    assert!(list.body.contains("id=\"nav-audit-log\""));
}

async fn a_viewer_sees_usage_and_posture_but_is_not_offered_a_replacement() {
    let t = TestApp::new().await;
    let (owner, viewer_session, app) = t.org_app_with_viewer().await;
    let made = t
        .api_token(
            &owner,
            app,
            json!({ "name": "Reader", "scope": ["all.Application.read"] }),
        )
        .await;
    let id = made["id"].as_str().unwrap();
    let secret = made["token"].as_str().unwrap();
    t.get(&format!("/applications/{app}"), secret)
        .await
        .expect(200);
    let cookie = format!("tollgate_session={viewer_session}");
    let page = get(
        &t,
        &format!("/console/applications/{app}/tokens/{id}"),
        &cookie,
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        counts(&page.body, "authorized", "application.get"),
        [1, 1, 1, 1]
    );
    assert!(slice(&page.body, "id=\"usage-suggested\"", "</ul>").contains("application.get"));
    assert!(
        !page.body.contains("id=\"narrower-replacement\""),
        "a viewer may not add tokens"
    );
    let form = get(
        &t,
        &format!("/console/applications/{app}/tokens/new?from={id}"),
        &cookie,
    )
    .await;
    assert_eq!(form.status, 403, "{}", form.body);
    let list = get(
        &t,
        &format!("/console/applications/{app}/tokens?posture=neverUsed"),
        &cookie,
    )
    .await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains("id=\"posture-filter\""));
    assert_eq!(listed(&list), Vec::<String>::new(), "Reader was used");
    assert_eq!(
        get(
            &t,
            &format!("/console/applications/{app}/audit-log"),
            &cookie
        )
        .await
        .status,
        200,
        "viewing the log takes the view role, as in the API"
    );
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(usage_panel_shows_what_the_token_did_and_the_narrower_replacement_is_prefilled),
        case!(a_token_never_used_has_no_suggestion_and_no_replacement_button),
        case!(posture_counts_link_to_the_filtered_list),
        case!(the_bounded_preset_through_the_add_form),
        case!(the_audit_log_page_lists_entries_newest_first_a_page_at_a_time),
        case!(a_viewer_sees_usage_and_posture_but_is_not_offered_a_replacement),
    ]
}
