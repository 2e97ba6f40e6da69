//! hkrun in a pipeline: a reader that leaves (`hkrun start | head -1`) and one that never
//! reads. Neither may stop supervision or leave a process behind.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hkrun::control::protocol::Ps;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::harness::{
    App, assert_none_left, client, dyno_pid, eventually, free_base_port, kill_tagged,
    own_memory_kib, tagged_command, wait_bounded,
};

/// Kills whatever carries the tag when the test ends, passed or failed.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        kill_tagged(&self.0);
    }
}

#[test]
fn a_closed_stdout_stops_the_app_quietly() {
    let app = App::new("talk: while :; do echo tick; sleep 0.05; done\nquiet: exec sleep 1000\n");
    let tag = format!("pipeline-{}", std::process::id());
    let _cleanup = Cleanup(tag.clone());
    let line = format!(
        "'{}' start --no-timestamp -p {} | head -1",
        env!("CARGO_BIN_EXE_hkrun"),
        free_base_port()
    );
    let mut shell = tagged_command("sh", app.path(), &tag)
        .args(["-c", &line])
        .spawn()
        .expect("start the pipeline");
    let status = wait_bounded(&mut shell, "the pipeline");
    let mut out = String::new();
    let mut err = String::new();
    shell
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut out)
        .expect("read");
    shell
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut err)
        .expect("read");
    assert!(status.success(), "{status:?} {err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    // No panic, no storm of broken-pipe messages.
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.lines().count() <= 1, "{err}");
    assert_none_left(&tag);
}

