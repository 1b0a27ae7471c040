//! Dates on the wire: ISO 8601, UTC, milliseconds (`2026-11-29T03:21:00.000Z`).

use chrono::{DateTime, SecondsFormat, Utc};

/// Format milliseconds since the epoch.
pub fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parse an RFC 3339 date-time (any offset) into milliseconds since the epoch.
pub fn parse_iso(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_millis_in_utc() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse_iso("2026-11-29T04:21:00.123+01:00"),
            Some(1_795_922_460_123)
        );
        assert_eq!(iso(1_795_922_460_123), "2026-11-29T03:21:00.123Z");
        assert_eq!(parse_iso("tomorrow"), None);
    }
}
