//! Webhook delivery (issue 15, item 4): the worker that sends queued token events.
//!
//! The queue is the store's (`tollgate_store::webhooks`: one delivery per event and
//! endpoint, queued by the audit entry of the change in its own transaction). [`deliver_due`]
//! claims due deliveries with one conditional statement, so two nodes (or two workers) never
//! both send one, POSTs each event with a timeout and records the outcome under its claim:
//! a 2xx answer is delivered; anything else (another status, a refused connection, a
//! timeout) is tried again after 30 s, then 60 s, doubling up to 1 h between attempts, until
//! an attempt fails 24 h or more after the first one: then the delivery is failed. A
//! delivery claimed by a node that died is claimed again once its claim lapses (60 s).
//! [`spawn`] runs [`deliver_due`] at an interval (`--webhook-interval-ms`).
//!
//! **Signing** (Stripe's replay-safe scheme): the header
//! `Tollgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed with
//! the endpoint's signing secret (the whole `tgwh_…` string, as UTF-8). A receiver recomputes
//! the HMAC over the raw body, compares in constant time, and refuses a `t` older than its
//! tolerance (docs/webhooks.md: 5 minutes), which stops replays of a captured request.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;
use tollgate_store::StoreError;
use tollgate_store::webhooks::{Claimed, Next, Outcome};

use crate::state::AppState;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Tollgate-Signature";

/// How deliveries are attempted.
#[derive(Clone, Debug)]
pub struct DeliveryPolicy {
    /// The wait after the first failed attempt; each further failure doubles it.
    pub first_retry: Duration,
    /// The longest wait between attempts.
    pub max_retry: Duration,
    /// An attempt that fails this long (or longer) after the first one fails the delivery.
    pub give_up_after: Duration,
    /// How long one POST may take, connection included.
    pub timeout: Duration,
    /// How long a claim holds (longer than `timeout`): a worker that dies mid-send leaves
    /// its deliveries to be claimed again after this.
    pub claim_for: Duration,
    /// Deliveries claimed (and sent concurrently) at once.
    pub batch: i64,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            first_retry: Duration::from_secs(30),
            max_retry: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
            claim_for: Duration::from_secs(60),
            batch: 32,
        }
    }
}

impl DeliveryPolicy {
    /// The wait after the `attempts`-th failed attempt (1: the first).
    pub fn retry_delay(&self, attempts: i64) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        self.first_retry
            .saturating_mul(1u32 << doublings)
            .min(self.max_retry)
    }
}

/// Why [`deliver_due`] stopped (a failed attempt is not an error: it is recorded on its
/// delivery).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the delivery queue could not be read or written")]
    Store(#[from] StoreError),
}

/// `t=<t>,v1=<hex HMAC-SHA256 of "<t>.<body>">` keyed with `secret`.
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", to_hex(&mac(secret, t, body)))
}

fn mac(secret: &[u8], t: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Does `header` sign `body` with `secret`, made within `tolerance` of `now` (unix seconds)?
/// What a receiver does (docs/webhooks.md has it in Python); compared in constant time.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance: i64) -> bool {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.push(v.to_owned()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now - t).abs() > tolerance {
        return false;
    }
    let expected = to_hex(&mac(secret, t, body));
    sigs.iter().any(|s| {
        s.len() == expected.len()
            && s.bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// One client for every delivery: http, and https verified against the Mozilla root
/// certificates (webpki-roots, built in: the host's store is not read).
fn client() -> &'static Client<Https, String> {
    static CLIENT: OnceLock<Client<Https, String>> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https)
    })
}

/// POST `body` to `url`: the receiver's status, or why there was none (never holding the
/// secret or the body).
async fn post(
    url: &str,
    body: String,
    signature: String,
    event: &Claimed,
    timeout: Duration,
) -> Result<u16, String> {
    let uri: hyper::Uri = url.parse().map_err(|_| "the URL is not valid".to_owned())?;
    let request = hyper::Request::post(uri)
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("Tollgate-Webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .header(SIGNATURE_HEADER, signature)
        .header("Tollgate-Event-Id", event.delivery.event_id.to_hex())
        .header("Tollgate-Event-Type", &event.delivery.event_type)
        .body(body)
        .map_err(|_| "the request could not be built".to_owned())?;
    match tokio::time::timeout(timeout, client().request(request)).await {
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        Ok(Err(e)) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            Err(text.chars().take(300).collect())
        }
        Ok(Ok(response)) => Ok(response.status().as_u16()),
    }
}

