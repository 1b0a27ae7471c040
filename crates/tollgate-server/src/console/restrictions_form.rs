//! The restriction fields of the console's Add Application Token form, in plain words, each
//! optional: devices by id or tag, an address list, a rate and a usage limit. The fields are
//! turned into the same JSON the REST API takes and read by the same
//! `tollgate_core::restrictions` code, so the rules and messages are the API's.

use serde_json::{Map, Value, json};
use tollgate_core::restrictions::Restrictions;

use super::form::FormData;

/// The fields as the form sent them (shown back on a refusal).
#[derive(Clone, Debug, Default)]
pub struct RestrictionFields {
    pub device_ids: String,
    pub device_tags: String,
    pub addresses: String,
    pub rate_requests: String,
    pub rate_seconds: String,
    pub usage_limit: String,
    pub error: Option<String>,
}

/// Lines of a text area, trimmed, empty ones dropped (commas separate too).
fn lines(text: &str) -> Vec<&str> {
    text.split(['\n', ','])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

fn number(text: &str, what: &str) -> Result<Option<u64>, String> {
    let t = text.trim().replace([',', '_', ' '], "");
    if t.is_empty() {
        return Ok(None);
    }
    t.parse::<u64>()
        .map(Some)
        .map_err(|_| format!("{what} must be a whole number."))
}

impl RestrictionFields {
    pub fn read(form: &FormData) -> RestrictionFields {
        RestrictionFields {
            device_ids: form.text("device_ids").to_owned(),
            device_tags: form.text("device_tags").to_owned(),
            addresses: form.text("allowed_addresses").to_owned(),
            rate_requests: form.text("rate_requests").to_owned(),
            rate_seconds: form.text("rate_seconds").to_owned(),
            usage_limit: form.text("usage_limit").to_owned(),
            error: None,
        }
    }

    /// The restrictions asked for, or a message in plain words.
    pub fn restrictions(&self) -> Result<Restrictions, String> {
        let mut body = Map::new();
        let ids = lines(&self.device_ids);
        if !ids.is_empty() {
            body.insert("deviceIds".into(), json!(ids));
        }
        let mut tags = Vec::new();
        for t in lines(&self.device_tags) {
            let tag = match t.split_once('=') {
                Some((k, v)) if !v.trim().is_empty() && v.trim() != "*" => {
                    json!({ "key": k.trim(), "value": v.trim() })
                }
                Some((k, _)) => json!({ "key": k.trim() }),
                None => json!({ "key": t }),
            };
            tags.push(tag);
        }
        if !tags.is_empty() {
            body.insert("deviceTags".into(), Value::Array(tags));
        }
        let addresses = lines(&self.addresses);
        if !addresses.is_empty() {
            body.insert("allowedAddresses".into(), json!(addresses));
        }
        let requests = number(&self.rate_requests, "The number of requests")?;
        let seconds = number(&self.rate_seconds, "The number of seconds")?;
        match (requests, seconds) {
            (None, None) => {}
            (Some(r), s) => {
                body.insert(
                    "rateLimit".into(),
                    json!({ "requests": r, "perSeconds": s.unwrap_or(1) }),
                );
            }
            (None, Some(_)) => {
                return Err(
                    "Enter how many requests are allowed, or leave both rate fields empty.".into(),
                );
            }
        }
        if let Some(n) = number(&self.usage_limit, "The usage limit")? {
            body.insert("usageLimit".into(), json!(n));
        }
        Restrictions::parse(&body).map_err(|e| format!("{}.", e.join("; ")))
    }
}

/// A token's restrictions in plain words, one line each (the detail page).
pub fn describe(r: &Restrictions) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(d) = &r.devices {
        let mut parts = Vec::new();
        if !d.ids.is_empty() {
            parts.push(format!("devices {}", d.ids.join(", ")));
        }
        if !d.tags.is_empty() {
            let tags: Vec<String> = d.tags.iter().map(ToString::to_string).collect();
            parts.push(format!("devices tagged {}", tags.join(" or ")));
        }
        out.push(format!("Only {}", parts.join(", and ")));
    }
    if let Some(a) = &r.addresses {
        let nets: Vec<String> = a.networks().iter().map(ToString::to_string).collect();
        out.push(format!("Only from {}", nets.join(", ")));
    }
    if let Some(rate) = &r.rate {
        out.push(format!(
            "At most {} requests every {} s",
            rate.requests, rate.per_seconds
        ));
    }
    if let Some(q) = &r.quota {
        out.push(format!("At most {} requests in total", q.uses));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_fields_become_restrictions() {
        let f = RestrictionFields {
            device_tags: "site=north\nfloor".into(),
            addresses: "203.0.113.0/24, 2001:db8::/32".into(),
            rate_requests: "10".into(),
            rate_seconds: "1".into(),
            usage_limit: "100,000".into(),
            ..Default::default()
        };
        let r = f.restrictions().unwrap();
        assert_eq!(r.devices.as_ref().unwrap().tags.len(), 2);
        assert_eq!(r.addresses.as_ref().unwrap().networks().len(), 2);
        assert_eq!(r.quota.unwrap().uses, 100_000);
        assert_eq!(
            describe(&r),
            [
                "Only devices tagged floor=* or site=north",
                "Only from 203.0.113.0/24, 2001:db8::/32",
                "At most 10 requests every 1 s",
                "At most 100000 requests in total"
            ]
        );
        assert!(
            RestrictionFields::default()
                .restrictions()
                .unwrap()
                .is_empty()
        );
        let bad = RestrictionFields {
            addresses: "203.0.113.0/33".into(),
            ..Default::default()
        };
        assert!(
            bad.restrictions()
                .unwrap_err()
                .contains("allowedAddresses[0]")
        );
    }
}
