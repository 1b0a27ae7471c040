//! The console's part of the token lifecycle (issue 15): what a token's detail page says
//! about its state, expiry, retirement and origin, and the Roll button. Rolling goes through
//! `service::lifecycle::roll`, the function the REST API calls, and shows the new secret
//! once through the same reveal page as a creation.

use axum::extract::{Path, State};
use axum::response::Response;
use tollgate_core::Action;
use tollgate_store::tokens::TokenRecord;

use super::form::FormData;
use super::session::Session;
use super::view::When;
use super::{PageError, allowed, app_access, parse_id};
use crate::error::ApiError;
use crate::service::lifecycle::{self, RollRequest, State as Life};
use crate::state::AppState;

/// The overlaps the Roll form offers (seconds, label).
pub const OVERLAPS: &[(i64, &str)] = &[
    (0, "None: the old token stops at once"),
    (3_600, "1 hour"),
    (86_400, "1 day"),
    (604_800, "7 days"),
];

/// What the detail page shows about a token's lifecycle.
pub struct LifeView {
    /// Active, Inactive, Expired, Retired.
    pub state_label: &'static str,
    pub state_on: bool,
    /// "Expires in 5 days".
    pub expires_in: Option<String>,
    pub expiring_soon: bool,
    pub retires_at: Option<When>,
    /// The old token's detail link and id, for a rolled token.
    pub rolled_from: Option<(String, String)>,
    pub deactivation_reason: Option<String>,
    /// The Roll form is offered (the user may roll, and the token is active and not rolled).
    pub can_roll: bool,
    pub roll_href: String,
    pub overlaps: Vec<(i64, &'static str)>,
}

impl LifeView {
    pub async fn of(state: &AppState, session: &Session, t: &TokenRecord) -> LifeView {
        let now = tollgate_store::now_ms();
        let life = Life::of(t, now);
        let base = format!("{}/applications/{}/tokens", super::BASE, t.application_id);
        LifeView {
            state_label: life.label(),
            state_on: life == Life::Active,
            expires_in: lifecycle::expires_in(t.expiration_date, now),
            expiring_soon: state
                .leads()
                .expiring_soon(t.application_id, t.expiration_date, now),
            retires_at: t.life.retires_at.map(When::at),
            rolled_from: t
                .life
                .rolled_from
                .map(|id| (format!("{base}/{id}"), id.to_string())),
            deactivation_reason: t.life.deactivation_reason.clone(),
            can_roll: life == Life::Active
                && t.life.retires_at.is_none()
                && allowed(
                    state,
                    session,
                    Action::ApplicationApiTokenRoll,
                    t.application_id,
                )
                .await,
            roll_href: format!("{base}/{}/roll", t.id),
            overlaps: OVERLAPS.to_vec(),
        }
    }
}

/// The Roll form: a new token with the same settings and a new secret (shown once, as after
/// a creation); the old one keeps working for the chosen overlap.
pub async fn roll(
    State(state): State<AppState>,
    session: Session,
    Path((app, token)): Path<(String, String)>,
    form: FormData,
) -> Result<Response, PageError> {
    session.check_csrf(&form)?;
    let app = parse_id(&app, "Application")?;
    let token = parse_id(&token, "API token")?;
    let access = app_access(&state, &session, Action::ApplicationApiTokenRoll, app).await?;
    let overlap_seconds = form
        .get("overlap")
        .and_then(|o| o.parse::<i64>().ok())
        .filter(|o| OVERLAPS.iter().any(|(s, _)| s == o))
        .ok_or_else(|| {
            PageError::Api(ApiError::validation("Choose one of the offered overlaps"))
        })?;
    let request = RollRequest {
        overlap_seconds,
        expiration_date: None,
    };
    let (new, _old, secret) = lifecycle::roll(&state, &access, token, request).await?;
    super::tokens::reveal_once(&state, &session, access.application(), &new, &secret).await
}
