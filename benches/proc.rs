//! What one read of /proc (`os::proc::Snapshot`) and each query on it cost with 100 and
//! with 1,000 processes of hkrun's: `sleep` children, each in its own process group with a
//! run mark, as hkrun starts dynos. Run with `cargo bench --bench proc`.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hkrun::os::proc::{Listening, Snapshot};
use hkrun::os::process::RUN_MARK;
use nix::unistd::Pid;

const SIZES: [usize; 2] = [100, 1000];
const ROUNDS: usize = 100;

/// Killed and reaped however the bench ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

fn pid(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).expect("pid"))
}

/// Times `f` over `ROUNDS` runs and prints mean, p50 and p99.
fn time<T>(what: &str, mut f: impl FnMut() -> T) {
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .collect();
    times.sort();
    let mean = times.iter().sum::<Duration>() / u32::try_from(ROUNDS).expect("fits");
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "  {what:<44} mean {:>10.1?}  p50 {:>10.1?}  p99 {:>10.1?}",
        mean,
        at(0.5),
        at(0.99)
    );
}

fn main() {
    let me = Pid::this();
    let own_group = nix::unistd::getpgrp();
    // Something of the bench's own group listens, as a web dyno's would.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut children = Children(Vec::new());
    for size in SIZES {
        while children.0.len() < size {
            let n = children.0.len();
            let child = Command::new("sleep")
                .arg("1000")
                .env(RUN_MARK, format!("bench-{n}"))
                .stdin(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("spawn sleep");
            children.0.push(child);
        }
        let groups: Vec<(usize, Pid)> = children.0.iter().map(pid).enumerate().collect();
        let snapshot = Snapshot::read();
        assert_eq!(snapshot.descendants(me).len(), size);
        println!(
            "proc: {size} children, {} processes on the machine, {ROUNDS} rounds each",
            snapshot.processes().len()
        );
        time("Snapshot::read", Snapshot::read);
        time("descendants (of the bench)", || snapshot.descendants(me));
        time("members (of one group)", || {
            snapshot.members(groups[0].1).count()
        });
        let mut owners = HashMap::new();
        time(&format!("memory ({size} groups)"), || {
            snapshot.memory(&groups, &mut owners)
        });
        time("carries_mark (one descendant)", || {
            snapshot.carries_mark(groups[size - 1].1, "bench-0")
        });
        time(&format!("carries_mark (all {size} descendants)"), || {
            snapshot
                .descendants(me)
                .iter()
                .filter(|d| snapshot.carries_mark(d.pid, "bench-0"))
                .count()
        });
        time("Listening::read (TCP tables)", Listening::read);
        let listening = Listening::read();
        assert!(!snapshot.listeners(own_group, port, &listening).is_empty());
        time("listeners (the bench's group, on its port)", || {
            snapshot.listeners(own_group, port, &listening)
        });
    }
    drop(children);
    // The readiness probe behind a busy router: every request leaves connections in
    // TIME_WAIT, which /proc/net/tcp lists and sock_diag's listen filter skips.
    for churn in [0, TIME_WAIT] {
        // Counted every 1,000 connections: each count reads the whole table.
        while time_wait() < churn {
            for _ in 0..1000 {
                let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
                let (server, _) = listener.accept().expect("accept");
                drop(client);
                drop(server);
            }
        }
        println!("TCP tables: {} entries in TIME_WAIT", time_wait());
        time("Listening::read (sock_diag)", Listening::read);
        time(
            "Listening::read_tables (/proc/net/tcp)",
            Listening::read_tables,
        );
    }
    drop(listener);
}

/// How many connections to leave in TIME_WAIT for the second round (opened one after
/// another, they level off near 14,000 here as the first expire).
const TIME_WAIT: usize = 10_000;

fn time_wait() -> usize {
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().nth(3) == Some("06"))
        .count()
}
