//! The console over HTTP, in-process: cookies, CSRF, logout, read-only roles, the shared
//! token rules, and errors shown as pages. (The browser tests in `browser_console.rs` drive
//! the same pages in Chromium.)

use crate::common::console::{call, console_login, cookie_pair, form, get, post};
use crate::common::{PASSWORD, TestApp};
use axum::http::{Method, header};
use serde_json::json;
use tollgate_server::Settings;
use tollgate_store::Id;
use tollgate_testkit::{Case, case};

fn secret_of(cookie: &str) -> &str {
    cookie.split_once('=').unwrap().1
}

async fn root_redirects_to_the_console_and_pages_need_a_login() {
    let t = TestApp::new().await;
    let r = call(&t, Method::GET, "/", None, None).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/console");
    let r = call(&t, Method::GET, "/console/applications", None, None).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/console/login?next=/console/applications");
    // The REST API is untouched: its unknown paths still answer in JSON.
    let r = call(&t, Method::GET, "/applications", None, None).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("\"type\":\"Unauthorized\""));
}

async fn login_sets_a_strict_http_only_cookie_and_logout_ends_the_session() {
    let t = TestApp::new().await;
    t.user("owner@example.com").await;

    let page = call(&t, Method::GET, "/console/login", None, None).await;
    let login_cookie = &page.set_cookies()[0];
    assert!(login_cookie.starts_with("tollgate_login="));
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Strict"));
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    assert!(
        page.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
    let csrf = page.csrf();
    let res = call(
        &t,
        Method::POST,
        "/console/login",
        Some(cookie_pair(login_cookie)),
        Some(form(&[
            ("csrf", &csrf),
            ("email", "owner@example.com"),
            ("password", PASSWORD),
            ("next", "/console/applications/new"),
        ])),
    )
    .await;
    assert_eq!(res.status, 303);
    assert_eq!(res.location(), "/console/applications/new");
    let set = res.set_cookies();
    let session = set
        .iter()
        .find(|c| c.starts_with("tollgate_session="))
        .unwrap();
    for attr in ["; Path=/", "; HttpOnly", "; SameSite=Strict", "; Max-Age="] {
        assert!(session.contains(attr), "{session} lacks {attr}");
    }
    assert!(!session.contains("Secure"), "plain HTTP: {session}");
    // The login form's cookie is spent.
    assert!(
        set.iter()
            .any(|c| c.starts_with("tollgate_login=;") && c.contains("Max-Age=0"))
    );
    let cookie = cookie_pair(session).to_owned();
    // Neither the password nor the session secret is in any URL.
    assert!(!res.location().contains(PASSWORD) && !res.location().contains("tgus_"));

    // The cookie is an ordinary session: the REST API accepts it as a bearer token too.
    t.get("/me", secret_of(&cookie)).await.expect(200);
    // The login page sends someone already logged in straight on.
    let r = get(&t, "/console/login?next=/console/applications/new", &cookie).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/console/applications/new");
    let apps = get(&t, "/console/applications", &cookie).await;
    assert_eq!(apps.status, 200);
    assert!(apps.is_html());
    assert!(apps.body.contains("owner@example.com"));
    assert!(apps.body.contains("You have no applications yet"));

    // Logging out needs the page's CSRF token.
    let r = post(&t, "/console/logout", &cookie, &[]).await;
    assert_eq!(r.status, 403);
    assert!(r.is_html() && r.body.contains("This form has expired"));
    t.get("/me", secret_of(&cookie)).await.expect(200);

    let r = post(&t, "/console/logout", &cookie, &[("csrf", &apps.csrf())]).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/console/login?loggedout=1");
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("tollgate_session=;") && c.contains("Max-Age=0"))
    );
    // Dead on the server, not just forgotten by the browser.
    t.get("/me", secret_of(&cookie)).await.expect(401);
    let r = get(&t, "/console/applications", &cookie).await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.location(),
        "/console/login?next=/console/applications&expired=1"
    );
    let login = call(&t, Method::GET, r.location(), None, None).await;
    assert!(login.body.contains("Your session has ended: log in again"));
}

