//! The hook through which every check of a login factor is counted.
//!
//! Logging in (`auth.authenticateUser`, the console's login form) and the account actions that
//! ask for the password again (`me.changePassword`, `me.enableTwoFactorAuth`,
//! `me.disableTwoFactorAuth`) call [`LoginThrottle::check`] before they check a password or a
//! two-factor code and [`LoginThrottle::record`] with the outcome, so a throttle sees guesses of
//! the second factor exactly as it sees guesses of the password. The server's throttle is
//! plugged in through [`AppState`](crate::AppState); [`NoThrottle`] counts nothing.

use crate::error::ApiError;

/// Which factor is being checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Factor {
    Password,
    /// A TOTP code or a recovery code.
    SecondFactor,
}

/// One check of one factor for one account.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    /// The account, as given (the throttle normalizes it as it likes).
    pub email: &'a str,
    pub factor: Factor,
}

pub trait LoginThrottle: Send + Sync {
    /// Before the factor is checked: an error (429 with when to retry) refuses the attempt
    /// without checking anything.
    fn check(&self, attempt: &Attempt<'_>) -> Result<(), ApiError>;
    /// After the factor was checked: `ok` is whether it was right.
    fn record(&self, attempt: &Attempt<'_>, ok: bool);
}

/// Counts nothing, refuses nothing.
pub struct NoThrottle;

impl LoginThrottle for NoThrottle {
    fn check(&self, _: &Attempt<'_>) -> Result<(), ApiError> {
        Ok(())
    }
    fn record(&self, _: &Attempt<'_>, _: bool) {}
}
