//! The core driven with exact inputs and instants: no processes, no runtime, no sleeps.

use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use crate::dyno::{Routes, WebState};
use crate::plan::formation::DynoSize;
use crate::plan::policy::MemoryLimit;
use crate::plan::policy::RestartPolicy;
use crate::plan::{Role, SpawnSpec, StopRule};
use crate::supervisor::event::StopRequest;
use crate::supervisor::input::{Control, SIGNALLED, Source, Target};
use crate::supervisor::outcome::{Outcome, Refusal, TypeSize};

const GRACE: Duration = Duration::from_secs(5);
const BOOT: Duration = Duration::from_secs(60);
const MB: u64 = 1024 * 1024;
const QUOTA: u64 = 512 * MB;
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn slot(kind: &str, index: u32) -> Slot {
    Slot::new(kind, index)
}

/// `web` gets traffic; behind the router only in `router_plan`.
fn role(kind: &str) -> Role {
    if kind == "web" {
        Role::Web {
            behind_router: false,
        }
    } else {
        Role::Other
    }
}

fn dyno(kind: &str, index: u32, port: u16, restart: RestartPolicy) -> DynoSpec {
    DynoSpec {
        spec: SpawnSpec {
            dyno: slot(kind, index).to_string(),
            slot: slot(kind, index),
            command: format!("run-{kind}"),
            port: Some(port),
            env: Vec::new(),
            terminal: false,
        },
        role: role(kind),
        restart,
        memory: MemoryLimit::On,
        quota: QUOTA,
        boot_timeout: (kind == "web").then_some(BOOT),
        stop: StopRule::default(),
    }
}

fn dyno_type(kind: &str, index: usize) -> ProcessType {
    ProcessType {
        name: kind.to_owned(),
        command: format!("run-{kind}"),
        index,
        role: role(kind),
        size: DynoSize::default(),
        restart: RestartPolicy::Always,
        memory: MemoryLimit::On,
        boot_timeout: (kind == "web").then_some(BOOT),
        stop: StopRule::default(),
        env: Vec::new(),
        terminal: false,
        after: Vec::new(),
        dyno_name: None,
    }
}

pub(crate) fn plan(release: bool, restart: RestartPolicy) -> AppPlan {
    AppPlan {
        release: release.then(|| "migrate".to_owned()),
        postdeploy: None,
        scheduler: Vec::new(),
        dynos: vec![
            dyno("web", 1, 5000, restart),
            dyno("web", 2, 5001, restart),
            dyno("worker", 1, 5100, restart),
        ],
        types: vec![dyno_type("web", 0), dyno_type("worker", 1)],
        base_port: 5000,
        router: None,
        router_address: None,
        preboot: false,
        grace: GRACE,
        exit_on_crash: false,
        restart_cap: Duration::from_secs(300),
    }
}

fn foreman_plan() -> AppPlan {
    AppPlan {
        exit_on_crash: true,
        ..plan(false, RestartPolicy::Always)
    }
}

/// Effects without the log lines, the leave to drop held-back output and a restart's
/// acceptance, which are checked on their own.
fn actions(effects: &[Effect]) -> Vec<Effect> {
    effects
        .iter()
        .filter(|e| {
            !matches!(
                e,
                Effect::Event(_) | Effect::OutputMayBeDropped | Effect::TakeEnv(_)
            )
        })
        .cloned()
        .collect()
}

fn logs(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Event(event) => Some(match event.source() {
                Source::Dyno(slot) => format!("{slot}: {event}"),
                Source::System => format!("system: {event}"),
            }),
            _ => None,
        })
        .collect()
}

/// A crash of a dyno that will be replaced: the exit, the scan of what its run left, and
/// the answer that nothing did.
fn crash_with(
    sup: &mut Supervisor,
    at: Instant,
    kind: &str,
    index: u32,
    status: Exit,
) -> Vec<Effect> {
    let exit = Input::Exited {
        slot: slot(kind, index),
        status,
    };
    exit_and_drain(sup, at, exit)
}

/// An exit that asks for a scan of what the run left, and the answer that nothing did.
fn exit_and_drain(sup: &mut Supervisor, at: Instant, exit: Input) -> Vec<Effect> {
    let Input::Exited { slot, .. } = &exit else {
        panic!("not an exit: {exit:?}");
    };
    let scan = Effect::ScanGroup { slot: slot.clone() };
    let left = Input::GroupLeft {
        slot: slot.clone(),
        count: 0,
    };
    let mut effects = sup.handle(at, exit);
    assert!(effects.contains(&scan), "{effects:?}");
    effects.retain(|e| e != &scan);
    effects.extend(sup.handle(at, left));
    effects
}

fn crash(sup: &mut Supervisor, at: Instant, kind: &str, index: u32, code: i32) -> Vec<Effect> {
    crash_with(sup, at, kind, index, Exit::Code(code))
}

fn exited(kind: &str, index: u32, code: i32) -> Input {
    Input::Exited {
        slot: slot(kind, index),
        status: Exit::Code(code),
    }
}

/// A stop's signal: to the dyno's group and what escaped it.
fn signal(kind: &str, index: u32, signal: Signal) -> Effect {
    Effect::SignalAll {
        slot: slot(kind, index),
        signal,
    }
}

/// A signal passed on to the dyno's group only.
fn group_signal(kind: &str, index: u32, signal: Signal) -> Effect {
    Effect::Signal {
        slot: slot(kind, index),
        signal,
    }
}

fn spawn(kind: &str, index: u32, port: u16) -> Effect {
    Effect::Spawn(SpawnSpec {
        dyno: slot(kind, index).to_string(),
        slot: slot(kind, index),
        command: format!("run-{kind}"),
        port: Some(port),
        env: Vec::new(),
        terminal: false,
    })
}

fn state(sup: &Supervisor, kind: &str, index: u32) -> DynoState {
    sup.dynos()
        .iter()
        .find(|d| *d.slot() == slot(kind, index))
        .expect("a dyno")
        .state()
}

fn started(plan: AppPlan, t0: Instant) -> Supervisor {
    let mut sup = Supervisor::new(plan);
    sup.start(t0);
    sup
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn starts_the_formation_in_order_web_boots_and_others_are_up() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new(plan(false, RestartPolicy::Always));
    let effects = sup.start(t0);
    assert_eq!(
        actions(&effects),
        vec![
            spawn("web", 1, 5000),
            Effect::AwaitReady {
                slot: slot("web", 1),
                port: 5000
            },
            spawn("web", 2, 5001),
            Effect::AwaitReady {
                slot: slot("web", 2),
                port: 5001
            },
            spawn("worker", 1, 5100),
        ]
    );
    assert_eq!(
        logs(&effects)[..3],
        [
            "web.1: Starting process with command `run-web`",
            "web.2: Starting process with command `run-web`",
            "worker.1: Starting process with command `run-worker`",
        ]
    );
    assert_eq!(
        logs(&effects)[3],
        "worker.1: State changed from starting to up"
    );
    assert_eq!(
        state(&sup, "web", 1),
        DynoState::Starting {
            boot_deadline: Some(t0 + BOOT)
        }
    );
    assert_eq!(sup.next_deadline(), Some(t0 + BOOT));

    let t1 = t0 + secs(2);
    let effects = sup.handle(
        t1,
        Input::Ready {
            slot: slot("web", 1),
            ip: LOCAL,
            everywhere: false,
        },
    );
    assert_eq!(logs(&effects), ["web.1: State changed from starting to up"]);
    assert_eq!(state(&sup, "web", 1), DynoState::Up);
    // A second report changes nothing.
    assert!(
        sup.handle(
            t1,
            Input::Ready {
                slot: slot("web", 1),
                ip: LOCAL,
                everywhere: false,
            }
        )
        .is_empty()
    );
}

#[test]
fn keeps_what_ps_shows() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    sup.handle(
        t0,
        Input::Spawned {
            slot: slot("worker", 1),
            pid: 42,
        },
    );
    sup.handle(
        t0 + secs(1),
        Input::Memory(vec![(slot("worker", 1), 100 * MB)]),
    );
    let worker = sup
        .dynos()
        .iter()
        .find(|d| *d.slot() == slot("worker", 1))
        .unwrap();
    assert_eq!(
        (worker.pid(), worker.memory(), worker.plan().quota),
        (Some(42), Some(100 * MB), QUOTA)
    );
    assert_eq!(
        (
            worker.state().name(),
            worker.since(),
            worker.plan().spec.port
        ),
        ("up", t0, Some(5100))
    );
}

#[test]
fn release_runs_first_then_the_formation() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new(plan(true, RestartPolicy::Always));
    let release = SpawnSpec {
        dyno: "release.1".into(),
        slot: slot("release", 1),
        command: "migrate".into(),
        port: None,
        env: Vec::new(),
        terminal: false,
    };
    assert_eq!(actions(&sup.start(t0)), vec![Effect::Spawn(release)]);
    assert_eq!(sup.next_deadline(), None);
    let effects = sup.handle(t0, exited("release", 1, 0));
    assert_eq!(actions(&effects)[0], spawn("web", 1, 5000));
}

#[test]
fn failed_release_starts_nothing_and_exits_with_its_code() {
    let t0 = Instant::now();
    let mut sup = started(plan(true, RestartPolicy::Always), t0);
    let effects = sup.handle(t0, exited("release", 1, 3));
    assert!(logs(&effects).contains(&"system: release failed (exit 3)".to_owned()));
    assert_eq!(
        actions(&effects),
        vec![
            Effect::SignalStragglers(Signal::SIGTERM),
            Effect::ScanStragglers
        ]
    );
    assert_eq!(sup.handle(t0, Input::Stragglers(0)), vec![Effect::Exit(3)]);
}

#[test]
fn crash_restarts_back_off_and_reset() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    // The first crash restarts at once.
    let effects = crash(&mut sup, t0, "worker", 1, 7);
    assert_eq!(
        logs(&effects),
        [
            "worker.1: Process exited with status 7",
            "worker.1: State changed from up to crashed",
            "worker.1: State changed from crashed to starting",
            "worker.1: Starting process with command `run-worker`",
            "worker.1: State changed from starting to up",
        ]
    );
    assert_eq!(actions(&effects), vec![spawn("worker", 1, 5100)]);
    // Then 1 s, 2 s, 4 s, 8 s: each restart exactly at its deadline, not before.
    let mut now = t0;
    for wait in [1, 2, 4, 8] {
        let effects = crash(&mut sup, now, "worker", 1, 7);
        assert_eq!(actions(&effects), vec![]);
        // A crash loop says one line per restart.
        assert_eq!(
            logs(&effects),
            [format!(
                "worker.1: Process exited with status 7; restarting in {} ({} crashes in a row)",
                if wait == 1 {
                    "1 second".to_owned()
                } else {
                    format!("{wait} seconds")
                },
                match wait {
                    1 => 2,
                    2 => 3,
                    4 => 4,
                    _ => 5,
                }
            )]
        );
        let due = now + secs(wait);
        assert_eq!(sup.next_deadline().map(|d| d.min(due)), Some(due));
        assert!(actions(&sup.handle(due - Duration::from_millis(1), Input::Tick)).is_empty());
        let relaunch = sup.handle(due, Input::Tick);
        assert_eq!(actions(&relaunch), vec![spawn("worker", 1, 5100)]);
        assert!(logs(&relaunch).is_empty(), "{relaunch:?}");
        now = due;
    }
    // Up for ten minutes: the next crash restarts at once again, and says so in full.
    let later = now + crate::supervisor::restart::RESET_AFTER;
    let effects = crash(&mut sup, later, "worker", 1, 7);
    assert_eq!(actions(&effects), vec![spawn("worker", 1, 5100)]);
    assert_eq!(logs(&effects).len(), 5, "{effects:?}");
    assert_eq!(actions(&crash(&mut sup, later, "worker", 1, 7)), vec![]);
    assert_eq!(restart_at(&sup, "worker", 1), Some(later + secs(1)));
}

