//! Netfilter's netlink messages (nfnetlink), for the two small clients that speak it
//! directly: conntrack deletion and the nftables watch. The wire format is
//! `netlink-packet-netfilter`'s; this module frames requests and splits what a socket read
//! returned into replies.

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};

/// One message read from a netfilter netlink socket.
#[derive(Debug)]
pub enum Reply {
    /// A netfilter message (a dump entry, a notification).
    Message(NetfilterMessage),
    /// The end of a dump.
    Done,
    /// An acknowledgement.
    Ack,
    /// An error, as a positive errno.
    Error(i32),
    /// A message the crate could not decode, with its netlink message type.
    Undecodable(u16),
}

/// A request of `family` carrying `message`, framed with `flags` and `seq`.
pub fn request(
    family: NetfilterProtoFamily,
    message: impl Into<NetfilterMessageInner>,
    flags: u16,
    seq: u32,
) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let inner = NetfilterMessage::new(NetfilterHeader::new(family, 0, 0), message);
    let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
    m.finalize();
    let mut buf = vec![0; m.header.length as usize];
    m.serialize(&mut buf);
    buf
}

/// The messages in `buf`, in order. Reading stops at a header that does not fit.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Reply> + '_ {
    crate::frames::frames(buf).map(|frame| {
        let kind = u16::from_ne_bytes([frame[4], frame[5]]);
        match NetlinkMessage::<NetfilterMessage>::deserialize(frame) {
            Ok(m) => match m.payload {
                NetlinkPayload::InnerMessage(inner) => Reply::Message(inner),
                NetlinkPayload::Done(_) => Reply::Done,
                NetlinkPayload::Error(e) => match e.code {
                    Some(code) => Reply::Error(code.get().abs()),
                    None => Reply::Ack,
                },
                _ => Reply::Undecodable(kind),
            },
            Err(_) => Reply::Undecodable(kind),
        }
    })
}
