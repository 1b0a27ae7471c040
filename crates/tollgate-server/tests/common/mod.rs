//! The in-process test application: the real router over a real database, called with
//! `oneshot` (no sockets). SQLite in a temporary directory in the SQLite pass; in the
//! PostgreSQL pass (`TOLLGATE_TEST_BACKEND=postgres`) each test gets a fresh database on
//! `TOLLGATE_TEST_PG_SERVER`.
#![allow(dead_code)]

pub mod console;
pub mod process;
pub mod proxy;

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{Value, json};
use tollgate_core::secret::{Secret, SecretKind};
use tollgate_server::{AppState, Settings};
use tollgate_store::applications::Owner;
use tollgate_store::tokens::{Creator, NewToken, TokenStatus};
use tollgate_store::users::NewUser;
use tollgate_store::{Actor, Id, Store};
use tower::ServiceExt;

/// A response: status, parsed JSON body (Null when empty or not JSON) and headers.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Resp {
    /// Panic with the body unless the status is `expected`.
    #[track_caller]
    pub fn expect(self, expected: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            expected,
            "unexpected status; body: {}",
            self.body
        );
        self.body
    }

    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or("")
    }
}

pub struct TestApp {
    pub state: AppState,
    router: Router,
    pub database_url: String,
    _dir: tempfile::TempDir,
}

/// A password hash computed once: Argon2 per test user would make the suite slow.
pub const PASSWORD: &str = "correct horse battery";
fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        use argon2::password_hash::PasswordHasher;
        argon2::Argon2::default()
            .hash_password(PASSWORD.as_bytes())
            .unwrap()
            .to_string()
    })
}

pub use tollgate_testkit::{eventually, fresh_database_url, fresh_pg_database};

impl TestApp {
    pub async fn new() -> TestApp {
        Self::with_settings(Settings::default()).await
    }

