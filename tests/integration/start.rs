//! `hkrun start`: environment, formation and ports, the release phase, refusals.

use nix::sys::signal::Signal;

use crate::harness::{App, Hk, assert_none_left, free_base_port, payloads, run_to_end};

#[test]
fn env_files_take_precedence_in_order_and_accept_export_lines() {
    let app = App::new("show: echo \"A=$A B=$B C=$C D=$D DYNO=$DYNO INHERITED=$INHERITED\"\n");
    app.write(
        ".env",
        "export A=dotenv\nB=dotenv\nINHERITED=dotenv\nDYNO=not-this\n",
    );
    app.write("more.env", "B=more\nexport C=\"more # kept\"\n");
    app.write("last.env", "C=last\nD=${B}-last\n");
    let base = free_base_port().to_string();
    let mut cmd = crate::harness::hkrun(
        app.path(),
        &[
            "start",
            "--restart",
            "never",
            "--no-timestamp",
            "-p",
            &base,
            "-e",
            ".env,more.env",
            "-e",
            "last.env",
        ],
        "env",
    );
    cmd.env("INHERITED", "from-hkrun").env("A", "from-hkrun");
    let mut hk = Hk::spawn(cmd);
    let status = hk.wait_exit();
    assert!(status.success(), "{status:?} {}", hk.stderr());
    // `${B}` reads as bash sourcing the files in order would: earlier files' B.
    let shown: Vec<&str> = payloads(&hk.seen, "show.1")
        .into_iter()
        .filter(|p| p.starts_with("A="))
        .collect();
    assert_eq!(
        shown,
        ["A=dotenv B=more C=last D=more-last DYNO=show.1 INHERITED=dotenv"]
    );
}

#[test]
fn formation_sets_dyno_ps_and_foreman_ports() {
    let app = App::new(
        "release: echo released\n\
         web: echo \"$DYNO $PS $PORT\"; exec sleep 1000\n\
         worker: echo \"$DYNO $PS $PORT\"; exec sleep 1000\n\
         clock: echo clock should not run\n",
    );
    let base = free_base_port();
    let mut hk = Hk::start(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "-m",
            "web=2,worker=1",
            "-p",
            &base.to_string(),
        ],
    );
    // The router has the base port; web dynos take the next ones.
    hk.wait_for_each(&[
        &format!("| web.1 web.1 {}", base + 1),
        &format!("| web.2 web.2 {}", base + 2),
        &format!("| worker.1 worker.1 {}", base + 100),
    ]);
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
    assert!(
        !hk.seen.iter().any(|l| l.contains("clock")),
        "{:?}",
        hk.seen
    );
    assert_none_left(&hk.tag);
}

#[test]
fn positional_types_run_one_each_and_port_comes_from_dotenv() {
    let app = App::new(
        "web: echo web $PORT; exec sleep 1000\nworker: echo worker $PORT; exec sleep 1000\nclock: echo clock\n",
    );
    let base = free_base_port();
    app.write(".env", &format!("PORT={base}\n"));
    let mut hk = Hk::start(app.path(), &["start", "--no-timestamp", "web", "worker"]);
    hk.wait_for_each(&[
        &format!("| web {}", base + 1),
        &format!("| worker {}", base + 100),
    ]);
    hk.signal(Signal::SIGINT);
    assert!(hk.wait_exit().success());
    assert!(!hk.seen.iter().any(|l| l.contains("clock.1")));
}

#[test]
fn release_runs_first() {
    let app = App::new(
        "web: test -f released && echo saw release; exit 0\nrelease: echo releasing; touch released\n",
    );
    let (status, lines, _) = run_to_end(
        app.path(),
        &[
            "start",
            "--restart",
            "never",
            "--no-timestamp",
            "-p",
            &free_base_port().to_string(),
        ],
    );
    assert!(status.success(), "{lines:?}");
    let release = lines
        .iter()
        .position(|l| l.contains("release.1 | releasing"))
        .expect("release output");
    let web = lines
        .iter()
        .position(|l| l.contains("saw release"))
        .expect("web output");
    assert!(release < web, "{lines:?}");
}

#[test]
fn failed_release_starts_nothing_and_exits_with_its_code() {
    let app = App::new("release: echo migrating; exit 3\nweb: touch started; exec sleep 1000\n");
    let (status, lines, _) =
        run_to_end(app.path(), &["start", "-p", &free_base_port().to_string()]);
    assert_eq!(status.code(), Some(3), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("release failed (exit 3)")),
        "{lines:?}"
    );
    // The router's line, logged as it begins listening, names web.1; no other line does.
    let web = lines
        .iter()
        .filter(|l| l.contains("web.1") && !l.contains("router listening"));
    assert_eq!(web.count(), 0, "{lines:?}");
    assert!(!app.file("started").exists());
}

#[test]
fn no_release_skips_the_release_phase() {
    let app = App::new("release: exit 3\nweb: echo up\n");
    let (status, lines, _) = run_to_end(
        app.path(),
        &[
            "start",
            "--no-release",
            "--restart",
            "never",
            "-p",
            &free_base_port().to_string(),
        ],
    );
    assert!(status.success(), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("release")), "{lines:?}");
}

