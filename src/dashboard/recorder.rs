//! The dashboard's last 15 minutes: each dyno's memory, the router's connection and
//! request counts and each second's p50 and p99 service time, and marks (R10, R14, R15,
//! crashes, restarts) from the core's events as it says them, and the router's H-codes
//! (under `router`) as its counts rise.
//! Pure: the server feeds it events, snapshots and wall-clock times.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::dyno::Slot;
use crate::metrics::Snapshot;
use crate::router::{SERVICE_BUCKETS, ServiceTimes};
use crate::supervisor::event::{Event, Shown};
use crate::supervisor::view::DynoView;

/// What the page charts, in seconds.
pub(super) const WINDOW_SECS: u64 = 15 * 60;
const WINDOW_MS: u64 = WINDOW_SECS * 1000;

/// Something that happened to a dyno, at `t` (Unix milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(super) struct Mark {
    pub t: u64,
    pub dyno: String,
    /// `R10`, `R14`, `R15`, `crash` or `restart`; under `router`, an H-code.
    pub kind: &'static str,
}

/// The core's counters for one dyno, as the page shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(super) struct Counts {
    pub restarts: u64,
    pub crashes: u64,
    pub r10: u64,
    pub r14: u64,
    pub r15: u64,
}

impl Counts {
    pub(super) fn of(dyno: &DynoView) -> Self {
        Self {
            restarts: dyno.restarts,
            crashes: dyno.crashes,
            r10: dyno.errors.r10,
            r14: dyno.errors.r14,
            r15: dyno.errors.r15,
        }
    }
}

/// The history the page starts from.
#[derive(Debug, Default)]
pub(super) struct Recorder {
    /// Per dyno name, `(t, resident bytes)`.
    memory: BTreeMap<String, VecDeque<(u64, u64)>>,
    marks: VecDeque<Mark>,
    /// `(t, connections the router accepted so far)`.
    connections: VecDeque<(u64, u64)>,
    /// `(t, requests the router answered so far)`.
    requests: VecDeque<(u64, u64)>,
    /// `(t, p50 ms, p99 ms)` of the service times of the requests served since the tick
    /// before.
    latency: VecDeque<(u64, f64, f64)>,
    /// The service times (every dyno's together) and H-code counts at the last tick.
    last_service: Option<ServiceTimes>,
    last_codes: BTreeMap<&'static str, u64>,
    /// Marks heard since the last snapshot: each goes out with the next tick.
    heard: Vec<(String, &'static str)>,
    /// Restarts a crash loop's line announced, due at `t` (its back-off ended).
    due: Vec<Mark>,
}

/// What a page is sent first.
#[derive(Debug, Serialize)]
pub(super) struct Hello<'a> {
    pub app: &'a str,
    pub window_secs: u64,
    pub now: u64,
    pub memory: BTreeMap<&'a str, &'a VecDeque<(u64, u64)>>,
    pub marks: &'a VecDeque<Mark>,
    pub connections: &'a VecDeque<(u64, u64)>,
    pub requests: &'a VecDeque<(u64, u64)>,
    pub latency: &'a VecDeque<(u64, f64, f64)>,
    /// Sent again to a page that fell behind on ticks: its charts start again from it,
    /// its log stays.
    pub resync: bool,
}

/// The marks `event` makes, and when a later one is due (`Some(delay)`): R10, R14, R15
/// as logged; a crash for every exit nobody asked for (Heroku counts exit 0 too: a dyno
/// that is not restarted goes from up to down); a restart for every process started
/// again under the same name (`hkrun restart`, a crashed dyno starting again, and the
/// restart a crash loop's line announces, once its back-off has passed). The counts are
/// the core's (`Counts`): these say when.
fn marks(event: &Event) -> Option<(&Slot, &'static [&'static str], Option<std::time::Duration>)> {
    Some(match event {
        Event::BootTimeout { slot, .. } => (slot, &["R10"], None),
        Event::MemoryQuotaExceeded { slot } => (slot, &["R14"], None),
        Event::MemoryQuotaVastlyExceeded { slot } => (slot, &["R15"], None),
        Event::StateChanged {
            slot,
            to: Shown::Crashed,
            ..
        }
        | Event::StateChanged {
            slot,
            from: Shown::Starting | Shown::Up,
            to: Shown::Down,
        }
        | Event::CrashStopsApp { slot, .. } => (slot, &["crash"], None),
        Event::CrashLooping { slot, delay, .. } => (slot, &["crash"], Some(*delay)),
        // `hkrun restart` of a crashed dyno says both: one restart, one mark a tick.
        Event::Restarting { slot }
        | Event::StateChanged {
            slot,
            from: Shown::Crashed,
            to: Shown::Starting,
        } => (slot, &["restart"], None),
        _ => return None,
    })
}

