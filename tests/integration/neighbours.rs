//! Same-machine attackers at hkrun's listeners and files, the ones not covered beside
//! their own features: idle clients that would take the router's file descriptors, and a
//! link planted where hkrun keeps what it has done to the app. The others are with their
//! features: the control socket's idle and never-reading clients (`control`), the
//! dashboard's and `/metrics`' (`dashboard`, `metrics`), the log folder's links and other
//! users' folders (`logs`), parallel `config:set`s (`config_vars`), files added to an
//! export (`export`).

use std::net::TcpStream;

use crate::harness::{App, Hk, client, eventually, free_base_port, tagged_command, unique_tag};
use crate::router::{WEB, get};

/// hkrun's descriptors, as `ulimit -n` gives them, in a shell that then becomes hkrun.
fn hkrun_with_descriptors(app: &App, limit: u32, args: &[&str]) -> Hk {
    let line = format!("ulimit -n {limit} && exec \"$0\" \"$@\"");
    let mut command = tagged_command("sh", app.path(), &unique_tag());
    command
        .args(["-c", &line, env!("CARGO_BIN_EXE_hkrun")])
        .args(args);
    Hk::spawn(command)
}

#[test]
fn idle_router_clients_never_take_the_descriptors_hkrun_needs() {
    let app = App::new(&format!("web: {WEB}\n"));
    let port = free_base_port();
    let mut hk = hkrun_with_descriptors(
        &app,
        1024,
        &["start", "--no-timestamp", "-p", &port.to_string()],
    );
    eventually("web.1 up", || get(port).ok());
    // More idle connections than 1,024 descriptors could hold two of each; this test's
    // process needs as many of its own, beside the other tests' (raised to the hard
    // limit where the soft one is 1,024).
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
    let mut idle: Vec<TcpStream> = Vec::new();
    for _ in 0..700 {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => idle.push(stream),
            Err(err) => panic!("connect: {err}"),
        }
    }
    eprintln!("{} idle connections held", idle.len());
    // hkrun answers its own control socket, and starts dynos.
    let out = client(app.path(), &["ps"]);
    assert!(out.status.success(), "ps: {}", out.stderr);
    let out = client(app.path(), &["restart", "web"]);
    assert!(
        out.status.success(),
        "restart: {} {}",
        out.stdout,
        out.stderr
    );
    // A newcomer is served: an idle connection gives up its place.
    let served = eventually("a request through the router", || get(port).ok());
    assert_eq!(served, "web.1");
    drop(idle);
    hk.stop_cleanly();
}

#[test]
fn a_link_planted_at_the_state_file_is_replaced_not_followed() {
    let app = App::new("worker: exec sleep 1000\n");
    app.write("app.json", r#"{"scripts": {"postdeploy": "echo seeded"}}"#);
    // Read as an empty state (it is valid TOML), then never written through.
    app.write("victim", "# precious\n");
    std::os::unix::fs::symlink(app.file("victim"), app.file(".hkrun-state.toml"))
        .expect("plant a link");
    let port = free_base_port().to_string();
    let mut hk = Hk::start(app.path(), &["start", "--no-timestamp", "-p", &port]);
    hk.wait_for("postdeploy.1 | seeded");
    hk.wait_for("State changed from starting to up");
    hk.stop_cleanly();
    assert_eq!(
        std::fs::read_to_string(app.file("victim")).expect("read"),
        "# precious\n"
    );
    let state = app.file(".hkrun-state.toml");
    assert!(!state.is_symlink(), "the link is still there");
    let text = std::fs::read_to_string(state).expect("read the state");
    assert!(text.contains("echo seeded"), "{text}");
}
