//! The supervisor's core driven by arbitrary bytes against a model of the processes it
//! runs, checking its promises after every input (TESTING.md):
//! - it exits only once every process it started is gone;
//! - every control request is answered exactly once, and every one by the end of a stop;
//! - it signals only dynos it has spawned and not forgotten;
//! - after a tick, no deadline is left in the past;
//! - once asked to stop, and with processes that die when killed, it always exits.
//!
//! Shared by the `supervisor` fuzz target and `tests/supervisor_model.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use hkrun::dyno::{Exit, Slot};
use hkrun::plan::formation::{DynoSize, ScaleChange, ScaleOp};
use hkrun::plan::policy::{MemoryLimit, RestartPolicy};
use hkrun::plan::schedule::{Frequency, Job};
use hkrun::plan::{AppPlan, DynoSpec, ProcessType, Role, SpawnSpec, StopRule};
use hkrun::supervisor::core::Supervisor;
use hkrun::supervisor::input::{Control, Effect, Input, StopRequest, Target};
use nix::sys::signal::Signal;

/// The model's choices, each named (`input.kind`, `spawn.fails`): read from the fuzzer's
/// bytes (zeros once they run out), or from a trace written earlier, whose lines are each
/// choice's name and value (`tests/model_traces/`). Every choice made is kept, so a run
/// from bytes can be written out as a trace; a trace whose names no longer match the
/// model's choices is refused, never read as something else.
pub(crate) struct Choices<'a> {
    bytes: &'a [u8],
    replay: Option<std::collections::VecDeque<(String, String)>>,
    made: Vec<String>,
}

impl<'a> Choices<'a> {
    fn bytes(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            replay: None,
            made: Vec::new(),
        }
    }

    /// A trace's lines: `NAME VALUE`, blank lines and `#` comments aside.
    fn trace(text: &str) -> Self {
        let lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (name, value) = l.split_once(' ').expect("a line is `NAME VALUE`");
                (name.to_owned(), value.trim().to_owned())
            })
            .collect();
        Self {
            bytes: &[],
            replay: Some(lines),
            made: Vec::new(),
        }
    }

    /// The next byte (0 once they run out); `None` when replaying a trace.
    fn raw(&mut self) -> Option<u8> {
        self.replay
            .is_none()
            .then(|| match self.bytes.split_first() {
                Some((&b, rest)) => {
                    self.bytes = rest;
                    b
                }
                None => 0,
            })
    }

    /// The trace's next value, which must be `name`'s (`None` once it runs out).
    fn replayed(&mut self, name: &str) -> Option<String> {
        let (found, value) = self.replay.as_mut()?.pop_front()?;
        assert_eq!(
            found,
            name,
            "the trace no longer matches the model at choice {}",
            self.made.len() + 1
        );
        Some(value)
    }

    fn record(&mut self, name: &str, value: impl std::fmt::Display) {
        self.made.push(format!("{name} {value}"));
    }

    /// A number below `n` (a count, a byte).
    fn below(&mut self, name: &str, n: usize) -> usize {
        let value = match self.raw() {
            Some(byte) => usize::from(byte) % n.max(1),
            None => self
                .replayed(name)
                .map_or(0, |v| v.parse().expect("a number")),
        };
        assert!(value < n.max(1), "{name} {value}: out of range");
        self.record(name, value);
        value
    }

    fn byte(&mut self, name: &str) -> u8 {
        u8::try_from(self.below(name, 256)).expect("a byte")
    }

    /// One of `options`, by its word.
    fn pick<S: AsRef<str>>(&mut self, name: &str, options: &[S]) -> usize {
        let index = match self.raw() {
            Some(byte) => usize::from(byte) % options.len().max(1),
            // `-`: there was nothing to pick from.
            None => self.replayed(name).map_or(0, |word| {
                options
                    .iter()
                    .position(|o| o.as_ref() == word)
                    .or((word == "-" && options.is_empty()).then_some(0))
                    .unwrap_or_else(|| panic!("{name} {word}: not one of the choices"))
            }),
        };
        let word = options.get(index).map_or("-", |o| o.as_ref()).to_owned();
        self.record(name, word);
        index
    }

    /// True one time in `one_in`: `yes` or `no`.
    fn chance(&mut self, name: &str, one_in: usize) -> bool {
        let yes = match self.raw() {
            Some(byte) => usize::from(byte) % one_in == 0,
            None => self.replayed(name).is_some_and(|v| v == "yes"),
        };
        self.record(name, if yes { "yes" } else { "no" });
        yes
    }

    /// Whether another input comes: while bytes are left, or as the trace says.
    fn more(&mut self) -> bool {
        let more = match self.replay {
            Some(_) => self.replayed("step").is_some_and(|v| v == "yes"),
            None => !self.bytes.is_empty(),
        };
        self.record("step", if more { "yes" } else { "no" });
        more
    }

    fn is_empty(&self) -> bool {
        match &self.replay {
            Some(lines) => lines.is_empty(),
            None => self.bytes.is_empty(),
        }
    }
}

