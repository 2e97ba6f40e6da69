//! `hkrun config`, `config:get`, `config:set` and `config:unset` on the app's `.env`: the
//! lines not named stay byte for byte, bad input changes nothing, and a running app's
//! dynos restart with the new values.

use crate::harness::{App, Hk, client, dyno_pid, free_base_port};

const DOTENV: &str = "\
# shop's settings
export SECRET_KEY='abc def'   # quoted, with a comment

DATABASE_URL=\"postgres://db/shop\"
MULTI=\"line one
line two\"
RAILS_ENV=development
";

#[test]
fn config_commands_read_and_change_the_env_file_and_nothing_else() {
    let app = App::new("web: true\n");
    app.write(".env", DOTENV);
    let run = |args: &[&str]| client(app.path(), args);

    let shown = run(&["config"]);
    assert!(shown.status.success(), "{}", shown.stderr);
    let name = shown.stdout.lines().next().expect("a header").to_owned();
    assert!(
        name.starts_with("=== ") && name.ends_with(" Config Vars"),
        "{name}"
    );
    assert_eq!(
        shown.stdout.lines().skip(1).collect::<Vec<_>>(),
        [
            "",
            "SECRET_KEY:   abc def",
            "DATABASE_URL: postgres://db/shop",
            "MULTI:        line one",
            "line two",
            "RAILS_ENV:    development",
        ]
    );
    assert_eq!(
        run(&["config:get", "DATABASE_URL"]).stdout,
        "postgres://db/shop\n"
    );
    assert_eq!(run(&["config:get", "NOPE"]).stdout, "\n");

    let set = run(&[
        "config:set",
        "RAILS_ENV=production",
        "GREETING=it's \"$5\" \\ ok",
    ]);
    assert!(set.status.success(), "{}", set.stderr);
    assert_eq!(
        set.stdout,
        "Setting RAILS_ENV and GREETING in .env... done\nRAILS_ENV: production\nGREETING:  it's \"$5\" \\ ok\n"
    );
    let after = std::fs::read_to_string(app.file(".env")).expect("read .env");
    assert_eq!(
        after,
        DOTENV.replace("RAILS_ENV=development", "RAILS_ENV=production")
            + "GREETING=\"it's \\\"\\$5\\\" \\\\ ok\"\n"
    );
    assert_eq!(
        run(&["config:get", "GREETING"]).stdout,
        "it's \"$5\" \\ ok\n"
    );

    // `-s` gives lines `config:set` takes back.
    let shell = run(&["config", "-s"]).stdout;
    assert!(shell.contains("MULTI=\"line one\\nline two\"\n"), "{shell}");

    let unset = run(&["config:unset", "MULTI", "SECRET_KEY"]);
    assert!(unset.status.success(), "{}", unset.stderr);
    let after = std::fs::read_to_string(app.file(".env")).expect("read .env");
    assert_eq!(
        after,
        "# shop's settings\n\nDATABASE_URL=\"postgres://db/shop\"\nRAILS_ENV=production\nGREETING=\"it's \\\"\\$5\\\" \\\\ ok\"\n"
    );

    // Bad input: one line, exit 65, the file as it was.
    for (args, message) in [
        (
            &["config:set", "NOEQUALS"][..],
            "hkrun: bad config var `NOEQUALS` (expected KEY=value)\n",
        ),
        (
            &["config:set", "A=1", "2B=x"][..],
            "hkrun: bad config var name `2B` (expected letters, digits, `_` and `.`, not starting with a digit)\n",
        ),
        (
            &["config:unset", "A-B"][..],
            "hkrun: bad config var name `A-B` (expected letters, digits, `_` and `.`, not starting with a digit)\n",
        ),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(65), "{args:?}");
        assert_eq!(out.stderr, message, "{args:?}");
        assert_eq!(
            std::fs::read_to_string(app.file(".env")).expect("read"),
            after
        );
    }
}

