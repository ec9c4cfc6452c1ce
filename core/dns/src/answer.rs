//! Query answering: one packet in, a decision out. Names the [`Table`] knows are answered
//! here; everything else is left to forwarding; what is not a well-formed query gets
//! FORMERR (when its header can be read) or nothing. The wire format is hickory-proto's.

use crate::table::{Addresses, Table};
use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use std::net::IpAddr;

/// The time to live of an answer from the table, as Docker's resolver gives.
pub const TTL: u32 = 600;

/// The payload size offered in this server's own EDNS answers.
const EDNS_PAYLOAD: u16 = 4096;

/// The largest UDP answer without EDNS (RFC 1035).
pub const UDP_PLAIN: usize = 512;

/// What to do with a packet.
#[derive(Debug)]
pub enum Reply {
    /// Send these bytes back.
    Answer(Vec<u8>),
    /// A well-formed query for a name the table does not know: forward it. Holds the
    /// query, to answer SERVFAIL with if no upstream answers.
    Forward(Box<Message>),
    /// Send nothing: not a query (a response, or fewer bytes than a header).
    Drop,
}

/// Decide what `packet`, a query from sandbox `asker`, gets. `udp` says whether the answer
/// goes back over UDP, where it must fit the asker's size (512 bytes, or what its EDNS
/// offers) or be truncated.
pub fn answer(table: &Table, asker: &str, packet: &[u8], udp: bool) -> Reply {
    let mut out = Vec::new();
    match answer_into(table, asker, packet, udp, &mut out) {
        None => Reply::Answer(out),
        Some(other) => other,
    }
}

/// [`answer`] into a buffer the caller keeps: `None` when the answer was written to `out`
/// (cleared first), else what to do instead. The common question's answer is written there
/// directly, so a server answering many with buffers it reuses allocates nothing per query.
pub fn answer_into(table: &Table, asker: &str, packet: &[u8], udp: bool, out: &mut Vec<u8>) -> Option<Reply> {
    out.clear();
    if direct(table, asker, packet, udp, out).is_some() {
        return None;
    }
    match through_message(table, asker, packet, udp) {
        Reply::Answer(bytes) => {
            *out = bytes;
            None
        }
        other => Some(other),
    }
}

/// [`answer`] by hickory's [`Message`], read whole and written whole.
fn through_message(table: &Table, asker: &str, packet: &[u8], udp: bool) -> Reply {
    let Ok(header) = Header::read(&mut BinDecoder::new(packet)) else { return Reply::Drop };
    if header.message_type() == MessageType::Response {
        return Reply::Drop;
    }
    let query = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) => return error(&header, ResponseCode::FormErr),
    };
    if query.op_code() != OpCode::Query {
        return error(&header, ResponseCode::NotImp);
    }
    let [q] = query.queries() else { return error(&header, ResponseCode::FormErr) };
    if q.query_class() != DNSClass::IN {
        return Reply::Forward(Box::new(query));
    }
    let name = q.name().to_lowercase().to_ascii();
    let records = match table.resolve(asker, &name) {
        Some(addrs) => match q.query_type() {
            RecordType::A => addrs.ipv4.into_iter().map(|ip| record(q, RData::A(A(ip)))).collect(),
            RecordType::AAAA => addrs.ipv6.into_iter().map(|ip| record(q, RData::AAAA(AAAA(ip)))).collect(),
            // Known, but not of this type: an empty answer, not a question for upstream.
            _ => Vec::new(),
        },
        None => {
            let Some(holder) = reverse(table, asker, q) else { return Reply::Forward(Box::new(query)) };
            match Name::from_ascii(format!("{holder}.")) {
                Ok(target) => vec![record(q, RData::PTR(PTR(target)))],
                Err(_) => return Reply::Forward(Box::new(query)),
            }
        }
    };
    respond(&query, q, records, udp)
}

