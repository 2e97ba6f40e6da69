//! Whether a web dyno is up: something in its process group listens on its PORT
//! (DESIGN section 4.2). Read from /proc without opening a connection to the app, so a
//! probe never shows up in the app's logs or counts as a request.

use std::collections::HashSet;
use std::time::Duration;

use nix::unistd::Pid;
use tokio::sync::mpsc;

use crate::supervisor::input::Slot;

/// How often booting web dynos are looked at.
pub const PROBE_EVERY: Duration = Duration::from_millis(50);

/// Socket inodes listening on TCP `port`, IPv4 or IPv6.
fn listening_inodes(port: u16) -> HashSet<u64> {
    let v4 = procfs::net::tcp().unwrap_or_default();
    let v6 = procfs::net::tcp6().unwrap_or_default();
    v4.into_iter()
        .chain(v6)
        .filter(|e| e.state == procfs::net::TcpState::Listen && e.local_address.port() == port)
        .map(|e| e.inode)
        .collect()
}

/// Whether a process whose process group is `pgid` holds a socket listening on `port`.
pub fn group_listens(pgid: Pid, port: u16) -> bool {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return false;
    }
    let Ok(all) = procfs::process::all_processes() else {
        return false;
    };
    all.filter_map(Result::ok)
        .filter(|p| p.stat().is_ok_and(|s| s.pgrp == pgid.as_raw()))
        .any(|p| {
            p.fd().is_ok_and(|fds| {
                fds.filter_map(Result::ok).any(|fd| {
                    matches!(fd.target, procfs::process::FDTarget::Socket(inode) if inodes.contains(&inode))
                })
            })
        })
}

/// A change to the set of dynos being watched.
#[derive(Debug)]
pub enum Watch {
    Add { slot: Slot, pgid: Pid, port: u16 },
    Remove { slot: Slot },
}

/// Watches booting dynos and calls `ready` once for each that listens. Ends when the
/// sender of `changes` is dropped.
pub async fn run(mut changes: mpsc::UnboundedReceiver<Watch>, ready: impl Fn(Slot)) {
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
                    probes
                        .into_iter()
                        .filter(|(_, pgid, port)| group_listens(*pgid, *port))
                        .map(|(slot, ..)| slot)
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                for slot in found {
                    watched.retain(|(s, ..)| *s != slot);
                    ready(slot);
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
        assert!(group_listens(nix::unistd::getpgrp(), port));
        drop(listener);
        assert!(!group_listens(nix::unistd::getpgrp(), port));
    }
}