#[test]
fn the_back_off_is_capped() {
    let t0 = Instant::now();
    let mut sup = started(
        AppPlan {
            restart_cap: secs(3),
            ..plan(false, RestartPolicy::Always)
        },
        t0,
    );
    for _ in 0..5 {
        crash(&mut sup, t0, "worker", 1, 1);
        sup.handle(t0 + secs(10), Input::Tick);
    }
    crash(&mut sup, t0 + secs(10), "worker", 1, 1);
    assert_eq!(restart_at(&sup, "worker", 1), Some(t0 + secs(13)));
}

#[test]
fn r10_at_exactly_the_boot_timeout() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    sup.handle(
        t0,
        Input::Ready {
            slot: slot("web", 2),
            ip: LOCAL,
            everywhere: false,
        },
    );
    assert!(
        sup.handle(t0 + BOOT - Duration::from_nanos(1), Input::Tick)
            .is_empty()
    );
    let effects = sup.handle(t0 + BOOT, Input::Tick);
    assert_eq!(
        logs(&effects),
        [
            "web.1: Error R10 (Boot timeout) -> Web process failed to bind to $PORT within 60 seconds of launch",
            "web.1: Stopping process with SIGKILL",
        ]
    );
    assert_eq!(actions(&effects), vec![signal("web", 1, Signal::SIGKILL)]);
    // The kill takes the crash path: restarted (the first crash, so at once).
    let killed = Exit::Signaled(Signal::SIGKILL);
    let effects = crash_with(&mut sup, t0 + BOOT, "web", 1, killed);
    assert_eq!(
        logs(&effects)[..2],
        [
            "web.1: Process exited with status 137",
            "web.1: State changed from starting to crashed"
        ]
    );
    assert_eq!(actions(&effects)[0], spawn("web", 1, 5000));
}

#[test]
fn r14_is_logged_at_most_every_20_seconds() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let over = |rss| Input::Memory(vec![(slot("worker", 1), rss)]);
    assert!(sup.handle(t0, over(QUOTA)).is_empty());
    let effects = sup.handle(t0, over(600 * MB));
    assert_eq!(
        logs(&effects),
        [
            "worker.1: Process running mem=600M(117.2%)",
            "worker.1: Error R14 (Memory quota exceeded)"
        ]
    );
    assert!(sup.handle(t0 + secs(19), over(600 * MB)).is_empty());
    assert_eq!(logs(&sup.handle(t0 + secs(20), over(600 * MB))).len(), 2);
    assert!(sup.handle(t0 + secs(21), over(600 * MB)).is_empty());
}

#[test]
fn r15_at_exactly_twice_the_quota_kills_and_restarts() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let sample = |rss| Input::Memory(vec![(slot("worker", 1), rss)]);
    assert!(actions(&sup.handle(t0, sample(2 * QUOTA - 1))).is_empty());
    let effects = sup.handle(t0 + secs(1), sample(2 * QUOTA));
    assert_eq!(
        logs(&effects),
        [
            "worker.1: Process running mem=1024M(200.0%)",
            "worker.1: Error R15 (Memory quota vastly exceeded)",
            "worker.1: Stopping process with SIGKILL",
        ]
    );
    assert_eq!(
        actions(&effects),
        vec![signal("worker", 1, Signal::SIGKILL)]
    );
    // Samples after the kill are not judged again.
    assert!(sup.handle(t0 + secs(1), sample(4 * QUOTA)).is_empty());
    let killed = Exit::Signaled(Signal::SIGKILL);
    let effects = crash_with(&mut sup, t0 + secs(1), "worker", 1, killed);
    assert_eq!(
        logs(&effects)[0],
        "worker.1: Process exited with status 137"
    );
    assert_eq!(actions(&effects), vec![spawn("worker", 1, 5100)]);
}

#[test]
fn memory_limits_can_warn_only_or_be_off() {
    let t0 = Instant::now();
    let mut p = plan(false, RestartPolicy::Always);
    p.dynos[0].memory = MemoryLimit::Warn;
    p.dynos[1].memory = MemoryLimit::Off;
    let mut sup = started(p, t0);
    let effects = sup.handle(
        t0,
        Input::Memory(vec![
            (slot("web", 1), 3 * QUOTA),
            (slot("web", 2), 3 * QUOTA),
        ]),
    );
    assert_eq!(
        logs(&effects),
        [
            "web.1: Process running mem=1536M(300.0%)",
            "web.1: Error R14 (Memory quota exceeded)"
        ]
    );
    assert!(actions(&effects).is_empty());
}

#[test]
fn restart_never_exits_with_the_first_failure_once_all_are_done() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Never), t0);
    let effects = sup.handle(t0, exited("web", 2, 0));
    assert_eq!(
        logs(&effects)[1],
        "web.2: State changed from starting to down"
    );
    assert!(actions(&effects).is_empty());
    let effects = sup.handle(t0, exited("worker", 1, 3));
    assert_eq!(
        logs(&effects)[1],
        "worker.1: State changed from up to crashed"
    );
    assert!(actions(&effects).is_empty());
    let effects = sup.handle(t0, exited("web", 1, 0));
    assert!(
        logs(&effects).contains(&"system: no dyno is left running: stopping (exit 3)".to_owned())
    );
    assert_eq!(
        actions(&effects),
        vec![
            Effect::SignalStragglers(Signal::SIGTERM),
            Effect::ScanStragglers
        ]
    );
    assert_eq!(sup.handle(t0, Input::Stragglers(0)), vec![Effect::Exit(3)]);
}

#[test]
fn on_failure_restarts_only_failures() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::OnFailure), t0);
    assert!(actions(&sup.handle(t0, exited("web", 1, 0))).is_empty());
    assert_eq!(state(&sup, "web", 1), DynoState::Down);
    assert_eq!(
        actions(&crash(&mut sup, t0, "worker", 1, 3))[0],
        spawn("worker", 1, 5100)
    );
}

#[test]
fn exit_on_crash_stops_everything_with_its_code() {
    let t0 = Instant::now();
    let mut sup = started(foreman_plan(), t0);
    let effects = sup.handle(t0, exited("web", 2, 7));
    assert!(
        logs(&effects).contains(&"system: web.2 exited with status 7: stopping the app".to_owned())
    );
    assert_eq!(
        actions(&effects),
        vec![
            signal("web", 1, Signal::SIGTERM),
            signal("worker", 1, Signal::SIGTERM),
            Effect::SignalStragglers(Signal::SIGTERM)
        ]
    );
    assert!(actions(&sup.handle(t0, exited("web", 1, 143))).is_empty());
    assert_eq!(
        actions(&sup.handle(t0, exited("worker", 1, 0))),
        vec![Effect::ScanStragglers]
    );
    assert_eq!(sup.handle(t0, Input::Stragglers(0)), vec![Effect::Exit(7)]);
}

#[test]
fn a_stop_request_terms_then_kills_at_the_grace() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let effects = sup.handle(t0, Input::Stop(StopRequest::Signal(Signal::SIGTERM)));
    assert_eq!(logs(&effects)[0], "system: SIGTERM received");
    assert_eq!(
        actions(&effects),
        vec![
            signal("web", 1, Signal::SIGTERM),
            signal("web", 2, Signal::SIGTERM),
            signal("worker", 1, Signal::SIGTERM),
            Effect::SignalStragglers(Signal::SIGTERM)
        ]
    );
    // A second on, the stop says what it waits for.
    assert_eq!(sup.next_deadline(), Some(t0 + STOP_NOTICE));
    assert_eq!(
        logs(&sup.handle(t0 + STOP_NOTICE, Input::Tick)),
        [format!(
            "system: {}",
            "waiting up to 4 seconds for web.1, web.2, worker.1; send SIGTERM again to stop now"
        )]
    );
    assert_eq!(sup.next_deadline(), Some(t0 + GRACE));
    assert!(
        sup.handle(t0 + GRACE - Duration::from_millis(1), Input::Tick)
            .is_empty()
    );
    sup.handle(t0, exited("web", 1, 143));
    let effects = sup.handle(t0 + GRACE, Input::Tick);
    assert!(logs(&effects).contains(
        &"web.2: Error R12 (Exit timeout) -> At least one process failed to exit within 5 seconds of SIGTERM".to_owned()
    ));
    assert_eq!(
        actions(&effects),
        vec![
            signal("web", 2, Signal::SIGKILL),
            signal("worker", 1, Signal::SIGKILL),
            Effect::SignalStragglers(Signal::SIGKILL)
        ]
    );
    assert_eq!(sup.next_deadline(), None);
    sup.handle(
        t0 + GRACE,
        Input::Exited {
            slot: slot("web", 2),
            status: Exit::Signaled(Signal::SIGKILL),
        },
    );
    assert_eq!(
        actions(&sup.handle(t0 + GRACE, exited("worker", 1, 0))),
        vec![Effect::ScanStragglers]
    );
    assert_eq!(
        sup.handle(t0 + GRACE, Input::Stragglers(0)),
        vec![Effect::Exit(0)]
    );
}

#[test]
fn a_long_stop_names_the_first_few_dynos_then_a_count() {
    let t0 = Instant::now();
    let base = plan(false, RestartPolicy::Always);
    let mut workers: Vec<DynoSpec> = (1..=8)
        .map(|i| dyno("worker", i, 5100, RestartPolicy::Always))
        .collect();
    workers.insert(0, dyno("web", 1, 5000, RestartPolicy::Always));
    let mut sup = started(
        AppPlan {
            dynos: workers,
            ..base
        },
        t0,
    );
    sup.handle(t0, Input::Stop(StopRequest::Signal(Signal::SIGTERM)));
    assert_eq!(
        logs(&sup.handle(t0 + STOP_NOTICE, Input::Tick)),
        [format!(
            "system: {}",
            "waiting up to 4 seconds for web.1, worker.1, worker.2, worker.3, worker.4 and 4 more; send SIGTERM again to stop now"
        )]
    );
}

#[test]
fn no_restart_once_stopping() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    sup.handle(t0, exited("worker", 1, 1));
    sup.handle(t0, exited("worker", 1, 1));
    assert!(matches!(
        state(&sup, "worker", 1),
        DynoState::Crashed {
            restart_at: Some(_),
            ..
        }
    ));
    sup.handle(t0, Input::Stop(StopRequest::Signal(Signal::SIGTERM)));
    // The pending restart is cancelled, and exits while stopping are not crashes.
    assert_eq!(state(&sup, "worker", 1), DynoState::Down);
    assert!(actions(&sup.handle(t0 + secs(2), Input::Tick)).is_empty());
    let effects = sup.handle(t0, exited("web", 1, 1));
    assert!(
        !actions(&effects)
            .iter()
            .any(|e| matches!(e, Effect::Spawn(_)))
    );
    assert_eq!(state(&sup, "web", 1), DynoState::Down);
    // Nor do memory samples or R10 act on a stopping app.
    assert!(
        sup.handle(t0, Input::Memory(vec![(slot("web", 2), 4 * QUOTA)]))
            .is_empty()
    );
    assert!(
        !logs(&sup.handle(t0 + BOOT, Input::Tick))
            .iter()
            .any(|l| l.contains("R10"))
    );
}

