//! Splitting what one read from a netlink socket returned into its messages. The message
//! contents are the rust-netlink packet crates' to parse; their framing of a datagram that
//! holds several messages is not exposed, so it is done here, once for every socket that
//! reads raw datagrams (rtnetlink notifications, netfilter replies).

/// The size of `struct nlmsghdr`.
const HEADER: usize = 16;

/// The messages in `buf`, in order, each with its header. Reading stops at a header that
/// does not fit or a length that is not a whole message.
pub fn frames(buf: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let rest = buf.get(at..)?;
        if rest.len() < HEADER {
            return None;
        }
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < HEADER || len > rest.len() {
            return None;
        }
        // Messages are aligned to 4 bytes (`NLMSG_ALIGN`).
        at += (len + 3) & !3;
        Some(&rest[..len])
    })
}

#[cfg(test)]
mod tests {
    use super::frames;

    fn message(len: u32, kind: u16) -> Vec<u8> {
        let mut m = vec![0; len as usize];
        m[..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&kind.to_ne_bytes());
        m
    }

    #[test]
    fn messages_are_split_at_their_aligned_lengths_and_a_truncated_one_ends_the_read() {
        let mut buf = message(18, 1);
        buf.extend([0, 0]); // padding to 20
        buf.extend(message(16, 2));
        buf.extend(&message(40, 3)[..20]);
        let kinds: Vec<(usize, u16)> = frames(&buf).map(|f| (f.len(), u16::from_ne_bytes([f[4], f[5]]))).collect();
        assert_eq!(kinds, [(18, 1), (16, 2)]);
        assert_eq!(frames(&message(8, 1)).count(), 0, "a length shorter than a header");
    }
}
