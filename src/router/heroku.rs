//! Heroku's router in words, no I/O: its error codes (H10 and the rest), the line it logs
//! for each request, the request ID it keeps or makes, the headers it sets and strips, and
//! its error pages (README, "The router").

use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The headers Heroku's router sets, named once (a name given as text is parsed at
/// every use).
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_REQUEST_START: HeaderName = HeaderName::from_static("x-request-start");
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request line, and longest header line, the router takes.
pub(crate) const MAX_LINE: usize = 8192;
/// Most headers a request may have.
pub(crate) const MAX_HEADERS: usize = 1000;

/// One of Heroku's router errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Code {
    /// Web dynos crashed.
    H10,
    /// More requests in flight than `--max-requests` on every dyno.
    H11,
    /// No response within `--request-timeout`.
    H12,
    /// The dyno closed the connection without a response.
    H13,
    /// web is scaled to 0.
    H14,
    /// The dyno's response carried nothing for 55 s.
    H15,
    /// The dyno closed the connection mid-request or mid-response.
    H18,
    /// Connecting took more than 5 s on every dyno tried.
    H19,
    /// No web dyno came up within 75 s while they boot.
    H20,
    /// Every dyno tried refused the connection.
    H21,
    /// Over the router's limits on the request's head.
    H25,
    /// A request the router cannot pass on as it came (an `Expect` other than
    /// `100-continue`).
    H26,
    /// The client closed its connection before the response.
    H27,
    /// The client's request body carried nothing for 55 s.
    H28,
    /// Maintenance mode.
    H80,
}

impl Code {
    pub(crate) fn desc(self) -> &'static str {
        match self {
            Self::H10 => "App crashed",
            Self::H11 => "Backlog too deep",
            Self::H12 => "Request timeout",
            Self::H13 => "Connection closed without response",
            Self::H14 => "No web processes running",
            Self::H15 => "Idle connection",
            Self::H18 => "Server Request Interrupted",
            Self::H19 => "Backend connection timeout",
            Self::H20 => "App boot timeout",
            Self::H21 => "Backend connection refused",
            Self::H25 => "HTTP restriction",
            Self::H26 => "Request Error",
            Self::H27 => "Client Request Interrupted",
            Self::H28 => "Client Connection Idle",
            Self::H80 => "Maintenance mode",
        }
    }

    /// The status the client gets (and the line says).
    pub(crate) fn status(self) -> u16 {
        match self {
            Self::H25 | Self::H26 => 400,
            Self::H27 | Self::H28 => 499,
            _ => 503,
        }
    }

    /// The line's `at=`.
    fn level(self) -> &'static str {
        match self {
            Self::H80 => "info",
            Self::H27 | Self::H28 => "warning",
            _ => "error",
        }
    }

    /// Whose socket it was about, where Heroku says.
    fn sock(self) -> Option<&'static str> {
        match self {
            Self::H18 => Some("backend"),
            Self::H27 | Self::H28 => Some("client"),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::H10 => "H10",
            Self::H11 => "H11",
            Self::H12 => "H12",
            Self::H13 => "H13",
            Self::H14 => "H14",
            Self::H15 => "H15",
            Self::H18 => "H18",
            Self::H19 => "H19",
            Self::H20 => "H20",
            Self::H21 => "H21",
            Self::H25 => "H25",
            Self::H26 => "H26",
            Self::H27 => "H27",
            Self::H28 => "H28",
            Self::H80 => "H80",
        }
    }
}

/// The router's line about one request, in Heroku's fields and order:
/// `at=info method=GET path="/" host=… request_id=… fwd="…" dyno=web.1 connect=0ms
/// service=12ms status=200 bytes=1432 protocol=http1.1 tls=false`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Line {
    pub code: Option<Code>,
    /// What the code's description adds (`HTTP restriction: oversized header`).
    pub detail: Option<&'static str>,
    pub method: String,
    pub path: String,
    pub host: String,
    pub request_id: String,
    pub fwd: String,
    /// The dyno that took it; none when none did.
    pub dyno: Option<String>,
    pub connect: Option<Duration>,
    pub service: Option<Duration>,
    pub status: u16,
    pub bytes: Option<u64>,
    pub protocol: &'static str,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Option<Duration>| d.map(|d| format!("{}ms", d.as_millis()));
        if let Some(sock) = self.code.and_then(Code::sock) {
            write!(f, "sock={sock} ")?;
        }
        match self.code {
            Some(code) => {
                write!(
                    f,
                    "at={} code={} desc=\"{}",
                    code.level(),
                    code.name(),
                    code.desc()
                )?;
                if let Some(detail) = self.detail {
                    write!(f, ": {detail}")?;
                }
                f.write_str("\" ")?;
            }
            None => f.write_str("at=info ")?,
        }
        write!(
            f,
            "method={} path=\"{}\" host={} request_id={} fwd=\"{}\" dyno={} connect={} \
             service={} status={} bytes={} protocol={} tls=false",
            self.method,
            quoted(&self.path),
            self.host,
            self.request_id,
            self.fwd,
            self.dyno.as_deref().unwrap_or(""),
            ms(self.connect).unwrap_or_default(),
            ms(self.service).unwrap_or_default(),
            self.status,
            self.bytes.map(|b| b.to_string()).unwrap_or_default(),
            self.protocol,
        )
    }
}