/// Each refusal: one line on stderr naming the problem, a non-zero code, nothing started.
#[test]
fn bad_input_is_refused_with_one_line_and_nothing_started() {
    let cases: &[(&str, &str, &[&str], i32, &str)] = &[
        (
            "web: touch started\nworker : sidekiq\n",
            "",
            &["start"],
            65,
            "hkrun: Procfile:2: not a process entry: worker : sidekiq",
        ),
        (
            "web: touch started\n",
            "A=1\nB C\n",
            &["start"],
            65,
            "hkrun: .env:2: cannot parse: B C",
        ),
        (
            "web: touch started\n",
            "",
            &["start", "-e", "missing.env"],
            66,
            "hkrun: missing.env: cannot read: No such file or directory",
        ),
        (
            "web: touch started\n",
            "",
            &["start", "-m", "web=two"],
            2,
            "hkrun: invalid value 'web=two' for '--formation <SPEC>': bad dyno count in `web=two` (expected a whole number)",
        ),
        (
            "web: touch started\n",
            "",
            &["start", "-m", "web"],
            2,
            "hkrun: invalid value 'web' for '--formation <SPEC>': bad formation entry `web`",
        ),
        (
            "web: touch started\n",
            "",
            &["start", "-m", "web=1:huge"],
            2,
            "hkrun: invalid value 'web=1:huge' for '--formation <SPEC>': bad dyno size `huge`",
        ),
        (
            "web: touch started\n",
            "",
            &["start", "-m", "cron=1"],
            65,
            "hkrun: unknown process type `cron` (the Procfile has web)",
        ),
        (
            "web: touch started\n",
            "",
            &["start", "cron"],
            65,
            "hkrun: unknown process type `cron` (the Procfile has web)",
        ),
        (
            "web: touch started\n",
            "",
            &["start", "-m", "web=0"],
            65,
            "hkrun: bad value `web=0` for --formation: it runs no dynos",
        ),
        (
            "web: touch started\n",
            "PORT=http\n",
            &["start"],
            65,
            "hkrun: bad PORT `http` from the env files",
        ),
        (
            "# nothing\n",
            "",
            &["start"],
            65,
            "hkrun: Procfile: no process entries",
        ),
        (
            "web: touch started\n",
            "",
            &["start", "-p", "70000"],
            2,
            "hkrun: invalid value '70000' for '--port <PORT>': expected a number from 1 to 65535",
        ),
        (
            "web: touch started\n",
            "",
            &["start", "--no-preboots"],
            2,
            "hkrun: unexpected argument '--no-preboots' found; a similar argument exists: '--no-preboot'",
        ),
    ];
    for (procfile, dotenv, args, code, message) in cases {
        let app = App::new(procfile);
        if !dotenv.is_empty() {
            app.write(".env", dotenv);
        }
        let (status, lines, stderr) = run_to_end(app.path(), args);
        assert_eq!(status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(stderr.starts_with(message), "{args:?}: {stderr:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(lines.is_empty(), "{args:?}: {lines:?}");
        assert!(!app.file("started").exists(), "{args:?} started a dyno");
    }
}

#[test]
fn a_missing_procfile_is_named() {
    let app = App::new("web: x\n");
    let (status, _, stderr) = run_to_end(app.path(), &["start", "-f", "nope/Procfile"]);
    assert_eq!(status.code(), Some(66));
    assert_eq!(
        stderr,
        "hkrun: nope/Procfile: no such file (give the Procfile with -f)\n"
    );
}

#[test]
fn a_web_port_in_use_is_refused_before_anything_starts() {
    let app = App::new("release: touch started\nweb: touch started\n");
    // A port held here whose next one (web.1's) is free: an ephemeral port's neighbour
    // may be another test's connection.
    let held = loop {
        let held = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
        let next = held.local_addr().expect("addr").port().checked_add(1);
        if next.is_some_and(|p| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok()) {
            break held;
        }
    };
    let port = held.local_addr().expect("addr").port().to_string();
    let (status, _, stderr) = run_to_end(app.path(), &["start", "-p", &port]);
    assert_eq!(status.code(), Some(69), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "hkrun: port {port} for the router is already in use"
        )),
        "{stderr}"
    );
    // Without the router, web.1 has that port.
    let (status, _, stderr) = run_to_end(app.path(), &["start", "-p", &port, "--no-router"]);
    assert_eq!(status.code(), Some(69), "{stderr}");
    assert!(
        stderr.starts_with(&format!("hkrun: port {port} for web.1 is already in use")),
        "{stderr}"
    );
    assert!(!app.file("started").exists());
    assert!(!app.file(".hkrun.sock").exists());
}

#[test]
fn a_crashing_dyno_stops_the_app_with_its_code() {
    let app = App::new("web: exec sleep 1000\nworker: echo bye; exit 7\n");
    let (status, lines, _) = run_to_end(
        app.path(),
        &[
            "start",
            "--exit-on-crash",
            "--no-timestamp",
            "-p",
            &free_base_port().to_string(),
        ],
    );
    assert_eq!(status.code(), Some(7), "{lines:?}");
    let exited = lines
        .iter()
        .position(|l| l.contains("worker.1 | Process exited with status 7"))
        .expect("exit line");
    let bye = lines
        .iter()
        .position(|l| l.contains("worker.1 | bye"))
        .expect("output");
    assert!(
        bye < exited,
        "the dyno's output comes before its exit: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("web.1    | Stopping all processes with SIGTERM")),
        "{lines:?}"
    );
}