/// The answer to the common question, built without a hickory [`Message`]: one A or AAAA
/// question of class IN for a name of the table, in a plain query (no answers, no authority,
/// at most an EDNS version 0 record). hickory reads the header, the question and the EDNS
/// record; the answer is the query's own header and question, flagged as a response, with
/// the addresses after them, each naming the question's name by a pointer to it, and this
/// server's EDNS record when the query had one. `None` for everything else (and an answer
/// that needs truncating), which [`answer`] takes [`through_message`].
fn direct(table: &Table, asker: &str, packet: &[u8], udp: bool, out: &mut Vec<u8>) -> Option<()> {
    let mut decoder = BinDecoder::new(packet);
    let header = Header::read(&mut decoder).ok()?;
    let plain = header.message_type() == MessageType::Query
        && header.op_code() == OpCode::Query
        && header.query_count() == 1
        && header.answer_count() == 0
        && header.name_server_count() == 0
        && header.additional_count() <= 1;
    if !plain {
        return None;
    }
    let q = Query::read(&mut decoder).ok()?;
    let asked = decoder.index();
    if q.query_class() != DNSClass::IN || !matches!(q.query_type(), RecordType::A | RecordType::AAAA) {
        return None;
    }
    let edns = match header.additional_count() {
        0 => None,
        _ => {
            let opt = Record::read(&mut decoder).ok()?;
            if opt.record_type() != RecordType::OPT {
                return None;
            }
            Some(Edns::from(&opt)).filter(|e| e.version() == 0)?.into()
        }
    };
    if !decoder.is_empty() {
        return None;
    }
    let mut key = [0u8; 255];
    let name = plain_name(q.name(), &mut key)?;
    ADDRESSES.with_borrow_mut(|addrs| {
        table
            .resolve_into(asker, name, addrs)
            .then(|| write_direct(packet, asked, &q, edns.as_ref(), addrs, udp, out))?
    })
}

thread_local! {
    /// The addresses of the name being answered, their room kept for the next query.
    static ADDRESSES: std::cell::RefCell<Addresses> = std::cell::RefCell::default();
}

/// [`direct`]'s answer, from the query's first `asked` bytes (header and question) and the
/// name's addresses.
fn write_direct(
    packet: &[u8],
    asked: usize,
    q: &Query,
    edns: Option<&Edns>,
    addrs: &Addresses,
    udp: bool,
    out: &mut Vec<u8>,
) -> Option<()> {
    let (count, len) = match q.query_type() {
        RecordType::A => (addrs.ipv4.len(), 4),
        _ => (addrs.ipv6.len(), 16),
    };
    let size = asked + count * (12 + len) + if edns.is_some() { OPT_LEN } else { 0 };
    let limit = edns.map_or(UDP_PLAIN, |e| UDP_PLAIN.max(e.max_payload().into()));
    if udp && size > limit {
        return None;
    }
    out.reserve(size);
    out.extend_from_slice(&packet[..asked]);
    // QR and AA set, the opcode (QUERY: 0) and RD kept; RA set, no other flag, NOERROR.
    out[2] = 0x84 | (packet[2] & 0x01);
    out[3] = 0x80;
    out[6..8].copy_from_slice(&u16::try_from(count).ok()?.to_be_bytes());
    out[10..12].copy_from_slice(&u16::from(edns.is_some()).to_be_bytes());
    let mut record = |rdata: &[u8]| {
        // The question's name, by a pointer to where it starts, right after the header.
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&u16::from(q.query_type()).to_be_bytes());
        out.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(rdata);
    };
    match q.query_type() {
        RecordType::A => addrs.ipv4.iter().for_each(|ip| record(&ip.octets())),
        _ => addrs.ipv6.iter().for_each(|ip| record(&ip.octets())),
    }
    if edns.is_some() {
        // The root name, OPT, the payload offered, no extended code, version 0, no flags,
        // no options.
        out.push(0);
        out.extend_from_slice(&u16::from(RecordType::OPT).to_be_bytes());
        out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
        out.extend_from_slice(&[0; 6]);
    }
    Some(())
}

