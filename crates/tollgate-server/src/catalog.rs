//! The reference catalog's actions that this server does not implement. Each answers `501
//! {"type":"NotImplemented","message":"<action> is not implemented by this server"}` at its
//! real method and path, so a client author knows at once instead of meeting a 404 or 405.
//!
//! These routes check no credential: that an action is not implemented is public (the OpenAPI
//! document says the same), and answering before authentication tells nobody anything about
//! the ids in the path.

use std::sync::OnceLock;

use serde::Deserialize;
use tollgate_core::{Action, Method};

/// One reference action the server does not implement.
#[derive(Clone, Debug, Deserialize)]
pub struct Unimplemented {
    pub name: String,
    #[serde(deserialize_with = "method")]
    pub method: Method,
    pub path: String,
    pub description: String,
}

fn method<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Method, D::Error> {
    let s = String::deserialize(d)?;
    match s.as_str() {
        "GET" => Ok(Method::Get),
        "POST" => Ok(Method::Post),
        "PATCH" => Ok(Method::Patch),
        "DELETE" => Ok(Method::Delete),
        other => Err(serde::de::Error::custom(format!("method {other}"))),
    }
}

#[derive(Deserialize)]
struct Catalog {
    actions: Vec<Unimplemented>,
}

/// Every catalog action not in the registry, in catalog order.
pub fn unimplemented() -> &'static [Unimplemented] {
    static LIST: OnceLock<Vec<Unimplemented>> = OnceLock::new();
    LIST.get_or_init(|| {
        let catalog: Catalog =
            serde_json::from_str(include_str!("../../../reference/losant-api/catalog.json"))
                .expect("the embedded catalog parses");
        catalog
            .actions
            .into_iter()
            .filter(|a| Action::from_name(&a.name).is_none())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_action_is_implemented_or_listed() {
        let all = unimplemented();
        // The reference's 372 actions: each implemented (a registry entry that is not one of
        // this server's extensions) or listed here.
        let implemented = tollgate_core::REGISTRY
            .iter()
            .filter(|d| !d.is_extension())
            .count();
        assert_eq!(all.len() + implemented, 372);
        assert!(all.iter().any(|a| a.name == "devices.sendCommand"));
        assert!(!all.iter().any(|a| a.name == "device.sendCommand"));
        assert!(
            all.iter()
                .any(|a| a.name == "auth.authenticateDevice" && a.method == Method::Post)
        );
    }
}
