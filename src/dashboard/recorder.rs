//! The dashboard's last 15 minutes: each dyno's memory, the router's connection count,
//! and marks (R10, R14, R15, crashes, restarts) found by comparing the core's counters
//! from one snapshot to the next. Pure: the server feeds it snapshots and wall-clock
//! times.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

use crate::metrics::Snapshot;
use crate::supervisor::view::DynoView;

/// What the page charts, in seconds.
pub const WINDOW_SECS: u64 = 15 * 60;
const WINDOW_MS: u64 = WINDOW_SECS * 1000;

/// Something that happened to a dyno, at `t` (Unix milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mark {
    pub t: u64,
    pub dyno: String,
    /// `R10`, `R14`, `R15`, `crash` or `restart`.
    pub kind: &'static str,
}

/// The core's counters for one dyno, as the page shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub restarts: u64,
    pub crashes: u64,
    pub r10: u64,
    pub r14: u64,
    pub r15: u64,
}

impl Counts {
    pub fn of(dyno: &DynoView) -> Self {
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
pub struct Recorder {
    /// Per dyno name, `(t, resident bytes)`.
    memory: BTreeMap<String, VecDeque<(u64, u64)>>,
    marks: VecDeque<Mark>,
    /// `(t, connections the router accepted so far)`.
    connections: VecDeque<(u64, u64)>,
    /// Each running process's counters at the last snapshot, by name and generation.
    last: HashMap<(String, u32), Counts>,
}

/// What a page is sent first.
#[derive(Debug, Serialize)]
pub struct Hello<'a> {
    pub app: &'a str,
    pub window_secs: u64,
    pub now: u64,
    pub memory: BTreeMap<&'a str, &'a VecDeque<(u64, u64)>>,
    pub marks: &'a VecDeque<Mark>,
    pub connections: &'a VecDeque<(u64, u64)>,
    /// Sent again to a page that fell behind on ticks: its charts start again from it,
    /// its log stays.
    pub resync: bool,
}

impl Recorder {
    /// Takes the snapshot made at `t`; the marks it adds.
    pub fn observe(&mut self, t: u64, snapshot: &Snapshot) -> Vec<Mark> {
        let mut marks = Vec::new();
        let mut last = HashMap::with_capacity(snapshot.view.dynos.len());
        for d in &snapshot.view.dynos {
            let now = Counts::of(d);
            // A dyno seen for the first time starts from nothing: the dashboard starts
            // with hkrun, and a dyno scaled in or prebooted has no counts yet.
            let before = self
                .last
                .get(&(d.name.clone(), d.slot.generation))
                .copied()
                .unwrap_or_default();
            for (kind, was, is) in [
                ("R10", before.r10, now.r10),
                ("R14", before.r14, now.r14),
                ("R15", before.r15, now.r15),
                ("crash", before.crashes, now.crashes),
                ("restart", before.restarts, now.restarts),
            ] {
                // One mark a second at most per kind: enough to see, and bounded.
                if is > was {
                    marks.push(Mark {
                        t,
                        dyno: d.name.clone(),
                        kind,
                    });
                }
            }
            last.insert((d.name.clone(), d.slot.generation), now);
            if let Some(bytes) = d.memory {
                // Generations come in order: the newest process's figure stays.
                let series = self.memory.entry(d.name.clone()).or_default();
                if series.back().is_some_and(|(at, _)| *at == t) {
                    series.pop_back();
                }
                series.push_back((t, bytes));
            }
        }
        self.last = last;
        if let Some(router) = &snapshot.router {
            self.connections.push_back((t, router.connections));
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
    }

    /// The history, for a page that connects at `now`.
    pub fn hello<'a>(&'a self, app: &'a str, now: u64) -> Hello<'a> {
        Hello {
            app,
            window_secs: WINDOW_SECS,
            now,
            memory: self.memory.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            marks: &self.marks,
            connections: &self.connections,
            resync: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use std::time::{Duration, SystemTime};

    use crate::dyno::Slot;
    use crate::metrics::RouterFigures;
    use crate::supervisor::core::Errors;
    use crate::supervisor::event::Shown;
    use crate::supervisor::view::View;

    fn dyno(name: &str, memory: u64, r14: u64, crashes: u64) -> DynoView {
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
            restarts: crashes,
            crashes,
            errors: Errors {
                r14,
                ..Errors::default()
            },
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

    #[test]
    fn counters_that_grow_become_marks_once() {
        let mut r = Recorder::default();
        assert!(
            r.observe(1000, &snapshot(vec![dyno("hog.1", 10, 0, 0)], 0))
                .is_empty()
        );
        let marks = r.observe(2000, &snapshot(vec![dyno("hog.1", 90, 1, 0)], 3));
        assert_eq!(
            marks,
            vec![Mark {
                t: 2000,
                dyno: "hog.1".into(),
                kind: "R14"
            }]
        );
        assert!(
            r.observe(3000, &snapshot(vec![dyno("hog.1", 90, 1, 0)], 3))
                .is_empty()
        );
        let kinds: Vec<_> = r
            .observe(4000, &snapshot(vec![dyno("hog.1", 5, 1, 1)], 3))
            .into_iter()
            .map(|m| m.kind)
            .collect();
        assert_eq!(kinds, ["crash", "restart"]);
        let hello = r.hello("app", 4000);
        assert_eq!(hello.memory["hog.1"].len(), 4);
        assert_eq!(hello.marks.len(), 3);
        assert_eq!(hello.connections.back(), Some(&(4000, 3)));
    }

    #[test]
    fn a_dyno_scaled_away_and_back_starts_again_from_nothing() {
        let mut r = Recorder::default();
        r.observe(1000, &snapshot(vec![dyno("web.2", 1, 2, 0)], 0));
        r.observe(2000, &snapshot(vec![], 0));
        // Counters of a new process under the old name are its own.
        let marks = r.observe(3000, &snapshot(vec![dyno("web.2", 1, 1, 0)], 0));
        assert_eq!(marks.len(), 1);
    }

    #[test]
    fn only_the_last_fifteen_minutes_are_kept() {
        let mut r = Recorder::default();
        r.observe(0, &snapshot(vec![dyno("web.1", 1, 1, 0)], 1));
        r.observe(
            1000,
            &snapshot(vec![dyno("web.1", 1, 1, 0), dyno("old.1", 1, 0, 0)], 1),
        );
        let later = WINDOW_MS + 500;
        r.observe(later, &snapshot(vec![dyno("web.1", 2, 1, 0)], 2));
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
}
