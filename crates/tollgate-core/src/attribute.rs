//! Device attribute data types and the checking of reported state values against them.
//!
//! The reference converts a reported value to the attribute's declared type where it can
//! ("21.5" for a number attribute, 1 for a boolean). Where it cannot, this server refuses the
//! report with a message naming the attribute and the type, rather than dropping the value
//! silently: the reporter learns of the mistake, and nothing is half-written.

use std::fmt;

/// The reference's attribute data types (`devicePost.json`'s `dataType` enum), and `json`: a
/// JSON document, reported as a string (state values are numbers, strings or booleans).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    Number,
    String,
    Boolean,
    Gps,
    Blob,
    Json,
}

/// Largest string value, as the reference documents (64 KiB).
pub const MAX_STRING_BYTES: usize = 64 * 1024;

impl DataType {
    pub fn parse(s: &str) -> Option<DataType> {
        Some(match s {
            "number" => DataType::Number,
            "string" => DataType::String,
            "boolean" => DataType::Boolean,
            "gps" => DataType::Gps,
            "blob" => DataType::Blob,
            "json" => DataType::Json,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Number => "number",
            DataType::String => "string",
            DataType::Boolean => "boolean",
            DataType::Gps => "gps",
            DataType::Blob => "blob",
            DataType::Json => "json",
        }
    }

    /// Values of this type are stored as numbers (and can be aggregated).
    pub fn is_numeric(self) -> bool {
        matches!(self, DataType::Number | DataType::Boolean)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reported value as it arrives (the reference schema allows only these three JSON types).
#[derive(Clone, Debug, PartialEq)]
pub enum Reported<'a> {
    Number(f64),
    Str(&'a str),
    Bool(bool),
}

/// A value converted to its attribute's type, ready to store.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    /// Numbers, and booleans as 1 or 0.
    Num(f64),
    /// Strings, GPS positions, blobs.
    Txt(String),
}

/// Why a value does not fit its attribute. The message never contains the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("expected a number (or a string holding one)")]
    NotANumber,
    #[error("expected a boolean (true/false, 1/0, or \"true\"/\"false\")")]
    NotABoolean,
    #[error("expected a GPS position as decimal degrees \"latitude,longitude\"")]
    NotGps,
    #[error("expected base64-encoded data")]
    NotBase64,
    #[error("expected a JSON document (sent as a string)")]
    NotJson,
    #[error("longer than {MAX_STRING_BYTES} bytes")]
    TooLong,
}

/// Convert `value` to `ty`, as the reference does where the conversion loses nothing.
pub fn convert(ty: DataType, value: &Reported<'_>) -> Result<Stored, ValueError> {
    match (ty, value) {
        (DataType::Number, Reported::Number(n)) => Ok(Stored::Num(*n)),
        (DataType::Number, Reported::Str(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(Stored::Num)
            .ok_or(ValueError::NotANumber),
        (DataType::Number, Reported::Bool(_)) => Err(ValueError::NotANumber),
        (DataType::Boolean, Reported::Bool(b)) => Ok(Stored::Num(f64::from(u8::from(*b)))),
        (DataType::Boolean, Reported::Number(n)) if *n == 0.0 || *n == 1.0 => Ok(Stored::Num(*n)),
        (DataType::Boolean, Reported::Str(s)) => match s.trim() {
            "true" | "1" => Ok(Stored::Num(1.0)),
            "false" | "0" => Ok(Stored::Num(0.0)),
            _ => Err(ValueError::NotABoolean),
        },
        (DataType::Boolean, Reported::Number(_)) => Err(ValueError::NotABoolean),
        (DataType::String, v) => {
            let s = match v {
                Reported::Str(s) => (*s).to_owned(),
                Reported::Number(n) => format_number(*n),
                Reported::Bool(b) => b.to_string(),
            };
            if s.len() > MAX_STRING_BYTES {
                Err(ValueError::TooLong)
            } else {
                Ok(Stored::Txt(s))
            }
        }
        (DataType::Gps, Reported::Str(s)) => parse_gps(s)
            .map(|_| Stored::Txt(s.trim().to_owned()))
            .ok_or(ValueError::NotGps),
        (DataType::Gps, _) => Err(ValueError::NotGps),
        (DataType::Blob, Reported::Str(s)) => {
            if s.len() > MAX_STRING_BYTES {
                Err(ValueError::TooLong)
            } else if is_base64(s) {
                Ok(Stored::Txt((*s).to_owned()))
            } else {
                Err(ValueError::NotBase64)
            }
        }
        (DataType::Blob, _) => Err(ValueError::NotBase64),
        (DataType::Json, Reported::Str(s)) => {
            if s.len() > MAX_STRING_BYTES {
                Err(ValueError::TooLong)
            } else if serde_json::from_str::<serde_json::Value>(s).is_ok() {
                Ok(Stored::Txt((*s).to_owned()))
            } else {
                Err(ValueError::NotJson)
            }
        }
        // A bare number or boolean is a JSON document too.
        (DataType::Json, Reported::Number(n)) => Ok(Stored::Txt(format_number(*n))),
        (DataType::Json, Reported::Bool(b)) => Ok(Stored::Txt(b.to_string())),
    }
}

/// A number as JavaScript would print it (`21` rather than `21.0`).
fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// `"lat,lon"` in decimal degrees, each in range.
pub fn parse_gps(s: &str) -> Option<(f64, f64)> {
    let (lat, lon) = s.split_once(',')?;
    let lat: f64 = lat.trim().parse().ok()?;
    let lon: f64 = lon.trim().parse().ok()?;
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some((lat, lon))
}

fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len().is_multiple_of(4)
        && s.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_the_reference_makes() {
        use DataType::*;
        use Reported as R;
        assert_eq!(convert(Number, &R::Number(21.5)), Ok(Stored::Num(21.5)));
        assert_eq!(convert(Number, &R::Str(" 21.5 ")), Ok(Stored::Num(21.5)));
        assert_eq!(
            convert(Number, &R::Str("warm")),
            Err(ValueError::NotANumber)
        );
        assert_eq!(convert(Number, &R::Str("NaN")), Err(ValueError::NotANumber));
        assert_eq!(convert(Number, &R::Bool(true)), Err(ValueError::NotANumber));
        assert_eq!(convert(Boolean, &R::Bool(true)), Ok(Stored::Num(1.0)));
        assert_eq!(convert(Boolean, &R::Number(0.0)), Ok(Stored::Num(0.0)));
        assert_eq!(convert(Boolean, &R::Str("false")), Ok(Stored::Num(0.0)));
        assert_eq!(
            convert(Boolean, &R::Number(2.0)),
            Err(ValueError::NotABoolean)
        );
        assert_eq!(
            convert(String, &R::Number(21.0)),
            Ok(Stored::Txt("21".into()))
        );
        assert_eq!(
            convert(String, &R::Number(0.5)),
            Ok(Stored::Txt("0.5".into()))
        );
        assert_eq!(
            convert(String, &R::Bool(false)),
            Ok(Stored::Txt("false".into()))
        );
        let long = "x".repeat(MAX_STRING_BYTES + 1);
        assert_eq!(convert(String, &R::Str(&long)), Err(ValueError::TooLong));
        assert_eq!(
            convert(Gps, &R::Str("37.33233141,-122.0312186")),
            Ok(Stored::Txt("37.33233141,-122.0312186".into()))
        );
        assert_eq!(convert(Gps, &R::Str("91,0")), Err(ValueError::NotGps));
        assert_eq!(convert(Gps, &R::Number(1.0)), Err(ValueError::NotGps));
        assert_eq!(
            convert(Blob, &R::Str("aGk=")),
            Ok(Stored::Txt("aGk=".into()))
        );
        assert_eq!(convert(Blob, &R::Str("a*k=")), Err(ValueError::NotBase64));
        assert_eq!(convert(Blob, &R::Str("aGk")), Err(ValueError::NotBase64));
    }

    #[test]
    fn json_attributes_hold_json_documents() {
        use DataType::Json;
        use Reported as R;
        assert_eq!(
            convert(Json, &R::Str(r#"{"mode":"eco","zones":[1,2]}"#)),
            Ok(Stored::Txt(r#"{"mode":"eco","zones":[1,2]}"#.into()))
        );
        assert_eq!(convert(Json, &R::Number(3.0)), Ok(Stored::Txt("3".into())));
        assert_eq!(
            convert(Json, &R::Bool(true)),
            Ok(Stored::Txt("true".into()))
        );
        assert_eq!(
            convert(Json, &R::Str("{not json")),
            Err(ValueError::NotJson)
        );
        assert_eq!(DataType::parse("json"), Some(Json));
        assert!(!Json.is_numeric());
    }

    #[test]
    fn messages_never_carry_the_value() {
        let e = convert(DataType::Number, &Reported::Str("s3cret")).unwrap_err();
        assert!(!e.to_string().contains("s3cret"));
    }
}
