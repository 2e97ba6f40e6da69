//! The router on the first port of web's block: Heroku's HTTP router (`http`, each request
//! routed on its own to a web dyno that is up, with Heroku's headers, line and H-codes), or
//! a TCP proxy (`tcp`) that passes connections through whole.
//!
//! It owns connections only. Which dynos take traffic is the core's decision, published
//! on a `watch` channel (`Effect::Routes`); the router never looks at dynos itself. It
//! runs on its own thread and runtime, so proxying never competes with the supervisor's
//! loop, and a slow client never delays a signal or a reap.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::dyno::Routes;

pub(crate) mod heroku;
mod http;
mod idle;
mod places;
mod pool;
mod tcp;

use places::Places;

/// How long to wait before accepting again after a failed accept.
const RETRY_ACCEPT: Duration = Duration::from_millis(50);
/// How often a failing accept is warned about, at most.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What the router speaks (`--router`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Heroku's HTTP router.
    #[default]
    Http,
    /// Connections passed through whole.
    Tcp,
}

/// Which requests get the router's line (`--router-log`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RouterLog {
    #[default]
    All,
    /// Those answered with an H-code.
    Errors,
    Off,
}

/// How the router works: `start`'s router settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub mode: Mode,
    pub balance: Balance,
    pub log: RouterLog,
    /// How long a request waits for its response's first byte (H12); `None`: for ever.
    pub request_timeout: Option<Duration>,
    /// Requests in flight per web dyno before H11.
    pub max_requests: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mode: Mode::Http,
            balance: Balance::RoundRobin,
            log: RouterLog::All,
            request_timeout: Some(Duration::from_secs(30)),
            max_requests: 200,
        }
    }
}

/// Where the router's lines go (the log, under the name `router`).
pub(crate) type Say = Arc<dyn Fn(String) + Send + Sync>;

/// The pages the router answers with itself.
#[derive(Clone, Debug)]
pub struct Pages {
    /// For an H-code (`ERROR_PAGE_URL`'s, or the default).
    pub error: bytes::Bytes,
    /// For maintenance mode (`MAINTENANCE_PAGE_URL`'s, or the default).
    pub maintenance: bytes::Bytes,
}

impl Default for Pages {
    fn default() -> Self {
        Self {
            error: bytes::Bytes::from_static(heroku::ERROR_PAGE.as_bytes()),
            maintenance: bytes::Bytes::from_static(heroku::MAINTENANCE_PAGE.as_bytes()),
        }
    }
}

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
    fn new(balance: Balance) -> Self {
        Self {
            balance,
            next: AtomicUsize::new(0),
            open: Mutex::new(HashMap::new()),
            failed: AtomicU64::new(0),
            dice: AtomicU64::new(Self::seed()),
        }
    }

    /// Connections (`tcp`) or requests (`http`) open to `addr` now.
    fn open_to(&self, addr: SocketAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&addr).copied().unwrap_or(0)
    }

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

/// One open connection (or request) to a dyno, counted while it lives.
struct Open {
    picker: Arc<Picker>,
    addr: SocketAddr,
}

impl Open {
    fn new(picker: &Arc<Picker>, addr: SocketAddr) -> Self {
        picker.count(addr, true);
        Self {
            picker: Arc::clone(picker),
            addr,
        }
    }
}

impl Drop for Open {
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
    /// Requests answered (`--router http`), by status and H-code.
    pub answered: Mutex<std::collections::BTreeMap<(u16, Option<heroku::Code>), u64>>,
    /// How long each dyno took to serve its requests (`--router http`), by name.
    pub service: Mutex<HashMap<String, ServiceTimes>>,
}

/// Upper bounds of the service times' buckets, in seconds (`/metrics`' histogram; the
/// last bucket, `+Inf`, is past them).
pub(crate) const SERVICE_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A histogram of service times: how many fell in each of `SERVICE_BUCKETS` (not
/// counting those below), then past the last.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct ServiceTimes {
    pub sum: f64,
    pub count: u64,
    pub buckets: [u64; SERVICE_BUCKETS.len() + 1],
}

impl ServiceTimes {
    pub(crate) fn observe(&mut self, seconds: f64) {
        self.sum += seconds;
        self.count += 1;
        let bucket = SERVICE_BUCKETS
            .iter()
            .position(|&upper| seconds <= upper)
            .unwrap_or(SERVICE_BUCKETS.len());
        self.buckets[bucket] += 1;
    }
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

    /// Requests answered so far, by status and H-code.
    pub(crate) fn answered(&self) -> Vec<(u16, Option<&'static str>, u64)> {
        let answered = self.answered.lock().unwrap_or_else(PoisonError::into_inner);
        answered
            .iter()
            .map(|(&(status, code), &n)| (status, code.map(heroku::Code::name), n))
            .collect()
    }

