//! The console's token form can create one token, and the new secret is shown once, on the
//! page the creation redirects to: resubmitting the form creates nothing and says so;
//! reloading the reveal page does not show the secret again. Also: `return`/`next`
//! parameters with CR/LF are refused before anything changes.

use crate::common::TestApp;
use crate::common::console::{console_login, cookie_pair, get, post};
use tollgate_store::tokens::TokenStatus;
use tollgate_testkit::{Case, case};

async fn a_token_form_creates_one_token_and_its_secret_is_shown_once() {
    let t = TestApp::new().await;
    let user = t.user("owner@example.com").await;
    let cookie = console_login(&t, "owner@example.com").await;
    let app = t.app_of(user, "Equipment Monitor").await;
    let new = get(
        &t,
        &format!("/console/applications/{app}/tokens/new"),
        &cookie,
    )
    .await;
    assert_eq!(new.status, 200);
    let csrf = new.csrf();
    let key = new.hidden("form_key");
    let path = format!("/console/applications/{app}/tokens");
    let fields = [
        ("csrf", csrf.as_str()),
        ("form_key", key.as_str()),
        ("name", "Dashboard vendor"),
        ("expiry", "never"),
        ("scope_mode", "read"),
    ];

    let created = post(&t, &path, &cookie, &fields).await;
    assert_eq!(created.status, 303, "{}", created.body);
    assert!(
        !created.body.contains("tgat_"),
        "the POST answer carries no secret"
    );
    let reveal = created.location().to_owned();
    assert!(reveal.starts_with(&format!("{path}/reveal/")), "{reveal}");
    assert!(!reveal.contains("tgat_"), "no secret in the URL");
    let pad = created
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("tollgate_reveal="))
        .expect("the reveal pad cookie");
    assert!(
        pad.contains("HttpOnly") && pad.contains("SameSite=Strict"),
        "{pad}"
    );
    assert!(!pad.contains("tgat_"));
    let with_pad = format!("{cookie}; {}", cookie_pair(&pad));

    // The same form again (a double click, the browser resending the POST): nothing new.
    let again = post(&t, &path, &cookie, &fields).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(
        again.body.contains("This form was sent already"),
        "{}",
        again.body
    );
    assert!(!again.body.contains("tgat_"));
    assert_eq!(t.store().count_tokens(app).await.unwrap(), 1);

    // The reveal page shows the secret once...
    let shown = get(&t, &reveal, &with_pad).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    let at = shown.body.find("tgat_").expect("the secret is shown");
    let secret = shown.body[at..at + 54].to_owned();
    assert!(
        shown
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("tollgate_reveal=;") && c.contains("Max-Age=0"))
    );
    t.get(&format!("/applications/{app}"), &secret)
        .await
        .expect(200);
    // ...and a reload (even with the pad cookie still sent) does not.
    let reloaded = get(&t, &reveal, &with_pad).await;
    assert_eq!(reloaded.status, 410, "{}", reloaded.body);
    assert!(!reloaded.body.contains("tgat_"));
    assert!(
        reloaded.body.contains("shown once already"),
        "{}",
        reloaded.body
    );
    assert_eq!(t.store().count_tokens(app).await.unwrap(), 1);

    // The database never held the secret: only the sealed copy, now deleted.
    let sealed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM console_reveals")
        .fetch_one(t.store().pool())
        .await
        .unwrap();
    assert_eq!(sealed, 0);

    // A new form (a new key) creates a second token, as asked.
    let next = get(
        &t,
        &format!("/console/applications/{app}/tokens/new"),
        &cookie,
    )
    .await;
    let key2 = next.hidden("form_key");
    assert_ne!(key, key2);
    let fields2 = [
        ("csrf", csrf.as_str()),
        ("form_key", key2.as_str()),
        ("name", "Second"),
        ("expiry", "never"),
        ("scope_mode", "read"),
    ];
    assert_eq!(post(&t, &path, &cookie, &fields2).await.status, 303);
    assert_eq!(t.store().count_tokens(app).await.unwrap(), 2);

    // A form without its key (or a made-up one) creates nothing.
    for bad in ["", "12.zz", "1.00000000000000000000000000000000"] {
        let fields = [
            ("csrf", csrf.as_str()),
            ("form_key", bad),
            ("name", "Third"),
            ("expiry", "never"),
        ];
        assert_eq!(
            post(&t, &path, &cookie, &fields).await.status,
            400,
            "{bad:?}"
        );
    }
    assert_eq!(t.store().count_tokens(app).await.unwrap(), 2);
}

