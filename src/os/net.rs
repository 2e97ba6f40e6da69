//! Whether a port is free: asked before web dynos start on it, so a dyno that could only
//! crash on bind is refused instead.

use crate::dyno::Slot;

/// Whether something already listens on `port`: binding it on every address fails with
/// "address in use".
pub fn port_taken(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port))
        .is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse)
}

/// The first of `ports` that something already listens on, with the dyno meant for it.
pub fn first_taken<'a>(
    ports: impl IntoIterator<Item = &'a (u16, Slot)>,
) -> Option<&'a (u16, Slot)> {
    ports.into_iter().find(|(port, _)| port_taken(*port))
}
