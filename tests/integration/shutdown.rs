//! Stopping: grace, escalation, second signals, and no process left behind.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::{App, Hk, assert_none_left, free_base_port};

fn start(procfile: &str, extra: &[&str]) -> (App, Hk) {
    let app = App::new(procfile);
    let base = free_base_port().to_string();
    let mut args = vec!["start", "--no-timestamp", "-p", &base];
    args.extend_from_slice(extra);
    let hk = Hk::start(app.path(), &args);
    (app, hk)
}

#[test]
fn a_dyno_trapping_term_gets_its_grace_and_cleans_up() {
    let (_app, mut hk) = start(
        "web: trap 'echo cleaning up; sleep 1; echo cleaned up; exit 0' TERM; echo ready; while :; do sleep 0.1; done\n",
        &["-t", "10"],
    );
    hk.wait_for("| ready");
    let asked = Instant::now();
    hk.signal(Signal::SIGTERM);
    let status = hk.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert!(
        asked.elapsed() < Duration::from_secs(9),
        "it waited for the whole grace"
    );
    assert!(
        hk.seen.iter().any(|l| l == "web.1  | cleaned up"),
        "{:?}",
        hk.seen
    );
    assert!(
        hk.seen
            .iter()
            .any(|l| l == "web.1  | Process exited with status 0"),
        "{:?}",
        hk.seen
    );
    assert!(!hk.seen.iter().any(|l| l.contains("R12")), "{:?}", hk.seen);
    assert_none_left(&hk.tag);
}

#[test]
fn a_dyno_ignoring_term_is_killed_at_the_timeout() {
    let (_app, mut hk) = start(
        "web: trap '' TERM; echo ready; while :; do sleep 0.1; done\n",
        &["-t", "1"],
    );
    hk.wait_for("| ready");
    let asked = Instant::now();
    hk.signal(Signal::SIGTERM);
    hk.wait_for("Error R12 (Exit timeout) -> At least one process failed to exit within 1 second of SIGTERM");
    let status = hk.wait_exit();
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert!(
        hk.seen
            .iter()
            .any(|l| l.contains("Stopping remaining processes with SIGKILL"))
    );
    assert_none_left(&hk.tag);
}

#[test]
fn background_children_are_stopped_with_their_group() {
    let (_app, mut hk) = start("web: sleep 1000 & sleep 1000 & echo ready; wait\n", &[]);
    hk.wait_for("| ready");
    hk.stop_cleanly();
}

#[test]
fn descendants_that_left_the_group_are_stopped_too() {
    // One escapee leaves with setsid; another also ignores SIGTERM, so only SIGKILL at the
    // end of the grace stops it.
    let (_app, mut hk) = start(
        "web: setsid sleep 1000 & setsid sh -c 'trap \"\" TERM; echo stubborn; while :; do sleep 0.1; done' & echo ready; exec sleep 1000\n",
        &["-t", "1"],
    );
    hk.wait_for_each(&["| ready", "| stubborn"]);
    hk.signal(Signal::SIGTERM);
    let status = hk.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", hk.stderr());
    assert_none_left(&hk.tag);
}

#[test]
fn a_second_sigint_kills_at_once() {
    let (_app, mut hk) = start(
        "web: trap '' TERM INT; echo ready; while :; do sleep 0.1; done\n",
        &["-t", "30"],
    );
    hk.wait_for("| ready");
    let asked = Instant::now();
    hk.signal(Signal::SIGINT);
    hk.wait_for("Stopping all processes with SIGINT");
    // A person's second Ctrl-C: signals closer than 100 ms count as one.
    std::thread::sleep(Duration::from_millis(200));
    hk.signal(Signal::SIGINT);
    hk.wait_for("SIGINT received again");
    assert_eq!(hk.wait_exit().code(), Some(0));
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert_none_left(&hk.tag);
}

#[test]
fn sighup_stops_the_app_too() {
    let (_app, mut hk) = start(
        "web: echo ready; exec sleep 1000\nworker: exec sleep 1000\n",
        &[],
    );
    hk.wait_for("| ready");
    hk.signal(Signal::SIGHUP);
    assert_eq!(hk.wait_exit().code(), Some(0));
    assert!(
        hk.seen
            .iter()
            .any(|l| l.starts_with("system") && l.ends_with("| SIGHUP received")),
        "{:?}",
        hk.seen
    );
    assert_none_left(&hk.tag);
}

#[test]
fn the_same_signal_twice_at_once_keeps_the_grace() {
    // `timeout` and `kill -- -PGID` deliver SIGTERM to hkrun twice in a row.
    let (_app, mut hk) = start(
        "web: trap 'sleep 0.5; echo cleaned up; exit 0' TERM; echo ready; while :; do sleep 0.1; done\n",
        &[],
    );
    hk.wait_for("| ready");
    hk.signal(Signal::SIGTERM);
    hk.signal(Signal::SIGTERM);
    assert_eq!(hk.wait_exit().code(), Some(0));
    assert!(
        hk.seen.iter().any(|l| l.ends_with("| cleaned up")),
        "{:?}",
        hk.seen
    );
    assert!(
        !hk.seen.iter().any(|l| l.contains("received again")),
        "{:?}",
        hk.seen
    );
    assert_none_left(&hk.tag);
}

#[test]
fn a_slow_stop_says_what_it_waits_for_and_how_to_skip_it() {
    let (_app, mut hk) = start(
        "slow: trap 'sleep 3; exit 0' INT TERM; echo ready; while :; do sleep 0.1; done\nquick: exec sleep 1000\n",
        &["-t", "10"],
    );
    hk.wait_for("slow.1  | ready");
    hk.signal(Signal::SIGINT);
    let line = hk.wait_for("| waiting up to");
    eprintln!("{line}");
    assert_eq!(
        line,
        "system  | waiting up to 9 seconds for slow.1; press Ctrl-C again to stop now"
    );
    assert_eq!(hk.wait_exit().code(), Some(0));
    assert_none_left(&hk.tag);
}