/// `"` and `\` escaped, so a path cannot end the field early.
fn quoted(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['"', '\\']) {
        s.replace('\\', "\\\\").replace('"', "\\\"").into()
    } else {
        s.into()
    }
}

/// The request ID the router uses: the client's `X-Request-Id` when it is 20 to 200
/// characters of `A-Z a-z 0-9 + / = -`, else a new UUID (Dev Center, "HTTP Request ID").
pub(crate) fn request_id(given: Option<&HeaderValue>) -> String {
    let kept = given
        .and_then(|v| v.to_str().ok())
        .filter(|id| (20..=200).contains(&id.len()))
        .filter(|id| {
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-'))
        });
    match kept {
        Some(id) => id.to_owned(),
        None => new_id(),
    }
}

/// A new request ID: a random (version 4) UUID. Unique, not secret: the bytes come from
/// splitmix64 over a counter seeded once from the OS, not a system call per request.
fn new_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: OnceLock<AtomicU64> = OnceLock::new();
    let state = STATE.get_or_init(|| {
        let seed = uuid::Uuid::new_v4().as_u64_pair();
        AtomicU64::new(seed.0 ^ seed.1)
    });
    let next = || {
        let mut z = state
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let bytes = (u128::from(next()) << 64 | u128::from(next())).to_be_bytes();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// What a request's head breaks of the router's limits, if anything: a request line or a
/// header line over 8,192 bytes, or more than 1,000 headers.
pub(crate) fn over_limits(method: &str, target: &str, headers: &HeaderMap) -> Option<&'static str> {
    // `GET /path HTTP/1.1`
    if method.len() + 1 + target.len() + 9 > MAX_LINE {
        return Some("oversized request line");
    }
    if headers.len() > MAX_HEADERS {
        return Some("too many headers");
    }
    let long = headers
        .iter()
        .any(|(name, value)| name.as_str().len() + 2 + value.len() > MAX_LINE);
    long.then_some("oversized header")
}

/// The connection's own headers, which the router never passes on (RFC 9110 7.6.1), and
/// those the `Connection` header names. An upgrade keeps `Connection: upgrade` and its
/// `Upgrade`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass over the names first: most messages have none of these, and each
    // `remove` is a lookup.
    if headers.keys().any(hop_by_hop) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .chain(headers.keys().filter(|n| hop_by_hop(n)).cloned())
            .collect();
        for name in named {
            if !(upgrade && name == header::UPGRADE) {
                headers.remove(name);
            }
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The connection's own headers, always stripped (`Upgrade` but on an upgrade).
fn hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
        header::UPGRADE,
    ]
    .contains(name)
        || matches!(name.as_str(), "keep-alive" | "proxy-connection")
}

/// What the router tells the dyno about the request, as Heroku's router does.
pub(crate) struct Forwarded<'a> {
    pub client: std::net::IpAddr,
    pub port: u16,
    pub request_id: &'a str,
    pub start: SystemTime,
}

impl Forwarded<'_> {
    /// Sets `X-Forwarded-For` (the client appended), `-Proto`, `-Port`, `X-Request-Start`
    /// (ms since the epoch), `X-Request-Id` and `Via`. Returns `X-Forwarded-For` as sent.
    pub(crate) fn set(&self, headers: &mut HeaderMap) -> String {
        let mut fwd = String::new();
        for before in headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            fwd.push_str(before);
            fwd.push_str(", ");
        }
        let _ = write!(fwd, "{}", self.client.to_canonical());
        let ms = self
            .start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let value = |s: String| HeaderValue::from_str(&s).ok();
        let set = [
            (X_FORWARDED_FOR, value(fwd.clone())),
            (X_FORWARDED_PROTO, Some(HeaderValue::from_static("http"))),
            (X_FORWARDED_PORT, value(self.port.to_string())),
            (X_REQUEST_START, value(ms.to_string())),
            (X_REQUEST_ID, value(self.request_id.to_owned())),
        ];
        for (name, v) in set {
            if let Some(v) = v {
                headers.insert(name, v);
            }
        }
        headers.append(header::VIA, HeaderValue::from_static("1.1 hkrun"));
        fwd
    }
}

/// A page the router answers with itself: an error's or maintenance's.
pub(crate) const ERROR_PAGE: &str = "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\">\
<title>Application Error</title></head>\n<body>\n<h1>Application error</h1>\n<p>An error \
occurred in the application and your page could not be served. If you are the application \
owner, check your logs for details.</p>\n</body>\n</html>\n";

pub(crate) const MAINTENANCE_PAGE: &str = "<!DOCTYPE html>\n<html>\n<head><meta \
charset=\"utf-8\"><title>Offline for Maintenance</title></head>\n<body>\n<h1>Offline for \
maintenance</h1>\n<p>This app is undergoing maintenance right now. Please check back \
later.</p>\n</body>\n</html>\n";

