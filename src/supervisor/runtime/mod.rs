//! The async loop around the core: turns signals, exits, timers and closed output into
//! inputs, and effects into syscalls. Owns I/O handles only (pids, pipes, channels); it
//! never decides policy.
//!
//! This file wires: the log's writer and followers, the router, the servers, the
//! observers, the scheduler, and the one `select!` loop. What the loop does with each
//! thing lives beside it: `signals` (every OS signal as one stream), `effects` (carrying
//! out each `Effect`), `spawn` (each run's environment, mark and group; reaping),
//! `terminals` (`hkrun connect`'s attach, resize and detach), `calls` (the servers'
//! `Call`s), `reload` (the env files read again off the loop for a restart).

mod calls;
pub(crate) mod effects;
mod reload;
mod signals;
mod spawn;
mod terminals;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::api::Call;
use super::attach;
use super::core::Supervisor;
use super::input::{Input, StopRequest};
use super::outcome::Outcome;
use crate::config::env::Vars;
use crate::config::{self, StartConfig};
use crate::control::protocol::LogsHeader;
use crate::control::server;
use crate::dyno::{Exit, Routes, Slot};
use crate::logs::pump::Tee;
use crate::logs::{self, History, Label, LogSender, Writer};
use crate::os::proc;
use crate::os::readiness::Watch;
use crate::os::{self, memory, process, readiness};
use crate::plan::AppPlan;
use crate::router::{self, RouterStats};
use crate::scheduler::NextRuns;
use reload::{Reload, Reread, Rereads};
use signals::{Caught, Signals};

/// How often to reap even without SIGCHLD: signals can coalesce or be missed.
const REAP_FALLBACK: Duration = Duration::from_secs(1);
/// How long output of processes already gone may take to reach the writer at exit.
const FINAL_DRAIN: Duration = Duration::from_secs(2);
/// How long hkrun waits at exit for its drains to send the log's last lines.
const DRAINS_AT_EXIT: Duration = Duration::from_secs(2);
/// How long Ctrl-Z waits for the pause to be logged before hkrun stops itself.
const PAUSE_FLUSH: Duration = Duration::from_millis(200);

/// The TCP listeners `start` has bound, each when it runs.
#[derive(Debug)]
pub(crate) struct Listeners {
    /// The router's public port.
    pub router: Option<TcpListener>,
    /// `--metrics`.
    pub metrics: Option<crate::http::Bound>,
    /// `--dashboard`.
    pub dashboard: Option<crate::http::Bound>,
}

/// Runs the app to the end and returns hkrun's exit code. `control` is the claimed
/// control socket, when there is one.
pub(crate) fn run(
    config: StartConfig,
    control: Option<UnixListener>,
    listeners: Listeners,
) -> Result<i32, SetupError> {
    memory::keep_own_memory_small();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(setup("start the runtime"))?;
    let code = runtime.block_on(drive(config, control, listeners));
    // What hkrun waits for at exit, `drive` has waited for. A blocking read still under
    // way (the env files read again, one a FIFO nobody writes) must not hold the exit, as
    // dropping the runtime would.
    runtime.shutdown_background();
    code
}

/// What hkrun could not set up to run the app (signals, the runtime, pipes): `errors`
/// says it as `cannot WHAT: SOURCE`.
#[derive(Debug)]
pub(crate) struct SetupError {
    pub what: &'static str,
    pub source: std::io::Error,
}

fn setup(what: &'static str) -> impl FnOnce(std::io::Error) -> SetupError {
    move |source| SetupError { what, source }
}

