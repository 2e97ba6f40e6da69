//! The one reader of /proc: a `Snapshot` of every process, read in one pass, and the
//! queries hkrun asks of it (what is left of a dyno's run, stragglers, memory per dyno,
//! who listens on a port). What costs more than a process's `stat` (its environment, its
//! descriptors, the TCP tables) is read only when a query needs it.
//!
//! Reading /proc takes milliseconds with many processes, so it never happens on the
//! driver's async thread: the driver hands its scans to a `Reader`, the observers use
//! blocking threads of their own (ARCHITECTURE.md, Reading /proc).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::time::Duration;

use nix::unistd::Pid;

use super::process::RUN_MARK;

/// One process as the snapshot saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: Pid,
    pub ppid: Pid,
    pub pgid: Pid,
    /// Exited and not reaped yet: counts as gone.
    pub zombie: bool,
    /// Resident memory, in bytes.
    pub rss: u64,
    /// CPU time used, its own and its reaped children's, in clock ticks.
    pub cpu_ticks: u64,
}

/// Every process hkrun can see, read in one pass over /proc (not atomic: a process born
/// or ended meanwhile may be missed).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    processes: Vec<Process>,
    /// Each pid's place in `processes`.
    index: HashMap<i32, usize>,
    /// Each parent's children, as indices into `processes`.
    children: HashMap<i32, Vec<usize>>,
}

impl Snapshot {
    /// Reads every process's `stat`; a process gone meanwhile is left out.
    pub fn read() -> Self {
        let page = procfs::page_size();
        let Ok(all) = procfs::process::all_processes() else {
            return Self::default();
        };
        let processes = all
            .filter_map(|p| p.ok()?.stat().ok())
            .map(|stat| Process {
                pid: Pid::from_raw(stat.pid),
                ppid: Pid::from_raw(stat.ppid),
                pgid: Pid::from_raw(stat.pgrp),
                zombie: stat.state == 'Z',
                rss: stat.rss * page,
                cpu_ticks: stat.utime
                    + stat.stime
                    + u64::try_from(stat.cutime.max(0) + stat.cstime.max(0)).unwrap_or(0),
            })
            .collect();
        Self::from_processes(processes)
    }

    /// A snapshot of these processes (tests, benchmarks).
    pub fn from_processes(processes: Vec<Process>) -> Self {
        let mut index = HashMap::with_capacity(processes.len());
        let mut children: HashMap<i32, Vec<usize>> = HashMap::new();
        for (i, p) in processes.iter().enumerate() {
            index.insert(p.pid.as_raw(), i);
            children.entry(p.ppid.as_raw()).or_default().push(i);
        }
        Self {
            processes,
            index,
            children,
        }
    }

    pub fn processes(&self) -> &[Process] {
        &self.processes
    }

    pub fn get(&self, pid: Pid) -> Option<&Process> {
        self.index.get(&pid.as_raw()).map(|&i| &self.processes[i])
    }

    fn children_of(&self, pid: i32) -> impl Iterator<Item = &Process> {
        self.children
            .get(&pid)
            .into_iter()
            .flatten()
            .map(|&i| &self.processes[i])
    }

    /// Every live descendant of `root`. Zombies count as gone (what they left behind was
    /// re-parented, and is found through its new parent).
    pub fn descendants(&self, root: Pid) -> Vec<Process> {
        let mut seen = HashSet::from([root.as_raw()]);
        let mut next = vec![root.as_raw()];
        let mut found = Vec::new();
        while let Some(pid) = next.pop() {
            for child in self.children_of(pid) {
                if seen.insert(child.pid.as_raw()) {
                    next.push(child.pid.as_raw());
                    if !child.zombie {
                        found.push(*child);
                    }
                }
            }
        }
        found
    }

    /// The live members of process group `pgid`.
    pub fn members(&self, pgid: Pid) -> impl Iterator<Item = &Process> {
        self.processes
            .iter()
            .filter(move |p| p.pgid == pgid && !p.zombie)
    }

    /// The CPU time the live members of group `pgid` have used, their own and that of the
    /// children they reaped: a dyno's, since each run leads a group of its own (`/metrics`,
    /// and `ps` for `hkrun top`).
    pub fn cpu_time(&self, pgid: Pid) -> Duration {
        let ticks: u64 = self.members(pgid).map(|p| p.cpu_ticks).sum();
        let per_second = procfs::ticks_per_second().max(1);
        let rest = Duration::from_nanos((ticks % per_second) * 1_000_000_000 / per_second);
        Duration::from_secs(ticks / per_second) + rest
    }