async fn secure_cookies_setting_marks_cookies_secure_with_host_prefix() {
    let t = TestApp::with_settings(Settings {
        secure_cookies: true,
        ..Settings::default()
    })
    .await;
    t.user("owner@example.com").await;
    let page = call(&t, Method::GET, "/console/login", None, None).await;
    let login_cookie = page.set_cookies()[0].clone();
    assert!(login_cookie.starts_with("__Host-tollgate_login="));
    assert!(login_cookie.ends_with("; Secure"));
    let res = call(
        &t,
        Method::POST,
        "/console/login",
        Some(cookie_pair(&login_cookie)),
        Some(form(&[
            ("csrf", &page.csrf()),
            ("email", "owner@example.com"),
            ("password", PASSWORD),
        ])),
    )
    .await;
    assert_eq!(res.status, 303);
    let session = res
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-tollgate_session=tgus_"))
        .unwrap();
    assert!(session.contains("; HttpOnly; SameSite=Strict") && session.ends_with("; Secure"));
    let r = get(&t, "/console/applications", cookie_pair(&session)).await;
    assert_eq!(r.status, 200);
    // The unprefixed name is not accepted when cookies must be secure.
    let plain = cookie_pair(&session).replacen("__Host-", "", 1);
    assert_eq!(get(&t, "/console/applications", &plain).await.status, 303);
}

