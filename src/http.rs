//! Just enough HTTP/1.1 for hkrun's own listeners (`--metrics`, `--dashboard`): the
//! address given (an address, a port alone on 127.0.0.1, or a host name and what it
//! resolves to), the accept loop with a bound on connections held, one request per
//! connection with its head read within a bound, and the response.
//!
//! Places are held as the control socket holds its clients (ARCHITECTURE.md, Control
//! protocol): when every place is taken, a newcomer takes the place of the connection
//! that has waited longest on its client (for its request, or to take what was written),
//! and a new stream that of the stream waiting longest; only when hkrun is working for
//! every one is the newcomer answered 503. Idle or unread connections thus never lock a
//! scraper or a page out.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::timeout;

pub(crate) use crate::seats::Limits;
use crate::seats::Seats;

/// How long a client may take to send a whole request head.
const HEAD: Duration = Duration::from_secs(5);
/// How long a client may take to take one write.
const WRITE: Duration = Duration::from_secs(10);
/// How long, and how many bytes, the rest of a refused request is read for, so that the
/// client reads the refusal rather than a reset.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 64 * 1024;
/// The kernel's send buffer for each connection: a client that stops reading is seen
/// waiting (and can be made room for) after this much, not after megabytes.
const SEND_BUFFER: usize = 64 * 1024;
/// The longest request head taken.
const MAX_HEAD: usize = 8 * 1024;

/// What `--metrics ADDR` or `--dashboard ADDR` named, bound.
#[derive(Debug)]
pub(crate) struct Bound {
    /// One per address (a host name may resolve to several), all on one port.
    pub listeners: Vec<std::net::TcpListener>,
    /// The host name given, if one was: in the URL hkrun logs, and a name the dashboard
    /// answers to.
    pub name: Option<String>,
}

/// Why an address cannot be listened on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BindError {
    #[error("expected HOST:PORT or a port")]
    Malformed,
    #[error("{0}")]
    Unresolved(io::Error),
    #[error("{0} is in use")]
    InUse(SocketAddr),
    #[error("{0}")]
    Other(io::Error),
}

/// Binds `given`: `HOST:PORT` (an IPv4 address, `[IPv6]`, or a host name, bound at each
/// address it resolves to), or a port alone on 127.0.0.1.
pub(crate) fn bind(given: &str) -> Result<Bound, BindError> {
    let (addrs, name) = resolve(given)?;
    Ok(Bound {
        listeners: bind_all(&addrs)?,
        name,
    })
}

/// An address as given: a socket address, or a host name and a port.
enum Given<'a> {
    At(SocketAddr),
    Name(&'a str, u16),
}

/// `given`'s form, without resolving a name.
fn parse_address(given: &str) -> Result<Given<'_>, BindError> {
    if let Ok(port) = given.parse::<u16>() {
        return Ok(Given::At((Ipv4Addr::LOCALHOST, port).into()));
    }
    if let Ok(at) = given.parse::<SocketAddr>() {
        return Ok(Given::At(at));
    }
    let (host, port) = given.rsplit_once(':').ok_or(BindError::Malformed)?;
    let port = port.parse::<u16>().map_err(|_| BindError::Malformed)?;
    let name_like = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_';
    if host.is_empty() || !host.bytes().all(name_like) {
        return Err(BindError::Malformed);
    }
    Ok(Given::Name(host, port))
}

/// Whether `bind` could take `given`'s form (`BindError::Malformed` if not), without
/// resolving a name or binding: what `check` refuses as `start` would.
pub(crate) fn well_formed(given: &str) -> Result<(), BindError> {
    parse_address(given).map(drop)
}

/// Where `--metrics` or `--dashboard` listens, as given (`127.0.0.1:9100`,
/// `localhost:9100`, `9100`): of `bind`'s form, checked when read; a name is resolved
/// only when bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAddress(pub String);

impl std::str::FromStr for ListenAddress {
    type Err = String;

