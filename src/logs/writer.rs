//! The one writer of stdout: a thread that receives records in order and writes them in
//! batches, so no two lines ever interleave and a stalled reader only holds dynos back.
//!
//! Dyno output is bounded by a byte budget (a semaphore): when stdout stalls, pumps stop
//! reading and the dynos block on their pipes, instead of hkrun's memory growing. hkrun's
//! own events take no budget, so the supervisor never waits on the writer; they have a
//! bound of their own, past which they are counted and dropped.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::history::{Chunk, History};
use super::render::{Clock, Label, Origin, Style};

/// Bytes of dyno output that may wait for stdout at once.
const BUDGET: usize = 8 * 1024 * 1024;
/// A batch is written once it holds this much.
const BATCH: usize = 256 * 1024;
/// How long hkrun's exit waits for stdout to take what is queued.
const FINAL_FLUSH: Duration = Duration::from_secs(2);
/// A write that has not finished in this long means nobody is reading.
pub(crate) const STALLED: Duration = Duration::from_secs(1);
/// Bytes of hkrun's own lines that may wait for stdout at once: a crash loop under a
/// stalled stdout must not grow hkrun either.
const EVENT_BUDGET: usize = 1024 * 1024;

enum Record {
    /// Whole lines, each ending in `\n`, from one dyno.
    Output {
        label: Arc<Label>,
        lines: Vec<u8>,
        _permit: OwnedSemaphorePermit,
    },
    /// One line in hkrun's own words; its length counts toward `EVENT_BUDGET`.
    Event { label: Arc<Label>, text: String },
    /// Answered once everything before it is written.
    Flush(std::sync::mpsc::Sender<()>),
}

/// A cheap, cloneable way to hand lines to the writer.
#[derive(Clone)]
pub(crate) struct LogSender {
    tx: UnboundedSender<Record>,
    budget: Arc<Semaphore>,
    writing: Arc<WriteClock>,
    events: Arc<EventCount>,
    /// The app is stopping: output a stalled stdout holds back may be dropped.
    stopping: Arc<AtomicBool>,
    output: Arc<OutputCount>,
}

/// Lines and bytes of output written (or kept, for a `--quiet` type) per dyno name, for
/// `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct OutputCount(std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>);

impl OutputCount {
    fn add(&self, name: &str, lines: usize, bytes: usize) {
        let mut counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The name is copied once per dyno, not once per batch: this runs on every write.
        if !counts.contains_key(name) {
            counts.insert(name.to_owned(), (0, 0));
        }
        if let Some(entry) = counts.get_mut(name) {
            entry.0 += lines as u64;
            entry.1 += bytes as u64;
        }
    }

    /// A dyno that left the formation: its counts go with it (a one-off's name is never
    /// seen again).
    pub(crate) fn forget(&self, name: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
    }

    /// `(name, lines, bytes)` for each name, in name order.
    pub(crate) fn all(&self) -> Vec<(String, u64, u64)> {
        let counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut all: Vec<_> = counts
            .iter()
            .map(|(n, &(l, b))| (n.clone(), l, b))
            .collect();
        all.sort();
        all
    }
}

/// hkrun's own lines waiting for stdout, and those dropped for want of room.
#[derive(Debug, Default)]
struct EventCount {
    waiting: AtomicUsize,
    dropped: AtomicU64,
}

/// When the writer's current `write` began, so others can tell a stalled stdout.
#[derive(Debug)]
struct WriteClock {
    origin: Instant,
    /// Milliseconds since `origin` when the current write began, plus one; 0 when idle.
    since: AtomicU64,
}

impl WriteClock {
    fn begin(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.since.store(ms + 1, Ordering::Relaxed);
    }

    fn end(&self) {
        self.since.store(0, Ordering::Relaxed);
    }

    fn stalled_for(&self) -> Duration {
        match self.since.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            began => self
                .origin
                .elapsed()
                .saturating_sub(Duration::from_millis(began - 1)),
        }
    }
}

impl LogSender {
    /// Lines and bytes of output per dyno so far.
    pub(crate) fn output_count(&self) -> &OutputCount {
        &self.output
    }

