//! The supervisor's state and every decision about it: `handle(now, input) -> effects`.
//!
//! Pure: no I/O, no clock, no sleeps. The driver feeds it inputs with the time they
//! happened and carries out the effects. Today it knows the release phase, starting the
//! formation, foreman's stop-everything on the first exit, and shutdown escalation.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::input::{Effect, ExitStatus, Input, Slot, Source, SpawnSpec, StopRequest};
use crate::procfile::RELEASE;

/// How often to look again for processes that outlived their dyno while stopping.
pub const STRAGGLER_RESCAN: Duration = Duration::from_millis(50);

/// What to run, fixed at start.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The release command, when the release phase runs.
    pub release: Option<String>,
    /// The dynos in start order, with their ports.
    pub dynos: Vec<SpawnSpec>,
    /// Between SIGTERM and SIGKILL when stopping.
    pub grace: Duration,
}

/// One process the core started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dyno {
    pub spec: SpawnSpec,
    pub state: DynoState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DynoState {
    /// Spawned at `since`.
    Running { since: Instant },
    /// Sent SIGTERM (or SIGKILL) at `since`, not yet exited.
    Stopping { since: Instant },
    /// Exited.
    Down { status: ExitStatus },
}

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
        /// When the grace ends; `None` once SIGKILL went out.
        kill_at: Option<Instant>,
        /// When to count stragglers again, once every dyno is down.
        rescan_at: Option<Instant>,
    },
    /// `Effect::Exit` went out.
    Done,
}

/// The one owner of the app's state.
#[derive(Debug)]
pub struct Supervisor {
    plan: Plan,
    phase: Phase,
    /// Every process started, the release phase included, in start order.
    dynos: Vec<Dyno>,
}

impl Supervisor {
    pub fn new(plan: Plan) -> Self {
        Self {
            plan,
            phase: Phase::Idle,
            dynos: Vec::new(),
        }
    }

    /// The processes started so far, in start order.
    pub fn dynos(&self) -> &[Dyno] {
        &self.dynos
    }

    /// Starts the app: the release phase if there is one, else the formation.
    pub fn start(&mut self, now: Instant) -> Vec<Effect> {
        debug_assert_eq!(self.phase, Phase::Idle, "start is called once");
        match self.plan.release.clone() {
            Some(command) => {
                self.phase = Phase::Releasing;
                let spec = SpawnSpec {
                    slot: Slot::new(RELEASE, 1),
                    command,
                    port: None,
                };
                self.spawn(now, spec)
            }
            None => self.start_formation(now),
        }
    }

