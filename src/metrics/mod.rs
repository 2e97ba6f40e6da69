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

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::http;
use crate::logs::render::Label;
use crate::logs::writer::LogSender;
use crate::router::{SERVICE_BUCKETS, ServiceTimes};
use crate::supervisor::api::Call;

pub(crate) use crate::supervisor::api::{RouterFigures, Snapshot};

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

/// `dyno_labels` of a figure kept by name alone (`web.1`: its type is `web`), which a
/// preboot's two generations share.
fn named_labels(name: &str) -> Labels {
    let kind = name.rsplit_once('.').map_or(name, |(k, _)| k);
    dyno_labels(name, kind, 0)
}

/// The exposition of `snapshot`, with `cpu` (seconds, by process group: a running dyno's
/// pid leads its group) from /proc: each family with series, its HELP and TYPE first, its
/// series in the snapshot's order.
pub(crate) fn render(snapshot: &Snapshot, cpu: &[(i32, f64)]) -> String {
    let mut registry = Registry::with_prefix("hkrun");
    registry.register_collector(Box::new(Figures(families(snapshot, cpu))));
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

/// One family's series: its labels and value each.
#[derive(Debug)]
enum Series {
    Gauge(Vec<(Labels, i64)>),
    Counter(Vec<(Labels, u64)>),
    Seconds(Vec<(Labels, f64)>),
    Histogram(Vec<(Labels, ServiceTimes)>),
}

/// A dyno's service times as a histogram's sample.
struct Times(ServiceTimes);

impl EncodeMetric for Times {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        let bounds = SERVICE_BUCKETS.iter().copied().chain([f64::MAX]);
        let buckets: Vec<(f64, u64)> = bounds.zip(self.0.buckets).collect();
        encoder.encode_histogram::<NoLabelSet>(self.0.sum, self.0.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// One family: its name (less the `hkrun_` prefix), its help (a sentence, ended by a
/// full stop as `Registry::register` ends one), and its series.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    series: Series,
}

/// One scrape's families, written as const metrics: the figures are the snapshot's, so
/// nothing is kept between scrapes.
#[derive(Debug)]
struct Figures(Vec<Family>);

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        for family in &self.0 {
            match &family.series {
                Series::Gauge(series) => write_family(
                    &mut encoder,
                    family,
                    MetricType::Gauge,
                    series,
                    ConstGauge::new,
                )?,
                Series::Counter(series) => write_family(
                    &mut encoder,
                    family,
                    MetricType::Counter,
                    series,
                    ConstCounter::new,
                )?,
                Series::Histogram(series) => {
                    write_family(&mut encoder, family, MetricType::Histogram, series, Times)?
                }
                Series::Seconds(series) => write_family(
                    &mut encoder,
                    family,
                    MetricType::Counter,
                    series,
                    ConstCounter::new,
                )?,
            }
        }
        Ok(())
    }
}

/// `family`'s HELP and TYPE, then each series; one without labels is the family's lone
/// sample. A family without series is left out (no dyno has a pid, say).
fn write_family<V: Copy, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    family: &Family,
    metric_type: MetricType,
    series: &[(Labels, V)],
    metric: impl Fn(V) -> M,
) -> std::fmt::Result {
    if series.is_empty() {
        return Ok(());
    }
    let mut out = encoder.encode_descriptor(family.name, family.help, None, metric_type)?;
    match series {
        [(labels, value)] if labels.is_empty() => metric(*value).encode(out),
        _ => {
            for (labels, value) in series {
                metric(*value).encode(out.encode_family(labels)?)?;
            }
            Ok(())
        }
    }
}