impl Recorder {
    /// Takes an event the core said at `t`.
    pub(super) fn heard(&mut self, t: u64, event: &Event) {
        let Some((slot, kinds, later)) = marks(event) else {
            return;
        };
        let dyno = slot.to_string();
        for kind in kinds {
            self.heard.push((dyno.clone(), kind));
        }
        if let Some(delay) = later {
            let delay = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            self.due.push(Mark {
                t: t.saturating_add(delay),
                dyno,
                kind: "restart",
            });
        }
    }

    /// Takes the snapshot made at `t`; the marks it adds: those heard since the last,
    /// and the restarts due by now, each kind once per dyno (one a second at most:
    /// enough to see, and bounded).
    pub(super) fn observe(&mut self, t: u64, snapshot: &Snapshot) -> Vec<Mark> {
        let (due, later) = std::mem::take(&mut self.due)
            .into_iter()
            .partition(|m| m.t <= t);
        self.due = later;
        let due: Vec<Mark> = due;
        let mut marks: Vec<Mark> = Vec::new();
        let heard = std::mem::take(&mut self.heard);
        let all = heard
            .into_iter()
            .chain(due.into_iter().map(|m| (m.dyno, m.kind)));
        for (dyno, kind) in all {
            if !marks.iter().any(|m| m.dyno == dyno && m.kind == kind) {
                marks.push(Mark { t, dyno, kind });
            }
        }
        for d in &snapshot.view.dynos {
            if let Some(bytes) = d.memory {
                // Generations come in order: the newest process's figure stays.
                let series = self.memory.entry(d.name.clone()).or_default();
                if series.back().is_some_and(|(at, _)| *at == t) {
                    series.pop_back();
                }
                series.push_back((t, bytes));
            }
        }
        if let Some(router) = &snapshot.router {
            self.connections.push_back((t, router.connections));
            self.requests
                .push_back((t, router.requests.iter().map(|r| r.2).sum()));
            let mut codes: BTreeMap<&'static str, u64> = BTreeMap::new();
            for &(_, code, n) in &router.requests {
                if let Some(code) = code {
                    *codes.entry(code).or_default() += n;
                }
            }
            for (&code, &n) in &codes {
                if n > self.last_codes.get(code).copied().unwrap_or(0) {
                    marks.push(Mark {
                        t,
                        dyno: "router".to_owned(),
                        kind: code,
                    });
                }
            }
            self.last_codes = codes;
            let mut all = ServiceTimes::default();
            for (_, times) in &router.service {
                all.sum += times.sum;
                all.count += times.count;
                for (total, n) in all.buckets.iter_mut().zip(times.buckets) {
                    *total += n;
                }
            }
            let last = self.last_service.replace(all).unwrap_or_default();
            if let Some(quantiles) = since(&last, &all) {
                self.latency.push_back((t, quantiles.0, quantiles.1));
            }
        }
        self.marks.extend(marks.iter().cloned());
        self.forget_before(t.saturating_sub(WINDOW_MS));
        marks
    }

    fn forget_before(&mut self, oldest: u64) {
        for series in self.memory.values_mut() {
            while series.front().is_some_and(|(t, _)| *t < oldest) {
                series.pop_front();
            }
        }
        self.memory.retain(|_, series| !series.is_empty());
        while self.marks.front().is_some_and(|m| m.t < oldest) {
            self.marks.pop_front();
        }
        while self.connections.front().is_some_and(|(t, _)| *t < oldest) {
            self.connections.pop_front();
        }
        while self.requests.front().is_some_and(|(t, _)| *t < oldest) {
            self.requests.pop_front();
        }
        while self.latency.front().is_some_and(|(t, _, _)| *t < oldest) {
            self.latency.pop_front();
        }
    }