#[test]
fn an_unread_stdout_does_not_stop_supervision() {
    // The hog takes 8 MB more every 0.25 s, up to 320 MB.
    let app = App::new(
        "loud: yes 'a line nobody reads'\nhog: hkrun-test-child hold 320 --step 8 --every 0.25\n",
    );
    let tag = format!("unread-{}", std::process::id());
    let _cleanup = Cleanup(tag.clone());
    // stdout is a pipe this test holds and never reads.
    let mut hk = tagged_command(env!("CARGO_BIN_EXE_hkrun"), app.path(), &tag)
        .args(["start", "-m", "loud=1,hog=1:64M", "-t", "3", "-p"])
        .arg(free_base_port().to_string())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hkrun");
    let ps = || -> Option<Ps> {
        let out = client(app.path(), &["ps", "--json"]);
        serde_json::from_str(&out.stdout).ok()
    };
    let hog_pid = |ps: &Ps| {
        ps.dynos
            .iter()
            .find(|d| d.name == "hog.1")
            .and_then(|d| d.pid)
    };
    let first = eventually("the hog to run", || ps().as_ref().and_then(hog_pid));
    // R15 kills the hog at 128M and it restarts, while stdout stays full for 10 s and more.
    let started = Instant::now();
    eventually("R15 and a restart of the hog", || {
        ps().as_ref().and_then(hog_pid).filter(|&pid| pid != first)
    });
    std::thread::sleep(Duration::from_secs(10).saturating_sub(started.elapsed()));
    let asked = Instant::now();
    signal::kill(
        Pid::from_raw(i32::try_from(hk.id()).expect("a pid")),
        Signal::SIGTERM,
    )
    .expect("signal hkrun");
    let status = loop {
        if let Some(status) = hk.try_wait().expect("try_wait") {
            break status;
        }
        // Within the grace (-t 3): the dynos die at SIGTERM, and their unwritten output
        // must not hold hkrun back.
        if asked.elapsed() > Duration::from_secs(3) {
            let _ = hk.kill();
            let _ = hk.wait();
            panic!("hkrun did not exit within the grace while nobody read its output");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("hkrun exited {:?} after SIGTERM (-t 3)", asked.elapsed());
    assert_eq!(status.code(), Some(0));
    drop(hk.stdout.take());
    assert_none_left(&tag);
}

/// How long stdout stays unread while the app is crashed, restarted and scaled: longer
/// than anything in hkrun waits for a stalled stdout (a pump's blocking flush, 10 s).
const HELD: Duration = Duration::from_secs(12);

#[test]
fn crashes_restart_and_scale_answer_while_stdout_is_unread() {
    let app = App::new("chatty: yes 'a line nobody reads'\nquiet: exec sleep 1000\n");
    let tag = format!("held-{}", std::process::id());
    let _cleanup = Cleanup(tag.clone());
    // stdout is a pipe this test holds and does not read until the end.
    let mut hk = tagged_command(env!("CARGO_BIN_EXE_hkrun"), app.path(), &tag)
        .args(["start", "--no-timestamp", "-t", "3", "-p"])
        .arg(free_base_port().to_string())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hkrun");
    let held = Instant::now();
    let first = eventually("chatty.1 to run", || dyno_pid(app.path(), "chatty.1"));
    // `yes` fills the log's budget and the pipes behind it in well under this, then
    // blocks on its output.
    std::thread::sleep(Duration::from_secs(2));
    // A crash is reported and restarted.
    signal::kill(Pid::from_raw(first), Signal::SIGKILL).expect("kill chatty.1");
    let second = eventually("chatty.1 to be restarted", || {
        dyno_pid(app.path(), "chatty.1").filter(|&pid| pid != first)
    });
    eprintln!(
        "crash restarted after {:?} of unread stdout",
        held.elapsed()
    );
    // `restart` answers with the new dyno up.
    let out = client(app.path(), &["restart", "chatty"]);
    assert!(
        out.status.success(),
        "restart: {} {}",
        out.stdout,
        out.stderr
    );
    let third = dyno_pid(app.path(), "chatty.1").expect("chatty.1 runs");
    assert_ne!(third, second);
    // `scale` takes it down and back up.
    let out = client(app.path(), &["scale", "chatty=0"]);
    assert!(out.status.success(), "scale: {} {}", out.stdout, out.stderr);
    eventually("chatty.1 to be gone", || {
        dyno_pid(app.path(), "chatty.1").is_none().then_some(())
    });
    let out = client(app.path(), &["scale", "chatty=1"]);
    assert!(out.status.success(), "scale: {} {}", out.stdout, out.stderr);
    // Still held: one more crash, after the whole hold.
    std::thread::sleep(HELD.saturating_sub(held.elapsed()));
    let fourth = eventually("chatty.1 to run again", || dyno_pid(app.path(), "chatty.1"));
    signal::kill(Pid::from_raw(fourth), Signal::SIGKILL).expect("kill chatty.1");
    eventually("chatty.1 to be restarted after the hold", || {
        dyno_pid(app.path(), "chatty.1").filter(|&pid| pid != fourth)
    });
    eprintln!("stdout held unread for {:?}", held.elapsed());
    // Reading again: the log goes on, with each crash reported.
    let mut out = hk.stdout.take().expect("piped");
    signal::kill(
        Pid::from_raw(i32::try_from(hk.id()).expect("a pid")),
        Signal::SIGTERM,
    )
    .expect("signal hkrun");
    let mut text = Vec::new();
    out.read_to_end(&mut text).expect("read hkrun's output");
    let status = wait_bounded(&mut hk, "hkrun");
    assert_eq!(status.code(), Some(0));
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("chatty.1 | Process exited with status 137"),
        "no exit line in {} bytes of output",
        text.len()
    );
    assert_none_left(&tag);
}

#[test]
fn a_stop_meeting_an_unread_stdout_keeps_memory_bounded() {
    // Ignores SIGTERM and keeps writing: only the SIGKILL at the grace ends it.
    let app = App::new("loud: trap '' TERM; exec yes 'a line nobody reads'\n");
    let tag = format!("bounded-{}", std::process::id());
    let _cleanup = Cleanup(tag.clone());
    let mut hk = tagged_command(env!("CARGO_BIN_EXE_hkrun"), app.path(), &tag)
        .args(["start", "--no-timestamp", "-t", "5", "-p"])
        .arg(free_base_port().to_string())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hkrun");
    eventually("loud.1 to run", || dyno_pid(app.path(), "loud.1"));
    // The log's budget fills, then the dyno blocks: that is hkrun's held-back size.
    std::thread::sleep(Duration::from_secs(2));
    let before = own_memory_kib(hk.id());
    signal::kill(
        Pid::from_raw(i32::try_from(hk.id()).expect("a pid")),
        Signal::SIGTERM,
    )
    .expect("signal hkrun");
    let asked = Instant::now();
    let mut most = before;
    let status = loop {
        most = most.max(own_memory_kib(hk.id()));
        if let Some(status) = hk.try_wait().expect("try_wait") {
            break status;
        }
        if asked.elapsed() > Duration::from_secs(15) || most > before + 512 * 1024 {
            let _ = hk.kill();
            let _ = hk.wait();
            panic!("hkrun grew from {before} KiB to {most} KiB during the stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "hkrun's own memory: {before} KiB before the stop, at most {most} KiB during it; exited after {:?}",
        asked.elapsed()
    );
    assert_eq!(status.code(), Some(0));
    assert!(
        most <= before + 16 * 1024,
        "hkrun grew from {before} KiB to {most} KiB during the stop"
    );
    drop(hk.stdout.take());
    assert_none_left(&tag);
}

/// Writes numbered 81-byte lines `TAG:n:xxx…` (n from 0) in 4,000-byte writes, as C
/// stdio does, so nearly every write ends in the middle of a line; each write waits on
/// the pipe when hkrun stops reading. 200,000 lines, then `done`.
fn writer(tag: &str) -> String {
    format!(
        "hkrun-test-child burst 200000 --rounds 1 --number '{tag}:{{n}}:' --first 0 --len 80 \
         --write 4000"
    )
}

#[test]
fn lines_are_never_split_by_a_stalled_stdout() {
    let app = App::new(&format!(
        "t1: {}\nt2: {}\nt3: {}\nt4: {}\n",
        writer("T1"),
        writer("T2"),
        writer("T3"),
        writer("T4")
    ));
    let tag = format!("split-{}", std::process::id());
    let _cleanup = Cleanup(tag.clone());
    let mut hk = tagged_command(env!("CARGO_BIN_EXE_hkrun"), app.path(), &tag)
        .args(["start", "--no-timestamp", "-t", "3", "-p"])
        .arg(free_base_port().to_string())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hkrun");
    // Unread for 5 s: the budget fills, the pumps stop reading, and each writer blocks in
    // the middle of a line.
    std::thread::sleep(Duration::from_secs(5));
    let mut out = std::io::BufReader::new(hk.stdout.take().expect("piped"));
    let mut seen = 0;
    let mut done = 0;
    let mut split = Vec::new();
    let mut next = std::collections::HashMap::new();
    let mut out_of_order = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut line = String::new();
    while done < 4 && Instant::now() < deadline {
        line.clear();
        if std::io::BufRead::read_line(&mut out, &mut line).expect("read") == 0 {
            break;
        }
        let Some((name, payload)) = line.trim_end().split_once(" | ") else {
            continue;
        };
        if !name.trim().starts_with('t')
            || payload.starts_with("Starting process")
            || payload.starts_with("State changed")
        {
            continue;
        }
        if payload == "done" {
            done += 1;
            continue;
        }
        seen += 1;
        let whole = payload.len() == 80
            && payload.starts_with('T')
            && payload.ends_with('x')
            && payload.split(':').count() == 3;
        if !whole && split.len() < 5 {
            split.push(payload.to_string());
        }
        if whole {
            let mut parts = payload.split(':');
            let writer = parts.next().unwrap_or_default().to_string();
            let n: u64 = parts
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(u64::MAX);
            let expected = next.entry(writer.clone()).or_insert(0);
            if n != *expected && out_of_order.len() < 5 {
                out_of_order.push(format!("{writer}: {n} after {}", *expected));
            }
            *expected = n + 1;
        }
    }
    signal::kill(
        Pid::from_raw(i32::try_from(hk.id()).expect("a pid")),
        Signal::SIGTERM,
    )
    .expect("signal hkrun");
    let mut rest = Vec::new();
    let _ = out.read_to_end(&mut rest);
    wait_bounded(&mut hk, "hkrun");
    eprintln!("{seen} lines read after 5 s of unread stdout, {done} writers done");
    assert!(split.is_empty(), "lines split: {split:?}");
    assert!(
        out_of_order.is_empty(),
        "lines lost or repeated: {out_of_order:?}"
    );
    assert_eq!(done, 4, "not every writer finished");
    assert_eq!(seen, 4 * 200_000);
    assert_none_left(&tag);
}
