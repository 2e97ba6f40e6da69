//! What control clients change: scaling, restarting and stopping dynos, and the replies
//! that wait for those dynos to settle. Part of the core: pure, explicit instants.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::replies::{Pending, Restarting};
use super::scale::ScalePlan;
use super::{AfterStop, DynoState, Leader, Leftovers, Phase, Remains, Supervisor, changed, say};
use crate::dyno::{Slot, is_one_off};
use crate::plan::{DynoSpec, Role, Vars};
use crate::supervisor::event::{Event, Shown};
use crate::supervisor::input::{Control, Effect, SIGNALLED, Target};
use crate::supervisor::outcome::{Outcome, Refusal};

/// A restart worked out: the web dynos that restart preboot-style, with their new
/// generation, and the dynos that stop, then start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RestartPlan {
    web: Vec<Slot>,
    preboot: Vec<DynoSpec>,
    rest: Vec<Slot>,
    /// A reload's env, which the app takes on as the restart goes ahead.
    env: Option<Arc<Vars>>,
}

/// A request worked out against the app as it is, changing nothing yet: carried out by
/// `commit`, once the ports of the new web dynos it starts are known to be free.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Plan {
    Scale(ScalePlan),
    Restart(RestartPlan),
}

impl Plan {
    /// The ports of the new web dynos it starts, each with the dyno meant for it: a dyno
    /// on a port something else holds could only crash on bind, so they are probed first
    /// (`Effect::ProbePorts`).
    fn ports(&self) -> Vec<(u16, Slot)> {
        let specs: Vec<&DynoSpec> = match self {
            Self::Scale(plan) => plan
                .additions
                .iter()
                .map(|(_, p)| p)
                .filter(|p| p.role.is_web())
                .chain(plan.preboots.iter().flat_map(|(_, plans)| plans))
                .collect(),
            Self::Restart(plan) => plan.preboot.iter().collect(),
        };
        specs
            .into_iter()
            .filter_map(|p| Some((p.spec.port?, p.spec.slot.clone())))
            .collect()
    }
}

/// A request waiting for its ports to be probed, with its plan.
#[derive(Clone, Debug)]
pub(super) struct Probing {
    id: u64,
    request: Control,
    plan: Plan,
}

impl Supervisor {
    pub(super) fn on_control(&mut self, now: Instant, id: u64, request: Control) -> Vec<Effect> {
        if let Some(why) = self.refusal(&request) {
            return vec![reply(id, Outcome::Refused(why))];
        }
        let planned = match &request {
            Control::Scale(_) | Control::Restart(_) | Control::Reload(_) => self.plan(&request),
            Control::Stop(targets) => {
                let done = self.stop_dynos(now, id, targets);
                return answered(id, done);
            }
            Control::Kill { targets, signal } => {
                let done = self.kill(targets, *signal);
                return answered(id, done);
            }
        };
        match planned {
            Ok(plan) => self.probe_or_commit(now, id, request, plan),
            Err(why) => vec![reply(id, Outcome::Refused(why))],
        }
    }

    /// Why `request` cannot be taken now, whatever it asks.
    fn refusal(&self, request: &Control) -> Option<Refusal> {
        match self.phase {
            // Heroku refuses formation changes during a preboot too.
            Phase::Running if self.paused() => Some(Refusal::Paused),
            Phase::Running
                if self.preboot.under_way()
                    && !matches!(request, Control::Stop(_) | Control::Kill { .. }) =>
            {
                Some(Refusal::PrebootUnderWay)
            }
            Phase::Running => None,
            Phase::Idle | Phase::Releasing => Some(Refusal::Releasing),
            Phase::Stopping { .. } | Phase::Done => Some(Refusal::Stopping),
        }
    }

    /// Carries `plan` out, or first asks for its new web dynos' ports to be probed.
    fn probe_or_commit(
        &mut self,
        now: Instant,
        id: u64,
        request: Control,
        plan: Plan,
    ) -> Vec<Effect> {
        let ports = plan.ports();
        if ports.is_empty() {
            return self.commit(now, id, plan);
        }
        let probe = Effect::ProbePorts {
            id,
            ports: ports.iter().map(|(port, _)| *port).collect(),
        };
        self.probing.push(Probing { id, request, plan });
        vec![probe]
    }

