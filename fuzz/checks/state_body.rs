//! Request-body decoding for `device.sendState` (one report or an array of them): the same
//! path as `extract::Body`, on any bytes. Never panics; a refusal is a 400 whose message has
//! no secret's shape.
use tollgate_server::api::devices::StateBody;
use tollgate_server::extract::decode;

/// One input: panics when a property fails.
pub fn check(data: &[u8]) {
    if let Err(e) = decode::<StateBody>(data) {
        assert_eq!(e.status, 400);
        assert_eq!(tollgate_core::secret::redact(&e.message), e.message);
    }
}
