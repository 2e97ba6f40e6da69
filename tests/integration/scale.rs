//! `hkrun scale` answers once the formation is what it says: the dynos leaving it are
//! gone, so the next request starts from there.

use std::time::Instant;

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
