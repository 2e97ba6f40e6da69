//! `--tty` dynos' terminals: `hkrun connect`'s attach, resize and detach, and hkrun's
//! own size passed on to them.

use std::os::fd::AsFd;

use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use super::Driver;
use crate::control::server::Attached;
use crate::dyno::Slot;
use crate::logs::pump::Tee;
use crate::os::terminal;
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
    pub(super) fn resize(
        &mut self,
        dyno: &str,
        who: &str,
        [rows, cols]: [u16; 2],
    ) -> Result<(), String> {
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
