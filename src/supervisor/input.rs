//! The supervisor's vocabulary: what it reacts to (`Input`) and what it asks for (`Effect`).
//!
//! Adding a capability means adding variants here, a branch in `core::Supervisor::handle`
//! (in the core's file for that concern), and, for effects, a branch in the runtime's
//! `perform`. Something users are told is an `event::Event` (its words in `event.rs`), not
//! an effect; what a request came to is an `outcome::Outcome` (see ARCHITECTURE.md).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use nix::sys::signal::Signal;

pub use super::event::{Event, Source, StopRequest};
use super::outcome::Outcome;
use crate::dyno::{Exit, Routes, Slot, is_type_name};
use crate::plan::formation::ScaleChange;
use crate::plan::{SpawnSpec, Vars};

/// Everything the core reacts to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A dyno's process started with this pid.
    Spawned { slot: Slot, pid: i32 },
    /// A dyno could not be spawned at all.
    SpawnFailed { slot: Slot, error: String },
    /// A web dyno's process group listens on its PORT, reached at `ip` (where the
    /// listener is bound; a wildcard's loopback address); `everywhere`: on a wildcard
    /// address, so the dyno is reachable from other machines.
    Ready {
        slot: Slot,
        ip: IpAddr,
        everywhere: bool,
    },
    /// A dyno's leader exited and its output so far has been logged.
    Exited { slot: Slot, status: Exit },
    /// Resident memory of each running dyno's processes, in bytes.
    Memory(Vec<(Slot, u64)>),
    /// A stop was requested.
    Stop(StopRequest),
    /// A signal hkrun passes on to every dyno (SIGUSR1, SIGWINCH, SIGQUIT).
    Forward(Signal),
    /// SIGTSTP (a terminal's Ctrl-Z): every dyno stops, then hkrun itself.
    Pause,
    /// SIGCONT, or hkrun continuing after it stopped itself: every dyno resumes, and
    /// the time spent stopped does not count toward any timer.
    Resume,
    /// The answer to `Effect::ScanStragglers`: processes of hkrun's still alive.
    Stragglers(usize),
    /// The answer to `Effect::ScanGroup`: live processes left of the dyno's last run.
    GroupLeft { slot: Slot, count: usize },
    /// A deadline from `next_deadline` has passed.
    Tick,
    /// The answer to `Effect::AwaitDrained`: the router has nothing in flight to this
    /// old web dyno any more, so its stop signal may go now.
    Drained { slot: Slot },
    /// A control client's request; answered with `Effect::Reply` carrying the same `id`
    /// (`SIGNALLED` for hkrun's own, on SIGUSR2).
    Control { id: u64, request: Control },
    /// The answer to `Effect::ProbePorts`: which of its ports something else holds.
    PortsProbed { id: u64, taken: Vec<u16> },
    /// `[[scheduler]]` job `job` (its place in the plan's list) is due.
    Scheduled { job: usize },
}

/// The id of the request hkrun makes itself on SIGUSR2 (restart every dyno): no client
/// waits for its answer.
pub const SIGNALLED: u64 = 0;

/// What a control client asks the core to change (`hkrun ps` only reads, and
/// `hkrun stop` with no target is `Input::Stop`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// `hkrun scale web=3 worker=0`: all or nothing.
    Scale(Vec<ScaleChange>),
    /// `hkrun restart [TARGET...]`: stop-then-start; no target means every dyno.
    Restart(Vec<Target>),
    /// Every dyno restarted on the env files as they were read again (`config:set`,
    /// `hkrun restart` with no target, SIGUSR2): the new env is the app's if the restart
    /// goes ahead (`Effect::TakeEnv`), and never if it is refused.
    Reload(Arc<Vars>),
    /// `hkrun stop TARGET...` (at least one): the dynos stop and leave the formation.
    Stop(Vec<Target>),
    /// `hkrun kill TARGET... SIGNAL`: the signal to each dyno's process group, which
    /// keeps running (SIGHUP to reload, SIGUSR1 to reopen logs).
    Kill {
        targets: Vec<Target>,
        signal: Signal,
    },
}

