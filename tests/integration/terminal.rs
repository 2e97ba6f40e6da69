//! hkrun in a terminal, as a shell runs a job: the session leader of a pseudo-terminal,
//! its foreground process group, with Ctrl-C and Ctrl-Z typed on the terminal. The dynos
//! have groups of their own, so what they get comes from hkrun.

use std::fs::File;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::harness::{
    App, Hk, assert_none_left, eventually, free_base_port, tagged, tagged_command, unique_tag,
};

const CTRL_C: &[u8] = b"\x03";
const CTRL_Z: &[u8] = b"\x1a";

/// hkrun on a new pseudo-terminal, which is its controlling terminal (`setsid --ctty`).
struct Terminal {
    hk: Hk,
    master: File,
}

impl Terminal {
    /// `None`, with a message, where no pseudo-terminal can be had (no /dev/pts).
    fn start(app: &App, args: &[&str]) -> Option<Self> {
        Self::start_with(app, args, &[], (24, 80))
    }

    /// `start`, with `vars` in hkrun's environment and a terminal of `(rows, columns)`.
    fn start_with(
        app: &App,
        args: &[&str],
        vars: &[(&str, &str)],
        (rows, cols): (u16, u16),
    ) -> Option<Self> {
        let pty = match nix::pty::openpty(Some(&winsize(rows, cols)), None) {
            Ok(pty) => pty,
            Err(err) => {
                eprintln!("skipped: no pseudo-terminal ({err})");
                return None;
            }
        };
        let slave = File::from(pty.slave);
        let tag = unique_tag();
        let mut command = tagged_command("setsid", app.path(), &tag);
        command
            .arg("--ctty")
            .arg(env!("CARGO_BIN_EXE_hkrun"))
            .args(args)
            .envs(vars.iter().copied())
            .stdin(slave.try_clone().expect("dup the terminal"))
            .stdout(slave.try_clone().expect("dup the terminal"))
            .stderr(slave);
        let child = command.spawn().expect("start hkrun on the terminal");
        // The test keeps no end of the terminal's slave side open: reading the master
        // side ends once hkrun has exited.
        drop(command);
        let master = File::from(pty.master);
        let output = WithoutCr(master.try_clone().expect("dup the master side"));
        Some(Self {
            hk: Hk::attach(child, tag, output, None::<File>),
            master,
        })
    }

    fn type_keys(&mut self, keys: &[u8]) {
        self.master.write_all(keys).expect("type on the terminal");
    }
}

/// A terminal ends lines with `\r\n`.
struct WithoutCr(File);

impl Read for WithoutCr {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.0.read(buf)?;
            if n == 0 {
                return Ok(0);
            }
            let mut kept = 0;
            for i in 0..n {
                if buf[i] != b'\r' {
                    buf[kept] = buf[i];
                    kept += 1;
                }
            }
            if kept > 0 {
                return Ok(kept);
            }
        }
    }
}

/// A process's state letter from /proc (`T` when stopped).
fn state(pid: Pid) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Counts the SIGINTs and SIGTERMs it gets, for half a second after the first.
const COUNTING: &str = "n=0; t=0; trap 'n=$((n+1))' INT; trap 't=$((t+1))' TERM; echo ready; while [ $((n+t)) -eq 0 ]; do sleep 0.05; done; sleep 0.5; echo \"INT=$n TERM=$t\"";

