//! Every event kind with the line it renders: a change of wording shows up here.

use std::net::{Ipv4Addr, SocketAddr};

use super::*;
use crate::supervisor::outcome::{DynoFailure, Outcome, RestartFailure, TypeCount, TypeSize};

fn web(n: u32) -> Slot {
    Slot::new("web", n)
}

/// One of each kind. The match below has no wildcard, so a new kind does not compile
/// until it is listed here with its line.
fn every_kind() -> Vec<Event> {
    let secs = Duration::from_secs;
    vec![
        Event::Launching {
            slot: web(1),
            command: "bundle exec puma".into(),
        },
        Event::SpawnFailed {
            slot: web(1),
            error: "No such file or directory (os error 2)".into(),
        },
        Event::StateChanged {
            slot: web(1),
            from: Shown::Starting,
            to: Shown::Up,
        },
        Event::Exited {
            slot: web(1),
            code: 143,
        },
        Event::CrashLooping {
            slot: web(1),
            code: 1,
            delay: secs(4),
            crashes: 3,
        },
        Event::RestartingIn {
            slot: web(1),
            delay: secs(1),
            crashes: 2,
        },
        Event::Restarting { slot: web(1) },
        Event::MemoryUsage {
            slot: web(1),
            rss: 600 << 20,
            quota: 512 << 20,
        },
        Event::MemoryQuotaExceeded { slot: web(1) },
        Event::MemoryQuotaVastlyExceeded { slot: web(1) },
        Event::BootTimeout {
            slot: web(1),
            timeout: secs(60),
        },
        Event::ExitTimeout {
            slot: web(1),
            grace: Duration::from_millis(1500),
            signal: Signal::SIGTERM,
        },
        Event::StoppingAll {
            slot: web(1),
            signal: Signal::SIGTERM,
        },
        Event::Killing { slot: web(1) },
        Event::StoppingRemaining {
            slot: web(1),
            signal: Signal::SIGKILL,
        },
        Event::SignalSent {
            slot: web(1),
            signal: Signal::SIGHUP,
        },
        Event::RouterListening {
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, 5000)),
            web: vec![web(1), web(2)],
        },
        Event::Held {
            kind: "web".into(),
            after: vec!["db".into(), "redis".into()],
        },
        Event::StartingHeld { kind: "web".into() },
        Event::ScheduledSkipped {
            command: "rake cleanup".into(),
            why: Skipped::Releasing,
        },
        Event::DeployStepFailed {
            kind: "release".into(),
            code: 1,
        },
        Event::CrashStopsApp {
            slot: web(1),
            code: 1,
        },
        Event::NoneLeft { code: 0 },
        Event::StopReceived {
            request: StopRequest::Signal(Signal::SIGINT),
            again: false,
        },
        Event::StillWaiting {
            left: secs(29),
            dynos: vec![web(1)],
            more: 4,
            signal: Signal::SIGINT,
        },
        Event::SignalledRestartRefused(Refusal::PortInUse {
            port: 5002,
            dyno: web(3),
        }),
        Event::Pausing,
        Event::Resuming {
            paused: Duration::from_millis(2345),
        },
        Event::PrebootStarting {
            old: vec![web(1), web(2)],
        },
        Event::PrebootSwitched {
            new: vec![web(1), web(2)],
        },
        Event::PrebootFailed(PrebootFailure::BootTimeout { dyno: web(2) }),
    ]
}

/// Where each kind is in `every_kind`; no wildcard, on purpose.
fn place(event: &Event) -> usize {
    match event {
        Event::Launching { .. } => 0,
        Event::SpawnFailed { .. } => 1,
        Event::StateChanged { .. } => 2,
        Event::Exited { .. } => 3,
        Event::CrashLooping { .. } => 4,
        Event::RestartingIn { .. } => 5,
        Event::Restarting { .. } => 6,
        Event::MemoryUsage { .. } => 7,
        Event::MemoryQuotaExceeded { .. } => 8,
        Event::MemoryQuotaVastlyExceeded { .. } => 9,
        Event::BootTimeout { .. } => 10,
        Event::ExitTimeout { .. } => 11,
        Event::StoppingAll { .. } => 12,
        Event::Killing { .. } => 13,
        Event::StoppingRemaining { .. } => 14,
        Event::SignalSent { .. } => 15,
        Event::RouterListening { .. } => 16,
        Event::Held { .. } => 17,
        Event::StartingHeld { .. } => 18,
        Event::ScheduledSkipped { .. } => 19,
        Event::DeployStepFailed { .. } => 20,
        Event::CrashStopsApp { .. } => 21,
        Event::NoneLeft { .. } => 22,
        Event::StopReceived { .. } => 23,
        Event::StillWaiting { .. } => 24,
        Event::SignalledRestartRefused(_) => 25,
        Event::Pausing => 26,
        Event::Resuming { .. } => 27,
        Event::PrebootStarting { .. } => 28,
        Event::PrebootSwitched { .. } => 29,
        Event::PrebootFailed(_) => 30,
    }
}