    fn from_str(given: &str) -> Result<Self, String> {
        well_formed(given)
            .map(|()| Self(given.to_owned()))
            .map_err(|_| {
                "expected HOST:PORT, such as 127.0.0.1:9100 or localhost:9100, or a port".to_owned()
            })
    }
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn resolve(given: &str) -> Result<(Vec<SocketAddr>, Option<String>), BindError> {
    let (host, port) = match parse_address(given)? {
        Given::At(at) => return Ok((vec![at], None)),
        Given::Name(host, port) => (host, port),
    };
    let mut addrs = Vec::new();
    for at in (host, port)
        .to_socket_addrs()
        .map_err(BindError::Unresolved)?
    {
        if !addrs.contains(&at) {
            addrs.push(at);
        }
    }
    if addrs.is_empty() {
        let none = io::Error::new(io::ErrorKind::NotFound, "no address");
        return Err(BindError::Unresolved(none));
    }
    Ok((addrs, Some(host.to_owned())))
}

/// Binds every address on one port: the port given, or the one the system chose for the
/// first. An address this machine cannot have (IPv6 in some containers) is left out when
/// another is bound.
fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<std::net::TcpListener>, BindError> {
    let chosen_by_system = addrs.first().is_some_and(|a| a.port() == 0);
    let mut tries = 0;
    'again: loop {
        let mut bound: Vec<std::net::TcpListener> = Vec::new();
        let mut left_out = None;
        for &at in addrs {
            let at = match bound.first().map(std::net::TcpListener::local_addr) {
                Some(Ok(first)) => SocketAddr::new(at.ip(), first.port()),
                Some(Err(err)) => return Err(BindError::Other(err)),
                None => at,
            };
            match std::net::TcpListener::bind(at) {
                Ok(listener) => bound.push(listener),
                Err(err) if err.kind() == io::ErrorKind::AddrInUse => {
                    // The port chosen for the first address is taken on another: anew.
                    if chosen_by_system && !bound.is_empty() && tries < 8 {
                        tries += 1;
                        continue 'again;
                    }
                    return Err(BindError::InUse(at));
                }
                Err(err) if addrs.len() > 1 && unavailable(&err) => left_out = Some(err),
                Err(err) => return Err(BindError::Other(err)),
            }
        }
        return match (bound.is_empty(), left_out) {
            (true, Some(err)) => Err(BindError::Other(err)),
            _ => Ok(bound),
        };
    }
}

fn unavailable(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::AddrNotAvailable
        || err.raw_os_error() == Some(nix::errno::Errno::EAFNOSUPPORT as i32)
}

/// `http://HOST:PORT` for what `bound` listens on: the name given, or the address.
pub(crate) fn url(name: Option<&str>, listeners: &[TcpListener]) -> Option<String> {
    let at = listeners.first()?.local_addr().ok()?;
    Some(match name {
        Some(name) => format!("http://{name}:{}", at.port()),
        None => format!("http://{at}"),
    })
}

/// The listeners of `bound`, on the runtime; those that cannot be are warned about.
pub(crate) fn listen(bound: Bound, what: &str) -> Vec<TcpListener> {
    bound
        .listeners
        .into_iter()
        .filter_map(|listener| {
            let on_runtime = listener
                .set_nonblocking(true)
                .and_then(|()| TcpListener::from_std(listener));
            on_runtime
                .inspect_err(|err| tracing::warn!(%err, "{what} cannot listen"))
                .ok()
        })
        .collect()
}

/// Accepts connections on every listener until the runtime ends, each answered by
/// `answer` on a task of its own, with at most `limits.connections` held, so no client
/// can take hkrun's file descriptors (the dynos' pipes need them).
pub(crate) async fn serve<F, A>(listeners: Vec<TcpListener>, limits: Limits, answer: A)
where
    A: Fn(TcpStream, Place) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let places = Seats::new(limits);
    let answer = Arc::new(answer);
    let mut loops = JoinSet::new();
    for listener in listeners {
        loops.spawn(accept(listener, Arc::clone(&places), Arc::clone(&answer)));
    }
    while loops.join_next().await.is_some() {}
}

