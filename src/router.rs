//! The router: a TCP proxy (layer 4) on the first port of web's block that spreads new
//! connections round-robin over the web dynos that are up.
//!
//! It owns connections only. Which dynos take traffic is the core's decision, published
//! on a `watch` channel (`Effect::Backends`); the router never looks at dynos itself. It
//! runs on its own thread and runtime, so proxying never competes with the supervisor's
//! loop, and a slow client never delays a signal or a reap.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, timeout_at};

use crate::supervisor::input::Slot;

/// How long a new connection waits for a web dyno to be up before it is closed
/// (Heroku's router waits 30 s for a response).
pub const WAIT_FOR_DYNO: Duration = Duration::from_secs(30);
/// How long to wait before trying again when every dyno refused a connection.
const RETRY: Duration = Duration::from_millis(50);

/// A web dyno taking traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub slot: Slot,
    pub port: u16,
}

/// Starts the router on `listener` in its own thread.
pub fn spawn(
    listener: TcpListener,
    backends: watch::Receiver<Vec<Backend>>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    // One thread: on the measured 2-core machine two router threads gave less
    // throughput, not more (BENCHMARKS.md).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("hkrun-router".into())
        .spawn(move || runtime.block_on(serve(listener, backends)))?;
    Ok(())
}

async fn serve(listener: TcpListener, backends: watch::Receiver<Vec<Backend>>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::warn!(%err, "the router cannot listen");
            return;
        }
    };
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(err) => {
                // Out of file descriptors, most likely: let some close.
                tracing::warn!(%err, "the router cannot accept a connection");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        tokio::spawn(proxy(client, backends.clone(), Arc::clone(&next)));
    }
}

async fn proxy(
    mut client: TcpStream,
    mut backends: watch::Receiver<Vec<Backend>>,
    next: Arc<AtomicUsize>,
) {
    let _ = client.set_nodelay(true);
    let Some(mut upstream) = connect(&mut backends, &next).await else {
        // No dyno came up in time: the client sees the connection close.
        return;
    };
    let _ = upstream.set_nodelay(true);
    // Copies both ways; when one side finishes sending, the other side's write half is
    // shut down, so half-closed protocols keep working.
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// A connection to an up dyno, trying each in turn from the round-robin position. Nothing
/// of the client's has been sent yet, so trying another dyno is always safe.
async fn connect(
    backends: &mut watch::Receiver<Vec<Backend>>,
    next: &AtomicUsize,
) -> Option<TcpStream> {
    let deadline = Instant::now() + WAIT_FOR_DYNO;
    loop {
        let ports: Vec<u16> = backends
            .borrow_and_update()
            .iter()
            .map(|b| b.port)
            .collect();
        if !ports.is_empty() {
            let start = next.fetch_add(1, Ordering::Relaxed);
            for k in 0..ports.len() {
                let port = ports[(start + k) % ports.len()];
                if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await {
                    return Some(stream);
                }
            }
        }
        // Wait for the set to change (a dyno coming up), or retry shortly: a dyno may
        // refuse for a moment while the core has not yet heard it died.
        let wait = async {
            if ports.is_empty() {
                backends.changed().await.is_ok()
            } else {
                tokio::time::sleep(RETRY).await;
                true
            }
        };
        match timeout_at(deadline, wait).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return None,
        }
    }
}
