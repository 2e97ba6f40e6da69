//! `--drain URL`: every log line to a syslog receiver (Papertrail, rsyslog, a log
//! shipper), as Heroku's log drains send them: RFC 5424 messages
//! (`<190>1 TIME APP app web.1 - text`), over TCP or TLS with octet-counted framing
//! (RFC 6587, RFC 5425), over UDP one datagram each, or POSTed over HTTPS in batches in
//! logplex's format (`link`).
//!
//! Each drain follows the history on a thread of its own and queues what it reads, up to
//! `QUEUE` messages; a second thread sends them, reconnecting with back-off. A drain that
//! is down or slow never blocks or slows the app: once the queue is full the oldest
//! messages go, and when the drain is back, one line (in the app's log and in the drain,
//! at most every 10 s while it stays slow) says how many.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use super::history::{Chunk, History};
use super::render::{Label, Origin};
use super::writer::LogSender;

mod link;

use link::Link;

/// Messages queued for a drain, at most, and their bytes at most.
pub const QUEUE: usize = 50_000;
const QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// Bytes sent at once to a drain (one POST to an HTTPS drain).
const BATCH: usize = 64 * 1024;
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
    /// `syslog+tls://`: TCP's framing inside TLS (RFC 5425).
    Tls,
    /// `https://` (or `http://`, for a shipper on the same machine): batches POSTed in
    /// logplex's format, as Heroku's HTTPS drains.
    Http,
}

/// One `--drain URL`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drain {
    /// As given, for the app's log; its password, if any, shown as `***`.
    pub url: String,
    pub transport: Transport,
    /// `host:port`, resolved at each connect.
    pub address: String,
    /// An HTTP drain's URL without its user and password, which go in `Authorization`.
    pub target: String,
    /// `user:password` from the URL, for HTTP basic authentication.
    pub credentials: Option<String>,
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
            "syslog+tls" => Transport::Tls,
            "https" | "http" => Transport::Http,
            other => return Err(format!("unknown drain scheme {other}://")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let (credentials, hostport) = match authority.rsplit_once('@') {
            Some((user, hostport)) => (Some(user.to_owned()), hostport),
            None => (None, authority),
        };
        if transport != Transport::Http
            && (credentials.is_some() || !path.trim_matches('/').is_empty())
        {
            return Err("expected only host:port after the scheme".to_owned());
        }
        let address = match (hostport.rsplit_once(':'), &transport) {
            (Some((host, port)), _) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                hostport.to_owned()
            }
            // HTTP's ports go without saying.
            (None, Transport::Http) if !hostport.is_empty() => {
                let port = if scheme == "https" { 443 } else { 80 };
                format!("{hostport}:{port}")
            }
            _ => return Err("expected host:port after the scheme".to_owned()),
        };
        // A password, or a token alone, is never shown.
        let shown = match credentials.as_deref().map(|c| c.split_once(':')) {
            Some(Some((user, _))) => format!("{scheme}://{user}:***@{hostport}{path}"),
            Some(None) => format!("{scheme}://***@{hostport}{path}"),
            None => url.to_owned(),
        };
        Ok(Self {
            url: shown,
            transport,
            address,
            target: format!("{scheme}://{hostport}{path}"),
            credentials,
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
    // Read once: the roots do not change while hkrun runs.
    let tls = match drain.transport {
        Transport::Tls | Transport::Http if drain.target.starts_with("http://") => None,
        Transport::Tls | Transport::Http => match link::trusted_roots() {
            Ok(roots) => Some(roots),
            Err(err) => {
                log.event(&system, format!("drain {} cannot start: {err}", drain.url));
                return;
            }
        },
        _ => None,
    };
    let mut backoff = BACKOFF.0;
    let mut down_said = false;
    let mut drops_said: Option<std::time::Instant> = None;
    loop {
        let mut link = match Link::connect(drain, &tls) {
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
            let sent = link.send(&said);
            if let Err(err) = &sent
                && err.kind() == io::ErrorKind::InvalidData
            {
                // Refused for good (an HTTPS drain's 4xx): sending it again would stop
                // every later line behind it.
                log.event(
                    &system,
                    format!(
                        "drain {} refused {} lines ({err}); they are dropped",
                        drain.url,
                        said.len()
                    ),
                );
                continue;
            }
            if let Err(err) = sent {
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
        let tls: Drain = "syslog+tls://logs.example.com:6514".parse().unwrap();
        assert_eq!(tls.transport, Transport::Tls);
        let https: Drain = "https://user:secret@logs.example.com/drains/1?x=y"
            .parse()
            .unwrap();
        assert_eq!(https.transport, Transport::Http);
        assert_eq!(https.address, "logs.example.com:443");
        assert_eq!(https.target, "https://logs.example.com/drains/1?x=y");
        assert_eq!(https.credentials.as_deref(), Some("user:secret"));
        assert_eq!(https.url, "https://user:***@logs.example.com/drains/1?x=y");
        let token: Drain = "https://t0ken@logs.example.com/".parse().unwrap();
        assert_eq!(token.url, "https://***@logs.example.com/");
        let local: Drain = "http://127.0.0.1:8080/logs".parse().unwrap();
        assert_eq!(local.address, "127.0.0.1:8080");
        for (url, says) in [
            ("syslog+tcp://user@x:514", "expected only host:port"),
            ("syslog+tls://x:6514/path", "expected only host:port"),
            ("https:///path", "expected host:port"),
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