/// A process type (`web`), one dyno (`web.2`), or a glob over both (`'work*'`,
/// `web.?`): a dyno matches when its name or its type's does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Type(String),
    Dyno(Slot),
    Glob(glob::Pattern),
}

impl FromStr for Target {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s.parse::<Slot>() {
            Ok(slot) if is_type_name(&slot.kind) => Ok(Self::Dyno(slot)),
            _ if is_type_name(s) => Ok(Self::Type(s.to_owned())),
            _ if s.contains(['*', '?', '[']) => {
                glob::Pattern::new(s).map(Self::Glob).map_err(|_| ())
            }
            _ => Err(()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Type(kind) => f.write_str(kind),
            Self::Dyno(slot) => slot.fmt(f),
            Self::Glob(pattern) => f.write_str(pattern.as_str()),
        }
    }
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Spawn(SpawnSpec),
    /// Report `Input::Ready` once the dyno's group listens on `port`.
    AwaitReady {
        slot: Slot,
        port: u16,
    },
    /// Signal a dyno's whole process group (signals passed on, job control).
    Signal {
        slot: Slot,
        signal: Signal,
    },
    /// Signal every process of a dyno's (last) run, to stop it: its process group, and
    /// the descendants that left the group (a double fork, `setsid`), known by the mark
    /// the run's environment gave them.
    SignalAll {
        slot: Slot,
        signal: Signal,
    },
    /// Signal hkrun's descendants outside every live dyno's group (they left it with
    /// `setsid`, or their dyno is gone); with SIGKILL, every descendant.
    SignalStragglers(Signal),
    /// Count hkrun's live descendants and answer with `Input::Stragglers`.
    ScanStragglers,
    /// The web dynos that take new requests now (the router's set), and while there is
    /// none, why.
    Routes(Routes),
    /// A preboot's old web dyno at `addr` left the router's set: answer with
    /// `Input::Drained` once the router has nothing in flight to it.
    AwaitDrained {
        slot: Slot,
        addr: SocketAddr,
    },
    /// Count the live processes of a dyno's (last) run, in its group or escaped from it
    /// (as `SignalAll` finds them), and answer with `Input::GroupLeft`.
    ScanGroup {
        slot: Slot,
    },
    /// The dyno has left the formation and nothing of it runs: its handles can go.
    Forget {
        slot: Slot,
    },
    /// The app is stopping: from now on, output that a stalled stdout holds back may be
    /// dropped (one line says how much), rather than keep a dyno's exit waiting.
    OutputMayBeDropped,
    /// Something happened that users are told of (`event`'s `Display` is the line).
    Event(Event),
    /// Find which of `ports` something already listens on, for the request `id`, and
    /// answer with `Input::PortsProbed`.
    ProbePorts {
        id: u64,
        ports: Vec<u16>,
    },
    /// The router listens on every interface too (0.0.0.0, its port), because this web
    /// dyno behind it does; the driver says so once it does.
    WidenRouter {
        by: Slot,
    },
    /// A reload goes ahead: the app's env is this from now on, for every spawn that
    /// follows (the restart's effects come after it). A reload refused gets only its
    /// `Reply`.
    TakeEnv(Arc<Vars>),
    /// The answer to `Input::Control { id, .. }`: what the request came to.
    Reply {
        id: u64,
        outcome: Outcome,
    },
    /// Stop hkrun itself until SIGCONT (job control), once what is queued is logged;
    /// then report `Input::Resume`. Not as PID 1, which the kernel does not stop.
    StopSelf,
    /// app.json's postdeploy ran to exit 0: remember it, so it never runs again.
    Postdeployed {
        command: String,
    },
    /// Every process is gone: exit with this code.
    Exit(i32),
}
