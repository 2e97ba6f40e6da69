//! Runs the real `hkrun` binary against real children, waits on its output lines with
//! timeouts, and kills everything a test started, even when the test fails.
//!
//! Every process a test starts carries `HKRUN_TEST_TAG=<unique>` in its environment (hkrun
//! passes its environment on to dynos), so leftovers are found by scanning /proc.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// The longest any single wait in a test may take before it fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// A temporary app directory with a Procfile.
pub(crate) struct App {
    pub dir: tempfile::TempDir,
}

impl App {
    pub(crate) fn new(procfile: &str) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary app directory");
        std::fs::write(dir.path().join("Procfile"), procfile).expect("write the Procfile");
        Self { dir }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn write(&self, name: &str, contents: &str) -> &Self {
        std::fs::write(self.file(name), contents).expect("write an app file");
        self
    }
}

pub(crate) fn unique_tag() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The hkrun command, with the test's tag and no colour unless a test asks for it.
pub(crate) fn hkrun(dir: &Path, args: &[&str], tag: &str) -> Command {
    let mut command = tagged_command(env!("CARGO_BIN_EXE_hkrun"), dir, tag);
    command.args(args);
    command
}

/// `program` in `dir` as the tests run hkrun: tagged, no colour, no inherited PORT, stdin
/// empty, stdout and stderr piped.
pub(crate) fn tagged_command(program: &str, dir: &Path, tag: &str) -> Command {
    let mut command = Command::new(program);
    command
        .current_dir(dir)
        .env("HKRUN_TEST_TAG", tag)
        .env("NO_COLOR", "1")
        .env("PATH", path_to_python())
        .env_remove("PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// `PATH` with a folder holding only `hkrun-test-child` (tests/support/child.rs, the app
/// most tests run as dynos) first, then the folder of the real `python3`. Where `python3`
/// is a version manager's shim (pyenv's is a bash script that runs another), each start
/// of a Python dyno costs three times as long, which on a busy 2-core machine adds
/// seconds to every preboot; the tests are about hkrun, not the shim.
fn path_to_python() -> &'static OsString {
    static PATH: OnceLock<OsString> = OnceLock::new();
    PATH.get_or_init(|| {
        let inherited = std::env::var_os("PATH").unwrap_or_default();
        let mut folders = vec![child_folder()];
        let real = Command::new("python3")
            .args([
                "-c",
                "import os, sys; print(os.path.realpath(sys.executable))",
            ])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|line| PathBuf::from(line.trim()));
        if let Some(folder) = real.as_deref().and_then(Path::parent) {
            folders.push(folder.to_path_buf());
        }
        folders.extend(std::env::split_paths(&inherited));
        std::env::join_paths(folders).unwrap_or(inherited)
    })
}

/// A folder with `hkrun-test-child` in it and nothing else: cargo's own folder of
/// binaries holds `hkrun` too, which on the `PATH` would change what dynos find.
fn child_folder() -> PathBuf {
    let folder = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-child-bin");
    let link = folder.join("hkrun-test-child");
    let target = Path::new(env!("CARGO_BIN_EXE_hkrun-test-child"));
    if std::fs::read_link(&link).ok().as_deref() != Some(target) {
        std::fs::create_dir_all(&folder).expect("create the test child's folder");
        // Another test binary may make the same link at the same time: either link works.
        let _ = std::fs::remove_file(&link);
        let _ = std::os::unix::fs::symlink(target, &link);
    }
    folder
}

/// A running hkrun. Dropping it kills hkrun and every process tagged with its tag.
pub(crate) struct Hk {
    pub child: Child,
    pub tag: String,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    /// Every stdout line received so far.
    pub seen: Vec<String>,
}

impl Hk {
    pub(crate) fn start(dir: &Path, args: &[&str]) -> Self {
        Self::spawn(hkrun(dir, args, &unique_tag()))
    }

    pub(crate) fn spawn(mut command: Command) -> Self {
        let tag = command
            .get_envs()
            .find(|(k, _)| *k == "HKRUN_TEST_TAG")
            .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
            .unwrap_or_else(|| {
                let tag = unique_tag();
                command.env("HKRUN_TEST_TAG", &tag);
                tag
            });
        let mut child = command.spawn().expect("start hkrun");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        Self::attach(child, tag, stdout, Some(stderr))
    }

