//! Choosing the next free address of a network's ranges, as both stores do it: after the
//! last one handed out (a moving cursor, so a freed address is not reused at once),
//! wrapping around, skipping reserved and taken ones.

use crate::AddressRange;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(n: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        // A v4 range's bounds fit in 32 bits, so every number between them does.
        IpAddr::V4(Ipv4Addr::from(n as u32))
    }
}

/// The first address after `after` (or from the start) in `ranges` that is neither
/// reserved nor taken, or `None` when there is none.
pub(crate) fn next_free(ranges: &[AddressRange], taken: &BTreeSet<IpAddr>, after: Option<IpAddr>) -> Option<IpAddr> {
    let spans: Vec<(u128, u128, bool)> = ranges
        .iter()
        .map(|r| (to_u128(r.range.network()), to_u128(r.range.broadcast()), r.range.addr().is_ipv6()))
        .collect();
    let reserved: BTreeSet<IpAddr> = ranges.iter().flat_map(|r| r.reserved.iter().copied()).collect();
    let is_free = |ip: &IpAddr| !reserved.contains(ip) && !taken.contains(ip);
    // Among this many consecutive addresses one is free, if the ranges hold that many.
    let budget = taken.len() as u128 + reserved.len() as u128 + 1;
    // The cursor counts only inside one of the ranges (they may have changed since).
    let cursor = after.and_then(|a| {
        spans.iter().position(|(lo, hi, v6)| *v6 == a.is_ipv6() && (*lo..=*hi).contains(&to_u128(a))).map(|i| (i, a))
    });
    let start = cursor.map_or(0, |(i, _)| i);
    let first_offset = cursor.map(|(_, a)| to_u128(a));
    for k in 0..=spans.len() {
        let &(lo, hi, v6) = spans.get((start + k) % spans.len().max(1))?;
        // In the cursor's own range, first the part after it; on the way round, the part before.
        let (from, to) = match (k, first_offset) {
            (0, Some(c)) if (lo..=hi).contains(&c) && c < hi => (c + 1, hi),
            (0, Some(_)) => continue,
            (k, Some(c)) if k == spans.len() && (lo..=hi).contains(&c) => (lo, c),
            (k, _) if k == spans.len() => return None,
            _ => (lo, hi),
        };
        let mut n = from;
        let mut tried = 0u128;
        while n <= to && tried < budget {
            let ip = from_u128(n, v6);
            if is_free(&ip) {
                return Some(ip);
            }
            n += 1;
            tried += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(r: &str, reserved: &[&str]) -> AddressRange {
        AddressRange { range: r.parse().unwrap(), reserved: reserved.iter().map(|a| a.parse().unwrap()).collect() }
    }

    fn ips(v: &[&str]) -> BTreeSet<IpAddr> {
        v.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn moves_on_from_the_cursor_and_wraps_around() {
        let r = [range("10.0.0.0/29", &["10.0.0.0", "10.0.0.1", "10.0.0.7"])];
        assert_eq!(next_free(&r, &ips(&[]), None), Some("10.0.0.2".parse().unwrap()));
        let taken = ips(&["10.0.0.2", "10.0.0.3"]);
        assert_eq!(next_free(&r, &taken, Some("10.0.0.3".parse().unwrap())), Some("10.0.0.4".parse().unwrap()));
        let taken = ips(&["10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
        assert_eq!(next_free(&r, &taken, Some("10.0.0.6".parse().unwrap())), Some("10.0.0.2".parse().unwrap()));
        let full = ips(&["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
        assert_eq!(next_free(&r, &full, Some("10.0.0.4".parse().unwrap())), None);
    }

    #[test]
    fn goes_on_to_the_next_range() {
        let r = [range("10.0.0.0/30", &[]), range("10.0.1.0/30", &[])];
        let taken = ips(&["10.0.0.3"]);
        assert_eq!(next_free(&r, &taken, Some("10.0.0.2".parse().unwrap())), Some("10.0.1.0".parse().unwrap()));
        // A cursor outside every range starts from the first.
        assert_eq!(next_free(&r, &taken, Some("10.9.9.9".parse().unwrap())), Some("10.0.0.0".parse().unwrap()));
    }

    #[test]
    fn works_in_a_huge_ipv6_range() {
        let r = [range("fd00::/64", &["fd00::"])];
        let taken = ips(&["fd00::1"]);
        assert_eq!(next_free(&r, &taken, Some("fd00::1".parse().unwrap())), Some("fd00::2".parse().unwrap()));
        assert_eq!(next_free(&r, &taken, None), Some("fd00::2".parse().unwrap()));
    }
}
