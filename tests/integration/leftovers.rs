//! What a dyno leaves behind when it is replaced: processes still in its group, and
//! descendants that left it (a double fork, `setsid`). Each replacement waits until they
//! are gone, as a stop of the app does.

use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::harness::{App, Hk, client, free_base_port, tagged};

/// Live processes of the test whose command line contains `needle`, dyno shells (whose
/// `-c` script holds every needle) aside.
fn pids(tag: &str, needle: &str) -> Vec<Pid> {
    tagged(tag)
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            // Not the shell or `setsid` that is about to exec it: a forked `sh -c` or
            // `setsid sleep 1003` has the needle in its command line for a moment.
            let launcher = ["/bin/sh", "sh ", "setsid "]
                .iter()
                .any(|l| cmdline.starts_with(l));
            cmdline.contains(needle) && !launcher
        })
        .collect()
}

fn running(tag: &str, needle: &str) -> usize {
    pids(tag, needle).len()
}

/// Which of `pids` are still alive (not zombies).
fn alive(tag: &str, old: &[Pid]) -> Vec<Pid> {
    let now = tagged(tag);
    old.iter()
        .copied()
        .filter(|pid| now.contains(pid))
        .collect()
}

fn start(procfile: &str, extra: &[&str]) -> (App, Hk) {
    let app = App::new(procfile);
    let base = free_base_port().to_string();
    let mut args = vec!["start", "--no-timestamp", "-t", "2", "-p", &base];
    args.extend_from_slice(extra);
    let hk = Hk::start(app.path(), &args);
    (app, hk)
}

/// Counts the `boot` lines `dyno` prints as it starts (hkrun says one line per restart
/// in a crash loop, at the crash) until there are `boots`, checking at each that the
/// processes named `needle` are at most `most`.
fn boots_with_at_most(hk: &mut Hk, dyno: &str, boots: usize, needle: &str, most: usize) {
    let own = format!("{dyno} | boot");
    let mut seen = 0;
    let mut peak = 0;
    while seen < boots {
        let line = hk.wait_for(&own);
        if line == own {
            seen += 1;
            let now = running(&hk.tag, needle);
            peak = peak.max(now);
        }
    }
    eprintln!("{boots} boots of {dyno}: at most {peak} `{needle}` alive at a boot");
    assert!(peak <= most, "{peak} `{needle}` alive at a boot");
}

#[test]
fn a_crash_loop_leaves_no_escaped_process_behind() {
    // Each run leaves one process in its group and one in a session of its own. The
    // back-off's 1 s, 2 s... are the supervision tests'; capped here, the loop is quick.
    let (_app, mut hk) = start(
        "crashy: echo boot; (sleep 1001 &); setsid sleep 1002 & sleep 0.3; exit 1\n",
        &["--restart-cap", "0.1"],
    );
    // Boots at about 0, 0.3, 0.7 and 1.1 s.
    boots_with_at_most(&mut hk, "crashy.1", 4, "sleep 100", 2);
    hk.wait_for("crashy.1 | Process exited with status 1; restarting in");
    let left = running(&hk.tag, "sleep 100");
    eprintln!("after 4 crashes: {left} `sleep 100x` alive");
    assert!(left <= 2, "{left} left");
    hk.stop_cleanly();
}

#[test]
fn restart_and_scale_down_stop_escaped_processes_first() {
    let (app, mut hk) = start(
        "worker: setsid sleep 1003 & (sleep 1004 &); exec sleep 1000\n",
        &[],
    );
    hk.wait_for("worker.1 | State changed from starting to up");
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(&hk.tag, "sleep 100") < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = pids(&hk.tag, "sleep 100");
    assert_eq!(before.len(), 3);
    let out = client(app.path(), &["restart", "worker"]);
    assert!(out.status.success(), "{} {}", out.stdout, out.stderr);
    // The old run's three are gone before the new run starts.
    let left = alive(&hk.tag, &before);
    eprintln!("after restart: {} of the old run's 3 alive", left.len());
    assert!(left.is_empty(), "{left:?} alive after the restart");
    let out = client(app.path(), &["scale", "worker=0"]);
    assert!(out.status.success(), "{} {}", out.stdout, out.stderr);
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(&hk.tag, "sleep 100") > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = running(&hk.tag, "sleep 100");
    eprintln!("after scale worker=0: {left} `sleep 100x` alive");
    assert_eq!(left, 0);
    hk.stop_cleanly();
}

#[test]
fn r15_kills_the_memory_of_escaped_processes_too() {
    // The dyno's child leaves its group and holds 150 MB; the dyno itself stays small.
    // Each R15 is a crash: the back-off is capped, as above.
    // Says `boot`, and its child leaves the group (setsid) and holds 150 MB.
    let app = App::new("hog: hkrun-test-child escape --hold 150\n");
    let base = free_base_port().to_string();
    let mut hk = Hk::start(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "-t",
            "2",
            "-m",
            "hog=1:64M",
            "--restart-cap",
            "0.1",
            "-p",
            &base,
        ],
    );
    // Each run names its two processes (`boot PID`, `escaped PID`), so the killed run's
    // are known however late this test reads the R15 line.
    let pid_in = |line: &str| -> Pid {
        let pid = line.rsplit(' ').next().and_then(|p| p.trim().parse().ok());
        Pid::from_raw(pid.unwrap_or_else(|| panic!("no pid in {line:?}")))
    };
    let mut run = vec![pid_in(&hk.wait_for("hog.1  | boot "))];
    for cycle in 1..=3 {
        hk.wait_for_each(&[
            "hog.1  | escaped ",
            "hog.1  | Error R15 (Memory quota vastly exceeded)",
        ]);
        let escaped = hk
            .seen
            .iter()
            .rev()
            .find(|l| l.contains("hog.1  | escaped "));
        run.push(pid_in(escaped.expect("seen")));
        let next = pid_in(&hk.wait_for("hog.1  | boot "));
        let left = alive(&hk.tag, &run);
        eprintln!(
            "R15 cycle {cycle}: {} of the killed run's {} processes alive at the restart",
            left.len(),
            run.len()
        );
        assert!(left.is_empty(), "{left:?} alive at restart {cycle}");
        run = vec![next];
    }
    hk.stop_cleanly();
}
