//! Token lifecycle (issue 15): expiry warnings, rolling a token with an overlap, and leak
//! reports. The rules are functions of the same three things as `service::tokens` (who
//! acts, the target token as it is now, the request) and reuse its authority rule; the
//! writes are single store intents (`tollgate_store::lifecycle`), so the audit entry for
//! each belongs inside that store write.

use axum::http::HeaderValue;
use axum::response::Response;
use tollgate_core::Scope;
use tollgate_core::secret::{self, Secret, SecretKind};
use tollgate_store::lifecycle::{RollPlan, Rolled};
use tollgate_store::tokens::{TokenRecord, TokenStatus};
use tollgate_store::{Id, Store, now_ms};

use crate::auth::AppAccess;
use crate::error::ApiError;
use crate::service::tokens::{
    Authority, Request, TokenError, TokenRequest, check_authority, check_existing,
};
use crate::state::AppState;
use crate::time::iso;

const DAY_MS: i64 = 86_400_000;

/// The warning lead times when no policy says otherwise: 30, 7 and 1 days before expiry.
/// Requests made within the first carry [`EXPIRES_HEADER`].
pub const DEFAULT_WARNING_LEADS_DAYS: [i64; 3] = [30, 7, 1];

/// The first (longest) warning lead time, in milliseconds.
pub const FIRST_WARNING_LEAD_MS: i64 = DEFAULT_WARNING_LEADS_DAYS[0] * DAY_MS;

/// The response header that warns a token's user of its coming expiry.
pub const EXPIRES_HEADER: &str = "tollgate-token-expires";

/// The longest overlap a roll may give the old token: 7 days.
pub const MAX_OVERLAP_SECONDS: i64 = 604_800;

/// Tokens one leak report may name, at most.
pub const MAX_REPORTED_TOKENS: usize = 1_000;

/// Add [`EXPIRES_HEADER`] to a response to a request made with a token that expires at
/// `expires.0`, if that is within the first warning lead time (`expires.1`, from its
/// application's token policy) from `now` (and not past: an expired token was refused).
/// Called by the guard with the cached token's expiry and the lead times every node keeps in
/// memory: no I/O.
pub fn warn_of_expiry(res: &mut Response, expires: Option<(i64, i64)>, now: i64) {
    if let Some((e, lead)) = expires
        && e > now
        && e - now <= lead
        && let Ok(v) = HeaderValue::from_str(&iso(e))
    {
        res.headers_mut().insert(EXPIRES_HEADER, v);
    }
}

/// What a token is now, as people read it: the stored switch (`status`) is not the whole
/// story, because an expired or retired token is refused whatever its switch says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Active,
    Inactive,
    Expired,
    /// Rolled, and its overlap is over.
    Retired,
}

impl State {
    pub fn of(t: &TokenRecord, now: i64) -> State {
        if t.life.retires_at.is_some_and(|r| r <= now) {
            State::Retired
        } else if t.expiration_date.is_some_and(|e| e <= now) {
            State::Expired
        } else if t.status == TokenStatus::Inactive {
            State::Inactive
        } else {
            State::Active
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Inactive => "inactive",
            State::Expired => "expired",
            State::Retired => "retired",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            State::Active => "Active",
            State::Inactive => "Inactive",
            State::Expired => "Expired",
            State::Retired => "Retired",
        }
    }
}

/// "Expires in 5 days" (whole days, hours or minutes, rounded down), or `None` when the
/// token never expires or has expired.
pub fn expires_in(expires: Option<i64>, now: i64) -> Option<String> {
    let left = expires? - now;
    if left <= 0 {
        return None;
    }
    let (n, unit) = if left >= DAY_MS {
        (left / DAY_MS, "day")
    } else if left >= 3_600_000 {
        (left / 3_600_000, "hour")
    } else if left >= 60_000 {
        (left / 60_000, "minute")
    } else {
        return Some("Expires in less than a minute".to_owned());
    };
    let plural = if n == 1 { "" } else { "s" };
    Some(format!("Expires in {n} {unit}{plural}"))
}

