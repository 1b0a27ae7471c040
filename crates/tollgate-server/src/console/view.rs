//! Small pieces the templates share.

use chrono::{DateTime, Months, NaiveDateTime, Utc};

/// The logged-in person in the page header (with the CSRF token the logout form needs).
#[derive(Clone, Debug)]
pub struct UserBar {
    pub email: String,
    pub csrf: String,
}

/// A moment, shown in UTC by the server and in the reader's local time by the script.
#[derive(Clone, Debug)]
pub struct When {
    /// ISO 8601 with milliseconds, for `<time datetime>`.
    pub iso: String,
    /// `2026-11-29 03:21 UTC`, for readers without the script.
    pub text: String,
}

impl When {
    pub fn at(ms: i64) -> When {
        let dt = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
        When {
            iso: crate::time::iso(ms),
            text: dt.format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }

    /// [`When::at`] to the second (a token's recent requests).
    pub fn at_seconds(ms: i64) -> When {
        let dt = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
        When {
            iso: crate::time::iso(ms),
            text: dt.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        }
    }
}

/// The application header: its name and which part of it a page belongs to.
#[derive(Clone, Debug)]
pub struct AppNav {
    pub id: String,
    pub name: String,
    /// `overview` or `security`.
    pub section: &'static str,
}

/// `applicationApiTokens` → `Application API Tokens`; `timeSeriesQuery` → `Time Series Query`.
pub fn humanize(camel: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut current = String::new();
    for c in camel.chars() {
        if c.is_uppercase() && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
        .into_iter()
        .map(|w| match w.to_ascii_lowercase().as_str() {
            "api" => "API".to_owned(),
            "id" => "ID".to_owned(),
            _ => {
                let mut chars = w.chars();
                chars.next().map_or_else(String::new, |f| {
                    f.to_uppercase().collect::<String>() + chars.as_str()
                })
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Percent-encode a query-string value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The value of a `datetime-local` input for `ms` (in UTC: the script replaces it with the
/// reader's local time).
pub fn datetime_local(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

/// One year after `ms`, as the expiry the new-token form suggests.
pub fn one_year_after(ms: i64) -> i64 {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .and_then(|d| d.checked_add_months(Months::new(12)))
        .map_or(ms + 365 * 24 * 3600 * 1000, |d| d.timestamp_millis())
}

/// Parse a `datetime-local` value as UTC (used when the browser did not convert it).
pub fn parse_datetime_local(s: &str) -> Option<i64> {
    [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s.trim(), f).ok())
    .map(|d| d.and_utc().timestamp_millis())
}

/// A safe file name for a token download: letters, digits, `-` and `_` only.
pub fn file_name(token_name: &str) -> String {
    let mut s: String = token_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let s = s.trim_matches('-');
    let s = if s.is_empty() { "application" } else { s };
    format!("{}-token.txt", &s[..s.len().min(60)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_like_words() {
        assert_eq!(humanize("applicationApiTokens"), "Application API Tokens");
        assert_eq!(humanize("timeSeriesQuery"), "Time Series Query");
        assert_eq!(humanize("get"), "Get");
        assert_eq!(humanize(""), "");
    }

    #[test]
    fn urlencoding_keeps_paths_readable() {
        assert_eq!(
            urlencode("/console/applications?q=a b&x=é"),
            "/console/applications%3Fq%3Da%20b%26x%3D%C3%A9"
        );
    }

    #[test]
    fn datetime_local_round_trips_in_utc() {
        let ms = crate::time::parse_iso("2027-03-04T05:06:00.000Z").unwrap();
        assert_eq!(datetime_local(ms), "2027-03-04T05:06");
        assert_eq!(parse_datetime_local("2027-03-04T05:06"), Some(ms));
        assert_eq!(parse_datetime_local("2027-03-04T05:06:00"), Some(ms));
        assert_eq!(parse_datetime_local("next tuesday"), None);
        assert_eq!(
            crate::time::iso(one_year_after(ms)),
            "2028-03-04T05:06:00.000Z"
        );
        assert_eq!(When::at(ms).text, "2027-03-04 05:06 UTC");
    }

    #[test]
    fn download_names_are_safe() {
        assert_eq!(file_name("CI deploy (prod)"), "ci-deploy-prod-token.txt");
        assert_eq!(file_name("../../etc"), "etc-token.txt");
        assert_eq!(file_name("ümlaut"), "mlaut-token.txt");
        assert_eq!(file_name("***"), "application-token.txt");
    }
}
