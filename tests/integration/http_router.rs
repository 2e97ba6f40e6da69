//! `--router http`, Heroku's router: tried with servers nobody here wrote (Python's
//! `http.server`, gunicorn, node's `http`, `websockets`) and real clients (curl, wrk):
//! the headers a dyno sees, the line per request field by field, the H-codes.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::{App, Hk, eventually, free_base_port};
use crate::router::ps;

/// A WSGI app that answers every request with its headers as JSON, and its dyno's name.
const ECHO_WSGI: &str = r#"
import json, os, time
def app(environ, start_response):
    if environ.get("PATH_INFO") == "/slow":
        time.sleep(float(environ.get("QUERY_STRING") or "3"))
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    body = json.dumps({"dyno": os.environ["DYNO"], "headers": headers}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
"#;

/// Whether `program` runs here; under CI (which installs it) its absence fails the test.
fn have(program: &str, args: &[&str], install: &str) -> bool {
    let ok = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} is not installed (.ci/run installs it: {install})"
        );
        eprintln!("skipped: {program} is not installed ({install})");
    }
    ok
}

fn have_gunicorn() -> bool {
    have(
        "python3",
        &["-m", "gunicorn", "--version"],
        "pip install gunicorn",
    )
}

/// A server that reads a request, then closes without answering; or answers half a
/// body (`/half`), or nothing for 3 s (`/never`).
const RUDE: &str = "
import socket, os, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(os.environ['PORT']))); s.listen()
while True:
    c, _ = s.accept(); req = c.recv(65536)
    if b'/half' in req: c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 100\\r\\n\\r\\nabc')
    if b'/never' in req: time.sleep(3)
    c.close()
";

/// Python's `http.server` with no SIGTERM handler (it dies at once), answering its
/// dyno's name, `/slow` after 3 s.
const SLOW: &str = "
import http.server, os, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        print('serving', self.path, flush=True)
        if self.path == '/slow': time.sleep(3)
        body = os.environ['DYNO'].encode()
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
";

/// A WebSocket echo server (the `websockets` package).
const WS: &str = "
import asyncio, os, websockets
async def echo(ws):
    async for m in ws: await ws.send('echo ' + m)
async def main():
    async with websockets.serve(echo, '127.0.0.1', int(os.environ['PORT'])): await asyncio.Future()
asyncio.run(main())
";

/// An app of `procfile`, started behind the router with `web` web dynos and `extra`
/// flags; waits for them to be up.
fn start(procfile: &str, web: usize, extra: &[&str]) -> (App, Hk, u16) {
    start_waiting(procfile, web, true, extra)
}

fn start_waiting(procfile: &str, web: usize, wait: bool, extra: &[&str]) -> (App, Hk, u16) {
    let app = App::new(procfile);
    app.write("echo.py", ECHO_WSGI);
    app.write("rude.py", RUDE);
    app.write("ws.py", WS);
    app.write("slow.py", SLOW);
    let base = free_base_port();
    let port = base.to_string();
    let formation = format!("web={web}");
    let mut args = vec!["start", "--no-timestamp", "-m", &formation, "-p", &port];
    args.extend_from_slice(extra);
    let mut hk = Hk::start(app.path(), &args);
    hk.wait_for("router listening");
    if wait {
        eventually("the web dynos to be up", || {
            let ps = ps(&app);
            (ps.dynos.iter().filter(|d| d.state == "up").count() == web).then_some(())
        });
    }
    (app, hk, base)
}

/// What curl got: status, headers (lower-case names), body.
struct Got {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One request by curl through the router, with `args` added.
fn curl(port: u16, path: &str, args: &[&str]) -> Got {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20"])
        .args(args)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no status from curl: {text:?} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Got {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The router's line's fields, by name (`path` and `fwd` unquoted).
fn fields(line: &str) -> HashMap<String, String> {
    let text = line.split_once("router | ").map_or(line, |(_, t)| t);
    let mut out = HashMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], quoted[end..].trim_start_matches('"'))
        } else {
            after.split_once(' ').unwrap_or((after, ""))
        };
        out.insert(key.trim().to_owned(), value.to_owned());
        rest = next.trim_start();
    }
    out
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis()
}

