//! The app at one moment, as every reader shows it: `hkrun ps` (and `--json`), `hkrun
//! top`, `/metrics` and the dashboard all take this `View` of the core, made here and
//! nowhere else, so they never disagree on which dynos there are or what they say.
//!
//! Pure: the core, the instant and wall-clock time it is asked at, and the scheduler's
//! next runs in; no I/O. How each reader shows it is its own (`control::ps` for the wire
//! and the human form, `metrics`, `dashboard`).

use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};

use super::core::{Dyno, DynoState, Errors, Supervisor};
use super::event::Shown;
use crate::dyno::{POSTDEPLOY, RELEASE, Slot};
use crate::plan::formation::DynoSize;
use crate::plan::schedule::Frequency;

/// What the app looks like.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct View {
    /// The router's port, when it runs.
    pub router: Option<u16>,
    /// The types that have dynos shown, in Procfile order (the release phase first while
    /// it runs).
    pub types: Vec<TypeView>,
    /// Every dyno shown, by type as `types`, then by number; a preboot's new generation
    /// under the old one of the same name.
    pub dynos: Vec<DynoView>,
    /// hkrun.toml's `[[scheduler]]` jobs, in its order.
    pub scheduler: Vec<JobView>,
    /// Every process type of the Procfile, running or not: what `logs --ps` may name.
    pub procfile: Vec<String>,
}

/// A type with dynos.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TypeView {
    pub name: String,
    pub command: String,
    /// None for the release phase, which is no type of the Procfile.
    pub size: Option<DynoSize>,
    /// Dynos in the formation: ones leaving it (scaled down, stopped) are not counted.
    pub count: usize,
}

/// One dyno: one process under its name (a preboot runs two `web.1` for a while).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DynoView {
    pub slot: Slot,
    /// `web.1`: the slot's name, as every reader shows it.
    pub name: String,
    pub state: Shown,
    /// When `state` began, and how long ago that was (time paused by Ctrl-Z left out).
    pub since: SystemTime,
    pub age: Duration,
    /// Its process while it runs. Each run leads a process group of its own
    /// (`os::process`), so this is its group's id too: whose CPU time is the dyno's.
    pub pid: Option<i32>,
    pub port: Option<u16>,
    /// Resident memory of its processes at the last sample, in bytes.
    pub memory: Option<u64>,
    /// Its memory quota; none for the release phase, which is not watched.
    pub quota: Option<u64>,
    /// How its last process ended: its code, or 128 + the signal.
    pub last_exit: Option<i32>,
    /// Times its process was started again (crashes, restarts, R15).
    pub restarts: u64,
    /// Exits nobody asked for (Heroku counts exit 0 too).
    pub crashes: u64,
    /// R10, R14 (as logged) and R15.
    pub errors: Errors,
}

impl DynoView {
    pub(crate) fn kind(&self) -> &str {
        &self.slot.kind
    }
}

/// A `[[scheduler]]` job.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct JobView {
    pub command: String,
    pub frequency: Frequency,
    /// When it runs next, by the scheduler's clock; none if never.
    pub next_run: Option<DateTime<Utc>>,
    /// Its run still going (`scheduler.3`), if any.
    pub running: Option<Slot>,
}

/// The release phase's dynos (`release.1`, `postdeploy.1`).
fn is_release(dyno: &Dyno) -> bool {
    [RELEASE, POSTDEPLOY].contains(&dyno.slot().kind.as_str())
}

/// Whether readers see `dyno`: the release phase only while it runs; any other dyno,
/// a done one-off too, while the core has it.
fn shown(dyno: &Dyno) -> bool {
    !is_release(dyno) || dyno.state() != DynoState::Down
}

