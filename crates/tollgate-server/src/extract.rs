//! Our own extractors, so that every bad input gets the API's `{type, message}` 400 rather
//! than a framework's plain-text rejection.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tollgate_store::list::{Fields, Filter, ListSpec};

use crate::error::ApiError;
use crate::{limits, schemas};

/// A request body type, checked against the reference schema `SCHEMA` before it is
/// deserialized.
pub trait RequestBody: DeserializeOwned + Send + 'static {
    const SCHEMA: &'static str;

    /// Checks that should answer before the schema does, with a more useful message.
    fn precheck(_body: &Value) -> Result<(), ApiError> {
        Ok(())
    }

    /// Whether a body `precheck` accepted is already known valid against `SCHEMA` (its
    /// `precheck` validated it against the schema's branch that applies), so that it is not
    /// validated twice.
    const PRECHECK_VALIDATES: bool = false;

    /// The body from a value valid against `SCHEMA` (by default through serde).
    fn from_valid(value: Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(value)
    }
}

/// A JSON body valid against `T::SCHEMA`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: RequestBody> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large(crate::MAX_BODY)
            } else {
                ApiError::validation(format!(
                    "Could not read the request body: {}",
                    e.body_text()
                ))
            }
        })?;
        if bytes.len() <= limits::BLOCKING_BODY_BYTES {
            return decode::<T>(&bytes).map(Body);
        }
        // Parsing and checking a large body against its schema takes milliseconds of CPU:
        // do it on the blocking pool, a few at a time, so the async workers keep answering.
        let _turn = blocking_turn()
            .acquire()
            .await
            .map_err(|_| ApiError::internal())?;
        tokio::task::spawn_blocking(move || decode::<T>(&bytes))
            .await
            .map_err(|_| ApiError::internal())?
            .map(Body)
    }
}

/// Large bodies decoded at once, at most (one per core).
fn blocking_turn() -> &'static tokio::sync::Semaphore {
    static TURNS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    TURNS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, usize::from))
    })
}

/// A request body from its bytes, exactly as [`Body`] reads it: the nesting bound (a scan of
/// the bytes, before any parsing), JSON, then the stored-text rules
/// ([`crate::validate::body`]), then `T::precheck`, then the reference schema, then
/// deserialization. (Public for the fuzz targets.)
pub fn decode<T: RequestBody>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::validation("A JSON request body is required"));
    }
    if limits::json_depth_exceeds(bytes, limits::MAX_JSON_DEPTH) {
        return Err(ApiError::validation(format!(
            "The request body nests arrays and objects more than {} deep",
            limits::MAX_JSON_DEPTH
        )));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::validation(format!("The request body is not valid JSON: {e}")))?;
    decode_value(value)
}

/// As [`decode`], from a JSON value (the console builds one from its form, so that it goes
/// through the same checks as the REST API).
pub fn decode_value<T: RequestBody>(value: Value) -> Result<T, ApiError> {
    crate::validate::body(&value)?;
    T::precheck(&value)?;
    if !T::PRECHECK_VALIDATES {
        schemas::validate(T::SCHEMA, &value)?;
    }
    // The schema has accepted the shape; a failure here is a type the schema leaves open.
    // The message does not echo values.
    T::from_valid(value).map_err(|e| {
        ApiError::validation(format!(
            "Invalid request: {}",
            e.to_string()
                .split(':')
                .next()
                .unwrap_or("unexpected shape")
        ))
    })
}

/// The first control character a query string carries once decoded (`%00`, a raw one, …),
/// and the name of the parameter it is in (`None`: in a parameter's name).
fn query_control_character(query: &str) -> Option<(Option<String>, char)> {
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name);
        if let Some(c) = name.chars().find(|c| c.is_control()) {
            return Some((None, c));
        }
        if let Some(c) = percent_decode(value).chars().find(|c| c.is_control()) {
            return Some((Some(name), c));
        }
    }
    None
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters, with the reference clients' bracket notation (`tagFilter[0][key]=…`).
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let params = query.split('&').filter(|p| !p.is_empty()).count();
        if params > limits::MAX_QUERY_PARAMS {
            return Err(ApiError::validation(format!(
                "The query string has {params} parameters: at most {} are allowed",
                limits::MAX_QUERY_PARAMS
            )));
        }
        if let Some((name, c)) = query_control_character(query) {
            let what = match name {
                None => "A query parameter's name".to_owned(),
                Some(name) => format!("The query parameter {name}"),
            };
            return Err(ApiError::validation(format!(
                "{what} contains a control character (U+{:04X})",
                u32::from(c)
            )));
        }
        // Form encoding: the official clients percent-encode the brackets
        // (`tagFilter%5B0%5D%5Bkey%5D=floor`) and Python's sends spaces as `+`.
        serde_qs::Config::new()
            .use_form_encoding(true)
            .deserialize_str(query)
            .map(Query)
            .map_err(|e| ApiError::validation(format!("Invalid query string: {e}")))
    }
}

/// Path parameters; a malformed id is a 400 that says what an id looks like.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::validation(format!("Invalid path: {}", e.body_text())))
    }
}

