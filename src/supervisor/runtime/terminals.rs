//! `--tty` dynos' terminals: `hkrun connect`'s attach, resize and detach, and hkrun's
//! own size passed on to them.

use std::os::fd::AsFd;

use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use super::Driver;
use crate::dyno::Slot;
use crate::logs::pump::Tee;
use crate::os::terminal;
use crate::supervisor::api::{Attached, TerminalRefusal};
use crate::supervisor::core::Supervisor;

impl Driver {
    /// hkrun's terminal changed size: so do the dynos' terminals (the kernel sends each
    /// its SIGWINCH).
    pub(super) fn resize_terminals(&self) {
        let size = terminal::size();
        for (slot, (master, _)) in &self.terminals {
            // An attached client's size stays until it detaches.
            if self.attached.get(slot).is_none_or(|a| a.2.is_none()) {
                let _ = terminal::resize(master.as_fd(), size);
            }
        }
    }

    /// `hkrun connect DYNO`: the running dyno of that name (or the one dyno of that type)
    /// and its terminal, unless it has none or a client is attached already.
    pub(super) fn attach(
        &mut self,
        sup: &Supervisor,
        dyno: &str,
        who: String,
        size: Option<[u16; 2]>,
    ) -> Result<Attached, TerminalRefusal> {
        let running: Vec<&Slot> = sup
            .dynos()
            .iter()
            .filter(|d| d.pid.is_some())
            .map(|d| &d.plan.spec.slot)
            .filter(|s| s.to_string() == dyno || s.kind == dyno)
            .collect();
        let slot = match running.as_slice() {
            [] => {
                return Err(TerminalRefusal::NotRunning {
                    dyno: dyno.to_owned(),
                });
            }
            // A preboot's two generations: the newer one.
            [.., last] if running.iter().all(|s| s.to_string() == last.to_string()) => {
                (*last).clone()
            }
            several => {
                return Err(TerminalRefusal::Several {
                    dyno: dyno.to_owned(),
                    running: several.iter().map(|s| (*s).clone()).collect(),
                });
            }
        };
        let Some((master, tee)) = self.terminals.get(&slot) else {
            return Err(TerminalRefusal::NoTerminal { slot });
        };
        if let Some((holder, _, _)) = self.attached.get(&slot) {
            return Err(TerminalRefusal::Taken {
                slot,
                holder: holder.clone(),
            });
        }
        let input = master
            .try_clone()
            .and_then(pipe::Sender::from_owned_fd_unchecked)
            .map_err(|e| TerminalRefusal::Io {
                slot: slot.clone(),
                doing: "write to",
                error: e.to_string(),
            })?;
        let (client, output) = mpsc::channel(Tee::BOUND);
        if !tee.attach(client) {
            return Err(TerminalRefusal::Ended { slot, just: true });
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
    pub(super) fn resize(
        &mut self,
        dyno: &str,
        who: &str,
        [rows, cols]: [u16; 2],
    ) -> Result<(), TerminalRefusal> {
        if rows == 0 || cols == 0 {
            return Err(TerminalRefusal::NoSize { rows, cols });
        }
        // Only a client known by its own pid: peers without one all look alike.
        if !who.starts_with("pid ") || who == "pid 0" {
            return Err(TerminalRefusal::Anonymous {
                who: who.to_owned(),
            });
        }
        let Some((slot, entry)) = self.attached.iter_mut().find(|(slot, (holder, _, _))| {
            holder == who && (slot.to_string() == dyno || slot.kind == dyno)
        }) else {
            return Err(TerminalRefusal::NotAttached {
                who: who.to_owned(),
                dyno: dyno.to_owned(),
            });
        };
        let size = terminal::sized(rows, cols);
        entry.2 = Some(size);
        match self.terminals.get(slot) {
            Some((master, _)) => {
                terminal::resize(master.as_fd(), size).map_err(|e| TerminalRefusal::Io {
                    slot: slot.clone(),
                    doing: "resize",
                    error: e.to_string(),
                })
            }
            None => Err(TerminalRefusal::Ended {
                slot: slot.clone(),
                just: false,
            }),
        }
    }

    /// Attachment `id` to `slot` has ended; a later one stays.
    pub(super) fn detach(&mut self, slot: &Slot, id: u64) {
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
}