async fn drive(
    config: StartConfig,
    control: Option<UnixListener>,
    listeners: Listeners,
) -> Result<i32, SetupError> {
    // Handlers first: nothing is spawned before hkrun can stop it.
    let mut signals = Signals::install()?;
    if let Err(err) = process::become_subreaper() {
        tracing::warn!(%err, "cannot become a child subreaper; escaped descendants may outlive hkrun");
    }
    let (inputs_tx, inputs) = mpsc::unbounded_channel();
    let host = config::app_name(&config.app.root);
    let log = Log::start(&config, &inputs_tx, &host)?;
    let (backends, backends_rx) = watch::channel(Routes::default());
    let router = match listeners.router {
        Some(listener) => {
            let label = Arc::new(Label {
                name: "router".to_owned(),
                color: None,
                quiet: false,
            });
            let sender = log.writer.sender();
            let say: router::Say = Arc::new(move |line| sender.event(&label, line));
            Some(
                router::spawn(
                    listener,
                    backends_rx,
                    config.router,
                    config.pages.clone(),
                    say,
                )
                .map_err(setup("start the router"))?,
            )
        }
        None => None,
    };
    let router_stats = router.as_ref().map(|r| Arc::clone(&r.stats));
    // Maintenance mode needs pages, so HTTP; it outlasts hkrun's run (.hkrun-state.toml).
    let maintenance = router
        .as_ref()
        .filter(|_| config.router.mode == router::Mode::Http)
        .map(|r| Arc::clone(&r.maintenance));
    if let Some(flag) = &maintenance
        && config::state::State::read(&config.app.root).is_ok_and(|s| s.maintenance)
    {
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let in_flight = router.as_ref().map(|r| r.in_flight.clone());
    let widen_router = router
        .zip(config.plan.router)
        .map(|(r, port)| (port, r.listeners));
    let (calls_tx, calls) = mpsc::unbounded_channel();
    let servers = Servers {
        control,
        metrics: listeners.metrics,
        dashboard: listeners.dashboard,
    };
    let events = servers.serve(calls_tx, &log, &config, host);

    let plan: AppPlan = config.plan;
    let (probe, sampled) = observe(&inputs_tx);
    let next_runs = crate::scheduler::spawn(&plan.scheduler, inputs_tx.clone());
    let (reread, rereads) = mpsc::unbounded_channel();
    let mut driver = Driver {
        root: config.app.root,
        env: Arc::new(config.app.env),
        reloads: VecDeque::new(),
        reading: false,
        reread,
        longest: plan
            .types
            .iter()
            .map(|t| (t.name.clone(), os::process::exec_form(&t.command).len()))
            .max_by_key(|(_, len)| *len),
        widen_router,
        in_flight,
        maintenance,
        env_given: config.app.env_given,
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
        log: log.writer.sender(),
        pumps: JoinSet::new(),
        me: Pid::this(),
        queue: VecDeque::new(),
        replies: HashMap::new(),
        next_id: 0,
        backends,
        router_stats,
        next_runs,
        events,
        stop_self: false,
    };
    let mut sup = Supervisor::new(plan);
    let incoming = Incoming {
        inputs,
        calls,
        rereads,
    };
    let code = driver.run(&mut sup, &mut signals, incoming).await;

    // Every process is gone, so every pipe is at its end: let the pumps finish.
    let pumps = std::mem::take(&mut driver.pumps);
    drop(driver);
    let _ = tokio::time::timeout(FINAL_DRAIN, pumps.join_all()).await;
    log.finish().await;
    Ok(code)
}

/// hkrun's log: the only writer of stdout, the history, and the drains' ends.
struct Log {
    writer: Writer,
    history: Arc<History>,
    /// Each drain says here when it has sent what the log held at its end.
    drains: Vec<std::sync::mpsc::Receiver<()>>,
}

impl Log {
    /// The writer, then what follows the history (`--log-dir`, `--drain`).
    fn start(
        config: &StartConfig,
        inputs: &mpsc::UnboundedSender<Input>,
        host: &str,
    ) -> Result<Self, SetupError> {
        let closed = inputs.clone();
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
        // Before any line is recorded (nothing has the writer's sender yet): the files
        // miss none.
        if let Some(files) = config.log_files.clone() {
            if let Err(err) = logs::files::spawn(files, &history, writer.sender()) {
                tracing::warn!(%err, "cannot start writing the log files; the app runs without them");
            }
        }
        let mut drains = Vec::new();
        for drain in config.drains.clone() {
            let url = drain.url.clone();
            match logs::drains::spawn(drain, host.to_owned(), &history, writer.sender()) {
                Ok(finished) => drains.push(finished),
                Err(err) => {
                    tracing::warn!(%err, "cannot start the drain {url}; the app runs without it")
                }
            }
        }
        Ok(Self {
            writer,
            history,
            drains,
        })
    }

    /// The last lines written, then to the `--tail` clients and the drains.
    async fn finish(self) {
        self.writer.finish();
        // `logs --tail` clients get every line written, the last included, before hkrun
        // exits.
        self.history.finish().await;
        // The drains send what the log held at its end, for a little while.
        let until = Instant::now() + DRAINS_AT_EXIT;
        for finished in self.drains {
            let _ = finished.recv_timeout(until.saturating_duration_since(Instant::now()));
        }
    }
}

/// The listeners that ask the driver (`Call`s): the control socket, `--metrics`,
/// `--dashboard`.
struct Servers {
    control: Option<UnixListener>,
    metrics: Option<crate::http::Bound>,
    dashboard: Option<crate::http::Bound>,
}

impl Servers {
    /// Starts each; returns where the driver tells the core's events, when a server
    /// follows them (the dashboard, subscribed here, before the core says anything).
    fn serve(
        self,
        calls: mpsc::UnboundedSender<Call>,
        log: &Log,
        config: &StartConfig,
        host: String,
    ) -> effects::Events {
        let mut events = None;
        if let Some(listener) = self.metrics {
            tokio::spawn(crate::metrics::serve(
                listener,
                calls.clone(),
                log.writer.sender(),
            ));
        }
        if let Some(listener) = self.dashboard {
            let (tell, heard) = broadcast::channel(effects::EVENTS_HELD);
            events = Some(tell);
            tokio::spawn(crate::dashboard::serve(
                listener,
                calls.clone(),
                heard,
                Arc::clone(&log.history),
                log.writer.sender(),
                host,
            ));
        }
        if let Some(listener) = self.control {
            let context = server::Context {
                calls,
                history: Arc::clone(&log.history),
                header: LogsHeader {
                    format: config.style.format,
                    timestamps: config.style.timestamps,
                    width: config.style.width,
                },
                types: config.plan.types.iter().map(|t| t.name.clone()).collect(),
            };
            tokio::spawn(server::serve(listener, context));
        }
        events
    }
}

/// The observers: they only measure, and report as inputs. Returns where to tell the
/// readiness probe which dynos to watch, and the memory sampler which groups run.
fn observe(
    inputs: &mpsc::UnboundedSender<Input>,
) -> (
    mpsc::UnboundedSender<Watch>,
    watch::Sender<Vec<(Slot, Pid)>>,
) {
    let (probe, probe_rx) = mpsc::unbounded_channel();
    let ready = inputs.clone();
    tokio::spawn(readiness::run(probe_rx, move |slot, listener| {
        let _ = ready.send(Input::Ready {
            slot,
            ip: listener.at,
            everywhere: listener.everywhere,
        });
    }));
    let (sampled, sampled_rx) = watch::channel(Vec::new());
    let samples = inputs.clone();
    tokio::spawn(memory::run(
        sampled_rx,
        memory::SAMPLE_EVERY,
        move |sample| {
            let _ = samples.send(Input::Memory(sample));
        },
    ));
    (probe, sampled)
}

/// What the loop waits on besides the signals and the core's timers.
struct Incoming {
    /// From the observers, the pumps, the reader, the writer and the scheduler.
    inputs: mpsc::UnboundedReceiver<Input>,
    /// From the servers.
    calls: mpsc::UnboundedReceiver<Call>,
    /// The env files read again (`reload`).
    rereads: Rereads,
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The time the core is told: tokio's clock, so that on a paused clock (the tests) the
/// core's timers move with the loop's; in a running hkrun, the monotonic clock.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Where OS signals come from: `Signals`, or a test's channel.
trait SignalSource {
    /// The next signal caught; cancel-safe.
    async fn recv(&mut self) -> Caught;
}

impl SignalSource for Signals {
    async fn recv(&mut self) -> Caught {
        Signals::recv(self).await
    }
}

/// What the loop waited for.
enum Waited {
    Input(Input),
    Caught(Caught),
    Call(Call),
    Reread(Reread),
    /// `REAP_FALLBACK` has passed.
    Reap,
    /// The core's next deadline has come.
    Deadline,
}

impl Incoming {
    /// The next thing from the world, a signal, the reap tick or the core's `deadline`,
    /// whichever comes first (`select!` picks at random among those ready).
    async fn next(
        &mut self,
        signals: &mut impl SignalSource,
        reap_tick: &mut tokio::time::Interval,
        deadline: Option<Instant>,
    ) -> Waited {
        tokio::select! {
            Some(input) = self.inputs.recv() => Waited::Input(input),
            caught = signals.recv() => Waited::Caught(caught),
            Some(call) = self.calls.recv() => Waited::Call(call),
            Some(reread) = self.rereads.recv() => Waited::Reread(reread),
            _ = reap_tick.tick() => Waited::Reap,
            () = sleep_until(deadline) => Waited::Deadline,
        }
    }
}

struct Driver {
    root: PathBuf,
    /// The app's env, as the core last took it on (`Effect::TakeEnv`).
    env: Arc<Vars>,
    /// Restarts of the whole app waiting for the env files to be read again, in order.
    reloads: VecDeque<Reload>,
    /// The env files are being read again, for the restart before those in `reloads`.
    reading: bool,
    /// Where a reading of the env files comes back to the loop.
    reread: mpsc::UnboundedSender<Reread>,
    /// The longest command of the Procfile's types (its type, its length as exec gets
    /// it): env files read again must leave exec room for it, as at the start.
    longest: Option<(String, usize)>,
    /// The router's port, and where to give it a listener on 0.0.0.0 (`Effect::WidenRouter`).
    widen_router: Option<(u16, mpsc::UnboundedSender<TcpListener>)>,
    /// What the router has in flight to each dyno (a preboot's old dynos drain).
    in_flight: Option<router::InFlight>,
    /// The HTTP router's maintenance mode (`hkrun maintenance:on`).
    maintenance: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The env files as given (`-e`, or none for `.env`): read again on `Call::Reload`.
    env_given: Vec<PathBuf>,
    /// `--quiet`: types whose output is kept from stdout.
    quiet: Vec<String>,
    /// hkrun's side of each `--tty` dyno's terminal (its last run's), and where its
    /// output goes to an attached `hkrun connect`.
    terminals: HashMap<Slot, (OwnedFd, Arc<Tee>)>,
    /// Who is attached to each terminal dyno that has a client.
    attached: attach::Holders,
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
    backends: watch::Sender<Routes>,
    /// The router's counters, for `/metrics`.
    router_stats: Option<Arc<RouterStats>>,
    /// Each `[[scheduler]]` job's next run, for `ps`.
    next_runs: NextRuns,
    /// Where the core's events go besides the log (the dashboard's marks).
    events: effects::Events,
    /// The core asked hkrun to stop itself (Ctrl-Z), once the effects before are done.
    stop_self: bool,
}

impl Driver {
    /// The loop: the core's effects carried out, then the next input handed to it, until
    /// an effect says to exit; returns the exit code.
    async fn run(
        &mut self,
        sup: &mut Supervisor,
        signals: &mut Signals,
        incoming: Incoming,
    ) -> i32 {
        let mut incoming = incoming;
        let mut effects = sup.start(now());
        let mut reap_tick = tokio::time::interval(REAP_FALLBACK);
        loop {
            if let Some(code) = self.perform(&mut effects) {
                return code;
            }
            // A finished pump is kept until joined: a crash loop would otherwise grow hkrun.
            while self.pumps.try_join_next().is_some() {}
            if std::mem::take(&mut self.stop_self) {
                self.log.flush_blocking(PAUSE_FLUSH);
                // A SIGCONT since the SIGTSTP (while the pause was logged) means go on at
                // once.
                if signals.paused() {
                    let _ = nix::sys::signal::raise(Signal::SIGSTOP);
                }
                // Continued: the core hears it before any timer that ran on.
                self.queue.push_back(Input::Resume);
            }
            let input = match self.queue.pop_front() {
                Some(input) => input,
                None => match incoming
                    .next(signals, &mut reap_tick, sup.next_deadline())
                    .await
                {
                    Waited::Input(input) => input,
                    Waited::Caught(caught) => match self.caught(caught) {
                        Some(input) => input,
                        None => continue,
                    },
                    Waited::Call(call) => match self.call(sup, call) {
                        Some(input) => input,
                        None => continue,
                    },
                    Waited::Reread(reread) => match self.reread(reread) {
                        Some(input) => input,
                        None => continue,
                    },
                    Waited::Reap => {
                        self.reap();
                        continue;
                    }
                    Waited::Deadline => Input::Tick,
                },
            };
            effects = sup.handle(now(), input);
        }
    }

    /// What a signal caught is for the core, once the driver has done its part.
    fn caught(&mut self, caught: Caught) -> Option<Input> {
        match caught {
            Caught::Stop(signal) => Some(Input::Stop(StopRequest::Signal(signal))),
            Caught::Forward(signal) => {
                if signal == Signal::SIGWINCH {
                    self.resize_terminals();
                }
                Some(Input::Forward(signal))
            }
            Caught::Pause => Some(Input::Pause),
            Caught::Resume => Some(Input::Resume),
            Caught::Restart => {
                self.restart_signalled();
                None
            }
            Caught::Child => {
                self.reap();
                None
            }
        }
    }
}
