//! hkrun as PID 1 of a PID namespace (`unshare --pid --fork --mount-proc`), as in a
//! container. Needs root; skipped with a message elsewhere.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::harness::{
    App, Hk, PATIENCE, assert_none_left, eventually, free_base_port, tagged, tagged_command,
};

/// hkrun under `unshare`, with the test's tag, or `None` where namespaces are not allowed.
fn as_pid1(app: &App, args: &[&str]) -> Option<Hk> {
    let allowed = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        eprintln!("skipped: unshare --pid needs root");
        return None;
    }
    let tag = format!("pid1-{}", std::process::id());
    let mut command = tagged_command("unshare", app.path(), &tag);
    command
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(env!("CARGO_BIN_EXE_hkrun"))
        .args(args);
    Some(Hk::spawn(command))
}

/// hkrun's pid as seen from outside the namespace.
fn outer_pid(tag: &str) -> Pid {
    eventually("hkrun to run in its namespace", || {
        tagged(tag).into_iter().find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "hkrun")
        })
    })
}

fn zombies(tag: &str) -> usize {
    let needle = format!("HKRUN_TEST_TAG={tag}");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let path = e.path();
            let env = std::fs::read(path.join("environ")).unwrap_or_default();
            let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
            env.split(|&b| b == 0).any(|v| v == needle.as_bytes())
                && stat
                    .rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
        .count()
}

#[test]
fn as_pid1_orphans_are_reaped_signals_pass_on_and_sigterm_stops_everything() {
    let app = App::new(
        "orphans: for i in $(seq 50); do (sleep 0.2 &); done; echo spawned; exec sleep 1000\nstubborn: trap '' TERM; trap 'echo got USR1' USR1; echo stubborn; while :; do sleep 0.1; done\n",
    );
    let port = free_base_port().to_string();
    let Some(mut hk) = as_pid1(&app, &["start", "--no-timestamp", "-t", "2", "-p", &port]) else {
        return;
    };
    hk.wait_for_each(&["| spawned", "| stubborn"]);
    let hkrun = outer_pid(&hk.tag);
    // The 50 orphans end after 0.2 s, re-parented to hkrun, which reaps every one.
    std::thread::sleep(Duration::from_millis(500));
    eventually("no zombie left", || (zombies(&hk.tag) == 0).then_some(()));
    // SIGUSR1 is passed on to every dyno, once.
    signal::kill(hkrun, Signal::SIGUSR1).expect("signal hkrun");
    hk.wait_for("stubborn.1 | got USR1");
    // SIGTERM from outside the namespace, as `docker stop` sends it.
    let asked = Instant::now();
    signal::kill(hkrun, Signal::SIGTERM).expect("signal hkrun");
    hk.wait_for("stubborn.1 | Error R12 (Exit timeout)");
    let status = hk.wait_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "{status:?} {}\n{:?}",
        hk.stderr(),
        hk.seen
    );
    let usr1 = hk.seen.iter().filter(|l| l.ends_with("| got USR1")).count();
    assert_eq!(usr1, 1, "{:?}", hk.seen);
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < PATIENCE,
        "{took:?}"
    );
    assert_none_left(&hk.tag);
}
