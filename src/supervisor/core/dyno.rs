//! One dyno as the core keeps it: its spec, its state with what that state alone needs,
//! and its counts (launches, crashes, Heroku's errors).

use std::net::IpAddr;
use std::time::Instant;

use crate::dyno::Exit;
use crate::plan::DynoSpec;
use crate::supervisor::event::Shown;

/// One process slot the core manages, with what `hkrun ps` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dyno {
    pub plan: DynoSpec,
    pub state: DynoState,
    /// When `state` last changed.
    pub since: Instant,
    /// The running process, once the driver has reported it.
    pub pid: Option<i32>,
    /// The last memory sample, in bytes.
    pub memory: Option<u64>,
    /// How the last process ended.
    pub last_exit: Option<Exit>,
    /// Crashes in a row, for the back-off.
    pub(super) crashes: u32,
    /// Which dyno this is, of all the supervisor ever had: a dyno added later under the
    /// same name (after this one left the formation) is another one.
    pub(super) serial: u64,
    /// How many times it was launched: tells a restarted process from the one before.
    pub(super) boots: u64,
    /// Exits nobody asked for, ever: a restart that crashes fails.
    pub(super) crashed: u64,
    /// When R14 was last logged, whichever run it was: at most one every `R14_EVERY`.
    pub(super) last_r14: Option<Instant>,
    /// Where readiness last saw it listen, for the router.
    pub(super) ip: Option<IpAddr>,
    /// Heroku's errors it has had (`/metrics`).
    pub errors: Errors,
}

/// Heroku's errors a dyno has had, counted as logged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Errors {
    /// Boot timeouts.
    pub r10: u64,
    /// Memory quota exceeded (logged at most every 20 s).
    pub r14: u64,
    /// Memory quota vastly exceeded: killed.
    pub r15: u64,
}

/// Where a dyno is, with what that state alone needs. No run ever overlaps the next: a
/// run whose leader has exited is counted (`ScanGroup`) until nothing of it is left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DynoState {
    /// Spawned; a web dyno has until `boot_deadline` to listen.
    Starting { boot_deadline: Option<Instant> },
    /// Up since `Dyno::since`.
    Up,
    /// SIGKILLed by hkrun (R10, R15) while starting or up (since `up_since`): its exit
    /// takes the crash path.
    Killed { up_since: Option<Instant> },
    /// Asked to stop: its exit is expected. A dyno stopped on its own (scale, restart,
    /// stop) is SIGKILLed at `kill_at`; while the app stops, the app's grace rules.
    Stopping {
        kill_at: Option<Instant>,
        then: AfterStop,
        leader: Leader,
    },
    /// Exited unasked; restarts at `restart_at` (once `remains` is gone), or not at all.
    Crashed {
        restart_at: Option<Instant>,
        /// Past the first crash in a row: its restart says nothing but its one line.
        folded: bool,
        remains: Remains,
    },
    /// Stopped, or done for good.
    Down,
}

/// A stopping dyno's leader process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leader {
    /// Still running. Leaving after a preboot, its stop signal is due at `term_at`, once
    /// connections the router had already sent it have arrived.
    Running { term_at: Option<Instant> },
    /// Exited; the rest of its run (its group, what escaped it) is being counted, again
    /// at `rescan_at`.
    Exited { rescan_at: Option<Instant> },
}

/// What a crashed run left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remains {
    /// Not looked at: a run that will not be replaced is left to the app's stop.
    Unscanned,
    /// Being counted (again at `rescan_at`); `stop` says how far its stop has gone. The
    /// next run waits for it.
    Draining {
        rescan_at: Option<Instant>,
        stop: Leftovers,
    },
    /// A scan found nothing of it left: nothing of it can come back.
    Gone,
}

/// The stop of what a crashed run left behind: SIGTERM once something is found, SIGKILL
/// at the grace, as when the app stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leftovers {
    Unsignalled,
    Termed { kill_at: Instant },
    Killed,
}

/// What becomes of a dyno once its stopping process has exited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterStop {
    /// It stays down: the app is stopping.
    Down,
    /// It leaves the formation (scaled down, or `hkrun stop`).
    Remove,
    /// It starts again (`hkrun restart`).
    Restart,
}

