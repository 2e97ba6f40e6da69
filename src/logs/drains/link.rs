//! A drain's connection: how a batch of RFC 5424 messages reaches the receiver over each
//! transport, and the certificates TLS trusts (Mozilla's roots, as in a minimal image
//! with no CA bundle; or, where `SSL_CERT_FILE` names a PEM file, its certificates only).
//!
//! A TCP or TLS receiver answers nothing, so what a write put in the kernel is not yet
//! received: a stream link tells how far the receiver's kernel has acknowledged
//! (`acked`) and whether the receiver has closed the connection (`check`), for the
//! sender to keep each batch until the connection has proved alive past it (`super`).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;

use super::{Drain, Transport};

/// How long a connect or a write may take before the drain counts as down.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long an HTTPS drain may take to answer a batch.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// What TLS trusts, for both TLS transports.
#[derive(Clone)]
pub(super) struct Roots {
    tls: Arc<rustls::ClientConfig>,
    http: ureq::tls::RootCerts,
}

/// The roots every TLS drain checks certificates against.
pub(super) fn trusted_roots() -> io::Result<Roots> {
    let mut store = rustls::RootCertStore::empty();
    let http = match std::env::var_os("SSL_CERT_FILE") {
        Some(path) => {
            let bad = |err: &dyn std::fmt::Display| {
                io::Error::other(format!(
                    "SSL_CERT_FILE={}: {err}",
                    std::path::Path::new(&path).display()
                ))
            };
            let mut certs = Vec::new();
            for cert in
                rustls::pki_types::CertificateDer::pem_file_iter(&path).map_err(|e| bad(&e))?
            {
                let cert = cert.map_err(|e| bad(&e))?;
                store.add(cert.clone()).map_err(|e| bad(&e))?;
                certs.push(ureq::tls::Certificate::from_der(cert.as_ref()).to_owned());
            }
            if certs.is_empty() {
                return Err(bad(&"no certificate in it"));
            }
            ureq::tls::RootCerts::Specific(Arc::new(certs))
        }
        None => {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            ureq::tls::RootCerts::WebPki
        }
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(io::Error::other)?
    .with_root_certificates(store)
    .with_no_client_auth();
    Ok(Roots {
        tls: Arc::new(tls),
        http,
    })
}

/// A connection to a drain.
pub(super) enum Link {
    Tcp(Counted),
    Udp(UdpSocket),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, Counted>>),
    Http {
        agent: ureq::Agent,
        target: String,
        authorization: Option<String>,
    },
}

/// Why a batch did not go.
#[derive(Debug)]
pub(super) enum SendError {
    /// The receiver answered that it will not take this batch, whenever it is sent (an
    /// HTTP drain's 4xx but 408 and 429): sending it again would stop every later line.
    Refused(String),
    /// The connection failed: the batch may or may not have arrived.
    Broken(io::Error),
}

