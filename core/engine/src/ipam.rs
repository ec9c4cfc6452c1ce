//! IPAM: choosing subnets for new networks and addresses for endpoints.
//!
//! Pure logic over [`Pool`]s; the engine stores the pools with their network. Dynamic
//! addresses come from a moving cursor, so an address just freed is not handed out again
//! until the rest of the range has been used.

use crate::error::{Error, Result};
use crate::model::Pool;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A default address pool: `base` is split into subnets of prefix length `size`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultPool {
    /// The range to carve subnets from.
    pub base: IpNet,
    /// Prefix length of each subnet.
    pub size: u8,
}

/// Docker's default local pools: 172.17-31.0.0/16, then 192.168.0.0/16 in /20s.
pub fn docker_default_pools() -> Vec<DefaultPool> {
    let mut pools: Vec<DefaultPool> = (17..=31)
        .map(|b| DefaultPool { base: IpNet::V4(Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).unwrap()), size: 16 })
        .collect();
    pools.push(DefaultPool { base: "192.168.0.0/16".parse().unwrap(), size: 20 });
    pools
}

/// A ULA /48 for IPv6 networks, split into /64s, from 40 random bits (RFC 4193).
pub fn ula_pool(global_id: [u8; 5]) -> DefaultPool {
    let g = global_id;
    let addr = Ipv6Addr::new(
        0xfd00 | g[0] as u16,
        (g[1] as u16) << 8 | g[2] as u16,
        (g[3] as u16) << 8 | g[4] as u16,
        0,
        0,
        0,
        0,
        0,
    );
    DefaultPool { base: IpNet::V6(Ipv6Net::new(addr, 48).unwrap()), size: 64 }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// Whether two prefixes share any address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first subnet carved from `pools`, of the wanted family, that overlaps nothing in
/// `used` (other networks' subnets and the host's routes).
pub fn pick_subnet(pools: &[DefaultPool], v6: bool, used: &[IpNet]) -> Option<IpNet> {
    for pool in pools.iter().filter(|p| matches!(p.base, IpNet::V6(_)) == v6) {
        let Ok(subnets) = pool.base.subnets(pool.size) else { continue };
        for candidate in subnets.take(1 << 16) {
            if !used.iter().any(|u| overlaps(u, &candidate)) {
                return Some(candidate);
            }
        }
    }
    None
}

/// The first and last host address of a subnet: IPv4 skips the network and broadcast
/// addresses (but /31 and /32 use every address); IPv6 skips the subnet-router anycast.
fn host_bounds(net: &IpNet) -> (u128, u128) {
    let first = to_u128(net.network());
    let last = to_u128(net.broadcast());
    match net {
        IpNet::V4(n) if n.prefix_len() >= 31 => (first, last),
        IpNet::V4(_) => (first + 1, last - 1),
        IpNet::V6(n) if n.prefix_len() == 128 => (first, last),
        IpNet::V6(_) => (first + 1, last),
    }
}

/// Address ranges no network's subnet may touch: the kernel routes them itself (loopback,
/// multicast) or they mean "every address" or "no address".
const UNUSABLE: [(&str, &str); 7] = [
    ("0.0.0.0/8", "\"this network\" (0.0.0.0/8)"),
    ("127.0.0.0/8", "loopback (127.0.0.0/8)"),
    ("224.0.0.0/4", "multicast (224.0.0.0/4)"),
    ("255.255.255.255/32", "the limited broadcast address"),
    ("::/128", "the unspecified address"),
    ("::1/128", "loopback (::1/128)"),
    ("ff00::/8", "multicast (ff00::/8)"),
];

/// Refuse a subnet no network can use, naming why.
pub fn check_subnet(subnet: &IpNet) -> Result<()> {
    if subnet.prefix_len() == 0 {
        return Err(Error::InvalidArgument(format!("subnet {subnet} would hold every address; give a smaller subnet")));
    }
    for (range, what) in UNUSABLE {
        let range: IpNet = range.parse().expect("valid reserved range");
        if overlaps(&range, subnet) {
            return Err(Error::InvalidArgument(format!("subnet {subnet} overlaps {what}, which no network can use")));
        }
    }
    Ok(())
}

impl Pool {
    /// A pool for `subnet`, checking that `ip_range`, `gateway` and `aux` lie inside it,
    /// and choosing the first host address as gateway when none is given and
    /// `want_gateway` is set.
    pub fn new(
        subnet: IpNet,
        ip_range: Option<IpNet>,
        gateway: Option<IpAddr>,
        aux: std::collections::BTreeMap<String, IpAddr>,
        want_gateway: bool,
    ) -> Result<Pool> {
        let subnet = subnet.trunc();
        check_subnet(&subnet)?;
        if let Some(r) = ip_range {
            if matches!(r, IpNet::V4(_)) != matches!(subnet, IpNet::V4(_)) || !subnet.contains(&r) {
                return Err(Error::InvalidArgument(format!("ip-range {r} is not inside subnet {subnet}")));
            }
        }
        if let Some(g) = gateway {
            if !subnet.contains(&g) {
                return Err(Error::InvalidArgument(format!("gateway {g} is not inside subnet {subnet}")));
            }
            let (first, last) = host_bounds(&subnet);
            if !(first..=last).contains(&to_u128(g)) {
                let what = if to_u128(g) == to_u128(subnet.network()) { "network" } else { "broadcast" };
                return Err(Error::InvalidArgument(format!(
                    "gateway {g} is the {what} address of subnet {subnet}, not a host address"
                )));
            }
        }
        for (name, a) in &aux {
            if !subnet.contains(a) {
                return Err(Error::InvalidArgument(format!(
                    "auxiliary address {name}={a} is not inside subnet {subnet}"
                )));
            }
        }
        let mut pool =
            Pool { subnet: Some(subnet), ip_range: ip_range.map(|r| r.trunc()), gateway, aux, ..Default::default() };
        if pool.gateway.is_none() && want_gateway {
            let (first, last) = host_bounds(&subnet);
            let gw = (first..=last).find(|v| !pool.aux.values().any(|a| to_u128(*a) == *v));
            pool.gateway = gw.map(|v| from_u128(v, subnet.network()));
        }
        Ok(pool)
    }

    fn subnet(&self) -> Result<IpNet> {
        self.subnet.ok_or_else(|| Error::Internal("address pool without a subnet".into()))
    }

    fn reserved(&self, ip: IpAddr) -> bool {
        Some(ip) == self.gateway || self.aux.values().any(|a| *a == ip) || self.allocated.contains(&ip)
    }

    /// Hand out `wanted` if given (it must lie in the subnet and be free), else the next
    /// free address after the cursor in the ip-range (or subnet). Returns it with the
    /// subnet's prefix length.
    pub fn allocate(&mut self, wanted: Option<IpAddr>) -> Result<IpNet> {
        let subnet = self.subnet()?;
        let ip = match wanted {
            Some(ip) => {
                if !subnet.contains(&ip) {
                    return Err(Error::InvalidArgument(format!("address {ip} is not inside subnet {subnet}")));
                }
                let (first, last) = host_bounds(&subnet);
                if !(first..=last).contains(&to_u128(ip)) {
                    return Err(Error::InvalidArgument(format!("address {ip} is not a host address of {subnet}")));
                }
                if self.reserved(ip) {
                    return Err(Error::Conflict(format!("address {ip} is already in use in {subnet}")));
                }
                ip
            }
            None => {
                let range = self.ip_range.unwrap_or(subnet);
                let (sfirst, slast) = host_bounds(&subnet);
                let first = to_u128(range.network()).max(sfirst);
                let last = to_u128(range.broadcast()).min(slast);
                let start = self.cursor.map(to_u128).filter(|c| (first..=last).contains(c)).unwrap_or(first);
                let like = subnet.network();
                let found = (start..=last)
                    .chain(first..start)
                    .map(|v| from_u128(v, like))
                    .take(1 << 20)
                    .find(|ip| !self.reserved(*ip));
                let ip = found.ok_or_else(|| Error::Forbidden(format!("no free address left in {range}")))?;
                let next = to_u128(ip).checked_add(1).filter(|n| *n <= last).unwrap_or(first);
                self.cursor = Some(from_u128(next, like));
                ip
            }
        };
        self.allocated.insert(ip);
        IpNet::new(ip, subnet.prefix_len()).map_err(|e| Error::Internal(e.to_string()))
    }

    /// Give an address back.
    pub fn release(&mut self, ip: IpAddr) {
        self.allocated.remove(&ip);
    }

    /// Whether `ip` belongs to this pool's subnet.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.subnet.is_some_and(|s| s.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_pools_skip_used_subnets_and_host_routes() {
        let pools = docker_default_pools();
        assert_eq!(pick_subnet(&pools, false, &[]), Some(net("172.17.0.0/16")));
        let used = [net("172.17.0.0/16"), net("172.18.5.0/24")];
        assert_eq!(pick_subnet(&pools, false, &used), Some(net("172.19.0.0/16")));
        let all: Vec<IpNet> = (17..=31).map(|b| net(&format!("172.{b}.0.0/16"))).collect();
        assert_eq!(pick_subnet(&pools, false, &all), Some(net("192.168.0.0/20")));
    }

    #[test]
    fn ula_pools_hand_out_64s() {
        let pool = ula_pool([1, 2, 3, 4, 5]);
        assert_eq!(pool.base, net("fd01:203:405::/48"));
        assert_eq!(pick_subnet(&[pool], true, &[]), Some(net("fd01:203:405::/64")));
    }

    #[test]
    fn subnets_the_kernel_routes_itself_are_refused() {
        for bad in ["127.5.0.0/16", "224.1.0.0/16", "0.0.0.0/0", "::/0", "::1/128", "ff02::/16", "0.1.0.0/16"] {
            let err = Pool::new(net(bad), None, None, BTreeMap::new(), true).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err}");
            assert!(err.to_string().starts_with("subnet "), "{bad}: {err}");
        }
        assert!(Pool::new(net("10.9.0.0/24"), None, None, BTreeMap::new(), true).is_ok());
    }

    #[test]
    fn a_gateway_must_be_a_host_address() {
        for (gw, what) in [("10.9.0.0", "network"), ("10.9.0.255", "broadcast")] {
            let err = Pool::new(net("10.9.0.0/24"), None, Some(ip(gw)), BTreeMap::new(), true).unwrap_err();
            assert!(err.to_string().contains(&format!("gateway {gw} is the {what} address")), "{err}");
        }
        assert!(Pool::new(net("10.9.0.0/31"), None, Some(ip("10.9.0.0")), BTreeMap::new(), true).is_ok());
    }

    #[test]
    fn gateway_defaults_to_the_first_host() {
        let p = Pool::new(net("10.9.0.0/24"), None, None, BTreeMap::new(), true).unwrap();
        assert_eq!(p.gateway, Some(ip("10.9.0.1")));
    }

    #[test]
    fn gateway_range_and_aux_must_be_inside_the_subnet() {
        assert!(Pool::new(net("10.9.0.0/24"), None, Some(ip("10.8.0.1")), BTreeMap::new(), true).is_err());
        assert!(Pool::new(net("10.9.0.0/24"), Some(net("10.9.1.0/25")), None, BTreeMap::new(), true).is_err());
        let aux = BTreeMap::from([("x".to_string(), ip("10.10.0.1"))]);
        assert!(Pool::new(net("10.9.0.0/24"), None, None, aux, true).is_err());
    }

    #[test]
    fn dynamic_addresses_skip_gateway_aux_and_come_from_the_range() {
        let aux = BTreeMap::from([("r".to_string(), ip("10.9.0.130"))]);
        let mut p = Pool::new(net("10.9.0.0/24"), Some(net("10.9.0.128/25")), None, aux, true).unwrap();
        assert_eq!(p.gateway, Some(ip("10.9.0.1")));
        // The range's own first and last addresses are hosts of the subnet, so usable.
        assert_eq!(p.allocate(None).unwrap(), net("10.9.0.128/24"));
        assert_eq!(p.allocate(None).unwrap(), net("10.9.0.129/24"));
        assert_eq!(p.allocate(None).unwrap(), net("10.9.0.131/24"));
    }

    #[test]
    fn a_freed_address_is_not_reused_at_once() {
        let mut p = Pool::new(net("10.9.0.0/29"), None, None, BTreeMap::new(), true).unwrap();
        let a = p.allocate(None).unwrap();
        p.release(a.addr());
        let b = p.allocate(None).unwrap();
        assert_ne!(a, b);
        // The range is .2-.6; after it wraps, the freed address comes back.
        let rest: Vec<IpNet> = (0..4).map(|_| p.allocate(None).unwrap()).collect();
        assert!(rest.contains(&a));
        assert!(p.allocate(None).is_err());
    }

    #[test]
    fn static_addresses_are_checked() {
        let mut p = Pool::new(net("10.9.0.0/24"), None, None, BTreeMap::new(), true).unwrap();
        assert_eq!(p.allocate(Some(ip("10.9.0.50"))).unwrap(), net("10.9.0.50/24"));
        assert!(matches!(p.allocate(Some(ip("10.9.0.50"))), Err(Error::Conflict(_))));
        assert!(matches!(p.allocate(Some(ip("10.9.0.1"))), Err(Error::Conflict(_))));
        assert!(matches!(p.allocate(Some(ip("10.9.1.5"))), Err(Error::InvalidArgument(_))));
        assert!(matches!(p.allocate(Some(ip("10.9.0.255"))), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn ipv6_allocation_works() {
        let mut p = Pool::new(net("fd00:1::/64"), None, None, BTreeMap::new(), true).unwrap();
        assert_eq!(p.gateway, Some(ip("fd00:1::1")));
        assert_eq!(p.allocate(None).unwrap(), net("fd00:1::2/64"));
    }

    #[test]
    fn overlap_detection() {
        assert!(overlaps(&net("10.0.0.0/8"), &net("10.1.0.0/16")));
        assert!(overlaps(&net("10.1.0.0/16"), &net("10.0.0.0/8")));
        assert!(!overlaps(&net("10.1.0.0/16"), &net("10.2.0.0/16")));
    }
}
