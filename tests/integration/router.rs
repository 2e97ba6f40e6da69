//! The router: one public port in front of the web dynos that are up.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hkrun::control::protocol::Ps;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::harness::{App, Hk, client, eventually, free_base_port};

/// A web dyno that answers every request with its name (tests/support/child.rs).
pub(crate) const WEB: &str = "exec hkrun-test-child listen";

/// One HTTP/1.0 request through `port`: the dyno that answered, or why not.
pub(crate) fn get(port: u16) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: hkrun\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.0 200") => Ok(body.to_owned()),
        _ => Err(format!("bad answer: {answer:?}")),
    }
}

#[track_caller]
pub(crate) fn ps(app: &App) -> Ps {
    let out = client(app.path(), &["ps", "--json"]);
    assert!(out.status.success(), "{}", out.stderr);
    serde_json::from_str(&out.stdout).expect("JSON")
}

/// Starts `-m web=N` behind the router and waits until every web dyno is up.
pub(crate) fn web_app(n: usize, extra: &[&str]) -> (App, Hk, u16) {
    let app = App::new(&format!("web: {WEB}\n"));
    let base = free_base_port();
    let formation = format!("web={n}");
    let port = base.to_string();
    let mut args = vec!["start", "--no-timestamp", "-m", &formation, "-p", &port];
    args.extend_from_slice(extra);
    let mut hk = Hk::start(app.path(), &args);
    // The socket exists before anything starts.
    hk.wait_for("Starting process");
    eventually("every web dyno to be up", || {
        let ps = ps(&app);
        (ps.dynos.len() == n && ps.dynos.iter().all(|d| d.state == "up")).then_some(())
    });
    (app, hk, base)
}

/// `--balance random`, Heroku's router's choice: each connection to a dyno at random, so
/// over 90 connections each of 3 dynos serves some, and not in turn.
#[test]
fn balance_random_spreads_connections_at_random() {
    let (_app, mut hk, port) = web_app(3, &["--balance", "random"]);
    let answers: Vec<String> = (0..90)
        .map(|_| get(port).expect("a request through the router"))
        .collect();
    let mut served: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for answer in &answers {
        *served.entry(answer.as_str()).or_default() += 1;
    }
    assert_eq!(served.len(), 3, "{served:?}");
    assert!(served.values().all(|&n| n >= 10), "{served:?}");
    // In turn, each answer would differ from the one before; at random, about a third
    // repeat it.
    let repeats = answers.windows(2).filter(|w| w[0] == w[1]).count();
    assert!(repeats >= 5, "{repeats} repeats in {answers:?}");
    hk.stop_cleanly();
}

#[test]
fn spreads_requests_and_routes_around_a_killed_dyno() {
    let (app, mut hk, port) = web_app(3, &[]);
    let now = ps(&app);
    assert_eq!(now.router, Some(port));
    let ports: Vec<Option<u16>> = now.dynos.iter().map(|d| d.port).collect();
    assert_eq!(ports, [Some(port + 1), Some(port + 2), Some(port + 3)]);

    let answered: HashSet<String> = (0..30)
        .map(|_| get(port).expect("a request through the router"))
        .collect();
    assert!(answered.len() >= 2, "{answered:?}");

    // Four clients in a loop; web.2 is killed outright in the middle.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut done = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let result = get(port);
                    done.push((start, Instant::now(), result));
                }
                done
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let victim = now
        .dynos
        .iter()
        .find(|d| d.name == "web.2")
        .and_then(|d| d.pid)
        .expect("web.2's pid");
    signal::kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill web.2");
    // Dead once it is a zombie: its sockets are closed by then.
    let killed_at = eventually("web.2 to die", || {
        let stat = std::fs::read_to_string(format!("/proc/{victim}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        matches!(state, None | Some('Z')).then(Instant::now)
    });
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let done: Vec<_> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("a client thread"))
        .collect();

    let failed: Vec<_> = done.iter().filter(|(_, _, r)| r.is_err()).collect();
    // At most the requests in flight on web.2 when it died: one per client.
    assert!(failed.len() <= 4, "{} failed: {failed:?}", failed.len());
    // Rarely one fails just after web.2 is seen dead (while web.2 restarts): still one
    // of the four that can be in flight, but shown for whoever looks into it.
    for (start, _, result) in &failed {
        if *start > killed_at {
            eprintln!("failed after web.2 was gone: {result:?}");
        }
    }
    let after: Vec<&String> = done
        .iter()
        .filter(|(start, _, _)| *start > killed_at + Duration::from_millis(100))
        .filter_map(|(_, _, r)| r.as_ref().ok())
        .collect();
    assert!(
        after.len() > 10,
        "only {} requests after the kill",
        after.len()
    );
    assert!(after.iter().any(|d| *d == "web.1") && after.iter().any(|d| *d == "web.3"));
    eprintln!(
        "{} requests, {} failed, {} after the kill",
        done.len(),
        failed.len(),
        after.len()
    );
    hk.wait_for("web.2  | State changed from up to crashed");
    hk.stop_cleanly();
}

