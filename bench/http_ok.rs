//! The smallest HTTP/1.1 app for the router benchmarks: keep-alive, `200 ok` to every
//! request (after 20 ms for `GET /slow`), a thread per connection. Listens on
//! 127.0.0.1:$PORT. With `WEB_CONCURRENCY=1` it serves one connection at a time. With
//! `WORK_US=N` every request first spends N µs of CPU, as an app that renders something does.
//!
//! On SIGTERM it drains as a well-behaved app does: it stops accepting, answers the next
//! request of each open connection with `Connection: close`, and exits once every
//! connection has closed.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

static STOPPING: AtomicBool = AtomicBool::new(false);
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Spends `micros` of CPU, the stand-in for an app's own work on a request.
fn work(micros: u64) {
    let until = std::time::Instant::now() + Duration::from_micros(micros);
    let mut x = 0u64;
    while std::time::Instant::now() < until {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
}

fn serve(stream: TcpStream, work_us: u64) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    loop {
        // Headers end at an empty line; the benchmark sends no bodies.
        let mut saw_request = false;
        let mut slow = false;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            if !saw_request {
                slow = line.starts_with("GET /slow ");
            }
            saw_request = true;
        }
        if !saw_request {
            continue;
        }
        // `GET /slow`: a request that takes 20 ms, for the balancing benchmark.
        if slow {
            std::thread::sleep(Duration::from_millis(20));
        }
        if work_us > 0 {
            work(work_us);
        }
        if STOPPING.load(Ordering::Relaxed) {
            writer.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            )?;
            return Ok(());
        }
        writer.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok",
        )?;
    }
}

fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "5000".into());
    let listener = TcpListener::bind(format!("127.0.0.1:{port}"))?;
    listener.set_nonblocking(true)?;
    let serial = std::env::var("WEB_CONCURRENCY").is_ok_and(|v| v == "1");
    let work_us: u64 = std::env::var("WORK_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("a SIGTERM handler");
            term.recv().await;
            STOPPING.store(true, Ordering::Relaxed);
        });
    });
    while !STOPPING.load(Ordering::Relaxed) {
        match listener.accept() {
            // WEB_CONCURRENCY=1: one request at a time, like a single-threaded app server.
            Ok((stream, _)) if serial => {
                stream.set_nonblocking(false)?;
                let _ = serve(stream, work_us);
            }
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                OPEN.fetch_add(1, Ordering::Relaxed);
                std::thread::spawn(move || {
                    let _ = serve(stream, work_us);
                    OPEN.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
    drop(listener);
    while OPEN.load(Ordering::Relaxed) > 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
