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
    // 100 lines `line N` every 0.01 s.
    let app = App::new(
        "chatty: exec hkrun-test-child burst 100 --number 'line {n}' --len 0 --every 0.01\n",
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
    // Shown without the password, nor the query's values (`logs::drains::masked`).
    let shown = format!("https://hkrun:***@127.0.0.1:{}/logs?app=***", receiver.port);
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

/// A plain receiver in Python: `syslog close-after N` takes octet-counted frames and, on
/// its first connection, closes it abruptly (a reset, whatever it had not read) once it
/// has N messages, then takes every later connection whole; `syslog slam` closes each
/// connection as soon as it takes it; `http STATUS` answers every POST with STATUS. Each
/// message is a line of `messages`, each connection or POST a line of `connections`.
const PLAIN_RECEIVER: &str = r#"
import http.server, socket, struct, sys, threading
mode, port, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
def note(name, lines):
    with lock, open(folder + '/' + name, 'ab') as f:
        for line in lines:
            f.write(line.replace(b'\n', b'\\n') + b'\n')
if mode == 'syslog':
    how, count = sys.argv[4], int(sys.argv[5])
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(('127.0.0.1', port))
    listener.listen(16)
    first = True
    while True:
        conn, _ = listener.accept()
        note('connections', [b'connection'])
        if how == 'slam':
            conn.close()
            continue
        received, data = 0, b''
        while True:
            if first and received >= count:
                # Abruptly: a reset, and what the kernel holds unread is gone.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
                conn.close()
                first = False
                break
            try:
                chunk = conn.recv(4096)
            except OSError:
                chunk = b''
            if not chunk:
                conn.close()
                break
            data += chunk
            out = []
            while b' ' in data[:12]:
                length, rest = data.split(b' ', 1)
                if len(rest) < int(length):
                    break
                out.append(rest[:int(length)])
                data = rest[int(length):]
            note('messages', out)
            received += len(out)
else:
    status = int(sys.argv[4])
    class Drain(http.server.BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'
        def log_message(self, *args):
            pass
        def do_POST(self):
            body = self.rfile.read(int(self.headers['Content-Length']))
            note('connections', [b'POST'])
            note('messages', [body])
            self.send_response(status)
            self.send_header('Content-Length', '0')
            self.end_headers()
    http.server.ThreadingHTTPServer(('127.0.0.1', port), Drain).serve_forever()
"#;

/// `PLAIN_RECEIVER` on a free port; killed when dropped.
struct PlainReceiver {
    child: Child,
    port: u16,
    folder: PathBuf,
}

impl PlainReceiver {
    fn start(dir: &Path, args: &[&str]) -> Self {
        let port = free_port();
        let child = Command::new("python3")
            .arg("-c")
            .arg(PLAIN_RECEIVER)
            .arg(args[0])
            .arg(port.to_string())
            .arg(dir)
            .args(&args[1..])
            .stdin(Stdio::null())
            .spawn()
            .expect("python3");
        let receiver = Self {
            child,
            port,
            folder: dir.to_owned(),
        };
        // Probed by hand, not by a connection the receiver would count.
        crate::harness::eventually("the receiver to listen", || {
            std::fs::read_to_string("/proc/net/tcp")
                .ok()?
                .lines()
                .any(|l| l.contains(&format!(":{:04X} 00000000:0000 0A", port)))
                .then_some(())
        });
        receiver
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.folder.join(name)).unwrap_or_default()
    }
}

impl Drop for PlainReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines hkrun said it dropped for a drain, added up.
fn said_dropped(seen: &[String]) -> u64 {
    seen.iter()
        .filter_map(|l| l.split_once(" | ")?.1.split_once(" lines dropped: "))
        .map(|(count, _)| {
            count
                .trim_start_matches("at least ")
                .parse::<u64>()
                .expect("a count")
        })
        .sum()
}

#[test]
fn a_tcp_receiver_that_closes_mid_stream_loses_no_line_uncounted() {
    const LINES: u32 = 20_000;
    let app = App::new(&format!(
        "worker: seq -f 'line %g' {LINES}; echo printed; exec sleep 1000\n"
    ));
    let receiver = PlainReceiver::start(app.path(), &["syslog", "close-after", "2000"]);
    let url = format!("syslog+tcp://127.0.0.1:{}", receiver.port);
    let mut hk = start_draining(&app, &url, None);
    hk.wait_for("worker.1 | printed");
    // Every line arrives, on the second connection if not on the first.
    let deadline = Instant::now() + PATIENCE;
    let received = loop {
        let numbers: std::collections::BTreeSet<u32> =
            numbered(&receiver.read("messages")).into_iter().collect();
        if numbers.len() == LINES as usize || Instant::now() > deadline {
            break numbers;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
    let missing: Vec<u32> = (1..=LINES).filter(|n| !received.contains(n)).collect();
    let dropped = said_dropped(&hk.seen);
    eprintln!(
        "{} connections; {} of {LINES} lines missing, {dropped} said dropped",
        receiver.read("connections").lines().count(),
        missing.len()
    );
    assert!(
        receiver.read("connections").lines().count() >= 2,
        "the receiver never closed"
    );
    assert!(
        missing.len() as u64 <= dropped,
        "{} lines lost uncounted (the first: {:?})",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

#[test]
fn a_receiver_that_takes_connections_and_closes_them_is_retried_under_back_off() {
    let app = App::new("ticker: while true; do echo tick; sleep 0.05; done\n");
    let receiver = PlainReceiver::start(app.path(), &["syslog", "slam", "0"]);
    let url = format!("syslog+tcp://127.0.0.1:{}", receiver.port);
    let mut hk = start_draining(&app, &url, None);
    hk.wait_for(&format!("drain {url} "));
    let end = Instant::now() + Duration::from_secs(6);
    while hk.next_line(end).is_some() {}
    let said = hk
        .seen
        .iter()
        .filter(|l| l.contains(&format!("drain {url} ")))
        .count();
    let connections = receiver.read("connections").lines().count();
    eprintln!("in 6 s: {said} lines about the drain, {connections} connections");
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
    // Back-off from 0.1 s doubling to 5 s: a handful of connections in 6 s, one line.
    assert!(said <= 2, "{said} lines about the drain in 6 s");
    assert!(connections <= 15, "{connections} connections in 6 s");
}

#[test]
fn an_http_drain_answering_4xx_never_gets_its_own_complaints() {
    let app = App::new("worker: seq -f 'line %g' 50; echo printed; exec sleep 1000\n");
    let receiver = PlainReceiver::start(app.path(), &["http", "400"]);
    let url = format!("http://127.0.0.1:{}/logs", receiver.port);
    let mut hk = start_draining(&app, &url, None);
    hk.wait_for(&format!("drain {url} refused"));
    let end = Instant::now() + Duration::from_secs(5);
    while hk.next_line(end).is_some() {}
    let posts = receiver.read("connections").lines().count();
    let complaints = hk.seen.iter().filter(|l| l.contains(" refused ")).count();
    let worker_lines = hk.seen.iter().filter(|l| l.contains("worker.1 |")).count();
    eprintln!("in 5 s: {posts} POSTs, {complaints} refusals said, {worker_lines} app lines");
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
    assert!(
        !receiver.read("messages").contains(" refused "),
        "the drain got hkrun's complaints about it"
    );
    assert!(posts <= 10, "{posts} POSTs");
    assert!(complaints <= 2, "{complaints} refusals said in 5 s");
    // Counted: the refusals held back are said as hkrun stops.
    let last = hk
        .seen
        .iter()
        .rev()
        .find(|l| l.contains(&format!("drain {url} refused")))
        .expect("said");
    assert!(last.contains("HTTP 400"), "{last}");
}

#[test]
fn an_unreachable_https_drain_says_at_stop_how_many_lines_it_could_not_send() {
    let app = App::new(WORKER);
    let url = format!("https://127.0.0.1:{}/logs", free_port());
    let mut hk = start_draining(&app, &url, None);
    hk.wait_for_each(&["worker.1 | printed", &format!("drain {url} ")]);
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
    let stderr = hk.stderr();
    eprintln!("stderr: {stderr}");
    assert!(
        stderr.contains(&format!("drain {url}: ")) && stderr.contains(" lines not sent"),
        "{stderr}"
    );
}

/// Whether `text` reads as words, not as Rust's debug text of an error
/// (`Other(OtherError(CaUsedAsEndEntity))`, `UnknownIssuer`).
fn reads_as_words(text: &str) -> bool {
    let camel = text
        .as_bytes()
        .windows(2)
        .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase());
    !camel && !text.contains("Error(")
}

#[test]
fn tls_errors_read_as_words() {
    let app = App::new(WORKER);
    let receiver = TlsReceiver::start(app.path(), "https");
    let url = format!("https://127.0.0.1:{}/logs", receiver.port);
    // Mozilla's roots: the test's certificate is not trusted.
    let mut hk = start_draining(&app, &url, None);
    let failed = hk.wait_for(&format!("drain {url} failed"));
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
    let reason = failed
        .split_once(" failed (")
        .and_then(|(_, r)| r.rsplit_once("); "))
        .map_or(failed.as_str(), |(r, _)| r);
    eprintln!("{failed}");
    assert!(reason.contains("certificate"), "{failed}");
    assert!(reads_as_words(reason), "{failed}");
}

#[test]
fn drain_credentials_are_never_shown_nor_passed_to_dynos() {
    let app = App::new("env: env | grep ^HKRUN_ | sort; echo printed; exec sleep 1000\n");
    let secret_url =
        |port: u16| format!("https://hkrun:s3cret@127.0.0.1:{port}/logs?token=t0ken&app=x");
    let shown = |port: u16| format!("https://hkrun:***@127.0.0.1:{port}/logs?token=***&app=***");
    let leaks = |text: &str| text.contains("s3cret") || text.contains("t0ken");

    // `check --settings` shows the variable's drain masked.
    let mut check = hkrun(app.path(), &["check", "--settings"], &unique_tag());
    check.env("HKRUN_DRAIN", secret_url(1));
    let out = check.output().expect("hkrun check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!leaks(&text), "{text}");
    assert!(text.contains(&shown(1)), "{text}");

    // A drain refused is named masked.
    let bad = hkrun(
        app.path(),
        &[
            "start",
            "--drain",
            "syslog+tcp://hkrun:s3cret@127.0.0.1:514",
        ],
        &unique_tag(),
    )
    .output()
    .expect("hkrun start");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        stderr.contains("invalid value 'syslog+tcp://hkrun:***@127.0.0.1:514' for '--drain <URL>'"),
        "{stderr}"
    );
    assert!(!leaks(&stderr), "{stderr}");

    // Running: the drain's lines mask it, and no dyno gets hkrun's own settings.
    let port = free_port();
    let mut command = hkrun(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "-p",
            &free_base_port().to_string(),
        ],
        &unique_tag(),
    );
    command
        .env("HKRUN_DRAIN", secret_url(port))
        .env("HKRUN_LOG_KEEP", "3")
        .env("HKRUN_NO_PREBOOT", "true");
    let mut hk = Hk::spawn(command);
    hk.wait_for_each(&["| printed", &format!("drain {} ", shown(port))]);
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
    let stderr = hk.stderr();
    let all = format!("{}\n{stderr}", hk.seen.join("\n"));
    assert!(!leaks(&all), "{all}");
    let vars: Vec<&str> = hk
        .seen
        .iter()
        .filter(|l| l.starts_with("env.1 "))
        .filter_map(|l| l.split_once("| HKRUN_").map(|(_, v)| v))
        .filter_map(|v| v.split_once('=').map(|(k, _)| k))
        .collect();
    // The run mark and the tests' own variables reach the dyno; hkrun's settings do not.
    assert!(
        vars.contains(&"DYNO_ID") && vars.contains(&"TEST_TAG"),
        "{all}"
    );
    for setting in ["DRAIN", "LOG_KEEP", "NO_PREBOOT"] {
        assert!(
            !vars.contains(&setting),
            "HKRUN_{setting} reached the dyno: {vars:?}"
        );
    }
}

#[test]
fn a_burst_of_one_line_writes_reaches_a_drain_or_is_counted_line_by_line() {
    const LINES: u32 = 50_000;
    let flood = |id: &str| {
        format!(
            "{id}: awk 'BEGIN {{ for (i = 1; i <= {LINES}; i++) {{ printf \"line %d\\n\", i; fflush() }} }}'; echo {id} done; exec sleep 1000\n"
        )
    };
    let app = App::new(&["a", "b", "c", "d"].map(flood).concat());
    let receiver = PlainReceiver::start(app.path(), &["syslog", "keep", "999999999"]);
    let url = format!("syslog+tcp://127.0.0.1:{}", receiver.port);
    let mut hk = start_draining(&app, &url, None);
    hk.wait_for_each(&["| a done", "| b done", "| c done", "| d done"]);
    // Until every line has been received or said dropped (drops are said at most every
    // 10 s), or 30 s have passed.
    let total = 4 * u64::from(LINES);
    let received = || {
        let messages = receiver.read("messages");
        messages.lines().filter(|m| m.contains(" - line ")).count() as u64
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while received() + said_dropped(&hk.seen) < total && Instant::now() < deadline {
        while hk
            .next_line(Instant::now() + Duration::from_millis(200))
            .is_some()
        {}
    }
    hk.signal(Signal::SIGTERM);
    assert!(hk.wait_exit().success());
    let (received, dropped) = (received(), said_dropped(&hk.seen));
    eprintln!("{received} of {total} lines received, {dropped} said dropped");
    assert!(
        received + dropped >= total,
        "{} lines lost uncounted",
        total - received - dropped
    );
}
