//! Job control: Ctrl-Z (SIGTSTP) stops every dyno and then hkrun, SIGCONT resumes them.
//! The core's clock (`Supervisor::clock`) stands still meanwhile, so the time paused counts
//! toward no timer (boot timeout, back-off, grace). Not the signals themselves: the driver
//! turns them into `Input::Pause` and `Resume`.

use nix::sys::signal::Signal;

use super::{Effect, Phase, Supervisor, say};
use crate::supervisor::event::Event;

impl Supervisor {
    /// Dynos get SIGSTOP rather than the SIGTSTP hkrun got: an app may ignore SIGTSTP,
    /// and the kernel drops it for a group without a terminal of its own. While the app
    /// stops, Ctrl-Z is ignored: the stop goes on.
    pub(super) fn on_pause(&mut self) -> Vec<Effect> {
        if self.paused() || !matches!(self.phase, Phase::Releasing | Phase::Running) {
            return Vec::new();
        }
        self.paused_at = self.real_now;
        let mut effects = vec![say(Event::Pausing)];
        effects.extend(self.signal_every_process(Signal::SIGSTOP));
        effects.push(Effect::StopSelf);
        effects
    }

    /// Ends a pause, if any, at the real time of the input being handled. Called on
    /// SIGCONT and before any stop.
    pub(super) fn on_resume(&mut self) -> Vec<Effect> {
        let Some(at) = self.paused_at.take() else {
            return Vec::new();
        };
        let paused = self.real_now.unwrap_or(at).saturating_duration_since(at);
        self.paused_total += paused;
        let mut effects = vec![say(Event::Resuming { paused })];
        effects.extend(self.signal_every_process(Signal::SIGCONT));
        effects
    }

    /// Whether Ctrl-Z has the app paused (only seen from outside when hkrun is PID 1,
    /// which the kernel does not stop).
    pub(super) fn paused(&self) -> bool {
        self.paused_at.is_some()
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
