//! Property tests of "no stronger than its creator" for each dimension of restrictions: a
//! child accepted as within its parent never admits what the parent does not (whatever tags
//! devices gain or lose later, from whatever address, over whatever window), and a refused
//! child really could.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use proptest::prelude::*;
use tollgate_core::restrictions::devices::Tag;
use tollgate_core::restrictions::{Addresses, Devices, Kind, Rate};

/// Networks in a small corner of both families, so that children and parents overlap often.
fn network() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (0u8..4, 0u8..=255, 22u8..=32).prop_map(|(b, c, len)| {
            IpNet::new(IpAddr::V4(Ipv4Addr::new(10, 0, b, c)), len)
                .unwrap()
                .trunc()
        }),
        (0u16..4, 0u16..=255, 118u8..=128).prop_map(|(a, b, len)| {
            IpNet::new(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, a, b)),
                len,
            )
            .unwrap()
            .trunc()
        }),
    ]
}

fn addresses() -> impl Strategy<Value = Addresses> {
    prop::collection::vec(network(), 1..5).prop_map(Addresses::new)
}

fn address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u8..4, 0u8..=255).prop_map(|(b, c)| IpAddr::V4(Ipv4Addr::new(10, 0, b, c))),
        (0u16..4, 0u16..=255)
            .prop_map(|(a, b)| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, a, b))),
    ]
}

const IDS: usize = 6;
const KEYS: [&str; 2] = ["site", "floor"];
const VALUES: [&str; 3] = ["north", "south", "3"];

fn id(i: usize) -> String {
    format!("{i:024x}")
}

fn tag() -> impl Strategy<Value = Tag> {
    (0..KEYS.len(), prop::option::of(0..VALUES.len())).prop_map(|(k, v)| Tag {
        key: KEYS[k].to_owned(),
        value: v.map(|v| VALUES[v].to_owned()),
    })
}

fn devices() -> impl Strategy<Value = Devices> {
    (
        prop::collection::btree_set(0..IDS, 0..3),
        prop::collection::btree_set(tag(), 0..3),
    )
        .prop_filter("restricts something", |(i, t)| {
            !i.is_empty() || !t.is_empty()
        })
        .prop_map(|(ids, tags)| Devices {
            ids: ids.into_iter().map(id).collect(),
            tags: tags.into_iter().collect(),
        })
}

/// Every device there could be: each id with each set of tags it might carry at some point.
fn every_device() -> Vec<(String, Vec<(&'static str, &'static str)>)> {
    let pairs: Vec<(&str, &str)> = KEYS
        .iter()
        .flat_map(|k| VALUES.iter().map(move |v| (*k, *v)))
        .collect();
    let mut out = Vec::new();
    for i in 0..IDS + 1 {
        out.push((id(i), vec![]));
        for p in &pairs {
            out.push((id(i), vec![*p]));
        }
    }
    out
}

fn rate() -> impl Strategy<Value = Rate> {
    (1u64..20, 1u64..10).prop_map(|(requests, per_seconds)| Rate {
        requests,
        per_seconds,
        shared: None,
    })
}

/// The most requests a token bucket of `r` admits within `t` seconds (an idealised bucket:
/// full at the start, refilled continuously).
fn most_in(r: &Rate, t: u64) -> u128 {
    u128::from(r.requests) + u128::from(r.requests) * u128::from(t) / u128::from(r.per_seconds)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn addresses_sound_and_complete(child in addresses(), parent in addresses(), probes in prop::collection::vec(address(), 32)) {
        if child.within(&parent).is_ok() {
            for a in &probes {
                prop_assert!(!child.admits(*a) || parent.admits(*a), "{a} via {child:?} / {parent:?}");
            }
            // Every address of every child network, not only the probes: the first and last.
            for n in child.networks() {
                prop_assert!(parent.admits(n.network()) && parent.admits(n.broadcast()));
            }
        } else {
            // Some address of some child network is outside the parent.
            let outside = child.networks().iter().any(|n| {
                n.hosts().take(4096).chain([n.network(), n.broadcast()]).any(|a| !parent.admits(a))
            });
            prop_assert!(outside, "{child:?} refused within {parent:?}");
        }
    }

    #[test]
    fn devices_sound_and_complete(child in devices(), parent in devices()) {
        let all = every_device();
        let escapes = all.iter().find(|(i, tags)| {
            child.admits(i, tags.iter().copied()) && !parent.admits(i, tags.iter().copied())
        });
        if child.within(&parent).is_ok() {
            prop_assert!(escapes.is_none(), "{escapes:?} via {child:?} / {parent:?}");
        } else {
            prop_assert!(escapes.is_some(), "{child:?} refused within {parent:?}");
        }
    }

    #[test]
    fn rates_sound_and_complete(child in rate(), parent in rate()) {
        let over = (0..200).find(|t| most_in(&child, *t) > most_in(&parent, *t));
        if child.within(&parent).is_ok() {
            prop_assert!(over.is_none(), "{child:?} exceeds {parent:?} over {over:?} s");
        } else {
            // Either a deeper burst (t = 0) or a faster refill, seen over a long enough window.
            let long = (0..10_000).any(|t| most_in(&child, t) > most_in(&parent, t));
            prop_assert!(long, "{child:?} refused within {parent:?}");
        }
    }
}
