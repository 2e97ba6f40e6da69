//! Carrying out the core's effects, in order. /proc is read, and what it finds signalled,
//! on the reader's thread (`proc::Reader`); its answers come back as inputs (the core
//! takes them late, ARCHITECTURE.md). The core's events are logged, and told to whoever
//! follows them (`Heard`: the dashboard's marks).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::broadcast;

use super::Driver;
use crate::config;
use crate::dyno::Slot;
use crate::os::proc::{self, Access, Snapshot};
use crate::os::readiness::Watch;
use crate::os::{self, process};
use crate::supervisor::api::Heard;
use crate::supervisor::event::Event;
use crate::supervisor::input::{Effect, Input, Source};

/// How long Ctrl-Z waits for the /proc reader's signals before hkrun stops itself.
const SETTLE: Duration = Duration::from_secs(1);
/// Events a follower may fall behind by. The driver's loop runs on the thread its
/// followers run on, so one burst (a stop of a thousand dynos) comes whole before any of
/// them reads; what overflows is lost to them (the log has it).
pub(crate) const EVENTS_HELD: usize = 4096;

/// Where the core's events go, besides the log; none without a follower (`--dashboard`).
pub(crate) type Events = Option<broadcast::Sender<Arc<Heard>>>;

impl Driver {
    /// Carries out effects in order; returns the exit code when one says to exit.
    pub(super) fn perform(&mut self, effects: &mut Vec<Effect>) -> Option<i32> {
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
                Effect::SignalAll { slot, signal } => {
                    let run = self.run_of(&slot);
                    self.reader
                        .submit(Access::Signal, move |snapshot| run.signal(snapshot, signal));
                }
                Effect::SignalStragglers(signal) => self.signal_stragglers(signal),
                Effect::ScanGroup { slot } => self.scan_group(slot),
                Effect::ScanStragglers => self.scan_stragglers(),
                Effect::Event(event) => {
                    let label = match event.source() {
                        Source::Dyno(slot) => self.label(&slot),
                        Source::System => Arc::clone(&self.system),
                    };
                    self.log.event(&label, event.to_string());
                    self.tell(event);
                }
                Effect::OutputMayBeDropped => self.log.stopping(),
                Effect::Postdeployed { command } => self.record_postdeploy(&command),
                Effect::Forget { slot } => self.forget(&slot),
                Effect::Routes(routes) => {
                    self.backends.send_replace(routes);
                }
                Effect::ProbePorts { id, ports } => {
                    let taken = ports
                        .into_iter()
                        .filter(|&p| os::net::port_taken(p))
                        .collect();
                    self.queue.push_back(Input::PortsProbed { id, taken });
                }
                Effect::WidenRouter { by } => self.widen_router(&by),
                Effect::AwaitDrained { slot, addr } => {
                    let in_flight = self.in_flight.clone();
                    let inputs = self.inputs.clone();
                    tokio::spawn(async move {
                        if let Some(in_flight) = in_flight {
                            in_flight.drained(addr).await;
                        }
                        let _ = inputs.send(Input::Drained { slot });
                    });
                }
                Effect::TakeEnv(env) => self.env = env,
                Effect::Reply { id, outcome } => {
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

    /// `event` to whoever follows the core's events, if anyone does.
    fn tell(&self, event: Event) {
        if let Some(events) = self.events.as_ref().filter(|e| e.receiver_count() > 0) {
            let at = SystemTime::now();
            // A follower gone is no error.
            let _ = events.send(Arc::new(Heard { at, event }));
        }
    }

    fn record_postdeploy(&mut self, command: &str) {
        if let Err(err) = config::state::State::record_postdeploy(&self.root, command) {
            let text = format!(
                "cannot record in {} that postdeploy ran ({err}): it runs again at the next start",
                config::state::STATE_FILE
            );
            self.log.event(&self.system, text);
        }
    }

    /// The dyno left the formation: its handles go.
    fn forget(&mut self, slot: &Slot) {
        self.terminals.remove(slot);
        self.attached.remove(slot);
        self.labels.remove(slot);
        // Unless a preboot's other generation goes on under the same name.
        let name = slot.to_string();
        if !self.labels.keys().any(|s| s.to_string() == name) {
            self.log.output_count().forget(&name);
        }
        self.groups.remove(slot);
        self.marks.remove(slot);
    }

    /// The router listens on 0.0.0.0 too, beside its first listener.
    fn widen_router(&self, by: &Slot) {
        let Some((port, listeners)) = &self.widen_router else {
            return;
        };
        let wide = std::net::SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, *port));
        let text = match os::net::listen_widenable(wide) {
            Ok(listener) => {
                let _ = listeners.send(listener);
                format!("router listening on http://{wide} too: {by} listens on every interface")
            }
            Err(err) => format!(
                "the router stays on 127.0.0.1:{port} alone: cannot listen on {wide} ({err})"
            ),
        };
        self.log.event(&self.system, text);
    }

    fn scan_group(&self, slot: Slot) {
        let run = self.run_of(&slot);
        let inputs = self.inputs.clone();
        self.reader.submit(Access::Scan, move |snapshot| {
            let count = run.left(snapshot);
            let _ = inputs.send(Input::GroupLeft { slot, count });
        });
    }

    fn scan_stragglers(&self) {
        let me = self.me;
        let inputs = self.inputs.clone();
        self.reader.submit(Access::Scan, move |snapshot| {
            let count = snapshot.descendants(me).len();
            let _ = inputs.send(Input::Stragglers(count));
        });
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
