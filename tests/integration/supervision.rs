//! Supervision: restart policies and back-off, R10, R14/R15, and the log formats.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::{App, Hk, assert_none_left, free_base_port, payloads, run_to_end};

fn base() -> String {
    free_base_port().to_string()
}

#[test]
fn restart_never_waits_for_every_dyno_and_exits_with_the_failure() {
    let app =
        App::new("good: echo good says hi; sleep 0.5; exit 0\nbad: echo bad says hi; exit 3\n");
    let (status, lines, _) = run_to_end(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "--restart",
            "never",
            "-p",
            &base(),
        ],
    );
    assert_eq!(status.code(), Some(3), "{lines:?}");
    assert_eq!(
        payloads(&lines, "good.1")
            .iter()
            .filter(|l| **l == "good says hi")
            .count(),
        1
    );
    assert_eq!(
        payloads(&lines, "bad.1")
            .iter()
            .filter(|l| **l == "bad says hi")
            .count(),
        1
    );
    // hkrun waited for the slower dyno, which ended on its own.
    let good = payloads(&lines, "good.1");
    assert!(good.contains(&"Process exited with status 0"), "{lines:?}");
    assert!(good.contains(&"State changed from up to down"), "{lines:?}");
    assert!(
        payloads(&lines, "bad.1").contains(&"State changed from up to crashed"),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("Stopping all processes")),
        "{lines:?}"
    );
}

#[test]
fn on_failure_restarts_only_the_failing_dyno() {
    let app = App::new("ok: echo ok ran\nbad: echo bad ran; exit 3\n");
    let mut hk = Hk::start(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "--restart",
            "on-failure",
            "-p",
            &base(),
        ],
    );
    // The first restart is immediate, the second waits a second.
    for _ in 0..3 {
        hk.wait_for("bad.1  | bad ran");
    }
    hk.signal(Signal::SIGTERM);
    assert_eq!(hk.wait_exit().code(), Some(0));
    assert_eq!(
        payloads(&hk.seen, "ok.1")
            .iter()
            .filter(|l| **l == "ok ran")
            .count(),
        1
    );
    assert!(payloads(&hk.seen, "ok.1").contains(&"State changed from up to down"));
    assert_none_left(&hk.tag);
}

#[test]
fn a_crash_loop_backs_off_while_other_dynos_run_untouched() {
    let app =
        App::new("flappy: echo boot; sleep 0.3; exit 7\nsteady: echo steady up; exec sleep 1000\n");
    let mut hk = Hk::start(app.path(), &["start", "--no-timestamp", "-p", &base()]);
    let started = Instant::now();
    let cpu_before = hk.cpu_time();
    let mut boots = Vec::new();
    let end = started + Duration::from_secs(10);
    while let Some(line) = hk.next_line(end) {
        // Its own line: hkrun's fold into one per restart after the first.
        if line == "flappy.1 | boot" {
            boots.push(started.elapsed());
        }
    }
    let cpu = hk.cpu_time() - cpu_before;
    assert!(
        hk.child.try_wait().expect("try_wait").is_none(),
        "hkrun stopped"
    );
    // Boots at about 0, 0.3 (at once), 1.6 (+1 s), 3.9 (+2 s), 8.2 s (+4 s).
    let gaps: Vec<f64> = boots
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    assert!((4..=6).contains(&boots.len()), "boots at {boots:?}");
    assert!(gaps[0] < 0.9, "the first restart is immediate: {gaps:?}");
    assert!(
        gaps.windows(2).all(|w| w[1] > w[0] + 0.5),
        "gaps grow: {gaps:?}"
    );
    assert!(
        hk.seen
            .iter()
            .any(|l| l == "flappy.1 | Process exited with status 7; restarting in 2 seconds (3 crashes in a row)"),
        "{:?}",
        hk.seen
    );
    assert_eq!(
        hk.seen
            .iter()
            .filter(|l| l.starts_with("steady.1") && l.contains("Starting process"))
            .count(),
        1
    );
    assert!(
        cpu < Duration::from_secs(1),
        "hkrun used {cpu:?} of CPU in 10 s"
    );
    hk.stop_cleanly();
}

