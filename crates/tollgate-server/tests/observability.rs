//! What operators and browsers see around the API: CORS (`--cors-origin`), the request log
//! (one line per request, JSON or text, no colour in a file, errors with their request), and
//! `/metrics` latency histograms with an optional scraping secret.

use crate::common::TestApp;
use crate::common::process::{ServerProcess, http};
use axum::http::Method;
use serde_json::{Value, json};
use tollgate_server::Settings;
use tollgate_store::tokens::TokenStatus;
use tollgate_testkit::{Case, case};

fn header<'a>(r: &'a crate::common::Resp, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

async fn preflight(t: &TestApp, path: &str, origin: &str) -> crate::common::Resp {
    t.send_raw(
        Method::OPTIONS,
        path,
        None,
        None,
        &[
            ("origin", origin),
            ("access-control-request-method", "PATCH"),
            (
                "access-control-request-headers",
                "authorization,content-type",
            ),
        ],
    )
    .await
}

async fn cors_answers_preflights_for_listed_origins_only() {
    let settings = Settings {
        cors_origins: vec!["https://dash.example.com".into()],
        ..Settings::default()
    };
    let t = TestApp::with_settings(settings).await;
    let (user, session) = t.login("cors@example.com").await;
    let app = t.app_of(user, "A").await;
    let path = format!("/applications/{app}");

    let r = preflight(&t, &path, "https://dash.example.com").await;
    assert_eq!(r.status, 200, "{:?}", r.headers);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://dash.example.com")
    );
    let methods = header(&r, "access-control-allow-methods").unwrap();
    assert!(
        methods.contains("PATCH") && methods.contains("DELETE"),
        "{methods}"
    );
    let headers = header(&r, "access-control-allow-headers").unwrap();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    assert_eq!(header(&r, "access-control-max-age"), Some("600"));
    assert_eq!(header(&r, "access-control-allow-credentials"), None);

    // Another origin gets no permission.
    let r = preflight(&t, &path, "https://evil.example.com").await;
    assert_eq!(header(&r, "access-control-allow-origin"), None);

    // The real request carries the origin's permission and what the page may read.
    let r = t
        .send_raw(
            Method::GET,
            &path,
            Some(&session),
            None,
            &[("origin", "https://dash.example.com")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://dash.example.com")
    );
    assert!(header(&r, "vary").unwrap().contains("origin"));
    assert!(
        header(&r, "access-control-expose-headers")
            .unwrap()
            .contains("x-tollgate-required-action")
    );

    // The console is never shared with other origins.
    let r = t
        .send_raw(
            Method::GET,
            "/console/login",
            None,
            None,
            &[("origin", "https://dash.example.com")],
        )
        .await;
    assert_eq!(header(&r, "access-control-allow-origin"), None);
}

async fn cors_wildcard_never_allows_credentials_and_none_is_the_default() {
    let t = TestApp::with_settings(Settings {
        cors_origins: vec!["*".into()],
        ..Settings::default()
    })
    .await;
    let r = preflight(&t, "/openapi.json", "https://anywhere.example").await;
    assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&r, "access-control-allow-credentials"), None);

    let t = TestApp::new().await;
    let r = preflight(&t, "/openapi.json", "https://anywhere.example").await;
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    assert_eq!(
        r.status, 405,
        "without --cors-origin there is no preflight answer"
    );
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

