//! The console's login session: a cookie holding a user-session secret, and the CSRF token
//! derived from it.
//!
//! * The cookie holds the same `tgus_…` secret `POST /auth/user` returns, so it is verified,
//!   cached and revoked exactly like a bearer token. It is `HttpOnly` (no script can read it),
//!   `SameSite=Strict` (no other site can make the browser send it), `Path=/`, and `Secure`
//!   when the server runs with `--secure-cookies` (then it is also named with the `__Host-`
//!   prefix, which browsers only accept from a secure origin with no `Domain`).
//! * The CSRF token is SHA-256 of a fixed label and the session secret: the page can carry it,
//!   it reveals nothing about the secret, every node derives the same value without storing
//!   anything, and it dies with the session. Every POST form carries it in a hidden field.
//! * The login form, which has no session yet, uses a double-submit cookie instead.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use tollgate_core::secret::{self, Digest};
use tollgate_store::Id;
use tollgate_store::users::hex;

use super::form::FormData;
use super::view::UserBar;
use super::{BASE, PageError};
use crate::auth::Principal;
use crate::state::{AppState, Settings};

const SESSION_COOKIE: &str = "tollgate_session";
const LOGIN_COOKIE: &str = "tollgate_login";
const REVEAL_COOKIE: &str = "tollgate_reveal";
/// The hidden field every POST form carries.
pub const CSRF_FIELD: &str = "csrf";

