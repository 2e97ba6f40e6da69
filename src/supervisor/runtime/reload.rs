//! The env files (and app.json) read again for a restart of the whole app (`config:set`,
//! `hkrun restart` with no target, SIGUSR2), off the loop: the files are read on a
//! blocking thread, one reading at a time in the order asked, and only what was read
//! goes to the core, as `Control::Reload`. The core decides: the app takes the new env on
//! only if the restart goes ahead (`Effect::TakeEnv`), so a refused one leaves every
//! later start on the old env.

use crate::supervisor::event::Event;
use crate::supervisor::outcome::{Outcome, Refusal};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::Driver;
use crate::config::{self, env::Vars};
use crate::supervisor::input::{Control, Input, SIGNALLED};

/// A restart request that waits for the env files to be read again.
pub(super) struct Reload {
    id: u64,
    /// The control client waiting for the core's answer; none for SIGUSR2.
    reply: Option<oneshot::Sender<Outcome>>,
}

/// What reading the env files again gave, for a `Reload`.
pub(super) struct Reread {
    reload: Reload,
    env: Result<Vars, String>,
}

/// Where the readings come back to the loop.
pub(super) type Rereads = mpsc::UnboundedReceiver<Reread>;

impl Driver {
    /// Restart request `id` (every dyno), once the env files are read again.
    pub(super) fn reload(&mut self, id: u64, reply: Option<oneshot::Sender<Outcome>>) {
        self.reloads.push_back(Reload { id, reply });
        self.read_next();
    }

    /// SIGUSR2: every dyno restarted on the env files as they are now, as `config:set`
    /// does.
    pub(super) fn restart_signalled(&mut self) {
        self.reload(SIGNALLED, None);
    }

    /// Starts reading for the next waiting request, unless a reading is under way: each
    /// then reads files at least as new as the one before, and the core gets the
    /// requests in the order they came.
    fn read_next(&mut self) {
        if self.reading {
            return;
        }
        let Some(reload) = self.reloads.pop_front() else {
            return;
        };
        self.reading = true;
        let (given, root, longest) = (
            self.env_given.clone(),
            self.root.clone(),
            self.longest.clone(),
        );
        let done = self.reread.clone();
        tokio::spawn(async move {
            let read = tokio::task::spawn_blocking(move || {
                let files = config::env_files(&given, &root);
                // Env files read again must leave exec room for the longest command, as
                // at the start.
                let longest = longest.as_ref().map(|(name, len)| (name.as_str(), *len));
                config::load_env(&files, &root, longest).map_err(|err| err.to_string())
            });
            let env = read
                .await
                .unwrap_or_else(|err| Err(format!("cannot read the env files again: {err}")));
            let _ = done.send(Reread { reload, env });
        });
    }

    /// The env files were read again: the restart goes to the core with them, or the
    /// reading's error is the answer.
    pub(super) fn reread(&mut self, reread: Reread) -> Option<Input> {
        self.reading = false;
        self.read_next();
        let Reread {
            reload: Reload { id, reply },
            env,
        } = reread;
        match env {
            Ok(env) => {
                if let Some(reply) = reply {
                    self.replies.insert(id, reply);
                }
                Some(Input::Control {
                    id,
                    request: Control::Reload(Arc::new(env)),
                })
            }
            Err(err) => {
                match reply {
                    Some(reply) => {
                        let _ = reply.send(Outcome::Refused(Refusal::Config { error: err }));
                    }
                    None => {
                        let refused =
                            Event::SignalledRestartRefused(Refusal::Config { error: err });
                        self.log.event(&self.system, refused.to_string());
                    }
                }
                None
            }
        }
    }
}