    /// A started hkrun whose output comes from `stdout` (a pipe, or a terminal's master
    /// side); `stderr` is read to its end when given.
    pub(crate) fn attach(
        child: Child,
        tag: String,
        stdout: impl Read + Send + 'static,
        stderr: Option<impl Read + Send + 'static>,
    ) -> Self {
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line));
                if tx.send(text.into_owned()).is_err() {
                    break;
                }
                line.clear();
            }
        });
        let stderr = stderr.map(|mut stderr| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text);
                text
            })
        });
        Self {
            child,
            tag,
            lines,
            stderr,
            seen: Vec::new(),
        }
    }

    pub(crate) fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pids fit in i32"))
    }

    pub(crate) fn signal(&self, signal: Signal) {
        signal::kill(self.pid(), signal).expect("signal hkrun");
    }

    /// The next line containing `needle`; fails after `PATIENCE`, showing what was seen.
    #[track_caller]
    pub(crate) fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line containing {needle:?} within {PATIENCE:?}; saw:\n{}",
                    self.tail()
                ),
            }
        }
    }

    /// The next line, if one arrives before `deadline`.
    pub(crate) fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let line = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// CPU time hkrun itself has used so far (user + system), from /proc.
    pub(crate) fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("read hkrun's stat");
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .expect("stat format")
            .1
            .split_whitespace()
            .collect();
        // utime and stime are fields 14 and 15 of stat; `fields` starts at field 3.
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        let per_second = procfs::ticks_per_second();
        Duration::from_millis(ticks * 1000 / per_second.max(1))
    }

    /// Waits until each needle has appeared in some line, in any order.
    #[track_caller]
    pub(crate) fn wait_for_each(&mut self, needles: &[&str]) {
        let mut missing: Vec<&str> = needles.to_vec();
        let deadline = Instant::now() + PATIENCE;
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    missing.retain(|needle| !line.contains(needle));
                    self.seen.push(line);
                }
                Err(_) => panic!(
                    "never saw {missing:?} within {PATIENCE:?}; saw:\n{}",
                    self.tail()
                ),
            }
        }
    }

    /// Waits for hkrun to exit, then returns its status and the rest of its output.
    #[track_caller]
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "hkrun still running after {PATIENCE:?}; saw:\n{}",
                self.tail()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        // The reader thread ends at EOF, which follows hkrun's exit.
        while let Ok(line) = self.lines.recv_timeout(PATIENCE) {
            self.seen.push(line);
        }
        status
    }

    /// SIGTERM, then hkrun must exit 0 with no process of the test's left behind.
    #[track_caller]
    pub(crate) fn stop_cleanly(&mut self) {
        self.signal(Signal::SIGTERM);
        let status = self.wait_exit();
        assert_eq!(status.code(), Some(0), "{}", self.stderr());
        assert_none_left(&self.tag);
    }

    /// hkrun's stderr, once it has exited.
    pub(crate) fn stderr(&mut self) -> String {
        self.stderr
            .take()
            .map(|t| t.join().expect("stderr reader"))
            .unwrap_or_default()
    }

    fn tail(&self) -> String {
        let from = self.seen.len().saturating_sub(40);
        self.seen[from..].join("\n")
    }
}

impl Drop for Hk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        kill_tagged(&self.tag);
    }
}

/// Runs hkrun to its end (bounded by `PATIENCE`): exit status, stdout lines, stderr.
pub(crate) fn run_to_end(dir: &Path, args: &[&str]) -> (ExitStatus, Vec<String>, String) {
    let mut hk = Hk::start(dir, args);
    let status = hk.wait_exit();
    let stderr = hk.stderr();
    (status, std::mem::take(&mut hk.seen), stderr)
}

/// Live (not zombie) processes whose environment holds `HKRUN_TEST_TAG=tag`.
pub(crate) fn tagged(tag: &str) -> Vec<Pid> {
    let needle = format!("HKRUN_TEST_TAG={tag}");
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !environ
            .split(|&b| b == 0)
            .any(|var| var == needle.as_bytes())
        {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // The state follows the parenthesised command name, which may hold spaces.
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        if state.is_some_and(|s| s != 'Z') {
            found.push(Pid::from_raw(pid));
        }
    }
    found
}

pub(crate) fn kill_tagged(tag: &str) {
    for pid in tagged(tag) {
        let _ = signal::kill(pid, Signal::SIGKILL);
    }
}