#[test]
fn a_new_env_file_is_created_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let app = App::new("web: true\n");
    let out = client(app.path(), &["config:set", "TOKEN=s3cret"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(app.file(".env")).expect("read"),
        "TOKEN=s3cret\n"
    );
    let mode = std::fs::metadata(app.file(".env"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// A worker that says its `GREETING`, `hello` at first, running.
fn greeting_app() -> (App, Hk) {
    let app = App::new("worker: echo \"greeting=$GREETING\"; exec sleep 1000\n");
    app.write(".env", "GREETING=hello\n");
    let port = free_base_port().to_string();
    let mut hk = Hk::start(
        app.path(),
        &["start", "--no-timestamp", "-t", "2", "-p", &port],
    );
    hk.wait_for("worker.1 | greeting=hello");
    (app, hk)
}

#[test]
fn a_running_app_restarts_with_the_new_config() {
    let (app, mut hk) = greeting_app();

    // Without a restart the dyno keeps what it has.
    let out = client(app.path(), &["config:set", "GREETING=hola", "--no-restart"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(!out.stdout.contains("Restarting"), "{}", out.stdout);

    let out = client(app.path(), &["config:set", "GREETING=bonjour"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("Restarting "), "{}", out.stdout);
    assert!(out.stdout.contains("worker.1... done"), "{}", out.stdout);
    hk.wait_for("worker.1 | greeting=bonjour");

    // A malformed file is refused with its line, and nothing restarts.
    std::fs::write(app.file(".env"), "GREETING=bonjour\nBROKEN\n").expect("write");
    let out = client(app.path(), &["config:set", "X=1"]);
    assert_eq!(out.status.code(), Some(65), "{}", out.stderr);
    assert!(
        out.stderr.starts_with(".env:2: ") || out.stderr.contains(".env:2"),
        "{}",
        out.stderr
    );
    hk.stop_cleanly();
}

/// A worker saying its `GREETING`, started with `-e slow.env`, a FIFO fed `hello` each
/// time hkrun read it as it started, and nobody writing it now; and the FIFO's path.
fn slow_env_app() -> (App, Hk, std::path::PathBuf) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let app = App::new("worker: echo \"greeting=$GREETING\"; exec sleep 1000\n");
    let fifo = app.file("slow.env");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let feeding = Arc::new(AtomicBool::new(true));
    let feeder = {
        let (fifo, feeding) = (fifo.clone(), Arc::clone(&feeding));
        std::thread::spawn(move || {
            while feeding.load(Ordering::SeqCst) {
                if let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(&fifo) {
                    let _ = file.write_all(b"GREETING=hello\n");
                }
            }
        })
    };
    let port = free_base_port().to_string();
    let mut hk = Hk::start(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "-t",
            "2",
            "-p",
            &port,
            "-e",
            "slow.env",
        ],
    );
    hk.wait_for("worker.1 | greeting=hello");
    // No more feeding: a reader of our own lets the feeder's last open through.
    feeding.store(false, Ordering::SeqCst);
    let unblock = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the FIFO to read");
    feeder.join().expect("the feeder");
    drop(unblock);
    (app, hk, fifo)
}

/// `hkrun restart` of the whole app, under way, and the FIFO's writer that hkrun's read of
/// it waits for.
fn restart_reading(
    app: &App,
    fifo: &std::path::Path,
) -> (
    std::thread::JoinHandle<crate::harness::Client>,
    std::fs::File,
) {
    use std::os::unix::fs::OpenOptionsExt;

    let dir = app.path().to_owned();
    let restart = std::thread::spawn(move || client(&dir, &["restart"]));
    // Opening the FIFO to write succeeds once hkrun waits to read it; hkrun's read then
    // waits for what this writer writes.
    let writer = crate::harness::eventually("hkrun to read slow.env again", || {
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(fifo)
            .ok()
    });
    (restart, writer)
}

/// The env files are read again off hkrun's loop: while one is slow to read (a FIFO whose
/// writer has written nothing yet), `ps` is still answered, and the restart then takes
/// what the file gave.
#[test]
fn hkrun_answers_while_a_restart_reads_the_env_files_again() {
    use std::io::Write;

    let (app, mut hk, fifo) = slow_env_app();
    let (restart, mut writer) = restart_reading(&app, &fifo);
    let out = client(app.path(), &["ps"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("worker.1"), "{}", out.stdout);
    writer
        .write_all(b"GREETING=bonjour\n")
        .expect("write the FIFO");
    drop(writer);
    let out = restart.join().expect("the restart");
    assert!(out.status.success(), "{} {}", out.stdout, out.stderr);
    hk.wait_for("worker.1 | greeting=bonjour");
    hk.stop_cleanly();
}

/// SIGTERM stops the app while a restart's read of the env files waits: hkrun exits
/// without waiting for that read.
#[test]
fn hkrun_stops_while_a_restart_reads_the_env_files_again() {
    let (app, mut hk, fifo) = slow_env_app();
    let (restart, writer) = restart_reading(&app, &fifo);
    hk.stop_cleanly();
    drop(writer);
    let out = restart.join().expect("the restart");
    assert!(!out.status.success(), "{} {}", out.stdout, out.stderr);
}

#[test]
fn parallel_config_sets_each_keep_their_key() {
    let app = App::new("web: true\n");
    app.write(".env", "FIRST=1\n");
    let writers: Vec<_> = (0..20)
        .map(|i| {
            let dir = app.path().to_owned();
            std::thread::spawn(move || client(&dir, &["config:set", &format!("KEY_{i}={i}")]))
        })
        .collect();
    for writer in writers {
        let out = writer.join().expect("a writer");
        assert!(out.status.success(), "{} {}", out.stdout, out.stderr);
    }
    let after = std::fs::read_to_string(app.file(".env")).expect("read .env");
    let kept = (0..20)
        .filter(|i| after.lines().any(|l| l == format!("KEY_{i}={i}")))
        .count();
    eprintln!("20 parallel config:set: {kept} keys kept");
    assert_eq!(kept, 20, "{after}");
    assert!(after.starts_with("FIRST=1\n"), "{after}");
}

#[test]
fn a_config_set_that_cannot_have_its_turn_fails_saying_so_and_changes_nothing() {
    use nix::fcntl::{Flock, FlockArg};
    let app = App::new("web: true\n");
    app.write(".env", "FIRST=1\n");
    // Another change holds the turn (the env file's folder) for longer than a writer waits.
    let folder = std::fs::File::open(app.path()).expect("open the app folder");
    let held = Flock::lock(folder, FlockArg::LockExclusive).expect("lock the folder");
    let asked = std::time::Instant::now();
    let out = client(app.path(), &["config:set", "KEY=1"]);
    let waited = asked.elapsed();
    drop(held);
    eprintln!("after {waited:?}: {}", out.stderr.trim());
    assert_eq!(out.status.code(), Some(69), "{} {}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("another config:set or config:unset")
            && out.stderr.contains("nothing changed"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(app.file(".env")).expect("read .env"),
        "FIRST=1\n"
    );
}

/// Binds `PORT` once the file `hold` is gone, then answers every request.
const HELD_WEB: &str = "exec hkrun-test-child listen --wait-while hold";

#[test]
fn a_config_set_whose_restart_is_refused_leaves_the_running_app_on_its_old_config() {
    let app = App::new(&format!(
        "web: {HELD_WEB}\nworker: echo \"greeting=$GREETING\"; exec sleep 1000\n",
    ));
    app.write(".env", "GREETING=hello\n");
    let port = free_base_port().to_string();
    let mut hk = Hk::start(
        app.path(),
        &["start", "--no-timestamp", "-t", "2", "-p", &port],
    );
    // Names are padded to the longest: `web.1    | `.
    hk.wait_for("greeting=hello");
    crate::harness::eventually("web.1 to be up", || {
        let out = client(app.path(), &["ps", "--json"]);
        let ps: hkrun::control::protocol::Ps = serde_json::from_str(&out.stdout).ok()?;
        (ps.dynos.iter().find(|d| d.name == "web.1")?.state == "up").then_some(())
    });
    // A preboot of web that stays under way until `hold` is removed.
    app.write("hold", "");
    let dir = app.path().to_owned();
    let restart = std::thread::spawn(move || client(&dir, &["restart", "web"]));
    hk.wait_for(&format!("Starting process with command `{HELD_WEB}`"));
    let out = client(app.path(), &["config:set", "GREETING=bonjour"]);
    eprintln!("config:set during the preboot: {}", out.stderr.trim());
    assert_eq!(out.status.code(), Some(1), "{} {}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(
            ".env is changed, but the running app was not restarted and keeps its old config vars"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(app.file(".env")).expect("read .env"),
        "GREETING=bonjour\n"
    );
    // A crash restart now gets the config the app runs with, not the refused one.
    let worker = crate::harness::eventually("worker.1's pid", || dyno_pid(app.path(), "worker.1"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill worker.1");
    let line = hk.wait_for("| greeting=");
    assert!(line.ends_with("greeting=hello"), "{line}");
    std::fs::remove_file(app.file("hold")).expect("let the preboot finish");
    let out = restart.join().expect("the restart");
    assert!(out.status.success(), "{} {}", out.stdout, out.stderr);
    // As the refusal said: a restart of the app takes the file's config on.
    let out = client(app.path(), &["restart"]);
    assert!(out.status.success(), "{} {}", out.stdout, out.stderr);
    hk.wait_for("| greeting=bonjour");
    hk.stop_cleanly();
}

#[test]
fn a_value_exec_could_never_pass_is_refused_by_the_running_app_which_keeps_its_dynos() {
    let (app, mut hk) = greeting_app();
    let pid = |app: &App| {
        let out = client(app.path(), &["ps", "--json"]);
        let ps: hkrun::control::protocol::Ps = serde_json::from_str(&out.stdout).expect("ps");
        ps.dynos
            .iter()
            .find(|d| d.name == "worker.1")
            .and_then(|d| d.pid)
    };
    let before = pid(&app);
    // Over exec's 128 KiB for one string: no dyno could ever be started with it (and no
    // command line can carry it: it is written into the file by hand).
    app.write(
        ".env",
        &format!("GREETING=hello\nBIG={}\n", "x".repeat(140_000)),
    );
    let out = client(app.path(), &["config:set", "GREETING=hola"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("is changed, but the running app was not restarted")
            && out.stderr.contains("too large for exec"),
        "{}",
        out.stderr
    );
    assert_eq!(
        dyno_pid(app.path(), "worker.1"),
        before,
        "worker.1 was restarted"
    );
    hk.stop_cleanly();
    assert!(
        !hk.seen.iter().any(|l| l.contains("greeting=hola")),
        "{:#?}",
        hk.seen
    );
}