/// Heroku's headers, as gunicorn (sync workers, then gthread) hands them to the app, and
/// the router's line for each request, field by field.
#[test]
fn gunicorn_sees_herokus_headers_and_each_request_has_herokus_line() {
    if !have_gunicorn() {
        return;
    }
    for worker in ["sync", "gthread"] {
        let procfile = format!(
            "web: exec python3 -m gunicorn --worker-class {worker} --threads 4 -w 1 -b 127.0.0.1:$PORT --chdir . echo:app\n"
        );
        let (_app, mut hk, port) = start(&procfile, 1, &["--metrics", "127.0.0.1:0"]);
        let before = now_ms();
        let id = "client-chosen-id-0123456789";
        let got = curl(
            port,
            "/a?b=1",
            &[
                "-H",
                &format!("X-Request-Id: {id}"),
                "-H",
                "X-Forwarded-For: 10.1.2.3",
                "-H",
                "Connection: keep-alive, X-Secret",
                "-H",
                "X-Secret: hop",
                "-H",
                "Keep-Alive: timeout=5",
            ],
        );
        let after = now_ms();
        assert_eq!(got.status, 200, "{worker}: {}", got.body);
        assert_eq!(got.headers["x-request-id"], id, "{worker}: sent back");
        let seen = &json(&got.body)["headers"];
        assert_eq!(seen["x-forwarded-for"], "10.1.2.3, 127.0.0.1", "{worker}");
        assert_eq!(seen["x-forwarded-proto"], "http", "{worker}");
        assert_eq!(seen["x-forwarded-port"], port.to_string(), "{worker}");
        assert_eq!(seen["x-request-id"], id, "{worker}");
        assert_eq!(seen["via"], "1.1 hkrun", "{worker}");
        let start: u128 = seen["x-request-start"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{worker}: X-Request-Start {seen}"));
        assert!(
            (before..=after).contains(&start),
            "{worker}: {before} {start} {after}"
        );
        assert!(seen.get("x-secret").is_none(), "{worker}: {seen}");
        assert!(seen.get("keep-alive").is_none(), "{worker}: {seen}");

        let line = hk.wait_for("router | at=info");
        let f = fields(&line);
        let order: Vec<&str> = line
            .split_once("router | ")
            .expect("the router's name")
            .1
            .split(' ')
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
            .collect();
        assert_eq!(
            order,
            [
                "at",
                "method",
                "path",
                "host",
                "request_id",
                "fwd",
                "dyno",
                "connect",
                "service",
                "status",
                "bytes",
                "protocol",
                "tls"
            ],
            "{line}"
        );
        assert_eq!(f["method"], "GET");
        assert_eq!(f["path"], "/a?b=1");
        assert_eq!(f["host"], format!("127.0.0.1:{port}"));
        assert_eq!(f["request_id"], id);
        assert_eq!(f["fwd"], "10.1.2.3, 127.0.0.1");
        assert_eq!(f["dyno"], "web.1");
        assert!(
            f["connect"].ends_with("ms") && f["service"].ends_with("ms"),
            "{line}"
        );
        assert_eq!(f["status"], "200");
        assert_eq!(f["bytes"], got.body.len().to_string());
        assert_eq!(f["protocol"], "http1.1");
        assert_eq!(f["tls"], "false");

        // A request ID not of Heroku's form is replaced by a UUID.
        let got = curl(port, "/", &["-H", "X-Request-Id: short"]);
        let new_id = &got.headers["x-request-id"];
        assert_eq!(new_id.len(), 36, "{new_id}");
        assert_eq!(json(&got.body)["headers"]["x-request-id"], new_id.as_str());
        // A body's bytes, each way, are the dyno's in /metrics.
        let posted = curl(port, "/", &["--data-binary", "0123456789"]);
        assert_eq!(posted.status, 200);
        // Said at start, before the lines waited for above.
        let line = hk
            .seen
            .iter()
            .find(|l| l.contains("metrics at http://"))
            .cloned()
            .unwrap_or_else(|| hk.wait_for("metrics at http://"));
        let at = line.split("http://").nth(1).expect("an address").trim();
        let metrics = Command::new("curl")
            .args(["-sS", "--max-time", "20", &format!("http://{at}")])
            .output()
            .expect("run curl");
        let metrics = String::from_utf8_lossy(&metrics.stdout);
        let sample = |name: &str| -> u64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {metrics}"))
        };
        let into_web =
            sample("hkrun_router_dyno_bytes_total{dyno=\"web.1\",type=\"web\",direction=\"in\"}");
        assert_eq!(into_web, 10, "{worker}");
        assert!(sample("hkrun_router_bytes_total{direction=\"out\"}") > 0);
        assert!(
            sample("hkrun_router_requests_total{status=\"200\"}") >= 3,
            "{metrics}"
        );
        hk.stop_cleanly();
    }
}

