//! The last lines of the log, for `hkrun logs`, the live stream for `--tail`, and a
//! queue bounded by bytes for a follower that must keep every line (`--log-dir`).
//!
//! The writer thread records what it writes as chunks: whole lines of one dyno as the
//! pump read them (shared, not copied), or one of hkrun's events. Keeping history costs
//! the writer one queue push per chunk, not per line; lines are split out only when a
//! client asks.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use super::render::{Clock, Label, Origin};

/// Lines kept for `hkrun logs` (Heroku keeps 1500).
pub(crate) const KEEP: usize = 1500;
/// Bytes of text kept at most, so long lines cannot make the history large.
const KEEP_BYTES: usize = 8 * 1024 * 1024;
/// Chunks a `--tail` client may fall behind before it misses some.
const TAIL_QUEUE: usize = 1024;
/// How long `finish` waits for `--tail` clients to take the last lines: one that does
/// not read cannot keep hkrun from exiting.
const TAIL_DRAIN: Duration = Duration::from_secs(2);

/// Whole lines from one source, each ending in `\n`, as the writer wrote them.
#[derive(Clone, Debug)]
pub(crate) struct Chunk {
    pub clock: Arc<Clock>,
    pub origin: Origin,
    pub label: Arc<Label>,
    text: Arc<Vec<u8>>,
    lines: usize,
}

impl Chunk {
    /// `text` holds `lines` lines, each ending in `\n`.
    pub(crate) fn new(
        clock: Arc<Clock>,
        origin: Origin,
        label: Arc<Label>,
        text: Arc<Vec<u8>>,
        lines: usize,
    ) -> Self {
        Self {
            clock,
            origin,
            label,
            text,
            lines,
        }
    }

    /// How many lines it holds.
    pub(crate) fn line_count(&self) -> usize {
        self.lines
    }

    /// Each line, without its newline.
    pub(crate) fn lines(&self) -> impl DoubleEndedIterator<Item = &[u8]> {
        // `a\nb\n` is two lines; an empty chunk is none.
        let text = self.text.strip_suffix(b"\n");
        text.map(|t| t.split(|&b| b == b'\n')).into_iter().flatten()
    }
}

/// The shared history.
#[derive(Debug)]
pub(crate) struct History {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    ring: VecDeque<Chunk>,
    lines: usize,
    bytes: usize,
    /// `None` once the log has ended (`finish`): followers then see the stream close.
    tail: Option<broadcast::Sender<Chunk>>,
    /// Each `Follow` holds a clone; `finish` waits for all of them to be dropped.
    followers: Option<mpsc::Sender<()>>,
    gone: Option<mpsc::Receiver<()>>,
    /// The `Queue`s' shared ends, each given every chunk.
    queues: Vec<Arc<QueueShared>>,
}

/// A `--tail` client's stream of new chunks; it ends (`Closed`) once the log has, after
/// every chunk recorded before.
#[derive(Debug)]
pub(crate) struct Follow {
    rx: broadcast::Receiver<Chunk>,
    _held: Option<mpsc::Sender<()>>,
}

impl Follow {
    pub(crate) async fn recv(&mut self) -> Result<Chunk, broadcast::error::RecvError> {
        self.rx.recv().await
    }

    /// What `recv` would give now, without waiting; `None` when nothing is waiting.
    pub(crate) fn ready(&mut self) -> Option<Result<Chunk, broadcast::error::RecvError>> {
        use broadcast::error::{RecvError, TryRecvError};
        match self.rx.try_recv() {
            Ok(chunk) => Some(Ok(chunk)),
            Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
            Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
            Err(TryRecvError::Empty) => None,
        }
    }
}

/// A follower's own queue of chunks, bounded by bytes rather than by a count of chunks
/// as the `--tail` broadcast is: a batch of the writer can hold thousands of one-line
/// chunks, and a follower that must keep every line (the log files) would miss them
/// whenever it is not scheduled for a moment. What does not fit is counted in lines.
#[derive(Debug)]
pub(crate) struct Queue {
    shared: Arc<QueueShared>,
    _held: Option<mpsc::Sender<()>>,
}

/// What a `Queue` gives, in the order recorded.
#[derive(Debug)]
pub(crate) enum Queued {
    Chunk(Chunk),
    /// Lines dropped here because the queue was full.
    Missed(u64),
}

#[derive(Debug)]
struct QueueShared {
    state: Mutex<QueueState>,
    ready: Condvar,
    /// Bytes of text (and chunks' own size) held at most.
    limit: usize,
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<Queued>,
    bytes: usize,
    ended: bool,
}

