//! `--drain`: every line reaches a real syslog receiver (Debian's rsyslog, an imtcp
//! listener on 127.0.0.1, installed by `.ci/run`) in order and intact; a receiver that is
//! down for 10 s slows neither the app's output nor grows hkrun past a bound, and the
//! lines dropped meanwhile are counted in the log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::{
    App, Hk, PATIENCE, free_base_port, free_port, hkrun, own_memory_kib, unique_tag,
};

/// rsyslogd in the foreground, writing `PROCID MSG` lines to `out`; killed when dropped.
struct Receiver {
    child: Child,
    out: PathBuf,
}

impl Receiver {
    /// `None`, saying so, where rsyslogd is not installed (a failure under `CI`).
    fn start(dir: &Path, port: u16) -> Option<Self> {
        let out = dir.join("received.log");
        let work = dir.join("rsyslog");
        std::fs::create_dir_all(&work).expect("rsyslog's folder");
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{work}\")\n\
                 module(load=\"imtcp\")\n\
                 input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\")\n\
                 template(name=\"raw\" type=\"string\" string=\"%procid% %msg%\\n\")\n\
                 *.* action(type=\"omfile\" file=\"{out}\" template=\"raw\")\n",
                work = work.display(),
                out = out.display()
            ),
        )
        .expect("write rsyslog.conf");
        let child = match Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join(format!("rsyslog-{port}.pid")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(_) if std::env::var_os("CI").is_some() => {
                panic!("rsyslogd is not installed (.ci/run installs it)")
            }
            Err(_) => {
                eprintln!("skipped: rsyslogd is not installed (apt-get install rsyslog)");
                return None;
            }
        };
        // Listening once a connection is taken.
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rsyslogd never listened on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self { child, out })
    }

    fn received(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// rsyslog on a free port, and `hkrun start` of `app` draining to it: the receiver, its
/// port, the drain's URL, hkrun's tag and hkrun; `None` where rsyslogd is missing.
fn start_with_a_drain(app: &App) -> Option<(Receiver, u16, String, String, Hk)> {
    let port = free_port();
    let receiver = Receiver::start(app.path(), port)?;
    let drain = format!("syslog+tcp://127.0.0.1:{port}");
    let tag = unique_tag();
    let hk = Hk::spawn(hkrun(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "--drain",
            &drain,
            "-p",
            &free_base_port().to_string(),
        ],
        &tag,
    ));
    Some((receiver, port, drain, tag, hk))
}

#[test]
fn a_hundred_thousand_lines_reach_rsyslog_in_order_and_intact() {
    let app = App::new(
        "flood: awk 'BEGIN { for (i = 1; i <= 100000; i++) { printf \"line %08d xxxxxxxxxxxxxxxxxxxxxxxx\\n\", i; if (i % 2000 == 0) { fflush(); system(\"sleep 0.02\") } } }'; echo flood done; exec sleep 1000\n",
    );
    let Some((receiver, _, _, _, mut hk)) = start_with_a_drain(&app) else {
        return;
    };
    hk.wait_for("flood.1 | flood done");
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = receiver.received();
        if text.contains("flood.1 flood done") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "not all arrived: {} bytes",
            text.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let numbers: Vec<u32> = text
        .lines()
        .filter_map(|l| l.strip_prefix("flood.1 line "))
        .map(|rest| {
            let (n, xs) = rest.split_once(' ').expect("intact");
            assert_eq!(xs, "xxxxxxxxxxxxxxxxxxxxxxxx", "not intact: {rest:?}");
            n.parse().expect("a number")
        })
        .collect();
    assert_eq!(numbers.len(), 100_000);
    assert!(
        numbers.iter().enumerate().all(|(i, &n)| n == i as u32 + 1),
        "out of order"
    );
    // hkrun's own lines go too, under `heroku`'s name as Heroku's drains send them.
    assert!(
        text.contains("flood.1 Starting process with command"),
        "{}",
        &text[..200]
    );
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
}

