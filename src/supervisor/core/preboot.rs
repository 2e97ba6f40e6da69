//! Preboot (README, "Using it"): restarting web with no failed request. New web dynos start on
//! free ports of web's block beside the old ones; only once every new one is up does the
//! router get the new set, and then the old ones stop. If a new one fails to come up,
//! the new ones are killed and the old ones keep serving.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use nix::sys::signal::Signal;

use super::{AfterStop, DynoState, Leader, Phase, Supervisor, say};
use crate::dyno::Slot;
use crate::plan::DynoSpec;
use crate::plan::ports::PortError;
use crate::supervisor::event::Event;
use crate::supervisor::input::Effect;
use crate::supervisor::outcome::{DynoFailure, Outcome, PrebootFailure, Refusal, RestartFailure};

/// A preboot under way.
#[derive(Clone, Debug)]
pub(super) struct Preboot {
    /// Who asked, when a control client waits for the outcome.
    reply: Option<u64>,
    old: Vec<Slot>,
    new: Vec<Slot>,
}

/// The preboot under way, if any, and how the last one ended.
#[derive(Clone, Debug, Default)]
pub(super) struct Prebooting {
    current: Option<Preboot>,
    /// How the last preboot nobody waited on directly ended (`hkrun restart` of every
    /// dyno answers with it).
    last: Option<Result<(), DynoFailure>>,
}

impl Prebooting {
    pub(super) fn under_way(&self) -> bool {
        self.current.is_some()
    }

    /// Whether `slot` is of the new generation of the preboot under way: it takes
    /// traffic only once all of them are up.
    pub(super) fn is_new(&self, slot: &Slot) -> bool {
        self.current.as_ref().is_some_and(|p| p.new.contains(slot))
    }

    /// How the last preboot nobody waited on directly ended.
    pub(super) fn last(&self) -> Option<&Result<(), DynoFailure>> {
        self.last.as_ref()
    }
}

impl Supervisor {
    /// The new generation of each of `old`, each on a free port of web's block that no web
    /// process holds and that is not in `also_taken` (dynos a scale adds beside them).
    /// Reads only: the ports are probed before anything changes.
    pub(super) fn preboot_plans(
        &self,
        old: &[Slot],
        also_taken: &[u16],
    ) -> Result<Vec<DynoSpec>, Refusal> {
        if self.preboot.under_way() {
            return Err(Refusal::PrebootUnderWay);
        }
        let Some(web) = self.plan.types.iter().find(|t| t.role.behind_router()) else {
            return Err(Refusal::NoRouter);
        };
        let block = web.ports(self.plan.base_port);
        // Ports of every web process that may still run, old or new.
        let mut taken: Vec<u16> = self
            .dynos
            .iter()
            .filter(|d| d.plan().role.is_web())
            .filter_map(|d| d.plan().spec.port)
            .chain(also_taken.iter().copied())
            .collect();
        let mut plans = Vec::new();
        for slot in old {
            let Some(i) = self.find(slot) else { continue };
            let port =
                block
                    .clone()
                    .find(|p| !taken.contains(p))
                    .ok_or_else(|| Refusal::NoPort {
                        error: PortError::BlockFull {
                            dyno: slot.to_string(),
                        }
                        .to_string(),
                    })?;
            taken.push(port);
            let mut plan = self.dynos[i].plan().clone();
            // Past every process under this name, one of a failed preboot still stopping
            // included: no two dynos may share a slot.
            let last = self
                .dynos
                .iter()
                .map(|d| d.slot())
                .filter(|s| s.kind == slot.kind && s.index == slot.index)
                .map(|s| s.generation)
                .max()
                .unwrap_or(slot.generation);
            plan.spec.slot = Slot {
                generation: last + 1,
                ..slot.clone()
            };
            plan.spec.port = Some(port);
            plans.push(plan);
        }
        Ok(plans)
    }

    /// Starts `plans` (from `preboot_plans`) beside `old`.
    pub(super) fn start_preboot(
        &mut self,
        now: Instant,
        old: &[Slot],
        plans: Vec<DynoSpec>,
        reply: Option<u64>,
    ) -> Vec<Effect> {
        let mut effects = vec![say(Event::PrebootStarting { old: old.to_vec() })];
        let mut new = Vec::new();
        for plan in plans {
            new.push(plan.spec.slot.clone());
            let i = self.add_dyno(plan, now);
            effects.extend(self.launch(now, i));
        }
        self.preboot.last = None;
        self.preboot.current = Some(Preboot {
            reply,
            old: old.to_vec(),
            new,
        });
        effects
    }

