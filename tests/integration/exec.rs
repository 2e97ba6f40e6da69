//! How a command is run: builtins and keywords run in `sh -c`, a simple command (quoted
//! operators and all) replaces the shell, so the app's own status and signals are the
//! dyno's; and the environment it gets.

use nix::sys::signal::Signal;

use crate::harness::{App, Hk, client, free_base_port, hkrun, payloads, raw_output, unique_tag};

#[test]
fn a_builtin_as_a_web_dyno_reports_its_own_status() {
    let app = App::new("web: exit 3\n");
    let port = free_base_port().to_string();
    let mut hk = Hk::start(
        app.path(),
        &["start", "--no-timestamp", "--restart", "never", "-p", &port],
    );
    let status = hk.wait_exit();
    let web = payloads(&hk.seen, "web.1");
    assert!(
        web.contains(&"Process exited with status 3"),
        "{:#?}",
        hk.seen
    );
    assert!(!web.iter().any(|l| l.contains("not found")), "{web:#?}");
    assert_eq!(status.code(), Some(3), "{}", hk.stderr());
}

#[test]
fn run_passes_a_builtins_status_through() {
    let app = App::new("web: true\n");
    let out = client(app.path(), &["run", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", out.stderr);
    assert!(!out.stderr.contains("not found"), "{}", out.stderr);
}

#[test]
fn run_execs_a_command_with_quoted_operators() {
    // The command's parent is hkrun itself when no shell stays in between.
    let app = App::new("web: true\n");
    let out = client(
        app.path(),
        &[
            "run",
            "python3 -c \"import os; print(open('/proc/%d/comm' % os.getppid()).read().strip())\"",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "hkrun", "{}", out.stderr);
}

/// A dyno that handles SIGTERM and SIGINT by cleaning up for a moment (0.3 s), then
/// saying `drained PID` and exiting 0.
const CLEANS_UP: &str = "worker: hkrun-test-child trap --exit-on TERM --exit-on INT --drain 0.3\n";

fn stopped_with(signal: Signal) {
    let app = App::new(CLEANS_UP);
    let mut hk = Hk::start(app.path(), &["start", "--no-timestamp"]);
    hk.wait_for("| ready");
    hk.signal(signal);
    let status = hk.wait_exit();
    let worker = payloads(&hk.seen, "worker.1");
    let cleaned = worker.iter().position(|l| l.starts_with("drained "));
    let exited = worker
        .iter()
        .position(|l| l.starts_with("Process exited with status"));
    assert!(
        cleaned.is_some() && exited.is_some() && cleaned < exited,
        "{:#?}",
        hk.seen
    );
    assert_eq!(
        worker[exited.unwrap_or_default()],
        "Process exited with status 0",
        "{:#?}",
        hk.seen
    );
    assert!(
        !hk.seen.iter().any(|l| l.contains("Terminated")),
        "{:#?}",
        hk.seen
    );
    assert_eq!(status.code(), Some(0), "{}", hk.stderr());
}

#[test]
fn an_app_stopped_with_sigterm_reports_its_own_status() {
    stopped_with(Signal::SIGTERM);
}

#[test]
fn an_app_stopped_with_ctrl_c_reports_its_own_status() {
    stopped_with(Signal::SIGINT);
}

/// A Python worker that writes without a newline or a flush, then waits.
const PARTIAL: &str = "worker: python3 -c \"import os, sys, time; \
    sys.stdout.write('unbuffered=%r' % os.environ.get('PYTHONUNBUFFERED')); time.sleep(60)\"\n";

#[test]
fn python_output_shows_without_a_newline_or_a_flush() {
    let app = App::new(PARTIAL);
    let mut start = hkrun(app.path(), &["start", "--no-timestamp"], &unique_tag());
    start.env_remove("PYTHONUNBUFFERED");
    let mut hk = Hk::spawn(start);
    hk.wait_for("worker.1 | unbuffered='1'");
    hk.stop_cleanly();
}

#[test]
fn pythonunbuffered_set_empty_in_an_env_file_stays_empty() {
    let app = App::new(
        "worker: python3 -c \"import os; \
         print('unbuffered=%r' % os.environ.get('PYTHONUNBUFFERED'), flush=True)\"\n",
    );
    app.write(".env", "PYTHONUNBUFFERED=\n");
    let args = ["start", "--no-timestamp", "--restart", "never"];
    let mut start = hkrun(app.path(), &args, &unique_tag());
    start.env_remove("PYTHONUNBUFFERED");
    let mut hk = Hk::spawn(start);
    hk.wait_for("worker.1 | unbuffered=''");
    assert_eq!(hk.wait_exit().code(), Some(0), "{}", hk.stderr());
}

#[test]
fn run_sets_pythonunbuffered_unless_hkruns_environment_does() {
    let app = App::new("web: true\n");
    let script = "import os; print(repr(os.environ.get('PYTHONUNBUFFERED')))";
    let args = ["run", "python3", "-c", script];
    let mut run = hkrun(app.path(), &args, &unique_tag());
    run.env_remove("PYTHONUNBUFFERED");
    let (status, out) = raw_output(run);
    assert_eq!(
        (status.code(), String::from_utf8_lossy(&out).trim()),
        (Some(0), "'1'")
    );
    let mut run = hkrun(app.path(), &args, &unique_tag());
    run.env("PYTHONUNBUFFERED", "yes");
    let (status, out) = raw_output(run);
    assert_eq!(
        (status.code(), String::from_utf8_lossy(&out).trim()),
        (Some(0), "'yes'")
    );
}

#[test]
fn the_example_app_stops_cleanly_on_ctrl_c() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    let read = |name: &str| std::fs::read_to_string(example.join(name)).expect("an example file");
    let app = App::new(&read("Procfile"));
    for name in ["release.py", "web.py", "worker.py"] {
        app.write(name, &read(name));
    }
    let port = free_base_port().to_string();
    let mut hk = Hk::start(app.path(), &["start", "--no-timestamp", "-p", &port]);
    hk.wait_for("job 1 done");
    let web_up = |seen: &[String]| {
        seen.iter()
            .any(|l| l.starts_with("web.1 ") && l.ends_with("State changed from starting to up"))
    };
    while !web_up(&hk.seen) {
        hk.wait_for("State changed from starting to up");
    }
    hk.signal(Signal::SIGINT);
    let status = hk.wait_exit();
    for name in ["web.1", "worker.1"] {
        let lines = payloads(&hk.seen, name);
        assert!(
            lines.contains(&"Process exited with status 0"),
            "{:#?}",
            hk.seen
        );
    }
    assert!(
        !hk.seen
            .iter()
            .any(|l| l.contains("Traceback") || l.contains("KeyboardInterrupt")),
        "{:#?}",
        hk.seen
    );
    assert_eq!(status.code(), Some(0), "{}", hk.stderr());
}
