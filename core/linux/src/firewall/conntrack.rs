//! Forgetting tracked connections of a published port (ctnetlink), so that a changed UDP or
//! SCTP mapping takes effect for a flow that already exists: dump the conntrack table of one
//! address family and delete the entries whose original destination port matches. Messages
//! are built and read with `netlink-packet-netfilter`.

use super::netfilter::{messages, request, Reply};
use netlink_packet_core::{Nla, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_netfilter::conntrack::{ConntrackAttribute, ConntrackMessage, ProtoTuple, Tuple};
use netlink_packet_netfilter::{NetfilterMessageInner, NetfilterProtoFamily};
use nix::errno::Errno;
use nix::sys::socket::{
    bind, recv, send, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use std::os::fd::{AsRawFd, RawFd};

pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_SCTP: u8 = 132;

/// `CTA_ID` and `CTA_ZONE`: with the original tuple, what names an entry for a delete.
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;

/// For a conntrack entry (the attributes of one dump message): the attributes that name it
/// for a delete, when its original direction is `l4` to `port`.
fn matching(entry: &[ConntrackAttribute], l4: u8, port: u16) -> Option<Vec<ConntrackAttribute>> {
    let hit = entry.iter().any(|a| match a {
        ConntrackAttribute::CtaTupleOrig(tuple) => tuple.iter().any(|t| match t {
            Tuple::Proto(proto) => {
                proto.iter().any(|p| matches!(p, ProtoTuple::Protocol(n) if u8::from(*n) == l4))
                    && proto.iter().any(|p| matches!(p, ProtoTuple::DestinationPort(d) if *d == port))
            }
            _ => false,
        }),
        _ => false,
    });
    let key = entry.iter().filter(|a| match a {
        ConntrackAttribute::CtaTupleOrig(_) => true,
        ConntrackAttribute::Other(nla) => matches!(nla.kind(), CTA_ID | CTA_ZONE),
        _ => false,
    });
    hit.then(|| key.cloned().collect())
}

fn recv_some(fd: RawFd, buf: &mut [u8]) -> Result<usize, String> {
    recv(fd, buf, MsgFlags::empty()).map_err(|e| format!("ctnetlink: {e}"))
}

/// Delete every conntrack entry of the family (IPv4 when `v4`) whose original direction
/// goes to `port` over transport protocol `l4`. Returns how many were deleted.
pub fn flush(v4: bool, l4: u8, port: u16) -> Result<usize, String> {
    let family = if v4 { NetfilterProtoFamily::IPv4 } else { NetfilterProtoFamily::IPv6 };
    let sock = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)
        .map_err(|e| format!("ctnetlink socket: {e}"))?;
    let fd = sock.as_raw_fd();
    bind(fd, &NetlinkAddr::new(0, 0)).map_err(|e| format!("ctnetlink bind: {e}"))?;
    let dump = request(family, ConntrackMessage::Get(Vec::new()), NLM_F_REQUEST | NLM_F_DUMP, 1);
    send(fd, &dump, MsgFlags::empty()).map_err(|e| format!("ctnetlink dump: {e}"))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut doomed = Vec::new();
    'dump: loop {
        let n = recv_some(fd, &mut buf)?;
        for reply in messages(&buf[..n]) {
            match reply {
                Reply::Done => break 'dump,
                Reply::Error(e) => return Err(format!("ctnetlink dump: {}", Errno::from_raw(e))),
                Reply::Message(m) => {
                    if let NetfilterMessageInner::Conntrack(ConntrackMessage::New(entry)) = m.inner {
                        if let Some(key) = matching(&entry, l4, port) {
                            doomed.push(request(family, ConntrackMessage::Delete(key), NLM_F_REQUEST | NLM_F_ACK, 2));
                        }
                    }
                }
                Reply::Ack | Reply::Undecodable(_) => {}
            }
        }
    }
    for msg in &doomed {
        send(fd, msg, MsgFlags::empty()).map_err(|e| format!("ctnetlink delete: {e}"))?;
        let n = recv_some(fd, &mut buf)?;
        for reply in messages(&buf[..n]) {
            match reply {
                Reply::Error(e) if Errno::from_raw(e) != Errno::ENOENT => {
                    return Err(format!("ctnetlink delete: {}", Errno::from_raw(e)));
                }
                _ => {}
            }
        }
    }
    Ok(doomed.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::DefaultNla;
    use netlink_packet_netfilter::conntrack::{IPTuple, Protocol};
    use netlink_packet_netfilter::NetfilterMessage;

    /// A `CTA_ID` attribute, as the kernel sends it.
    fn id(value: u32) -> ConntrackAttribute {
        ConntrackAttribute::Other(DefaultNla::new(CTA_ID, value.to_be_bytes().to_vec()))
    }

    fn entry(proto: Protocol, dport: u16) -> Vec<ConntrackAttribute> {
        vec![
            ConntrackAttribute::CtaTupleOrig(vec![
                Tuple::Ip(vec![IPTuple::DestinationAddress("10.0.0.2".parse().unwrap())]),
                Tuple::Proto(vec![
                    ProtoTuple::Protocol(proto),
                    ProtoTuple::SourcePort(40000),
                    ProtoTuple::DestinationPort(dport),
                ]),
            ]),
            id(7),
            ConntrackAttribute::CtaMark(0),
        ]
    }

    #[test]
    fn entries_are_picked_by_protocol_and_original_destination_port() {
        let e = entry(Protocol::Udp, 5353);
        let key = matching(&e, IPPROTO_UDP, 5353).expect("matches");
        assert_eq!(key, vec![e[0].clone(), e[1].clone()], "the tuple and the id name it; the mark does not");
        assert!(matching(&e, IPPROTO_UDP, 5354).is_none());
        assert!(matching(&e, IPPROTO_SCTP, 5353).is_none());
        assert!(matching(&entry(Protocol::Sctp, 5353), IPPROTO_SCTP, 5353).is_some());
    }

    #[test]
    fn a_delete_request_reads_back_as_the_same_message() {
        let key = matching(&entry(Protocol::Udp, 5353), IPPROTO_UDP, 5353).unwrap();
        let bytes = request(NetfilterProtoFamily::IPv4, ConntrackMessage::Delete(key.clone()), NLM_F_REQUEST, 2);
        let read: Vec<Reply> = messages(&bytes).collect();
        let [Reply::Message(NetfilterMessage { inner, .. })] = &read[..] else { panic!("{read:?}") };
        assert_eq!(inner, &NetfilterMessageInner::Conntrack(ConntrackMessage::Delete(key)));
    }
}