#[test]
fn a_web_dyno_that_never_binds_gets_r10() {
    let app = App::new("web: echo not listening; exec sleep 1000\n");
    let mut hk = Hk::start(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "--boot-timeout",
            "2",
            "-p",
            &base(),
        ],
    );
    let started = Instant::now();
    hk.wait_for("web.1  | Error R10 (Boot timeout) -> Web process failed to bind to $PORT within 2 seconds of launch");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    hk.wait_for("web.1  | Stopping process with SIGKILL");
    hk.wait_for("web.1  | Process exited with status 137");
    hk.wait_for("web.1  | State changed from starting to crashed");
    hk.wait_for("web.1  | State changed from crashed to starting");
    hk.stop_cleanly();
}

#[test]
fn a_web_dyno_is_up_once_it_listens() {
    let app = App::new("web: hkrun-test-child listen --delay 0.5\n");
    let mut hk = Hk::start(app.path(), &["start", "--no-timestamp", "-p", &base()]);
    hk.wait_for("web.1  | listening on 127.0.0.1:");
    hk.wait_for("web.1  | State changed from starting to up");
    hk.signal(Signal::SIGTERM);
    assert_eq!(hk.wait_exit().code(), Some(0));
}

#[test]
fn memory_over_quota_gives_r14_then_r15_and_a_restart() {
    // 8 MB more every 0.25 s, up to 320 MB.
    let app = App::new("hog: hkrun-test-child hold 320 --step 8 --every 0.25\n");
    let mut hk = Hk::start(
        app.path(),
        &["start", "--no-timestamp", "-m", "hog=1:64M", "-p", &base()],
    );
    let r14 = hk.wait_for("hog.1  | Error R14 (Memory quota exceeded)");
    let usage = hk.seen[hk.seen.len() - 2].clone();
    assert!(
        usage.starts_with("hog.1  | Process running mem="),
        "{usage} before {r14}"
    );
    hk.wait_for("hog.1  | Error R15 (Memory quota vastly exceeded)");
    hk.wait_for("hog.1  | Stopping process with SIGKILL");
    hk.wait_for("hog.1  | Process exited with status 137");
    hk.wait_for("hog.1  | State changed from crashed to starting");
    hk.stop_cleanly();
}

#[test]
fn memory_limit_off_leaves_the_dyno_alone() {
    let app = App::new("hog: hkrun-test-child hold 100\n");
    let mut hk = Hk::start(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "-m",
            "hog=1:16M",
            "--memory-limit",
            "hog=off",
            "-p",
            &base(),
        ],
    );
    hk.wait_for("hog.1  | holding");
    // Two samples' worth of time.
    let end = Instant::now() + Duration::from_millis(2500);
    while hk.next_line(end).is_some() {}
    assert!(
        !hk.seen
            .iter()
            .any(|l| l.contains("R14") || l.contains("R15")),
        "{:?}",
        hk.seen
    );
    hk.signal(Signal::SIGTERM);
    assert_eq!(hk.wait_exit().code(), Some(0));
}

#[test]
fn heroku_log_format() {
    let app = App::new("web: echo hello from web\n");
    let (status, lines, _) = run_to_end(
        app.path(),
        &[
            "start",
            "--restart",
            "never",
            "--log-format",
            "heroku",
            "-p",
            &base(),
        ],
    );
    assert!(status.success());
    let shape = regex::Regex::new(
        r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00 (app|heroku)\[(web\.1|system)\]: ",
    )
    .unwrap();
    for line in &lines {
        assert!(shape.is_match(line), "{line:?}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(" app[web.1]: hello from web")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(" heroku[web.1]: Process exited with status 0")),
        "{lines:?}"
    );
}

#[test]
fn json_log_format() {
    let app = App::new("web: printf 'hello \"json\"\\n\\377\\n'\n");
    let (status, lines, _) = run_to_end(
        app.path(),
        &[
            "start",
            "--restart",
            "never",
            "--log-format",
            "json",
            "-p",
            &base(),
        ],
    );
    assert!(status.success());
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    for object in &parsed {
        let keys: Vec<&str> = object
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["dyno", "line", "source", "ts"]);
        assert!(chrono::DateTime::parse_from_rfc3339(object["ts"].as_str().unwrap()).is_ok());
    }
    let app_lines: Vec<&str> = parsed
        .iter()
        .filter(|o| o["source"] == "app")
        .map(|o| o["line"].as_str().unwrap())
        .collect();
    assert_eq!(app_lines, ["hello \"json\"", "\u{fffd}"]);
    assert!(parsed.iter().any(|o| o["source"] == "heroku"
        && o["dyno"] == "web.1"
        && o["line"] == "Process exited with status 0"));
}
