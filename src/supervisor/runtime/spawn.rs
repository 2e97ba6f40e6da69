//! Starting a dyno's run: its environment, its run mark, its group, its pump; and
//! reaping, which tells each pump its dyno ended.

use std::sync::Arc;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use super::Driver;
use crate::config::env::{self, Vars};
use crate::dyno::{Exit, Slot};
use crate::logs::pump::Tee;
use crate::logs::{self, Label};
use crate::os::readiness::Watch;
use crate::os::{process, terminal};
use crate::plan::SpawnSpec;
use crate::supervisor::input::Input;

impl Driver {
    /// The dyno's label in the log, made once.
    pub(super) fn label(&mut self, slot: &Slot) -> Arc<Label> {
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

    /// Starts `spec`'s run and its pump; `Input::Spawned`, or `Input::SpawnFailed`, is
    /// queued for the core.
    pub(super) fn spawn(&mut self, spec: SpawnSpec) {
        let (env, mark) = self.environment(&spec);
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
        self.start_pump(spec, pipe, exited_rx);
    }

    /// The run's environment: the app's (and its type's) variables, hkrun's own for a
    /// dyno, and the run's new mark (`process::RUN_MARK`), returned too.
    fn environment(&mut self, spec: &SpawnSpec) -> (Vars, String) {
        let name = &spec.dyno;
        let mut env = match spec.env.is_empty() {
            true => env::for_dyno(&self.env, name, spec.port),
            // Its type's variables over the app's, under hkrun's own (PORT, DYNO, PS).
            false => {
                let mut app = Vars::clone(&self.env);
                app.extend(spec.env.iter().cloned());
                env::for_dyno(&app, name, spec.port)
            }
        };
        self.runs += 1;
        let mark = format!("{}-{}", self.me, self.runs);
        env.insert(process::RUN_MARK.into(), mark.clone());
        (env, mark)
    }

    /// The pump of the run on `pipe`: its output to the log (and to an attached client),
    /// then its exit to the core.
    fn start_pump(
        &mut self,
        spec: SpawnSpec,
        pipe: pipe::Receiver,
        exited: oneshot::Receiver<Exit>,
    ) {
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
            exited,
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

    /// Collects ended children and tells each dyno's pump; orphans are just collected.
    pub(super) fn reap(&mut self) {
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
}
