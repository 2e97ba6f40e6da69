//! Replies that wait for dynos: a scale's once the dynos leaving are gone, a stop's once
//! its dynos are, a restart's once each dyno is up again (or has failed) and web's
//! preboot has ended; every one of them is answered when the app stops.

use super::{Dyno, DynoState, Phase, Supervisor};
use crate::dyno::Slot;
use crate::supervisor::input::Effect;
use crate::supervisor::outcome::{DynoFailure, Outcome, Refusal, RestartFailure, TypeCount};

/// A reply that waits for dynos.
#[derive(Clone, Debug)]
pub(super) struct Pending {
    id: u64,
    wait: Wait,
}

#[derive(Clone, Debug)]
enum Wait {
    /// Each dyno with its launch and crash counts at the request: done when a later
    /// launch is up, failed when it has crashed since or left the formation; and, with
    /// `preboot`, once the preboot of those web dynos has ended too.
    Restarted {
        waits: Vec<Restarting>,
        preboot: Option<Vec<Slot>>,
    },
    /// Done when none of these is left.
    Gone(Vec<Slot>),
    /// A scale's answer, given once none of the dynos leaving is left.
    Scaled { leaving: Vec<Slot>, answer: Outcome },
}

impl Pending {
    /// A restart's answer, once each dyno of `waits` is up again or failed, and the
    /// preboot of `preboot`'s web dynos, if any, has ended.
    pub(super) fn restarted(id: u64, waits: Vec<Restarting>, preboot: Option<Vec<Slot>>) -> Self {
        Self {
            id,
            wait: Wait::Restarted { waits, preboot },
        }
    }

    /// A stop's answer, once none of `slots` is left.
    pub(super) fn gone(id: u64, slots: Vec<Slot>) -> Self {
        Self {
            id,
            wait: Wait::Gone(slots),
        }
    }

    /// A scale's answer, given once none of the dynos `leaving` is left.
    pub(super) fn scaled(id: u64, leaving: Vec<Slot>, answer: Outcome) -> Self {
        Self {
            id,
            wait: Wait::Scaled { leaving, answer },
        }
    }
}

/// One dyno a restart waits for, as it was at the request.
#[derive(Clone, Debug)]
pub(super) struct Restarting {
    slot: Slot,
    serial: u64,
    boots: u64,
    crashed: u64,
}

impl Restarting {
    pub(super) fn of(slot: Slot, dyno: &Dyno) -> Self {
        Self {
            slot,
            serial: dyno.serial(),
            boots: dyno.launches(),
            crashed: dyno.crashes(),
        }
    }
}

impl Supervisor {
    /// Replies whose dynos have settled; every one of them once the app stops.
    pub(super) fn answer_pending(&mut self) -> Vec<Effect> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let stopping = matches!(self.phase, Phase::Stopping { .. } | Phase::Done);
        let mut effects = Vec::new();
        let mut pending = std::mem::take(&mut self.pending);
        pending.retain(|p| {
            let answer = if stopping {
                Some(Outcome::Refused(Refusal::Stopping))
            } else {
                self.settled(&p.wait)
            };
            match answer {
                Some(result) => {
                    effects.push(reply(p.id, result));
                    false
                }
                None => true,
            }
        });
        self.pending = pending;
        effects
    }

    /// A request whose answer waits for its dynos to settle.
    pub(super) fn reply_later(&mut self, pending: Pending) {
        self.pending.push(pending);
    }

    /// Whether the dyno that left the formation under this name is still stopping. A
    /// dyno added since under the same name (once the other was gone) is another one.
    fn still_leaving(&self, slot: &Slot) -> bool {
        self.dynos.iter().any(|d| d.slot() == slot && d.leaving())
    }

    fn settled(&self, wait: &Wait) -> Option<Outcome> {
        match wait {
            Wait::Scaled { leaving, answer } => {
                (!leaving.iter().any(|s| self.still_leaving(s))).then(|| answer.clone())
            }
            Wait::Gone(slots) => {
                if slots.iter().any(|s| self.still_leaving(s)) {
                    return None;
                }
                let mut kinds: Vec<&str> = slots.iter().map(|s| s.kind.as_str()).collect();
                kinds.dedup();
                let running = kinds
                    .iter()
                    .map(|k| TypeCount {
                        name: (*k).to_owned(),
                        count: self.members(k).len(),
                    })
                    .collect();
                Some(Outcome::Stopped {
                    dynos: slots.clone(),
                    running,
                })
            }
            Wait::Restarted { waits, preboot } => {
                if preboot.is_some() && self.preboot.under_way() {
                    return None;
                }
                let mut failed = Vec::new();
                if let (Some(_), Some(Err(why))) = (preboot, self.preboot.last()) {
                    failed.push(why.clone());
                }
                for wait in waits {
                    let slot = &wait.slot;
                    // Gone, or another dyno under its name since (a scale after a stop).
                    let Some(dyno) = self
                        .dynos
                        .iter()
                        .find(|d| d.slot() == slot && d.serial() == wait.serial)
                    else {
                        failed.push(DynoFailure::Left { dyno: slot.clone() });
                        continue;
                    };
                    if dyno.launches() <= wait.boots {
                        return None;
                    }
                    match dyno.state() {
                        DynoState::Up if dyno.crashes() <= wait.crashed => {}
                        _ if dyno.crashes() > wait.crashed => failed.push(DynoFailure::Crashed {
                            dyno: slot.clone(),
                            code: dyno.last_exit().map(|e| e.code()),
                        }),
                        DynoState::Crashed { .. } | DynoState::Down => {
                            failed.push(DynoFailure::Crashed {
                                dyno: slot.clone(),
                                code: dyno.last_exit().map(|e| e.code()),
                            });
                        }
                        // Still booting, or being killed on its way to a crash.
                        _ => return None,
                    }
                }
                let mut slots: Vec<Slot> = preboot.clone().unwrap_or_default();
                slots.extend(waits.iter().map(|w| w.slot.clone()));
                Some(match failed.is_empty() {
                    true => Outcome::Restarted {
                        dynos: slots,
                        preboot: false,
                    },
                    false => Outcome::RestartFailed(RestartFailure::Dynos {
                        dynos: slots,
                        failures: failed,
                    }),
                })
            }
        }
    }
}

fn reply(id: u64, outcome: Outcome) -> Effect {
    Effect::Reply { id, outcome }
}
