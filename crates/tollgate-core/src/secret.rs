//! The bearer-secret format, modelled on GitHub's tokens.
//!
//! ```text
//! tgat_ 4Hq9…(43 base62 chars)…Zk 1a2B3c
//! ^^^^^ ^^^^^^^^^^^^^^^^^^^^^^^^^^^ ^^^^^^
//! kind  256 bits of randomness       CRC32 of everything before it, 6 base62 chars
//! ```
//!
//! * The prefix says what the secret is (`tgat_` application API token, `tgus_` user session)
//!   so leaked tokens are easy to recognise, by people and by secret scanners.
//! * 43 base62 characters carry 43·log2(62) ≈ 256.03 bits from the operating system's CSPRNG.
//! * The checksum lets the server refuse a mistyped or truncated secret without any lookup, and
//!   lets scanners skip strings that merely look like tokens.
//!
//! The server stores only [`digest`] (SHA-256) of a secret. A slow password hash would add
//! nothing here: with 256 bits of entropy there is nothing to brute-force, and every request
//! pays for the hash.

use std::fmt;

use rand::Rng;
use sha2::{Digest as _, Sha256};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PREFIX_LEN: usize = 5;
const BODY_LEN: usize = 43;
const CHECK_LEN: usize = 6;
/// Length of every secret, in bytes.
pub const SECRET_LEN: usize = PREFIX_LEN + BODY_LEN + CHECK_LEN;

/// SHA-256 of a secret: the only form in which it is stored.
pub type Digest = [u8; 32];

/// What a secret authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecretKind {
    /// An application API token (`tgat_`).
    ApplicationToken,
    /// A user's login session (`tgus_`), returned by `POST /auth/user` and used by the console.
    UserSession,
}

impl SecretKind {
    pub fn prefix(self) -> &'static str {
        match self {
            SecretKind::ApplicationToken => "tgat_",
            SecretKind::UserSession => "tgus_",
        }
    }
}

/// Why a string is not a well-formed secret. Deliberately without the string itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("the token does not have the length of a Tollgate token")]
    Length,
    #[error("the token does not start with a Tollgate token prefix")]
    Prefix,
    #[error("the token contains characters a Tollgate token never has")]
    Alphabet,
    #[error("the token's checksum does not match: it was mistyped or truncated")]
    Checksum,
}

/// A freshly generated secret. `Debug` and `Display` never print it; use [`Secret::expose`]
/// exactly where it must leave the process (the one response that reveals it).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A new random secret of `kind`.
    pub fn generate(kind: SecretKind) -> Secret {
        let mut rng = rand::rng();
        let mut s = String::with_capacity(SECRET_LEN);
        s.push_str(kind.prefix());
        // Rejection sampling keeps every character uniform: 248 = 4 * 62.
        let mut buf = [0u8; 64];
        while s.len() < PREFIX_LEN + BODY_LEN {
            rng.fill_bytes(&mut buf);
            for b in buf {
                if b < 248 && s.len() < PREFIX_LEN + BODY_LEN {
                    s.push(ALPHABET[usize::from(b % 62)] as char);
                }
            }
        }
        let check = checksum(s.as_bytes());
        s.extend(check.iter().map(|b| char::from(*b)));
        Secret(s)
    }

    /// The secret itself. Call sites are few and reviewed: the creation response, tests.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> Digest {
        digest(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({}…redacted)", &self.0[..PREFIX_LEN])
    }
}

/// Check a presented string's shape and checksum, without allocating or touching any store.
pub fn check(s: &str) -> Result<SecretKind, FormatError> {
    let b = s.as_bytes();
    if b.len() != SECRET_LEN {
        return Err(FormatError::Length);
    }
    let kind = if b.starts_with(SecretKind::ApplicationToken.prefix().as_bytes()) {
        SecretKind::ApplicationToken
    } else if b.starts_with(SecretKind::UserSession.prefix().as_bytes()) {
        SecretKind::UserSession
    } else {
        return Err(FormatError::Prefix);
    };
    if !b[PREFIX_LEN..].iter().all(u8::is_ascii_alphanumeric) {
        return Err(FormatError::Alphabet);
    }
    let (head, tail) = b.split_at(PREFIX_LEN + BODY_LEN);
    if checksum(head) != tail {
        return Err(FormatError::Checksum);
    }
    Ok(kind)
}

/// What [`redact`] puts where a secret was.
pub const REDACTED: &str = "[a secret, not shown]";

/// Shortest run of letters and digits that [`redact`] hides even without a prefix: the random
/// part of a secret is 49 characters, so a run this long is (part of) one, or a digest.
pub const REDACT_RUN: usize = 32;