    /// Moves a preboot on once its new dynos are all up, or abandons it when one fails.
    pub(super) fn advance_preboot(&mut self, now: Instant) -> Vec<Effect> {
        let Some(preboot) = &self.preboot.current else {
            return Vec::new();
        };
        if !matches!(self.phase, Phase::Running) {
            let reply = preboot.reply;
            self.preboot.current = None;
            return self.preboot_done(reply, Err(DynoFailure::AppStopping));
        }
        let mut failed = None;
        let mut all_up = true;
        for slot in &preboot.new {
            match self.find(slot).map(|i| &self.dynos[i]) {
                None => failed = Some(PrebootFailure::Stopped { dyno: slot.clone() }),
                Some(d) if d.crashes() > 0 || matches!(d.state(), DynoState::Killed { .. }) => {
                    let dyno = slot.clone();
                    failed = Some(match d.last_exit() {
                        Some(status) if d.crashes() > 0 => PrebootFailure::Exited {
                            dyno,
                            code: status.code(),
                        },
                        // Killed by hkrun: for its memory (R15), or else its boot (R10).
                        _ if d.errors().r15 > 0 => PrebootFailure::OverMemory { dyno },
                        _ => PrebootFailure::BootTimeout { dyno },
                    });
                }
                Some(d) => all_up &= d.state() == DynoState::Up,
            }
            if failed.is_some() {
                break;
            }
        }
        let Some(preboot) = (if failed.is_some() || all_up {
            self.preboot.current.take()
        } else {
            None
        }) else {
            return Vec::new();
        };
        if let Some(why) = failed {
            return self.abandon(now, preboot, why);
        }
        // The switch: the router gets the new set now; each old dyno gets its stop signal
        // once the router says what it had sent it is done (`Input::Drained`), at the
        // latest its grace after the switch.
        let mut retired = Vec::new();
        for slot in &preboot.old {
            let Some(i) = self.find(slot) else { continue };
            let (grace, _) = self.stop_of(i);
            let dyno = &self.dynos[i];
            if let (Some(port), true) = (dyno.plan().spec.port, dyno.state() == DynoState::Up) {
                let ip = dyno.ip().unwrap_or(Ipv4Addr::LOCALHOST.into());
                retired.push(Effect::AwaitDrained {
                    slot: slot.clone(),
                    addr: SocketAddr::new(ip, port),
                });
            }
            retired.extend(self.retire(now, slot, grace));
        }
        let mut effects = vec![say(Event::PrebootSwitched {
            new: preboot.new.clone(),
        })];
        effects.extend(self.publish_backends());
        effects.extend(retired);
        effects.extend(self.preboot_done(preboot.reply, Ok(preboot.old)));
        effects
    }

    /// A new dyno failed: kill every new one; the old ones never stopped serving.
    fn abandon(&mut self, now: Instant, preboot: Preboot, why: PrebootFailure) -> Vec<Effect> {
        let mut effects = vec![say(Event::PrebootFailed(why.clone()))];
        for slot in &preboot.new {
            let Some(i) = self.find(slot) else { continue };
            let dyno = &mut self.dynos[i];
            match dyno.state() {
                DynoState::Crashed { .. } | DynoState::Down => {
                    effects.extend(self.replace_settled(now, i, AfterStop::Remove));
                }
                state => {
                    let leader = match state {
                        DynoState::Stopping { leader, .. } => leader,
                        _ => Leader::Running { term_at: None },
                    };
                    dyno.amend(DynoState::Stopping {
                        kill_at: None,
                        then: AfterStop::Remove,
                        leader,
                    });
                    // R10 or R15 already sent its SIGKILL.
                    if matches!(state, DynoState::Killed { .. }) {
                        continue;
                    }
                    effects.push(say(Event::Killing { slot: slot.clone() }));
                    effects.push(Effect::SignalAll {
                        slot: slot.clone(),
                        signal: Signal::SIGKILL,
                    });
                }
            }
        }
        effects.extend(self.preboot_done(preboot.reply, Err(DynoFailure::Preboot { why })));
        effects
    }
}

impl Supervisor {
    /// A preboot's old dyno has nothing in flight through the router any more: its stop
    /// signal goes now rather than at the end of its wait.
    /// Its grace runs from the signal.
    pub(super) fn on_drained(&mut self, now: Instant, slot: &Slot) -> Vec<Effect> {
        let Some(i) = self.find(slot) else {
            return Vec::new();
        };
        let (grace, signal) = self.stop_of(i);
        let dyno = &mut self.dynos[i];
        let DynoState::Stopping {
            then,
            leader: Leader::Running { term_at: Some(_) },
            ..
        } = dyno.state()
        else {
            return Vec::new();
        };
        dyno.amend(DynoState::Stopping {
            kill_at: Some(now + grace),
            then,
            leader: Leader::Running { term_at: None },
        });
        super::requests::stop_with(slot, signal)
    }

    /// Answers whoever asked for the preboot, or keeps the outcome for a restart of every
    /// dyno that waits on it.
    fn preboot_done(
        &mut self,
        reply: Option<u64>,
        result: Result<Vec<Slot>, DynoFailure>,
    ) -> Vec<Effect> {
        let Some(id) = reply else {
            self.preboot.last = Some(result.map(|_| ()));
            return Vec::new();
        };
        let outcome = match result {
            Ok(old) => Outcome::Restarted {
                dynos: old,
                preboot: true,
            },
            Err(DynoFailure::Preboot { why }) => {
                Outcome::RestartFailed(RestartFailure::Preboot { why })
            }
            Err(_) => Outcome::Refused(Refusal::Stopping),
        };
        vec![Effect::Reply { id, outcome }]
    }
}
