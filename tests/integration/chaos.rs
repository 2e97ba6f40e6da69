//! The chaos soak: for a while, dynos are SIGKILLed at random, a worker double-forks and
//! `setsid`s on every start, the formation is scaled up and down, web restarts
//! preboot-style under load, stdout stalls for seconds at a time, the log folder's disk
//! fills up and has room again, `config:set`s run several at once, and two drains (a
//! syslog receiver that closes and goes away, an HTTPS-style receiver that refuses) never
//! behave. At the end: no failed request but those in flight on a killed web dyno, no
//! spliced line on stdout or in the log files, every config var set kept, no orphan and
//! no zombie, and hkrun's descriptors, threads and memory back where they were.
//!
//! `cargo test` runs 12 s of chaos after the warm-up (about 25 s, which the memory
//! compared at the end needs whatever the length). `HKRUN_SOAK_SECS=1800` runs it longer, and
//! `HKRUN_SOAK_SEED=N` replays the same choices (the seed is printed).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use hkrun::control::protocol::Ps;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::harness::{
    App, assert_none_left, client, eventually, free_base_port, free_port, kill_tagged,
    own_memory_kib, tagged_command, wait_bounded,
};
use crate::router::{GRACEFUL, Load};

/// The soak's app: prebooted web dynos (`GRACEFUL`), a worker with escaping children, and
/// `chatty`'s bursts of lines of every length up to 300 bytes, so a splice would show.
fn procfile() -> String {
    format!(
        "\
web: {GRACEFUL}
worker: setsid sleep 1000 & (sleep 1000 &); while :; do echo \"tick $$\"; sleep 0.2; done
chatty: exec hkrun-test-child burst 100 --len 300 --vary --char c --every 0.05
"
    )
}

const FORMATION: &str = "web=2,worker=1,chatty=1";
const CLIENTS: usize = 2;

/// A small xorshift: the soak's choices, replayable from the seed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// hkrun's stdout, read by a thread that can be told to stop reading for a while.
struct Reader {
    stalled: Arc<AtomicBool>,
    lines: Arc<AtomicU64>,
    /// Lines that are not `NAME | text`: a splice, or a line cut in two.
    bad: Arc<Mutex<Vec<String>>>,
    /// hkrun's own `N bytes of output dropped` lines.
    dropped: Arc<Mutex<Vec<String>>>,
    /// The last lines other than `chatty`'s, printed if the soak fails.
    recent: Arc<Mutex<VecDeque<String>>>,
    thread: std::thread::JoinHandle<()>,
}

/// How many of hkrun's last lines a failed soak prints.
const RECENT: usize = 400;

/// Prints hkrun's last lines when the soak panics, so a failure can be read afterwards.
struct DumpOnPanic(Arc<Mutex<VecDeque<String>>>);

impl Drop for DumpOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let recent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            eprintln!("hkrun's last {} lines (chatty's left out):", recent.len());
            for line in recent.iter() {
                eprint!("  {line}");
            }
        }
    }
}

impl Reader {
    fn start(stdout: std::process::ChildStdout) -> Self {
        let stalled = Arc::new(AtomicBool::new(false));
        let lines = Arc::new(AtomicU64::new(0));
        let bad = Arc::new(Mutex::new(Vec::new()));
        let dropped = Arc::new(Mutex::new(Vec::new()));
        let recent = Arc::new(Mutex::new(VecDeque::with_capacity(RECENT)));
        let thread = {
            let (stalled, lines, bad, dropped, recent) = (
                Arc::clone(&stalled),
                Arc::clone(&lines),
                Arc::clone(&bad),
                Arc::clone(&dropped),
                Arc::clone(&recent),
            );
            let begun = Instant::now();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut line = Vec::new();
                loop {
                    while stalled.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    line.clear();
                    if !reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                        return;
                    }
                    lines.fetch_add(1, Ordering::Relaxed);
                    let text = String::from_utf8_lossy(&line);
                    if !text.starts_with("chatty") {
                        let mut recent = recent.lock().unwrap_or_else(PoisonError::into_inner);
                        if recent.len() == RECENT {
                            recent.pop_front();
                        }
                        let at = begun.elapsed().as_secs_f64();
                        recent.push_back(format!("{at:8.2}s {text}"));
                    }
                    if !well_formed(&text) {
                        bad.lock().expect("not poisoned").push(text.into_owned());
                    } else if text.contains("bytes of output dropped") {
                        dropped
                            .lock()
                            .expect("not poisoned")
                            .push(text.into_owned());
                    }
                }
            })
        };
        Self {
            stalled,
            lines,
            bad,
            dropped,
            recent,
            thread,
        }
    }
}

