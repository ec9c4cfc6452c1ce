//! A dump read one datagram at a time. rtnetlink's connection reads everything the kernel
//! has for a dump before its caller sees the first message, and holds it parsed: with a
//! thousand ports on a host that is over ten megabytes, freed at once but scattered through
//! the heap among what lives on. Here each message is handed over as it is parsed and
//! dropped before the next datagram is read.

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use wharf_engine::executor::ExecError;

/// A blocking socket for dumps, in the calling thread's namespace, whose dump requests the
/// kernel filters (strict checking).
pub(super) fn socket() -> Result<Socket, ExecError> {
    let fail = |e| ExecError::os("netlink dump socket", e);
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(fail)?;
    socket.bind(&SocketAddr::new(0, 0)).map_err(fail)?;
    socket.set_netlink_get_strict_chk(true).map_err(fail)?;
    Ok(socket)
}

static SEQUENCE: AtomicU32 = AtomicU32::new(1);

/// Send `request` as a dump on `socket` and hand each message of the answer to `each`.
/// `what` names the dump in errors.
pub(super) fn each(
    socket: &Socket,
    request: RouteNetlinkMessage,
    what: &str,
    mut each: impl FnMut(RouteNetlinkMessage),
) -> Result<(), ExecError> {
    let fail = |e| ExecError::os(format!("netlink: {what}"), e);
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = sequence;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::from(request));
    message.finalize();
    let mut buf = vec![0; message.buffer_len()];
    message.serialize(&mut buf);
    socket.send(&buf, 0).map_err(fail)?;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        socket.recv(&mut buf, 0).map_err(fail)?;
        for frame in crate::frames::frames(&buf) {
            let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(frame)
                .map_err(|e| ExecError::new(format!("netlink: {what}: {e}")))?;
            if message.header.sequence_number != sequence {
                continue;
            }
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => match e.code {
                    Some(code) => return Err(fail(std::io::Error::from_raw_os_error(-code.get()))),
                    None => return Ok(()),
                },
                NetlinkPayload::InnerMessage(m) => each(m),
                _ => {}
            }
        }
    }
}
