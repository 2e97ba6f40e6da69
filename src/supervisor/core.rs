//! The supervisor's state and every decision about it: `handle(now, input) -> effects`.
//!
//! Pure: no I/O, no clock, no sleeps. The driver feeds it inputs with the time they
//! happened and carries out the effects. It owns the release phase, dyno states
//! (starting, up, crashed, stopping, down), readiness and R10, crash restarts with
//! back-off, R14/R15, the exit rule, and shutdown escalation.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::event::{Event, Shown, Skipped};
use super::input::{Effect, Input, StopRequest};
use super::outcome::DynoFailure;
use super::restart;
use crate::dyno::{Backend, Exit, POSTDEPLOY, RELEASE, SCHEDULER, Slot, is_one_off};
use crate::plan::policy::MemoryLimit;
use crate::plan::{AppPlan, DynoSpec, ProcessType};
use quota::Verdict;

mod control;
mod pause;
mod preboot;
mod quota;
mod scale;

/// How often to look again for processes that outlived their dyno while stopping.
pub const STRAGGLER_RESCAN: Duration = Duration::from_millis(50);
/// Stop requests this close to the first are the same request: nobody presses Ctrl-C
/// twice within it.
pub const SAME_REQUEST: Duration = Duration::from_millis(100);
/// A stop still waiting on dynos this long after it began says so.
pub const STOP_NOTICE: Duration = Duration::from_secs(1);
/// A stop's notice names this many of the dynos it waits for, then gives a count.
const NAMED_WHILE_WAITING: usize = 5;
/// R14 is logged at most this often per dyno.
pub const R14_EVERY: Duration = Duration::from_secs(20);

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
    crashes: u32,
    /// Which dyno this is, of all the supervisor ever had: a dyno added later under the
    /// same name (after this one left the formation) is another one.
    serial: u64,
    /// How many times it was launched: tells a restarted process from the one before.
    boots: u64,
    /// Exits nobody asked for, ever: a restart that crashes fails.
    crashed: u64,
    /// When R14 was last logged, whichever run it was: at most one every `R14_EVERY`.
    last_r14: Option<Instant>,
    /// Where readiness last saw it listen, for the router.
    ip: Option<IpAddr>,
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
    fn shown_before_kill(self) -> Shown {
        match self {
            Self::Killed { up_since: Some(_) } => Shown::Up,
            Self::Killed { up_since: None } => Shown::Starting,
            other => other.shown(),
        }
    }

    /// Its leader has exited and the rest of its last run is being counted: no new run
    /// starts, and no signal goes to its group, until it is gone.
    fn draining(self) -> bool {
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
    fn rescan_at(self) -> Option<Instant> {
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
    fn set_rescan(&mut self, at: Option<Instant>) {
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
    fn next_due(self) -> Option<Instant> {
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
    fn is_live(self) -> bool {
        matches!(
            self,
            Self::Starting { .. } | Self::Up | Self::Killed { .. } | Self::Stopping { .. }
        )
    }
}

/// Where the app as a whole is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not started yet.
    Idle,
    /// `release.1` runs; nothing else has started.
    Releasing,
    /// The formation runs.
    Running,
    /// Stopping everything; hkrun exits with `code` once every process is gone.
    Stopping {
        code: i32,
        /// When the stop began.
        began: Instant,
        /// When the longest grace of a dyno ends; `None` once SIGKILL went out to all.
        kill_at: Option<Instant>,
        /// When to count stragglers again, once every dyno is down.
        rescan_at: Option<Instant>,
        /// What the dynos were asked to stop with. After SIGINT, what outlives its
        /// dyno's leader gets SIGTERM: a shell's `cmd &` children ignore SIGINT.
        signal: Signal,
        /// Processes outside every dyno's group have had that SIGTERM (once).
        leftovers_termed: bool,
        /// When to say which dynos the stop still waits for, if any.
        notice_at: Option<Instant>,
    },
    /// `Effect::Exit` went out.
    Done,
}

/// The one owner of the app's state. Never copied: a request's ports are probed by an
/// exchange with the driver (`Effect::ProbePorts`), not tried on a copy.
#[derive(Debug)]
pub struct Supervisor {
    plan: AppPlan,
    phase: Phase,
    /// The release phase, then the formation, in start order.
    dynos: Vec<Dyno>,
    /// Dynos ever added: the last one's `serial`.
    serials: u64,
    /// The first non-zero exit code of any dyno, for the exit when nothing is left.
    first_failure: Option<i32>,
    /// Control requests answered once their dynos have settled.
    pending: Vec<control::Pending>,
    /// Control requests waiting for the ports of their new web dynos to be probed.
    probing: Vec<control::Probing>,
    /// The backends last published to the router.
    published: Vec<Backend>,
    /// A preboot restart of web under way.
    preboot: Option<preboot::Preboot>,
    /// How the last preboot nobody waited on directly ended (`hkrun restart` of every
    /// dyno answers with it).
    preboot_result: Option<Result<(), DynoFailure>>,
    /// When Ctrl-Z paused the app (real time); the core's clock stands still until it
    /// resumes.
    paused_at: Option<Instant>,
    /// Time spent paused so far: the core's clock is real time less this.
    paused_total: Duration,
    /// The real time of the input being handled.
    real_now: Option<Instant>,
    /// Types not started yet: each waits for the types of its `after` to be up.
    held: Vec<String>,
    /// The router listens on every interface too (`Effect::WidenRouter`, at most once).
    router_widened: bool,
    /// Each `[[scheduler]]` job's last run, while it may still be going.
    scheduled: Vec<Option<Slot>>,
    /// Scheduler runs started so far: the next is `scheduler.N+1`.
    scheduler_runs: u32,
}

impl Supervisor {
    pub fn new(plan: AppPlan) -> Self {
        Self {
            plan,
            phase: Phase::Idle,
            dynos: Vec::new(),
            serials: 0,
            first_failure: None,
            pending: Vec::new(),
            probing: Vec::new(),
            published: Vec::new(),
            preboot: None,
            preboot_result: None,
            paused_at: None,
            paused_total: Duration::ZERO,
            real_now: None,
            held: Vec::new(),
            router_widened: false,
            scheduled: Vec::new(),
            scheduler_runs: 0,
        }
    }

    /// Every dyno, the release phase included, in start order.
    pub fn dynos(&self) -> &[Dyno] {
        &self.dynos
    }

    /// Each `[[scheduler]]` job, with its run still going, if any.
    pub fn scheduler(&self) -> impl Iterator<Item = (&crate::plan::schedule::Job, Option<&Slot>)> {
        self.plan.scheduler.iter().enumerate().map(|(i, job)| {
            let running = self
                .scheduled
                .get(i)
                .and_then(Option::as_ref)
                .filter(|s| self.find(s).is_some());
            (job, running)
        })
    }

    /// The Procfile's process types with their current sizes.
    pub fn types(&self) -> &[ProcessType] {
        &self.plan.types
    }

    /// Starts the app: the release phase if there is one, else the formation.
    pub fn start(&mut self, now: Instant) -> Vec<Effect> {
        debug_assert_eq!(self.phase, Phase::Idle, "start is called once");
        let mut effects: Vec<Effect> = self.router_line().map(say).into_iter().collect();
        effects.extend(self.start_release_or_formation(now));
        effects
    }

    /// Where the router listens, and the web dynos of the formation behind it:
    /// `router listening on http://127.0.0.1:5000 → web.1, web.2`.
    fn router_line(&self) -> Option<Event> {
        let port = self.plan.router?;
        let web = self
            .plan
            .dynos
            .iter()
            .filter(|d| d.role.behind_router())
            .map(|d| d.spec.slot.clone())
            .collect();
        let address = self
            .plan
            .router_address
            .unwrap_or(Ipv4Addr::LOCALHOST.into());
        Some(Event::RouterListening {
            address: SocketAddr::new(address, port),
            web,
        })
    }

    fn start_release_or_formation(&mut self, now: Instant) -> Vec<Effect> {
        match self.plan.release.clone() {
            Some(command) => self.start_deploy_step(now, RELEASE, command),
            None => self.start_postdeploy_or_formation(now),
        }
    }

    fn start_postdeploy_or_formation(&mut self, now: Instant) -> Vec<Effect> {
        match self.plan.postdeploy.clone() {
            Some(command) => self.start_deploy_step(now, POSTDEPLOY, command),
            None => self.start_formation(now),
        }
    }

    /// `release.1` or `postdeploy.1`: nothing of the formation runs until it exits 0.
    fn start_deploy_step(&mut self, now: Instant, kind: &str, command: String) -> Vec<Effect> {
        self.phase = Phase::Releasing;
        // The release phase is not watched: it has no quota.
        let plan = DynoSpec::one_off(Slot::new(kind, 1), command, MemoryLimit::Off, u64::MAX);
        let i = self.add_dyno(plan, now);
        self.launch(now, i)
    }

    /// A `[[scheduler]]` job is due: its run starts as `scheduler.N`, unless its last run
    /// is still going (then this one is skipped, and said so).
    fn on_scheduled(&mut self, now: Instant, job: usize) -> Vec<Effect> {
        let Some(spec) = self.plan.scheduler.get(job) else {
            return Vec::new();
        };
        let command = spec.command.clone();
        match self.phase {
            Phase::Running => {}
            // Release and postdeploy run before the formation: a run due then is said to
            // be skipped.
            Phase::Releasing => {
                return vec![say(Event::ScheduledSkipped {
                    command,
                    why: Skipped::Releasing,
                })];
            }
            _ => return Vec::new(),
        }
        self.scheduled.resize(self.plan.scheduler.len(), None);
        if let Some(last) = self.scheduled[job]
            .clone()
            .filter(|s| self.find(s).is_some())
        {
            return vec![say(Event::ScheduledSkipped {
                command,
                why: Skipped::StillRunning(last),
            })];
        }
        self.scheduler_runs += 1;
        let slot = Slot::new(SCHEDULER, self.scheduler_runs);
        self.scheduled[job] = Some(slot.clone());
        // Scheduler runs are standard-1X dynos, watched like any.
        let quota = crate::plan::formation::DynoSize::default().bytes;
        let plan = DynoSpec::one_off(slot, command, MemoryLimit::On, quota);
        let i = self.add_dyno(plan, now);
        self.launch(now, i)
    }

    /// A scheduler run has exited: done, as Heroku says of one-off dynos, whatever its
    /// status; it leaves once what its run left is gone.
    fn one_off_done(&mut self, now: Instant, i: usize) -> Vec<Effect> {
        let slot = self.dynos[i].plan.spec.slot.clone();
        let mut effects = vec![changed(&slot, Shown::Up, Shown::Complete)];
        effects.extend(self.replace_settled(now, i, AfterStop::Remove));
        effects
    }

    /// The next instant (real time) at which `Input::Tick` is due, if any; none while
    /// paused.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.paused() {
            return None;
        }
        self.deadline().map(|at| at + self.paused_total)
    }

    /// The core's clock at real time `real`: time spent paused does not count, so every
    /// timer (boot, back-off, grace) is in this time, and it stands still while paused.
    pub fn clock(&self, real: Instant) -> Instant {
        let at = self.paused_at.unwrap_or(real);
        at.checked_sub(self.paused_total).unwrap_or(at)
    }

    /// The next deadline on the core's clock.
    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Stopping {
                kill_at,
                rescan_at,
                notice_at,
                ..
            } => [kill_at, rescan_at, notice_at]
                .into_iter()
                .flatten()
                .chain(self.dynos.iter().filter_map(|d| match d.state {
                    // A type with a shorter grace than the longest (hkrun.toml).
                    DynoState::Stopping { kill_at, .. } => kill_at,
                    _ => None,
                }))
                .min(),
            Phase::Running => self.dynos.iter().filter_map(|d| d.state.next_due()).min(),
            Phase::Idle | Phase::Releasing | Phase::Done => None,
        }
    }

    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Effect> {
        self.real_now = Some(now);
        // The core's clock reads the same just before and just after a resume.
        let now = self.clock(now);
        let mut effects = self.dispatch(now, input);
        if self.paused() {
            effects = self.spawned_paused(effects);
        }
        // The preboot first: a pending restart may wait for its outcome.
        if self.preboot.is_some() {
            effects.extend(self.advance_preboot(now));
        }
        if !self.held.is_empty() && self.phase == Phase::Running {
            effects.extend(self.start_held(now));
        }
        if !self.pending.is_empty() {
            effects.extend(self.answer_pending());
        }
        if self.plan.router.is_some() {
            effects.extend(self.publish_backends());
        }
        effects
    }

    /// The router's port, when it runs.
    pub fn router(&self) -> Option<u16> {
        self.plan.router
    }

    /// New connections go to web dynos that are up, and only those: one that crashes or
    /// starts to stop leaves the set at once, one that comes up joins it.
    fn publish_backends(&mut self) -> Option<Effect> {
        let mut up: Vec<Backend> = self
            .dynos
            .iter()
            .filter(|d| d.plan.role.is_web() && d.state == DynoState::Up)
            // New dynos of a preboot take traffic only once all of them are up.
            .filter(|d| {
                !self
                    .preboot
                    .as_ref()
                    .is_some_and(|p| p.is_new(&d.plan.spec.slot))
            })
            .filter_map(|d| {
                let ip = d.ip.unwrap_or(Ipv4Addr::LOCALHOST.into());
                Some(Backend {
                    slot: d.plan.spec.slot.clone(),
                    addr: SocketAddr::new(ip, d.plan.spec.port?),
                })
            })
            .collect();
        up.sort_by(|a, b| a.slot.cmp(&b.slot));
        if up == self.published {
            return None;
        }
        self.published = up.clone();
        Some(Effect::Backends(up))
    }

    fn dispatch(&mut self, now: Instant, input: Input) -> Vec<Effect> {
        match input {
            Input::Spawned { slot, pid } => {
                if let Some(i) = self.find(&slot) {
                    self.dynos[i].pid = Some(pid);
                }
                Vec::new()
            }
            Input::SpawnFailed { slot, error } => {
                let mut effects = vec![say(Event::SpawnFailed {
                    slot: slot.clone(),
                    error,
                })];
                effects.extend(self.on_exited(now, &slot, Exit::Code(127)));
                effects
            }
            Input::Ready {
                slot,
                ip,
                everywhere,
            } => self.on_ready(now, &slot, ip, everywhere),
            Input::Exited { slot, status } => self.on_exited(now, &slot, status),
            Input::Memory(samples) => self.on_memory(now, samples),
            Input::Stop(request) => self.on_stop(now, request),
            Input::Forward(signal) => self.forward(signal),
            Input::Pause => self.on_pause(),
            Input::Resume => self.on_resume(),
            Input::Stragglers(count) => self.on_stragglers(now, count),
            Input::GroupLeft { slot, count } => self.on_group_left(now, &slot, count),
            Input::Tick => self.on_tick(now),
            Input::Control { id, request } => self.on_control(now, id, request),
            Input::PortsProbed { id, taken } => self.on_ports_probed(now, id, &taken),
            Input::Scheduled { job } => self.on_scheduled(now, job),
        }
    }

    /// A new dyno in the table, down; its index.
    fn add_dyno(&mut self, plan: DynoSpec, now: Instant) -> usize {
        self.serials += 1;
        self.dynos.push(Dyno::new(plan, self.serials, now));
        self.dynos.len() - 1
    }

    fn find(&self, slot: &Slot) -> Option<usize> {
        self.dynos.iter().position(|d| &d.plan.spec.slot == slot)
    }

    fn start_formation(&mut self, now: Instant) -> Vec<Effect> {
        self.phase = Phase::Running;
        let first = self.dynos.len();
        for plan in self.plan.dynos.clone() {
            self.add_dyno(plan, now);
        }
        let mut effects = Vec::new();
        for ty in self.plan.types.iter().filter(|t| !t.after.is_empty()) {
            self.held.push(ty.name.clone());
            effects.push(say(Event::Held {
                kind: ty.name.clone(),
                after: ty.after.clone(),
            }));
        }
        for i in first..self.dynos.len() {
            if !self.held.contains(&self.dynos[i].plan.spec.slot.kind) {
                effects.extend(self.launch(now, i));
            }
        }
        effects
    }

    /// Starts each held type whose `after` types are started and have every dyno up.
    fn start_held(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        loop {
            let up = |kind: &str| {
                !self.held.iter().any(|h| h == kind)
                    && self
                        .dynos
                        .iter()
                        .filter(|d| d.plan.spec.slot.kind == kind)
                        .all(|d| d.state == DynoState::Up)
            };
            let ready = self.held.iter().position(|name| {
                self.plan
                    .types
                    .iter()
                    .find(|t| &t.name == name)
                    .is_none_or(|t| t.after.iter().all(|a| up(a)))
            });
            let Some(at) = ready else {
                return effects;
            };
            let name = self.held.remove(at);
            effects.push(say(Event::StartingHeld { kind: name.clone() }));
            for i in 0..self.dynos.len() {
                let dyno = &self.dynos[i];
                if dyno.plan.spec.slot.kind == name
                    && dyno.state == DynoState::Down
                    && dyno.boots == 0
                {
                    effects.extend(self.launch(now, i));
                }
            }
        }
    }

    /// Whether `kind` waits for its `after` types (new dynos of it wait too).
    fn is_held(&self, kind: &str) -> bool {
        self.held.iter().any(|h| h == kind)
    }

    /// Spawns dyno `i`. A web dyno starts booting; any other is up at once.
    fn launch(&mut self, now: Instant, i: usize) -> Vec<Effect> {
        let dyno = &mut self.dynos[i];
        let spec = dyno.plan.spec.clone();
        let slot = spec.slot.clone();
        let mut effects = vec![
            say(Event::Launching {
                slot: slot.clone(),
                command: spec.command.clone(),
            }),
            Effect::Spawn(spec.clone()),
        ];
        dyno.pid = None;
        dyno.boots += 1;
        match (dyno.plan.boot_timeout, spec.port) {
            (Some(timeout), Some(port)) => {
                dyno.set_state(
                    now,
                    DynoState::Starting {
                        boot_deadline: Some(now + timeout),
                    },
                );
                effects.push(Effect::AwaitReady { slot, port });
            }
            _ if slot.kind == RELEASE || slot.kind == POSTDEPLOY => {
                dyno.set_state(
                    now,
                    DynoState::Starting {
                        boot_deadline: None,
                    },
                );
            }
            _ => {
                dyno.set_state(now, DynoState::Up);
                effects.push(changed(&slot, Shown::Starting, Shown::Up));
            }
        }
        effects
    }

    fn on_ready(&mut self, now: Instant, slot: &Slot, ip: IpAddr, everywhere: bool) -> Vec<Effect> {
        let Some(i) = self.find(slot) else {
            return Vec::new();
        };
        let dyno = &mut self.dynos[i];
        if !matches!(dyno.state, DynoState::Starting { .. }) {
            return Vec::new();
        }
        dyno.set_state(now, DynoState::Up);
        dyno.ip = Some(ip);
        let mut effects = vec![changed(slot, Shown::Starting, Shown::Up)];
        // The router is as reachable as the app: from other machines once a web dyno is
        // (an app in a container listens on 0.0.0.0), unless the user chose its address.
        let behind_router = dyno.plan.role.behind_router();
        if let (true, true, Some(_), None, false) = (
            everywhere,
            behind_router,
            self.plan.router,
            self.plan.router_address,
            self.router_widened,
        ) {
            self.router_widened = true;
            effects.push(Effect::WidenRouter { by: slot.clone() });
        }
        effects
    }

    fn on_exited(&mut self, now: Instant, slot: &Slot, status: Exit) -> Vec<Effect> {
        let Some(i) = self.find(slot) else {
            return Vec::new();
        };
        let dyno = &mut self.dynos[i];
        if !dyno.state.is_live() {
            return Vec::new();
        }
        let was = dyno.state;
        dyno.pid = None;
        dyno.memory = None;
        dyno.last_exit = Some(status);
        let code = status.code();
        let mut effects = vec![say(Event::Exited {
            slot: slot.clone(),
            code,
        })];
        match self.phase {
            Phase::Releasing => {
                dyno.set_state(now, DynoState::Down);
                let command = dyno.plan.spec.command.clone();
                match (code, slot.kind.as_str()) {
                    (0, RELEASE) => effects.extend(self.start_postdeploy_or_formation(now)),
                    (0, _) => {
                        effects.push(Effect::Postdeployed { command });
                        effects.extend(self.start_formation(now));
                    }
                    (_, kind) => {
                        effects.push(say(Event::DeployStepFailed {
                            kind: kind.to_owned(),
                            code,
                        }));
                        effects.extend(self.begin_stop(now, code, Signal::SIGTERM));
                    }
                }
            }
            Phase::Running => match was {
                // What else ran in its group may still be finishing: wait for it.
                DynoState::Stopping { kill_at, then, .. } => {
                    dyno.state = DynoState::Stopping {
                        kill_at,
                        then,
                        leader: Leader::Exited { rescan_at: None },
                    };
                    effects.push(Effect::ScanGroup { slot: slot.clone() });
                }
                _ if slot.kind == SCHEDULER => effects.extend(self.one_off_done(now, i)),
                _ => {
                    let crash = self.on_crash(now, i, was, code);
                    // A crash loop's later crashes say their exit in their one line.
                    if matches!(self.dynos[i].state, DynoState::Crashed { folded: true, .. }) {
                        effects.clear();
                    }
                    effects.extend(crash);
                }
            },
            Phase::Stopping { signal, .. } => {
                dyno.set_state(now, DynoState::Down);
                // After SIGINT, what is left in its group (a shell's `cmd &` children,
                // which ignore SIGINT) gets SIGTERM at once rather than at the grace.
                if dyno.plan.stop.signal_or(signal) != Signal::SIGTERM {
                    effects.push(Effect::Signal {
                        slot: slot.clone(),
                        signal: Signal::SIGTERM,
                    });
                }
                if self.all_settled() {
                    effects.push(Effect::ScanStragglers);
                }
            }
            Phase::Idle | Phase::Done => {}
        }
        effects
    }

    /// An exit nobody asked for (Heroku counts exit 0 too).
    fn on_crash(&mut self, now: Instant, i: usize, was: DynoState, code: i32) -> Vec<Effect> {
        // A run that will be replaced must be gone first, what escaped its group too; one
        // that will not (a daemonizing command under `--restart never`) is left to the
        // app's stop.
        let replaced = !self.plan.exit_on_crash && self.dynos[i].plan.restart.restarts(code);
        let mut effects = Vec::new();
        let mut remains = Remains::Unscanned;
        if replaced {
            remains = Remains::Draining {
                rescan_at: None,
                stop: Leftovers::Unsignalled,
            };
            effects.push(Effect::ScanGroup {
                slot: self.dynos[i].plan.spec.slot.clone(),
            });
        }
        effects.extend(self.crashed(now, i, was, code, remains));
        effects
    }

    fn crashed(
        &mut self,
        now: Instant,
        i: usize,
        was: DynoState,
        code: i32,
        remains: Remains,
    ) -> Vec<Effect> {
        self.dynos[i].crashed += 1;
        if code != 0 {
            self.first_failure.get_or_insert(code);
        }
        let slot = self.dynos[i].plan.spec.slot.clone();
        if self.plan.exit_on_crash {
            let mut effects = vec![say(Event::CrashStopsApp { slot, code })];
            let crashed = DynoState::Crashed {
                restart_at: None,
                folded: false,
                remains,
            };
            self.dynos[i].set_state(now, crashed);
            effects.extend(self.begin_stop(now, code, Signal::SIGTERM));
            return effects;
        }
        let cap = self.plan.restart_cap;
        let dyno = &mut self.dynos[i];
        // Heroku names the state before hkrun's kill: `from starting to crashed` after R10.
        let from = was.shown_before_kill();
        if !dyno.plan.restart.restarts(code) {
            let next = if code == 0 {
                DynoState::Down
            } else {
                DynoState::Crashed {
                    restart_at: None,
                    folded: false,
                    remains,
                }
            };
            dyno.set_state(now, next);
            let mut effects = vec![changed(&slot, from, next.shown())];
            // A scheduler run still going does not keep the app up.
            if self.settled_among(|d| !is_one_off(&d.plan.spec.slot.kind)) {
                let code = self.first_failure.unwrap_or(0);
                effects.push(say(Event::NoneLeft { code }));
                effects.extend(self.begin_stop(now, code, Signal::SIGTERM));
            }
            return effects;
        }
        // Up long enough before this crash: the back-off starts over.
        let up_since = match was {
            DynoState::Up => Some(dyno.since),
            DynoState::Killed { up_since } => up_since,
            _ => None,
        };
        if up_since.is_some_and(|up| now.saturating_duration_since(up) >= restart::RESET_AFTER) {
            dyno.crashes = 0;
        }
        let delay = restart::delay(dyno.crashes, cap);
        dyno.crashes = dyno.crashes.saturating_add(1);
        let crashes = dyno.crashes;
        // From the second crash in a row, one line per restart: the exit, the wait, and
        // nothing more until it is up again (or stops crashing).
        let folded = crashes >= 2 && !delay.is_zero();
        dyno.set_state(
            now,
            DynoState::Crashed {
                restart_at: Some(now + delay),
                folded,
                remains,
            },
        );
        if folded {
            return vec![say(Event::CrashLooping {
                slot,
                code,
                delay,
                crashes,
            })];
        }
        let mut effects = vec![changed(&slot, from, Shown::Crashed)];
        if delay.is_zero() {
            // At once, or once what the crashed run left is gone.
            if !self.dynos[i].state.draining() {
                effects.extend(self.restart(now, i));
            }
        } else {
            effects.push(say(Event::RestartingIn {
                slot,
                delay,
                crashes,
            }));
        }
        effects
    }

    fn restart(&mut self, now: Instant, i: usize) -> Vec<Effect> {
        let slot = self.dynos[i].plan.spec.slot.clone();
        let folded = matches!(self.dynos[i].state, DynoState::Crashed { folded: true, .. });
        let mut effects = Vec::new();
        if !folded {
            effects.push(changed(&slot, Shown::Crashed, Shown::Starting));
        }
        effects.extend(self.launch(now, i));
        if folded {
            // Its crash line said it all; a web dyno still says when it is up.
            effects.retain(|e| !matches!(e, Effect::Event(_)));
        }
        effects
    }

    fn on_memory(&mut self, now: Instant, samples: Vec<(Slot, u64)>) -> Vec<Effect> {
        let mut effects = Vec::new();
        for (slot, rss) in samples {
            let Some(i) = self.find(&slot) else { continue };
            let dyno = &mut self.dynos[i];
            if !matches!(dyno.state, DynoState::Starting { .. } | DynoState::Up) {
                continue;
            }
            dyno.memory = Some(rss);
            let quota = dyno.plan.quota;
            let verdict = match (dyno.plan.memory, quota::classify(rss, quota)) {
                (MemoryLimit::Off, _) => Verdict::Ok,
                (MemoryLimit::Warn, Verdict::FarOverQuota) => Verdict::OverQuota,
                (_, verdict) => verdict,
            };
            match verdict {
                Verdict::Ok => {}
                Verdict::OverQuota => {
                    if dyno
                        .last_r14
                        .is_none_or(|at| now.saturating_duration_since(at) >= R14_EVERY)
                    {
                        dyno.last_r14 = Some(now);
                        effects.push(say(Event::MemoryUsage {
                            slot: slot.clone(),
                            rss,
                            quota,
                        }));
                        dyno.errors.r14 += 1;
                        effects.push(say(Event::MemoryQuotaExceeded { slot: slot.clone() }));
                    }
                }
                Verdict::FarOverQuota => {
                    let up_since = (dyno.state == DynoState::Up).then_some(dyno.since);
                    dyno.errors.r15 += 1;
                    dyno.set_state(now, DynoState::Killed { up_since });
                    effects.push(say(Event::MemoryUsage {
                        slot: slot.clone(),
                        rss,
                        quota,
                    }));
                    effects.push(say(Event::MemoryQuotaVastlyExceeded { slot: slot.clone() }));
                    effects.push(say(Event::Killing { slot: slot.clone() }));
                    effects.push(Effect::SignalAll {
                        slot,
                        signal: Signal::SIGKILL,
                    });
                }
            }
        }
        effects
    }

    fn on_stop(&mut self, now: Instant, request: StopRequest) -> Vec<Effect> {
        match self.phase {
            Phase::Idle | Phase::Releasing | Phase::Running => {
                let mut effects = vec![say(Event::StopReceived {
                    request,
                    again: false,
                })];
                effects.extend(self.begin_stop(now, 0, request.signal()));
                effects
            }
            // The same signal delivered twice at once (`timeout`, or a signal sent to
            // hkrun's whole process group) is one request, not a second.
            Phase::Stopping {
                kill_at: Some(_),
                began,
                ..
            } if now < began + SAME_REQUEST => Vec::new(),
            // A second request means "now".
            Phase::Stopping {
                kill_at: Some(_), ..
            } => {
                let mut effects = vec![say(Event::StopReceived {
                    request,
                    again: true,
                })];
                effects.extend(self.kill_all());
                effects
            }
            Phase::Stopping { kill_at: None, .. } | Phase::Done => Vec::new(),
        }
    }

    /// Each dyno's group gets the signal once; processes outside their dyno's group
    /// (`setsid`) chose to leave it.
    fn forward(&self, signal: Signal) -> Vec<Effect> {
        self.dynos
            .iter()
            .filter(|d| d.state.is_live() && !d.state.draining())
            .map(|d| Effect::Signal {
                slot: d.plan.spec.slot.clone(),
                signal,
            })
            .collect()
    }

    fn begin_stop(&mut self, now: Instant, code: i32, signal: Signal) -> Vec<Effect> {
        // Any stop of a paused app resumes it first: stopped processes would not act on
        // the signal until continued.
        let mut effects = self.on_resume();
        // No dyno's exit may wait on a reader that never reads.
        effects.push(Effect::OutputMayBeDropped);
        // Each dyno has its own type's grace; the app waits for the longest.
        let longest = self
            .dynos
            .iter()
            .filter(|d| d.state.is_live())
            .map(|d| d.plan.stop.grace_or(self.plan.grace))
            .max()
            .unwrap_or(self.plan.grace);
        self.phase = Phase::Stopping {
            code,
            began: now,
            kill_at: Some(now + longest),
            rescan_at: None,
            signal,
            leftovers_termed: signal == Signal::SIGTERM,
            notice_at: Some(now + STOP_NOTICE),
        };
        let grace = self.plan.grace;
        for dyno in &mut self.dynos {
            match dyno.state {
                DynoState::Starting { .. } | DynoState::Up => {
                    dyno.set_state(now, stopping_with_app(dyno, now, grace));
                    let signal = dyno.plan.stop.signal_or(signal);
                    effects.extend(control::stop_with(&dyno.plan.spec.slot, signal));
                }
                // A restart that has not happened yet never will; what its last run left is
                // a straggler now.
                DynoState::Crashed {
                    restart_at, folded, ..
                } => {
                    dyno.state = DynoState::Crashed {
                        restart_at,
                        folded,
                        remains: Remains::Unscanned,
                    };
                    if restart_at.is_some() {
                        dyno.set_state(now, DynoState::Down);
                    }
                }
                // Its leader is gone: what is left of it is a straggler now.
                DynoState::Stopping {
                    leader: Leader::Exited { .. },
                    ..
                } => dyno.set_state(now, DynoState::Down),
                // Already signalled on its own (or about to be): the app's grace takes over.
                DynoState::Stopping {
                    leader: Leader::Running { term_at },
                    ..
                } => {
                    dyno.state = stopping_with_app(dyno, now, grace);
                    if term_at.is_some() {
                        effects.push(Effect::Signal {
                            slot: dyno.plan.spec.slot.clone(),
                            signal: dyno.plan.stop.signal_or(signal),
                        });
                    }
                }
                DynoState::Killed { .. } | DynoState::Down => {}
            }
        }
        effects.push(Effect::SignalStragglers(signal));
        if self.all_settled() {
            effects.push(Effect::ScanStragglers);
        }
        effects
    }

    fn kill_all(&mut self) -> Vec<Effect> {
        if let Phase::Stopping {
            kill_at, notice_at, ..
        } = &mut self.phase
        {
            *kill_at = None;
            *notice_at = None;
        }
        let mut effects = Vec::new();
        for dyno in self.dynos.iter_mut().filter(|d| d.state.is_live()) {
            if let DynoState::Stopping { kill_at, .. } = &mut dyno.state {
                *kill_at = None;
            }
            effects.extend(kill_remaining(&dyno.plan.spec.slot));
        }
        effects.push(Effect::SignalStragglers(Signal::SIGKILL));
        if self.all_settled() {
            effects.push(Effect::ScanStragglers);
        }
        effects
    }

    /// Every timer due by `now`, however many: a pass fires each dyno's first due timer
    /// (and the app's), so passes go on while `deadline` says one is due. Each firing
    /// clears or moves its timer, so this ends.
    fn on_tick(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        while self.deadline().is_some_and(|at| at <= now) {
            let before = effects.len();
            let deadline = self.deadline();
            effects.extend(match self.phase {
                Phase::Stopping { .. } => self.tick_stopping(now),
                Phase::Running => self.tick_running(now),
                Phase::Idle | Phase::Releasing | Phase::Done => Vec::new(),
            });
            if effects.len() == before && self.deadline() == deadline {
                debug_assert!(false, "a due timer at {deadline:?} fired nothing");
                break;
            }
        }
        effects
    }

    /// Each dyno's first due timer.
    fn tick_running(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        for i in 0..self.dynos.len() {
            if self.dynos[i].state.next_due().is_some_and(|at| at <= now) {
                effects.extend(self.fire(now, i));
            }
        }
        effects
    }

    /// Dyno `i`'s first timer, which is due.
    fn fire(&mut self, now: Instant, i: usize) -> Vec<Effect> {
        let (grace, signal) = self.stop_of(i);
        let dyno = &mut self.dynos[i];
        let slot = dyno.plan.spec.slot.clone();
        let due = |at: Option<Instant>| at.is_some_and(|at| at <= now);
        match &mut dyno.state {
            DynoState::Crashed {
                restart_at,
                remains: Remains::Unscanned | Remains::Gone,
                ..
            } if due(*restart_at) => self.restart(now, i),
            DynoState::Crashed {
                remains:
                    Remains::Draining {
                        stop: stop @ Leftovers::Termed { .. },
                        ..
                    },
                ..
            } if matches!(*stop, Leftovers::Termed { kill_at } if kill_at <= now) => {
                *stop = Leftovers::Killed;
                let mut effects = vec![r12(&slot, grace, signal)];
                effects.extend(kill_remaining(&slot));
                effects
            }
            DynoState::Starting { boot_deadline } if due(*boot_deadline) => {
                dyno.errors.r10 += 1;
                dyno.set_state(now, DynoState::Killed { up_since: None });
                vec![
                    say(Event::BootTimeout {
                        slot: slot.clone(),
                        timeout: dyno.plan.boot_timeout.unwrap_or_default(),
                    }),
                    say(Event::Killing { slot: slot.clone() }),
                    Effect::SignalAll {
                        slot,
                        signal: Signal::SIGKILL,
                    },
                ]
            }
            DynoState::Stopping { kill_at, .. } if due(*kill_at) => {
                *kill_at = None;
                vec![
                    r12(&slot, grace, signal),
                    say(Event::Killing { slot: slot.clone() }),
                    Effect::SignalAll {
                        slot,
                        signal: Signal::SIGKILL,
                    },
                ]
            }
            DynoState::Stopping {
                leader: Leader::Running { term_at },
                ..
            } if due(*term_at) => {
                *term_at = None;
                control::stop_with(&slot, signal)
            }
            state if due(state.rescan_at()) => {
                state.set_rescan(None);
                vec![Effect::ScanGroup { slot }]
            }
            _ => Vec::new(),
        }
    }

    fn tick_stopping(&mut self, now: Instant) -> Vec<Effect> {
        let Phase::Stopping {
            kill_at,
            signal,
            notice_at,
            ..
        } = &mut self.phase
        else {
            return Vec::new();
        };
        let signal = *signal;
        let mut effects = Vec::new();
        if notice_at.is_some_and(|at| at <= now) {
            *notice_at = None;
            if kill_at.is_some() {
                // Until the last SIGKILL due to a dyno still waited for: each has its own
                // type's grace.
                let last = self
                    .dynos
                    .iter()
                    .filter_map(|d| match d.state {
                        DynoState::Stopping { kill_at, .. } => kill_at,
                        _ => None,
                    })
                    .max();
                let left = last.map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
                effects.extend(self.waiting_notice(left, signal));
            }
        }
        let Phase::Stopping {
            kill_at, rescan_at, ..
        } = &mut self.phase
        else {
            return effects;
        };
        if rescan_at.is_some_and(|at| at <= now) {
            *rescan_at = None;
            effects.push(Effect::ScanStragglers);
        }
        let all_due = kill_at.is_some_and(|at| at <= now);
        // Each dyno at its own type's grace (the longest is the app's `kill_at`); one
        // killed already is not again.
        for i in 0..self.dynos.len() {
            let DynoState::Stopping {
                kill_at,
                then,
                leader,
            } = self.dynos[i].state
            else {
                continue;
            };
            if kill_at.is_some_and(|at| at <= now) {
                let (grace, _) = self.stop_of(i);
                let dyno = &mut self.dynos[i];
                let signal = dyno.plan.stop.signal_or(signal);
                effects.push(r12(&dyno.plan.spec.slot, grace, signal));
                dyno.state = DynoState::Stopping {
                    kill_at: None,
                    then,
                    leader,
                };
                if !all_due {
                    effects.extend(kill_remaining(&dyno.plan.spec.slot));
                }
            }
        }
        if all_due {
            effects.extend(self.kill_all());
        }
        effects
    }

    /// `waiting up to 29 seconds for web.1; press Ctrl-C again to stop now`: a stop that
    /// takes a while says what it waits for (the first few by name, then a count), and how
    /// not to.
    fn waiting_notice(&self, left: Duration, signal: Signal) -> Option<Effect> {
        let mut live = self.dynos.iter().filter(|d| d.state.is_live());
        let dynos: Vec<Slot> = live
            .by_ref()
            .take(NAMED_WHILE_WAITING)
            .map(|d| d.plan.spec.slot.clone())
            .collect();
        if dynos.is_empty() || left.is_zero() {
            return None;
        }
        Some(say(Event::StillWaiting {
            left: Duration::from_secs(left.as_secs_f64().round() as u64),
            dynos,
            more: live.count(),
            signal,
        }))
    }

    fn on_stragglers(&mut self, now: Instant, count: usize) -> Vec<Effect> {
        let settled = self.all_settled();
        let Phase::Stopping {
            code,
            kill_at,
            rescan_at,
            leftovers_termed,
            ..
        } = &mut self.phase
        else {
            return Vec::new();
        };
        if !settled {
            return Vec::new();
        }
        if count == 0 {
            let code = *code;
            self.phase = Phase::Done;
            return vec![Effect::Exit(code)];
        }
        *rescan_at = Some(now + STRAGGLER_RESCAN);
        if kill_at.is_none() {
            // Past the grace, whatever turns up is killed on sight.
            return vec![Effect::SignalStragglers(Signal::SIGKILL)];
        }
        if !*leftovers_termed {
            *leftovers_termed = true;
            return vec![Effect::SignalStragglers(Signal::SIGTERM)];
        }
        Vec::new()
    }

    /// Dyno `i`'s grace and the signal that stops it on its own (scale, restart, stop, a
    /// crash's leftovers): its type's, or the app's grace and SIGTERM.
    fn stop_of(&self, i: usize) -> (Duration, Signal) {
        let stop = self.dynos[i].plan.stop;
        (
            stop.grace_or(self.plan.grace),
            stop.signal_or(Signal::SIGTERM),
        )
    }

    /// No dyno has a process running, and none waits to restart.
    fn all_settled(&self) -> bool {
        self.settled_among(|_| true)
    }

    /// No dyno that `counts` has a process running, and none waits to restart.
    fn settled_among(&self, counts: impl Fn(&Dyno) -> bool) -> bool {
        self.dynos.iter().filter(|d| counts(d)).all(|d| {
            matches!(
                d.state,
                DynoState::Down
                    | DynoState::Crashed {
                        restart_at: None,
                        ..
                    }
            )
        })
    }
}

