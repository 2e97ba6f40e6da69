//! `--router tcp`: each connection passed through whole to a web dyno, for web processes
//! that do not speak HTTP/1.1. A new connection waits up to 30 s for a dyno to take it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, timeout_at};

use super::places;
use super::{Open, Picker, RouterStats};
use crate::dyno::Routes;

/// How long a new connection waits for a web dyno to be up before it is closed
/// (Heroku's router waits 30 s for a response).
pub(crate) const WAIT_FOR_DYNO: Duration = Duration::from_secs(30);
/// How long to wait before trying again when every dyno refused a connection.
const RETRY: Duration = Duration::from_millis(50);

pub(super) async fn proxy(
    client: TcpStream,
    mut routes: watch::Receiver<Routes>,
    picker: Arc<Picker>,
    stats: Arc<RouterStats>,
    held: places::Held,
) {
    let places = held.places();
    let _ = client.set_nodelay(true);
    // Given up for a newcomer while it waits for a dyno: closed.
    let connected = tokio::select! {
        connected = connect(&mut routes, &picker, TcpStream::connect) => connected,
        () = places.closing(&held.place) => None,
    };
    stats
        .failed_connects
        .store(picker.failed.load(Ordering::Relaxed), Ordering::Relaxed);
    let Some((upstream, open)) = connected else {
        // No dyno came up in time: the client sees the connection close.
        stats.unserved.fetch_add(1, Ordering::Relaxed);
        return;
    };
    // The dyno's name, from the set it was chosen from (an address is one dyno's).
    let dyno = routes
        .borrow()
        .up
        .iter()
        .find(|b| b.addr == open.addr)
        .map(|b| b.slot.to_string());
    if let Some(dyno) = &dyno {
        stats.add(dyno, |t| t.connections += 1);
    }
    let _ = upstream.set_nodelay(true);
    let (mut client, mut upstream) = (held.watch(client), held.watch(upstream));
    // Copies both ways; when one side finishes sending, the other side's write half is
    // shut down, so half-closed protocols keep working. Given up for a newcomer, or idle
    // for 55 s: closed. The bytes are counted as they were read, however it ended.
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        () = places.closing(&held.place) => {}
    }
    let (sent, received) = (client.read, upstream.read);
    stats.bytes_in.fetch_add(sent, Ordering::Relaxed);
    stats.bytes_out.fetch_add(received, Ordering::Relaxed);
    if let Some(dyno) = &dyno {
        stats.add(dyno, |t| {
            t.bytes_in += sent;
            t.bytes_out += received;
        });
    }
}

