//! A body that gives up when it carries nothing for Heroku's 55 s: a dyno's response
//! that stalls after its head (H15), or a client's request body that stalls (H28).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// How long a body may carry nothing (Heroku's router's 55 s).
pub(super) const IDLE: Duration = Duration::from_secs(55);
/// Shortens `IDLE` to this many milliseconds, for hkrun's own integration tests only
/// (TESTING.md, Tests that control time).
const IDLE_KNOB: &str = "HKRUN_TEST_ROUTER_IDLE_MS";

/// `IDLE`, unless `IDLE_KNOB` says otherwise.
fn idle() -> Duration {
    static IDLE_NOW: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    crate::os::test_knob(&IDLE_NOW, IDLE_KNOB, IDLE)
}

/// What ended a body early: it was idle for `IDLE`.
#[derive(Debug)]
pub(super) struct Idled;

impl std::fmt::Display for Idled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "nothing for {} ms", idle().as_millis())
    }
}

impl std::error::Error for Idled {}

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `inner`, ended with `Idled` (and `idled` set) once it has carried nothing for `IDLE`.
pub(super) struct Idle<B> {
    inner: B,
    /// Armed the first time the body has nothing to give: most bodies never wait, and
    /// this is on every request's path.
    sleep: Option<Pin<Box<Sleep>>>,
    idled: Arc<AtomicBool>,
    /// Bytes of data it has carried.
    carried: Arc<AtomicU64>,
}

impl<B> Idle<B> {
    pub(super) fn new(inner: B) -> Self {
        Self {
            inner,
            sleep: None,
            idled: Arc::new(AtomicBool::new(false)),
            carried: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The bytes of data it has carried so far.
    pub(super) fn carried(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.carried)
    }

    /// Set once the body has given up for idleness.
    pub(super) fn idled(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.idled)
    }

    /// Whether the body has given up for idleness.
    pub(super) fn has_idled(&self) -> bool {
        self.idled.load(Ordering::Relaxed)
    }

    /// The bytes of data it has carried so far.
    pub(super) fn carried_so_far(&self) -> u64 {
        self.carried.load(Ordering::Relaxed)
    }
}

impl<B> Body for Idle<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.carried.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                if let Some(sleep) = self.sleep.as_mut() {
                    sleep.as_mut().reset(Instant::now() + idle());
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle())))
                .as_mut()
                .poll(cx)
            {
                Poll::Ready(()) => {
                    self.idled.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(Box::new(Idled))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body that sends `parts`, one every `every`, then nothing ever again.
    struct Dribble {
        parts: usize,
        every: Duration,
        next: Pin<Box<Sleep>>,
    }

    impl Body for Dribble {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.parts == 0 {
                return Poll::Pending;
            }
            match self.next.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.parts -= 1;
                    let every = self.every;
                    self.next.as_mut().reset(Instant::now() + every);
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
                }
                Poll::Pending => Poll::Pending,
            }
        }
    }

    /// Heroku's 55 s, written out rather than `IDLE`, so a change to that fails here.
    const FIFTY_FIVE_SECONDS: Duration = Duration::from_secs(55);

    #[tokio::test(start_paused = true)]
    async fn a_body_that_carries_nothing_for_55_seconds_ends_idled() {
        let start = Instant::now();
        // A part every 50 s keeps it going; then nothing.
        let body = Idle::new(Dribble {
            parts: 3,
            every: Duration::from_secs(50),
            next: Box::pin(tokio::time::sleep(Duration::from_secs(50))),
        });
        let idled = body.idled();
        let got = body.collect().await.map(|_| ());
        let err = got.expect_err("ended by its idleness");
        assert!(err.is::<Idled>(), "{err}");
        assert!(idled.load(Ordering::Relaxed));
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(150) + FIFTY_FIVE_SECONDS
        );
    }
}