#[test]
fn a_second_stop_request_kills_at_once() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    sup.handle(t0, Input::Stop(StopRequest::Signal(Signal::SIGINT)));
    // The same signal twice at once (`timeout` signals hkrun and its group) is one.
    let twice = t0 + Duration::from_millis(1);
    assert!(
        sup.handle(twice, Input::Stop(StopRequest::Signal(Signal::SIGTERM)))
            .is_empty()
    );
    let t1 = t0 + SAME_REQUEST;
    let effects = sup.handle(t1, Input::Stop(StopRequest::Signal(Signal::SIGINT)));
    assert_eq!(logs(&effects)[0], "system: SIGINT received again");
    assert_eq!(
        actions(&effects),
        vec![
            signal("web", 1, Signal::SIGKILL),
            signal("web", 2, Signal::SIGKILL),
            signal("worker", 1, Signal::SIGKILL),
            Effect::SignalStragglers(Signal::SIGKILL)
        ]
    );
    assert!(
        sup.handle(t1, Input::Stop(StopRequest::Signal(Signal::SIGINT)))
            .is_empty()
    );
}

#[test]
fn stragglers_hold_the_exit_until_they_are_gone() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
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
    let effects = actions(&sup.handle(t0 + GRACE, Input::Tick));
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
    let mut sup = started(plan(true, RestartPolicy::Always), t0);
    let effects = actions(&sup.handle(t0, Input::Stop(StopRequest::Signal(Signal::SIGTERM))));
    assert_eq!(
        effects,
        vec![
            signal("release", 1, Signal::SIGTERM),
            Effect::SignalStragglers(Signal::SIGTERM)
        ]
    );
    assert_eq!(
        actions(&sup.handle(t0, exited("release", 1, 0))),
        vec![Effect::ScanStragglers]
    );
    assert_eq!(sup.handle(t0, Input::Stragglers(0)), vec![Effect::Exit(0)]);
}

#[test]
fn a_spawn_failure_counts_as_exit_127() {
    let t0 = Instant::now();
    let mut sup = started(foreman_plan(), t0);
    let effects = sup.handle(
        t0,
        Input::SpawnFailed {
            slot: slot("web", 1),
            error: "EAGAIN".into(),
        },
    );
    assert_eq!(
        logs(&effects)[..2],
        [
            "web.1: Failed to start process: EAGAIN",
            "web.1: Process exited with status 127"
        ]
    );
}

#[test]
fn signals_map_to_128_plus() {
    assert_eq!(Exit::Signaled(Signal::SIGKILL).code(), 137);
    assert_eq!(Exit::Code(3).code(), 3);
}

// Control: scale, restart, stop, and the replies that wait for dynos.

/// A control request, its ports probed free (as they are on a machine where nothing
/// else listens): the probe's effects are left out, the request's are returned.
fn control(sup: &mut Supervisor, now: Instant, id: u64, request: Control) -> Vec<Effect> {
    let mut effects = sup.handle(now, Input::Control { id, request });
    while let [Effect::ProbePorts { id, .. }] = effects.as_slice() {
        let id = *id;
        effects = sup.handle(now, Input::PortsProbed { id, taken: vec![] });
    }
    effects
}

fn scale(changes: &[&str]) -> Control {
    Control::Scale(changes.iter().map(|c| c.parse().unwrap()).collect())
}

/// A reply as the client shows it: done or not, and its words.
#[derive(Debug, PartialEq, Eq)]
enum Said {
    Done(String),
    Failed(String),
}

use Said::{Done, Failed};

/// Each reply's id, and its outcome as the client shows it.
fn replies(effects: &[Effect]) -> Vec<(u64, Said)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Reply { id, outcome } => Some((
                *id,
                match outcome.is_done() {
                    true => Done(outcome.to_string()),
                    false => Failed(outcome.to_string()),
                },
            )),
            _ => None,
        })
        .collect()
}

fn scaled(types: &[(&str, u32)]) -> Outcome {
    Outcome::Scaled {
        types: types
            .iter()
            .map(|&(name, count)| TypeSize {
                name: name.to_owned(),
                count,
                size: "Standard-1X".to_owned(),
            })
            .collect(),
    }
}

/// A dyno stopped on request exits, and its process group turns out empty.
fn stopped(sup: &mut Supervisor, now: Instant, (kind, n, code): (&str, u32, i32)) -> Vec<Effect> {
    exit_and_drain(sup, now, exited(kind, n, code))
}

/// When a crashed dyno restarts; `None` for one that is not crashed or will not restart.
fn restart_at(sup: &Supervisor, kind: &str, n: u32) -> Option<Instant> {
    match state(sup, kind, n) {
        DynoState::Crashed { restart_at, .. } => restart_at,
        _ => None,
    }
}

fn names(sup: &Supervisor) -> Vec<String> {
    sup.dynos().iter().map(|d| d.slot().to_string()).collect()
}

#[test]
fn scaling_up_starts_dynos_on_foreman_ports_and_answers_at_once() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let effects = control(&mut sup, t0, 1, scale(&["worker=3", "web+1"]));
    assert_eq!(
        actions(&effects),
        vec![
            spawn("worker", 2, 5101),
            spawn("worker", 3, 5102),
            spawn("web", 3, 5002),
            Effect::AwaitReady {
                slot: slot("web", 3),
                port: 5002
            },
            Effect::Reply {
                id: 1,
                outcome: scaled(&[("worker", 3), ("web", 3)]),
            },
        ]
    );
    assert_eq!(
        names(&sup),
        [
            "web.1", "web.2", "worker.1", "worker.2", "worker.3", "web.3"
        ]
    );
}

#[test]
fn scaling_down_stops_the_highest_numbers_then_removes_them() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let effects = control(&mut sup, t0, 1, scale(&["web=0"]));
    assert_eq!(
        actions(&effects)[..2],
        [
            signal("web", 2, Signal::SIGTERM),
            signal("web", 1, Signal::SIGTERM)
        ]
    );
    assert_eq!(state(&sup, "web", 2).name(), "stopping");
    // The answer waits for the formation to be what it says.
    assert!(replies(&effects).is_empty());
    // A process that ignores SIGTERM is killed at the grace, R12 first.
    assert_eq!(sup.next_deadline(), Some(t0 + GRACE));
    assert!(replies(&stopped(&mut sup, t0, ("web", 1, 143))).is_empty());
    let effects = sup.handle(t0 + GRACE, Input::Tick);
    assert_eq!(
        logs(&effects),
        [
            "web.2: Error R12 (Exit timeout) -> At least one process failed to exit within 5 seconds of SIGTERM",
            "web.2: Stopping process with SIGKILL"
        ]
    );
    assert_eq!(actions(&effects), [signal("web", 2, Signal::SIGKILL)]);
    // Their exits are neither crashes nor restarts.
    let effects = stopped(&mut sup, t0 + GRACE, ("web", 2, 137));
    assert!(
        !actions(&effects)
            .iter()
            .any(|e| matches!(e, Effect::Spawn(_)))
    );
    assert_eq!(
        replies(&effects),
        [(
            1,
            Done("Scaling dynos... done, now running web at 0:Standard-1X".into())
        )]
    );
    assert_eq!(names(&sup), ["worker.1"]);
    assert_eq!(sup.next_deadline(), None);
    // Back up: the lowest free numbers again.
    let effects = control(&mut sup, t0 + GRACE, 2, scale(&["web=1"]));
    assert_eq!(actions(&effects)[0], spawn("web", 1, 5000));
}

#[test]
fn a_scale_is_all_or_nothing() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    for (request, why) in [
        (
            scale(&["worker=2", "cron=1"]),
            "unknown process type `cron` (the Procfile has web, worker)",
        ),
        (
            scale(&["worker=2", "web-3"]),
            "cannot scale web below 0 (it runs 2)",
        ),
        (
            scale(&["release=1"]),
            "`release` is the release phase, not a dyno type",
        ),
        (
            scale(&["worker=101"]),
            "101 worker dynos is more than the 100 a type may have (each type has a block of 100 ports)",
        ),
    ] {
        let effects = control(&mut sup, t0, 7, request);
        assert_eq!(effects.len(), 1, "{effects:?}");
        assert_eq!(replies(&effects), [(7, Failed(why.into()))]);
    }
    assert_eq!(names(&sup), ["web.1", "web.2", "worker.1"]);
}

#[test]
fn a_size_change_restarts_the_type_with_the_new_quota() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let effects = control(&mut sup, t0, 1, scale(&["worker=2:standard-2x"]));
    assert_eq!(
        replies(&effects),
        [(
            1,
            Done("Scaling dynos... done, now running worker at 2:Standard-2X".into())
        )]
    );
    assert!(actions(&effects).contains(&signal("worker", 1, Signal::SIGTERM)));
    assert!(actions(&effects).contains(&spawn("worker", 2, 5101)));
    let quota = |sup: &Supervisor, n| {
        sup.dynos()
            .iter()
            .find(|d| *d.slot() == slot("worker", n))
            .map(|d| d.plan().quota)
    };
    assert_eq!(quota(&sup, 1), Some(1024 * MB));
    assert_eq!(quota(&sup, 2), Some(1024 * MB));
    let effects = stopped(&mut sup, t0, ("worker", 1, 0));
    assert_eq!(actions(&effects), [spawn("worker", 1, 5100)]);
}

#[test]
fn restart_answers_once_the_new_dynos_are_up() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    sup.handle(
        t0,
        Input::Ready {
            slot: slot("web", 1),
            ip: LOCAL,
            everywhere: false,
        },
    );
    let effects = control(
        &mut sup,
        t0,
        3,
        Control::Restart(vec![Target::Type("web".into())]),
    );
    assert_eq!(
        logs(&effects)[..3],
        [
            "web.1: Restarting",
            "web.1: State changed from up to starting",
            "web.1: Stopping all processes with SIGTERM"
        ]
    );
    assert_eq!(
        actions(&effects),
        [
            signal("web", 1, Signal::SIGTERM),
            signal("web", 2, Signal::SIGTERM)
        ]
    );
    assert_eq!(state(&sup, "web", 1).name(), "starting");
    // The old process's exit starts the new one: not a crash.
    let effects = stopped(&mut sup, t0 + secs(1), ("web", 1, 143));
    assert_eq!(
        logs(&effects),
        [
            "web.1: Process exited with status 143",
            "web.1: Starting process with command `run-web`"
        ]
    );
    stopped(&mut sup, t0 + secs(1), ("web", 2, 143));
    assert!(
        replies(&sup.handle(
            t0 + secs(2),
            Input::Ready {
                slot: slot("web", 1),
                ip: LOCAL,
                everywhere: false,
            }
        ))
        .is_empty()
    );
    let effects = sup.handle(
        t0 + secs(2),
        Input::Ready {
            slot: slot("web", 2),
            ip: LOCAL,
            everywhere: false,
        },
    );
    assert_eq!(
        replies(&effects),
        [(3, Done("Restarting web.1, web.2... done".into()))]
    );
}

