//! `hkrun scale` answers once the formation is what it says: the dynos leaving it are
//! gone, so the next request starts from there.

use std::time::{Duration, Instant};

use hkrun::control::protocol::Ps;

use crate::harness::{App, Hk, client, free_base_port};

fn workers(app: &App) -> Vec<(String, String)> {
    let out = client(app.path(), &["ps", "--json"]);
    let ps: Ps = serde_json::from_str(&out.stdout).expect("ps --json");
    ps.dynos
        .into_iter()
        .filter(|d| d.name.starts_with("worker."))
        .map(|d| (d.name, d.state))
        .collect()
}

#[test]
fn scale_answers_once_the_dynos_leaving_are_gone() {
    // A worker that takes a second to clean up after SIGTERM.
    let app = App::new("worker: trap 'sleep 1; exit 0' TERM; while :; do sleep 0.1; done\n");
    let base = free_base_port().to_string();
    let mut hk = Hk::start(app.path(), &["start", "--no-timestamp", "-p", &base]);
    hk.wait_for("worker.1 | State changed from starting to up");
    let out = client(app.path(), &["scale", "worker=2"]);
    assert!(out.status.success(), "{} {}", out.stdout, out.stderr);
    let asked = Instant::now();
    let out = client(app.path(), &["scale", "worker=0"]);
    eprintln!(
        "scale worker=0 answered after {:?}: {}",
        asked.elapsed(),
        out.stdout.trim()
    );
    assert!(out.status.success(), "{} {}", out.stdout, out.stderr);
    assert_eq!(workers(&app), [], "the formation after `scale worker=0`");
    // The next request starts from an empty formation: worker.1 again.
    let out = client(app.path(), &["scale", "worker=1"]);
    assert!(out.status.success(), "{} {}", out.stdout, out.stderr);
    assert_eq!(workers(&app), [("worker.1".to_owned(), "up".to_owned())]);
    hk.stop_cleanly();
}

#[test]
fn a_thousand_dynos_start_answer_ps_and_stop_with_nothing_left() {
    let procfile: String = (0..10)
        .map(|t| format!("t{t}: exec sleep 1000\n"))
        .collect();
    let app = App::new(&procfile);
    let formation: Vec<String> = (0..10).map(|t| format!("t{t}=100")).collect();
    let base = free_base_port().to_string();
    let started = Instant::now();
    let mut hk = Hk::start(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "-p",
            &base,
            "-m",
            &formation.join(","),
        ],
    );
    let up = crate::harness::eventually("every dyno up", || {
        let out = client(app.path(), &["ps", "--json"]);
        let ps: Ps = serde_json::from_str(&out.stdout).ok()?;
        let up = ps.dynos.iter().filter(|d| d.state == "up").count();
        (up == 1000).then_some(ps)
    });
    eprintln!("1000 dynos up after {:?}", started.elapsed());
    assert_eq!(up.types.iter().map(|t| t.count).sum::<usize>(), 1000);
    let asked = Instant::now();
    let out = client(app.path(), &["ps"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.matches(": up ").count(), 1000, "{}", out.stdout);
    eprintln!("ps answered in {:?}", asked.elapsed());
    let asked = Instant::now();
    hk.stop_cleanly();
    let stop = asked.elapsed();
    eprintln!("stopped with nothing left after {stop:?}");
    // bench/scale.py measures it (BENCHMARKS.md); this bound is only against a stop that
    // grows with the square of the dynos again (over 10 s in a debug build).
    assert!(stop < Duration::from_secs(8), "the stop took {stop:?}");
    // One line says what the stop waits for, naming a few: never all thousand.
    assert!(
        hk.seen.iter().all(|line| line.len() < 400),
        "a line of {} bytes",
        hk.seen.iter().map(String::len).max().unwrap_or(0)
    );
}
