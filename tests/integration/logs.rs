//! The log multiplexer: completeness, order, framing, colour and partial lines.

use nix::sys::signal::Signal;

use crate::harness::{App, Hk, free_base_port, hkrun, payloads, raw_output, run_to_end};

const LINES: usize = 50_000;

/// Four dynos flood 50,000 lines each, odd ones on stdout and even ones on stderr: every
/// line arrives once, whole, in order per dyno (awk flushes each stdout line, so the
/// dyno itself writes them in order).
#[test]
fn four_floods_arrive_complete_in_order_and_unspliced() {
    four_floods(&[]);
}

/// The same, each dyno on a terminal of its own (`--tty`), whose line ends are `\r\n`.
#[test]
fn four_floods_on_terminals_arrive_complete_in_order_and_unspliced() {
    four_floods(&["--tty"]);
}

fn four_floods(extra: &[&str]) {
    let flood = |id: &str| {
        format!(
            "{id}: awk 'BEGIN {{ for (i = 1; i <= {LINES}; i++) {{ line = sprintf(\"{id}:%08d:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\", i); if (i % 2) {{ print line; fflush() }} else print line > \"/dev/stderr\" }} }}'; echo {id} done; exec sleep 1000\n"
        )
    };
    let procfile: String = ["a", "b", "c", "d"].map(flood).concat();
    let app = App::new(&procfile);
    let port = free_base_port().to_string();
    let mut args = vec!["start", "--no-timestamp", "-p", &port];
    args.extend_from_slice(extra);
    let mut hk = Hk::start(app.path(), &args);
    hk.wait_for_each(&["| a done", "| b done", "| c done", "| d done"]);
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
    for id in ["a", "b", "c", "d"] {
        let got = payloads(&hk.seen, &format!("{id}.1"));
        let numbers: Vec<usize> = got
            .iter()
            .filter(|p| p.starts_with(&format!("{id}:")))
            .map(|p| {
                let fields: Vec<&str> = p.split(':').collect();
                assert_eq!(fields.len(), 3, "spliced line: {p:?}");
                assert_eq!(fields[2].len(), 52, "cut line: {p:?}");
                fields[1].parse().expect("a sequence number")
            })
            .collect();
        assert_eq!(numbers.len(), LINES, "lines of {id}.1");
        assert!(
            numbers.iter().enumerate().all(|(i, &n)| n == i + 1),
            "{id}.1 out of order"
        );
    }
}

#[test]
fn no_colour_on_a_pipe_and_distinct_colours_when_asked() {
    let app = App::new("web: echo from web\nworker: echo from worker; exec sleep 1000\n");
    let base = free_base_port().to_string();
    // Auto: stdout is a pipe, so no escape codes even without NO_COLOR.
    let mut auto = hkrun(
        app.path(),
        &["start", "--exit-on-crash", "-p", &base],
        "colour-auto",
    );
    auto.env_remove("NO_COLOR");
    let mut hk = Hk::spawn(auto);
    hk.wait_exit();
    assert!(hk.seen.iter().any(|l| l.contains("from web")));
    assert!(!hk.seen.iter().any(|l| l.contains('\x1b')), "{:?}", hk.seen);

    let (_, lines, _) = run_to_end(
        app.path(),
        &["start", "--exit-on-crash", "--color", "always", "-p", &base],
    );
    let web = lines
        .iter()
        .find(|l| l.contains("from web"))
        .expect("web line");
    let worker = lines
        .iter()
        .find(|l| l.contains("from worker"))
        .expect("worker line");
    assert!(web.starts_with("\x1b[36m"), "{web:?}");
    assert!(worker.starts_with("\x1b[33m"), "{worker:?}");
    let system = lines
        .iter()
        .find(|l| l.contains("system"))
        .expect("a system line");
    assert!(!system.starts_with('\x1b'), "{system:?}");
}

