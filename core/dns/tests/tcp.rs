//! Queries over TCP: every served sandbox's listener is accepted on, each connection gets
//! the answers its sandbox should, and a sandbox no longer served (or served on new
//! sockets) has its old listener closed. The sockets are bound to ephemeral loopback ports.

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;
use wharf_dns::{Entry, Origin, Resolver, Sockets, Upstreams};

fn entry(i: u8) -> Entry {
    Entry {
        sandbox: format!("{i:012x}{}", "0".repeat(52)),
        name: format!("name-{i}"),
        aliases: Vec::new(),
        ipv4: Some(Ipv4Addr::new(10, 78, 0, i)),
        ipv6: None,
        origin: Origin::Local,
    }
}

/// Serve sandbox `i` (on network `network`) on fresh sockets; where its listener is.
fn serve(resolver: &Resolver, network: &str, i: u8) -> SocketAddr {
    resolver.table().insert(network, entry(i));
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let at = tcp.local_addr().unwrap();
    let opener: wharf_dns::Opener = Arc::new(|_, _| Err(std::io::Error::other("no namespace here")));
    let upstreams = Upstreams { servers: vec!["192.0.2.53:53".parse().unwrap()], opener };
    resolver
        .serve(&entry(i).sandbox, Sockets { udp: UdpSocket::bind("127.0.0.1:0").unwrap(), tcp }, upstreams)
        .unwrap();
    at
}

/// The IPv4 addresses `name` has, asked on `stream`.
fn ask(stream: &mut TcpStream, id: u16, name: &str) -> Vec<Ipv4Addr> {
    let mut m = Message::new();
    m.set_id(id).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(format!("{name}.")).unwrap(), RecordType::A));
    let q = m.to_vec().unwrap();
    stream.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
    stream.write_all(&q).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut a = vec![0u8; u16::from_be_bytes(len).into()];
    stream.read_exact(&mut a).unwrap();
    let a = Message::from_vec(&a).unwrap();
    assert_eq!(a.id(), id);
    a.answers().iter().filter_map(|r| if let RData::A(a) = r.data() { Some(a.0) } else { None }).collect()
}

fn connect(at: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&at, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

#[test]
fn each_sandboxs_listener_answers_for_it_until_it_is_no_longer_served() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let resolver = Resolver::new(rt.handle().clone());
    let a = serve(&resolver, "n1", 1);
    serve(&resolver, "n1", 2);
    let c = serve(&resolver, "n2", 3);

    let (mut first, mut second) = (connect(a).unwrap(), connect(a).unwrap());
    assert_eq!(ask(&mut first, 1, "name-2"), [Ipv4Addr::new(10, 78, 0, 2)]);
    assert_eq!(ask(&mut second, 2, "NAME-1"), [Ipv4Addr::new(10, 78, 0, 1)]);
    assert_eq!(ask(&mut first, 3, &format!("{:012x}", 2)), [Ipv4Addr::new(10, 78, 0, 2)]);
    let mut other = connect(c).unwrap();
    assert_eq!(ask(&mut other, 4, "name-3"), [Ipv4Addr::new(10, 78, 0, 3)]);

    resolver.stop(&entry(3).sandbox);
    assert!(connect(c).is_err(), "a sandbox no longer served has no listener");

    let again = serve(&resolver, "n1", 1);
    assert!(connect(a).is_err(), "the listener a sandbox was served on before is closed");
    assert_eq!(ask(&mut connect(again).unwrap(), 5, "name-2"), [Ipv4Addr::new(10, 78, 0, 2)]);
    assert_eq!(resolver.served(), 2);
    rt.shutdown_background();
}
