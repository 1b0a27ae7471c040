//! Rate limits: at most `requests` requests in any `perSeconds` seconds, as a token bucket
//! (`requests` deep, refilled at `requests / perSeconds` per second).

use serde_json::{Map, Value, json};

use super::Kind;

pub const MAX_PER_SECONDS: u64 = 86_400;
pub const MAX_REQUESTS: u64 = 1_000_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rate {
    pub requests: u64,
    pub per_seconds: u64,
    /// The rate-limited ancestor whose bucket this token's requests also draw from (set by
    /// the server when a rate-limited token mints a child, never by a client): so a token
    /// and everything minted from it, however many, stay within the ancestor's rate.
    pub shared: Option<Shared>,
}

/// A rate-limited ancestor: its id (24 hex) and its rate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shared {
    pub token: String,
    pub requests: u64,
    pub per_seconds: u64,
}

impl Rate {
    /// The bucket the family of tokens minted from a token with this rate shares: the
    /// ancestor's if this token has one, else this token's own (`id`).
    pub fn family(&self, id: &str) -> Shared {
        self.shared.clone().unwrap_or(Shared {
            token: id.to_owned(),
            requests: self.requests,
            per_seconds: self.per_seconds,
        })
    }
}

impl Kind for Rate {
    const NAME: &'static str = "rate limit";
    const FIELDS: &'static [&'static str] = &["rateLimit"];

    fn parse(body: &Map<String, Value>) -> Result<Option<Self>, String> {
        let Some(v) = body.get("rateLimit") else {
            return Ok(None);
        };
        let field = |name: &str, max: u64| {
            v.get(name)
                .and_then(Value::as_u64)
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| format!("rateLimit.{name} must be a whole number from 1 to {max}"))
        };
        // Only ever stored by the server (the API's schema does not accept it).
        let shared = match v.get("sharedWith") {
            None => None,
            Some(s) => Some(Shared {
                token: s
                    .get("apiTokenId")
                    .and_then(Value::as_str)
                    .filter(|t| t.len() == 24)
                    .ok_or("rateLimit.sharedWith.apiTokenId must be a token id")?
                    .to_owned(),
                requests: s
                    .get("requests")
                    .and_then(Value::as_u64)
                    .unwrap_or(1)
                    .max(1),
                per_seconds: s
                    .get("perSeconds")
                    .and_then(Value::as_u64)
                    .unwrap_or(1)
                    .max(1),
            }),
        };
        Ok(Some(Rate {
            requests: field("requests", MAX_REQUESTS)?,
            per_seconds: field("perSeconds", MAX_PER_SECONDS)?,
            shared,
        }))
    }

    fn write(&self, out: &mut Map<String, Value>) {
        let mut v = json!({ "requests": self.requests, "perSeconds": self.per_seconds });
        if let Some(s) = &self.shared {
            v["sharedWith"] = json!({
                "apiTokenId": s.token, "requests": s.requests, "perSeconds": s.per_seconds
            });
        }
        out.insert("rateLimit".into(), v);
    }

    /// The child's burst is no deeper and its sustained rate no faster.
    fn within(&self, parent: &Self) -> Result<(), String> {
        let slower = u128::from(self.requests) * u128::from(parent.per_seconds)
            <= u128::from(parent.requests) * u128::from(self.per_seconds);
        if self.requests <= parent.requests && slower {
            Ok(())
        } else {
            Err(format!(
                "rateLimit {} per {} s is more than its creator's {} per {} s",
                self.requests, self.per_seconds, parent.requests, parent.per_seconds
            ))
        }
    }
}
