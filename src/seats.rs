//! The connections a listener holds at once, and which gives up its seat to a newcomer
//! when every seat is taken: the one that has waited longest on its client (for a
//! request, or to take what was written to it), and among streams, for a stream; never
//! one hkrun is working for. Idle or unread connections thus never lock anyone out. The
//! control socket and the HTTP listeners hold theirs this way (ARCHITECTURE.md, Control
//! protocol).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::task::AbortHandle;
use tokio::time::Instant;

/// How many connections a listener holds at once, and how many of those may be streams.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub connections: usize,
    pub streams: usize,
}

/// The seats, and what each connection is waiting for.
pub(crate) struct Seats {
    limits: Limits,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next: u64,
    entries: HashMap<u64, Entry>,
}

struct Entry {
    abort: Option<AbortHandle>,
    /// Since when the connection has waited on its client. `None` while hkrun works for
    /// it (an answer being made, a restart awaited, a stream following).
    waiting: Option<Instant>,
    stream: bool,
}

impl Seats {
    pub(crate) fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            table: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Each change is one map operation: a panic leaves nothing half done.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A seat for a new connection, made by closing the one that has waited longest on
    /// its client if all are taken; `None` if none is waiting.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Seat> {
        let mut table = self.lock();
        if table.entries.len() >= self.limits.connections && !evict(&mut table, false) {
            return None;
        }
        table.next += 1;
        let id = table.next;
        let entry = Entry {
            abort: None,
            waiting: Some(Instant::now()),
            stream: false,
        };
        table.entries.insert(id, entry);
        Some(Seat {
            id,
            seats: Arc::clone(self),
        })
    }

    /// How to close the connection in seat `id` when it must give its seat up.
    pub(crate) fn set_abort(&self, id: u64, abort: AbortHandle) {
        match self.lock().entries.get_mut(&id) {
            Some(entry) => entry.abort = Some(abort),
            // Done already, or made room for before it could be told how to stop.
            None => abort.abort(),
        }
    }

    /// Closes the connection that has waited longest (out of descriptors: make room);
    /// false if none is waiting.
    pub(crate) fn make_room(&self) -> bool {
        evict(&mut self.lock(), false)
    }

    #[cfg(test)]
    fn holds(&self, seat: &Seat) -> bool {
        self.lock().entries.contains_key(&seat.id)
    }
}

/// Closes the connection that has waited longest on its client (among streams only, if
/// asked); false if none is waiting.
fn evict(table: &mut Table, streams_only: bool) -> bool {
    let longest = table
        .entries
        .iter()
        .filter(|(_, e)| e.stream || !streams_only)
        .filter_map(|(&id, e)| Some((e.waiting?, id)))
        .min();
    let Some((_, id)) = longest else {
        return false;
    };
    if let Some(abort) = table.entries.remove(&id).and_then(|e| e.abort) {
        abort.abort();
    }
    true
}

/// One connection's seat; given up when dropped.
pub(crate) struct Seat {
    id: u64,
    seats: Arc<Seats>,
}

impl Seat {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The connection waits on its client from now (`true`), or hkrun works for it.
    pub(crate) fn set_waiting(&self, waiting: bool) {
        if let Some(entry) = self.seats.lock().entries.get_mut(&self.id) {
            entry.waiting = waiting.then(Instant::now);
        }
    }

    /// Takes one of the streams' seats, closing the stream that has waited longest on
    /// its client if all are taken; false if none is waiting.
    pub(crate) fn start_stream(&self) -> bool {
        let mut table = self.seats.lock();
        let streams = table.entries.values().filter(|e| e.stream).count();
        if streams >= self.seats.limits.streams && !evict(&mut table, true) {
            return false;
        }
        match table.entries.get_mut(&self.id) {
            Some(entry) => {
                entry.stream = true;
                true
            }
            None => false,
        }
    }

    pub(crate) fn end_stream(&self) {
        if let Some(entry) = self.seats.lock().entries.get_mut(&self.id) {
            entry.stream = false;
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.seats.lock().entries.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_newcomer_takes_the_place_of_the_longest_waiting() {
        let places = Seats::new(Limits {
            connections: 3,
            streams: 2,
        });
        let first = places.admit().expect("a place");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let second = places.admit().expect("a place");
        let third = places.admit().expect("a place");
        // hkrun works for the first (an answer being made): the second waited longest.
        first.set_waiting(false);
        let fourth = places.admit().expect("room made");
        let held = |p: &Seat| places.holds(p);
        assert!(held(&first) && !held(&second) && held(&third) && held(&fourth));
        // Streams: only a stream makes room for a stream, and only one waiting on its
        // client.
        for p in [&first, &third] {
            assert!(p.start_stream());
            p.set_waiting(false);
        }
        assert!(!fourth.start_stream());
        third.set_waiting(true);
        assert!(fourth.start_stream());
        assert!(!held(&third));
        // hkrun works for all: a newcomer is refused.
        fourth.set_waiting(false);
        let fifth = places.admit().expect("one place free");
        fifth.set_waiting(false);
        assert!(places.admit().is_none());
        drop(first);
        assert!(places.admit().is_some());
    }
}