/// `web.1  | text` or `system | text` (no timestamps, no colour), ending in a newline.
fn well_formed(line: &str) -> bool {
    let Some(text) = line.strip_suffix('\n') else {
        return false;
    };
    let Some((name, rest)) = text.split_once(" | ") else {
        return false;
    };
    let name = name.trim_end();
    let known = name == "system"
        || name == "router"
        || name.split_once('.').is_some_and(|(kind, n)| {
            ["web", "worker", "chatty", "release"].contains(&kind) && n.parse::<u32>().is_ok()
        });
    // chatty's lines are only `c`s (hkrun's own lines under its name never start with
    // one): a line of `c`s with anything else in it has another line spliced in.
    let spliced =
        name.starts_with("chatty.") && rest.starts_with('c') && rest.bytes().any(|b| b != b'c');
    known && !spliced
}

/// What hkrun itself holds: open descriptors, threads, and its own resident KiB.
/// Files in the log folder are left out of the descriptors: how many are open depends on
/// which dynos have written since the disk last had room.
fn footprint(pid: u32) -> (usize, u64, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |fds| {
        fds.filter_map(Result::ok)
            .filter(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|to| !to.components().any(|c| c.as_os_str() == "logs"))
            })
            .count()
    });
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count);
    (fds, threads as u64, own_memory_kib(pid))
}

/// hkrun's children that have exited and not been reaped.
fn zombies(pid: u32) -> usize {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
                .unwrap_or(false)
        })
        .count()
}

fn ps(app: &App) -> Option<Ps> {
    let out = client(app.path(), &["ps", "--json"]);
    serde_json::from_str(&out.stdout).ok()
}

/// Every dyno of the formation is up, and nothing else runs.
fn settled(app: &App) -> bool {
    ps(app).is_some_and(|ps| {
        let count = |kind: &str| ps.dynos.iter().filter(|d| d.name.starts_with(kind)).count();
        ps.dynos.iter().all(|d| d.state == "up")
            && (count("web."), count("worker."), count("chatty.")) == (2, 1, 1)
    })
}

/// Half of the warm-up that lets the drains' queues and the log files' reach their sizes:
/// longer than the chaos' outages (3 s) and the drains' back-off (5 s).
const WARM_DRAINS_SECS: u64 = 7;

/// The log folder's disk, full at 1 MiB a file (RLIMIT_FSIZE: hkrun's writes past it
/// fail with EFBIG, as on a full disk), or with room (`prlimit` lifts it).
const FULL_DISK_BLOCKS: u64 = 2048;

/// Sets hkrun's file size limit: the disk full (`Some(bytes)`) or with room.
fn set_disk(pid: u32, full: Option<u64>) -> bool {
    let limit = full.map_or_else(|| "unlimited".to_owned(), |bytes| bytes.to_string());
    std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--fsize={limit}:unlimited"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Two drains that never behave, on threads of the test: a syslog receiver over TCP that
/// reads for a while then closes, and now and then stops listening for seconds; and an
/// HTTP receiver that refuses most batches (403, 401) or asks for them again (503).
struct BadDrains {
    stop: Arc<AtomicBool>,
    /// From now on both receivers take everything, so the drains' queues empty.
    behave: Arc<AtomicBool>,
    /// While set, the syslog receiver is gone and the HTTP one answers 503.
    down: Arc<AtomicBool>,
    syslog_port: u16,
    http_port: u16,
    syslog_bytes: Arc<AtomicU64>,
    http_posts: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl BadDrains {
    fn start(seed: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let behave = Arc::new(AtomicBool::new(false));
        let down = Arc::new(AtomicBool::new(false));
        let (syslog_port, http_port) = (free_port(), free_port());
        let syslog_bytes = Arc::new(AtomicU64::new(0));
        let http_posts = Arc::new(AtomicU64::new(0));
        let syslog = {
            let (stop, behave, down, bytes) = (
                Arc::clone(&stop),
                Arc::clone(&behave),
                Arc::clone(&down),
                Arc::clone(&syslog_bytes),
            );
            std::thread::spawn(move || {
                syslog_peer(syslog_port, seed, [&stop, &behave, &down], &bytes);
            })
        };
        let http = {
            let (stop, behave, down, posts) = (
                Arc::clone(&stop),
                Arc::clone(&behave),
                Arc::clone(&down),
                Arc::clone(&http_posts),
            );
            std::thread::spawn(move || http_peer(http_port, [&stop, &behave, &down], &posts))
        };
        Self {
            stop,
            behave,
            down,
            syslog_port,
            http_port,
            syslog_bytes,
            http_posts,
            threads: vec![syslog, http],
        }
    }

    /// Lets the receivers take everything again, and returns once both have had a
    /// delivery since (each drain back from its back-off) and two seconds more (the queues
    /// empty at the receivers' speed, far above the app's; the app never stops writing,
    /// so a quiet spell never comes).
    fn behave(&self) {
        let before = (
            self.syslog_bytes.load(Ordering::Relaxed),
            self.http_posts.load(Ordering::Relaxed),
        );
        self.behave.store(true, Ordering::Relaxed);
        eventually("both drains to deliver again", || {
            (self.syslog_bytes.load(Ordering::Relaxed) > before.0
                && self.http_posts.load(Ordering::Relaxed) > before.1)
                .then_some(())
        });
        std::thread::sleep(Duration::from_secs(2));
    }

    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("a drain peer");
        }
        (
            self.syslog_bytes.load(Ordering::Relaxed),
            self.http_posts.load(Ordering::Relaxed),
        )
    }
}

