//! hkrun in a pipeline: a reader that leaves (`hkrun start | head -1`) and one that never
//! reads. Neither may stop supervision or leave a process behind.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hkrun::control::protocol::Ps;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::harness::{
    App, assert_none_left, client, eventually, free_base_port, kill_tagged, tagged_command,
    wait_bounded,
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
    let grow = "import time\nchunks = []\nfor i in range(40):\n    chunks.append(b'x' * (8 << 20))\n    time.sleep(0.25)\ntime.sleep(1000)\n";
    let app = App::new("loud: yes 'a line nobody reads'\nhog: python3 grow.py\n");
    app.write("grow.py", grow);
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
