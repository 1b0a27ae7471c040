//! The console in a real headless Chromium, driven over WebDriver (chromedriver) with
//! fantoccini, against the real `tollgate` binary.
//!
//! Each test saves a screenshot of every page it visits under
//! `target/browser-screenshots/<test>/`, numbered in order, for a reviewer to look at. The
//! harness ([`Browser`], [`server`], [`within`], [`api_json`]) is shared with `browser_usage.rs`.
//!
//! Needs Debian's `chromium` and `chromium-driver`: without them the tests fail, or with
//! `TOLLGATE_ALLOW_SKIP=1` are reported as ignored (see `tollgate-testkit`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tollgate_testkit::{Case, Need, case};

use crate::common::process::{ADMIN_EMAIL, ADMIN_PASSWORD, ServerProcess, binary, free_port};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use tollgate_testkit::{CHROMEDRIVER, CHROMIUM};

// ---------------------------------------------------------------------------------------
// Plain HTTP, to call the REST API (and chromedriver) the way any client would.

/// Send one HTTP/1.1 request; returns the status and the body.
pub(crate) fn http(
    base: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if let Some(b) = bearer {
        req.push_str(&format!("Authorization: Bearer {b}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    read_response(&mut s)
}

/// Read one response: headers, then a body by Content-Length, chunks, or to the end.
fn read_response(s: &mut TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).expect("read a response"),
            1,
            "connection closed early"
        );
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let status = head[9..12].parse().expect("a status code");
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.strip_prefix(&format!("{name}:"))
                .map(|v| v.trim().to_owned())
        })
    };
    let mut body = Vec::new();
    if let Some(len) = header("content-length") {
        body.resize(len.parse().unwrap(), 0);
        s.read_exact(&mut body).unwrap();
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                s.read_exact(&mut byte).unwrap();
                line.push(byte[0]);
            }
            let size = usize::from_str_radix(String::from_utf8_lossy(&line).trim(), 16).unwrap();
            let mut chunk = vec![0u8; size + 2];
            s.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        s.read_to_end(&mut body).unwrap();
    }
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The administrator's API session token (`POST /auth/user`).
pub(crate) fn admin_token(base: &str) -> String {
    api_json(
        base,
        "POST",
        "/auth/user",
        None,
        json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }),
    )["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub(crate) fn api_json(
    base: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Value,
) -> Value {
    let (status, text) = http(base, method, path, bearer, Some(&body.to_string()));
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {text}"
    );
    serde_json::from_str(&text).unwrap()
}

/// The status the REST API gives a request for `path` with `token`.
pub(crate) fn api_status(base: &str, path: &str, token: &str) -> u16 {
    http(base, "GET", path, Some(token), None).0
}

// ---------------------------------------------------------------------------------------
// The browser