/// One run of a dyno, as the OS would have it.
#[derive(Debug)]
struct Run {
    pid: i32,
    leader_alive: bool,
    /// Other processes of the run (its group, or escaped): they go on SIGKILL, and on
    /// SIGTERM when `term_kills`.
    others: usize,
    term_kills: bool,
    /// A signal that ends the leader reached it: it exits when the world says so.
    doomed: bool,
}

#[derive(Default)]
struct World {
    /// The latest run of each slot the core has spawned and not forgotten.
    runs: BTreeMap<Slot, Run>,
    /// Slots the core has asked to spawn and not forgotten (a spawn may fail).
    spawned: BTreeSet<Slot>,
    next_pid: i32,
    /// Control requests sent and not yet answered.
    waiting: BTreeSet<u64>,
    next_id: u64,
    exited: bool,
    /// A stop was asked for, by an input or by the end of the run.
    stop_sent: bool,
    /// The world settles: spawns succeed, ports are free, SIGTERM ends every process.
    calm: bool,
    /// Slots whose last run the core has been told is over (`GroupLeft` with nothing
    /// left, after the leader's exit), until spawned again.
    told_gone: BTreeSet<Slot>,
    /// The plan has a `[[scheduler]]` job: some inputs say it is due.
    scheduler: bool,
    /// `postdeploy.1`'s last exit, and whether the core has asked to record it.
    postdeploy_exit: Option<Exit>,
    postdeployed: bool,
}

impl World {
    /// A leader a signal has doomed exits (killed by `signal`), one at a time.
    fn next_doomed_exit(&mut self, signal: Signal) -> Option<Input> {
        let slot = self
            .runs
            .iter()
            .find(|(_, r)| r.leader_alive && r.doomed)
            .map(|(s, _)| s.clone())?;
        self.runs.get_mut(&slot).expect("found").leader_alive = false;
        let status = Exit::Signaled(signal);
        Some(Input::Exited { slot, status })
    }

    fn live(&self) -> usize {
        self.runs
            .values()
            .map(|r| usize::from(r.leader_alive) + r.others)
            .sum()
    }

    fn signal(&mut self, slot: &Slot, signal: Signal, all: bool) {
        assert!(
            self.spawned.contains(slot),
            "{signal:?} to {slot:#}, which was never spawned or is forgotten"
        );
        // A failed spawn has nothing to signal.
        let Some(run) = self.runs.get_mut(slot) else {
            return;
        };
        // Once told that nothing of a run is left (its leader exited, its group is
        // empty), the core has no process of it to signal.
        assert!(
            !self.told_gone.contains(slot),
            "{signal:?} to {slot:#}, told that nothing of its run is left"
        );
        if ends(signal, run.term_kills) {
            run.doomed = true;
            // `Signal` reaches the group; what escaped it only with `SignalAll`. The model
            // does not tell them apart: both end the run's other processes.
            let _ = all;
            run.others = 0;
        }
    }

    /// Processes outside every live dyno's group: the other processes of runs whose
    /// leader has exited; with SIGKILL, every process.
    fn stragglers(&mut self, signal: Signal) {
        for run in self.runs.values_mut() {
            if signal == Signal::SIGKILL {
                run.doomed = true;
                run.others = 0;
            } else if !run.leader_alive && ends(signal, run.term_kills) {
                run.others = 0;
            }
        }
    }
}

fn ends(signal: Signal, term_kills: bool) -> bool {
    match signal {
        Signal::SIGKILL => true,
        Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT => term_kills,
        _ => false,
    }
}

fn dyno_type(name: &str, index: usize, restart: RestartPolicy, router: bool) -> ProcessType {
    ProcessType {
        name: name.to_owned(),
        command: format!("run-{name}"),
        index,
        role: if name == "web" {
            Role::Web {
                behind_router: router,
            }
        } else {
            Role::Other
        },
        size: DynoSize::default(),
        restart,
        memory: MemoryLimit::On,
        boot_timeout: (name == "web").then_some(Duration::from_secs(60)),
        stop: StopRule::default(),
        env: Vec::new(),
        terminal: false,
        after: Vec::new(),
        dyno_name: None,
    }
}