#[test]
fn a_long_line_without_newline_arrives_whole_in_full_lines() {
    let app = App::new("big: head -c 204800 /dev/zero | tr '\\0' x\n");
    let (status, lines, _) = run_to_end(
        app.path(),
        &["start", "--no-timestamp", "--restart", "never"],
    );
    assert!(status.success());
    let pieces: Vec<&str> = payloads(&lines, "big.1")
        .into_iter()
        .filter(|p| p.starts_with('x'))
        .collect();
    assert!(
        pieces
            .iter()
            .all(|p| p.len() <= 64 * 1024 && p.bytes().all(|b| b == b'x')),
        "{:?}",
        pieces.iter().map(|p| p.len()).collect::<Vec<_>>()
    );
    assert_eq!(pieces.iter().map(|p| p.len()).sum::<usize>(), 204_800);
    assert!(pieces.len() >= 4);
}

#[test]
fn a_partial_line_is_shown_while_the_dyno_runs() {
    let app = App::new("repl: printf 'prompt> '; exec sleep 1000\n");
    let mut hk = Hk::start(app.path(), &["start", "--no-timestamp"]);
    let line = hk.wait_for("| prompt>");
    assert_eq!(line, "repl.1 | prompt> ");
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
}

#[test]
fn invalid_utf8_passes_through_unchanged() {
    let app = App::new("bytes: printf 'caf\\351\\n'\n");
    let (status, stdout) = raw_output(hkrun(
        app.path(),
        &["start", "--no-timestamp", "--restart", "never"],
        "bytes",
    ));
    assert!(status.success());
    let needle: &[u8] = b"bytes.1 | caf\xe9\n";
    assert!(
        stdout.windows(needle.len()).any(|w| w == needle),
        "{:?}",
        String::from_utf8_lossy(&stdout)
    );
}

#[test]
fn timestamps_are_shown_unless_turned_off() {
    let app = App::new("web: echo hi\n");
    let (_, lines, _) = run_to_end(
        app.path(),
        &[
            "start",
            "--restart",
            "never",
            "-p",
            &free_base_port().to_string(),
        ],
    );
    let line = lines
        .iter()
        .find(|l| l.ends_with("| hi"))
        .expect("the line");
    let (clock, rest) = line.split_at(8);
    assert!(
        clock.bytes().enumerate().all(|(i, b)| if i == 2 || i == 5 {
            b == b':'
        } else {
            b.is_ascii_digit()
        }),
        "{line}"
    );
    assert_eq!(rest, " web.1  | hi");
}

#[test]
fn log_files_rotate_at_their_size_and_keep_the_count_given() {
    // 400 lines of 60 bytes, each about 120 in Heroku's form: several 4 KiB files.
    let app = App::new(
        "worker: awk 'BEGIN { for (i = 1; i <= 400; i++) printf \"line %05d %s\\n\", i, \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\" }'; echo done; exec sleep 1000\n",
    );
    let port = free_base_port().to_string();
    let mut hk = Hk::start(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "--log-dir",
            "logs",
            "--log-max-size",
            "4K",
            "--log-keep",
            "2",
            "-p",
            &port,
        ],
    );
    hk.wait_for("worker.1 | done");
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
    let logs = app.file("logs");
    let mut names: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "system.log",
            "worker.1.log",
            "worker.1.log.1",
            "worker.1.log.2"
        ]
    );
    let read = |name: &str| std::fs::read_to_string(logs.join(name)).unwrap();
    for name in ["worker.1.log", "worker.1.log.1", "worker.1.log.2"] {
        let size = read(name).len();
        assert!(size <= 4096, "{name}: {size} bytes");
    }
    // Oldest to newest, the kept files hold the last lines, whole and in order, then
    // hkrun's events about the dyno.
    let text = read("worker.1.log.2") + &read("worker.1.log.1") + &read("worker.1.log");
    let numbers: Vec<u32> = text
        .lines()
        .filter_map(|l| l.split_once(" app[worker.1]: line "))
        .map(|(_, rest)| rest[..5].parse().unwrap())
        .collect();
    assert_eq!(numbers.last(), Some(&400), "{text}");
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "not consecutive: {numbers:?}"
    );
    assert!(
        text.ends_with("heroku[worker.1]: Process exited with status 143\n"),
        "{text}"
    );
    assert!(read("system.log").contains(" heroku[system]: SIGTERM received\n"));
}

