//! What runs: the app's process types, each dyno's spec, and the settings the core runs
//! them by. `config` builds an `AppPlan` from what the user gave; the core runs it.
//!
//! Pure data and arithmetic: the formation's syntax (`formation`), restart and memory
//! policies (`policy`), and the port layout (`ports`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::dyno::Slot;

pub mod formation;
pub mod policy;
pub mod ports;
pub mod schedule;

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
    /// port, never restarted, `memory` enforced against `quota`.
    pub fn one_off(slot: Slot, command: String, memory: MemoryLimit, quota: u64) -> Self {
        Self {
            spec: SpawnSpec {
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