/// node's `http` module behind the router, 2 dynos: the requests of one kept-alive
/// client connection are spread over both, and an HTTP/1.0 client is served as one.
#[test]
fn each_request_on_a_kept_alive_connection_is_routed_on_its_own() {
    if !have("node", &["--version"], "apt-get install nodejs") {
        return;
    }
    let server = "web: exec node -e \"require('http').createServer((q, r) => r.end(process.env.DYNO)).listen(+process.env.PORT, '127.0.0.1')\"\n";
    let (_app, mut hk, port) = start(server, 2, &[]);
    let url = format!("http://127.0.0.1:{port}/");
    // curl reuses one connection for every URL it is given.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", " %{num_connects}\\n"])
        .args(std::iter::repeat_n(url.as_str(), 6))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let answers: Vec<&str> = text.lines().map(str::trim).collect();
    let connects: usize = answers
        .iter()
        .filter_map(|a| a.rsplit(' ').next()?.parse::<usize>().ok())
        .sum();
    assert_eq!(connects, 1, "one connection for six requests: {answers:?}");
    let dynos: std::collections::HashSet<&str> =
        answers.iter().filter_map(|a| a.split(' ').next()).collect();
    assert_eq!(dynos.len(), 2, "both dynos answered: {answers:?}");
    // HTTP/1.0.
    let got = curl(port, "/", &["-0"]);
    assert_eq!(got.status, 200);
    assert!(got.body.starts_with("web."), "{}", got.body);
    let line = hk.wait_for("protocol=http1.0");
    assert_eq!(fields(&line)["status"], "200");
    hk.stop_cleanly();
}

/// A dyno alive but not listening (a reloader in error): its requests are answered
/// H21 within seconds, with Heroku's page and line, never a silent 30 s hang.
#[test]
fn a_dyno_that_stopped_listening_gets_h21_at_once() {
    // Listens (so it comes up), then closes its listener and stays alive.
    let web = "web: exec python3 -c \"import socket,os,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(os.environ['PORT']))); s.listen(); time.sleep(1.5); s.close(); print('closed', flush=True); time.sleep(600)\"\n";
    let (_app, mut hk, port) = start(web, 1, &[]);
    hk.wait_for("| closed");
    let began = Instant::now();
    let got = curl(port, "/", &[]);
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(got.status, 503);
    assert!(got.body.contains("Application error"), "{}", got.body);
    let line = hk.wait_for("code=H21");
    let f = fields(&line);
    assert_eq!(f["at"], "error");
    assert_eq!(f["desc"], "Backend connection refused");
    assert_eq!(f["status"], "503");
    // Left out for 5 s: the next request is answered without trying it.
    let began = Instant::now();
    assert_eq!(curl(port, "/", &[]).status, 503);
    assert!(began.elapsed() < Duration::from_secs(2));
    hk.wait_for("code=H21");
    hk.stop_cleanly();
}