/// The address of the client at the other end of the connection, when the request came over a
/// socket (in-process tests have none). A reverse proxy in front makes this the proxy's.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// The reference API's list parameters (all strings on the wire).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    pub sort_field: Option<String>,
    pub sort_direction: Option<String>,
    pub page: Option<String>,
    pub per_page: Option<String>,
    pub filter_field: Option<String>,
    pub filter: Option<String>,
}

/// Largest page the API serves.
pub const MAX_PER_PAGE: i64 = 1000;
const DEFAULT_PER_PAGE: i64 = 100;

impl ListParams {
    /// Check the parameters against a resource's fields.
    pub fn spec(&self, fields: &Fields) -> Result<ListSpec, ApiError> {
        let nonblank =
            |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
        let sort_field =
            nonblank(&self.sort_field).unwrap_or_else(|| fields.default_sort.to_owned());
        let sort = lookup(fields.sortable, &sort_field).ok_or_else(|| {
            ApiError::validation(format!(
                "sortField must be one of {}",
                names(fields.sortable)
            ))
        })?;
        let descending = match nonblank(&self.sort_direction)
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(ApiError::validation("sortDirection must be asc or desc")),
        };
        let page = parse_int(&nonblank(&self.page), "page", 0)?;
        let per_page = parse_int(&nonblank(&self.per_page), "perPage", DEFAULT_PER_PAGE)?;
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(ApiError::validation(format!(
                "perPage must be between 1 and {MAX_PER_PAGE}"
            )));
        }
        let filter = match (nonblank(&self.filter_field), nonblank(&self.filter)) {
            (Some(field), Some(glob)) => {
                let column = lookup(fields.filterable, &field).ok_or_else(|| {
                    ApiError::validation(format!(
                        "filterField must be one of {}",
                        names(fields.filterable)
                    ))
                })?;
                Some(Filter { column, glob })
            }
            (Some(field), None) if lookup(fields.filterable, &field).is_none() => {
                return Err(ApiError::validation(format!(
                    "filterField must be one of {}",
                    names(fields.filterable)
                )));
            }
            _ => None,
        };
        Ok(ListSpec {
            sort,
            descending,
            page,
            per_page,
            filter,
        })
    }

    /// The reference list envelope around one page of items.
    pub fn envelope(
        &self,
        spec: &ListSpec,
        fields: &Fields,
        items: Vec<Value>,
        total: i64,
    ) -> Value {
        let sort_field = fields
            .sortable
            .iter()
            .find(|(_, c)| *c == spec.sort)
            .map_or(fields.default_sort, |(n, _)| n);
        let mut out = json!({
            "items": items,
            "count": items.len(),
            "totalCount": total,
            "perPage": spec.per_page,
            "page": spec.page,
            "sortField": sort_field,
            "sortDirection": if spec.descending { "desc" } else { "asc" },
        });
        if let Some(f) = &spec.filter {
            let field = fields
                .filterable
                .iter()
                .find(|(_, c)| *c == f.column)
                .map_or("", |(n, _)| n);
            out["filterField"] = json!(field);
            out["filter"] = json!(f.glob);
        }
        out
    }
}

fn lookup<T: Copy>(table: &[(&'static str, T)], name: &str) -> Option<T> {
    table.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

fn names<T>(table: &[(&str, T)]) -> String {
    table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

fn parse_int(value: &Option<String>, name: &str, default: i64) -> Result<i64, ApiError> {
    match value {
        None => Ok(default),
        Some(s) => s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::validation(format!("{name} must be a whole number of 0 or more"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_store::list::Sort;
    use tollgate_store::tokens::TOKEN_FIELDS;

    fn params(pairs: &[(&str, &str)]) -> ListParams {
        let q: String = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        serde_qs::from_str(&q).unwrap()
    }

    #[test]
    fn defaults_and_accepted_values() {
        let spec = params(&[]).spec(&TOKEN_FIELDS).unwrap();
        assert_eq!(
            (spec.sort, spec.descending, spec.page, spec.per_page),
            (Sort::Text("name"), false, 0, 100)
        );
        let spec = params(&[
            ("sortField", "expirationDate"),
            ("sortDirection", "DESC"),
            ("page", "2"),
            ("perPage", "5"),
            ("filterField", "status"),
            ("filter", "in*"),
        ])
        .spec(&TOKEN_FIELDS)
        .unwrap();
        assert_eq!(
            (spec.sort, spec.descending, spec.page, spec.per_page),
            (Sort::NumberOrNever("expiration_date"), true, 2, 5)
        );
        assert_eq!(spec.filter.unwrap().glob, "in*");
    }

    #[test]
    fn bad_values_are_400s_that_say_what_is_accepted() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("sortField", "secret")],
                "sortField must be one of name, status, id",
            ),
            (&[("sortDirection", "up")], "asc or desc"),
            (&[("page", "-1")], "page must be"),
            (&[("perPage", "0")], "between 1 and 1000"),
            (&[("perPage", "abc")], "perPage must be"),
            (
                &[("filterField", "scope"), ("filter", "x")],
                "filterField must be one of name, status",
            ),
        ];
        for (p, expected) in cases {
            let err = params(p).spec(&TOKEN_FIELDS).unwrap_err();
            assert_eq!(err.status, 400);
            assert!(err.message.contains(expected), "{p:?}: {}", err.message);
        }
    }
}