/// `features`: the data's last byte, read without taking it, so inputs kept as regressions
/// (none of which has bit 4 or 6 set) run as they did before these features.
fn plan(b: &mut Choices, features: u8) -> AppPlan {
    let flags = b.byte("plan.flags");
    let restart = [
        RestartPolicy::Always,
        RestartPolicy::OnFailure,
        RestartPolicy::Never,
    ][b.pick("plan.restart", &["always", "on-failure", "never"])];
    let router = flags & 1 != 0;
    let mut types = vec![
        dyno_type("web", 0, restart, router),
        dyno_type("worker", 1, restart, router),
    ];
    // hkrun.toml's `[types.worker]`: its own stop signal and a shorter grace, and a first
    // start that waits for web.
    if features & 16 != 0 {
        types[1].stop = StopRule {
            signal: Some(Signal::SIGQUIT),
            grace: Some(Duration::from_millis(500)),
        };
        types[1].after = vec!["web".to_owned()];
    }
    let base_port = 5000;
    let mut dynos: Vec<DynoSpec> = Vec::new();
    let web = 1 + b.pick("plan.web", &["1", "2"]);
    let workers = b.pick("plan.workers", &["0", "1", "2"]);
    for (t, count) in [(0, web), (1, workers)] {
        for n in 1..=count {
            dynos.push(types[t].dyno(n as u32, base_port).expect("ports fit"));
        }
    }
    AppPlan {
        release: (flags & 2 != 0).then(|| "migrate".to_owned()),
        postdeploy: (features & 64 != 0).then(|| "seed".to_owned()),
        scheduler: match features & 64 {
            0 => Vec::new(),
            _ => vec![Job {
                command: "tidy".into(),
                frequency: Frequency::EveryTenMinutes,
            }],
        },
        dynos,
        types,
        base_port,
        router: router.then_some(base_port),
        router_address: None,
        preboot: router && flags & 4 == 0,
        grace: Duration::from_secs(1 + u64::from(flags >> 5)),
        exit_on_crash: flags & 8 != 0,
        restart_cap: Duration::from_secs(
            1 + b.pick(
                "plan.restart_cap",
                &["1s", "2s", "3s", "4s", "5s", "6s", "7s", "8s"],
            ) as u64,
        ),
    }
}