/// `[stop, behave, down]`: see `BadDrains`.
fn syslog_peer(port: u16, seed: u64, [stop, behave, down]: [&AtomicBool; 3], bytes: &AtomicU64) {
    use std::io::Read;
    let mut dice = Dice(seed ^ 0x5eed);
    while !stop.load(Ordering::Relaxed) {
        if down.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        listener.set_nonblocking(true).expect("nonblocking");
        // A few connections, each read for up to 1.5 s and then closed.
        for _ in 0..1 + dice.below(4) {
            let until = Instant::now() + Duration::from_secs(3);
            let stream = loop {
                match listener.accept() {
                    Ok((stream, _)) => break Some(stream),
                    Err(_) if Instant::now() < until && !stop.load(Ordering::Relaxed) => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => break None,
                }
            };
            let Some(mut stream) = stream else { break };
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
            let read_until = Instant::now() + Duration::from_millis(dice.below(1500));
            let mut buf = [0; 65536];
            while (Instant::now() < read_until
                || (behave.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed)))
                && !down.load(Ordering::Relaxed)
            {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(_) => {}
                }
            }
        }
        // Gone for a while: connections are refused.
        drop(listener);
        if !behave.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(dice.below(3000)));
        }
    }
}

/// `[stop, behave, down]`: see `BadDrains`.
fn http_peer(port: u16, [stop, behave, down]: [&AtomicBool; 3], posts: &AtomicU64) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let answers = [
        "403 Forbidden",
        "503 Service Unavailable",
        "401 Unauthorized",
        "200 OK",
    ];
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut stream, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        // The head, then the body its Content-Length gives.
        let mut got = Vec::new();
        let mut buf = [0; 65536];
        let body_at = loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break None,
                Ok(k) => got.extend_from_slice(&buf[..k]),
            }
            if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break Some(at + 4);
            }
        };
        let Some(body_at) = body_at else { continue };
        let head = String::from_utf8_lossy(&got[..body_at]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while got.len() < body_at + length {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => got.extend_from_slice(&buf[..k]),
            }
        }
        posts.fetch_add(1, Ordering::Relaxed);
        let answer = if down.load(Ordering::Relaxed) {
            "503 Service Unavailable"
        } else if behave.load(Ordering::Relaxed) {
            "200 OK"
        } else {
            answers[n % answers.len()]
        };
        n += 1;
        let _ = stream.write_all(
            format!("HTTP/1.1 {answer}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
    }
}

