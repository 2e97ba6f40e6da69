//! One dyno as the core keeps it: its spec, its state with what that state alone needs,
//! and its counts (launches, crashes, Heroku's errors).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::dyno::{Exit, Slot};
use crate::plan::DynoSpec;
use crate::supervisor::event::Shown;
use crate::supervisor::restart;

/// One process slot the core manages, with what `hkrun ps` shows. Its fields are this
/// file's alone: the core's other files read them through the methods below and change
/// them only by what happened to the dyno (`launched`, `exited`, `crashed` ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dyno {
    plan: DynoSpec,
    state: DynoState,
    /// When `state` last changed.
    since: Instant,
    /// The running process, once the driver has reported it.
    pid: Option<i32>,
    /// The last memory sample, in bytes.
    memory: Option<u64>,
    /// How the last process ended.
    last_exit: Option<Exit>,
    /// Crashes in a row, for the back-off.
    in_a_row: u32,
    /// Which dyno this is, of all the supervisor ever had: a dyno added later under the
    /// same name (after this one left the formation) is another one.
    serial: u64,
    /// How many times it was launched: tells a restarted process from the one before.
    launches: u64,
    /// Exits nobody asked for, ever: a restart that crashes fails.
    crashes: u64,
    /// When R14 was last logged, whichever run it was: at most one every `R14_EVERY`.
    last_r14: Option<Instant>,
    /// Where readiness last saw it listen, for the router.
    ip: Option<IpAddr>,
    /// Heroku's errors it has had (`/metrics`).
    errors: Errors,
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
            in_a_row: 0,
            launches: 0,
            crashes: 0,
            last_r14: None,
            ip: None,
            errors: Errors::default(),
        }
    }

    /// What it runs, and how.
    pub fn plan(&self) -> &DynoSpec {
        &self.plan
    }

    /// Its name (`web.1`, and which generation).
    pub fn slot(&self) -> &Slot {
        &self.plan.spec.slot
    }

    pub fn state(&self) -> DynoState {
        self.state
    }

    /// When its state last changed.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// Its running process, once the driver has reported it.
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }

    /// Its last memory sample, in bytes, while it runs.
    pub fn memory(&self) -> Option<u64> {
        self.memory
    }

    /// How its last process ended.
    pub fn last_exit(&self) -> Option<Exit> {
        self.last_exit
    }

    /// Heroku's errors it has had.
    pub fn errors(&self) -> Errors {
        self.errors
    }

    /// Its processes started so far: the first run and every restart.
    pub fn launches(&self) -> u64 {
        self.launches
    }

    /// Its exits nobody asked for (crashes, Heroku counting exit 0 too).
    pub fn crashes(&self) -> u64 {
        self.crashes
    }

    /// Which dyno this is, of all the supervisor ever had.
    pub(super) fn serial(&self) -> u64 {
        self.serial
    }

    /// Where readiness last saw it listen.
    pub(super) fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// Its state changes now.
    pub(super) fn set_state(&mut self, now: Instant, state: DynoState) {
        self.state = state;
        self.since = now;
    }

    /// Its state's data changes; the state it is in does not (`since` stays).
    pub(super) fn amend(&mut self, state: DynoState) {
        self.state = state;
    }

    /// The driver reports its process.
    pub(super) fn spawned(&mut self, pid: i32) {
        self.pid = Some(pid);
    }

    /// A new run of it is spawned, in `state`.
    pub(super) fn launched(&mut self, now: Instant, state: DynoState) {
        self.pid = None;
        self.launches += 1;
        self.set_state(now, state);
    }

    /// Readiness saw it listen, reached at `ip`.
    pub(super) fn listening(&mut self, now: Instant, ip: IpAddr) {
        self.set_state(now, DynoState::Up);
        self.ip = Some(ip);
    }

    /// Its run's leader exited.
    pub(super) fn exited(&mut self, status: Exit) {
        self.pid = None;
        self.memory = None;
        self.last_exit = Some(status);
    }

    /// An exit nobody asked for.
    pub(super) fn count_crash(&mut self) {
        self.crashes += 1;
    }

    /// The back-off for this crash, and how many crashes in a row it makes: one up at
    /// least `RESET_AFTER` before (`up_since`) starts the count over.
    pub(super) fn back_off(
        &mut self,
        now: Instant,
        up_since: Option<Instant>,
        cap: Duration,
    ) -> (Duration, u32) {
        if up_since.is_some_and(|up| now.saturating_duration_since(up) >= restart::RESET_AFTER) {
            self.in_a_row = 0;
        }
        let delay = restart::delay(self.in_a_row, cap);
        self.in_a_row = self.in_a_row.saturating_add(1);
        (delay, self.in_a_row)
    }

    /// Asked for (a restart): the back-off starts over.
    pub(super) fn reset_back_off(&mut self) {
        self.in_a_row = 0;
    }

    /// A memory sample of its run.
    pub(super) fn sampled(&mut self, rss: u64) {
        self.memory = Some(rss);
    }

    /// Over its quota: whether R14 is said now (at most every `R14_EVERY`), counted if so.
    pub(super) fn r14(&mut self, now: Instant) -> bool {
        let due = self
            .last_r14
            .is_none_or(|at| now.saturating_duration_since(at) >= super::R14_EVERY);
        if due {
            self.last_r14 = Some(now);
            self.errors.r14 += 1;
        }
        due
    }

    /// R15: killed for its memory.
    pub(super) fn killed_for_memory(&mut self, now: Instant) {
        let up_since = (self.state == DynoState::Up).then_some(self.since);
        self.errors.r15 += 1;
        self.set_state(now, DynoState::Killed { up_since });
    }

    /// R10: killed for missing its boot timeout.
    pub(super) fn killed_for_boot(&mut self, now: Instant) {
        self.errors.r10 += 1;
        self.set_state(now, DynoState::Killed { up_since: None });
    }

    /// Its type's new size.
    pub(super) fn set_quota(&mut self, quota: u64) {
        self.plan.quota = quota;
    }

    /// Stopping to leave the formation (`scale` down, `stop TYPE`): no longer counted in
    /// its type's formation.
    pub fn leaving(&self) -> bool {
        matches!(
            self.state,
            DynoState::Stopping {
                then: AfterStop::Remove,
                ..
            }
        )
    }
}