/// Carries out effects as the driver would, checking each; returns the inputs they
/// produce at once (the driver's queue).
fn perform(world: &mut World, b: &mut Choices, effects: Vec<Effect>) -> Vec<Input> {
    let mut queue = Vec::new();
    for effect in effects {
        assert!(!world.exited, "an effect after the exit: {effect:?}");
        match effect {
            Effect::Spawn(SpawnSpec { slot, .. }) => {
                world.spawned.insert(slot.clone());
                world.told_gone.remove(&slot);
                if let Some(old) = world.runs.remove(&slot) {
                    // A new run only once the old one is gone entirely.
                    assert!(
                        !old.leader_alive && old.others == 0,
                        "{slot:#} spawned again while its last run lives: {old:?}"
                    );
                }
                if !world.calm && b.chance("spawn.fails", 16) {
                    queue.push(Input::SpawnFailed {
                        slot,
                        error: "exec failed".into(),
                    });
                    continue;
                }
                world.next_pid += 1;
                let pid = world.next_pid;
                let (others, term_kills) = match world.calm {
                    true => (0, true),
                    false => (
                        b.below("spawn.others", 3),
                        !b.chance("spawn.ignores_term", 4),
                    ),
                };
                world.runs.insert(
                    slot.clone(),
                    Run {
                        pid,
                        leader_alive: true,
                        others,
                        term_kills,
                        doomed: false,
                    },
                );
                queue.push(Input::Spawned { slot, pid });
            }
            Effect::Signal { slot, signal } => world.signal(&slot, signal, false),
            Effect::SignalAll { slot, signal } => world.signal(&slot, signal, true),
            Effect::SignalStragglers(signal) => world.stragglers(signal),
            Effect::ScanStragglers => {
                // Runs the core no longer waits on count as stragglers too.
                queue.push(Input::Stragglers(world.live()));
            }
            Effect::ScanGroup { slot } => {
                let count = world.runs.get(&slot).map_or(0, |r| r.others);
                queue.push(Input::GroupLeft { slot, count });
            }
            Effect::Forget { slot } => {
                world.told_gone.remove(&slot);
                assert!(
                    world.spawned.remove(&slot),
                    "{slot:#} forgotten, never spawned"
                );
                if let Some(run) = world.runs.remove(&slot) {
                    assert!(
                        !run.leader_alive && run.others == 0,
                        "{slot:#} forgotten while its run lives: {run:?}"
                    );
                }
            }
            Effect::Event(event) => {
                // Every event renders as one line of words, as the log shows it.
                let line = event.to_string();
                assert!(
                    !line.is_empty() && !line.contains('\n') && !line.starts_with(' '),
                    "{event:?} renders as {line:?}"
                );
            }
            Effect::Reply { id, outcome } => {
                let line = outcome.to_string();
                assert!(
                    !line.is_empty() && !line.contains('\n'),
                    "{outcome:?} renders as {line:?}"
                );
                // id 0 is SIGUSR2's restart, which nobody waits for.
                assert!(
                    id == 0 || world.waiting.remove(&id),
                    "a reply to {id}, which is not waiting"
                );
            }
            Effect::ProbePorts { id, ports } => {
                assert!(
                    id == 0 || world.waiting.contains(&id),
                    "ports probed for {id}, which is not waiting"
                );
                // Now and then something else holds the first port.
                let taken = ports
                    .into_iter()
                    .take(usize::from(b.chance("probe.first_taken", 8)))
                    .collect();
                queue.push(Input::PortsProbed { id, taken });
            }
            Effect::AwaitDrained { slot, .. } => {
                assert!(
                    world.spawned.contains(&slot),
                    "{slot:#} drained, never spawned"
                );
                // The router has nothing in flight to it: said at once.
                queue.push(Input::Drained { slot });
            }
            Effect::Postdeployed { .. } => {
                assert!(!world.postdeployed, "postdeploy recorded twice");
                assert_eq!(
                    world.postdeploy_exit,
                    Some(Exit::Code(0)),
                    "postdeploy recorded without exiting 0"
                );
                world.postdeployed = true;
            }
            Effect::Exit(_) => {
                assert_eq!(world.live(), 0, "exit with processes alive");
                world.exited = true;
            }
            Effect::AwaitReady { .. }
            | Effect::TakeEnv(_)
            | Effect::WidenRouter { .. }
            | Effect::OutputMayBeDropped
            | Effect::Routes(_)
            | Effect::StopSelf => {}
        }
    }
    queue
}

/// What the world does next, by `input`'s choice (three ways in twelve to exit).
const INPUTS: [&str; 12] = [
    "exit",
    "exit",
    "exit",
    "ready",
    "memory",
    "stop",
    "scheduler-or-usr1",
    "pause-or-resume",
    "control",
    "control",
    "control",
    "tick",
];

