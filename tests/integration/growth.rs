//! hkrun's memory stays flat however long it runs: crash loops and formation changes
//! leave nothing behind in it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use crate::harness::{App, Hk, PATIENCE, free_base_port, own_memory_kib};

/// Waits for `boots` more `Starting process` lines.
fn boots(hk: &mut Hk, boots: usize) {
    for _ in 0..boots {
        hk.wait_for("Starting process");
    }
}

#[test]
fn a_crash_loop_does_not_grow_hkrun() {
    // No back-off: a restart every few milliseconds.
    let app = App::new("crashy: exit 1\n");
    let base = free_base_port().to_string();
    let mut hk = Hk::start(
        app.path(),
        &["start", "--no-timestamp", "--restart-cap", "0", "-p", &base],
    );
    // Past the log history's 1500 lines, which fill once.
    boots(&mut hk, 1000);
    let before = own_memory_kib(hk.child.id());
    let started = Instant::now();
    boots(&mut hk, 3000);
    let after = own_memory_kib(hk.child.id());
    eprintln!(
        "3000 crash restarts in {:?}: hkrun's own memory {before} KiB -> {after} KiB",
        started.elapsed()
    );
    assert!(
        after <= before + 512,
        "hkrun grew {} KiB over 3000 restarts",
        after.saturating_sub(before)
    );
    hk.seen.clear();
    hk.stop_cleanly();
}

#[test]
fn scaling_up_and_down_does_not_grow_hkrun() {
    let app = App::new("worker: exec sleep 1000\n");
    let base = free_base_port().to_string();
    let mut hk = Hk::start(
        app.path(),
        &["start", "--no-timestamp", "-t", "1", "-p", &base],
    );
    hk.wait_for("worker.1 | State changed from starting to up");
    // Straight to the socket, as `hkrun scale` does: 1,200 starts of the client binary
    // would cost more than the requests, and it is hkrun's memory that is measured.
    let socket = app.file(".hkrun.sock");
    let cycle = |n: usize| {
        for _ in 0..n {
            for spec in ["worker=3", "worker=1"] {
                let mut stream = UnixStream::connect(&socket).expect("connect");
                stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
                let request = format!("{{\"v\":1,\"cmd\":\"scale\",\"changes\":[\"{spec}\"]}}\n");
                stream.write_all(request.as_bytes()).expect("send");
                let mut answer = String::new();
                BufReader::new(stream)
                    .read_line(&mut answer)
                    .expect("an answer");
                assert!(answer.contains("\"ok\":true"), "{spec}: {answer}");
            }
        }
    };
    // Past the log history's 1500 lines, which fill once.
    cycle(300);
    let before = own_memory_kib(hk.child.id());
    let started = Instant::now();
    cycle(300);
    let after = own_memory_kib(hk.child.id());
    eprintln!(
        "600 scale requests in {:?}: hkrun's own memory {before} KiB -> {after} KiB",
        started.elapsed()
    );
    assert!(
        after <= before + 512,
        "hkrun grew {} KiB over 600 scale requests",
        after.saturating_sub(before)
    );
    hk.stop_cleanly();
}
