//! Turns one dyno's output pipe (stdout and stderr share it, so their order is kept) into
//! whole lines for the writer.
//!
//! A line without a newline is sent after a short pause (when the dyno has written nothing
//! more: never because hkrun itself stopped reading) or when the dyno exits; one that
//! grows past `MAX_LINE` is sent in pieces. Exits are reported only after the dyno's
//! output so far is queued, so `Process exited` always follows its last line; but never
//! later than that output can wait on a stalled stdout (`LogSender::may_drop`): then it is
//! dropped, and one line says how many bytes.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Label, LogSender, MAX_LINE};
use crate::dyno::Exit;

/// How long a partial line waits for its newline before it is shown as it is.
pub(crate) const PARTIAL_FLUSH: Duration = Duration::from_millis(500);
/// Bytes read at once.
const READ_SIZE: usize = 64 * 1024;
/// Reads per wake-up before other dynos get a turn.
const READS_PER_TURN: usize = 16;
/// How often output waiting on the budget checks whether it may be dropped.
const DROP_CHECK: Duration = Duration::from_millis(100);

/// A terminal dyno's output as it comes, for the `hkrun connect` client attached to it
/// (one at most), then how its run ended. A client that falls behind misses chunks; the
/// log never does, and the end is never missed.
#[derive(Default)]
pub(crate) struct Tee(std::sync::Mutex<TeeState>);

#[derive(Default)]
struct TeeState {
    client: Option<mpsc::Sender<Shown>>,
    /// The run is over: nothing will be written again.
    closed: bool,
}

/// What an attached client is given.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Shown {
    /// Bytes the dyno wrote to its terminal, as they came.
    Output(Vec<u8>),
    /// Its run has ended so, once all it wrote before is given: the last message.
    Exited(Exit),
}

impl Tee {
    /// Chunks the client has not taken yet, at most: then it misses some (one place is
    /// kept for `Shown::Exited`).
    pub(crate) const BOUND: usize = 256;