/// Asserts no process of the test is alive, allowing a moment for the kernel to finish
/// tearing down processes hkrun has already reaped.
#[track_caller]
pub(crate) fn assert_none_left(tag: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = tagged(tag);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let shown: Vec<String> = left
                .iter()
                .map(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                        .unwrap_or_default()
                        .replace('\0', " ")
                })
                .collect();
            panic!("processes left behind: {left:?} {shown:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port free on 127.0.0.1 now (a metrics endpoint, a syslog receiver).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A base port whose block (base to base+3, base+100, base+101, base+200) is free now: the
/// router and web dynos, or foreman's layout.
pub(crate) fn free_base_port() -> u16 {
    // Below the kernel's ephemeral range: a port from there can be taken at any moment as
    // the local end of some connection (the router's own, in a long soak), and a dyno
    // scaled back up would find its port in use.
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (
        10_000u32,
        u32::from(ephemeral).saturating_sub(400).max(10_400),
    );
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    for attempt in 0..200u32 {
        let n = u32::try_from(NEXT.fetch_add(1, Ordering::Relaxed)).unwrap_or(0);
        let spread = seed
            .wrapping_add(n.wrapping_mul(7919))
            .wrapping_add(attempt.wrapping_mul(104_729));
        let base = u16::try_from(low + spread % (high - low)).expect("below 65536");
        let free = [0, 1, 2, 3, 100, 101, 200]
            .iter()
            .all(|off| std::net::TcpListener::bind(("0.0.0.0", base + off)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free port block found");
}

/// Lines whose name column is `name`, with the prefix removed (`--no-timestamp` output).
pub(crate) fn payloads<'a>(lines: &'a [String], name: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|line| {
            let (who, text) = line.split_once(" | ")?;
            (who.trim_end() == name).then_some(text)
        })
        .collect()
}

/// Runs a command to its end with stdout captured as raw bytes, killing it (and failing)
/// after `PATIENCE`.
#[track_caller]
pub(crate) fn raw_output(mut command: Command) -> (ExitStatus, Vec<u8>) {
    let out = tempfile::tempfile().expect("a temporary file");
    let mut child = command
        .stdout(out.try_clone().expect("clone the file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start hkrun");
    let status = wait_bounded(&mut child, "hkrun");
    let mut out = out;
    let mut bytes = Vec::new();
    std::io::Seek::rewind(&mut out).expect("rewind");
    out.read_to_end(&mut bytes).expect("read the output");
    (status, bytes)
}

/// What a client command (`hkrun ps`, `scale`, ...) printed, and how it exited.
pub(crate) struct Client {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a client command in `dir` to its end, failing the test after `PATIENCE`.
#[track_caller]
pub(crate) fn client(dir: &Path, args: &[&str]) -> Client {
    let mut command = hkrun(dir, args, &unique_tag());
    let out = tempfile::tempfile().expect("a temporary file");
    let err = tempfile::tempfile().expect("a temporary file");
    let mut child = command
        .stdout(out.try_clone().expect("clone the file"))
        .stderr(err.try_clone().expect("clone the file"))
        .spawn()
        .expect("start the hkrun client");
    let status = wait_bounded(&mut child, &format!("hkrun {args:?}"));
    let read = |mut file: std::fs::File| {
        let mut text = String::new();
        std::io::Seek::rewind(&mut file).expect("rewind");
        file.read_to_string(&mut text).expect("read the output");
        text
    };
    Client {
        status,
        stdout: read(out),
        stderr: read(err),
    }
}

/// The pid `ps` shows for `dyno`, when it has one.
pub(crate) fn dyno_pid(dir: &Path, dyno: &str) -> Option<i32> {
    let out = client(dir, &["ps", "--json"]);
    let ps: hkrun::control::protocol::Ps = serde_json::from_str(&out.stdout).ok()?;
    ps.dynos.iter().find(|d| d.name == dyno)?.pid
}

/// Polls `check` every 20 ms until it gives a value, failing after `PATIENCE`.
#[track_caller]
pub(crate) fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` to exit, killing it and failing the test after `PATIENCE`.
#[track_caller]
pub(crate) fn wait_bounded(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A process's own resident memory in KiB (`RssAnon`: not the pages of its executable it
/// has read, which grow as more of its code runs); 0 once it is gone.
pub(crate) fn own_memory_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
