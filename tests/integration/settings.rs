//! `start`'s settings: flags win over `HKRUN_*` variables, which win over `hkrun.toml`,
//! which wins over hkrun's defaults; foreman's `.foreman` stands in for a missing
//! `hkrun.toml`; a key hkrun does not know is refused with its line.

use crate::harness::{App, Hk, hkrun, unique_tag};

/// Runs `hkrun start ARGS` (with `vars` set) for an app whose one dyno prints its PORT
/// and exits; the port it printed, or hkrun's exit code and stderr.
fn port_seen(
    app: &App,
    args: &[&str],
    vars: &[(&str, &str)],
) -> Result<String, (Option<i32>, String)> {
    let mut all = vec!["start", "--no-timestamp"];
    all.extend_from_slice(args);
    let mut command = hkrun(app.path(), &all, &unique_tag());
    command.envs(vars.iter().copied());
    let mut hk = Hk::spawn(command);
    let status = hk.wait_exit();
    let stderr = hk.stderr();
    if !status.success() {
        return Err((status.code(), stderr));
    }
    hk.seen
        .iter()
        .find_map(|l| l.strip_prefix("worker.1 | port=").map(str::to_owned))
        .ok_or((status.code(), format!("no port line in {:?}", hk.seen)))
}

#[test]
fn each_level_wins_over_the_one_below() {
    // A worker binds nothing, so any port will do.
    let app = App::new("worker: echo port=$PORT\n");
    // The restart policy comes from the file at every level: without it the worker would
    // be restarted forever.
    app.write("hkrun.toml", "restart = \"never\"\n");
    assert_eq!(
        port_seen(&app, &[], &[]),
        Ok("5000".into()),
        "hkrun's default"
    );
    app.write("hkrun.toml", "restart = \"never\"\nport = 6100\n");
    assert_eq!(port_seen(&app, &[], &[]), Ok("6100".into()), "hkrun.toml");
    assert_eq!(
        port_seen(&app, &[], &[("HKRUN_PORT", "6200")]),
        Ok("6200".into()),
        "HKRUN_PORT"
    );
    assert_eq!(
        port_seen(&app, &["-p", "6300"], &[("HKRUN_PORT", "6200")]),
        Ok("6300".into()),
        "the flag"
    );
    // A boolean and a list alike.
    app.write("other.env", "PORT=6400\n");
    app.write(
        "hkrun.toml",
        "restart = \"never\"\nenv = [\"other.env\"]\nno-timestamp = true\n",
    );
    assert_eq!(
        port_seen(&app, &[], &[]),
        Ok("6400".into()),
        "env files from the file"
    );
    assert_eq!(
        port_seen(
            &app,
            &[],
            &[("HKRUN_RESTART", "always"), ("HKRUN_EXIT_ON_CRASH", "true")]
        ),
        Ok("6400".into()),
        "HKRUN_* over the file's restart"
    );
}

#[test]
fn foreman_files_stand_in_for_a_missing_hkrun_toml() {
    let app = App::new("worker: echo port=$PORT\nother: echo other\n");
    app.write(".foreman", "concurrency: worker=1,other=0\nport: 6500\n");
    // `.foreman` has no restart policy: HKRUN_RESTART says it.
    let never = [("HKRUN_RESTART", "never")];
    assert_eq!(port_seen(&app, &[], &never), Ok("6500".into()));
    app.write("hkrun.toml", "port = 6600\n");
    assert_eq!(
        port_seen(&app, &[], &never),
        Ok("6600".into()),
        "hkrun.toml first"
    );
}