#[test]
fn ctrl_c_stops_every_dyno_with_one_sigint() {
    // `bg`'s `sleep` ignores SIGINT, as a shell's background child does; `slow` takes 3 s
    // to stop.
    let app = App::new(&format!(
        "first: {COUNTING}\nsecond: {COUNTING}\nbg: sleep 1000 & echo ready; wait\nslow: trap 'sleep 3; echo done; exit 0' INT; echo ready; while :; do sleep 0.1; done\n"
    ));
    let port = free_base_port().to_string();
    let Some(mut term) =
        Terminal::start(&app, &["start", "--no-timestamp", "-t", "10", "-p", &port])
    else {
        return;
    };
    term.hk.wait_for_each(&[
        "first.1  | ready",
        "second.1 | ready",
        "bg.1     | ready",
        "slow.1   | ready",
    ]);
    term.type_keys(CTRL_C);
    term.hk.wait_for("SIGINT received");
    term.hk
        .wait_for_each(&["first.1  | INT=1 TERM=0", "second.1 | INT=1 TERM=0"]);
    // What is left of `bg` gets SIGTERM once its shell is gone, without waiting for `slow`.
    eventually("bg's sleep to be stopped", || {
        let sleeping = tagged(&term.hk.tag).into_iter().any(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x001000\x00")
        });
        (!sleeping).then_some(())
    });
    while term.hk.next_line(Instant::now()).is_some() {}
    assert!(
        !term.hk.seen.iter().any(|l| l.ends_with("slow.1   | done")),
        "bg waited for slow: {:#?}",
        term.hk.seen
    );
    term.hk.wait_for("slow.1   | done");
    assert_eq!(term.hk.wait_exit().code(), Some(0));
    assert_none_left(&term.hk.tag);
}

/// Stopped (`T`), or a shell's `vfork` waiting (`D`) for a child that was stopped before
/// its `exec`: it cannot run until that child does.
fn paused(pid: Pid) -> bool {
    match state(pid) {
        Some('T') => true,
        Some('D') => {
            children(pid).iter().all(|&c| state(c) == Some('T')) && !children(pid).is_empty()
        }
        _ => false,
    }
}

fn children(pid: Pid) -> Vec<Pid> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .map(Pid::from_raw)
        .collect()
}

#[test]
fn ctrl_z_pauses_every_dyno_and_the_time_paused_counts_toward_no_timer() {
    // web takes 1 s to listen, with 8 s to do it (a start is slow on a busy machine); the
    // app stays paused for 9 s, longer than that.
    let app = App::new(
        "web: sleep 1; exec hkrun-test-child listen\nticker: i=0; while :; do i=$((i+1)); echo \"tick $i\"; sleep 0.1; done\n",
    );
    let port = free_base_port().to_string();
    let Some(mut term) = Terminal::start(
        &app,
        &[
            "start",
            "--no-timestamp",
            "--boot-timeout",
            "8",
            "-p",
            &port,
        ],
    ) else {
        return;
    };
    term.hk.wait_for("ticker.1 | tick 2");
    term.type_keys(CTRL_Z);
    term.hk
        .wait_for("SIGTSTP received: pausing all processes with SIGSTOP");
    // hkrun and every process of every dyno are stopped, as `jobs` would show.
    let hkrun = term.hk.pid();
    eventually("hkrun and every dyno stopped", || {
        let pids = tagged(&term.hk.tag);
        (pids.contains(&hkrun) && pids.len() >= 4 && pids.iter().all(|&p| paused(p))).then_some(())
    });
    let before = last_tick(&term.hk.seen);
    std::thread::sleep(Duration::from_secs(9));
    assert!(
        tagged(&term.hk.tag).iter().all(|&p| paused(p)),
        "everything stays stopped"
    );
    // `fg`: the shell sends SIGCONT to the job's process group.
    signal::killpg(hkrun, Signal::SIGCONT).expect("continue hkrun");
    let resumed = term.hk.wait_for("Resuming all processes with SIGCONT");
    let resumed_at = term.hk.seen.len();
    assert!(resumed.contains("paused for 9."), "{resumed}");
    let next: u32 = term
        .hk
        .wait_for("ticker.1 | tick ")
        .rsplit_once(' ')
        .and_then(|(_, n)| n.parse().ok())
        .expect("a tick number");
    // The ticker did not run while paused: 9 s would have been 90 ticks.
    assert!(next <= before + 5, "tick {next} after tick {before}");
    eprintln!("{resumed}; tick {before} before the pause, tick {next} after");
    // The boot timeout did not count the 9 s either: web comes up after the pause. Its
    // `sleep 1` ran out while paused, so its line and the ticker's next one race: it may
    // already have been read above.
    let web_up = "web.1    | State changed from starting to up";
    if !term.hk.seen[resumed_at..]
        .iter()
        .any(|l| l.contains(web_up))
    {
        term.hk.wait_for(web_up);
    }
    let started = Instant::now();
    term.type_keys(CTRL_C);
    assert_eq!(term.hk.wait_exit().code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        !term.hk.seen.iter().any(|l| l.contains("R10")),
        "{:#?}",
        term.hk.seen
    );
    assert_none_left(&term.hk.tag);
}