    /// Each dyno's service times so far, by name.
    pub(crate) fn service_times(&self) -> Vec<(String, ServiceTimes)> {
        let service = self.service.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = service.iter().map(|(n, t)| (n.clone(), *t)).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// `dyno` took `took` to serve a request.
    fn served(&self, dyno: &str, took: Duration) {
        let mut service = self.service.lock().unwrap_or_else(PoisonError::into_inner);
        let seconds = took.as_secs_f64();
        match service.get_mut(dyno) {
            Some(times) => times.observe(seconds),
            None => service.entry(dyno.to_owned()).or_default().observe(seconds),
        }
    }

    /// `dyno` was sent `sent` bytes of a request's body (or a tunnel's) and sent back
    /// `back` (`--router http`).
    fn carried(&self, dyno: &str, sent: u64, back: u64) {
        self.bytes_in.fetch_add(sent, Ordering::Relaxed);
        self.bytes_out.fetch_add(back, Ordering::Relaxed);
        self.add(dyno, |t| {
            t.bytes_in += sent;
            t.bytes_out += back;
        });
    }

    /// One request answered with `status` (and `code`).
    fn answer(&self, status: u16, code: Option<heroku::Code>) {
        let mut answered = self.answered.lock().unwrap_or_else(PoisonError::into_inner);
        *answered.entry((status, code)).or_insert(0) += 1;
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
    /// Maintenance mode: every request answered H80.
    pub maintenance: Arc<AtomicBool>,
    pub in_flight: InFlight,
}

/// Starts the router on `listener` in its own thread.
pub(crate) fn spawn(
    listener: TcpListener,
    routes: watch::Receiver<Routes>,
    settings: Settings,
    pages: Pages,
    say: Say,
) -> std::io::Result<Router> {
    listener.set_nonblocking(true)?;
    let stats = Arc::new(RouterStats::default());
    let maintenance = Arc::new(AtomicBool::new(false));
    let (listeners, added) = tokio::sync::mpsc::unbounded_channel();
    // One thread: on the measured 2-core machine two router threads gave less
    // throughput, not more (BENCHMARKS.md).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let shared = Shared {
        routes,
        picker: Arc::new(Picker::new(settings.balance)),
        stats: Arc::clone(&stats),
        settings,
    };
    let http = http::Http::new(&shared, pages, say, Arc::clone(&maintenance));
    let in_flight = InFlight {
        picker: Arc::clone(&shared.picker),
        mode: settings.mode,
    };
    std::thread::Builder::new()
        .name("hkrun-router".into())
        .spawn(move || runtime.block_on(serve(listener, added, shared, http)))?;
    Ok(Router {
        stats,
        listeners,
        maintenance,
        in_flight,
    })
}

/// When a preboot's old dyno has nothing in flight through the router any more, for the
/// driver to tell the core (`Input::Drained`).
#[derive(Clone)]
pub(crate) struct InFlight {
    picker: Arc<Picker>,
    mode: Mode,
}

/// `tcp`: how long after the switch an old dyno counts as drained. A connection to it
/// may stay open for ever, so only what the router sent it just before the switch is
/// waited for.
const SETTLE: Duration = Duration::from_secs(1);
/// `http`: the least wait after the switch, so a request that chose the old dyno just
/// before it is counted.
const SETTLE_HTTP: Duration = Duration::from_millis(100);
/// How often the requests in flight are counted.
const COUNT_EVERY: Duration = Duration::from_millis(10);

impl InFlight {
    /// Returns once `addr` is drained: no request in flight to it (`http`), or
    /// `SETTLE` after being called (`tcp`).
    pub(crate) async fn drained(&self, addr: SocketAddr) {
        match self.mode {
            Mode::Tcp => tokio::time::sleep(SETTLE).await,
            Mode::Http => {
                tokio::time::sleep(SETTLE_HTTP).await;
                while self.picker.open_to(addr) > 0 {
                    tokio::time::sleep(COUNT_EVERY).await;
                }
            }
        }
    }
}

/// What every connection's task shares.
#[derive(Clone)]
struct Shared {
    routes: watch::Receiver<Routes>,
    picker: Arc<Picker>,
    stats: Arc<RouterStats>,
    settings: Settings,
}

/// Accepts on `listener`, and on each listener added later, until hkrun exits.
async fn serve(
    listener: TcpListener,
    mut added: tokio::sync::mpsc::UnboundedReceiver<TcpListener>,
    shared: Shared,
    http: http::Http,
) {
    let http = Arc::new(http);
    if shared.settings.mode == Mode::Http {
        tokio::spawn(Arc::clone(&http).forget_old_connections());
        tokio::spawn(Arc::clone(&http).pass_lines());
    }
    // Two descriptors a connection, out of what the limit leaves hkrun's own needs.
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    let places = Places::new(places::for_limit(limit));
    let accept = |listener: TcpListener| {
        tokio::spawn(accept(
            listener,
            shared.clone(),
            Arc::clone(&http),
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

async fn accept(listener: TcpListener, shared: Shared, http: Arc<http::Http>, places: Arc<Places>) {
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
                tokio::time::sleep(RETRY_ACCEPT).await;
                continue;
            }
        };
        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
        let Some(place) = places.take() else {
            // Every place carries data right now: the newcomer is closed.
            if warned_full.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                tracing::warn!("the router's connections are all busy: a new one was closed");
                warned_full = Some(std::time::Instant::now());
            }
            continue;
        };
        match shared.settings.mode {
            Mode::Tcp => {
                tokio::spawn(tcp::proxy(
                    client,
                    shared.routes.clone(),
                    Arc::clone(&shared.picker),
                    Arc::clone(&shared.stats),
                    place,
                ));
            }
            Mode::Http => {
                tokio::spawn(Arc::clone(&http).serve(client, place));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn picker(balance: Balance) -> Picker {
        Picker::new(balance)
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