    /// The answer to `Effect::ProbePorts`: the request is refused if a port is taken, and
    /// otherwise its plan is carried out. The app may have changed while the probe was
    /// out: the request is worked out again, and a plan that now needs other ports is
    /// probed again.
    pub(super) fn on_ports_probed(&mut self, now: Instant, id: u64, taken: &[u16]) -> Vec<Effect> {
        let Some(at) = self.probing.iter().position(|p| p.id == id) else {
            return Vec::new();
        };
        let Probing { request, plan, .. } = self.probing.remove(at);
        let probed = plan.ports();
        if let Some((port, slot)) = probed.iter().find(|(port, _)| taken.contains(port)) {
            let why = Refusal::PortInUse {
                port: *port,
                dyno: slot.clone(),
            };
            return match id {
                // Nobody waits for a signal's request: the log says why nothing happened.
                SIGNALLED => vec![say(Event::SignalledRestartRefused(why))],
                _ => vec![reply(id, Outcome::Refused(why))],
            };
        }
        let again = match self.refusal(&request) {
            Some(why) => Err(why),
            None => self.plan(&request),
        };
        match again {
            Err(why) => vec![reply(id, Outcome::Refused(why))],
            Ok(fresh) if fresh == plan || fresh.ports() == probed => self.commit(now, id, fresh),
            Ok(fresh) => self.probe_or_commit(now, id, request, fresh),
        }
    }

    /// `request` worked out against the app as it is now: a scale, a restart or a
    /// reload (stop and kill are carried out at once, with no plan).
    fn plan(&self, request: &Control) -> Result<Plan, Refusal> {
        match request {
            Control::Scale(changes) => self.plan_scale(changes).map(Plan::Scale),
            Control::Restart(targets) => self.plan_restart(targets, None).map(Plan::Restart),
            Control::Reload(env) => self
                .plan_restart(&[], Some(Arc::clone(env)))
                .map(Plan::Restart),
            Control::Stop(_) | Control::Kill { .. } => {
                unreachable!("stop and kill are carried out without a plan")
            }
        }
    }

    /// Carries out a plan whose ports are free.
    fn commit(&mut self, now: Instant, id: u64, plan: Plan) -> Vec<Effect> {
        let (mut effects, answer) = match plan {
            Plan::Scale(plan) => self.commit_scale(now, id, plan),
            // A reload's env comes before the spawns of its restart.
            Plan::Restart(mut plan) => {
                let take = plan.env.take().map(Effect::TakeEnv);
                let (effects, answer) = self.commit_restart(now, id, plan);
                (take.into_iter().chain(effects).collect(), answer)
            }
        };
        if let Some(answer) = answer {
            effects.push(reply(id, answer));
        }
        effects
    }

    /// A process type's role; the release phase's, or an unknown name's, is `Other`.
    fn role_of(&self, kind: &str) -> Role {
        self.plan
            .types
            .iter()
            .find(|t| t.name == kind)
            .map_or(Role::Other, |t| t.role)
    }

    /// The formation's dynos of `kind`: not the ones leaving it.
    pub(super) fn members(&self, kind: &str) -> Vec<Slot> {
        let mut slots: Vec<Slot> = self
            .dynos
            .iter()
            .filter(|d| d.slot().kind == kind && !d.leaving())
            .map(|d| d.slot().clone())
            .collect();
        slots.sort();
        slots
    }

    pub(super) fn unknown_type(&self, name: &str) -> Refusal {
        Refusal::UnknownType {
            name: name.to_owned(),
            known: self.plan.types.iter().map(|t| t.name.clone()).collect(),
        }
    }

    /// The formation's dynos a target names; none is an error.
    /// The dynos `targets` name, each once, in the order named; none named is every
    /// dyno of the formation. A target that names none is an error.
    fn targets(&self, targets: &[Target]) -> Result<Vec<Slot>, Refusal> {
        if targets.is_empty() {
            return self.target(None);
        }
        let mut slots: Vec<Slot> = Vec::new();
        for target in targets {
            for slot in self.target(Some(target))? {
                if !slots.contains(&slot) {
                    slots.push(slot);
                }
            }
        }
        Ok(slots)
    }