/// A TCP connection and the bytes written on it, to compare with what the receiver's
/// kernel has acknowledged.
pub(super) struct Counted {
    stream: TcpStream,
    written: u64,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.stream.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Each HTTPS batch's `Logplex-Frame-Id`, unique within hkrun's run.
static FRAMES: AtomicU64 = AtomicU64::new(0);

impl Link {
    /// Connects to `drain` (`roots` for its TLS transports).
    pub(super) fn connect(drain: &Drain, roots: &Option<Roots>) -> io::Result<Self> {
        let no_roots = || io::Error::other("no trusted certificates");
        match drain.transport {
            Transport::Tcp => Ok(Self::Tcp(tcp(&address(drain)?)?)),
            Transport::Udp => {
                let addr = address(drain)?;
                let bind: SocketAddr = match addr {
                    SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
                    SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
                };
                let socket = UdpSocket::bind(bind)?;
                socket.connect(addr)?;
                Ok(Self::Udp(socket))
            }
            Transport::Tls => {
                let roots = roots.as_ref().ok_or_else(no_roots)?;
                let host = drain
                    .address
                    .rsplit_once(':')
                    .map_or(drain.address.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(host.to_owned())
                    .map_err(|_| io::Error::other(format!("{host} is not a host name")))?;
                let connection = rustls::ClientConnection::new(Arc::clone(&roots.tls), name)
                    .map_err(|e| io::Error::other(tls_text(&e)))?;
                let socket = tcp(&address(drain)?)?;
                socket.stream.set_read_timeout(Some(TIMEOUT))?;
                let mut stream = rustls::StreamOwned::new(connection, socket);
                // The handshake now, so a certificate refused is said as the drain's
                // connect failing, not as a write.
                while stream.conn.is_handshaking() {
                    stream
                        .conn
                        .complete_io(&mut stream.sock)
                        .map_err(readable)?;
                }
                Ok(Self::Tls(Box::new(stream)))
            }
            Transport::Http => {
                let mut tls = ureq::tls::TlsConfig::builder();
                if drain.target.starts_with("https://") {
                    let roots = roots.as_ref().ok_or_else(no_roots)?;
                    tls = tls.root_certs(roots.http.clone());
                }
                let tls = tls.build();
                let agent = ureq::Agent::config_builder()
                    .tls_config(tls)
                    .timeout_connect(Some(TIMEOUT))
                    .timeout_global(Some(HTTP_TIMEOUT))
                    .http_status_as_error(false)
                    // A redirect would turn the POST into a GET without its body.
                    .max_redirects(0)
                    .user_agent(concat!("hkrun/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .into();
                let authorization = drain.credentials.as_ref().map(|c| {
                    // `user:password` as typed in a URL, its `%40`s decoded.
                    let decoded: Vec<u8> = percent_encoding::percent_decode_str(c).collect();
                    let encoded = base64::engine::general_purpose::STANDARD.encode(decoded);
                    format!("Basic {encoded}")
                });
                Ok(Self::Http {
                    agent,
                    target: drain.target.clone(),
                    authorization,
                })
            }
        }
    }

    /// Sends `messages`: all handed to the connection, or an error. Over HTTP, handed
    /// means answered with a 2xx; over TCP and TLS, written into the kernel (`acked` and
    /// `check` tell more later); over UDP, sent.
    pub(super) fn send(&mut self, messages: &[Vec<u8>]) -> Result<(), SendError> {
        match self {
            Self::Tcp(stream) => stream
                .write_all(&octet_counted(messages))
                .map_err(SendError::Broken),
            Self::Tls(stream) => stream
                .write_all(&octet_counted(messages))
                .and_then(|()| stream.flush())
                .map_err(|e| SendError::Broken(readable(e))),
            // A datagram each; one the network loses is lost (UDP's bargain).
            Self::Udp(socket) => {
                for message in messages {
                    let _ = socket.send(message);
                }
                Ok(())
            }
            // logplex's frames: the same octet-counted messages, one batch per POST.
            Self::Http {
                agent,
                target,
                authorization,
            } => {
                let frame = FRAMES.fetch_add(1, Ordering::Relaxed);
                let mut request = agent
                    .post(target.as_str())
                    .header("Content-Type", "application/logplex-1")
                    .header("Logplex-Msg-Count", messages.len().to_string())
                    .header(
                        "Logplex-Frame-Id",
                        format!("hkrun-{}-{frame}", std::process::id()),
                    );
                if let Some(value) = authorization {
                    request = request.header("Authorization", value.as_str());
                }
                let mut answer = request
                    .send(&octet_counted(messages)[..])
                    .map_err(|e| SendError::Broken(http_error(e)))?;
                // Read to its end, so the connection is used again for the next batch.
                let _ = answer.body_mut().with_config().limit(1 << 20).read_to_vec();
                // README, "Log drains": 408 and 429 say "later", as 5xx do (and a 3xx,
                // which hkrun does not follow, is a drain to fix, not a batch to drop).
                match answer.status().as_u16() {
                    200..=299 => Ok(()),
                    status @ (400..=407 | 409..=428 | 430..=499) => {
                        Err(SendError::Refused(format!("it answered HTTP {status}")))
                    }
                    status => Err(SendError::Broken(io::Error::other(format!(
                        "it answered HTTP {status}"
                    )))),
                }
            }
        }
    }

    /// The bytes written so far on a TCP or TLS connection; `None` for the others, whose
    /// `send` says all there is to know.
    pub(super) fn written(&self) -> Option<u64> {
        match self {
            Self::Tcp(counted) => Some(counted.written),
            Self::Tls(stream) => Some(stream.sock.written),
            Self::Udp(_) | Self::Http { .. } => None,
        }
    }

    /// How many of the bytes written the receiver's kernel has acknowledged.
    pub(super) fn acked(&self) -> io::Result<u64> {
        let counted = match self {
            Self::Tcp(counted) => counted,
            Self::Tls(stream) => &stream.sock,
            Self::Udp(_) | Self::Http { .. } => return Ok(0),
        };
        Ok(counted.written.saturating_sub(unacked(&counted.stream)?))
    }

    /// An error once the receiver has closed or reset the connection. Without a look
    /// first, a closed connection takes one more write without an error, and loses it.
    pub(super) fn check(&mut self) -> io::Result<()> {
        use nix::sys::socket::{MsgFlags, recv};
        let closed = || {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the receiver closed the connection",
            )
        };
        loop {
            let fd = match self {
                Self::Tcp(counted) => counted.stream.as_raw_fd(),
                Self::Tls(stream) => stream.sock.stream.as_raw_fd(),
                Self::Udp(_) | Self::Http { .. } => return Ok(()),
            };
            let mut byte = [0u8; 1];
            match recv(fd, &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return Err(closed()),
                Err(nix::errno::Errno::EAGAIN) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => {}
                Err(errno) => return Err(errno.into()),
                // A syslog receiver says nothing: what it sends is read and left; over
                // TLS, rustls reads its records (session tickets, a close_notify).
                Ok(_) => match self {
                    Self::Tls(stream) => {
                        let stream = &mut **stream;
                        stream.conn.read_tls(&mut stream.sock)?;
                        let state = stream
                            .conn
                            .process_new_packets()
                            .map_err(|e| io::Error::other(tls_text(&e)))?;
                        let _ = io::copy(&mut stream.conn.reader(), &mut io::sink());
                        if state.peer_has_closed() {
                            return Err(closed());
                        }
                    }
                    Self::Tcp(_) => {
                        let mut junk = [0u8; 4096];
                        let _ = recv(fd, &mut junk, MsgFlags::MSG_DONTWAIT);
                    }
                    Self::Udp(_) | Self::Http { .. } => return Ok(()),
                },
            }
        }
    }

    /// The log has ended: closes a TCP or TLS connection, and waits up to `within` for the
    /// receiver to show it had everything: it closes its end too, or acknowledges every
    /// byte and does not reset the connection for a moment. An error where it does not.
    pub(super) fn finish(&mut self, within: Duration) -> io::Result<()> {
        /// How long a receiver that acknowledged everything may leave its end open.
        const QUIET: Duration = Duration::from_millis(300);
        let start = Instant::now();
        if let Self::Tls(stream) = self {
            stream.conn.send_close_notify();
            stream.flush().map_err(readable)?;
        }
        let counted = match self {
            Self::Tcp(counted) => counted,
            Self::Tls(stream) => &mut stream.sock,
            Self::Udp(_) | Self::Http { .. } => return Ok(()),
        };
        counted.stream.shutdown(Shutdown::Write)?;
        let mut junk = [0u8; 4096];
        let all_acked = |stream: &TcpStream| unacked(stream).is_ok_and(|n| n == 0);
        loop {
            let left = within.saturating_sub(start.elapsed());
            if left.is_zero() {
                return match all_acked(&counted.stream) {
                    true => Ok(()),
                    false => Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the receiver did not acknowledge the last lines",
                    )),
                };
            }
            let wait = left
                .min(Duration::from_millis(100))
                .max(Duration::from_millis(1));
            counted.stream.set_read_timeout(Some(wait))?;
            match counted.stream.read(&mut junk) {
                // Its end closed, not reset: it read every byte (README, "Log drains").
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    if start.elapsed() >= QUIET && all_acked(&counted.stream) {
                        return Ok(());
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }
}

/// Bytes written on `stream` that its receiver's kernel has not acknowledged yet
/// (Linux's SIOCOUTQ, which is TIOCOUTQ's number).
#[expect(unsafe_code, reason = "SIOCOUTQ has no safe wrapper in nix")]
fn unacked(stream: &TcpStream) -> io::Result<u64> {
    let mut count: nix::libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer, to `count`, which outlives the
    // call; the descriptor is `stream`'s, open for the call's length.
    let status =
        unsafe { nix::libc::ioctl(stream.as_raw_fd(), nix::libc::TIOCOUTQ, &raw mut count) };
    if status < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(count).unwrap_or(0))
}

/// `err` with a TLS error inside it in words (`tls_text`).
fn readable(err: io::Error) -> io::Error {
    match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => io::Error::new(err.kind(), tls_text(tls)),
        None => err,
    }
}

/// An HTTP drain's failure as one line of words: ureq's own prefixes (`io: `) left out,
/// a TLS error in words.
fn http_error(err: ureq::Error) -> io::Error {
    match err {
        ureq::Error::Io(err) => readable(err),
        ureq::Error::Rustls(tls) => io::Error::other(tls_text(&tls)),
        ureq::Error::HostNotFound => io::Error::other("host not found"),
        ureq::Error::ConnectionFailed => io::Error::other("connection failed"),
        other => io::Error::other(other.to_string()),
    }
}

/// A TLS error as one line of words. rustls shows some as Rust's debug text
/// (`invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))`); the certificate's
/// common faults are said plainly, the rest have their names split into words.
pub(super) fn tls_text(err: &rustls::Error) -> String {
    use rustls::CertificateError as Cert;
    let rustls::Error::InvalidCertificate(cert) = err else {
        return words(&err.to_string());
    };
    let why = match cert {
        Cert::UnknownIssuer => {
            "its issuer is not trusted (not among Mozilla's roots, or SSL_CERT_FILE's when set)"
                .to_owned()
        }
        Cert::Expired => "it has expired".to_owned(),
        Cert::NotValidYet => "it is not valid yet".to_owned(),
        Cert::NotValidForName => "it is not valid for the drain's host name".to_owned(),
        Cert::Revoked => "it has been revoked".to_owned(),
        Cert::BadSignature => "its signature is wrong".to_owned(),
        Cert::BadEncoding => "it cannot be read".to_owned(),
        // webpki's errors, shown by their names.
        Cert::Other(other) => match other.0.to_string() {
            name if name == "CaUsedAsEndEntity" => {
                "it is a certificate authority's, not a server's".to_owned()
            }
            name => words(&name),
        },
        other => words(&other.to_string()),
    };
    format!("certificate refused: {why}")
}

/// Debug text as words: each `CamelCase` name split and lowercased, the brackets around
/// names and any `{ field: ... }` left out (`peer is incompatible: Tls12NotOffered` →
/// `peer is incompatible: tls12 not offered`).
fn words(text: &str) -> String {
    let text = text.split(" {").next().unwrap_or(text);
    let mut out = String::with_capacity(text.len() + 8);
    let mut previous: Option<char> = None;
    for c in text.chars() {
        match c {
            '(' | ')' => {
                if c == '(' && !out.ends_with(' ') {
                    out.push_str(": ");
                }
                previous = None;
                continue;
            }
            c if c.is_ascii_uppercase() => {
                if previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit()) {
                    out.push(' ');
                }
                out.push(c.to_ascii_lowercase());
            }
            c => out.push(c),
        }
        previous = Some(c);
    }
    // `Other: OtherError: x` → `x`: wrappers say nothing.
    out.replace("other: other error: ", "")
        .replace("other error: ", "")
        .trim()
        .to_owned()
}

/// RFC 6587's octet counting: `LEN SP MESSAGE`, so a message may hold anything.
fn octet_counted(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
    for message in messages {
        framed.extend_from_slice(format!("{} ", message.len()).as_bytes());
        framed.extend_from_slice(message);
    }
    framed
}

fn address(drain: &Drain) -> io::Result<SocketAddr> {
    drain
        .address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other("no address"))
}

