//! What the servers (the control socket, `/metrics`, the dashboard) ask the driver: one
//! `Call` each, carrying where its typed answer goes. The driver answers from what it
//! holds or hands the request to the core (`runtime::calls`); the servers turn answers
//! into what their clients read.

pub(crate) use super::attach::TerminalRefusal;

use tokio::sync::{mpsc, oneshot};

use std::time::SystemTime;

use super::event::Event;
use super::input::Control;
use super::outcome::Outcome;
use super::view::View;
use crate::dyno::Slot;
use crate::logs::pump::Shown;

/// A request to the driver.
#[derive(Debug)]
pub(crate) enum Call {
    /// `hkrun ps`: the app as every reader shows it.
    Ps(oneshot::Sender<View>),
    /// scale, restart, stop TARGET, kill: the core's answer.
    Change {
        request: Control,
        reply: oneshot::Sender<Outcome>,
    },
    /// `hkrun stop` with no target: the app stops as on SIGTERM.
    StopAll,
    /// `maintenance:on`/`off` (`on`), or as it is: what to tell the user, or why not.
    Maintenance {
        on: Option<bool>,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// `config:set`: the env files read again, then every dyno restarted.
    Reload { reply: oneshot::Sender<Outcome> },
    /// `hkrun connect DYNO` by `who` (`pid 4242`): its terminal, or why not.
    Attach {
        dyno: String,
        who: String,
        /// The client's terminal, `[rows, columns]`, if it is on one.
        size: Option<[u16; 2]>,
        reply: oneshot::Sender<Result<Attached, TerminalRefusal>>,
    },
    /// `who`'s terminal, attached to `dyno`, is `[rows, columns]` now.
    Resize {
        dyno: String,
        who: String,
        size: [u16; 2],
        reply: oneshot::Sender<Result<(), TerminalRefusal>>,
    },
    /// Attachment `id` to `slot`'s terminal has ended.
    Detach { slot: Slot, id: u64 },
    /// `GET /metrics`: what `ps` shows and the counters, at one moment.
    Metrics(oneshot::Sender<Snapshot>),
}

/// A `--tty` dyno's terminal, for the one client attached to it.
#[derive(Debug)]
pub(crate) struct Attached {
    pub slot: Slot,
    /// Which attachment this is, for its `Detach`.
    pub id: u64,
    /// What the client types goes here.
    pub input: tokio::net::unix::pipe::Sender,
    /// What the dyno writes, as it comes; ends with its run (with how, when it exited).
    pub output: mpsc::Receiver<Shown>,
}

/// One of the core's events, as the runtime's followers (the dashboard) hear it: when it
/// was said.
#[derive(Debug)]
pub(crate) struct Heard {
    pub at: SystemTime,
    pub event: Event,
}

/// What `/metrics` and the dashboard show, as the driver gathers it at one moment.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// The app as `hkrun ps` shows it, with the core's counters.
    pub view: View,
    pub router: Option<RouterFigures>,
    /// `(dyno, lines, bytes)` of output so far.
    pub output: Vec<(String, u64, u64)>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct RouterFigures {
    pub connections: u64,
    pub unserved: u64,
    pub failed_connects: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Each dyno's share, by name.
    pub dynos: Vec<(String, crate::router::Traffic)>,
    /// Requests answered (`--router http`), by status and H-code.
    pub requests: Vec<(u16, Option<&'static str>, u64)>,
    /// Each dyno's service times (`--router http`), by name.
    pub service: Vec<(String, crate::router::ServiceTimes)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_refusals_say_what_hkrun_connect_always_said() {
        let web = |n| Slot::new("web", n);
        let cases = [
            (
                TerminalRefusal::NotRunning { dyno: "web".into() },
                "no dyno web is running",
            ),
            (
                TerminalRefusal::Several {
                    dyno: "web".into(),
                    running: vec![web(1), web(2)],
                },
                "web runs web.1, web.2: name one of them",
            ),
            (
                TerminalRefusal::NoTerminal { slot: web(1) },
                "web.1 is not on a terminal: start hkrun with --tty web (or tty = true under \
                 [types.web] in hkrun.toml) to connect to it",
            ),
            (
                TerminalRefusal::Taken {
                    slot: web(1),
                    holder: "pid 42".into(),
                },
                "web.1 is attached already, by pid 42: one client at a time (Ctrl-] detaches)",
            ),
            (
                TerminalRefusal::Io {
                    slot: web(1),
                    doing: "resize",
                    error: "EBADF".into(),
                },
                "cannot resize web.1's terminal: EBADF",
            ),
            (
                TerminalRefusal::Ended {
                    slot: web(1),
                    just: true,
                },
                "web.1's run has just ended",
            ),
            (
                TerminalRefusal::NoSize { rows: 0, cols: 80 },
                "0x80 is no terminal size",
            ),
            (
                TerminalRefusal::NotAttached {
                    who: "pid 42".into(),
                    dyno: "web".into(),
                },
                "pid 42 is not attached to web",
            ),
        ];
        for (refusal, says) in cases {
            assert_eq!(refusal.to_string(), says);
        }
    }
}