fn last_tick(lines: &[String]) -> u32 {
    lines
        .iter()
        .filter_map(|l| l.split_once("| tick ")?.1.trim().parse().ok())
        .max()
        .expect("ticks before the pause")
}

/// Job-control signals to hkrun's whole process group, as a shell sends them to a job,
/// while dynos crash and restart as fast as they can: a dyno's process between fork and
/// exec is still in hkrun's group, and must not be stopped there while hkrun waits for it.
#[test]
fn stop_and_continue_during_spawns_never_leave_hkrun_stuck() {
    let app = App::new("worker: true\n");
    let port = free_base_port().to_string();
    let mut command = crate::harness::hkrun(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "--restart-cap",
            "0",
            "-m",
            "worker=8",
            "-p",
            &port,
        ],
        &unique_tag(),
    );
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut hk = Hk::spawn(command);
    hk.wait_for("worker.8 | Starting process");
    let group = hk.pid();
    for _ in 0..100 {
        signal::killpg(group, Signal::SIGTSTP).expect("stop the job");
        std::thread::sleep(Duration::from_millis(20));
        signal::killpg(group, Signal::SIGCONT).expect("continue the job");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Still supervising: it answers SIGTERM and exits, leaving nothing.
    hk.signal(Signal::SIGTERM);
    assert_eq!(hk.wait_exit().code(), Some(0), "{}", hk.stderr());
    assert_none_left(&hk.tag);
}

/// Says its terminal's size, in colour, then each resize; buffered as Python buffers
/// by default (the test clears `PYTHONUNBUFFERED`): a line at a time on a terminal. The
/// resize is printed from the main loop: a print in the handler, when the signal comes
/// during another print, fails with "reentrant call".
const SHOWS_ITS_TERMINAL: &str = "\
import os, signal, sys, time
def size():
    s = os.get_terminal_size()
    return '%dx%d' % (s.columns, s.lines)
resized = []
signal.signal(signal.SIGWINCH, lambda *_: resized.append(1))
print('isatty=%s size=%s' % (sys.stdout.isatty(), size()))
print('\\x1b[32mgreen\\x1b[0m')
while True:
    time.sleep(0.05)
    if resized:
        resized.clear()
        print('resized to ' + size())
";

