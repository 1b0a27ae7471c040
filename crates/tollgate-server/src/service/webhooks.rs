//! The rules of webhook endpoints (issue 15, item 4), for the REST handlers and the console
//! alike: what a valid endpoint is, the signing secret (generated here, shown once, stored
//! sealed with the server's secret key), and the changes made through the store (each
//! audited there).
//!
//! Endpoints are configured by the application's administrators: the server POSTs to the URL
//! they give, wherever it points (no address is refused, loopback and private networks
//! included; only schemes other than http and https, and URLs carrying credentials).

use axum::http::Uri;
use rand::Rng;
use tollgate_store::Id;
use tollgate_store::webhooks::{EVENT_TYPES, NewWebhook, Webhook, WebhookChange};

use crate::auth::two_factor::SecretKey;
use crate::error::ApiError;
use crate::state::AppState;

/// The prefix of a webhook signing secret.
pub const SECRET_PREFIX: &str = "tgwh_";

/// The longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// A signing secret: `tgwh_` and 64 hexadecimal characters (32 random bytes). `Debug` never
/// shows it.
pub struct SigningSecret(String);

impl SigningSecret {
    fn generate() -> SigningSecret {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        SigningSecret(format!("{SECRET_PREFIX}{hex}"))
    }

    /// The secret itself: only for the one answer that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret([redacted])")
    }
}

/// An endpoint URL as given: absolute, `http` or `https`, with a host, without credentials.
pub fn check_url(url: &str) -> Result<String, ApiError> {
    let url = url.trim();
    if url.len() > MAX_URL_LEN {
        return Err(ApiError::validation(format!(
            "url must be at most {MAX_URL_LEN} characters"
        )));
    }
    let bad = || {
        ApiError::validation(
            "url must be an absolute http or https URL, e.g. https://example.com/hooks/tollgate",
        )
    };
    let uri: Uri = url.parse().map_err(|_| bad())?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad()),
    }
    let authority = uri.authority().ok_or_else(bad)?;
    if authority.as_str().contains('@') {
        return Err(ApiError::validation(
            "url must not carry credentials: the receiver checks the Tollgate-Signature header instead",
        ));
    }
    if authority.host().is_empty() {
        return Err(bad());
    }
    Ok(url.to_owned())
}

/// The event types given, each known, without repeats, in the order of [`EVENT_TYPES`];
/// `None`: every type.
pub fn check_events(events: Option<&[String]>) -> Result<Vec<String>, ApiError> {
    let Some(events) = events else {
        return Ok(EVENT_TYPES.iter().map(|e| (*e).to_owned()).collect());
    };
    if let Some(unknown) = events.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
        let unknown: String = unknown.chars().take(64).collect();
        return Err(ApiError::validation(format!(
            "events: {unknown:?} is not an event type; the types are {}",
            EVENT_TYPES.join(", ")
        )));
    }
    if events.is_empty() {
        return Err(ApiError::validation(
            "events must name at least one event type (or be left out for all of them)",
        ));
    }
    Ok(EVENT_TYPES
        .iter()
        .filter(|t| events.iter().any(|e| e == *t))
        .map(|t| (*t).to_owned())
        .collect())
}

/// What a new endpoint is asked to be.
pub struct Request {
    pub url: String,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

fn sealing_failed(e: crate::auth::two_factor::KeyError) -> ApiError {
    tracing::error!(error = %e, "cannot seal a webhook signing secret");
    ApiError::internal()
}

/// Add an endpoint to `application` as `actor`: 201 with its secret, shown this once.
pub async fn create(
    state: &AppState,
    actor: &tollgate_store::Actor,
    application: Id,
    request: Request,
) -> Result<(Webhook, SigningSecret), ApiError> {
    let url = check_url(&request.url)?;
    let events = check_events(request.events.as_deref())?;
    let id = Id::generate();
    let secret = SigningSecret::generate();
    let sealed = state
        .secret_key()
        .seal(id, secret.expose().as_bytes())
        .map_err(sealing_failed)?;
    let new = NewWebhook {
        id,
        url: &url,
        events: &events,
        enabled: request.enabled.unwrap_or(true),
        secret_sealed: &sealed,
    };
    let w = state
        .store()
        .create_webhook(actor, application, &new)
        .await
        .map_err(|e| ApiError::from_store(e, "Webhook"))?;
    Ok((w, secret))
}

/// Change an endpoint's URL, events or switch, as `actor`.
pub async fn update(
    state: &AppState,
    actor: &tollgate_store::Actor,
    application: Id,
    id: Id,
    url: Option<String>,
    events: Option<Vec<String>>,
    enabled: Option<bool>,
) -> Result<Webhook, ApiError> {
    let change = WebhookChange {
        url: url.as_deref().map(check_url).transpose()?,
        events: events
            .as_deref()
            .map(|e| check_events(Some(e)))
            .transpose()?,
        enabled,
    };
    state
        .store()
        .update_webhook(actor, application, id, &change)
        .await
        .map_err(|e| ApiError::from_store(e, "Webhook"))
}

/// The signing secret of an endpoint, opened with the server's key (for the worker).
pub fn open_secret(
    key: &SecretKey,
    id: Id,
    sealed: &str,
) -> Result<Vec<u8>, crate::auth::two_factor::KeyError> {
    key.open(id, sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_or_https_without_credentials() {
        assert!(check_url("https://example.com/hook").is_ok());
        assert!(check_url("http://127.0.0.1:9000/x?y=1").is_ok());
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "example.com/hook",
            "/relative",
            "https://user:pw@example.com/",
            "javascript:alert(1)",
            "",
        ] {
            assert!(check_url(bad).is_err(), "{bad} accepted");
        }
        assert!(check_url(&format!("https://e.com/{}", "a".repeat(MAX_URL_LEN))).is_err());
    }

    #[test]
    fn events_default_to_all_and_unknown_ones_are_refused() {
        assert_eq!(check_events(None).unwrap().len(), EVENT_TYPES.len());
        let some = vec![
            "token.rolled".to_owned(),
            "token.created".to_owned(),
            "token.created".to_owned(),
        ];
        assert_eq!(
            check_events(Some(&some)).unwrap(),
            ["token.created", "token.rolled"]
        );
        assert!(check_events(Some(&["token.nope".to_owned()])).is_err());
        assert!(check_events(Some(&[])).is_err());
    }

    #[test]
    fn a_secret_is_never_shown_by_debug() {
        let s = SigningSecret::generate();
        assert!(s.expose().starts_with(SECRET_PREFIX));
        assert_eq!(s.expose().len(), SECRET_PREFIX.len() + 64);
        assert!(!format!("{s:?}").contains(&s.expose()[5..]));
    }
}