#[test]
fn without_the_router_web_keeps_foremans_ports() {
    let (app, mut hk, port) = web_app(2, &["--no-router"]);
    let now = ps(&app);
    assert_eq!(now.router, None);
    assert_eq!(get(port).as_deref(), Ok("web.1"));
    assert_eq!(get(port + 1).as_deref(), Ok("web.2"));
    hk.stop_cleanly();
    assert!(
        !hk.seen.iter().any(|l| l.contains("router listening")),
        "{:#?}",
        hk.seen
    );
}

#[test]
fn one_line_says_where_the_router_listens() {
    let (_app, mut hk, port) = web_app(2, &[]);
    hk.stop_cleanly();
    let said: Vec<&String> = hk
        .seen
        .iter()
        .filter(|l| l.contains("router listening"))
        .collect();
    let want =
        format!("system | router listening on http://127.0.0.1:{port} \u{2192} web.1, web.2");
    assert_eq!(said, [&want], "{:#?}", hk.seen);
    // Before any dyno starts.
    let first_start = hk.seen.iter().position(|l| l.contains("Starting process"));
    let line = hk.seen.iter().position(|l| *l == want);
    assert!(line < first_start, "{:#?}", hk.seen);
}

#[test]
fn a_connection_waits_for_a_web_dyno_to_come_up() {
    // The dyno takes a second to listen; a request sent at once is answered, not refused.
    let app = App::new(&format!("web: sleep 1; {WEB}\n"));
    let base = free_base_port();
    let port = base.to_string();
    let mut hk = Hk::start(app.path(), &["start", "--no-timestamp", "-p", &port]);
    eventually("the router to listen", || {
        TcpStream::connect(("127.0.0.1", base)).ok()
    });
    assert_eq!(get(base).as_deref(), Ok("web.1"));
    hk.stop_cleanly();
}

#[test]
fn a_dyno_listening_on_ipv6_only_is_reached() {
    // IPv6's loopback only.
    let app = App::new("web: hkrun-test-child listen --host ::1\n");
    let base = free_base_port();
    let port = base.to_string();
    let mut hk = Hk::start(app.path(), &["start", "--no-timestamp", "-p", &port]);
    hk.wait_for("web.1  | State changed from starting to up");
    assert_eq!(get(base).as_deref(), Ok("web.1"));
    assert_eq!(get(base).as_deref(), Ok("web.1"));
    hk.stop_cleanly();
}

/// A web dyno that takes 1.5 s (`BIND_DELAY`) to listen (or never, while `broken`
/// exists in the app folder) and finishes the requests it has on SIGTERM.
pub(crate) const GRACEFUL: &str =
    "exec hkrun-test-child listen --graceful --wait-while broken --delay ${BIND_DELAY:-1.5}";

/// Clients requesting through the router in a loop until dropped; counts what failed.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(usize, Vec<String>)>>,
}

