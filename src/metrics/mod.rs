//! `--metrics ADDR`: Prometheus' view of the app on `GET /metrics`, in the OpenMetrics
//! text format (HELP and TYPE for every family), encoded by `prometheus-client`.
//!
//! One source of truth: the driver answers `Call::Metrics` with the same `View` `ps` gets
//! (`supervisor::view`: states, memory, the core's counters of restarts, crashes and
//! R10/R14/R15), and the router's and the log's figures; CPU time is read from /proc
//! here, on a blocking thread. The listener speaks just enough
//! HTTP/1.1 for a scraper (`crate::http`): one request per connection, `GET` or `HEAD`.
//! The dashboard serves the same `exposition` on its own listener.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::http;
use crate::logs::render::Label;
use crate::logs::writer::LogSender;
use crate::supervisor::api::Call;

pub use crate::supervisor::api::{RouterFigures, Snapshot};

/// How long a scraper may take to send its request and take the answer.
const ANSWER: Duration = Duration::from_secs(10);

type Labels = Vec<(String, String)>;

/// `dyno`, `type`, and `generation` for a preboot's new process under the same name.
fn dyno_labels(name: &str, kind: &str, generation: u32) -> Labels {
    let mut labels = vec![
        ("dyno".to_owned(), name.to_owned()),
        ("type".to_owned(), kind.to_owned()),
    ];
    if generation > 0 {
        labels.push(("generation".to_owned(), (generation + 1).to_string()));
    }
    labels
}

