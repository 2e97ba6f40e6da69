//! The TCP sockets listening on this machine, by inode, asked of the kernel through
//! sock_diag netlink: it sends the listening sockets alone. /proc/net/tcp lists every
//! connection as well, and behind a busy router (tens of thousands of TIME_WAIT entries)
//! reading it took seconds, so a web dyno was seen up that much later.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::{Socket, SocketAddr as NetlinkAddr};

/// Every TCP socket in the listen state, IPv4 and IPv6: its inode and local address.
pub(crate) fn listening() -> io::Result<HashMap<u64, SocketAddr>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&NetlinkAddr::new(0, 0))?;
    let mut found = HashMap::new();
    for (family, id) in [
        (AF_INET, SocketId::new_v4()),
        (AF_INET6, SocketId::new_v6()),
    ] {
        dump(&socket, family, id, &mut found)?;
    }
    Ok(found)
}

/// Asks for one family's listening sockets and reads the answer to its end.
fn dump(
    socket: &Socket,
    family: u8,
    socket_id: SocketId,
    found: &mut HashMap<u64, SocketAddr>,
) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::LISTEN,
            socket_id,
        })
        .into(),
    );
    request.finalize();
    let mut bytes = vec![0; request.buffer_len()];
    request.serialize(&mut bytes);
    socket.send(&bytes, 0)?;
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    loop {
        // One datagram holds whole messages, as many as fit.
        let (datagram, _) = socket.recv_from_full()?;
        if datagram.is_empty() {
            return Err(invalid("sock_diag: the kernel closed the answer".into()));
        }
        let mut rest = datagram.as_slice();
        while !rest.is_empty() {
            let message = NetlinkMessage::<SockDiagMessage>::deserialize(rest)
                .map_err(|e| invalid(format!("sock_diag: {e}")))?;
            let len = usize::try_from(message.header.length).unwrap_or(usize::MAX);
            match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    let header = &response.header;
                    let local = SocketAddr::new(
                        header.socket_id.source_address,
                        header.socket_id.source_port,
                    );
                    found.insert(u64::from(header.inode), local);
                }
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(error) => {
                    return Err(error
                        .code
                        .map(|code| io::Error::from_raw_os_error(-code.get()))
                        .unwrap_or_else(|| invalid("sock_diag: an error without a code".into())));
                }
                _ => {}
            }
            if len == 0 || len > rest.len() {
                break;
            }
            // Messages are aligned to 4 bytes.
            rest = rest.get((len + 3) & !3..).unwrap_or_default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_listener_of_each_family_and_not_a_connection() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = std::net::TcpListener::bind("[::1]:0").unwrap();
        let connected = std::net::TcpStream::connect(v4.local_addr().unwrap()).unwrap();
        let found = listening().unwrap();
        let addrs: Vec<SocketAddr> = found.values().copied().collect();
        assert!(addrs.contains(&v4.local_addr().unwrap()), "{addrs:?}");
        assert!(addrs.contains(&v6.local_addr().unwrap()), "{addrs:?}");
        assert!(
            !addrs.contains(&connected.local_addr().unwrap()),
            "{addrs:?}"
        );
    }
}
