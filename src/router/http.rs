//! `--router http`: Heroku's router, locally. Each request on a client's connection is
//! routed on its own to a web dyno that is up (`--balance`), over a connection to that
//! dyno kept open between requests (`pool`); the dyno gets Heroku's headers
//! (`heroku::Forwarded`), the log a line per request (`heroku::Line`), and a request the
//! router cannot serve gets Heroku's status, page and H-code.
//!
//! While no web dyno is up, a request waits for one only while they boot (H20 after
//! 75 s); crashed (H10) or scaled to 0 (H14) is answered at once. A dyno that refuses a
//! connection is left out for 5 s and another tried (H21 when every one refused), so a
//! dyno alive but not listening costs a request milliseconds, not a 30 s hang.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

use super::heroku::{self, Code, Line};
use super::idle::{BoxError, Idle};
use super::places::{Held, Place, Waiting};
use super::pool::{Pool, Sender};
use super::{Open, Pages, RouterLog, Say, Shared};
use crate::dyno::WebState;

/// Longest a connect to a dyno may take (H19).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a dyno that refused a connection is left out (H21).
const REFUSED_FOR: Duration = Duration::from_secs(5);
/// Longest a request waits for a web dyno while they boot (H20).
const BOOT_WAIT: Duration = Duration::from_secs(75);
/// Shortens `BOOT_WAIT` to this many milliseconds, for hkrun's own integration tests only
/// (TESTING.md, Tests that control time).
const BOOT_WAIT_KNOB: &str = "HKRUN_TEST_ROUTER_BOOT_WAIT_MS";

/// `BOOT_WAIT`, unless `BOOT_WAIT_KNOB` says otherwise.
fn boot_wait() -> Duration {
    static BOOT_WAIT_NOW: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    crate::os::test_knob(&BOOT_WAIT_NOW, BOOT_WAIT_KNOB, BOOT_WAIT)
}
/// The most of a dyno's response read ahead of what its client has taken.
const READ_AHEAD: usize = 64 * 1024;

/// What the client gets: the dyno's response, or the router's own page.
type ToClient = Either<Served, Full<Bytes>>;

/// The HTTP router's state, shared by every connection.
pub(super) struct Http {
    shared: Shared,
    pool: Pool,
    pages: Pages,
    say: Say,
    maintenance: Arc<AtomicBool>,
    /// Dynos that refused a connection, and until when they are left out.
    refused: Mutex<HashMap<SocketAddr, Instant>>,
    /// Lines waiting for `pass_lines`: handed to the log together, so its writer wakes
    /// once per batch, not once per request.
    lines: Mutex<Vec<String>>,
}

/// How often the router's lines go to the log.
const LINES_EVERY: Duration = Duration::from_millis(10);

/// A dyno chosen for a request, and a connection to it.
struct Chosen {
    addr: SocketAddr,
    dyno: String,
    sender: Sender,
    /// Taken from the pool rather than opened for this request.
    reused: bool,
    connect: Duration,
    open: Open,
}

impl Http {
    pub(super) fn new(
        shared: &Shared,
        pages: Pages,
        say: Say,
        maintenance: Arc<AtomicBool>,
    ) -> Self {
        Self {
            shared: shared.clone(),
            pool: Pool::default(),
            pages,
            say,
            maintenance,
            refused: Mutex::new(HashMap::new()),
            lines: Mutex::new(Vec::new()),
        }
    }

    /// Hands the lines logged meanwhile to the log, every `LINES_EVERY`.
    pub(super) async fn pass_lines(self: Arc<Self>) {
        let mut every = tokio::time::interval(LINES_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let lines =
                std::mem::take(&mut *self.lines.lock().unwrap_or_else(PoisonError::into_inner));
            for line in lines {
                (self.say)(line);
            }
        }
    }

    /// Closes idle connections to each dyno as it leaves the router's set.
    pub(super) async fn forget_old_connections(self: Arc<Self>) {
        let mut routes = self.shared.routes.clone();
        while routes.changed().await.is_ok() {
            let up: std::collections::HashSet<SocketAddr> = routes
                .borrow_and_update()
                .up
                .iter()
                .map(|b| b.addr)
                .collect();
            self.pool.keep_only(&up);
        }
    }

