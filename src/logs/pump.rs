//! Turns one dyno's output pipe (stdout and stderr share it, so their order is kept) into
//! whole lines for the writer.
//!
//! A line without a newline is sent after a short pause or when the dyno exits; one that
//! grows past `MAX_LINE` is sent in pieces. Exits are reported only after the dyno's
//! output so far is queued, so `Process exited` always follows its last line.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::unix::pipe;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Label, LogSender, MAX_LINE};

/// How long a partial line waits for its newline before it is shown as it is.
pub const PARTIAL_FLUSH: Duration = Duration::from_millis(500);
/// Bytes read at once.
const READ_SIZE: usize = 64 * 1024;
/// Reads per wake-up before other dynos get a turn.
const READS_PER_TURN: usize = 16;

struct Lines {
    label: Arc<Label>,
    log: LogSender,
    pending: Vec<u8>,
    pending_since: Option<Instant>,
}

impl Lines {
    async fn take(&mut self, bytes: &[u8]) {
        match memchr::memrchr(b'\n', bytes) {
            Some(last) => {
                let mut lines = std::mem::take(&mut self.pending);
                lines.extend_from_slice(&bytes[..=last]);
                self.log.output(&self.label, lines).await;
                self.pending_since = None;
                self.keep(&bytes[last + 1..]);
            }
            None => self.keep(bytes),
        }
        if self.pending.len() >= MAX_LINE {
            self.flush().await;
        }
    }

    fn keep(&mut self, partial: &[u8]) {
        if !partial.is_empty() {
            self.pending_since.get_or_insert_with(Instant::now);
            self.pending.extend_from_slice(partial);
        }
    }

    /// Sends a partial line as a line of its own.
    async fn flush(&mut self) {
        if !self.pending.is_empty() {
            let mut line = std::mem::take(&mut self.pending);
            line.push(b'\n');
            self.log.output(&self.label, line).await;
        }
        self.pending_since = None;
    }

    /// Reads what the pipe holds, up to `turns` reads. Returns true at end of file.
    async fn read_ready(&mut self, pipe: &pipe::Receiver, buf: &mut [u8], turns: usize) -> bool {
        for _ in 0..turns {
            match pipe.try_read(buf) {
                Ok(0) => return true,
                Ok(n) => self.take(&buf[..n]).await,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        false
    }
}

impl Lines {
    /// Reads what the pipe holds right now, up to `turns` reads, whether or not the
    /// runtime has seen it become readable yet (`try_read` trusts that readiness and
    /// would report nothing). Returns true at end of file.
    async fn drain(&mut self, pipe: &pipe::Receiver, buf: &mut [u8], turns: usize) -> bool {
        for _ in 0..turns {
            match nix::unistd::read(pipe, buf) {
                Ok(0) => return true,
                Ok(n) => self.take(&buf[..n]).await,
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return false,
                Err(_) => return true,
            }
        }
        false
    }
}

/// Pumps `pipe` until it closes and the dyno's exit is known; `on_exit` gets the status
/// once every line the dyno wrote before exiting is queued.
pub async fn run<S: Send + 'static>(
    label: Arc<Label>,
    log: LogSender,
    pipe: pipe::Receiver,
    exited: oneshot::Receiver<S>,
    on_exit: impl FnOnce(S),
) {
    let mut lines = Lines {
        label,
        log,
        pending: Vec::new(),
        pending_since: None,
    };
    let mut buf = vec![0; READ_SIZE];
    let mut exited = Some(exited);
    let mut on_exit = Some(on_exit);
    let mut eof = false;
    while !eof || exited.is_some() {
        let flush_at = lines.pending_since.map(|since| since + PARTIAL_FLUSH);
        tokio::select! {
            ready = pipe.readable(), if !eof => {
                eof = ready.is_err() || lines.read_ready(&pipe, &mut buf, READS_PER_TURN).await;
                if eof {
                    lines.flush().await;
                }
            }
            status = async { exited.as_mut().expect("guarded by is_some").await }, if exited.is_some() => {
                exited = None;
                // The dyno is gone, so what it wrote is in the pipe: take it all before
                // reporting. Descendants that outlive it may keep writing; bound the drain.
                if !eof {
                    eof = lines.drain(&pipe, &mut buf, 4 * READS_PER_TURN).await;
                }
                lines.flush().await;
                match (status, on_exit.take()) {
                    (Ok(status), Some(report)) => report(status),
                    _ => return,
                }
            }
            () = sleep_until(flush_at) => lines.flush().await,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
