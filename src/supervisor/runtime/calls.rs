//! What the servers ask (`Call`s): answered from what the driver holds, or handed to the
//! core as an input.

use std::time::{Instant, SystemTime};

use super::Driver;
use crate::config;
use crate::control::ps;
use crate::supervisor::api::Call;
use crate::supervisor::core::Supervisor;
use crate::supervisor::input::{Control, Input, SIGNALLED, StopRequest};
use crate::supervisor::outcome::{Outcome, Refusal};

impl Driver {
    /// The input `call` is for the core, if any; the calls the driver answers itself are
    /// answered here.
    pub(super) fn call(&mut self, sup: &Supervisor, call: Call) -> Option<Input> {
        match call {
            Call::Ps(reply) => {
                let next = self.next_runs.borrow().clone();
                let _ = reply.send(ps::view(sup, Instant::now(), SystemTime::now(), &next));
                None
            }
            Call::Change { request, reply } => {
                self.next_id += 1;
                // A restart of the whole app starts it on its config as the env files have
                // it now, as `config:set` does: never a mix.
                if matches!(&request, Control::Restart(targets) if targets.is_empty()) {
                    if let Err(err) = self.reload(self.next_id) {
                        let _ = reply.send(Outcome::Refused(Refusal::Config { error: err }));
                        return None;
                    }
                }
                self.replies.insert(self.next_id, reply);
                Some(Input::Control {
                    id: self.next_id,
                    request,
                })
            }
            Call::StopAll => Some(Input::Stop(StopRequest::Control)),
            Call::Attach {
                dyno,
                who,
                size,
                reply,
            } => {
                // A client gone before the answer holds nothing.
                if let Err(Ok(attached)) = reply.send(self.attach(sup, &dyno, who, size)) {
                    self.detach(&attached.slot, attached.id);
                }
                None
            }
            Call::Resize {
                dyno,
                who,
                size,
                reply,
            } => {
                let _ = reply.send(self.resize(&dyno, &who, size));
                None
            }
            Call::Detach { slot, id } => {
                self.detach(&slot, id);
                None
            }
            Call::Metrics(reply) => {
                let _ = reply.send(self.metrics(sup));
                None
            }
            Call::Reload { reply } => {
                self.next_id += 1;
                if let Err(err) = self.reload(self.next_id) {
                    let _ = reply.send(Outcome::Refused(Refusal::Config { error: err }));
                    return None;
                }
                self.replies.insert(self.next_id, reply);
                Some(Input::Control {
                    id: self.next_id,
                    request: Control::Restart(Vec::new()),
                })
            }
        }
    }

    /// SIGUSR2: every dyno restarted on the env files as they are now, as `config:set`
    /// does.
    pub(super) fn restart_signalled(&mut self) -> Option<Input> {
        match self.reload(SIGNALLED) {
            Ok(()) => Some(Input::Control {
                id: SIGNALLED,
                request: Control::Restart(Vec::new()),
            }),
            Err(err) => {
                self.log
                    .event(&self.system, format!("SIGUSR2 restart refused: {err}"));
                None
            }
        }
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

    /// What `/metrics` shows: `ps`'s view, and the counters of the core, the router and
    /// the log.
    fn metrics(&self, sup: &Supervisor) -> crate::metrics::Snapshot {
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
            router: self
                .router_stats
                .as_deref()
                .map(|r| crate::metrics::RouterFigures {
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
}
