//! Bounds on the work one request may ask for, checked before any expensive work (parsing
//! aside) and named in the 400 that refuses it. The README's "Limits and hardening" section
//! lists these with every other bound and timeout; keep the two together.

/// Deepest nesting of arrays and objects in a JSON body (checked on the raw bytes, before
/// the body is parsed).
pub const MAX_JSON_DEPTH: usize = 32;
/// Bodies larger than this are decoded and validated on the blocking pool, not on the
/// async workers.
pub const BLOCKING_BODY_BYTES: usize = 16 * 1024;
/// Parameters in one query string.
pub const MAX_QUERY_PARAMS: usize = 200;
/// `tagFilter` entries of `devices.get`. A device must match every entry, one semi-join each,
/// and PostgreSQL's planning time grows steeply with their number: 10 entries plan in about
/// 35 ms, 20 in 170 ms, 160 in 39 s (measured on the 2-core development machine under load).
pub const MAX_TAG_FILTERS: usize = 10;
/// `deviceTags` entries of the data queries (a device matches any of them: cheap to plan).
pub const MAX_DEVICE_TAGS: usize = 20;
/// `deviceClass` values of `devices.get` (there are seven classes).
pub const MAX_DEVICE_CLASSES: usize = 7;
/// `deviceIds` of the data queries.
pub const MAX_DEVICE_IDS: usize = 1000;
/// Attribute names listed in a query (`attributes` of `data.timeSeriesQuery` and of
/// `device.getCompositeState`); a device declares at most 256.
pub const MAX_QUERY_ATTRIBUTES: usize = 256;
/// Scope strings of a new application API token.
pub const MAX_SCOPE_STRINGS: usize = 200;
/// Triggers of one workflow.
pub const MAX_TRIGGERS: usize = 100;
/// Nodes of one workflow.
pub const MAX_NODES: usize = 1000;

use crate::error::ApiError;

/// Refuse a list of `len` items when it is longer than `max`, naming the field and the limit.
pub fn at_most(field: &str, len: usize, max: usize) -> Result<(), ApiError> {
    if len > max {
        Err(ApiError::validation(format!(
            "{field} has {len} entries: at most {max} are allowed"
        )))
    } else {
        Ok(())
    }
}

/// The deepest nesting of arrays and objects in JSON text (strings are skipped), stopping
/// as soon as `limit` is passed. Does not check that the text is JSON.
pub fn json_depth_exceeds(bytes: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_containers_not_brackets_in_strings() {
        assert!(!json_depth_exceeds(br#"{"a":[1,{"b":"[[[[[["}]}"#, 3));
        assert!(json_depth_exceeds(br#"{"a":[1,{"b":[]}]}"#, 3));
        assert!(!json_depth_exceeds(br#"{"a":"\"[[[[","b":[[1]]}"#, 3));
        let deep = "[".repeat(33) + &"]".repeat(33);
        assert!(json_depth_exceeds(deep.as_bytes(), MAX_JSON_DEPTH));
        let ok = "[".repeat(32) + &"]".repeat(32);
        assert!(!json_depth_exceeds(ok.as_bytes(), MAX_JSON_DEPTH));
    }

    #[test]
    fn refusals_name_the_field_and_the_limit() {
        let e = at_most("tagFilter", 933, MAX_TAG_FILTERS).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message,
            "tagFilter has 933 entries: at most 10 are allowed"
        );
        assert!(at_most("tagFilter", 10, MAX_TAG_FILTERS).is_ok());
    }
}
