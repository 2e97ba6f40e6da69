//! `--metrics ADDR`: `GET /metrics` parses with Prometheus' strict OpenMetrics parser (the
//! `prometheus_client` Python package's), and says what `hkrun ps --json` says.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use crate::harness::{App, Hk, client, free_base_port, free_port, hkrun, unique_tag};

/// One HTTP/1.0 GET; the response's status line and body.
fn get(port: u16, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(crate::harness::PATIENCE))
        .expect("a read timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("send the request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read the response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// The samples of an exposition, `(name, labels, value)`, as the strict parser reads it;
/// `None` where the parser is not installed.
fn parse_strictly(text: &str) -> Option<Vec<(String, serde_json::Value, f64)>> {
    let script = "import json, sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n\
        out = []\n\
        for family in parse(sys.stdin.read()):\n\
        \x20   assert family.documentation, family.name\n\
        \x20   for s in family.samples:\n\
        \x20       out.append([s.name, s.labels, s.value])\n\
        print(json.dumps(out))\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes())
        .expect("give the parser the text");
    let out = child.wait_with_output().expect("the parser's answer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'prometheus_client'") {
        if std::env::var_os("CI").is_some() {
            panic!("prometheus_client is not installed (.ci/run installs it)");
        }
        eprintln!("skipped: prometheus_client is not installed (pip install prometheus-client)");
        return None;
    }
    assert!(
        out.status.success(),
        "the parser refused:\n{stderr}\n{text}"
    );
    let samples: Vec<(String, serde_json::Value, f64)> =
        serde_json::from_slice(&out.stdout).expect("the parser's JSON");
    Some(samples)
}

fn value(samples: &[(String, serde_json::Value, f64)], name: &str, dyno: &str) -> Option<f64> {
    samples
        .iter()
        .find(|(n, labels, _)| n == name && labels["dyno"] == dyno)
        .map(|s| s.2)
}

#[test]
fn metrics_parse_strictly_and_say_what_ps_says() {
    let app =
        App::new("web: exec hkrun-test-child listen\nworker: echo working; exec sleep 1000\n");
    let tag = unique_tag();
    let base = free_base_port();
    let metrics = free_port();
    let mut hk = Hk::spawn(hkrun(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "-m",
            "web=2,worker=1",
            "-p",
            &base.to_string(),
            "--metrics",
            &metrics.to_string(),
        ],
        &tag,
    ));
    hk.wait_for_each(&[
        "web.1    | State changed from starting to up",
        "web.2    | State changed from starting to up",
        "worker.1 | working",
    ]);
    for _ in 0..3 {
        let (status, _) = get(base, "/");
        assert!(status.contains("200"), "{status}");
    }
    let (status, _) = get(metrics, "/nothing");
    assert!(status.contains("404"), "{status}");
    // The same sample on both sides: memory is sampled every second.
    let (samples, ps) = crate::harness::eventually("a memory sample that holds still", || {
        let (_, before) = get(metrics, "/metrics");
        let ps = client(app.path(), &["ps", "--json"]).stdout;
        let (_, after) = get(metrics, "/metrics");
        let memory = |text: &str| {
            text.lines()
                .filter(|l| l.starts_with("hkrun_dyno_memory_bytes"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        (memory(&before) == memory(&after)).then_some((before, ps))
    });
    let Some(samples) = parse_strictly(&samples) else {
        hk.stop_cleanly();
        return;
    };
    let ps: serde_json::Value = serde_json::from_str(&ps).unwrap();
    let dynos = ps["dynos"].as_array().unwrap();
    assert_eq!(dynos.len(), 3);
    for dyno in dynos {
        let name = dyno["name"].as_str().unwrap();
        let as_f64 = |v: &serde_json::Value| v.as_f64().unwrap();
        assert_eq!(
            value(&samples, "hkrun_dyno_pid", name),
            Some(as_f64(&dyno["pid"]))
        );
        assert_eq!(
            value(&samples, "hkrun_dyno_memory_quota_bytes", name),
            Some(as_f64(&dyno["quota"]))
        );
        assert_eq!(
            value(&samples, "hkrun_dyno_memory_bytes", name),
            dyno["memory"].as_f64(),
            "{name}"
        );
        let state = samples
            .iter()
            .find(|(n, l, _)| n == "hkrun_dyno_state" && l["dyno"] == name)
            .expect("a state");
        assert_eq!(state.1["state"], dyno["state"]);
        assert_eq!(
            value(&samples, "hkrun_dyno_restarts_total", name),
            Some(0.0)
        );
        assert!(value(&samples, "hkrun_dyno_cpu_seconds_total", name).is_some());
    }
    let router = samples
        .iter()
        .find(|(n, ..)| n == "hkrun_router_connections_total")
        .expect("router connections");
    assert!(router.2 >= 3.0, "{router:?}");
    assert_eq!(
        value(&samples, "hkrun_log_lines_total", "worker.1"),
        Some(1.0)
    );
    hk.stop_cleanly();
    crate::harness::assert_none_left(&tag);
}

#[test]
fn a_metrics_port_in_use_is_refused_before_anything_starts() {
    let app = App::new("worker: echo started; exec sleep 1000\n");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (status, lines, stderr) =
        crate::harness::run_to_end(app.path(), &["start", "--metrics", &port]);
    assert_eq!(status.code(), Some(69), "{stderr}");
    assert!(lines.iter().all(|l| !l.contains("started")), "{lines:?}");
    assert_eq!(
        stderr,
        format!(
            "hkrun: 127.0.0.1:{port} for the metrics endpoint (--metrics) is already in use \
             (stop what holds it, or choose another)\n"
        )
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// Sends `request` as it is; everything the listener answers before it closes.
fn exchange(port: u16, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(crate::harness::PATIENCE))
        .expect("a read timeout");
    stream.write_all(request).expect("send the request");
    let mut answer = Vec::new();
    // A reset after the answer is no failure: what came before it counts.
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn metrics_on_a_port_the_system_chooses_say_where_they_are() {
    let app = App::new("worker: echo working; exec sleep 1000\n");
    let mut hk = Hk::start(app.path(), &["start", "--no-timestamp", "--metrics", "0"]);
    let line = hk.wait_for("system   | metrics at http://127.0.0.1:");
    let port: u16 = line
        .rsplit_once("127.0.0.1:")
        .and_then(|(_, rest)| rest.strip_suffix("/metrics"))
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    assert_ne!(port, 0);
    let (status, text) = get(port, "/metrics");
    assert!(status.contains("200"), "{status}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    hk.stop_cleanly();
}

#[test]
fn every_request_head_gets_an_answer() {
    let app = App::new("worker: echo working; exec sleep 1000\n");
    let port = free_port();
    let mut hk = Hk::start(
        app.path(),
        &["start", "--no-timestamp", "--metrics", &port.to_string()],
    );
    hk.wait_for("worker.1 | working");
    let (_, body) = get(port, "/metrics");
    // HEAD: GET's head, its length said, and no body.
    let head = exchange(port, b"HEAD /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: "), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "a body after the head: {head}");
    // Lines ended by a bare LF are taken.
    let bare_lf = exchange(port, b"GET /metrics HTTP/1.1\nHost: localhost\n\n");
    assert!(bare_lf.starts_with("HTTP/1.1 200 OK\r\n"), "{bare_lf}");
    let (_, got) = bare_lf.split_once("\r\n\r\n").expect("a head and a body");
    assert!(
        got.starts_with("# HELP") && got.ends_with("# EOF\n"),
        "{got}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    for (request, status) in [
        (
            &b"POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello"[..],
            "HTTP/1.1 405 Method Not Allowed\r\n",
        ),
        (
            b"DELETE / HTTP/1.0\r\n\r\n",
            "HTTP/1.1 405 Method Not Allowed\r\n",
        ),
        (
            b"GET /metrics\xff HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (
            b"GET /metrics HTTP/1.1\r\nHost: \xfe\xff\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (b"hello there\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
    ] {
        let answer = exchange(port, request);
        let shown = String::from_utf8_lossy(request);
        assert!(answer.starts_with(status), "{shown:?}: {answer:?}");
        if status.contains("405") {
            assert!(answer.contains("\r\nAllow: GET, HEAD\r\n"), "{answer}");
        }
    }
    hk.stop_cleanly();
}

#[test]
fn idle_connections_do_not_keep_a_scrape_waiting() {
    let app = App::new("worker: echo working; exec sleep 1000\n");
    let port = free_port();
    let mut hk = Hk::start(
        app.path(),
        &["start", "--no-timestamp", "--metrics", &port.to_string()],
    );
    hk.wait_for("worker.1 | working");
    // Every place (8) taken by connections that say nothing, and more waiting: all
    // accepted in turn, before the scrape below.
    let idle: Vec<TcpStream> = (0..12)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    let asked = std::time::Instant::now();
    let (status, text) = get(port, "/metrics");
    let took = asked.elapsed();
    assert!(status.contains("200"), "{status}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        took < std::time::Duration::from_secs(3),
        "the scrape took {took:?} behind {} idle connections",
        idle.len()
    );
    drop(idle);
    hk.stop_cleanly();
}
