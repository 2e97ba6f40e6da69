//! Whether a web dyno is up: something in its process group listens on its PORT
//! (README, "Using it"). Read from /proc without opening a connection to the app, so a
//! probe never shows up in the app's logs or counts as a request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use nix::unistd::Pid;
use tokio::sync::mpsc;

use super::proc::{Listening, Snapshot};
use crate::dyno::Slot;

/// How often booting web dynos are looked at.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(50);

/// Where to connect to a listener bound to `ip`: a wildcard address is reached on the
/// loopback address of its family.
fn reachable(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(v6) if v6.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The address to reach a process whose process group is `pgid` and that holds a socket
/// listening on `port`, if there is one; IPv4 first when it listens on both. The probe
/// task reads the tables once for every dyno it watches; this is the same for one.
#[cfg(test)]
fn group_listens(pgid: Pid, port: u16) -> Option<Listener> {
    let listening = Listening::read();
    // The processes are read only once something listens on the port.
    if !listening.on(port) {
        return None;
    }
    listens_at(&Snapshot::read(), &listening, pgid, port)
}

fn listens_at(
    snapshot: &Snapshot,
    listening: &Listening,
    pgid: Pid,
    port: u16,
) -> Option<Listener> {
    let bound = snapshot.listeners(pgid, port, listening);
    let at = bound
        .iter()
        .copied()
        .map(reachable)
        .min_by_key(IpAddr::is_ipv6)?;
    Some(Listener {
        at,
        everywhere: bound.iter().any(IpAddr::is_unspecified),
    })
}

/// Where a dyno listens on its PORT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Listener {
    /// The address to connect to (IPv4 first when it listens on both).
    pub at: IpAddr,
    /// It listens on a wildcard address: other machines reach it too.
    pub everywhere: bool,
}

/// A change to the set of dynos being watched.
#[derive(Debug)]
pub(crate) enum Watch {
    Add { slot: Slot, pgid: Pid, port: u16 },
    Remove { slot: Slot },
}

/// Watches booting dynos and calls `ready` once for each that listens, with the address
/// to reach it at. Ends when the sender of `changes` is dropped.
pub(crate) async fn run(
    mut changes: mpsc::UnboundedReceiver<Watch>,
    ready: impl Fn(Slot, Listener),
) {
    let mut watched: Vec<(Slot, Pid, u16)> = Vec::new();
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                None => return,
                Some(Watch::Add { slot, pgid, port }) => {
                    watched.retain(|(s, ..)| *s != slot);
                    watched.push((slot, pgid, port));
                }
                Some(Watch::Remove { slot }) => watched.retain(|(s, ..)| *s != slot),
            },
            _ = tick.tick(), if !watched.is_empty() => {
                let probes = watched.clone();
                let found = tokio::task::spawn_blocking(move || {
                    let listening = Listening::read();
                    let probes: Vec<_> = probes
                        .into_iter()
                        .filter(|(.., port)| listening.on(*port))
                        .collect();
                    // One snapshot for every dyno, and none while nothing listens yet.
                    let snapshot = if probes.is_empty() {
                        Snapshot::default()
                    } else {
                        Snapshot::read()
                    };
                    probes
                        .into_iter()
                        .filter_map(|(slot, pgid, port)| {
                            Some((slot, listens_at(&snapshot, &listening, pgid, port)?))
                        })
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                for (slot, listener) in found {
                    watched.retain(|(s, ..)| *s != slot);
                    ready(slot, listener);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_a_listener_in_this_process_group() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = nix::unistd::getpgrp();
        let loopback = Listener {
            at: Ipv4Addr::LOCALHOST.into(),
            everywhere: false,
        };
        assert_eq!(group_listens(me, port), Some(loopback));
        drop(listener);
        assert_eq!(group_listens(me, port), None);
    }

    #[test]
    fn reports_where_the_listener_is_reached() {
        let me = nix::unistd::getpgrp();
        let v6 = std::net::TcpListener::bind("[::1]:0").unwrap();
        let port = v6.local_addr().unwrap().port();
        let at = |listener: Option<Listener>| listener.map(|l| (l.at, l.everywhere));
        assert_eq!(
            at(group_listens(me, port)),
            Some((Ipv6Addr::LOCALHOST.into(), false))
        );
        let any = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = any.local_addr().unwrap().port();
        assert_eq!(
            at(group_listens(me, port)),
            Some((Ipv4Addr::LOCALHOST.into(), true))
        );
        assert_eq!(
            reachable(Ipv6Addr::UNSPECIFIED.into()),
            IpAddr::from(Ipv6Addr::LOCALHOST)
        );
        assert_eq!(
            reachable("::ffff:127.0.0.2".parse().unwrap()),
            IpAddr::from([127, 0, 0, 2])
        );
    }
}
