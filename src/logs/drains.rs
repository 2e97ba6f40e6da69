//! `--drain URL`: every log line to a syslog receiver (Papertrail, rsyslog, a log
//! shipper), as Heroku's log drains send them: RFC 5424 messages
//! (`<190>1 TIME APP app web.1 - text`), over TCP with octet-counted framing (RFC 6587)
//! or over UDP, one datagram each.
//!
//! Each drain follows the history on a thread of its own and queues what it reads, up to
//! `QUEUE` messages; a second thread sends them, reconnecting with back-off. A drain that
//! is down or slow never blocks or slows the app: once the queue is full the oldest
//! messages go, and when the drain is back, one line (in the app's log and in the drain,
//! at most every 10 s while it stays slow) says how many.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use super::history::{Chunk, History};
use super::render::{Label, Origin};
use super::writer::LogSender;

/// Messages queued for a drain, at most, and their bytes at most.
pub const QUEUE: usize = 50_000;
const QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// Bytes sent at once to a TCP drain.
const BATCH: usize = 64 * 1024;
/// How long a connect or a write may take before the drain counts as down.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How often, at most, lines dropped are said (they add up meanwhile).
const SAY_EVERY: Duration = Duration::from_secs(10);
/// The back-off between reconnects: from the first to the last, doubling.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// How a drain is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `syslog://` (Heroku's word for it) or `syslog+tcp://`.
    Tcp,
    /// `syslog+udp://`.
    Udp,
}

/// One `--drain URL`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drain {
    pub url: String,
    pub transport: Transport,
    /// `host:port`, resolved at each connect.
    pub address: String,
}

impl std::str::FromStr for Drain {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| "expected a URL such as syslog+tcp://logs.example.com:514".to_owned())?;
        let transport = match scheme {
            "syslog" | "syslog+tcp" => Transport::Tcp,
            "syslog+udp" => Transport::Udp,
            "syslog+tls" | "https" => {
                return Err(format!(
                    "{scheme}:// drains are not built yet; syslog+tcp:// and syslog+udp:// are"
                ));
            }
            other => return Err(format!("unknown drain scheme {other}://")),
        };
        let address = rest.trim_end_matches('/');
        match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err("expected host:port after the scheme".to_owned()),
        }
        Ok(Self {
            url: url.to_owned(),
            transport,
            address: address.to_owned(),
        })
    }
}

/// The queue between a drain's reader and its sender.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    messages: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Messages dropped (the oldest, for room) and not yet said.
    dropped: u64,
    /// Chunks of lines the reader fell behind on (each one line or more), not yet said.
    missed_chunks: u64,
    /// The log has ended: send what is queued, then stop.
    ended: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, messages: impl IntoIterator<Item = Vec<u8>>) {
        let mut state = self.lock();
        for message in messages {
            while !state.messages.is_empty()
                && (state.messages.len() >= QUEUE || state.bytes + message.len() > QUEUE_BYTES)
            {
                let oldest = state.messages.pop_front().expect("not empty");
                state.bytes -= oldest.len();
                state.dropped += 1;
            }
            state.bytes += message.len();
            state.messages.push_back(message);
        }
        self.ready.notify_one();
    }
}

