//! The last lines of the log, for `hkrun logs`, and the live stream for `--tail`.
//!
//! The writer thread records every line it writes; the control server reads. A line's
//! text stays in the chunk the pump read it in (shared, not copied), so keeping history
//! costs the writer a queue push per line.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

use super::render::{Clock, Label, Origin};

/// Lines kept for `hkrun logs` (Heroku keeps 1500).
pub const KEEP: usize = 1500;
/// Bytes of text kept at most, so long lines cannot make the history large.
const KEEP_BYTES: usize = 8 * 1024 * 1024;
/// Lines a `--tail` client may fall behind before it misses some.
const TAIL_QUEUE: usize = 4096;

/// One line as the writer wrote it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub clock: Arc<Clock>,
    pub origin: Origin,
    pub label: Arc<Label>,
    chunk: Arc<Vec<u8>>,
    range: Range<usize>,
}

impl Entry {
    /// `range` of `chunk` is the line, without its newline.
    pub fn new(
        clock: Arc<Clock>,
        origin: Origin,
        label: Arc<Label>,
        chunk: Arc<Vec<u8>>,
        range: Range<usize>,
    ) -> Self {
        Self {
            clock,
            origin,
            label,
            chunk,
            range,
        }
    }

    pub fn text(&self) -> &[u8] {
        self.chunk.get(self.range.clone()).unwrap_or_default()
    }
}

/// The shared history.
#[derive(Debug)]
pub struct History {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    ring: VecDeque<Entry>,
    bytes: usize,
    tail: broadcast::Sender<Entry>,
}

impl History {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                ring: VecDeque::with_capacity(KEEP),
                bytes: 0,
                tail: broadcast::channel(TAIL_QUEUE).0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The history holds no invariant a panic could break halfway.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a batch of lines, oldest first.
    pub fn record(&self, entries: impl IntoIterator<Item = Entry>) {
        let mut inner = self.lock();
        let live = inner.tail.receiver_count() > 0;
        for entry in entries {
            if live {
                let _ = inner.tail.send(entry.clone());
            }
            inner.bytes += entry.range.len();
            inner.ring.push_back(entry);
            while inner.ring.len() > KEEP || inner.bytes > KEEP_BYTES {
                let Some(old) = inner.ring.pop_front() else {
                    break;
                };
                inner.bytes -= old.range.len();
            }
        }
    }

    /// The last `n` lines that `keep` accepts, and with `follow` a receiver of every line
    /// after them: nothing missed, nothing twice.
    pub fn since(
        &self,
        n: usize,
        keep: impl Fn(&Entry) -> bool,
        follow: bool,
    ) -> (Vec<Entry>, Option<broadcast::Receiver<Entry>>) {
        let inner = self.lock();
        let mut last: Vec<Entry> = inner
            .ring
            .iter()
            .rev()
            .filter(|e| keep(e))
            .take(n)
            .cloned()
            .collect();
        last.reverse();
        let rx = follow.then(|| inner.tail.subscribe());
        (last, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> Entry {
        let chunk = Arc::new(text.as_bytes().to_vec());
        let range = 0..chunk.len();
        Entry::new(
            Arc::new(Clock {
                hms: "00:00:00".into(),
                rfc3339: "x".into(),
            }),
            Origin::App,
            Arc::new(Label::system()),
            chunk,
            range,
        )
    }

    fn texts(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8_lossy(e.text()).into_owned())
            .collect()
    }

    #[test]
    fn keeps_the_last_lines_and_follows_without_a_gap() {
        let history = History::new();
        history.record((0..KEEP + 10).map(|i| entry(&i.to_string())));
        let (last, rx) = history.since(3, |_| true, true);
        assert_eq!(texts(&last), ["1507", "1508", "1509"]);
        let (all, _) = history.since(usize::MAX, |_| true, false);
        assert_eq!(all.len(), KEEP);
        assert_eq!(texts(&all[..1]), ["10"]);
        history.record([entry("next")]);
        let mut rx = rx.unwrap();
        assert_eq!(texts(&[rx.try_recv().unwrap()]), ["next"]);
        let (odd, _) = history.since(2, |e| e.text().ends_with(b"1"), false);
        assert_eq!(texts(&odd), ["1491", "1501"]);
    }

    #[test]
    fn long_lines_are_bounded_by_bytes() {
        let history = History::new();
        let long = "x".repeat(1024 * 1024);
        history.record((0..20).map(|_| entry(&long)));
        let (all, _) = history.since(usize::MAX, |_| true, false);
        assert_eq!(all.len(), 8);
    }
}