async fn accept<F, A>(listener: TcpListener, places: Arc<Seats>, answer: Arc<A>)
where
    A: Fn(TcpStream, Place) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, most likely: make room, and let some close.
            places.make_room();
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Some(place) = places.admit() else {
            // A new connection's buffer is empty, so this short answer fits at once.
            let busy = Response::text(
                "503 Service Unavailable",
                "Busy with other clients; try again\n",
            );
            let _ = stream.try_write(busy.head(Some(busy.body.len())).as_bytes());
            let _ = stream.try_write(busy.body.as_bytes());
            continue;
        };
        // Best effort: the default only grows the time a non-reader goes unnoticed.
        let _ =
            nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::SndBuf, &SEND_BUFFER);
        let id = place.id();
        let task = tokio::spawn(answer(stream, place));
        places.set_abort(id, task.abort_handle());
    }
}

/// One connection's place among those held (`seats`); given up when dropped.
pub(crate) use crate::seats::Seat as Place;

impl Place {
    /// Writes `bytes` within `WRITE`, waiting on the client meanwhile.
    pub(crate) async fn write(
        &self,
        stream: &mut (impl AsyncWrite + Unpin),
        bytes: &[u8],
    ) -> Result<(), ()> {
        self.set_waiting(true);
        let written = timeout(WRITE, stream.write_all(bytes)).await;
        self.set_waiting(false);
        match written {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }
}

/// The methods served: every resource is read-only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    /// As `Get`, without the body.
    Head,
}

/// A request's head, as far as hkrun's listeners need it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The `Host` header (or an absolute target's authority), if sent.
    pub host: Option<String>,
}

/// Why a head is answered with an error.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Malformed(&'static str),
    TooLarge,
    Method,
    Version,
}

impl Refusal {
    fn response(&self) -> Response {
        match self {
            Self::Malformed(why) => {
                Response::text("400 Bad Request", format!("Bad request: {why}\n"))
            }
            Self::TooLarge => Response::text(
                "431 Request Header Fields Too Large",
                format!("The request's head is over {MAX_HEAD} bytes\n"),
            ),
            Self::Method => {
                Response::text("405 Method Not Allowed", "Only GET and HEAD are served\n")
                    .header("Allow", "GET, HEAD")
            }
            Self::Version => Response::text(
                "505 HTTP Version Not Supported",
                "Only HTTP/1.0 and HTTP/1.1 are served\n",
            ),
        }
    }
}

/// The request on `stream`, once its head has arrived within `HEAD`. A head that is not
/// a `GET` or `HEAD` is answered here (400, 405, 431 or 505); none then, nor when the
/// client hangs up or is too slow.
pub(crate) async fn read_request(stream: &mut TcpStream, place: &Place) -> Option<Request> {
    let refusal = match read_head(stream).await? {
        Ok(request) => {
            place.set_waiting(false);
            return Some(request);
        }
        Err(refusal) => refusal,
    };
    place.set_waiting(false);
    let response = refusal.response();
    if respond(stream, place, Method::Get, &response).await.is_ok() {
        // What the client still sends (a body) is read and dropped for a while: closing
        // with it unread would reset the connection before the client reads the answer.
        place.set_waiting(true);
        let mut scratch = [0u8; 4096];
        let mut left = LINGER_BYTES;
        let _ = timeout(LINGER, async {
            while let Ok(n @ 1..) = stream.read(&mut scratch).await {
                left = left.saturating_sub(n);
                if left == 0 {
                    return;
                }
            }
        })
        .await;
    }
    None
}