impl Dyno {
    fn new(plan: DynoSpec, serial: u64, now: Instant) -> Self {
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

    fn set_state(&mut self, now: Instant, state: DynoState) {
        self.state = state;
        self.since = now;
    }
}

/// How the app's stop leaves a dyno it signals: SIGKILLed at its own type's grace (the
/// app waits for the longest); `None` once that has happened.
fn stopping_with_app(dyno: &Dyno, now: Instant, app: Duration) -> DynoState {
    DynoState::Stopping {
        kill_at: Some(now + dyno.plan.stop.grace_or(app)),
        then: AfterStop::Down,
        leader: Leader::Running { term_at: None },
    }
}

/// `Stopping remaining processes with SIGKILL`, and the signal to all of the dyno's run.
fn kill_remaining(slot: &Slot) -> [Effect; 2] {
    [
        say(Event::StoppingRemaining {
            slot: slot.clone(),
            signal: Signal::SIGKILL,
        }),
        Effect::SignalAll {
            slot: slot.clone(),
            signal: Signal::SIGKILL,
        },
    ]
}

fn r12(slot: &Slot, grace: Duration, signal: Signal) -> Effect {
    say(Event::ExitTimeout {
        slot: slot.clone(),
        grace,
        signal,
    })
}

fn say(event: Event) -> Effect {
    Effect::Event(event)
}

fn changed(slot: &Slot, from: Shown, to: Shown) -> Effect {
    say(Event::StateChanged {
        slot: slot.clone(),
        from,
        to,
    })
}

#[cfg(test)]
mod tests;