impl Load {
    pub(crate) fn start(port: u16, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let (mut ok, mut failed) = (0, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        match get(port) {
                            Ok(_) => ok += 1,
                            Err(e) => failed.push(e),
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        Self { stop, threads }
    }

    /// Requests that succeeded, and the failures.
    pub(crate) fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut ok = 0;
        let mut failed = Vec::new();
        for thread in self.threads {
            let (n, f) = thread.join().expect("a client thread");
            ok += n;
            failed.extend(f);
        }
        (ok, failed)
    }
}

fn web_pids(ps: &Ps) -> Vec<i32> {
    ps.dynos.iter().filter_map(|d| d.pid).collect()
}

fn graceful_app(extra: &[&str]) -> (App, Hk, u16) {
    let app = App::new(&format!("web: {GRACEFUL}\n"));
    app.write("quick.env", "BIND_DELAY=0\n");
    let base = free_base_port();
    let port = base.to_string();
    let mut args = vec!["start", "--no-timestamp", "-m", "web=2", "-p", &port];
    args.extend_from_slice(extra);
    let mut hk = Hk::start(app.path(), &args);
    hk.wait_for("Starting process");
    eventually("both web dynos to be up", || {
        let ps = ps(&app);
        (ps.dynos.len() == 2 && ps.dynos.iter().all(|d| d.state == "up")).then_some(())
    });
    (app, hk, base)
}

#[test]
fn preboot_restarts_lose_no_request() {
    let (app, mut hk, port) = graceful_app(&[]);
    let mut seen_pids = web_pids(&ps(&app));
    let load = Load::start(port, 4);
    for _ in 0..3 {
        let out = client(app.path(), &["restart", "web"]);
        assert!(out.status.success(), "{}", out.stderr);
        assert_eq!(out.stdout, "Restarting web.1, web.2... done (preboot)\n");
        // Let the old dynos go while the load goes on.
        std::thread::sleep(Duration::from_millis(300));
    }
    let old = seen_pids.clone();
    eventually("the old dynos to be gone", || {
        let now = ps(&app);
        (now.dynos.len() == 2 && old.iter().all(|&p| !alive(p))).then_some(())
    });
    let (ok, failed) = load.finish();
    assert!(
        failed.is_empty(),
        "{} failed of {}: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    assert!(ok > 100, "only {ok} requests");
    let now = web_pids(&ps(&app));
    assert_eq!(now.len(), 2);
    seen_pids.retain(|p| now.contains(p));
    assert!(seen_pids.is_empty(), "old pids still serve: {seen_pids:?}");
    eprintln!("{ok} requests through three preboot restarts, 0 failed");
    hk.stop_cleanly();
}

#[test]
fn a_preboot_that_never_binds_keeps_the_old_dynos_serving() {
    // Quick to bind, so the first boot is well within the 5 s even on a busy machine.
    let (app, mut hk, port) = graceful_app(&["--boot-timeout", "5", "-e", "quick.env"]);
    let before = web_pids(&ps(&app));
    let load = Load::start(port, 4);
    app.write("broken", "");
    let out = client(app.path(), &["restart", "web"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stdout);
    assert_eq!(
        out.stderr,
        "hkrun: restart failed: the new web.1 missed its boot timeout; the old dynos keep serving\n"
    );
    std::thread::sleep(Duration::from_millis(500));
    let (ok, failed) = load.finish();
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert!(ok > 50, "only {ok} requests");
    assert_eq!(web_pids(&ps(&app)), before);
    assert!(before.iter().all(|&p| alive(p)));
    hk.stop_cleanly();
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next())
        })
        .is_some_and(|state| state != 'Z')
}

