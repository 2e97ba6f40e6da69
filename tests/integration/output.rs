//! What hkrun says besides the app's log: warnings on stderr, and commands whose stdout
//! has been closed.

use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use crate::harness::{
    App, Client, Hk, client, eventually, free_base_port, hkrun, unique_tag, wait_bounded,
};

/// Runs `hkrun ARGS` in `dir` with stdout a pipe nobody reads any more.
#[track_caller]
fn with_closed_stdout(dir: &std::path::Path, args: &[&str]) -> Client {
    let (read, write) = nix::unistd::pipe().expect("a pipe");
    drop(read);
    let mut command = hkrun(dir, args, &unique_tag());
    let err = tempfile::tempfile().expect("a temporary file");
    let mut child = command
        .stdout(Stdio::from(write))
        .stderr(err.try_clone().expect("clone"))
        .spawn()
        .expect("start hkrun");
    let status = wait_bounded(&mut child, &format!("hkrun {args:?}"));
    let mut stderr = String::new();
    let mut err = err;
    std::io::Seek::rewind(&mut err).expect("rewind");
    std::io::Read::read_to_string(&mut err, &mut stderr).expect("read stderr");
    Client {
        status,
        stdout: String::new(),
        stderr,
    }
}

/// `hkrun check | (exec 0<&-; sleep 1)` and the like: no panic, no message, exit 0 (as
/// ripgrep does), and the command still did what it was asked.
#[test]
fn a_closed_stdout_ends_each_command_quietly() {
    let app =
        App::new("worker: trap 'exit 0' TERM; echo $DYNO ready; while :; do sleep 0.1; done\n");
    let port = free_base_port().to_string();
    let out = with_closed_stdout(app.path(), &["check", "-p", &port]);
    let mut results = vec![("check", out.status.code(), out.stderr)];

    let mut hk = Hk::start(app.path(), &["start", "--no-timestamp", "-p", &port]);
    hk.wait_for("worker.1 ready");
    for args in [
        &["ps"][..],
        &["ps", "--json"],
        &["logs"],
        &["scale", "worker=2"],
        &["restart", "worker.2"],
        &["stop", "worker.2"],
    ] {
        let out = with_closed_stdout(app.path(), args);
        results.push((args[0], out.status.code(), out.stderr));
    }
    // Each change was made all the same (the dyno's own line may come after hkrun's).
    hk.wait_for_each(&["worker.2 ready", "worker.2 | Restarting"]);
    let out = client(app.path(), &["ps", "--json"]);
    assert!(
        out.stdout.contains("worker.1") && !out.stdout.contains("worker.2"),
        "{}",
        out.stdout
    );
    let out = with_closed_stdout(app.path(), &["stop"]);
    results.push(("stop (the app)", out.status.code(), out.stderr));
    let status = hk.wait_exit();
    for (what, code, stderr) in &results {
        eprintln!("closed stdout: {what}: exit {code:?}, stderr {stderr:?}");
    }
    for (what, code, stderr) in &results {
        assert_eq!((*code, stderr.as_str()), (Some(0), ""), "{what}");
    }
    assert_eq!(status.code(), Some(0));
}

/// Warnings reach stderr as `hkrun: warning: ...`, one line each, without any setting:
/// here the control socket's accept failing for want of descriptors (said once, not at
/// every retry), while `ps` is still served.
#[test]
fn warnings_are_shown_on_stderr_without_any_setting() {
    let app = App::new("worker: echo $DYNO ready; exec sleep 1000\n");
    let port = free_base_port().to_string();
    let tag = unique_tag();
    let mut sh = Command::new("sh");
    sh.args([
        "-c",
        "ulimit -n 40 && exec \"$0\" start --no-timestamp -p \"$1\"",
    ])
    .arg(env!("CARGO_BIN_EXE_hkrun"))
    .arg(&port)
    .current_dir(app.path())
    .env("HKRUN_TEST_TAG", &tag)
    .env("NO_COLOR", "1")
    .env_remove("HKRUN_LOG")
    .env_remove("RUST_LOG")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut hk = Hk::spawn(sh);
    hk.wait_for("worker.1 ready");
    // More idle clients than hkrun has descriptors left.
    let socket = app.file(".hkrun.sock");
    let idle: Vec<UnixStream> = (0..60)
        .map(|_| UnixStream::connect(&socket).expect("connect"))
        .collect();
    // Served all the same: the idle ones make room.
    let ps = eventually("ps to be answered", || {
        let out = client(app.path(), &["ps"]);
        out.status.success().then_some(out.stdout)
    });
    assert!(ps.contains("worker.1"), "{ps}");
    drop(idle);
    hk.stop_cleanly();
    let stderr = hk.stderr();
    eprintln!("stderr: {stderr:?}");
    assert_eq!(
        stderr,
        "hkrun: warning: cannot accept a control client: Too many open files (os error 24)\n"
    );
}

/// HKRUN_LOG, or else RUST_LOG, shows more than warnings, in the same form.
#[test]
fn rust_log_raises_verbosity() {
    let app = App::new("worker: true\n");
    let shown = |var: Option<(&str, &str)>| {
        // A socket left behind by a supervisor that was killed.
        drop(std::os::unix::net::UnixListener::bind(app.file(".hkrun.sock")).expect("bind"));
        let mut command = hkrun(app.path(), &["start", "--restart", "never"], &unique_tag());
        command.env_remove("HKRUN_LOG").env_remove("RUST_LOG");
        if let Some((name, value)) = var {
            command.env(name, value);
        }
        let mut hk = Hk::spawn(command);
        assert_eq!(hk.wait_exit().code(), Some(0));
        hk.stderr()
    };
    let quiet = shown(None);
    let rust_log = shown(Some(("RUST_LOG", "info")));
    let hkrun_log = shown(Some(("HKRUN_LOG", "info")));
    eprintln!("none: {quiet:?}\nRUST_LOG=info: {rust_log:?}\nHKRUN_LOG=info: {hkrun_log:?}");
    assert_eq!(quiet, "");
    let expected = format!(
        "hkrun: info: replacing a stale control socket (path={})\n",
        std::fs::canonicalize(app.path())
            .expect("canonical")
            .join(".hkrun.sock")
            .display()
    );
    assert_eq!(rust_log, expected);
    assert_eq!(hkrun_log, expected);
}