    fn target(&self, target: Option<&Target>) -> Result<Vec<Slot>, Refusal> {
        let formation = || {
            let mut all: Vec<Slot> = self
                .dynos
                .iter()
                .filter(|d| !is_one_off(&d.slot().kind) && !d.leaving())
                .map(|d| d.slot().clone())
                .collect();
            all.sort();
            all
        };
        let slots: Vec<Slot> = match target {
            None => formation(),
            Some(Target::Glob(pattern)) => {
                let matched: Vec<Slot> = formation()
                    .into_iter()
                    .filter(|s| pattern.matches(&s.kind) || pattern.matches(&s.to_string()))
                    .collect();
                if matched.is_empty() {
                    return Err(Refusal::NoMatch {
                        pattern: pattern.to_string(),
                    });
                }
                matched
            }
            Some(Target::Type(kind)) => {
                if self.plan.types.iter().all(|t| &t.name != kind) {
                    return Err(self.unknown_type(kind));
                }
                self.members(kind)
            }
            // By name: whichever process is `web.2` now.
            Some(Target::Dyno(slot)) => self
                .members(&slot.kind)
                .into_iter()
                .find(|s| s.index == slot.index && !is_one_off(&slot.kind))
                .map(|s| vec![s])
                .ok_or_else(|| Refusal::NoSuchDyno {
                    dyno: slot.clone(),
                    running: self.members(&slot.kind),
                })?,
        };
        if slots.is_empty() {
            return Err(match target {
                Some(target) => Refusal::NoDynos {
                    target: target.to_string(),
                },
                None => Refusal::NothingRunning,
            });
        }
        Ok(slots)
    }

    /// Which dynos a restart stops and starts, and, with preboot, the new generation of
    /// the web dynos among them. Changes nothing.
    fn plan_restart(
        &self,
        targets: &[Target],
        env: Option<Arc<Vars>>,
    ) -> Result<RestartPlan, Refusal> {
        let slots = self.targets(targets)?;
        // Web behind the router restarts preboot-style; the rest stop, then start.
        if !self.plan.preboot {
            return Ok(RestartPlan {
                web: Vec::new(),
                preboot: Vec::new(),
                rest: slots,
                env,
            });
        }
        let (web, rest): (Vec<Slot>, Vec<Slot>) = slots
            .into_iter()
            .partition(|s| self.role_of(&s.kind).is_web());
        let preboot = match web.is_empty() {
            true => Vec::new(),
            false => self.preboot_plans(&web, &[])?,
        };
        Ok(RestartPlan {
            web,
            preboot,
            rest,
            env,
        })
    }

    fn commit_restart(
        &mut self,
        now: Instant,
        id: u64,
        plan: RestartPlan,
    ) -> (Vec<Effect>, Option<Outcome>) {
        let RestartPlan {
            web, preboot, rest, ..
        } = plan;
        let mut effects = Vec::new();
        let mut prebooted = None;
        if !web.is_empty() {
            // The preboot answers alone when web is all there is to restart.
            let reply = rest.is_empty().then_some(id);
            effects.extend(self.start_preboot(now, &web, preboot, reply));
            if rest.is_empty() {
                return (effects, None);
            }
            prebooted = Some(web);
        }
        let mut waits = Vec::new();
        for slot in rest {
            if let Some(i) = self.find(&slot) {
                let dyno = &self.dynos[i];
                waits.push(Restarting::of(slot, dyno));
                effects.extend(self.restart_one(now, i));
            }
        }
        self.reply_later(Pending::restarted(id, waits, prebooted));
        (effects, None)
    }

    /// Stop-then-start, Heroku's words: `Restarting`, `State changed from up to starting`,
    /// `Stopping all processes with SIGTERM`, then the start once it has exited.
    pub(super) fn restart_one(&mut self, now: Instant, i: usize) -> Vec<Effect> {
        let (grace, signal) = self.stop_of(i);
        let dyno = &mut self.dynos[i];
        let slot = dyno.slot().clone();
        // Asked for: the back-off starts over.
        dyno.reset_back_off();
        let mut effects = vec![say(Event::Restarting { slot: slot.clone() })];
        match dyno.state() {
            DynoState::Starting { .. } | DynoState::Up | DynoState::Killed { .. } => {
                let was = dyno.state();
                let (from, killed) = (
                    was.shown_before_kill(),
                    matches!(was, DynoState::Killed { .. }),
                );
                dyno.set_state(
                    now,
                    DynoState::Stopping {
                        // A killed dyno already had its SIGKILL.
                        kill_at: (!killed).then_some(now + grace),
                        then: AfterStop::Restart,
                        leader: Leader::Running { term_at: None },
                    },
                );
                if from != Shown::Starting {
                    effects.push(changed(&slot, from, Shown::Starting));
                }
                if !killed {
                    effects.extend(stop_with(&slot, signal));
                }
            }
            DynoState::Stopping {
                kill_at, leader, ..
            } => dyno.amend(DynoState::Stopping {
                kill_at,
                then: AfterStop::Restart,
                leader,
            }),
            DynoState::Crashed { .. } | DynoState::Down => {
                effects.push(changed(&slot, dyno.state().shown(), Shown::Starting));
                effects.extend(self.replace_settled(now, i, AfterStop::Restart));
            }
        }
        effects
    }