/// The families of `snapshot`, in the order they are written.
fn families(snapshot: &Snapshot, cpu: &[(i32, f64)]) -> Vec<Family> {
    let family = |name, help, series| Family { name, help, series };
    let (mut memory, mut quota, mut state, mut pid) = (vec![], vec![], vec![], vec![]);
    let (mut restarts, mut crashes, mut errors, mut cpu_seconds) = (vec![], vec![], vec![], vec![]);
    for d in &snapshot.view.dynos {
        let labels = dyno_labels(&d.name, d.kind(), d.slot.generation);
        if let Some(bytes) = d.memory {
            memory.push((labels.clone(), saturate(bytes)));
        }
        if let Some(bytes) = d.quota {
            quota.push((labels.clone(), saturate(bytes)));
        }
        let mut with_state = labels.clone();
        with_state.push(("state".to_owned(), d.state.as_str().to_owned()));
        state.push((with_state, 1));
        if let Some(p) = d.pid {
            pid.push((labels.clone(), i64::from(p)));
        }
        restarts.push((labels.clone(), d.restarts));
        crashes.push((labels.clone(), d.crashes));
        let e = d.errors;
        for (code, count) in [("R10", e.r10), ("R14", e.r14), ("R15", e.r15)] {
            let mut with_code = labels.clone();
            with_code.push(("code".to_owned(), code.to_owned()));
            errors.push((with_code, count));
        }
        if let Some((_, seconds)) = cpu.iter().find(|(group, _)| Some(*group) == d.pid) {
            cpu_seconds.push((labels, *seconds));
        }
    }
    let (mut log_lines, mut log_bytes) = (vec![], vec![]);
    for (name, lines, bytes) in &snapshot.output {
        let labels = named_labels(name);
        log_lines.push((labels.clone(), *lines));
        log_bytes.push((labels, *bytes));
    }
    let mut families = vec![
        family(
            "dyno_memory_bytes",
            "Resident memory of the dyno's processes at the last sample.",
            Series::Gauge(memory),
        ),
        family(
            "dyno_memory_quota_bytes",
            "The dyno's memory quota.",
            Series::Gauge(quota),
        ),
        family(
            "dyno_state",
            "1 for the state the dyno is in (starting, up, crashed, stopping, down).",
            Series::Gauge(state),
        ),
        family(
            "dyno_pid",
            "The dyno's process id while it runs.",
            Series::Gauge(pid),
        ),
        family(
            "dyno_restarts",
            "Times the dyno's process was started again (crashes, restarts, R15).",
            Series::Counter(restarts),
        ),
        family(
            "dyno_crashes",
            "Exits nobody asked for (Heroku counts exit 0 too).",
            Series::Counter(crashes),
        ),
        family(
            "dyno_errors",
            "Heroku's errors: R10 boot timeouts, R14 memory quota exceeded (as logged), R15 kills.",
            Series::Counter(errors),
        ),
        family(
            "dyno_cpu_seconds",
            "CPU time of the dyno's running processes and the children they reaped.",
            Series::Seconds(cpu_seconds),
        ),
        family(
            "log_lines",
            "Lines of output from the dyno.",
            Series::Counter(log_lines),
        ),
        family(
            "log_bytes",
            "Bytes of output from the dyno.",
            Series::Counter(log_bytes),
        ),
    ];
    if let Some(r) = &snapshot.router {
        for (name, help, value) in [
            (
                "router_connections",
                "Connections the router accepted.",
                r.connections,
            ),
            (
                "router_unserved_connections",
                "Connections closed because no web dyno came up within 30 s.",
                r.unserved,
            ),
            (
                "router_failed_connects",
                "Connects to a web dyno that failed (the router tried another).",
                r.failed_connects,
            ),
        ] {
            families.push(family(name, help, Series::Counter(vec![(vec![], value)])));
        }
        let bytes = [("in", r.bytes_in), ("out", r.bytes_out)].map(|(direction, value)| {
            (vec![("direction".to_owned(), direction.to_owned())], value)
        });
        families.push(family(
            "router_bytes",
            "Bytes the router carried, from clients (in) and back (out), as connections end.",
            Series::Counter(bytes.to_vec()),
        ));
        let (mut dyno_connections, mut dyno_bytes) = (vec![], vec![]);
        for (name, traffic) in &r.dynos {
            let labels = named_labels(name);
            dyno_connections.push((labels.clone(), traffic.connections));
            for (direction, value) in [("in", traffic.bytes_in), ("out", traffic.bytes_out)] {
                let mut with_direction = labels.clone();
                with_direction.push(("direction".to_owned(), direction.to_owned()));
                dyno_bytes.push((with_direction, value));
            }
        }
        families.push(family(
            "router_dyno_connections",
            "Connections the router made to the dyno.",
            Series::Counter(dyno_connections),
        ));
        families.push(family(
            "router_dyno_bytes",
            "Bytes the router carried to the dyno (in) and back (out), as connections end.",
            Series::Counter(dyno_bytes),
        ));
        let requests = r
            .requests
            .iter()
            .map(|&(status, code, n)| {
                let mut labels = vec![("status".to_owned(), status.to_string())];
                if let Some(code) = code {
                    labels.push(("code".to_owned(), code.to_owned()));
                }
                (labels, n)
            })
            .collect();
        families.push(family(
            "router_requests",
            "Requests the HTTP router answered, by status and Heroku's H-code.",
            Series::Counter(requests),
        ));
        let service = r
            .service
            .iter()
            .map(|(name, times)| (named_labels(name), *times))
            .collect();
        families.push(family(
            "router_service_seconds",
            "How long the dyno took to serve each request through the HTTP router, from sending it to the response's end.",
            Series::Histogram(service),
        ));
    }
    families
}

fn saturate(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// Connections held at once (a scraper asks every 15 s or so); when all are taken, a
/// newcomer takes the place of the one waiting longest on its client (`http::serve`).
const AT_ONCE: usize = 8;

/// Serves `/metrics` on `bound` until the runtime ends, after logging its address.
pub(crate) async fn serve(bound: http::Bound, calls: mpsc::UnboundedSender<Call>, log: LogSender) {
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
pub(crate) struct Highest(Arc<Mutex<HashMap<i32, f64>>>);

/// The content type of the exposition.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
pub(crate) async fn exposition(
    calls: &mpsc::UnboundedSender<Call>,
    highest: &Highest,
) -> Option<String> {
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
                requests: vec![(200, None, 7), (503, Some("H12"), 1)],
                service: vec![("web.1".into(), {
                    let mut times = ServiceTimes::default();
                    times.observe(0.003);
                    times.observe(0.2);
                    times
                })],
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
            "hkrun_router_requests_total{status=\"200\"} 7",
            "hkrun_router_requests_total{status=\"503\",code=\"H12\"} 1",
            "# TYPE hkrun_router_service_seconds histogram",
            "hkrun_router_service_seconds_count{dyno=\"web.1\",type=\"web\"} 2",
            "hkrun_router_service_seconds_bucket{le=\"0.005\",dyno=\"web.1\",type=\"web\"} 1",
            "hkrun_router_service_seconds_bucket{le=\"0.25\",dyno=\"web.1\",type=\"web\"} 2",
            "hkrun_router_service_seconds_bucket{le=\"+Inf\",dyno=\"web.1\",type=\"web\"} 2",
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
