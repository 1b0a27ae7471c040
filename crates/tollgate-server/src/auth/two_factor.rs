//! Two-factor authentication: TOTP (RFC 6238) codes from an authenticator app, one-time
//! recovery codes, and the key that encrypts TOTP secrets at rest.
//!
//! * Secrets are 32 random bytes (the reference's 52-character base32 `twoFactorAuthKey`),
//!   used with the parameters every authenticator app supports: HMAC-SHA1, 6 digits, 30 s
//!   steps; a code of the step before or after is accepted too (clock drift), and a step is
//!   accepted once only (RFC 6238 §5.2; the store refuses a step not later than the last).
//! * The secret is shown by `me.generateTwoFactorAuth` and never again. In the database it is
//!   encrypted (XChaCha20-Poly1305, the user's id as associated data so a ciphertext cannot be
//!   moved to another user) with the server's secret key: 32 random bytes in a file
//!   (`--secret-key-file`, by default `secret.key` in the data directory), created with mode
//!   0600 the first time a secret is stored. Every node of a deployment needs the same file,
//!   and a restored backup needs it too; each ciphertext names the key it was made with, so a
//!   wrong key is reported as such.
//! * Recovery codes are 16 random base32 characters (80 bits), shown once when two-factor
//!   authentication is enabled and stored as SHA-256 digests: high-entropy random strings, like
//!   tokens, so a slow hash would add nothing. Each works once.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::Rng;
use tollgate_store::Id;
use totp_rs::{Algorithm, Builder, Totp};

/// How many recovery codes a user gets when enabling two-factor authentication.
pub const RECOVERY_CODES: usize = 10;
const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const ISSUER: &str = "Tollgate";

/// Why a secret could not be sealed or opened. Never carries the secret.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or create the secret key file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(
        "the secret key file {path} does not hold a key (64 hexadecimal characters): restore the \
         original file"
    )]
    BadFile { path: PathBuf },
    #[error(
        "this two-factor secret was encrypted with secret key {expected}, and this server's key \
         is {actual}: every node, and a restored backup, needs the same secret key file"
    )]
    WrongKey { expected: String, actual: String },
    #[error("a stored two-factor secret is damaged (it does not decrypt)")]
    Damaged,
}

/// The server's secret key, loaded (or created) on first use.
pub struct SecretKey {
    path: Option<PathBuf>,
    key: Mutex<Option<[u8; 32]>>,
}

impl SecretKey {
    /// The key kept in `path` (created there on first use). `None`: a key that lives only in
    /// memory, for tests; secrets sealed with it do not survive the process.
    pub fn new(path: Option<PathBuf>) -> SecretKey {
        SecretKey {
            path,
            key: Mutex::new(None),
        }
    }

    fn key(&self, create: bool) -> Result<Option<[u8; 32]>, KeyError> {
        let mut slot = self.key.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = *slot {
            return Ok(Some(k));
        }
        let loaded = match &self.path {
            None if create => Some(random_key()),
            None => None,
            Some(path) => load_or_create(path, create)?,
        };
        *slot = loaded;
        Ok(loaded)
    }

    /// Make sure the key can be used (at start-up, so a broken file is reported at once).
    pub fn check(&self) -> Result<(), KeyError> {
        self.key(false).map(drop)
    }