/// The first instant after `now` at which what a token's answer shows about its time (its
/// state, "Expires in …", `expiringSoon`) can change: a rendered answer holds until then.
pub fn next_change(expires: Option<i64>, retires: Option<i64>, now: i64) -> i64 {
    let mut next = i64::MAX;
    let mut at = |x: i64| {
        if x > now && x < next {
            next = x;
        }
    };
    if let Some(r) = retires {
        at(r);
    }
    if let Some(e) = expires {
        at(e);
        at(e - FIRST_WARNING_LEAD_MS);
        let left = e - now;
        // "Expires in n units" holds while `n * unit` ms or more are left.
        for unit in [DAY_MS, 3_600_000, 60_000] {
            if left >= unit {
                at(e - (left / unit) * unit + 1);
                break;
            }
        }
    }
    next
}

/// Whether `expires` falls within the first warning lead time from `now`.
pub fn expiring_soon(expires: Option<i64>, now: i64) -> bool {
    expires.is_some_and(|e| e > now && e - now <= FIRST_WARNING_LEAD_MS)
}

// ---------------------------------------------------------------------------------------
// Roll.

/// A roll as asked for.
#[derive(Clone, Copy, Debug)]
pub struct RollRequest {
    /// How long the old token keeps working, 0 to [`MAX_OVERLAP_SECONDS`].
    pub overlap_seconds: i64,
    /// The new token's expiry: `None` the default (the old token's lifetime length from now,
    /// or never if it never expired); `Some(None)` never; `Some(Some(t))` at `t`.
    pub expiration_date: Option<Option<i64>>,
}

/// Why a token cannot be rolled (besides the authority rule).
fn not_rollable(t: &TokenRecord, now: i64) -> Option<String> {
    if let Some(r) = t.life.retires_at {
        return Some(format!(
            "This API token was rolled already and retires at {}: roll its successor instead",
            iso(r)
        ));
    }
    match State::of(t, now) {
        State::Active => None,
        State::Inactive => Some(
            "This API token is inactive: only an active token can be rolled (activate it, or create a new token)"
                .to_owned(),
        ),
        State::Expired | State::Retired => Some(
            "This API token has expired: only an unexpired token can be rolled (create a new token)"
                .to_owned(),
        ),
    }
}

/// The new token's expiry: as asked, or the old token's lifetime length from now.
fn new_expiry(old: &TokenRecord, asked: Option<Option<i64>>, now: i64) -> Option<i64> {
    match asked {
        Some(e) => e,
        None => old
            .expiration_date
            .map(|e| now + (e - old.creation_date).max(0)),
    }
}

