//! A drain's connection: how a batch of RFC 5424 messages reaches the receiver over each
//! transport, and the certificates TLS trusts (Mozilla's roots, as in a minimal image
//! with no CA bundle; or, where `SSL_CERT_FILE` names a PEM file, its certificates only).

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
pub struct Roots {
    tls: Arc<rustls::ClientConfig>,
    http: ureq::tls::RootCerts,
}

/// The roots every TLS drain checks certificates against.
pub fn trusted_roots() -> io::Result<Roots> {
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
pub enum Link {
    Tcp(TcpStream),
    Udp(UdpSocket),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Http {
        agent: ureq::Agent,
        target: String,
        authorization: Option<String>,
    },
}

/// Each HTTPS batch's `Logplex-Frame-Id`, unique within hkrun's run.
static FRAMES: AtomicU64 = AtomicU64::new(0);

impl Link {
    /// Connects to `drain` (`roots` for its TLS transports).
    pub fn connect(drain: &Drain, roots: &Option<Roots>) -> io::Result<Self> {
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
                    .map_err(io::Error::other)?;
                let socket = tcp(&address(drain)?)?;
                socket.set_read_timeout(Some(TIMEOUT))?;
                let mut stream = rustls::StreamOwned::new(connection, socket);
                // The handshake now, so a certificate refused is said as the drain's
                // connect failing, not as a write.
                while stream.conn.is_handshaking() {
                    stream.conn.complete_io(&mut stream.sock)?;
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

    /// Sends `messages`, all or (as an error) not surely all.
    pub fn send(&mut self, messages: &[Vec<u8>]) -> io::Result<()> {
        match self {
            Self::Tcp(stream) => stream.write_all(&octet_counted(messages)),
            Self::Tls(stream) => {
                stream.write_all(&octet_counted(messages))?;
                stream.flush()
            }
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
                    .map_err(io::Error::other)?;
                // Read to its end, so the connection is used again for the next batch.
                let _ = answer.body_mut().with_config().limit(1 << 20).read_to_vec();
                match answer.status().as_u16() {
                    200..=299 => Ok(()),
                    // The receiver will not take this batch whenever it is sent.
                    status @ (400..=407 | 409..=428 | 430..=499) => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("it answered HTTP {status}"),
                    )),
                    status => Err(io::Error::other(format!("it answered HTTP {status}"))),
                }
            }
        }
    }
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

fn tcp(addr: &SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(addr, TIMEOUT)?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_framed_by_their_length_in_bytes() {
        let framed = octet_counted(&[b"abc".to_vec(), "d\ne\u{e9}".as_bytes().to_vec()]);
        assert_eq!(framed, "3 abc5 d\ne\u{e9}".as_bytes());
    }
}