fn tcp(addr: &SocketAddr) -> io::Result<Counted> {
    let stream = TcpStream::connect_timeout(addr, TIMEOUT)?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(Counted { stream, written: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_framed_by_their_length_in_bytes() {
        let framed = octet_counted(&[b"abc".to_vec(), "d\ne\u{e9}".as_bytes().to_vec()]);
        assert_eq!(framed, "3 abc5 d\ne\u{e9}".as_bytes());
    }

    #[test]
    fn tls_errors_read_as_words() {
        use rustls::{CertificateError, Error, OtherError};
        let unknown = Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(
            tls_text(&unknown),
            "certificate refused: its issuer is not trusted (not among Mozilla's roots, or SSL_CERT_FILE's when set)"
        );
        let other = Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
            io::Error::other("SomethingOddHappened"),
        ))));
        assert_eq!(
            tls_text(&other),
            "certificate refused: something odd happened"
        );
        assert_eq!(
            tls_text(&Error::AlertReceived(
                rustls::AlertDescription::HandshakeFailure
            )),
            "received fatal alert: handshake failure"
        );
        assert_eq!(
            words("peer is incompatible: Tls12NotOffered"),
            "peer is incompatible: tls12 not offered"
        );
        assert_eq!(words("unexpected: Weird { field: 3 }"), "unexpected: weird");
        assert_eq!(
            words("Other(OtherError(CaUsedAsEndEntity))"),
            "ca used as end entity"
        );
        // Wrapped in an io::Error, as rustls's streams give them.
        let wrapped = readable(io::Error::new(io::ErrorKind::InvalidData, unknown));
        assert!(
            wrapped.to_string().starts_with("certificate refused: "),
            "{wrapped}"
        );
    }
}
