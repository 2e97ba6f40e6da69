//! A dyno's life: the release phase and postdeploy, Scheduler's runs, the formation's
//! start (types held back by `after`), launching, readiness, exits, crashes and their
//! back-off, and memory against the quota (R14, R15).

use std::net::IpAddr;
use std::time::Instant;

use nix::sys::signal::Signal;

use super::quota::{self, Verdict};
use super::{AfterStop, DynoState, Leader, Leftovers, Phase, Remains, Supervisor, changed, say};
use crate::dyno::{Exit, POSTDEPLOY, RELEASE, SCHEDULER, Slot, is_one_off};
use crate::plan::DynoSpec;
use crate::plan::policy::MemoryLimit;
use crate::supervisor::event::{Event, Shown, Skipped};
use crate::supervisor::input::Effect;

impl Supervisor {
    pub(super) fn start_release_or_formation(&mut self, now: Instant) -> Vec<Effect> {
        match self.plan.release.clone() {
            Some(command) => self.start_deploy_step(now, RELEASE, command),
            None => self.start_postdeploy_or_formation(now),
        }
    }

    pub(super) fn start_postdeploy_or_formation(&mut self, now: Instant) -> Vec<Effect> {
        match self.plan.postdeploy.clone() {
            Some(command) => self.start_deploy_step(now, POSTDEPLOY, command),
            None => self.start_formation(now),
        }
    }

    /// `release.1` or `postdeploy.1`: nothing of the formation runs until it exits 0.
    pub(super) fn start_deploy_step(
        &mut self,
        now: Instant,
        kind: &str,
        command: String,
    ) -> Vec<Effect> {
        self.phase = Phase::Releasing;
        // The release phase is not watched: it has no quota.
        let plan = DynoSpec::one_off(Slot::new(kind, 1), command, MemoryLimit::Off, u64::MAX);
        let i = self.add_dyno(plan, now);
        self.launch(now, i)
    }

    /// A `[[scheduler]]` job is due: its run starts as `scheduler.N`, unless its last run
    /// is still going (then this one is skipped, and said so).
    pub(super) fn on_scheduled(&mut self, now: Instant, job: usize) -> Vec<Effect> {
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
    pub(super) fn one_off_done(&mut self, now: Instant, i: usize) -> Vec<Effect> {
        let slot = self.dynos[i].slot().clone();
        let mut effects = vec![changed(&slot, Shown::Up, Shown::Complete)];
        effects.extend(self.replace_settled(now, i, AfterStop::Remove));
        effects
    }

    pub(super) fn start_formation(&mut self, now: Instant) -> Vec<Effect> {
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
            if !self.held.contains(&self.dynos[i].slot().kind) {
                effects.extend(self.launch(now, i));
            }
        }
        effects
    }

    /// Starts each held type whose `after` types are started and have every dyno up.
    pub(super) fn start_held(&mut self, now: Instant) -> Vec<Effect> {
        if self.held.is_empty() || self.phase != Phase::Running {
            return Vec::new();
        }
        let mut effects = Vec::new();
        loop {
            let up = |kind: &str| {
                !self.held.iter().any(|h| h == kind)
                    && self
                        .dynos
                        .iter()
                        .filter(|d| d.slot().kind == kind)
                        .all(|d| d.state() == DynoState::Up)
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
                if dyno.slot().kind == name
                    && dyno.state() == DynoState::Down
                    && dyno.launches() == 0
                {
                    effects.extend(self.launch(now, i));
                }
            }
        }
    }

    /// Whether `kind` waits for its `after` types (new dynos of it wait too).
    pub(super) fn is_held(&self, kind: &str) -> bool {
        self.held.iter().any(|h| h == kind)
    }

    /// Spawns dyno `i`. A web dyno starts booting; any other is up at once.
    pub(super) fn launch(&mut self, now: Instant, i: usize) -> Vec<Effect> {
        let dyno = &mut self.dynos[i];
        let spec = dyno.plan().spec.clone();
        let slot = spec.slot.clone();
        let mut effects = vec![
            say(Event::Launching {
                slot: slot.clone(),
                command: spec.command.clone(),
            }),
            Effect::Spawn(spec.clone()),
        ];
        match (dyno.plan().boot_timeout, spec.port) {
            (Some(timeout), Some(port)) => {
                dyno.launched(
                    now,
                    DynoState::Starting {
                        boot_deadline: Some(now + timeout),
                    },
                );
                effects.push(Effect::AwaitReady { slot, port });
            }
            _ if slot.kind == RELEASE || slot.kind == POSTDEPLOY => {
                dyno.launched(
                    now,
                    DynoState::Starting {
                        boot_deadline: None,
                    },
                );
            }
            _ => {
                dyno.launched(now, DynoState::Up);
                effects.push(changed(&slot, Shown::Starting, Shown::Up));
            }
        }
        effects
    }

