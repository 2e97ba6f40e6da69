//! Connections to web dynos kept open between requests (`--router http`), per dyno
//! address: the next request to that dyno reuses one, as Heroku's Router 2.0 does. A dyno
//! that leaves the router's set (a preboot's old generation, one stopping) has its idle
//! connections closed at once, so its server can finish and exit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use super::idle::Idle;

/// What the router sends a dyno: the client's body (given up after 55 s of nothing), or
/// none (a retried request).
pub(super) type ToDyno = Either<Idle<Incoming>, Empty<Bytes>>;

/// A connection to a dyno, ready for the next request once the last is done.
pub(super) type Sender = SendRequest<ToDyno>;

/// Idle connections kept per dyno, at most: more are closed as they come back.
const IDLE_PER_DYNO: usize = 128;

#[derive(Default)]
pub(super) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Sender>>>,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Vec<Sender>>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection to `addr` that is still open, the most recently used first.
    pub(super) fn take(&self, addr: SocketAddr) -> Option<Sender> {
        let mut idle = self.lock();
        let senders = idle.get_mut(&addr)?;
        while let Some(sender) = senders.pop() {
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    /// `sender` kept for the next request to `addr`, if the dyno still takes traffic
    /// (`routed`) and the connection is still open.
    pub(super) fn put(&self, addr: SocketAddr, sender: Sender, routed: bool) {
        if !routed || !sender.is_ready() {
            return;
        }
        let mut idle = self.lock();
        let senders = idle.entry(addr).or_default();
        if senders.len() < IDLE_PER_DYNO {
            senders.push(sender);
        }
    }

    /// Closes the idle connections to every dyno not in `up`.
    pub(super) fn keep_only(&self, up: &std::collections::HashSet<SocketAddr>) {
        self.lock().retain(|addr, _| up.contains(addr));
    }
}