#[test]
fn a_log_dir_that_cannot_be_written_is_one_warning_and_the_app_runs_on() {
    let app = App::new("worker: echo one; echo two; exec sleep 1000\n");
    // A folder under a file: no one can create it (root included, as in a container).
    app.write("not-a-folder", "");
    let port = free_base_port().to_string();
    let mut hk = Hk::start(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "--log-dir",
            "not-a-folder/logs",
            "-p",
            &port,
        ],
    );
    hk.wait_for("worker.1 | two");
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
    let stderr = hk.stderr();
    let warnings: Vec<&str> = stderr.lines().collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0]
            .starts_with("hkrun: warning: cannot write the log files in not-a-folder/logs ("),
        "{stderr}"
    );
}

/// The numbers of `name`'s `line NNNNN PAYLOAD` lines in a log file in Heroku's form,
/// each checked whole: a line cut short, or glued to another, fails. hkrun's lines about
/// the dyno, and the dyno's lines in `others`, are passed over.
fn numbered_lines(text: &str, name: &str, payload: &str, others: &[&str]) -> Vec<u32> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a part of a line at the end"
    );
    let app = format!("app[{name}]: ");
    let hkrun = format!("heroku[{name}]: ");
    let mut numbers = Vec::new();
    for line in text.lines() {
        let (stamp, rest) = line.split_once(' ').unwrap_or((line, ""));
        assert_eq!(
            stamp.len(),
            "2026-12-01T12:00:00.123456+00:00".len(),
            "{line:?}"
        );
        if rest.starts_with(&hkrun) {
            continue;
        }
        let text = rest
            .strip_prefix(&app)
            .unwrap_or_else(|| panic!("not a line of {name}: {line:?}"));
        if others.contains(&text) {
            continue;
        }
        let (number, tail) = text
            .strip_prefix("line ")
            .and_then(|t| t.split_at_checked(5))
            .unwrap_or_else(|| panic!("cut or glued: {line:?}"));
        assert_eq!(tail, format!(" {payload}"), "cut or glued: {line:?}");
        numbers.push(number.parse().expect("a line number"));
    }
    numbers
}

/// Four dynos flood 50,000 lines each, every line a write of its own (the smallest
/// chunks the log can get): stdout keeps up, and so does each file, whole and in order.
#[test]
fn a_burst_lands_whole_in_the_log_files() {
    let flood = |id: &str| {
        format!(
            "{id}: awk 'BEGIN {{ for (i = 1; i <= {LINES}; i++) {{ printf \"line %05d burst\\n\", i; fflush() }} }}'; echo {id} done; exec sleep 1000\n"
        )
    };
    let app = App::new(&["a", "b", "c", "d"].map(flood).concat());
    let port = free_base_port().to_string();
    let mut hk = Hk::start(
        app.path(),
        &["start", "--no-timestamp", "--log-dir", "logs", "-p", &port],
    );
    hk.wait_for_each(&["| a done", "| b done", "| c done", "| d done"]);
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success(), "{}", hk.stderr());
    let read = |name: &str| std::fs::read_to_string(app.file("logs").join(name)).unwrap();
    let system = read("system.log");
    assert!(!system.contains("missed"), "{system}");
    for id in ["a", "b", "c", "d"] {
        let name = format!("{id}.1");
        let done = format!("{id} done");
        let numbers = numbered_lines(&read(&format!("{name}.log")), &name, "burst", &[&done]);
        assert_eq!(numbers.len(), LINES, "lines in {name}.log\n{system}");
        assert!(
            numbers.iter().zip(1..).all(|(&n, i)| n == i),
            "{name}.log out of order"
        );
    }
}

