//! Noticing when someone else removes wharf's nftables tables, chains, sets or rules (an
//! `nft flush ruleset`, another tool's firewall reload): a netlink socket subscribed to
//! nftables' change notifications (`NFNLGRP_NFTABLES`) in the firewall's namespace. It only
//! says that something of wharf's was deleted; the firewall then checks its tables and
//! restores them.

use super::netfilter::{messages, Reply};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, NfTablesMessage, RuleAttribute, SetAttribute, TableAttribute,
};
use netlink_packet_netfilter::{NetfilterMessageInner, NetfilterProtoFamily};
use nix::sys::socket::{
    bind, recv, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;
use std::os::fd::{AsRawFd, OwnedFd};

/// `NFNLGRP_NFTABLES`.
const GROUP_NFTABLES: u32 = 7;
/// `NFNL_SUBSYS_NFTABLES`, the high byte of an nftables message's netlink type.
const SUBSYS_NFTABLES: u16 = 10;

/// A subscription to nftables change notifications in the calling thread's namespace.
pub struct Watch {
    fd: OwnedFd,
    buf: Vec<u8>,
    /// The name of wharf's tables.
    table: String,
}

/// What one wait for notifications found.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// Nothing within the wait.
    Nothing,
    /// Only changes that leave wharf's tables whole.
    Harmless,
    /// Something of wharf's was deleted, or notifications were lost: check the tables.
    Check,
}

impl Watch {
    /// Subscribe; waits for notifications return at least every `tick`.
    /// `table`: the name of wharf's tables.
    pub fn new(tick: std::time::Duration, table: &str) -> Result<Watch, String> {
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)
            .map_err(|e| format!("nftables watch socket: {e}"))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 1 << (GROUP_NFTABLES - 1)))
            .map_err(|e| format!("nftables watch: joining the nftables group: {e}"))?;
        let tick = TimeVal::new(tick.as_secs() as _, tick.subsec_micros() as _);
        setsockopt(&fd, sockopt::ReceiveTimeout, &tick).map_err(|e| format!("nftables watch: {e}"))?;
        Ok(Watch { fd, buf: vec![0; 1 << 16], table: table.to_string() })
    }

    /// Wait up to one tick for notifications and read what has come.
    pub fn wait(&mut self) -> Seen {
        match recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::empty()) {
            Ok(n) => {
                if touches(&self.buf[..n], &self.table) {
                    Seen::Check
                } else {
                    Seen::Harmless
                }
            }
            // ENOBUFS: the socket overflowed and notifications were lost.
            Err(nix::errno::Errno::ENOBUFS) => Seen::Check,
            // A timeout (EAGAIN), an interrupted wait, or anything else: nothing was read.
            Err(_) => Seen::Nothing,
        }
    }
}

/// Whether the notifications in `buf` delete a table, chain, rule or set of a table named
/// `table` in the inet or bridge family. A notification the netfilter crate cannot decode
/// counts as a deletion when it is an nftables one: checking the tables costs little, and
/// missing a deletion would leave the firewall open.
fn touches(buf: &[u8], table: &str) -> bool {
    messages(buf).any(|reply| match reply {
        Reply::Message(m) => {
            let ours = matches!(m.header.family, NetfilterProtoFamily::Inet | NetfilterProtoFamily::Bridge);
            ours && deleted_table(&m.inner) == Some(table)
        }
        Reply::Undecodable(kind) => kind >> 8 == SUBSYS_NFTABLES,
        _ => false,
    })
}

/// The table a deletion of a table, chain, rule or set happened in.
fn deleted_table(inner: &NetfilterMessageInner) -> Option<&str> {
    let NetfilterMessageInner::NfTables(m) = inner else { return None };
    match m {
        NfTablesMessage::DeleteTable(t) => t.attributes.iter().find_map(|a| match a {
            TableAttribute::Name(n) => Some(n.as_str()),
            _ => None,
        }),
        NfTablesMessage::DeleteChain(c) => c.attributes.iter().find_map(|a| match a {
            ChainAttribute::Table(n) => Some(n.as_str()),
            _ => None,
        }),
        NfTablesMessage::DeleteRule(r) => r.attributes.iter().find_map(|a| match a {
            RuleAttribute::Table(n) => Some(n.as_str()),
            _ => None,
        }),
        NfTablesMessage::DeleteSet(s) => s.attributes.iter().find_map(|a| match a {
            SetAttribute::Table(n) => Some(n.as_str()),
            _ => None,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::netfilter::request;
    use super::*;
    use netlink_packet_netfilter::nftables::{SetElementMessage, TableMessage};

    fn deltable(family: NetfilterProtoFamily, table: &str) -> Vec<u8> {
        let m = TableMessage { attributes: vec![TableAttribute::Name(table.into())] };
        request(family, NfTablesMessage::DeleteTable(m), 0, 0)
    }

    #[test]
    fn only_deletions_in_wharfs_tables_count() {
        use NetfilterProtoFamily::{Bridge, IPv4, Inet};
        assert!(touches(&deltable(Inet, "wharf"), "wharf"));
        assert!(!touches(&deltable(Inet, "wharf"), "wharf2"), "another wharfd's tables");
        assert!(touches(&deltable(Bridge, "wharf"), "wharf"));
        assert!(!touches(&deltable(Inet, "filter"), "wharf"), "another table");
        assert!(!touches(&deltable(IPv4, "wharf"), "wharf"), "an ip-family table of that name is not wharf's");
        let chain = NfTablesMessage::DeleteChain(netlink_packet_netfilter::nftables::ChainMessage {
            attributes: vec![ChainAttribute::Table("wharf".into()), ChainAttribute::Name("guard".into())],
        });
        assert!(touches(&request(Inet, chain, 0, 0), "wharf"));
        let elements = request(Inet, NfTablesMessage::DeleteSetElement(SetElementMessage { attributes: vec![] }), 0, 0);
        assert!(!touches(&elements, "wharf"), "element changes are wharf's own business");
        let both = [elements, deltable(Bridge, "wharf")].concat();
        assert!(touches(&both, "wharf"));
    }
}