    /// Gives the output to `client` from now on; false once the run is over.
    pub(crate) fn attach(&self, client: mpsc::Sender<Shown>) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.client = Some(client);
        true
    }

    /// No client any more; one that is still reading sees its output end.
    pub(crate) fn detach(&self) {
        self.lock().client = None;
    }

    fn close(&self) {
        let mut state = self.lock();
        state.client = None;
        state.closed = true;
    }

    /// The dyno has exited: the client is told how, and its view ends.
    fn exited(&self, exit: Exit) {
        // Under one lock: a client that attaches now is either told or refused.
        let mut state = self.lock();
        if let Some(client) = state.client.take() {
            // The place kept for it (`send`) is free.
            let _ = client.try_send(Shown::Exited(exit));
        }
        state.closed = true;
    }

    fn send(&self, bytes: &[u8]) {
        if let Some(client) = &self.lock().client {
            // The last place is kept for how the run ends.
            if client.capacity() > 1 {
                let _ = client.try_send(Shown::Output(bytes.to_vec()));
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TeeState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct Lines {
    label: Arc<Label>,
    /// The dyno writes to a terminal (which ends its lines with `\r\n`: the log's end
    /// with `\n`, as from a pipe), and `hkrun connect` may watch it.
    terminal: Option<Arc<Tee>>,
    log: LogSender,
    pending: Vec<u8>,
    pending_since: Option<Instant>,
    /// Whole lines read and not yet queued for the writer, oldest first: at most one
    /// turn of reads, since the pipe is read only when this is empty.
    ready: VecDeque<Vec<u8>>,
    /// Bytes dropped and not yet said.
    dropped: usize,
}

impl Lines {
    fn take(&mut self, bytes: &[u8]) {
        if let Some(tee) = &self.terminal {
            tee.send(bytes);
        }
        match memchr::memrchr(b'\n', bytes) {
            Some(last) => {
                let mut lines = std::mem::take(&mut self.pending);
                lines.extend_from_slice(&bytes[..=last]);
                if self.terminal.is_some() {
                    without_cr_before_lf(&mut lines);
                    as_terminal_shows(&mut lines);
                }
                self.ready.push_back(lines);
                self.pending_since = None;
                self.keep(&bytes[last + 1..]);
            }
            None => self.keep(bytes),
        }
        if self.pending.len() >= MAX_LINE {
            self.flush();
        }
    }

    fn keep(&mut self, partial: &[u8]) {
        if !partial.is_empty() {
            self.pending_since.get_or_insert_with(Instant::now);
            self.pending.extend_from_slice(partial);
        }
    }

    /// Makes a partial line a line of its own.
    fn flush(&mut self) {
        if self.terminal.is_some() && self.pending.last() == Some(&b'\r') {
            self.pending.pop();
        }
        if self.terminal.is_some() {
            // What a terminal shows of it; all of it erased, nothing to show.
            as_terminal_shows(&mut self.pending);
        }
        if !self.pending.is_empty() {
            let mut line = std::mem::take(&mut self.pending);
            line.push(b'\n');
            self.ready.push_back(line);
        }
        self.pending_since = None;
    }

    /// Queues what the budget has room for now; true when nothing is left waiting.
    fn send_ready(&mut self) -> bool {
        while let Some(front) = self.ready.front() {
            let Some(permit) = self.log.try_reserve(front.len()) else {
                return false;
            };
            let lines = self.ready.pop_front().expect("front exists");
            self.log.send(&self.label, lines, permit);
        }
        true
    }

    fn drop_ready(&mut self) {
        self.dropped += self.ready.drain(..).map(|lines| lines.len()).sum::<usize>();
    }

    fn say_dropped(&mut self) {
        if self.dropped > 0 {
            let text = format!(
                "{} bytes of output dropped: stdout was not read",
                std::mem::take(&mut self.dropped)
            );
            self.log.event(&self.label, text);
        }
    }

    /// Reads what the pipe holds, up to `turns` reads. Returns true at end of file.
    fn read_ready(&mut self, pipe: &pipe::Receiver, buf: &mut [u8], turns: usize) -> bool {
        for _ in 0..turns {
            match pipe.try_read(buf) {
                Ok(0) => return true,
                Ok(n) => self.take(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        false
    }

    /// One read of what the pipe holds right now, whether or not the runtime has seen
    /// it become readable.
    fn read_once(&mut self, pipe: &pipe::Receiver, buf: &mut [u8]) -> Read {
        loop {
            return match nix::unistd::read(pipe, buf) {
                Ok(0) => Read::End,
                Ok(n) => {
                    self.take(&buf[..n]);
                    Read::Some
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => Read::Nothing,
                Err(_) => Read::End,
            };
        }
    }

    /// Reads what the pipe holds right now, up to `turns` reads, whether or not the
    /// runtime has seen it become readable yet (`try_read` trusts that readiness and
    /// would report nothing). Returns true at end of file.
    fn drain(&mut self, pipe: &pipe::Receiver, buf: &mut [u8], turns: usize) -> bool {
        for _ in 0..turns {
            match self.read_once(pipe, buf) {
                Read::Some => {}
                Read::Nothing => return false,
                Read::End => return true,
            }
        }
        false
    }
}

/// What one read of the pipe found.
enum Read {
    Some,
    Nothing,
    End,
}

/// Removes the `\r` of each `\r\n` (a terminal's line end), in place.
fn without_cr_before_lf(lines: &mut Vec<u8>) {
    let mut kept = 0;
    for i in 0..lines.len() {
        let cr_of_crlf = lines[i] == b'\r' && lines.get(i + 1) == Some(&b'\n');
        if !cr_of_crlf {
            lines[kept] = lines[i];
            kept += 1;
        }
    }
    lines.truncate(kept);
}

/// A terminal's lines as it shows them (`render::as_terminal_shows`): a progress bar's
/// `\r`s and the cursor's moves leave the log, history, files and drains with what the
/// screen had, where hkrun's prefix stays. In place.
fn as_terminal_shows(lines: &mut Vec<u8>) {
    if memchr::memchr3(b'\r', 0x08, 0x1b, lines).is_none() {
        return;
    }
    let mut shown = Vec::with_capacity(lines.len());
    for line in lines.split_inclusive(|&b| b == b'\n') {
        let (text, end) = match line.split_last() {
            Some((b'\n', text)) => (text, &b"\n"[..]),
            _ => (line, &b""[..]),
        };
        shown.extend_from_slice(&super::render::as_terminal_shows(text));
        shown.extend_from_slice(end);
    }
    *lines = shown;
}

/// Pumps `pipe` (a pipe, or hkrun's side of the dyno's `terminal`) until it closes and
/// the dyno's exit is known; `on_exit` gets the status once every line the dyno wrote
/// before exiting is queued (or dropped, see the module). An attached client's view ends
/// with the run: at the dyno's exit, which it is told, once it has what the dyno wrote
/// before (or when the pump ends first).
pub(crate) async fn run(
    label: Arc<Label>,
    log: LogSender,
    pipe: pipe::Receiver,
    terminal: Option<Arc<Tee>>,
    exited: oneshot::Receiver<Exit>,
    on_exit: impl FnOnce(Exit),
) {
    let _close = CloseOnDrop(terminal.clone());
    let mut lines = Lines {
        terminal,
        label,
        log,
        pending: Vec::new(),
        pending_since: None,
        ready: VecDeque::new(),
        dropped: 0,
    };
    let mut buf = vec![0; READ_SIZE];
    let mut exited = Some(exited);
    // The exit, known and not yet reported.
    let mut status = None;
    let mut on_exit = Some(on_exit);
    let mut eof = false;
    loop {
        let waiting = !lines.send_ready();
        if !waiting {
            if let Some(status) = status.take() {
                lines.say_dropped();
                if let Some(report) = on_exit.take() {
                    report(status);
                }
            }
            if eof && exited.is_none() {
                break;
            }
        }
        let front = lines.ready.front().map_or(0, Vec::len);
        let flush_at = lines.pending_since.map(|since| since + PARTIAL_FLUSH);
        tokio::select! {
            got = async { exited.as_mut().expect("guarded by is_some").await }, if exited.is_some() => {
                exited = None;
                let Ok(got) = got else { return };
                // The dyno is gone, so what it wrote is in the pipe: take it all before
                // reporting. Descendants that outlive it may keep writing; bound the drain.
                if !eof {
                    eof = lines.drain(&pipe, &mut buf, 4 * READS_PER_TURN);
                }
                if let Some(tee) = &lines.terminal {
                    tee.exited(got);
                }
                lines.flush();
                status = Some(got);
            }
            permit = lines.log.reserve(front), if waiting => {
                let Some(permit) = permit else { return };
                let first = lines.ready.pop_front().expect("waiting means a chunk");
                lines.log.send(&lines.label, first, permit);
            }
            () = tokio::time::sleep(DROP_CHECK), if waiting => {
                if lines.log.may_drop(exited.is_none()) {
                    lines.drop_ready();
                }
            }
            ready = pipe.readable(), if !eof && !waiting => {
                eof = ready.is_err() || lines.read_ready(&pipe, &mut buf, READS_PER_TURN);
                if eof {
                    lines.flush();
                }
            }
            () = sleep_until(flush_at), if !waiting => {
                // Shown as it is only if the dyno has written nothing more: after a
                // stall of hkrun's own (the budget), the rest of the line is still in
                // the pipe, and the dyno is blocked on it.
                match lines.read_once(&pipe, &mut buf) {
                    Read::Some => {}
                    Read::Nothing => lines.flush(),
                    Read::End => {
                        eof = true;
                        lines.flush();
                    }
                }
            }
        }
    }
    lines.say_dropped();
}

/// Ends an attached client's view when the pump ends, however it ends; refuses new ones.
struct CloseOnDrop(Option<Arc<Tee>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(tee) = &self.0 {
            tee.close();
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;

    use tokio::io::AsyncWriteExt;
    use tokio::time::sleep_until;

    use super::*;
    use crate::logs::{History, LogFormat, Style, Writer};

    #[derive(Clone, Default)]
    struct Out(Arc<Mutex<Vec<u8>>>);

    impl Write for Out {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A pump for `web.1` on a real pipe, writing to `Out`; the dyno never exits.
    struct Pumped {
        pipe: pipe::Sender,
        log: LogSender,
        out: Out,
        _writer: Writer,
        /// Tells the pump the dyno has exited.
        exit: Option<oneshot::Sender<Exit>>,
    }

    impl Pumped {
        fn start() -> Self {
            Self::start_with(None)
        }

        /// As on a terminal, whose bytes `terminal` gives to a `connect` client.
        fn start_with(terminal: Option<Arc<Tee>>) -> Self {
            let style = Style {
                strip_ansi: false,
                format: LogFormat::Default,
                color: false,
                timestamps: false,
                width: 6,
            };
            let out = Out::default();
            let writer = Writer::spawn(style, History::new(), out.clone(), |_| {}).expect("writer");
            let log = writer.sender();
            let (pipe, read) = pipe::pipe().expect("a pipe");
            let (exit, exited) = oneshot::channel();
            let label = Arc::new(Label {
                quiet: false,
                name: "web.1".into(),
                color: None,
            });
            tokio::spawn(run(label, log.clone(), read, terminal, exited, |_| {}));
            Self {
                pipe,
                log,
                out,
                _writer: writer,
                exit: Some(exit),
            }
        }

        /// Writes to the dyno's end of the pipe and lets the pump read it at this instant.
        async fn write(&mut self, bytes: &[u8]) {
            self.pipe.write_all(bytes).await.expect("write");
            settle().await;
        }

        /// What stdout has shown so far, once the writer thread has written what it has.
        fn shown(&self) -> String {
            self.log.flush_blocking(Duration::from_secs(10));
            String::from_utf8(self.out.0.lock().expect("not poisoned").clone()).expect("UTF-8")
        }
    }

    /// Lets every task run on what is ready. Each yield polls the I/O driver without
    /// moving the paused clock; awaiting a timer instead lets the clock jump to it before
    /// the pump has read.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    // The 0.5 s of ARCHITECTURE.md (Log path), written out rather than `PARTIAL_FLUSH`, so
    // a change to that fails here.

    #[tokio::test(start_paused = true)]
    async fn a_partial_line_is_shown_half_a_second_after_its_first_byte() {
        let mut dyno = Pumped::start();
        let start = Instant::now();
        dyno.write(b"par").await;
        sleep_until(start + ms(300)).await;
        // More of the same line does not put it off.
        dyno.write(b"tial").await;
        sleep_until(start + ms(499)).await;
        assert_eq!(dyno.shown(), "");
        sleep_until(start + ms(500)).await;
        settle().await;
        assert_eq!(dyno.shown(), "web.1  | partial\n");
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_starts_with_the_text_after_the_last_newline() {
        let mut dyno = Pumped::start();
        let start = Instant::now();
        dyno.write(b"whole\npar").await;
        assert_eq!(dyno.shown(), "web.1  | whole\n");
        sleep_until(start + ms(200)).await;
        dyno.write(b"tial\nmore").await;
        assert_eq!(dyno.shown(), "web.1  | whole\nweb.1  | partial\n");
        // `more` came at 200 ms.
        sleep_until(start + ms(699)).await;
        assert_eq!(dyno.shown(), "web.1  | whole\nweb.1  | partial\n");
        sleep_until(start + ms(700)).await;
        settle().await;
        assert_eq!(
            dyno.shown(),
            "web.1  | whole\nweb.1  | partial\nweb.1  | more\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_terminals_lines_are_what_it_showed_and_its_client_gets_its_bytes() {
        let tee = Arc::new(Tee::default());
        let (client, mut got) = mpsc::channel(Tee::BOUND);
        assert!(tee.attach(client));
        let mut dyno = Pumped::start_with(Some(tee));
        let start = Instant::now();
        dyno.write(b"a 10%\rb 20%\r\nabc\r").await;
        assert_eq!(dyno.shown(), "web.1  | b 20%\n");
        // A partial line all erased shows nothing when its time comes.
        dyno.write(b"\r\x1b[K").await;
        sleep_until(start + ms(500)).await;
        settle().await;
        dyno.write(b"\x1b[33mdone\x1b[0m\r\n").await;
        assert_eq!(
            dyno.shown(),
            "web.1  | b 20%\nweb.1  | \x1b[33mdone\x1b[0m\n"
        );
        let mut bytes = Vec::new();
        while let Ok(Shown::Output(chunk)) = got.try_recv() {
            bytes.extend(chunk);
        }
        assert_eq!(
            bytes,
            b"a 10%\rb 20%\r\nabc\r\r\x1b[K\x1b[33mdone\x1b[0m\r\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_attached_client_is_told_the_exit_after_what_the_dyno_wrote() {
        let tee = Arc::new(Tee::default());
        // One place for output, one kept for the end.
        let (client, mut got) = mpsc::channel(2);
        assert!(tee.attach(client));
        let mut dyno = Pumped::start_with(Some(Arc::clone(&tee)));
        dyno.write(b"one\r\n").await;
        // The client has not taken `one`: this one it misses.
        dyno.write(b"two\r\n").await;
        let exit = dyno.exit.take().expect("not sent yet");
        exit.send(Exit::Code(3)).expect("the pump waits");
        settle().await;
        assert_eq!(got.recv().await, Some(Shown::Output(b"one\r\n".to_vec())));
        assert_eq!(got.recv().await, Some(Shown::Exited(Exit::Code(3))));
        assert_eq!(got.recv().await, None);
        // The log has both; no client can attach to the run that ended.
        assert_eq!(dyno.shown(), "web.1  | one\nweb.1  | two\n");
        let (late, _) = mpsc::channel(2);
        assert!(!tee.attach(late));
    }
}
