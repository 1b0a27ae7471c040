//! Form bodies and query strings as name/value pairs (a checklist sends one name many times).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;

use super::PageError;
use crate::error::ApiError;

/// An `application/x-www-form-urlencoded` body.
pub struct FormData(Vec<(String, String)>);

impl FormData {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, or "".
    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// Every value of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequest<S> for FormData {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, PageError> {
        axum::Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map(|f| FormData(f.0))
            .map_err(|_| {
                PageError::Api(ApiError::validation(
                    "The form could not be read: reload the page and try again",
                ))
            })
    }
}

/// A query string; anything unreadable is treated as absent (a person typed the URL).
pub struct QueryData(Vec<(String, String)>);

impl QueryData {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryData {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(QueryData(
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
                .map(|q| q.0)
                .unwrap_or_default(),
        ))
    }
}