/// The view of `sup` at `now` (wall clock `wall`), with each `[[scheduler]]` job's next
/// run in `next_runs` (by the scheduler's clock, in the jobs' order).
pub(crate) fn view(
    sup: &Supervisor,
    now: Instant,
    wall: SystemTime,
    next_runs: &[Option<DateTime<Utc>>],
) -> View {
    let mut dynos: Vec<&Dyno> = sup.dynos().iter().filter(|d| shown(d)).collect();
    let order = |kind: &str| {
        sup.types()
            .iter()
            .position(|t| t.name == kind)
            .map_or(0, |i| i + 1)
    };
    // A preboot's new generation shows under the old one of the same name.
    dynos.sort_by_key(|d| {
        let slot = d.slot();
        (order(&slot.kind), slot.index, slot.generation)
    });
    let mut types: Vec<TypeView> = Vec::new();
    for dyno in &dynos {
        let kind = &dyno.slot().kind;
        let counted = usize::from(!dyno.leaving());
        match types.iter_mut().find(|t| &t.name == kind) {
            Some(t) => t.count += counted,
            None => types.push(TypeView {
                name: kind.clone(),
                command: dyno.plan().spec.command.clone(),
                size: sup.types().iter().find(|t| &t.name == kind).map(|t| t.size),
                count: counted,
            }),
        }
    }
    let clock = sup.clock(now);
    let dynos = dynos
        .into_iter()
        .map(|d| {
            let age = clock.saturating_duration_since(d.since());
            DynoView {
                slot: d.slot().clone(),
                name: d.slot().to_string(),
                state: d.state().shown(),
                since: wall.checked_sub(age).unwrap_or(wall),
                age,
                pid: d.pid(),
                port: d.plan().spec.port,
                memory: d.memory(),
                quota: (!is_release(d)).then_some(d.plan().quota),
                last_exit: d.last_exit().map(|e| e.code()),
                restarts: d.launches().saturating_sub(1),
                crashes: d.crashes(),
                errors: d.errors(),
            }
        })
        .collect();
    let scheduler = sup
        .scheduler()
        .enumerate()
        .map(|(i, (job, running))| JobView {
            command: job.command.clone(),
            frequency: job.frequency.clone(),
            next_run: next_runs.get(i).copied().flatten(),
            running: running.cloned(),
        })
        .collect();
    View {
        router: sup.router(),
        types,
        dynos,
        scheduler,
        procfile: sup.types().iter().map(|t| t.name.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::dyno::Exit;
    use crate::plan::formation::ScaleChange;
    use crate::plan::policy::{MemoryLimit, RestartPolicy};
    use crate::plan::schedule::Job;
    use crate::plan::{AppPlan, DynoSpec, ProcessType, Role, SpawnSpec, StopRule};
    use crate::supervisor::input::{Control, Input};

    const MB: u64 = 1024 * 1024;

    fn spec(kind: &str, index: u32, port: u16) -> DynoSpec {
        DynoSpec {
            spec: SpawnSpec {
                slot: Slot::new(kind, index),
                dyno: format!("{kind}.{index}"),
                command: format!("run-{kind}"),
                port: Some(port),
                env: Vec::new(),
                terminal: false,
            },
            role: Role::Other,
            restart: RestartPolicy::Always,
            memory: MemoryLimit::On,
            quota: 512 * MB,
            boot_timeout: None,
            stop: StopRule::default(),
        }
    }

    fn kind(name: &str, index: usize) -> ProcessType {
        ProcessType {
            name: name.to_owned(),
            command: format!("run-{name}"),
            index,
            role: Role::Other,
            size: DynoSize::default(),
            restart: RestartPolicy::Always,
            memory: MemoryLimit::On,
            boot_timeout: None,
            stop: StopRule::default(),
            env: Vec::new(),
            terminal: false,
            dyno_name: None,
            after: Vec::new(),
        }
    }

    /// `worker` twice and `clock` once, in that Procfile order (the dynos in another, which
    /// the view puts right); a release phase.
    fn plan() -> AppPlan {
        AppPlan {
            release: Some("migrate".to_owned()),
            postdeploy: None,
            scheduler: vec![Job {
                command: "report".to_owned(),
                frequency: Frequency::from_str("every 10 minutes").unwrap(),
            }],
            dynos: vec![
                spec("clock", 1, 5100),
                spec("worker", 2, 5001),
                spec("worker", 1, 5000),
            ],
            types: vec![kind("worker", 0), kind("clock", 1)],
            base_port: 5000,
            router: None,
            router_address: None,
            preboot: false,
            grace: Duration::from_secs(5),
            exit_on_crash: false,
            restart_cap: Duration::from_secs(300),
        }
    }

    fn names(view: &View) -> Vec<(&str, Shown)> {
        view.dynos
            .iter()
            .map(|d| (d.name.as_str(), d.state))
            .collect()
    }

    fn exited(sup: &mut Supervisor, at: Instant, name: &str, code: i32) {
        let slot = Slot::from_str(name).unwrap();
        let status = Exit::Code(code);
        sup.handle(at, Input::Exited { slot, status });
    }

    #[test]
    fn the_release_phase_shows_while_it_runs_without_a_quota_then_goes() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut sup = Supervisor::new(plan());
        sup.start(t0);
        let view = view(&sup, t0 + Duration::from_secs(3), wall, &[]);
        assert_eq!(names(&view), [("release.1", Shown::Starting)]);
        let release = &view.dynos[0];
        assert_eq!(release.quota, None);
        assert_eq!(release.age, Duration::from_secs(3));
        assert_eq!(release.since, wall - Duration::from_secs(3));
        assert_eq!(view.types.len(), 1);
        assert_eq!(view.types[0].name, "release");
        assert_eq!(view.types[0].size, None);
        assert_eq!(view.procfile, ["worker", "clock"]);

        exited(&mut sup, t0 + Duration::from_secs(4), "release.1", 0);
        let view = super::view(&sup, t0 + Duration::from_secs(4), wall, &[]);
        assert_eq!(
            names(&view),
            [
                ("worker.1", Shown::Up),
                ("worker.2", Shown::Up),
                ("clock.1", Shown::Up)
            ]
        );
        assert!(view.dynos.iter().all(|d| d.quota == Some(512 * MB)));
        let counts: Vec<_> = view.types.iter().map(|t| (&*t.name, t.count)).collect();
        assert_eq!(counts, [("worker", 2), ("clock", 1)]);
        assert_eq!(view.types[0].size, Some(DynoSize::default()));
    }

    #[test]
    fn a_dyno_leaving_the_formation_shows_but_is_not_counted() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(AppPlan {
            release: None,
            ..plan()
        });
        sup.start(t0);
        for (name, pid) in [("worker.1", 10), ("worker.2", 11), ("clock.1", 12)] {
            let slot = Slot::from_str(name).unwrap();
            sup.handle(t0, Input::Spawned { slot, pid });
        }
        let scale = Control::Scale(vec![ScaleChange::from_str("worker=1").unwrap()]);
        sup.handle(
            t0,
            Input::Control {
                id: 1,
                request: scale,
            },
        );
        let view = view(&sup, t0, SystemTime::now(), &[]);
        assert_eq!(
            names(&view),
            [
                ("worker.1", Shown::Up),
                ("worker.2", Shown::Stopping),
                ("clock.1", Shown::Up)
            ]
        );
        assert_eq!(view.types[0].count, 1);
        assert_eq!(view.dynos[1].pid, Some(11));
    }

    #[test]
    fn restarts_and_crashes_are_the_cores_counts() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(AppPlan {
            release: None,
            ..plan()
        });
        sup.start(t0);
        let at = t0 + Duration::from_secs(1);
        exited(&mut sup, at, "clock.1", 3);
        let clock = |sup: &Supervisor| {
            let view = view(sup, at, SystemTime::now(), &[]);
            view.dynos
                .into_iter()
                .find(|d| d.name == "clock.1")
                .unwrap()
        };
        let crashed = clock(&sup);
        assert_eq!((crashed.state, crashed.crashes), (Shown::Crashed, 1));
        assert_eq!((crashed.last_exit, crashed.pid), (Some(3), None));
        assert_eq!(crashed.restarts, 0);
        // Restarted once nothing of its run is left (the first crash has no back-off).
        let slot = Slot::new("clock", 1);
        sup.handle(at, Input::GroupLeft { slot, count: 0 });
        let restarted = clock(&sup);
        assert_eq!((restarted.state, restarted.restarts), (Shown::Up, 1));
        let view = view(&sup, at, SystemTime::now(), &[]);
        let worker = &view.dynos[0];
        assert_eq!((worker.crashes, worker.restarts), (0, 0));
    }

    #[test]
    fn each_job_has_its_next_run() {
        let t0 = Instant::now();
        let sup = Supervisor::new(plan());
        let next = "2026-01-02T03:04:05Z".parse::<DateTime<Utc>>().unwrap();
        let view = view(&sup, t0, SystemTime::now(), &[Some(next)]);
        assert_eq!(view.scheduler.len(), 1);
        assert_eq!(view.scheduler[0].command, "report");
        assert_eq!(view.scheduler[0].next_run, Some(next));
        assert_eq!(view.scheduler[0].running, None);
        // No next run known: none shown.
        let view = super::view(&sup, t0, SystemTime::now(), &[]);
        assert_eq!(view.scheduler[0].next_run, None);
    }
}
