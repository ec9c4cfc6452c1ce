//! Answers read and sent in batches: several askers, each with many queries outstanding at
//! once, get every answer, each the right one, in the order they asked, on both kinds of
//! runtime a resolver may serve on. The sockets are bound to ephemeral loopback ports.

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;
use wharf_dns::{Entry, Origin, Resolver, Sockets, Upstreams};

/// Names in the table, one address each.
const NAMES: usize = 40;
/// Askers at once, each from a socket of its own.
const ASKERS: usize = 4;
/// Queries each asker sends.
const QUERIES: usize = 2000;
/// Queries each asker has outstanding at once. All askers' queries together stay well inside
/// the server socket's receive buffer (each small datagram costs about a kilobyte of it), so
/// a query lost to a full buffer, which UDP allows under load, cannot pass for a wrong answer.
const OUTSTANDING: usize = 16;

fn address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, (i / 250) as u8, (i % 250) as u8 + 1)
}

fn query(id: u16, name: usize) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(format!("name-{name}.")).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

/// `QUERIES` queries from one socket at `server`, `OUTSTANDING` at a time; panics on a
/// wrong, missing or out-of-order answer.
fn ask(server: SocketAddr, asker: usize) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let name_of = |q: usize| (q * 7 + asker) % NAMES;
    let (mut sent, mut answered) = (0, 0);
    let mut buf = [0u8; 1500];
    while answered < QUERIES {
        while sent < QUERIES && sent - answered < OUTSTANDING {
            socket.send_to(&query(sent as u16, name_of(sent)), server).unwrap();
            sent += 1;
        }
        let n = socket.recv(&mut buf).unwrap_or_else(|e| panic!("asker {asker}: answer {answered}: {e}"));
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert!(m.id() >= answered as u16, "asker {asker}: answer {} came after {answered}", m.id());
        assert_eq!(m.id(), answered as u16, "asker {asker}: no answer to query {answered}");
        let got: Vec<_> = m
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        assert_eq!(got, [address(name_of(answered))], "asker {asker}: answer {answered}");
        answered += 1;
    }
}

fn served(resolver: &Resolver) -> SocketAddr {
    let opener: wharf_dns::Opener = Arc::new(|_, _| Err(std::io::Error::other("no namespace here")));
    let upstreams = Upstreams { servers: vec!["192.0.2.53:53".parse().unwrap()], opener };
    for i in 0..NAMES {
        let entry = Entry {
            sandbox: format!("{i:064x}"),
            name: format!("name-{i}"),
            aliases: Vec::new(),
            ipv4: Some(address(i)),
            ipv6: None,
            origin: Origin::Local,
        };
        resolver.table().insert("network", entry);
    }
    let asker = Entry {
        sandbox: "asker".repeat(8),
        name: "asker".into(),
        aliases: Vec::new(),
        ipv4: Some(Ipv4Addr::new(10, 77, 9, 9)),
        ipv6: None,
        origin: Origin::Local,
    };
    resolver.table().insert("network", asker.clone());
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let at = udp.local_addr().unwrap();
    let sockets = Sockets { udp, tcp: std::net::TcpListener::bind("127.0.0.1:0").unwrap() };
    resolver.serve(&asker.sandbox, sockets, upstreams).unwrap();
    at
}

fn every_answer_right_and_in_order(resolver: Resolver) {
    let at = served(&resolver);
    let askers: Vec<_> = (0..ASKERS).map(|a| std::thread::spawn(move || ask(at, a))).collect();
    for a in askers {
        a.join().unwrap();
    }
}

#[test]
fn batched_answers_on_a_single_threaded_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let handle = rt.handle().clone();
    std::thread::spawn(move || rt.block_on(std::future::pending::<()>()));
    every_answer_right_and_in_order(Resolver::new(handle));
}

#[test]
fn batched_answers_on_a_multi_threaded_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    every_answer_right_and_in_order(Resolver::new(rt.handle().clone()));
    rt.shutdown_background();
}
