//! Controlling a running supervisor: the socket file, the protocol, the server inside
//! `hkrun start`, and the `ps` view. The client commands (`ps`, `scale`, `restart`,
//! `stop`, `logs`, `top`) are subcommands: `cmd::client`, `cmd::top`.
//!
//! The server never changes state itself: it turns requests into calls the driver hands
//! to the core, and serves `logs` from the log history.

pub mod protocol;
pub(crate) mod ps;
pub(crate) mod server;
pub(crate) mod socket;