pub(crate) struct Browser {
    pub(crate) client: Client,
    driver: Child,
    driver_url: String,
    /// The WebDriver session id, to end it on drop.
    session: String,
    shots: PathBuf,
    shot_no: usize,
    /// The viewport set by [`Browser::resize`].
    viewport: (u32, u32),
    downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// End the WebDriver session first (chromedriver then quits Chromium; killing only the
    /// driver would leave the browser running), then stop the driver. Runs on panics too.
    fn drop(&mut self) {
        if let Ok(mut s) = TcpStream::connect(self.driver_url.trim_start_matches("http://")) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let req = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                self.session
            );
            if s.write_all(req.as_bytes()).is_ok() {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `target/` of this build (where Cargo put the `tollgate` binary).
fn target_dir() -> PathBuf {
    Path::new(binary())
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
            Path::to_path_buf,
        )
}

impl Browser {
    /// Start chromedriver on a free port and open a headless Chromium session.
    pub(crate) async fn start(test: &str, log_dir: &Path) -> Browser {
        let port = free_port();
        let log = std::fs::File::create(log_dir.join("chromedriver.log")).unwrap();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start chromedriver");
        let driver_url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--lang=en-US", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.path().to_str().unwrap(),
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                    "safebrowsing.enabled": false,
                },
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver_url)
            .await
            .expect("open a Chromium session");
        let session = client.session_id().await.unwrap().unwrap_or_default();
        let shots = target_dir().join("browser-screenshots").join(test);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).unwrap();
        let mut b = Browser {
            client,
            driver,
            driver_url,
            session,
            shots,
            shot_no: 0,
            viewport: (1280, 900),
            downloads,
            _profile: profile,
        };
        b.resize(1280, 900).await;
        b
    }

    /// Set the viewport to exactly `width`×`height` CSS pixels (the window may not shrink
    /// that far on its own, so the DevTools device metrics are set too).
    pub(crate) async fn resize(&mut self, width: u32, height: u32) {
        self.viewport = (width, height);
        self.set_metrics(width, height).await;
    }

    pub(crate) async fn set_metrics(&self, width: u32, height: u32) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": width, "height": height, "deviceScaleFactor": 1,
                "mobile": width < 600,
            }),
        )
        .await;
    }

    /// Run a DevTools command through chromedriver.
    pub(crate) async fn cdp(&self, cmd: &str, params: Value) -> Value {
        let session = self.client.session_id().await.unwrap().unwrap();
        let (status, body) = http(
            &self.driver_url,
            "POST",
            &format!("/session/{session}/goog/cdp/execute"),
            None,
            Some(&json!({ "cmd": cmd, "params": params }).to_string()),
        );
        assert_eq!(status, 200, "{cmd}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Save a screenshot of the whole page (of the window, while a dialog is open) as
    /// `NN-name.png`.
    pub(crate) async fn shot(&mut self, name: &str) {
        self.shot_no += 1;
        let (width, height) = self.viewport;
        let page = self
            .js("return document.querySelector('dialog[open]') ? 0 : document.documentElement.scrollHeight")
            .await
            .as_u64()
            .unwrap_or(0);
        let tall = u32::try_from(page).unwrap_or(height).min(5000);
        if tall > height {
            self.set_metrics(width, tall).await;
        }
        let png = self.client.screenshot().await.expect("screenshot");
        if tall > height {
            self.set_metrics(width, height).await;
        }
        std::fs::write(
            self.shots.join(format!("{:02}-{name}.png", self.shot_no)),
            png,
        )
        .unwrap();
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    pub(crate) async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} not found: {e}"))
    }

    pub(crate) async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    /// Click something that loads a new page, and wait for that page.
    pub(crate) async fn nav(&self, css: &str) {
        let e = self.find(css).await;
        self.mark().await;
        e.click().await.expect("click");
        self.wait_new_page(css).await;
    }

    /// Send keys to something that then loads a new page, and wait for that page.
    pub(crate) async fn nav_keys(&self, css: &str, keys: &str) {
        let e = self.find(css).await;
        self.mark().await;
        e.send_keys(keys).await.expect("send keys");
        self.wait_new_page(css).await;
    }

    /// Follow a link by its text, and wait for the new page.
    pub(crate) async fn click_link(&self, text: &str) {
        let e = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::LinkText(text))
            .await
            .unwrap_or_else(|e| panic!("link {text:?} not found: {e}"));
        self.mark().await;
        e.click().await.expect("click link");
        self.wait_new_page(text).await;
    }

    /// Mark the current document, so that a new one can be told apart.
    pub(crate) async fn mark(&self) {
        self.js("window.__tgOld = true").await;
    }

    pub(crate) async fn wait_new_page(&self, after: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Value::Bool(true)) = self
                .client
                .execute(
                    "return window.__tgOld !== true && document.readyState === 'complete'",
                    vec![],
                )
                .await
            {
                return;
            }
            assert!(Instant::now() < deadline, "no new page after {after}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    pub(crate) async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    pub(crate) async fn prop(&self, css: &str, prop: &str) -> String {
        self.find(css)
            .await
            .prop(prop)
            .await
            .unwrap()
            .unwrap_or_default()
    }

    pub(crate) async fn checked(&self, css: &str) -> bool {
        self.prop(css, "checked").await == "true"
    }

    pub(crate) async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.expect(script)
    }

    pub(crate) async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    pub(crate) async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Wait until the page's path (with query) satisfies `ok`.
    pub(crate) async fn wait_path(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let p = self.path().await;
            if ok(&p) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "still at {p}, waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Names of the rows of the token table, in order.
    pub(crate) async fn token_names(&self) -> Vec<String> {
        let v = self
            .js("return [...document.querySelectorAll('#tokens .row-title')].map(a => a.textContent)")
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    }

    /// A file that appeared in the download folder (waiting for it to be complete).
    pub(crate) async fn downloaded(&self, name: &str) -> String {
        let path = self.downloads.path().join(name);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(text) = std::fs::read_to_string(&path)
                && !text.is_empty()
            {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{name} was not downloaded; folder holds {:?}",
                std::fs::read_dir(self.downloads.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// No control without a label, and nothing wider than the viewport.
    pub(crate) async fn check_labels_and_width(&self, page: &str) {
        let unlabeled = self
            .js(
                "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
                   .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                             && !e.getAttribute('aria-labelledby') && !(e.tagName === 'BUTTON' && e.textContent.trim()))
                   .map(e => e.outerHTML.slice(0, 80))",
            )
            .await;
        assert_eq!(unlabeled, json!([]), "{page}: controls without a label");
        let widths = self
            .js("return [document.documentElement.scrollWidth, window.innerWidth]")
            .await;
        let (scroll, inner) = (widths[0].as_i64().unwrap(), widths[1].as_i64().unwrap());
        assert!(
            scroll <= inner,
            "{page}: content is {scroll}px wide in a {inner}px window"
        );
    }

    pub(crate) async fn log_in(
        &mut self,
        base: &str,
        email: &str,
        password: &str,
        shot: Option<&str>,
    ) {
        self.goto(&format!("{base}/console/login")).await;
        self.type_into("#email", email).await;
        self.type_into("#password", password).await;
        if let Some(name) = shot {
            self.shot(name).await;
        }
        self.nav("button[type=submit]").await;
        self.wait_path("the applications", |p| !p.starts_with("/console/login"))
            .await;
    }
}

/// Run a browser test, failing it (rather than hanging CI) if it takes too long.
pub(crate) async fn within(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(150), test)
        .await
        .expect("the browser test did not finish within 150 s");
}

/// A server on a fresh database in `dir`.
pub(crate) async fn server(dir: &Path) -> ServerProcess {
    let url = crate::common::fresh_database_url(dir).await;
    ServerProcess::start(dir, &url, &[])
}

// ---------------------------------------------------------------------------------------
// Steps 1–6: an owner manages application API tokens.

async fn owner_manages_application_tokens_in_the_browser() {
    within(owner_flow()).await;
}

async fn owner_flow() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let base = server.url.clone();
    let mut b = Browser::start("owner_manages_application_tokens", dir.path()).await;

    // 1. Log in; see the (empty) applications; create one; open it.
    b.goto(&format!("{base}/")).await;
    b.wait_path("the login page", |p| p.starts_with("/console/login"))
        .await;
    assert_eq!(b.text("h1").await, "Log in to Tollgate");
    b.check_labels_and_width("login").await;
    b.type_into("#email", ADMIN_EMAIL).await;
    b.type_into("#password", "not the password").await;
    b.nav("button[type=submit]").await;
    assert_eq!(b.text("#login-error").await, "Invalid email or password.");
    b.shot("login-refused").await;
    b.log_in(&base, ADMIN_EMAIL, ADMIN_PASSWORD, Some("login"))
        .await;
    assert_eq!(b.path().await, "/console/applications");
    let cookie = b.client.get_named_cookie("tollgate_session").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    assert_eq!(cookie.path(), Some("/"));
    let session = cookie.value().to_owned();
    assert!(session.starts_with("tgus_"));
    // Script cannot read it.
    assert_eq!(b.js("return document.cookie").await, json!(""));
    assert!(b.source().await.contains("You have no applications yet"));
    b.shot("applications-empty").await;

    b.click_link("Create Application").await;
    b.check_labels_and_width("create application").await;
    b.type_into("#app-name", "Equipment Monitor").await;
    b.type_into("#app-description", "Compressors in plant 2")
        .await;
    b.shot("application-new").await;
    b.nav("#create-app").await;
    b.wait_path("the overview", |p| p.ends_with("?notice=created"))
        .await;
    assert_eq!(b.text(".app-name").await, "Equipment Monitor");
    assert!(
        b.text("#notice, .alert-info")
            .await
            .contains("The application was created.")
    );
    b.shot("application-overview").await;
    let app_id = b.path().await.split(['/', '?']).nth(3).unwrap().to_owned();

    b.click_link("Applications").await;
    assert_eq!(b.text("#app-count").await, "1 application");
    b.shot("applications").await;
    b.click_link("Equipment Monitor").await;
    b.wait_path("the overview", |p| {
        p == format!("/console/applications/{app_id}")
    })
    .await;

    // 2. Security → Application API Tokens.
    b.click_link("Security").await;
    b.click_link("Application API Tokens").await;
    let list_path = format!("/console/applications/{app_id}/tokens");
    assert_eq!(b.path().await, list_path);
    assert!(
        b.source()
            .await
            .contains("This application has no API tokens yet.")
    );
    b.shot("tokens-empty").await;

    // 3. Add Application Token.
    b.click_link("Add Application Token").await;
    b.check_labels_and_width("add token").await;
    assert!(b.checked("#expiry-at").await, "Expires at … is the default");
    assert!(
        b.checked("#scope-all").await,
        "All permissions is the default"
    );
    // Preset to one year from now, in the browser's local time.
    let days = b
        .js("return (new Date(document.getElementById('expires-at').value) - Date.now()) / 86400000")
        .await
        .as_f64()
        .unwrap();
    assert!(
        (364.9..=366.1).contains(&days),
        "expiry preset {days} days ahead"
    );
    for (id, words) in [
        ("#scope-all-help", "added in the future"),
        ("#scope-read-help", "in the future"),
        ("#scope-custom-help", "not"),
    ] {
        assert!(b.text(id).await.contains(words), "{id}");
    }
    assert!(
        !b.find("#custom-permissions")
            .await
            .is_displayed()
            .await
            .unwrap()
    );
    b.shot("token-new").await;

    // A past date is refused beside the field.
    b.type_into("#token-name", "Gateway fleet").await;
    b.js("document.getElementById('expires-at').value = '2020-01-01T00:00'")
        .await;
    b.click("#scope-read").await;
    b.nav("#create-token").await;
    let error = b.text("#expires-error").await;
    assert!(error.contains("This date is in the past"), "{error}");
    assert_eq!(b.prop("#token-name", "value").await, "Gateway fleet");
    assert!(b.checked("#scope-read").await);
    b.shot("token-new-past-date").await;

    // Custom: every application action from the registry, grouped by resource.
    b.click("#scope-custom").await;
    assert!(
        b.find("#custom-permissions")
            .await
            .is_displayed()
            .await
            .unwrap()
    );
    let listed = b
        .js("return [...document.querySelectorAll('.action-box')].map(e => e.value)")
        .await;
    let registry: Vec<&str> = tollgate_core::registry::REGISTRY
        .iter()
        .filter(|d| d.family == tollgate_core::Family::Application)
        .map(|d| d.name)
        .collect();
    assert_eq!(listed, json!(registry));
    let get_label = b.text("label[for='action-application.get']").await;
    assert!(get_label.contains("Retrieves information on an application"));
    assert!(get_label.contains(&format!("GET /applications/{app_id}")));

    // Ticking a resource ticks all its actions; unticking unticks them.
    let tokens_actions = [
        "#action-applicationApiTokens\\.get",
        "#action-applicationApiTokens\\.post",
    ];
    b.click("#resource-applicationApiTokens").await;
    for a in tokens_actions {
        assert!(b.checked(a).await, "{a} ticked with its resource");
    }
    b.click("#resource-applicationApiTokens").await;
    for a in tokens_actions {
        assert!(!b.checked(a).await, "{a} unticked with its resource");
    }
    // One action of a resource: the resource shows as partly ticked.
    b.click("#action-application\\.get").await;
    assert!(!b.checked("#resource-application").await);
    assert_eq!(
        b.prop("#resource-application", "indeterminate").await,
        "true"
    );
    b.click("#action-application\\.patch").await;
    b.click("#action-application\\.delete").await;
    assert!(b.checked("#resource-application").await);
    assert_eq!(
        b.prop("#resource-application", "indeterminate").await,
        "false"
    );
    b.click("#action-application\\.delete").await;
    b.click("#action-application\\.patch").await;
    assert_eq!(
        b.prop("#resource-application", "indeterminate").await,
        "true"
    );
    b.click("#resource-applicationApiTokens").await;
    b.shot("token-new-custom").await;

    // 4. Create it (never expires): the reveal dialog.
    b.click("#expiry-never").await;
    b.type_into("#token-description", "Reports state from the east wing")
        .await;
    b.nav("#create-token").await;
    let dialog = b.find("#reveal").await;
    assert_eq!(dialog.prop("open").await.unwrap().as_deref(), Some("true"));
    let secret = b.prop("#reveal-token", "value").await;
    assert!(
        secret.starts_with("tgat_") && secret.len() == 54,
        "{secret}"
    );
    assert!(
        b.text("#reveal-warning")
            .await
            .contains("does not store your application token")
    );
    let close = b.find("#reveal-close").await;
    assert!(
        !close.is_enabled().await.unwrap(),
        "Close Window starts disabled"
    );
    // Escape does not dismiss it either, however often.
    for _ in 0..2 {
        b.find("#reveal-token")
            .await
            .send_keys("\u{E00C}")
            .await
            .unwrap();
        // Let every handler of the key run (two animation frames) before looking.
        b.client
            .execute_async(
                "const done = arguments[arguments.length - 1]; \
                 requestAnimationFrame(() => requestAnimationFrame(() => done(true)));",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            b.prop("#reveal", "open").await,
            "true",
            "Escape closed the dialog"
        );
    }
    assert_eq!(b.prop("#reveal-token", "value").await, secret);
    b.shot("token-reveal").await;

    b.click("#reveal-copy").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.text("#reveal-status").await.is_empty() {
        assert!(Instant::now() < deadline, "Copy gave no feedback");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.text("#reveal-status").await, "Copied to the clipboard.");
    // What the clipboard holds now is the token.
    b.cdp(
        "Browser.grantPermissions",
        json!({ "origin": base, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"] }),
    )
    .await;
    let pasted = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             navigator.clipboard.readText().then(done, e => done('failed: ' + e))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(pasted, json!(secret), "the clipboard after Copy");

    b.click("#reveal-download").await;
    let file = b.downloaded("gateway-fleet-token.txt").await;
    assert_eq!(file.trim_end(), secret);
    // The downloaded token works against the API, within its scope.
    assert_eq!(
        api_status(&base, &format!("/applications/{app_id}"), file.trim()),
        200
    );
    assert_eq!(
        api_status(
            &base,
            &format!("/applications/{app_id}/tokens"),
            file.trim()
        ),
        200
    );
    let (status, _) = http(
        &base,
        "PATCH",
        &format!("/applications/{app_id}"),
        Some(file.trim()),
        Some(r#"{"name":"renamed"}"#),
    );
    assert_eq!(
        status, 403,
        "the custom scope does not include application.patch"
    );
    assert!(
        b.text("#reveal-status")
            .await
            .contains("gateway-fleet-token.txt")
    );
    b.shot("token-reveal-downloaded").await;

    // Close Window needs the checkbox.
    b.click("#reveal-saved").await;
    assert!(close.is_enabled().await.unwrap());
    b.click("#reveal-saved").await;
    assert!(!close.is_enabled().await.unwrap());
    b.click("#reveal-saved").await;
    b.shot("token-reveal-confirmed").await;
    b.nav("#reveal-close").await;
    b.wait_path("the list", |p| p == list_path).await;
    assert!(
        !b.source().await.contains(&secret),
        "the token is never shown again"
    );
    b.client.back().await.unwrap();
    assert!(!b.source().await.contains(&secret), "not even after Back");
    b.goto(&format!("{base}{list_path}")).await;

    // A second token: all permissions, default expiry.
    b.click_link("Add Application Token").await;
    b.type_into("#token-name", "CI deploy").await;
    b.nav("#create-token").await;
    let second = b.prop("#reveal-token", "value").await;
    assert!(second.starts_with("tgat_") && second != secret);
    // Reloading the page that shows it: the secret is not shown again and no token is added.
    b.client.refresh().await.unwrap();
    b.find("#token-count").await;
    assert!(
        !b.source().await.contains(&second),
        "a reload does not show the secret again"
    );
    assert!(b.source().await.contains("shown once already"));
    assert_eq!(b.text("#token-count").await, "2 items");
    b.shot("token-reveal-reloaded").await;
    b.goto(&format!("{base}{list_path}")).await;
    b.wait_path("the list", |p| p == list_path).await;

    // 2 again: the list.
    assert_eq!(b.text("#token-count").await, "2 items");
    assert_eq!(b.token_names().await, ["CI deploy", "Gateway fleet"]);
    let rows = b
        .js("return [...document.querySelectorAll('#tokens tbody tr')].map(r => [...r.querySelectorAll('td')].map(td => td.innerText.trim()))")
        .await;
    assert_eq!(rows[0][0], "CI deploy\nAll permissions");
    assert_eq!(rows[1][0], "Gateway fleet\nCustom permissions");
    assert_eq!(rows[0][1], ADMIN_EMAIL);
    assert_eq!(rows[1][2], "never");
    assert_ne!(rows[0][2], "never", "the default expiry is a date");
    // Gateway fleet was used above (download check); CI deploy never.
    assert_eq!(rows[0][3], "never used");
    assert_ne!(rows[1][3], "never used");
    b.shot("tokens-list").await;

    b.nav("#sort-name").await;
    b.wait_path("descending order", |p| p.contains("dir=desc"))
        .await;
    assert_eq!(b.token_names().await, ["Gateway fleet", "CI deploy"]);
    b.shot("tokens-sorted-desc").await;
    b.nav("#sort-name").await;
    b.wait_path("ascending order", |p| !p.contains("dir=desc"))
        .await;
    assert_eq!(b.token_names().await, ["CI deploy", "Gateway fleet"]);

    b.type_into("#filter", "fleet").await;
    b.nav(".filter button[type=submit]").await;
    b.wait_path("the filter", |p| p.contains("q=fleet")).await;
    assert_eq!(b.token_names().await, ["Gateway fleet"]);
    assert_eq!(b.text("#token-count").await, "1 item matching “fleet”");
    b.shot("tokens-filtered").await;
    b.click_link("Clear").await;
    b.wait_path("no filter", |p| p == list_path).await;

    // 5. The toggle: inactive → the API answers 401; and back (from the keyboard).
    let probe = format!("/applications/{app_id}");
    b.nav("tr:nth-child(2) .status-switch").await;
    b.wait_path("the toggle", |p| p.ends_with("notice=deactivated"))
        .await;
    assert!(!b.checked("tr:nth-child(2) .status-switch").await);
    assert!(b.checked("tr:nth-child(1) .status-switch").await);
    assert_eq!(api_status(&base, &probe, &secret), 401);
    assert_eq!(api_status(&base, &probe, &second), 200);
    b.shot("tokens-toggled-inactive").await;
    b.nav_keys("tr:nth-child(2) .status-switch", " ").await;
    b.wait_path("the toggle", |p| p.ends_with("notice=activated"))
        .await;
    assert!(b.checked("tr:nth-child(2) .status-switch").await);
    assert_eq!(api_status(&base, &probe, &secret), 200);

    // The detail page.
    b.click_link("Gateway fleet").await;
    assert_eq!(b.text("h1").await, "Gateway fleet");
    assert_eq!(
        b.text("#scope-title").await,
        "Permissions: Custom permissions"
    );
    let scope = b.text("#scope").await;
    for line in [
        "application.get",
        "applicationApiTokens.get",
        "applicationApiTokens.post",
        &format!("GET /applications/{app_id}/tokens"),
        "Actions added in the future are not included.",
    ] {
        assert!(scope.contains(line), "scope lacks {line}: {scope}");
    }
    assert!(!scope.contains("application.patch"));
    assert_eq!(b.text("#token-expires").await, "Never");
    assert_eq!(b.text("#token-creator").await, ADMIN_EMAIL);
    assert_eq!(
        b.prop("#token-description", "value").await,
        "Reports state from the east wing"
    );
    b.check_labels_and_width("token detail").await;
    b.shot("token-detail").await;

    b.type_into("#token-name", "Gateway fleet (east)").await;
    b.click("#status-inactive").await;
    b.nav("#save-token").await;
    b.wait_path("saved", |p| p.ends_with("notice=saved")).await;
    assert_eq!(b.text("h1").await, "Gateway fleet (east)");
    assert_eq!(b.text("#token-status").await, "Inactive");
    assert_eq!(api_status(&base, &probe, &secret), 401);
    b.shot("token-detail-saved").await;
    b.click("#status-active").await;
    b.nav("#save-token").await;
    b.wait_path("saved", |p| p.ends_with("notice=saved")).await;
    assert_eq!(b.text("#token-status").await, "Active");
    assert_eq!(api_status(&base, &probe, &secret), 200);

    // Delete, with a confirmation.
    b.nav("#delete-token").await;
    assert!(
        b.text(".alert-error")
            .await
            .contains("Gateway fleet (east)")
    );
    b.shot("token-delete-confirm").await;
    b.nav("#confirm-delete").await;
    b.wait_path("the list", |p| p.ends_with("notice=deleted"))
        .await;
    assert_eq!(b.token_names().await, ["CI deploy"]);
    assert_eq!(api_status(&base, &probe, &secret), 401);
    // …and from the list's delete icon, cancelling first.
    b.nav("a[aria-label='Delete CI deploy']").await;
    b.nav("#cancel-delete").await;
    assert_eq!(b.text("h1").await, "CI deploy");
    b.goto(&format!("{base}{list_path}")).await;
    b.nav("a[aria-label='Delete CI deploy']").await;
    b.nav("#confirm-delete").await;
    b.wait_path("the list", |p| p.ends_with("notice=deleted"))
        .await;
    assert_eq!(b.text("#token-count").await, "0 items");
    assert_eq!(api_status(&base, &probe, &second), 401);
    b.shot("tokens-all-deleted").await;

    // 6. Log out: the session is ended on the server, not just forgotten.
    assert_eq!(api_status(&base, "/me", &session), 200);
    b.nav(".account button[type=submit]").await;
    b.wait_path("the login page", |p| p.starts_with("/console/login"))
        .await;
    assert!(b.source().await.contains("You have logged out."));
    b.shot("logged-out").await;
    assert_eq!(api_status(&base, "/me", &session), 401);
    b.goto(&format!("{base}{list_path}")).await;
    b.wait_path("the login page", |p| p.starts_with("/console/login"))
        .await;

    // Neither secrets nor the password reached the server's log.
    let log = server.log();
    assert!(log.contains("API token created"), "the log is the server's");
    for s in [
        secret.as_str(),
        second.as_str(),
        session.as_str(),
        ADMIN_PASSWORD,
    ] {
        assert!(!log.contains(s), "the server log contains a secret");
    }
}

// ---------------------------------------------------------------------------------------
// A phone-sized screen, every control labelled.

async fn console_reads_well_on_a_phone() {
    within(phone_flow()).await;
}

async fn phone_flow() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let base = server.url.clone();
    let mut b = Browser::start("console_on_a_phone", dir.path()).await;
    b.resize(390, 844).await;

    let admin = admin_token(&base);
    let app = api_json(
        &base,
        "POST",
        "/applications",
        Some(&admin),
        json!({ "name": "Greenhouse sensors with a rather long name", "description": "East wing" }),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (name, scope) in [
        (
            "Dashboard vendor (read only)",
            json!(["all.Application.read"]),
        ),
        ("Deploy pipeline", json!(["all.Application"])),
        ("Token reader", json!(["applicationApiTokens.get"])),
    ] {
        api_json(
            &base,
            "POST",
            &format!("/applications/{app}/tokens"),
            Some(&admin),
            json!({ "name": name, "scope": scope, "expirationDate": "2031-06-01T12:00:00.000Z" }),
        );
    }

    b.goto(&format!("{base}/console/login")).await;
    assert_eq!(b.js("return window.innerWidth").await, json!(390));
    b.check_labels_and_width("login").await;
    b.log_in(&base, ADMIN_EMAIL, ADMIN_PASSWORD, Some("login"))
        .await;
    b.check_labels_and_width("applications").await;
    b.shot("applications").await;
    b.click_link("Greenhouse sensors with a rather long name")
        .await;
    b.check_labels_and_width("overview").await;
    b.shot("application-overview").await;
    b.click_link("Security").await;
    b.check_labels_and_width("tokens").await;
    assert_eq!(b.text("#token-count").await, "3 items");
    b.shot("tokens").await;
    b.click_link("Dashboard vendor (read only)").await;
    b.check_labels_and_width("token detail").await;
    assert!(
        b.text("#scope")
            .await
            .contains("It also gets every read action added in the future.")
    );
    b.shot("token-detail").await;
    b.click_link("Application API Tokens").await;
    b.click_link("Add Application Token").await;
    b.click("#scope-custom").await;
    b.check_labels_and_width("add token, custom").await;
    b.shot("token-new-custom").await;

    // From the keyboard alone: type, move with Tab, choose with the arrow keys and Space.
    b.find("#token-name")
        .await
        .send_keys("Keyboard made")
        .await
        .unwrap();
    b.find("#scope-custom")
        .await
        .send_keys("\u{E013}")
        .await
        .unwrap(); // ArrowUp → Read only
    assert!(b.checked("#scope-read").await);
    b.find("#expiry-at")
        .await
        .send_keys("\u{E013}")
        .await
        .unwrap(); // ArrowUp → Never
    assert!(b.checked("#expiry-never").await);
    b.nav_keys("#create-token", "\u{E007}").await; // Enter
    let secret = b.prop("#reveal-token", "value").await;
    assert!(secret.starts_with("tgat_"));
    b.shot("token-reveal").await;
    assert_eq!(
        b.js("return document.activeElement.id").await,
        json!("reveal-token"),
        "the dialog takes the focus"
    );
    b.find("#reveal-saved").await.send_keys(" ").await.unwrap();
    b.nav_keys("#reveal-close", "\u{E007}").await;
    b.wait_path("the list", |p| p.ends_with("/tokens")).await;
    assert_eq!(b.text("#token-count").await, "4 items");
    b.shot("tokens-after-keyboard").await;
    let (status, body) = http(
        &base,
        "GET",
        &format!("/applications/{app}/tokens"),
        Some(&secret),
        None,
    );
    assert_eq!(status, 200, "{body}");
}

// ---------------------------------------------------------------------------------------
// Read-only members, and errors as messages on the page.

async fn read_only_members_and_error_messages_in_the_browser() {
    within(read_only_flow()).await;
}

async fn read_only_flow() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let base = server.url.clone();

    // An organization with a viewer, an application and one token.
    let admin = admin_token(&base);
    let org = api_json(
        &base,
        "POST",
        "/orgs",
        Some(&admin),
        json!({ "name": "Plant 2" }),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let added = Command::new(binary())
        .args([
            "user",
            "add",
            "--email",
            "viewer@example.com",
            "--password",
            "viewer-password-1",
        ])
        .env("TOLLGATE_DATABASE_URL", &server.database_url)
        .env("TOLLGATE_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    api_json(
        &base,
        "POST",
        &format!("/orgs/{org}/invites"),
        Some(&admin),
        json!({ "email": "viewer@example.com", "role": "view" }),
    );
    // Invitations are pending until the invitee accepts.
    let viewer = api_json(
        &base,
        "POST",
        "/auth/user",
        None,
        json!({ "email": "viewer@example.com", "password": "viewer-password-1" }),
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let invites = api_json(&base, "GET", "/me/invites", Some(&viewer), json!(null));
    let invite = invites[0]["id"].as_str().unwrap().to_owned();
    api_json(
        &base,
        "POST",
        &format!("/me/invites/{invite}"),
        Some(&viewer),
        json!({ "action": "accept" }),
    );
    let app = api_json(
        &base,
        "POST",
        "/applications",
        Some(&admin),
        json!({ "name": "Line 3", "orgId": org }),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api_json(
        &base,
        "POST",
        &format!("/applications/{app}/tokens"),
        Some(&admin),
        json!({ "name": "Dashboard vendor", "scope": ["all.Application.read"] }),
    );

    let mut b = Browser::start("read_only_and_errors", dir.path()).await;
    b.log_in(&base, "viewer@example.com", "viewer-password-1", None)
        .await;
    assert!(b.text(".list").await.contains("Plant 2"));
    b.click_link("Line 3").await;
    b.click_link("Security").await;
    assert_eq!(b.token_names().await, ["Dashboard vendor"]);
    assert!(
        b.text("#read-only-note")
            .await
            .contains("does not allow changing them")
    );
    let controls = b
        .js("return [document.querySelectorAll('#add-token, .status-switch, .cell-delete a').length, document.querySelector('.status').textContent]")
        .await;
    assert_eq!(controls, json!([0, "Active"]));
    b.shot("tokens-read-only").await;
    b.click_link("Dashboard vendor").await;
    assert!(
        b.source()
            .await
            .contains("Your role allows you to see this token but not to change it.")
    );
    assert_eq!(
        b.js("return document.querySelectorAll('#save-token, #delete-token, input[name=name]').length")
            .await,
        json!(0)
    );
    b.shot("token-read-only").await;

    // Forbidden: a page that says why, not JSON.
    b.goto(&format!("{base}/console/applications/{app}/tokens/new"))
        .await;
    assert_eq!(b.text("h1").await, "Not allowed");
    assert!(
        b.text(".alert-error")
            .await
            .contains("Your role here (view) does not allow applicationApiTokens.post")
    );
    b.shot("forbidden").await;

    // Not found.
    b.goto(&format!("{base}/console/applications/{}", "0".repeat(24)))
        .await;
    assert_eq!(b.text("h1").await, "Not found");
    b.shot("not-found").await;

    // A form whose CSRF token was tampered with is refused, on a page.
    b.goto(&format!("{base}/console/applications")).await;
    b.js("document.querySelector('.account input[name=csrf]').value = 'forged'")
        .await;
    b.nav(".account button[type=submit]").await;
    assert_eq!(b.text("h1").await, "This form has expired");
    b.shot("csrf-refused").await;

    // An ended session sends the person to the login page with a message, and back after.
    let ended =
        tollgate_core::secret::Secret::generate(tollgate_core::secret::SecretKind::UserSession);
    b.client.delete_cookie("tollgate_session").await.unwrap();
    let stale = fantoccini::cookies::Cookie::parse(format!(
        "tollgate_session={}; Domain=127.0.0.1; Path=/; HttpOnly; SameSite=Strict",
        ended.expose()
    ))
    .unwrap();
    b.client.add_cookie(stale).await.unwrap();
    b.goto(&format!("{base}/console/applications/{app}/tokens"))
        .await;
    b.wait_path("the login page", |p| p.starts_with("/console/login"))
        .await;
    assert_eq!(
        b.text(".alert-info").await,
        "Your session has ended: log in again to continue."
    );
    b.shot("session-ended").await;
    b.type_into("#email", "viewer@example.com").await;
    b.type_into("#password", "viewer-password-1").await;
    b.nav("button[type=submit]").await;
    b.wait_path("the page asked for", |p| {
        p == format!("/console/applications/{app}/tokens")
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// The account pages: name, password, two-factor authentication.

/// The TOTP code of a base32 key at `unix_secs` (the authenticator app's side).
fn totp_code(key: &str, unix_secs: u64) -> String {
    let secret = totp_rs::Secret::try_from_base32(key).expect("the key is base32");
    totp_rs::Builder::new()
        .with_secret(secret.as_bytes().to_vec())
        .build_noncompliant()
        .generate(unix_secs)
        .to_string()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn account_password_and_two_factor_in_the_browser() {
    within(account_flow()).await;
}

async fn account_flow() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let base = server.url.clone();
    let mut b = Browser::start("account_password_and_two_factor", dir.path()).await;
    let login_status = |password: &str, code: Option<&str>| {
        let mut body = json!({ "email": ADMIN_EMAIL, "password": password });
        if let Some(c) = code {
            body["twoFactorCode"] = json!(c);
        }
        http(&base, "POST", "/auth/user", None, Some(&body.to_string())).0
    };

    // The name.
    b.log_in(&base, ADMIN_EMAIL, ADMIN_PASSWORD, None).await;
    b.click_link("Account").await;
    assert_eq!(b.path().await, "/console/account");
    assert_eq!(b.text("#account-email").await, ADMIN_EMAIL);
    b.check_labels_and_width("account").await;
    b.shot("account").await;
    b.type_into("#first-name", "Grace").await;
    b.type_into("#last-name", "Hopper").await;
    b.nav("#save-profile").await;
    assert_eq!(b.text("#account-notice").await, "Your name was saved.");
    assert_eq!(b.prop("#last-name", "value").await, "Hopper");

    // The password: a confirmation that differs, then a weak one, are refused in place.
    let other = admin_token(&base);
    b.type_into("#current-password", ADMIN_PASSWORD).await;
    b.type_into("#new-password", "Grace-passw0rd!").await;
    b.type_into("#confirm-password", "Grace-passw0rd?").await;
    b.nav("#change-password").await;
    assert_eq!(
        b.text("#password-error").await,
        "The new password and its confirmation differ."
    );
    b.type_into("#current-password", ADMIN_PASSWORD).await;
    b.type_into("#new-password", "weakweakweakweak").await;
    b.type_into("#confirm-password", "weakweakweakweak").await;
    b.nav("#change-password").await;
    assert!(b.text("#password-error").await.contains("upper-case"));
    b.shot("password-refused").await;
    b.type_into("#current-password", ADMIN_PASSWORD).await;
    b.type_into("#new-password", "Grace-passw0rd!").await;
    b.type_into("#confirm-password", "Grace-passw0rd!").await;
    b.nav("#change-password").await;
    assert!(
        b.text("#account-notice")
            .await
            .contains("Your password was changed")
    );
    b.shot("password-changed").await;
    // The other session ended; this browser goes on with a new one.
    assert_eq!(api_status(&base, "/me", &other), 401);
    assert_eq!(login_status(ADMIN_PASSWORD, None), 401);
    assert_eq!(login_status("Grace-passw0rd!", None), 200);
    let session = b
        .client
        .get_named_cookie("tollgate_session")
        .await
        .unwrap()
        .value()
        .to_owned();
    assert_eq!(api_status(&base, "/me", &session), 200);

    // Two-factor authentication: the key, a wrong code, the right one, the recovery codes.
    b.nav("#setup-2fa").await;
    b.check_labels_and_width("two-factor set-up").await;
    let key = b.text("#totp-key").await;
    assert_eq!(key.len(), 52);
    assert!(
        b.prop("#totp-uri", "href")
            .await
            .starts_with("otpauth://totp/Tollgate:")
    );
    b.shot("two-factor-setup").await;
    b.type_into("#enable-password", "Grace-passw0rd!").await;
    b.type_into("#enable-code", "000000").await;
    b.nav("#enable-2fa").await;
    assert!(b.text("#twofactor-error").await.contains("twoFactorCode"));
    assert_eq!(
        b.text("#totp-key").await,
        key,
        "the same key is offered again"
    );
    let now = unix_now();
    b.type_into("#enable-password", "Grace-passw0rd!").await;
    b.type_into("#enable-code", &totp_code(&key, now)).await;
    b.nav("#enable-2fa").await;
    let codes = b
        .js("return [...document.querySelectorAll('#recovery-codes code')].map(c => c.textContent)")
        .await;
    let codes: Vec<String> = codes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    b.shot("recovery-codes").await;
    assert_eq!(
        api_status(&base, "/me", &session),
        200,
        "this session goes on"
    );
    b.nav("#codes-done").await;
    assert!(b.text("#twofactor-status").await.starts_with("On."));

    // Log out, and in again: the password alone is not enough.
    b.nav(".account button[type=submit]").await;
    b.goto(&format!("{base}/console/login")).await;
    b.type_into("#email", ADMIN_EMAIL).await;
    b.type_into("#password", "Grace-passw0rd!").await;
    b.nav("button[type=submit]").await;
    assert!(b.text("#login-error").await.contains("two-factor"));
    b.shot("login-needs-code").await;
    b.type_into("#password", "Grace-passw0rd!").await;
    b.type_into("#two-factor-code", &totp_code(&key, now + 30))
        .await;
    b.nav("button[type=submit]").await;
    b.wait_path("the applications", |p| !p.starts_with("/console/login"))
        .await;

    // Turn it off with a recovery code.
    b.click_link("Account").await;
    b.type_into("#disable-password", "Grace-passw0rd!").await;
    b.type_into("#disable-code", &codes[0]).await;
    b.nav("#disable-2fa").await;
    assert_eq!(
        b.text("#account-notice").await,
        "Two-factor authentication is off."
    );
    assert!(b.text("#twofactor-status").await.starts_with("Off."));
    assert_eq!(login_status("Grace-passw0rd!", None), 200);

    let log = server.log();
    for s in [key.as_str(), codes[1].as_str(), "Grace-passw0rd!"] {
        assert!(!log.contains(s), "the server log contains a secret");
    }
}

// ---------------------------------------------------------------------------------------
// Issue 14: the add form's restrictions, in plain words, each optional.

async fn restricted_token_through_the_form_in_the_browser() {
    within(restricted_flow()).await;
}

async fn restricted_flow() {
    use crate::common::process::http as wire;
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let base = server.url.clone();
    let session = wire::admin_session(&base);
    let app = wire::post(&base, "/applications", &session, json!({ "name": "Plant" })).expect(201);
    let app = app["id"].as_str().unwrap().to_owned();
    let mut b = Browser::start("restricted_token", dir.path()).await;
    b.log_in(&base, ADMIN_EMAIL, ADMIN_PASSWORD, None).await;
    b.goto(&format!("{base}/console/applications/{app}/tokens/new"))
        .await;
    b.check_labels_and_width("add token with restrictions")
        .await;
    b.type_into("#token-name", "Gateway north").await;
    b.type_into("#device-tags", "site=north").await;
    b.type_into("#allowed-addresses", "127.0.0.0/33").await;
    b.type_into("#rate-requests", "10").await;
    b.type_into("#rate-seconds", "1").await;
    b.type_into("#usage-limit", "500").await;
    b.nav("#create-token").await;
    // Refused beside the field, with what was typed kept.
    let error = b.text("#restrictions-error").await;
    assert!(error.contains("allowedAddresses[0]"), "{error}");
    assert_eq!(b.prop("#device-tags", "value").await, "site=north");
    assert_eq!(b.prop("#usage-limit", "value").await, "500");
    b.shot("token-restrictions-refused").await;
    b.find("#allowed-addresses").await.clear().await.unwrap();
    b.type_into("#allowed-addresses", "127.0.0.0/8\n::1").await;
    b.nav("#create-token").await;
    let secret = b.prop("#reveal-token", "value").await;
    assert!(secret.starts_with("tgat_"), "{secret}");

    // The token works from here and carries every restriction.
    wire::get(&base, &format!("/applications/{app}"), &secret).expect(200);
    let list = wire::get(&base, &format!("/applications/{app}/tokens"), &session).expect(200);
    let t = &list["items"][0];
    assert_eq!(
        t["deviceTags"],
        json!([{ "key": "site", "value": "north" }])
    );
    assert_eq!(t["allowedAddresses"], json!(["127.0.0.0/8", "::1/128"]));
    assert_eq!(t["rateLimit"], json!({ "requests": 10, "perSeconds": 1 }));
    assert_eq!(t["usageLimit"], 500);
    assert_eq!(t["usesRemaining"], 499);
    // And the detail page says so in plain words.
    b.goto(&format!(
        "{base}/console/applications/{app}/tokens/{}",
        t["id"].as_str().unwrap()
    ))
    .await;
    let shown = b.text("#restrictions").await;
    for line in [
        "Only devices tagged site=north",
        "Only from 127.0.0.0/8, ::1/128",
        "At most 10 requests every 1 s",
        "At most 500 requests in total",
        "Uses remaining: 499",
    ] {
        assert!(shown.contains(line), "{line} in {shown}");
    }
    b.shot("token-restrictions-detail").await;
}

// ---------------------------------------------------------------------------------------
// Token lifecycle (issue 15): expiry warnings, Expired tokens, the Roll button.

async fn token_lifecycle_in_the_browser() {
    within(lifecycle_flow()).await;
}

async fn lifecycle_flow() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let base = server.url.clone();
    let login = api_json(
        &base,
        "POST",
        "/auth/user",
        None,
        json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }),
    );
    let admin = login["token"].as_str().unwrap().to_owned();
    let app = api_json(
        &base,
        "POST",
        "/applications",
        Some(&admin),
        json!({ "name": "Plant" }),
    );
    let app = app["id"].as_str().unwrap().to_owned();
    let now = tollgate_store::now_ms();
    let iso = tollgate_server::time::iso;
    let token = |name: &str, expires: i64| {
        api_json(
            &base,
            "POST",
            &format!("/applications/{app}/tokens"),
            Some(&admin),
            json!({ "name": name, "expirationDate": iso(expires) }),
        )
    };
    let soon = token("soon", now + 5 * 86_400_000 + 3_600_000);
    let brief = token("brief", now + 1_500);
    let probe = format!("/applications/{app}");
    let old_secret = soon["token"].as_str().unwrap().to_owned();
    let brief_secret = brief["token"].as_str().unwrap().to_owned();
    crate::common::eventually("brief to expire", Duration::from_secs(20), || async {
        (api_status(&base, &probe, &brief_secret) == 401).then_some(())
    })
    .await;

    let mut b = Browser::start("token_lifecycle", dir.path()).await;
    b.log_in(&base, ADMIN_EMAIL, ADMIN_PASSWORD, None).await;
    b.goto(&format!("{base}/console/applications/{app}/tokens"))
        .await;
    let rows = b
        .js("return [...document.querySelectorAll('#tokens tr.token-row')].map(r => [r.querySelector('.row-title').textContent, r.querySelector('[data-label=Expires]').textContent.replace(/\\s+/g, ' ').trim(), r.querySelector('[data-label=Active]').textContent.replace(/\\s+/g, ' ').trim(), !!r.querySelector('.status-switch')])")
        .await;
    b.shot("tokens-expiring-and-expired").await;
    let rows = rows.as_array().unwrap();
    let row = |n: &str| rows.iter().find(|r| r[0] == n).unwrap().clone();
    assert!(
        row("soon")[1]
            .as_str()
            .unwrap()
            .ends_with("Expires in 5 days"),
        "{rows:?}"
    );
    assert_eq!(row("soon")[3], true, "a live token has its switch");
    assert_eq!(row("brief")[2], "Expired", "{rows:?}");
    assert_eq!(
        row("brief")[3],
        false,
        "an expired token is never shown as Active"
    );

    // The detail page: Active, Expires in 5 days, and Roll with a choice of overlap.
    b.click_link("soon").await;
    assert_eq!(b.text("#token-status").await, "Active");
    assert_eq!(
        b.prop("#token-expires-in", "textContent").await,
        "Expires in 5 days"
    );
    let overlaps = b
        .js("return [...document.querySelectorAll('#roll-overlap option')].map(o => o.value)")
        .await;
    assert_eq!(overlaps, json!(["0", "3600", "86400", "604800"]));
    b.check_labels_and_width("token detail with roll").await;
    b.js("document.getElementById('roll-overlap').value = '3600'; return null")
        .await;
    b.shot("token-roll").await;
    b.nav("#roll-token").await;
    b.wait_path("the reveal", |p| p.contains("/tokens/reveal/"))
        .await;
    let new_secret = b.prop("#reveal-token", "value").await;
    assert!(new_secret.starts_with("tgat_") && new_secret != old_secret);
    b.shot("token-rolled-reveal").await;
    // Both work during the overlap.
    assert_eq!(api_status(&base, &probe, &new_secret), 200);
    assert_eq!(api_status(&base, &probe, &old_secret), 200);
    b.goto(&format!("{base}/console/applications/{app}/tokens"))
        .await;
    assert_eq!(b.token_names().await, ["brief", "soon", "soon"]);
    // The old one says it retires in an hour and offers no second roll; the new one names it.
    let old_id = soon["id"].as_str().unwrap();
    b.goto(&format!(
        "{base}/console/applications/{app}/tokens/{old_id}"
    ))
    .await;
    assert!(
        b.text("#token-retires")
            .await
            .contains("keeps working until")
    );
    assert_eq!(
        b.prop("#token-expires-in", "textContent").await,
        "Expires in 59 minutes"
    );
    assert!(!b.source().await.contains("id=\"roll-token\""));
    b.shot("token-retiring").await;
    let list = api_json(
        &base,
        "GET",
        &format!("/applications/{app}/tokens?sortField=name"),
        Some(&admin),
        json!(null),
    );
    let new_id = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["rolledFromId"] == old_id)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    b.goto(&format!(
        "{base}/console/applications/{app}/tokens/{new_id}"
    ))
    .await;
    assert_eq!(b.text("#token-rolled-from").await, old_id);
    b.shot("token-rolled-from").await;
    assert!(!server.log().contains(&new_secret), "no secret in the log");
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(restricted_token_through_the_form_in_the_browser)
            .once()
            .needs(Need::Chromium),
        case!(token_lifecycle_in_the_browser)
            .once()
            .needs(Need::Chromium),
        case!(owner_manages_application_tokens_in_the_browser)
            .once()
            .needs(Need::Chromium),
        case!(console_reads_well_on_a_phone)
            .once()
            .needs(Need::Chromium),
        case!(read_only_members_and_error_messages_in_the_browser)
            .once()
            .needs(Need::Chromium),
        case!(account_password_and_two_factor_in_the_browser)
            .once()
            .needs(Need::Chromium),
    ]
}
