//! `hkrun-test-child`: the app the integration tests run as dynos, where what matters is
//! what the process does (listen, hold memory, trap signals, escape its group, print
//! bursts), not the language it is written in. It starts in a millisecond where a
//! `python3` stand-in took 60–180 ms (TESTING.md), and it is built by `cargo test`.
//!
//! Tests find it on the `PATH` the harness gives what it starts
//! (`tests/integration/harness.rs`). Subcommands:
//!
//! - `listen [--host H] [--delay SECS] [--wait-while FILE] [--graceful]`: waits while
//!   FILE exists, then SECS, binds `$PORT` on H (127.0.0.1), prints
//!   `listening on H:PORT` and answers every request `HTTP/1.0 200` with `$DYNO` as the
//!   body, one thread a connection. With `--graceful`, SIGTERM stops the accepting and
//!   the process exits 0 once the requests it has are answered; without, SIGTERM kills.
//! - `hold MIB [--step MIB] [--every SECS] [--after FILE]`: waits until FILE exists, then
//!   takes MIB of memory it writes to, STEP at a time (all at once without), printing
//!   `holding N MB` after each step and waiting SECS between them; then sleeps.
//! - `trap SIG... [--exit-on SIG]... [--ready TEXT] [--prefix P] [--drain SECS]`: prints
//!   `TEXT PID` (`ready PID`) once the signals are caught, then `P got SIGNAME` for each;
//!   on an `--exit-on` signal it waits SECS, prints `drained PID` (with `--drain`) and
//!   exits 0.
//! - `ignore-term`: SIGTERM blocked (never delivered), prints `ignoring SIGTERM`, sleeps.
//! - `escape [--hold MIB]`: prints `boot PID`, starts a grandchild that leaves the process
//!   group with `setsid`, prints `escaped PID` (and holds MIB), and sleeps; the grandchild
//!   sleeps too.
//! - `burst N [--len L] [--vary] [--char C] [--number TEMPLATE] [--first F]
//!   [--every SECS] [--rounds R] [--write BYTES]`: R rounds (forever without) of N
//!   lines, SECS apart, each round written BYTES at a time (at once without), so writes
//!   can end mid-line. A line is L (80) times C (`x`); `--vary` makes the lengths 1 to
//!   L, from a fixed xorshift; `--number` starts each with TEMPLATE, its `{n}` the line's
//!   number (from F, 1 by default, over the whole run), padded with C to L (`--len 0`:
//!   no padding). After the rounds it prints `done` and sleeps.
//! - `env NAME...`: prints `NAME=value` (`NAME unset`) for each, then exits 0.
//! - `exit CODE`, `sleep SECS`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, ExitCode};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        return usage("no subcommand");
    };
    let result = match command.as_str() {
        "listen" => listen(rest),
        "hold" => hold(rest),
        "trap" => trap(rest),
        "ignore-term" => ignore_term(),
        "escape" => escape(rest),
        "escaped" => escaped(rest),
        "burst" => burst(rest),
        "env" => env(rest),
        "exit" => return ExitCode::from(number::<u8>(rest.first()).unwrap_or(0)),
        "sleep" => {
            std::thread::sleep(Duration::from_secs_f64(number(rest.first()).unwrap_or(0.0)));
            Ok(())
        }
        other => Err(format!("unknown subcommand {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage(&e),
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("hkrun-test-child: {why} (see tests/support/child.rs)");
    ExitCode::from(2)
}

fn number<T: FromStr>(arg: Option<&String>) -> Result<T, String> {
    let arg = arg.ok_or("a number is missing")?;
    arg.parse().map_err(|_| format!("{arg:?} is not a number"))
}

/// `--name value` options and flags after the positional arguments.
struct Options<'a> {
    positional: Vec<&'a String>,
    named: Vec<(&'a str, Option<&'a String>)>,
}

impl<'a> Options<'a> {
    fn parse(args: &'a [String], flags: &[&str]) -> Self {
        let (mut positional, mut named) = (Vec::new(), Vec::new());
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.strip_prefix("--") {
                Some(name) if flags.contains(&name) => named.push((name, None)),
                Some(name) => named.push((name, args.next())),
                None => positional.push(arg),
            }
        }
        Self { positional, named }
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &'a String> + '_ {
        let name = name.to_owned();
        self.named
            .iter()
            .filter(move |(n, _)| *n == name)
            .filter_map(|(_, v)| *v)
    }

    fn get(&self, name: &str) -> Option<&'a String> {
        self.all(name).last()
    }

    fn flag(&self, name: &str) -> bool {
        self.named.iter().any(|(n, _)| *n == name)
    }

    fn number<T: FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        self.get(name).map_or(Ok(default), |v| number(Some(v)))
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A dyno whose output is gone has nothing left to say it to.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Writes `bytes` to stdout in as few write(2) calls as the pipe takes, past Rust's line
/// buffering, so a write can end where the caller chose, even mid-line.
fn write_out(mut bytes: &[u8]) -> nix::Result<()> {
    while !bytes.is_empty() {
        let n = nix::unistd::write(std::io::stdout(), bytes)?;
        bytes = &bytes[n..];
    }
    Ok(())
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1000));
    }
}