    /// Encrypt `secret` for `user`: `v1:<key id>:<nonce>:<ciphertext>`, all hex.
    pub fn seal(&self, user: Id, secret: &[u8]) -> Result<String, KeyError> {
        let key = self.key(true)?.ok_or(KeyError::Damaged)?;
        let cipher = XChaCha20Poly1305::new(&key.into());
        let nonce = XNonce::generate();
        let aad = user.to_hex();
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| KeyError::Damaged)?;
        Ok(format!(
            "v1:{}:{}:{}",
            key_id(&key),
            to_hex(nonce.as_slice()),
            to_hex(&sealed)
        ))
    }

    /// Decrypt what [`SecretKey::seal`] made for `user`.
    pub fn open(&self, user: Id, sealed: &str) -> Result<Vec<u8>, KeyError> {
        let mut parts = sealed.split(':');
        let (Some("v1"), Some(id), Some(nonce), Some(body), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(KeyError::Damaged);
        };
        let key = self.key(false)?.ok_or_else(|| KeyError::WrongKey {
            expected: id.to_owned(),
            actual: "missing".to_owned(),
        })?;
        if key_id(&key) != id {
            return Err(KeyError::WrongKey {
                expected: id.to_owned(),
                actual: key_id(&key),
            });
        }
        let nonce = from_hex(nonce).ok_or(KeyError::Damaged)?;
        let nonce = XNonce::try_from(nonce.as_slice()).map_err(|_| KeyError::Damaged)?;
        let body = from_hex(body).ok_or(KeyError::Damaged)?;
        let aad = user.to_hex();
        XChaCha20Poly1305::new(&key.into())
            .decrypt(
                &nonce,
                Payload {
                    msg: &body,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| KeyError::Damaged)
    }
}

fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    rand::rng().fill_bytes(&mut k);
    k
}

/// Which key sealed a secret: 8 hex characters of a SHA-256 over the key (reveals nothing).
fn key_id(key: &[u8; 32]) -> String {
    let d = tollgate_core::secret::digest(&format!("tollgate secret key id v1\n{}", to_hex(key)));
    to_hex(&d[..4])
}