    /// The resident memory of each of `groups` (by owner, in that order): the group's
    /// processes and everything descended from them. `owners` carries over from one
    /// snapshot to the next, so a process that left its group (re-parented to hkrun) still
    /// counts for the group it was first seen under.
    pub fn memory<K: Clone + Eq + Hash>(
        &self,
        groups: &[(K, Pid)],
        owners: &mut HashMap<i32, K>,
    ) -> Vec<(K, u64)> {
        let by_group: HashMap<Pid, &K> = groups.iter().map(|(k, pgid)| (*pgid, k)).collect();
        owners.retain(|pid, _| self.index.contains_key(pid));
        for p in &self.processes {
            if let Some(owner) = by_group.get(&p.pgid) {
                owners.insert(p.pid.as_raw(), (*owner).clone());
            }
        }
        // A process without an owner takes its nearest owned ancestor's.
        let mut next: Vec<i32> = owners.keys().copied().collect();
        while let Some(pid) = next.pop() {
            let Some(owner) = owners.get(&pid).cloned() else {
                continue;
            };
            for child in self.children_of(pid) {
                let child = child.pid.as_raw();
                if let Entry::Vacant(unowned) = owners.entry(child) {
                    unowned.insert(owner.clone());
                    next.push(child);
                }
            }
        }
        let mut totals: HashMap<&K, u64> = HashMap::new();
        for p in &self.processes {
            if let Some(owner) = owners.get(&p.pid.as_raw()) {
                *totals.entry(owner).or_default() += p.rss;
            }
        }
        groups
            .iter()
            .map(|(k, _)| (k.clone(), totals.get(k).copied().unwrap_or(0)))
            .collect()
    }

    /// Whether `pid` is alive here and its environment (as it was at its exec) holds
    /// `RUN_MARK=mark`. Read from /proc at each call: environments are large.
    pub fn carries_mark(&self, pid: Pid, mark: &str) -> bool {
        self.get(pid).is_some_and(|p| !p.zombie) && carries_mark(pid, mark)
    }

    /// The local addresses of `listening` sockets on `port` that live members of group
    /// `pgid` hold, read from their descriptors (only when something listens on `port`).
    pub fn listeners(&self, pgid: Pid, port: u16, listening: &Listening) -> Vec<IpAddr> {
        let on_port: HashMap<u64, IpAddr> = listening
            .0
            .iter()
            .filter(|(_, addr)| addr.port() == port)
            .map(|(&inode, addr)| (inode, addr.ip()))
            .collect();
        if on_port.is_empty() {
            return Vec::new();
        }
        self.members(pgid)
            .filter_map(|p| {
                procfs::process::Process::new(p.pid.as_raw())
                    .ok()?
                    .fd()
                    .ok()
            })
            .flat_map(|fds| {
                fds.filter_map(|fd| match fd.ok()?.target {
                    procfs::process::FDTarget::Socket(inode) => on_port.get(&inode).copied(),
                    _ => None,
                })
                .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// Whether `pid`'s environment (as it was at its exec) holds `RUN_MARK=mark`.
fn carries_mark(pid: Pid, mark: &str) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("{RUN_MARK}={mark}");
    environ
        .split(|&b| b == 0)
        .any(|var| var == wanted.as_bytes())
}

/// The TCP sockets in the listen state, IPv4 and IPv6, by inode. Read apart from the
/// snapshot, and only by the readiness probe: the tables hold every connection on the
/// machine.
#[derive(Clone, Debug, Default)]
pub struct Listening(HashMap<u64, SocketAddr>);

impl Listening {
    /// From the kernel's sock_diag netlink; from /proc/net/tcp and tcp6 where that is
    /// refused (a sandbox without netlink).
    pub fn read() -> Self {
        match super::sockets::listening() {
            Ok(found) => Self(found),
            Err(err) => {
                tracing::debug!(%err, "sock_diag refused; reading /proc/net/tcp");
                Self::read_tables()
            }
        }
    }

    /// From /proc/net/tcp and tcp6 (`read`'s fallback; public for `benches/proc.rs`).
    pub fn read_tables() -> Self {
        let v4 = procfs::net::tcp().unwrap_or_default();
        let v6 = procfs::net::tcp6().unwrap_or_default();
        Self(
            v4.into_iter()
                .chain(v6)
                .filter(|e| e.state == procfs::net::TcpState::Listen)
                .map(|e| (e.inode, e.local_address))
                .collect(),
        )
    }

    /// Whether any socket listens on `port`.
    pub fn on(&self, port: u16) -> bool {
        self.0.values().any(|addr| addr.port() == port)
    }
}

/// A thread that reads /proc for the driver and runs its jobs in the order they came.
/// Jobs that queued up while it read share one `Snapshot`, so a stop that signals a
/// thousand dynos reads /proc a few times rather than a thousand; a scan that comes after
/// a job that signalled gets a fresh one, so it sees the signal sent.
pub struct Reader {
    jobs: mpsc::Sender<Job>,
}

/// What a job does with its snapshot.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only reads it.
    Scan,
    /// Sends signals to what it found: a later scan needs a fresh snapshot.
    Signal,
}

enum Job {
    Read(Access, Box<dyn FnOnce(&Snapshot) + Send>),
    /// Answers once every job before it is done.
    Settle(mpsc::SyncSender<()>),
}

impl Reader {
    pub fn spawn() -> io::Result<Self> {
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("hkrun-proc".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    // A snapshot is good for the jobs that were waiting when it was read:
                    // those that come while the batch runs wait for the next.
                    let batch: Vec<Job> = std::iter::once(first).chain(queue.try_iter()).collect();
                    let mut snapshot: Option<Snapshot> = None;
                    let mut signalled = false;
                    for job in batch {
                        match job {
                            Job::Read(access, job) => {
                                if snapshot.is_none() || (signalled && access == Access::Scan) {
                                    snapshot = Some(Snapshot::read());
                                    signalled = false;
                                }
                                job(snapshot.as_ref().expect("read above"));
                                signalled |= access == Access::Signal;
                            }
                            Job::Settle(done) => {
                                let _ = done.send(());
                            }
                        }
                    }
                }
            })?;
        Ok(Self { jobs })
    }

