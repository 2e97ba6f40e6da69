//! Controlling a running supervisor: the socket file, the protocol, the server inside
//! `hkrun start`, the `ps` view, and the client commands (`ps`, `scale`, `restart`,
//! `stop`, `logs`).
//!
//! The server never changes state itself: it turns requests into calls the driver hands
//! to the core, and serves `logs` from the log history.

pub(crate) mod client;
pub mod protocol;
pub(crate) mod ps;
pub(crate) mod server;
pub(crate) mod socket;
pub(crate) mod top;
