//! How subnets and interface addresses (`IpNet`) are written into messages: as text built
//! on the stack, handed to the JSON writer in one piece. `ipnet`'s own `Serialize` hands
//! the writer every piece its `Display` makes (`172`, `.`, `20`, …, `/`, `16`), and the
//! writer scans and copies each on its own. The text is the same. (`IpAddr` needs none of
//! this: serde already writes it from a stack buffer.) Only the SDK's message types use
//! this, through `#[serde(serialize_with)]`.

use ipnet::IpNet;
use serde::ser::{Serialize, Serializer};
use std::fmt::Write;

/// Longer than any IPv6 address with a prefix length (`ffff:…:255.255.255.255/128`).
const LONGEST: usize = 64;

/// Text written into a fixed buffer; fails when it would not fit.
struct StackText {
    bytes: [u8; LONGEST],
    len: usize,
}

impl StackText {
    fn push_u8(&mut self, n: u8) {
        let mut digits = [b'0' + n / 100, b'0' + n / 10 % 10, b'0' + n % 10];
        let skip = if n >= 100 {
            0
        } else if n >= 10 {
            1
        } else {
            2
        };
        let digits = &mut digits[skip..];
        if let Some(to) = self.bytes.get_mut(self.len..self.len + digits.len()) {
            to.copy_from_slice(digits);
            self.len += digits.len();
        }
    }

    fn push(&mut self, b: u8) {
        if let Some(to) = self.bytes.get_mut(self.len) {
            *to = b;
            self.len += 1;
        }
    }
}

impl Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Serialise a subnet or an address with its prefix length as its text, in one piece.
pub(crate) fn addr<S: Serializer>(net: &IpNet, serializer: S) -> Result<S::Ok, S::Error> {
    if !serializer.is_human_readable() {
        return net.serialize(serializer);
    }
    let mut text = StackText { bytes: [0; LONGEST], len: 0 };
    match net {
        IpNet::V4(v4) => {
            for (i, octet) in v4.addr().octets().into_iter().enumerate() {
                if i > 0 {
                    text.push(b'.');
                }
                text.push_u8(octet);
            }
            text.push(b'/');
            text.push_u8(v4.prefix_len());
        }
        IpNet::V6(v6) => {
            if write!(text, "{}/{}", v6.addr(), v6.prefix_len()).is_err() {
                return net.serialize(serializer);
            }
        }
    }
    match std::str::from_utf8(&text.bytes[..text.len]) {
        Ok(s) => serializer.serialize_str(s),
        Err(_) => net.serialize(serializer),
    }
}

/// A subnet written by [`addr`], for options and lists of them.
struct Net<'a>(&'a IpNet);

impl Serialize for Net<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        addr(self.0, serializer)
    }
}

/// [`addr`] for an optional subnet.
pub(crate) fn addr_opt<S: Serializer>(net: &Option<IpNet>, serializer: S) -> Result<S::Ok, S::Error> {
    match net {
        Some(n) => serializer.serialize_some(&Net(n)),
        None => serializer.serialize_none(),
    }
}

/// [`addr`] for a list of subnets.
pub(crate) fn addr_list<S: Serializer>(nets: &[IpNet], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(nets.iter().map(Net))
}

#[cfg(test)]
mod tests {
    use ipnet::IpNet;

    #[derive(serde::Serialize)]
    struct Sample {
        #[serde(serialize_with = "super::addr")]
        net: IpNet,
        #[serde(serialize_with = "super::addr_opt")]
        address: Option<IpNet>,
        #[serde(serialize_with = "super::addr_list")]
        subnets: Vec<IpNet>,
    }

    #[test]
    fn subnets_read_as_ipnet_writes_them() {
        let nets = [
            "172.20.0.5/16",
            "0.0.0.0/0",
            "10.9.99.100/32",
            "255.255.255.255/32",
            "fd12:3456:789a::5/64",
            "::/0",
            "::ffff:1.2.3.4/128",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
        ];
        for net in nets.map(|n| n.parse::<IpNet>().unwrap()) {
            let sample = Sample { net, address: Some(net), subnets: vec![net, net.trunc()] };
            let ours = serde_json::to_string(&sample).unwrap();
            let ipnets = serde_json::json!({ "net": net, "address": net, "subnets": [net, net.trunc()] });
            assert_eq!(ours, ipnets.to_string());
        }
        let none = Sample { net: IpNet::default(), address: None, subnets: vec![] };
        assert_eq!(serde_json::to_string(&none).unwrap(), r#"{"net":"0.0.0.0/0","address":null,"subnets":[]}"#);
    }
}