/// A head read from `read` within `HEAD`; none if the client hung up or was too slow.
async fn read_head(read: &mut (impl AsyncRead + Unpin)) -> Option<Result<Request, Refusal>> {
    timeout(HEAD, async {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = read.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            let mut got = &buf[..n];
            if head.is_empty() {
                // Empty lines before the request line are ignored (RFC 9112 §2.2).
                let start = got.iter().position(|b| !matches!(b, b'\r' | b'\n'));
                got = &got[start.unwrap_or(got.len())..];
            }
            head.extend_from_slice(got);
            if let Some(end) = end_of_head(&head) {
                return Some(parse(&head[..end]));
            }
            if head.len() > MAX_HEAD {
                return Some(Err(Refusal::TooLarge));
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// Where the head ends (after the last field line's `\n`): at the first empty line,
/// ended by CRLF or by a bare LF (which RFC 9112 §2.2 lets a server take, as most do).
fn end_of_head(head: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(i) = head[at..].iter().position(|&b| b == b'\n') {
        let next = at + i + 1;
        match &head[next..] {
            [b'\n', ..] | [b'\r', b'\n', ..] => return Some(next),
            _ => at = next,
        }
    }
    None
}

/// A request's head (its request line and field lines, each ended by CRLF or LF), read
/// by httparse; what hkrun then asks of it is checked here. The request line is taken
/// first, so a bad method or target is refused as such whatever the field lines hold.
fn parse(head: &[u8]) -> Result<Request, Refusal> {
    use Refusal::Malformed;
    let line_end = head
        .iter()
        .position(|&b| b == b'\n')
        .map_or(head.len(), |i| i + 1);
    let (method, target, http11) = request_line(&head[..line_end])?;
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Malformed("the target is not a URI"));
    }
    let method = match method.as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => return Err(Refusal::Method),
    };
    let (path, authority) = match target.split_once("://") {
        // The absolute form, which a server must take (RFC 9112 §3.2.2); its authority
        // stands for `Host`.
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            (if path.is_empty() { "/" } else { path }, Some(authority))
        }
        _ if target.starts_with('/') => (&*target, None),
        _ => return Err(Malformed("the target is not a path")),
    };
    let path = path.split(['?', '#']).next().unwrap_or_default().to_owned();
    let mut hosts = hosts(head)?;
    // Exactly one `Host` in HTTP/1.1, at most one in 1.0 (RFC 9112 §3.2).
    if hosts.len() > 1 || (http11 && hosts.is_empty()) {
        return Err(Malformed("a request needs one Host"));
    }
    let host = match authority {
        Some(authority) => Some(authority.to_owned()),
        None => hosts.pop(),
    };
    Ok(Request { method, path, host })
}

/// `METHOD TARGET HTTP/1.x` of a request line: its method, its target, and whether it
/// is HTTP/1.1.
fn request_line(line: &[u8]) -> Result<(String, String, bool), Refusal> {
    // httparse reads up to the empty line that ends a head.
    let whole = [line, b"\r\n"].concat();
    let mut request = httparse::Request::new(&mut []);
    match request.parse(&whole) {
        Ok(httparse::Status::Complete(_)) => {}
        // A version but 1.0 or 1.1 is refused as such, whatever else is wrong.
        _ if other_version(line) => return Err(Refusal::Version),
        _ => return Err(Refusal::Malformed("expected METHOD TARGET HTTP/1.1")),
    }
    match (request.method, request.path, request.version) {
        (Some(method), Some(target), Some(version)) => {
            Ok((method.to_owned(), target.to_owned(), version == 1))
        }
        _ => Err(Refusal::Malformed("expected METHOD TARGET HTTP/1.1")),
    }
}

/// The values of `head`'s `Host` fields, once httparse has read every field line.
fn hosts(head: &[u8]) -> Result<Vec<String>, Refusal> {
    use Refusal::Malformed;
    let whole = [head, b"\r\n"].concat();
    // One field per line at most, so httparse never runs out of room.
    let lines = whole.iter().filter(|&&b| b == b'\n').count();
    let mut fields = vec![httparse::EMPTY_HEADER; lines];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(&whole) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Malformed("the head is cut short")),
        // Whitespace before the colon, or a line folded onto the last (RFC 9112 §5), are
        // field names that are not tokens.
        Err(httparse::Error::HeaderName) => return Err(Malformed("a field name is not a token")),
        Err(httparse::Error::HeaderValue) => return Err(Malformed("a field value is not text")),
        Err(_) => return Err(Malformed("a line is not ended by CRLF or LF")),
    }
    let mut hosts = Vec::new();
    for field in request.headers.iter() {
        if field.name.eq_ignore_ascii_case("host") {
            let value = field.value.trim_ascii();
            if !value.iter().all(u8::is_ascii_graphic) {
                return Err(Malformed("Host is not a host"));
            }
            hosts.push(String::from_utf8_lossy(value).into_owned());
        }
    }
    Ok(hosts)
}

