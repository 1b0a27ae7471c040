//! 24-hex-character ids, as the reference API uses, laid out like MongoDB's ObjectId:
//! 4 bytes of creation time (seconds), 5 random bytes chosen once per process, and a 3-byte
//! counter. Ids made by one process therefore sort in creation order (lists break ties by
//! id), and ids from different processes do not collide.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use rand::Rng;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id([u8; 12]);

impl Id {
    pub fn generate() -> Id {
        static PROCESS: OnceLock<[u8; 5]> = OnceLock::new();
        static COUNTER: OnceLock<AtomicU32> = OnceLock::new();
        let process = PROCESS.get_or_init(|| {
            let mut p = [0u8; 5];
            rand::rng().fill_bytes(&mut p);
            p
        });
        let counter = COUNTER
            .get_or_init(|| AtomicU32::new(rand::rng().next_u32()))
            .fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0u8; 12];
        let secs = u32::try_from(crate::now_ms() / 1000).unwrap_or(u32::MAX);
        bytes[..4].copy_from_slice(&secs.to_be_bytes());
        bytes[4..9].copy_from_slice(process);
        bytes[9..].copy_from_slice(&counter.to_be_bytes()[1..]);
        Id(bytes)
    }

    pub fn to_hex(self) -> String {
        self.to_string()
    }
}

impl Id {
    /// The 24 lowercase hexadecimal characters (ids are formatted on every response, so
    /// this avoids the formatting machinery).
    pub fn hex_bytes(&self) -> [u8; 24] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 24];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = HEX[usize::from(b >> 4)];
            out[2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        out
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex_bytes();
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({self})")
    }
}

/// The error for a string that is not 24 hexadecimal characters.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an id is 24 hexadecimal characters")]
pub struct BadId;

impl FromStr for Id {
    type Err = BadId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != 24 {
            return Err(BadId);
        }
        let mut out = [0u8; 12];
        for (i, pair) in b.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16).ok_or(BadId)?;
            let lo = (pair[1] as char).to_digit(16).ok_or(BadId)?;
            out[i] = u8::try_from(hi * 16 + lo).map_err(|_| BadId)?;
        }
        Ok(Id(out))
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Decode an id read from the database.
pub(crate) fn from_db(s: &str) -> crate::Result<Id> {
    s.parse()
        .map_err(|_| crate::StoreError::Corrupt(format!("bad id {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_bad_shapes() {
        let id = Id::generate();
        let s = id.to_string();
        assert_eq!(s.len(), 24);
        assert_eq!(s.parse::<Id>().unwrap(), id);
        assert_eq!(s.to_uppercase().parse::<Id>().unwrap(), id);
        assert_eq!("abc".parse::<Id>(), Err(BadId));
        assert_eq!("zzzzzzzzzzzzzzzzzzzzzzzz".parse::<Id>(), Err(BadId));
        assert_ne!(Id::generate(), Id::generate());
        // Within a second, a process's ids increase (unless the 24-bit counter wraps).
        let ids: Vec<Id> = (0..100).map(|_| Id::generate()).collect();
        let increasing = ids.windows(2).filter(|w| w[0] < w[1]).count();
        assert!(increasing >= 98, "{increasing}");
    }
}
