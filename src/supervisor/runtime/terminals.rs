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
use crate::supervisor::attach::{self, Holder};
use crate::supervisor::core::Supervisor;

impl Driver {
    /// hkrun's terminal changed size: so do the dynos' terminals (the kernel sends each
    /// its SIGWINCH), where no client's size is on it.
    pub(super) fn resize_terminals(&self) {
        let size = terminal::size();
        for (slot, (master, _)) in &self.terminals {
            if attach::follows_hkrun(&self.attached, slot) {
                let _ = terminal::resize(master.as_fd(), size);
            }
        }
    }

    /// `hkrun connect DYNO` by `who`: the terminal of the dyno `attach::which` names, if
    /// `attach::may_attach`; sized as the client's while it is attached.
    pub(super) fn attach(
        &mut self,
        sup: &Supervisor,
        dyno: &str,
        who: String,
        size: Option<[u16; 2]>,
    ) -> Result<Attached, TerminalRefusal> {
        let slot = attach::which(sup.dynos(), dyno)?;
        let (master, tee) = attach::may_attach(&slot, self.terminals.get(&slot), &self.attached)?;
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
        let size = attach::client_size(size);
        if let Some([rows, cols]) = size {
            let _ = terminal::resize(master.as_fd(), terminal::sized(rows, cols));
        }
        self.attachments += 1;
        let id = self.attachments;
        self.attached.insert(slot.clone(), Holder { who, id, size });
        Ok(Attached {
            slot,
            id,
            input,
            output,
        })
    }

    /// The terminal of `who`, attached to `dyno` (a name or its type), is `size` now, if
    /// `attach::may_resize`.
    pub(super) fn resize(
        &mut self,
        dyno: &str,
        who: &str,
        size: [u16; 2],
    ) -> Result<(), TerminalRefusal> {
        let slot = attach::may_resize(&self.attached, dyno, who, size)?.clone();
        if let Some(holder) = self.attached.get_mut(&slot) {
            holder.size = Some(size);
        }
        let [rows, cols] = size;
        match self.terminals.get(&slot) {
            Some((master, _)) => terminal::resize(master.as_fd(), terminal::sized(rows, cols))
                .map_err(|e| TerminalRefusal::Io {
                    slot: slot.clone(),
                    doing: "resize",
                    error: e.to_string(),
                }),
            None => Err(TerminalRefusal::Ended { slot, just: false }),
        }
    }

    /// Attachment `id` to `slot` has ended; a later one stays (`attach::holds`).
    pub(super) fn detach(&mut self, slot: &Slot, id: u64) {
        if !attach::holds(&self.attached, slot, id) {
            return;
        }
        let size = self.attached.remove(slot).and_then(|h| h.size);
        if let Some((master, tee)) = self.terminals.get(slot) {
            tee.detach();
            // hkrun's size again, once a client's is gone.
            if size.is_some() {
                let _ = terminal::resize(master.as_fd(), terminal::size());
            }
        }
    }
}
