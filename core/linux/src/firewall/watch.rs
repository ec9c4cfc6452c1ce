//! Noticing when someone else removes wharf's nftables tables, chains, sets or rules (an
//! `nft flush ruleset`, another tool's firewall reload): a netlink socket subscribed to
//! nftables' change notifications (`NFNLGRP_NFTABLES`) in the firewall's namespace. It only
//! says that something of wharf's was deleted; the firewall then checks its tables and
//! restores them.

use super::nlmsg::{attrs, messages};
use nix::sys::socket::{
    bind, recv, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;
use std::os::fd::{AsRawFd, OwnedFd};

/// `NFNLGRP_NFTABLES`.
const GROUP_NFTABLES: u32 = 7;
/// `NFNL_SUBSYS_NFTABLES`.
const SUBSYS_NFTABLES: u16 = 10;
/// `NFT_MSG_DELTABLE`, `NFT_MSG_DELCHAIN`, `NFT_MSG_DELRULE`, `NFT_MSG_DELSET`.
const DELETIONS: [u16; 4] = [2, 5, 8, 11];
/// `NFPROTO_INET`, `NFPROTO_BRIDGE`: the families of wharf's tables.
const FAMILIES: [u8; 2] = [1, 7];
/// The attribute naming the table, in table, chain, rule and set messages alike.
const ATTR_TABLE: u16 = 1;

/// A subscription to nftables change notifications in the calling thread's namespace.
pub struct Watch {
    fd: OwnedFd,
    buf: Vec<u8>,
    /// The name of wharf's tables.
    table: Vec<u8>,
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
        Ok(Watch { fd, buf: vec![0; 1 << 16], table: table.as_bytes().to_vec() })
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
/// `table` in the inet or bridge family.
fn touches(buf: &[u8], table: &[u8]) -> bool {
    messages(buf).any(|(kind, payload)| {
        let deletion = kind >> 8 == SUBSYS_NFTABLES && DELETIONS.contains(&(kind & 0xff));
        deletion
            && payload.len() >= 4
            && FAMILIES.contains(&payload[0])
            && attrs(&payload[4..]).any(|(t, _, v)| t == ATTR_TABLE && v.split(|b| *b == 0).next() == Some(table))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, family: u8, table: &str) -> Vec<u8> {
        let mut name = table.as_bytes().to_vec();
        name.push(0);
        let mut attr = ((4 + name.len()) as u16).to_ne_bytes().to_vec();
        attr.extend_from_slice(&ATTR_TABLE.to_ne_bytes());
        attr.extend_from_slice(&name);
        attr.resize((attr.len() + 3) & !3, 0);
        let mut m = vec![0u8; 16];
        m.extend_from_slice(&[family, 0, 0, 0]);
        m.extend_from_slice(&attr);
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&kind.to_ne_bytes());
        m
    }

    #[test]
    fn only_deletions_in_wharfs_tables_count() {
        let deltable = SUBSYS_NFTABLES << 8 | 2;
        let delsetelem = SUBSYS_NFTABLES << 8 | 14;
        assert!(touches(&message(deltable, 1, "wharf"), b"wharf"));
        assert!(!touches(&message(deltable, 1, "wharf"), b"wharf2"), "another wharfd's tables");
        assert!(touches(&message(SUBSYS_NFTABLES << 8 | 8, 7, "wharf"), b"wharf"));
        assert!(!touches(&message(deltable, 1, "filter"), b"wharf"), "another table");
        assert!(!touches(&message(deltable, 2, "wharf"), b"wharf"), "an ip-family table of that name is not wharf's");
        assert!(!touches(&message(delsetelem, 1, "wharf"), b"wharf"), "element changes are wharf's own business");
        let both = [message(delsetelem, 1, "wharf"), message(deltable, 7, "wharf")].concat();
        assert!(touches(&both, b"wharf"));
    }
}
