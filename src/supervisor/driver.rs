//! The async loop around the core: turns signals, exits, timers and closed output into
//! inputs, and effects into syscalls. Owns I/O handles only (pids, pipes, channels); it
//! never decides policy.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::net::unix::pipe;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::core::Supervisor;
use super::input::{Control, Effect, Input, SIGNALLED, Source, StopRequest};
use super::outcome::{Outcome, Refusal};
use crate::config::env::{self, Vars};
use crate::config::{self, StartConfig};
use crate::control::protocol::LogsHeader;
use crate::control::ps;
use crate::control::server::{self, Attached, Call};
use crate::dyno::{self, Backend, Exit, Slot};
use crate::errors::Error;
use crate::logs::pump::Tee;
use crate::logs::{self, History, Label, LogSender, Writer};
use crate::os::proc::{self, Access, Snapshot};
use crate::os::readiness::Watch;
use crate::os::{self, memory, process, readiness, terminal};
use crate::plan::{AppPlan, SpawnSpec};
use crate::router;

/// How often to reap even without SIGCHLD: signals can coalesce or be missed.
const REAP_FALLBACK: Duration = Duration::from_secs(1);
/// How long output of processes already gone may take to reach the writer at exit.
const FINAL_DRAIN: Duration = Duration::from_secs(2);

/// How long Ctrl-Z waits for the pause to be logged before hkrun stops itself.
const PAUSE_FLUSH: Duration = Duration::from_millis(200);
/// How long Ctrl-Z waits for the /proc reader's signals before hkrun stops itself.
const SETTLE: Duration = Duration::from_secs(1);

/// The TCP listeners `start` has bound, each when it runs.
#[derive(Debug)]
pub struct Listeners {
    /// The router's public port.
    pub router: Option<TcpListener>,
    /// `--metrics`.
    pub metrics: Option<crate::http::Bound>,
    /// `--dashboard`.
    pub dashboard: Option<crate::http::Bound>,
}

/// Runs the app to the end and returns hkrun's exit code. `control` is the claimed
/// control socket, when there is one.
pub fn run(
    config: StartConfig,
    control: Option<UnixListener>,
    listeners: Listeners,
) -> Result<i32, Error> {
    memory::keep_own_memory_small();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Setup {
            what: "start the runtime",
            source,
        })?;
    runtime.block_on(drive(config, control, listeners))
}

fn setup(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Setup { what, source }
}