async fn bad_logins_are_messages_on_the_page() {
    let t = TestApp::new().await;
    t.user("owner@example.com").await;
    let page = call(&t, Method::GET, "/console/login", None, None).await;
    let login_cookie = cookie_pair(&page.set_cookies()[0]).to_owned();

    let r = call(
        &t,
        Method::POST,
        "/console/login",
        Some(&login_cookie),
        Some(form(&[
            ("csrf", &page.csrf()),
            ("email", "owner@example.com"),
            ("password", "wrong password 123"),
        ])),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.is_html());
    assert!(r.body.contains("Invalid email or password."));
    assert!(!r.body.contains("wrong password 123"));
    // The email is kept, so only the password needs typing again.
    assert!(r.body.contains("value=\"owner@example.com\""));
    assert!(
        r.set_cookies()
            .iter()
            .all(|c| !c.contains("tollgate_session"))
    );

    // A form without its cookie (stale, or posted from elsewhere) is refused.
    let r = call(
        &t,
        Method::POST,
        "/console/login",
        None,
        Some(form(&[
            ("csrf", &page.csrf()),
            ("email", "owner@example.com"),
            ("password", PASSWORD),
        ])),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("This login form has expired"));
    assert!(
        r.set_cookies()
            .iter()
            .all(|c| !c.contains("tollgate_session"))
    );

    // After login, only console pages are returned to.
    let r = call(
        &t,
        Method::POST,
        "/console/login",
        Some(&login_cookie),
        Some(form(&[
            ("csrf", &page.csrf()),
            ("email", "owner@example.com"),
            ("password", PASSWORD),
            ("next", "//evil.example/"),
        ])),
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/console/applications");
}

/// An owner with an application, logged in to the console.
async fn owner_with_app(t: &TestApp) -> (Id, String, Id) {
    let user = t.user("owner@example.com").await;
    let cookie = console_login(t, "owner@example.com").await;
    let app = t.app_of(user, "Equipment Monitor").await;
    (user, cookie, app)
}

async fn creating_an_application_opens_it() {
    let t = TestApp::new().await;
    t.user("owner@example.com").await;
    let cookie = console_login(&t, "owner@example.com").await;
    let page = get(&t, "/console/applications/new", &cookie).await;
    assert!(page.body.contains("My sandbox (owner@example.com)"));
    let csrf = page.csrf();

    let r = post(
        &t,
        "/console/applications",
        &cookie,
        &[("csrf", &csrf), ("name", "   "), ("owner", "sandbox")],
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Enter a name for the application."));
    let r = post(
        &t,
        "/console/applications",
        &cookie,
        &[
            ("csrf", &csrf),
            ("name", "Greenhouse"),
            ("description", "Sensors in the east wing"),
            ("owner", "sandbox"),
        ],
    )
    .await;
    assert_eq!(r.status, 303);
    let overview = get(&t, r.location(), &cookie).await;
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("The application was created."));
    assert!(overview.body.contains("Greenhouse"));
    assert!(overview.body.contains("Sensors in the east wing"));
    assert!(overview.body.contains("Your sandbox"));
    assert!(overview.body.contains("This application has 0 API tokens."));
    let list = get(&t, "/console/applications", &cookie).await;
    assert!(list.body.contains("1 application"));
    assert!(list.body.contains(">Greenhouse</a>"));
}

async fn forms_without_this_sessions_csrf_token_change_nothing() {
    let t = TestApp::new().await;
    let (_, cookie, app) = owner_with_app(&t).await;
    t.user("other@example.com").await;
    let other = console_login(&t, "other@example.com").await;
    let others_csrf = get(&t, "/console/applications", &other).await.csrf();

    let path = format!("/console/applications/{app}/tokens");
    for csrf in ["", "0000", others_csrf.as_str()] {
        let r = post(
            &t,
            &path,
            &cookie,
            &[("csrf", csrf), ("name", "Sneaky"), ("expiry", "never")],
        )
        .await;
        assert_eq!(r.status, 403, "csrf {csrf:?}");
        assert!(r.is_html() && r.body.contains("This form has expired"));
    }
    assert_eq!(t.store().count_tokens(app).await.unwrap(), 0);
}

async fn creating_a_token_applies_the_shared_rules_and_reveals_it_once() {
    let t = TestApp::new().await;
    let (_, cookie, app) = owner_with_app(&t).await;
    let new = get(
        &t,
        &format!("/console/applications/{app}/tokens/new"),
        &cookie,
    )
    .await;
    assert_eq!(new.status, 200);
    // The checklist is the registry's: every application action, with its route.
    for def in tollgate_core::registry::REGISTRY
        .iter()
        .filter(|d| d.family == tollgate_core::Family::Application)
    {
        assert!(
            new.body.contains(&format!("value=\"{}\"", def.name)),
            "{} missing",
            def.name
        );
        let route = format!(
            "{} {}",
            def.method.as_str(),
            def.path.replace("{applicationId}", &app.to_string())
        );
        assert!(new.body.contains(&route), "{route} missing");
    }
    let csrf = new.csrf();
    let key = new.hidden("form_key");
    let path = format!("/console/applications/{app}/tokens");

    // An expiry in the past is refused beside the field, and the form is kept.
    let r = post(
        &t,
        &path,
        &cookie,
        &[
            ("csrf", &csrf),
            ("form_key", &key),
            ("name", "Dashboard"),
            ("expiry", "at"),
            ("expires_at", "2020-01-01T00:00"),
            ("scope_mode", "read"),
        ],
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body
            .contains("id=\"expires-error\">This date is in the past")
    );
    assert!(r.body.contains("value=\"Dashboard\""));
    assert!(r.body.contains("id=\"scope-read\" checked"));

    // Custom with nothing ticked; no name.
    let r = post(
        &t,
        &path,
        &cookie,
        &[
            ("csrf", &csrf),
            ("form_key", &key),
            ("name", ""),
            ("expiry", "never"),
            ("scope_mode", "custom"),
        ],
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body
            .contains("id=\"token-name-error\">Enter a name for the token.")
    );
    assert_eq!(t.store().count_tokens(app).await.unwrap(), 0);

    // A custom token of two actions, expiring in a year (sent as UTC by the script).
    let expires = tollgate_store::now_ms() + 365 * 24 * 3600 * 1000;
    let expires_iso = tollgate_server::time::iso(expires);
    let r = post(
        &t,
        &path,
        &cookie,
        &[
            ("csrf", &csrf),
            ("form_key", &key),
            ("name", "Gateway fleet"),
            ("description", "Reports state"),
            ("expiry", "at"),
            ("expires_at", "ignored-when-the-script-converted-it"),
            ("expires_iso", &expires_iso),
            ("scope_mode", "custom"),
            ("action", "application.get"),
            ("action", "applicationApiTokens.get"),
        ],
    )
    .await;
    // Created, then shown on the page the browser is sent to (with the pad in a cookie).
    assert_eq!(r.status, 303, "{}", r.body);
    let pad = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("tollgate_reveal="))
        .expect("a reveal cookie");
    let r = get(
        &t,
        r.location(),
        &format!("{cookie}; {}", cookie_pair(&pad)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let at = r
        .body
        .find("tgat_")
        .expect("the secret in the reveal dialog");
    let secret = r.body[at..at + 54].to_owned();
    assert!(
        r.body
            .contains("I have copied my application token to a safe place")
    );
    assert!(r.body.contains("id=\"reveal-close\""));

    let listed = t.store().list_tokens(app, &default_spec()).await.unwrap();
    let token = &listed.items[0];
    assert_eq!(token.name, "Gateway fleet");
    assert_eq!(token.description, "Reports state");
    assert_eq!(
        token.scope,
        vec!["application.get", "applicationApiTokens.get"]
    );
    assert_eq!(token.expiration_date, Some(expires));
    assert_eq!(token.creator.name, "owner@example.com");
    assert_eq!(token.creator.kind, "user");

    // The secret works, within its scope only.
    t.get(&format!("/applications/{app}"), &secret)
        .await
        .expect(200);
    t.get(&format!("/applications/{app}/tokens"), &secret)
        .await
        .expect(200);
    let r = t
        .patch(
            &format!("/applications/{app}"),
            &secret,
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(r.status, 403);

    // Never shown again: not in the list, not on the token's page.
    let list = get(&t, &path, &cookie).await;
    assert!(list.body.contains("Gateway fleet") && list.body.contains("Custom permissions"));
    assert!(!list.body.contains("tgat_"));
    let detail = get(&t, &format!("{path}/{}", token.id), &cookie).await;
    assert!(!detail.body.contains("tgat_"));
    assert!(detail.body.contains("Permissions: Custom permissions"));
    assert!(
        detail
            .body
            .contains("<code>application.get</code>, <code>applicationApiTokens.get</code>")
    );
    assert!(
        detail
            .body
            .contains("Actions added in the future are not included.")
    );
    assert!(!detail.body.contains("applicationApiTokens.post"));
}

fn default_spec() -> tollgate_store::list::ListSpec {
    tollgate_store::list::ListSpec {
        sort: tollgate_store::list::Sort::Text("name"),
        descending: false,
        page: 0,
        per_page: 100,
        filter: None,
    }
}

async fn toggle_save_and_delete_take_effect_on_the_next_request() {
    let t = TestApp::new().await;
    let (_, cookie, app) = owner_with_app(&t).await;
    let (id, secret) = t
        .raw_token(
            app,
            &["all.Application"],
            tollgate_store::tokens::TokenStatus::Active,
            None,
        )
        .await;
    let list_path = format!("/console/applications/{app}/tokens");
    let token_path = format!("{list_path}/{id}");
    let csrf = get(&t, &list_path, &cookie).await.csrf();
    let probe = format!("/applications/{app}");
    t.get(&probe, &secret).await.expect(200);

    let r = post(
        &t,
        &format!("{token_path}/status"),
        &cookie,
        &[
            ("csrf", &csrf),
            ("status", "inactive"),
            ("return", &format!("{list_path}?q=fix")),
        ],
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.location(),
        format!("{list_path}?q=fix&notice=deactivated")
    );
    t.get(&probe, &secret).await.expect(401);
    let list = get(&t, r.location(), &cookie).await;
    assert!(list.body.contains("The token is inactive"));
    assert!(list.body.contains("1 item matching “fix”"));

    // The detail page's form: rename and reactivate.
    let r = post(
        &t,
        &token_path,
        &cookie,
        &[
            ("csrf", &csrf),
            ("name", "Renamed"),
            ("description", "New words"),
            ("status", "active"),
        ],
    )
    .await;
    assert_eq!(r.status, 303);
    t.get(&probe, &secret).await.expect(200);
    let detail = get(&t, r.location(), &cookie).await;
    assert!(detail.body.contains("Your changes were saved."));
    assert!(detail.body.contains("value=\"Renamed\""));
    assert!(detail.body.contains("New words"));
    assert!(detail.body.contains("id=\"status-active\" checked"));

    let r = post(
        &t,
        &token_path,
        &cookie,
        &[("csrf", &csrf), ("name", " "), ("status", "inactive")],
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Enter a name for the token."));
    t.get(&probe, &secret).await.expect(200);

    let confirm = get(&t, &format!("{token_path}/delete"), &cookie).await;
    assert!(
        confirm
            .body
            .contains("Delete the token “<strong>Renamed</strong>”?")
    );
    let r = post(
        &t,
        &format!("{token_path}/delete"),
        &cookie,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), format!("{list_path}?notice=deleted"));
    t.get(&probe, &secret).await.expect(401);
    let r = get(&t, &token_path, &cookie).await;
    assert_eq!(r.status, 404);
    assert!(r.is_html() && r.body.contains("API token was not found"));
}

async fn members_without_edit_rights_see_the_list_read_only() {
    let t = TestApp::new().await;
    let (_, viewer_session, app) = t.org_app_with_viewer().await;
    let (token_id, _) = t
        .raw_token(
            app,
            &["all.Application.read"],
            tollgate_store::tokens::TokenStatus::Active,
            None,
        )
        .await;
    let cookie = format!("tollgate_session={viewer_session}");

    let list_path = format!("/console/applications/{app}/tokens");
    let list = get(&t, &list_path, &cookie).await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains("Read only"));
    assert!(list.body.contains("id=\"read-only-note\""));
    assert!(!list.body.contains("Add Application Token"));
    assert!(!list.body.contains("toggle-form"));
    assert!(!list.body.contains("/delete\""));
    let detail = get(&t, &format!("{list_path}/{token_id}"), &cookie).await;
    assert!(!detail.body.contains("id=\"save-token\""));
    assert!(!detail.body.contains("Delete Application Token"));
    assert!(
        detail
            .body
            .contains("Your role allows you to see this token but not to change it.")
    );

    // Going around the page is refused by the same rules as the REST API, on a page.
    let csrf = list.csrf();
    let r = get(&t, &format!("{list_path}/new"), &cookie).await;
    assert_eq!(r.status, 403);
    assert!(r.is_html());
    assert!(r.body.contains("does not allow applicationApiTokens.post"));
    let r = post(
        &t,
        &list_path,
        &cookie,
        &[
            ("csrf", &csrf),
            ("name", "Mine"),
            ("expiry", "never"),
            ("scope_mode", "all"),
        ],
    )
    .await;
    assert_eq!(r.status, 403);
    let r = post(
        &t,
        &format!("{list_path}/{token_id}/status"),
        &cookie,
        &[("csrf", &csrf), ("status", "inactive")],
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("does not allow applicationApiToken.patch"));
    assert_eq!(t.store().count_tokens(app).await.unwrap(), 1);
}

async fn errors_are_pages_never_json() {
    let t = TestApp::new().await;
    let (_, cookie, _) = owner_with_app(&t).await;
    let stranger = t.user("stranger@example.com").await;
    let theirs = t.app_of(stranger, "Not yours").await;
    for path in [
        "/console/nope".to_owned(),
        "/console/applications/not-an-id".to_owned(),
        format!("/console/applications/{theirs}"),
        format!("/console/applications/{theirs}/tokens"),
        format!("/console/applications/{}/tokens", Id::generate()),
    ] {
        let r = get(&t, &path, &cookie).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(r.is_html(), "{path}");
        assert!(r.body.contains("<h1>Not found</h1>"), "{path}");
        assert!(!r.body.contains("\"type\""), "{path}");
    }
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(root_redirects_to_the_console_and_pages_need_a_login),
        case!(login_sets_a_strict_http_only_cookie_and_logout_ends_the_session),
        case!(secure_cookies_setting_marks_cookies_secure_with_host_prefix),
        case!(bad_logins_are_messages_on_the_page),
        case!(creating_an_application_opens_it),
        case!(forms_without_this_sessions_csrf_token_change_nothing),
        case!(creating_a_token_applies_the_shared_rules_and_reveals_it_once),
        case!(toggle_save_and_delete_take_effect_on_the_next_request),
        case!(members_without_edit_rights_see_the_list_read_only),
        case!(errors_are_pages_never_json),
    ]
}