/// The reveal page of someone else's creation shows nothing, even with the right id.
async fn a_reveal_belongs_to_the_browser_that_created_the_token() {
    let t = TestApp::new().await;
    let user = t.user("owner@example.com").await;
    let cookie = console_login(&t, "owner@example.com").await;
    let app = t.app_of(user, "A").await;
    let new = get(
        &t,
        &format!("/console/applications/{app}/tokens/new"),
        &cookie,
    )
    .await;
    let fields = [
        ("csrf", new.csrf()),
        ("form_key", new.hidden("form_key")),
        ("name", "T".to_owned()),
        ("expiry", "never".to_owned()),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let created = post(
        &t,
        &format!("/console/applications/{app}/tokens"),
        &cookie,
        &fields,
    )
    .await;
    assert_eq!(created.status, 303);
    // Same session, but without the pad cookie (another browser of the same user): the
    // secret cannot be unsealed there, and the sealed copy is left for the right browser.
    let elsewhere = get(&t, created.location(), &cookie).await;
    assert_eq!(elsewhere.status, 410);
    assert!(!elsewhere.body.contains("tgat_"));
    let pad = created
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("tollgate_reveal="))
        .unwrap();
    let shown = get(
        &t,
        created.location(),
        &format!("{cookie}; {}", cookie_pair(&pad)),
    )
    .await;
    assert_eq!(shown.status, 200);
    assert!(shown.body.contains("tgat_"));
}

/// A CR/LF in `next` or `return` is refused before the login or the change, never a
/// plain-text 500 after it.
async fn redirect_parameters_with_line_breaks_are_refused_first() {
    let t = TestApp::new().await;
    let user = t.user("owner@example.com").await;
    let cookie = console_login(&t, "owner@example.com").await;
    let app = t.app_of(user, "A").await;
    let (token, _) = t
        .raw_token(app, &["all.Application"], TokenStatus::Active, None)
        .await;
    let list = format!("/console/applications/{app}/tokens");
    let csrf = get(&t, &list, &cookie).await.csrf();
    let r = post(
        &t,
        &format!("{list}/{token}/status"),
        &cookie,
        &[
            ("csrf", &csrf),
            ("status", "inactive"),
            ("return", &format!("{list}\r\nSet-Cookie: evil=1")),
        ],
    )
    .await;
    // The change happens, and the answer goes back to the plain list.
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), format!("{list}?notice=deactivated"));
    assert!(
        r.headers
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().contains("evil"))
    );
    // Login with a CR/LF in `next`: logged in, sent home.
    let page =
        crate::common::console::call(&t, axum::http::Method::GET, "/console/login", None, None)
            .await;
    let login_cookie = page.set_cookies()[0].clone();
    let r = crate::common::console::call(
        &t,
        axum::http::Method::POST,
        "/console/login",
        Some(cookie_pair(&login_cookie)),
        Some(crate::common::console::form(&[
            ("csrf", &page.csrf()),
            ("email", "owner@example.com"),
            ("password", crate::common::PASSWORD),
            ("next", "/console/applications\r\nX-Evil: 1"),
        ])),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), "/console/applications");
    assert!(r.headers.get("x-evil").is_none());
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(a_token_form_creates_one_token_and_its_secret_is_shown_once),
        case!(a_reveal_belongs_to_the_browser_that_created_the_token),
        case!(redirect_parameters_with_line_breaks_are_refused_first),
    ]
}
