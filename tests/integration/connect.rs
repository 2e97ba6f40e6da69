//! `hkrun connect`: attaching to a `--tty` dyno's terminal, typing into it, detaching with
//! Ctrl-], one client at a time, and a clear refusal for a dyno on no terminal.

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use crate::harness::{App, Hk, PATIENCE, client, free_base_port, hkrun, unique_tag, wait_bounded};

/// A running `hkrun connect`: its stdin, and what it has printed so far.
struct Connected {
    child: Child,
    shown: mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Connected {
    fn start(app: &App, dyno: &str) -> Self {
        let mut child = hkrun(app.path(), &["connect", dyno], &unique_tag())
            .stdin(Stdio::piped())
            .spawn()
            .expect("start hkrun connect");
        let mut stdout = child.stdout.take().expect("piped");
        let (tx, shown) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            shown,
            seen: Vec::new(),
        }
    }

    fn type_keys(&mut self, keys: &[u8]) {
        let stdin = self.child.stdin.as_mut().expect("piped");
        stdin.write_all(keys).expect("type");
        stdin.flush().expect("flush");
    }

    /// Waits for `needle` in what the dyno's terminal has shown.
    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !String::from_utf8_lossy(&self.seen).contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.shown.recv_timeout(left) {
                Ok(bytes) => self.seen.extend(bytes),
                Err(_) => panic!(
                    "never saw {needle:?}; saw {:?}",
                    String::from_utf8_lossy(&self.seen)
                ),
            }
        }
    }

    /// Its exit status and stderr.
    fn finish(mut self) -> (std::process::ExitStatus, String) {
        let status = wait_bounded(&mut self.child, "hkrun connect");
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut err);
        }
        (status, err)
    }
}

#[test]
fn connect_types_into_a_repl_detaches_with_ctrl_bracket_and_the_dyno_runs_on() {
    let app = App::new("repl: exec python3 -q\nplain: exec sleep 1000\n");
    let tag = unique_tag();
    let port = free_base_port().to_string();
    let mut hk = Hk::spawn(hkrun(
        app.path(),
        &["start", "--tty", "repl", "--no-timestamp", "-p", &port],
        &tag,
    ));
    hk.wait_for_each(&[
        "repl.1  | >>>",
        "plain.1 | State changed from starting to up",
    ]);

    let mut first = Connected::start(&app, "repl.1");
    first.type_keys(b"6*7\n");
    first.wait_for("42");
    // A second client is refused, told who holds the dyno.
    let second = client(app.path(), &["connect", "repl.1"]);
    assert_eq!(second.status.code(), Some(1), "{}", second.stderr);
    assert!(
        second
            .stderr
            .starts_with("hkrun: repl.1 is attached already, by pid "),
        "{}",
        second.stderr
    );
    first.type_keys(b"\x1d");
    let (status, stderr) = first.finish();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("Detached from repl.1; it keeps running."),
        "{stderr}"
    );
    // The dyno runs on, and takes a new client.
    let ps = client(app.path(), &["ps", "--json"]);
    let ps: serde_json::Value = serde_json::from_str(&ps.stdout).unwrap();
    assert_eq!(ps["dynos"][0]["name"], "repl.1");
    assert_eq!(ps["dynos"][0]["state"], "up");
    let mut again = Connected::start(&app, "repl");
    again.type_keys(b"'again' * 2\n");
    again.wait_for("againagain");
    again.type_keys(b"\x1d");
    assert!(again.finish().0.success());
    // What was typed is in the log too: the terminal echoes it.
    hk.wait_for("repl.1  | 42");

    // A dyno on a pipe refuses, saying how to put it on a terminal.
    let refused = client(app.path(), &["attach", "plain.1"]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        refused.stderr,
        "hkrun: plain.1 is not on a terminal: start hkrun with --tty plain (or tty = true \
         under [types.plain] in hkrun.toml) to connect to it\n"
    );
    hk.stop_cleanly();
    crate::harness::assert_none_left(&tag);
}

#[test]
fn connect_exits_with_the_dynos_status_when_its_run_ends() {
    // Exits with the code typed into it, or dies of SIGKILL when told `kill`.
    let app =
        App::new("repl: echo ready; read n; if [ \"$n\" = kill ]; then kill -9 $$; fi; exit $n\n");
    let tag = unique_tag();
    let port = free_base_port().to_string();
    let mut hk = Hk::spawn(hkrun(
        app.path(),
        &["start", "--tty", "repl", "--no-timestamp", "-p", &port],
        &tag,
    ));
    hk.wait_for("repl.1 | ready");
    let mut first = Connected::start(&app, "repl");
    first.type_keys(b"3\n");
    let (status, stderr) = first.finish();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("Process exited with status 3"), "{stderr}");
    // Restarted after its crash: a signal is 128 + its number, as a shell says it.
    hk.wait_for("repl.1 | ready");
    let mut second = Connected::start(&app, "repl");
    second.type_keys(b"kill\n");
    let (status, stderr) = second.finish();
    assert_eq!(status.code(), Some(137), "{stderr}");
    hk.stop_cleanly();
    crate::harness::assert_none_left(&tag);
}

