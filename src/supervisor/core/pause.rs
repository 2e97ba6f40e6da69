//! Job control: Ctrl-Z (SIGTSTP) stops every dyno and then hkrun, SIGCONT resumes them.
//! The core's clock (`Supervisor::clock`) stands still meanwhile, so the time paused counts
//! toward no timer (boot timeout, back-off, grace). Not the signals themselves: the driver
//! turns them into `Input::Pause` and `Resume`.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{Effect, Phase, Supervisor, say};
use crate::supervisor::event::Event;

/// The core's clock: real time less the time spent paused.
#[derive(Debug, Default)]
pub(super) struct Clock {
    /// When Ctrl-Z paused the app (real time); the clock stands still until it resumes.
    paused_at: Option<Instant>,
    /// Time spent paused so far.
    paused_total: Duration,
    /// The real time of the input being handled: a pause starts, or ends, then.
    real_now: Option<Instant>,
}

impl Clock {
    /// An input arrives at real time `real`.
    pub(super) fn arrive(&mut self, real: Instant) {
        self.real_now = Some(real);
    }

    /// The core's time at real time `real`: it reads the same just before and just
    /// after a resume.
    pub(super) fn at(&self, real: Instant) -> Instant {
        let at = self.paused_at.unwrap_or(real);
        at.checked_sub(self.paused_total).unwrap_or(at)
    }

    /// The real time of `at` on the core's clock, once it goes again.
    pub(super) fn real(&self, at: Instant) -> Instant {
        at + self.paused_total
    }

    pub(super) fn paused(&self) -> bool {
        self.paused_at.is_some()
    }

    fn pause(&mut self) {
        self.paused_at = self.real_now;
    }

    /// Ends a pause: how long it lasted, or `None` when there was none.
    fn resume(&mut self) -> Option<Duration> {
        let at = self.paused_at.take()?;
        let paused = self.real_now.unwrap_or(at).saturating_duration_since(at);
        self.paused_total += paused;
        Some(paused)
    }
}

impl Supervisor {
    /// Dynos get SIGSTOP rather than the SIGTSTP hkrun got: an app may ignore SIGTSTP,
    /// and the kernel drops it for a group without a terminal of its own. While the app
    /// stops, Ctrl-Z is ignored: the stop goes on.
    pub(super) fn on_pause(&mut self) -> Vec<Effect> {
        if self.paused() || !matches!(self.phase, Phase::Releasing | Phase::Running) {
            return Vec::new();
        }
        self.clock.pause();
        let mut effects = vec![say(Event::Pausing)];
        effects.extend(self.signal_every_process(Signal::SIGSTOP));
        effects.push(Effect::StopSelf);
        effects
    }

    /// Ends a pause, if any, at the real time of the input being handled. Called on
    /// SIGCONT and before any stop.
    pub(super) fn on_resume(&mut self) -> Vec<Effect> {
        let Some(paused) = self.clock.resume() else {
            return Vec::new();
        };
        let mut effects = vec![say(Event::Resuming { paused })];
        effects.extend(self.signal_every_process(Signal::SIGCONT));
        effects
    }

    /// Whether Ctrl-Z has the app paused (only seen from outside when hkrun is PID 1,
    /// which the kernel does not stop).
    pub(super) fn paused(&self) -> bool {
        self.clock.paused()
    }

    /// A dyno launched while paused (a crash restart, the formation after the release, as
    /// PID 1) is paused with the others as soon as it exists.
    pub(super) fn spawned_paused(&self, effects: Vec<Effect>) -> Vec<Effect> {
        let mut out = Vec::with_capacity(effects.len());
        for effect in effects {
            let spawned = match &effect {
                Effect::Spawn(spec) => Some(spec.slot.clone()),
                _ => None,
            };
            out.push(effect);
            if let Some(slot) = spawned {
                out.push(Effect::Signal {
                    slot,
                    signal: Signal::SIGSTOP,
                });
            }
        }
        out
    }

    /// Every running dyno's group, and every other process of hkrun's (what is left of
    /// a dyno whose leader exited, what left its group with `setsid`).
    fn signal_every_process(&self, signal: Signal) -> Vec<Effect> {
        let mut effects: Vec<Effect> = self
            .dynos
            .iter()
            .filter(|d| d.state().is_live())
            .map(|d| Effect::Signal {
                slot: d.slot().clone(),
                signal,
            })
            .collect();
        effects.push(Effect::SignalStragglers(signal));
        effects
    }
}