    /// Serves one client's connection, request after request, until it closes, is idle
    /// for 55 s, or gives its place up for a newcomer.
    pub(super) async fn serve(self: Arc<Self>, client: TcpStream, held: Held) {
        let _ = client.set_nodelay(true);
        let (Ok(peer), Ok(local)) = (client.peer_addr(), client.local_addr()) else {
            return;
        };
        self.serve_stream(client, peer, local.port(), held).await;
    }

    /// `serve` of any stream, from `peer` to the router's `port` (a test's in-memory
    /// one, on tokio's paused clock).
    async fn serve_stream<S>(self: Arc<Self>, client: S, peer: SocketAddr, port: u16, held: Held)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let place = Arc::clone(&held.place);
        let io = TokioIo::new(held.watch(client));
        let service = hyper::service::service_fn(move |req| {
            let http = Arc::clone(&self);
            let place = Arc::clone(&place);
            async move { Ok::<_, Infallible>(http.handle(req, peer, port, place).await) }
        });
        // No timer of hyper's: a client slow to send its head is `places`' to close (idle
        // for 55 s, or the idlest when every place is taken), which costs no timer per
        // request.
        let conn = hyper::server::conn::http1::Builder::new()
            // One past the limit, so a request over it is seen, and answered H25 (past
            // that, hyper answers 431 itself).
            .max_headers(heroku::MAX_HEADERS + 1)
            .max_buf_size(READ_AHEAD)
            .serve_connection(io, service)
            .with_upgrades();
        tokio::select! {
            _ = conn => {}
            () = held.places().closing(&held.place) => {}
        }
    }

    async fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        port: u16,
        place: Arc<Place>,
    ) -> Response<ToClient> {
        let start = Instant::now();
        let wall = SystemTime::now();
        let request_id = heroku::request_id(req.headers().get(heroku::X_REQUEST_ID));
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or(req.uri().authority().map(http::uri::Authority::as_str))
            .unwrap_or_default()
            .to_owned();
        let target = req
            .uri()
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str)
            .to_owned();
        // Until answered: dropped before then, the client left (H27).
        let mut pending = Pending {
            http: Arc::clone(&self),
            line: Some(Line {
                method: req.method().to_string(),
                path: target.clone(),
                host,
                request_id: request_id.clone(),
                fwd: peer.ip().to_canonical().to_string(),
                protocol: protocol(req.version()),
                ..Line::default()
            }),
            start,
        };
        if let Some(detail) = heroku::over_limits(req.method().as_str(), &target, req.headers()) {
            return pending.answer(Code::H25, Some(detail));
        }
        if req
            .headers()
            .get(header::EXPECT)
            .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"100-continue"))
        {
            return pending.answer(Code::H26, Some("unsupported expect header value"));
        }
        if self.maintenance.load(Ordering::Relaxed) {
            return pending.answer(Code::H80, None);
        }
        let upgrade = req.headers().contains_key(header::UPGRADE)
            && req
                .headers()
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| {
                    v.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                });
        heroku::strip_hop_by_hop(req.headers_mut(), upgrade);
        let fwd = heroku::Forwarded {
            client: peer.ip(),
            port,
            request_id: &request_id,
            start: wall,
        }
        .set(req.headers_mut());
        pending.line_mut().fwd = fwd;
        // An absolute-form target (`GET http://host/path`) goes on as its path alone.
        if req.uri().scheme().is_some()
            && let Ok(uri) = target.parse()
        {
            *req.uri_mut() = uri;
        }
        let client_version = req.version();
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        // To the dyno as HTTP/1.1 whatever the client spoke, so the connection can be
        // kept for the next request; the response goes back in the client's version.
        *req.version_mut() = Version::HTTP_11;
        let _waiting = Waiting::on(&place);

        let chosen = match self.choose().await {
            Ok(chosen) => chosen,
            Err(code) => return pending.answer(code, None),
        };
        {
            let line = pending.line_mut();
            line.dyno = Some(chosen.dyno.clone());
            line.connect = Some(chosen.connect);
        }
        let Chosen {
            addr,
            dyno,
            mut sender,
            reused,
            open,
            ..
        } = chosen;
        // A request with no body that may be sent twice: sent again on a new connection
        // when a reused one turns out closed.
        let again = (idempotent(req.method()) && req.body().is_end_stream()).then(|| {
            let mut copy = Request::new(Either::Right(Empty::new()));
            *copy.method_mut() = req.method().clone();
            *copy.uri_mut() = req.uri().clone();
            *copy.version_mut() = req.version();
            *copy.headers_mut() = req.headers().clone();
            copy
        });
        let sent_at = Instant::now();
        let deadline = self.shared.settings.request_timeout.map(|t| sent_at + t);
        let (parts, body) = req.into_parts();
        let body = Idle::new(body);
        let client_idled = body.idled();
        let sent = body.carried();
        let req = Request::from_parts(parts, Either::Left(body));
        let failure = |err: &hyper::Error| {
            if client_idled.load(Ordering::Relaxed) {
                Code::H28
            } else if err.is_body_write_aborted() {
                Code::H18
            } else {
                Code::H13
            }
        };
        let mut response = match within(deadline, sender.try_send_request(req)).await {
            Err(()) => return pending.answer(Code::H12, None),
            Ok(Ok(response)) => response,
            Ok(Err(mut failed)) => {
                let resend = failed.take_message().or(if reused { again } else { None });
                let Some(resend) = resend else {
                    return pending.answer(failure(failed.error()), None);
                };
                match self.connect(addr).await {
                    Ok((fresh, _)) => sender = fresh,
                    Err(code) => return pending.answer(code, None),
                }
                match within(deadline, sender.try_send_request(resend)).await {
                    Err(()) => return pending.answer(Code::H12, None),
                    Ok(Ok(response)) => response,
                    Ok(Err(failed)) => return pending.answer(failure(failed.error()), None),
                }
            }
        };
        let line = pending.line.take().expect("answered once");
        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let dyno_upgrade = hyper::upgrade::on(&mut response);
            let http = Arc::clone(&self);
            tokio::spawn(async move {
                let (to_dyno, from_dyno) = tunnel(client_upgrade, dyno_upgrade).await;
                http.shared.stats.carried(&dyno, to_dyno, from_dyno);
                let line = Line {
                    service: Some(sent_at.elapsed()),
                    status: 101,
                    bytes: Some(0),
                    ..line
                };
                drop(open);
                http.log(&line);
            });
            response
                .headers_mut()
                .insert(heroku::X_REQUEST_ID, header_value(&request_id));
            return response.map(|_| Either::Right(Full::new(Bytes::new())));
        }
        heroku::strip_hop_by_hop(response.headers_mut(), false);
        *response.version_mut() = client_version;
        response
            .headers_mut()
            .insert(heroku::X_REQUEST_ID, header_value(&request_id));
        let status = response.status().as_u16();
        response.map(|body| {
            Either::Left(Served {
                body: Idle::new(body),
                ended: false,
                failed: false,
                finish: Some(Finish {
                    http: Arc::clone(&self),
                    line: Line {
                        status,
                        dyno: Some(dyno),
                        ..line
                    },
                    sent_at,
                    sent,
                    addr,
                    sender,
                    _open: open,
                }),
            })
        })
    }

    /// A web dyno for one request, and a connection to it: waiting while web dynos boot,
    /// trying each up dyno in the balance's order (leaving out for 5 s one that refused),
    /// or the H-code that says why there is none.
    async fn choose(&self) -> Result<Chosen, Code> {
        let mut routes = self.shared.routes.clone();
        let boot_deadline = Instant::now() + boot_wait();
        loop {
            let (addrs, web) = {
                let routes = routes.borrow_and_update();
                let addrs: Vec<SocketAddr> = routes.up.iter().map(|b| b.addr).collect();
                (addrs, routes.web)
            };
            if addrs.is_empty() {
                match web {
                    WebState::Crashed => return Err(Code::H10),
                    WebState::NoDynos => return Err(Code::H14),
                    WebState::Booting => match timeout_at(boot_deadline, routes.changed()).await {
                        Ok(Ok(())) => continue,
                        Ok(Err(_)) | Err(_) => return Err(Code::H20),
                    },
                }
            }
            let picker = &self.shared.picker;
            let max = self.shared.settings.max_requests;
            let order: Vec<SocketAddr> = picker
                .order(&addrs)
                .into_iter()
                .filter(|&addr| picker.open_to(addr) < max)
                .collect();
            if order.is_empty() {
                return Err(Code::H11);
            }
            let mut timed_out = false;
            for addr in order {
                if self.left_out(addr) {
                    continue;
                }
                let dyno = routes
                    .borrow()
                    .up
                    .iter()
                    .find(|b| b.addr == addr)
                    .map(|b| b.slot.to_string())
                    .unwrap_or_default();
                let open = Open::new(picker, addr);
                if let Some(sender) = self.pool.take(addr) {
                    return Ok(Chosen {
                        addr,
                        dyno,
                        sender,
                        reused: true,
                        connect: Duration::ZERO,
                        open,
                    });
                }
                match self.connect(addr).await {
                    Ok((sender, connect)) => {
                        self.shared.stats.add(&dyno, |t| t.connections += 1);
                        return Ok(Chosen {
                            addr,
                            dyno,
                            sender,
                            reused: false,
                            connect,
                            open,
                        });
                    }
                    Err(Code::H19) => timed_out = true,
                    Err(_) => {}
                }
            }
            return Err(if timed_out { Code::H19 } else { Code::H21 });
        }
    }

    /// A new connection to the dyno at `addr`, and how long it took; H19 past 5 s, H21
    /// when refused (the dyno then left out for 5 s).
    async fn connect(&self, addr: SocketAddr) -> Result<(Sender, Duration), Code> {
        let began = Instant::now();
        let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(_)) => {
                self.shared.picker.failed.fetch_add(1, Ordering::Relaxed);
                self.shared
                    .stats
                    .failed_connects
                    .fetch_add(1, Ordering::Relaxed);
                self.refused
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(addr, Instant::now() + REFUSED_FOR);
                return Err(Code::H21);
            }
            Err(_) => return Err(Code::H19),
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            // What is read ahead of a client that does not take it: hyper's 400 KiB
            // would let each client that never reads cost that much.
            .max_buf_size(READ_AHEAD)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|_| Code::H21)?;
        tokio::spawn(conn.with_upgrades());
        Ok((sender, began.elapsed()))
    }

    /// Whether `addr` refused a connection within the last 5 s.
    fn left_out(&self, addr: SocketAddr) -> bool {
        let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        match refused.get(&addr) {
            Some(&until) if until > Instant::now() => true,
            Some(_) => {
                refused.remove(&addr);
                false
            }
            None => false,
        }
    }

    /// The router's line, as `--router-log` lets it through.
    fn log(&self, line: &Line) {
        let shown = match self.shared.settings.log {
            RouterLog::All => true,
            RouterLog::Errors => line.code.is_some_and(|c| c != Code::H80),
            RouterLog::Off => false,
        };
        self.shared.stats.answer(line.status, line.code);
        if let (Some(dyno), Some(service)) = (&line.dyno, line.service) {
            self.shared.stats.served(dyno, service);
        }
        if shown {
            let line = line.to_string();
            self.lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line);
        }
    }
}

