//! The last lines of the log, for `hkrun logs`, and the live stream for `--tail`.
//!
//! The writer thread records what it writes as chunks: whole lines of one dyno as the
//! pump read them (shared, not copied), or one of hkrun's events. Keeping history costs
//! the writer one queue push per chunk, not per line; lines are split out only when a
//! client asks.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use super::render::{Clock, Label, Origin};

/// Lines kept for `hkrun logs` (Heroku keeps 1500).
pub const KEEP: usize = 1500;
/// Bytes of text kept at most, so long lines cannot make the history large.
const KEEP_BYTES: usize = 8 * 1024 * 1024;
/// Chunks a `--tail` client may fall behind before it misses some.
const TAIL_QUEUE: usize = 1024;
/// How long `finish` waits for `--tail` clients to take the last lines: one that does
/// not read cannot keep hkrun from exiting.
const TAIL_DRAIN: Duration = Duration::from_secs(2);

/// Whole lines from one source, each ending in `\n`, as the writer wrote them.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub clock: Arc<Clock>,
    pub origin: Origin,
    pub label: Arc<Label>,
    text: Arc<Vec<u8>>,
    lines: usize,
}

impl Chunk {
    /// `text` holds `lines` lines, each ending in `\n`.
    pub fn new(
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
    pub fn line_count(&self) -> usize {
        self.lines
    }

    /// Each line, without its newline.
    pub fn lines(&self) -> impl DoubleEndedIterator<Item = &[u8]> {
        // `a\nb\n` is two lines; an empty chunk is none.
        let text = self.text.strip_suffix(b"\n");
        text.map(|t| t.split(|&b| b == b'\n')).into_iter().flatten()
    }
}

/// The shared history.
#[derive(Debug)]
pub struct History {
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
}

/// A `--tail` client's stream of new chunks; it ends (`Closed`) once the log has, after
/// every chunk recorded before.
#[derive(Debug)]
pub struct Follow {
    rx: broadcast::Receiver<Chunk>,
    _held: Option<mpsc::Sender<()>>,
}

impl Follow {
    pub async fn recv(&mut self) -> Result<Chunk, broadcast::error::RecvError> {
        self.rx.recv().await
    }

    /// What `recv` would give now, without waiting; `None` when nothing is waiting.
    pub fn ready(&mut self) -> Option<Result<Chunk, broadcast::error::RecvError>> {
        use broadcast::error::{RecvError, TryRecvError};
        match self.rx.try_recv() {
            Ok(chunk) => Some(Ok(chunk)),
            Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
            Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
            Err(TryRecvError::Empty) => None,
        }
    }

    /// `recv` for a thread outside the runtime (the log files' writer).
    pub fn blocking_recv(&mut self) -> Result<Chunk, broadcast::error::RecvError> {
        self.rx.blocking_recv()
    }
}

impl History {
    pub fn new() -> Arc<Self> {
        let (followers, gone) = mpsc::channel(1);
        Arc::new(Self {
            inner: Mutex::new(Inner {
                ring: VecDeque::new(),
                lines: 0,
                bytes: 0,
                tail: Some(broadcast::channel(TAIL_QUEUE).0),
                followers: Some(followers),
                gone: Some(gone),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The history holds no invariant a panic could break halfway.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a batch of chunks, oldest first.
    pub fn record(&self, chunks: impl IntoIterator<Item = Chunk>) {
        let mut inner = self.lock();
        let live = inner
            .tail
            .as_ref()
            .filter(|t| t.receiver_count() > 0)
            .cloned();
        for chunk in chunks {
            if let Some(tail) = &live {
                let _ = tail.send(chunk.clone());
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
    }

    /// The chunks holding the last `n` lines that `keep` accepts (the first may hold more;
    /// `last_lines` trims), and with `follow` a receiver of every chunk after them:
    /// nothing missed, nothing twice.
    pub fn since(
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
    pub async fn finish(&self) {
        let gone = {
            let mut inner = self.lock();
            inner.tail = None;
            inner.followers = None;
            inner.gone.take()
        };
        if let Some(mut gone) = gone {
            // `None` once every follower's sender is dropped.
            let _ = tokio::time::timeout(TAIL_DRAIN, gone.recv()).await;
        }
    }
}

/// The last `n` lines of `chunks`, each with its chunk.
pub fn last_lines(chunks: &[Chunk], n: usize) -> Vec<(&Chunk, &[u8])> {
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