#[test]
fn a_restart_that_does_not_come_up_fails() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let target = Target::Dyno(slot("web", 1));
    control(&mut sup, t0, 4, Control::Restart(vec![target]));
    stopped(&mut sup, t0, ("web", 1, 143));
    // R10 for the new process, then its exit: the restart failed.
    let effects = sup.handle(t0 + BOOT, Input::Tick);
    assert_eq!(
        actions(&effects),
        [
            signal("web", 1, Signal::SIGKILL),
            signal("web", 2, Signal::SIGKILL)
        ]
    );
    let effects = sup.handle(t0 + BOOT, exited("web", 1, 137));
    assert_eq!(
        replies(&effects),
        [(
            4,
            Failed("restart failed: web.1 did not come up: web.1 crashed (exit 137)".into())
        )]
    );
}

#[test]
fn stop_of_a_type_answers_once_its_dynos_are_gone() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let effects = control(
        &mut sup,
        t0,
        5,
        Control::Stop(vec![Target::Type("worker".into())]),
    );
    assert_eq!(actions(&effects), [signal("worker", 1, Signal::SIGTERM)]);
    let effects = stopped(&mut sup, t0, ("worker", 1, 0));
    assert_eq!(
        replies(&effects),
        [(
            5,
            Done("Stopping worker.1... done, now running worker at 0".into())
        )]
    );
    assert_eq!(names(&sup), ["web.1", "web.2"]);
    // A type with no dynos left, and a dyno that does not exist, are refused.
    let effects = control(
        &mut sup,
        t0,
        6,
        Control::Stop(vec![Target::Type("worker".into())]),
    );
    assert_eq!(
        replies(&effects),
        [(
            6,
            Failed("worker has no dynos (start some with `hkrun scale worker=1`)".into())
        )]
    );
    let effects = control(
        &mut sup,
        t0,
        7,
        Control::Restart(vec![Target::Dyno(slot("web", 9))]),
    );
    assert_eq!(
        replies(&effects),
        [(
            7,
            Failed("no dyno web.9 is running (web runs web.1, web.2)".into())
        )]
    );
}

#[test]
fn control_waits_for_release_and_gives_way_to_a_stop() {
    let t0 = Instant::now();
    let mut sup = started(plan(true, RestartPolicy::Always), t0);
    let effects = control(&mut sup, t0, 1, scale(&["web=3"]));
    assert_eq!(
        replies(&effects),
        [(1, Failed("the release phase is still running".into()))]
    );
    sup.handle(t0, exited("release", 1, 0));
    control(&mut sup, t0, 2, Control::Restart(Vec::new()));
    // The app stops before the restart is done: the client hears so.
    let effects = sup.handle(t0, Input::Stop(StopRequest::Control));
    assert_eq!(logs(&effects)[0], "system: hkrun stop received");
    assert_eq!(
        replies(&effects),
        [(2, Failed("hkrun is stopping the app".into()))]
    );
    // Dynos already stopping on their own are covered by the app's grace.
    assert_eq!(sup.next_deadline(), Some(t0 + STOP_NOTICE));
    sup.handle(t0 + STOP_NOTICE, Input::Tick);
    assert_eq!(sup.next_deadline(), Some(t0 + GRACE));
    let effects = control(&mut sup, t0, 3, scale(&["web=1"]));
    assert_eq!(
        replies(&effects),
        [(3, Failed("hkrun is stopping the app".into()))]
    );
}

#[test]
fn a_stopped_dyno_waits_for_the_rest_of_its_group() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    control(
        &mut sup,
        t0,
        1,
        Control::Restart(vec![Target::Type("worker".into())]),
    );
    // `sh -c 'a; b'`: the shell has gone, its child still finishes its work.
    let effects = sup.handle(t0, exited("worker", 1, 143));
    assert_eq!(
        actions(&effects),
        [Effect::ScanGroup {
            slot: slot("worker", 1)
        }]
    );
    let left = |count| Input::GroupLeft {
        slot: slot("worker", 1),
        count,
    };
    assert!(sup.handle(t0, left(1)).is_empty());
    assert_eq!(sup.next_deadline(), Some(t0 + STRAGGLER_RESCAN));
    assert_eq!(
        actions(&sup.handle(t0 + STRAGGLER_RESCAN, Input::Tick)),
        [Effect::ScanGroup {
            slot: slot("worker", 1)
        }]
    );
    sup.handle(t0 + STRAGGLER_RESCAN, left(1));
    // At the grace, the group is killed; once it is empty the dyno starts again.
    let effects = sup.handle(t0 + GRACE, Input::Tick);
    assert!(actions(&effects).contains(&signal("worker", 1, Signal::SIGKILL)));
    let effects = sup.handle(t0 + GRACE, left(0));
    assert_eq!(actions(&effects)[0], spawn("worker", 1, 5100));
    assert_eq!(
        replies(&effects),
        [(1, Done("Restarting worker.1... done".into()))]
    );
}

#[test]
fn an_app_stop_while_a_group_drains_leaves_it_to_the_straggler_sweep() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    control(
        &mut sup,
        t0,
        1,
        Control::Stop(vec![Target::Type("worker".into())]),
    );
    sup.handle(t0, exited("worker", 1, 143));
    sup.handle(
        t0,
        Input::GroupLeft {
            slot: slot("worker", 1),
            count: 2,
        },
    );
    sup.handle(t0, Input::Stop(StopRequest::Control));
    assert_eq!(state(&sup, "worker", 1), DynoState::Down);
    sup.handle(t0, exited("web", 1, 143));
    let effects = sup.handle(t0, exited("web", 2, 143));
    assert_eq!(actions(&effects), [Effect::ScanStragglers]);
}

#[test]
fn overlapping_restarts_both_succeed() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let web1 = || Control::Restart(vec![Target::Dyno(slot("web", 1))]);
    control(&mut sup, t0, 1, web1());
    stopped(&mut sup, t0, ("web", 1, 143));
    // The new process is still booting when the second restart comes.
    control(&mut sup, t0, 2, web1());
    stopped(&mut sup, t0, ("web", 1, 143));
    let effects = sup.handle(
        t0,
        Input::Ready {
            slot: slot("web", 1),
            ip: LOCAL,
            everywhere: false,
        },
    );
    assert_eq!(
        replies(&effects),
        [
            (1, Done("Restarting web.1... done".into())),
            (2, Done("Restarting web.1... done".into()))
        ]
    );
}

#[test]
fn restarting_a_dyno_being_killed_for_r15() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    sup.handle(t0, Input::Memory(vec![(slot("worker", 1), 2 * QUOTA)]));
    let effects = control(
        &mut sup,
        t0,
        1,
        Control::Restart(vec![Target::Dyno(slot("worker", 1))]),
    );
    assert_eq!(
        logs(&effects),
        [
            "worker.1: Restarting",
            "worker.1: State changed from up to starting"
        ]
    );
    // No SIGTERM after the SIGKILL, and no grace to run out (only the webs' boot).
    assert!(actions(&effects).is_empty());
    assert_eq!(sup.next_deadline(), Some(t0 + BOOT));
    let effects = stopped(&mut sup, t0, ("worker", 1, 137));
    assert_eq!(actions(&effects)[0], spawn("worker", 1, 5100));
}

#[test]
fn new_dynos_stay_within_the_types_ports() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    control(&mut sup, t0, 1, scale(&["web=100"]));
    control(&mut sup, t0, 2, scale(&["web=0"]));
    // All 100 numbers are still stopping.
    let effects = control(&mut sup, t0, 3, scale(&["web=3"]));
    assert_eq!(
        replies(&effects),
        [(
            3,
            Failed("web has dynos still stopping; scale up again once they have stopped".into())
        )]
    );
    assert!(
        !actions(&effects)
            .iter()
            .any(|e| matches!(e, Effect::Spawn(_)))
    );
}

// Preboot: new web dynos first, traffic moved once all are up, then the old ones stop.

fn router_plan() -> AppPlan {
    let mut plan = plan(false, RestartPolicy::Always);
    let behind = Role::Web {
        behind_router: true,
    };
    plan.dynos[0].spec.port = Some(5001);
    plan.dynos[1].spec.port = Some(5002);
    plan.dynos[0].role = behind;
    plan.dynos[1].role = behind;
    plan.types[0].role = behind;
    AppPlan {
        router: Some(5000),
        router_address: None,
        preboot: true,
        ..plan
    }
}

/// The router's set with these dynos up.
fn routes(up: Vec<Backend>) -> Routes {
    Routes {
        up,
        web: WebState::default(),
    }
}