/// A request not yet answered: its line so far. Dropped unanswered, the client went
/// away first (H27).
struct Pending {
    http: Arc<Http>,
    line: Option<Line>,
    start: Instant,
}

impl Pending {
    fn line_mut(&mut self) -> &mut Line {
        self.line.as_mut().expect("not yet answered")
    }

    /// The router's own answer: the code's status and page, and its line.
    fn answer(&mut self, code: Code, detail: Option<&'static str>) -> Response<ToClient> {
        let page = match code {
            Code::H80 => self.http.pages.maintenance.clone(),
            Code::H25 | Code::H26 => Bytes::from_static(heroku::BAD_REQUEST_PAGE.as_bytes()),
            _ => self.http.pages.error.clone(),
        };
        let mut line = self.line.take().expect("answered once");
        line.code = Some(code);
        line.detail = detail;
        line.status = code.status();
        line.bytes = Some(page.len() as u64);
        if line.dyno.is_some() {
            line.service = Some(
                self.start
                    .elapsed()
                    .saturating_sub(line.connect.unwrap_or_default()),
            );
        }
        let request_id = header_value(&line.request_id);
        self.http.log(&line);
        let mut response = Response::new(Either::Right(Full::new(page)));
        *response.status_mut() =
            StatusCode::from_u16(code.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-store"),
        );
        headers.insert(heroku::X_REQUEST_ID, request_id);
        if matches!(code, Code::H25 | Code::H26) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut line) = self.line.take() {
            line.code = Some(Code::H27);
            line.status = Code::H27.status();
            line.bytes = Some(0);
            if line.dyno.is_some() {
                line.service = Some(self.start.elapsed());
            }
            self.http.log(&line);
        }
    }
}