    /// The next instant at which `Input::Tick` is due, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Stopping {
                kill_at, rescan_at, ..
            } => match (kill_at, rescan_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            _ => None,
        }
    }

    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Effect> {
        match input {
            Input::Exited { slot, status } => self.on_exited(now, &slot, status),
            Input::SpawnFailed { slot, error } => {
                let mut effects =
                    vec![log_dyno(&slot, format!("Failed to start process: {error}"))];
                effects.extend(self.on_exited(now, &slot, ExitStatus::Code(127)));
                effects
            }
            Input::Stop(request) => self.on_stop(now, request),
            Input::Stragglers(count) => self.on_stragglers(now, count),
            Input::Tick => self.on_tick(now),
        }
    }

    fn start_formation(&mut self, now: Instant) -> Vec<Effect> {
        self.phase = Phase::Running;
        let specs = self.plan.dynos.clone();
        specs
            .into_iter()
            .flat_map(|spec| self.spawn(now, spec))
            .collect()
    }

    fn spawn(&mut self, now: Instant, spec: SpawnSpec) -> Vec<Effect> {
        let log = log_dyno(
            &spec.slot,
            format!("Starting process with command `{}`", spec.command),
        );
        self.dynos.push(Dyno {
            spec: spec.clone(),
            state: DynoState::Running { since: now },
        });
        vec![log, Effect::Spawn(spec)]
    }

    fn on_exited(&mut self, now: Instant, slot: &Slot, status: ExitStatus) -> Vec<Effect> {
        let Some(dyno) = self.dynos.iter_mut().find(|d| &d.spec.slot == slot) else {
            return Vec::new();
        };
        if matches!(dyno.state, DynoState::Down { .. }) {
            return Vec::new();
        }
        dyno.state = DynoState::Down { status };
        let mut effects = vec![log_dyno(
            slot,
            format!("Process exited with status {}", status.code()),
        )];
        match self.phase {
            Phase::Releasing if status.code() == 0 => effects.extend(self.start_formation(now)),
            Phase::Releasing => {
                effects.push(log_system(format!(
                    "release failed (exit {})",
                    status.code()
                )));
                effects.extend(self.begin_stop(now, status.code()));
            }
            // Foreman's behaviour until restarts exist: the first exit stops the app.
            Phase::Running => {
                effects.push(log_system(format!(
                    "{slot} exited with status {}: stopping the app",
                    status.code()
                )));
                effects.extend(self.begin_stop(now, status.code()));
            }
            Phase::Stopping { .. } if self.all_down() => effects.push(Effect::ScanStragglers),
            Phase::Idle | Phase::Stopping { .. } | Phase::Done => {}
        }
        effects
    }

    fn on_stop(&mut self, now: Instant, request: StopRequest) -> Vec<Effect> {
        match self.phase {
            Phase::Idle | Phase::Releasing | Phase::Running => {
                let mut effects = vec![log_system(format!("{request} received"))];
                effects.extend(self.begin_stop(now, 0));
                effects
            }
            // A second request means "now".
            Phase::Stopping {
                kill_at: Some(_), ..
            } => {
                let mut effects = vec![log_system(format!("{request} received again"))];
                effects.extend(self.kill_all());
                effects
            }
            Phase::Stopping { kill_at: None, .. } | Phase::Done => Vec::new(),
        }
    }

    fn begin_stop(&mut self, now: Instant, code: i32) -> Vec<Effect> {
        self.phase = Phase::Stopping {
            code,
            kill_at: Some(now + self.plan.grace),
            rescan_at: None,
        };
        let mut effects = Vec::new();
        for dyno in &mut self.dynos {
            if let DynoState::Running { .. } = dyno.state {
                dyno.state = DynoState::Stopping { since: now };
                let slot = dyno.spec.slot.clone();
                effects.push(log_dyno(
                    &slot,
                    "Stopping all processes with SIGTERM".into(),
                ));
                effects.push(Effect::Signal {
                    slot,
                    signal: Signal::SIGTERM,
                });
            }
        }
        effects.push(Effect::SignalStragglers(Signal::SIGTERM));
        if self.all_down() {
            effects.push(Effect::ScanStragglers);
        }
        effects
    }

    fn kill_all(&mut self) -> Vec<Effect> {
        if let Phase::Stopping { kill_at, .. } = &mut self.phase {
            *kill_at = None;
        }
        let mut effects = Vec::new();
        for dyno in &self.dynos {
            if let DynoState::Stopping { .. } | DynoState::Running { .. } = dyno.state {
                let slot = dyno.spec.slot.clone();
                effects.push(log_dyno(
                    &slot,
                    "Stopping remaining processes with SIGKILL".into(),
                ));
                effects.push(Effect::Signal {
                    slot,
                    signal: Signal::SIGKILL,
                });
            }
        }
        effects.push(Effect::SignalStragglers(Signal::SIGKILL));
        if self.all_down() {
            effects.push(Effect::ScanStragglers);
        }
        effects
    }

    fn on_tick(&mut self, now: Instant) -> Vec<Effect> {
        let Phase::Stopping {
            kill_at, rescan_at, ..
        } = &mut self.phase
        else {
            return Vec::new();
        };
        let mut effects = Vec::new();
        if rescan_at.is_some_and(|at| at <= now) {
            *rescan_at = None;
            effects.push(Effect::ScanStragglers);
        }
        if kill_at.is_some_and(|at| at <= now) {
            let secs = self.plan.grace.as_secs_f64();
            for dyno in &self.dynos {
                if let DynoState::Stopping { .. } = dyno.state {
                    effects.push(log_dyno(
                        &dyno.spec.slot,
                        format!(
                            "Error R12 (Exit timeout) -> At least one process failed to exit within {secs} seconds of SIGTERM"
                        ),
                    ));
                }
            }
            effects.extend(self.kill_all());
        }
        effects
    }

    fn on_stragglers(&mut self, now: Instant, count: usize) -> Vec<Effect> {
        let Phase::Stopping {
            code,
            kill_at,
            rescan_at,
        } = &mut self.phase
        else {
            return Vec::new();
        };
        if !self
            .dynos
            .iter()
            .all(|d| matches!(d.state, DynoState::Down { .. }))
        {
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
        Vec::new()
    }

    fn all_down(&self) -> bool {
        self.dynos
            .iter()
            .all(|d| matches!(d.state, DynoState::Down { .. }))
    }
}

fn log_dyno(slot: &Slot, text: String) -> Effect {
    Effect::Log {
        source: Source::Dyno(slot.clone()),
        text,
    }
}