    /// Queues whole lines (each ending in `\n`), waiting while the budget is spent.
    /// Returns false once the writer is gone. What the pumps do, in one call, for tests.
    #[cfg(test)]
    pub(crate) async fn output(&self, label: &Arc<Label>, lines: Vec<u8>) -> bool {
        match self.reserve(lines.len()).await {
            Some(permit) => self.send(label, lines, permit),
            None => false,
        }
    }

    /// Room for `len` bytes of output, once the budget has it; `None` once the writer is
    /// gone. Cancel-safe: dropping the future gives nothing up.
    pub(crate) async fn reserve(&self, len: usize) -> Option<Permit> {
        Arc::clone(&self.budget)
            .acquire_many_owned(permits(len))
            .await
            .ok()
            .map(Permit)
    }

    /// Room for `len` bytes of output if the budget has it now.
    pub(crate) fn try_reserve(&self, len: usize) -> Option<Permit> {
        Arc::clone(&self.budget)
            .try_acquire_many_owned(permits(len))
            .ok()
            .map(Permit)
    }

    /// Queues whole lines (each ending in `\n`) in the room `permit` holds. Returns false
    /// once the writer is gone.
    pub(crate) fn send(&self, label: &Arc<Label>, lines: Vec<u8>, permit: Permit) -> bool {
        self.tx
            .send(Record::Output {
                label: Arc::clone(label),
                lines,
                _permit: permit.0,
            })
            .is_ok()
    }