#[test]
fn a_drain_down_for_ten_seconds_slows_nothing_and_its_drops_are_counted() {
    // 10,000 lines a second: more than the drain's queue holds in 10 s.
    let app = App::new("chatty: exec python3 -u chatty.py\n");
    app.write(
        "chatty.py",
        "import time\ni = 0\nwhile True:\n    for _ in range(100):\n        i += 1\n        print('line %d' % i)\n    time.sleep(0.01)\n",
    );
    let Some((receiver, port, drain, tag, mut hk)) = start_with_a_drain(&app) else {
        return;
    };
    hk.wait_for("chatty.1 | line 1000");
    // Lines shown per second on stdout, over `span`.
    let rate = |hk: &mut Hk, span: Duration| {
        let end = Instant::now() + span;
        let mut count = 0u32;
        while hk.next_line(end).is_some() {
            count += 1;
        }
        f64::from(count) / span.as_secs_f64()
    };
    let before = rate(&mut hk, Duration::from_secs(2));
    drop(receiver);
    let during = rate(&mut hk, Duration::from_secs(10));
    let memory_kib = own_memory_kib(hk.child.id());
    let back = Receiver::start(app.path(), port).expect("rsyslogd again");
    let said = hk.wait_for("lines dropped: the drain");
    eprintln!(
        "stdout: {before:.0} lines/s before, {during:.0} while the drain was down; \
         hkrun {memory_kib} KiB anonymous memory; {said}"
    );
    assert!(
        during > before * 0.5,
        "{during:.0} lines/s against {before:.0}"
    );
    assert!(memory_kib < 64 * 1024, "{memory_kib} KiB");
    assert!(
        hk.seen.iter().any(|l| {
            l.contains(&format!("drain {drain} is unreachable"))
                || l.contains(&format!("drain {drain} failed"))
        }),
        "{:?}",
        &hk.seen[hk.seen.len().saturating_sub(20)..]
    );
    // The drain has lines again, newer than the ones dropped.
    let deadline = Instant::now() + PATIENCE;
    while !back.received().contains("chatty.1 line") {
        assert!(Instant::now() < deadline, "nothing reached the drain again");
        std::thread::sleep(Duration::from_millis(100));
    }
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
    crate::harness::assert_none_left(&tag);
}

/// A TLS receiver in Python's `ssl` module: `syslog` takes octet-counted frames,
/// `https` takes logplex POSTs (answering the first with 503, so a batch is sent
/// again). Each message is a line of `messages`; each POST's headers a JSON line of
/// `requests`.
const TLS_RECEIVER: &str = r#"
import http.server, json, ssl, socket, socketserver, sys, threading
mode, port, cert, key, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
lock = threading.Lock()
def keep(body):
    out, i = [], 0
    while i < len(body):
        space = body.index(b' ', i)
        n = int(body[i:space])
        out.append(body[space + 1:space + 1 + n])
        i = space + 1 + n
    with lock, open(folder + '/messages', 'ab') as f:
        for m in out:
            f.write(m.replace(b'\n', b'\\n') + b'\n')
    return len(out)
if mode == 'syslog':
    class Syslog(socketserver.StreamRequestHandler):
        def handle(self):
            while True:
                length = b''
                while not length.endswith(b' '):
                    c = self.rfile.read(1)
                    if not c:
                        return
                    length += c
                keep(length + self.rfile.read(int(length)))
    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True
        def get_request(self):
            sock, addr = self.socket.accept()
            return context.wrap_socket(sock, server_side=True), addr
        def handle_error(self, request, client_address):
            pass
    Server(('127.0.0.1', port), Syslog).serve_forever()
