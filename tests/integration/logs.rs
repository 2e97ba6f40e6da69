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