    fn stop_dynos(&mut self, now: Instant, id: u64, targets: &[Target]) -> Done {
        if targets.is_empty() {
            return Err(Refusal::NoTargets);
        }
        let slots = self.targets(targets)?;
        let mut effects = Vec::new();
        for slot in slots.iter().rev() {
            effects.extend(self.retire(now, slot, Duration::ZERO));
        }
        self.reply_later(Pending::gone(id, slots));
        Ok((effects, None))
    }

    /// `hkrun kill`: `signal` to the process group of each named dyno that runs; answered
    /// at once.
    fn kill(&mut self, targets: &[Target], signal: Signal) -> Done {
        let slots: Vec<Slot> = self
            .targets(targets)?
            .into_iter()
            .filter(|s| {
                self.find(s).is_some_and(|i| {
                    self.dynos[i].state().is_live() && !self.dynos[i].state().draining()
                })
            })
            .collect();
        if slots.is_empty() {
            return Err(Refusal::NoneRunning);
        }
        let mut effects = Vec::new();
        for slot in &slots {
            effects.push(say(Event::SignalSent {
                slot: slot.clone(),
                signal,
            }));
            effects.push(Effect::Signal {
                slot: slot.clone(),
                signal,
            });
        }
        let answer = Outcome::Signalled {
            signal: signal.as_str().to_owned(),
            dynos: slots,
        };
        Ok((effects, Some(answer)))
    }

    /// Takes a dyno out of the formation: a running one stops gracefully first, its
    /// SIGTERM `settle` from now (after a preboot) or at once.
    pub(super) fn retire(&mut self, now: Instant, slot: &Slot, settle: Duration) -> Vec<Effect> {
        let Some(i) = self.find(slot) else {
            return Vec::new();
        };
        let (grace, signal) = self.stop_of(i);
        let dyno = &mut self.dynos[i];
        match dyno.state() {
            DynoState::Starting { .. } | DynoState::Up => {
                let term_at = (!settle.is_zero()).then_some(now + settle);
                dyno.set_state(
                    now,
                    DynoState::Stopping {
                        kill_at: Some(now + settle + grace),
                        then: AfterStop::Remove,
                        leader: Leader::Running { term_at },
                    },
                );
                match term_at {
                    None => stop_with(slot, signal),
                    Some(_) => Vec::new(),
                }
            }
            DynoState::Killed { .. } => {
                dyno.set_state(
                    now,
                    DynoState::Stopping {
                        kill_at: None,
                        then: AfterStop::Remove,
                        leader: Leader::Running { term_at: None },
                    },
                );
                Vec::new()
            }
            DynoState::Stopping {
                kill_at, leader, ..
            } => {
                dyno.amend(DynoState::Stopping {
                    kill_at,
                    then: AfterStop::Remove,
                    leader,
                });
                Vec::new()
            }
            DynoState::Crashed { .. } | DynoState::Down => {
                self.replace_settled(now, i, AfterStop::Remove)
            }
        }
    }