/// Whether the request line is `METHOD TARGET HTTP/d.d` with a version but 1.0 and 1.1
/// (505, where httparse only says the version is not one it reads).
fn other_version(head: &[u8]) -> bool {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let words: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    match words[..] {
        [_, _, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]] => {
            major.is_ascii_digit()
                && minor.is_ascii_digit()
                && !matches!([*major, *minor], [b'1', b'0' | b'1'])
        }
        _ => false,
    }
}

/// A whole response, the connection closed after it; every head hkrun's listeners write
/// is built by `head`, a stream's (its length unsaid) too.
#[derive(Debug)]
pub(crate) struct Response {
    status: &'static str,
    content_type: &'static str,
    /// Further header lines, each ended by CRLF.
    headers: String,
    body: String,
}

impl Response {
    pub(crate) fn new(status: &'static str, content_type: &'static str, body: String) -> Self {
        Self {
            status,
            content_type,
            headers: String::new(),
            body,
        }
    }

    pub(crate) fn text(status: &'static str, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body.into())
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push_str(&format!("{name}: {value}\r\n"));
        self
    }

    /// The head, for a body of `length` bytes (unsaid for a stream).
    pub(crate) fn head(&self, length: Option<usize>) -> String {
        let length = length.map_or(String::new(), |n| format!("Content-Length: {n}\r\n"));
        format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\n{length}Cache-Control: no-store\r\n\
             Connection: close\r\n{}\r\n",
            self.status, self.content_type, self.headers
        )
    }
}

