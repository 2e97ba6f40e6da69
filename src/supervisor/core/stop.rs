//! Stopping the app: the stop request, the signal to every dyno and the grace per type,
//! the notice of what the stop waits for, SIGKILL at the grace, and the stragglers that
//! must be gone before hkrun exits.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{
    DynoState, Leader, NAMED_WHILE_WAITING, Phase, Remains, SAME_REQUEST, STOP_NOTICE,
    STRAGGLER_RESCAN, Supervisor, kill_remaining, r12, requests, say, stopping_with_app,
};
use crate::dyno::Slot;
use crate::supervisor::event::{Event, StopRequest};
use crate::supervisor::input::Effect;

impl Supervisor {
    pub(super) fn on_stop(&mut self, now: Instant, request: StopRequest) -> Vec<Effect> {
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
    pub(super) fn forward(&self, signal: Signal) -> Vec<Effect> {
        self.dynos
            .iter()
            .filter(|d| d.state().is_live() && !d.state().draining())
            .map(|d| Effect::Signal {
                slot: d.slot().clone(),
                signal,
            })
            .collect()
    }

    pub(super) fn begin_stop(&mut self, now: Instant, code: i32, signal: Signal) -> Vec<Effect> {
        // Any stop of a paused app resumes it first: stopped processes would not act on
        // the signal until continued.
        let mut effects = self.on_resume();
        // No dyno's exit may wait on a reader that never reads.
        effects.push(Effect::OutputMayBeDropped);
        // Each dyno has its own type's grace; the app waits for the longest.
        let longest = self
            .dynos
            .iter()
            .filter(|d| d.state().is_live())
            .map(|d| d.plan().stop.grace_or(self.plan.grace))
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
            match dyno.state() {
                DynoState::Starting { .. } | DynoState::Up => {
                    dyno.set_state(now, stopping_with_app(dyno, now, grace));
                    let signal = dyno.plan().stop.signal_or(signal);
                    effects.extend(requests::stop_with(dyno.slot(), signal));
                }
                // A restart that has not happened yet never will; what its last run left is
                // a straggler now.
                DynoState::Crashed {
                    restart_at, folded, ..
                } => {
                    dyno.amend(DynoState::Crashed {
                        restart_at,
                        folded,
                        remains: Remains::Unscanned,
                    });
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
                    dyno.amend(stopping_with_app(dyno, now, grace));
                    if term_at.is_some() {
                        effects.push(Effect::Signal {
                            slot: dyno.slot().clone(),
                            signal: dyno.plan().stop.signal_or(signal),
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

    pub(super) fn kill_all(&mut self) -> Vec<Effect> {
        if let Phase::Stopping {
            kill_at, notice_at, ..
        } = &mut self.phase
        {
            *kill_at = None;
            *notice_at = None;
        }
        let mut effects = Vec::new();
        for dyno in self.dynos.iter_mut().filter(|d| d.state().is_live()) {
            if let DynoState::Stopping { then, leader, .. } = dyno.state() {
                dyno.amend(DynoState::Stopping {
                    kill_at: None,
                    then,
                    leader,
                });
            }
            effects.extend(kill_remaining(dyno.slot()));
        }
        effects.push(Effect::SignalStragglers(Signal::SIGKILL));
        if self.all_settled() {
            effects.push(Effect::ScanStragglers);
        }
        effects
    }

    pub(super) fn tick_stopping(&mut self, now: Instant) -> Vec<Effect> {
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
                    .filter_map(|d| match d.state() {
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
            } = self.dynos[i].state()
            else {
                continue;
            };
            if kill_at.is_some_and(|at| at <= now) {
                let (grace, _) = self.stop_of(i);
                let dyno = &mut self.dynos[i];
                let signal = dyno.plan().stop.signal_or(signal);
                effects.push(r12(dyno.slot(), grace, signal));
                dyno.amend(DynoState::Stopping {
                    kill_at: None,
                    then,
                    leader,
                });
                if !all_due {
                    effects.extend(kill_remaining(dyno.slot()));
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
    pub(super) fn waiting_notice(&self, left: Duration, signal: Signal) -> Option<Effect> {
        let mut live = self.dynos.iter().filter(|d| d.state().is_live());
        let dynos: Vec<Slot> = live
            .by_ref()
            .take(NAMED_WHILE_WAITING)
            .map(|d| d.slot().clone())
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

    pub(super) fn on_stragglers(&mut self, now: Instant, count: usize) -> Vec<Effect> {
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
}
