//! The bearer-secret parser: any input is classified without panicking, only well-formed
//! secrets pass, and redaction never leaves a secret's shape behind.
use tollgate_core::secret::{self, SECRET_LEN};

/// One input: panics when a property fails.
pub fn check(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(kind) = secret::check(s) {
        assert_eq!(s.len(), SECRET_LEN);
        assert!(s.starts_with(kind.prefix()));
        assert!(s[5..].bytes().all(|b| b.is_ascii_alphanumeric()));
    }
    let _ = secret::digest(s);
    let clean = secret::redact(s);
    let lower = clean.to_ascii_lowercase();
    for prefix in ["tgat_", "tgus_"] {
        let mut rest = lower.as_str();
        while let Some(at) = rest.find(prefix) {
            let after = &rest[at + prefix.len()..];
            assert!(
                !after.starts_with(|c: char| c.is_ascii_alphanumeric()),
                "a prefix followed by letters or digits survived redaction"
            );
            rest = after;
        }
    }
    let mut run = 0;
    for b in clean.bytes() {
        run = if b.is_ascii_alphanumeric() {
            run + 1
        } else {
            0
        };
        assert!(run < secret::REDACT_RUN, "a long run survived redaction");
    }
}