/// An input the world could send now.
fn input(world: &mut World, b: &mut Choices) -> Input {
    let live: Vec<Slot> = world
        .runs
        .iter()
        .filter(|(_, r)| r.leader_alive)
        .map(|(s, _)| s.clone())
        .collect();
    let pick = |b: &mut Choices, slots: &[Slot]| {
        let names: Vec<String> = slots.iter().map(ToString::to_string).collect();
        slots.get(b.pick("input.dyno", &names)).cloned()
    };
    match b.pick("input", &INPUTS) {
        0..=2 => match pick(b, &live) {
            Some(slot) => {
                let run = world.runs.get_mut(&slot).expect("live");
                run.leader_alive = false;
                let status = match b.pick("exit", &["0", "code", "sigkill"]) {
                    0 => Exit::Code(0),
                    1 => Exit::Code(1 + i32::from(b.byte("exit.code"))),
                    _ => Exit::Signaled(Signal::SIGKILL),
                };
                Input::Exited { slot, status }
            }
            None => Input::Tick,
        },
        3 => match pick(b, &live) {
            Some(slot) if slot.kind == "web" => Input::Ready {
                slot,
                ip: std::net::Ipv4Addr::LOCALHOST.into(),
                everywhere: false,
            },
            _ => Input::Tick,
        },
        4 => {
            let mb = 1024 * 1024;
            let samples = live
                .iter()
                .map(|s| {
                    let at = b.pick("memory", &["10M", "600M", "1100M"]);
                    (s.clone(), [10 * mb, 600 * mb, 1100 * mb][at])
                })
                .collect();
            Input::Memory(samples)
        }
        5 => Input::Stop({
            world.stop_sent = true;
            [
                StopRequest::Signal(Signal::SIGTERM),
                StopRequest::Signal(Signal::SIGINT),
                StopRequest::Control,
                StopRequest::StdoutClosed,
            ][b.pick("stop", &["sigterm", "sigint", "control", "stdout-closed"])]
        }),
        6 if world.scheduler && b.chance("scheduled", 2) => Input::Scheduled { job: 0 },
        6 => Input::Forward(Signal::SIGUSR1),
        7 => match b.pick("pause", &["pause", "resume"]) {
            0 => Input::Pause,
            _ => Input::Resume,
        },
        8..=10 => {
            world.next_id += 1;
            let id = world.next_id;
            world.waiting.insert(id);
            let kind = ["web", "worker"][b.pick("control.type", &["web", "worker"])].to_owned();
            let target = match b.pick("control.target", &["all", "type", "dyno"]) {
                0 => None,
                1 => Some(Target::Type(kind.clone())),
                _ => Some(Target::Dyno(Slot::new(
                    &kind,
                    1 + b.below("control.dyno", 3) as u32,
                ))),
            };
            let request = match b.pick("control.request", &["scale", "restart", "stop"]) {
                0 => Control::Scale(vec![ScaleChange {
                    name: kind,
                    op: [
                        ScaleOp::Set(b.below("scale.to", 4) as u32),
                        ScaleOp::Add(1),
                        ScaleOp::Sub(1),
                    ][b.pick("scale.op", &["set", "add-1", "sub-1"])],
                    size: None,
                }]),
                // A restart of every dyno reads the env files again: a reload.
                1 => match target {
                    Some(target) => Control::Restart(vec![target]),
                    None => Control::Reload(std::sync::Arc::default()),
                },
                _ => Control::Stop(vec![target.unwrap_or(Target::Type(kind))]),
            };
            Input::Control { id, request }
        }
        _ => Input::Tick,
    }
}

/// Handles one input and everything its effects lead to at once, checking as it goes.
fn step(sup: &mut Supervisor, world: &mut World, b: &mut Choices, now: Instant, input: Input) {
    let tick = input == Input::Tick;
    let mut queue = vec![input];
    while let Some(input) = queue.pop() {
        if world.exited {
            return;
        }
        if trace() {
            eprintln!("{input:?}");
        }
        if let Input::Exited { slot, status } = &input {
            if slot.kind == "postdeploy" {
                world.postdeploy_exit = Some(*status);
            }
        }
        if let Input::GroupLeft { slot, count: 0 } = &input {
            if world.runs.get(slot).is_none_or(|r| !r.leader_alive) {
                world.told_gone.insert(slot.clone());
            }
        }
        let effects = sup.handle(now, input);
        if trace() {
            eprintln!("  -> {effects:?}");
        }
        let mut more = perform(world, b, effects);
        more.reverse();
        queue.extend(more);
    }
    if tick && !world.exited {
        if let Some(at) = sup.next_deadline() {
            assert!(at > now, "a deadline left in the past after a tick");
        }
    }
}

/// Lets the world settle (every spawn succeeds, web dynos come up, signalled processes
/// die, timers run out), then checks that the formation the core keeps is what runs:
/// each type's dynos, those leaving aside, are its live processes. Only where every exit
/// is restarted (`always`, no `--exit-on-crash`), so every dyno should be running.
fn settle(
    sup: &mut Supervisor,
    world: &mut World,
    b: &mut Choices,
    now: &mut Instant,
    exits_on_crash: bool,
) {
    world.calm = true;
    step(sup, world, b, *now, Input::Resume);
    // Each run of a web dyno listens once.
    let mut listened: BTreeSet<(Slot, i32)> = BTreeSet::new();
    for _ in 0..2_000 {
        if world.exited {
            return;
        }
        if let Some(exit) = world.next_doomed_exit(Signal::SIGTERM) {
            step(sup, world, b, *now, exit);
            continue;
        }
        let booting = world
            .runs
            .iter()
            .filter(|(s, r)| s.kind == "web" && r.leader_alive)
            .map(|(s, r)| (s.clone(), r.pid))
            .find(|run| !listened.contains(run));
        if let Some((slot, pid)) = booting {
            listened.insert((slot.clone(), pid));
            let ip = std::net::Ipv4Addr::LOCALHOST.into();
            step(
                sup,
                world,
                b,
                *now,
                Input::Ready {
                    slot,
                    ip,
                    everywhere: false,
                },
            );
            continue;
        }
        match sup.next_deadline() {
            Some(at) => {
                *now = at.max(*now);
                step(sup, world, b, *now, Input::Tick);
            }
            None => break,
        }
    }
    let always = sup
        .types()
        .iter()
        .all(|t| t.restart == RestartPolicy::Always);
    if world.exited || !always || exits_on_crash {
        return;
    }
    assert!(
        world.waiting.is_empty(),
        "requests unanswered once settled: {:?}",
        world.waiting
    );
    for ty in sup.types() {
        let kept: BTreeSet<Slot> = sup
            .dynos()
            .iter()
            .filter(|d| d.slot().kind == ty.name && !d.leaving())
            .map(|d| d.slot().clone())
            .collect();
        let running: BTreeSet<Slot> = world
            .runs
            .iter()
            .filter(|(s, r)| s.kind == ty.name && r.leader_alive)
            .map(|(s, _)| s.clone())
            .collect();
        assert_eq!(
            kept, running,
            "{}: the formation the core keeps is not what runs once settled",
            ty.name
        );
    }
}

