//! Restrictions: what a token may do beyond *which actions* (its scope): on which devices,
//! from which addresses, how often, how many times.
//!
//! Each kind of restriction is one module here implementing [`Kind`]: how it is read from and
//! written to the token's JSON (its fields on `apiTokenPost` and the token's responses, fixed
//! at creation like the scope), and when a child's restriction is within its parent's ("no
//! stronger than its creator", one dimension each). [`Restrictions`] holds one optional value
//! per kind: adding a kind is a module, a field here and its line in each of `parse`, `write`
//! and `within`. What a restriction does to a request is the server's (`restrict/`), one check
//! per kind.

pub mod addresses;
pub mod devices;
pub mod quota;
pub mod rate;

use serde_json::{Map, Value};

pub use addresses::Addresses;
pub use devices::Devices;
pub use quota::Quota;
pub use rate::Rate;

/// One kind of restriction.
pub trait Kind: Sized + Clone + PartialEq + std::fmt::Debug {
    /// What the refusals call it ("address allow-list").
    const NAME: &'static str;
    /// Its fields on the token's JSON.
    const FIELDS: &'static [&'static str];

    /// Read it from a token's JSON object: `Ok(None)` when none of its fields is present; an
    /// error names the field and what is wrong, never echoing more than the field's name and
    /// the limit.
    fn parse(body: &Map<String, Value>) -> Result<Option<Self>, String>;

    /// Write its fields into a token's JSON object.
    fn write(&self, out: &mut Map<String, Value>);

    /// Is everything this restriction admits admitted by `parent`'s? Err says why not.
    fn within(&self, parent: &Self) -> Result<(), String>;
}

/// A child's restriction of one kind against its parent's: an unrestricted parent allows
/// anything; a restricted one needs the child restricted at least as much.
fn within_one<K: Kind>(child: Option<&K>, parent: Option<&K>) -> Result<(), String> {
    match (child, parent) {
        (_, None) => Ok(()),
        (None, Some(_)) => Err(format!(
            "its creator is restricted by its {} ({}), so it needs one within it",
            K::NAME,
            K::FIELDS.join(" / ")
        )),
        (Some(c), Some(p)) => c.within(p),
    }
}

/// Every restriction of a token. `Default` is none at all.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Restrictions {
    pub addresses: Option<Addresses>,
    pub devices: Option<Devices>,
    pub rate: Option<Rate>,
    pub quota: Option<Quota>,
}

/// Every field of every kind, for schemas and for telling restriction fields apart.
pub const FIELDS: &[&[&str]] = &[
    Addresses::FIELDS,
    Devices::FIELDS,
    Rate::FIELDS,
    Quota::FIELDS,
];

impl Restrictions {
    /// Read every kind from a token's JSON object; every problem is named.
    pub fn parse(body: &Map<String, Value>) -> Result<Restrictions, Vec<String>> {
        fn take<K>(r: Result<Option<K>, String>, errors: &mut Vec<String>) -> Option<K> {
            r.map_err(|e| errors.push(e)).ok().flatten()
        }
        let mut errors = Vec::new();
        let out = Restrictions {
            addresses: take(Addresses::parse(body), &mut errors),
            devices: take(Devices::parse(body), &mut errors),
            rate: take(Rate::parse(body), &mut errors),
            quota: take(Quota::parse(body), &mut errors),
        };
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// From the stored JSON text (`None`: no restriction).
    pub fn from_stored(text: Option<&str>) -> Result<Restrictions, String> {
        let Some(text) = text else {
            return Ok(Restrictions::default());
        };
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let map = value
            .as_object()
            .ok_or("stored restrictions are not an object")?;
        Restrictions::parse(map).map_err(|e| e.join("; "))
    }

    pub fn is_empty(&self) -> bool {
        *self == Restrictions::default()
    }

    /// Write every kind's fields into a token's JSON object.
    pub fn write(&self, out: &mut Map<String, Value>) {
        if let Some(r) = &self.addresses {
            r.write(out);
        }
        if let Some(r) = &self.devices {
            r.write(out);
        }
        if let Some(r) = &self.rate {
            r.write(out);
        }
        if let Some(r) = &self.quota {
            r.write(out);
        }
    }

    /// The JSON text to store (`None` when there is no restriction).
    pub fn to_stored(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let mut map = Map::new();
        self.write(&mut map);
        Some(Value::Object(map).to_string())
    }

    /// Is this token's every restriction within its creator's? Each dimension on its own;
    /// the reasons of every dimension that reaches further.
    pub fn within(&self, parent: &Restrictions) -> Result<(), Vec<String>> {
        let errors: Vec<String> = [
            within_one(self.addresses.as_ref(), parent.addresses.as_ref()),
            within_one(self.devices.as_ref(), parent.devices.as_ref()),
            within_one(self.rate.as_ref(), parent.rate.as_ref()),
            within_one(self.quota.as_ref(), parent.quota.as_ref()),
        ]
        .into_iter()
        .filter_map(Result::err)
        .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// A JSON array of strings at `field`, or `None` if absent; bounded in length.
pub(crate) fn strings<'a>(
    body: &'a Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<Option<Vec<&'a str>>, String> {
    let Some(v) = body.get(field) else {
        return Ok(None);
    };
    let items = v
        .as_array()
        .ok_or_else(|| format!("{field} must be an array of strings"))?;
    if items.len() > max {
        return Err(format!("{field} has {} items: at most {max}", items.len()));
    }
    items
        .iter()
        .map(|i| {
            i.as_str()
                .ok_or_else(|| format!("{field} must be an array of strings"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Restrictions, Vec<String>> {
        Restrictions::parse(v.as_object().unwrap())
    }

    #[test]
    fn round_trips_and_names_every_problem() {
        let r = parse(json!({
            "allowedAddresses": ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"],
            "deviceTags": [{ "key": "site", "value": "north" }],
            "rateLimit": { "requests": 10, "perSeconds": 1 },
            "usageLimit": 100000,
            "name": "ignored"
        }))
        .unwrap();
        let stored = r.to_stored().unwrap();
        assert_eq!(Restrictions::from_stored(Some(&stored)).unwrap(), r);
        let mut out = Map::new();
        r.write(&mut out);
        assert_eq!(
            out["allowedAddresses"],
            json!(["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"])
        );
        assert!(Restrictions::default().to_stored().is_none());
        assert!(Restrictions::from_stored(None).unwrap().is_empty());
        let errors = parse(json!({
            "allowedAddresses": ["not-an-address"],
            "rateLimit": { "requests": 0, "perSeconds": 1 },
            "usageLimit": -1
        }))
        .unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("allowedAddresses"), "{errors:?}");
    }

    #[test]
    fn each_dimension_is_checked_on_its_own() {
        let parent = parse(json!({
            "allowedAddresses": ["10.0.0.0/8"],
            "rateLimit": { "requests": 10, "perSeconds": 1 }
        }))
        .unwrap();
        assert!(parent.within(&parent).is_ok());
        assert!(parent.within(&Restrictions::default()).is_ok());
        let errors = Restrictions::default().within(&parent).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        let wider = parse(json!({
            "allowedAddresses": ["0.0.0.0/0"],
            "rateLimit": { "requests": 5, "perSeconds": 1 },
            "deviceIds": ["000000000000000000000001"]
        }))
        .unwrap();
        let errors = wider.within(&parent).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("0.0.0.0/0"), "{errors:?}");
    }
}