/// The length of this server's EDNS record.
const OPT_LEN: usize = 11;

/// `name` lower-cased, without its final dot, written into `key`, when its labels are plain
/// letters, digits, `-` and `_` (what the table's names are); `None` otherwise. The caller's
/// buffer, so a query costs no allocation here.
fn plain_name<'k>(name: &Name, key: &'k mut [u8; 255]) -> Option<&'k str> {
    let mut len = 0;
    for label in name.iter() {
        if label.is_empty() || !label.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_') {
            return None;
        }
        let dot = usize::from(len > 0);
        let part = key.get_mut(len..len + dot + label.len())?;
        if dot == 1 {
            part[0] = b'.';
        }
        part[dot..].iter_mut().zip(label).for_each(|(k, b)| *k = b.to_ascii_lowercase());
        len += dot + label.len();
    }
    std::str::from_utf8(&key[..len]).ok()
}

/// The holder of the address a PTR query asks about.
fn reverse(table: &Table, asker: &str, q: &Query) -> Option<String> {
    if q.query_type() != RecordType::PTR {
        return None;
    }
    let net = q.name().parse_arpa_name().ok()?;
    let full = match net.addr() {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    (net.prefix_len() == full).then(|| table.reverse(asker, net.addr())).flatten()
}

fn record(q: &Query, rdata: RData) -> Record {
    let mut r = Record::from_rdata(q.name().clone(), TTL, rdata);
    r.set_dns_class(DNSClass::IN);
    r
}

/// A response to `query` with `answers`, truncated when it must fit a UDP datagram and
/// does not.
fn respond(query: &Message, q: &Query, answers: Vec<Record>, udp: bool) -> Reply {
    let mut m = Message::new();
    m.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_authoritative(true)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(ResponseCode::NoError)
        .add_query(q.clone())
        .add_answers(answers);
    let mut limit = UDP_PLAIN;
    if let Some(edns) = query.extensions() {
        limit = limit.max(edns.max_payload().into());
        let mut ours = Edns::new();
        ours.set_max_payload(EDNS_PAYLOAD);
        m.set_edns(ours);
    }
    let Ok(bytes) = m.to_vec() else { return error(query.header(), ResponseCode::ServFail) };
    if udp && bytes.len() > limit {
        return m.truncate().to_vec().map(Reply::Answer).unwrap_or(Reply::Drop);
    }
    Reply::Answer(bytes)
}

/// A bare error response to a query with `header`.
fn error(header: &Header, code: ResponseCode) -> Reply {
    let mut m = Message::error_msg(header.id(), header.op_code(), code);
    m.set_recursion_desired(header.recursion_desired()).set_recursion_available(true);
    m.to_vec().map(Reply::Answer).unwrap_or(Reply::Drop)
}

/// SERVFAIL for `query`: what the asker gets when no upstream answered.
pub fn servfail(query: &Message) -> Vec<u8> {
    let mut m = Message::error_msg(query.id(), query.op_code(), ResponseCode::ServFail);
    m.set_recursion_desired(query.recursion_desired()).set_recursion_available(true);
    m.add_queries(query.queries().iter().cloned());
    m.to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Entry, Origin};

    const ASKER: &str = "aaaaaaaaaaaa0000000000000000000000000000000000000000000000000000";
    const WEB: &str = "bbbbbbbbbbbb0000000000000000000000000000000000000000000000000000";

    fn table() -> Table {
        let t = Table::new();
        for (id, name, v4, v6) in [(ASKER, "asker", "10.0.0.2", None), (WEB, "web", "10.0.0.3", Some("fd00::3"))] {
            t.insert(
                "net",
                Entry {
                    sandbox: id.into(),
                    name: name.into(),
                    aliases: vec!["www".into()],
                    ipv4: Some(v4.parse().unwrap()),
                    ipv6: v6.map(|v: &str| v.parse().unwrap()),
                    origin: Origin::Local,
                },
            );
        }
        t
    }

    fn query(name: &str, rtype: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(0x1234).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        m.to_vec().unwrap()
    }

    fn reply(packet: &[u8]) -> Message {
        match answer(&table(), ASKER, packet, true) {
            Reply::Answer(b) => Message::from_vec(&b).unwrap(),
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[test]
    fn a_and_aaaa_of_a_known_name() {
        let m = reply(&query("web.", RecordType::A));
        assert_eq!(m.id(), 0x1234);
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert_eq!(m.answers().len(), 1);
        assert_eq!(m.answers()[0].data(), &RData::A(A("10.0.0.3".parse().unwrap())));
        let m = reply(&query("WWW.", RecordType::AAAA));
        assert_eq!(m.answers()[0].data(), &RData::AAAA(AAAA("fd00::3".parse().unwrap())));
    }

    #[test]
    fn a_known_name_without_the_type_asked_is_an_empty_answer() {
        let m = reply(&query("asker.", RecordType::AAAA));
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
        let m = reply(&query("web.", RecordType::MX));
        assert!(m.answers().is_empty());
    }

    #[test]
    fn ptr_of_a_holders_address() {
        let m = reply(&query("3.0.0.10.in-addr.arpa.", RecordType::PTR));
        assert_eq!(m.answers()[0].data(), &RData::PTR(PTR(Name::from_ascii("web.").unwrap())));
        let v6 = "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
        let m = reply(&query(v6, RecordType::PTR));
        assert_eq!(m.answers()[0].data(), &RData::PTR(PTR(Name::from_ascii("web.").unwrap())));
    }

    #[test]
    fn unknown_names_and_addresses_are_forwarded() {
        for (name, t) in [("example.org.", RecordType::A), ("9.0.0.10.in-addr.arpa.", RecordType::PTR)] {
            assert!(matches!(answer(&table(), ASKER, &query(name, t), true), Reply::Forward(_)), "{name}");
        }
        assert!(matches!(answer(&table(), "stranger", &query("web.", RecordType::A), true), Reply::Forward(_)));
    }

    #[test]
    fn an_answer_too_big_for_udp_is_truncated() {
        let t = Table::new();
        for i in 0..60u8 {
            t.insert(
                "net",
                Entry {
                    sandbox: format!("{i:064}"),
                    name: format!("s{i}"),
                    aliases: vec!["many".into()],
                    ipv4: Some([10, 0, 1, i].into()),
                    ipv6: None,
                    origin: Origin::Local,
                },
            );
        }
        let asker = format!("{:064}", 0);
        let Reply::Answer(b) = answer(&t, &asker, &query("many.", RecordType::A), true) else { panic!() };
        assert!(b.len() <= UDP_PLAIN);
        let m = Message::from_vec(&b).unwrap();
        assert!(m.truncated());
        let Reply::Answer(b) = answer(&t, &asker, &query("many.", RecordType::A), false) else { panic!() };
        assert_eq!(Message::from_vec(&b).unwrap().answers().len(), 60);
    }

    fn code_of(packet: &[u8]) -> Option<ResponseCode> {
        match answer(&table(), ASKER, packet, true) {
            Reply::Answer(b) => Some(Message::from_vec(&b).unwrap().response_code()),
            Reply::Drop => None,
            Reply::Forward(_) => panic!("malformed packet forwarded"),
        }
    }

    #[test]
    fn short_packets_and_responses_are_dropped() {
        assert_eq!(code_of(&[]), None);
        assert_eq!(code_of(&[0x12, 0x34, 0x01]), None);
        let mut response = query("web.", RecordType::A);
        response[2] |= 0x80;
        assert_eq!(code_of(&response), None);
    }

    #[test]
    fn malformed_queries_get_formerr() {
        let good = query("web.", RecordType::A);
        // Header only, claiming one question.
        assert_eq!(code_of(&good[..12]), Some(ResponseCode::FormErr));
        // Truncated in the middle of the question.
        assert_eq!(code_of(&good[..15]), Some(ResponseCode::FormErr));
        // A label longer than 63 bytes.
        let mut huge = good[..12].to_vec();
        huge.push(200);
        huge.extend(std::iter::repeat_n(b'a', 200));
        huge.extend([0, 0, 1, 0, 1]);
        assert_eq!(code_of(&huge), Some(ResponseCode::FormErr));
        // A name that points at itself.
        let mut lp = good[..12].to_vec();
        lp.extend([0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(code_of(&lp), Some(ResponseCode::FormErr));
        // Two questions.
        let mut two = Message::from_vec(&good).unwrap();
        two.add_query(Query::query(Name::from_ascii("www.").unwrap(), RecordType::A));
        assert_eq!(code_of(&two.to_vec().unwrap()), Some(ResponseCode::FormErr));
        // No question.
        let mut none = good[..12].to_vec();
        none[5] = 0;
        assert_eq!(code_of(&none), Some(ResponseCode::FormErr));
    }

    #[test]
    fn other_opcodes_are_not_implemented() {
        let mut m = Message::from_vec(&query("web.", RecordType::A)).unwrap();
        m.set_op_code(OpCode::Status);
        assert_eq!(code_of(&m.to_vec().unwrap()), Some(ResponseCode::NotImp));
    }

    #[test]
    fn random_bytes_never_panic_nor_get_forwarded_as_garbage() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let good = query("web.", RecordType::A);
        for i in 0..20_000 {
            let packet: Vec<u8> = if i % 2 == 0 {
                let len = rng.random_range(0..600);
                (0..len).map(|_| rng.random()).collect()
            } else {
                let mut p = good.clone();
                for _ in 0..rng.random_range(1..6) {
                    let at = rng.random_range(0..p.len());
                    p[at] = rng.random();
                }
                p
            };
            if let Reply::Forward(m) = answer(&table(), ASKER, &packet, true) {
                assert_eq!(m.queries().len(), 1);
            }
        }
    }

    #[test]
    fn edns_queries_get_edns_answers() {
        let mut m = Message::from_vec(&query("web.", RecordType::A)).unwrap();
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
        let r = reply(&m.to_vec().unwrap());
        assert!(r.extensions().is_some());
    }

    #[test]
    fn the_direct_answer_is_the_messages_answer() {
        let mut edns = Message::from_vec(&query("Web.", RecordType::AAAA)).unwrap();
        let mut e = Edns::new();
        e.set_max_payload(1232);
        edns.set_edns(e);
        let mut no_rd = Message::from_vec(&query("www.", RecordType::A)).unwrap();
        no_rd.set_recursion_desired(false);
        let packets = [
            query("web.", RecordType::A),
            query("WWW.", RecordType::A),
            query("asker.", RecordType::AAAA),
            query("bbbbbbbbbbbb.", RecordType::AAAA),
            edns.to_vec().unwrap(),
            no_rd.to_vec().unwrap(),
        ];
        for packet in packets {
            let mut direct_ = Vec::new();
            direct(&table(), ASKER, &packet, true, &mut direct_).expect("answered directly");
            let direct = direct_;
            let Reply::Answer(long) = through_message(&table(), ASKER, &packet, true) else { panic!() };
            assert_eq!(Message::from_vec(&direct).unwrap(), Message::from_vec(&long).unwrap());
            assert_eq!(direct, long);
        }
        for packet in [query("example.org.", RecordType::A), query("web.", RecordType::MX)] {
            assert!(direct(&table(), ASKER, &packet, true, &mut Vec::new()).is_none());
        }
    }

    #[test]
    fn servfail_keeps_the_question() {
        let m = Message::from_vec(&query("example.org.", RecordType::A)).unwrap();
        let r = Message::from_vec(&servfail(&m)).unwrap();
        assert_eq!(r.response_code(), ResponseCode::ServFail);
        assert_eq!(r.id(), 0x1234);
        assert_eq!(r.queries().len(), 1);
    }
}