/// Send one claimed delivery and record the outcome. Returns whether it was delivered.
async fn attempt(
    state: &AppState,
    policy: &DeliveryPolicy,
    claimed: Claimed,
) -> Result<bool, DeliveryError> {
    let d = &claimed.delivery;
    let sent = match state
        .secret_key()
        .open(d.webhook_id, &claimed.secret_sealed)
    {
        Ok(secret) => {
            let t = tollgate_store::now_ms() / 1000;
            let signature = sign(&secret, t, claimed.delivery.payload.as_bytes());
            post(
                &claimed.url,
                claimed.delivery.payload.clone(),
                signature,
                &claimed,
                policy.timeout,
            )
            .await
        }
        Err(e) => {
            tracing::warn!(webhook = %d.webhook_id, error = %e, "cannot open a webhook signing secret");
            Err("the signing secret cannot be opened with this server's secret key".into())
        }
    };
    let at = tollgate_store::now_ms();
    let attempts = d.attempts + 1;
    let first = d.first_attempt_at.unwrap_or(at);
    let (status_code, error) = match &sent {
        Ok(code) if (200..300).contains(code) => (Some(i64::from(*code)), None),
        Ok(code) => (
            Some(i64::from(*code)),
            Some(format!("the receiver answered {code}")),
        ),
        Err(e) => (None, Some(e.clone())),
    };
    let delivered = error.is_none();
    let next = if delivered {
        Next::Delivered
    } else if at - first >= policy.give_up_after.as_millis() as i64 {
        Next::Failed
    } else {
        Next::RetryAt(at + policy.retry_delay(attempts).as_millis() as i64)
    };
    tracing::info!(
        webhook = %d.webhook_id,
        event = %d.event_id,
        event_type = %d.event_type,
        attempts,
        status_code,
        outcome = ?next,
        "webhook delivery attempted"
    );
    let outcome = Outcome {
        at,
        status_code,
        error,
        next,
    };
    if !state.store().finish_delivery(&claimed, &outcome).await? {
        tracing::warn!(webhook = %d.webhook_id, event = %d.event_id, "a webhook delivery's claim lapsed before its outcome was recorded");
    }
    Ok(delivered)
}

/// Send every delivery due now (claiming them batch by batch); returns how many attempts
/// were made. A thin, repeatable step: run it from a loop ([`spawn`]), a lease holder or a
/// test.
pub async fn deliver_due(
    state: &AppState,
    policy: &DeliveryPolicy,
) -> Result<usize, DeliveryError> {
    let mut attempted = 0;
    loop {
        let now = tollgate_store::now_ms();
        let claimed = state
            .store()
            .claim_deliveries(now, policy.claim_for.as_millis() as i64, policy.batch)
            .await?;
        let n = claimed.len();
        if n == 0 {
            return Ok(attempted);
        }
        let results =
            futures_util::future::join_all(claimed.into_iter().map(|c| attempt(state, policy, c)))
                .await;
        for r in results {
            r?;
        }
        attempted += n;
        if (n as i64) < policy.batch {
            return Ok(attempted);
        }
    }
}

/// Run [`deliver_due`] every `every` in the background.
pub fn spawn(
    state: AppState,
    every: Duration,
    policy: DeliveryPolicy,
    holding: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Only the node holding the background jobs' lease delivers (claims would keep two
            // nodes from sending one delivery anyway; the lease keeps the others quiet).
            if !holding.load(Ordering::Relaxed) {
                continue;
            }
            if let Err(e) = deliver_due(&state, &policy).await {
                tracing::warn!(error = %e, "webhook delivery stopped; will retry");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_t_dot_body_and_checks_time() {
        // RFC 4231 test case 2 gives HMAC-SHA256("Jefe", "what do ya want for nothing?").
        let h = mac(b"Jefe", 0, b"");
        assert_eq!(h.len(), 32);
        let known = {
            let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").unwrap();
            m.update(b"what do ya want for nothing?");
            to_hex(&m.finalize().into_bytes())
        };
        assert_eq!(
            known,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let header = sign(b"tgwh_k", 1_700_000_000, b"{\"a\":1}");
        assert!(header.starts_with("t=1700000000,v1="));
        assert!(verify(b"tgwh_k", &header, b"{\"a\":1}", 1_700_000_100, 300));
        assert!(
            !verify(b"tgwh_k", &header, b"{\"a\":2}", 1_700_000_100, 300),
            "tampered body"
        );
        assert!(
            !verify(b"tgwh_x", &header, b"{\"a\":1}", 1_700_000_100, 300),
            "other secret"
        );
        assert!(
            !verify(b"tgwh_k", &header, b"{\"a\":1}", 1_700_000_301, 300),
            "too old"
        );
    }

    #[test]
    fn retries_double_from_thirty_seconds_up_to_an_hour() {
        let p = DeliveryPolicy::default();
        let secs: Vec<u64> = (1..=9).map(|n| p.retry_delay(n).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(p.retry_delay(1000).as_secs(), 3600);
    }
}