fn backend(kind: &str, index: u32, generation: u32, port: u16) -> Backend {
    Backend {
        slot: Slot {
            generation,
            ..slot(kind, index)
        },
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

fn ready(sup: &mut Supervisor, now: Instant, slot: Slot) -> Vec<Effect> {
    sup.handle(
        now,
        Input::Ready {
            slot,
            ip: LOCAL,
            everywhere: false,
        },
    )
}

#[test]
fn the_router_listens_on_loopback_and_widens_once_a_web_dyno_listens_everywhere() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new(router_plan());
    assert_eq!(
        logs(&sup.start(t0))[0],
        "system: router listening on http://127.0.0.1:5000 \u{2192} web.1, web.2"
    );
    let everywhere = |slot| Input::Ready {
        slot,
        ip: LOCAL,
        everywhere: true,
    };
    // On loopback only: the router stays there.
    let widen = |effects: &[Effect]| {
        effects
            .iter()
            .any(|e| matches!(e, Effect::WidenRouter { .. }))
    };
    assert!(!widen(&ready(&mut sup, t0, slot("web", 1))));
    let effects = sup.handle(t0, everywhere(slot("web", 2)));
    assert!(
        effects.contains(&Effect::WidenRouter { by: slot("web", 2) }),
        "{effects:?}"
    );
    // Once.
    sup.handle(t0, Input::Stop(StopRequest::Signal(Signal::SIGTERM)));
    let mut again = Supervisor::new(router_plan());
    again.start(t0);
    again.handle(t0, everywhere(slot("web", 1)));
    assert!(!widen(&again.handle(t0, everywhere(slot("web", 2)))));
    // An address the user chose is where it stays, and what its line says.
    let mut chosen = Supervisor::new(AppPlan {
        router_address: Some(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
        ..router_plan()
    });
    assert_eq!(
        logs(&chosen.start(t0))[0],
        "system: router listening on http://[::]:5000 \u{2192} web.1, web.2"
    );
    assert!(!widen(&chosen.handle(t0, everywhere(slot("web", 1)))));
}

#[test]
fn the_router_connects_where_readiness_saw_the_dyno_listen() {
    let t0 = Instant::now();
    let mut sup = started(router_plan(), t0);
    let v6 = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    let effects = sup.handle(
        t0,
        Input::Ready {
            slot: slot("web", 1),
            ip: v6,
            everywhere: false,
        },
    );
    let addr = SocketAddr::new(v6, 5001);
    assert_eq!(
        actions(&effects),
        [Effect::Routes(routes(vec![Backend {
            slot: slot("web", 1),
            addr
        }]))]
    );
}

#[test]
fn preboot_moves_traffic_once_every_new_dyno_is_up() {
    let t0 = Instant::now();
    let mut sup = started(router_plan(), t0);
    ready(&mut sup, t0, slot("web", 1));
    let effects = ready(&mut sup, t0, slot("web", 2));
    assert_eq!(
        actions(&effects),
        [Effect::Routes(routes(vec![
            backend("web", 1, 0, 5001),
            backend("web", 2, 0, 5002)
        ]))]
    );
    let web = || Control::Restart(vec![Target::Type("web".into())]);
    let effects = control(&mut sup, t0, 9, web());
    let new1 = slot("web", 1).next_generation();
    let new2 = slot("web", 2).next_generation();
    // New processes under the same names, on the next free ports of web's block.
    assert!(actions(&effects).contains(&Effect::Spawn(SpawnSpec {
        dyno: "web.1".into(),
        slot: new1.clone(),
        command: "run-web".into(),
        port: Some(5003),
        env: Vec::new(),
        terminal: false,
    })));
    assert!(actions(&effects).contains(&Effect::AwaitReady {
        slot: new2.clone(),
        port: 5004
    }));
    assert!(replies(&effects).is_empty());
    // A restart of some dynos changes no env.
    assert!(!effects.iter().any(|e| matches!(e, Effect::TakeEnv(_))));
    // A second restart or a scale waits for this one.
    let refused = control(&mut sup, t0, 10, web());
    assert_eq!(
        refused,
        [Effect::Reply {
            id: 10,
            outcome: Outcome::Refused(Refusal::PrebootUnderWay),
        }],
        "refused: only the reply"
    );
    // One new dyno up: nothing moves yet.
    assert!(actions(&ready(&mut sup, t0 + secs(1), new1.clone())).is_empty());
    // All up: the router gets the new set; the old dynos get SIGTERM once drained.
    let t2 = t0 + secs(2);
    let effects = ready(&mut sup, t2, new2.clone());
    assert_eq!(
        actions(&effects),
        [
            Effect::Routes(routes(vec![
                backend("web", 1, 1, 5003),
                backend("web", 2, 1, 5004)
            ])),
            Effect::AwaitDrained {
                slot: slot("web", 1),
                addr: backend("web", 1, 0, 5001).addr,
            },
            Effect::AwaitDrained {
                slot: slot("web", 2),
                addr: backend("web", 2, 0, 5002).addr,
            },
            Effect::Reply {
                id: 9,
                outcome: Outcome::Restarted {
                    dynos: vec![slot("web", 1), slot("web", 2)],
                    preboot: true,
                },
            },
        ]
    );
    assert_eq!(state(&sup, "web", 1).name(), "stopping");
    // Each old dyno's SIGTERM once the router says it is drained, at the latest its
    // grace after the switch.
    assert_eq!(sup.next_deadline(), Some(t2 + GRACE));
    let drained = |sup: &mut Supervisor, at, n| {
        let effects = sup.handle(
            at,
            Input::Drained {
                slot: slot("web", n),
            },
        );
        actions(&effects)
    };
    assert_eq!(
        drained(&mut sup, t2 + Duration::from_millis(150), 1),
        [signal("web", 1, Signal::SIGTERM)]
    );
    // Told twice: nothing more.
    assert!(drained(&mut sup, t2 + Duration::from_millis(160), 1).is_empty());
    let effects = sup.handle(t2 + GRACE, Input::Tick);
    assert_eq!(actions(&effects), [signal("web", 2, Signal::SIGTERM)]);
    assert!(drained(&mut sup, t2 + GRACE, 2).is_empty());
    let t3 = t2 + GRACE + secs(1);
    stopped(&mut sup, t3, ("web", 1, 143));
    stopped(&mut sup, t3, ("web", 2, 143));
    assert_eq!(names(&sup), ["worker.1", "web.1", "web.2"]);
    // The new generation is what `restart web.1` names now.
    let effects = control(
        &mut sup,
        t3,
        11,
        Control::Restart(vec![Target::Dyno(slot("web", 1))]),
    );
    assert!(
        actions(&effects)
            .iter()
            .any(|e| matches!(e, Effect::Spawn(s) if s.slot.generation == 2))
    );
}

/// Both web dynos of `router_plan` up, then `restart web` (request 9) a second later:
/// the supervisor, and when the preboot began.
fn prebooting_web() -> (Supervisor, Instant) {
    let t0 = Instant::now();
    let mut sup = started(router_plan(), t0);
    ready(&mut sup, t0, slot("web", 1));
    ready(&mut sup, t0, slot("web", 2));
    let t1 = t0 + secs(1);
    control(
        &mut sup,
        t1,
        9,
        Control::Restart(vec![Target::Type("web".into())]),
    );
    (sup, t1)
}

#[test]
fn a_preboot_whose_new_dyno_is_killed_at_r15_says_so() {
    let (mut sup, t1) = prebooting_web();
    let new1 = slot("web", 1).next_generation();
    let effects = sup.handle(t1, Input::Memory(vec![(new1, 4 * QUOTA)]));
    assert!(
        logs(&effects).contains(
            &"system: Preboot failed: the new web.1 was killed for using over twice its memory \
              quota (R15); the old dynos keep serving"
                .to_owned()
        ),
        "{:#?}",
        logs(&effects)
    );
}

#[test]
fn a_job_due_during_the_release_phase_is_skipped_and_said() {
    use crate::plan::schedule::{Frequency, Job};
    let t0 = Instant::now();
    let mut sup = started(
        AppPlan {
            scheduler: vec![Job {
                command: "tidy".into(),
                frequency: Frequency::EveryTenMinutes,
            }],
            ..plan(true, RestartPolicy::Always)
        },
        t0,
    );
    let effects = sup.handle(t0, Input::Scheduled { job: 0 });
    assert!(actions(&effects).is_empty());
    assert_eq!(
        logs(&effects),
        [
            "system: scheduler: `tidy` was due before the formation started (release phase): \
             this run is skipped"
        ]
    );
}

#[test]
fn a_preboot_whose_new_dyno_never_binds_keeps_the_old_ones() {
    let (mut sup, t1) = prebooting_web();
    let new1 = slot("web", 1).next_generation();
    let new2 = slot("web", 2).next_generation();
    ready(&mut sup, t1, new2.clone());
    // R10 for the new web.1: every new dyno is killed, no old one is touched.
    let effects = sup.handle(t1 + BOOT, Input::Tick);
    let signals: Vec<&Effect> = effects
        .iter()
        .filter(|e| matches!(e, Effect::SignalAll { .. }))
        .collect();
    assert_eq!(
        signals,
        [
            &Effect::SignalAll {
                slot: new1.clone(),
                signal: Signal::SIGKILL
            },
            &Effect::SignalAll {
                slot: new2.clone(),
                signal: Signal::SIGKILL
            }
        ]
    );
    assert!(logs(&effects).contains(
        &"system: Preboot failed: the new web.1 missed its boot timeout; the old dynos keep serving"
            .to_owned()
    ));
    assert_eq!(
        replies(&effects),
        [(
            9,
            Failed(
                "restart failed: the new web.1 missed its boot timeout; the old dynos keep serving"
                    .into()
            )
        )]
    );
    assert!(
        !actions(&effects)
            .iter()
            .any(|e| matches!(e, Effect::Routes(_)))
    );
    assert_eq!(state(&sup, "web", 1), DynoState::Up);
    // Their exits remove them and restart nothing.
    for new in [new1, new2] {
        let effects = sup.handle(
            t1 + BOOT,
            Input::Exited {
                slot: new.clone(),
                status: Exit::Signaled(Signal::SIGKILL),
            },
        );
        assert_eq!(actions(&effects), [Effect::ScanGroup { slot: new.clone() }]);
        sup.handle(
            t1 + BOOT,
            Input::GroupLeft {
                slot: new,
                count: 0,
            },
        );
    }
    assert_eq!(names(&sup), ["web.1", "web.2", "worker.1"]);
}

#[test]
fn a_new_web_size_restarts_web_preboot_style() {
    let t0 = Instant::now();
    let mut sup = started(router_plan(), t0);
    ready(&mut sup, t0, slot("web", 1));
    ready(&mut sup, t0, slot("web", 2));
    let effects = control(&mut sup, t0, 1, scale(&["web=2:standard-2x"]));
    assert_eq!(
        replies(&effects),
        [(
            1,
            Done("Scaling dynos... done, now running web at 2:Standard-2X".into())
        )]
    );
    // New dynos at the new size beside the old ones, which keep serving for now.
    let new = slot("web", 1).next_generation();
    assert!(actions(&effects).contains(&Effect::AwaitReady {
        slot: new.clone(),
        port: 5003
    }));
    assert!(
        !actions(&effects)
            .iter()
            .any(|e| matches!(e, Effect::Signal { .. }))
    );
    let quota = sup
        .dynos()
        .iter()
        .find(|d| *d.slot() == new)
        .map(|d| d.plan().quota);
    assert_eq!(quota, Some(1024 * MB));
}

#[test]
fn restarting_every_dyno_answers_once_the_preboot_is_done_too() {
    let t0 = Instant::now();
    let mut sup = started(router_plan(), t0);
    ready(&mut sup, t0, slot("web", 1));
    ready(&mut sup, t0, slot("web", 2));
    let effects = control(&mut sup, t0, 5, Control::Restart(Vec::new()));
    assert!(actions(&effects).contains(&signal("worker", 1, Signal::SIGTERM)));
    // The worker is back, but web's preboot is not done yet.
    let effects = stopped(&mut sup, t0, ("worker", 1, 0));
    assert!(replies(&effects).is_empty());
    ready(&mut sup, t0, slot("web", 1).next_generation());
    let effects = ready(&mut sup, t0, slot("web", 2).next_generation());
    assert_eq!(
        replies(&effects),
        [(5, Done("Restarting web.1, web.2, worker.1... done".into()))]
    );
}

#[test]
fn forwarded_signals_reach_each_running_dyno_once() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    crash(&mut sup, t0, "worker", 1, 1);
    crash(&mut sup, t0, "worker", 1, 1);
    // worker.1 waits to restart: nothing of it runs to get the signal.
    assert_eq!(
        sup.handle(t0, Input::Forward(Signal::SIGUSR1)),
        [
            group_signal("web", 1, Signal::SIGUSR1),
            group_signal("web", 2, Signal::SIGUSR1)
        ]
    );
}

#[test]
fn ctrl_c_stops_dynos_with_sigint_and_leftovers_get_sigterm() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let effects = sup.handle(t0, Input::Stop(StopRequest::Signal(Signal::SIGINT)));
    assert_eq!(
        logs(&effects)[1],
        "web.1: Stopping all processes with SIGINT"
    );
    assert_eq!(
        actions(&effects),
        vec![
            signal("web", 1, Signal::SIGINT),
            signal("web", 2, Signal::SIGINT),
            signal("worker", 1, Signal::SIGINT),
            Effect::SignalStragglers(Signal::SIGINT)
        ]
    );
    // A shell's `cmd &` child ignores SIGINT: what is left of a dyno's group gets SIGTERM
    // as soon as its leader exits, and stragglers once every leader has.
    for (kind, index) in [("web", 1), ("web", 2), ("worker", 1)] {
        let effects = actions(&sup.handle(t0, exited(kind, index, 0)));
        assert_eq!(effects[0], group_signal(kind, index, Signal::SIGTERM));
    }
    assert_eq!(
        sup.handle(t0, Input::Stragglers(1)),
        vec![Effect::SignalStragglers(Signal::SIGTERM)]
    );
    assert!(sup.handle(t0, Input::Stragglers(1)).is_empty());
    assert_eq!(sup.handle(t0, Input::Stragglers(0)), vec![Effect::Exit(0)]);
}

