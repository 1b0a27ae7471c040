//! Address allow-lists: the token is accepted only from clients whose address is in one of
//! its networks (CIDR, IPv4 or IPv6; a bare address is a /32 or /128).

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use super::Kind;

/// At most this many networks per token.
pub const MAX_NETWORKS: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addresses {
    networks: Vec<IpNet>,
}

impl Addresses {
    pub fn new(networks: Vec<IpNet>) -> Addresses {
        Addresses { networks }
    }

    pub fn networks(&self) -> &[IpNet] {
        &self.networks
    }

    /// Is `addr` in one of the networks? (An IPv4-mapped IPv6 address counts as IPv4.)
    pub fn admits(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.networks.iter().any(|n| n.contains(&addr))
    }
}

/// `::ffff:a.b.c.d` is the IPv4 client `a.b.c.d` (dual-stack sockets report them so).
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// One network: `203.0.113.0/24`, `2001:db8::/32` or a bare address. Host bits must be zero
/// (`203.0.113.5/24` is more likely a mistake than a network).
pub fn parse_network(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        if net.trunc() != net {
            return Err(format!(
                "{s} has host bits set: did you mean {}?",
                net.trunc()
            ));
        }
        return Ok(net);
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| "is not an IPv4 or IPv6 address or network in CIDR notation (such as 203.0.113.0/24 or 2001:db8::/32)".to_owned())
}

impl Kind for Addresses {
    const NAME: &'static str = "address allow-list";
    const FIELDS: &'static [&'static str] = &["allowedAddresses"];

    fn parse(body: &Map<String, Value>) -> Result<Option<Self>, String> {
        let Some(items) = super::strings(body, "allowedAddresses", MAX_NETWORKS)? else {
            return Ok(None);
        };
        if items.is_empty() {
            return Err("allowedAddresses is empty: leave it out for no address restriction, or list at least one network".into());
        }
        let mut networks = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            // An address is not a secret: naming the bad entry helps.
            let net = parse_network(item).map_err(|e| {
                if e.starts_with("is not") {
                    let shown: String = item.chars().take(60).collect();
                    format!("allowedAddresses[{i}] ({shown:?}) {e}")
                } else {
                    format!("allowedAddresses[{i}]: {e}")
                }
            })?;
            if !networks.contains(&net) {
                networks.push(net);
            }
        }
        Ok(Some(Addresses { networks }))
    }

    fn write(&self, out: &mut Map<String, Value>) {
        out.insert(
            "allowedAddresses".into(),
            Value::Array(
                self.networks
                    .iter()
                    .map(|n| Value::String(n.to_string()))
                    .collect(),
            ),
        );
    }

    /// Every child network lies inside the parent's networks (adjacent parent networks are
    /// merged first, so two /25s cover their /24).
    fn within(&self, parent: &Self) -> Result<(), String> {
        let merged = IpNet::aggregate(&parent.networks);
        let outside: Vec<String> = self
            .networks
            .iter()
            .filter(|c| !merged.iter().any(|p| p.contains(*c)))
            .map(ToString::to_string)
            .collect();
        if outside.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "allowedAddresses {} reach beyond its creator's address allow-list ({})",
                outside.join(", "),
                parent
                    .networks
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(items: &[&str]) -> Addresses {
        Addresses::new(items.iter().map(|s| parse_network(s).unwrap()).collect())
    }

    #[test]
    fn admits_v4_v6_and_mapped() {
        let a = nets(&["203.0.113.0/24", "2001:db8::/32", "127.0.0.1"]);
        assert!(a.admits("203.0.113.77".parse().unwrap()));
        assert!(!a.admits("203.0.114.1".parse().unwrap()));
        assert!(a.admits("2001:db8:1::5".parse().unwrap()));
        assert!(!a.admits("2001:db9::1".parse().unwrap()));
        assert!(a.admits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!a.admits("127.0.0.2".parse().unwrap()));
        assert!(
            parse_network("203.0.113.5/24")
                .unwrap_err()
                .contains("203.0.113.0/24")
        );
        assert!(parse_network("300.1.1.1").is_err());
    }

    #[test]
    fn within_merges_adjacent_parent_networks() {
        let parent = nets(&["10.0.0.0/25", "10.0.0.128/25"]);
        assert!(nets(&["10.0.0.0/24"]).within(&parent).is_ok());
        assert!(nets(&["10.0.0.0/23"]).within(&parent).is_err());
        assert!(nets(&["::/0"]).within(&parent).is_err());
    }
}
