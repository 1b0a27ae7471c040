//! The console over HTTP, in-process: pages, forms and cookies (for console tests).

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use tower::ServiceExt;

use super::{PASSWORD, TestApp};

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> String {
        self.hidden("csrf")
    }

    /// The value of the first hidden field `name`.
    pub fn hidden(&self, name: &str) -> String {
        let field = format!("name=\"{name}\" value=\"");
        let at = self
            .body
            .find(&field)
            .unwrap_or_else(|| panic!("no {name} field in page:\n{}", self.body));
        let rest = &self.body[at + field.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    pub fn is_html(&self) -> bool {
        self.headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/html"))
    }
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn call(
    t: &TestApp,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    body: Option<String>,
) -> Page {
    let cookie: Vec<_> = cookie.map(|c| (header::COOKIE, c)).into_iter().collect();
    call_with(t, method, path, &cookie, body).await
}

/// [`call`] with any request headers (a cookie, a `User-Agent`, …).
pub async fn call_with(
    t: &TestApp,
    method: Method,
    path: &str,
    headers: &[(header::HeaderName, &str)],
    body: Option<String>,
) -> Page {
    let mut req = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        req = req.header(name, *value);
    }
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let req = req.body(body.map_or_else(Body::empty, Body::from)).unwrap();
    let res = tollgate_server::app(t.state.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    Page {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub async fn get(t: &TestApp, path: &str, cookie: &str) -> Page {
    call(t, Method::GET, path, Some(cookie), None).await
}

pub async fn post(t: &TestApp, path: &str, cookie: &str, pairs: &[(&str, &str)]) -> Page {
    call(t, Method::POST, path, Some(cookie), Some(form(pairs))).await
}

/// The `name=value` of a Set-Cookie header.
pub fn cookie_pair(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap()
}

/// Log in through the console's form; returns the session cookie (`name=value`).
pub async fn console_login(t: &TestApp, email: &str) -> String {
    let page = call(t, Method::GET, "/console/login", None, None).await;
    assert_eq!(page.status, 200);
    let login_cookie = page.set_cookies()[0].clone();
    let csrf = page.csrf();
    let res = call(
        t,
        Method::POST,
        "/console/login",
        Some(cookie_pair(&login_cookie)),
        Some(form(&[
            ("csrf", &csrf),
            ("email", email),
            ("password", PASSWORD),
            ("next", "/console/applications"),
        ])),
    )
    .await;
    assert_eq!(res.status, 303, "{}", res.body);
    let session = res
        .set_cookies()
        .into_iter()
        .find(|c| c.contains("tollgate_session=tgus_"))
        .expect("a session cookie");
    cookie_pair(&session).to_owned()
}