else:
    posts = [0]
    class Drain(http.server.BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'
        def log_message(self, *args):
            pass
        def do_POST(self):
            body = self.rfile.read(int(self.headers['Content-Length']))
            posts[0] += 1
            if posts[0] == 1:
                self.send_response(503)
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            count = keep(body)
            with lock, open(folder + '/requests', 'a') as f:
                f.write(json.dumps({'type': self.headers['Content-Type'],
                    'count': self.headers['Logplex-Msg-Count'], 'frames': count,
                    'auth': self.headers['Authorization'], 'path': self.path}) + '\n')
            self.send_response(200)
            self.send_header('Content-Length', '0')
            self.end_headers()
    server = http.server.ThreadingHTTPServer(('127.0.0.1', port), Drain)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()
"#;

/// The TLS receiver on a free port, with a certificate for localhost and 127.0.0.1 made
/// for the test; killed when dropped.
struct TlsReceiver {
    child: Child,
    port: u16,
    folder: PathBuf,
    /// The certificate, for hkrun's `SSL_CERT_FILE`.
    cert: PathBuf,
}

impl TlsReceiver {
    fn start(dir: &Path, mode: &str) -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("a certificate");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).expect("write the certificate");
        std::fs::write(&key, made.signing_key.serialize_pem()).expect("write the key");
        let port = free_port();
        let child = Command::new("python3")
            .arg("-c")
            .arg(TLS_RECEIVER)
            .args([mode, &port.to_string()])
            .arg(&cert)
            .arg(&key)
            .arg(dir)
            .stdin(Stdio::null())
            .spawn()
            .expect("python3");
        // Made first, so it is killed whatever happens next.
        let receiver = Self {
            child,
            port,
            folder: dir.to_owned(),
            cert,
        };
        crate::harness::eventually("the receiver to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        receiver
    }

    /// Every message received so far, one per line.
    fn messages(&self) -> String {
        std::fs::read_to_string(self.folder.join("messages")).unwrap_or_default()
    }
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hkrun start` of a worker that prints 2,000 numbered lines, draining to `url` and
/// trusting `cert` (or Mozilla's roots, with none).
fn start_draining(app: &App, url: &str, cert: Option<&Path>) -> Hk {
    let base = free_base_port().to_string();
    let mut command = hkrun(
        app.path(),
        &["start", "--no-timestamp", "--drain", url, "-p", &base],
        &unique_tag(),
    );
    match cert {
        Some(cert) => command.env("SSL_CERT_FILE", cert),
        None => command.env_remove("SSL_CERT_FILE"),
    };
    Hk::spawn(command)
}

/// Stops `hk` once `done` holds (or `PATIENCE` has passed); what hkrun printed.
fn stop_when(mut hk: Hk, done: impl Fn() -> bool) -> Vec<String> {
    hk.wait_for("worker.1 | printed");
    let deadline = Instant::now() + PATIENCE;
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
    hk.seen.clone()
}

const WORKER: &str = "worker: seq -f 'line %g' 2000; echo printed; exec sleep 1000\n";

/// The numbers of `worker.1`'s `line N` messages, in the order they came.
fn numbered(messages: &str) -> Vec<u32> {
    messages
        .lines()
        .filter_map(|m| m.split_once(" worker.1 - line "))
        .map(|(_, n)| n.parse().expect("a number"))
        .collect()
}

#[test]
fn a_syslog_tls_drain_gets_every_line_and_checks_the_certificate() {
    let app = App::new(WORKER);
    let receiver = TlsReceiver::start(app.path(), "syslog");
    let url = format!("syslog+tls://localhost:{}", receiver.port);
    let hk = start_draining(&app, &url, Some(&receiver.cert));
    stop_when(hk, || numbered(&receiver.messages()).len() >= 2000);
    // The last line, sent as hkrun stops, arrives too.
    let messages = crate::harness::eventually("the dyno's exit in the drain", || {
        let messages = receiver.messages();
        messages
            .lines()
            .any(|m| {
                m.starts_with("<190>1 ")
                    && m.contains(" heroku worker.1 - Process exited with status 143")
            })
            .then_some(messages)
    });
    assert_eq!(numbered(&messages), (1..=2000).collect::<Vec<_>>());

    // Without the test's certificate among the roots, the receiver is not trusted.
    std::fs::remove_file(receiver.folder.join("messages")).expect("start again");
    let mut hk = start_draining(&app, &url, None);
    let refused = hk.wait_for(&format!("drain {url} is unreachable"));
    assert!(refused.contains("certificate"), "{refused}");
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
    assert_eq!(receiver.messages(), "");
}

#[test]
fn an_https_drain_gets_logplex_batches_with_credentials_and_a_refused_batch_again() {
    let app = App::new(WORKER);
    let receiver = TlsReceiver::start(app.path(), "https");
    let url = format!(
        "https://hkrun:s3cret@127.0.0.1:{}/logs?app=x",
        receiver.port
    );
    let hk = start_draining(&app, &url, Some(&receiver.cert));
    let seen = stop_when(hk, || numbered(&receiver.messages()).len() >= 2000);
    // Shown without the password.
    let shown = format!("https://hkrun:***@127.0.0.1:{}/logs?app=x", receiver.port);
    assert!(
        seen.iter()
            .any(|l| l.contains(&format!("drain {shown} failed (it answered HTTP 503)"))),
        "{seen:#?}"
    );
    assert!(!seen.iter().any(|l| l.contains("s3cret")));
    // The refused batch came again: nothing lost, nothing out of order.
    let numbers = numbered(&receiver.messages());
    assert_eq!(numbers, (1..=2000).collect::<Vec<_>>());
    let requests = std::fs::read_to_string(receiver.folder.join("requests")).expect("requests");
    // Whole lines: a POST of hkrun's last moments may still be being written down.
    for request in requests.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let request: serde_json::Value = serde_json::from_str(request).expect("JSON");
        assert_eq!(request["type"], "application/logplex-1");
        assert_eq!(request["count"], request["frames"].to_string());
        // hkrun:s3cret
        assert_eq!(request["auth"], "Basic aGtydW46czNjcmV0");
        assert_eq!(request["path"], "/logs?app=x");
    }
}