async fn metrics_have_latency_histograms_per_action_and_class() {
    let t = TestApp::new().await;
    let (user, session) = t.login("m@example.com").await;
    let app = t.app_of(user, "A").await;
    let (_, token) = t
        .raw_token(app, &["application.get"], TokenStatus::Active, None)
        .await;
    for _ in 0..3 {
        t.get(&format!("/applications/{app}"), &token)
            .await
            .expect(200);
    }
    t.get(&format!("/applications/{app}/devices"), &token)
        .await
        .expect(403);
    t.get(&format!("/applications/{app}"), "tgat_nonsense")
        .await
        .expect(401);
    let _ = session;
    let text = raw_metrics(&t).await;
    let ok =
        "tollgate_http_request_duration_seconds_count{action=\"application.get\",class=\"2xx\"}";
    assert_eq!(metric(&text, ok), 3.0);
    let inf = "tollgate_http_request_duration_seconds_bucket{action=\"application.get\",class=\"2xx\",le=\"+Inf\"}";
    assert_eq!(metric(&text, inf), 3.0);
    let refused =
        "tollgate_http_request_duration_seconds_count{action=\"application.get\",class=\"4xx\"}";
    assert_eq!(metric(&text, refused), 1.0);
    let forbidden =
        "tollgate_http_request_duration_seconds_count{action=\"devices.get\",class=\"4xx\"}";
    assert_eq!(metric(&text, forbidden), 1.0);
    // Buckets are cumulative and end at the count.
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("tollgate_http_request_duration_seconds_bucket{action=\"application.get\",class=\"2xx\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), 15);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert!(text.contains("# TYPE tollgate_http_request_duration_seconds histogram"));
    assert!(!text.contains(&token), "no secret in the metrics");
}

async fn raw_metrics(t: &TestApp) -> String {
    t.raw_text("/metrics", None).await.1
}

async fn metrics_can_require_a_scraping_secret() {
    let t = TestApp::with_settings(Settings {
        metrics_token: Some("scrape-secret-0123456789".into()),
        ..Settings::default()
    })
    .await;
    let (status, body) = t.raw_text("/metrics", None).await;
    assert_eq!(status, 401);
    assert!(body.contains("--metrics-token-file"), "{body}");
    assert!(!body.contains("scrape-secret"));
    let (status, _) = t
        .raw_text("/metrics", Some("wrong-secret-0123456789"))
        .await;
    assert_eq!(status, 401);
    let (status, body) = t
        .raw_text("/metrics", Some("scrape-secret-0123456789"))
        .await;
    assert_eq!(status, 200);
    assert!(body.contains("tollgate_credential_checks_total"));
}

/// The log lines of a server process, parsed (each must be one JSON object).
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

async fn one_json_log_line_per_request_with_its_context_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::fresh_database_url(dir.path()).await;
    let server = ServerProcess::start(
        dir.path(),
        &db,
        &[("RUST_LOG", "info"), ("TOLLGATE_LOG_FORMAT", "json")],
    );
    let base = &server.url;
    let session = http::admin_session(base);
    let app = http::post(base, "/applications", &session, json!({ "name": "Logs" })).expect(201);
    let app = app["id"].as_str().unwrap();
    let created = http::post(
        base,
        &format!("/applications/{app}/tokens"),
        &session,
        json!({ "name": "reader", "scope": ["all.Application.read"] }),
    )
    .expect(201);
    let token = created["token"].as_str().unwrap();
    let token_id = created["id"].as_str().unwrap();
    http::get(base, &format!("/applications/{app}"), token).expect(200);
    let unknown = crate::common::unknown_token();
    assert_eq!(
        http::get(base, &format!("/applications/{app}"), &unknown).status,
        401
    );
    assert_eq!(http::get(base, "/no/such/path", token).status, 404);

    // A store failure: the flows table disappears behind the server's back.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db).await.unwrap();
    sqlx::query("DROP TABLE flows")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(
        http::get(base, &format!("/applications/{app}/flows"), token).status,
        500
    );

    // Lines are written after the answer is sent, by the log's writer thread (in order):
    // wait for the last request's line.
    let log = crate::common::eventually(
        "the log line of the failed request",
        std::time::Duration::from_secs(10),
        || async {
            let log = server.log();
            json_lines(&log)
                .iter()
                .any(|l| {
                    l["target"] == "tollgate::request"
                        && l["fields"]["route"] == "/applications/{applicationId}/flows"
                        && l["fields"]["status"] == 500
                })
                .then_some(log)
        },
    )
    .await;
    assert!(!log.contains('\u{1b}'), "no colour codes in a file");
    assert!(!log.contains(token) && !log.contains(&unknown) && !log.contains(&session));
    let lines = json_lines(&log);
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "tollgate::request")
        .collect();
    let find = |route: &str, status: u64| {
        requests
            .iter()
            .find(|l| l["fields"]["route"] == route && l["fields"]["status"] == status)
            .unwrap_or_else(|| panic!("no log line for {route} {status} in {requests:#?}"))
    };
    let ok = find("/applications/{applicationId}", 200);
    assert_eq!(ok["level"], "INFO");
    assert_eq!(ok["fields"]["method"], "GET");
    assert_eq!(ok["fields"]["credential"], "token");
    assert_eq!(ok["fields"]["token"], token_id);
    assert!(ok["fields"]["latency_ms"].as_f64().unwrap() >= 0.0);
    let refused = find("/applications/{applicationId}", 401);
    assert_eq!(refused["fields"]["credential"], "rejected");
    let created = find("/applications/{applicationId}/tokens", 201);
    assert_eq!(created["fields"]["credential"], "user");
    assert_eq!(find("(unmatched)", 404)["fields"]["method"], "GET");
    let failed = find("/applications/{applicationId}/flows", 500);
    assert_eq!(failed["level"], "ERROR");
    assert_eq!(failed["fields"]["message"], "request failed");
    assert_eq!(failed["fields"]["id"], token_id);
    let error = failed["fields"]["error"].as_str().unwrap();
    assert!(error.contains("flows"), "{error}");
    // Exactly one line per request: the 7 requests above (and the start-up health checks).
    let api_lines = requests
        .iter()
        .filter(|l| l["fields"]["route"] != "/health")
        .count();
    assert_eq!(api_lines, 7, "{requests:#?}");
}

async fn text_logs_in_a_file_have_no_colour() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::fresh_database_url(dir.path()).await;
    let server = ServerProcess::start(dir.path(), &db, &[("RUST_LOG", "info")]);
    http::admin_session(&server.url);
    // The line is written after the answer is sent, by the log's writer thread.
    let (log, line) = crate::common::eventually(
        "the request line of the login",
        std::time::Duration::from_secs(10),
        || async {
            let log = server.log();
            let line = log
                .lines()
                .find(|l| l.contains("tollgate::request") && l.contains("route=/auth/user"))?
                .to_owned();
            Some((log, line))
        },
    )
    .await;
    assert!(
        line.contains(" INFO ") && line.contains("status=200"),
        "{line}"
    );
    assert!(!log.contains('\u{1b}'), "no colour codes in a file");
}

pub fn cases() -> Vec<Case> {
    vec![
        case!(cors_answers_preflights_for_listed_origins_only).once(),
        case!(cors_wildcard_never_allows_credentials_and_none_is_the_default).once(),
        case!(metrics_have_latency_histograms_per_action_and_class).once(),
        case!(metrics_can_require_a_scraping_secret).once(),
        case!(
            one_json_log_line_per_request_with_its_context_and_no_secret,
            multi_thread = 2
        ),
        case!(text_logs_in_a_file_have_no_colour, multi_thread = 2).once(),
    ]
}
