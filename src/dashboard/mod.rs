//! `--dashboard`: a live page of the app in the browser, served from inside the binary.
//!
//! `GET /` is the page (`page.html`, self-contained: it fetches nothing but `/events`);
//! `GET /events` is a Server-Sent Events stream; `GET /metrics` is the same exposition as
//! `--metrics`. One source of truth: every second a recorder task asks the driver for
//! what `/metrics` gets (`Call::Metrics`: the `View` `ps` is made from, and the router's
//! figures), keeps the last 15 minutes (`recorder`), and sends each page a `tick` (its
//! `ps` what `hkrun ps --json` prints); it hears the core's events as the driver carries
//! them out (`Heard`), for the marks; the log is the history's `--tail` stream, as
//! `hkrun logs --tail` gets it.
//!
//! Events: `hello` (the last 15 minutes: memory per dyno, marks, router connections),
//! `tick` (`ps`, counters per dyno, the router's figures, new marks), `log` (lines),
//! `skipped` (lines a page fell behind on, or past `LINES_PER_SECOND`), `end` (hkrun is
//! exiting).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::control::protocol::Ps;
use crate::control::ps;
use crate::http;
use crate::logs::history::{self, Chunk, History};
use crate::logs::render::{self, Label, Origin};
use crate::logs::writer::LogSender;
use crate::metrics::{self, Highest, Snapshot};
use crate::router::Traffic;
use crate::supervisor::api::Call;
use crate::supervisor::api::Heard;

mod recorder;

use recorder::{Counts, Mark, Recorder};

/// The page, inside the binary.
const PAGE: &str = include_str!("page.html");
/// Nothing but the page itself and its own stream: no CDN, no fonts, no images.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";
/// How often pages get a tick (and the history a sample).
const TICK: Duration = Duration::from_secs(1);
/// Pages open at once (each holds a stream and a log follower): a new one takes the
/// place of the page that has waited longest to take what it was sent, or gets 503.
const PAGES: usize = 16;
/// Connections held at once, streams included (`http::serve`): a newcomer takes the
/// place of the one that has waited longest on its client.
const CONNECTIONS: usize = PAGES + 8;
/// Log lines a page gets when it connects.
const FIRST_LINES: usize = 200;
/// Log chunks put in one `log` event at most.
const LOG_BATCH: usize = 64;
/// Lines a page is sent a second at most: more than anyone reads, and the encoding runs
/// on the driver's loop. Under a flood a page gets the first 2,000 lines of each second
/// (the newest of each batch read), and a `skipped` event a second counts the rest
/// (`hkrun logs` and the log files have them all).
const LINES_PER_SECOND: usize = 2000;

/// The head of `/events`: a stream, its length unsaid; built as every response's head is
/// (`http::Response`).
fn events_head() -> String {
    http::Response::new("200 OK", "text/event-stream", String::new()).head(None)
}

/// What every connection shares.
struct Shared {
    calls: mpsc::UnboundedSender<Call>,
    history: Arc<History>,
    highest: Highest,
    app: String,
    /// The host name `--dashboard` was given, if it was: one the page is reached at.
    name: Option<String>,
    state: Mutex<Recording>,
}

/// The recorder, the ticks' sender, and the last tick: a page joins while holding them,
/// so it gets every tick after its `hello`, none twice.
#[derive(Default)]
struct Recording {
    recorder: Recorder,
    ticks: Option<broadcast::Sender<Arc<str>>>,
    /// The last tick's data without its marks (`hello` has them): a page that joins
    /// shows the dynos at once, not a second later.
    last: Option<String>,
}

impl Recording {
    /// `hello` (and the last tick) for a page joining now, and its receiver of ticks.
    fn join(&mut self, app: &str, resync: bool) -> (Vec<u8>, broadcast::Receiver<Arc<str>>) {
        let mut hello = self.recorder.hello(app, now_ms());
        hello.resync = resync;
        let mut out = event("hello", &serde_json::to_string(&hello).unwrap_or_default());
        if let Some(last) = &self.last {
            out.extend(event("tick", last));
        }
        let ticks = self
            .ticks
            .get_or_insert_with(|| broadcast::channel(8).0)
            .subscribe();
        (out, ticks)
    }
}