#[test]
fn sigterm_and_hkrun_stop_stop_dynos_with_sigterm() {
    for request in [
        StopRequest::Signal(Signal::SIGTERM),
        StopRequest::Signal(Signal::SIGHUP),
        StopRequest::Control,
        StopRequest::StdoutClosed,
    ] {
        let t0 = Instant::now();
        let mut sup = started(plan(false, RestartPolicy::Always), t0);
        let effects = actions(&sup.handle(t0, Input::Stop(request)));
        assert_eq!(effects[0], signal("web", 1, Signal::SIGTERM), "{request}");
        assert_eq!(
            effects.last(),
            Some(&Effect::SignalStragglers(Signal::SIGTERM))
        );
    }
}

#[test]
fn ctrl_z_pauses_every_dyno_then_hkrun_and_sigcont_resumes_them() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let effects = sup.handle(t0, Input::Pause);
    assert_eq!(
        logs(&effects),
        ["system: SIGTSTP received: pausing all processes with SIGSTOP"]
    );
    assert_eq!(
        actions(&effects),
        vec![
            group_signal("web", 1, Signal::SIGSTOP),
            group_signal("web", 2, Signal::SIGSTOP),
            group_signal("worker", 1, Signal::SIGSTOP),
            Effect::SignalStragglers(Signal::SIGSTOP),
            Effect::StopSelf
        ]
    );
    // A second Ctrl-Z while paused, and no timer while paused.
    assert!(sup.handle(t0, Input::Pause).is_empty());
    assert_eq!(sup.next_deadline(), None);
    let effects = sup.handle(t0 + secs(90), Input::Resume);
    assert_eq!(
        logs(&effects),
        ["system: Resuming all processes with SIGCONT (paused for 90.0s)"]
    );
    assert_eq!(
        actions(&effects),
        vec![
            group_signal("web", 1, Signal::SIGCONT),
            group_signal("web", 2, Signal::SIGCONT),
            group_signal("worker", 1, Signal::SIGCONT),
            Effect::SignalStragglers(Signal::SIGCONT),
        ]
    );
    // The SIGCONT that continued hkrun arrives after it has resumed: nothing more.
    assert!(sup.handle(t0 + secs(90), Input::Resume).is_empty());
}

#[test]
fn time_paused_does_not_count_toward_the_boot_timeout() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let paused = secs(600);
    sup.handle(t0 + secs(10), Input::Pause);
    // A tick already due when hkrun stopped does nothing while paused.
    assert!(sup.handle(t0 + BOOT, Input::Tick).is_empty());
    sup.handle(t0 + secs(10) + paused, Input::Resume);
    assert_eq!(sup.next_deadline(), Some(t0 + BOOT + paused));
    assert!(
        sup.handle(t0 + BOOT + paused - Duration::from_nanos(1), Input::Tick)
            .is_empty()
    );
    assert!(
        logs(&sup.handle(t0 + BOOT + paused, Input::Tick))[0].contains("Error R10 (Boot timeout)")
    );
}

#[test]
fn time_paused_does_not_count_toward_the_back_off_or_the_grace() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    // Two crashes: the second restart waits 1 s.
    crash(&mut sup, t0, "worker", 1, 1);
    crash(&mut sup, t0, "worker", 1, 1);
    assert_eq!(sup.next_deadline(), Some(t0 + secs(1)));
    sup.handle(t0, Input::Pause);
    sup.handle(t0 + secs(30), Input::Resume);
    assert_eq!(sup.next_deadline(), Some(t0 + secs(31)));
    let effects = actions(&sup.handle(t0 + secs(31), Input::Tick));
    assert_eq!(effects, vec![spawn("worker", 1, 5100)]);

    // Ctrl-Z while the app stops is ignored: the stop goes on.
    let t1 = t0 + secs(40);
    sup.handle(t1, Input::Stop(StopRequest::Signal(Signal::SIGTERM)));
    assert!(sup.handle(t1 + secs(1), Input::Pause).is_empty());
    assert!(
        logs(&sup.handle(t1 + GRACE, Input::Tick))
            .iter()
            .any(|l| l.contains("Error R12"))
    );
}

#[test]
fn what_happens_while_paused_is_timed_from_the_pause() {
    // As PID 1 hkrun runs on while the dynos are paused: web.1 crashes 50 s into a 100 s
    // pause. Its replacement is paused at once, and its boot timeout starts at the resume.
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    sup.handle(
        t0,
        Input::Ready {
            slot: slot("web", 2),
            ip: LOCAL,
            everywhere: false,
        },
    );
    sup.handle(t0 + secs(10), Input::Pause);
    let effects = actions(&crash(&mut sup, t0 + secs(60), "web", 1, 1));
    assert_eq!(
        effects,
        vec![
            spawn("web", 1, 5000),
            group_signal("web", 1, Signal::SIGSTOP),
            Effect::AwaitReady {
                slot: slot("web", 1),
                port: 5000
            }
        ]
    );
    sup.handle(t0 + secs(110), Input::Resume);
    assert_eq!(sup.next_deadline(), Some(t0 + secs(110) + BOOT));
    // The clock `hkrun ps` reads leaves the 100 s out too.
    assert_eq!(sup.clock(t0 + secs(110)), t0 + secs(10));
}

#[test]
fn a_release_that_ends_while_paused_starts_the_formation_paused() {
    let t0 = Instant::now();
    let mut sup = started(plan(true, RestartPolicy::Always), t0);
    sup.handle(t0, Input::Pause);
    let effects = actions(&sup.handle(t0 + secs(5), exited("release", 1, 0)));
    let stopped: Vec<_> = effects
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::Signal {
                    signal: Signal::SIGSTOP,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(stopped.len(), 3, "{effects:?}");
}

#[test]
fn a_stop_while_paused_resumes_the_dynos_first() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    sup.handle(t0, Input::Pause);
    // Control requests wait for the app to resume.
    let effects = sup.handle(
        t0,
        Input::Control {
            id: 1,
            request: Control::Restart(Vec::new()),
        },
    );
    assert!(matches!(
        &effects[..],
        [Effect::Reply {
            outcome: Outcome::Refused(Refusal::Paused),
            ..
        }]
    ));
    let effects = actions(&sup.handle(
        t0 + secs(5),
        Input::Stop(StopRequest::Signal(Signal::SIGTERM)),
    ));
    assert_eq!(
        effects[..7],
        [
            group_signal("web", 1, Signal::SIGCONT),
            group_signal("web", 2, Signal::SIGCONT),
            group_signal("worker", 1, Signal::SIGCONT),
            Effect::SignalStragglers(Signal::SIGCONT),
            signal("web", 1, Signal::SIGTERM),
            signal("web", 2, Signal::SIGTERM),
            signal("worker", 1, Signal::SIGTERM),
        ]
    );
}

#[test]
fn a_crash_is_replaced_only_once_what_its_run_left_is_gone() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let effects = sup.handle(t0, exited("worker", 1, 1));
    assert_eq!(
        actions(&effects),
        [Effect::ScanGroup {
            slot: slot("worker", 1)
        }]
    );
    // Something is left (a double fork, `setsid`): SIGTERM, and no new run yet.
    let left = |count| Input::GroupLeft {
        slot: slot("worker", 1),
        count,
    };
    let effects = sup.handle(t0, left(2));
    assert_eq!(
        logs(&effects),
        ["worker.1: Stopping remaining processes with SIGTERM"]
    );
    assert_eq!(actions(&effects), [signal("worker", 1, Signal::SIGTERM)]);
    assert_eq!(sup.next_deadline(), Some(t0 + STRAGGLER_RESCAN));
    let effects = sup.handle(t0 + STRAGGLER_RESCAN, Input::Tick);
    assert_eq!(
        actions(&effects),
        [Effect::ScanGroup {
            slot: slot("worker", 1)
        }]
    );
    assert!(actions(&sup.handle(t0 + STRAGGLER_RESCAN, left(1))).is_empty());
    // Still there at the grace: SIGKILL.
    let effects = sup.handle(t0 + GRACE, Input::Tick);
    assert!(
        logs(&effects).contains(&"worker.1: Stopping remaining processes with SIGKILL".to_owned()),
        "{effects:?}"
    );
    assert!(actions(&effects).contains(&signal("worker", 1, Signal::SIGKILL)));
    // Gone: the restart that was due at once happens now.
    let effects = sup.handle(t0 + GRACE, left(0));
    assert_eq!(actions(&effects), [spawn("worker", 1, 5100)]);
}

#[test]
fn restarting_a_finished_dyno_stops_what_its_run_left_first() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Never), t0);
    // Done for good: nothing is stopped until someone asks for a new run.
    let effects = sup.handle(t0, exited("worker", 1, 0));
    assert!(actions(&effects).is_empty(), "{effects:?}");
    let effects = control(
        &mut sup,
        t0,
        3,
        Control::Restart(vec![Target::Type("worker".into())]),
    );
    assert_eq!(
        actions(&effects),
        [
            signal("worker", 1, Signal::SIGTERM),
            Effect::ScanGroup {
                slot: slot("worker", 1)
            }
        ]
    );
    let effects = sup.handle(
        t0,
        Input::GroupLeft {
            slot: slot("worker", 1),
            count: 0,
        },
    );
    assert_eq!(actions(&effects)[0], spawn("worker", 1, 5100));
}