/// H10 (web crashed), H11 (`--max-requests`), H25 (a header over 8,192 bytes), H27 (the
/// client left), H14 (web scaled to 0), H12 (`--request-timeout`), H13 (closed without a
/// response), H18 (closed mid-response), H26 (an `Expect` the router cannot honour), H19
/// (no connection within 5 s): each with its status, page and line.
#[test]
fn herokus_error_codes() {
    // H10: web exits at once, again and again.
    let (_app, mut hk, port) = start_waiting("web: exit 3\n", 1, false, &[]);
    hk.wait_for("State changed from starting to crashed");
    let got = curl(port, "/", &[]);
    assert_eq!(got.status, 503);
    let f = fields(&hk.wait_for("code=H10"));
    assert_eq!(
        (f["desc"].as_str(), f["dyno"].as_str(), f["status"].as_str()),
        ("App crashed", "", "503")
    );
    hk.stop_cleanly();

    if !have_gunicorn() {
        return;
    }
    let gunicorn = "web: exec python3 -m gunicorn --worker-class gthread --threads 8 -w 1 -b 127.0.0.1:$PORT --chdir . echo:app\n";
    let (app, mut hk, port) = start(gunicorn, 1, &["--max-requests", "1"]);
    // H11: a request in flight, the next refused. The slow one may itself be the one
    // refused, when a probe is in flight as it comes: it tries again.
    let slow = std::thread::spawn(move || {
        (0..50)
            .map(|_| curl(port, "/slow?4", &[]).status)
            .find(|&status| status == 200)
    });
    eventually("a request refused while another is in flight", || {
        (curl(port, "/", &[]).status == 503).then_some(())
    });
    let f = fields(&hk.wait_for("code=H11"));
    assert_eq!(f["desc"], "Backlog too deep");
    assert_eq!(slow.join().expect("the slow request"), Some(200));
    // H25.
    let big = format!("X-Big: {}", "a".repeat(9000));
    let got = curl(port, "/", &["-H", &big]);
    assert_eq!(got.status, 400);
    let f = fields(&hk.wait_for("code=H25"));
    assert_eq!(f["desc"], "HTTP restriction: oversized header");
    // H26.
    let got = curl(port, "/", &["-H", "Expect: the-unexpected"]);
    assert_eq!(got.status, 400);
    let f = fields(&hk.wait_for("code=H26"));
    assert_eq!(f["desc"], "Request Error: unsupported expect header value");
    // H27: the client gives up before the response.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "0.3"])
        .arg(format!("http://127.0.0.1:{port}/slow?0.8"))
        .output()
        .expect("run curl");
    assert!(!out.status.success());
    let line = hk.wait_for("code=H27");
    let f = fields(&line);
    assert!(line.contains("sock=client at=warning"), "{line}");
    assert_eq!(f["status"], "499");
    // H14: web scaled to 0.
    let out = crate::harness::client(app.path(), &["scale", "web=0"]);
    assert!(out.status.success(), "{}", out.stderr);
    eventually("no web dyno", || ps(&app).dynos.is_empty().then_some(()));
    assert_eq!(curl(port, "/", &[]).status, 503);
    let f = fields(&hk.wait_for("code=H14"));
    assert_eq!(f["desc"], "No web processes running");
    hk.stop_cleanly();

    // H13, H18 and H12: a server that reads the request, then closes without answering,
    // answers half a body, or nothing for 3 s.
    let rude = "web: exec python3 rude.py\n";
    let (_app, mut hk, port) = start(rude, 1, &["--request-timeout", "1"]);
    assert_eq!(curl(port, "/", &[]).status, 503);
    let f = fields(&hk.wait_for("code=H13"));
    assert_eq!(f["desc"], "Connection closed without response");
    let _ = curl(port, "/half", &[]);
    let line = hk.wait_for("code=H18");
    assert!(line.contains("sock=backend at=error"), "{line}");
    // H12.
    let began = Instant::now();
    assert_eq!(curl(port, "/never", &[]).status, 503);
    assert!(
        began.elapsed() < Duration::from_millis(2900),
        "{:?}",
        began.elapsed()
    );
    let f = fields(&hk.wait_for("code=H12"));
    assert_eq!(
        (f["desc"].as_str(), f["dyno"].as_str()),
        ("Request timeout", "web.1")
    );
    hk.stop_cleanly();
}