fn log_system(text: String) -> Effect {
    Effect::Log {
        source: Source::System,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(5);

    fn spec(kind: &str, index: u32, port: u16) -> SpawnSpec {
        SpawnSpec {
            slot: Slot::new(kind, index),
            command: format!("run-{kind}"),
            port: Some(port),
        }
    }

    fn plan(release: bool) -> Plan {
        Plan {
            release: release.then(|| "migrate".to_owned()),
            dynos: vec![
                spec("web", 1, 5000),
                spec("web", 2, 5001),
                spec("worker", 1, 5100),
            ],
            grace: GRACE,
        }
    }

    /// Effects without the log lines, which have their own tests.
    fn actions(effects: Vec<Effect>) -> Vec<Effect> {
        effects
            .into_iter()
            .filter(|e| !matches!(e, Effect::Log { .. }))
            .collect()
    }

    fn logs(effects: &[Effect]) -> Vec<String> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Log {
                    source: Source::Dyno(slot),
                    text,
                } => Some(format!("{slot}: {text}")),
                Effect::Log {
                    source: Source::System,
                    text,
                } => Some(format!("system: {text}")),
                _ => None,
            })
            .collect()
    }

    fn exited(kind: &str, index: u32, code: i32) -> Input {
        Input::Exited {
            slot: Slot::new(kind, index),
            status: ExitStatus::Code(code),
        }
    }

    fn term(kind: &str, index: u32) -> Effect {
        Effect::Signal {
            slot: Slot::new(kind, index),
            signal: Signal::SIGTERM,
        }
    }

    fn kill(kind: &str, index: u32) -> Effect {
        Effect::Signal {
            slot: Slot::new(kind, index),
            signal: Signal::SIGKILL,
        }
    }

    fn started(release: bool, t0: Instant) -> Supervisor {
        let mut sup = Supervisor::new(plan(release));
        sup.start(t0);
        sup
    }

    #[test]
    fn starts_the_formation_in_order() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(plan(false));
        let effects = sup.start(t0);
        assert_eq!(
            logs(&effects)[0],
            "web.1: Starting process with command `run-web`"
        );
        assert_eq!(
            actions(effects),
            vec![
                Effect::Spawn(spec("web", 1, 5000)),
                Effect::Spawn(spec("web", 2, 5001)),
                Effect::Spawn(spec("worker", 1, 5100))
            ]
        );
        assert_eq!(sup.next_deadline(), None);
    }

    #[test]
    fn release_runs_first_then_the_formation() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(plan(true));
        let release = SpawnSpec {
            slot: Slot::new("release", 1),
            command: "migrate".into(),
            port: None,
        };
        assert_eq!(actions(sup.start(t0)), vec![Effect::Spawn(release)]);
        let effects = actions(sup.handle(t0, exited("release", 1, 0)));
        assert_eq!(effects.len(), 3);
        assert_eq!(effects[0], Effect::Spawn(spec("web", 1, 5000)));
    }

    #[test]
    fn failed_release_starts_nothing_and_exits_with_its_code() {
        let t0 = Instant::now();
        let mut sup = started(true, t0);
        let effects = sup.handle(t0, exited("release", 1, 3));
        assert!(logs(&effects).contains(&"system: release failed (exit 3)".to_owned()));
        assert_eq!(
            actions(effects),
            vec![
                Effect::SignalStragglers(Signal::SIGTERM),
                Effect::ScanStragglers
            ]
        );
        assert_eq!(sup.handle(t0, Input::Stragglers(0)), vec![Effect::Exit(3)]);
    }

    #[test]
    fn first_exit_stops_everything_with_its_code() {
        let t0 = Instant::now();
        let mut sup = started(false, t0);
        let effects = sup.handle(t0, exited("web", 2, 7));
        assert_eq!(
            actions(effects),
            vec![
                term("web", 1),
                term("worker", 1),
                Effect::SignalStragglers(Signal::SIGTERM)
            ]
        );
        assert!(actions(sup.handle(t0, exited("web", 1, 143))).is_empty());
        assert_eq!(
            actions(sup.handle(t0, exited("worker", 1, 0))),
            vec![Effect::ScanStragglers]
        );
        assert_eq!(sup.handle(t0, Input::Stragglers(0)), vec![Effect::Exit(7)]);
    }

    #[test]
    fn a_stop_request_terms_then_kills_at_the_grace() {
        let t0 = Instant::now();
        let mut sup = started(false, t0);
        let effects = sup.handle(t0, Input::Stop(StopRequest::Signal(Signal::SIGTERM)));
        assert_eq!(logs(&effects)[0], "system: SIGTERM received");
        assert_eq!(
            actions(effects),
            vec![
                term("web", 1),
                term("web", 2),
                term("worker", 1),
                Effect::SignalStragglers(Signal::SIGTERM)
            ]
        );
        assert_eq!(sup.next_deadline(), Some(t0 + GRACE));
        // Not a moment early.
        assert!(
            sup.handle(t0 + GRACE - Duration::from_millis(1), Input::Tick)
                .is_empty()
        );
        sup.handle(t0, exited("web", 1, 143));
        let effects = sup.handle(t0 + GRACE, Input::Tick);
        assert!(logs(&effects).contains(
            &"web.2: Error R12 (Exit timeout) -> At least one process failed to exit within 5 seconds of SIGTERM"
                .to_owned()
        ));
        assert_eq!(
            actions(effects),
            vec![
                kill("web", 2),
                kill("worker", 1),
                Effect::SignalStragglers(Signal::SIGKILL)
            ]
        );
        assert_eq!(sup.next_deadline(), None);
        sup.handle(
            t0 + GRACE,
            Input::Exited {
                slot: Slot::new("web", 2),
                status: ExitStatus::Signaled(Signal::SIGKILL),
            },
        );
        assert_eq!(
            actions(sup.handle(t0 + GRACE, exited("worker", 1, 0))),
            vec![Effect::ScanStragglers]
        );
        assert_eq!(
            sup.handle(t0 + GRACE, Input::Stragglers(0)),
            vec![Effect::Exit(0)]
        );
    }

    #[test]
    fn a_second_stop_request_kills_at_once() {
        let t0 = Instant::now();
        let mut sup = started(false, t0);
        sup.handle(t0, Input::Stop(StopRequest::Signal(Signal::SIGINT)));
        let t1 = t0 + Duration::from_millis(10);
        let effects = sup.handle(t1, Input::Stop(StopRequest::Signal(Signal::SIGINT)));
        assert_eq!(logs(&effects)[0], "system: SIGINT received again");
        assert_eq!(
            actions(effects),
            vec![
                kill("web", 1),
                kill("web", 2),
                kill("worker", 1),
                Effect::SignalStragglers(Signal::SIGKILL)
            ]
        );
        // A third changes nothing.
        assert!(
            sup.handle(t1, Input::Stop(StopRequest::Signal(Signal::SIGINT)))
                .is_empty()
        );
    }

    #[test]
    fn stragglers_hold_the_exit_until_they_are_gone() {
        let t0 = Instant::now();
        let mut sup = started(false, t0);
        sup.handle(t0, Input::Stop(StopRequest::StdoutClosed));
        for (kind, index) in [("web", 1), ("web", 2), ("worker", 1)] {
            sup.handle(t0, exited(kind, index, 0));
        }
        assert!(sup.handle(t0, Input::Stragglers(2)).is_empty());
        assert_eq!(sup.next_deadline(), Some(t0 + STRAGGLER_RESCAN));
        assert_eq!(
            sup.handle(t0 + STRAGGLER_RESCAN, Input::Tick),
            vec![Effect::ScanStragglers]
        );
        // Past the grace they are killed, and looked for again until none is left.
        let effects = actions(sup.handle(t0 + GRACE, Input::Tick));
        assert_eq!(
            effects,
            vec![
                Effect::SignalStragglers(Signal::SIGKILL),
                Effect::ScanStragglers
            ]
        );
        assert_eq!(
            sup.handle(t0 + GRACE, Input::Stragglers(1)),
            vec![Effect::SignalStragglers(Signal::SIGKILL)]
        );
        assert_eq!(
            sup.handle(t0 + GRACE, Input::Stragglers(0)),
            vec![Effect::Exit(0)]
        );
    }

    #[test]
    fn a_stop_during_release_stops_the_release() {
        let t0 = Instant::now();
        let mut sup = started(true, t0);
        let effects = actions(sup.handle(t0, Input::Stop(StopRequest::Signal(Signal::SIGTERM))));
        assert_eq!(
            effects,
            vec![
                term("release", 1),
                Effect::SignalStragglers(Signal::SIGTERM)
            ]
        );
        // The release ending now must not start the formation.
        assert_eq!(
            actions(sup.handle(t0, exited("release", 1, 0))),
            vec![Effect::ScanStragglers]
        );
        assert_eq!(sup.handle(t0, Input::Stragglers(0)), vec![Effect::Exit(0)]);
    }

    #[test]
    fn a_spawn_failure_counts_as_exit_127() {
        let t0 = Instant::now();
        let mut sup = started(false, t0);
        let effects = sup.handle(
            t0,
            Input::SpawnFailed {
                slot: Slot::new("web", 1),
                error: "EAGAIN".into(),
            },
        );
        assert_eq!(logs(&effects)[0], "web.1: Failed to start process: EAGAIN");
        assert_eq!(logs(&effects)[1], "web.1: Process exited with status 127");
    }

    #[test]
    fn signals_map_to_128_plus() {
        assert_eq!(ExitStatus::Signaled(Signal::SIGKILL).code(), 137);
        assert_eq!(ExitStatus::Code(3).code(), 3);
    }
}
