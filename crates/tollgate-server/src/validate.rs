//! Text that is stored: the one set of rules the REST API and the console both apply.
//!
//! * **Every string in a request body** (values and object keys, at any depth: names,
//!   descriptions, tags, device state values and attribute names, command names and payloads,
//!   workflow definitions, kept-but-uninterpreted fields) may not hold a control character
//!   (U+0000–U+001F, U+007F–U+009F) other than tab, line feed and carriage return. NUL cannot
//!   be stored in a PostgreSQL text or JSON column at all, and the others corrupt logs,
//!   terminals and CSV exports. For device state this means every string the report carries,
//!   whatever the attribute's type (a `json` attribute's document included); numbers and
//!   booleans are not text and are not affected.
//! * **Names** (the `name` of an application, token, organization, workflow, device or
//!   command, a device attribute's `name`, a device tag's `key`) are one line: no control
//!   character at all, no bidirectional override or isolate (U+202A–U+202E, U+2066–U+2069,
//!   which make a name display in a different order than it is stored), and not blank or
//!   whitespace only.
//! * **Lengths** are the reference schemas' (`maxLength`), read from the schema itself so the
//!   console enforces exactly what the REST API does.
//!
//! Messages name the field, the code point and its position, never the value.

use std::fmt::Write as _;

use serde_json::Value;

use crate::error::ApiError;
use crate::schemas;

/// Characters that reorder the display of text (embeddings, overrides, isolates).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Control characters allowed in multi-line text.
fn is_line_break_or_tab(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r')
}

fn code(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// A stored string that may span lines (descriptions, tag values, state values, …).
pub fn text(field: &str, value: &str) -> Result<(), ApiError> {
    text_with(|| field.to_owned(), value)
}

/// As [`text`], naming the field only when the value is refused (so that a valid body's
/// object keys cost no message).
fn text_with(field: impl FnOnce() -> String, value: &str) -> Result<(), ApiError> {
    // Every control character this refuses is below U+00A0: plain ASCII text above U+001F
    // other than DEL has none.
    if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(());
    }
    match value
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !is_line_break_or_tab(*c))
    {
        None => Ok(()),
        Some((at, c)) => Err(ApiError::validation(format!(
            "{} contains a control character ({} at character {}): only tab and line \
             breaks are allowed",
            field(),
            code(c),
            at + 1
        ))),
    }
}

/// A name: one line, no control or bidirectional formatting characters, not blank.
pub fn name(field: &str, value: &str) -> Result<(), ApiError> {
    if let Some((at, c)) = value.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(ApiError::validation(format!(
            "{field} contains a control character ({} at character {}): names are one line \
             of printable text",
            code(c),
            at + 1
        )));
    }
    if let Some((at, c)) = value.chars().enumerate().find(|(_, c)| is_bidi_control(*c)) {
        return Err(ApiError::validation(format!(
            "{field} contains a bidirectional formatting character ({} at character {}): it \
             would make the name display differently from what is stored",
            code(c),
            at + 1
        )));
    }
    if value.trim().is_empty() {
        return Err(ApiError::validation(format!(
            "{field} must not be blank: give it at least one visible character"
        )));
    }
    Ok(())
}

/// The `maxLength` the reference schema `schema` gives its property `field`.
pub fn max_length(schema: &str, field: &str) -> Option<usize> {
    schemas::raw(schema)?
        .get("properties")?
        .get(field)?
        .get("maxLength")?
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
}

fn within(schema: &str, field: &str, value: &str) -> Result<(), ApiError> {
    match max_length(schema, field) {
        Some(max) if value.chars().count() > max => Err(ApiError::validation(format!(
            "{field} is longer than {max} characters"
        ))),
        _ => Ok(()),
    }
}

/// A name field of the body schema `schema`: its length limit and the name rules.
pub fn name_field(schema: &str, field: &str, value: &str) -> Result<(), ApiError> {
    within(schema, field, value)?;
    name(field, value)
}

/// A multi-line text field of the body schema `schema`: its length limit and the text rules.
pub fn text_field(schema: &str, field: &str, value: &str) -> Result<(), ApiError> {
    within(schema, field, value)?;
    text(field, value)
}

/// Every string of a request body, by the rules above (run before the schema).
pub fn body(value: &Value) -> Result<(), ApiError> {
    walk(value, &mut String::new(), Role::Top)
}

