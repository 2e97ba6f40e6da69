//! `hkrun check` and `hkrun run`.

use crate::harness::{App, run_to_end};

#[test]
fn check_names_the_types_and_plans_the_ports() {
    let app = App::new("release: rake db:migrate\nweb: bundle exec puma\nworker: sidekiq\n");
    let (status, lines, _) =
        run_to_end(app.path(), &["check", "-m", "web=2,worker=1", "-p", "6000"]);
    assert!(status.success());
    assert_eq!(
        lines,
        [
            "valid procfile detected (release, web, worker)",
            "release.1  release     rake db:migrate",
            "router     PORT=6000   (hkrun's router, in front of web)",
            "web.1      PORT=6001   bundle exec puma",
            "web.2      PORT=6002   bundle exec puma",
            "worker.1   PORT=6100   sidekiq",
        ]
    );
    // foreman's layout.
    let (_, lines, _) = run_to_end(
        app.path(),
        &["check", "-m", "web=2,worker=1", "-p", "6000", "--no-router"],
    );
    assert_eq!(lines[2], "web.1      PORT=6000   bundle exec puma");
    assert_eq!(lines[3], "web.2      PORT=6001   bundle exec puma");
}

#[test]
fn check_warns_about_duplicates_and_keeps_the_last() {
    let app = App::new("web: old\r\nworker: w\r\nweb: new\r\n");
    let (status, lines, stderr) = run_to_end(app.path(), &["check"]);
    assert!(status.success());
    assert_eq!(
        stderr,
        "hkrun: warning: Procfile:3: process type `web` is also defined on line 1; line 3 wins\n"
    );
    assert_eq!(lines[0], "valid procfile detected (web, worker)");
    assert_eq!(lines[2], "web.1      PORT=5001   new");
}

#[test]
fn check_refuses_junk() {
    let app = App::new("web: a\n<<<<<<< HEAD\n");
    let (status, lines, stderr) = run_to_end(app.path(), &["check"]);
    assert_eq!(status.code(), Some(65));
    assert!(lines.is_empty());
    assert_eq!(
        stderr,
        "hkrun: Procfile:2: not a process entry: <<<<<<< HEAD\n"
    );
}

#[test]
fn run_has_the_app_env_and_passes_exit_codes_through() {
    let app = App::new("web: echo web entry $DYNO\n");
    app.write(".env", "GREETING=hello\nPORT=7000\n");
    let (status, lines, _) = run_to_end(app.path(), &["run", "echo $GREETING $DYNO $PS $PORT"]);
    assert!(status.success());
    assert_eq!(lines, ["hello run.1 run.1 7000"]);

    let (_, lines, _) = run_to_end(app.path(), &["run", "web"]);
    assert_eq!(lines, ["web entry run.1"]);

    let (status, _, _) = run_to_end(app.path(), &["run", "sh", "-c", "exit 7"]);
    assert_eq!(status.code(), Some(7));

    let (status, _, _) = run_to_end(app.path(), &["run", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(status.code(), Some(143));

    let (status, _, stderr) = run_to_end(app.path(), &["run", "no-such-program-here", "x"]);
    assert_eq!(status.code(), Some(127));
    assert!(
        stderr.starts_with("hkrun: cannot run `no-such-program-here x`"),
        "{stderr}"
    );
}

#[test]
fn run_works_without_a_procfile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (status, lines, _) = run_to_end(dir.path(), &["run", "echo", "no procfile needed"]);
    assert!(status.success());
    assert_eq!(lines, ["no procfile needed"]);
}
