//! Job control: Ctrl-Z (SIGTSTP) stops every dyno and then hkrun, SIGCONT resumes them,
//! and the time spent stopped counts toward no timer (boot timeout, back-off, grace).
//! Not the signals themselves: the driver turns them into `Input::Pause` and `Resume`.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{DynoState, Effect, Phase, Supervisor, log_system};

impl Supervisor {
    /// Dynos get SIGSTOP rather than the SIGTSTP hkrun got: an app may ignore SIGTSTP,
    /// and the kernel drops it for a group without a terminal of its own.
    pub(super) fn on_pause(&mut self, now: Instant) -> Vec<Effect> {
        if self.paused_at.is_some() || matches!(self.phase, Phase::Idle | Phase::Done) {
            return Vec::new();
        }
        self.paused_at = Some(now);
        let mut effects = vec![log_system(
            "SIGTSTP received: pausing all processes with SIGSTOP".into(),
        )];
        effects.extend(self.signal_running(Signal::SIGSTOP));
        effects.push(Effect::StopSelf);
        effects
    }

    /// Also called before a stop: a stopped process acts on SIGTERM only once continued.
    pub(super) fn on_resume(&mut self, now: Instant) -> Vec<Effect> {
        let Some(at) = self.paused_at.take() else {
            return Vec::new();
        };
        let paused = now.saturating_duration_since(at);
        self.shift_timers(paused);
        let mut effects = vec![log_system(format!(
            "Resuming all processes with SIGCONT (paused for {:.1}s)",
            paused.as_secs_f64()
        ))];
        effects.extend(self.signal_running(Signal::SIGCONT));
        effects
    }

    /// Whether Ctrl-Z has the app paused (only seen from outside when hkrun is PID 1,
    /// which the kernel does not stop).
    pub(super) fn paused(&self) -> bool {
        self.paused_at.is_some()
    }

    /// Every group that may hold a process, those of dynos whose leader already exited
    /// included.
    fn signal_running(&self, signal: Signal) -> Vec<Effect> {
        self.dynos
            .iter()
            .filter(|d| d.state.is_live())
            .map(|d| Effect::Signal {
                slot: d.plan.spec.slot.clone(),
                signal,
            })
            .collect()
    }

    /// Every deadline moves later by the time the app spent stopped, and so does every
    /// "since" that a timer measures from (up time for the back-off reset, the last R14).
    fn shift_timers(&mut self, by: Duration) {
        let later = |at: &mut Option<Instant>| {
            if let Some(at) = at {
                *at += by;
            }
        };
        for dyno in &mut self.dynos {
            later(&mut dyno.rescan_at);
            later(&mut dyno.term_at);
            later(&mut dyno.up_since);
            later(&mut dyno.last_r14);
            match &mut dyno.state {
                DynoState::Starting { boot_deadline: at }
                | DynoState::Stopping { kill_at: at, .. }
                | DynoState::Crashed { restart_at: at } => later(at),
                DynoState::Up | DynoState::Killed { .. } | DynoState::Down => {}
            }
        }
        if let Phase::Stopping {
            kill_at, rescan_at, ..
        } = &mut self.phase
        {
            later(kill_at);
            later(rescan_at);
        }
    }
}