/// Serves the dashboard on `bound` until the runtime ends, after logging its address.
/// `heard` is subscribed to the core's events before the core says any.
pub(crate) async fn serve(
    bound: http::Bound,
    calls: mpsc::UnboundedSender<Call>,
    heard: broadcast::Receiver<Arc<Heard>>,
    history: Arc<History>,
    log: LogSender,
    app: String,
) {
    let name = bound.name.clone();
    let listeners = http::listen(bound, "the dashboard");
    let Some(url) = http::url(name.as_deref(), &listeners) else {
        return;
    };
    log.event(&Arc::new(Label::system()), format!("dashboard at {url}/"));
    let shared = Arc::new(Shared {
        calls,
        history,
        highest: Highest::default(),
        app,
        name,
        state: Mutex::new(Recording::default()),
    });
    tokio::spawn(record(Arc::clone(&shared), heard));
    let limits = http::Limits {
        connections: CONNECTIONS,
        streams: PAGES,
    };
    http::serve(listeners, limits, move |stream, place| {
        let shared = Arc::clone(&shared);
        async move { answer(stream, place, &shared).await }
    })
    .await;
}

/// Unix milliseconds now.
fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

fn unix_ms(at: SystemTime) -> u64 {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// One `tick` event's data.
#[derive(Serialize)]
struct Tick<'a> {
    t: u64,
    ps: &'a Ps,
    dynos: BTreeMap<&'a str, Counts>,
    router: Option<RouterTick<'a>>,
    marks: &'a [Mark],
}

#[derive(Serialize)]
struct RouterTick<'a> {
    connections: u64,
    unserved: u64,
    failed_connects: u64,
    bytes_in: u64,
    bytes_out: u64,
    dynos: BTreeMap<&'a str, Traffic>,
    /// Requests answered so far (`--router http`), and those of each H-code.
    requests: u64,
    codes: BTreeMap<&'a str, u64>,
    /// `[p50, p99]` in ms of the last second's service times, when it served any.
    latency: Option<(f64, f64)>,
}

/// Every second: the view and the counters from the driver, into the history and out to
/// the pages, with the marks of the events heard meanwhile. Ends when the driver has
/// gone.
async fn record(shared: Arc<Shared>, mut heard: broadcast::Receiver<Arc<Heard>>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut hearing = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            got = heard.recv(), if hearing => {
                match got {
                    Ok(heard) => {
                        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
                        state.recorder.heard(unix_ms(heard.at), &heard.event);
                    }
                    // Events of a burst past what the channel holds make no mark: the log
                    // has them, the counts too.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    // The driver has gone: the next call says so.
                    Err(broadcast::error::RecvError::Closed) => hearing = false,
                }
                continue;
            }
        }
        let (reply, figures) = oneshot::channel();
        if shared.calls.send(Call::Metrics(reply)).is_err() {
            return;
        }
        let Ok(figures) = figures.await else {
            return;
        };
        let ps = ps::wire(&figures.view);
        let t = now_ms();
        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        let marks = state.recorder.observe(t, &figures);
        let latency = state.recorder.latency_at(t);
        let data = tick_data(t, &ps, &figures, &marks, latency);
        state.last = Some(match marks.is_empty() {
            true => data.clone(),
            false => tick_data(t, &ps, &figures, &[], latency),
        });
        if let Some(ticks) = &state.ticks {
            // No page open is no error.
            let _ = ticks.send(Arc::from(data));
        }
    }
}

fn tick_data(
    t: u64,
    ps: &Ps,
    figures: &Snapshot,
    marks: &[Mark],
    latency: Option<(f64, f64)>,
) -> String {
    let tick = Tick {
        t,
        ps,
        dynos: figures
            .view
            .dynos
            .iter()
            .map(|d| (d.name.as_str(), Counts::of(d)))
            .collect(),
        router: figures.router.as_ref().map(|r| RouterTick {
            connections: r.connections,
            unserved: r.unserved,
            failed_connects: r.failed_connects,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            dynos: r.dynos.iter().map(|(n, t)| (n.as_str(), *t)).collect(),
            requests: r.requests.iter().map(|q| q.2).sum(),
            codes: r.requests.iter().fold(BTreeMap::new(), |mut codes, q| {
                if let Some(code) = q.1 {
                    *codes.entry(code).or_default() += q.2;
                }
                codes
            }),
            latency,
        }),
        marks,
    };
    serde_json::to_string(&tick).unwrap_or_default()
}