fn load_or_create(path: &Path, create: bool) -> Result<Option<[u8; 32]>, KeyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = from_hex(text.trim()).ok_or_else(|| KeyError::BadFile {
                path: path.to_owned(),
            })?;
            let key: [u8; 32] = bytes.try_into().map_err(|_| KeyError::BadFile {
                path: path.to_owned(),
            })?;
            Ok(Some(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = random_key();
            let file_error = |e: std::io::Error| KeyError::File {
                path: path.to_owned(),
                reason: e.to_string(),
            };
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(file_error)?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(path) {
                Ok(mut f) => {
                    f.write_all(format!("{}\n", to_hex(&key)).as_bytes())
                        .and_then(|()| f.sync_all())
                        .map_err(file_error)?;
                    tracing::info!(path = %path.display(), "created the secret key file (back it up with the database)");
                    Ok(Some(key))
                }
                // Another process created it meanwhile: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    load_or_create(path, false)
                }
                Err(e) => Err(file_error(e)),
            }
        }
        Err(e) => Err(KeyError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// A fresh TOTP secret.
pub fn new_secret() -> Vec<u8> {
    random_key().to_vec()
}

/// The TOTP generator for a secret (`account` is shown by the authenticator app).
pub fn totp(secret: &[u8], account: &str) -> Totp {
    let account = account.replace(':', "");
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_skew(1)
        .with_secret(secret.to_vec())
        .with_account_name(account.clone())
        .with_issuer(Some(ISSUER))
        .build()
        .unwrap_or_else(|_| {
            // Only an account name the otpauth URI cannot hold gets here.
            Builder::new()
                .with_secret(secret.to_vec())
                .with_issuer(Some(ISSUER))
                .build_noncompliant()
        })
}

/// What `me.generateTwoFactorAuth` answers: the base32 key and the `otpauth://` URI that
/// authenticator apps read (as a QR code or pasted).
pub fn key_and_uri(secret: &[u8], account: &str) -> (String, String) {
    let t = totp(secret, account);
    let key = t.secret().to_base32();
    let uri = t.to_url().unwrap_or_default();
    (key, uri)
}

/// The time step a TOTP code is valid for now (±1 step), if it is.
pub fn check_code(secret: &[u8], code: &str, now_ms: i64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = u64::try_from(now_ms / 1000).ok()?;
    totp(secret, "")
        .check(&code, now)
        .and_then(|s| i64::try_from(s).ok())
}

/// True if `code` looks like a recovery code rather than a 6-digit TOTP code.
pub fn is_recovery_code(code: &str) -> bool {
    normalize_recovery(code).len() == 16
}

fn normalize_recovery(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The digest a recovery code is stored as.
pub fn recovery_digest(code: &str) -> [u8; 32] {
    tollgate_core::secret::digest(&format!(
        "tollgate recovery code v1\n{}",
        normalize_recovery(code)
    ))
}

/// Fresh recovery codes, formatted `abcd-efgh-ijkl-mnop`.
pub fn new_recovery_codes() -> Vec<String> {
    let mut rng = rand::rng();
    (0..RECOVERY_CODES)
        .map(|_| {
            let chars: Vec<char> = (0..16)
                .map(|_| char::from(RECOVERY_ALPHABET[(rng.next_u32() % 32) as usize]))
                .collect();
            chars
                .chunks(4)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1, 8 digits truncated to the last 6.
        let secret = b"12345678901234567890";
        let t = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(8)
            .with_secret(secret.to_vec())
            .build_noncompliant();
        assert_eq!(t.generate(59).to_string(), "94287082");
        assert_eq!(t.generate(1111111109).to_string(), "07081804");
        // Our 6-digit codes at the same moments.
        let ours = totp(secret, "a@b");
        assert_eq!(ours.generate(59).to_string(), "287082");
        assert_eq!(check_code(secret, "287082", 59_000), Some(1));
        assert_eq!(check_code(secret, "287 082", 59_000), Some(1));
        // One step later still accepted (drift), two steps later not.
        assert_eq!(check_code(secret, "287082", 89_000), Some(1));
        assert_eq!(check_code(secret, "287082", 121_000), None);
        assert_eq!(check_code(secret, "28708", 59_000), None);
        assert_eq!(check_code(secret, "abcdef", 59_000), None);
    }

    #[test]
    fn keys_are_52_base32_characters_and_uris_name_the_issuer() {
        let secret = new_secret();
        let (key, uri) = key_and_uri(&secret, "admin@example.com");
        assert_eq!(key.len(), 52, "{key}");
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        );
        assert!(
            uri.starts_with("otpauth://totp/Tollgate:admin%40example.com?"),
            "{uri}"
        );
        assert!(uri.contains(&format!("secret={key}")), "{uri}");
        assert!(uri.contains("issuer=Tollgate"), "{uri}");
    }

    #[test]
    fn sealed_secrets_open_only_for_their_user_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let key = SecretKey::new(Some(path.clone()));
        key.check().unwrap();
        assert!(
            !path.exists(),
            "the file is created on first use, not at check"
        );
        let user = Id::generate();
        let sealed = key.seal(user, b"totp secret bytes").unwrap();
        assert!(!sealed.contains(&to_hex(b"totp secret bytes")));
        assert_eq!(key.open(user, &sealed).unwrap(), b"totp secret bytes");
        assert!(matches!(
            key.open(Id::generate(), &sealed),
            Err(KeyError::Damaged)
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Another process reading the same file opens it.
        let again = SecretKey::new(Some(path));
        assert_eq!(again.open(user, &sealed).unwrap(), b"totp secret bytes");
        // A different key says so.
        let other = SecretKey::new(Some(dir.path().join("other.key")));
        other.seal(user, b"x").unwrap();
        assert!(matches!(
            other.open(user, &sealed),
            Err(KeyError::WrongKey { .. })
        ));
    }

    #[test]
    fn recovery_codes_are_random_and_normalize() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), RECOVERY_CODES);
        for c in &codes {
            assert_eq!(c.len(), 19, "{c}");
            assert!(is_recovery_code(c));
            assert_eq!(
                recovery_digest(c),
                recovery_digest(&c.to_uppercase().replace('-', " "))
            );
        }
        assert!(!is_recovery_code("123456"));
        assert_ne!(recovery_digest(&codes[0]), recovery_digest(&codes[1]));
    }
}
