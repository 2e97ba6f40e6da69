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
//!
//! Over TCP and TLS, what was written on a connection stays at the head of the queue until
//! the connection has proved alive past it (`Sender::confirm`), and is sent again on the
//! next connection if this one breaks first: a line may arrive twice, and one given up
//! before it was confirmed is counted with the lines dropped.
//!
//! hkrun's own lines about its drains are sent to none (`own_label`).

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::history::{Chunk, History, Queued};
use super::render::{Label, Origin};
use super::writer::LogSender;

mod link;

use link::{Link, SendError};

/// Messages queued for a drain, at most, and their bytes at most.
pub(crate) const QUEUE: usize = 50_000;
const QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// Bytes sent at once to a drain (one POST to an HTTPS drain).
const BATCH: usize = 64 * 1024;
/// A queue that held this much gives the memory back once it has emptied.
const GIVE_BACK_AFTER: usize = 4 * 1024 * 1024;
/// What the log may hold for a drain's reader not yet taken: it only turns lines into
/// messages, so this fills only when it is kept from running.
const FOLLOW_BYTES: usize = 4 * 1024 * 1024;
/// How often, at most, lines dropped are said (they add up meanwhile), and each of
/// hkrun's complaints about a drain.
const SAY_EVERY: Duration = Duration::from_secs(10);
/// The back-off between reconnects: from the first to the last, doubling.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// How long a TCP or TLS connection must stay up once the receiver's kernel has
/// acknowledged a batch for the batch to count as received: a receiver that dies with
/// lines unread resets the connection, and that is seen within this time.
const HOLD: Duration = Duration::from_secs(2);
/// How often a connection with batches not yet confirmed is looked at.
const LOOK_EVERY: Duration = Duration::from_millis(200);
/// At the end, how long a TCP or TLS receiver has to show it had every line (hkrun waits
/// 2 s for its drains: `supervisor::runtime`).
const FINISH: Duration = Duration::from_millis(1500);

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
    /// As hkrun shows it: `masked`.
    pub url: String,
    pub transport: Transport,
    /// `host:port`, resolved at each connect.
    pub address: String,
    /// An HTTP drain's URL without its user and password, which go in `Authorization`.
    pub target: String,
    /// `user:password` from the URL, for HTTP basic authentication.
    pub credentials: Option<String>,
}

/// `url` as hkrun shows it, wherever it does (its log, `check --settings`, errors): a
/// password as `***` (a user alone, which is a token, too), and every value of the query
/// as `***`. Every value, not those of names that look secret: receivers put their tokens
/// under names of their own (`dd-api-key`, `source_token`, `code`, `sig`), and a name
/// shown still says which parameters the URL has. Read by hand, not parsed, so a URL
/// refused is shown masked too; where it is unclear where the credentials end, more is
/// masked rather than less.
pub(crate) fn masked(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    // The credentials end at the last `@` before the query: a password may hold a `/`.
    let query_at = rest.find(['?', '#']).unwrap_or(rest.len());
    let (user, rest) = match rest[..query_at].rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let user = match user.map(|u| u.split_once(':')) {
        Some(Some((name, _))) => format!("{name}:***@"),
        Some(None) => "***@".to_owned(),
        None => String::new(),
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, _)) => (rest, "#***"),
        None => (rest, ""),
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => {
            let values: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) => format!("{name}=***"),
                    None if pair.is_empty() => String::new(),
                    None => "***".to_owned(),
                })
                .collect();
            (path, format!("?{}", values.join("&")))
        }
        None => (rest, String::new()),
    };
    format!("{scheme}{user}{path}{query}{fragment}")
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
        Ok(Self {
            url: masked(url),
            transport,
            address,
            target: format!("{scheme}://{hostport}{path}"),
            credentials,
        })
    }
}

/// The label of hkrun's lines about its drains. No drain is sent them: a drain that
/// refuses lines would be sent each complaint about it, refuse it, and be sent the next,
/// without end; two failing drains would feed each other so. They are in the app's log;
/// what a drain needs to know, how many lines it missed, is sent to it directly.
fn own_label() -> &'static Arc<Label> {
    static LABEL: OnceLock<Arc<Label>> = OnceLock::new();
    LABEL.get_or_init(|| Arc::new(Label::system()))
}

