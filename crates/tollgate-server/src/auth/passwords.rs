//! Password hashing with Argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes).

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Hash a password into a PHC string. Runs on the blocking pool: it takes tens of ms.
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
    })
    .await?
}

/// Check a password against a stored PHC string. With `None` (no such user) a dummy hash is
/// checked instead, so a wrong email costs as much time as a wrong password.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let dummy;
        let phc = match &stored {
            Some(s) => s.as_str(),
            None => {
                dummy = dummy_hash();
                dummy.as_str()
            }
        };
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && stored.is_some()
    })
    .await
    .unwrap_or(false)
}

/// The rule for a new password, the reference's (`changePassword.newPassword`): at least 12
/// characters, with an upper-case letter, a lower-case letter, a digit and a character that is
/// none of these. The message says what is missing and never repeats the password.
pub fn check_new_password(password: &str) -> Result<(), String> {
    let mut missing = Vec::new();
    if password.chars().count() < 12 {
        missing.push("at least 12 characters");
    }
    if password.chars().count() > 2048 {
        return Err("a password is at most 2048 characters".to_owned());
    }
    if !password.chars().any(|c| c.is_ascii_uppercase()) {
        missing.push("an upper-case letter");
    }
    if !password.chars().any(|c| c.is_ascii_lowercase()) {
        missing.push("a lower-case letter");
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        missing.push("a digit");
    }
    if password.chars().all(|c| c.is_ascii_alphanumeric()) {
        missing.push("a character that is not a letter or digit");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("the new password needs {}", missing.join(", ")))
    }
}

fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| {
            Argon2::default()
                .hash_password(b"tollgate-dummy-password")
                .map(|h| h.to_string())
                .unwrap_or_default()
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_wrong_or_missing_fail() {
        let h = hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains("correct horse"));
        assert!(verify("correct horse".into(), Some(h.clone())).await);
        assert!(!verify("wrong horse".into(), Some(h)).await);
        assert!(!verify("tollgate-dummy-password".into(), None).await);
    }

    #[test]
    fn new_passwords_follow_the_reference_rule() {
        assert!(check_new_password("Correct-horse-9").is_ok());
        let e = check_new_password("short").unwrap_err();
        assert!(
            e.contains("12 characters") && e.contains("upper-case") && e.contains("digit"),
            "{e}"
        );
        assert!(!e.contains("short"));
        assert!(
            check_new_password("alllowercase-9")
                .unwrap_err()
                .contains("upper-case")
        );
        assert!(
            check_new_password("NoSpecialChar99")
                .unwrap_err()
                .contains("not a letter")
        );
    }
}
