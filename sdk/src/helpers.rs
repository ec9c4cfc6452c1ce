//! Small decisions most network drivers share: interface names, MACs, private state.

use crate::error::{DriverError, DriverResult};
use crate::network::{EndpointInfo, EndpointRequest, JoinInfo};
use crate::plan::{LinkKind, LinkSpec, Netns, Plan, RouteSpec, Step};
use crate::state::DriverState;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The endpoint option naming the interface inside the sandbox, as Docker spells it.
pub const ENDPOINT_IFNAME: &str = "com.docker.network.endpoint.ifname";

/// The network option giving the prefix of sandbox interface names, as Docker spells it.
pub const IFACE_PREFIX: &str = "com.docker.network.container_iface_prefix";

/// 64-bit FNV-1a of `bytes`: small, stable across builds and platforms, well spread.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}

/// Deterministic locally-administered MAC address derived from `seed` (an endpoint id),
/// the way Docker derives one from an address: stable across restarts, unicast.
pub fn mac_from_seed(seed: &str) -> String {
    let b = fnv1a(seed.as_bytes()).to_be_bytes();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

/// Pick the first interface name `prefixN` not in `taken`.
pub fn next_interface_name(prefix: &str, taken: &[String]) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|n| !taken.iter().any(|t| t == n))
        .expect("an unbounded range always yields a free name")
}

/// Whether `name` is a usable interface name: 1 to 15 bytes of printable ASCII, not `.` or
/// `..`, without `/` or `:` (the kernel refuses them), `%` (the kernel would number the name
/// itself) or whitespace, NUL and non-ASCII bytes (tools cannot show or type them).
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_graphic() && !b"/:%".contains(&b))
}

/// The loopback interface every network namespace has.
pub const LOOPBACK: &str = "lo";

/// The network option setting the MTU of its links, as Docker spells it.
pub const MTU: &str = "com.docker.network.driver.mtu";

/// The network's [`MTU`] option, between 68 and `max`, else `default`.
pub fn mtu_option(options: &std::collections::BTreeMap<String, String>, default: u32, max: u32) -> DriverResult<u32> {
    match options.get(MTU) {
        None => Ok(default),
        Some(v) => match v.parse::<u32>() {
            Ok(m) if (68..=max).contains(&m) => Ok(m),
            _ => Err(DriverError::invalid_option(MTU, format!("{v:?} is not an MTU between 68 and {max}"))),
        },
    }
}

/// The network's [`IFACE_PREFIX`] option (at most 12 bytes, so `prefixN` stays a valid
/// name), else `eth`.
pub fn iface_prefix(options: &std::collections::BTreeMap<String, String>) -> DriverResult<String> {
    match options.get(IFACE_PREFIX) {
        Some(p) if valid_ifname(p) && p.len() <= 12 => Ok(p.clone()),
        Some(p) => Err(DriverError::invalid_option(IFACE_PREFIX, format!("{p:?} is not a valid interface prefix"))),
        None => Ok("eth".into()),
    }
}

/// The interface name an endpoint gets inside its sandbox: the endpoint's
/// [`ENDPOINT_IFNAME`] option, else the first free `prefixN`. Refuses any other endpoint
/// option (naming `driver`), a bad name, and a name the sandbox already uses.
pub fn sandbox_ifname(driver: &str, req: &EndpointRequest, prefix: &str) -> DriverResult<String> {
    if let Some(bad) = req.endpoint.options.keys().find(|k| k.as_str() != ENDPOINT_IFNAME) {
        return Err(DriverError::unknown_option(driver, bad));
    }
    let name = match req.endpoint.options.get(ENDPOINT_IFNAME) {
        Some(n) if n == LOOPBACK => {
            return Err(DriverError::invalid_option(ENDPOINT_IFNAME, "lo is the sandbox's loopback interface"))
        }
        Some(n) if valid_ifname(n) => n.clone(),
        Some(n) => {
            return Err(DriverError::invalid_option(ENDPOINT_IFNAME, format!("{n:?} is not a valid interface name")))
        }
        None => next_interface_name(prefix, &req.sandbox.interfaces),
    };
    if req.sandbox.interfaces.contains(&name) {
        return Err(DriverError::conflict(format!("interface {name} already exists in sandbox {}", req.sandbox.name)));
    }
    Ok(name)
}

