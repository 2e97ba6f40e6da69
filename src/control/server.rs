//! The control server: accepts clients on the socket, checks who they are, reads their
//! requests and answers them. Questions about dynos go to the driver as `Call`s (the core
//! decides); `logs` is served from the log history directly.
//!
//! A client can never hold up the supervisor: each connection is its own task, reads and
//! writes time out, request lines are capped, and the number of clients is bounded.
//! Nor can clients hold up each other: when every place is taken, the connection that
//! has waited longest on its client (for a request, or for an answer to be taken) is
//! closed to make room, so idle or unread connections cannot lock anyone out.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::timeout;

use super::protocol::{self, LogLine, LogSource, LogsHeader, MAX_REQUEST, Request, Response};
use crate::dyno::Slot;
use crate::logs::Origin;
use crate::logs::history::{self, Chunk, Follow, History};
use crate::logs::pump::Shown;
use crate::plan::formation::ScaleChange;
use crate::seats::{self, Limits, Seats};
use crate::supervisor::api::{Attached, Call};
use crate::supervisor::input::{Control, Target};
use crate::supervisor::outcome::Outcome;

/// How long a client may take to send a whole request.
const IDLE: Duration = Duration::from_secs(10);
/// Shortens `IDLE` to this many milliseconds, for hkrun's own integration tests only
/// (TESTING.md, Tests that control time).
const IDLE_KNOB: &str = "HKRUN_TEST_CONTROL_IDLE_MS";
/// How long one answer may take to be taken by the client.
const WRITE: Duration = Duration::from_secs(10);
/// Clients served at once. A newcomer takes the place of the one that has waited
/// longest on its client; only when hkrun is working for all of them is it refused.
const MAX_CLIENTS: usize = 128;
/// `logs` requests served at once (a `--tail` holds its place until it hangs up), so
/// streams cannot crowd out `ps` and `stop`.
const MAX_STREAMS: usize = 16;
const LIMITS: Limits = Limits {
    connections: MAX_CLIENTS,
    streams: MAX_STREAMS,
};
/// How often a control client that cannot be accepted is warned about, at most.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Bytes of log answer gathered before each write.
const SEND_BATCH: usize = 64 * 1024;
/// Chunks of log lines sent to a `--tail` client in one write, at most.
const TAIL_BATCH: usize = 64;

/// What every connection needs.
pub struct Context {
    pub calls: mpsc::UnboundedSender<Call>,
    pub history: Arc<History>,
    /// How the supervisor renders its log, for `hkrun logs`.
    pub header: LogsHeader,
}

/// Serves clients until the runtime ends.
pub async fn serve(listener: std::os::unix::net::UnixListener, context: Context) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::warn!(%err, "the control socket cannot be served");
            return;
        }
    };
    let shared = Arc::new(Shared {
        context,
        clients: Seats::new(LIMITS),
    });
    let me = nix::unistd::geteuid().as_raw();
    let mut warned: Option<Instant> = None;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors, most likely: make room, and say so now and
                // then, not at every retry.
                if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    tracing::warn!(%err, "cannot accept a control client");
                    warned = Some(Instant::now());
                }
                shared.clients.make_room();
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(seat) = shared.clients.admit() else {
            // A new connection's buffer is empty, so this short line fits without waiting.
            let busy = Response::error("too many control clients at once; try again");
            let _ = stream.try_write(&busy.encode());
            continue;
        };
        let id = seat.id();
        let seat = Seat {
            seat,
            shared: Arc::clone(&shared),
        };
        let task = tokio::spawn(async move {
            connection(stream, &seat, me).await;
        });
        shared.clients.set_abort(id, task.abort_handle());
    }
}

struct Shared {
    context: Context,
    clients: Arc<Seats>,
}

/// One connection's seat among the clients (`seats`), and what it serves.
struct Seat {
    seat: seats::Seat,
    shared: Arc<Shared>,
}

impl Seat {
    fn set_waiting(&self, waiting: bool) {
        self.seat.set_waiting(waiting);
    }