/// Every line of every file in the log folder is whole: a Heroku line ending in a
/// newline, and chatty's text only `c`s. The number of lines read.
fn log_files_whole(dir: &std::path::Path) -> usize {
    let mut lines = 0;
    for entry in std::fs::read_dir(dir).expect("the log folder") {
        let path = entry.expect("an entry").path();
        let bytes = std::fs::read(&path).expect("a log file");
        assert!(
            bytes.is_empty() || bytes.ends_with(b"\n"),
            "{} ends in part of a line",
            path.display()
        );
        for line in String::from_utf8_lossy(&bytes).lines() {
            lines += 1;
            let Some((head, text)) = line.split_once("]: ") else {
                panic!("{}: not a log line: {line:?}", path.display());
            };
            if head.ends_with("app[chatty.1") || head.contains("app[chatty.") {
                assert!(
                    !text.starts_with('c') || text.bytes().all(|b| b == b'c'),
                    "{}: spliced: {line:?}",
                    path.display()
                );
            }
        }
    }
    lines
}

/// What the chaos did, for the report and the bound on failed requests.
#[derive(Debug, Default)]
struct Tally {
    web_kills: usize,
    other_kills: usize,
    scales: usize,
    preboots: usize,
    restarts: usize,
    stalls: usize,
    refused: usize,
    disk_full: usize,
    disk_room: usize,
    config_sets: usize,
}

