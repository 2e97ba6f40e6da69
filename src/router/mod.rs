//! The router: a TCP proxy (layer 4) on the first port of web's block that spreads new
//! connections round-robin over the web dynos that are up.
//!
//! It owns connections only. Which dynos take traffic is the core's decision, published
//! on a `watch` channel (`Effect::Backends`); the router never looks at dynos itself. It
//! runs on its own thread and runtime, so proxying never competes with the supervisor's
//! loop, and a slow client never delays a signal or a reap.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, timeout_at};

use crate::dyno::Backend;

mod places;

use places::{Places, Watched};

/// How long a new connection waits for a web dyno to be up before it is closed
/// (Heroku's router waits 30 s for a response).
pub(crate) const WAIT_FOR_DYNO: Duration = Duration::from_secs(30);
/// How long to wait before trying again when every dyno refused a connection.
const RETRY: Duration = Duration::from_millis(50);
/// How often a failing accept is warned about, at most.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// How the router chooses a dyno for a new connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Balance {
    /// Each dyno in turn.
    #[default]
    RoundRobin,
    /// The dyno with the fewest open connections through the router (in turn on ties).
    LeastConnections,
    /// A dyno at random, as Heroku's router chooses (the others in turn after it, should
    /// it refuse).
    Random,
}

/// Chooses dynos and counts the connections open to each.
#[derive(Debug)]
struct Picker {
    balance: Balance,
    next: AtomicUsize,
    open: Mutex<HashMap<SocketAddr, usize>>,
    /// Connects to a dyno that failed, ever.
    failed: AtomicU64,
    /// `Random`'s state (xorshift: a spread, not a secret).
    dice: AtomicU64,
}

impl Picker {
    /// The order to try `addrs` in for one new connection.
    fn order(&self, addrs: &[SocketAddr]) -> Vec<SocketAddr> {
        let start = match self.balance {
            Balance::Random => self.roll(),
            Balance::RoundRobin | Balance::LeastConnections => {
                self.next.fetch_add(1, Ordering::Relaxed)
            }
        };
        let mut order: Vec<SocketAddr> = (0..addrs.len())
            .map(|k| addrs[(start + k) % addrs.len()])
            .collect();
        if self.balance == Balance::LeastConnections {
            let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            // Stable: dynos with as many connections keep their turn order.
            order.sort_by_key(|addr| open.get(addr).copied().unwrap_or(0));
        }
        order
    }

    /// The next of `dice`'s numbers.
    fn roll(&self) -> usize {
        let step = |mut x: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let before = self
            .dice
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(step(x)))
            .unwrap_or_else(|x| x);
        // The high half: xorshift's low bits are its weakest.
        (step(before) >> 32) as usize
    }

    /// A seed for `dice` (never 0, where xorshift stays).
    fn seed() -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        (nanos ^ u64::from(std::process::id()).rotate_left(32)) | 1
    }

    fn count(&self, addr: SocketAddr, up: bool) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(addr).or_insert(0);
        *n = if up { *n + 1 } else { n.saturating_sub(1) };
    }
}

/// One open connection to a dyno, counted while it lives.
struct Open<'a> {
    picker: &'a Picker,
    addr: SocketAddr,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.picker.count(self.addr, false);
    }
}

/// What the router has done since it started (`/metrics`).
#[derive(Debug, Default)]
pub(crate) struct RouterStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections closed because no dyno came up within 30 s.
    pub unserved: AtomicU64,
    /// Connects to a dyno that failed (another was tried).
    pub failed_connects: AtomicU64,
    /// Bytes from clients to dynos, and back, counted as each connection ends.
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// The same per dyno name (a preboot's two generations of `web.1` share theirs).
    pub dynos: Mutex<HashMap<String, Traffic>>,
}

