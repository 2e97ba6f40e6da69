//! What runs: the app's process types, each dyno's spec, and the settings the core runs
//! them by. `config` builds an `AppPlan` from what the user gave; the core runs it.
//!
//! Pure data and arithmetic: the formation's syntax (`formation`), restart and memory
//! policies (`policy`), and the port layout (`ports`).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::dyno::Slot;

/// An environment handed to children: sorted, so it prints the same every time.
pub type Vars = BTreeMap<String, String>;

pub mod formation;
pub mod policy;
pub mod ports;
pub mod schedule;
pub mod values;

use formation::DynoSize;
use policy::{MemoryLimit, RestartPolicy};
use ports::PortError;

/// What a process type is to hkrun beyond a command to run. Only a web type gets HTTP
/// traffic: hkrun waits for it to listen on its PORT (R10), and behind the router
/// restarts it preboot-style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The `web` type. `behind_router`: the router has the first port of its block and
    /// sends it traffic.
    Web { behind_router: bool },
    /// Any other type.
    Other,
}

impl Role {
    pub fn is_web(self) -> bool {
        matches!(self, Self::Web { .. })
    }

    pub fn behind_router(self) -> bool {
        matches!(
            self,
            Self::Web {
                behind_router: true
            }
        )
    }
}

/// What to run for a dyno.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpawnSpec {
    pub slot: Slot,
    pub command: String,
    /// `PORT`, absent for the release phase.
    pub port: Option<u16>,
    /// Its type's own variables (hkrun.toml's `[types.NAME] env`), over the app's.
    pub env: Vec<(String, String)>,
    /// `--tty`: it runs on a pseudo-terminal of its own instead of a pipe.
    pub terminal: bool,
    /// `DYNO` (and `PS`) in its environment: its own name, or `--dyno`'s for a dyno of
    /// the formation (`ProcessType::dyno_name`).
    pub dyno: String,
}

/// How a type's dynos are stopped, where hkrun.toml's `[types.NAME]` says otherwise
/// than the app: `stop-signal` and `grace`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StopRule {
    /// Sent instead of SIGTERM (or, on Ctrl-C, instead of SIGINT).
    pub signal: Option<Signal>,
    /// Instead of the app's `--timeout`, between that signal and SIGKILL.
    pub grace: Option<Duration>,
}

impl StopRule {
    /// The signal a stop sends, where the app would send `app`.
    pub fn signal_or(self, app: Signal) -> Signal {
        self.signal.unwrap_or(app)
    }

    /// The grace, where the app's is `app`.
    pub fn grace_or(self, app: Duration) -> Duration {
        self.grace.unwrap_or(app)
    }
}

/// One dyno as the core runs and watches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynoSpec {
    pub spec: SpawnSpec,
    pub role: Role,
    pub restart: RestartPolicy,
    pub memory: MemoryLimit,
    /// The memory quota in bytes.
    pub quota: u64,
    /// For web dynos: how long it may take to listen on its PORT (R10).
    pub boot_timeout: Option<Duration>,
    pub stop: StopRule,
}

/// What hkrun.toml's `[types.NAME]` says of one type beyond its restart and memory
/// policies (those join `--restart` and `--memory-limit`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypeRules {
    pub stop: StopRule,
    /// For web: instead of `--boot-timeout`.
    pub boot_timeout: Option<Duration>,
    pub env: Vec<(String, String)>,
    pub after: Vec<String>,
}

impl DynoSpec {
    /// A one-off dyno hkrun runs itself (`release.1`, `postdeploy.1`, `scheduler.N`): no
    /// port, never restarted, `memory` enforced against `quota`. It keeps its own name
    /// under `--dyno`, as on Heroku.
    pub fn one_off(slot: Slot, command: String, memory: MemoryLimit, quota: u64) -> Self {
        Self {
            spec: SpawnSpec {
                dyno: slot.to_string(),
                slot,
                command,
                port: None,
                env: Vec::new(),
                terminal: false,
            },
            role: Role::Other,
            restart: RestartPolicy::Never,
            memory,
            quota,
            boot_timeout: None,
            stop: StopRule::default(),
        }
    }
}

/// A process type of the Procfile and how its dynos run: what `hkrun scale` starts more of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessType {
    pub name: String,
    pub command: String,
    /// Position among the Procfile's process types (`release` aside): its block of ports
    /// and its colour.
    pub index: usize,
    pub role: Role,
    pub size: DynoSize,
    pub restart: RestartPolicy,
    pub memory: MemoryLimit,
    /// For web: how long a dyno may take to listen on its PORT (R10).
    pub boot_timeout: Option<Duration>,
    pub stop: StopRule,
    /// Its own variables, over the app's.
    pub env: Vec<(String, String)>,
    /// Types whose dynos must all be up before this type's first start (hkrun.toml's
    /// `after`).
    pub after: Vec<String>,
    /// `--tty`: its dynos run on pseudo-terminals.
    pub terminal: bool,
    /// `--dyno`: the name its dynos get in `DYNO` and `PS` instead of their own (a
    /// scheduler's name for the formation's one dyno).
    pub dyno_name: Option<String>,
}