#[test]
fn unknown_and_malformed_settings_are_refused_with_their_line() {
    let app = App::new("worker: echo port=$PORT\n");
    app.write("hkrun.toml", "port = 6100\n\nformaton = \"worker=2\"\n");
    let (code, stderr) = port_seen(&app, &[], &[]).unwrap_err();
    assert_eq!(code, Some(65));
    assert!(
        stderr.starts_with("hkrun: hkrun.toml:3: unknown field `formaton`"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    app.write("hkrun.toml", "balance = \"fastest\"\n");
    let (code, stderr) = port_seen(&app, &[], &[]).unwrap_err();
    assert_eq!(code, Some(65));
    assert_eq!(
        stderr,
        "hkrun: bad value `fastest` for --balance: expected round-robin, least-connections or random (hkrun.toml:1)\n"
    );
}

#[test]
fn hkrun_toml_wins_over_app_json() {
    let app = App::new("worker: echo port=$PORT\n");
    app.write("app.json", r#"{"formation": {"worker": {"quantity": 2}}}"#);
    app.write("hkrun.toml", "restart = \"never\"\n");
    let workers = |app: &App| {
        let mut hk = Hk::start(app.path(), &["start", "--no-timestamp"]);
        assert!(hk.wait_exit().success(), "{}", hk.stderr());
        let mut seen: Vec<String> = hk
            .seen
            .iter()
            .filter(|l| l.contains("| port="))
            .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
            .collect();
        seen.sort();
        seen
    };
    assert_eq!(
        workers(&app),
        ["worker.1", "worker.2"],
        "app.json's formation"
    );
    app.write(
        "hkrun.toml",
        "restart = \"never\"\nformation = \"worker=1\"\n",
    );
    assert_eq!(workers(&app), ["worker.1"], "hkrun.toml's");
}

#[test]
fn check_shows_each_setting_and_where_it_comes_from() {
    let app = App::new("web: serve\nworker: work\n");
    app.write("hkrun.toml", "port = 6100\nrestart = \"on-failure\"\n");
    app.write(
        "app.json",
        r#"{"formation": {"web": {"quantity": 2}}, "addons": ["heroku-postgresql"]}"#,
    );
    let mut command = hkrun(app.path(), &["check", "--no-router"], &unique_tag());
    command.env("HKRUN_TIMEOUT", "12");
    let mut hk = Hk::spawn(command);
    assert!(hk.wait_exit().success(), "{}", hk.stderr());
    let row = |key: &str| {
        hk.seen
            .iter()
            .find(|l| l.trim_start().starts_with(&format!("{key} ")))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no {key} row in {:#?}", hk.seen))
    };
    assert_eq!(row("port"), ["port", "6100", "hkrun.toml"]);
    assert_eq!(row("timeout"), ["timeout", "12", "HKRUN_TIMEOUT"]);
    assert_eq!(row("formation"), ["formation", "web=2", "app.json"]);
    assert_eq!(row("no-router"), ["no-router", "true", "flag"]);
    assert_eq!(row("restart"), ["restart", "on-failure", "hkrun.toml"]);
    assert_eq!(row("boot-timeout"), ["boot-timeout", "60", "default"]);
    assert!(
        hk.seen.iter().any(|l| l == "web.2      PORT=6101   serve"),
        "{:#?}",
        hk.seen
    );
    assert!(
        hk.seen
            .iter()
            .any(|l| l == "app.json: add-ons hkrun does not provide: heroku-postgresql"),
        "{:#?}",
        hk.seen
    );
}

#[test]
fn a_types_table_sets_one_types_restart_policy() {
    // The worker exits 0 and, never restarted, leaves nothing running: hkrun exits 0.
    // Without its table it would be restarted forever.
    let app = App::new("worker: echo port=$PORT\n");
    app.write(
        "hkrun.toml",
        "port = 6700\n\n[types.worker]\nrestart = \"never\"\n",
    );
    assert_eq!(port_seen(&app, &[], &[]), Ok("6700".into()));
    // What the table does not know is refused with its line.
    app.write(
        "hkrun.toml",
        "[types.worker]\nrestart = \"never\"\ngrace = 5\n",
    );
    let (code, stderr) = port_seen(&app, &[], &[]).unwrap_err();
    assert_eq!(code, Some(65));
    assert!(
        stderr.starts_with("hkrun: hkrun.toml:3: unknown field `grace`"),
        "{stderr}"
    );
}

/// A worker that says what it got: its own variable, then the signal that stopped it.
const TELLS_SIGNAL: &str = "\
import signal, os, sys, time
def said(n, _):
    print('got ' + signal.Signals(n).name, flush=True)
    sys.exit(0)
for s in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
    signal.signal(s, said)
print('queue=' + os.environ.get('QUEUE', '-'), flush=True)
while True:
    time.sleep(1)
";

#[test]
fn a_types_table_sets_its_stop_signal_env_and_start_order() {
    let app = App::new(
        "web: exec python3 -m http.server $PORT --bind 127.0.0.1\nworker: exec python3 -u tell.py\n",
    );
    app.write("tell.py", TELLS_SIGNAL);
    let port = crate::harness::free_base_port().to_string();
    app.write(
        "hkrun.toml",
        "[types.worker]\nstop-signal = \"QUIT\"\ntimeout = 3\nafter = [\"web\"]\n\
         env = { QUEUE = \"mail\" }\n",
    );
    let tag = unique_tag();
    let mut hk = Hk::spawn(hkrun(
        app.path(),
        &["start", "--no-timestamp", "-p", &port],
        &tag,
    ));
    hk.wait_for("worker.1 | queue=mail");
    let web_up = hk
        .seen
        .iter()
        .position(|l| l.starts_with("web.1 ") && l.ends_with("State changed from starting to up"))
        .expect("web came up");
    let worker_started = hk
        .seen
        .iter()
        .position(|l| l.starts_with("worker.1 ") && l.contains("Starting process"))
        .expect("the worker started");
    assert!(web_up < worker_started, "{:?}", hk.seen);
    assert!(
        hk.seen
            .iter()
            .any(|l| l.ends_with("worker starts once web is up")),
        "{:?}",
        hk.seen
    );
    hk.signal(nix::sys::signal::Signal::SIGTERM);
    hk.wait_for("worker.1 | got SIGQUIT");
    assert!(hk.wait_exit().success());
    assert!(
        hk.seen
            .iter()
            .any(|l| l == "web.1    | Stopping all processes with SIGTERM"),
        "{:?}",
        hk.seen
    );
    crate::harness::assert_none_left(&tag);
}

#[test]
fn a_types_rules_are_checked_against_the_procfile() {
    let app = App::new("web: echo web\nworker: echo worker\n");
    let refused = |toml: &str| {
        app.write("hkrun.toml", toml);
        let (code, stderr) = port_seen(&app, &[], &[]).unwrap_err();
        assert_eq!(code, Some(65), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        stderr
    };
    let stderr = refused("[types.worker]\nafter = [\"clock\"]\n");
    assert!(
        stderr.starts_with("hkrun: hkrun.toml: [types.worker] after: no process type `clock`"),
        "{stderr}"
    );
    let stderr = refused("[types.worker]\nafter = [\"web\"]\n[types.web]\nafter = [\"worker\"]\n");
    assert!(
        stderr.contains("a circle: web waits for worker waits for web"),
        "{stderr}"
    );
    let stderr = refused("[types.worker]\nboot-timeout = 5\n");
    assert!(stderr.contains("only web has a boot timeout"), "{stderr}");
    let stderr = refused("[types.worker]\nstop-signal = \"SIGNOPE\"\n");
    assert!(
        stderr.contains("bad [types.worker] stop-signal `SIGNOPE`"),
        "{stderr}"
    );
    let stderr = refused("[types.worker.env]\nPORT = \"1\"\n");
    assert!(stderr.contains("[types.worker] env `PORT`"), "{stderr}");
    let stderr = refused("[types.wrker]\nstop-signal = \"INT\"\n");
    assert!(
        stderr.contains("[types.wrker]: no process type `wrker`"),
        "{stderr}"
    );
    // `check` refuses what `start` would.
    let (status, _, stderr) = crate::harness::run_to_end(app.path(), &["check"]);
    assert_eq!(status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("no process type `wrker`"), "{stderr}");
    // So for `quiet` and `tty` in the file.
    for toml in ["quiet = [\"wrker\"]\n", "tty = [\"wrker\"]\n"] {
        app.write("hkrun.toml", toml);
        let (status, _, stderr) = crate::harness::run_to_end(app.path(), &["check"]);
        assert_eq!(status.code(), Some(65), "{toml}: {stderr}");
        assert!(stderr.contains("unknown process type `wrker`"), "{stderr}");
    }
}

/// Runs `hkrun check` and `hkrun start` of `app` (with `vars` set); asserts each is
/// refused with exit 65, one stderr line and nothing started, and returns that line, the
/// same for both.
#[track_caller]
fn both_refuse(app: &App, vars: &[(&str, &str)]) -> String {
    both_refuse_with(app, vars, 65)
}

/// As `both_refuse`, exiting `code`: 2 for a value clap refuses (a flag's, or its
/// `HKRUN_*` variable's), 65 for the app's files.
fn both_refuse_with(app: &App, vars: &[(&str, &str)], code: i32) -> String {
    let mut said = Vec::new();
    // One tag, so both see the same environment (its size is in some messages).
    let tag = unique_tag();
    let port = crate::harness::free_base_port().to_string();
    for command in ["check", "start"] {
        let mut hkrun = hkrun(app.path(), &[command, "-p", &port], &tag);
        hkrun.envs(vars.iter().copied());
        let mut hk = Hk::spawn(hkrun);
        let status = hk.wait_exit();
        let stderr = hk.stderr();
        assert_eq!(
            status.code(),
            Some(code),
            "{command}: {stderr}{:#?}",
            hk.seen
        );
        assert_eq!(stderr.lines().count(), 1, "{command}: {stderr}");
        assert!(!app.file("started").exists(), "{command} started a dyno");
        said.push(stderr);
    }
    assert_eq!(said[0], said[1], "check and start refuse alike");
    said.remove(0)
}

#[test]
fn a_types_env_exec_could_never_pass_is_refused_naming_the_table() {
    let app = App::new("web: touch started\nworker: touch started\n");
    app.write(
        "hkrun.toml",
        "[types.worker]\nenv = { A = \"1\", B = \"x\\u0000y\" }\n",
    );
    assert_eq!(
        both_refuse(&app, &[]),
        "hkrun: hkrun.toml: [types.worker] env `B`: a variable cannot hold a NUL byte (no process can be given it)\n"
    );
    // Over exec's limit for one string (MAX_ARG_STRLEN).
    let big = "x".repeat(200_000);
    app.write(
        "hkrun.toml",
        &format!("[types.worker.env]\nBIG = \"{big}\"\n"),
    );
    assert_eq!(
        both_refuse(&app, &[]),
        "hkrun: hkrun.toml: [types.worker] env `BIG` is too large for exec: `BIG=value` is 200004 bytes, at most 131071 may be passed\n"
    );
    // Each fits, but not all of them at once, over any stack limit's share for exec.
    let many: String = (0..60)
        .map(|i| format!("V{i} = \"{}\"\n", "y".repeat(120_000)))
        .collect();
    app.write("hkrun.toml", &format!("[types.worker.env]\n{many}"));
    let said = both_refuse(&app, &[]);
    assert!(
        said.starts_with("hkrun: the app's environment is ")
            && said.contains(" bytes with worker's command, ")
            && said.ends_with("from hkrun.toml: [types.worker] env)\n"),
        "{said}"
    );
}

#[test]
fn check_refuses_every_setting_start_refuses() {
    let app = App::new("worker: touch started\nother: touch started\n");
    for (toml, says) in [
        ("timeout = -1\n", "bad value `-1` for --timeout"),
        ("restart-cap = -1\n", "bad value `-1` for --restart-cap"),
        ("boot-timeout = 0\n", "bad value `0` for --boot-timeout"),
        (
            "restart = \"sometimes\"\n",
            "bad value `sometimes` for --restart",
        ),
        (
            "[types.worker]\nrestart = \"sometimes\"\n",
            "bad value `always,worker=sometimes` for --restart",
        ),
        (
            "memory-limit = \"lots\"\n",
            "bad value `lots` for --memory-limit",
        ),
        (
            "restart = \"never,wrker=never\"\n",
            "unknown process type `wrker`",
        ),
        (
            "log-dir = \"logs\"\nlog-max-size = \"tiny\"\n",
            "bad value `tiny` for --log-max-size",
        ),
        (
            "drain = [\"ftp://logs\"]\n",
            "bad value `ftp://logs` for --drain",
        ),
        (
            "formation = \"worker=0\"\n",
            "bad value `worker=0` for --formation: it runs no dynos",
        ),
        (
            "metrics = \"nonsense\"\n",
            "bad value `nonsense` for --metrics",
        ),
        (
            "dashboard = \"a b:1\"\n",
            "bad value `a b:1` for --dashboard",
        ),
    ] {
        app.write("hkrun.toml", toml);
        let said = both_refuse(&app, &[]);
        assert!(
            said.starts_with(&format!("hkrun: {says}")),
            "{toml}: {said}"
        );
    }
    std::fs::remove_file(app.file("hkrun.toml")).expect("remove hkrun.toml");
    // The `HKRUN_*` variables and the file `HKRUN_CONFIG` names.
    app.write("other.toml", "timeout = -1\n");
    for (var, code, says) in [
        (
            ("HKRUN_TIMEOUT", "-1"),
            2,
            "invalid value '-1' for '--timeout <SECONDS>'",
        ),
        (
            ("HKRUN_CONFIG", "other.toml"),
            65,
            "bad value `-1` for --timeout",
        ),
        (
            ("HKRUN_DYNO", "shop-1"),
            65,
            "bad value `shop-1` for --dyno: it names the one dyno of a formation",
        ),
    ] {
        let said = both_refuse_with(&app, &[var], code);
        assert!(
            said.starts_with(&format!("hkrun: {says}")),
            "{var:?}: {said}"
        );
    }
    // One-offs whose names a process type takes.
    let app = App::new("worker: touch started\nscheduler: touch started\n");
    app.write(
        "hkrun.toml",
        "[[scheduler]]\ncommand = \"echo tidy\"\nfrequency = \"daily at 01:30\"\n",
    );
    assert!(both_refuse(&app, &[]).contains("its runs are scheduler.N"));
    let app = App::new("worker: touch started\npostdeploy: touch started\n");
    app.write("app.json", r#"{"scripts": {"postdeploy": "echo seed"}}"#);
    assert!(both_refuse(&app, &[]).contains("scripts.postdeploy runs as postdeploy.1"));
}

#[test]
fn a_bad_policy_is_a_usage_error_on_the_command_line_and_names_its_line_in_the_file() {
    let app = App::new("worker: touch started\n");
    let tag = unique_tag();
    for (args, var) in [
        (&["start", "--restart", "sometimes"][..], None),
        (&["start", "--memory-limit", "lots"][..], None),
        (&["start", "--dyno-size", "huge"][..], None),
        (&["check", "--dyno-size", "huge"][..], None),
        (&["start", "--log-max-size", "tiny"][..], None),
        (&["start"][..], Some(("HKRUN_RESTART", "sometimes"))),
        (&["check"][..], Some(("HKRUN_RESTART", "sometimes"))),
    ] {
        let mut command = hkrun(app.path(), args, &tag);
        command.envs(var);
        let mut hk = Hk::spawn(command);
        let status = hk.wait_exit();
        let stderr = hk.stderr();
        assert_eq!(status.code(), Some(2), "{args:?} {var:?}: {stderr}");
        assert!(stderr.starts_with("hkrun: invalid value '"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    assert!(!app.file("started").exists());
    app.write(
        "hkrun.toml",
        "port = 6100\n\n[types.worker]\nrestart = \"sometimes\"\n",
    );
    assert_eq!(
        both_refuse(&app, &[]),
        "hkrun: bad value `always,worker=sometimes` for --restart: expected always, \
         on-failure or never, or TYPE=VALUE pairs (hkrun.toml:4)\n"
    );
    app.write("hkrun.toml", "port = 6100\nlog-max-size = \"1B\"\n");
    assert_eq!(
        both_refuse(&app, &[]),
        "hkrun: bad value `1B` for --log-max-size: expected a size of 1K or more, such as \
         512K, 10M or 1G (hkrun.toml:2)\n"
    );
}

/// The router's settings refused as every other: an unknown `--router`, a
/// `--request-timeout` that is not a number of seconds, a `--max-requests` of 0: exit 2
/// as a flag or `HKRUN_*` variable, 65 with the line in hkrun.toml; nothing started.
#[test]
fn the_routers_bad_settings_are_refused() {
    let app = App::new("web: touch started\n");
    for (var, value, said) in [
        (
            "HKRUN_ROUTER",
            "udp",
            "invalid value 'udp' for '--router <MODE>'",
        ),
        (
            "HKRUN_REQUEST_TIMEOUT",
            "soon",
            "invalid value 'soon' for '--request-timeout <SECONDS>': expected a number of seconds",
        ),
        (
            "HKRUN_MAX_REQUESTS",
            "0",
            "invalid value '0' for '--max-requests <N>': expected a number of requests above 0",
        ),
        (
            "HKRUN_ROUTER_LOG",
            "some",
            "invalid value 'some' for '--router-log <WHICH>'",
        ),
    ] {
        let stderr = both_refuse_with(&app, &[(var, value)], 2);
        assert!(stderr.contains(said), "{var}: {stderr}");
    }
    app.write("hkrun.toml", "\nrouter = \"udp\"\n");
    assert_eq!(
        both_refuse(&app, &[]),
        "hkrun: bad value `udp` for --router: expected http or tcp (hkrun.toml:2)\n"
    );
    app.write("hkrun.toml", "request-timeout = \"30s\"\n");
    assert_eq!(
        both_refuse(&app, &[]),
        "hkrun: bad value `30s` for --request-timeout: expected a number of seconds (hkrun.toml:1)\n"
    );
}
