//! Device restrictions: the token reaches only the devices named by id or carrying one of the
//! tags (`site=north`); other devices behave as if they did not exist. A tag is matched against
//! the device as it is at the request, so a device that gains the tag is reachable at once.

use serde_json::{Map, Value};

use super::Kind;

/// At most this many ids and this many tags per token.
pub const MAX_IDS: usize = 1000;
pub const MAX_TAGS: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag {
    pub key: String,
    /// `None`: any value of the key.
    pub value: Option<String>,
}

impl Tag {
    fn matches(&self, key: &str, value: &str) -> bool {
        self.key == key && self.value.as_deref().is_none_or(|v| v == value)
    }

    /// Does every device with `self` also carry `other`?
    fn implies(&self, other: &Tag) -> bool {
        self.key == other.key && (other.value.is_none() || other.value == self.value)
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={v}", self.key),
            None => write!(f, "{}=*", self.key),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Devices {
    /// Device ids (24 lowercase hexadecimal characters), sorted.
    pub ids: Vec<String>,
    pub tags: Vec<Tag>,
}

impl Devices {
    /// Does the device with this id and these tags belong to the token's devices?
    pub fn admits<'a>(&self, id: &str, mut tags: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
        self.ids.binary_search_by(|i| i.as_str().cmp(id)).is_ok()
            || (!self.tags.is_empty()
                && tags.any(|(k, v)| self.tags.iter().any(|t| t.matches(k, v))))
    }
}

fn is_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Kind for Devices {
    const NAME: &'static str = "device restriction";
    const FIELDS: &'static [&'static str] = &["deviceIds", "deviceTags"];

    fn parse(body: &Map<String, Value>) -> Result<Option<Self>, String> {
        let ids = super::strings(body, "deviceIds", MAX_IDS)?;
        let tags = match body.get("deviceTags") {
            None => None,
            Some(v) => {
                let items = v
                    .as_array()
                    .ok_or("deviceTags must be an array of {key, value} objects")?;
                if items.len() > MAX_TAGS {
                    return Err(format!(
                        "deviceTags has {} items: at most {MAX_TAGS}",
                        items.len()
                    ));
                }
                let mut tags = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let key = item
                        .get("key")
                        .and_then(Value::as_str)
                        .filter(|k| !k.is_empty() && k.len() <= 255)
                        .ok_or_else(|| {
                            format!("deviceTags[{i}] needs a key of 1-255 characters")
                        })?;
                    let value = match item.get("value") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(s)) if s.len() <= 255 => Some(s.clone()),
                        Some(_) => {
                            return Err(format!(
                                "deviceTags[{i}].value must be a string of at most 255 characters"
                            ));
                        }
                    };
                    tags.push(Tag {
                        key: key.to_owned(),
                        value,
                    });
                }
                Some(tags)
            }
        };
        if ids.is_none() && tags.is_none() {
            return Ok(None);
        }
        let mut ids: Vec<String> = ids
            .unwrap_or_default()
            .into_iter()
            .map(str::to_owned)
            .collect();
        if let Some(i) = ids.iter().position(|id| !is_id(id)) {
            return Err(format!(
                "deviceIds[{i}] is not a device id: ids are 24 hexadecimal characters"
            ));
        }
        ids.sort();
        ids.dedup();
        let mut tags = tags.unwrap_or_default();
        tags.sort();
        tags.dedup();
        if ids.is_empty() && tags.is_empty() {
            return Err("deviceIds and deviceTags are both empty: leave them out for no device restriction, or name at least one device or tag".into());
        }
        Ok(Some(Devices { ids, tags }))
    }

    fn write(&self, out: &mut Map<String, Value>) {
        if !self.ids.is_empty() {
            out.insert(
                "deviceIds".into(),
                Value::Array(self.ids.iter().cloned().map(Value::String).collect()),
            );
        }
        if !self.tags.is_empty() {
            out.insert(
                "deviceTags".into(),
                Value::Array(
                    self.tags
                        .iter()
                        .map(|t| {
                            let mut o = Map::new();
                            o.insert("key".into(), Value::String(t.key.clone()));
                            if let Some(v) = &t.value {
                                o.insert("value".into(), Value::String(v.clone()));
                            }
                            Value::Object(o)
                        })
                        .collect(),
                ),
            );
        }
    }

    /// Every device the child could reach, whatever tags devices gain or lose later, is one
    /// the parent reaches: each child id is a parent id (tags change, so an id is not covered
    /// by a parent's tag), each child tag implies a parent tag.
    fn within(&self, parent: &Self) -> Result<(), String> {
        let mut outside: Vec<String> = self
            .ids
            .iter()
            .filter(|i| parent.ids.binary_search(i).is_err())
            .cloned()
            .collect();
        outside.extend(
            self.tags
                .iter()
                .filter(|t| !parent.tags.iter().any(|p| t.implies(p)))
                .map(ToString::to_string),
        );
        if outside.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "devices {} are not among its creator's devices (a child of a device-restricted token may name only its ids and tags, or narrower tags)",
                outside.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn devices(v: Value) -> Devices {
        Devices::parse(v.as_object().unwrap()).unwrap().unwrap()
    }

    #[test]
    fn admits_by_id_or_tag() {
        let d = devices(json!({
            "deviceIds": ["00000000000000000000000a"],
            "deviceTags": [{ "key": "site", "value": "north" }, { "key": "floor" }]
        }));
        assert!(d.admits("00000000000000000000000a", std::iter::empty()));
        assert!(!d.admits("00000000000000000000000b", [("site", "south")].into_iter()));
        assert!(d.admits("00000000000000000000000b", [("site", "north")].into_iter()));
        assert!(d.admits("00000000000000000000000b", [("floor", "3")].into_iter()));
    }

    #[test]
    fn within_needs_ids_and_implied_tags() {
        let parent = devices(json!({
            "deviceIds": ["00000000000000000000000a"],
            "deviceTags": [{ "key": "site" }]
        }));
        assert!(
            devices(json!({ "deviceTags": [{ "key": "site", "value": "north" }] }))
                .within(&parent)
                .is_ok()
        );
        assert!(
            devices(json!({ "deviceIds": ["00000000000000000000000b"] }))
                .within(&parent)
                .is_err()
        );
        let by_tag = devices(json!({ "deviceTags": [{ "key": "site", "value": "north" }] }));
        assert!(
            devices(json!({ "deviceTags": [{ "key": "site" }] }))
                .within(&by_tag)
                .is_err()
        );
        assert!(Devices::parse(json!({ "deviceIds": ["xyz"] }).as_object().unwrap()).is_err());
    }
}