#[test]
fn a_preboot_after_a_failed_one_still_stopping_takes_a_generation_of_its_own() {
    let t0 = Instant::now();
    let mut sup = started(router_plan(), t0);
    ready(&mut sup, t0, slot("web", 1));
    ready(&mut sup, t0, slot("web", 2));
    let web = || Control::Restart(vec![Target::Type("web".into())]);
    control(&mut sup, t0, 1, web());
    // The new ones miss their boot timeout: killed, and not gone yet.
    sup.handle(t0 + BOOT, Input::Tick);
    let effects = control(&mut sup, t0 + BOOT, 2, web());
    let spawned: Vec<Slot> = actions(&effects)
        .iter()
        .filter_map(|e| match e {
            Effect::Spawn(spec) => Some(spec.slot.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(spawned.len(), 2, "{effects:?}");
    assert!(spawned.iter().all(|s| s.generation == 2), "{spawned:?}");
}

#[test]
fn what_turns_up_after_a_dynos_sigkill_is_killed_on_sight() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    control(&mut sup, t0, 1, scale(&["worker=0"]));
    // Past the grace: SIGKILL; the leader exits, and one process is still found.
    sup.handle(t0 + GRACE, Input::Tick);
    sup.handle(t0 + GRACE, exited("worker", 1, 137));
    let left = |count| Input::GroupLeft {
        slot: slot("worker", 1),
        count,
    };
    assert_eq!(
        actions(&sup.handle(t0 + GRACE, left(1))),
        [signal("worker", 1, Signal::SIGKILL)]
    );
    let effects = sup.handle(t0 + GRACE, left(0));
    assert_eq!(
        replies(&effects),
        [(
            1,
            Done("Scaling dynos... done, now running worker at 0:Standard-1X".into())
        )]
    );
}

#[test]
fn a_scale_up_takes_a_free_port_when_a_preboot_moved_a_dyno_onto_its_own() {
    let t0 = Instant::now();
    let mut sup = started(router_plan(), t0);
    ready(&mut sup, t0, slot("web", 1));
    ready(&mut sup, t0, slot("web", 2));
    control(&mut sup, t0, 1, scale(&["web=1"]));
    stopped(&mut sup, t0, ("web", 2, 143));
    // The preboot's new web.1 takes the first free port of the block: web.2's.
    let effects = control(&mut sup, t0, 2, Control::Restart(Vec::new()));
    let new = actions(&effects)
        .into_iter()
        .find_map(|e| match e {
            Effect::Spawn(spec) => spec.port,
            _ => None,
        })
        .expect("a new web.1");
    ready(&mut sup, t0, slot("web", 1).next_generation());
    let effects = control(&mut sup, t0, 3, scale(&["web=2"]));
    let web2 = actions(&effects)
        .into_iter()
        .find_map(|e| match e {
            Effect::Spawn(spec) if spec.slot == slot("web", 2) => spec.port,
            _ => None,
        })
        .expect("a new web.2");
    // No other process of the app, the old web.1 still leaving nor the new, holds it.
    let others: Vec<u16> = sup
        .dynos()
        .iter()
        .filter(|d| *d.slot() != slot("web", 2))
        .filter_map(|d| d.plan().spec.port)
        .collect();
    assert!(
        !others.contains(&web2),
        "web.2 on {web2}, held: {others:?} (new web.1 on {new})"
    );
}

// Ports of new web dynos are probed before a request changes anything.

/// The ports a request asks to probe, if it does.
fn probe(effects: &[Effect]) -> Option<(u64, Vec<u16>)> {
    match effects {
        [Effect::ProbePorts { id, ports }] => Some((*id, ports.clone())),
        _ => None,
    }
}

#[test]
fn a_scale_whose_web_port_is_taken_is_refused_and_changes_nothing() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let before = names(&sup);
    let effects = sup.handle(
        t0,
        Input::Control {
            id: 1,
            request: scale(&["web=3", "worker=2"]),
        },
    );
    // Only web's new dyno has a port worth probing; nothing started yet.
    assert_eq!(probe(&effects), Some((1, vec![5002])));
    assert_eq!(names(&sup), before);
    let effects = sup.handle(
        t0,
        Input::PortsProbed {
            id: 1,
            taken: vec![5002],
        },
    );
    assert_eq!(
        effects,
        [Effect::Reply {
            id: 1,
            outcome: Outcome::Refused(Refusal::PortInUse {
                port: 5002,
                dyno: slot("web", 3),
            }),
        }]
    );
    assert_eq!(names(&sup), before);
}

#[test]
fn a_scale_with_free_ports_goes_ahead_once_probed() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let effects = sup.handle(
        t0,
        Input::Control {
            id: 1,
            request: scale(&["web=3"]),
        },
    );
    assert_eq!(probe(&effects), Some((1, vec![5002])));
    let effects = sup.handle(
        t0,
        Input::PortsProbed {
            id: 1,
            taken: vec![],
        },
    );
    assert!(actions(&effects).contains(&spawn("web", 3, 5002)));
    assert_eq!(
        replies(&effects),
        [(
            1,
            Done("Scaling dynos... done, now running web at 3:Standard-1X".into())
        )]
    );
    // A scale of workers only has no port to probe.
    let effects = sup.handle(
        t0,
        Input::Control {
            id: 2,
            request: scale(&["worker=2"]),
        },
    );
    assert_eq!(probe(&effects), None);
    assert!(actions(&effects).contains(&spawn("worker", 2, 5101)));
}

#[test]
fn a_signalled_restart_whose_preboot_port_is_taken_is_logged() {
    let t0 = Instant::now();
    let mut sup = started(router_plan(), t0);
    ready(&mut sup, t0, slot("web", 1));
    ready(&mut sup, t0, slot("web", 2));
    let effects = sup.handle(
        t0,
        Input::Control {
            id: SIGNALLED,
            request: Control::Restart(Vec::new()),
        },
    );
    assert_eq!(probe(&effects), Some((SIGNALLED, vec![5003, 5004])));
    let effects = sup.handle(
        t0,
        Input::PortsProbed {
            id: SIGNALLED,
            taken: vec![5004],
        },
    );
    assert_eq!(
        logs(&effects),
        [
            "system: SIGUSR2 restart refused: port 5004 for web.2 is already in use; stop what holds it and try again"
        ]
    );
    assert!(replies(&effects).is_empty());
}

#[test]
fn a_resize_that_adds_web_dynos_gives_the_preboot_other_ports() {
    let t0 = Instant::now();
    let mut sup = started(router_plan(), t0);
    ready(&mut sup, t0, slot("web", 1));
    ready(&mut sup, t0, slot("web", 2));
    let effects = control(&mut sup, t0, 1, scale(&["web=3:standard-2x"]));
    let ports: Vec<u16> = actions(&effects)
        .into_iter()
        .filter_map(|e| match e {
            Effect::Spawn(spec) => spec.port,
            _ => None,
        })
        .collect();
    // web.3 on its own port (5003), the new web.1 and web.2 past it.
    assert_eq!(ports, [5004, 5005, 5003]);
}

#[test]
fn a_stop_lets_held_back_output_go_once() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let running = crash(&mut sup, t0, "worker", 1, 1);
    assert!(!running.contains(&Effect::OutputMayBeDropped));
    let stop = sup.handle(t0, Input::Stop(StopRequest::Signal(Signal::SIGTERM)));
    assert_eq!(
        stop.iter()
            .filter(|e| **e == Effect::OutputMayBeDropped)
            .count(),
        1
    );
    let again = sup.handle(
        t0 + secs(1),
        Input::Stop(StopRequest::Signal(Signal::SIGINT)),
    );
    assert!(!again.contains(&Effect::OutputMayBeDropped));
}

/// The driver reads /proc off its loop: a scan's answer comes after other inputs.
#[test]
fn a_scan_answered_late_still_ends_the_drain_once() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let scan = Effect::ScanGroup {
        slot: slot("worker", 1),
    };
    assert!(actions(&sup.handle(t0, exited("worker", 1, 1))).contains(&scan));
    // A restart asked before the answer waits on the scan in flight, not a second one.
    let target = Target::Dyno(slot("worker", 1));
    let effects = control(&mut sup, t0, 1, Control::Restart(vec![target]));
    assert!(!effects.contains(&scan), "{effects:?}");
    let left = Input::GroupLeft {
        slot: slot("worker", 1),
        count: 0,
    };
    assert!(actions(&sup.handle(t0, left.clone())).contains(&spawn("worker", 1, 5100)));
    // A stray answer for the new run's dyno, which waits on nothing, changes nothing.
    assert!(sup.handle(t0, left).is_empty());
}

#[test]
fn a_scan_answered_after_the_app_stop_began_is_ignored() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    sup.handle(t0, exited("worker", 1, 1));
    sup.handle(t0, Input::Stop(StopRequest::Control));
    let left = Input::GroupLeft {
        slot: slot("worker", 1),
        count: 2,
    };
    assert!(sup.handle(t0, left).is_empty());
    assert_eq!(state(&sup, "worker", 1), DynoState::Down);
}

#[test]
fn two_straggler_scans_in_flight_are_answered_in_turn() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    sup.handle(t0, Input::Stop(StopRequest::StdoutClosed));
    for (kind, index) in [("web", 1), ("web", 2), ("worker", 1)] {
        sup.handle(t0, exited(kind, index, 0));
    }
    // The first scan is not answered yet when a second request asks for another.
    let effects = sup.handle(t0 + SAME_REQUEST, Input::Stop(StopRequest::Control));
    assert_eq!(
        actions(&effects),
        [
            Effect::SignalStragglers(Signal::SIGKILL),
            Effect::ScanStragglers
        ]
    );
    assert_eq!(
        sup.handle(t0 + SAME_REQUEST, Input::Stragglers(1)),
        [Effect::SignalStragglers(Signal::SIGKILL)]
    );
    assert_eq!(
        sup.handle(t0 + SAME_REQUEST, Input::Stragglers(0)),
        [Effect::Exit(0)]
    );
}

#[test]
fn the_router_says_where_it_listens_first() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new(router_plan());
    let effects = sup.start(t0);
    assert_eq!(
        logs(&effects)[0],
        "system: router listening on http://127.0.0.1:5000 \u{2192} web.1, web.2"
    );
    let mut sup = Supervisor::new(plan(false, RestartPolicy::Always));
    let effects = sup.start(t0);
    assert!(!logs(&effects).iter().any(|l| l.contains("router")));
}

#[test]
fn a_scale_answers_once_its_dynos_are_gone_though_their_names_are_taken_again() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    assert!(replies(&control(&mut sup, t0, 1, scale(&["web=0"]))).is_empty());
    assert!(replies(&stopped(&mut sup, t0, ("web", 1, 143))).is_empty());
    // While web.2 still stops, another client scales web back up: a new web.1.
    let effects = control(&mut sup, t0, 2, scale(&["web=1"]));
    assert_eq!(actions(&effects)[0], spawn("web", 1, 5000));
    // The first answer waits for the web.1 and web.2 that left, not for the new web.1.
    let effects = stopped(&mut sup, t0, ("web", 2, 143));
    assert_eq!(
        replies(&effects),
        [(
            1,
            Done("Scaling dynos... done, now running web at 0:Standard-1X".into())
        )]
    );
}

/// `plan(false, Always)` with hkrun.toml's `[types.worker]` rules.
fn plan_with_worker(stop: StopRule, after: &[&str]) -> AppPlan {
    let mut plan = plan(false, RestartPolicy::Always);
    for d in plan
        .dynos
        .iter_mut()
        .filter(|d| d.spec.slot.kind == "worker")
    {
        d.stop = stop;
    }
    for t in plan.types.iter_mut().filter(|t| t.name == "worker") {
        t.stop = stop;
        t.after = after.iter().map(|a| a.to_string()).collect();
    }
    plan
}