fn winsize(rows: u16, cols: u16) -> nix::pty::Winsize {
    nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Sets a terminal's size, as a terminal emulator does when its window changes.
#[allow(unsafe_code)]
fn set_size(master: &File, rows: u16, cols: u16) {
    let size = winsize(rows, cols);
    use std::os::fd::AsRawFd;
    // SAFETY: TIOCSWINSZ reads one `winsize` from a valid pointer.
    let done = unsafe { nix::libc::ioctl(master.as_raw_fd(), nix::libc::TIOCSWINSZ, &size) };
    assert_eq!(done, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
}

#[test]
fn a_tty_dyno_sees_a_terminal_of_hkruns_size_follows_resizes_and_keeps_its_colours() {
    let app = App::new("shows: exec python3 shows.py\n");
    app.write("shows.py", SHOWS_ITS_TERMINAL);
    let port = free_base_port().to_string();
    let Some(mut term) = Terminal::start_with(
        &app,
        &["start", "--tty", "--no-timestamp", "-p", &port],
        &[("PYTHONUNBUFFERED", "")],
        (30, 100),
    ) else {
        return;
    };
    // Python line-buffers a terminal: the lines come while the dyno sleeps on.
    term.hk.wait_for("isatty=True size=100x30");
    term.hk.wait_for("\x1b[32mgreen\x1b[0m");
    set_size(&term.master, 40, 120);
    term.hk.wait_for("resized to 120x40");
    term.type_keys(CTRL_C);
    assert_eq!(term.hk.wait_exit().code(), Some(0));
    assert_none_left(&term.hk.tag);
}

#[test]
fn top_shows_every_dyno_and_a_key_restarts_one() {
    let app = App::new("alpha: exec sleep 1000\nbeta: exec sleep 1001\n");
    let port = free_base_port().to_string();
    let mut hk = Hk::spawn(crate::harness::hkrun(
        app.path(),
        &["start", "--no-timestamp", "-p", &port],
        &unique_tag(),
    ));
    hk.wait_for_each(&[
        "alpha.1 | State changed from starting to up",
        "beta.1  | State changed from starting to up",
    ]);
    let size = nix::pty::Winsize {
        ws_row: 30,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = match nix::pty::openpty(Some(&size), None) {
        Ok(pty) => pty,
        Err(err) => {
            eprintln!("skipped: no pseudo-terminal ({err})");
            hk.stop_cleanly();
            return;
        }
    };
    let slave = File::from(pty.slave);
    let mut top = tagged_command("setsid", app.path(), &hk.tag)
        .arg("--ctty")
        .arg(env!("CARGO_BIN_EXE_hkrun"))
        .arg("top")
        .stdin(slave.try_clone().expect("dup the terminal"))
        .stdout(slave.try_clone().expect("dup the terminal"))
        .stderr(slave)
        .spawn()
        .expect("start hkrun top");
    let mut master = File::from(pty.master);
    let (tx, screen) = std::sync::mpsc::channel();
    let mut reader = master.try_clone().expect("dup the master side");
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |needle: &str| {
        let deadline = Instant::now() + crate::harness::PATIENCE;
        while !String::from_utf8_lossy(&seen).contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match screen.recv_timeout(left) {
                Ok(bytes) => seen.extend(bytes),
                Err(_) => panic!(
                    "top never showed {needle:?}: {:?}",
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
    };
    wait_for("alpha.1");
    wait_for("beta.1");
    wait_for("RESTARTS");
    // The first dyno is chosen: `r` restarts it.
    master.write_all(b"r").expect("type r");
    hk.wait_for("alpha.1 | Restarting");
    hk.wait_for("alpha.1 | State changed from starting to up");
    wait_for("Restarting alpha.1...");
    master.write_all(b"q").expect("type q");
    let status = crate::harness::wait_bounded(&mut top, "hkrun top");
    assert!(status.success(), "{status:?}");
    hk.stop_cleanly();
    assert_none_left(&hk.tag);
}

#[test]
fn connect_gives_the_dyno_the_clients_terminal_size_and_its_resizes_until_it_detaches() {
    // Says its terminal's size at each SIGWINCH, as a full-screen program redraws.
    let app = App::new("winch: exec python3 winch.py\n");
    app.write(
        "winch.py",
        "import os, signal, time\n\
         say = lambda *_: print('size %dx%d' % tuple(os.get_terminal_size()), flush=True)\n\
         signal.signal(signal.SIGWINCH, say)\n\
         say()\n\
         while True:\n    time.sleep(1)\n",
    );
    let port = free_base_port().to_string();
    // hkrun on no terminal: its dynos' terminals are 80×24.
    let mut hk = Hk::start(
        app.path(),
        &["start", "--tty", "winch", "--no-timestamp", "-p", &port],
    );
    hk.wait_for("winch.1 | size 80x24");
    let Some(mut client) = Terminal::start_with(&app, &["connect", "winch"], &[], (33, 111)) else {
        hk.stop_cleanly();
        return;
    };
    client.hk.wait_for("Connected to winch.1");
    hk.wait_for("winch.1 | size 111x33");
    // The client's window resized: the dyno's terminal follows.
    set_size(&client.master, 20, 70);
    hk.wait_for("winch.1 | size 70x20");
    // Ctrl-] detaches: hkrun's size again.
    client.type_keys(b"\x1d");
    client.hk.wait_for("Detached from winch; it keeps running.");
    hk.wait_for("winch.1 | size 80x24");
    assert!(client.hk.wait_exit().success());
    hk.stop_cleanly();
}

/// `hkrun top` on a pseudo-terminal of 30×120 for the app in `app`, tagged `tag`: the
/// process, the terminal's master side, and what it draws as it comes.
fn start_top(
    app: &App,
    tag: &str,
) -> Option<(
    std::process::Child,
    File,
    std::sync::mpsc::Receiver<Vec<u8>>,
)> {
    let pty = match nix::pty::openpty(Some(&winsize(30, 120)), None) {
        Ok(pty) => pty,
        Err(err) => {
            eprintln!("skipped: no pseudo-terminal ({err})");
            return None;
        }
    };
    let slave = File::from(pty.slave);
    let top = tagged_command("setsid", app.path(), tag)
        .arg("--ctty")
        .arg(env!("CARGO_BIN_EXE_hkrun"))
        .arg("top")
        .stdin(slave.try_clone().expect("dup the terminal"))
        .stdout(slave.try_clone().expect("dup the terminal"))
        .stderr(slave)
        .spawn()
        .expect("start hkrun top");
    let master = File::from(pty.master);
    let (tx, screen) = std::sync::mpsc::channel();
    let mut reader = master.try_clone().expect("dup the master side");
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    Some((top, master, screen))
}

/// Waits until `needle` is among what `screen` has drawn into `seen`.
#[track_caller]
fn wait_drawn(screen: &std::sync::mpsc::Receiver<Vec<u8>>, seen: &mut Vec<u8>, needle: &str) {
    let deadline = Instant::now() + crate::harness::PATIENCE;
    while !String::from_utf8_lossy(seen).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match screen.recv_timeout(left) {
            Ok(bytes) => seen.extend(bytes),
            Err(_) => panic!(
                "top never showed {needle:?}; its last screen: {:?}",
                String::from_utf8_lossy(&seen[seen.len().saturating_sub(1200)..])
            ),
        }
    }
}

#[test]
fn tops_filter_shows_a_quiet_dynos_lines_while_another_floods() {
    // `flood` (kept off stdout: the test reads only the log's tail) writes 1000 lines on
    // SIGUSR1, and floods without end on SIGUSR2 (it says `flood-42` once its traps are
    // set); `quiet` says one line at its start, and
    // one more on SIGUSR1. Its words are computed, so hkrun's `Starting process` line,
    // which shows the command, does not hold them.
    let app = App::new(
        "quiet: trap 'echo quiet-$((6*7))-again' USR1; echo quiet-$((6*7)); while :; do sleep 0.1; done\n\
         flood: trap 'seq -f \"flood %g\" 1 1000' USR1; trap 'while :; do seq -f \"flood %g\" 1 1000; sleep 0.02; done' USR2; echo flood-$((6*7)); while :; do sleep 0.1; done\n",
    );
    let port = free_base_port().to_string();
    let mut hk = Hk::spawn(crate::harness::hkrun(
        app.path(),
        &["start", "--no-timestamp", "--quiet", "flood", "-p", &port],
        &unique_tag(),
    ));
    hk.wait_for_each(&[
        "quiet.1 | quiet-42",
        "flood.1 | State changed from starting to up",
    ]);
    let kill = |target: &str, signal: &str| {
        let sent = crate::harness::client(app.path(), &["kill", target, signal]);
        assert!(sent.status.success(), "{}", sent.stderr);
    };
    // Its traps are set once it has said so (a signal before would end it).
    eventually("flood's traps to be set", || {
        let logs = crate::harness::client(app.path(), &["logs", "--ps", "flood", "-n", "5"]);
        logs.stdout.contains("flood-42").then_some(())
    });
    kill("flood", "USR1");
    eventually("flood's 1000 lines", || {
        let logs = crate::harness::client(app.path(), &["logs", "--ps", "flood", "-n", "1"]);
        logs.stdout.contains("flood 1000").then_some(())
    });
    let Some((mut top, mut master, screen)) = start_top(&app, &hk.tag) else {
        hk.stop_cleanly();
        return;
    };
    let mut seen = Vec::new();
    // The first dyno is chosen: `/` shows its lines only.
    wait_drawn(&screen, &mut seen, ">quiet.1");
    master.write_all(b"/").expect("type /");
    seen.clear();
    wait_drawn(&screen, &mut seen, "log of quiet.1");
    // Its line from before flood's 1000 is there, and a new one among a flood.
    wait_drawn(&screen, &mut seen, "quiet-42");
    kill("flood", "USR2");
    kill("quiet", "USR1");
    wait_drawn(&screen, &mut seen, "quiet-42-again");
    master.write_all(b"q").expect("type q");
    let status = crate::harness::wait_bounded(&mut top, "hkrun top");
    assert!(status.success(), "{status:?}");
    hk.stop_cleanly();
    assert_none_left(&hk.tag);
}

#[test]
fn a_tty_dynos_carriage_returns_and_cursor_moves_show_as_its_terminal_shows_them() {
    // The same progress bar on a terminal and on a pipe; on the terminal, an erased line,
    // moves to column 1 and a move up too.
    let app = App::new(
        "bar: printf 'a 10%%\\rb 20%%\\rc 30%%\\n'; printf 'abcdef\\rXY\\n'; printf 'wait\\033[2K\\rdone \\033[32mok\\033[0m\\033[1A\\n'; printf 'x 1/3\\033[Gx 2/3\\033[Gx 3/3\\n'; exec sleep 1000\n\
         piped: printf 'a 10%%\\rb 20%%\\n'; exec sleep 1000\n",
    );
    let port = free_base_port().to_string();
    let logs = app.file("logs");
    let mut hk = Hk::start(
        app.path(),
        &[
            "start",
            "--tty",
            "bar",
            "--no-timestamp",
            "--log-dir",
            logs.to_str().expect("UTF-8"),
            "-p",
            &port,
        ],
    );
    // In either order; and not `x 3/3` alone: the command line in `Starting process`
    // holds it too.
    hk.wait_for_each(&["| x 3/3", "piped.1 | a 10%"]);
    let shown = crate::harness::payloads(&hk.seen, "bar.1");
    let printed: Vec<&str> = shown
        .iter()
        .copied()
        .filter(|l| !l.starts_with("Starting process") && !l.starts_with("State changed"))
        .collect();
    assert_eq!(
        printed,
        ["c 30%", "XYcdef", "done \x1b[32mok\x1b[0m", "x 3/3"],
        "{:#?}",
        hk.seen
    );
    // A pipe's bytes pass unchanged.
    assert_eq!(
        crate::harness::payloads(&hk.seen, "piped.1").last(),
        Some(&"a 10%\rb 20%")
    );
    // The history (`hkrun logs`) and the log files have what was shown.
    let history = crate::harness::client(app.path(), &["logs", "--ps", "bar"]);
    assert!(
        history.stdout.contains("bar.1   | c 30%\n")
            && history.stdout.contains("bar.1   | x 3/3\n")
            && !history.stdout.contains('\r'),
        "{:?}",
        history.stdout
    );
    eventually("bar.1.log to have its lines", || {
        let file = std::fs::read_to_string(logs.join("bar.1.log")).ok()?;
        file.contains("app[bar.1]: x 3/3\n").then_some(file)
    });
    let file = std::fs::read_to_string(logs.join("bar.1.log")).expect("bar.1.log");
    assert!(
        file.contains("app[bar.1]: c 30%\n") && !file.contains('\r'),
        "{file:?}"
    );
    hk.stop_cleanly();
}
