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

/// Parse a date-time the way state reports and commands may give one as a string: RFC 3339,
/// or an ISO date-time without an offset (taken as UTC, as most devices mean it), or a date.
pub fn parse_loose(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(ms) = parse_iso(s) {
        return Some(ms);
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

/// Numbers below this are seconds since the epoch, above it milliseconds (1e11 seconds is
/// the year 5138; 1e11 milliseconds is 1973).
const SECONDS_BELOW: f64 = 1e11;

/// The `time` of a state report or command, as the reference accepts it: milliseconds or
/// seconds since the epoch, a negative number of milliseconds before `now`, a date string,
/// or `{"$date": "<ISO date>"}`. `None` when it cannot be read.
pub fn report_time(v: &serde_json::Value, now: i64) -> Option<i64> {
    use serde_json::Value;
    match v {
        Value::Number(n) => {
            let n = n.as_f64()?;
            if !n.is_finite() {
                None
            } else if n < 0.0 {
                Some(now + n.round() as i64)
            } else if n < SECONDS_BELOW {
                Some((n * 1000.0).round() as i64)
            } else if n < 1e15 {
                Some(n.round() as i64)
            } else {
                None
            }
        }
        Value::String(s) => parse_loose(s),
        Value::Object(o) => o.get("$date").and_then(Value::as_str).and_then(parse_loose),
        _ => None,
    }
}

/// A time bound given in a query (`start`, `end`): milliseconds since the epoch, where 0 means
/// now and a negative number is that many milliseconds before now.
pub fn relative_ms(v: i64, now: i64) -> i64 {
    if v <= 0 { now + v } else { v }
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

    #[test]
    fn report_times_in_every_reference_form() {
        use serde_json::json;
        let now = 1_795_922_460_123;
        assert_eq!(
            report_time(&json!(1_476_479_740), now),
            Some(1_476_479_740_000)
        );
        assert_eq!(
            report_time(&json!(1_476_479_740_543i64), now),
            Some(1_476_479_740_543)
        );
        assert_eq!(report_time(&json!(-60000), now), Some(now - 60000));
        assert_eq!(
            report_time(&json!("2016-10-14T21:16:34"), now),
            Some(1_476_479_794_000)
        );
        assert_eq!(
            report_time(&json!({ "$date": "2016-10-14T21:16:34.000Z" }), now),
            Some(1_476_479_794_000)
        );
        assert_eq!(
            report_time(&json!("2016-10-14"), now),
            Some(1_476_403_200_000)
        );
        assert_eq!(report_time(&json!("yesterday"), now), None);
        assert_eq!(report_time(&json!(true), now), None);
        assert_eq!(relative_ms(0, now), now);
        assert_eq!(relative_ms(-1000, now), now - 1000);
        assert_eq!(relative_ms(5, now), 5);
    }
}