/// The soft limit of the size of a file hkrun writes (RLIMIT_FSIZE), raised later with
/// prlimit(2): a disk that fills up and has room again, without root or a small
/// filesystem. hkrun inherits SIGXFSZ ignored, so a write past the limit fails (EFBIG)
/// rather than kill it, as a write to a full disk fails (ENOSPC).
#[allow(unsafe_code)]
fn with_file_size_limit(command: &mut std::process::Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit and signal are async-signal-safe; nothing else runs in the child.
    unsafe {
        command.pre_exec(move || {
            let mut limit = nix::libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if nix::libc::getrlimit(nix::libc::RLIMIT_FSIZE, &mut limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit.rlim_cur = bytes.min(limit.rlim_max);
            if nix::libc::setrlimit(nix::libc::RLIMIT_FSIZE, &limit) != 0
                || nix::libc::signal(nix::libc::SIGXFSZ, nix::libc::SIG_IGN) == nix::libc::SIG_ERR
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Lifts the file size limit of `pid` back to its hard limit.
#[allow(unsafe_code)]
fn lift_file_size_limit(pid: u32) {
    let mut limit = nix::libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let pid = i32::try_from(pid).expect("pids fit in i32");
    // SAFETY: prlimit reads and writes only the struct given.
    unsafe {
        assert_eq!(
            nix::libc::prlimit(pid, nix::libc::RLIMIT_FSIZE, std::ptr::null(), &mut limit),
            0
        );
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(
            nix::libc::prlimit(pid, nix::libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()),
            0,
            "{}",
            std::io::Error::last_os_error()
        );
    }
}

/// A file that cannot grow (a full disk) stops being written, said on stdout and in
/// `system.log`; its lines are counted, none is left in part; once it can grow again,
/// writing resumes with the count, and every line is either in the file or counted.
#[test]
fn a_full_disk_counts_the_lines_missed_and_leaves_no_part_of_a_line() {
    let payload = "x".repeat(40);
    let awk = |from: u32, to: u32| {
        format!(
            "awk 'BEGIN {{ for (i = {from}; i <= {to}; i++) printf \"line %05d {payload}\\n\", i }}'"
        )
    };
    let app = App::new(&format!(
        "worker: {}; while [ ! -e go ]; do sleep 0.05; done; {}; exec sleep 1000\n",
        awk(1, 2000),
        awk(2001, 2500)
    ));
    let port = free_base_port().to_string();
    let mut command = hkrun(
        app.path(),
        &["start", "--no-timestamp", "--log-dir", "logs", "-p", &port],
        &crate::harness::unique_tag(),
    );
    // About 200 lines in Heroku's form.
    with_file_size_limit(&mut command, 16 * 1024);
    let mut hk = Hk::spawn(command);
    hk.wait_for_each(&[
        "worker.1 | line 02000",
        "| logs/worker.1.log stopped being written: File too large",
    ]);
    lift_file_size_limit(hk.child.id());
    app.write("go", "");
    // Said once the files have taken a line after the limit was lifted: stdout may be
    // ahead of them.
    let again = "| logs/worker.1.log is written again: ";
    hk.wait_for_each(&["worker.1 | line 02500", again]);
    let resumed = hk.seen.iter().find(|l| l.contains(again)).expect("seen");
    let missed: usize = resumed
        .split_once("written again: ")
        .and_then(|(_, rest)| rest.split_once(" lines"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no count: {resumed}"));
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success(), "{}", hk.stderr());

    let read = |name: &str| std::fs::read_to_string(app.file("logs").join(name)).unwrap();
    let text = read("worker.1.log");
    let numbers = numbered_lines(&text, "worker.1", &payload, &[]);
    // The first lines, up to where the file was full, then a gap, and the lines the files
    // had not yet taken when the limit was lifted; each line once, in order.
    assert_eq!(numbers.first(), Some(&1), "{numbers:?}");
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    assert!(
        numbers.windows(2).any(|w| w[1] > w[0] + 1) && missed > 0,
        "no gap: {numbers:?}"
    );
    assert!(numbers.ends_with(&(2001..=2500).collect::<Vec<_>>()));
    // Every line of the dyno on stdout is in the file or counted.
    let on_stdout = hk
        .seen
        .iter()
        .filter(|l| l.starts_with("worker.1 | "))
        .count();
    assert_eq!(text.lines().count() + missed, on_stdout, "{missed} counted");
    let system = read("system.log");
    assert!(
        system.contains(&format!(
            " heroku[system]: logs/worker.1.log is written again: {missed} lines were missed"
        )),
        "{system}"
    );
}

/// A link planted where a log file goes is not followed: what it points to is left as it
/// was, and hkrun says the file is not written, and why.
#[test]
fn a_log_file_that_is_a_link_is_not_followed() {
    use std::os::unix::fs::PermissionsExt;
    let app = App::new("worker: echo one; echo two; exec sleep 1000\n");
    app.write("victim", "precious\n");
    let logs = app.file("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(app.file("victim"), logs.join("worker.1.log")).unwrap();
    let port = free_base_port().to_string();
    let mut hk = Hk::start(
        app.path(),
        &["start", "--no-timestamp", "--log-dir", "logs", "-p", &port],
    );
    // In either order: the refusal is said when the first line is to be written.
    hk.wait_for_each(&["worker.1 | two", "logs/worker.1.log stopped being written"]);
    let said = hk
        .seen
        .iter()
        .find(|l| l.contains("logs/worker.1.log stopped being written"))
        .expect("seen");
    assert!(said.contains("symbolic link"), "{said}");
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
    assert_eq!(
        std::fs::read_to_string(app.file("victim")).unwrap(),
        "precious\n"
    );
    assert!(logs.join("worker.1.log").is_symlink());
    let system = std::fs::read_to_string(logs.join("system.log")).unwrap();
    assert!(
        system.contains(
            " heroku[system]: logs/worker.1.log stopped being written: it is a symbolic link"
        ),
        "{system}"
    );
}

/// A log folder anyone can write to could hold such links: refused at start, as bad
/// input, before anything runs.
#[test]
fn a_log_folder_others_can_write_to_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let app = App::new("worker: touch started; exec sleep 1000\n");
    let logs = app.file("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o777)).unwrap();
    let port = free_base_port().to_string();
    let (status, lines, stderr) = run_to_end(
        app.path(),
        &["start", "--no-timestamp", "--log-dir", "logs", "-p", &port],
    );
    assert_eq!(status.code(), Some(65), "{stderr}");
    assert_eq!(
        stderr,
        "hkrun: log folder logs refused: other users can write to it (mode 0777); take their write permission away (chmod go-w), or give another folder\n"
    );
    assert!(lines.is_empty(), "{lines:?}");
    assert!(!app.file("started").exists());
    assert_eq!(std::fs::read_dir(&logs).unwrap().count(), 0);
}

/// A `--log-keep` nobody means (rotation would move that many files) is refused at start.
#[test]
fn a_huge_log_keep_is_refused_at_start() {
    let app = App::new("worker: touch started; exec sleep 1000\n");
    let port = free_base_port().to_string();
    let mut hk = Hk::start(
        app.path(),
        &[
            "start",
            "--log-dir",
            "logs",
            "--log-keep",
            "99999999999",
            "-p",
            &port,
        ],
    );
    let status = hk.wait_exit();
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        hk.stderr(),
        "hkrun: invalid value '99999999999' for '--log-keep <N>': expected a number of files, at most 1000\n"
    );
    assert!(!app.file("started").exists());
}
