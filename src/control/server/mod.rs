//! The control server: accepts clients on the socket, checks who they are, reads their
//! requests and answers them (`dispatch`). Questions about dynos go to the driver as
//! `Call`s (the core decides); `logs` is served from the log history directly (`logs`),
//! and `connect` relays a dyno's terminal (`attach`).
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
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

use super::protocol::{self, LogsHeader, MAX_REQUEST, Reply};
use crate::logs::history::History;
use crate::seats::{self, Limits, Seats};
use crate::supervisor::api::Call;
use dispatch::dispatch;

mod attach;
mod dispatch;
mod logs;

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

/// What every connection needs.
pub(crate) struct Context {
    pub calls: mpsc::UnboundedSender<Call>,
    pub history: Arc<History>,
    /// How the supervisor renders its log, for `hkrun logs`.
    pub header: LogsHeader,
    /// The Procfile's process types, in its order: what `logs --ps` may name (with their
    /// dynos, the one-offs and `system`). Scaling never changes them.
    pub types: Vec<String>,
}

/// Serves clients until the runtime ends.
pub(crate) async fn serve(listener: std::os::unix::net::UnixListener, context: Context) {
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
            let busy = Reply::error("too many control clients at once; try again");
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
            let _ = seat.send(&mut stream, &Reply::error(text).encode()).await;
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
    crate::os::test_knob(&IDLE_NOW, IDLE_KNOB, IDLE)
}

/// What a connection does after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    /// Reads the next request.
    Next,
    /// Closes: the client has gone, could not be answered, or its stream is over.
    Close,
}

impl From<Result<(), ()>> for Flow {
    fn from(sent: Result<(), ()>) -> Self {
        match sent {
            Ok(()) => Self::Next,
            Err(()) => Self::Close,
        }
    }
}

/// One client's connection: its seat, who it is (`pid 4242`), and its two halves (a
/// socket's; in the tests, an in-memory stream's).
struct Client<'a> {
    seat: &'a Seat,
    who: &'a str,
    read: BufReader<Box<dyn AsyncRead + Send + Unpin>>,
    write: Box<dyn AsyncWrite + Send + Unpin>,
}

impl<'a> Client<'a> {
    fn context(&self) -> &'a Context {
        &self.seat.shared.context
    }

    /// Writes bytes, waiting on the client meanwhile.
    async fn send(&mut self, bytes: &[u8]) -> Result<(), ()> {
        self.seat.send(&mut self.write, bytes).await
    }

    async fn reply(&mut self, response: &Reply) -> Flow {
        self.send(&response.encode()).await.into()
    }

    /// Sends the driver's answer once it comes (`reply` makes the line of it). A client
    /// that hangs up meanwhile (a long restart) frees its place at once.
    async fn answer<T>(
        &mut self,
        asked: impl Future<Output = Result<T, Stopping>>,
        reply: impl FnOnce(T) -> Reply,
    ) -> Flow {
        tokio::pin!(asked);
        let answered = tokio::select! {
            answered = &mut asked => answered,
            gone = hung_up(&mut self.read) => {
                if gone {
                    return Flow::Close;
                }
                asked.await
            }
        };
        self.reply(&answered.map_or_else(|Stopping| stopping(), reply))
            .await
    }
}

/// The driver has gone: hkrun is exiting.
struct Stopping;

/// What a client is told when the driver has gone.
fn stopping() -> Reply {
    Reply::error("hkrun is stopping the app")
}

/// Asks the driver: `call` makes the call, given where its answer goes.
async fn ask<T>(
    context: &Context,
    call: impl FnOnce(oneshot::Sender<T>) -> Call,
) -> Result<T, Stopping> {
    let (reply, answer) = oneshot::channel();
    context.calls.send(call(reply)).map_err(|_| Stopping)?;
    answer.await.map_err(|_| Stopping)
}

/// Answers one client's requests until it leaves, times out, or hkrun exits. Generic over
/// the stream so the timeouts can be tested on tokio's paused clock.
async fn serve_client(
    read: impl AsyncRead + Send + Unpin + 'static,
    write: impl AsyncWrite + Send + Unpin + 'static,
    seat: &Seat,
    who: &str,
) {
    let mut client = Client {
        seat,
        who,
        read: BufReader::new(Box::new(read)),
        write: Box::new(write),
    };
    loop {
        seat.set_waiting(true);
        let line = match timeout(idle(), read_request(&mut client.read)).await {
            Ok(Line::Request(line)) => line,
            Ok(Line::TooLong) => {
                let text = format!("request longer than {MAX_REQUEST} bytes");
                client.reply(&Reply::error(text)).await;
                return;
            }
            // Gone, or silent for too long.
            Ok(Line::End) | Err(_) => return,
        };
        seat.set_waiting(false);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let flow = match protocol::parse_request(&line) {
            Err(text) => client.reply(&Reply::error(text)).await,
            Ok(request) => dispatch(&mut client, request).await,
        };
        if flow == Flow::Close {
            return;
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
                types: vec!["web".into()],
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

    async fn answer(client: &mut DuplexStream) -> Reply {
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
        assert!(matches!(response, Reply::Error { .. }), "{response:?}");
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