/// The queue between a drain's reader and its sender.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    /// Oldest first: the first `sent` are written on the current connection and not yet
    /// confirmed, the rest wait.
    messages: VecDeque<Vec<u8>>,
    bytes: usize,
    /// The most `bytes` has been since the queue was last empty.
    peak: usize,
    sent: usize,
    /// Messages written and not yet confirmed that were dropped for room: lost if the
    /// connection breaks before it has proved alive past them.
    sent_dropped: u64,
    /// Messages dropped (the oldest, for room) and not yet said.
    dropped: u64,
    /// Lines the reader fell behind on (the history's queue for it was full), not yet said.
    missed: u64,
    /// The log has ended: send what is queued, then stop.
    ended: bool,
}

/// What the sender has to do next.
struct Next {
    /// Messages to send, now counted as sent.
    batch: Vec<Vec<u8>>,
    /// The count of lines dropped, to say in the app's log (it leads `batch` too).
    notice: Option<String>,
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
                // Written already, most likely received: lost only if its connection
                // breaks before it is confirmed (`broken`).
                if state.sent > 0 {
                    state.sent -= 1;
                    state.sent_dropped += 1;
                } else {
                    state.dropped += 1;
                }
            }
            state.bytes += message.len();
            state.peak = state.peak.max(state.bytes);
            state.messages.push_back(message);
        }
        self.ready.notify_one();
    }

    /// Waits for something to send (or, at most every `SAY_EVERY`, lines dropped to say),
    /// the log's end, or `wake_by`. `drops_said` is when lines dropped were last said.
    fn next(&self, url: &str, drops_said: &mut Option<Instant>, wake_by: Option<Instant>) -> Next {
        let mut state = self.lock();
        let to_say = |s: &QueueState| s.dropped + s.missed > 0;
        let may_say = |said: &Option<Instant>| said.is_none_or(|at| at.elapsed() >= SAY_EVERY);
        loop {
            let now = Instant::now();
            if state.messages.len() > state.sent
                || (to_say(&state) && may_say(drops_said))
                || state.ended
                || wake_by.is_some_and(|at| at <= now)
            {
                break;
            }
            let mut wait = SAY_EVERY;
            if let (true, Some(at)) = (to_say(&state), *drops_said) {
                wait = wait.min((at + SAY_EVERY).saturating_duration_since(now));
            }
            if let Some(at) = wake_by {
                wait = wait.min(at.saturating_duration_since(now));
            }
            state = self
                .ready
                .wait_timeout(state, wait.max(Duration::from_millis(1)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        // At the end, what is left to say is said whatever the time.
        let mut notice = None;
        if to_say(&state) && (may_say(drops_said) || state.ended) {
            *drops_said = Some(Instant::now());
            let count = std::mem::take(&mut state.dropped) + std::mem::take(&mut state.missed);
            let text = format!("{count} lines dropped: the drain {url} was too slow or down");
            let message = format!("<188>1 - - heroku system - {text}").into_bytes();
            state.bytes += message.len();
            let at = state.sent;
            state.messages.insert(at, message);
            notice = Some(text);
        }
        let mut batch = Vec::new();
        let mut bytes = 0;
        while bytes < BATCH {
            let Some(message) = state.messages.get(state.sent) else {
                break;
            };
            bytes += message.len();
            batch.push(message.clone());
            state.sent += 1;
        }
        Next {
            batch,
            notice,
            ended: state.ended,
        }
    }

    /// `count` messages sent are done with (received, or refused for good).
    fn confirm(&self, count: usize) {
        let mut state = self.lock();
        // Those dropped for room were the oldest.
        let gone = state.sent_dropped.min(count as u64);
        state.sent_dropped -= gone;
        for _ in 0..count - gone as usize {
            let Some(message) = state.messages.pop_front() else {
                break;
            };
            state.bytes -= message.len();
            state.sent = state.sent.saturating_sub(1);
        }
        // Emptied after holding megabytes (the receiver was down or slow): that memory
        // goes back to the system rather than staying hkrun's.
        if state.messages.is_empty() && state.peak >= GIVE_BACK_AFTER {
            state.peak = 0;
            state.messages.shrink_to(1024);
            drop(state);
            crate::os::memory::give_back();
        }
    }

    /// The connection broke: what was sent and not confirmed goes again on the next,
    /// and what of it was dropped for room is counted as dropped. Whether the log has
    /// ended.
    fn broken(&self) -> bool {
        let mut state = self.lock();
        state.sent = 0;
        state.dropped += std::mem::take(&mut state.sent_dropped);
        state.ended
    }

    /// Waits `wait`, or less once the log has ended; whether it has.
    fn wait_ended(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        let mut state = self.lock();
        while !state.ended && Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            state = self
                .ready
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.ended
    }
}

/// Starts sending the log to `drain`; `host` names the app in each message. The receiver
/// hears once the drain has sent everything the log held when it ended (or given up).
pub(crate) fn spawn(
    drain: Drain,
    host: String,
    history: &History,
    log: LogSender,
) -> io::Result<std::sync::mpsc::Receiver<()>> {
    // Every chunk the log records, however many a burst writes at once (the `--tail`
    // broadcast holds 1,024 chunks: one batch of one-line chunks overflows it).
    let Some(follow) = history.queue(FOLLOW_BYTES) else {
        return Err(io::Error::other("the log has ended"));
    };
    let queue = Arc::new(Queue::default());
    let reading = Arc::clone(&queue);
    std::thread::Builder::new()
        .name("hkrun-drain-read".into())
        .spawn(move || {
            let mut batch = VecDeque::new();
            while follow.take(&mut batch) {
                for item in batch.drain(..) {
                    match item {
                        Queued::Chunk(chunk) if Arc::ptr_eq(&chunk.label, own_label()) => {}
                        Queued::Chunk(chunk) => reading.push(messages(&chunk, &host)),
                        Queued::Missed(lines) => reading.lock().missed += lines,
                    }
                }
                // A burst's queue need not stay allocated.
                batch.shrink_to(4096);
            }
            reading.lock().ended = true;
            reading.ready.notify_one();
        })?;
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("hkrun-drain-send".into())
        .spawn(move || {
            Sender::new(&drain, &queue, &log).run();
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

/// A batch written on a TCP or TLS connection and not yet confirmed.
struct Flight {
    /// Its messages.
    count: usize,
    /// The connection's bytes written once it was.
    end: u64,
    /// When the receiver's kernel was first seen to have acknowledged it all.
    acked_at: Option<Instant>,
}

/// One of hkrun's complaints about a drain: said at once, then at most every
/// `SAY_EVERY`; how many came meanwhile is counted, and said with the next.
#[derive(Default)]
struct Complaint {
    said_at: Option<Instant>,
    held: u64,
}

impl Complaint {
    fn may_say(&self) -> bool {
        self.said_at.is_none_or(|at| at.elapsed() >= SAY_EVERY)
    }

    /// `text` to say now, with the count of those held back, or `None` (counted).
    fn say(&mut self, text: String) -> Option<String> {
        if !self.may_say() {
            self.held += 1;
            return None;
        }
        self.said_at = Some(Instant::now());
        Some(match std::mem::take(&mut self.held) {
            0 => text,
            held => format!("{text} ({held} more since the last such line)"),
        })
    }
}

/// Lines a drain refused for good, not yet said.
#[derive(Default)]
struct Refused {
    lines: u64,
    /// The last answer's words.
    why: String,
    said_at: Option<Instant>,
}

/// A drain's sending thread: the connection, the back-off, and what it says.
struct Sender<'a> {
    drain: &'a Drain,
    queue: &'a Queue,
    log: &'a LogSender,
    backoff: Duration,
    /// Between a failure and the next proof that the drain takes lines.
    outage: bool,
    /// Whether a connection failed since the log ended (it gets one more try).
    failed_at_end: bool,
    outages: Complaint,
    refused: Refused,
    drops_said: Option<Instant>,
}

impl<'a> Sender<'a> {
    fn new(drain: &'a Drain, queue: &'a Queue, log: &'a LogSender) -> Self {
        Self {
            drain,
            queue,
            log,
            backoff: BACKOFF.0,
            outage: false,
            failed_at_end: false,
            outages: Complaint::default(),
            refused: Refused::default(),
            drops_said: None,
        }
    }

    fn say(&self, text: String) {
        self.log.event(own_label(), text);
    }

    fn run(mut self) {
        // Read once: the roots do not change while hkrun runs.
        let tls = match self.drain.transport {
            Transport::Tls | Transport::Http if self.drain.target.starts_with("http://") => None,
            Transport::Tls | Transport::Http => match link::trusted_roots() {
                Ok(roots) => Some(roots),
                Err(err) => {
                    self.say(format!("drain {} cannot start: {err}", self.drain.url));
                    return;
                }
            },
            _ => None,
        };
        loop {
            let (err, connected) = match Link::connect(self.drain, &tls) {
                Ok(link) => match self.connection(link) {
                    Ok(()) => break,
                    Err(err) => (err, true),
                },
                Err(err) => (err, false),
            };
            let ended = self.queue.broken();
            // At the end, a drain already down, or down again, is not waited for.
            if ended && (self.outage || self.failed_at_end) {
                self.give_up(&err);
                break;
            }
            self.failed_at_end = ended;
            if !self.outage {
                self.outage = true;
                let url = &self.drain.url;
                let text = match connected {
                    true => format!("drain {url} failed ({err}); reconnecting"),
                    false => format!(
                        "drain {url} is unreachable ({err}); up to {QUEUE} lines wait for it, then the oldest are dropped"
                    ),
                };
                if let Some(text) = self.outages.say(text) {
                    self.say(text);
                }
            }
            // A receiver that takes connections and drops them is not tried in a loop.
            self.queue.wait_ended(self.backoff);
            self.backoff = (self.backoff * 2).min(BACKOFF.1);
        }
        self.refusals(true);
    }

    /// The drain took lines: the next outage starts its back-off, and its line, afresh.
    fn alive(&mut self) {
        self.backoff = BACKOFF.0;
        self.outage = false;
    }

    /// Sends on `link` until the log has ended and all is sent (`Ok`), or it breaks.
    fn connection(&mut self, mut link: Link) -> io::Result<()> {
        let mut flights: VecDeque<Flight> = VecDeque::new();
        loop {
            let look = (!flights.is_empty()).then(|| Instant::now() + LOOK_EVERY);
            let refusals = (self.refused.lines > 0)
                .then(|| self.refused.said_at.map(|at| at + SAY_EVERY))
                .flatten();
            let wake_by = look.into_iter().chain(refusals).min();
            let next = self
                .queue
                .next(&self.drain.url, &mut self.drops_said, wake_by);
            if let Some(text) = next.notice {
                self.say(text);
            }
            self.refusals(false);
            if !flights.is_empty() && self.confirm(&mut link, &mut flights)? {
                self.alive();
            }
            if next.batch.is_empty() {
                if !next.ended {
                    continue;
                }
                if !flights.is_empty() {
                    link.finish(FINISH)?;
                    self.queue.confirm(flights.iter().map(|f| f.count).sum());
                }
                return Ok(());
            }
            link.check()?;
            let count = next.batch.len();
            match link.send(&next.batch) {
                Ok(()) => match link.written() {
                    Some(end) => flights.push_back(Flight {
                        count,
                        end,
                        acked_at: None,
                    }),
                    None => {
                        self.queue.confirm(count);
                        self.alive();
                    }
                },
                Err(SendError::Refused(why)) => {
                    self.queue.confirm(count);
                    self.refused.lines += count as u64;
                    self.refused.why = why;
                    self.refusals(false);
                }
                Err(SendError::Broken(err)) => return Err(err),
            }
        }
    }

    /// Confirms the flights the receiver's kernel acknowledged at least `HOLD` ago, on a
    /// connection still up: whether any was. An error if the connection is down.
    fn confirm(&self, link: &mut Link, flights: &mut VecDeque<Flight>) -> io::Result<bool> {
        link.check()?;
        let acked = link.acked()?;
        let now = Instant::now();
        for flight in flights.iter_mut().take_while(|f| f.end <= acked) {
            flight.acked_at.get_or_insert(now);
        }
        let mut count = 0;
        while let Some(flight) = flights.front() {
            if flight
                .acked_at
                .is_none_or(|at| now.duration_since(at) < HOLD)
            {
                break;
            }
            count += flight.count;
            flights.pop_front();
        }
        if count > 0 {
            self.queue.confirm(count);
        }
        Ok(count > 0)
    }

    /// Says the lines refused since the last such line, when it may (`SAY_EVERY`), or
    /// at the `end` (on stderr: the app's log has ended).
    fn refusals(&mut self, end: bool) {
        let refused = &mut self.refused;
        if refused.lines == 0
            || !(end || refused.said_at.is_none_or(|at| at.elapsed() >= SAY_EVERY))
        {
            return;
        }
        let text = format!(
            "drain {} refused {} lines ({}); they are dropped",
            self.drain.url, refused.lines, refused.why
        );
        refused.lines = 0;
        refused.said_at = Some(Instant::now());
        match end {
            true => tracing::warn!("{text}"),
            false => self.log.event(own_label(), text),
        }
    }

    /// hkrun stops with the drain down: says what it did not get, on stderr (the app's
    /// log has ended).
    fn give_up(&self, err: &io::Error) {
        let state = self.queue.lock();
        let dropped = state.dropped + state.missed;
        if state.messages.is_empty() && dropped == 0 {
            return;
        }
        let before = match dropped {
            0 => String::new(),
            n => format!(", and {n} were dropped before"),
        };
        tracing::warn!(
            "drain {}: {} lines not sent, it was unreachable as hkrun stopped ({err}){before}",
            self.drain.url,
            state.messages.len()
        );
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
        // Every query value masked: a token may be under any name.
        assert_eq!(
            https.url,
            "https://user:***@logs.example.com/drains/1?x=***"
        );
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
    fn credentials_are_masked_even_in_urls_refused() {
        for (url, shown) in [
            (
                "https://user:pa55@logs.example.com/x?token=t0k&app=a&flag",
                "https://user:***@logs.example.com/x?token=***&app=***&***",
            ),
            ("https://t0ken@h/", "https://***@h/"),
            (
                "http://h:80/p?api_key=k#frag",
                "http://h:80/p?api_key=***#***",
            ),
            // A `/` or `@` in the password: more masked, nothing shown.
            ("https://u:pa/ss@h/x", "https://u:***@h/x"),
            ("https://u:p@ss@h/x", "https://u:***@h/x"),
            ("syslog+tcp://u:s3cret@x:514", "syslog+tcp://u:***@x:514"),
            ("u:s3cret@x:514", "u:***@x:514"),
            (
                "syslog+tls://logs.example.com:6514",
                "syslog+tls://logs.example.com:6514",
            ),
            ("https://logs.example.com/a@b", "https://***@b"),
        ] {
            assert_eq!(masked(url), shown, "{url}");
        }
    }

    #[test]
    fn what_was_sent_stays_until_confirmed_and_goes_again_if_the_connection_breaks() {
        let queue = Queue::default();
        queue.push((0..5).map(|i| i.to_string().into_bytes()));
        let mut said = None;
        let next = queue.next("d", &mut said, None);
        assert_eq!(next.batch.len(), 5);
        assert_eq!(queue.lock().messages.len(), 5, "kept until confirmed");
        queue.confirm(2);
        assert_eq!(queue.lock().messages.front().unwrap(), b"2");
        // Broken: the three not confirmed go again, first.
        queue.push([b"5".to_vec()]);
        assert!(!queue.broken());
        let next = queue.next("d", &mut said, None);
        assert_eq!(next.batch, [b"2", b"3", b"4", b"5"].map(|m| m.to_vec()));
        assert_eq!(queue.lock().dropped, 0);
    }

    #[test]
    fn lines_sent_and_dropped_for_room_count_only_if_their_connection_breaks() {
        let queue = Queue::default();
        queue.push((0..QUEUE).map(|i| i.to_string().into_bytes()));
        let mut said = None;
        let sent = queue.next("d", &mut said, None).batch.len();
        // Room for 3 more: the oldest, sent, go.
        queue.push((0..3).map(|_| b"new".to_vec()));
        let counts = |q: &Queue| {
            let state = q.lock();
            (state.dropped, state.sent_dropped)
        };
        assert_eq!(counts(&queue), (0, 3));
        // Confirmed: they had arrived, nothing is said.
        queue.confirm(sent);
        assert_eq!(counts(&queue), (0, 0));
        assert_eq!(queue.lock().messages.len(), QUEUE + 3 - sent);

        let queue = Queue::default();
        queue.push((0..QUEUE).map(|i| i.to_string().into_bytes()));
        queue.next("d", &mut said, None);
        queue.push((0..3).map(|_| b"new".to_vec()));
        queue.broken();
        assert_eq!(queue.lock().dropped, 3);
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
