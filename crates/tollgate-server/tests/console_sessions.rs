//! The console's sessions page, in-process over HTTP: a person sees their own active sessions
//! (client, created, last used, this one marked) and ends any of them; an ended session stops
//! working at once, for the console and the REST API alike.

use crate::common::console::{Page, call_with, form};
use crate::common::{PASSWORD, TestApp};
use axum::http::{Method, header};
use tollgate_testkit::{Case, case};

/// The `action` of every form on `page` that ends a session, in page order.
fn end_actions(page: &Page) -> Vec<String> {
    page.body
        .match_indices("action=\"/console/sessions/")
        .map(|(at, _)| {
            let rest = &page.body[at + "action=\"".len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

async fn call(
    t: &TestApp,
    method: Method,
    path: &str,
    headers: &[(header::HeaderName, &str)],
    pairs: Option<&[(&str, &str)]>,
) -> Page {
    call_with(t, method, path, headers, pairs.map(form)).await
}

/// Log in through the console's form from a browser calling itself `agent`; returns the
/// session cookie (`name=value`).
async fn console_login(t: &TestApp, email: &str, agent: &str) -> String {
    let page = call(t, Method::GET, "/console/login", &[], None).await;
    let login_cookie = page.set_cookies()[0].split(';').next().unwrap().to_owned();
    let csrf = page.csrf();
    let res = call(
        t,
        Method::POST,
        "/console/login",
        &[(header::COOKIE, &login_cookie), (header::USER_AGENT, agent)],
        Some(&[
            ("csrf", &csrf),
            ("email", email),
            ("password", PASSWORD),
            ("next", "/console/applications"),
        ]),
    )
    .await;
    assert_eq!(res.status, 303, "{}", res.body);
    res.set_cookies()
        .into_iter()
        .find(|c| c.starts_with("tollgate_session=tgus_"))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

async fn a_person_lists_and_ends_their_own_sessions() {
    let t = TestApp::new().await;
    t.user("many@example.com").await;
    t.user("someone-else@example.com").await;
    let laptop = console_login(&t, "many@example.com", "Firefox on the laptop").await;
    let phone = console_login(&t, "many@example.com", "Safari on the phone").await;
    let theirs = console_login(&t, "someone-else@example.com", "Their browser").await;

    let page = call(
        &t,
        Method::GET,
        "/console/sessions",
        &[(header::COOKIE, &laptop)],
        None,
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("2 active sessions"), "{}", page.body);
    assert!(page.body.contains("Firefox on the laptop"));
    assert!(page.body.contains("Safari on the phone"));
    // Only one's own sessions are listed.
    assert!(!page.body.contains("Their browser"));
    // The session looking is marked, and it has been used (by this very page).
    let mine = page
        .body
        .find("id=\"this-session\"")
        .expect("this session is marked");
    let row_start = page.body[..mine].rfind("<tr").unwrap();
    assert!(page.body[row_start..mine].contains("Firefox on the laptop"));
    assert_eq!(page.body.matches("id=\"this-session\"").count(), 1);
    assert!(page.body.contains("id=\"nav-sessions\""));
    let actions = end_actions(&page);
    assert_eq!(actions.len(), 2);
    let phone_end = {
        let at = page.body.find("Safari on the phone").unwrap();
        let rest = &page.body[at..];
        let a = rest.find("action=\"").unwrap() + "action=\"".len();
        rest[a..a + rest[a..].find('"').unwrap()].to_owned()
    };
    assert!(actions.contains(&phone_end));

    // Without the page's CSRF token nothing ends.
    let r = call(
        &t,
        Method::POST,
        &phone_end,
        &[(header::COOKIE, &laptop)],
        Some(&[]),
    )
    .await;
    assert_eq!(r.status, 403);
    let phone_secret = phone.split_once('=').unwrap().1;
    t.get("/me", phone_secret).await.expect(200);

    // Ending the phone's session: it stops working at once, for the console and the REST API.
    let csrf = page.csrf();
    let r = call(
        &t,
        Method::POST,
        &phone_end,
        &[(header::COOKIE, &laptop)],
        Some(&[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/console/sessions?ended=1");
    assert_eq!(t.get("/me", phone_secret).await.status, 401);
    let r = call(
        &t,
        Method::GET,
        "/console/applications",
        &[(header::COOKIE, &phone)],
        None,
    )
    .await;
    assert_eq!(r.status, 303);
    assert!(
        r.location().starts_with("/console/login"),
        "{}",
        r.location()
    );
    let page = call(
        &t,
        Method::GET,
        "/console/sessions?ended=1",
        &[(header::COOKIE, &laptop)],
        None,
    )
    .await;
    assert!(page.body.contains("1 active session"));
    assert!(page.body.contains("The session has ended"));
    assert!(!page.body.contains("Safari on the phone"));

    // Another person's session cannot be ended from here: not found, and it keeps working.
    let their_page = call(
        &t,
        Method::GET,
        "/console/sessions",
        &[(header::COOKIE, &theirs)],
        None,
    )
    .await;
    let their_end = end_actions(&their_page).remove(0);
    let r = call(
        &t,
        Method::POST,
        &their_end,
        &[(header::COOKIE, &laptop)],
        Some(&[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(r.status, 404);
    t.get("/me", theirs.split_once('=').unwrap().1)
        .await
        .expect(200);

    // Ending the session looking logs this browser out.
    let own_end = end_actions(&page).remove(0);
    let r = call(
        &t,
        Method::POST,
        &own_end,
        &[(header::COOKIE, &laptop)],
        Some(&[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/console/login?loggedout=1");
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("tollgate_session=;") && c.contains("Max-Age=0"))
    );
    assert_eq!(
        t.get("/me", laptop.split_once('=').unwrap().1).await.status,
        401
    );
}

pub fn cases() -> Vec<Case> {
    vec![case!(a_person_lists_and_ends_their_own_sessions)]
}