    /// Runs `job` on a snapshot read after it was given, on the reader's thread. Ends when
    /// the `Reader` is dropped, after the jobs already given.
    pub fn submit(&self, access: Access, job: impl FnOnce(&Snapshot) + Send + 'static) {
        if let Err(mpsc::SendError(Job::Read(_, job))) =
            self.jobs.send(Job::Read(access, Box::new(job)))
        {
            // The thread is gone (a job panicked): an answer the core waits for must not
            // be lost, so read here.
            job(&Snapshot::read());
        }
    }

    /// Waits until every job given so far is done, for `max` at most; whether they are.
    pub fn settle(&self, max: Duration) -> bool {
        let (done, wait) = mpsc::sync_channel(1);
        self.jobs.send(Job::Settle(done)).is_ok() && wait.recv_timeout(max).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    use super::*;

    fn process(pid: i32, ppid: i32, pgid: i32, zombie: bool, rss: u64) -> Process {
        Process {
            pid: Pid::from_raw(pid),
            ppid: Pid::from_raw(ppid),
            pgid: Pid::from_raw(pgid),
            zombie,
            rss,
            cpu_ticks: 0,
        }
    }

    fn pids(found: &[Process]) -> Vec<i32> {
        let mut pids: Vec<i32> = found.iter().map(|p| p.pid.as_raw()).collect();
        pids.sort_unstable();
        pids
    }

    /// hkrun (10) runs two dynos (20, 30); 21 left 20's group; 31 is a zombie whose child
    /// 32 lives on; 40 is nobody's of hkrun's. Children listed before their parents.
    fn machine() -> Snapshot {
        Snapshot::from_processes(vec![
            process(32, 31, 30, false, 1),
            process(21, 20, 21, false, 10),
            process(20, 10, 20, false, 100),
            process(31, 30, 30, true, 0),
            process(30, 10, 30, false, 1000),
            process(10, 1, 10, false, 10_000),
            process(40, 1, 20, false, 100_000),
        ])
    }

    #[test]
    fn descendants_are_the_live_family_of_the_root() {
        let snapshot = machine();
        assert_eq!(
            pids(&snapshot.descendants(Pid::from_raw(10))),
            [20, 21, 30, 32]
        );
        assert_eq!(pids(&snapshot.descendants(Pid::from_raw(30))), [32]);
        assert!(snapshot.descendants(Pid::from_raw(99)).is_empty());
    }

    #[test]
    fn members_are_the_live_processes_of_a_group() {
        let snapshot = machine();
        let members: Vec<Process> = snapshot.members(Pid::from_raw(30)).copied().collect();
        assert_eq!(pids(&members), [30, 32]);
    }

    #[test]
    fn memory_follows_what_left_the_group_and_remembers_it() {
        let snapshot = machine();
        let groups = [("a", Pid::from_raw(20)), ("b", Pid::from_raw(30))];
        let mut owners = HashMap::new();
        // 40 is in 20's group although not hkrun's: a group counts whole, as before.
        assert_eq!(
            snapshot.memory(&groups, &mut owners),
            [("a", 100 + 10 + 100_000), ("b", 1000 + 1)]
        );
        // 21 is re-parented to hkrun: still a's, as first seen.
        let later = Snapshot::from_processes(vec![
            process(21, 10, 21, false, 10),
            process(30, 10, 30, false, 1000),
        ]);
        assert_eq!(later.memory(&groups, &mut owners), [("a", 10), ("b", 1000)]);
        assert_eq!(owners.len(), 2, "gone processes are forgotten: {owners:?}");
    }

    #[test]
    fn reads_this_process_and_its_children() {
        let mut child = Command::new("sleep")
            .arg("100")
            .env(RUN_MARK, "test-mark")
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        // Its environment is readable once its exec has finished setting it up, which a
        // loaded machine may not have done when `spawn` returns.
        let until = std::time::Instant::now() + Duration::from_secs(5);
        let mut snapshot = Snapshot::read();
        while !snapshot.carries_mark(pid, "test-mark") && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
            snapshot = Snapshot::read();
        }
        let found = snapshot.descendants(Pid::this());
        let marked = [
            snapshot.carries_mark(pid, "test-mark"),
            snapshot.carries_mark(pid, "test"),
            snapshot.carries_mark(Pid::this(), "test-mark"),
        ];
        let _ = child.kill();
        let _ = child.wait();
        let sleep = found.iter().find(|p| p.pid == pid).expect("the child");
        assert_eq!((sleep.ppid, sleep.pgid), (Pid::this(), pid));
        assert_eq!(marked, [true, false, false]);
        let me = snapshot
            .processes()
            .iter()
            .find(|p| p.pid == Pid::this())
            .expect("this process");
        assert!(me.rss > 0);
    }