/// A WebSocket (the `websockets` package, server and client) passes through, and is
/// logged when it ends with `status=101`.
#[test]
fn a_websocket_passes_through_and_is_logged_when_it_ends() {
    if !have(
        "python3",
        &["-c", "import websockets"],
        "pip install websockets",
    ) {
        return;
    }
    let server = "web: exec python3 ws.py\n";
    let (_app, mut hk, port) = start(server, 1, &[]);
    let client = format!(
        "import asyncio, websockets\n\
         async def main():\n\
         \x20   async with websockets.connect('ws://127.0.0.1:{port}/chat') as ws:\n\
         \x20       for m in ['a', 'b']:\n\
         \x20           await ws.send(m); print(await ws.recv())\n\
         asyncio.run(main())\n"
    );
    let out = Command::new("python3")
        .args(["-c", &client])
        .output()
        .expect("run the client");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "echo a\necho b\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = fields(&hk.wait_for("status=101"));
    assert_eq!((f["path"].as_str(), f["dyno"].as_str()), ("/chat", "web.1"));
    hk.stop_cleanly();
}

/// `hkrun maintenance:on`: every request gets the maintenance page with 503 and H80 while
/// the dynos keep running; `maintenance` says so; it outlasts a restart of hkrun; `off`
/// serves again.
#[test]
fn maintenance_mode_answers_h80_and_outlasts_a_restart_of_hkrun() {
    let web = "web: exec python3 -m http.server --bind 127.0.0.1 $PORT\n";
    let (app, mut hk, port) = start(web, 1, &[]);
    let say = |args: &[&str]| {
        let out = crate::harness::client(app.path(), args);
        assert!(out.status.success(), "{args:?}: {}", out.stderr);
        out.stdout
    };
    assert_eq!(say(&["maintenance"]), "off\n");
    assert_eq!(
        say(&["maintenance:on"]),
        "Enabling maintenance mode... done\n"
    );
    assert_eq!(say(&["maintenance"]), "on\n");
    let got = curl(port, "/", &[]);
    assert_eq!(got.status, 503);
    assert!(got.body.contains("Offline for Maintenance"), "{}", got.body);
    let f = fields(&hk.wait_for("code=H80"));
    assert_eq!(
        (f["at"].as_str(), f["desc"].as_str(), f["dyno"].as_str()),
        ("info", "Maintenance mode", "")
    );
    assert_eq!(ps(&app).dynos[0].state, "up");
    hk.stop_cleanly();

    let port_text = port.to_string();
    let mut hk = Hk::start(app.path(), &["start", "--no-timestamp", "-p", &port_text]);
    hk.wait_for("State changed from starting to up");
    assert_eq!(curl(port, "/", &[]).status, 503);
    assert_eq!(
        say(&["maintenance:off"]),
        "Disabling maintenance mode... done\n"
    );
    assert_eq!(curl(port, "/", &[]).status, 200);
    hk.stop_cleanly();
}

/// A node server that never stops on SIGTERM: it keeps every connection open and
/// serving until hkrun's SIGKILL at the end of the grace.
const STUBBORN_NODE: &str = "web: exec node -e \"process.on('SIGTERM', () => {}); require('http').createServer((q, r) => r.end(process.env.DYNO)).listen(+process.env.PORT, '127.0.0.1')\"\n";

/// What a load through the router came to.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    failed: u64,
}

