//! The control socket: `hkrun ps`, `scale`, `restart`, `stop` and `logs` against a running
//! supervisor, its refusals, the socket's lifetime, and clients that misbehave.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hkrun::control::protocol::{Ps, PsDyno, Response};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::harness::{
    App, Hk, PATIENCE, assert_none_left, client, eventually, free_base_port, hkrun, kill_tagged,
    payloads, unique_tag,
};

/// A dyno that says when it is ready and when SIGTERM reaches it.
const POLITE: &str = "trap 'echo $DYNO got TERM; exit 0' TERM; echo $DYNO ready on $PORT; while :; do sleep 0.1; done";

fn polite_app() -> App {
    App::new(&format!("worker: {POLITE}\nclock: {POLITE}\n"))
}

#[track_caller]
fn ps(dir: &Path) -> Ps {
    let out = client(dir, &["ps", "--json"]);
    assert!(out.status.success(), "ps failed: {}", out.stderr);
    serde_json::from_str(&out.stdout).expect("ps --json is JSON")
}

fn dyno<'a>(ps: &'a Ps, name: &str) -> Option<&'a PsDyno> {
    ps.dynos.iter().find(|d| d.name == name)
}

fn names(ps: &Ps) -> Vec<&str> {
    ps.dynos.iter().map(|d| d.name.as_str()).collect()
}

fn pid_of(ps: &Ps, name: &str) -> i32 {
    dyno(ps, name)
        .and_then(|d| d.pid)
        .unwrap_or_else(|| panic!("{name} has a pid in {ps:?}"))
}

fn alive(pid: i32) -> bool {
    signal::kill(Pid::from_raw(pid), None).is_ok()
}

/// Runs hkrun with these args; returns it once `needle` has been printed.
fn started(app: &App, args: &[&str], needle: &str) -> Hk {
    let mut hk = Hk::start(app.path(), args);
    hk.wait_for(needle);
    hk
}

/// How long a control connection may sit idle in the tests that wait that out: hkrun's
/// 10 s, shortened through its test knob (TESTING.md, Tests that control time). The 10 s
/// itself is tested on tokio's paused clock, in `control::server`.
const IDLE: Duration = Duration::from_secs(2);

/// `started`, with control connections closed after `IDLE`.
fn started_with_short_idle(app: &App, args: &[&str], needle: &str) -> Hk {
    let mut command = hkrun(app.path(), args, &unique_tag());
    command.env("HKRUN_TEST_CONTROL_IDLE_MS", IDLE.as_millis().to_string());
    let mut hk = Hk::spawn(command);
    hk.wait_for(needle);
    hk
}