fn cookie_name(settings: &Settings, base: &str) -> String {
    if settings.secure_cookies {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

fn cookie(settings: &Settings, base: &str, value: &str, max_age_secs: i64) -> HeaderValue {
    let mut c = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}",
        cookie_name(settings, base)
    );
    if settings.secure_cookies {
        c.push_str("; Secure");
    }
    // Values are base62 or hex: always a valid header.
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` for a new session that lasts until `expires_ms`.
pub fn session_cookie(settings: &Settings, secret: &str, expires_ms: i64) -> HeaderValue {
    let secs = (expires_ms - tollgate_store::now_ms()).max(0) / 1000;
    cookie(settings, SESSION_COOKIE, secret, secs)
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_session_cookie(settings: &Settings) -> HeaderValue {
    cookie(settings, SESSION_COOKIE, "", 0)
}

/// `Set-Cookie` for the login form's double-submit token.
pub fn login_cookie(settings: &Settings, value: &str) -> HeaderValue {
    cookie(settings, LOGIN_COOKIE, value, 3600)
}

/// `Set-Cookie` that removes the login form's token.
pub fn clear_login_cookie(settings: &Settings) -> HeaderValue {
    cookie(settings, LOGIN_COOKIE, "", 0)
}

/// `Set-Cookie` carrying the one-time pad that unseals a new token's secret on the page the
/// creation redirects to (the database holds only the sealed secret).
pub fn reveal_cookie(settings: &Settings, pad_hex: &str, max_age_secs: i64) -> HeaderValue {
    cookie(settings, REVEAL_COOKIE, pad_hex, max_age_secs)
}

/// `Set-Cookie` that removes the reveal pad.
pub fn clear_reveal_cookie(settings: &Settings) -> HeaderValue {
    cookie(settings, REVEAL_COOKIE, "", 0)
}

/// The reveal pad the request's cookie carries, if any.
pub fn reveal_pad<'a>(settings: &Settings, headers: &'a HeaderMap) -> Option<&'a str> {
    read_cookie(headers, &cookie_name(settings, REVEAL_COOKIE))
}

/// The value of cookie `name` in a request.
fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The session secret the request's cookie carries, if any.
pub fn session_secret<'a>(settings: &Settings, headers: &'a HeaderMap) -> Option<&'a str> {
    read_cookie(headers, &cookie_name(settings, SESSION_COOKIE))
}

/// The login form's double-submit token the request's cookie carries, if any.
pub fn login_token<'a>(settings: &Settings, headers: &'a HeaderMap) -> Option<&'a str> {
    read_cookie(headers, &cookie_name(settings, LOGIN_COOKIE))
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random token for the login form (256 bits, hex).
pub fn new_login_token() -> String {
    let s = secret::Secret::generate(secret::SecretKind::UserSession);
    hex(&s.digest())
}

/// The CSRF token of a session secret.
pub fn csrf_token(session_secret: &str) -> String {
    hex(&secret::digest(&format!(
        "tollgate console csrf v1\n{session_secret}"
    )))
}

/// Compare without an early exit, so timing says nothing about how much matched.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A logged-in person, from the session cookie.
pub struct Session {
    pub principal: Principal,
    pub user_id: Id,
    pub email: String,
    /// The CSRF token forms on this person's pages carry.
    pub csrf: String,
    /// Digest of the session secret (what logout deletes).
    pub digest: Digest,
    /// The browser's address, recorded with the changes it makes (the audit log).
    pub client: Option<std::net::IpAddr>,
}

impl Session {
    /// Refuse a form that does not carry this session's CSRF token.
    pub fn check_csrf(&self, form: &FormData) -> Result<(), PageError> {
        match form.get(CSRF_FIELD) {
            Some(t) if same(t, &self.csrf) => Ok(()),
            _ => {
                tracing::warn!(user = %self.user_id, "console form refused: CSRF token missing or wrong");
                Err(PageError::Csrf)
            }
        }
    }

    /// What the page header shows.
    pub fn bar(&self) -> UserBar {
        UserBar {
            email: self.email.clone(),
            csrf: self.csrf.clone(),
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        // After logging in, come back to the page asked for (a form's page for a POST).
        let next = if parts.method == Method::GET {
            parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned())
        } else {
            format!("{BASE}/applications")
        };
        let Some(secret) = session_secret(state.settings(), &parts.headers) else {
            return Err(PageError::Login {
                next,
                expired: false,
            });
        };
        let (principal, user_id) = match state.credentials().verify(secret).await {
            Ok(Principal::User(entry)) => {
                let id = entry.user_id;
                (Principal::User(entry), id)
            }
            // An application token is not a login.
            Ok(Principal::Token(_)) => {
                return Err(PageError::Login {
                    next,
                    expired: false,
                });
            }
            Err(e) if e.status == axum::http::StatusCode::UNAUTHORIZED => {
                return Err(PageError::Login {
                    next,
                    expired: true,
                });
            }
            Err(e) => return Err(PageError::Api(e)),
        };
        let user = match state.store().user(user_id).await {
            Ok(u) => u,
            Err(tollgate_store::StoreError::NotFound) => {
                return Err(PageError::Login {
                    next,
                    expired: true,
                });
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Session {
            csrf: csrf_token(secret),
            digest: secret::digest(secret),
            principal,
            user_id,
            email: user.email,
            client: parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_have_the_required_attributes() {
        let plain = Settings::default();
        let c = session_cookie(&plain, "tgus_x", tollgate_store::now_ms() + 10_000);
        let c = c.to_str().unwrap();
        assert!(
            c.starts_with("tollgate_session=tgus_x; Path=/; HttpOnly; SameSite=Strict; Max-Age=")
        );
        assert!(!c.contains("Secure"));
        let secure = Settings {
            secure_cookies: true,
            ..Settings::default()
        };
        let c = session_cookie(&secure, "tgus_x", tollgate_store::now_ms() + 10_000);
        let c = c.to_str().unwrap();
        assert!(c.starts_with("__Host-tollgate_session=tgus_x; Path=/; HttpOnly; SameSite=Strict"));
        assert!(c.ends_with("; Secure"));
        assert!(
            clear_session_cookie(&secure)
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("other=1; xtollgate_session=no; tollgate_session=tgus_abc"),
        );
        assert_eq!(session_secret(&Settings::default(), &h), Some("tgus_abc"));
        let secure = Settings {
            secure_cookies: true,
            ..Settings::default()
        };
        assert_eq!(session_secret(&secure, &h), None);
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_hide_the_secret() {
        let a = csrf_token("tgus_aaaa");
        assert_eq!(a.len(), 64);
        assert_eq!(a, csrf_token("tgus_aaaa"));
        assert_ne!(a, csrf_token("tgus_aaab"));
        assert!(!a.contains("aaaa"));
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &csrf_token("tgus_aaab")));
        assert!(!same(&a, &a[..63]));
    }
}