/// wrk (8 kept-alive connections) and a Python client that reuses one connection,
/// through `port` while `during` runs; what each saw.
fn under_load(port: u16, during: impl FnOnce()) -> (Tally, Tally) {
    let wrk = Command::new("wrk")
        .args(["-t", "2", "-c", "8", "-d", "120s"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run wrk");
    let reuse = format!(
        "import http.client, sys, time\n\
         ok = failed = 0\n\
         c = http.client.HTTPConnection('127.0.0.1', {port}, timeout=10)\n\
         end = time.time() + 120\n\
         import select\n\
         while not select.select([sys.stdin], [], [], 0)[0] and time.time() < end:\n\
         \x20   try:\n\
         \x20       c.request('GET', '/'); r = c.getresponse(); r.read()\n\
         \x20       if r.status == 200: ok += 1\n\
         \x20       else: failed += 1\n\
         \x20   except Exception as e:\n\
         \x20       failed += 1; c.close(); c = http.client.HTTPConnection('127.0.0.1', {port}, timeout=10)\n\
         print(ok, failed)\n"
    );
    let mut python = Command::new("python3")
        .args(["-c", &reuse])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the reusing client");
    std::thread::sleep(Duration::from_millis(500));
    during();
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(wrk.id()).expect("a pid")),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("stop wrk");
    // Its stdin closed: the client stops.
    drop(python.stdin.take());
    let wrk = wrk.wait_with_output().expect("wrk's summary");
    let python = python.wait_with_output().expect("the client's count");
    let summary = String::from_utf8_lossy(&wrk.stdout);
    let number = |after: &str| -> u64 {
        summary
            .lines()
            .find_map(|l| l.trim().strip_prefix(after))
            .map_or(0, |rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .find(|s| !s.is_empty())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0)
            })
    };
    let total = summary
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no total in wrk's summary: {summary}"));
    let socket_errors: u64 = summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map_or(0, |rest| {
            rest.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        });
    let non_2xx = number("Non-2xx or 3xx responses:");
    let counts = String::from_utf8_lossy(&python.stdout);
    let mut counts = counts.split_whitespace().map(|n| n.parse().unwrap_or(0));
    let reused = Tally {
        ok: counts.next().unwrap_or(0),
        failed: counts.next().unwrap_or(0),
    };
    let wrk = Tally {
        ok: total - non_2xx.min(total),
        failed: non_2xx + socket_errors,
    };
    (wrk, reused)
}

/// 10 `hkrun restart web` under a kept-alive load (wrk, and a client that reuses its
/// connection), against a server that keeps its connections open through its SIGTERM
/// grace: through the HTTP router not one request fails. The same through `--router tcp`
/// is printed beside it (connections stay with the dyno they were opened to).
#[test]
fn ten_preboots_under_kept_alive_load_lose_no_request() {
    if !have("sh", &["-c", "command -v wrk"], "apt-get install wrk") {
        return;
    }
    if !have("node", &["--version"], "apt-get install nodejs") {
        return;
    }
    let mut seen = Vec::new();
    for router in ["http", "tcp"] {
        let (app, mut hk, port) = start(STUBBORN_NODE, 2, &["--router", router, "--timeout", "3"]);
        let (wrk, reused) = under_load(port, || {
            for _ in 0..10 {
                let out = crate::harness::client(app.path(), &["restart", "web"]);
                assert!(out.status.success(), "{}", out.stderr);
                assert_eq!(out.stdout, "Restarting web.1, web.2... done (preboot)\n");
            }
        });
        eprintln!("--router {router}: 10 preboots: wrk {wrk:?}, reusing client {reused:?}");
        seen.push((router, wrk, reused));
        hk.stop_cleanly();
    }
    let (_, wrk, reused) = &seen[0];
    assert!(wrk.ok > 1000 && reused.ok > 100, "{seen:?}");
    assert_eq!((wrk.failed, reused.failed), (0, 0), "{seen:?}");
}

/// `ERROR_PAGE_URL` and `MAINTENANCE_PAGE_URL` name files the router answers with; one
/// that cannot be read is warned about once, and hkrun's page served instead.
#[test]
fn error_pages_come_from_files_and_a_missing_one_is_said_once() {
    let app_env =
        "ERROR_PAGE_URL=pages/503.html\nMAINTENANCE_PAGE_URL=file:///nowhere/maintenance.html\n";
    let (app, mut hk) = {
        let app = App::new("web: exit 3\n");
        std::fs::create_dir(app.file("pages")).expect("a folder");
        app.write("pages/503.html", "<h1>We will be right back</h1>\n");
        app.write(".env", app_env);
        let port = free_base_port().to_string();
        let hk = Hk::start(app.path(), &["start", "--no-timestamp", "-p", &port]);
        (app, (hk, port.parse::<u16>().expect("a port")))
    };
    let (ref mut hk, port) = hk;
    hk.wait_for("State changed from starting to crashed");
    let got = curl(port, "/", &[]);
    assert_eq!(
        (got.status, got.body.as_str()),
        (503, "<h1>We will be right back</h1>\n")
    );
    let out = crate::harness::client(app.path(), &["maintenance:on"]);
    assert!(out.status.success(), "{}", out.stderr);
    let got = curl(port, "/", &[]);
    assert_eq!(got.status, 503);
    assert!(got.body.contains("Offline for Maintenance"), "{}", got.body);
    hk.stop_cleanly();
    let stderr = hk.stderr();
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("MAINTENANCE_PAGE_URL"))
        .collect();
    assert_eq!(
        said,
        [
            "hkrun: warning: MAINTENANCE_PAGE_URL: cannot read /nowhere/maintenance.html: No such file or directory (os error 2); hkrun's own page is served"
        ],
        "{stderr}"
    );
}