#[test]
fn scale_up_and_down() {
    let app = polite_app();
    let base = free_base_port();
    let port = base.to_string();
    let mut hk = started(
        &app,
        &["start", "--no-timestamp", "-m", "worker=1", "-p", &port],
        "worker.1 ready",
    );

    let out = client(app.path(), &["scale", "worker=3", "clock+1"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "Scaling dynos... done, now running worker at 3:Standard-1X, clock at 1:Standard-1X\n"
    );
    hk.wait_for_each(&["worker.2 ready", "worker.3 ready", "clock.1 ready"]);
    let now = ps(app.path());
    assert_eq!(names(&now), ["worker.1", "worker.2", "worker.3", "clock.1"]);
    // Ports follow foreman's layout: worker is the first type, clock the second.
    let port_of = |name| dyno(&now, name).and_then(|d| d.port);
    assert_eq!(port_of("worker.3"), Some(base + 2));
    assert_eq!(port_of("clock.1"), Some(base + 100));
    assert!(now.dynos.iter().all(|d| d.state == "up" && d.pid.is_some()));
    let gone = [pid_of(&now, "worker.3"), pid_of(&now, "worker.2")];

    // `ps:scale` is the same command; removed dynos stop gracefully, highest first.
    let out = client(app.path(), &["ps:scale", "worker-2"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "Scaling dynos... done, now running worker at 1:Standard-1X\n"
    );
    hk.wait_for_each(&["worker.3 got TERM", "worker.2 got TERM"]);
    let after = eventually("worker.2 and worker.3 to leave ps", || {
        let now = ps(app.path());
        (names(&now) == ["worker.1", "clock.1"]).then_some(now)
    });
    assert_eq!(
        after
            .types
            .iter()
            .find(|t| t.name == "worker")
            .map(|t| t.count),
        Some(1)
    );
    eventually("the removed dynos' processes to end", || {
        gone.iter().all(|&pid| !alive(pid)).then_some(())
    });
    let stops: Vec<&String> = hk
        .seen
        .iter()
        .filter(|l| l.ends_with("Stopping all processes with SIGTERM"))
        .collect();
    assert!(stops[0].starts_with("worker.3"), "{stops:?}");
    assert!(stops[1].starts_with("worker.2"), "{stops:?}");

    // Scaling up again reuses the lowest free numbers.
    let out = client(app.path(), &["scale", "worker=2"]);
    assert!(out.status.success(), "{}", out.stderr);
    hk.wait_for("worker.2 ready");
    assert_eq!(names(&ps(app.path())), ["worker.1", "worker.2", "clock.1"]);
    hk.stop_cleanly();
}

#[test]
fn restart_a_dyno_then_a_type() {
    let app = App::new(&format!(
        "web: exec hkrun-test-child listen\nworker: {POLITE}\n"
    ));
    let port = free_base_port().to_string();
    let mut hk = started(
        &app,
        &[
            "start",
            "--no-timestamp",
            "-m",
            "web=1,worker=2",
            "-p",
            &port,
        ],
        "web.1    | State changed from starting to up",
    );
    let before = ps(app.path());

    let out = client(app.path(), &["restart", "worker.1"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "Restarting worker.1... done\n");
    let after = ps(app.path());
    assert_ne!(pid_of(&after, "worker.1"), pid_of(&before, "worker.1"));
    assert_eq!(pid_of(&after, "worker.2"), pid_of(&before, "worker.2"));
    assert!(!alive(pid_of(&before, "worker.1")));
    hk.wait_for_each(&["worker.1 | Restarting", "worker.1 | worker.1 got TERM"]);

    // A web restart (preboot, behind the router) returns only once the new dyno listens;
    // for a moment `ps` shows the old web.1 stopping above the new one.
    let out = client(app.path(), &["dyno:restart", "web"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "Restarting web.1... done (preboot)\n");
    let after_web = ps(app.path());
    let web = after_web
        .dynos
        .iter()
        .rfind(|d| d.name == "web.1")
        .expect("web.1");
    assert_eq!(web.state, "up");
    assert_ne!(web.pid, dyno(&before, "web.1").and_then(|d| d.pid));
    std::net::TcpStream::connect(("127.0.0.1", web.port.expect("a port")))
        .expect("the restarted web dyno accepts connections");

    // A whole type.
    let out = client(app.path(), &["ps:restart", "worker"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "Restarting worker.1, worker.2... done\n");
    let last = ps(app.path());
    assert_ne!(pid_of(&last, "worker.1"), pid_of(&after, "worker.1"));
    assert_ne!(pid_of(&last, "worker.2"), pid_of(&after, "worker.2"));
    hk.stop_cleanly();
}

#[test]
fn stop_a_type_then_the_app() {
    let app = polite_app();
    let port = free_base_port().to_string();
    let mut hk = started(
        &app,
        &[
            "start",
            "--no-timestamp",
            "-m",
            "worker=2,clock=1",
            "-p",
            &port,
        ],
        "Starting process",
    );
    hk.wait_for_each(&["worker.1 ready", "worker.2 ready", "clock.1 ready"]);
    let before = ps(app.path());
    let out = client(app.path(), &["stop", "worker"]);
    assert!(out.status.success(), "{}", out.stderr);
    // `stop` returns once they are gone.
    assert_eq!(
        out.stdout,
        "Stopping worker.1, worker.2... done, now running worker at 0\n"
    );
    assert_eq!(names(&ps(app.path())), ["clock.1"]);
    assert!(!alive(pid_of(&before, "worker.1")));
    assert!(!alive(pid_of(&before, "worker.2")));
    // The rest of the app runs on.
    assert!(hk.child.try_wait().expect("try_wait").is_none());
    assert!(alive(pid_of(&before, "clock.1")));

    let socket = app.file(".hkrun.sock");
    assert!(socket.exists());
    let out = client(app.path(), &["stop"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "Stopping all dynos...\nhkrun has stopped\n");
    assert_eq!(hk.wait_exit().code(), Some(0));
    assert!(hk.seen.iter().any(|l| l == "clock.1  | clock.1 got TERM"));
    assert!(!socket.exists(), "the socket is removed on exit");
    assert_none_left(&hk.tag);
}

#[test]
fn logs_last_lines_tail_and_filters() {
    let app = App::new(
        "counter: seq 1 300; exec sleep 1000\nticker: i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.05; done\n",
    );
    let port = free_base_port().to_string();
    let mut hk = started(
        &app,
        &["start", "--no-timestamp", "-p", &port],
        "counter.1 | 300",
    );
    hk.wait_for("ticker.1  | tick 3");

    let out = client(
        app.path(),
        &["logs", "-n", "5", "--ps", "counter", "--source", "app"],
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "counter.1 | 296\ncounter.1 | 297\ncounter.1 | 298\ncounter.1 | 299\ncounter.1 | 300\n"
    );
    // hkrun's own events only.
    let out = client(
        app.path(),
        &["logs", "--ps", "counter.1", "--source", "heroku"],
    );
    assert_eq!(
        out.stdout,
        "counter.1 | Starting process with command `seq 1 300; exec sleep 1000`\ncounter.1 | State changed from starting to up\n"
    );
    // Without -n: the last 100 lines of everything.
    let out = client(app.path(), &["logs"]);
    assert_eq!(out.stdout.lines().count(), 100);

    // --tail: what was there, then new lines as they come, none missed.
    let mut tail = hkrun(
        app.path(),
        &["logs", "--tail", "-n", "1", "--ps", "ticker"],
        &hk.tag,
    )
    .spawn()
    .expect("start logs --tail");
    let stdout = tail.stdout.take().expect("piped");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut ticks = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while ticks.len() < 20 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            let _ = tail.kill();
            let _ = tail.wait();
            panic!("logs --tail gave only {ticks:?} within {PATIENCE:?}");
        };
        let n: u32 = line
            .strip_prefix("ticker.1  | tick ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a tick line: {line:?}"));
        ticks.push(n);
    }
    let _ = tail.kill();
    let _ = tail.wait();
    assert_eq!(ticks.len(), 20);
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive: {ticks:?}"
    );
    hk.stop_cleanly();
}

#[test]
fn refusals_leave_the_formation_as_it_was() {
    let app = polite_app();
    let port = free_base_port().to_string();
    let mut hk = started(
        &app,
        &["start", "--no-timestamp", "-m", "worker=2", "-p", &port],
        "Starting process",
    );
    hk.wait_for_each(&["worker.1 ready", "worker.2 ready"]);
    let before = ps(app.path());
    let cases: [(&[&str], i32, &str); 7] = [
        (
            &["scale", "worker=3", "nope=1"],
            1,
            "hkrun: unknown process type `nope` (the Procfile has worker, clock)\n",
        ),
        (
            &["scale", "worker=two"],
            65,
            "hkrun: bad dyno count in `worker=two` (expected a whole number)\n",
        ),
        (
            &["scale", "worker"],
            65,
            "hkrun: bad scale change `worker` (expected TYPE=COUNT, TYPE+N, TYPE-N or TYPE=COUNT:SIZE, e.g. web=3, clock+1, web=2:standard-2x)\n",
        ),
        (
            &["scale", "clock=1", "worker-5"],
            1,
            "hkrun: cannot scale worker below 0 (it runs 2)\n",
        ),
        (
            &["scale", "release=1"],
            1,
            "hkrun: `release` is the release phase, not a dyno type\n",
        ),
        (
            &["restart", "worker.9"],
            1,
            "hkrun: no dyno worker.9 is running (worker runs worker.1, worker.2)\n",
        ),
        (
            &["stop", "clock"],
            1,
            "hkrun: clock has no dynos (start some with `hkrun scale clock=1`)\n",
        ),
    ];
    for (args, code, stderr) in cases {
        let out = client(app.path(), args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr, stderr, "{args:?}");
        assert_eq!(out.stdout, "", "{args:?}");
    }
    let after = ps(app.path());
    assert_eq!(names(&after), names(&before));
    for d in &before.dynos {
        assert_eq!(pid_of(&after, &d.name), d.pid.expect("a pid"));
    }
    assert!(
        !hk.seen.iter().any(|l| l.starts_with("clock")),
        "{:?}",
        hk.seen
    );
    drop(hk);

    // Nobody runs here.
    let empty = tempfile::tempdir().expect("a directory");
    let root = std::fs::canonicalize(empty.path()).expect("canonical");
    for args in [&["ps"][..], &["scale", "web=1"], &["logs"], &["stop"]] {
        let out = client(empty.path(), args);
        assert_eq!(out.status.code(), Some(69), "{args:?}");
        assert_eq!(
            out.stderr,
            format!(
                "hkrun: no hkrun is running in {} (no socket at {}/.hkrun.sock); run this in the app's folder, or point to it with -d DIR, -f PROCFILE or --socket PATH\n",
                root.display(),
                root.display()
            )
        );
    }
}

#[test]
fn one_supervisor_per_app_and_stale_sockets_are_replaced() {
    let app = polite_app();
    let port = free_base_port().to_string();
    let args = ["start", "--no-timestamp", "-m", "worker=1", "-p", &port];
    let mut first = started(&app, &args, "worker.1 ready");
    let socket = app.file(".hkrun.sock");
    let mode = std::fs::metadata(&socket)
        .expect("the socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    let mut second = Hk::start(app.path(), &args);
    assert_eq!(second.wait_exit().code(), Some(69));
    let root = std::fs::canonicalize(app.path()).expect("canonical");
    assert_eq!(
        second.stderr(),
        format!(
            "hkrun: hkrun is already running in {} (pid {})\n",
            root.display(),
            first.pid()
        )
    );
    assert!(second.seen.is_empty(), "nothing started: {:?}", second.seen);

    // A supervisor killed outright leaves its socket behind; the next start replaces it.
    first.signal(Signal::SIGKILL);
    let _ = first.wait_exit();
    kill_tagged(&first.tag);
    assert!(socket.exists(), "a stale socket is left");
    let mut third = started(&app, &args, "worker.1 ready");
    assert_eq!(names(&ps(app.path())), ["worker.1"]);
    third.signal(Signal::SIGTERM);
    assert_eq!(third.wait_exit().code(), Some(0));
    assert!(!socket.exists());
    assert_none_left(&third.tag);
}

/// The tests run as root on CI; elsewhere they cannot switch users.
fn as_nobody() -> Option<std::process::Command> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: switching to another uid needs root");
        return None;
    }
    let mut command = std::process::Command::new("setpriv");
    command.args([
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "--",
    ]);
    Some(command)
}

#[test]
fn other_users_are_refused() {
    let Some(mut nobody) = as_nobody() else {
        return;
    };
    let app = polite_app();
    let port = free_base_port().to_string();
    let mut hk = started(
        &app,
        &["start", "--no-timestamp", "-m", "worker=1", "-p", &port],
        "worker.1 ready",
    );
    let socket = app.file(".hkrun.sock");
    // Let another user reach the folder, so only the socket stands in the way.
    std::fs::set_permissions(app.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the app folder");
    let run = |command: &mut std::process::Command| {
        let out = command
            .arg(env!("CARGO_BIN_EXE_hkrun"))
            .args(["ps", "--socket"])
            .arg(&socket)
            .stdin(Stdio::null())
            .output()
            .expect("run hkrun ps as nobody");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The socket's mode refuses the connection: one line says why (EX_NOPERM).
    let (code, stderr) = run(&mut nobody);
    eprintln!("ps as uid 65534: exit {code:?}, {stderr:?}");
    assert_eq!(code, Some(77));
    assert_eq!(
        stderr,
        format!(
            "hkrun: the hkrun behind {} runs as another user (uid 0); run this command as that user, or as root\n",
            socket.display()
        )
    );

    // Its mode loosened, the peer check still refuses.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let (code, stderr) = run(as_nobody().as_mut().expect("root"));
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        "hkrun: permission denied: uid 65534 may not control hkrun (it runs as uid 0)\n"
    );
    assert_eq!(names(&ps(app.path())), ["worker.1"]);
    hk.signal(Signal::SIGTERM);
    assert_eq!(hk.wait_exit().code(), Some(0));
}

fn answer(stream: &mut UnixStream) -> Response {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read(&mut byte).expect("read an answer") == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    serde_json::from_slice(&line).expect("a JSON answer")
}

#[test]
fn misbehaving_clients_do_not_disturb_the_supervisor() {
    let app = polite_app();
    let port = free_base_port().to_string();
    let mut hk = started_with_short_idle(
        &app,
        &["start", "--no-timestamp", "-m", "worker=1", "-p", &port],
        "worker.1 ready",
    );
    let socket = app.file(".hkrun.sock");
    let connect = || {
        let stream = UnixStream::connect(&socket).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        stream
    };
    // Connected and silent, or halfway through a line: held open throughout.
    let silent = connect();
    let mut halfway = connect();
    halfway.write_all(b"{\"v\":1,\"cm").expect("write");

    // Garbage: an error, and the connection still serves.
    let mut garbage = connect();
    garbage.write_all(b"\x00\xff\xfe{{{\n").expect("write");
    let response = answer(&mut garbage);
    assert!(!response.ok);
    assert!(
        response
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("malformed request")),
        "{response:?}"
    );
    garbage
        .write_all(b"{\"v\":1,\"cmd\":\"ps\"}\n")
        .expect("write");
    let response = answer(&mut garbage);
    assert!(response.ok && response.ps.is_some(), "{response:?}");

    // A 10 MB line: refused, and the connection closed.
    let mut huge = connect();
    let writer = {
        let mut huge = huge.try_clone().expect("clone");
        std::thread::spawn(move || {
            let chunk = vec![b'x'; 1024 * 1024];
            for _ in 0..10 {
                if huge.write_all(&chunk).is_err() {
                    break;
                }
            }
        })
    };
    let response = answer(&mut huge);
    assert_eq!(
        response.error.as_deref(),
        Some("request longer than 65536 bytes")
    );
    writer.join().expect("the writer thread");

    // Meanwhile other clients are served.
    let start = Instant::now();
    assert_eq!(names(&ps(app.path())), ["worker.1"]);
    assert!(start.elapsed() < Duration::from_secs(5));

    // An idle connection is closed after a while: the read ends instead of blocking.
    let mut rest = Vec::new();
    let mut silent = silent;
    let read = silent.read_to_end(&mut rest);
    assert!(read.is_ok() && rest.is_empty(), "{read:?} {rest:?}");
    let mut rest = Vec::new();
    assert!(halfway.read_to_end(&mut rest).is_ok());
    assert_eq!(names(&ps(app.path())), ["worker.1"]);
    hk.stop_cleanly();
}

#[test]
fn twenty_clients_ask_ps_while_the_app_logs_heavily() {
    const LINES: u32 = 50_000;
    let app = App::new(&format!(
        "loud: awk 'BEGIN {{ for (i = 1; i <= {LINES}; i++) printf \"%s:%08d\\n\", ENVIRON[\"DYNO\"], i }}'; exec sleep 1000\n"
    ));
    let port = free_base_port().to_string();
    let mut hk = started(
        &app,
        &["start", "--no-timestamp", "-m", "loud=4", "-p", &port],
        ":00000001",
    );
    // Readers of the whole history at the same time.
    let readers: Vec<_> = (0..5)
        .map(|_| {
            let dir = app.path().to_path_buf();
            std::thread::spawn(move || client(&dir, &["logs", "-n", "1500"]))
        })
        .collect();
    let askers: Vec<_> = (0..20)
        .map(|_| {
            let dir = app.path().to_path_buf();
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| {
                        let start = Instant::now();
                        let out = client(&dir, &["ps", "--json"]);
                        let ps: Ps = serde_json::from_str(&out.stdout).expect("JSON");
                        (out.status.success(), ps.dynos.len(), start.elapsed())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for asker in askers {
        for (ok, dynos, took) in asker.join().expect("an asking thread") {
            assert!(ok);
            assert_eq!(dynos, 4);
            slowest = slowest.max(took);
        }
    }
    for reader in readers {
        let out = reader.join().expect("a reading thread");
        assert!(out.status.success(), "{}", out.stderr);
        assert!(out.stdout.lines().count() > 0);
    }
    eprintln!("100 ps answers under load, the slowest in {slowest:?}");
    // Generous: each answer is one round trip on an idle machine.
    assert!(
        slowest < Duration::from_secs(10),
        "slowest ps took {slowest:?}"
    );
    let last: Vec<String> = (1..=4).map(|n| format!("loud.{n}:{LINES:08}")).collect();
    hk.wait_for_each(&last.iter().map(String::as_str).collect::<Vec<_>>());
    hk.signal(Signal::SIGTERM);
    assert_eq!(hk.wait_exit().code(), Some(0));
    for n in 1..=4 {
        let name = format!("loud.{n}");
        let seqs: Vec<u32> = payloads(&hk.seen, &name)
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{name}:"))?.parse().ok())
            .collect();
        assert_eq!(seqs.len(), LINES as usize, "{name}: every line, once");
        assert!(
            seqs.iter().zip(1..).all(|(&s, i)| s == i),
            "{name}: in order"
        );
    }
    assert_none_left(&hk.tag);
}

#[test]
fn a_restarted_dyno_finishes_its_whole_group_first() {
    // Says `ready PID`; on SIGTERM takes a second, says `drained PID` and exits.
    let app =
        App::new("worker: hkrun-test-child trap --exit-on TERM --drain 1; echo never reached\n");
    let port = free_base_port().to_string();
    let mut hk = started(&app, &["start", "--no-timestamp", "-p", &port], "| ready");
    let old: i32 = hk
        .seen
        .last()
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("a pid");
    // The shell leads the group and dies at once; the child takes a second to finish.
    let out = client(app.path(), &["restart", "worker"]);
    assert!(out.status.success(), "{}", out.stderr);
    hk.wait_for(&format!("worker.1 | drained {old}"));
    hk.wait_for("| ready");
    let drained = hk
        .seen
        .iter()
        .position(|l| l.contains("drained"))
        .expect("drained");
    let restarted = hk
        .seen
        .iter()
        .rposition(|l| l.contains("Starting process"))
        .expect("a start");
    assert!(drained < restarted, "{:?}", hk.seen);
    assert!(!alive(old));
    hk.stop_cleanly();
}

#[test]
fn stop_without_a_target_returns_once_hkrun_has_exited() {
    // Slower to stop than a control connection may sit idle.
    let slow = IDLE + Duration::from_secs(1);
    let app = App::new(&format!(
        "slow: trap 'sleep {}; echo done; exit 0' TERM; while :; do sleep 0.1; done\n",
        slow.as_secs()
    ));
    let port = free_base_port().to_string();
    let mut hk = started_with_short_idle(
        &app,
        &["start", "--no-timestamp", "-p", &port],
        "State changed from starting to up",
    );
    let start = Instant::now();
    let out = client(app.path(), &["stop"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "Stopping all dynos...\nhkrun has stopped\n");
    assert!(start.elapsed() >= slow, "{:?}", start.elapsed());
    assert_eq!(hk.wait_exit().code(), Some(0));
    assert!(
        hk.seen.iter().any(|l| l == "slow.1 | done"),
        "{:?}",
        hk.seen
    );
    assert_none_left(&hk.tag);
}

/// A new web dyno's port that something else holds refuses the request, as `hkrun start`
/// does, instead of starting a dyno that can only crash on bind.
#[test]
fn scaling_web_onto_a_taken_port_is_refused() {
    let app = App::new("web: exec hkrun-test-child listen\n");
    let base = free_base_port();
    let port = base.to_string();
    let mut hk = started(
        &app,
        &["start", "--no-timestamp", "-p", &port],
        "Starting process",
    );
    hk.wait_for("| State changed from starting to up");
    // Behind the router web.1 listens on base+1; web.2 would take base+2.
    let holder = std::net::TcpListener::bind(("127.0.0.1", base + 2)).expect("hold a port");
    let out = client(app.path(), &["scale", "web=2"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "hkrun: port {} for web.2 is already in use; stop what holds it and try again\n",
            base + 2
        )
    );
    assert_eq!(names(&ps(app.path())), ["web.1"]);
    drop(holder);
    let out = client(app.path(), &["scale", "web=2"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let up = hk.wait_for("| State changed from starting to up");
    assert!(up.starts_with("web.2"), "{up}");
    hk.signal(Signal::SIGTERM);
    assert_eq!(hk.wait_exit().code(), Some(0));
}

/// Clients that hold the socket without being served: idle connections, connections that
/// send a request every 500 ms and never read the answers, and `logs` requests never
/// read. Each reconnects 500 ms after the supervisor closes it. Dropping it ends them.
struct Attack {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connects: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

#[derive(Clone, Copy)]
enum Hostile {
    Idle,
    DeafPs,
    DeafLogs,
}

impl Attack {
    fn start(socket: &Path, clients: &[(Hostile, usize)]) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let connects = std::sync::Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for &(kind, count) in clients {
            for _ in 0..count {
                let (stop, connects) = (stop.clone(), connects.clone());
                let socket = socket.to_path_buf();
                threads.push(std::thread::spawn(move || {
                    let pause = Duration::from_millis(500);
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(mut stream) = UnixStream::connect(&socket) else {
                            std::thread::sleep(pause);
                            continue;
                        };
                        connects.fetch_add(1, Ordering::Relaxed);
                        let _ = stream.set_read_timeout(Some(pause));
                        let _ = stream.set_write_timeout(Some(pause));
                        let request: &[u8] = match kind {
                            Hostile::Idle => b"",
                            Hostile::DeafPs => b"{\"v\":1,\"cmd\":\"ps\"}\n",
                            Hostile::DeafLogs => b"{\"v\":1,\"cmd\":\"logs\",\"lines\":1500}\n",
                        };
                        let mut sent_logs = false;
                        // Until the supervisor closes the connection.
                        while !stop.load(Ordering::Relaxed) {
                            let open = match kind {
                                Hostile::Idle => {
                                    let mut byte = [0u8; 64];
                                    match stream.read(&mut byte) {
                                        Ok(0) => false,
                                        Ok(_) => true,
                                        Err(e) => matches!(
                                            e.kind(),
                                            std::io::ErrorKind::WouldBlock
                                                | std::io::ErrorKind::TimedOut
                                        ),
                                    }
                                }
                                Hostile::DeafPs | Hostile::DeafLogs => {
                                    // After its one request a logs client sends blank
                                    // lines, only to notice the hang-up.
                                    let bytes = if sent_logs { b"\n" } else { request };
                                    sent_logs = matches!(kind, Hostile::DeafLogs);
                                    let open = match stream.write(bytes) {
                                        Ok(_) => true,
                                        Err(e) => matches!(
                                            e.kind(),
                                            std::io::ErrorKind::WouldBlock
                                                | std::io::ErrorKind::TimedOut
                                        ),
                                    };
                                    std::thread::sleep(pause);
                                    open
                                }
                            };
                            if !open {
                                break;
                            }
                        }
                        drop(stream);
                        std::thread::sleep(pause);
                    }
                }));
            }
        }
        Self {
            stop,
            connects,
            threads,
        }
    }

    fn connects(&self) -> usize {
        self.connects.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// 200 hostile clients (idle ones, and ones that send requests and never read) hold
/// more connections than the supervisor serves at once; `ps`, `scale` and `stop` are
/// still answered at once.
#[test]
fn hostile_clients_do_not_lock_out_ps() {
    let app = App::new(&format!(
        "worker: {POLITE}\nchatty: seq 1 1500; exec sleep 1000\n"
    ));
    let port = free_base_port().to_string();
    let mut hk = started(
        &app,
        &[
            "start",
            "--no-timestamp",
            "-m",
            "worker=1,chatty=1",
            "-p",
            &port,
        ],
        "worker.1 ready",
    );
    hk.wait_for("chatty.1 | 1500");
    let attack = Attack::start(
        &app.file(".hkrun.sock"),
        &[
            (Hostile::Idle, 100),
            (Hostile::DeafPs, 90),
            (Hostile::DeafLogs, 10),
        ],
    );
    // Every hostile client has connected once, and more than the 128 served at once.
    eventually("200 hostile connections", || {
        (attack.connects() >= 200).then_some(())
    });
    // One every 100 ms for 3 s of the attack, so closed hostile clients come back many
    // times meanwhile.
    let mut slowest = Duration::ZERO;
    let mut answers = 0;
    let attacked = Instant::now();
    while answers < 30 {
        answers += 1;
        let next = attacked + Duration::from_millis(100) * answers;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let start = Instant::now();
        let out = client(app.path(), &["ps", "--json"]);
        let took = start.elapsed();
        assert!(out.status.success(), "ps during the attack: {}", out.stderr);
        slowest = slowest.max(took);
    }
    let start = Instant::now();
    let out = client(app.path(), &["scale", "worker=2"]);
    assert!(
        out.status.success(),
        "scale during the attack: {}",
        out.stderr
    );
    hk.wait_for("worker.2 ready");
    let out = client(app.path(), &["stop", "worker.2"]);
    assert!(
        out.status.success(),
        "stop during the attack: {}",
        out.stderr
    );
    let change = start.elapsed();
    eprintln!(
        "200 hostile clients ({} connections made): slowest of {answers} ps answers {slowest:?}, scale then stop in {change:?}",
        attack.connects()
    );
    assert!(
        slowest < Duration::from_secs(1),
        "slowest ps took {slowest:?}"
    );
    drop(attack);
    hk.stop_cleanly();
}

/// An app folder deeper than a Unix socket path may be long (107 bytes) still runs with
/// its socket, and `ps` reaches it from inside the folder or with `-d`. A socket whose
/// very name is too long is done without, as in a read-only folder, with a warning.
#[test]
fn a_long_socket_path_still_runs_and_answers_ps() {
    let base = tempfile::tempdir().expect("a directory");
    let deep = base.path().join("d".repeat(60)).join("e".repeat(60));
    std::fs::create_dir_all(&deep).expect("create the app folder");
    std::fs::write(deep.join("Procfile"), format!("worker: {POLITE}\n")).expect("Procfile");
    let deep_arg = deep.to_str().expect("UTF-8");
    assert!(deep.join(".hkrun.sock").as_os_str().len() > 107);
    let port = free_base_port().to_string();
    let mut hk = Hk::start(
        base.path(),
        &["start", "--no-timestamp", "-d", deep_arg, "-p", &port],
    );
    hk.wait_for("worker.1 ready");
    let inside = client(&deep, &["ps"]);
    let outside = client(base.path(), &["ps", "-d", deep_arg]);
    eprintln!(
        "ps inside: {inside:?}\nps -d: {outside:?}",
        inside = (inside.status.code(), &inside.stdout, &inside.stderr),
        outside = (outside.status.code(), &outside.stdout, &outside.stderr)
    );
    assert!(inside.status.success(), "{}", inside.stderr);
    assert!(inside.stdout.contains("worker.1: up"), "{}", inside.stdout);
    assert!(outside.status.success(), "{}", outside.stderr);
    hk.stop_cleanly();
    assert!(
        !deep.join(".hkrun.sock").exists(),
        "the socket is removed on exit"
    );

    let name = base.path().join("s".repeat(120));
    let name_arg = name.to_str().expect("UTF-8");
    let mut hk = Hk::start(
        &deep,
        &["start", "--no-timestamp", "--socket", name_arg, "-p", &port],
    );
    hk.wait_for("worker.1 ready");
    hk.stop_cleanly();
    let stderr = hk.stderr();
    eprintln!("with a 120-byte socket name: {stderr:?}");
    assert_eq!(
        stderr,
        format!(
            "hkrun: warning: no control socket (control socket path {name_arg} is {} bytes, more than the 107 Unix allows); choose a shorter path with --socket or HKRUN_SOCKET\n",
            name_arg.len()
        )
    );
}

/// `logs --ps` names a process type or a dyno of the app; anything else is refused.
#[test]
fn logs_of_an_unknown_type_is_refused() {
    let app = polite_app();
    let port = free_base_port().to_string();
    let mut hk = started(
        &app,
        &["start", "--no-timestamp", "-m", "worker=1", "-p", &port],
        "worker.1 ready",
    );
    let mut shown = Vec::new();
    for ps in ["nosuch", "worker.x", "nosuch.1"] {
        let out = client(app.path(), &["logs", "--ps", ps]);
        shown.push(format!(
            "logs --ps {ps}: exit {:?}, {:?}",
            out.status.code(),
            out.stderr
        ));
        assert_eq!(out.status.code(), Some(1), "{ps}: {}", out.stderr);
        assert_eq!(
            out.stderr,
            format!(
                "hkrun: unknown process type or dyno `{ps}` for --ps (the Procfile has worker, clock)\n"
            )
        );
    }
    eprintln!("{}", shown.join("\n"));
    // A type with no dyno yet, a dyno that is not running, and hkrun's own lines are fine.
    for ps in ["clock", "worker.7", "worker.1", "system"] {
        let out = client(app.path(), &["logs", "--ps", ps]);
        assert_eq!(out.status.code(), Some(0), "{ps}: {}", out.stderr);
    }
    hk.stop_cleanly();
}

/// A `logs --tail` client gets every line hkrun writes, up to its last one at exit.
#[test]
fn logs_tail_gets_every_line_up_to_the_exit() {
    let app = polite_app();
    let port = free_base_port().to_string();
    let mut hk = started(
        &app,
        &["start", "--no-timestamp", "-m", "worker=2", "-p", &port],
        "Starting process",
    );
    hk.wait_for_each(&["worker.1 ready", "worker.2 ready"]);
    let mut tail = hkrun(app.path(), &["logs", "--tail", "-n", "1"], &hk.tag)
        .spawn()
        .expect("start logs --tail");
    let stdout = tail.stdout.take().expect("piped");
    let (tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The backlog line: the tail is following from here on.
    let first = lines.recv_timeout(PATIENCE);
    assert!(first.is_ok(), "logs --tail printed nothing");
    hk.signal(Signal::SIGTERM);
    assert_eq!(hk.wait_exit().code(), Some(0));
    let status = crate::harness::wait_bounded(&mut tail, "logs --tail after hkrun exited");
    reader.join().expect("the reader thread");
    let got: Vec<String> = lines.try_iter().collect();
    let last = hk.seen.last().cloned().unwrap_or_default();
    eprintln!(
        "hkrun's last line: {last:?}; the tail's last {} lines: {:?}; tail exit {:?}",
        got.len().min(3),
        &got[got.len().saturating_sub(3)..],
        status.code()
    );
    assert!(status.success());
    assert!(last.contains("Process exited with status"), "{last}");
    // Everything hkrun printed after SIGTERM, the tail printed too, in order.
    let from = hk
        .seen
        .iter()
        .position(|l| l.ends_with("SIGTERM received"))
        .expect("the stop");
    let tail_from = got
        .iter()
        .position(|l| l.ends_with("SIGTERM received"))
        .unwrap_or(got.len());
    assert_eq!(got[tail_from..], hk.seen[from..]);
    assert_none_left(&hk.tag);
}

/// The app root is claimed whatever the socket: a second `start --socket other.sock` in
/// the same folder is refused, naming the running supervisor.
#[test]
fn a_second_supervisor_of_the_same_folder_is_refused_whatever_its_socket() {
    let app = polite_app();
    let port = free_base_port().to_string();
    let mut first = started(
        &app,
        &["start", "--no-timestamp", "-m", "worker=1", "-p", &port],
        "worker.1 ready",
    );
    let other = app.file("other.sock");
    let mut second = Hk::start(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "-m",
            "worker=1",
            "-p",
            &port,
            "--socket",
            other.to_str().expect("UTF-8"),
        ],
    );
    let status = second.wait_exit();
    let stderr = second.stderr();
    eprintln!("second start: exit {:?}, {stderr:?}", status.code());
    let root = std::fs::canonicalize(app.path()).expect("canonical");
    assert_eq!(status.code(), Some(69));
    assert_eq!(
        stderr,
        format!(
            "hkrun: hkrun is already running in {} (pid {})\n",
            root.display(),
            first.pid()
        )
    );
    assert!(second.seen.is_empty(), "nothing started: {:?}", second.seen);
    assert!(!other.exists());
    first.stop_cleanly();
}

/// `hkrun ps` away from the app's folder says where it looked and how to point it there.
#[test]
fn ps_elsewhere_hints_at_the_flags() {
    let empty = tempfile::tempdir().expect("a directory");
    let root = std::fs::canonicalize(empty.path()).expect("canonical");
    let out = client(empty.path(), &["ps"]);
    eprintln!(
        "ps elsewhere: exit {:?}, {:?}",
        out.status.code(),
        out.stderr
    );
    assert_eq!(out.status.code(), Some(69));
    assert_eq!(
        out.stderr,
        format!(
            "hkrun: no hkrun is running in {root} (no socket at {root}/.hkrun.sock); run this in the app's folder, or point to it with -d DIR, -f PROCFILE or --socket PATH\n",
            root = root.display()
        )
    );
    // Pointed somewhere already: no hint.
    let out = client(empty.path(), &["ps", "-d", "."]);
    assert_eq!(
        out.stderr,
        format!(
            "hkrun: no hkrun is running in {root} (no socket at {root}/.hkrun.sock)\n",
            root = root.display()
        )
    );
}

#[test]
fn ps_asked_for_cpu_says_each_running_dynos_cpu_time_and_ps_json_never_does() {
    let app = App::new(
        "busy: echo busy ready; while :; do :; done\nidle: echo idle ready; exec sleep 1000\n",
    );
    let port = free_base_port().to_string();
    let mut hk = Hk::start(app.path(), &["start", "--no-timestamp", "-p", &port]);
    // The two dynos start together: their lines come in either order.
    hk.wait_for_each(&["busy.1 | busy ready", "idle.1 | idle ready"]);
    let socket = app.file(".hkrun.sock");
    // Each dyno's `cpu_ms` in the answer to `line`, by name.
    let ask = |line: &[u8]| -> Vec<(String, serde_json::Value)> {
        let mut stream = UnixStream::connect(&socket).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        stream.write_all(line).expect("write");
        let mut answer = String::new();
        BufReader::new(stream)
            .read_line(&mut answer)
            .expect("an answer");
        let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
        assert_eq!(answer["ok"], true, "{answer}");
        answer["ps"]["dynos"]
            .as_array()
            .expect("dynos")
            .iter()
            .map(|d| (d["name"].as_str().unwrap().to_owned(), d["cpu_ms"].clone()))
            .collect()
    };
    let cpu = |name: &str| {
        let dynos = ask(b"{\"v\":1,\"cmd\":\"ps\",\"cpu\":true}\n");
        let (_, ms) = dynos.iter().find(|(n, _)| n == name).expect(name);
        ms.as_u64()
            .unwrap_or_else(|| panic!("{name} has no CPU time: {dynos:?}"))
    };
    // `top`'s request: the busy dyno's CPU time grows as it spins; the idle one's is
    // said too.
    let first = eventually("busy.1's CPU time", || {
        Some(cpu("busy.1")).filter(|&ms| ms > 0)
    });
    eventually("busy.1's CPU time to grow", || {
        Some(cpu("busy.1")).filter(|&ms| ms >= first + 200)
    });
    let idle = cpu("idle.1");
    assert!(idle < 1000, "sleep used {idle} ms of CPU");
    // Asked without it, `ps` never says it: `ps --json` prints what it always has.
    let plain = ask(b"{\"v\":1,\"cmd\":\"ps\"}\n");
    assert!(plain.iter().all(|(_, ms)| ms.is_null()), "{plain:?}");
    let out = client(app.path(), &["ps", "--json"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(!out.stdout.contains("cpu"), "{}", out.stdout);
    hk.stop_cleanly();
    assert_none_left(&hk.tag);
}

/// One request line on a connection of its own; the first answer, as JSON.
fn ask_raw(socket: &Path, request: &str) -> serde_json::Value {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream
        .write_all(format!("{request}\n").as_bytes())
        .expect("write");
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("an answer");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

#[test]
fn a_changes_answer_carries_its_outcome_beside_the_text() {
    let app = polite_app();
    let port = free_base_port().to_string();
    let mut hk = started(
        &app,
        &["start", "--no-timestamp", "-m", "worker=1", "-p", &port],
        "worker.1 ready",
    );
    let socket = app.file(".hkrun.sock");
    let scaled = ask_raw(&socket, r#"{"v":1,"cmd":"scale","changes":["worker=2"]}"#);
    assert_eq!(
        scaled,
        serde_json::json!({
            "v": 1,
            "ok": true,
            "message": "Scaling dynos... done, now running worker at 2:Standard-1X",
            "outcome": {
                "outcome": "scaled",
                "types": [{"name": "worker", "count": 2, "size": "Standard-1X"}],
            },
        })
    );
    let refused = ask_raw(&socket, r#"{"v":1,"cmd":"scale","changes":["nope=1"]}"#);
    assert_eq!(
        refused,
        serde_json::json!({
            "v": 1,
            "ok": false,
            "error": "unknown process type `nope` (the Procfile has worker, clock)",
            "outcome": {
                "outcome": "refused",
                "kind": "unknown_type",
                "name": "nope",
                "known": ["worker", "clock"],
            },
        })
    );
    // A value that does not read is refused with the request, before the core: no outcome.
    let bad = ask_raw(
        &socket,
        r#"{"v":1,"cmd":"restart","targets":["worker","no!"]}"#,
    );
    assert_eq!(
        bad,
        serde_json::json!({
            "v": 1,
            "ok": false,
            "error": "bad target `no!` (expected a process type such as web, a dyno such as web.2, or a glob such as 'work*')",
        })
    );
    // The client prints what it printed before.
    let out = client(app.path(), &["scale", "worker=1"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "Scaling dynos... done, now running worker at 1:Standard-1X\n"
    );
    hk.stop_cleanly();
    assert_none_left(&hk.tag);
}

#[test]
fn hello_names_the_protocol_and_its_features() {
    let app = polite_app();
    let port = free_base_port().to_string();
    let mut hk = started(
        &app,
        &["start", "--no-timestamp", "-m", "worker=1", "-p", &port],
        "worker.1 ready",
    );
    let hello = ask_raw(&app.file(".hkrun.sock"), r#"{"v":1,"cmd":"hello"}"#);
    assert_eq!(
        hello,
        serde_json::json!({
            "v": 1,
            "ok": true,
            "hello": {"version": 1, "features": ["framed", "size", "outcome", "cpu"]},
        })
    );
    // A client says what it speaks too; the answer is the same.
    let asked = r#"{"v":1,"cmd":"hello","features":["framed","something-new"]}"#;
    assert_eq!(ask_raw(&app.file(".hkrun.sock"), asked), hello);
    hk.stop_cleanly();
    assert_none_left(&hk.tag);
}
