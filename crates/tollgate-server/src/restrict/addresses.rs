//! Address allow-lists, and which address a request comes from.
//!
//! The client's address is the connection's peer, unless that peer is one of the operator's
//! trusted proxies (`--trusted-proxy CIDR`): then `X-Forwarded-For` is read from the right,
//! skipping trusted proxies, and the first untrusted address is the client. Without trusted
//! proxies the header is ignored (anyone can send it).

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;
use tollgate_core::restrictions::Addresses;
use tollgate_core::restrictions::addresses::canonical;

use super::{Check, Context, Verdict};
use crate::error::ApiError;

#[derive(Debug)]
pub struct AddressCheck {
    allowed: Addresses,
    /// The refusal names the rule: the list as the token shows it.
    listed: String,
}

impl AddressCheck {
    pub fn new(allowed: Addresses) -> AddressCheck {
        let listed = allowed
            .networks()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        AddressCheck { allowed, listed }
    }
}

impl Check for AddressCheck {
    fn check(&self, ctx: &Context<'_>) -> Verdict {
        match ctx.client {
            Some(addr) if self.allowed.admits(addr) => Verdict::Pass,
            Some(addr) => Verdict::Refuse(ApiError::restricted(
                ctx.action,
                format!(
                    "This API token may be used only from {} (its allowedAddresses); this request came from {}",
                    self.listed,
                    canonical(addr)
                ),
            )),
            None => Verdict::Refuse(ApiError::restricted(
                ctx.action,
                format!(
                    "This API token may be used only from {} (its allowedAddresses), and this request's address is unknown",
                    self.listed
                ),
            )),
        }
    }
}

/// The client's address: the peer, or what a trusted proxy says it forwarded for.
pub fn client_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = canonical(peer?);
    let is_trusted = |a: &IpAddr| trusted.iter().any(|n| n.contains(a));
    if trusted.is_empty() || !is_trusted(&peer) {
        return Some(peer);
    }
    // Rightmost first: each hop appends the address it received from.
    let mut client = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(text) = value.to_str() else {
            return Some(client);
        };
        for hop in text.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(addr) => {
                    client = canonical(addr);
                    if !is_trusted(&client) {
                        return Some(client);
                    }
                }
                // Garbage from beyond the trusted proxies: stop at the last address known.
                Err(_) => return Some(client),
            }
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/24".parse().unwrap()];
        let h = headers(&["203.0.113.9, 10.0.0.7"]);
        assert_eq!(
            client_address(Some(proxy), &h, &[]),
            Some(proxy),
            "no trusted proxies: the header is ignored"
        );
        assert_eq!(
            client_address(Some(proxy), &h, &trusted),
            Some("203.0.113.9".parse().unwrap())
        );
        let outsider: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_address(Some(outsider), &h, &trusted), Some(outsider));
        // A client that forges the header's left part gets the address the proxy saw.
        let h = headers(&["1.2.3.4, 198.51.100.1"]);
        assert_eq!(
            client_address(Some(proxy), &h, &trusted),
            Some("198.51.100.1".parse().unwrap())
        );
        let h = headers(&["bogus", "10.0.0.9"]);
        assert_eq!(
            client_address(Some(proxy), &h, &trusted),
            Some("10.0.0.9".parse().unwrap())
        );
        assert_eq!(client_address(None, &h, &trusted), None);
    }
}