const EVERY_KIND: &str = "\
web.1: Starting process with command `bundle exec puma`
web.1: Failed to start process: No such file or directory (os error 2)
web.1: State changed from starting to up
web.1: Process exited with status 143
web.1: Process exited with status 1; restarting in 4 seconds (3 crashes in a row)
web.1: Restarting in 1 second (2 crashes in a row)
web.1: Restarting
web.1: Process running mem=600M(117.2%)
web.1: Error R14 (Memory quota exceeded)
web.1: Error R15 (Memory quota vastly exceeded)
web.1: Error R10 (Boot timeout) -> Web process failed to bind to $PORT within 60 seconds of launch
web.1: Error R12 (Exit timeout) -> At least one process failed to exit within 1.5 seconds of SIGTERM
web.1: Stopping all processes with SIGTERM
web.1: Stopping process with SIGKILL
web.1: Stopping remaining processes with SIGKILL
web.1: Sending SIGHUP to the process group (hkrun kill)
hkrun: router listening on http://127.0.0.1:5000 \u{2192} web.1, web.2
hkrun: web starts once db and redis are up
hkrun: starting web
hkrun: scheduler: `rake cleanup` was due before the formation started (release phase): this run is skipped
hkrun: release failed (exit 1)
hkrun: web.1 exited with status 1: stopping the app
hkrun: no dyno is left running: stopping (exit 0)
hkrun: SIGINT received
hkrun: waiting up to 29 seconds for web.1 and 4 more; press Ctrl-C again to stop now
hkrun: SIGUSR2 restart refused: port 5002 for web.3 is already in use; stop what holds it and try again
hkrun: SIGTSTP received: pausing all processes with SIGSTOP
hkrun: Resuming all processes with SIGCONT (paused for 2.3s)
hkrun: Preboot: starting new web.1, web.2 beside the running ones
hkrun: Preboot: new web.1, web.2 take new connections; stopping the old ones
hkrun: Preboot failed: the new web.2 missed its boot timeout; the old dynos keep serving
";

#[test]
fn every_event_kind_renders_as_heroku_and_hkrun_say_it() {
    let events = every_kind();
    let places: Vec<usize> = events.iter().map(place).collect();
    assert_eq!(
        places,
        (0..events.len()).collect::<Vec<_>>(),
        "one of each kind, in order"
    );
    let rendered: String = events
        .iter()
        .map(|event| match event.source() {
            Source::Dyno(slot) => format!("{slot}: {event}\n"),
            Source::System => format!("hkrun: {event}\n"),
        })
        .collect();
    assert_eq!(rendered, EVERY_KIND);
}

#[test]
fn a_second_stop_request_and_a_scheduler_run_still_going_say_so() {
    let again = Event::StopReceived {
        request: StopRequest::Control,
        again: true,
    };
    assert_eq!(again.to_string(), "hkrun stop received again");
    let skipped = Event::ScheduledSkipped {
        command: "rake cleanup".into(),
        why: Skipped::StillRunning(Slot::new("scheduler", 3)),
    };
    assert_eq!(
        skipped.to_string(),
        "scheduler: `rake cleanup` is still running as scheduler.3: this run is skipped"
    );
}

/// Every outcome as the client prints it.
#[test]
fn every_outcome_renders_as_the_client_prints_it() {
    let two = || vec![web(1), web(2)];
    let outcomes = [
        Outcome::Scaled {
            types: vec![TypeSize {
                name: "web".into(),
                count: 2,
                size: "Standard-1X".into(),
            }],
        },
        Outcome::Restarted {
            dynos: two(),
            preboot: true,
        },
        Outcome::Restarted {
            dynos: two(),
            preboot: false,
        },
        Outcome::Stopped {
            dynos: vec![web(2)],
            running: vec![TypeCount {
                name: "web".into(),
                count: 1,
            }],
        },
        Outcome::Signalled {
            signal: "SIGHUP".into(),
            dynos: two(),
        },
        Outcome::RestartFailed(RestartFailure::Preboot {
            why: PrebootFailure::Exited {
                dyno: web(1),
                code: 1,
            },
        }),
        Outcome::RestartFailed(RestartFailure::Dynos {
            dynos: vec![web(1), Slot::new("worker", 1)],
            failures: vec![
                DynoFailure::Crashed {
                    dyno: Slot::new("worker", 1),
                    code: Some(1),
                },
                DynoFailure::Left { dyno: web(1) },
            ],
        }),
        Outcome::Refused(Refusal::NoSuchDyno {
            dyno: web(3),
            running: two(),
        }),
        Outcome::Refused(Refusal::TooMany {
            name: "worker".into(),
            count: 101,
        }),
    ];
    let rendered: Vec<String> = outcomes.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        [
            "Scaling dynos... done, now running web at 2:Standard-1X",
            "Restarting web.1, web.2... done (preboot)",
            "Restarting web.1, web.2... done",
            "Stopping web.2... done, now running web at 1",
            "Sent SIGHUP to web.1, web.2",
            "restart failed: the new web.1 exited with status 1; the old dynos keep serving",
            "restart failed: web.1, worker.1 did not come up: worker.1 crashed (exit 1), web.1 left the formation",
            "no dyno web.3 is running (web runs web.1, web.2)",
            "101 worker dynos is more than the 100 a type may have (each type has a block of 100 ports)",
        ]
    );
    let done: Vec<bool> = outcomes.iter().map(Outcome::is_done).collect();
    assert_eq!(
        done,
        [true, true, true, true, true, false, false, false, false]
    );
    // On the wire, and back.
    for outcome in outcomes {
        let json = serde_json::to_string(&outcome).unwrap();
        assert_eq!(
            serde_json::from_str::<Outcome>(&json).unwrap(),
            outcome,
            "{json}"
        );
    }
}
