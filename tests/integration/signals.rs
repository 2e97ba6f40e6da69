//! Signals to dynos: `hkrun kill` sends any signal to dynos' groups and they keep running;
//! `restart`, `stop` and `kill` take several names and globs.

use crate::harness::{App, Hk, client, free_base_port, hkrun, unique_tag};

/// A dyno that says each signal it gets (and exits on SIGTERM), after `ready`.
const TELLS: &str = "exec hkrun-test-child trap HUP USR1 --exit-on TERM --prefix \"$DYNO \"";

fn start(app: &App, tag: &str) -> Hk {
    let port = free_base_port().to_string();
    let mut hk = Hk::spawn(hkrun(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "-m",
            "worker=2,clock=1",
            "-p",
            &port,
        ],
        tag,
    ));
    hk.wait_for_each(&["worker.1 | ready", "worker.2 | ready", "clock.1  | ready"]);
    hk
}

#[test]
fn kill_sends_a_signal_and_the_dynos_keep_running() {
    let app = App::new(&format!("worker: {TELLS}\nclock: {TELLS}\n"));
    let tag = unique_tag();
    let mut hk = start(&app, &tag);
    let out = client(app.path(), &["kill", "work*", "HUP"]);
    assert_eq!(
        out.stdout, "Sent SIGHUP to worker.1, worker.2\n",
        "{}",
        out.stderr
    );
    hk.wait_for_each(&[
        "worker.1 | worker.1 got SIGHUP",
        "worker.2 | worker.2 got SIGHUP",
    ]);
    let out = client(app.path(), &["kill", "-s", "usr1", "clock.1", "worker.2"]);
    assert_eq!(
        out.stdout, "Sent SIGUSR1 to clock.1, worker.2\n",
        "{}",
        out.stderr
    );
    hk.wait_for_each(&[
        "clock.1  | clock.1 got SIGUSR1",
        "worker.2 | worker.2 got SIGUSR1",
    ]);
    // Nobody stopped.
    let out = client(app.path(), &["ps", "--json"]);
    let ps: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let states: Vec<&str> = ps["dynos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["up", "up", "up"], "{}", out.stdout);
    // Refusals name what was wrong, in one line.
    for (args, says) in [
        (
            &["kill", "web", "HUP"][..],
            "hkrun: unknown process type `web`",
        ),
        (
            &["kill", "worker", "SIGNOPE"],
            "hkrun: bad signal `SIGNOPE`",
        ),
        (
            &["kill", "HUP"],
            "hkrun: bad value `HUP` for kill: name the dynos",
        ),
        (&["restart", "c*", "zz*"], "hkrun: no dyno matches `zz*`"),
    ] {
        let out = client(app.path(), args);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stderr.starts_with(says), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
    hk.stop_cleanly();
    crate::harness::assert_none_left(&tag);
}

#[test]
fn restart_and_stop_take_several_names_and_globs() {
    let app = App::new(&format!("worker: {TELLS}\nclock: {TELLS}\n"));
    let tag = unique_tag();
    let mut hk = start(&app, &tag);
    let out = client(app.path(), &["restart", "clock", "worker.[2]"]);
    assert!(out.status.success(), "{}", out.stderr);
    hk.wait_for_each(&[
        "clock.1  | clock.1 got SIGTERM",
        "worker.2 | worker.2 got SIGTERM",
    ]);
    let out = client(app.path(), &["stop", "w*.1", "clock"]);
    assert!(out.status.success(), "{}", out.stderr);
    let out = client(app.path(), &["ps", "--json"]);
    let ps: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let names: Vec<&str> = ps["dynos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["worker.2"], "{}", out.stdout);
    // worker.1 got SIGTERM once, from the stop; never from the restart.
    hk.wait_for("worker.1 | Process exited with status 0");
    let worker1: Vec<&String> = hk
        .seen
        .iter()
        .filter(|l| l.contains("worker.1 got"))
        .collect();
    assert_eq!(worker1.len(), 1, "{:?}", hk.seen);
    hk.stop_cleanly();
    crate::harness::assert_none_left(&tag);
}

#[test]
fn quiet_types_keep_their_events_and_their_logs_but_not_their_output() {
    let app =
        App::new("chatty: echo hello; exec sleep 1000\nworker: echo working; exec sleep 1000\n");
    let tag = unique_tag();
    let port = free_base_port().to_string();
    let mut hk = Hk::spawn(hkrun(
        app.path(),
        &["start", "--no-timestamp", "-q", "chatty", "-p", &port],
        &tag,
    ));
    hk.wait_for_each(&[
        "chatty.1 | State changed from starting to up",
        "worker.1 | working",
    ]);
    // `hkrun logs` has it all the same.
    crate::harness::eventually("chatty's line in the history", || {
        let out = client(app.path(), &["logs", "--ps", "chatty", "--source", "app"]);
        out.stdout.contains("hello").then_some(out.stdout)
    });
    hk.stop_cleanly();
    assert!(
        !hk.seen.iter().any(|l| l == "chatty.1 | hello"),
        "{:?}",
        hk.seen
    );
    assert!(
        hk.seen
            .iter()
            .any(|l| l.starts_with("chatty.1 | Process exited"))
    );
    // A type the Procfile lacks is refused.
    let (status, _, stderr) =
        crate::harness::run_to_end(app.path(), &["start", "-q", "chaty", "-p", &port]);
    assert_eq!(status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("unknown process type `chaty`"), "{stderr}");
}