/// Where a value sits, as far as the name rules care.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The body itself.
    Top,
    /// The body's `tags` array, and one of its elements.
    Tags,
    Tag,
    /// The body's `attributes` array, and one of its elements.
    Attributes,
    Attribute,
    Other,
}

fn walk(value: &Value, path: &mut String, role: Role) -> Result<(), ApiError> {
    match value {
        Value::String(s) => text(field_name(path), s),
        Value::Array(items) => {
            let child = match role {
                Role::Tags => Role::Tag,
                Role::Attributes => Role::Attribute,
                _ => Role::Other,
            };
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                // (Into the path's own buffer: no string per item.)
                let _ = write!(path, "/{i}");
                walk(item, path, child)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (key, item) in map {
                text_with(|| format!("A field name in {}", field_name(path)), key)?;
                let len = path.len();
                path.push('/');
                path.push_str(key);
                let is_name = matches!(
                    (role, key.as_str()),
                    (Role::Top, "name") | (Role::Attribute, "name") | (Role::Tag, "key")
                );
                let child = match (role, key.as_str()) {
                    (Role::Top, "tags") => Role::Tags,
                    (Role::Top, "attributes") => Role::Attributes,
                    _ => Role::Other,
                };
                match item {
                    Value::String(s) if is_name => name(path, s)?,
                    _ => walk(item, path, child)?,
                }
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn field_name(path: &str) -> &str {
    if path.is_empty() { "the body" } else { path }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(v: Value) -> String {
        body(&v).unwrap_err().message.into_owned()
    }

    #[test]
    fn names_refuse_control_bidi_and_blank() {
        assert!(body(&json!({ "name": "Plant floor 3", "description": "a\n\tb\r\n" })).is_ok());
        assert!(
            refused(json!({ "name": "a\u{0}b" }))
                .contains("/name contains a control character (U+0000 at character 2)")
        );
        assert!(refused(json!({ "name": "two\nlines" })).contains("U+000A"));
        assert!(refused(json!({ "name": "abc\u{202E}gnp.exe" })).contains("bidirectional"));
        assert!(refused(json!({ "name": "x\u{2066}" })).contains("U+2066"));
        assert!(refused(json!({ "name": "   " })).contains("/name must not be blank"));
        assert!(refused(json!({ "name": "\u{3000}" })).contains("blank"));
        // Descriptions are multi-line but still refuse other control characters.
        assert!(
            refused(json!({ "name": "n", "description": "bell\u{7}" })).contains("/description")
        );
        assert!(refused(json!({ "name": "n", "description": "\u{85}" })).contains("U+0085"));
    }

    #[test]
    fn nested_strings_keys_tags_and_attributes() {
        assert!(
            refused(json!({ "name": "d", "tags": [{ "key": " ", "value": "v" }] }))
                .contains("/tags/0/key must not be blank")
        );
        assert!(
            refused(json!({ "name": "d", "tags": [{ "key": "k", "value": "v\u{0}" }] }))
                .contains("/tags/0/value")
        );
        assert!(refused(json!({ "name": "d", "attributes": [{ "name": "t\u{202D}", "dataType": "number" }] })).contains("/attributes/0/name"));
        assert!(refused(json!({ "data": { "temp\u{0}": 1 } })).contains("A field name in /data"));
        assert!(refused(json!({ "data": { "t\u{7f}": 1 } })).contains("U+007F"));
        assert!(refused(json!({ "list": ["a", ["b", "c\u{9f}"]] })).contains("/list/1/1"));
        assert!(
            refused(json!({ "data": { "doc": { "deep": ["ok", "no\u{1b}"] } } }))
                .contains("/data/doc/deep/1")
        );
        // Values that are not names may be blank or carry line breaks; numbers are not text.
        assert!(body(&json!({ "data": { "note": " ", "text": "a\nb", "n": 1 } })).is_ok());
        // A nested `name` that is not a name field is ordinary text.
        assert!(body(&json!({ "name": "f", "triggers": [{ "name": " " }] })).is_ok());
    }

    #[test]
    fn limits_come_from_the_reference_schemas() {
        assert_eq!(max_length("applicationPost", "description"), Some(1024));
        assert_eq!(max_length("applicationApiTokenPost", "name"), Some(255));
        let long = "x".repeat(1025);
        let e = text_field("applicationPost", "description", &long).unwrap_err();
        assert_eq!(e.message, "description is longer than 1024 characters");
        assert!(text_field("applicationPost", "description", &long[..1024]).is_ok());
    }
}