/// What is left to do once a dyno's response has gone to the client: its line, and its
/// connection back to the pool.
struct Finish {
    http: Arc<Http>,
    line: Line,
    sent_at: Instant,
    /// The bytes of the client's body sent on so far.
    sent: Arc<AtomicU64>,
    addr: SocketAddr,
    sender: Sender,
    _open: Open,
}

/// A dyno's response body on its way to the client, counted (and given up after 55 s of
/// nothing); when it is dropped (sent whole, or given up), the request's line is logged.
struct Served {
    /// Counted, and given up when the dyno sends nothing for 55 s (H15).
    body: Idle<Incoming>,
    ended: bool,
    /// The dyno's side broke mid-body (H18).
    failed: bool,
    finish: Option<Finish>,
}

impl Body for Served {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(Some(Err(_))) => self.failed = true,
            Poll::Ready(None) => self.ended = true,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let Some(finish) = self.finish.take() else {
            return;
        };
        let whole = self.ended || (!self.failed && self.body.is_end_stream());
        let mut line = finish.line;
        line.service = Some(finish.sent_at.elapsed());
        let bytes = self.body.carried_so_far();
        line.bytes = Some(bytes);
        if self.body.has_idled() {
            line.code = Some(Code::H15);
            line.status = Code::H15.status();
        } else if self.failed {
            line.code = Some(Code::H18);
        } else if !whole {
            line.code = Some(Code::H27);
        }
        if let Some(dyno) = &line.dyno {
            let sent = finish.sent.load(Ordering::Relaxed);
            finish.http.shared.stats.carried(dyno, sent, bytes);
        }
        finish.http.log(&line);
        if whole {
            let routed = finish
                .http
                .shared
                .routes
                .borrow()
                .up
                .iter()
                .any(|b| b.addr == finish.addr);
            finish.http.pool.put(finish.addr, finish.sender, routed);
        }
    }
}