async fn drive(
    config: StartConfig,
    control: Option<UnixListener>,
    listeners: Listeners,
) -> Result<i32, Error> {
    let Listeners {
        router,
        metrics,
        dashboard,
    } = listeners;
    // Handlers first: nothing is spawned before hkrun can stop it.
    let mut sigterm = signal(SignalKind::terminate()).map_err(setup("handle SIGTERM"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(setup("handle SIGINT"))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(setup("handle SIGHUP"))?;
    let mut sigchld = signal(SignalKind::child()).map_err(setup("handle SIGCHLD"))?;
    // Passed on to every dyno, as tini and dumb-init do.
    let mut sigusr1 = signal(SignalKind::user_defined1()).map_err(setup("handle SIGUSR1"))?;
    let mut sigwinch = signal(SignalKind::window_change()).map_err(setup("handle SIGWINCH"))?;
    let mut sigquit = signal(SignalKind::quit()).map_err(setup("handle SIGQUIT"))?;
    // Heroku's preboot trigger: restart every dyno, web preboot-style.
    let mut sigusr2 = signal(SignalKind::user_defined2()).map_err(setup("handle SIGUSR2"))?;
    // Job control: Ctrl-Z reaches only hkrun (dynos have their own groups). The streams
    // only wake the loop: which of SIGTSTP and SIGCONT came last is what counts, and
    // only the handlers see their order.
    let job = Arc::new(AtomicUsize::new(JOB_RUNNING));
    signal_hook::flag::register_usize(nix::libc::SIGTSTP, Arc::clone(&job), JOB_PAUSED)
        .map_err(setup("handle SIGTSTP"))?;
    signal_hook::flag::register_usize(nix::libc::SIGCONT, Arc::clone(&job), JOB_RUNNING)
        .map_err(setup("handle SIGCONT"))?;
    let mut sigtstp =
        signal(SignalKind::from_raw(nix::libc::SIGTSTP)).map_err(setup("handle SIGTSTP"))?;
    let mut sigcont =
        signal(SignalKind::from_raw(nix::libc::SIGCONT)).map_err(setup("handle SIGCONT"))?;
    // Inherited ignores would pass on to every dyno; handled signals reset at exec. The
    // handler stays installed once its stream is dropped, and does nothing.
    for raw in process::inherited_ignores() {
        let _ = signal(SignalKind::from_raw(raw));
    }
    if let Err(err) = process::become_subreaper() {
        tracing::warn!(%err, "cannot become a child subreaper; escaped descendants may outlive hkrun");
    }

    let (inputs_tx, mut inputs) = mpsc::unbounded_channel();
    let closed = inputs_tx.clone();
    let history = History::new();
    let writer = Writer::spawn(
        config.style.clone(),
        Arc::clone(&history),
        std::io::stdout(),
        move |_| {
            let _ = closed.send(Input::Stop(StopRequest::StdoutClosed));
        },
    )
    .map_err(setup("start the log writer"))?;
    // Before any line is recorded (nothing has the writer's sender yet): the files miss
    // none.
    if let Some(files) = config.log_files.clone() {
        if let Err(err) = logs::files::spawn(files, &history, writer.sender()) {
            tracing::warn!(%err, "cannot start writing the log files; the app runs without them");
        }
    }
    let host = config::app_name(&config.app.root);
    let mut drains = Vec::new();
    for drain in config.drains.clone() {
        let url = drain.url.clone();
        match logs::drains::spawn(drain, host.clone(), &history, writer.sender()) {
            Ok(finished) => drains.push(finished),
            Err(err) => {
                tracing::warn!(%err, "cannot start the drain {url}; the app runs without it")
            }
        }
    }
    let (backends, backends_rx) = watch::channel(Vec::new());
    let router = match router {
        Some(listener) => Some(
            router::spawn(listener, backends_rx, config.balance)
                .map_err(setup("start the router"))?,
        ),
        None => None,
    };
    let router_stats = router.as_ref().map(|r| Arc::clone(&r.stats));
    let widen_router = router
        .zip(config.plan.router)
        .map(|(r, port)| (port, r.listeners));
    let (calls_tx, mut calls) = mpsc::unbounded_channel();
    if let Some(listener) = metrics {
        tokio::spawn(crate::metrics::serve(
            listener,
            calls_tx.clone(),
            writer.sender(),
        ));
    }
    if let Some(listener) = dashboard {
        tokio::spawn(crate::dashboard::serve(
            listener,
            calls_tx.clone(),
            Arc::clone(&history),
            writer.sender(),
            host.clone(),
        ));
    }
    if let Some(listener) = control {
        let context = server::Context {
            calls: calls_tx,
            history: Arc::clone(&history),
            header: LogsHeader {
                format: config.style.format,
                timestamps: config.style.timestamps,
                width: config.style.width,
            },
        };
        tokio::spawn(server::serve(listener, context));
    }

    let plan: AppPlan = config.plan;
    // The observers: they only measure, and report as inputs.
    let (probe, probe_rx) = mpsc::unbounded_channel();
    let ready = inputs_tx.clone();
    tokio::spawn(readiness::run(probe_rx, move |slot, listener| {
        let _ = ready.send(Input::Ready {
            slot,
            ip: listener.at,
            everywhere: listener.everywhere,
        });
    }));
    let (sampled, sampled_rx) = watch::channel(Vec::new());
    let samples = inputs_tx.clone();
    tokio::spawn(memory::run(
        sampled_rx,
        memory::SAMPLE_EVERY,
        move |sample| {
            let _ = samples.send(Input::Memory(sample));
        },
    ));
    let next_runs = crate::scheduler::spawn(&plan.scheduler, inputs_tx.clone());
    let mut driver = Driver {
        root: config.app.root,
        env: config.app.env,
        reloaded: HashMap::new(),
        longest: plan
            .types
            .iter()
            .map(|t| (t.name.clone(), os::process::exec_form(&t.command).len()))
            .max_by_key(|(_, len)| *len),
        widen_router,
        env_given: config.app.env_given,
        dyno_name: config.dyno_name,
        quiet: config.quiet,
        terminals: HashMap::new(),
        attached: HashMap::new(),
        attachments: 0,
        colors: plan.colors(),
        labels: HashMap::new(),
        system: Arc::new(Label::system()),
        groups: HashMap::new(),
        marks: HashMap::new(),
        reader: proc::Reader::spawn().map_err(setup("start the /proc reader"))?,
        runs: 0,
        leaders: HashMap::new(),
        live: std::cell::OnceCell::new(),
        probe,
        sampled,
        inputs: inputs_tx,
        log: writer.sender(),
        pumps: JoinSet::new(),
        me: Pid::this(),
        queue: VecDeque::new(),
        replies: HashMap::new(),
        next_id: 0,
        backends,
        stop_self: false,
    };
    let mut sup = Supervisor::new(plan);
    let mut effects = sup.start(Instant::now());
    let mut reap_tick = tokio::time::interval(REAP_FALLBACK);
    let code = loop {
        if let Some(code) = driver.perform(&mut effects) {
            break code;
        }
        // A finished pump is kept until joined: a crash loop would otherwise grow hkrun.
        while driver.pumps.try_join_next().is_some() {}
        if std::mem::take(&mut driver.stop_self) {
            driver.log.flush_blocking(PAUSE_FLUSH);
            // A SIGCONT since the SIGTSTP (while the pause was logged) means go on at once.
            if job.load(Ordering::SeqCst) == JOB_PAUSED {
                let _ = nix::sys::signal::raise(Signal::SIGSTOP);
            }
            // Continued: the core hears it before any timer that ran on.
            driver.queue.push_back(Input::Resume);
        }
        let input = match driver.queue.pop_front() {
            Some(input) => input,
            None => tokio::select! {
                Some(input) = inputs.recv() => input,
                _ = sigterm.recv() => Input::Stop(StopRequest::Signal(Signal::SIGTERM)),
                _ = sigint.recv() => Input::Stop(StopRequest::Signal(Signal::SIGINT)),
                _ = sighup.recv() => Input::Stop(StopRequest::Signal(Signal::SIGHUP)),
                _ = sigusr1.recv() => Input::Forward(Signal::SIGUSR1),
                _ = sigwinch.recv() => { driver.resize_terminals(); Input::Forward(Signal::SIGWINCH) }
                _ = sigquit.recv() => Input::Forward(Signal::SIGQUIT),
                _ = sigtstp.recv() => job_input(&job),
                _ = sigcont.recv() => job_input(&job),
                _ = sigusr2.recv() => match driver.reload(SIGNALLED) {
                    Ok(()) => Input::Control { id: SIGNALLED, request: Control::Restart(Vec::new()) },
                    Err(err) => {
                        driver.log.event(&driver.system, format!("SIGUSR2 restart refused: {err}"));
                        continue;
                    }
                },
                _ = sigchld.recv() => { driver.reap(); continue; }
                Some(call) = calls.recv() => match call {
                    Call::Ps(reply) => {
                        let next = next_runs.borrow().clone();
                        let _ = reply.send(ps::view(&sup, Instant::now(), SystemTime::now(), &next));
                        continue;
                    }
                    Call::Change { request, reply } => {
                        driver.next_id += 1;
                        // A restart of the whole app starts it on its config as the env
                        // files have it now, as `config:set` does: never a mix.
                        if matches!(&request, Control::Restart(targets) if targets.is_empty()) {
                            if let Err(error) = driver.reload(driver.next_id) {
                                let _ = reply.send(Outcome::Refused(Refusal::Config { error }));
                                continue;
                            }
                        }
                        driver.replies.insert(driver.next_id, reply);
                        Input::Control { id: driver.next_id, request }
                    }
                    Call::StopAll => Input::Stop(StopRequest::Control),
                    Call::Attach { dyno, who, size, reply } => {
                        // A client gone before the answer holds nothing.
                        if let Err(Ok(attached)) = reply.send(driver.attach(&sup, &dyno, who, size)) {
                            driver.detach(&attached.slot, attached.id);
                        }
                        continue;
                    }
                    Call::Resize { dyno, who, size, reply } => {
                        let _ = reply.send(driver.resize(&dyno, &who, size));
                        continue;
                    }
                    Call::Detach { slot, id } => {
                        driver.detach(&slot, id);
                        continue;
                    }
                    Call::Metrics(reply) => {
                        let _ = reply.send(driver.metrics(&sup, router_stats.as_deref()));
                        continue;
                    }
                    Call::Reload { reply } => {
                        driver.next_id += 1;
                        if let Err(error) = driver.reload(driver.next_id) {
                            let _ = reply.send(Outcome::Refused(Refusal::Config { error }));
                            continue;
                        }
                        driver.replies.insert(driver.next_id, reply);
                        Input::Control { id: driver.next_id, request: Control::Restart(Vec::new()) }
                    }
                },
                _ = reap_tick.tick() => { driver.reap(); continue; }
                () = sleep_until(sup.next_deadline()) => Input::Tick,
            },
        };
        effects = sup.handle(Instant::now(), input);
    };

    // Every process is gone, so every pipe is at its end: let the pumps finish.
    let pumps = std::mem::take(&mut driver.pumps);
    drop(driver);
    let _ = tokio::time::timeout(FINAL_DRAIN, pumps.join_all()).await;
    writer.finish();
    // `logs --tail` clients get every line written, the last included, before hkrun exits.
    history.finish().await;
    // The drains send what the log held at its end, for a little while.
    let until = Instant::now() + DRAINS_AT_EXIT;
    for finished in drains {
        let _ = finished.recv_timeout(until.saturating_duration_since(Instant::now()));
    }
    Ok(code)
}

/// How long hkrun waits at exit for its drains to send the log's last lines.
const DRAINS_AT_EXIT: Duration = Duration::from_secs(2);

/// What the last of SIGTSTP and SIGCONT asks for. The kernel drops a pending SIGTSTP
/// when SIGCONT comes and the reverse, so the handlers run in the order sent.
const JOB_RUNNING: usize = 0;
const JOB_PAUSED: usize = 1;

fn job_input(job: &AtomicUsize) -> Input {
    match job.load(Ordering::SeqCst) {
        JOB_PAUSED => Input::Pause,
        _ => Input::Resume,
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

struct Driver {
    root: PathBuf,
    env: Vars,
    /// Env files read again for a restart the core has not yet accepted, by request id.
    reloaded: HashMap<u64, Vars>,
    /// The longest command of the Procfile's types (its type, its length as exec gets
    /// it): env files read again must leave exec room for it, as at the start.
    longest: Option<(String, usize)>,
    /// The router's port, and where to give it a listener on 0.0.0.0 (`Effect::WidenRouter`).
    widen_router: Option<(u16, mpsc::UnboundedSender<TcpListener>)>,
    /// The env files as given (`-e`, or none for `.env`): read again on `Call::Reload`.
    env_given: Vec<PathBuf>,
    /// `--dyno`: the formation's one dyno's `DYNO`, as its scheduler names it.
    dyno_name: Option<String>,
    /// `--quiet`: types whose output is kept from stdout.
    quiet: Vec<String>,
    /// hkrun's side of each `--tty` dyno's terminal (its last run's), and where its
    /// output goes to an attached `hkrun connect`.
    terminals: HashMap<Slot, (OwnedFd, Arc<Tee>)>,
    /// Who is attached to each terminal dyno that has a client (`pid 4242`), which
    /// attachment that is (a late detach of an earlier one changes nothing), and the
    /// client's terminal size the dyno has meanwhile.
    attached: HashMap<Slot, (String, u64, Option<terminal::Winsize>)>,
    /// Attachments so far.
    attachments: u64,
    /// Colour slot of each process type.
    colors: HashMap<String, usize>,
    labels: HashMap<Slot, Arc<Label>>,
    system: Arc<Label>,
    /// Each dyno's process group, kept after it exits for what may remain in it.
    groups: HashMap<Slot, Pid>,
    /// Each dyno's last run's mark (`process::RUN_MARK`), for what escaped its group.
    marks: HashMap<Slot, String>,
    /// Reads /proc (scans, and the signals that depend on them) off the async thread.
    reader: proc::Reader,
    /// Runs started so far: each run's mark is hkrun's pid and this count.
    runs: u64,
    /// Dyno leaders not yet reaped, and where to tell their pump they ended.
    leaders: HashMap<Pid, (Slot, oneshot::Sender<Exit>)>,
    /// The groups of `leaders`, made once per change of them: a stop signals every dyno,
    /// and each job would otherwise copy them all.
    live: std::cell::OnceCell<Arc<HashSet<Pid>>>,
    /// Booting web dynos for the readiness probe.
    probe: mpsc::UnboundedSender<Watch>,
    /// Running dynos' groups for the memory sampler.
    sampled: watch::Sender<Vec<(Slot, Pid)>>,
    inputs: mpsc::UnboundedSender<Input>,
    log: LogSender,
    pumps: JoinSet<()>,
    me: Pid,
    /// Inputs produced by effects, handled before waiting for the world.
    queue: VecDeque<Input>,
    /// Control clients waiting for the core's answer, by request id.
    replies: HashMap<u64, oneshot::Sender<Outcome>>,
    next_id: u64,
    /// The router's backends, as the core publishes them.
    backends: watch::Sender<Vec<Backend>>,
    /// The core asked hkrun to stop itself (Ctrl-Z), once the effects before are done.
    stop_self: bool,
}

impl Driver {
    /// Carries out effects in order; returns the exit code when one says to exit.
    fn perform(&mut self, effects: &mut Vec<Effect>) -> Option<i32> {
        for effect in effects.drain(..) {
            match effect {
                Effect::Spawn(spec) => self.spawn(spec),
                Effect::AwaitReady { slot, port } => {
                    if let Some(&pgid) = self.groups.get(&slot) {
                        let _ = self.probe.send(Watch::Add { slot, pgid, port });
                    }
                }
                Effect::Signal { slot, signal } => {
                    if let Some(&pgid) = self.groups.get(&slot) {
                        process::signal_group(pgid, signal);
                    }
                }
                // /proc is read, and what it finds signalled, on the reader's thread; answers
                // come back as inputs (the core takes them late, ARCHITECTURE.md).
                Effect::SignalAll { slot, signal } => {
                    let run = self.run_of(&slot);
                    self.reader
                        .submit(Access::Signal, move |snapshot| run.signal(snapshot, signal));
                }
                Effect::SignalStragglers(signal) => self.signal_stragglers(signal),
                Effect::ScanGroup { slot } => {
                    let run = self.run_of(&slot);
                    let inputs = self.inputs.clone();
                    self.reader.submit(Access::Scan, move |snapshot| {
                        let count = run.left(snapshot);
                        let _ = inputs.send(Input::GroupLeft { slot, count });
                    });
                }
                Effect::ScanStragglers => {
                    let me = self.me;
                    let inputs = self.inputs.clone();
                    self.reader.submit(Access::Scan, move |snapshot| {
                        let count = snapshot.descendants(me).len();
                        let _ = inputs.send(Input::Stragglers(count));
                    });
                }
                Effect::Event(event) => {
                    let label = match event.source() {
                        Source::Dyno(slot) => self.label(&slot),
                        Source::System => Arc::clone(&self.system),
                    };
                    self.log.event(&label, event.to_string());
                }
                Effect::OutputMayBeDropped => self.log.stopping(),
                Effect::Postdeployed { command } => {
                    if let Err(err) = config::state::State::record_postdeploy(&self.root, &command)
                    {
                        let text = format!(
                            "cannot record in {} that postdeploy ran ({err}): it runs again at the next start",
                            config::state::STATE_FILE
                        );
                        self.log.event(&self.system, text);
                    }
                }
                Effect::Forget { slot } => {
                    self.terminals.remove(&slot);
                    self.attached.remove(&slot);
                    self.labels.remove(&slot);
                    // Unless a preboot's other generation goes on under the same name.
                    let name = slot.to_string();
                    if !self.labels.keys().any(|s| s.to_string() == name) {
                        self.log.output_count().forget(&name);
                    }
                    self.groups.remove(&slot);
                    self.marks.remove(&slot);
                }
                Effect::Backends(set) => {
                    self.backends.send_replace(set);
                }
                Effect::ProbePorts { id, ports } => {
                    let taken = ports
                        .into_iter()
                        .filter(|&p| os::net::port_taken(p))
                        .collect();
                    self.queue.push_back(Input::PortsProbed { id, taken });
                }
                Effect::WidenRouter { by } => {
                    if let Some((port, listeners)) = &self.widen_router {
                        let wide =
                            std::net::SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, *port));
                        match os::net::listen_widenable(wide) {
                            Ok(listener) => {
                                let _ = listeners.send(listener);
                                let text = format!(
                                    "router listening on http://{wide} too: {by} listens on every interface"
                                );
                                self.log.event(&self.system, text);
                            }
                            Err(err) => {
                                let text = format!(
                                    "the router stays on 127.0.0.1:{port} alone: cannot listen on {wide} ({err})"
                                );
                                self.log.event(&self.system, text);
                            }
                        }
                    }
                }
                Effect::RestartAccepted { id } => {
                    if let Some(env) = self.reloaded.remove(&id) {
                        self.env = env;
                    }
                }
                Effect::Reply { id, outcome } => {
                    self.reloaded.remove(&id);
                    if let Some(reply) = self.replies.remove(&id) {
                        let _ = reply.send(outcome);
                    }
                }
                // The kernel does not stop PID 1; SIGCONT resumes the dynos there.
                Effect::StopSelf => {
                    self.stop_self = self.me.as_raw() != 1;
                    // The stragglers' SIGSTOP must go out before hkrun, its reader thread
                    // included, stops.
                    if self.stop_self {
                        self.reader.settle(SETTLE);
                    }
                }
                Effect::Exit(code) => return Some(code),
            }
        }
        None
    }

    fn label(&mut self, slot: &Slot) -> Arc<Label> {
        let color = self.colors.get(&slot.kind).copied();
        let quiet = self.quiet.contains(&slot.kind);
        Arc::clone(self.labels.entry(slot.clone()).or_insert_with(|| {
            Arc::new(Label {
                quiet,
                name: slot.to_string(),
                color,
            })
        }))
    }

    fn spawn(&mut self, spec: SpawnSpec) {
        // `--dyno` names the formation's one dyno; one-offs (release, postdeploy,
        // scheduler runs) keep their own names, as on Heroku.
        let name = match &self.dyno_name {
            Some(name) if !dyno::is_one_off(&spec.slot.kind) => name.clone(),
            _ => spec.slot.to_string(),
        };
        let mut env = match spec.env.is_empty() {
            true => env::for_dyno(&self.env, &name, spec.port),
            // Its type's variables over the app's, under hkrun's own (PORT, DYNO, PS).
            false => {
                let mut app = self.env.clone();
                app.extend(spec.env.iter().cloned());
                env::for_dyno(&app, &name, spec.port)
            }
        };
        self.runs += 1;
        let mark = format!("{}-{}", self.me, self.runs);
        env.insert(process::RUN_MARK.into(), mark.clone());
        let spawned = match spec.terminal {
            true => self.spawn_on_terminal(&spec, &env),
            false => process::spawn(&spec.command, &env, &self.root).and_then(|spawned| {
                let pid = spawned.pid;
                match pipe::Receiver::from_owned_fd(spawned.output) {
                    Ok(pipe) => Ok((pid, pipe)),
                    Err(err) => {
                        process::signal_group(pid, Signal::SIGKILL);
                        Err(err)
                    }
                }
            }),
        };
        let (pid, pipe) = match spawned {
            Ok(running) => running,
            Err(err) => {
                // The slot's last group is gone; a signal meant for this dyno must not
                // reach whatever has its id by now.
                self.groups.remove(&spec.slot);
                self.marks.remove(&spec.slot);
                self.terminals.remove(&spec.slot);
                let failed = Input::SpawnFailed {
                    slot: spec.slot,
                    error: err.to_string(),
                };
                self.queue.push_back(failed);
                return;
            }
        };
        let (exited_tx, exited_rx) = oneshot::channel();
        self.leaders.insert(pid, (spec.slot.clone(), exited_tx));
        self.live.take();
        self.groups.insert(spec.slot.clone(), pid);
        self.marks.insert(spec.slot.clone(), mark);
        self.publish_groups();
        self.queue.push_back(Input::Spawned {
            slot: spec.slot.clone(),
            pid: pid.as_raw(),
        });
        let label = self.label(&spec.slot);
        let inputs = self.inputs.clone();
        let terminal = spec
            .terminal
            .then(|| {
                self.terminals
                    .get(&spec.slot)
                    .map(|(_, tee)| Arc::clone(tee))
            })
            .flatten();
        let slot = spec.slot;
        self.pumps.spawn(logs::pump::run(
            label,
            self.log.clone(),
            pipe,
            terminal,
            exited_rx,
            move |status| {
                let _ = inputs.send(Input::Exited { slot, status });
            },
        ));
    }

    /// `spec` on a new pseudo-terminal sized as hkrun's: its pid, and hkrun's side of the
    /// terminal to read as a pipe (kept, too, for resizes).
    fn spawn_on_terminal(
        &mut self,
        spec: &SpawnSpec,
        env: &Vars,
    ) -> std::io::Result<(Pid, pipe::Receiver)> {
        let (master, slave) = terminal::open(terminal::size())?;
        let kept = master.try_clone()?;
        let pid = process::spawn_on_terminal(&spec.command, env, &self.root, slave)?;
        // A terminal is read as a pipe is: tokio checks the type of `from_owned_fd`'s
        // descriptor, not of this one; it is non-blocking (`terminal::open`).
        match pipe::Receiver::from_owned_fd_unchecked(master) {
            Ok(pipe) => {
                // A client attached to the last run saw it end.
                self.attached.remove(&spec.slot);
                let tee = Arc::new(Tee::default());
                self.terminals.insert(spec.slot.clone(), (kept, tee));
                Ok((pid, pipe))
            }
            Err(err) => {
                process::signal_group(pid, Signal::SIGKILL);
                Err(err)
            }
        }
    }

    /// hkrun's terminal changed size: so do the dynos' terminals (the kernel sends each
    /// its SIGWINCH).
    fn resize_terminals(&self) {
        let size = terminal::size();
        for (slot, (master, _)) in &self.terminals {
            // An attached client's size stays until it detaches.
            if self.attached.get(slot).is_none_or(|a| a.2.is_none()) {
                let _ = terminal::resize(master.as_fd(), size);
            }
        }
    }

    /// What `/metrics` shows: `ps`'s view, and the counters of the core, the router and
    /// the log.
    fn metrics(
        &self,
        sup: &Supervisor,
        router: Option<&router::RouterStats>,
    ) -> crate::metrics::Snapshot {
        use std::sync::atomic::Ordering::Relaxed;
        let dynos = sup
            .dynos()
            .iter()
            .filter(|d| ps::shown(d))
            .map(|d| {
                let slot = &d.plan.spec.slot;
                crate::metrics::DynoFigures {
                    name: slot.to_string(),
                    kind: slot.kind.clone(),
                    generation: slot.generation,
                    state: d.state.name().to_owned(),
                    pid: d.pid,
                    memory: d.memory,
                    quota: ps::quota(d),
                    group: d
                        .pid
                        .and_then(|_| self.groups.get(slot))
                        .map(|g| g.as_raw()),
                    restarts: d.launches().saturating_sub(1),
                    crashes: d.crashes(),
                    r10: d.errors.r10,
                    r14: d.errors.r14,
                    r15: d.errors.r15,
                }
            })
            .collect();
        crate::metrics::Snapshot {
            dynos,
            router: router.map(|r| crate::metrics::RouterFigures {
                connections: r.connections.load(Relaxed),
                unserved: r.unserved.load(Relaxed),
                failed_connects: r.failed_connects.load(Relaxed),
                bytes_in: r.bytes_in.load(Relaxed),
                bytes_out: r.bytes_out.load(Relaxed),
                dynos: r.per_dyno(),
            }),
            output: self.log.output_count().all(),
        }
    }

    /// `hkrun connect DYNO`: the running dyno of that name (or the one dyno of that type)
    /// and its terminal, unless it has none or a client is attached already.
    fn attach(
        &mut self,
        sup: &Supervisor,
        dyno: &str,
        who: String,
        size: Option<[u16; 2]>,
    ) -> Result<Attached, String> {
        let running: Vec<&Slot> = sup
            .dynos()
            .iter()
            .filter(|d| d.pid.is_some())
            .map(|d| &d.plan.spec.slot)
            .filter(|s| s.to_string() == dyno || s.kind == dyno)
            .collect();
        let slot = match running.as_slice() {
            [] => return Err(format!("no dyno {dyno} is running")),
            // A preboot's two generations: the newer one.
            [.., last] if running.iter().all(|s| s.to_string() == last.to_string()) => {
                (*last).clone()
            }
            several => {
                let names: Vec<String> = several.iter().map(|s| s.to_string()).collect();
                return Err(format!(
                    "{dyno} runs {}: name one of them",
                    names.join(", ")
                ));
            }
        };
        let Some((master, tee)) = self.terminals.get(&slot) else {
            return Err(format!(
                "{slot} is not on a terminal: start hkrun with --tty {kind} (or tty = true \
                 under [types.{kind}] in hkrun.toml) to connect to it",
                kind = slot.kind
            ));
        };
        if let Some((holder, _, _)) = self.attached.get(&slot) {
            return Err(format!(
                "{slot} is attached already, by {holder}: one client at a time (Ctrl-] detaches)"
            ));
        }
        let input = master
            .try_clone()
            .and_then(pipe::Sender::from_owned_fd_unchecked)
            .map_err(|e| format!("cannot write to {slot}'s terminal: {e}"))?;
        let (client, output) = mpsc::channel(Tee::BOUND);
        if !tee.attach(client) {
            return Err(format!("{slot}'s run has just ended"));
        }
        self.attachments += 1;
        let id = self.attachments;
        // The client's size while it is attached (the dyno gets SIGWINCH), as `heroku run`
        // gives a one-off dyno the user's terminal.
        let size = size
            .filter(|[rows, cols]| *rows > 0 && *cols > 0)
            .map(|[rows, cols]| terminal::sized(rows, cols));
        if let Some(size) = size {
            let _ = terminal::resize(master.as_fd(), size);
        }
        self.attached.insert(slot.clone(), (who, id, size));
        Ok(Attached {
            slot,
            id,
            input,
            output,
        })
    }

    /// The terminal of `who`, attached to `dyno` (a name or its type), is `size` now.
    fn resize(&mut self, dyno: &str, who: &str, [rows, cols]: [u16; 2]) -> Result<(), String> {
        if rows == 0 || cols == 0 {
            return Err(format!("{rows}x{cols} is no terminal size"));
        }
        // Only a client known by its own pid: peers without one all look alike.
        if !who.starts_with("pid ") || who == "pid 0" {
            return Err(format!("{who} cannot be told from other clients"));
        }
        let Some((slot, entry)) = self.attached.iter_mut().find(|(slot, (holder, _, _))| {
            holder == who && (slot.to_string() == dyno || slot.kind == dyno)
        }) else {
            return Err(format!("{who} is not attached to {dyno}"));
        };
        let size = terminal::sized(rows, cols);
        entry.2 = Some(size);
        match self.terminals.get(slot) {
            Some((master, _)) => terminal::resize(master.as_fd(), size)
                .map_err(|e| format!("cannot resize {slot}'s terminal: {e}")),
            None => Err(format!("{slot}'s run has ended")),
        }
    }

    /// Attachment `id` to `slot` has ended; a later one stays.
    fn detach(&mut self, slot: &Slot, id: u64) {
        if self
            .attached
            .get(slot)
            .is_some_and(|(_, held, _)| *held == id)
        {
            let (_, _, size) = self.attached.remove(slot).unwrap_or_default();
            if let Some((master, tee)) = self.terminals.get(slot) {
                tee.detach();
                // hkrun's size again, once a client's is gone.
                if size.is_some() {
                    let _ = terminal::resize(master.as_fd(), terminal::size());
                }
            }
        }
    }

    /// Collects ended children and tells each dyno's pump; orphans are just collected.
    fn reap(&mut self) {
        let mut changed = false;
        for (pid, status) in process::reap() {
            if let Some((slot, exited)) = self.leaders.remove(&pid) {
                let _ = exited.send(status);
                let _ = self.probe.send(Watch::Remove { slot });
                changed = true;
                self.live.take();
            }
        }
        if changed {
            self.publish_groups();
        }
    }

    /// Tells the memory sampler which dynos run now.
    fn publish_groups(&self) {
        let mut groups: Vec<(Slot, Pid)> = self
            .leaders
            .iter()
            .map(|(pid, (slot, _))| (slot.clone(), *pid))
            .collect();
        groups.sort();
        self.sampled.send_replace(groups);
    }

    /// Reads the env files again for the restart request `id`: taken on only if the core
    /// accepts it (`Effect::RestartAccepted`), so a refused one leaves every later start
    /// on the old env.
    fn reload(&mut self, id: u64) -> Result<(), String> {
        let files = config::env_files(&self.env_given, &self.root);
        let longest = self
            .longest
            .as_ref()
            .map(|(name, len)| (name.as_str(), *len));
        let env = config::load_env(&files, &self.root, longest).map_err(|err| err.to_string())?;
        self.reloaded.insert(id, env);
        Ok(())
    }

    /// What a /proc job needs of the dyno's last run, copied: it runs on the reader's
    /// thread while the driver goes on.
    fn run_of(&self, slot: &Slot) -> Run {
        Run {
            me: self.me,
            group: self.groups.get(slot).copied(),
            mark: self.marks.get(slot).cloned(),
            live: self.live_groups(),
        }
    }

    /// The groups of dynos whose leader has not been reaped.
    fn live_groups(&self) -> Arc<HashSet<Pid>> {
        Arc::clone(
            self.live
                .get_or_init(|| Arc::new(self.leaders.keys().copied().collect())),
        )
    }

    fn signal_stragglers(&self, signal: Signal) {
        let (me, live) = (self.me, self.live_groups());
        self.reader.submit(Access::Signal, move |snapshot| {
            // Members of a live dyno's group got the signal with their group.
            for d in snapshot.descendants(me) {
                if signal == Signal::SIGKILL || !live.contains(&d.pgid) {
                    process::signal_process(d.pid, signal);
                }
            }
        });
    }
}

/// A dyno's last run, as the driver knew it when the core asked.
struct Run {
    me: Pid,
    group: Option<Pid>,
    mark: Option<String>,
    live: Arc<HashSet<Pid>>,
}

impl Run {
    /// Signals the group, and what escaped it. The group only while something of hkrun's
    /// is in it: an empty group's id may have been taken by any other group since.
    fn signal(&self, snapshot: &Snapshot, signal: Signal) {
        let all = snapshot.descendants(self.me);
        if let Some(pgid) = self.group {
            if all.iter().any(|d| d.pgid == pgid) {
                process::signal_group(pgid, signal);
            }
        }
        for pid in self.escaped(snapshot, &all) {
            process::signal_process(pid, signal);
        }
    }

    /// How many live processes are left of the run: in its group, or escaped from it.
    fn left(&self, snapshot: &Snapshot) -> usize {
        let all = snapshot.descendants(self.me);
        let in_group = self
            .group
            .map_or(0, |pgid| all.iter().filter(|d| d.pgid == pgid).count());
        in_group + self.escaped(snapshot, &all).len()
    }

    /// Live processes of the run that left its group: descendants carrying its mark,
    /// outside every live dyno's group.
    fn escaped(&self, snapshot: &Snapshot, descendants: &[proc::Process]) -> Vec<Pid> {
        let Some(mark) = &self.mark else {
            return Vec::new();
        };
        descendants
            .iter()
            .filter(|d| Some(d.pgid) != self.group && !self.live.contains(&d.pgid))
            .filter(|d| snapshot.carries_mark(d.pid, mark))
            .map(|d| d.pid)
            .collect()
    }
}