/// Roll token `token_id`: a new token with the same name, description and scope and a new
/// secret; the old one keeps working for the overlap and then retires. The actor must be
/// able to change the old token and to create the new one (the authority rule, both ways).
/// Returns the new token, the old one as the roll left it, and the new secret.
pub async fn roll(
    state: &AppState,
    access: &AppAccess,
    token_id: Id,
    request: RollRequest,
) -> Result<(TokenRecord, TokenRecord, Secret), TokenError> {
    if !(0..=MAX_OVERLAP_SECONDS).contains(&request.overlap_seconds) {
        return Err(ApiError::validation(format!(
            "overlapSeconds must be between 0 and {MAX_OVERLAP_SECONDS} (7 days)"
        ))
        .into());
    }
    let started = now_ms();
    if let Some(Some(e)) = request.expiration_date
        && e <= started
    {
        return Err(TokenError::PastExpiry);
    }
    let authority = Authority::of(access);
    let creator = access.creator(state).await?;
    // The successor is a new token: the application's token policy applies to it.
    let policy = state
        .store()
        .application_policy(access.application())
        .await
        .map_err(|e| ApiError::from_store(e, "Application"))?
        .effective();
    let secret = Secret::generate(SecretKind::ApplicationToken);
    let digest = secret.digest();
    let Rolled { new, old } = state
        .store()
        .roll_token(&access.actor(), access.application(), token_id, |old| {
            let now = now_ms();
            if let Some(why) = not_rollable(old, now) {
                return Err(TokenError::Other(ApiError::validation(why)));
            }
            // The actor may change the old token…
            let keep = tollgate_store::tokens::TokenChange::default();
            check_existing(&authority, old, Request::Change(&keep))?;
            // …and could have created the new one.
            let expiration_date = new_expiry(old, request.expiration_date, now);
            if let Some(why) = crate::service::policy::refuse_new(&policy, expiration_date, now) {
                return Err(TokenError::Other(ApiError::validation(why)));
            }
            let scope = Scope::parse(&old.scope).map_err(TokenError::Scope)?;
            // The successor keeps the old token's restrictions (the store copies them).
            let restrictions =
                tollgate_core::restrictions::Restrictions::from_stored(old.restrictions.as_deref())
                    .map_err(|e| TokenError::Restrictions(vec![e]))?;
            let as_created = TokenRequest {
                name: old.name.clone(),
                description: old.description.clone(),
                scope: Some(old.scope.clone()),
                expiration_date,
                status: TokenStatus::Active,
                restrictions: restrictions.clone(),
                form_key: None,
            };
            check_authority(
                &authority,
                &scope,
                expiration_date,
                &restrictions,
                Request::Create(&as_created),
            )?;
            Ok(RollPlan {
                digest,
                expiration_date,
                creator,
                retires_at: now + request.overlap_seconds * 1000,
            })
        })
        .await?;
    tracing::info!(
        token = %new.id,
        rolled_from = %old.id,
        application = %new.application_id,
        retires_at = old.life.retires_at.unwrap_or_default(),
        "API token rolled"
    );
    Ok((new, old, secret))
}

// ---------------------------------------------------------------------------------------
// Leak reports.