impl ProcessType {
    /// Dyno number `n` of this type, with its port in foreman's layout.
    pub fn dyno(&self, n: u32, base_port: u16) -> Result<DynoSpec, PortError> {
        let slot = Slot::new(&self.name, n);
        let port = ports::dyno_port(
            base_port,
            self.index,
            n,
            self.role.behind_router(),
            &slot.to_string(),
        )?;
        Ok(DynoSpec {
            spec: SpawnSpec {
                dyno: self.dyno_name.clone().unwrap_or_else(|| slot.to_string()),
                slot,
                command: self.command.clone(),
                port: Some(port),
                env: self.env.clone(),
                terminal: self.terminal,
            },
            role: self.role,
            restart: self.restart,
            memory: self.memory,
            quota: self.size.bytes,
            boot_timeout: self.boot_timeout,
            stop: self.stop,
        })
    }

    /// The ports this type's dynos may take: its block in foreman's layout, the router's
    /// first port aside.
    pub fn ports(&self, base_port: u16) -> std::ops::RangeInclusive<u16> {
        ports::block(base_port, self.index, self.role.behind_router())
    }
}

/// Everything the core runs, fixed at start (`hkrun scale` changes counts and sizes).
#[derive(Clone, Debug)]
pub struct AppPlan {
    /// The release command, when the release phase runs.
    pub release: Option<String>,
    /// app.json's `scripts.postdeploy`, when it has not run yet: after the release, before
    /// the formation.
    pub postdeploy: Option<String>,
    /// hkrun.toml's `[[scheduler]]` jobs: one-off dynos `scheduler.N` when each is due.
    pub scheduler: Vec<schedule::Job>,
    /// The dynos in start order.
    pub dynos: Vec<DynoSpec>,
    /// Every process type of the Procfile (`release` aside), for `hkrun scale`.
    pub types: Vec<ProcessType>,
    /// Where ports of new dynos are counted from.
    pub base_port: u16,
    /// The router's port, when web dynos are behind it.
    pub router: Option<u16>,
    /// Where the router listens when the user chose it (`--router-address`). Otherwise it
    /// listens on 127.0.0.1, and on every interface too once a web dyno does: never more
    /// reachable than the app made itself.
    pub router_address: Option<IpAddr>,
    /// Restart web preboot-style (needs the router).
    pub preboot: bool,
    /// Between SIGTERM and SIGKILL when stopping.
    pub grace: Duration,
    /// foreman's behaviour: the first exit stops the app.
    pub exit_on_crash: bool,
    /// The longest wait between crash restarts.
    pub restart_cap: Duration,
}

impl AppPlan {
    /// Each process type's colour slot: its place in the Procfile.
    pub fn colors(&self) -> HashMap<String, usize> {
        self.types
            .iter()
            .map(|t| (t.name.clone(), t.index))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dyno::{POSTDEPLOY, RELEASE, SCHEDULER};

    fn worker(dyno_name: Option<&str>) -> ProcessType {
        ProcessType {
            name: "worker".into(),
            command: "work".into(),
            index: 0,
            role: Role::Other,
            size: DynoSize::default(),
            restart: RestartPolicy::Always,
            memory: MemoryLimit::On,
            boot_timeout: None,
            stop: StopRule::default(),
            env: Vec::new(),
            after: Vec::new(),
            terminal: false,
            dyno_name: dyno_name.map(str::to_owned),
        }
    }

    #[test]
    fn dyno_names_the_formations_dynos_and_one_offs_keep_their_own() {
        let named = worker(Some("shop-worker-7c9d-q2x"));
        // The formation's dyno, and those `hkrun scale` adds later (`ProcessType::dyno`
        // too); a preboot's next generation is a copy of its dyno's spec.
        for n in [1, 2] {
            let spec = named.dyno(n, 5000).expect("a port").spec;
            assert_eq!(spec.dyno, "shop-worker-7c9d-q2x");
        }
        assert_eq!(
            worker(None).dyno(2, 5000).expect("a port").spec.dyno,
            "worker.2"
        );
        for slot in [
            Slot::new(RELEASE, 1),
            Slot::new(POSTDEPLOY, 1),
            Slot::new(SCHEDULER, 3),
        ] {
            let one_off = DynoSpec::one_off(slot.clone(), "run".into(), MemoryLimit::Off, 0);
            assert_eq!(one_off.spec.dyno, slot.to_string());
        }
    }
}