/// One dyno's share of the router's traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Traffic {
    pub connections: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl RouterStats {
    /// Each dyno's traffic so far, by name.
    pub(crate) fn per_dyno(&self) -> Vec<(String, Traffic)> {
        let dynos = self.dynos.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = dynos.iter().map(|(n, t)| (n.clone(), *t)).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn add(&self, dyno: &str, change: impl FnOnce(&mut Traffic)) {
        let mut dynos = self.dynos.lock().unwrap_or_else(PoisonError::into_inner);
        match dynos.get_mut(dyno) {
            Some(traffic) => change(traffic),
            None => change(dynos.entry(dyno.to_owned()).or_default()),
        }
    }
}

/// The running router: its counters, and where to give it another listener on the same
/// port (0.0.0.0 beside 127.0.0.1, `os::net::listen_widenable`).
pub(crate) struct Router {
    pub stats: Arc<RouterStats>,
    pub listeners: tokio::sync::mpsc::UnboundedSender<TcpListener>,
}

/// Starts the router on `listener` in its own thread.
pub(crate) fn spawn(
    listener: TcpListener,
    backends: watch::Receiver<Vec<Backend>>,
    balance: Balance,
) -> std::io::Result<Router> {
    listener.set_nonblocking(true)?;
    let stats = Arc::new(RouterStats::default());
    let (listeners, added) = tokio::sync::mpsc::unbounded_channel();
    // One thread: on the measured 2-core machine two router threads gave less
    // throughput, not more (BENCHMARKS.md).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("hkrun-router".into())
        .spawn({
            let stats = Arc::clone(&stats);
            move || runtime.block_on(serve(listener, added, backends, balance, stats))
        })?;
    Ok(Router { stats, listeners })
}

/// Accepts on `listener`, and on each listener added later, until hkrun exits.
async fn serve(
    listener: TcpListener,
    mut added: tokio::sync::mpsc::UnboundedReceiver<TcpListener>,
    backends: watch::Receiver<Vec<Backend>>,
    balance: Balance,
    stats: Arc<RouterStats>,
) {
    let picker = Arc::new(Picker {
        balance,
        next: AtomicUsize::new(0),
        open: Mutex::new(HashMap::new()),
        failed: AtomicU64::new(0),
        dice: AtomicU64::new(Picker::seed()),
    });
    // Two descriptors a connection, out of what the limit leaves hkrun's own needs.
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    let places = Places::new(places::for_limit(limit));
    let accept = |listener: TcpListener| {
        tokio::spawn(accept(
            listener,
            backends.clone(),
            Arc::clone(&picker),
            Arc::clone(&stats),
            Arc::clone(&places),
        ))
    };
    accept(listener);
    while let Some(listener) = added.recv().await {
        let _ = listener.set_nonblocking(true);
        accept(listener);
    }
    std::future::pending::<()>().await;
}

async fn accept(
    listener: TcpListener,
    backends: watch::Receiver<Vec<Backend>>,
    picker: Arc<Picker>,
    stats: Arc<RouterStats>,
    places: Arc<Places>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::warn!(%err, "the router cannot listen");
            return;
        }
    };
    let mut warned: Option<std::time::Instant> = None;
    let mut warned_full: Option<std::time::Instant> = None;
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(err) => {
                // Out of file descriptors, most likely: let some close, and say so now
                // and then, not at every retry.
                if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    tracing::warn!(%err, "the router cannot accept a connection");
                    warned = Some(std::time::Instant::now());
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let Some(place) = places.take() else {
            // Every place carries data right now: the newcomer is closed.
            if warned_full.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                tracing::warn!("the router's connections are all busy: a new one was closed");
                warned_full = Some(std::time::Instant::now());
            }
            continue;
        };
        tokio::spawn(proxy(
            client,
            backends.clone(),
            Arc::clone(&picker),
            Arc::clone(&stats),
            place,
        ));
    }
}