impl QueueShared {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A queue holds no invariant a panic could break halfway.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl QueueState {
    fn push(&mut self, chunk: &Chunk, limit: usize) {
        // The chunk, and its text's `Arc` and allocation.
        let size = chunk.text.len() + std::mem::size_of::<Chunk>() + 64;
        if self.bytes + size <= limit {
            self.bytes += size;
            self.items.push_back(Queued::Chunk(chunk.clone()));
            return;
        }
        let lines = chunk.lines as u64;
        match self.items.back_mut() {
            Some(Queued::Missed(n)) => *n += lines,
            _ => self.items.push_back(Queued::Missed(lines)),
        }
    }
}

impl Queue {
    /// Waits for what was recorded since the last call and moves it into `into`; false
    /// once the log has ended and everything recorded before has been taken.
    pub(crate) fn take(&self, into: &mut VecDeque<Queued>) -> bool {
        let mut state = self.shared.lock();
        while state.items.is_empty() && !state.ended {
            state = self
                .shared
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.items.is_empty() {
            return false;
        }
        if into.is_empty() {
            std::mem::swap(into, &mut state.items);
        } else {
            into.append(&mut state.items);
        }
        state.bytes = 0;
        true
    }
}

impl History {
    pub(crate) fn new() -> Arc<Self> {
        let (followers, gone) = mpsc::channel(1);
        Arc::new(Self {
            inner: Mutex::new(Inner {
                ring: VecDeque::new(),
                lines: 0,
                bytes: 0,
                tail: Some(broadcast::channel(TAIL_QUEUE).0),
                followers: Some(followers),
                gone: Some(gone),
                queues: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The history holds no invariant a panic could break halfway.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a batch of chunks, oldest first.
    pub(crate) fn record(&self, chunks: impl IntoIterator<Item = Chunk>) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let live = inner
            .tail
            .as_ref()
            .filter(|t| t.receiver_count() > 0)
            .cloned();
        // A queue whose follower has gone is let go.
        inner.queues.retain(|q| Arc::strong_count(q) > 1);
        let mut queued: Vec<_> = inner.queues.iter().map(|q| (q.lock(), q.limit)).collect();
        for chunk in chunks {
            if let Some(tail) = &live {
                let _ = tail.send(chunk.clone());
            }
            for (state, limit) in &mut queued {
                state.push(&chunk, *limit);
            }
            inner.lines += chunk.lines;
            inner.bytes += chunk.text.len();
            inner.ring.push_back(chunk);
            // Drop the oldest chunk while what remains still holds enough lines.
            while let Some(old) = inner.ring.front() {
                let (lines, bytes) = (old.lines, old.text.len());
                if inner.lines - lines < KEEP && inner.bytes <= KEEP_BYTES {
                    break;
                }
                inner.lines -= lines;
                inner.bytes -= bytes;
                inner.ring.pop_front();
            }
        }
        drop(queued);
        for queue in &inner.queues {
            queue.ready.notify_one();
        }
    }

    /// A queue of every chunk recorded from now on, holding at most `limit` bytes not yet
    /// taken; `None` once the log has ended. `finish` waits for it as for a `Follow`.
    pub(crate) fn queue(&self, limit: usize) -> Option<Queue> {
        let mut inner = self.lock();
        inner.tail.as_ref()?;
        let shared = Arc::new(QueueShared {
            state: Mutex::new(QueueState::default()),
            ready: Condvar::new(),
            limit,
        });
        inner.queues.push(Arc::clone(&shared));
        Some(Queue {
            shared,
            _held: inner.followers.clone(),
        })
    }

    /// The chunks holding the last `n` lines that `keep` accepts (the first may hold more;
    /// `last_lines` trims), and with `follow` a receiver of every chunk after them:
    /// nothing missed, nothing twice.
    pub(crate) fn since(
        &self,
        n: usize,
        keep: impl Fn(&Chunk) -> bool,
        follow: bool,
    ) -> (Vec<Chunk>, Option<Follow>) {
        let inner = self.lock();
        let mut found = 0;
        let mut chunks = Vec::new();
        for chunk in inner.ring.iter().rev() {
            if found >= n {
                break;
            }
            if keep(chunk) {
                found += chunk.lines;
                chunks.push(chunk.clone());
            }
        }
        chunks.reverse();
        // After the end, a follower gets the stream already closed.
        let rx = follow.then(|| Follow {
            rx: match &inner.tail {
                Some(tail) => tail.subscribe(),
                None => broadcast::channel(1).1,
            },
            _held: inner.followers.clone(),
        });
        (chunks, rx)
    }

    /// Ends the log once the last chunk is recorded: every follower's stream closes after
    /// what it has not yet taken, and this returns once all have hung up (for at most
    /// `TAIL_DRAIN`), so `--tail` clients get every line up to hkrun's exit.
    pub(crate) async fn finish(&self) {
        let gone = {
            let mut inner = self.lock();
            inner.tail = None;
            inner.followers = None;
            for queue in inner.queues.drain(..) {
                queue.lock().ended = true;
                queue.ready.notify_one();
            }
            inner.gone.take()
        };
        if let Some(mut gone) = gone {
            // `None` once every follower's sender is dropped.
            let _ = tokio::time::timeout(TAIL_DRAIN, gone.recv()).await;
        }
    }
}

/// The last `n` lines of `chunks`, each with its chunk.
pub(crate) fn last_lines(chunks: &[Chunk], n: usize) -> Vec<(&Chunk, &[u8])> {
    let mut lines: Vec<(&Chunk, &[u8])> = chunks
        .iter()
        .rev()
        .flat_map(|c| c.lines().rev().map(move |l| (c, l)))
        .take(n)
        .collect();
    lines.reverse();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(name: &str, lines: &[&str]) -> Chunk {
        let mut text = Vec::new();
        for line in lines {
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
        }
        Chunk::new(
            Arc::new(Clock {
                hms: "00:00:00".into(),
                rfc3339: "x".into(),
            }),
            Origin::App,
            Arc::new(Label {
                quiet: false,
                name: name.into(),
                color: None,
            }),
            Arc::new(text),
            lines.len(),
        )
    }

    fn texts(lines: &[(&Chunk, &[u8])]) -> Vec<String> {
        lines
            .iter()
            .map(|(_, l)| String::from_utf8_lossy(l).into_owned())
            .collect()
    }

    #[test]
    fn keeps_the_last_lines_and_follows_without_a_gap() {
        let history = History::new();
        let numbers: Vec<String> = (0..KEEP + 10).map(|i| i.to_string()).collect();
        for pair in numbers.chunks(2) {
            let refs: Vec<&str> = pair.iter().map(String::as_str).collect();
            history.record([chunk("a.1", &refs)]);
        }
        let (chunks, rx) = history.since(3, |_| true, true);
        assert_eq!(texts(&last_lines(&chunks, 3)), ["1507", "1508", "1509"]);
        let (all, _) = history.since(usize::MAX, |_| true, false);
        let all = last_lines(&all, usize::MAX);
        assert_eq!(all.len(), KEEP);
        assert_eq!(texts(&all[..1]), ["10"]);
        history.record([chunk("b.1", &["next"])]);
        let mut rx = rx.unwrap();
        let next = rx.ready().unwrap().unwrap();
        assert_eq!(next.lines().collect::<Vec<_>>(), [b"next"]);
        let (b, _) = history.since(5, |c| c.label.name == "b.1", false);
        assert_eq!(texts(&last_lines(&b, 5)), ["next"]);
    }

    #[test]
    fn a_queue_keeps_every_chunk_it_has_room_for_and_counts_the_lines_of_the_rest() {
        let history = History::new();
        let size = |lines: &[&str]| {
            lines.iter().map(|l| l.len() + 1).sum::<usize>() + std::mem::size_of::<Chunk>() + 64
        };
        let queue = history.queue(size(&["one"]) + size(&["two"])).unwrap();
        history.record([
            chunk("a.1", &["one"]),
            chunk("a.1", &["too", "big"]),
            chunk("a.1", &["x"; 3]),
        ]);
        history.record([chunk("b.1", &["two"])]);
        let mut got = VecDeque::new();
        assert!(queue.take(&mut got));
        let seen: Vec<String> = got
            .drain(..)
            .map(|q| match q {
                Queued::Chunk(c) => texts(&last_lines(&[c], 9)).join(","),
                Queued::Missed(n) => format!("missed {n}"),
            })
            .collect();
        assert_eq!(seen, ["one", "missed 5", "two"]);
        // Taken, it has room again.
        history.record([chunk("a.1", &["three"])]);
        history.record([chunk("a.1", &["four"])]);
        assert!(queue.take(&mut got));
        assert_eq!(got.len(), 2);
        got.clear();
        // `finish` waits for the queue's follower as for a `Follow`'s.
        let finished = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            runtime.block_on(history.finish());
        });
        assert!(!queue.take(&mut got));
        drop(queue);
        finished.join().unwrap();
    }

    #[test]
    fn empty_lines_count() {
        let c = chunk("a.1", &["", "x", ""]);
        assert_eq!(c.lines().count(), 3);
        assert_eq!(chunk("a.1", &[]).lines().count(), 0);
    }

    #[test]
    fn long_lines_are_bounded_by_bytes() {
        let history = History::new();
        let long = "x".repeat(1024 * 1024);
        for _ in 0..20 {
            history.record([chunk("a.1", &[&long])]);
        }
        let (all, _) = history.since(usize::MAX, |_| true, false);
        assert_eq!(all.len(), 7);
    }
}