#[test]
fn a_type_stops_with_its_own_signal_and_grace() {
    let t0 = Instant::now();
    let stop = StopRule {
        signal: Some(Signal::SIGQUIT),
        grace: Some(secs(2)),
    };
    let mut sup = started(plan_with_worker(stop, &[]), t0);
    // On its own (restart), and with the app.
    let effects = control(
        &mut sup,
        t0,
        1,
        Control::Restart(vec![Target::Type("worker".into())]),
    );
    assert_eq!(actions(&effects), [signal("worker", 1, Signal::SIGQUIT)]);
    assert!(logs(&effects).contains(&"worker.1: Stopping all processes with SIGQUIT".to_owned()));
    assert_eq!(sup.next_deadline(), Some(t0 + secs(2)));
    let effects = stopped(&mut sup, t0 + secs(1), ("worker", 1, 0));
    assert_eq!(actions(&effects)[0], spawn("worker", 1, 5100));

    let t1 = t0 + secs(10);
    let effects = sup.handle(t1, Input::Stop(StopRequest::Signal(Signal::SIGINT)));
    assert_eq!(
        actions(&effects),
        [
            signal("web", 1, Signal::SIGINT),
            signal("web", 2, Signal::SIGINT),
            signal("worker", 1, Signal::SIGQUIT),
            Effect::SignalStragglers(Signal::SIGINT)
        ]
    );
    sup.handle(t1 + STOP_NOTICE, Input::Tick);
    // The worker's grace ends first: only it is killed then.
    let effects = sup.handle(t1 + secs(2), Input::Tick);
    assert_eq!(
        logs(&effects),
        [
            "worker.1: Error R12 (Exit timeout) -> At least one process failed to exit within 2 seconds of SIGQUIT",
            "worker.1: Stopping remaining processes with SIGKILL"
        ]
    );
    assert_eq!(actions(&effects), [signal("worker", 1, Signal::SIGKILL)]);
    sup.handle(t1 + secs(2), exited("worker", 1, 137));
    // The app's grace is the longest, and the same-request window is measured from the
    // stop's start, whatever the graces.
    assert_eq!(sup.next_deadline(), Some(t1 + GRACE));
    let again = sup.handle(
        t1 + secs(3),
        Input::Stop(StopRequest::Signal(Signal::SIGINT)),
    );
    assert!(logs(&again).contains(&"system: SIGINT received again".to_owned()));
}

#[test]
fn a_type_after_another_starts_once_its_dynos_are_up() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new(plan_with_worker(StopRule::default(), &["web"]));
    let effects = sup.start(t0);
    assert!(logs(&effects).contains(&"system: worker starts once web is up".to_owned()));
    let spawned: Vec<Effect> = actions(&effects)
        .into_iter()
        .filter(|e| matches!(e, Effect::Spawn(_)))
        .collect();
    assert_eq!(spawned, [spawn("web", 1, 5000), spawn("web", 2, 5001)]);
    assert_eq!(state(&sup, "worker", 1), DynoState::Down);
    // A scale of a held type adds dynos that wait too.
    let effects = control(&mut sup, t0, 1, scale(&["worker=2"]));
    assert!(
        !actions(&effects)
            .iter()
            .any(|e| matches!(e, Effect::Spawn(_)))
    );
    let ready = |n| Input::Ready {
        slot: slot("web", n),
        ip: LOCAL,
        everywhere: false,
    };
    assert!(
        !actions(&sup.handle(t0 + secs(1), ready(1)))
            .iter()
            .any(|e| matches!(e, Effect::Spawn(_)))
    );
    let effects = sup.handle(t0 + secs(2), ready(2));
    assert!(logs(&effects).contains(&"system: starting worker".to_owned()));
    assert!(actions(&effects).contains(&spawn("worker", 1, 5100)));
    assert!(actions(&effects).contains(&spawn("worker", 2, 5101)));
    // Only the first start waits: a web crash later holds nothing back.
    let effects = crash(&mut sup, t0 + secs(3), "web", 1, 1);
    assert!(!logs(&effects).iter().any(|l| l.contains("worker")));
}

#[test]
fn postdeploy_runs_after_the_release_and_is_recorded_once_it_exits_0() {
    let t0 = Instant::now();
    let mut sup = Supervisor::new(AppPlan {
        postdeploy: Some("seed".into()),
        ..plan(true, RestartPolicy::Always)
    });
    sup.start(t0);
    let effects = sup.handle(t0, exited("release", 1, 0));
    let postdeploy = SpawnSpec {
        dyno: "postdeploy.1".into(),
        slot: slot("postdeploy", 1),
        command: "seed".into(),
        port: None,
        env: Vec::new(),
        terminal: false,
    };
    assert_eq!(actions(&effects), [Effect::Spawn(postdeploy)]);
    let effects = sup.handle(t0 + secs(1), exited("postdeploy", 1, 0));
    assert_eq!(
        actions(&effects)[..2],
        [
            Effect::Postdeployed {
                command: "seed".into()
            },
            spawn("web", 1, 5000)
        ]
    );

    // A failed one stops the app as a failed release does, and is not recorded.
    let mut sup = Supervisor::new(AppPlan {
        postdeploy: Some("seed".into()),
        ..plan(false, RestartPolicy::Always)
    });
    sup.start(t0);
    let effects = sup.handle(t0, exited("postdeploy", 1, 3));
    assert!(logs(&effects).contains(&"system: postdeploy failed (exit 3)".to_owned()));
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Postdeployed { .. }))
    );
    assert_eq!(sup.handle(t0, Input::Stragglers(0)), vec![Effect::Exit(3)]);
}

#[test]
fn a_scheduler_job_runs_as_a_one_off_and_never_twice_at_once() {
    use crate::plan::schedule::{Frequency, Job};
    let t0 = Instant::now();
    let mut sup = started(
        AppPlan {
            scheduler: vec![Job {
                command: "tidy".into(),
                frequency: Frequency::EveryTenMinutes,
            }],
            ..plan(false, RestartPolicy::Always)
        },
        t0,
    );
    let run = |n| SpawnSpec {
        dyno: slot("scheduler", n).to_string(),
        slot: slot("scheduler", n),
        command: "tidy".into(),
        port: None,
        env: Vec::new(),
        terminal: false,
    };
    let effects = sup.handle(t0, Input::Scheduled { job: 0 });
    assert_eq!(actions(&effects), [Effect::Spawn(run(1))]);
    assert_eq!(
        sup.scheduler().next().unwrap().1,
        Some(&slot("scheduler", 1))
    );
    // Due again while the first run goes on: skipped, and said so.
    let effects = sup.handle(t0 + secs(600), Input::Scheduled { job: 0 });
    assert!(actions(&effects).is_empty());
    assert_eq!(
        logs(&effects),
        ["system: scheduler: `tidy` is still running as scheduler.1: this run is skipped"]
    );
    // Its exit, even a failure, is no crash: nothing restarts, the app's exit code stays.
    let exit = exited("scheduler", 1, 1);
    let effects = exit_and_drain(&mut sup, t0 + secs(601), exit);
    assert_eq!(
        logs(&effects),
        [
            "scheduler.1: Process exited with status 1",
            "scheduler.1: State changed from up to complete"
        ]
    );
    assert!(effects.contains(&Effect::Forget {
        slot: slot("scheduler", 1)
    }));
    assert_eq!(sup.scheduler().next().unwrap().1, None);
    let effects = sup.handle(t0 + secs(1200), Input::Scheduled { job: 0 });
    assert_eq!(actions(&effects), [Effect::Spawn(run(2))]);
    // Not a target of `restart` with no type.
    let effects = control(&mut sup, t0 + secs(1201), 9, Control::Restart(Vec::new()));
    assert!(!logs(&effects).iter().any(|l| l.starts_with("scheduler")));
}

#[test]
fn kill_signals_the_named_dynos_groups_and_they_keep_running() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let glob = |g: &str| g.parse::<Target>().unwrap();
    let effects = control(
        &mut sup,
        t0,
        1,
        Control::Kill {
            targets: vec![glob("web.[2-9]"), glob("work*")],
            signal: Signal::SIGHUP,
        },
    );
    assert_eq!(
        actions(&effects),
        [
            group_signal("web", 2, Signal::SIGHUP),
            group_signal("worker", 1, Signal::SIGHUP),
            Effect::Reply {
                id: 1,
                outcome: Outcome::Signalled {
                    signal: "SIGHUP".into(),
                    dynos: vec![slot("web", 2), slot("worker", 1)],
                },
            }
        ]
    );
    assert_eq!(
        logs(&effects)[0],
        "web.2: Sending SIGHUP to the process group (hkrun kill)"
    );
    assert_eq!(state(&sup, "worker", 1), DynoState::Up);
    // A glob that matches nothing, and a stop with several targets, each named once.
    let effects = control(
        &mut sup,
        t0,
        2,
        Control::Kill {
            targets: vec![glob("clock*")],
            signal: Signal::SIGHUP,
        },
    );
    assert_eq!(
        replies(&effects),
        [(2, Failed("no dyno matches `clock*`".into()))]
    );
    let effects = control(
        &mut sup,
        t0,
        3,
        Control::Restart(vec![
            Target::Dyno(slot("web", 1)),
            glob("web*"),
            Target::Type("worker".into()),
        ]),
    );
    assert_eq!(
        actions(&effects),
        [
            signal("web", 1, Signal::SIGTERM),
            signal("web", 2, Signal::SIGTERM),
            signal("worker", 1, Signal::SIGTERM)
        ]
    );
}

#[test]
fn a_dyno_killed_at_its_own_grace_is_not_said_to_miss_the_apps() {
    let t0 = Instant::now();
    let stop = StopRule {
        signal: None,
        grace: Some(secs(2)),
    };
    let mut sup = started(plan_with_worker(stop, &[]), t0);
    sup.handle(t0, Input::Stop(StopRequest::Signal(Signal::SIGTERM)));
    sup.handle(t0 + STOP_NOTICE, Input::Tick);
    let at_two = sup.handle(t0 + secs(2), Input::Tick);
    assert_eq!(actions(&at_two), [signal("worker", 1, Signal::SIGKILL)]);
    // The worker outlives even its SIGKILL for a while (a process in D state): at the
    // app's grace, only the web dynos get their R12.
    let at_grace = sup.handle(t0 + GRACE, Input::Tick);
    let r12: Vec<String> = logs(&at_grace)
        .into_iter()
        .filter(|l| l.contains("R12"))
        .collect();
    assert_eq!(r12.len(), 2, "{r12:?}");
    assert!(r12.iter().all(|l| l.starts_with("web.")), "{r12:?}");
    // Past the app's grace, no dyno's own grace is left to come.
    assert_eq!(sup.next_deadline(), None);
}

#[test]
fn a_reloads_env_is_taken_on_before_its_restart_and_never_when_it_is_refused() {
    let t0 = Instant::now();
    let mut sup = started(plan(false, RestartPolicy::Always), t0);
    let env: Arc<crate::plan::Vars> = Arc::new([("GREETING".to_owned(), "hi".to_owned())].into());
    // Refused (the app is paused): only the reply, the app's env unchanged.
    sup.handle(t0, Input::Pause);
    let refused = control(&mut sup, t0, 1, Control::Reload(Arc::clone(&env)));
    assert_eq!(
        refused,
        [Effect::Reply {
            id: 1,
            outcome: Outcome::Refused(Refusal::Paused),
        }]
    );
    sup.handle(t0, Input::Resume);
    // Taken on first: every spawn of the restart that follows gets it.
    let effects = control(&mut sup, t0, 2, Control::Reload(Arc::clone(&env)));
    assert_eq!(effects.first(), Some(&Effect::TakeEnv(env)));
    assert_eq!(
        effects
            .iter()
            .filter(|e| matches!(e, Effect::TakeEnv(_)))
            .count(),
        1
    );
    assert_eq!(
        logs(&effects)
            .iter()
            .filter(|l| l.ends_with(": Restarting"))
            .count(),
        3,
        "every dyno restarts: {effects:?}"
    );
}
