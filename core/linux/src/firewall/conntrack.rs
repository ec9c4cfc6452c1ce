//! Forgetting tracked connections of a published port (ctnetlink), so that a changed UDP or
//! SCTP mapping takes effect for a flow that already exists. Written against the netlink
//! wire format directly: it dumps the conntrack table of one address family and deletes the
//! entries whose original destination port matches.
use super::nlmsg::{align, attrs, messages, u32_at};
use nix::sys::socket::{
    bind, recv, send, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use std::os::fd::{AsRawFd, RawFd};

pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_SCTP: u8 = 132;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
/// `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_*`.
const CT_NEW: u16 = 0x100;
const CT_GET: u16 = 0x101;
const CT_DELETE: u16 = 0x102;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;
const ENOENT: i32 = 2;

/// A ctnetlink request: netlink header, nfgenmsg for `family`, then `attrs` (each aligned).
fn request(kind: u16, flags: u16, seq: u32, family: u8, attrs: &[&[u8]]) -> Vec<u8> {
    let mut m = vec![0u8; 16];
    m.extend_from_slice(&[family, 0, 0, 0]);
    for a in attrs {
        m.extend_from_slice(a);
        m.resize(align(m.len()), 0);
    }
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m[4..6].copy_from_slice(&kind.to_ne_bytes());
    m[6..8].copy_from_slice(&flags.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    m
}

/// The errno of an NLMSG_ERROR payload (0 for an acknowledgement).
fn errno(payload: &[u8]) -> i32 {
    if payload.len() < 4 {
        return 0;
    }
    -(u32_at(payload, 0) as i32)
}

/// For a conntrack entry (the attributes of one dump message): the attributes that name it
/// for a delete, when its original direction is `l4` to `port`.
fn matching(entry: &[u8], l4: u8, port: u16) -> Option<Vec<&[u8]>> {
    let mut key = Vec::new();
    let mut hit = false;
    for (kind, whole, payload) in attrs(entry) {
        match kind {
            CTA_TUPLE_ORIG => {
                key.push(whole);
                for (k, _, proto) in attrs(payload) {
                    if k != CTA_TUPLE_PROTO {
                        continue;
                    }
                    let mut num = None;
                    let mut dport = None;
                    for (a, _, v) in attrs(proto) {
                        match a {
                            CTA_PROTO_NUM if !v.is_empty() => num = Some(v[0]),
                            CTA_PROTO_DST_PORT if v.len() >= 2 => dport = Some(u16::from_be_bytes([v[0], v[1]])),
                            _ => {}
                        }
                    }
                    hit = num == Some(l4) && dport == Some(port);
                }
            }
            CTA_ZONE | CTA_ID => key.push(whole),
            _ => {}
        }
    }
    hit.then_some(key)
}

fn recv_some(fd: RawFd, buf: &mut [u8]) -> Result<usize, String> {
    recv(fd, buf, MsgFlags::empty()).map_err(|e| format!("ctnetlink: {e}"))
}

/// Delete every conntrack entry of the family (IPv4 when `v4`) whose original direction
/// goes to `port` over transport protocol `l4`. Returns how many were deleted.
pub fn flush(v4: bool, l4: u8, port: u16) -> Result<usize, String> {
    let family = if v4 { nix::libc::AF_INET } else { nix::libc::AF_INET6 } as u8;
    let sock = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)
        .map_err(|e| format!("ctnetlink socket: {e}"))?;
    let fd = sock.as_raw_fd();
    bind(fd, &NetlinkAddr::new(0, 0)).map_err(|e| format!("ctnetlink bind: {e}"))?;
    send(fd, &request(CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 1, family, &[]), MsgFlags::empty())
        .map_err(|e| format!("ctnetlink dump: {e}"))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut doomed: Vec<Vec<u8>> = Vec::new();
    'dump: loop {
        let n = recv_some(fd, &mut buf)?;
        for (kind, payload) in messages(&buf[..n]) {
            match kind {
                NLMSG_DONE => break 'dump,
                NLMSG_ERROR if errno(payload) != 0 => {
                    return Err(format!("ctnetlink dump: errno {}", errno(payload)));
                }
                CT_NEW if payload.len() >= 4 => {
                    if let Some(key) = matching(&payload[4..], l4, port) {
                        doomed.push(request(CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, 2, family, &key));
                    }
                }
                _ => {}
            }
        }
    }
    for msg in &doomed {
        send(fd, msg, MsgFlags::empty()).map_err(|e| format!("ctnetlink delete: {e}"))?;
        let n = recv_some(fd, &mut buf)?;
        for (kind, payload) in messages(&buf[..n]) {
            let e = errno(payload);
            if kind == NLMSG_ERROR && e != 0 && e != ENOENT {
                return Err(format!("ctnetlink delete: errno {e}"));
            }
        }
    }
    Ok(doomed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize(align(a.len()), 0);
        a
    }

    #[test]
    fn entries_are_picked_by_protocol_and_original_destination_port() {
        let nested = 0x8000;
        let proto = [attr(CTA_PROTO_NUM, &[17]), attr(CTA_PROTO_DST_PORT, &5353u16.to_be_bytes())].concat();
        let orig = attr(CTA_TUPLE_ORIG | nested, &attr(CTA_TUPLE_PROTO | nested, &proto));
        let entry = [orig.clone(), attr(CTA_ID, &7u32.to_be_bytes()), attr(3, &[0; 4])].concat();
        let key = matching(&entry, IPPROTO_UDP, 5353).expect("matches");
        assert_eq!(key.len(), 2);
        assert_eq!(key[0], &orig[..]);
        assert!(matching(&entry, IPPROTO_UDP, 5354).is_none());
        assert!(matching(&entry, IPPROTO_SCTP, 5353).is_none());
        let msg = request(CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, 2, 2, &key);
        assert_eq!(u32_at(&msg, 0) as usize, msg.len());
        assert_eq!(messages(&msg).count(), 1);
        assert_eq!(msg.len(), 16 + 4 + orig.len() + 8);
    }
}
