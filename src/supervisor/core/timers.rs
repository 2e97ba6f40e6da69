//! Timers: each dyno's next one comes from its state (`DynoState::next_due`), the app's
//! from its phase; a tick fires every timer due, however many.

use std::time::Instant;

use nix::sys::signal::Signal;

use super::{
    DynoState, Leader, Leftovers, Phase, Remains, Supervisor, kill_remaining, r12, requests, say,
};
use crate::supervisor::event::Event;
use crate::supervisor::input::Effect;

impl Supervisor {
    /// The next instant (real time) at which `Input::Tick` is due, if any; none while
    /// paused.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.paused() {
            return None;
        }
        self.deadline().map(|at| self.clock.real(at))
    }

    /// The next deadline on the core's clock.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Stopping {
                kill_at,
                rescan_at,
                notice_at,
                ..
            } => [kill_at, rescan_at, notice_at]
                .into_iter()
                .flatten()
                .chain(self.dynos.iter().filter_map(|d| match d.state() {
                    // A type with a shorter grace than the longest (hkrun.toml).
                    DynoState::Stopping { kill_at, .. } => kill_at,
                    _ => None,
                }))
                .min(),
            Phase::Running => self.dynos.iter().filter_map(|d| d.state().next_due()).min(),
            Phase::Idle | Phase::Releasing | Phase::Done => None,
        }
    }

    /// Every timer due by `now`, however many: a pass fires each dyno's first due timer
    /// (and the app's), so passes go on while `deadline` says one is due. Each firing
    /// clears or moves its timer, so this ends.
    pub(super) fn on_tick(&mut self, now: Instant) -> Vec<Effect> {
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
    pub(super) fn tick_running(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        for i in 0..self.dynos.len() {
            if self.dynos[i].state().next_due().is_some_and(|at| at <= now) {
                effects.extend(self.fire(now, i));
            }
        }
        effects
    }

    /// Dyno `i`'s first timer, which is due.
    pub(super) fn fire(&mut self, now: Instant, i: usize) -> Vec<Effect> {
        let (grace, signal) = self.stop_of(i);
        let dyno = &mut self.dynos[i];
        let slot = dyno.slot().clone();
        let due = |at: Option<Instant>| at.is_some_and(|at| at <= now);
        let mut state = dyno.state();
        let effects = match &mut state {
            DynoState::Crashed {
                restart_at,
                remains: Remains::Unscanned | Remains::Gone,
                ..
            } if due(*restart_at) => return self.restart(now, i),
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
                dyno.killed_for_boot(now);
                return vec![
                    say(Event::BootTimeout {
                        slot: slot.clone(),
                        timeout: dyno.plan().boot_timeout.unwrap_or_default(),
                    }),
                    say(Event::Killing { slot: slot.clone() }),
                    Effect::SignalAll {
                        slot,
                        signal: Signal::SIGKILL,
                    },
                ];
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
                requests::stop_with(&slot, signal)
            }
            state if due(state.rescan_at()) => {
                state.set_rescan(None);
                vec![Effect::ScanGroup { slot }]
            }
            _ => return Vec::new(),
        };
        dyno.amend(state);
        effects
    }
}