/// Whether `host` (a `Host` header) names this machine: an address, `localhost`, or the
/// name `--dashboard` was given. Anything else reaching a loopback listener is a page of
/// another site that made its name point here (DNS rebinding), and must not read the
/// app's log.
fn names_this_machine(host: &str, given: Option<&str>) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]:8080`
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || given.is_some_and(|given| name.eq_ignore_ascii_case(given))
        || name.parse::<std::net::IpAddr>().is_ok()
}

async fn answer(mut stream: TcpStream, place: http::Place, shared: &Shared) {
    let Some(request) = http::read_request(&mut stream, &place).await else {
        return;
    };
    // Checked whenever the request came in on loopback, whatever the listener's
    // address: `--dashboard 0.0.0.0:9000` is reached at 127.0.0.1 too, and `[::]:9000`
    // at 127.0.0.1 as `::ffff:127.0.0.1`.
    let on_loopback = stream
        .local_addr()
        .is_ok_and(|a| a.ip().to_canonical().is_loopback());
    let trusted = !on_loopback
        || (request.host.as_deref())
            .is_some_and(|host| names_this_machine(host, shared.name.as_deref()));
    let response = match request.path.as_str() {
        _ if !trusted => http::Response::text(
            "421 Misdirected Request",
            "The dashboard answers only to this machine's names (localhost or an address)\n",
        ),
        "/" => http::Response::new("200 OK", "text/html; charset=utf-8", PAGE.to_owned())
            .header("Content-Security-Policy", PAGE_POLICY)
            .header("X-Content-Type-Options", "nosniff"),
        "/metrics" => match metrics::exposition(&shared.calls, &shared.highest).await {
            Some(text) => http::Response::new("200 OK", metrics::CONTENT_TYPE, text),
            None => return,
        },
        "/events" if request.method == http::Method::Head => {
            if place
                .write(&mut stream, events_head().as_bytes())
                .await
                .is_ok()
            {
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
            }
            return;
        }
        "/events" if !place.start_stream() => http::Response::text(
            "503 Service Unavailable",
            "Too many dashboard pages are open; close one and reload\n",
        ),
        "/events" => {
            stream_events(stream, &place, shared).await;
            return;
        }
        _ => http::Response::text("404 Not Found", "Not found: try /\n"),
    };
    let _ = http::respond(&mut stream, &place, request.method, &response).await;
}

/// One server-sent event: `data` is one line of JSON.
fn event(name: &str, data: &str) -> Vec<u8> {
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

/// One `log` event's line.
#[derive(Serialize)]
struct LogLine<'a> {
    t: &'a str,
    dyno: &'a str,
    origin: &'static str,
    line: std::borrow::Cow<'a, str>,
}

/// The lines of `chunks` as one `log` event's data.
fn log_data<'a>(lines: impl Iterator<Item = (&'a Chunk, &'a [u8])>) -> String {
    let lines: Vec<LogLine<'_>> = lines
        .map(|(chunk, line)| LogLine {
            t: &chunk.clock.rfc3339,
            dyno: &chunk.label.name,
            origin: match chunk.origin {
                Origin::App => "app",
                Origin::Hkrun => "hkrun",
            },
            line: match String::from_utf8_lossy(line) {
                std::borrow::Cow::Borrowed(text) if !text.contains('\x1b') => text.into(),
                text => render::plain(&text).into(),
            },
        })
        .collect();
    serde_json::to_string(&lines).unwrap_or_default()
}

/// A page's stream: `hello`, the last lines, then ticks and lines as they come, until the
/// page goes or the log ends.
async fn stream_events(mut stream: TcpStream, place: &http::Place, shared: &Shared) {
    let (hello, mut ticks) = shared
        .state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .join(&shared.app, false);
    let (chunks, follow) = shared.history.since(FIRST_LINES, |_| true, true);
    let mut out = format!("{}retry: 1000\n\n", events_head()).into_bytes();
    out.extend(hello);
    let first = history::last_lines(&chunks, FIRST_LINES);
    if !first.is_empty() {
        out.extend(event("log", &log_data(first.into_iter())));
    }
    drop(chunks);
    if place.write(&mut stream, &out).await.is_err() {
        return;
    }
    let Some(mut follow) = follow else { return };
    let (mut read, mut write) = stream.into_split();
    let mut scratch = [0u8; 256];
    let mut budget = Budget::default();
    loop {
        let out = tokio::select! {
            tick = ticks.recv() => match tick {
                Ok(data) => {
                    // What was left out is said within a second, flood over or not.
                    let mut out = budget.next_second(tokio::time::Instant::now());
                    out.extend(event("tick", &data));
                    out
                }
                // Ticks carry new marks and samples: a page that missed some is sent the
                // whole history again (the log it has stays).
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let (hello, again) = shared
                        .state
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .join(&shared.app, true);
                    ticks = again;
                    hello
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            got = follow.recv() => {
                let mut chunks = Vec::new();
                let mut skipped = 0;
                // Chunks lost to lag are counted, their lines only estimated.
                let mut approximate = false;
                let mut next = Some(got);
                let mut ended = false;
                while let Some(got) = next.take() {
                    match got {
                        Ok(chunk) => chunks.push(chunk),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            skipped += budget.lines_of_lost_chunks(n);
                            approximate = true;
                        }
                        Err(broadcast::error::RecvError::Closed) => {
                            ended = true;
                            break;
                        }
                    }
                    if chunks.len() < LOG_BATCH {
                        next = follow.ready();
                    }
                }
                let mut out =
                    budget.log_events(&chunks, skipped, approximate, tokio::time::Instant::now());
                if ended {
                    out.extend(budget.skipped_event());
                    out.extend(event("end", "{}"));
                    // The log has ended: the follower goes first, so hkrun's exit does not
                    // wait on this page.
                    drop(follow);
                    let _ = place.write(&mut write, &out).await;
                    return;
                }
                out
            },
            // Anything but more bytes means the page has gone.
            n = read.read(&mut scratch) => match n {
                Ok(n) if n > 0 => continue,
                _ => return,
            },
        };
        if out.is_empty() {
            continue;
        }
        if place.write(&mut write, &out).await.is_err() {
            return;
        }
    }
}

/// What a page may still be sent this second, and what it was not.
#[derive(Debug, Default)]
struct Budget {
    since: Option<tokio::time::Instant>,
    sent: usize,
    /// Lines left out since the last `skipped` event, and whether that is an estimate.
    skipped: usize,
    approximate: bool,
    /// Lines per chunk, as last seen: to count chunks lost to lag.
    per_chunk: usize,
}

impl Budget {
    /// At a new second: the `skipped` event for the last (if anything was left out), and
    /// the budget afresh.
    fn next_second(&mut self, now: tokio::time::Instant) -> Vec<u8> {
        if self
            .since
            .is_some_and(|s| now.duration_since(s) < Duration::from_secs(1))
        {
            return Vec::new();
        }
        self.since = Some(now);
        self.sent = 0;
        self.skipped_event()
    }

    /// The events for `chunks` at `now`, `skipped` lines (`approximate`ly) having been
    /// lost before them: while the second's budget lasts, each batch's newest lines; what
    /// is left out is said once a second at most.
    fn log_events(
        &mut self,
        chunks: &[Chunk],
        skipped: usize,
        approximate: bool,
        now: tokio::time::Instant,
    ) -> Vec<u8> {
        let mut out = self.next_second(now);
        let total: usize = chunks.iter().map(Chunk::line_count).sum();
        if let Some(first) = chunks.first() {
            self.per_chunk = first.line_count().max(1);
        }
        let allowed = total.min(LINES_PER_SECOND.saturating_sub(self.sent));
        self.sent += allowed;
        self.skipped += skipped + (total - allowed);
        self.approximate |= approximate;
        if allowed > 0 {
            let newest = history::last_lines(chunks, allowed);
            out.extend(event("log", &log_data(newest.into_iter())));
        }
        out
    }

    /// The `skipped` event for what was left out, if anything was (then nothing is).
    fn skipped_event(&mut self) -> Vec<u8> {
        if self.skipped == 0 {
            return Vec::new();
        }
        let data = format!(
            "{{\"lines\":{},\"approximate\":{}}}",
            self.skipped, self.approximate
        );
        self.skipped = 0;
        self.approximate = false;
        event("skipped", &data)
    }

    /// About how many lines `chunks` chunks held (the broadcast counts chunks).
    fn lines_of_lost_chunks(&self, chunks: u64) -> usize {
        usize::try_from(chunks)
            .unwrap_or(usize::MAX)
            .saturating_mul(self.per_chunk.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machines_names_are_trusted_on_loopback() {
        for host in [
            "127.0.0.1:8080",
            "localhost:1",
            "LOCALHOST",
            "[::1]:9",
            "10.0.0.2",
        ] {
            assert!(names_this_machine(host, None), "{host}");
        }
        for host in ["evil.example:8080", "localhost.evil.example", ""] {
            assert!(!names_this_machine(host, None), "{host}");
        }
        // The name the dashboard was given, as `--dashboard myhost:9000`.
        assert!(names_this_machine("MyHost:9000", Some("myhost")));
        assert!(!names_this_machine("evil.example", Some("myhost")));
    }

    fn chunk(name: &str, lines: std::ops::Range<usize>) -> Chunk {
        let text: String = lines.clone().map(|i| format!("line {i}\n")).collect();
        Chunk::new(
            Arc::new(render::Clock::now()),
            Origin::App,
            Arc::new(Label {
                name: name.into(),
                color: None,
                quiet: false,
            }),
            Arc::new(text.into_bytes()),
            lines.len(),
        )
    }

    /// `(event, data)` of each event in `out`.
    fn events(out: &[u8]) -> Vec<(String, serde_json::Value)> {
        let text = std::str::from_utf8(out).unwrap();
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                let name = name.strip_prefix("event: ").unwrap().to_owned();
                let data = data.strip_prefix("data: ").unwrap();
                (name, serde_json::from_str(data).unwrap())
            })
            .collect()
    }

    #[test]
    fn a_flood_sends_2000_lines_a_second_and_says_once_a_second_what_it_left_out() {
        let chunks = [chunk("web.1", 0..1500), chunk("web.2", 1500..3000)];
        let mut budget = Budget::default();
        let now = tokio::time::Instant::now();
        let sent = events(&budget.log_events(&chunks, 0, false, now));
        assert_eq!(sent.len(), 1);
        let lines = sent[0].1.as_array().unwrap();
        assert_eq!(lines.len(), LINES_PER_SECOND);
        // The batch's newest.
        assert_eq!(lines[0]["line"], "line 1000");
        assert_eq!(lines[0]["dyno"], "web.1");
        assert_eq!(lines[LINES_PER_SECOND - 1]["line"], "line 2999");
        // Nothing more this second, and nothing said yet.
        let again = [chunk("web.1", 0..10)];
        assert!(budget.log_events(&again, 5, true, now).is_empty());
        assert!(
            budget
                .next_second(now + Duration::from_millis(500))
                .is_empty()
        );
        // The next second: what was left out, then the lines.
        let later = events(&budget.log_events(&again, 0, false, now + Duration::from_secs(1)));
        assert_eq!(later[0].0, "skipped");
        assert_eq!(
            later[0].1,
            serde_json::json!({"lines": 1015, "approximate": true})
        );
        assert_eq!(later[1].0, "log");
        assert_eq!(later.len(), 2);
        assert_eq!(budget.lines_of_lost_chunks(3), 30);
    }

    #[test]
    fn the_page_fetches_nothing_from_elsewhere() {
        // The SVG namespace is a name, and the router's port a link: nothing fetched.
        let page = PAGE
            .replace("http://www.w3.org/2000/svg", "")
            .replace("http://${location.hostname}", "");
        for word in ["http://", "https://", "@import", "url("] {
            assert!(!page.contains(word), "the page has {word}");
        }
        assert!(PAGE.contains("EventSource"));
    }
}