/// Writes `response` (its head alone for `HEAD`), then ends the stream's writing side.
pub(crate) async fn respond(
    stream: &mut TcpStream,
    place: &Place,
    method: Method,
    response: &Response,
) -> Result<(), ()> {
    let mut out = response.head(Some(response.body.len())).into_bytes();
    if method == Method::Get {
        out.extend_from_slice(response.body.as_bytes());
    }
    place.write(stream, &out).await?;
    let _ = stream.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    fn get(path: &str, host: Option<&str>) -> Result<Request, Refusal> {
        Ok(Request {
            method: Method::Get,
            path: path.into(),
            host: host.map(Into::into),
        })
    }

    #[test]
    fn a_get_gives_its_path_and_host() {
        let got = parse(b"GET /events?x=1 HTTP/1.1\r\nhost: 127.0.0.1:9\r\nA: b\r\n");
        assert_eq!(got, get("/events", Some("127.0.0.1:9")));
        let bare = parse(b"GET / HTTP/1.0\r\n").map(|g| g.host);
        assert_eq!(bare, Ok(None));
        // The absolute form's authority stands for Host.
        let absolute = parse(b"GET http://localhost:9/metrics HTTP/1.1\r\nHost: x\r\n");
        assert_eq!(absolute, get("/metrics", Some("localhost:9")));
    }

    #[test]
    fn head_is_served_and_other_methods_are_refused_with_405() {
        let head = parse(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n").map(|r| r.method);
        assert_eq!(head, Ok(Method::Head));
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "BREW"] {
            let line = format!("{method} / HTTP/1.1\r\nHost: x\r\n");
            assert_eq!(parse(line.as_bytes()), Err(Refusal::Method), "{method}");
        }
        let response = Refusal::Method.response().head(Some(0));
        assert!(response.starts_with("HTTP/1.1 405 "), "{response}");
        assert!(response.contains("\r\nAllow: GET, HEAD\r\n"), "{response}");
    }

    #[test]
    fn a_malformed_head_is_refused() {
        for head in [
            &b"GET /\xff HTTP/1.1\r\nHost: x\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: \xffx\r\n",
            b"GET /  HTTP/1.1\r\nHost: x\r\n",
            b"GET / HTTP/1.1 extra\r\nHost: x\r\n",
            b"GET / HTTP/1.1\r\nHost : x\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n",
            b"GET / HTTP/1.1\r\nHost: x\rA: b\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n",
            // A control byte in any field's value (RFC 9110 §5.5).
            b"GET / HTTP/1.1\r\nHost: x\r\nA: b\x01\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\n",
            b"GET nowhere HTTP/1.1\r\nHost: x\r\n",
            b"G(T / HTTP/1.1\r\nHost: x\r\n",
            b"GET / SPDY/3\r\nHost: x\r\n",
        ] {
            let got = parse(head);
            assert!(
                matches!(got, Err(Refusal::Malformed(_))),
                "{:?}: {got:?}",
                String::from_utf8_lossy(head)
            );
        }
        assert_eq!(parse(b"GET / HTTP/2.0\r\n"), Err(Refusal::Version));
    }

    #[test]
    fn lines_may_end_in_a_bare_lf() {
        let head = b"GET /metrics HTTP/1.1\nHost: localhost\n\nleft";
        let end = end_of_head(head).expect("the head ends");
        assert_eq!(parse(&head[..end]), get("/metrics", Some("localhost")));
        // Mixed, as some clients send it.
        let mixed = b"GET / HTTP/1.1\r\nHost: a\n\r\n";
        let end = end_of_head(mixed).expect("the head ends");
        assert_eq!(parse(&mixed[..end]), get("/", Some("a")));
        assert_eq!(end_of_head(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
    }

    /// What `read_head` made of a head, and when it gave up.
    type Read = (Option<Result<Request, Refusal>>, Instant);

    /// The client's end of an in-memory stream, and what `read_head` made of the other
    /// end.
    fn read_head_of(capacity: usize) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<Read>) {
        let (client, mut server) = tokio::io::duplex(capacity);
        let task = tokio::spawn(async move { (read_head(&mut server).await, Instant::now()) });
        (client, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_sent_a_byte_a_second_is_dropped_after_five_seconds() {
        let start = Instant::now();
        let (mut client, task) = read_head_of(1024);
        let slow = tokio::spawn(async move {
            for byte in b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n" {
                if client.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let (got, at) = task.await.expect("no panic");
        assert_eq!(got, None);
        assert_eq!(at - start, Duration::from_secs(5));
        slow.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn leading_empty_lines_are_skipped_and_a_long_head_refused() {
        let (mut client, task) = read_head_of(64 * 1024);
        client
            .write_all(b"\r\n\nGET /x HTTP/1.1\nHost: h\n\n")
            .await
            .expect("write");
        assert_eq!(task.await.expect("no panic").0, Some(get("/x", Some("h"))));
        let (mut client, task) = read_head_of(64 * 1024);
        let long = format!("GET / HTTP/1.1\r\nA: {}\r\n", "a".repeat(MAX_HEAD));
        client.write_all(long.as_bytes()).await.expect("write");
        assert_eq!(
            task.await.expect("no panic").0,
            Some(Err(Refusal::TooLarge))
        );
    }

    #[test]
    fn a_port_alone_is_on_loopback_and_a_host_needs_a_port() {
        let (addrs, name) = resolve("9100").expect("a port");
        assert_eq!(addrs, [SocketAddr::from(([127, 0, 0, 1], 9100))]);
        assert_eq!(name, None);
        let (addrs, name) = resolve("[::1]:80").expect("an address");
        assert_eq!(addrs, ["[::1]:80".parse::<SocketAddr>().expect("v6")]);
        assert_eq!(name, None);
        let (addrs, name) = resolve("localhost:80").expect("localhost resolves");
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
        assert_eq!(name.as_deref(), Some("localhost"));
        for bad in [
            "localhost",
            "localhost:",
            "host:99999",
            ":80",
            "a b:80",
            "::1:80",
        ] {
            assert!(matches!(resolve(bad), Err(BindError::Malformed)), "{bad}");
        }
    }

    #[test]
    fn every_address_of_a_name_is_bound_on_one_port() {
        let addrs: Vec<SocketAddr> = ["127.0.0.1:0", "[::1]:0"]
            .iter()
            .map(|a| a.parse().expect("an address"))
            .collect();
        let bound = bind_all(&addrs).expect("bound");
        let ports: Vec<u16> = bound
            .iter()
            .map(|l| l.local_addr().expect("an address").port())
            .collect();
        // ::1 is left out where this machine has no IPv6.
        assert!(!ports.is_empty() && ports.iter().all(|&p| p != 0 && p == ports[0]));
        let taken = bound[0].local_addr().expect("an address");
        assert!(matches!(bind_all(&[taken]), Err(BindError::InUse(at)) if at == taken));
    }
}
