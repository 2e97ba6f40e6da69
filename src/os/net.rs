//! Whether a port is free: asked before web dynos start on it, so a dyno that could only
//! crash on bind is refused instead.

use crate::dyno::Slot;

/// Whether something already listens on `port`: binding it on every address fails with
/// "address in use".
pub(crate) fn port_taken(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port))
        .is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse)
}

/// The first of `ports` that something already listens on, with the dyno meant for it.
pub(crate) fn first_taken<'a>(
    ports: impl IntoIterator<Item = &'a (u16, Slot)>,
) -> Option<&'a (u16, Slot)> {
    ports.into_iter().find(|(port, _)| port_taken(*port))
}

/// A listener on `addr` that another of hkrun's own (SO_REUSEPORT, same user) may join
/// on the same port at a wider address: the router starts on 127.0.0.1 and adds 0.0.0.0
/// beside it once a web dyno listens on every interface, without closing the first (its
/// queued connections would be reset). The kernel gives each connection to the listener
/// whose address matches it best, so loopback's stay where they were.
pub(crate) fn listen_widenable(
    addr: std::net::SocketAddr,
) -> std::io::Result<std::net::TcpListener> {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt,
        socket, sockopt,
    };
    let family = match addr {
        std::net::SocketAddr::V4(_) => AddressFamily::Inet,
        std::net::SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    // As std's listeners: a restart soon after a stop may bind while old connections
    // are in TIME_WAIT.
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    )?;
    listen(&fd, Backlog::new(1024).map_err(std::io::Error::from)?)?;
    Ok(std::net::TcpListener::from(fd))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, SocketAddr, TcpStream};

    use super::*;

    #[test]
    fn a_wider_listener_joins_on_the_same_port_and_loopback_stays_with_the_first() {
        let first = listen_widenable(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("bind");
        let port = first.local_addr().expect("addr").port();
        let wide = listen_widenable(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
            .expect("0.0.0.0 beside 127.0.0.1");
        // A plain listener of someone else cannot take the port.
        assert!(port_taken(port));
        let mut client = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
        client.write_all(b"x").expect("write");
        wide.set_nonblocking(true).expect("nonblocking");
        let (mut served, _) = first.accept().expect("the loopback listener takes it");
        let mut byte = [0];
        served.read_exact(&mut byte).expect("read");
        assert!(
            wide.accept().is_err(),
            "loopback's connection went to 0.0.0.0"
        );
    }
}