#[test]
fn sigusr2_restarts_every_dyno_with_web_prebooted() {
    let app = App::new(&format!(
        "web: {GRACEFUL}\nworker: trap 'exit 0' TERM; echo working; while :; do sleep 0.1; done\n",
    ));
    app.write("quick.env", "BIND_DELAY=0\n");
    let port = free_base_port().to_string();
    let mut hk = Hk::start(
        app.path(),
        &[
            "start",
            "--no-timestamp",
            "-m",
            "web=1,worker=1",
            "-p",
            &port,
            "-e",
            "quick.env",
        ],
    );
    hk.wait_for("Starting process");
    let before = eventually("both dynos to be up", || {
        let ps = ps(&app);
        (ps.dynos.len() == 2 && ps.dynos.iter().all(|d| d.state == "up")).then_some(ps)
    });
    let pid = |ps: &Ps, name: &str| {
        ps.dynos
            .iter()
            .rfind(|d| d.name == name)
            .and_then(|d| d.pid)
    };
    hk.signal(Signal::SIGUSR2);
    hk.wait_for_each(&[
        "Preboot: new web.1 take new connections",
        "worker.1 | Restarting",
    ]);
    let old_web = pid(&before, "web.1").expect("web.1's pid");
    eventually("new pids, and the old web.1 gone", || {
        let now = ps(&app);
        let new_web = pid(&now, "web.1").filter(|&p| p != old_web);
        let new_worker = pid(&now, "worker.1").filter(|&p| Some(p) != pid(&before, "worker.1"));
        (now.dynos.len() == 2 && new_web.is_some() && new_worker.is_some() && !alive(old_web))
            .then_some(())
    });
    hk.stop_cleanly();
}

/// This machine's address toward other machines, if it has one.
fn outward_address() -> Option<std::net::IpAddr> {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("192.0.2.255:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// The addresses the kernel lists a listener on `port` at (IPv4, /proc/net/tcp).
fn listening_at(port: u16) -> Vec<std::net::Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            let (ip, p) = local.split_once(':')?;
            (state == "0A" && u16::from_str_radix(p, 16).ok()? == port).then(|| {
                std::net::Ipv4Addr::from(u32::from_str_radix(ip, 16).unwrap_or(0).swap_bytes())
            })
        })
        .collect()
}

#[test]
fn the_router_is_never_more_reachable_than_the_web_dynos() {
    // Web on loopback: the router is too.
    let (_app, mut hk, port) = web_app(1, &[]);
    assert_eq!(get(port), Ok("web.1".to_owned()));
    assert_eq!(listening_at(port), [std::net::Ipv4Addr::LOCALHOST]);
    match outward_address() {
        Some(ip) => assert!(
            TcpStream::connect((ip, port)).is_err(),
            "the router answers on {ip} though web.1 listens on 127.0.0.1 only"
        ),
        None => eprintln!("no address toward other machines: the connect check skipped"),
    }
    hk.stop_cleanly();
    assert!(
        !hk.seen.iter().any(|l| l.contains("0.0.0.0")),
        "{:#?}",
        hk.seen
    );

    // Web on every interface: the router follows, and says so.
    // Web on every interface, as an app in a container is.
    let app = App::new("web: exec hkrun-test-child listen --host 0.0.0.0\n");
    let port = free_base_port();
    let mut hk = Hk::start(
        app.path(),
        &["start", "--no-timestamp", "-p", &port.to_string()],
    );
    hk.wait_for(&format!(
        "router listening on http://0.0.0.0:{port} too: web.1 listens on every interface"
    ));
    eventually("the router on 0.0.0.0", || {
        listening_at(port)
            .contains(&std::net::Ipv4Addr::UNSPECIFIED)
            .then_some(())
    });
    assert_eq!(get(port), Ok("web.1".to_owned()));
    if let Some(ip) = outward_address() {
        let mut stream = TcpStream::connect((ip, port)).expect("the router on every interface");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: hkrun\r\n\r\n")
            .expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        assert!(answer.ends_with("web.1"), "{answer}");
    }
    hk.stop_cleanly();

    // An address the user chose, from the start.
    let (_app, mut hk, port) = web_app(1, &["--router-address", "0.0.0.0"]);
    assert_eq!(listening_at(port), [std::net::Ipv4Addr::UNSPECIFIED]);
    hk.stop_cleanly();
    let want = format!("system | router listening on http://0.0.0.0:{port} \u{2192} web.1");
    assert!(hk.seen.contains(&want), "{:#?}", hk.seen);
}