/// A server that dies at once on SIGTERM (Python's `http.server`, no handler), with a
/// request that takes 3 s: after a preboot's switch its old dyno gets SIGTERM only once
/// that request is done, so it is served whole.
#[test]
fn a_preboots_old_dyno_is_signalled_once_its_requests_are_done() {
    let (app, mut hk, port) = start("web: exec python3 slow.py\n", 1, &[]);
    let restart = || {
        let out = crate::harness::client(app.path(), &["restart", "web"]);
        assert!(out.status.success(), "{}", out.stderr);
    };
    let request = std::thread::spawn(move || curl(port, "/slow", &[]));
    hk.wait_for("| serving /slow");
    restart();
    let got = request.join().expect("the slow request");
    assert_eq!((got.status, got.body.as_str()), (200, "web.1"));
    let line = hk.wait_for("path=\"/slow\"");
    assert_eq!(fields(&line)["status"], "200", "{line}");
    hk.stop_cleanly();
}

/// Clients that ask for a large answer again and again on one connection and never read
/// (200 requests pipelined, 50 clients, a 1 MiB file each): the router stops reading
/// their requests once they stop reading its answers, so hkrun's memory stays bounded,
/// and a newcomer is served.
#[test]
fn clients_that_never_read_cost_bounded_memory_and_lock_nobody_out() {
    let web = "web: exec python3 -m http.server --bind 127.0.0.1 $PORT\n";
    let (app, mut hk, port) = start(web, 1, &["--router-log", "errors"]);
    app.write("big", &"x".repeat(1 << 20));
    assert_eq!(curl(port, "/big", &[]).body.len(), 1 << 20);
    let before = crate::harness::own_memory_kib(hk.pid().as_raw().unsigned_abs());
    let request = "GET /big HTTP/1.1\r\nHost: hkrun\r\n\r\n".repeat(200);
    let hostile: Vec<std::net::TcpStream> = (0..50)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            use std::io::Write as _;
            s.set_write_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            // What the socket takes; the rest never goes.
            let _ = s.write_all(request.as_bytes());
            s
        })
        .collect();
    // Let the router fill what it can.
    std::thread::sleep(Duration::from_secs(2));
    let got = curl(port, "/", &[]);
    assert_eq!(got.status, 200);
    let after = crate::harness::own_memory_kib(hk.pid().as_raw().unsigned_abs());
    eprintln!("hkrun's own memory: {before} KiB, then {after} KiB with 50 clients that never read");
    // 50 clients × 1 MiB answers would be 50 MiB and more if the router buffered them;
    // it reads at most 64 KiB ahead of each, and writes at most 64 KiB at once.
    assert!(after < before + 16 * 1024, "{before} KiB, then {after} KiB");
    drop(hostile);
    hk.stop_cleanly();
}

/// A server that answers one request per connection and closes the connection at the
/// next one without answering: what a dyno closing an idle kept-alive connection looks
/// like to the router when a request crosses the close.
const ONE_PER_CONNECTION: &str = "
import socket, os, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(os.environ['PORT']))); s.listen()
def serve(c):
    c.recv(65536)
    c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok')
    c.recv(65536)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,)).start()
";