/// A connection to an up dyno, trying each in turn from the round-robin position. Nothing
/// of the client's has been sent yet, so trying another dyno is always safe. `dial` is
/// `TcpStream::connect`, passed in so the waits can be tested on tokio's paused clock.
async fn connect<S, F>(
    routes: &mut watch::Receiver<Routes>,
    picker: &Arc<Picker>,
    mut dial: impl FnMut(SocketAddr) -> F,
) -> Option<(S, Open)>
where
    F: Future<Output = std::io::Result<S>>,
{
    let deadline = Instant::now() + WAIT_FOR_DYNO;
    loop {
        let addrs: Vec<SocketAddr> = routes
            .borrow_and_update()
            .up
            .iter()
            .map(|b| b.addr)
            .collect();
        for addr in picker.order(&addrs) {
            // Counted from before the connect, so connections opening at once spread out.
            let open = Open::new(picker, addr);
            if let Ok(stream) = dial(addr).await {
                return Some((stream, open));
            }
            picker.failed.fetch_add(1, Ordering::Relaxed);
        }
        // Wait for the set to change (a dyno coming up), or retry shortly: a dyno may
        // refuse for a moment while the core has not yet heard it died.
        let wait = async {
            if addrs.is_empty() {
                routes.changed().await.is_ok()
            } else {
                tokio::time::sleep(RETRY).await;
                true
            }
        };
        match timeout_at(deadline, wait).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dyno::Slot;
    use crate::dyno::{Backend, WebState};
    use crate::router::Balance;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// What the router's `connect` does on the paused clock, given `dynos` up at first and
    /// web.1 published at `up_at`: when it dialled, and when it got a dyno, if it did.
    /// Dialling answers at once, refused until `accepts_from` (for ever, if `None`), so the
    /// clock moves only on the router's own timers.
    async fn connect_at(
        dynos: Vec<Backend>,
        up_at: Option<Duration>,
        accepts_from: Option<Duration>,
    ) -> (Vec<Duration>, Option<Duration>) {
        let start = Instant::now();
        let (publish, mut routes) = watch::channel(Routes {
            up: dynos,
            web: WebState::Booting,
        });
        tokio::spawn(async move {
            if let Some(at) = up_at {
                tokio::time::sleep_until(start + at).await;
                let _ = publish.send(Routes {
                    up: vec![backend(1)],
                    web: WebState::Booting,
                });
            }
            // Held open past the wait, as the core holds it.
            std::future::pending::<()>().await;
        });
        let picker = Arc::new(Picker::new(Balance::RoundRobin));
        let mut dialled = Vec::new();
        let dial = |_addr| {
            let now = start.elapsed();
            dialled.push(now);
            let accepts = accepts_from.is_some_and(|from| now >= from);
            async move {
                if accepts {
                    Ok(())
                } else {
                    Err(std::io::ErrorKind::ConnectionRefused.into())
                }
            }
        };
        // Far past the wait: a connect still waiting then would wait for ever.
        let got = tokio::time::timeout(
            Duration::from_secs(600),
            connect(&mut routes, &picker, dial),
        )
        .await
        .expect("connect gives up in time");
        let ended = start.elapsed();
        (dialled, got.map(|_| ended))
    }

    fn backend(n: u32) -> Backend {
        Backend {
            slot: Slot::new("web", n),
            addr: a(5000 + u16::try_from(n).expect("small")),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Heroku's router timeout, as README.md gives it; written out rather than
    /// `WAIT_FOR_DYNO`, so a change to that fails here.
    const THIRTY_SECONDS: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn with_no_dyno_up_a_connection_waits_thirty_seconds_then_closes() {
        let start = Instant::now();
        let (dialled, got) = connect_at(vec![], None, None).await;
        assert_eq!(got, None);
        assert!(dialled.is_empty(), "{dialled:?}");
        assert_eq!(start.elapsed(), THIRTY_SECONDS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dyno_up_within_the_thirty_seconds_takes_the_connection_at_once() {
        let up = THIRTY_SECONDS - ms(1);
        let (dialled, got) = connect_at(vec![], Some(up), Some(Duration::ZERO)).await;
        assert_eq!(dialled, [up]);
        assert_eq!(got, Some(up));
    }

    #[tokio::test(start_paused = true)]
    async fn refusing_dynos_are_tried_again_every_50_ms_until_the_thirty_seconds() {
        let start = Instant::now();
        let (dialled, got) = connect_at(vec![backend(1), backend(2)], None, None).await;
        assert_eq!(got, None);
        assert_eq!(start.elapsed(), THIRTY_SECONDS);
        // Both dynos in each round, a round every 50 ms from the start.
        let rounds: Vec<Duration> = dialled.chunks(2).map(|r| r[0]).collect();
        assert!(dialled.chunks(2).all(|r| r.len() == 2 && r[0] == r[1]));
        let off_beat = (0u32..).zip(&rounds).find(|&(n, &at)| at != ms(50) * n);
        assert_eq!(off_beat, None, "rounds at {:?}...", &rounds[..5]);
        let last = *rounds.last().expect("rounds");
        assert!(
            last > THIRTY_SECONDS - ms(50) && last <= THIRTY_SECONDS,
            "{last:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dyno_that_stops_refusing_is_reached_at_the_next_round() {
        let (dialled, got) = connect_at(vec![backend(1)], None, Some(ms(1025))).await;
        assert_eq!(got, Some(ms(1050)));
        assert_eq!(dialled[dialled.len() - 2..], [ms(1000), ms(1050)]);
    }
}
