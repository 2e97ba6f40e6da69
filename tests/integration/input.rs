//! What `check` and `start` refuse up front (one line naming the file and line, or the
//! value; nothing started), and the forms of input they accept.

use nix::sys::signal::Signal;

use crate::harness::{App, Hk, client, free_base_port, payloads, run_to_end};

/// Runs `args` and asserts a refusal: `code`, one stderr line starting with `message`,
/// no stdout, no dyno started.
#[track_caller]
fn refused(app: &App, args: &[&str], code: i32, message: &str) {
    let (status, lines, stderr) = run_to_end(app.path(), args);
    assert_eq!(status.code(), Some(code), "{args:?}: {stderr}");
    assert!(stderr.starts_with(message), "{args:?}: {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
    assert!(lines.is_empty(), "{args:?}: {lines:?}");
    assert!(!app.file("started").exists(), "{args:?} started a dyno");
}

#[test]
fn nul_bytes_and_values_too_large_for_exec_are_refused_with_their_line() {
    let big = "x".repeat(200_000);
    let cases: Vec<(String, String, &str)> = vec![
        (
            "release: touch started\nweb: echo a\0b\n".into(),
            String::new(),
            "hkrun: Procfile:2: a command cannot hold a NUL byte",
        ),
        (
            "web: touch started\n".into(),
            "A=1\nB=\"x\0y\"\n".into(),
            "hkrun: .env:2: a value cannot hold a NUL byte",
        ),
        (
            "web: touch started\n".into(),
            format!("A=1\n\nBIG={big}\n"),
            "hkrun: .env:3: `BIG` is too large for exec: `BIG=value` is 200004 bytes",
        ),
        (
            format!("release: touch started\nweb: echo {big}\n"),
            String::new(),
            // `echo` is a builtin: run as written, without `exec` before it.
            "hkrun: Procfile:2: the command is too large for exec: 200005 bytes",
        ),
        (
            // Each value fits, but together they pass any stack limit's share for exec.
            "web: touch started\n".into(),
            (0..60)
                .map(|i| format!("V{i}={}\n", "y".repeat(120_000)))
                .collect(),
            "hkrun: the app's environment is ",
        ),
    ];
    for (procfile, dotenv, message) in &cases {
        let app = App::new(procfile);
        if !dotenv.is_empty() {
            app.write(".env", dotenv);
        }
        for command in ["check", "start"] {
            refused(
                &app,
                &[command, "-p", &free_base_port().to_string()],
                65,
                message,
            );
        }
    }
}

#[test]
fn zero_port_and_zero_boot_timeout_are_refused() {
    let app = App::new("web: touch started\n");
    // Bad on the command line: clap's words, exit 2, as every flag's bad value.
    for command in ["check", "start"] {
        refused(
            &app,
            &[command, "-p", "0"],
            2,
            "hkrun: invalid value '0' for '--port <PORT>': expected a number from 1 to 65535",
        );
    }
    refused(
        &app,
        &["start", "--boot-timeout", "0"],
        2,
        "hkrun: invalid value '0' for '--boot-timeout <SECONDS>': expected a number of seconds above 0",
    );
}

#[test]
fn a_dotenv_that_is_a_directory_is_named() {
    let app = App::new("web: touch started\n");
    std::fs::create_dir(app.file(".env")).expect("mkdir .env");
    for command in ["check", "start"] {
        refused(&app, &[command], 66, "hkrun: .env: cannot read: ");
    }
}

#[test]
fn a_procfile_with_only_release_says_so() {
    let app = App::new("release: touch started\n");
    for command in ["check", "start"] {
        refused(
            &app,
            &[command],
            65,
            "hkrun: Procfile: no process type besides `release`",
        );
    }
}

#[test]
fn dollar_names_in_env_files_read_like_bash() {
    let app = App::new("show: echo \"URL=$DATABASE_URL B=$B C=$C\"\n");
    app.write(
        ".env",
        "DB=wrong\nDB_HOST=db.internal\nDATABASE_URL=postgres://$DB_HOST:5432/app\nA=1\nB=\"x$A\"\n",
    );
    app.write("more.env", "C=${DB_HOST}-$HKRUN_TEST_ONLY_INHERITED\n");
    let mut cmd = crate::harness::hkrun(
        app.path(),
        &[
            "start",
            "--restart",
            "never",
            "--no-timestamp",
            "-e",
            ".env,more.env",
        ],
        &crate::harness::unique_tag(),
    );
    cmd.env("HKRUN_TEST_ONLY_INHERITED", "inherited")
        .env("DB_HOST", "not-this");
    let mut hk = Hk::spawn(cmd);
    let status = hk.wait_exit();
    assert!(status.success(), "{status:?} {}", hk.stderr());
    assert_eq!(
        payloads(&hk.seen, "show.1")
            .into_iter()
            .filter(|p| p.starts_with("URL="))
            .collect::<Vec<_>>(),
        ["URL=postgres://db.internal:5432/app B=x1 C=db.internal-inherited"]
    );
}

#[test]
fn positional_formations_mean_what_dash_m_means() {
    let app = App::new(
        "web: echo \"$DYNO up\"; exec sleep 1000\nworker: echo \"$DYNO up\"; exec sleep 1000\nclock: echo \"$DYNO up\"\n",
    );
    let base = free_base_port().to_string();
    let mut hk = Hk::start(
        app.path(),
        &["start", "--no-timestamp", "-p", &base, "web=2", "worker"],
    );
    hk.wait_for_each(&["| web.1 up", "| web.2 up", "| worker.1 up"]);
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
    assert!(
        !hk.seen.iter().any(|l| l.contains("clock")),
        "{:?}",
        hk.seen
    );
}

#[test]
fn scale_echoes_the_size_as_given() {
    let app = App::new("worker: echo \"$DYNO ready\"; exec sleep 1000\nclock: exec sleep 1000\n");
    let base = free_base_port().to_string();
    let mut hk = Hk::start(
        app.path(),
        &["start", "--no-timestamp", "-m", "worker=1", "-p", &base],
    );
    hk.wait_for("worker.1 ready");
    let out = client(app.path(), &["scale", "clock=0:1K"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "Scaling dynos... done, now running clock at 0:1K\n"
    );
    hk.stop_cleanly();
}