impl DynoState {
    /// The word `hkrun ps` and the logs use.
    pub fn name(self) -> &'static str {
        self.shown().as_str()
    }

    /// The state as `hkrun ps` and Heroku's lines show it.
    pub fn shown(self) -> Shown {
        match self {
            // Heroku's restart: `State changed from up to starting`, then the stop.
            Self::Starting { .. }
            | Self::Stopping {
                then: AfterStop::Restart,
                ..
            } => Shown::Starting,
            Self::Up => Shown::Up,
            Self::Killed { .. } | Self::Stopping { .. } => Shown::Stopping,
            Self::Crashed { .. } => Shown::Crashed,
            Self::Down => Shown::Down,
        }
    }

    /// The state Heroku names before hkrun's kill: `from starting to crashed` after R10.
    pub(super) fn shown_before_kill(self) -> Shown {
        match self {
            Self::Killed { up_since: Some(_) } => Shown::Up,
            Self::Killed { up_since: None } => Shown::Starting,
            other => other.shown(),
        }
    }

    /// Its leader has exited and the rest of its last run is being counted: no new run
    /// starts, and no signal goes to its group, until it is gone.
    pub(super) fn draining(self) -> bool {
        matches!(
            self,
            Self::Stopping {
                leader: Leader::Exited { .. },
                ..
            } | Self::Crashed {
                remains: Remains::Draining { .. },
                ..
            }
        )
    }

    /// When its last run is counted again, while draining.
    pub(super) fn rescan_at(self) -> Option<Instant> {
        match self {
            Self::Stopping {
                leader: Leader::Exited { rescan_at },
                ..
            }
            | Self::Crashed {
                remains: Remains::Draining { rescan_at, .. },
                ..
            } => rescan_at,
            _ => None,
        }
    }

    /// Sets when its last run is counted again, while draining.
    pub(super) fn set_rescan(&mut self, at: Option<Instant>) {
        match self {
            Self::Stopping {
                leader: Leader::Exited { rescan_at },
                ..
            }
            | Self::Crashed {
                remains: Remains::Draining { rescan_at, .. },
                ..
            } => *rescan_at = at,
            _ => {}
        }
    }

    /// Its next timer, on the core's clock, while the formation runs.
    pub(super) fn next_due(self) -> Option<Instant> {
        match self {
            Self::Starting { boot_deadline } => boot_deadline,
            Self::Crashed {
                restart_at,
                remains,
                ..
            } => match remains {
                // Not while what its last run left is still going.
                Remains::Draining { rescan_at, stop } => {
                    let kill_at = match stop {
                        Leftovers::Termed { kill_at } => Some(kill_at),
                        Leftovers::Unsignalled | Leftovers::Killed => None,
                    };
                    [rescan_at, kill_at].into_iter().flatten().min()
                }
                Remains::Unscanned | Remains::Gone => restart_at,
            },
            Self::Stopping {
                kill_at, leader, ..
            } => {
                let (term_at, rescan_at) = match leader {
                    Leader::Running { term_at } => (term_at, None),
                    Leader::Exited { rescan_at } => (None, rescan_at),
                };
                [kill_at, term_at, rescan_at].into_iter().flatten().min()
            }
            Self::Up | Self::Killed { .. } | Self::Down => None,
        }
    }

    /// Whether a process of this dyno may be running.
    pub(super) fn is_live(self) -> bool {
        matches!(
            self,
            Self::Starting { .. } | Self::Up | Self::Killed { .. } | Self::Stopping { .. }
        )
    }
}

impl Dyno {
    pub(super) fn new(plan: DynoSpec, serial: u64, now: Instant) -> Self {
        Self {
            plan,
            serial,
            state: DynoState::Down,
            since: now,
            pid: None,
            memory: None,
            last_exit: None,
            crashes: 0,
            boots: 0,
            crashed: 0,
            last_r14: None,
            ip: None,
            errors: Errors::default(),
        }
    }

    /// Its processes started so far: the first run and every restart.
    pub fn launches(&self) -> u64 {
        self.boots
    }

    /// Its exits nobody asked for (crashes, Heroku counting exit 0 too).
    pub fn crashes(&self) -> u64 {
        self.crashed
    }

    pub(super) fn set_state(&mut self, now: Instant, state: DynoState) {
        self.state = state;
        self.since = now;
    }
}
