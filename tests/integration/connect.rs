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
