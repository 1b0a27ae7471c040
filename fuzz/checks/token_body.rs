//! Request-body decoding for `applicationApiTokens.post`: the JSON, stored-text rules,
//! schema and deserialization path of `extract.rs`, on any bytes. Never panics; a refusal is
//! a 400 whose message has no secret's shape.
use tollgate_server::api::tokens::TokenPost;
use tollgate_server::extract::decode;

/// One input: panics when a property fails.
pub fn check(data: &[u8]) {
    if let Err(e) = decode::<TokenPost>(data) {
        assert_eq!(e.status, 400);
        assert_eq!(tollgate_core::secret::redact(&e.message), e.message);
    }
}