async fn proxy(
    client: TcpStream,
    mut backends: watch::Receiver<Vec<Backend>>,
    picker: Arc<Picker>,
    stats: Arc<RouterStats>,
    held: places::Held,
) {
    let places = held.places();
    let _ = client.set_nodelay(true);
    // Given up for a newcomer while it waits for a dyno: closed.
    let connected = tokio::select! {
        connected = connect(&mut backends, &picker, TcpStream::connect) => connected,
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
    let dyno = backends
        .borrow()
        .iter()
        .find(|b| b.addr == open.addr)
        .map(|b| b.slot.to_string());
    if let Some(dyno) = &dyno {
        stats.add(dyno, |t| t.connections += 1);
    }
    let _ = upstream.set_nodelay(true);
    let watched = |inner| Watched {
        inner,
        places,
        place: &held.place,
        read: 0,
    };
    let (mut client, mut upstream) = (watched(client), watched(upstream));
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
async fn connect<'a, S, F>(
    backends: &mut watch::Receiver<Vec<Backend>>,
    picker: &'a Picker,
    mut dial: impl FnMut(SocketAddr) -> F,
) -> Option<(S, Open<'a>)>
where
    F: Future<Output = std::io::Result<S>>,
{
    let deadline = Instant::now() + WAIT_FOR_DYNO;
    loop {
        let addrs: Vec<SocketAddr> = backends
            .borrow_and_update()
            .iter()
            .map(|b| b.addr)
            .collect();
        for addr in picker.order(&addrs) {
            // Counted from before the connect, so connections opening at once spread out.
            picker.count(addr, true);
            let open = Open { picker, addr };
            if let Ok(stream) = dial(addr).await {
                return Some((stream, open));
            }
            picker.failed.fetch_add(1, Ordering::Relaxed);
        }
        // Wait for the set to change (a dyno coming up), or retry shortly: a dyno may
        // refuse for a moment while the core has not yet heard it died.
        let wait = async {
            if addrs.is_empty() {
                backends.changed().await.is_ok()
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

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn picker(balance: Balance) -> Picker {
        Picker {
            balance,
            next: AtomicUsize::new(0),
            open: Mutex::new(HashMap::new()),
            failed: AtomicU64::new(0),
            dice: AtomicU64::new(Picker::seed()),
        }
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
        let (publish, mut backends) = watch::channel(dynos);
        tokio::spawn(async move {
            if let Some(at) = up_at {
                tokio::time::sleep_until(start + at).await;
                let _ = publish.send(vec![backend(1)]);
            }
            // Held open past the wait, as the core holds it.
            std::future::pending::<()>().await;
        });
        let picker = picker(Balance::RoundRobin);
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
            connect(&mut backends, &picker, dial),
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

    #[test]
    fn round_robin_takes_turns() {
        let p = picker(Balance::RoundRobin);
        p.count(a(5001), true);
        assert_eq!(
            p.order(&[a(5001), a(5002), a(5003)]),
            [a(5001), a(5002), a(5003)]
        );
        assert_eq!(
            p.order(&[a(5001), a(5002), a(5003)]),
            [a(5002), a(5003), a(5001)]
        );
    }

    #[test]
    fn random_starts_anywhere_and_tries_every_dyno_once() {
        let p = picker(Balance::Random);
        let addrs = [a(5001), a(5002), a(5003)];
        let mut first = HashMap::new();
        for _ in 0..3000 {
            let order = p.order(&addrs);
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, addrs, "each dyno once");
            *first.entry(order[0]).or_insert(0) += 1;
        }
        // About 1000 each: far from any one dyno always or never first.
        for addr in addrs {
            let n = first.get(&addr).copied().unwrap_or(0);
            assert!((700..=1300).contains(&n), "{addr} first {n} times in 3000");
        }
    }

    #[test]
    fn least_connections_prefers_the_idle_and_takes_turns_on_ties() {
        let p = picker(Balance::LeastConnections);
        p.count(a(5001), true);
        p.count(a(5001), true);
        p.count(a(5002), true);
        assert_eq!(
            p.order(&[a(5001), a(5002), a(5003)]),
            [a(5003), a(5002), a(5001)]
        );
        p.count(a(5001), false);
        p.count(a(5001), false);
        p.count(a(5002), false);
        assert_eq!(
            p.order(&[a(5001), a(5002), a(5003)]),
            [a(5002), a(5003), a(5001)]
        );
        assert_eq!(
            p.order(&[a(5001), a(5002), a(5003)]),
            [a(5003), a(5001), a(5002)]
        );
    }
}
