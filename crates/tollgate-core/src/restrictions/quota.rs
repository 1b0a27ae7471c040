//! Usage limits (quotas): at most `usageLimit` authorized requests over the token's life,
//! counted exactly across nodes (the store leases blocks of uses). A child's quota is carved
//! out of its creator's remaining uses when it is created, or refused.

use serde_json::{Map, Value};

use super::Kind;

pub const MAX_USES: u64 = 1_000_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub uses: u64,
}

impl Kind for Quota {
    const NAME: &'static str = "usage limit";
    const FIELDS: &'static [&'static str] = &["usageLimit"];

    fn parse(body: &Map<String, Value>) -> Result<Option<Self>, String> {
        match body.get("usageLimit") {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=MAX_USES).contains(n))
                .map(|uses| Some(Quota { uses }))
                .ok_or_else(|| format!("usageLimit must be a whole number from 1 to {MAX_USES}")),
        }
    }

    fn write(&self, out: &mut Map<String, Value>) {
        out.insert("usageLimit".into(), Value::from(self.uses));
    }

    /// Static part only: no more than the parent's whole quota. That it fits in the parent's
    /// *remaining* uses is checked, and carved out, by the store when the child is inserted.
    fn within(&self, parent: &Self) -> Result<(), String> {
        if self.uses <= parent.uses {
            Ok(())
        } else {
            Err(format!(
                "usageLimit {} is more than its creator's usage limit of {}",
                self.uses, parent.uses
            ))
        }
    }
}