#[test]
fn a_client_that_asks_for_no_status_gets_the_dynos_bytes_alone_as_before() {
    // A client from before exit statuses were sent: raw bytes until the run ends.
    let app = App::new("repl: echo ready; read n; echo \"got $n\"; exit 3\n");
    let tag = unique_tag();
    let port = free_base_port().to_string();
    let mut hk = Hk::spawn(hkrun(
        app.path(),
        &["start", "--tty", "repl", "--no-timestamp", "-p", &port],
        &tag,
    ));
    hk.wait_for("repl.1 | ready");
    let mut stream =
        std::os::unix::net::UnixStream::connect(app.file(".hkrun.sock")).expect("connect");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("a read timeout");
    stream
        .write_all(b"{\"v\":1,\"cmd\":\"connect\",\"dyno\":\"repl\"}\n")
        .expect("ask");
    let mut reader = std::io::BufReader::new(stream.try_clone().expect("dup"));
    let mut answer = String::new();
    std::io::BufRead::read_line(&mut reader, &mut answer).expect("the answer");
    assert!(answer.contains("Connected to repl.1"), "{answer}");
    stream.write_all(b"5\n").expect("type");
    let mut rest = Vec::new();
    reader
        .read_to_end(&mut rest)
        .expect("the dyno's bytes, to the end");
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("got 5"), "{rest:?}");
    assert!(!rest.contains("\"v\":1"), "{rest:?}");
    hk.stop_cleanly();
    crate::harness::assert_none_left(&tag);
}

#[test]
fn connect_to_an_hkrun_from_before_exit_statuses_exits_0_when_the_run_ends() {
    // Answers as an hkrun from before `framed` did: refuses the field, then sends the
    // dyno's bytes raw and hangs up.
    let app = App::new("repl: exec sleep 1000\n");
    let listener = std::os::unix::net::UnixListener::bind(app.file(".hkrun.sock")).expect("listen");
    let old = std::thread::spawn(move || {
        let mut asked = Vec::new();
        for _ in 0..2 {
            let (stream, _) = listener.accept().expect("a client");
            stream
                .set_read_timeout(Some(PATIENCE))
                .expect("a read timeout");
            let mut reader = std::io::BufReader::new(stream.try_clone().expect("dup"));
            let mut request = String::new();
            std::io::BufRead::read_line(&mut reader, &mut request).expect("a request");
            let mut stream = stream;
            if request.contains("\"framed\"") {
                stream
                    .write_all(
                        b"{\"v\":1,\"ok\":false,\"error\":\"bad request: unknown field `framed`, expected `dyno` or `size`\"}\n",
                    )
                    .expect("refuse");
            } else {
                stream
                    .write_all(
                        b"{\"v\":1,\"ok\":true,\"message\":\"Connected to repl.1. Ctrl-] detaches.\"}\nhello\r\n",
                    )
                    .expect("answer");
            }
            asked.push(request);
            if !asked.last().is_some_and(|r| r.contains("\"framed\"")) {
                break;
            }
        }
        asked
    });
    let mut connected = Connected::start(&app, "repl");
    connected.wait_for("hello");
    let (status, stderr) = connected.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("The connection to repl ended."), "{stderr}");
    let asked = old.join().expect("the old hkrun");
    assert!(!asked.last().unwrap().contains("framed"), "{asked:?}");
}

#[test]
fn connect_asks_hello_first_and_sends_only_what_the_supervisor_names() {
    // A supervisor that says it takes sizes but does not frame: the dyno's bytes come raw.
    let app = App::new("repl: exec sleep 1000\n");
    let listener = std::os::unix::net::UnixListener::bind(app.file(".hkrun.sock")).expect("listen");
    let server = std::thread::spawn(move || {
        let mut asked = Vec::new();
        for answer in [
            &b"{\"v\":1,\"ok\":true,\"hello\":{\"version\":1,\"features\":[\"size\",\"outcome\"]}}\n"[..],
            b"{\"v\":1,\"ok\":true,\"message\":\"Connected to repl.1. Ctrl-] detaches.\"}\nhi there\r\n",
        ] {
            let (stream, _) = listener.accept().expect("a client");
            stream
                .set_read_timeout(Some(PATIENCE))
                .expect("a read timeout");
            let mut reader = std::io::BufReader::new(stream.try_clone().expect("dup"));
            let mut request = String::new();
            std::io::BufRead::read_line(&mut reader, &mut request).expect("a request");
            let mut stream = stream;
            stream.write_all(answer).expect("answer");
            asked.push(request);
        }
        asked
    });
    let mut connected = Connected::start(&app, "repl");
    connected.wait_for("hi there");
    let (status, stderr) = connected.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("The connection to repl ended."), "{stderr}");
    let asked = server.join().expect("the supervisor");
    let asked: Vec<serde_json::Value> = asked
        .iter()
        .map(|r| serde_json::from_str(r).expect("a JSON request"))
        .collect();
    assert_eq!(asked[0]["cmd"], "hello", "{asked:?}");
    assert_eq!(
        asked[1],
        serde_json::json!({"v": 1, "cmd": "connect", "dyno": "repl"}),
        "{asked:?}"
    );
}