/// `HKRUN_MODEL_TRACE=1` prints every input and what it led to.
fn trace() -> bool {
    std::env::var_os("HKRUN_MODEL_TRACE").is_some()
}

/// A run from the fuzzer's bytes. The features come from the last byte, so that short
/// inputs have them too.
pub(crate) fn run(data: &[u8]) {
    let features = data.last().copied().unwrap_or(0);
    let mut b = Choices::bytes(data);
    run_with(&mut b, features);
}

/// The trace of a run from bytes (`run`'s choices, as lines), whether or not the run
/// failed, and its failure.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn trace_of(data: &[u8]) -> (String, Option<String>) {
    let features = data.last().copied().unwrap_or(0);
    let mut b = Choices::bytes(data);
    b.made.push(format!("plan.features {features}"));
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_with(&mut b, features);
    }))
    .err()
    .map(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    });
    (b.made.join("\n") + "\n", failed)
}

/// A run from a trace (`Choices::trace`): its first line gives the features.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn replay(trace: &str) {
    let mut b = Choices::trace(trace);
    let features = b.byte("plan.features");
    run_with(&mut b, features);
    assert!(b.is_empty(), "choices left in the trace after the run");
}

fn run_with(b: &mut Choices, features: u8) {
    let plan = plan(b, features);
    let mut world = World {
        scheduler: !plan.scheduler.is_empty(),
        ..World::default()
    };
    let exits_on_crash = plan.exit_on_crash;
    let mut sup = Supervisor::new(plan);
    let mut now = Instant::now();
    let effects = sup.start(now);
    let mut queue = perform(&mut world, b, effects);
    while let Some(input) = queue.pop() {
        let effects = sup.handle(now, input);
        queue.extend(perform(&mut world, b, effects));
    }
    while !world.exited && b.more() {
        // Time moves: to the next deadline, or by a few milliseconds to seconds.
        match (
            b.pick("time", &["to-deadline", "by", "by"]),
            sup.next_deadline(),
        ) {
            (0, Some(at)) if at > now => now = at,
            _ => now += Duration::from_millis(u64::from(b.byte("time.by_20ms")) * 20),
        }
        let next = input(&mut world, b);
        step(&mut sup, &mut world, b, now, next);
    }
    if !world.stop_sent && !world.exited {
        settle(&mut sup, &mut world, b, &mut now, exits_on_crash);
    }
    // Then the app is stopped, and every process dies once SIGKILLed: it must exit, with
    // every request answered.
    step(
        &mut sup,
        &mut world,
        b,
        now,
        Input::Stop(StopRequest::Signal(Signal::SIGTERM)),
    );
    for _ in 0..10_000 {
        if world.exited {
            break;
        }
        if let Some(exit) = world.next_doomed_exit(Signal::SIGKILL) {
            step(&mut sup, &mut world, b, now, exit);
            continue;
        }
        now = sup
            .next_deadline()
            .map_or(now + Duration::from_secs(1), |at| at.max(now));
        step(&mut sup, &mut world, b, now, Input::Tick);
    }
    assert!(world.exited, "no exit after the stop: {:?}", world.runs);
    assert!(
        world.waiting.is_empty(),
        "requests never answered: {:?}",
        world.waiting
    );
}
