//! What the servers ask (`Call`s): answered from what the driver holds (`ps` and
//! `/metrics` from the one `View` of the core, `supervisor::view`), or handed to the core
//! as an input.

use std::time::SystemTime;

use super::Driver;
use crate::config;
use crate::supervisor::api::Call;
use crate::supervisor::core::Supervisor;
use crate::supervisor::input::{Control, Input, StopRequest};
use crate::supervisor::view::{self, View};

impl Driver {
    /// The input `call` is for the core, if any; the calls the driver answers itself are
    /// answered here.
    pub(super) fn call(&mut self, sup: &Supervisor, call: Call) -> Option<Input> {
        match call {
            Call::Ps(reply) => {
                let _ = reply.send(self.view(sup));
                None
            }
            Call::Change { request, reply } => {
                self.next_id += 1;
                // A restart of the whole app starts it on its config as the env files have
                // it now, as `config:set` does: never a mix.
                if matches!(&request, Control::Restart(targets) if targets.is_empty()) {
                    self.reload(self.next_id, Some(reply));
                    return None;
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
            Call::Maintenance { on, reply } => {
                let _ = reply.send(self.maintenance(on));
                None
            }
            Call::Reload { reply } => {
                self.next_id += 1;
                self.reload(self.next_id, Some(reply));
                None
            }
        }
    }

    /// Maintenance mode turned on or off (and recorded, so it outlasts this run), or
    /// as it is: what to tell the user.
    fn maintenance(&self, on: Option<bool>) -> Result<String, String> {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(flag) = &self.maintenance else {
            return Err(
                "maintenance mode needs the HTTP router (this app runs with --no-router or --router tcp)"
                    .to_owned(),
            );
        };
        let Some(on) = on else {
            return Ok(if flag.load(Relaxed) { "on" } else { "off" }.to_owned());
        };
        config::state::State::record_maintenance(&self.root, on)?;
        flag.store(on, Relaxed);
        Ok(format!(
            "{} maintenance mode... done",
            if on { "Enabling" } else { "Disabling" }
        ))
    }

    /// The app as every reader shows it, now.
    fn view(&self, sup: &Supervisor) -> View {
        let next = self.next_runs.borrow().clone();
        view::view(sup, super::now(), SystemTime::now(), &next)
    }

    /// What `/metrics` and the dashboard show: the view, and the router's and the log's
    /// counters.
    fn metrics(&self, sup: &Supervisor) -> crate::metrics::Snapshot {
        use std::sync::atomic::Ordering::Relaxed;
        crate::metrics::Snapshot {
            view: self.view(sup),
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
                    requests: r.answered(),
                    service: r.service_times(),
                }),
            output: self.log.output_count().all(),
        }
    }
}