/// Deactivate every live token among `presented` with the reason "reported as leaked".
/// Strings that are not well-formed application tokens (shape and checksum) are skipped
/// without a lookup; the rest are looked up by digest in one store write. Returns how many
/// tokens were switched off (for the log and the operator, never for the anonymous reporter).
pub async fn report_leaks(
    store: &Store,
    presented: &[String],
    by: &tollgate_store::Actor,
) -> Result<Vec<tollgate_store::lifecycle::Revoked>, ApiError> {
    let mut digests: Vec<[u8; 32]> = presented
        .iter()
        .map(|s| s.trim())
        .filter(|s| secret::check(s) == Ok(SecretKind::ApplicationToken))
        .map(secret::digest)
        .collect();
    digests.sort_unstable();
    digests.dedup();
    if digests.is_empty() {
        return Ok(Vec::new());
    }
    let revoked = store.revoke_leaked(by, &digests).await?;
    let by = match (by.kind(), by.client()) {
        ("operator", _) => "operator".to_owned(),
        (_, Some(ip)) => format!("leak report from {ip}"),
        (_, None) => "leak report".to_owned(),
    };
    for t in &revoked {
        tracing::warn!(
            token = %t.id,
            application = %t.application_id,
            by,
            "API token deactivated: reported as leaked"
        );
    }
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_token_shows_about_time_holds_until_next_change() {
        let now = 1_000_000_000_000;
        let shown = |e: Option<i64>, r: Option<i64>, at: i64| {
            let state = if r.is_some_and(|r| r <= at) {
                "retired"
            } else if e.is_some_and(|e| e <= at) {
                "expired"
            } else {
                "active"
            };
            (state, expires_in(e, at), expiring_soon(e, at))
        };
        assert_eq!(next_change(None, None, now), i64::MAX);
        let lead = FIRST_WARNING_LEAD_MS;
        for left in [
            1,
            59_999,
            60_000,
            61_000,
            3_600_000,
            3_600_001,
            DAY_MS - 1,
            DAY_MS,
            DAY_MS + 1,
            5 * DAY_MS + 3_600_000,
            lead,
            lead + 1,
            lead + 2 * DAY_MS + 7,
            400 * DAY_MS,
            -5,
        ] {
            for retires in [None, Some(now + 90_000), Some(now - 1)] {
                let e = Some(now + left);
                let next = next_change(e, retires, now);
                assert!(next > now, "{left}");
                let here = shown(e, retires, now);
                // Unchanged up to the instant before, through every instant sampled.
                for at in [now + 1, (now + next.min(now + 10 * DAY_MS)) / 2, next - 1] {
                    if at < next && at >= now {
                        assert_eq!(shown(e, retires, at), here, "left {left}, at +{}", at - now);
                    }
                }
                if next != i64::MAX {
                    assert_ne!(
                        shown(e, retires, next),
                        here,
                        "left {left}: changes at next"
                    );
                }
            }
        }
    }

    #[test]
    fn expires_in_says_whole_units_rounded_down() {
        let now = 1_000_000_000_000;
        assert_eq!(expires_in(None, now), None);
        assert_eq!(expires_in(Some(now - 1), now), None);
        assert_eq!(
            expires_in(Some(now + 5 * DAY_MS + 3_600_000), now).as_deref(),
            Some("Expires in 5 days")
        );
        assert_eq!(
            expires_in(Some(now + DAY_MS), now).as_deref(),
            Some("Expires in 1 day")
        );
        assert_eq!(
            expires_in(Some(now + 2 * 3_600_000 + 5), now).as_deref(),
            Some("Expires in 2 hours")
        );
        assert_eq!(
            expires_in(Some(now + 61_000), now).as_deref(),
            Some("Expires in 1 minute")
        );
        assert_eq!(
            expires_in(Some(now + 59_000), now).as_deref(),
            Some("Expires in less than a minute")
        );
    }

    #[test]
    fn the_header_is_sent_within_the_first_lead_time_only() {
        let now = 1_000_000_000_000;
        let mut res = Response::new(axum::body::Body::empty());
        warn_of_expiry(
            &mut res,
            Some((now + 31 * DAY_MS, FIRST_WARNING_LEAD_MS)),
            now,
        );
        warn_of_expiry(&mut res, None, now);
        warn_of_expiry(&mut res, Some((now - 1, FIRST_WARNING_LEAD_MS)), now);
        warn_of_expiry(&mut res, Some((now + 8 * DAY_MS, 7 * DAY_MS)), now);
        assert!(res.headers().get(EXPIRES_HEADER).is_none());
        warn_of_expiry(
            &mut res,
            Some((now + 30 * DAY_MS, FIRST_WARNING_LEAD_MS)),
            now,
        );
        assert_eq!(
            res.headers()[EXPIRES_HEADER],
            iso(now + 30 * DAY_MS).as_str()
        );
    }

    #[test]
    fn a_roll_keeps_the_old_lifetime_length_by_default() {
        let old = TokenRecord {
            id: Id::generate(),
            digest: [0; 32],
            application_id: Id::generate(),
            name: "n".into(),
            description: String::new(),
            scope: vec!["all.Application".into()],
            status: TokenStatus::Active,
            expiration_date: Some(10 * DAY_MS),
            creator: tollgate_store::tokens::Creator {
                kind: "user",
                id: Id::generate(),
                name: "u".into(),
            },
            creation_date: 0,
            last_updated: 0,
            last_used: None,
            restrictions: None,
            unleased_uses: None,
            life: Default::default(),
        };
        assert_eq!(new_expiry(&old, None, 4 * DAY_MS), Some(14 * DAY_MS));
        assert_eq!(new_expiry(&old, Some(None), 4 * DAY_MS), None);
        assert_eq!(new_expiry(&old, Some(Some(7)), 4 * DAY_MS), Some(7));
        let never = TokenRecord {
            expiration_date: None,
            ..old.clone()
        };
        assert_eq!(new_expiry(&never, None, 4 * DAY_MS), None);
        assert_eq!(State::of(&old, 10 * DAY_MS), State::Expired);
        assert!(not_rollable(&old, 10 * DAY_MS).is_some());
        assert!(not_rollable(&old, 9 * DAY_MS).is_none());
    }
}
