//! The router's places: how many client connections it holds at once, and which one gives
//! up its place when all are taken. Each connection costs hkrun two file descriptors (the
//! client's and the dyno's), so the places are what the descriptor limit leaves after a
//! reserve for hkrun's own needs (dynos' pipes, the control socket): idle clients can
//! never take what spawning a dyno or answering `hkrun ps` needs. When every place is
//! taken, the connection that has carried nothing for longest gives its place to the
//! newcomer, as the control socket's clients do (ARCHITECTURE.md, Control protocol);
//! only when every one carried something within `BUSY` is the newcomer closed.
//!
//! A connection that carries nothing either way for `IDLE` is closed, as Heroku's router
//! closes one after 55 seconds without data.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Heroku's router: a connection with no data either way for this long is closed.
pub(super) const IDLE: Duration = Duration::from_secs(55);
/// A connection that carried data this recently is not given up for a newcomer.
const BUSY: Duration = Duration::from_secs(1);
/// File descriptors kept for hkrun's own needs, at least.
const RESERVE: u64 = 512;

/// How many connections the router may hold with `limit` file descriptors: two each,
/// after a reserve of a quarter (512 at least).
pub(super) fn for_limit(limit: u64) -> usize {
    let reserve = RESERVE.max(limit / 4);
    usize::try_from(limit.saturating_sub(reserve) / 2)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// The places, and each holder's last activity.
pub(super) struct Places {
    max: usize,
    started: Instant,
    next: AtomicU64,
    held: Mutex<HashMap<u64, Arc<Place>>>,
}

/// One connection's place: when it last carried data, and the call to give it up.
pub(super) struct Place {
    /// Milliseconds since `Places::started`.
    active: AtomicU64,
    evicted: Notify,
    /// Requests on it waiting for their dyno (`--router http`): while one waits, the
    /// connection is not idle, however long the dyno takes (`--request-timeout 0`).
    waiting: AtomicU64,
}

/// A request waiting for its dyno, counted on its connection's place while it lives.
pub(super) struct Waiting(Arc<Place>);

impl Waiting {
    pub(super) fn on(place: &Arc<Place>) -> Self {
        place.waiting.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(place))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A place held: given back when dropped.
pub(super) struct Held {
    places: Arc<Places>,
    id: u64,
    pub place: Arc<Place>,
}

impl Held {
    pub(super) fn places(&self) -> &Places {
        &self.places
    }

    /// `stream` marking this place active as it carries data.
    pub(super) fn watch<S>(&self, stream: S) -> Watched<S> {
        Watched {
            inner: stream,
            places: Arc::clone(&self.places),
            place: Arc::clone(&self.place),
            read: 0,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.places.lock().remove(&self.id);
    }
}

impl Places {
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            started: Instant::now(),
            next: AtomicU64::new(0),
            held: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Place>>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A place for a new connection: a free one, or the place of the connection idle
    /// longest (told to close); `None` when all are busy.
    pub(super) fn take(self: &Arc<Self>) -> Option<Held> {
        let now = self.now();
        let mut held = self.lock();
        if held.len() >= self.max {
            let busy = u64::try_from(BUSY.as_millis()).unwrap_or(u64::MAX);
            let (&id, idlest) = held
                .iter()
                .filter(|(_, p)| p.waiting.load(Ordering::Relaxed) == 0)
                .min_by_key(|(_, p)| p.active.load(Ordering::Relaxed))?;
            if now.saturating_sub(idlest.active.load(Ordering::Relaxed)) < busy {
                return None;
            }
            idlest.evicted.notify_one();
            held.remove(&id);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let place = Arc::new(Place {
            active: AtomicU64::new(now),
            evicted: Notify::new(),
            waiting: AtomicU64::new(0),
        });
        held.insert(id, Arc::clone(&place));
        Some(Held {
            places: Arc::clone(self),
            id,
            place,
        })
    }

    /// Marks `place` as having carried data now.
    fn touch(&self, place: &Place) {
        place.active.store(self.now(), Ordering::Relaxed);
    }

    /// Waits until the connection holding `place` is to close: given up for a newcomer,
    /// or idle for `IDLE`.
    pub(super) async fn closing(&self, place: &Place) {
        loop {
            if place.waiting.load(Ordering::Relaxed) > 0 {
                self.touch(place);
            }
            let idle_for = Duration::from_millis(
                self.now()
                    .saturating_sub(place.active.load(Ordering::Relaxed)),
            );
            let Some(left) = IDLE.checked_sub(idle_for).filter(|d| !d.is_zero()) else {
                return;
            };
            tokio::select! {
                () = place.evicted.notified() => return,
                () = tokio::time::sleep(left) => {}
            }
        }
    }
}

/// A stream whose reads and writes mark its place as active, counting what it read.
pub(super) struct Watched<S> {
    pub inner: S,
    pub places: Arc<Places>,
    pub place: Arc<Place>,
    pub read: u64,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.read += (buf.filled().len() - before) as u64;
            this.places.touch(&this.place);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, bytes);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.places.touch(&this.place);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_places_are_what_the_descriptor_limit_leaves_after_a_reserve() {
        assert_eq!(for_limit(1024), 256);
        assert_eq!(for_limit(20_000), 7_500);
        assert_eq!(for_limit(100), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_newcomer_takes_the_place_of_the_idlest_unless_all_are_busy() {
        let places = Places::new(2);
        let first = places.take().expect("a free place");
        tokio::time::advance(Duration::from_secs(2)).await;
        let second = places.take().expect("a free place");
        // Both carried data within the last second: the newcomer is refused.
        places.touch(&first.place);
        assert!(places.take().is_none());
        tokio::time::advance(Duration::from_secs(3)).await;
        places.touch(&second.place);
        // `first` has been idle for 3 s, `second` not at all: `first` goes.
        let third = places.take().expect("the idlest's place");
        tokio::time::timeout(Duration::from_millis(1), places.closing(&first.place))
            .await
            .expect("told to close");
        drop((first, second, third));
        assert_eq!(places.lock().len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_idle_for_55_seconds_is_closed() {
        let places = Places::new(4);
        let held = places.take().expect("a place");
        let start = Instant::now();
        tokio::time::advance(Duration::from_secs(30)).await;
        places.touch(&held.place);
        places.closing(&held.place).await;
        assert_eq!(start.elapsed(), Duration::from_secs(85));
    }
}