    /// Queues one of hkrun's own lines; never waits. Past `EVENT_BUDGET` of lines waiting
    /// for stdout, the line is counted and dropped, and the count is logged once stdout
    /// takes lines again.
    pub(crate) fn event(&self, label: &Arc<Label>, text: String) {
        let len = text.len();
        let waiting = self.events.waiting.fetch_add(len, Ordering::Relaxed);
        if waiting + len > EVENT_BUDGET {
            self.events.waiting.fetch_sub(len, Ordering::Relaxed);
            self.events.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self
            .tx
            .send(Record::Event {
                label: Arc::clone(label),
                text,
            })
            .is_err()
        {
            self.events.waiting.fetch_sub(len, Ordering::Relaxed);
        }
    }

    /// Waits (blocking) until everything queued so far is written, or for `limit` when
    /// stdout does not take it (a reader that never reads).
    pub(crate) fn flush_blocking(&self, limit: Duration) {
        let (done, wait) = std::sync::mpsc::channel();
        if self.tx.send(Record::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(limit);
        }
    }

    /// Whether stdout has not taken a write for `longer_than`: a reader that stopped
    /// reading, or never reads.
    pub(crate) fn stalled(&self, longer_than: Duration) -> bool {
        self.writing.stalled_for() > longer_than
    }

    /// The app is stopping (`Effect::OutputMayBeDropped`): from now on output that a
    /// stalled stdout holds back may be dropped (`may_drop`), so no dyno's exit waits for a
    /// reader that never reads.
    pub(crate) fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Whether output waiting for the budget may be dropped rather than wait: stdout has
    /// taken nothing for `STALLED`, and the dyno has exited (`exited`) or the app is
    /// stopping. A running dyno is held back instead, so a paused terminal (Ctrl-S)
    /// loses nothing.
    pub(crate) fn may_drop(&self, exited: bool) -> bool {
        (exited || self.stopping.load(Ordering::Relaxed)) && self.stalled(STALLED)
    }
}

/// Room in the budget for one chunk of output.
pub(crate) struct Permit(OwnedSemaphorePermit);

/// A chunk bigger than the whole budget takes all of it.
fn permits(len: usize) -> u32 {
    u32::try_from(len.min(BUDGET)).unwrap_or(u32::MAX)
}

/// The writer thread and the way to reach it.
pub(crate) struct Writer {
    sender: LogSender,
    thread: JoinHandle<()>,
}

impl Writer {
    /// Starts the writer on `out`. `on_closed` runs once if `out` stops taking bytes
    /// (EPIPE and the like); what follows is read and dropped so no dyno blocks.
    pub(crate) fn spawn(
        style: Style,
        history: Arc<History>,
        out: impl Write + Send + 'static,
        on_closed: impl FnOnce(io::Error) + Send + 'static,
    ) -> io::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Semaphore::new(BUDGET));
        let writing = Arc::new(WriteClock {
            origin: Instant::now(),
            since: AtomicU64::new(0),
        });
        let clock = Arc::clone(&writing);
        let events = Arc::new(EventCount::default());
        let counted = Arc::clone(&events);
        let output = Arc::new(OutputCount::default());
        let counted_output = Arc::clone(&output);
        let thread = std::thread::Builder::new()
            .name("hkrun-log".into())
            .spawn(move || {
                write_loop(
                    &style,
                    &history,
                    &clock,
                    (&counted, &counted_output),
                    rx,
                    out,
                    on_closed,
                )
            })?;
        Ok(Self {
            sender: LogSender {
                tx,
                budget,
                writing,
                events,
                stopping: Arc::new(AtomicBool::new(false)),
                output,
            },
            thread,
        })
    }

    pub(crate) fn sender(&self) -> LogSender {
        self.sender.clone()
    }

    /// Writes what is queued and stops; senders still held elsewhere are closed off.
    pub(crate) fn finish(self) {
        let Self { sender, thread } = self;
        sender.budget.close();
        // A stdout that has taken nothing for a while will not take the rest either.
        if !sender.stalled(STALLED) {
            sender.flush_blocking(FINAL_FLUSH);
        }
        drop(sender);
        // Remaining clones (pumps of processes that are gone) end on their own; the
        // flush above already wrote everything they sent.
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

/// The most written at once, so the stall clock measures the time since stdout last took
/// something, not since a batch began: a slow reader (a slow link, a serial console) that
/// takes a batch in more than `STALLED` is not a stalled one.
const SLICE: usize = 64 * 1024;

/// Writes `buf` in slices of whole lines of about `SLICE` bytes, starting the clock anew
/// for each.
fn write_in_slices(out: &mut impl Write, buf: &[u8], writing: &WriteClock) -> io::Result<()> {
    let mut rest = buf;
    while !rest.is_empty() {
        let end = if rest.len() <= SLICE {
            rest.len()
        } else {
            // Up to the last newline in the slice; a longer line goes whole.
            memchr::memrchr(b'\n', &rest[..SLICE])
                .or_else(|| memchr::memchr(b'\n', rest))
                .map_or(rest.len(), |at| at + 1)
        };
        writing.begin();
        out.write_all(&rest[..end])?;
        rest = &rest[end..];
    }
    writing.begin();
    out.flush()
}

fn write_loop(
    style: &Style,
    history: &History,
    writing: &WriteClock,
    (events, output): (&EventCount, &OutputCount),
    mut rx: UnboundedReceiver<Record>,
    mut out: impl Write,
    on_closed: impl FnOnce(io::Error),
) {
    let mut style = style.clone();
    let mut on_closed = Some(on_closed);
    let mut buf = Vec::with_capacity(BATCH * 2);
    let mut held = Vec::new();
    let mut flushes = Vec::new();
    let mut chunks = Vec::new();
    let system = Arc::new(Label::system());
    while let Some(first) = rx.blocking_recv() {
        let clock = Arc::new(Clock::now());
        let mut next = Some(first);
        let dropped = events.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let text = format!("{dropped} of hkrun's own lines dropped: stdout was not read");
            style.render(&clock, Origin::Hkrun, &system, text.as_bytes(), &mut buf);
        }
        while let Some(record) = next.take() {
            match record {
                Record::Output {
                    label,
                    lines,
                    _permit,
                } => {
                    if !label.quiet {
                        style.widen_for(&label.name);
                    }
                    // Every line ends in `\n` (the pump guarantees it): memchr finds
                    // them a word at a time, the hot path of the log.
                    let mut start = 0;
                    let mut count = 0;
                    for end in memchr::memchr_iter(b'\n', &lines) {
                        if !label.quiet {
                            style.render(&clock, Origin::App, &label, &lines[start..end], &mut buf);
                        }
                        start = end + 1;
                        count += 1;
                    }
                    output.add(&label.name, count, lines.len());
                    let text = Arc::new(lines);
                    chunks.push(Chunk::new(
                        Arc::clone(&clock),
                        Origin::App,
                        label,
                        text,
                        count,
                    ));
                    held.push(_permit);
                }
                Record::Event { label, text } => {
                    events.waiting.fetch_sub(text.len(), Ordering::Relaxed);
                    style.widen_for(&label.name);
                    style.render(&clock, Origin::Hkrun, &label, text.as_bytes(), &mut buf);
                    let mut text = text.into_bytes();
                    text.push(b'\n');
                    chunks.push(Chunk::new(
                        Arc::clone(&clock),
                        Origin::Hkrun,
                        label,
                        Arc::new(text),
                        1,
                    ));
                }
                Record::Flush(done) => flushes.push(done),
            }
            if buf.len() < BATCH && flushes.is_empty() {
                next = rx.try_recv().ok();
            }
        }
        // Before the write: `hkrun logs` must not wait on a stalled stdout.
        history.record(chunks.drain(..));
        if on_closed.is_some() {
            let written = write_in_slices(&mut out, &buf, writing);
            writing.end();
            if let Err(err) = written {
                if let Some(notify) = on_closed.take() {
                    notify(err);
                }
            }
        }
        buf.clear();
        held.clear();
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::render::LogFormat;
    use std::sync::Mutex;

    /// The default format, no colour, no timestamps.
    fn plain(width: usize) -> Style {
        Style {
            strip_ansi: false,
            format: LogFormat::Default,
            color: false,
            timestamps: false,
            width,
        }
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn events_past_their_budget_are_counted_not_queued() {
        // A writer that never takes a line: stdout stalled for good.
        struct Stuck;
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                // `park` may return at any time: never take a byte.
                loop {
                    std::thread::park();
                }
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let style = plain(6);
        let writer = Writer::spawn(style, History::new(), Stuck, |_| {}).unwrap();
        let log = writer.sender();
        let system = Arc::new(Label::system());
        let line = "x".repeat(1000);
        for _ in 0..5000 {
            log.event(&system, line.clone());
        }
        let waiting = log.events.waiting.load(Ordering::Relaxed);
        let dropped = log.events.dropped.load(Ordering::Relaxed);
        // What the writer took before it blocked depends on scheduling; what waits for it
        // never passes the bound, and the rest is counted.
        assert!(waiting <= EVENT_BUDGET, "{waiting}");
        assert!(dropped > 0, "{dropped}");
    }

    #[tokio::test]
    async fn writes_records_in_order() {
        let out = Shared::default();
        let style = plain(6);
        let writer = Writer::spawn(style, History::new(), out.clone(), |_| {}).unwrap();
        let log = writer.sender();
        let web = Arc::new(Label {
            quiet: false,
            name: "web.1".into(),
            color: Some(0),
        });
        assert!(log.output(&web, b"a\nb\n".to_vec()).await);
        log.event(&Arc::new(Label::system()), "done".into());
        tokio::task::spawn_blocking(move || writer.finish())
            .await
            .unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "web.1  | a\nweb.1  | b\nsystem | done\n");
    }

    #[tokio::test]
    async fn a_longer_name_widens_the_padding_from_then_on() {
        let out = Shared::default();
        let style = plain(8);
        let writer = Writer::spawn(style, History::new(), out.clone(), |_| {}).unwrap();
        let log = writer.sender();
        let label = |name: &str| {
            Arc::new(Label {
                quiet: false,
                name: name.into(),
                color: Some(0),
            })
        };
        assert!(log.output(&label("worker.1"), b"a\n".to_vec()).await);
        assert!(log.output(&label("worker.10"), b"b\n".to_vec()).await);
        assert!(log.output(&label("worker.1"), b"c\n".to_vec()).await);
        tokio::task::spawn_blocking(move || writer.finish())
            .await
            .unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "worker.1 | a\nworker.10 | b\nworker.1  | c\n");
    }

    #[test]
    fn a_slow_reader_is_not_a_stalled_one() {
        // Takes 32 KiB every 100 ms: a 256 KiB batch takes 0.8 s, 1 MiB takes 3.2 s.
        struct Slow;
        impl Write for Slow {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                std::thread::sleep(Duration::from_millis(100));
                Ok(buf.len().min(32 * 1024))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let style = plain(6);
        let writer = Writer::spawn(style, History::new(), Slow, |_| {}).unwrap();
        let log = writer.sender();
        let web = Arc::new(Label {
            quiet: false,
            name: "web.1".into(),
            color: Some(0),
        });
        let line = format!("{}\n", "x".repeat(99));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            for _ in 0..10 {
                assert!(log.output(&web, line.repeat(1000).into_bytes()).await);
            }
        });
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            assert!(!log.stalled(STALLED), "a slow reader counted as stalled");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