    pub(super) fn on_ready(
        &mut self,
        now: Instant,
        slot: &Slot,
        ip: IpAddr,
        everywhere: bool,
    ) -> Vec<Effect> {
        let Some(i) = self.find(slot) else {
            return Vec::new();
        };
        let dyno = &mut self.dynos[i];
        if !matches!(dyno.state(), DynoState::Starting { .. }) {
            return Vec::new();
        }
        dyno.listening(now, ip);
        let mut effects = vec![changed(slot, Shown::Starting, Shown::Up)];
        // The router is as reachable as the app: from other machines once a web dyno is
        // (an app in a container listens on 0.0.0.0), unless the user chose its address.
        let behind_router = dyno.plan().role.behind_router();
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

    pub(super) fn on_exited(&mut self, now: Instant, slot: &Slot, status: Exit) -> Vec<Effect> {
        let Some(i) = self.find(slot) else {
            return Vec::new();
        };
        let dyno = &mut self.dynos[i];
        if !dyno.state().is_live() {
            return Vec::new();
        }
        let was = dyno.state();
        dyno.exited(status);
        let code = status.code();
        let mut effects = vec![say(Event::Exited {
            slot: slot.clone(),
            code,
        })];
        match self.phase {
            Phase::Releasing => {
                dyno.set_state(now, DynoState::Down);
                let command = dyno.plan().spec.command.clone();
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
                    dyno.amend(DynoState::Stopping {
                        kill_at,
                        then,
                        leader: Leader::Exited { rescan_at: None },
                    });
                    effects.push(Effect::ScanGroup { slot: slot.clone() });
                }
                _ if slot.kind == SCHEDULER => effects.extend(self.one_off_done(now, i)),
                _ => {
                    let crash = self.on_crash(now, i, was, code);
                    // A crash loop's later crashes say their exit in their one line.
                    if matches!(
                        self.dynos[i].state(),
                        DynoState::Crashed { folded: true, .. }
                    ) {
                        effects.clear();
                    }
                    effects.extend(crash);
                }
            },
            Phase::Stopping { signal, .. } => {
                dyno.set_state(now, DynoState::Down);
                // After SIGINT, what is left in its group (a shell's `cmd &` children,
                // which ignore SIGINT) gets SIGTERM at once rather than at the grace.
                if dyno.plan().stop.signal_or(signal) != Signal::SIGTERM {
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
    pub(super) fn on_crash(
        &mut self,
        now: Instant,
        i: usize,
        was: DynoState,
        code: i32,
    ) -> Vec<Effect> {
        // A run that will be replaced must be gone first, what escaped its group too; one
        // that will not (a daemonizing command under `--restart never`) is left to the
        // app's stop.
        let replaced = !self.plan.exit_on_crash && self.dynos[i].plan().restart.restarts(code);
        let mut effects = Vec::new();
        let mut remains = Remains::Unscanned;
        if replaced {
            remains = Remains::Draining {
                rescan_at: None,
                stop: Leftovers::Unsignalled,
            };
            effects.push(Effect::ScanGroup {
                slot: self.dynos[i].slot().clone(),
            });
        }
        effects.extend(self.crashed(now, i, was, code, remains));
        effects
    }

    pub(super) fn crashed(
        &mut self,
        now: Instant,
        i: usize,
        was: DynoState,
        code: i32,
        remains: Remains,
    ) -> Vec<Effect> {
        self.dynos[i].count_crash();
        if code != 0 {
            self.first_failure.get_or_insert(code);
        }
        let slot = self.dynos[i].slot().clone();
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
        if !dyno.plan().restart.restarts(code) {
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
            if self.settled_among(|d| !is_one_off(&d.slot().kind)) {
                let code = self.first_failure.unwrap_or(0);
                effects.push(say(Event::NoneLeft { code }));
                effects.extend(self.begin_stop(now, code, Signal::SIGTERM));
            }
            return effects;
        }
        // Up long enough before this crash: the back-off starts over.
        let up_since = match was {
            DynoState::Up => Some(dyno.since()),
            DynoState::Killed { up_since } => up_since,
            _ => None,
        };
        let (delay, crashes) = dyno.back_off(now, up_since, cap);
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
            if !self.dynos[i].state().draining() {
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

    pub(super) fn restart(&mut self, now: Instant, i: usize) -> Vec<Effect> {
        let slot = self.dynos[i].slot().clone();
        let folded = matches!(
            self.dynos[i].state(),
            DynoState::Crashed { folded: true, .. }
        );
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

    pub(super) fn on_memory(&mut self, now: Instant, samples: Vec<(Slot, u64)>) -> Vec<Effect> {
        let mut effects = Vec::new();
        for (slot, rss) in samples {
            let Some(i) = self.find(&slot) else { continue };
            let dyno = &mut self.dynos[i];
            if !matches!(dyno.state(), DynoState::Starting { .. } | DynoState::Up) {
                continue;
            }
            dyno.sampled(rss);
            let quota = dyno.plan().quota;
            let verdict = match (dyno.plan().memory, quota::classify(rss, quota)) {
                (MemoryLimit::Off, _) => Verdict::Ok,
                (MemoryLimit::Warn, Verdict::FarOverQuota) => Verdict::OverQuota,
                (_, verdict) => verdict,
            };
            match verdict {
                Verdict::Ok => {}
                Verdict::OverQuota => {
                    if dyno.r14(now) {
                        effects.push(say(Event::MemoryUsage {
                            slot: slot.clone(),
                            rss,
                            quota,
                        }));
                        effects.push(say(Event::MemoryQuotaExceeded { slot: slot.clone() }));
                    }
                }
                Verdict::FarOverQuota => {
                    dyno.killed_for_memory(now);
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
}