/// Copies both ways between an upgraded client and dyno (a WebSocket), until either
/// closes; the bytes that went to the dyno, and back.
async fn tunnel(client: hyper::upgrade::OnUpgrade, dyno: hyper::upgrade::OnUpgrade) -> (u64, u64) {
    let (Ok(client), Ok(dyno)) = tokio::join!(client, dyno) else {
        return (0, 0);
    };
    let mut client = TokioIo::new(client);
    let mut dyno = TokioIo::new(dyno);
    tokio::io::copy_bidirectional(&mut client, &mut dyno)
        .await
        .unwrap_or((0, 0))
}

/// `future`'s output, unless `deadline` passes first.
async fn within<T>(deadline: Option<Instant>, future: impl Future<Output = T>) -> Result<T, ()> {
    match deadline {
        Some(deadline) => timeout_at(deadline, future).await.map_err(|_| ()),
        None => Ok(future.await),
    }
}

/// Methods a request of which may be sent twice (RFC 9110 9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "http1.0",
        Version::HTTP_09 => "http0.9",
        _ => "http1.1",
    }
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dyno::{Backend, Routes, Slot};
    use crate::router::{Picker, RouterStats, Settings, places};
    use tokio::sync::watch;

    fn http(routes: watch::Receiver<Routes>) -> Arc<Http> {
        let shared = Shared {
            routes,
            picker: Arc::new(Picker::new(super::super::Balance::RoundRobin)),
            stats: Arc::new(RouterStats::default()),
            settings: Settings::default(),
        };
        Arc::new(Http::new(
            &shared,
            Pages::default(),
            Arc::new(|_| {}),
            Arc::new(AtomicBool::new(false)),
        ))
    }

    fn none_up(web: WebState) -> Routes {
        Routes {
            up: Vec::new(),
            web,
        }
    }

    /// Heroku's router's wait while web dynos boot, written out rather than
    /// `BOOT_WAIT`, so a change to that fails here.
    const SEVENTY_FIVE_SECONDS: Duration = Duration::from_secs(75);

    #[tokio::test(start_paused = true)]
    async fn while_web_boots_a_request_waits_75_seconds_then_h20() {
        let (_publish, routes) = watch::channel(none_up(WebState::Booting));
        let start = Instant::now();
        let got = http(routes).choose().await.map(|c| c.dyno);
        assert_eq!(got.err(), Some(Code::H20));
        assert_eq!(start.elapsed(), SEVENTY_FIVE_SECONDS);
    }

    #[tokio::test(start_paused = true)]
    async fn crashed_or_scaled_to_zero_is_answered_at_once() {
        for (web, code) in [
            (WebState::Crashed, Code::H10),
            (WebState::NoDynos, Code::H14),
        ] {
            let (_publish, routes) = watch::channel(none_up(web));
            let start = Instant::now();
            let got = http(routes).choose().await.map(|c| c.dyno);
            assert_eq!(got.err(), Some(code));
            assert_eq!(start.elapsed(), Duration::ZERO);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_dyno_crashing_while_a_request_waits_answers_it_h10_then() {
        let (publish, routes) = watch::channel(none_up(WebState::Booting));
        let http = http(routes);
        let waiting = tokio::spawn(async move { http.choose().await.map(|c| c.dyno) });
        tokio::time::sleep(Duration::from_secs(10)).await;
        publish.send_replace(none_up(WebState::Crashed));
        let got = waiting.await.expect("the request");
        assert_eq!(got.err(), Some(Code::H10));
    }

    /// A request while web boots and no dyno comes up, through the whole HTTP path on an
    /// in-memory connection: after 75 s, 503 with the error page, and the H20 line.
    #[tokio::test(start_paused = true)]
    async fn a_request_that_finds_no_dyno_up_within_75_seconds_gets_h20() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (_publish, routes) = watch::channel(none_up(WebState::Booting));
        let said = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            routes,
            picker: Arc::new(Picker::new(super::super::Balance::RoundRobin)),
            stats: Arc::new(RouterStats::default()),
            settings: Settings::default(),
        };
        let http = Arc::new(Http::new(
            &shared,
            Pages::default(),
            Arc::new({
                let said = Arc::clone(&said);
                move |line| said.lock().expect("lines").push(line)
            }),
            Arc::new(AtomicBool::new(false)),
        ));
        tokio::spawn(Arc::clone(&http).pass_lines());
        let places = places::Places::new(4);
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
        tokio::spawn(http.serve_stream(server, peer, 5000, places.take().expect("a place")));
        let start = Instant::now();
        client
            .write_all(b"GET /a?b=1 HTTP/1.1\r\nHost: app.localhost\r\n\r\n")
            .await
            .expect("the request");
        let mut answer = vec![0; 4096];
        let mut got = 0;
        while !String::from_utf8_lossy(&answer[..got]).contains("</html>") {
            let n = client.read(&mut answer[got..]).await.expect("the answer");
            assert!(
                n > 0,
                "closed: {:?}",
                String::from_utf8_lossy(&answer[..got])
            );
            got += n;
        }
        assert_eq!(start.elapsed(), SEVENTY_FIVE_SECONDS);
        let answer = String::from_utf8_lossy(&answer[..got]);
        assert!(
            answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{answer}"
        );
        assert!(answer.contains("Application error"), "{answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let said = said.lock().expect("lines").clone();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].starts_with(
                "at=error code=H20 desc=\"App boot timeout\" method=GET path=\"/a?b=1\" host=app.localhost request_id="
            ),
            "{said:?}"
        );
        assert!(
            said[0].ends_with(" fwd=\"127.0.0.1\" dyno= connect= service= status=503 bytes=283 protocol=http1.1 tls=false"),
            "{said:?}"
        );
    }

    #[tokio::test]
    async fn a_refusing_dyno_is_left_out_for_5_seconds() {
        // A port nothing listens on: bound, then closed.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let up = Routes {
            up: vec![Backend {
                slot: Slot::new("web", 1),
                addr,
            }],
            web: WebState::default(),
        };
        let (_publish, routes) = watch::channel(up);
        let http = http(routes);
        assert_eq!(http.choose().await.err().map(|_| ()), Some(()));
        assert!(http.left_out(addr));
        assert_eq!(http.choose().await.err(), Some(Code::H21));
    }
}