/// The page a client with a bad request (H25, H26) gets.
pub(crate) const BAD_REQUEST_PAGE: &str = "<!DOCTYPE html>\n<html>\n<head><meta \
charset=\"utf-8\"><title>Bad Request</title></head>\n<body>\n<h1>Bad request</h1>\n</body>\n\
</html>\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> Line {
        Line {
            method: "GET".into(),
            path: "/a?b=1".into(),
            host: "localhost:5000".into(),
            request_id: "f9f0a1f4-1ef4-4b8c-9a52-93b2b2a1c0de".into(),
            fwd: "127.0.0.1".into(),
            dyno: Some("web.2".into()),
            connect: Some(Duration::ZERO),
            service: Some(Duration::from_millis(12)),
            status: 200,
            bytes: Some(1432),
            protocol: "http1.1",
            ..Line::default()
        }
    }

    #[test]
    fn a_served_request_reads_as_herokus_line() {
        assert_eq!(
            line().to_string(),
            "at=info method=GET path=\"/a?b=1\" host=localhost:5000 \
             request_id=f9f0a1f4-1ef4-4b8c-9a52-93b2b2a1c0de fwd=\"127.0.0.1\" dyno=web.2 \
             connect=0ms service=12ms status=200 bytes=1432 protocol=http1.1 tls=false"
        );
    }

    #[test]
    fn an_error_has_its_code_and_description_and_empty_fields_where_nothing_was() {
        let h10 = Line {
            code: Some(Code::H10),
            dyno: None,
            connect: None,
            service: None,
            status: 503,
            bytes: None,
            ..line()
        };
        assert!(
            h10.to_string()
                .starts_with("at=error code=H10 desc=\"App crashed\" method=GET"),
            "{h10}"
        );
        assert!(
            h10.to_string()
                .contains(" dyno= connect= service= status=503 bytes= ")
        );
        let h18 = Line {
            code: Some(Code::H18),
            ..line()
        };
        assert!(
            h18.to_string()
                .starts_with("sock=backend at=error code=H18 ")
        );
        let h27 = Line {
            code: Some(Code::H27),
            status: 499,
            ..line()
        };
        assert!(
            h27.to_string()
                .starts_with("sock=client at=warning code=H27 desc=\"Client Request Interrupted\"")
        );
        let h25 = Line {
            code: Some(Code::H25),
            detail: Some("oversized header"),
            ..line()
        };
        assert!(
            h25.to_string()
                .contains("desc=\"HTTP restriction: oversized header\" ")
        );
    }

    #[test]
    fn a_quote_in_the_path_cannot_end_the_field() {
        let l = Line {
            path: "/\"x\\".into(),
            ..line()
        };
        assert!(l.to_string().contains(r#"path="/\"x\\" "#), "{l}");
    }

    #[test]
    fn the_clients_request_id_is_kept_only_when_it_fits_herokus_form() {
        let keep = "abcdefghij0123456789+/=-";
        assert_eq!(request_id(Some(&HeaderValue::from_static(keep))), keep);
        for bad in ["short", "has space in it, twenty+", &"x".repeat(201)] {
            let id = request_id(Some(&HeaderValue::from_str(bad).unwrap()));
            assert_ne!(id, bad);
            assert_eq!(id.len(), 36, "a UUID: {id}");
        }
        assert_eq!(request_id(None).len(), 36);
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 10_000);
        let id = uuid::Uuid::parse_str(&new_id()).unwrap();
        assert_eq!(id.get_version_num(), 4);
    }

    #[test]
    fn hop_by_hop_headers_go_and_an_upgrade_keeps_its_own() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        let mut plain = h.clone();
        strip_hop_by_hop(&mut plain, false);
        let names: Vec<&str> = plain.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
    }

    #[test]
    fn forwarded_headers_append_the_client_and_say_how_it_came() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let fwd = Forwarded {
            client: "127.0.0.1".parse().unwrap(),
            port: 5000,
            request_id: "id-0123456789abcdefghij",
            start: UNIX_EPOCH + Duration::from_millis(1_765_000_000_123),
        }
        .set(&mut h);
        assert_eq!(fwd, "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-port"], "5000");
        assert_eq!(h["x-request-start"], "1765000000123");
        assert_eq!(h["x-request-id"], "id-0123456789abcdefghij");
        assert_eq!(h[header::VIA], "1.1 hkrun");
    }

    #[test]
    fn limits_on_the_head() {
        let mut h = HeaderMap::new();
        assert_eq!(over_limits("GET", "/", &h), None);
        assert_eq!(
            over_limits("GET", &"/".repeat(MAX_LINE), &h),
            Some("oversized request line")
        );
        h.insert(
            "x-big",
            HeaderValue::from_str(&"a".repeat(MAX_LINE)).unwrap(),
        );
        assert_eq!(over_limits("GET", "/", &h), Some("oversized header"));
        let mut many = HeaderMap::new();
        for n in 0..=MAX_HEADERS {
            many.append(
                HeaderName::from_bytes(format!("x-{n}").as_bytes()).unwrap(),
                HeaderValue::from_static("1"),
            );
        }
        assert_eq!(over_limits("GET", "/", &many), Some("too many headers"));
    }
}
