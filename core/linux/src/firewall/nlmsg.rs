//! Reading netlink messages and their attributes from a buffer, for the two small netfilter
//! clients written against the wire format (conntrack deletion and the nftables watch).

/// Attribute types carry flags in their top two bits.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Netlink's 4-byte alignment.
pub fn align(n: usize) -> usize {
    (n + 3) & !3
}

pub fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The netlink attributes in `b`, as (type, whole attribute, payload).
pub fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8], &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at + 4 > b.len() {
            return None;
        }
        let len = u16_at(b, at) as usize;
        if len < 4 || at + len > b.len() {
            return None;
        }
        let item = (u16_at(b, at + 2) & NLA_TYPE_MASK, &b[at..at + len], &b[at + 4..at + len]);
        at += align(len);
        Some(item)
    })
}

/// The netlink messages in `b`, as (type, payload).
pub fn messages(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at + 16 > b.len() {
            return None;
        }
        let len = u32_at(b, at) as usize;
        if len < 16 || at + len > b.len() {
            return None;
        }
        let item = (u16_at(b, at + 4), &b[at + 16..at + len]);
        at += align(len);
        Some(item)
    })
}