    pub async fn with_settings(settings: Settings) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let database_url = fresh_database_url(dir.path()).await;
        let store = Store::connect_with(&database_url, 4)
            .await
            .expect("open store");
        let state = AppState::new(store, settings);
        let router = tollgate_server::app(state.clone());
        TestApp {
            state,
            router,
            database_url,
            _dir: dir,
        }
    }

    /// The application over a store opened by the test (with its own options), in `dir`.
    pub fn with_store(store: Store, database_url: String, dir: tempfile::TempDir) -> TestApp {
        let state = AppState::new(store, Settings::default());
        let router = tollgate_server::app(state.clone());
        TestApp {
            state,
            router,
            database_url,
            _dir: dir,
        }
    }

    pub fn store(&self) -> &Store {
        self.state.store()
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Send one request. `body` is sent as JSON; `raw` bodies via [`TestApp::send_raw`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let raw = body.map(|b| b.to_string());
        self.send_raw(method, path, token, raw.as_deref(), &[])
            .await
    }

    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("accept", "application/json")
            .header("accept-version", "^1.31.0");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
            .unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            body,
            headers,
        }
    }

    /// GET `path` and read the body as text (for `/metrics`).
    pub async fn raw_text(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut req = Request::builder().method(Method::GET).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let res = self
            .router
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.send(Method::GET, path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.send(Method::POST, path, Some(token), Some(body)).await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.send(Method::PATCH, path, Some(token), Some(body))
            .await
    }
    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.send(Method::DELETE, path, Some(token), None).await
    }

    /// A user with [`PASSWORD`], created directly in the store.
    pub async fn user(&self, email: &str) -> Id {
        self.store()
            .create_user(&NewUser {
                email,
                password_hash: password_hash(),
                first_name: "Test",
                last_name: "User",
            })
            .await
            .unwrap()
            .id
    }

    /// A user and a session token for them, obtained by logging in through the API.
    pub async fn login(&self, email: &str) -> (Id, String) {
        let id = self.user(email).await;
        let body = self
            .send(
                Method::POST,
                "/auth/user",
                None,
                Some(json!({ "email": email, "password": PASSWORD })),
            )
            .await
            .expect(200);
        (id, body["token"].as_str().unwrap().to_owned())
    }

    /// A session for an existing user, created directly in the store (fast).
    pub async fn session_for(&self, user: Id) -> String {
        let secret = Secret::generate(SecretKind::UserSession);
        self.store()
            .create_session(&secret.digest(), user, tollgate_store::now_ms() + 3_600_000)
            .await
            .unwrap();
        secret.expose().to_owned()
    }

    /// The seeded administrator's session and an application ("Plant") they own.
    pub async fn admin_app(&self) -> (String, Id) {
        let (user, session) = self.login("admin@example.com").await;
        let app = self.app_of(user, "Plant").await;
        (session, app)
    }

    /// An application owned by `user`, created directly in the store.
    pub async fn app_of(&self, user: Id, name: &str) -> Id {
        self.store()
            .create_application(
                &Actor::operator(),
                Owner::User(user),
                name,
                "",
                &Default::default(),
            )
            .await
            .unwrap()
            .id
    }

    /// `admin` invites `email` to `org` with `role`, and the invitee (session `member`)
    /// accepts: invitations are pending until accepted.
    /// An organization "Plant" with application "Line 3", its owner's session, and the session
    /// of a member with the view role: `(owner, viewer, application)`.
    pub async fn org_app_with_viewer(&self) -> (String, String, Id) {
        let (_, owner) = self.login("owner@example.com").await;
        let org = self
            .post("/orgs", &owner, json!({ "name": "Plant" }))
            .await
            .expect(201);
        let org_id = org["id"].as_str().unwrap().to_owned();
        let viewer = self.user("viewer@example.com").await;
        let viewer_session = self.session_for(viewer).await;
        self.join_org(
            &org_id,
            &owner,
            "viewer@example.com",
            "view",
            &viewer_session,
        )
        .await;
        let app = self
            .post(
                "/applications",
                &owner,
                json!({ "name": "Line 3", "orgId": org_id }),
            )
            .await
            .expect(201)["id"]
            .as_str()
            .unwrap()
            .parse::<Id>()
            .unwrap();
        (owner, viewer_session, app)
    }

    pub async fn join_org(&self, org: &str, admin: &str, email: &str, role: &str, member: &str) {
        self.post(
            &format!("/orgs/{org}/invites"),
            admin,
            json!({ "email": email, "role": role }),
        )
        .await
        .expect(200);
        let invites = self.get("/me/invites", member).await.expect(200);
        let invite = invites
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["role"] == role)
            .unwrap_or_else(|| panic!("no invitation for {email}: {invites}"));
        let id = invite["id"].as_str().unwrap();
        let answer = self
            .post(
                &format!("/me/invites/{id}"),
                member,
                json!({ "action": "accept" }),
            )
            .await
            .expect(200);
        assert_eq!(answer["result"], "accepted");
    }

    /// A token created directly in the store (bypassing the API's creation rules).
    pub async fn raw_token(
        &self,
        app: Id,
        scope: &[&str],
        status: TokenStatus,
        expires: Option<i64>,
    ) -> (Id, String) {
        let secret = Secret::generate(SecretKind::ApplicationToken);
        let scope: Vec<String> = scope.iter().map(|s| s.to_string()).collect();
        let rec = self
            .store()
            .create_token(
                &Actor::operator(),
                &NewToken {
                    application_id: app,
                    digest: secret.digest(),
                    name: "fixture",
                    description: "",
                    scope: &scope,
                    status,
                    expiration_date: expires,
                    restrictions: None,
                    usage_limit: None,
                    carve_from: None,
                    creator: Creator {
                        kind: "user",
                        id: app,
                        name: "fixture@example.com".into(),
                    },
                },
            )
            .await
            .unwrap();
        (rec.id, secret.expose().to_owned())
    }

    /// A token created through the API by `creator`; returns the creation response.
    pub async fn api_token(&self, creator: &str, app: Id, body: Value) -> Value {
        self.post(&format!("/applications/{app}/tokens"), creator, body)
            .await
            .expect(201)
    }
}

/// The `name` of each item of a list response, in order.
pub fn item_names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("a list response has items")
        .iter()
        .map(|i| {
            i["name"]
                .as_str()
                .expect("every item has a name")
                .to_owned()
        })
        .collect()
}

/// The secret of a token in a creation answer (`token`).
pub fn secret(created: &serde_json::Value) -> String {
    created["token"].as_str().unwrap().to_owned()
}

/// The id in a creation answer.
pub fn id(created: &serde_json::Value) -> String {
    created["id"].as_str().unwrap().to_owned()
}

/// A well-formed (right prefix, length and checksum) token that was never issued.
pub fn unknown_token() -> String {
    Secret::generate(SecretKind::ApplicationToken)
        .expose()
        .to_owned()
}
