//! Rate limits: at most `requests` requests in any `perSeconds` seconds, as a token bucket
//! (`requests` deep, refilled at `requests / perSeconds` per second).

use serde_json::{Map, Value, json};

use super::Kind;

pub const MAX_PER_SECONDS: u64 = 86_400;
pub const MAX_REQUESTS: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub requests: u64,
    pub per_seconds: u64,
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
        Ok(Some(Rate {
            requests: field("requests", MAX_REQUESTS)?,
            per_seconds: field("perSeconds", MAX_PER_SECONDS)?,
        }))
    }

    fn write(&self, out: &mut Map<String, Value>) {
        out.insert(
            "rateLimit".into(),
            json!({ "requests": self.requests, "perSeconds": self.per_seconds }),
        );
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
