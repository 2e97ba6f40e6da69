//! The supervisor's state and every decision about it: `handle(now, input) -> effects`.
//!
//! Pure: no I/O, no clock, no sleeps. The driver feeds it inputs with the time they
//! happened and carries out the effects. It owns the release phase, dyno states
//! (starting, up, crashed, stopping, down), readiness and R10, crash restarts with
//! back-off, R14/R15, the exit rule, and shutdown escalation.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::event::{Event, Shown};
use super::input::{Effect, Input};
use crate::dyno::{Backend, Exit, Routes, Slot, WebState};
use crate::plan::{AppPlan, DynoSpec, ProcessType};
pub use dyno::{AfterStop, Dyno, DynoState, Errors, Leader, Leftovers, Remains};

mod dyno;
mod lifecycle;
mod pause;
mod preboot;
mod quota;
mod replies;
mod requests;
mod scale;
mod stop;
mod timers;

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
    pending: Vec<replies::Pending>,
    /// Control requests waiting for the ports of their new web dynos to be probed.
    probing: Vec<requests::Probing>,
    /// The backends last published to the router.
    published: Routes,
    /// A preboot restart of web under way, and how the last one ended.
    preboot: preboot::Prebooting,
    /// The core's clock, which leaves time paused out (`pause`).
    clock: pause::Clock,
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
            published: Routes::default(),
            preboot: preboot::Prebooting::default(),
            clock: pause::Clock::default(),
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

    /// The core's clock at real time `real`: time spent paused does not count, so every
    /// timer (boot, back-off, grace) is in this time, and it stands still while paused.
    pub fn clock(&self, real: Instant) -> Instant {
        self.clock.at(real)
    }

    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Effect> {
        self.clock.arrive(now);
        let now = self.clock.at(now);
        let mut effects = self.dispatch(now, input);
        if self.paused() {
            effects = self.spawned_paused(effects);
        }
        // The preboot first: a pending restart may wait for its outcome.
        if self.preboot.under_way() {
            effects.extend(self.advance_preboot(now));
        }
        effects.extend(self.start_held(now));
        effects.extend(self.answer_pending());
        if self.plan.router.is_some() {
            effects.extend(self.publish_backends());
        }
        effects
    }

    /// The router's port, when it runs.
    pub fn router(&self) -> Option<u16> {
        self.plan.router
    }

    /// New requests go to web dynos that are up, and only those: one that crashes or
    /// starts to stop leaves the set at once, one that comes up joins it. While none is
    /// up, the router is told why.
    fn publish_backends(&mut self) -> Option<Effect> {
        let mut up: Vec<Backend> = self
            .dynos
            .iter()
            .filter(|d| d.plan().role.is_web() && d.state() == DynoState::Up)
            // New dynos of a preboot take traffic only once all of them are up.
            .filter(|d| !self.preboot.is_new(d.slot()))
            .filter_map(|d| {
                let ip = d.ip().unwrap_or(Ipv4Addr::LOCALHOST.into());
                Some(Backend {
                    slot: d.slot().clone(),
                    addr: SocketAddr::new(ip, d.plan().spec.port?),
                })
            })
            .collect();
        up.sort_by(|a, b| a.slot.cmp(&b.slot));
        let web = if up.is_empty() {
            self.web_state()
        } else {
            WebState::default()
        };
        let routes = Routes { up, web };
        if routes == self.published {
            return None;
        }
        self.published = routes.clone();
        Some(Effect::Routes(routes))
    }

    /// What the web dynos are doing, for a request that finds none up.
    fn web_state(&self) -> WebState {
        let web = || self.dynos.iter().filter(|d| d.plan().role.is_web());
        let starting = web().any(|d| {
            matches!(
                d.state(),
                DynoState::Starting { .. }
                    | DynoState::Stopping {
                        then: AfterStop::Restart,
                        ..
                    }
            )
        });
        let web_held = self
            .plan
            .types
            .iter()
            .any(|t| t.role.is_web() && self.held.contains(&t.name));
        if starting || web_held || matches!(self.phase, Phase::Idle | Phase::Releasing) {
            WebState::Booting
        } else if web().any(|d| {
            matches!(
                d.state(),
                DynoState::Crashed { .. } | DynoState::Killed { .. }
            )
        }) {
            WebState::Crashed
        } else {
            WebState::NoDynos
        }
    }

    fn dispatch(&mut self, now: Instant, input: Input) -> Vec<Effect> {
        match input {
            Input::Spawned { slot, pid } => {
                if let Some(i) = self.find(&slot) {
                    self.dynos[i].spawned(pid);
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
            Input::Drained { slot } => self.on_drained(now, &slot),
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
        self.dynos.iter().position(|d| d.slot() == slot)
    }

    /// Dyno `i`'s grace and the signal that stops it on its own (scale, restart, stop, a
    /// crash's leftovers): its type's, or the app's grace and SIGTERM.
    fn stop_of(&self, i: usize) -> (Duration, Signal) {
        let stop = self.dynos[i].plan().stop;
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
                d.state(),
                DynoState::Down
                    | DynoState::Crashed {
                        restart_at: None,
                        ..
                    }
            )
        })
    }
}

/// How the app's stop leaves a dyno it signals: SIGKILLed at its own type's grace (the
/// app waits for the longest); `None` once that has happened.
fn stopping_with_app(dyno: &Dyno, now: Instant, app: Duration) -> DynoState {
    DynoState::Stopping {
        kill_at: Some(now + dyno.plan().stop.grace_or(app)),
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
pub(crate) mod tests;