/// The exposition of `snapshot`, with `cpu` (seconds, by process group: a running dyno's
/// pid leads its group) from /proc.
pub fn render(snapshot: &Snapshot, cpu: &[(i32, f64)]) -> String {
    let mut registry = Registry::with_prefix("hkrun");
    let gauge = |registry: &mut Registry, name: &str, help: &str| {
        let family = Family::<Labels, Gauge>::default();
        registry.register(name, help, family.clone());
        family
    };
    let counter = |registry: &mut Registry, name: &str, help: &str| {
        let family = Family::<Labels, Counter>::default();
        registry.register(name, help, family.clone());
        family
    };
    let memory = gauge(
        &mut registry,
        "dyno_memory_bytes",
        "Resident memory of the dyno's processes at the last sample",
    );
    let quota = gauge(
        &mut registry,
        "dyno_memory_quota_bytes",
        "The dyno's memory quota",
    );
    let state = gauge(
        &mut registry,
        "dyno_state",
        "1 for the state the dyno is in (starting, up, crashed, stopping, down)",
    );
    let pid = gauge(
        &mut registry,
        "dyno_pid",
        "The dyno's process id while it runs",
    );
    let restarts = counter(
        &mut registry,
        "dyno_restarts",
        "Times the dyno's process was started again (crashes, restarts, R15)",
    );
    let crashes = counter(
        &mut registry,
        "dyno_crashes",
        "Exits nobody asked for (Heroku counts exit 0 too)",
    );
    let errors = counter(
        &mut registry,
        "dyno_errors",
        "Heroku's errors: R10 boot timeouts, R14 memory quota exceeded (as logged), R15 kills",
    );
    let cpu_seconds = Family::<Labels, Counter<f64>>::default();
    registry.register(
        "dyno_cpu_seconds",
        "CPU time of the dyno's running processes and the children they reaped",
        cpu_seconds.clone(),
    );
    let log_lines = counter(&mut registry, "log_lines", "Lines of output from the dyno");
    let log_bytes = counter(&mut registry, "log_bytes", "Bytes of output from the dyno");

    for d in &snapshot.view.dynos {
        let labels = dyno_labels(&d.name, d.kind(), d.slot.generation);
        if let Some(bytes) = d.memory {
            memory.get_or_create(&labels).set(saturate(bytes));
        }
        if let Some(bytes) = d.quota {
            quota.get_or_create(&labels).set(saturate(bytes));
        }
        let mut with_state = labels.clone();
        with_state.push(("state".to_owned(), d.state.as_str().to_owned()));
        state.get_or_create(&with_state).set(1);
        if let Some(p) = d.pid {
            pid.get_or_create(&labels).set(i64::from(p));
        }
        restarts.get_or_create(&labels).inc_by(d.restarts);
        crashes.get_or_create(&labels).inc_by(d.crashes);
        let e = d.errors;
        for (code, count) in [("R10", e.r10), ("R14", e.r14), ("R15", e.r15)] {
            let mut with_code = labels.clone();
            with_code.push(("code".to_owned(), code.to_owned()));
            errors.get_or_create(&with_code).inc_by(count);
        }
        if let Some((_, seconds)) = cpu.iter().find(|(group, _)| Some(*group) == d.pid) {
            cpu_seconds.get_or_create(&labels).inc_by(*seconds);
        }
    }
    for (name, lines, bytes) in &snapshot.output {
        let kind = name.rsplit_once('.').map_or(name.as_str(), |(k, _)| k);
        let labels = dyno_labels(name, kind, 0);
        log_lines.get_or_create(&labels).inc_by(*lines);
        log_bytes.get_or_create(&labels).inc_by(*bytes);
    }
    if let Some(r) = &snapshot.router {
        for (name, help, value) in [
            (
                "router_connections",
                "Connections the router accepted",
                r.connections,
            ),
            (
                "router_unserved_connections",
                "Connections closed because no web dyno came up within 30 s",
                r.unserved,
            ),
            (
                "router_failed_connects",
                "Connects to a web dyno that failed (the router tried another)",
                r.failed_connects,
            ),
        ] {
            let total = Counter::<u64>::default();
            total.inc_by(value);
            registry.register(name, help, total);
        }
        let bytes = counter(
            &mut registry,
            "router_bytes",
            "Bytes the router carried, from clients (in) and back (out), as connections end",
        );
        for (direction, value) in [("in", r.bytes_in), ("out", r.bytes_out)] {
            bytes
                .get_or_create(&vec![("direction".to_owned(), direction.to_owned())])
                .inc_by(value);
        }
        let dyno_connections = counter(
            &mut registry,
            "router_dyno_connections",
            "Connections the router made to the dyno",
        );
        let dyno_bytes = counter(
            &mut registry,
            "router_dyno_bytes",
            "Bytes the router carried to the dyno (in) and back (out), as connections end",
        );
        for (name, traffic) in &r.dynos {
            let kind = name.rsplit_once('.').map_or(name.as_str(), |(k, _)| k);
            let labels = dyno_labels(name, kind, 0);
            dyno_connections
                .get_or_create(&labels)
                .inc_by(traffic.connections);
            for (direction, value) in [("in", traffic.bytes_in), ("out", traffic.bytes_out)] {
                let mut with_direction = labels.clone();
                with_direction.push(("direction".to_owned(), direction.to_owned()));
                dyno_bytes.get_or_create(&with_direction).inc_by(value);
            }
        }
    }
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

fn saturate(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// Connections held at once (a scraper asks every 15 s or so); when all are taken, a
/// newcomer takes the place of the one waiting longest on its client (`http::serve`).
const AT_ONCE: usize = 8;

/// Serves `/metrics` on `bound` until the runtime ends, after logging its address.
pub async fn serve(bound: http::Bound, calls: mpsc::UnboundedSender<Call>, log: LogSender) {
    let name = bound.name.clone();
    let listeners = http::listen(bound, "the metrics endpoint");
    let Some(url) = http::url(name.as_deref(), &listeners) else {
        return;
    };
    log.event(
        &Arc::new(Label::system()),
        format!("metrics at {url}/metrics"),
    );
    let highest = Highest::default();
    let limits = http::Limits {
        connections: AT_ONCE,
        streams: 0,
    };
    http::serve(listeners, limits, move |stream, place| {
        let (calls, highest) = (calls.clone(), highest.clone());
        async move {
            // Reading, answering and writing, all within the time a client may take.
            let _ = tokio::time::timeout(ANSWER, answer(stream, place, calls, highest)).await;
        }
    })
    .await;
}

/// Each dyno group's highest CPU time seen: a process that leaves the group takes its
/// time with it, and a counter must not go down.
#[derive(Clone, Debug, Default)]
pub struct Highest(Arc<Mutex<HashMap<i32, f64>>>);

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn answer(
    mut stream: TcpStream,
    place: http::Place,
    calls: mpsc::UnboundedSender<Call>,
    highest: Highest,
) {
    let Some(request) = http::read_request(&mut stream, &place).await else {
        return;
    };
    let response = match request.path.as_str() {
        "/metrics" => match exposition(&calls, &highest).await {
            Some(text) => http::Response::new("200 OK", CONTENT_TYPE, text),
            None => return,
        },
        _ => http::Response::text("404 Not Found", "Not found: try /metrics\n"),
    };
    let _ = http::respond(&mut stream, &place, request.method, &response).await;
}

/// The exposition now: the driver's snapshot and CPU time from /proc; none once the
/// driver has gone.
pub async fn exposition(calls: &mpsc::UnboundedSender<Call>, highest: &Highest) -> Option<String> {
    let (reply, rx) = oneshot::channel();
    calls.send(Call::Metrics(reply)).ok()?;
    let snapshot = rx.await.ok()?;
    let groups: Vec<i32> = snapshot.view.dynos.iter().filter_map(|d| d.pid).collect();
    let measured = tokio::task::spawn_blocking(move || cpu_seconds(&groups))
        .await
        .unwrap_or_default();
    let cpu = {
        let mut highest = highest.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Groups of runs that are over go.
        highest.retain(|group, _| measured.iter().any(|(g, _)| g == group));
        measured
            .into_iter()
            .map(|(group, seconds)| {
                let top = highest.entry(group).or_insert(0.0);
                *top = top.max(seconds);
                (group, *top)
            })
            .collect::<Vec<_>>()
    };
    Some(render(&snapshot, &cpu))
}

/// CPU seconds of each dyno's group, from one read of /proc.
fn cpu_seconds(groups: &[i32]) -> Vec<(i32, f64)> {
    let snapshot = crate::os::proc::Snapshot::read();
    groups
        .iter()
        .map(|&pgid| {
            let used = snapshot.cpu_time(nix::unistd::Pid::from_raw(pgid));
            (pgid, used.as_secs_f64())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dyno::Slot;
    use crate::supervisor::core::Errors;
    use crate::supervisor::event::Shown;
    use crate::supervisor::view::{DynoView, View};

    #[test]
    fn every_family_has_help_and_type_and_the_figures_given() {
        let web = DynoView {
            slot: Slot::new("web", 1),
            name: "web.1".into(),
            state: Shown::Up,
            since: std::time::SystemTime::UNIX_EPOCH,
            age: Duration::ZERO,
            pid: Some(4242),
            port: Some(5000),
            memory: Some(23 << 20),
            quota: Some(512 << 20),
            last_exit: None,
            restarts: 2,
            crashes: 3,
            errors: Errors {
                r10: 0,
                r14: 4,
                r15: 1,
            },
        };
        // A preboot's new web.1 beside the old one: a series of its own.
        let new_web = DynoView {
            slot: Slot::new("web", 1).next_generation(),
            state: Shown::Starting,
            pid: Some(4343),
            restarts: 0,
            ..web.clone()
        };
        let snapshot = Snapshot {
            view: View {
                dynos: vec![web, new_web],
                ..View::default()
            },
            router: Some(RouterFigures {
                connections: 10,
                unserved: 1,
                failed_connects: 2,
                bytes_in: 100,
                bytes_out: 2000,
                dynos: vec![(
                    "web.1".into(),
                    crate::router::Traffic {
                        connections: 10,
                        bytes_in: 100,
                        bytes_out: 2000,
                    },
                )],
            }),
            output: vec![("web.1".into(), 7, 70)],
        };
        let text = render(&snapshot, &[(4242, 1.5)]);
        for line in [
            "# TYPE hkrun_dyno_memory_bytes gauge",
            "hkrun_dyno_memory_bytes{dyno=\"web.1\",type=\"web\"} 24117248",
            "hkrun_dyno_memory_quota_bytes{dyno=\"web.1\",type=\"web\"} 536870912",
            "hkrun_dyno_state{dyno=\"web.1\",type=\"web\",state=\"up\"} 1",
            "hkrun_dyno_pid{dyno=\"web.1\",type=\"web\"} 4242",
            "hkrun_dyno_pid{dyno=\"web.1\",type=\"web\",generation=\"2\"} 4343",
            "# TYPE hkrun_dyno_restarts counter",
            "hkrun_dyno_restarts_total{dyno=\"web.1\",type=\"web\"} 2",
            "hkrun_dyno_errors_total{dyno=\"web.1\",type=\"web\",code=\"R14\"} 4",
            "hkrun_dyno_cpu_seconds_total{dyno=\"web.1\",type=\"web\"} 1.5",
            "hkrun_log_lines_total{dyno=\"web.1\",type=\"web\"} 7",
            "hkrun_router_connections_total 10",
            "hkrun_router_bytes_total{direction=\"out\"} 2000",
            "hkrun_router_dyno_bytes_total{dyno=\"web.1\",type=\"web\",direction=\"in\"} 100",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        let families = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP")).count();
        assert_eq!(families, helps);
    }
}