/// An endpoint that is a veth pair with one end on a host bridge and the other inside the
/// sandbox, as bridge-like drivers make them. It is also the endpoint's private state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct VethEndpoint {
    /// The host end: `veth` and the first 11 hex digits of the endpoint id.
    pub host_if: String,
    /// The sandbox end's name; see [`sandbox_ifname`].
    pub ifname: String,
    /// The sandbox end's MAC: the one the caller asked for, else [`mac_from_seed`].
    pub mac: String,
}

impl VethEndpoint {
    /// Name the endpoint's two ends and choose its MAC (see [`sandbox_ifname`] for the
    /// options checked, naming `driver`).
    pub fn new(driver: &str, req: &EndpointRequest, prefix: &str) -> DriverResult<VethEndpoint> {
        let id = &req.endpoint.id;
        Ok(VethEndpoint {
            host_if: format!("veth{}", &id[..id.len().min(11)]),
            ifname: sandbox_ifname(driver, req, prefix)?,
            mac: req.endpoint.mac.clone().unwrap_or_else(|| mac_from_seed(id)),
        })
    }

    /// What create-endpoint tells core.
    pub fn info(&self) -> EndpointInfo {
        EndpointInfo { mac: Some(self.mac.clone()) }
    }

    /// Create the pair, the sandbox end directly inside `sandbox`, the host end on `bridge`,
    /// both with `mtu` and up; undo deletes it.
    pub fn link_add(&self, sandbox: &Netns, bridge: &str, mtu: u32) -> Step {
        let mut veth = LinkSpec::new(
            &self.host_if,
            LinkKind::Veth { peer: self.ifname.clone(), peer_netns: sandbox.clone(), peer_mac: Some(self.mac.clone()) },
        );
        veth.mtu = Some(mtu);
        veth.master = Some(bridge.to_string());
        veth.up = true;
        Step::link_add(Netns::Host, veth)
    }
}

/// A driver's private state as the JSON core stores; an error names the driver.
pub fn state_to_value<T: Serialize>(driver: &str, state: &T) -> DriverResult<DriverState> {
    DriverState::new(state).map_err(|e| DriverError::internal(format!("{driver} state: {e}")))
}

/// Read a driver's private state (`what`: "network", "endpoint", …) as its own type,
/// straight from the JSON text; strings may borrow from it.
pub fn state_from_value<'a, T: Deserialize<'a>>(driver: &str, state: &'a DriverState, what: &str) -> DriverResult<T> {
    state.read().map_err(|e| DriverError::internal(format!("{driver}: unreadable {what} state: {e}")))
}

/// Give interface `ifname` in `sandbox` the endpoint's addresses and, unless `internal`, a
/// default route through the gateway of the subnet each address is in: the steps go into
/// `plan`, the routes and gateways into `info`, as join reports them.
pub fn join_addresses(
    req: &EndpointRequest,
    sandbox: &Netns,
    ifname: &str,
    internal: bool,
    plan: &mut Plan,
    info: &mut JoinInfo,
) {
    for (addr, subnets) in [(&req.endpoint.ipv4, &req.network.ipv4), (&req.endpoint.ipv6, &req.network.ipv6)] {
        let Some(addr) = addr else { continue };
        plan.push(Step::addr_add(sandbox.clone(), ifname, *addr));
        if internal {
            continue;
        }
        let Some(gw) = subnets.iter().find(|p| p.subnet.contains(&addr.addr())).and_then(|p| p.gateway) else {
            continue;
        };
        let route = RouteSpec {
            destination: default_route(gw),
            gateway: Some(gw),
            device: Some(ifname.to_string()),
            metric: None,
            ..Default::default()
        };
        plan.push(Step::route_add(sandbox.clone(), route.clone()));
        info.routes.push(route);
        match gw {
            IpAddr::V4(_) => info.gateway_v4 = Some(gw),
            IpAddr::V6(_) => info.gateway_v6 = Some(gw),
        }
    }
}