fn listen(args: &[String]) -> Result<(), String> {
    let options = Options::parse(args, &["graceful"]);
    if let Some(file) = options.get("wait-while") {
        while std::path::Path::new(file).exists() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    std::thread::sleep(Duration::from_secs_f64(options.number("delay", 0.0)?));
    let graceful = options.flag("graceful");
    // Blocked before any thread starts, so every thread inherits it and only the
    // waiting thread below takes SIGTERM.
    let term = SigSet::from(Signal::SIGTERM);
    if graceful {
        term.thread_block().map_err(|e| e.to_string())?;
    }
    let host = options.get("host").map_or("127.0.0.1", String::as_str);
    let port: u16 = number(std::env::var("PORT").ok().as_ref())?;
    let listener = TcpListener::bind((host, port)).map_err(|e| format!("bind: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    say(&format!("listening on {local}"));
    let stopping = Arc::new(AtomicBool::new(false));
    if graceful {
        let stopping = Arc::clone(&stopping);
        std::thread::spawn(move || {
            if term.wait().is_ok() {
                stopping.store(true, Ordering::SeqCst);
                // Wakes the accept below, which then sees `stopping`.
                let _ = TcpStream::connect(local);
            }
        });
    }
    let body = std::env::var("DYNO").unwrap_or_default();
    let mut answering = Vec::new();
    for stream in listener.incoming() {
        if let Ok(stream) = stream {
            let body = body.clone();
            answering.push(std::thread::spawn(move || answer(stream, &body)));
            answering.retain(|t| !t.is_finished());
        }
        if stopping.load(Ordering::SeqCst) {
            // What already waits in the backlog is answered too; then no more.
            listener.set_nonblocking(true).map_err(|e| e.to_string())?;
            while let Ok((stream, _)) = listener.accept() {
                let _ = stream.set_nonblocking(false);
                let body = body.clone();
                answering.push(std::thread::spawn(move || answer(stream, &body)));
            }
            break;
        }
    }
    for thread in answering {
        let _ = thread.join();
    }
    Ok(())
}

/// Reads a request's head and answers it; the connection closes after (HTTP/1.0).
fn answer(stream: TcpStream, body: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line == "\r\n" || line == "\n" {
            let mut writer = &stream;
            let _ = write!(
                writer,
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            return;
        }
        line.clear();
    }
}

/// Memory the process has written to, so that it counts in its resident size.
fn take(mib: usize) -> Vec<u8> {
    std::hint::black_box(vec![b'x'; mib << 20])
}

fn hold(args: &[String]) -> Result<(), String> {
    let options = Options::parse(args, &[]);
    let total: usize = number(options.positional.first().copied())?;
    let step = options.number("step", total)?.max(1);
    let every = Duration::from_secs_f64(options.number("every", 0.0)?);
    if let Some(file) = options.get("after") {
        while !std::path::Path::new(file).exists() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut held = Vec::new();
    let mut taken = 0;
    while taken < total {
        let now = step.min(total - taken);
        held.push(take(now));
        taken += now;
        say(&format!("holding {taken} MB"));
        if taken < total {
            std::thread::sleep(every);
        }
    }
    std::hint::black_box(&held);
    sleep_forever()
}

fn signal(name: &str) -> Result<Signal, String> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).map_err(|_| format!("{name:?} is not a signal"))
}

fn trap(args: &[String]) -> Result<(), String> {
    let options = Options::parse(args, &[]);
    let mut caught = SigSet::empty();
    for name in &options.positional {
        caught.add(signal(name)?);
    }
    let exit_on = options
        .all("exit-on")
        .map(|n| signal(n))
        .collect::<Result<Vec<_>, _>>()?;
    for &s in &exit_on {
        caught.add(s);
    }
    let drain = options
        .get("drain")
        .map(|s| number::<f64>(Some(s)))
        .transpose()?;
    let prefix = options.get("prefix").map_or("", String::as_str);
    caught.thread_block().map_err(|e| e.to_string())?;
    let pid = std::process::id();
    say(&format!(
        "{} {pid}",
        options.get("ready").map_or("ready", String::as_str)
    ));
    loop {
        let got = caught.wait().map_err(|e| e.to_string())?;
        say(&format!("{prefix}got {}", got.as_str()));
        if exit_on.contains(&got) {
            if let Some(secs) = drain {
                std::thread::sleep(Duration::from_secs_f64(secs));
                say(&format!("drained {pid}"));
            }
            return Ok(());
        }
    }
}

fn ignore_term() -> Result<(), String> {
    SigSet::from(Signal::SIGTERM)
        .thread_block()
        .map_err(|e| e.to_string())?;
    say("ignoring SIGTERM");
    sleep_forever()
}

fn escape(args: &[String]) -> Result<(), String> {
    let options = Options::parse(args, &[]);
    let hold = options.number("hold", 0usize)?;
    say(&format!("boot {}", std::process::id()));
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    // Spawned, not forked: the grandchild calls setsid itself (escaped below).
    Command::new(me)
        .args(["escaped", &hold.to_string()])
        .spawn()
        .map_err(|e| format!("start the grandchild: {e}"))?;
    sleep_forever()
}

fn escaped(args: &[String]) -> Result<(), String> {
    let mib: usize = number(args.first())?;
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    say(&format!("escaped {}", std::process::id()));
    let held = take(mib);
    std::hint::black_box(&held);
    sleep_forever()
}

fn burst(args: &[String]) -> Result<(), String> {
    let options = Options::parse(args, &["vary"]);
    let lines: usize = number(options.positional.first().copied())?;
    let len = options.number("len", 80usize)?;
    let fill = options
        .get("char")
        .and_then(|c| c.bytes().next())
        .unwrap_or(b'x');
    let number_prefix = options.get("number");
    let vary = options.flag("vary");
    let every = Duration::from_secs_f64(options.number("every", 0.0)?);
    let rounds = options
        .get("rounds")
        .map(|r| number::<u64>(Some(r)))
        .transpose()?;
    let mut dice: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut n = options.number("first", 1u64)?;
    let write = options.number("write", usize::MAX)?.max(1);
    let mut round = 0;
    while rounds.is_none_or(|r| round < r) {
        let mut chunk = Vec::with_capacity(lines * (len + 1));
        for _ in 0..lines {
            let start = chunk.len();
            if let Some(template) = number_prefix {
                chunk.extend_from_slice(template.replace("{n}", &n.to_string()).as_bytes());
            }
            n += 1;
            let target = if vary {
                dice ^= dice << 13;
                dice ^= dice >> 7;
                dice ^= dice << 17;
                1 + usize::try_from(dice % len.max(1) as u64).unwrap_or(0)
            } else {
                len
            };
            while chunk.len() - start < target {
                chunk.push(fill);
            }
            chunk.push(b'\n');
        }
        for piece in chunk.chunks(write) {
            if write_out(piece).is_err() {
                return Ok(());
            }
        }
        round += 1;
        std::thread::sleep(every);
    }
    let _ = write_out(b"done\n");
    sleep_forever()
}

fn env(names: &[String]) -> Result<(), String> {
    for name in names {
        match std::env::var(name) {
            Ok(value) => say(&format!("{name}={value}")),
            Err(_) => say(&format!("{name} unset")),
        }
    }
    Ok(())
}