/// A kept connection the dyno closes as a request crosses it: an idempotent request
/// without a body is sent again once, on a new connection, and served; another (a POST)
/// is not, and gets H13.
#[test]
fn a_stale_kept_connection_is_retried_once_for_an_idempotent_request_only() {
    let app = App::new("web: exec python3 one.py\n");
    app.write("one.py", ONE_PER_CONNECTION);
    let base = free_base_port();
    let port = base.to_string();
    let mut hk = Hk::start(app.path(), &["start", "--no-timestamp", "-p", &port]);
    hk.wait_for("State changed from starting to up");
    // Kept for the next request.
    assert_eq!(curl(base, "/first", &[]).status, 200);
    // Sent on the kept connection, which the dyno closes: sent again, served.
    let got = curl(base, "/again", &[]);
    assert_eq!((got.status, got.body.as_str()), (200, "ok"));
    let f = fields(&hk.wait_for("path=\"/again\""));
    assert_eq!((f["at"].as_str(), f["status"].as_str()), ("info", "200"));
    // The retry's connection is kept in turn; a POST on it is not sent twice.
    let got = curl(base, "/post", &["-d", "x=1"]);
    assert_eq!(got.status, 503);
    let f = fields(&hk.wait_for("path=\"/post\""));
    assert_eq!((f["code"].as_str(), f["method"].as_str()), ("H13", "POST"));
    hk.stop_cleanly();
}

/// A server that answers `/stall` with a head and 3 bytes of 100, then nothing; and
/// reads `/upload`'s body for ever without answering.
const STALL: &str = "
import socket, os, threading, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(os.environ['PORT']))); s.listen()
def serve(c):
    req = c.recv(65536)
    if b'/stall' in req: c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 100\\r\\n\\r\\nabc')
    while c.recv(65536): pass
    time.sleep(600)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
";

/// H20, H15 and H28 with real servers, Heroku's 75 s and 55 s shortened to a second for
/// the test (`HKRUN_TEST_ROUTER_BOOT_WAIT_MS`, `HKRUN_TEST_ROUTER_IDLE_MS`; TESTING.md).
#[test]
fn herokus_waits_give_h20_h15_and_h28() {
    let start_with_knobs = |procfile: &str, extra: &[&str]| {
        let app = App::new(procfile);
        app.write("stall.py", STALL);
        let base = free_base_port();
        let port = base.to_string();
        let mut args = vec!["start", "--no-timestamp", "-p", &port];
        args.extend_from_slice(extra);
        let mut command = crate::harness::hkrun(app.path(), &args, &crate::harness::unique_tag());
        command
            .env("HKRUN_TEST_ROUTER_BOOT_WAIT_MS", "1000")
            .env("HKRUN_TEST_ROUTER_IDLE_MS", "1000");
        let mut hk = Hk::spawn(command);
        hk.wait_for("router listening");
        (app, hk, base)
    };
    // H20: web never listens, and its boot timeout (R10) is far off.
    let (_app, mut hk, port) = start_with_knobs("web: exec sleep 600\n", &["--boot-timeout", "60"]);
    let began = Instant::now();
    let got = curl(port, "/", &[]);
    let took = began.elapsed();
    assert_eq!(got.status, 503);
    assert!(got.body.contains("Application error"), "{}", got.body);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let f = fields(&hk.wait_for("code=H20"));
    assert_eq!(
        (f["desc"].as_str(), f["dyno"].as_str()),
        ("App boot timeout", "")
    );
    hk.stop_cleanly();

    // H15 and H28 (no request timeout, so H12 does not come first).
    let (_app, mut hk, port) =
        start_with_knobs("web: exec python3 stall.py\n", &["--request-timeout", "0"]);
    hk.wait_for("State changed from starting to up");
    let got = curl(port, "/stall", &[]);
    assert_eq!((got.status, got.body.as_str()), (200, "abc"));
    let line = hk.wait_for("code=H15");
    let f = fields(&line);
    assert_eq!(
        (f["desc"].as_str(), f["status"].as_str()),
        ("Idle connection", "503")
    );
    // A body that stops after 5 of its 10 bytes.
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("a timeout");
    use std::io::{Read as _, Write as _};
    client
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
        .expect("send");
    let mut answer = [0; 64];
    let n = client.read(&mut answer).expect("an answer");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 499"), "{answer}");
    let line = hk.wait_for("code=H28");
    assert!(line.contains("sock=client at=warning"), "{line}");
    assert_eq!(fields(&line)["desc"], "Client Connection Idle");
    hk.stop_cleanly();
}