    /// The p50 and p99 (ms) of the second that ended at `t`, when it served any.
    pub(super) fn latency_at(&self, t: u64) -> Option<(f64, f64)> {
        self.latency
            .back()
            .filter(|(at, _, _)| *at == t)
            .map(|&(_, p50, p99)| (p50, p99))
    }

    /// The history, for a page that connects at `now`.
    pub(super) fn hello<'a>(&'a self, app: &'a str, now: u64) -> Hello<'a> {
        Hello {
            app,
            window_secs: WINDOW_SECS,
            now,
            memory: self.memory.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            marks: &self.marks,
            connections: &self.connections,
            requests: &self.requests,
            latency: &self.latency,
            resync: false,
        }
    }
}

/// The p50 and p99, in milliseconds, of the requests served between `before` and `now`
/// (cumulative histograms); none when none was. Within a bucket, linear from its lower
/// bound to its upper; past the last bound, the last bound.
fn since(before: &ServiceTimes, now: &ServiceTimes) -> Option<(f64, f64)> {
    let counts: Vec<u64> = now
        .buckets
        .iter()
        .zip(before.buckets)
        .map(|(n, b)| n.saturating_sub(b))
        .collect();
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let quantile = |q: f64| {
        let rank = q * total as f64;
        let mut below = 0u64;
        for (i, &n) in counts.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let lower = if i == 0 { 0.0 } else { SERVICE_BUCKETS[i - 1] };
                let Some(&upper) = SERVICE_BUCKETS.get(i) else {
                    return lower * 1000.0;
                };
                let within = (rank - below as f64) / n as f64;
                return (lower + (upper - lower) * within) * 1000.0;
            }
            below += n;
        }
        SERVICE_BUCKETS[SERVICE_BUCKETS.len() - 1] * 1000.0
    };
    Some((quantile(0.5), quantile(0.99)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use std::time::{Duration, SystemTime};

    use crate::dyno::Slot;
    use crate::metrics::RouterFigures;
    use crate::supervisor::core::Errors;
    use crate::supervisor::view::View;

    fn dyno(name: &str, memory: u64) -> DynoView {
        DynoView {
            slot: Slot::from_str(name).unwrap(),
            name: name.into(),
            state: Shown::Up,
            since: SystemTime::UNIX_EPOCH,
            age: Duration::ZERO,
            pid: None,
            port: None,
            memory: Some(memory),
            quota: None,
            last_exit: None,
            restarts: 0,
            crashes: 0,
            errors: Errors::default(),
        }
    }

    fn snapshot(dynos: Vec<DynoView>, connections: u64) -> Snapshot {
        Snapshot {
            view: View {
                dynos,
                ..View::default()
            },
            router: Some(RouterFigures {
                connections,
                ..RouterFigures::default()
            }),
            output: Vec::new(),
        }
    }

    /// A snapshot with the router's requests: `served` with these service times, and
    /// `h12` answered H12.
    fn requests(served: &[f64], h12: u64) -> Snapshot {
        let mut times = ServiceTimes::default();
        for &seconds in served {
            times.observe(seconds);
        }
        Snapshot {
            router: Some(RouterFigures {
                requests: vec![(200, None, served.len() as u64), (503, Some("H12"), h12)],
                service: vec![("web.1".into(), times)],
                ..RouterFigures::default()
            }),
            ..Snapshot::default()
        }
    }

    #[test]
    fn each_second_has_its_requests_p50_and_p99_and_a_rising_h_code_marks_the_router() {
        let mut r = Recorder::default();
        // 100 requests: 98 within 5 ms, two of 2 s.
        let mut served = vec![0.004; 98];
        served.extend([2.0, 2.0]);
        assert!(r.observe(1000, &requests(&served, 0)).is_empty());
        let (_, p50, p99) = r.latency[0];
        assert!(p50 > 0.0 && p50 <= 5.0, "{p50}");
        assert!(p99 > 1000.0 && p99 <= 2500.0, "{p99}");
        // The next second: one more H12, nothing served.
        let marks = r.observe(2000, &requests(&served, 1));
        assert_eq!(
            marks,
            [Mark {
                t: 2000,
                dyno: "router".into(),
                kind: "H12"
            }]
        );
        assert_eq!(
            r.latency.len(),
            1,
            "no point for a second with nothing served"
        );
        assert_eq!(r.requests, [(1000, 100), (2000, 101)]);
        // No new H12: no mark.
        assert!(r.observe(3000, &requests(&served, 1)).is_empty());
    }

    fn slot(name: &str) -> Slot {
        Slot::from_str(name).unwrap()
    }

    fn changed(name: &str, from: Shown, to: Shown) -> Event {
        let slot = slot(name);
        Event::StateChanged { slot, from, to }
    }

    /// `(dyno, kind)` of each mark.
    fn kinds(marks: &[Mark]) -> Vec<(&str, &str)> {
        marks.iter().map(|m| (m.dyno.as_str(), m.kind)).collect()
    }

    #[test]
    fn events_become_marks_at_the_next_tick_once() {
        let mut r = Recorder::default();
        let hog = || snapshot(vec![dyno("hog.1", 10)], 3);
        assert!(r.observe(1000, &hog()).is_empty());
        r.heard(
            1500,
            &Event::MemoryQuotaExceeded {
                slot: slot("hog.1"),
            },
        );
        let marks = r.observe(2000, &hog());
        assert_eq!(
            marks,
            vec![Mark {
                t: 2000,
                dyno: "hog.1".into(),
                kind: "R14"
            }]
        );
        assert!(r.observe(3000, &hog()).is_empty());
        // A crash restarted at once: its state changes, one after the other.
        r.heard(3500, &changed("hog.1", Shown::Up, Shown::Crashed));
        r.heard(3500, &changed("hog.1", Shown::Crashed, Shown::Starting));
        let marks = r.observe(4000, &hog());
        assert_eq!(kinds(&marks), [("hog.1", "crash"), ("hog.1", "restart")]);
        let hello = r.hello("app", 4000);
        assert_eq!(hello.memory["hog.1"].len(), 4);
        assert_eq!(hello.marks.len(), 3);
        assert_eq!(hello.connections.back(), Some(&(4000, 3)));
    }

    #[test]
    fn each_error_and_exit_nobody_asked_for_is_marked_and_nothing_else() {
        let mut r = Recorder::default();
        let timeout = Duration::from_secs(60);
        let events = [
            Event::BootTimeout {
                slot: slot("web.1"),
                timeout,
            },
            Event::MemoryQuotaVastlyExceeded {
                slot: slot("web.2"),
            },
            // Exit 0 under a policy that does not restart it: Heroku's crash too.
            changed("once.1", Shown::Up, Shown::Down),
            Event::CrashStopsApp {
                slot: slot("fail.1"),
                code: 1,
            },
            Event::Restarting {
                slot: slot("work.1"),
            },
            // What a stop, a start and a preboot say are no marks.
            changed("work.2", Shown::Up, Shown::Stopping),
            changed("web.3", Shown::Starting, Shown::Up),
            Event::Exited {
                slot: slot("work.2"),
                code: 0,
            },
            Event::Launching {
                slot: slot("web.1"),
                command: "web".into(),
            },
            Event::PrebootStarting {
                old: vec![slot("web.1")],
            },
        ];
        for event in &events {
            r.heard(500, event);
        }
        assert_eq!(
            kinds(&r.observe(1000, &snapshot(Vec::new(), 0))),
            [
                ("web.1", "R10"),
                ("web.2", "R15"),
                ("once.1", "crash"),
                ("fail.1", "crash"),
                ("work.1", "restart"),
            ]
        );
    }

    #[test]
    fn one_mark_of_a_kind_a_second_per_dyno() {
        let mut r = Recorder::default();
        // `hkrun restart` of a crashed dyno says both, for its one restart.
        r.heard(
            100,
            &Event::Restarting {
                slot: slot("work.1"),
            },
        );
        r.heard(100, &changed("work.1", Shown::Crashed, Shown::Starting));
        r.heard(
            200,
            &Event::MemoryQuotaExceeded {
                slot: slot("hog.1"),
            },
        );
        r.heard(
            900,
            &Event::MemoryQuotaExceeded {
                slot: slot("hog.1"),
            },
        );
        r.heard(
            900,
            &Event::MemoryQuotaExceeded {
                slot: slot("hog.2"),
            },
        );
        assert_eq!(
            kinds(&r.observe(1000, &snapshot(Vec::new(), 0))),
            [("work.1", "restart"), ("hog.1", "R14"), ("hog.2", "R14")]
        );
    }

    #[test]
    fn a_crash_loops_restart_is_marked_when_its_back_off_ends() {
        let mut r = Recorder::default();
        let looping = Event::CrashLooping {
            slot: slot("work.1"),
            code: 1,
            delay: Duration::from_secs(4),
            crashes: 3,
        };
        r.heard(1000, &looping);
        let none = || snapshot(Vec::new(), 0);
        assert_eq!(kinds(&r.observe(1500, &none())), [("work.1", "crash")]);
        assert!(r.observe(4500, &none()).is_empty());
        let marks = r.observe(5500, &none());
        assert_eq!(kinds(&marks), [("work.1", "restart")]);
        assert_eq!(marks[0].t, 5500);
        assert!(r.observe(6500, &none()).is_empty());
    }

    #[test]
    fn only_the_last_fifteen_minutes_are_kept() {
        let mut r = Recorder::default();
        r.heard(
            0,
            &Event::MemoryQuotaExceeded {
                slot: slot("web.1"),
            },
        );
        r.observe(0, &snapshot(vec![dyno("web.1", 1)], 1));
        r.observe(1000, &snapshot(vec![dyno("web.1", 1), dyno("old.1", 1)], 1));
        let later = WINDOW_MS + 500;
        r.observe(later, &snapshot(vec![dyno("web.1", 2)], 2));
        let hello = r.hello("app", later);
        assert_eq!(
            hello.marks.len(),
            0,
            "the mark at 0 is older than the window"
        );
        assert_eq!(
            hello.memory.keys().copied().collect::<Vec<_>>(),
            ["old.1", "web.1"]
        );
        assert_eq!(hello.memory["web.1"].len(), 2);
        assert_eq!(hello.connections.len(), 2);
    }

    /// An app of three dynos: `web.1` (60 s to boot), `work.1` (always restarted), `once.1`
    /// (never restarted).
    fn plan() -> crate::plan::AppPlan {
        use crate::plan::formation::DynoSize;
        use crate::plan::policy::{MemoryLimit, RestartPolicy};
        use crate::plan::{AppPlan, DynoSpec, ProcessType, Role, SpawnSpec, StopRule};
        let boot = |kind: &str| (kind == "web").then_some(Duration::from_secs(60));
        let role = |kind: &str| match kind {
            "web" => Role::Web {
                behind_router: false,
            },
            _ => Role::Other,
        };
        let restart = |kind: &str| match kind {
            "once" => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        };
        let kinds = ["web", "work", "once"];
        AppPlan {
            release: None,
            postdeploy: None,
            scheduler: Vec::new(),
            dynos: (0u16..)
                .zip(kinds)
                .map(|(i, kind)| DynoSpec {
                    spec: SpawnSpec {
                        slot: Slot::new(kind, 1),
                        dyno: format!("{kind}.1"),
                        command: kind.into(),
                        port: Some(5000 + 100 * i),
                        env: Vec::new(),
                        terminal: false,
                    },
                    role: role(kind),
                    restart: restart(kind),
                    memory: MemoryLimit::On,
                    quota: QUOTA,
                    boot_timeout: boot(kind),
                    stop: StopRule::default(),
                })
                .collect(),
            types: (0..)
                .zip(kinds)
                .map(|(index, kind)| ProcessType {
                    name: kind.into(),
                    command: kind.into(),
                    index,
                    role: role(kind),
                    size: DynoSize::default(),
                    restart: restart(kind),
                    memory: MemoryLimit::On,
                    boot_timeout: boot(kind),
                    stop: StopRule::default(),
                    env: Vec::new(),
                    terminal: false,
                    dyno_name: None,
                    after: Vec::new(),
                })
                .collect(),
            base_port: 5000,
            router: None,
            router_address: None,
            preboot: false,
            grace: Duration::from_secs(5),
            exit_on_crash: false,
            restart_cap: Duration::from_secs(300),
        }
    }

    const QUOTA: u64 = 64 << 20;

    /// The marks are the core's counts as they grow: for each dyno, as many of each kind
    /// as its counts in the view (restarts, crashes, R10, R14, R15), whatever the path.
    #[test]
    fn the_marks_count_what_the_core_counts() {
        use crate::dyno::Exit;
        use crate::supervisor::core::Supervisor;
        use crate::supervisor::input::{Control, Effect, Input, Target};
        use crate::supervisor::view;

        let t0 = std::time::Instant::now();
        let mut sup = Supervisor::new(plan());
        let mut events: Vec<Event> = Vec::new();
        let mut keep = |effects: Vec<Effect>| {
            events.extend(effects.into_iter().filter_map(|e| match e {
                Effect::Event(event) => Some(event),
                _ => None,
            }));
        };
        keep(sup.start(t0));
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let mut pid = 100;
        let mut spawned = |sup: &mut Supervisor, secs: u64, name: &str| {
            pid += 1;
            sup.handle(
                at(secs),
                Input::Spawned {
                    slot: slot(name),
                    pid,
                },
            )
        };
        // An exit, and nothing of its run left.
        let exited = |sup: &mut Supervisor, secs: u64, name: &str, code: i32| {
            let status = Exit::Code(code);
            let mut effects = sup.handle(
                at(secs),
                Input::Exited {
                    slot: slot(name),
                    status,
                },
            );
            let left = Input::GroupLeft {
                slot: slot(name),
                count: 0,
            };
            effects.extend(sup.handle(at(secs), left));
            effects
        };
        let memory = |sup: &mut Supervisor, secs: u64, name: &str, rss: u64| {
            sup.handle(at(secs), Input::Memory(vec![(slot(name), rss)]))
        };
        for name in ["web.1", "work.1", "once.1"] {
            keep(spawned(&mut sup, 0, name));
        }
        // R14, then a crash restarted at once.
        keep(memory(&mut sup, 1, "work.1", QUOTA + 1));
        keep(exited(&mut sup, 2, "work.1", 1));
        keep(spawned(&mut sup, 2, "work.1"));
        // A crash loop: its line, and its restart a second later, said by nothing.
        keep(exited(&mut sup, 3, "work.1", 1));
        keep(sup.handle(at(5), Input::Tick));
        keep(spawned(&mut sup, 5, "work.1"));
        // `hkrun restart work.1`.
        let restart = Control::Restart(vec![Target::Dyno(slot("work.1"))]);
        keep(sup.handle(
            at(6),
            Input::Control {
                id: 1,
                request: restart,
            },
        ));
        keep(exited(&mut sup, 6, "work.1", 143));
        keep(spawned(&mut sup, 6, "work.1"));
        // R15: killed, a crash, restarted.
        keep(memory(&mut sup, 7, "work.1", 3 * QUOTA));
        keep(exited(&mut sup, 7, "work.1", 137));
        keep(spawned(&mut sup, 7, "work.1"));
        // Exit 0, not restarted: Heroku's crash too.
        keep(exited(&mut sup, 8, "once.1", 0));
        // R10: web.1 never listened.
        keep(sup.handle(at(61), Input::Tick));
        keep(exited(&mut sup, 61, "web.1", 137));
        keep(spawned(&mut sup, 61, "web.1"));

        let mut heard: BTreeMap<(String, &str), u64> = BTreeMap::new();
        for event in &events {
            if let Some((slot, kinds, later)) = marks(event) {
                let later = later.map(|_| "restart");
                for kind in kinds.iter().copied().chain(later) {
                    *heard.entry((slot.to_string(), kind)).or_default() += 1;
                }
            }
        }
        let view = view::view(&sup, at(61), SystemTime::now(), &[]);
        let mut counted: BTreeMap<(String, &str), u64> = BTreeMap::new();
        for d in &view.dynos {
            let c = Counts::of(d);
            for (kind, n) in [
                ("restart", c.restarts),
                ("crash", c.crashes),
                ("R10", c.r10),
                ("R14", c.r14),
                ("R15", c.r15),
            ] {
                if n > 0 {
                    counted.insert((d.name.clone(), kind), n);
                }
            }
        }
        assert_eq!(heard, counted, "{events:#?}");
        // Every kind and every path was taken.
        let work = |kind| counted.get(&("work.1".to_owned(), kind)).copied();
        assert_eq!(work("restart"), Some(4));
        assert_eq!(work("crash"), Some(3));
        for (dyno, kind) in [("work.1", "R14"), ("work.1", "R15"), ("web.1", "R10")] {
            assert_eq!(
                counted.get(&(dyno.to_owned(), kind)),
                Some(&1),
                "{dyno} {kind}"
            );
        }
        assert_eq!(counted.get(&("once.1".to_owned(), "crash")), Some(&1));
    }
}