/// The default route of `gw`'s family.
fn default_route(gw: IpAddr) -> IpNet {
    match gw {
        IpAddr::V4(_) => "0.0.0.0/0".parse().expect("valid prefix"),
        IpAddr::V6(_) => "::/0".parse().expect("valid prefix"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{EndpointSpec, SandboxSpec};
    use std::collections::BTreeMap;

    fn request(options: &[(&str, &str)], taken: &[&str]) -> EndpointRequest {
        EndpointRequest {
            endpoint: EndpointSpec {
                options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
                ..Default::default()
            },
            sandbox: SandboxSpec {
                name: "s".into(),
                interfaces: taken.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn sandbox_names_follow_the_option_else_the_first_free_one() {
        assert_eq!(sandbox_ifname("d", &request(&[], &["eth0", "eth2"]), "eth").unwrap(), "eth1");
        assert_eq!(sandbox_ifname("d", &request(&[(ENDPOINT_IFNAME, "data0")], &[]), "eth").unwrap(), "data0");
        let e = sandbox_ifname("d", &request(&[(ENDPOINT_IFNAME, "a/b")], &[]), "eth").unwrap_err();
        assert!(e.message.contains(ENDPOINT_IFNAME), "{}", e.message);
        let e = sandbox_ifname("d", &request(&[(ENDPOINT_IFNAME, "eth0")], &["eth0"]), "eth").unwrap_err();
        assert!(e.message.contains("already exists in sandbox s"), "{}", e.message);
        let e = sandbox_ifname("d", &request(&[("bogus", "1")], &[]), "eth").unwrap_err();
        assert!(e.message.contains("\"bogus\""), "{}", e.message);
    }

    #[test]
    fn macs_are_stable_unicast_and_local() {
        let m = mac_from_seed("abc");
        assert_eq!(m, mac_from_seed("abc"));
        assert_ne!(m, mac_from_seed("abd"));
        assert!(m.starts_with("02:42:"));
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
    }

    #[test]
    fn the_mtu_option_is_bounded() {
        let opts = |v: &str| BTreeMap::from([(MTU.to_string(), v.to_string())]);
        assert_eq!(mtu_option(&BTreeMap::new(), 1450, 1500).unwrap(), 1450);
        assert_eq!(mtu_option(&opts("1400"), 1450, 1500).unwrap(), 1400);
        for bad in ["67", "1501", "x"] {
            let e = mtu_option(&opts(bad), 1450, 1500).unwrap_err();
            assert!(e.message.contains("between 68 and 1500"), "{}", e.message);
        }
    }

    #[test]
    fn the_prefix_option_is_checked() {
        let opts = |v: &str| BTreeMap::from([(IFACE_PREFIX.to_string(), v.to_string())]);
        assert_eq!(iface_prefix(&BTreeMap::new()).unwrap(), "eth");
        assert_eq!(iface_prefix(&opts("net")).unwrap(), "net");
        assert!(iface_prefix(&opts("thirteen-char")).unwrap_err().message.contains(IFACE_PREFIX));
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(valid_ifname("eth0"));
        assert!(!valid_ifname("sixteen-chars-xx"));
        assert!(!valid_ifname(".."));
        assert!(!valid_ifname("a b"));
        for bad in ["", "eth\0", "\u{e9}th0", "eth%d", "a:b", "a/b", "tab\t"] {
            assert!(!valid_ifname(bad), "{bad:?}");
        }
    }
}