    /// Takes one of the `logs` places, closing the stream that has waited longest on its
    /// client if all are taken; false if none is waiting.
    fn start_stream(&self) -> bool {
        self.seat.start_stream()
    }

    fn end_stream(&self) {
        self.seat.end_stream();
    }

    /// Writes one answer, waiting on the client meanwhile.
    async fn send(&self, write: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> Result<(), ()> {
        self.set_waiting(true);
        let sent = send(write, bytes).await;
        self.set_waiting(false);
        sent
    }
}

async fn connection(mut stream: UnixStream, seat: &Seat, me: u32) {
    // The socket is 0600 already; this also holds if someone loosens its mode.
    match stream.peer_cred() {
        Ok(peer) if peer.uid() == me || peer.uid() == 0 => {}
        Ok(peer) => {
            let text = format!(
                "permission denied: uid {} may not control hkrun (it runs as uid {me})",
                peer.uid()
            );
            let _ = seat
                .send(&mut stream, &Response::error(text).encode())
                .await;
            return;
        }
        Err(_) => return,
    }
    let who = match stream.peer_cred().ok().and_then(|p| p.pid()) {
        Some(pid) => format!("pid {pid}"),
        None => "another client".to_owned(),
    };
    let (read, write) = stream.into_split();
    serve_client(read, write, seat, &who).await;
}

/// `IDLE`, unless `IDLE_KNOB` says otherwise.
fn idle() -> Duration {
    static IDLE_NOW: OnceLock<Duration> = OnceLock::new();
    *IDLE_NOW.get_or_init(|| {
        std::env::var(IDLE_KNOB)
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(IDLE, Duration::from_millis)
    })
}

/// Answers one client's requests until it leaves, times out, or hkrun exits. Generic over
/// the stream so the timeouts can be tested on tokio's paused clock.
async fn serve_client(
    read: impl AsyncRead + Unpin,
    mut write: impl AsyncWrite + Unpin,
    seat: &Seat,
    who: &str,
) {
    let context = &seat.shared.context;
    let mut read = BufReader::new(read);
    loop {
        seat.set_waiting(true);
        let line = match timeout(idle(), read_request(&mut read)).await {
            Ok(Line::Request(line)) => line,
            Ok(Line::TooLong) => {
                let text = format!("request longer than {MAX_REQUEST} bytes");
                let _ = seat.send(&mut write, &Response::error(text).encode()).await;
                return;
            }
            // Gone, or silent for too long.
            Ok(Line::End) | Err(_) => return,
        };
        seat.set_waiting(false);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let sent = match protocol::parse_request(&line) {
            Err(text) => seat.send(&mut write, &Response::error(text).encode()).await,
            Ok(Request::Logs {
                lines,
                tail,
                ps,
                source,
            }) => 'logs: {
                if let Some(name) = &ps {
                    if let Err(text) = known_ps(context, name).await {
                        break 'logs seat.send(&mut write, &Response::error(text).encode()).await;
                    }
                }
                if !seat.start_stream() {
                    let busy = Response::error("too many logs clients at once; try again");
                    let _ = seat.send(&mut write, &busy.encode()).await;
                    return;
                }
                let filter = Filter { ps, source };
                let lines = lines.min(history::KEEP);
                let (chunks, follow) = context.history.since(lines, |c| filter.keeps(c), tail);
                let mut out = Response {
                    logs: Some(context.header.clone()),
                    ..Response::ok()
                }
                .encode();
                // In batches, each awaited: a client that does not read holds only one.
                for (chunk, line) in history::last_lines(&chunks, lines) {
                    out.extend(line_response(chunk, line));
                    if out.len() >= SEND_BATCH {
                        if seat.send(&mut write, &out).await.is_err() {
                            return;
                        }
                        out.clear();
                    }
                }
                drop(chunks);
                if follow.is_none() {
                    out.extend(
                        Response {
                            end: true,
                            ..Response::ok()
                        }
                        .encode(),
                    );
                }
                match (seat.send(&mut write, &out).await, follow) {
                    (Ok(()), Some(follow)) => {
                        tail_log(seat, &mut read, &mut write, follow, &filter).await;
                        return;
                    }
                    (sent, _) => {
                        seat.end_stream();
                        sent
                    }
                }
            }
            Ok(Request::Connect { dyno, size, framed }) => {
                if !seat.start_stream() {
                    let busy = Response::error("too many streaming clients at once; try again");
                    let _ = seat.send(&mut write, &busy.encode()).await;
                    return;
                }
                let (reply, rx) = oneshot::channel();
                let call = Call::Attach {
                    dyno,
                    who: who.to_owned(),
                    size,
                    reply,
                };
                if context.calls.send(call).is_err() {
                    let _ = seat.send(&mut write, &stopping().encode()).await;
                    return;
                }
                match rx.await {
                    Ok(Ok(attached)) => {
                        // However this connection ends, the dyno is free again.
                        let _detach = DetachOnDrop {
                            calls: context.calls.clone(),
                            slot: attached.slot.clone(),
                            id: attached.id,
                        };
                        let text = format!("Connected to {}. Ctrl-] detaches.", attached.slot);
                        if seat
                            .send(&mut write, &Response::message(text).encode())
                            .await
                            .is_ok()
                        {
                            relay(&mut read, &mut write, attached, framed).await;
                        }
                        return;
                    }
                    Ok(Err(refusal)) => {
                        seat.end_stream();
                        let refused = Response::error(refusal.to_string());
                        seat.send(&mut write, &refused.encode()).await
                    }
                    Err(_) => {
                        let _ = seat.send(&mut write, &stopping().encode()).await;
                        return;
                    }
                }
            }
            Ok(Request::Resize { dyno, size }) => {
                let (reply, rx) = oneshot::channel();
                let call = Call::Resize {
                    dyno,
                    who: who.to_owned(),
                    size,
                    reply,
                };
                let response = match context.calls.send(call) {
                    Err(_) => stopping(),
                    Ok(()) => match rx.await {
                        Ok(Ok(())) => Response::ok(),
                        Ok(Err(refusal)) => Response::error(refusal.to_string()),
                        Err(_) => stopping(),
                    },
                };
                seat.send(&mut write, &response.encode()).await
            }
            Ok(request) => {
                let stop_all = matches!(&request, Request::Stop { target: None, targets } if targets.is_empty());
                let answer = call(context, request);
                tokio::pin!(answer);
                // A client that hangs up while waiting (a long restart) frees its place.
                let response = tokio::select! {
                    response = &mut answer => response,
                    gone = hung_up(&mut read) => {
                        if gone {
                            return;
                        }
                        answer.await
                    }
                };
                let sent = seat.send(&mut write, &response.encode()).await;
                if stop_all && sent.is_ok() {
                    // Held open until hkrun exits: the client waits for that.
                    std::future::pending::<()>().await;
                }
                sent
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Tells the driver an attachment has ended, when its connection does.
struct DetachOnDrop {
    calls: mpsc::UnboundedSender<Call>,
    slot: Slot,
    id: u64,
}

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        let _ = self.calls.send(Call::Detach {
            slot: self.slot.clone(),
            id: self.id,
        });
    }
}

/// Carries an attached client's keys to the dyno's terminal and the dyno's output back,
/// until the client hangs up or the dyno's run ends. A dyno that takes no keys for
/// `WRITE` (its terminal's input full) ends the session, so the client can leave.
/// `framed`: each chunk of output after an `output` line, and the run's end as an `exit`
/// line (ARCHITECTURE.md, Control protocol); else raw bytes, for clients from before.
async fn relay(
    read: &mut (impl AsyncBufReadExt + Unpin),
    write: &mut (impl AsyncWrite + Unpin),
    mut attached: Attached,
    framed: bool,
) {
    let mut keys = vec![0; 4096];
    loop {
        tokio::select! {
            typed = read.read(&mut keys) => match typed {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    match timeout(WRITE, attached.input.write_all(&keys[..n])).await {
                        Ok(Ok(())) => {}
                        _ => return,
                    }
                }
            },
            shown = attached.output.recv() => match shown {
                Some(Shown::Output(bytes)) => {
                    let framed = framed.then(|| {
                        let mut frame = Response {
                            output: Some(bytes.len()),
                            ..Response::ok()
                        }
                        .encode();
                        frame.extend_from_slice(&bytes);
                        frame
                    });
                    if send(write, framed.as_deref().unwrap_or(&bytes)).await.is_err() {
                        return;
                    }
                }
                Some(Shown::Exited(exit)) => {
                    if framed {
                        let end = Response {
                            exit: Some(exit.code()),
                            ..Response::ok()
                        };
                        let _ = send(write, &end.encode()).await;
                    }
                    return;
                }
                None => return,
            },
        }
    }
}

enum Line {
    /// One request, without its newline.
    Request(Vec<u8>),
    TooLong,
    /// The client hung up, perhaps halfway through a line.
    End,
}

async fn read_request(read: &mut (impl AsyncBufReadExt + Unpin)) -> Line {
    let mut line = Vec::new();
    let limit = u64::try_from(MAX_REQUEST).unwrap_or(u64::MAX);
    match (&mut *read).take(limit).read_until(b'\n', &mut line).await {
        Ok(_) if line.last() == Some(&b'\n') => {
            line.pop();
            Line::Request(line)
        }
        Ok(_) if line.len() >= MAX_REQUEST => Line::TooLong,
        Ok(_) | Err(_) => Line::End,
    }
}

/// Whether the client has hung up; returns false as soon as it has sent more instead
/// (left unread for the next request).
async fn hung_up(read: &mut (impl AsyncBufReadExt + Unpin)) -> bool {
    match read.fill_buf().await {
        Ok(buffered) => buffered.is_empty(),
        Err(_) => true,
    }
}

async fn send(write: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> Result<(), ()> {
    match timeout(WRITE, write.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Turns a request about dynos into a call to the driver and its answer into a response.
async fn call(context: &Context, request: Request) -> Response {
    let request = match request {
        Request::Ps {} => {
            let (tx, rx) = oneshot::channel();
            if context.calls.send(Call::Ps(tx)).is_err() {
                return stopping();
            }
            return match rx.await {
                Ok(ps) => Response {
                    ps: Some(ps),
                    ..Response::ok()
                },
                Err(_) => stopping(),
            };
        }
        Request::Stop {
            target: None,
            targets,
        } if targets.is_empty() => {
            if context.calls.send(Call::StopAll).is_err() {
                return stopping();
            }
            return Response::message("Stopping all dynos...");
        }
        Request::Scale { changes } => {
            if changes.is_empty() {
                return Response::error("nothing to scale (give changes such as web=2 worker+1)");
            }
            match changes.iter().map(|c| c.parse::<ScaleChange>()).collect() {
                Ok(changes) => Control::Scale(changes),
                Err(err) => return Response::error(err.to_string()),
            }
        }
        Request::Restart { target, targets } => match parse_targets(target, targets) {
            Ok(targets) => Control::Restart(targets),
            Err(text) => return Response::error(text),
        },
        Request::Stop { target, targets } => match parse_targets(target, targets) {
            Ok(targets) => Control::Stop(targets),
            Err(text) => return Response::error(text),
        },
        Request::Kill { targets, signal } => {
            let Some(signal) = crate::dyno::signal_named(&signal) else {
                return Response::error(format!(
                    "bad signal `{signal}` (expected a name such as SIGHUP, HUP or USR1, or a number)"
                ));
            };
            match parse_targets(None, targets) {
                Ok(targets) if !targets.is_empty() => Control::Kill { targets, signal },
                Ok(_) => return Response::error("name the dynos to signal"),
                Err(text) => return Response::error(text),
            }
        }
        Request::Logs { .. } | Request::Connect { .. } | Request::Resize { .. } => {
            return Response::error("answered elsewhere");
        }
        Request::Reload {} => {
            let (reply, rx) = oneshot::channel();
            if context.calls.send(Call::Reload { reply }).is_err() {
                return stopping();
            }
            return match rx.await {
                Ok(outcome) => answered(&outcome),
                Err(_) => stopping(),
            };
        }
    };
    let (reply, rx) = oneshot::channel();
    if context.calls.send(Call::Change { request, reply }).is_err() {
        return stopping();
    }
    match rx.await {
        Ok(outcome) => answered(&outcome),
        Err(_) => stopping(),
    }
}

/// The core's answer to a change, as the client shows it.
fn answered(outcome: &Outcome) -> Response {
    match outcome.is_done() {
        true => Response::message(outcome.to_string()),
        false => Response::error(outcome.to_string()),
    }
}

/// Checks that `logs --ps` names a process type of the Procfile, one of its dynos (`web.3`,
/// running or not: its lines may be in the history, or still to come), `release` or
/// `system` (hkrun's own lines).
async fn known_ps(context: &Context, ps: &str) -> Result<(), String> {
    let (tx, rx) = oneshot::channel();
    if context.calls.send(Call::Ps(tx)).is_err() {
        return Ok(());
    }
    let Ok(view) = rx.await else {
        return Ok(());
    };
    let kind = match ps.rsplit_once('.') {
        Some((kind, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => kind,
        Some(_) => "",
        None => ps,
    };
    let known = view.procfile.iter().any(|t| t == kind)
        || crate::dyno::is_one_off(kind)
        || ps == crate::logs::Label::system().name;
    if known {
        return Ok(());
    }
    Err(format!(
        "unknown process type or dyno `{ps}` for --ps (the Procfile has {})",
        view.procfile.join(", ")
    ))
}

/// `target` and `targets` of a request, each read.
fn parse_targets(target: Option<String>, targets: Vec<String>) -> Result<Vec<Target>, String> {
    target
        .into_iter()
        .chain(targets)
        .map(|text| {
            text.parse().map_err(|()| {
                format!(
                    "bad target `{text}` (expected a process type such as web, a dyno such as \
                     web.2, or a glob such as 'work*')"
                )
            })
        })
        .collect()
}

fn stopping() -> Response {
    Response::error("hkrun is stopping the app")
}

/// `--ps` and `--source`.
struct Filter {
    ps: Option<String>,
    source: Option<LogSource>,
}

impl Filter {
    fn keeps(&self, chunk: &Chunk) -> bool {
        let name = chunk.label.name.as_str();
        let ps_ok = self.ps.as_deref().is_none_or(|ps| {
            name == ps
                || name
                    .strip_prefix(ps)
                    .is_some_and(|rest| rest.starts_with('.'))
        });
        ps_ok && self.source.is_none_or(|s| s == source(chunk.origin))
    }
}

fn source(origin: Origin) -> LogSource {
    match origin {
        Origin::App => LogSource::App,
        Origin::Hkrun => LogSource::Heroku,
    }
}

fn line_response(chunk: &Chunk, line: &[u8]) -> Vec<u8> {
    Response {
        line: Some(LogLine {
            ts: chunk.clock.rfc3339.clone(),
            hms: chunk.clock.hms.clone(),
            source: source(chunk.origin),
            dyno: chunk.label.name.clone(),
            color: chunk.label.color,
            line: String::from_utf8_lossy(line).into_owned(),
        }),
        ..Response::ok()
    }
    .encode()
}

/// Streams new lines until the client leaves or stops reading, or the log ends (hkrun is
/// exiting): then the last lines and the end.
async fn tail_log(
    seat: &Seat,
    read: &mut (impl AsyncRead + Unpin),
    write: &mut (impl AsyncWrite + Unpin),
    mut follow: Follow,
    filter: &Filter,
) {
    let mut scratch = [0u8; 256];
    loop {
        let first = tokio::select! {
            got = follow.recv() => got,
            // Anything but more bytes means the client has gone.
            n = read.read(&mut scratch) => match n {
                Ok(n) if n > 0 => continue,
                _ => return,
            },
        };
        let mut out = Vec::new();
        let mut next = Some(first);
        let mut taken = 0;
        let mut ended = false;
        while let Some(got) = next.take() {
            match got {
                Ok(chunk) if filter.keeps(&chunk) => {
                    for line in chunk.lines() {
                        out.extend(line_response(&chunk, line));
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => out.extend(
                    Response {
                        skipped: Some(n),
                        ..Response::ok()
                    }
                    .encode(),
                ),
                Err(broadcast::error::RecvError::Closed) => {
                    out.extend(
                        Response {
                            end: true,
                            ..Response::ok()
                        }
                        .encode(),
                    );
                    ended = true;
                    break;
                }
            }
            taken += 1;
            if taken < TAIL_BATCH {
                next = follow.ready();
            }
        }
        let failed = !out.is_empty() && seat.send(write, &out).await.is_err();
        if failed || ended {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::task::JoinHandle;
    use tokio::time::{Instant, sleep};

    use super::*;
    use crate::logs::LogFormat;

    /// Both limits as ARCHITECTURE.md gives them (Control protocol); written out rather
    /// than `IDLE` and `WRITE`, so a change to those fails here.
    const TEN_SECONDS: Duration = Duration::from_secs(10);
    /// Far past any limit: a connection still open then was never going to close.
    const BOUND: Duration = Duration::from_secs(600);

    /// Serves the server's end of an in-memory stream holding `capacity` bytes each way
    /// (no I/O driver, so the paused clock moves only when every task waits on a timer).
    /// The task ends, with the time, when the server closes the connection.
    fn serve(capacity: usize) -> (DuplexStream, JoinHandle<Instant>) {
        let (client, server) = tokio::io::duplex(capacity);
        let (calls, _) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            context: Context {
                calls,
                history: History::new(),
                header: LogsHeader {
                    format: LogFormat::Default,
                    timestamps: false,
                    width: 6,
                },
            },
            clients: Seats::new(LIMITS),
        });
        let seat = shared.clients.admit().expect("a place");
        let seat = Seat { seat, shared };
        let task = tokio::spawn(async move {
            let (read, write) = tokio::io::split(server);
            serve_client(read, write, &seat, "a test").await;
            Instant::now()
        });
        (client, task)
    }

    async fn closed_at(task: JoinHandle<Instant>) -> Instant {
        timeout(BOUND, task)
            .await
            .expect("the connection is closed")
            .expect("no panic")
    }

    async fn answer(client: &mut DuplexStream) -> Response {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while client.read(&mut byte).await.expect("read") == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        serde_json::from_slice(&line).expect("a JSON answer")
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_silent_for_ten_seconds_is_closed() {
        let start = Instant::now();
        let (mut client, task) = serve(1024);
        assert_eq!(closed_at(task).await - start, TEN_SECONDS);
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.expect("read"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn half_a_request_does_not_hold_the_connection_open() {
        let start = Instant::now();
        let (mut client, task) = serve(1024);
        sleep(Duration::from_secs(5)).await;
        client.write_all(b"{\"v\":1,\"cm").await.expect("write");
        // The limit is on the whole request, not the time since its last byte.
        assert_eq!(closed_at(task).await - start, TEN_SECONDS);
    }

    #[tokio::test(start_paused = true)]
    async fn each_request_gives_the_client_ten_seconds_more() {
        let start = Instant::now();
        let (mut client, task) = serve(1024);
        sleep(Duration::from_secs(9)).await;
        client.write_all(b"nonsense\n").await.expect("write");
        let response = answer(&mut client).await;
        assert!(!response.ok, "{response:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(9));
        assert_eq!(
            closed_at(task).await - start,
            Duration::from_secs(9) + TEN_SECONDS
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_leaves_its_answer_for_ten_seconds_is_closed() {
        let start = Instant::now();
        // Room for 8 bytes of the answer: the rest waits for the client to read.
        let (mut client, task) = serve(8);
        sleep(Duration::from_secs(3)).await;
        client.write_all(b"nonsense\n").await.expect("write");
        // Counted from the answer, not from the start of the connection.
        assert_eq!(
            closed_at(task).await - start,
            Duration::from_secs(3) + TEN_SECONDS
        );
        let mut taken = Vec::new();
        client.read_to_end(&mut taken).await.expect("read");
        assert_eq!(taken.len(), 8, "{taken:?}");
    }
}