/// Starts sending the log to `drain`; `host` names the app in each message. The receiver
/// hears once the drain has sent everything the log held when it ended (or given up).
pub fn spawn(
    drain: Drain,
    host: String,
    history: &History,
    log: LogSender,
) -> io::Result<std::sync::mpsc::Receiver<()>> {
    let (_, follow) = history.since(0, |_| false, true);
    let Some(mut follow) = follow else {
        return Err(io::Error::other("the log has ended"));
    };
    let queue = Arc::new(Queue::default());
    let reading = Arc::clone(&queue);
    std::thread::Builder::new()
        .name("hkrun-drain-read".into())
        .spawn(move || {
            loop {
                match follow.blocking_recv() {
                    Ok(chunk) => reading.push(messages(&chunk, &host)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        reading.lock().missed_chunks += n;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
            reading.lock().ended = true;
            reading.ready.notify_one();
        })?;
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("hkrun-drain-send".into())
        .spawn(move || {
            send_loop(&drain, &queue, &log);
            let _ = done.send(());
        })?;
    Ok(finished)
}

/// RFC 5424, as Heroku's drains: `<190>1 TIME HOST app web.1 - text` (`heroku` for
/// hkrun's own lines).
fn messages(chunk: &Chunk, host: &str) -> Vec<Vec<u8>> {
    let app = match chunk.origin {
        Origin::App => "app",
        Origin::Hkrun => "heroku",
    };
    chunk
        .lines()
        .map(|line| {
            let mut message = format!(
                "<190>1 {} {host} {app} {} - ",
                chunk.clock.rfc3339, chunk.label.name
            )
            .into_bytes();
            message.extend_from_slice(line);
            message
        })
        .collect()
}

fn send_loop(drain: &Drain, queue: &Queue, log: &LogSender) {
    let system = Arc::new(Label::system());
    let mut backoff = BACKOFF.0;
    let mut down_said = false;
    let mut drops_said: Option<std::time::Instant> = None;
    loop {
        let mut link = match connect(drain) {
            Ok(link) => link,
            Err(err) => {
                let state = queue.lock();
                if state.ended {
                    if !state.messages.is_empty() {
                        tracing::warn!(
                            "drain {}: {} lines not sent, it was unreachable as hkrun stopped ({err})",
                            drain.url,
                            state.messages.len()
                        );
                    }
                    return;
                }
                drop(state);
                if !down_said {
                    down_said = true;
                    log.event(
                        &system,
                        format!(
                            "drain {} is unreachable ({err}); up to {QUEUE} lines wait for it, then the oldest are dropped",
                            drain.url
                        ),
                    );
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF.1);
                continue;
            }
        };
        loop {
            let (batch, dropped, ended) = {
                let may_say = || drops_said.is_none_or(|at| at.elapsed() >= SAY_EVERY);
                let mut state = queue.lock();
                let to_say = |s: &QueueState| s.dropped + s.missed_chunks > 0;
                while state.messages.is_empty() && !(to_say(&state) && may_say()) && !state.ended {
                    state = queue
                        .ready
                        .wait_timeout(state, SAY_EVERY)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                // At the end, what is left to say is said whatever the time.
                let dropped = match may_say() || state.ended {
                    true => (
                        std::mem::take(&mut state.dropped),
                        std::mem::take(&mut state.missed_chunks),
                    ),
                    false => (0, 0),
                };
                let mut batch = Vec::new();
                let mut bytes = 0;
                while bytes < BATCH {
                    let Some(message) = state.messages.pop_front() else {
                        break;
                    };
                    bytes += message.len();
                    state.bytes -= message.len();
                    batch.push(message);
                }
                (batch, dropped, state.ended)
            };
            if batch.is_empty() && dropped == (0, 0) && ended {
                return;
            }
            let mut said = Vec::new();
            if dropped != (0, 0) {
                drops_said = Some(std::time::Instant::now());
                let count = match dropped {
                    (lines, 0) => format!("{lines} lines"),
                    (lines, chunks) => format!("at least {} lines", lines + chunks),
                };
                let text = format!(
                    "{count} dropped: the drain {} was too slow or down",
                    drain.url
                );
                log.event(&system, text.clone());
                said.push(format!("<188>1 - - heroku system - {text}").into_bytes());
            }
            said.extend(batch);
            if let Err(err) = link.send(&said) {
                // Sent again on the next connection: a message may arrive twice, none is
                // lost to a broken connection.
                let mut state = queue.lock();
                for message in said.into_iter().rev() {
                    state.bytes += message.len();
                    state.messages.push_front(message);
                }
                drop(state);
                if !down_said {
                    down_said = true;
                    log.event(
                        &system,
                        format!("drain {} failed ({err}); reconnecting", drain.url),
                    );
                }
                // A receiver that takes connections and drops them is not tried in a loop.
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF.1);
                break;
            }
            // It works: the next outage starts its back-off, and its line, afresh.
            backoff = BACKOFF.0;
            down_said = false;
        }
    }
}

enum Link {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

fn connect(drain: &Drain) -> io::Result<Link> {
    let addr: SocketAddr = drain
        .address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other("no address"))?;
    match drain.transport {
        Transport::Tcp => {
            let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
            stream.set_write_timeout(Some(TIMEOUT))?;
            stream.set_nodelay(true)?;
            Ok(Link::Tcp(stream))
        }
        Transport::Udp => {
            let bind: SocketAddr = match addr {
                SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("an address"),
                SocketAddr::V6(_) => "[::]:0".parse().expect("an address"),
            };
            let socket = UdpSocket::bind(bind)?;
            socket.connect(addr)?;
            Ok(Link::Udp(socket))
        }
    }
}

impl Link {
    fn send(&mut self, messages: &[Vec<u8>]) -> io::Result<()> {
        match self {
            // RFC 6587's octet counting: `LEN SP MESSAGE`, so a message may hold anything.
            Self::Tcp(stream) => {
                let mut framed = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
                for message in messages {
                    framed.extend_from_slice(format!("{} ", message.len()).as_bytes());
                    framed.extend_from_slice(message);
                }
                stream.write_all(&framed)
            }
            // A datagram each; one the network loses is lost (UDP's bargain).
            Self::Udp(socket) => {
                for message in messages {
                    let _ = socket.send(message);
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_urls_are_read_or_refused_in_words() {
        let tcp: Drain = "syslog+tcp://127.0.0.1:514".parse().unwrap();
        assert_eq!(tcp.transport, Transport::Tcp);
        assert_eq!(tcp.address, "127.0.0.1:514");
        assert_eq!(
            "syslog://logs.example.com:6514/"
                .parse::<Drain>()
                .unwrap()
                .transport,
            Transport::Tcp
        );
        assert_eq!(
            "syslog+udp://[::1]:514".parse::<Drain>().unwrap().transport,
            Transport::Udp
        );
        for (url, says) in [
            (
                "https://logs.example.com/drain",
                "https:// drains are not built yet",
            ),
            (
                "syslog+tls://x:6514",
                "syslog+tls:// drains are not built yet",
            ),
            ("ftp://x:1", "unknown drain scheme ftp://"),
            ("syslog://x", "expected host:port"),
            ("logs.example.com:514", "expected a URL"),
        ] {
            let err = url.parse::<Drain>().unwrap_err();
            assert!(err.starts_with(says), "{url}: {err}");
        }
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_them() {
        let queue = Queue::default();
        queue.push((0..QUEUE + 3).map(|i| i.to_string().into_bytes()));
        let state = queue.lock();
        assert_eq!(state.dropped, 3);
        assert_eq!(state.messages.front().unwrap(), b"3");
        assert_eq!(state.messages.len(), QUEUE);
    }
}