    #[test]
    fn waiting_jobs_share_a_snapshot_and_a_scan_after_a_signal_gets_a_fresh_one() {
        let mut child = Command::new("sleep")
            .arg("1000")
            .stdout(Stdio::null())
            .spawn()
            .expect("sleep");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
        let reader = Reader::spawn().expect("a thread");
        let (gate, wait) = mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel();
        // A job holds the thread until the others are queued behind it: they are the
        // next batch.
        reader.submit(Access::Scan, move |_| {
            let _ = wait.recv_timeout(Duration::from_secs(10));
        });
        let first = tx.clone();
        reader.submit(Access::Scan, move |snapshot| {
            let _ = first.send(("first", snapshot.processes().as_ptr() as usize, false));
        });
        let second = tx.clone();
        reader.submit(Access::Scan, move |snapshot| {
            let zombie = snapshot.get(pid).is_some_and(|p| p.zombie);
            let _ = second.send(("scan", snapshot.processes().as_ptr() as usize, zombie));
        });
        reader.submit(Access::Signal, move |_| {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            // Until the kernel has made it a zombie (it is not reaped here).
            for _ in 0..500 {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                if stat.contains(") Z ") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let third = tx.clone();
        reader.submit(Access::Scan, move |snapshot| {
            let zombie = snapshot.get(pid).is_some_and(|p| p.zombie);
            let _ = third.send(("after", snapshot.processes().as_ptr() as usize, zombie));
        });
        gate.send(()).expect("the first job waits");
        assert!(reader.settle(Duration::from_secs(10)));
        let _ = child.wait();
        let got: Vec<(&str, usize, bool)> = rx.try_iter().collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].1, got[1].1, "scans queued together share a snapshot");
        assert!(!got[1].2);
        assert_ne!(got[1].1, got[2].1, "a scan after a signal reads anew");
        assert!(got[2].2, "the scan after the signal sees the zombie");
    }

    #[test]
    fn the_reader_runs_jobs_in_order() {
        let reader = Reader::spawn().expect("a thread");
        let (tx, rx) = mpsc::channel();
        for n in 0..3 {
            let tx = tx.clone();
            reader.submit(Access::Scan, move |snapshot| {
                let _ = tx.send((n, snapshot.processes().is_empty()));
            });
        }
        assert!(reader.settle(Duration::from_secs(10)));
        let got: Vec<(i32, bool)> = rx.try_iter().collect();
        assert_eq!(got, [(0, false), (1, false), (2, false)]);
    }

    #[test]
    fn the_kernel_and_the_tables_list_the_same_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(Listening::read().on(port));
        assert!(Listening::read_tables().on(port));
        drop(listener);
        // A child another test forks holds a copy of the socket until its exec closes
        // it: the listener is gone once that exec has happened.
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while Listening::read().on(port) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!Listening::read().on(port));
    }
}