/// `text` with everything that has a secret's shape replaced by [`REDACTED`]: a secret prefix
/// (`tgat_`, `tgus_`, in any letter case) with the letters and digits that follow it, and
/// any run of [`REDACT_RUN`] or more ASCII letters and digits. Whatever surrounds it (quotes,
/// `Bearer `, spaces, other text) does not matter. Every error message passes through this,
/// so nothing a client sent that could be a secret is ever echoed.
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let b = text.as_bytes();
    let is_prefix = |i: usize| {
        b.len() >= i + PREFIX_LEN
            && [SecretKind::ApplicationToken, SecretKind::UserSession]
                .iter()
                .any(|k| b[i..i + PREFIX_LEN].eq_ignore_ascii_case(k.prefix().as_bytes()))
    };
    let alnum_end = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_alphanumeric() {
            j += 1;
        }
        j
    };
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        // Every cut is at an ASCII byte, so at a character boundary.
        let end = if is_prefix(i) {
            Some(alnum_end(i + PREFIX_LEN))
        } else if b[i].is_ascii_alphanumeric() {
            let j = alnum_end(i);
            if j - i >= REDACT_RUN {
                Some(j)
            } else {
                // A short run, unless a prefix starts inside it ("xtgat_…").
                match (i + 1..j).find(|&k| is_prefix(k)) {
                    Some(k) => {
                        i = k;
                        continue;
                    }
                    None => {
                        i = j;
                        continue;
                    }
                }
            }
        } else {
            None
        };
        match end {
            Some(end) => {
                let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
                o.push_str(&text[copied..i]);
                o.push_str(REDACTED);
                copied = end;
                i = end;
            }
            None => i += 1,
        }
    }
    match out {
        None => std::borrow::Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            std::borrow::Cow::Owned(o)
        }
    }
}

/// SHA-256 of a secret string.
pub fn digest(s: &str) -> Digest {
    Sha256::digest(s.as_bytes()).into()
}

/// CRC32 (IEEE) of `data`, as 6 base62 characters (62^6 > 2^32).
fn checksum(data: &[u8]) -> [u8; CHECK_LEN] {
    let mut n = crc32fast::hash(data);
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_secrets_check_out() {
        for kind in [SecretKind::ApplicationToken, SecretKind::UserSession] {
            let s = Secret::generate(kind);
            assert_eq!(s.expose().len(), SECRET_LEN);
            assert!(s.expose().starts_with(kind.prefix()));
            assert_eq!(check(s.expose()), Ok(kind));
            assert_ne!(s, Secret::generate(kind));
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = Secret::generate(SecretKind::ApplicationToken);
        let shown = format!("{s:?}");
        assert!(!shown.contains(&s.expose()[PREFIX_LEN..PREFIX_LEN + 8]));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn malformed_secrets_are_named_by_their_fault() {
        let good = Secret::generate(SecretKind::ApplicationToken)
            .expose()
            .to_owned();
        assert_eq!(check(&good[1..]), Err(FormatError::Length));
        assert_eq!(
            check(&format!("xxxx_{}", &good[5..])),
            Err(FormatError::Prefix)
        );
        let mut bad = good.clone().into_bytes();
        bad[10] = b'-';
        assert_eq!(
            check(std::str::from_utf8(&bad).unwrap()),
            Err(FormatError::Alphabet)
        );
        assert_eq!(check(""), Err(FormatError::Length));
    }

    #[test]
    fn digest_is_sha256() {
        assert_eq!(
            digest("abc")[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "SHA-256(\"abc\") starts ba7816bf"
        );
    }

    proptest! {
        /// Changing any one character of the random body or checksum is caught.
        #[test]
        fn any_single_typo_is_caught(pos in PREFIX_LEN..SECRET_LEN, ch in 0usize..62) {
            let good = Secret::generate(SecretKind::ApplicationToken).expose().to_owned();
            let mut bytes = good.clone().into_bytes();
            prop_assume!(bytes[pos] != ALPHABET[ch]);
            bytes[pos] = ALPHABET[ch];
            let typo = String::from_utf8(bytes).unwrap();
            prop_assert_eq!(check(&typo), Err(FormatError::Checksum));
        }

        /// Characters are spread over the whole alphabet (no bias toward the first ones).
        #[test]
        fn bodies_use_the_whole_alphabet(_seed in 0u8..4) {
            let mut seen = [false; 62];
            for _ in 0..200 {
                let s = Secret::generate(SecretKind::UserSession);
                for c in s.expose()[PREFIX_LEN..PREFIX_LEN + BODY_LEN].bytes() {
                    seen[ALPHABET.iter().position(|a| *a == c).unwrap()] = true;
                }
            }
            prop_assert!(seen.iter().all(|s| *s));
        }
    }
}