#[test]
fn chaos_soak() {
    let secs: u64 = std::env::var("HKRUN_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let seed: u64 = std::env::var("HKRUN_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
            now.map_or(1, |d| u64::from(d.subsec_nanos()) | 1)
        });
    eprintln!("chaos soak: {secs} s, HKRUN_SOAK_SEED={seed}");
    let mut dice = Dice(seed);

    let app = App::new(&procfile());
    // Web dynos listen at once; `.env` is read by default.
    app.write(".env", "BIND_DELAY=0.2\n");
    let port = free_base_port();
    let tag = format!("soak-{}", std::process::id());
    let _cleanup = Cleanup(tag.clone());
    let drains = BadDrains::start(seed);
    let syslog = format!("syslog+tcp://127.0.0.1:{}", drains.syslog_port);
    let http = format!("http://127.0.0.1:{}/logs", drains.http_port);
    // The log folder's disk starts full; hkrun ignores SIGXFSZ (as the shell leaves it),
    // so a write past the limit fails with EFBIG.
    // The soft limit only, so that `prlimit` (without privileges) can raise it again.
    let line = format!("trap '' XFSZ; ulimit -S -f {FULL_DISK_BLOCKS} && exec \"$0\" \"$@\"");
    let mut hk = tagged_command("sh", app.path(), &tag)
        .args(["-c", &line, env!("CARGO_BIN_EXE_hkrun")])
        // Back-off up to 2 s: a dyno killed five times is up again within the settle at
        // the end (the back-off's growth has tests of its own, in supervision.rs).
        .args(["start", "--no-timestamp", "-t", "3", "--restart-cap", "2"])
        .args(["-m", FORMATION])
        .args([
            "--log-dir",
            "logs",
            "--log-max-size",
            "4M",
            "--drain",
            &syslog,
        ])
        .args(["--drain", &http, "-p"])
        .arg(port.to_string())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hkrun");
    let reader = Reader::start(hk.stdout.take().expect("piped"));
    let _dump = DumpOnPanic(Arc::clone(&reader.recent));
    let pid = hk.id();
    eventually("the formation to be up", || settled(&app).then_some(()));

    // Warm up: traffic, a long stall, preboots and crashes, so that every buffer has
    // reached its largest once; the memory compared at the end is the most hkrun held
    // during the warm-up (a drain's queue may have given its memory back, or not yet,
    // at any one moment).
    let warm_peak = Arc::new(AtomicU64::new(0));
    let warming = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, warming) = (Arc::clone(&warm_peak), Arc::clone(&warming));
        std::thread::spawn(move || {
            while warming.load(Ordering::Relaxed) {
                peak.fetch_max(own_memory_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let load = Load::start(port, CLIENTS);
    reader.stalled.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(5));
    reader.stalled.store(false, Ordering::Relaxed);
    for _ in 0..3 {
        assert!(client(app.path(), &["restart", "web"]).status.success());
        assert!(client(app.path(), &["restart", "worker"]).status.success());
    }
    // The drains' queues and the log files' reach their sizes while the receivers
    // misbehave and the disk is full, then has room, then is full again.
    let prlimit = std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok();
    if !prlimit {
        eprintln!("no prlimit (util-linux): the log folder's disk stays full");
    }
    // Both receivers down for longer than any outage of the chaos (3 s, and 5 s of
    // back-off), so the drains' queues hold the most they will.
    drains.down.store(true, Ordering::Relaxed);
    for full in [None, Some(FULL_DISK_BLOCKS * 512)] {
        std::thread::sleep(Duration::from_secs(WARM_DRAINS_SECS));
        assert!(
            set_disk(pid, full) || !prlimit,
            "prlimit could not set hkrun's limit"
        );
        drains.down.store(false, Ordering::Relaxed);
    }
    let (warm_ok, warm_failed) = load.finish();
    assert!(warm_failed.is_empty(), "{warm_failed:?}");
    eventually("the formation to settle", || settled(&app).then_some(()));
    std::thread::sleep(Duration::from_secs(1));
    let before = footprint(pid);
    warming.store(false, Ordering::Relaxed);
    sampler.join().expect("the memory sampler");
    let warm_peak = warm_peak.load(Ordering::Relaxed).max(before.2);
    eprintln!(
        "after warm-up ({warm_ok} requests): {} fds, {} threads, {} KiB ({warm_peak} KiB at most)",
        before.0, before.1, before.2
    );

    let load = Load::start(port, CLIENTS);
    let mut tally = Tally::default();
    // The config vars set so far, and the value each must have at the end.
    let mut config: Vec<(String, String)> = Vec::new();
    let mut disk_full = true;
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let every = Duration::from_secs(secs.div_ceil(10).max(5));
    let mut report_at = started + every;
    // hkrun's own memory at each report, for the trend.
    let mut memory = Vec::new();
    while Instant::now() < end {
        if Instant::now() >= report_at {
            report_at += every;
            let (fds, threads, rss) = footprint(pid);
            memory.push(rss);
            eprintln!(
                "{:>5} s: {fds} fds, {threads} threads, {rss} KiB",
                started.elapsed().as_secs()
            );
        }
        match dice.below(12) {
            10 => {
                disk_full = !disk_full;
                let full = disk_full.then_some(FULL_DISK_BLOCKS * 512);
                if set_disk(pid, full) {
                    match disk_full {
                        true => tally.disk_full += 1,
                        false => tally.disk_room += 1,
                    }
                }
            }
            11 => {
                // Four at once without a restart, and one with (refused during a
                // preboot: the file changes all the same).
                let round = tally.config_sets;
                let setters: Vec<_> = (0..5)
                    .map(|k| {
                        let dir = app.path().to_owned();
                        let pair = format!("SOAK_{k}=v{round}");
                        std::thread::spawn(move || {
                            let mut args = vec!["config:set", pair.as_str()];
                            if k < 4 {
                                args.push("--no-restart");
                            }
                            client(&dir, &args)
                        })
                    })
                    .collect();
                for (k, setter) in setters.into_iter().enumerate() {
                    let out = setter.join().expect("a config:set");
                    let changed = out.status.success()
                        || out.stderr.contains("is changed, but the running app");
                    assert!(
                        changed,
                        "config:set SOAK_{k}: {} {}",
                        out.stdout, out.stderr
                    );
                    config.retain(|(key, _)| *key != format!("SOAK_{k}"));
                    config.push((format!("SOAK_{k}"), format!("v{round}")));
                }
                tally.config_sets += 1;
            }
            0..=2 => {
                let Some(ps) = ps(&app) else { continue };
                let live: Vec<_> = ps.dynos.iter().filter(|d| d.pid.is_some()).collect();
                if live.is_empty() {
                    continue;
                }
                let dyno = live[dice.below(live.len() as u64) as usize];
                let pid = dyno.pid.expect("filtered");
                if signal::kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                    if dyno.name.starts_with("web.") {
                        tally.web_kills += 1;
                    } else {
                        tally.other_kills += 1;
                    }
                }
            }
            3 | 4 => {
                let change = match dice.below(3) {
                    0 => format!("worker={}", dice.below(3)),
                    1 => format!("chatty={}", dice.below(3)),
                    _ => format!("web={}", 1 + dice.below(3)),
                };
                let out = client(app.path(), &["scale", &change]);
                match out.status.success() {
                    true => tally.scales += 1,
                    false => tally.refused += 1,
                }
            }
            5 | 6 => {
                let out = client(app.path(), &["restart", "web"]);
                match out.status.success() {
                    true => tally.preboots += 1,
                    false => tally.refused += 1,
                }
            }
            7 => {
                let target = ["worker", "chatty"][dice.below(2) as usize];
                let out = client(app.path(), &["restart", target]);
                match out.status.success() {
                    true => tally.restarts += 1,
                    false => tally.refused += 1,
                }
            }
            _ => {
                tally.stalls += 1;
                reader.stalled.store(true, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1000 + dice.below(3000)));
                reader.stalled.store(false, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(100 + dice.below(500)));
    }
    let (ok, failed) = load.finish();
    eprintln!("{tally:?}");
    let env = std::fs::read_to_string(app.file(".env")).expect("read .env");
    for (key, value) in &config {
        assert!(
            env.lines().any(|l| l == format!("{key}={value}")),
            "{key}={value} lost: {env}"
        );
    }
    set_disk(pid, None);
    eprintln!(
        "{ok} requests through the router, {} failed ({} web dynos SIGKILLed, {CLIENTS} clients)",
        failed.len(),
        tally.web_kills
    );

    // Back to the starting formation, settled (once a preboot under way has ended).
    eventually("the starting formation to be asked for", || {
        let out = client(app.path(), &["scale", "web=2", "worker=1", "chatty=1"]);
        if !out.status.success() {
            eprintln!("scale back refused: {}", out.stderr.trim());
        }
        out.status.success().then_some(())
    });
    eventually("the formation to settle", || settled(&app).then_some(()));
    // The drains' queues (bounded: they hold what a receiver has not taken) empty once
    // the receivers behave; what remains to compare is hkrun's own.
    drains.behave();
    std::thread::sleep(Duration::from_secs(1));
    let after = footprint(pid);
    eprintln!(
        "at the end: {} fds, {} threads, {} KiB (from {} fds, {} threads, {} KiB)",
        after.0, after.1, after.2, before.0, before.1, before.2
    );
    eventually("no zombie child of hkrun", || {
        (zombies(pid) == 0).then_some(())
    });

    signal::kill(
        Pid::from_raw(i32::try_from(pid).expect("a pid")),
        Signal::SIGTERM,
    )
    .expect("signal hkrun");
    let status = wait_bounded(&mut hk, "hkrun");
    reader.thread.join().expect("the reader");
    let (syslog_bytes, http_posts) = drains.finish();
    let file_lines = log_files_whole(&app.file("logs"));
    eprintln!(
        "drains: {syslog_bytes} bytes to the syslog receiver, {http_posts} batches posted; {file_lines} whole lines in the log files"
    );
    assert!(syslog_bytes > 0 && http_posts > 0, "a drain got nothing");
    let lines = reader.lines.load(Ordering::Relaxed);
    let bad = reader.bad.lock().expect("not poisoned").clone();
    let dropped = reader.dropped.lock().expect("not poisoned").clone();
    eprintln!(
        "{lines} lines read, {} malformed, {} `bytes of output dropped` lines",
        bad.len(),
        dropped.len()
    );
    assert_eq!(status.code(), Some(0));
    assert_none_left(&tag);
    assert!(
        bad.is_empty(),
        "malformed lines: {:?}",
        &bad[..bad.len().min(5)]
    );
    // Only requests in flight on a dyno that was SIGKILLed may fail: one per client.
    assert!(
        failed.len() <= tally.web_kills * CLIENTS,
        "{} failed with {} web kills: {:?}",
        failed.len(),
        tally.web_kills,
        &failed[..failed.len().min(5)]
    );
    // Two more at most, and one for each drain's connection, which may be open at one
    // count and closed at the other.
    assert!(
        after.0 <= before.0 + 4,
        "descriptors: {before:?} -> {after:?}"
    );
    assert!(after.1 <= before.1 + 2, "threads: {before:?} -> {after:?}");
    // Memory: no growth through the chaos (the last third's highest figure within 4 MiB
    // of the first third's), and at the end, once the drains' queues have emptied and
    // given their memory back, within 4 MiB of the most the warm-up held. The trend is
    // read only in long runs: in 40 s, queues still filling under load look alike.
    let third = memory.len() / 3;
    if third > 0 && secs >= 300 {
        let first = memory[..third].iter().max().copied().unwrap_or(0);
        let last = memory[memory.len() - third..]
            .iter()
            .max()
            .copied()
            .unwrap_or(0);
        assert!(
            last <= first + 4096,
            "RSS grew through the chaos: {memory:?}"
        );
    }
    assert!(
        after.2 <= warm_peak + 4096,
        "RSS: {before:?} -> {after:?} ({warm_peak} KiB at most in the warm-up)"
    );
}

/// Kills whatever carries the tag when the test ends, passed or failed.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        kill_tagged(&self.0);
    }
}