    /// The count of what is left of a draining dyno's last run: once nothing is, the
    /// dyno has stopped, or a crashed one may start again.
    pub(super) fn on_group_left(&mut self, now: Instant, slot: &Slot, count: usize) -> Vec<Effect> {
        let Some(i) = self.find(slot) else {
            return Vec::new();
        };
        let (grace, signal) = self.stop_of(i);
        let dyno = &mut self.dynos[i];
        if !dyno.state().draining() || !matches!(self.phase, Phase::Running) {
            return Vec::new();
        }
        if count > 0 {
            let mut state = dyno.state();
            state.set_rescan(Some(now + super::STRAGGLER_RESCAN));
            let effects = match &mut state {
                // Past its SIGKILL, whatever turns up (forked since, say) is killed on
                // sight, as when the app stops.
                DynoState::Stopping { kill_at: None, .. }
                | DynoState::Crashed {
                    remains:
                        Remains::Draining {
                            stop: Leftovers::Killed,
                            ..
                        },
                    ..
                } => vec![Effect::SignalAll {
                    slot: slot.clone(),
                    signal: Signal::SIGKILL,
                }],
                // A crash's leftovers get the stop the app's stop would give them.
                DynoState::Crashed {
                    remains:
                        Remains::Draining {
                            stop: stop @ Leftovers::Unsignalled,
                            ..
                        },
                    ..
                } => {
                    *stop = Leftovers::Termed {
                        kill_at: now + grace,
                    };
                    vec![
                        say(Event::StoppingRemaining {
                            slot: slot.clone(),
                            signal,
                        }),
                        Effect::SignalAll {
                            slot: slot.clone(),
                            signal,
                        },
                    ]
                }
                _ => Vec::new(),
            };
            dyno.amend(state);
            return effects;
        }
        match dyno.state() {
            DynoState::Stopping { then, .. } => self.after_stop(now, i, then),
            DynoState::Crashed {
                restart_at, folded, ..
            } => {
                dyno.amend(DynoState::Crashed {
                    restart_at,
                    folded,
                    remains: Remains::Gone,
                });
                match restart_at {
                    Some(at) if at <= now => self.restart(now, i),
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }

    /// A crashed or finished dyno leaves the formation (`then: Remove`) or starts again
    /// (`Restart`) once what its last run left (its group, what escaped it) is gone: that
    /// gets SIGTERM, and SIGKILL at the grace, as a running dyno's stop would.
    pub(super) fn replace_settled(
        &mut self,
        now: Instant,
        i: usize,
        then: AfterStop,
    ) -> Vec<Effect> {
        let (grace, signal) = self.stop_of(i);
        let dyno = &mut self.dynos[i];
        let remains = match dyno.state() {
            DynoState::Crashed { remains, .. } => remains,
            _ => Remains::Unscanned,
        };
        // Its last run is known to be over: nothing to stop first.
        if remains == Remains::Gone {
            return self.after_stop(now, i, then);
        }
        if dyno.launches() == 0 {
            return match then {
                AfterStop::Remove => {
                    self.dynos.remove(i);
                    Vec::new()
                }
                _ => self.launch(now, i),
            };
        }
        let (kill_at, termed, rescan_at) = match remains {
            Remains::Draining { rescan_at, stop } => match stop {
                Leftovers::Unsignalled => (Some(now + grace), false, rescan_at),
                Leftovers::Termed { kill_at } => (Some(kill_at), true, rescan_at),
                Leftovers::Killed => (None, true, rescan_at),
            },
            Remains::Unscanned | Remains::Gone => (Some(now + grace), false, None),
        };
        let slot = dyno.slot().clone();
        let mut effects = Vec::new();
        if !termed {
            effects.push(Effect::SignalAll {
                slot: slot.clone(),
                signal,
            });
        }
        if !dyno.state().draining() {
            effects.push(Effect::ScanGroup { slot });
        }
        dyno.set_state(
            now,
            DynoState::Stopping {
                kill_at,
                then,
                leader: Leader::Exited { rescan_at },
            },
        );
        effects
    }

    /// A dyno stopped on request has exited, and its whole group with it.
    fn after_stop(&mut self, now: Instant, i: usize, then: AfterStop) -> Vec<Effect> {
        match then {
            AfterStop::Down => {
                self.dynos[i].set_state(now, DynoState::Down);
                Vec::new()
            }
            AfterStop::Remove => {
                let gone = self.dynos.remove(i);
                vec![Effect::Forget {
                    slot: gone.slot().clone(),
                }]
            }
            AfterStop::Restart => self.launch(now, i),
        }
    }
}

/// `Stopping all processes with SIGINT` (or another signal), and the signal.
pub(super) fn stop_with(slot: &Slot, signal: Signal) -> Vec<Effect> {
    vec![
        say(Event::StoppingAll {
            slot: slot.clone(),
            signal,
        }),
        Effect::SignalAll {
            slot: slot.clone(),
            signal,
        },
    ]
}

/// What carrying out a request at once gives: its effects, and its answer unless it
/// waits for dynos to settle; or why it was refused.
type Done = Result<(Vec<Effect>, Option<Outcome>), Refusal>;

fn answered(id: u64, done: Done) -> Vec<Effect> {
    match done {
        Ok((mut effects, answer)) => {
            effects.extend(answer.map(|answer| reply(id, answer)));
            effects
        }
        Err(why) => vec![reply(id, Outcome::Refused(why))],
    }
}

fn reply(id: u64, outcome: Outcome) -> Effect {
    Effect::Reply { id, outcome }
}
