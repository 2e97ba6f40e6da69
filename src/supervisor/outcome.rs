//! What a control request came to, as the core answers it: done (and to which dynos),
//! failed, or refused with a reason. Clients receive it as data (the control protocol's
//! `outcome`) and render it with `Display`, the one place its words are written.
//!
//! Pure: no I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::dyno::{Slot, names};

/// The answer to a control request that changes the app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// `hkrun scale`: each type named, with its count and size now.
    Scaled { types: Vec<TypeSize> },
    /// `hkrun restart`: these dynos are up again; `preboot`: web's new generation took
    /// over from them.
    Restarted {
        #[serde(with = "slots")]
        dynos: Vec<Slot>,
        #[serde(default)]
        preboot: bool,
    },
    /// `hkrun stop TARGET`: these left the formation; each of their types runs this many.
    Stopped {
        #[serde(with = "slots")]
        dynos: Vec<Slot>,
        running: Vec<TypeCount>,
    },
    /// `hkrun kill`: the signal went to these dynos' process groups.
    Signalled {
        signal: String,
        #[serde(with = "slots")]
        dynos: Vec<Slot>,
    },
    /// A restart went ahead but not every dyno came up.
    RestartFailed(RestartFailure),
    /// Nothing changed.
    Refused(Refusal),
}

impl Outcome {
    /// Whether the request did what it asked (the client exits 0).
    pub fn is_done(&self) -> bool {
        !matches!(self, Self::RestartFailed(_) | Self::Refused(_))
    }
}

/// A type's dynos after a scale: `web at 2:standard-1X`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeSize {
    pub name: String,
    pub count: u32,
    /// The dyno size's name (`standard-1X`).
    pub size: String,
}

/// How many dynos of a type run: `web at 2`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeCount {
    pub name: String,
    pub count: usize,
}

/// Why a restart did not bring every dyno up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "failure", rename_all = "snake_case")]
pub enum RestartFailure {
    /// A preboot's new dyno failed; the old ones keep serving.
    Preboot { why: PrebootFailure },
    /// Some of `dynos` did not come up, for these reasons.
    Dynos {
        #[serde(with = "slots")]
        dynos: Vec<Slot>,
        failures: Vec<DynoFailure>,
    },
}

/// Why a preboot was given up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PrebootFailure {
    /// A new dyno was stopped before it came up.
    Stopped {
        #[serde(with = "slot")]
        dyno: Slot,
    },
    /// A new dyno exited.
    Exited {
        #[serde(with = "slot")]
        dyno: Slot,
        code: i32,
    },
    /// A new dyno was killed for its memory (R15).
    OverMemory {
        #[serde(with = "slot")]
        dyno: Slot,
    },
    /// A new dyno missed its boot timeout (R10).
    BootTimeout {
        #[serde(with = "slot")]
        dyno: Slot,
    },
}

/// Why one dyno of a restart did not come up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DynoFailure {
    /// It left the formation (stopped, scaled down) meanwhile.
    Left {
        #[serde(with = "slot")]
        dyno: Slot,
    },
    /// It crashed, with this exit when known.
    Crashed {
        #[serde(with = "slot")]
        dyno: Slot,
        code: Option<i32>,
    },
    /// The preboot of the web dynos in the same restart failed.
    Preboot { why: PrebootFailure },
    /// The app began to stop first.
    AppStopping,
}

/// Why a request changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    /// Ctrl-Z paused the app.
    Paused,
    /// A preboot restart of web is under way.
    PrebootUnderWay,
    /// The release phase is still running.
    Releasing,
    /// hkrun is stopping the app.
    Stopping,
    /// `scale release=…`.
    ReleaseIsNotAType,
    /// No such process type in the Procfile.
    UnknownType { name: String, known: Vec<String> },
    /// `scale web-3` with fewer running.
    BelowZero { name: String, runs: u32 },
    /// More dynos of a type than its block of ports.
    TooMany { name: String, count: u32 },
    /// A type's dyno numbers are all taken by dynos still stopping.
    StillStopping { name: String },
    /// Web's block of ports has no free port for a new dyno.
    NoFreePort { name: String },
    /// A dyno's port would fall outside what its type may use (`PortError`'s words).
    NoPort { error: String },
    /// A preboot without the router (the app has no web behind it).
    NoRouter,
    /// Something else already listens on a port a new web dyno needs.
    PortInUse {
        port: u16,
        #[serde(with = "slot")]
        dyno: Slot,
    },
    /// `hkrun stop` with targets named none.
    NoTargets,
    /// `hkrun kill`: none of the named dynos runs.
    NoneRunning,
    /// A glob matched no dyno.
    NoMatch { pattern: String },
    /// `web.3` is not running (these of its type are).
    NoSuchDyno {
        #[serde(with = "slot")]
        dyno: Slot,
        #[serde(with = "slots")]
        running: Vec<Slot>,
    },
    /// A type has no dynos.
    NoDynos { target: String },
    /// No dyno runs at all.
    NothingRunning,
    /// The env files (or app.json) could not be read again (`config:set`).
    Config { error: String },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scaled { types } => {
                let now: Vec<String> = types
                    .iter()
                    .map(|t| format!("{} at {}:{}", t.name, t.count, t.size))
                    .collect();
                write!(f, "Scaling dynos... done, now running {}", now.join(", "))
            }
            Self::Restarted { dynos, preboot } => {
                write!(f, "Restarting {}... done", names(dynos))?;
                if *preboot {
                    f.write_str(" (preboot)")?;
                }
                Ok(())
            }
            Self::Stopped { dynos, running } => {
                let now: Vec<String> = running
                    .iter()
                    .map(|t| format!("{} at {}", t.name, t.count))
                    .collect();
                write!(
                    f,
                    "Stopping {}... done, now running {}",
                    names(dynos),
                    now.join(", ")
                )
            }
            Self::Signalled { signal, dynos } => write!(f, "Sent {signal} to {}", names(dynos)),
            Self::RestartFailed(failure) => failure.fmt(f),
            Self::Refused(why) => why.fmt(f),
        }
    }
}

impl fmt::Display for RestartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Preboot { why } => {
                write!(f, "restart failed: {why}; the old dynos keep serving")
            }
            Self::Dynos { dynos, failures } => {
                let failures: Vec<String> = failures.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "restart failed: {} did not come up: {}",
                    names(dynos),
                    failures.join(", ")
                )
            }
        }
    }
}

impl fmt::Display for PrebootFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stopped { dyno } => write!(f, "{dyno} was stopped"),
            Self::Exited { dyno, code } => write!(f, "the new {dyno} exited with status {code}"),
            Self::OverMemory { dyno } => write!(
                f,
                "the new {dyno} was killed for using over twice its memory quota (R15)"
            ),
            Self::BootTimeout { dyno } => write!(f, "the new {dyno} missed its boot timeout"),
        }
    }
}

impl fmt::Display for DynoFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Left { dyno } => write!(f, "{dyno} left the formation"),
            Self::Crashed { dyno, code: None } => write!(f, "{dyno} crashed"),
            Self::Crashed {
                dyno,
                code: Some(code),
            } => write!(f, "{dyno} crashed (exit {code})"),
            Self::Preboot { why } => {
                write!(f, "restart failed: {why}; the old dynos keep serving")
            }
            Self::AppStopping => Refusal::Stopping.fmt(f),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Paused => {
                f.write_str("the app is paused (Ctrl-Z, SIGTSTP); send hkrun SIGCONT first")
            }
            Self::PrebootUnderWay => {
                f.write_str("a preboot restart of web is under way; try again once it is done")
            }
            Self::Releasing => f.write_str("the release phase is still running"),
            Self::Stopping => f.write_str("hkrun is stopping the app"),
            Self::ReleaseIsNotAType => {
                f.write_str("`release` is the release phase, not a dyno type")
            }
            Self::UnknownType { name, known } => write!(
                f,
                "unknown process type `{name}` (the Procfile has {})",
                known.join(", ")
            ),
            Self::BelowZero { name, runs } => {
                write!(f, "cannot scale {name} below 0 (it runs {runs})")
            }
            Self::TooMany { name, count } => {
                let error = crate::plan::formation::FormationError::TooMany {
                    name: name.clone(),
                    count: *count,
                };
                error.fmt(f)
            }
            Self::StillStopping { name } => write!(
                f,
                "{name} has dynos still stopping; scale up again once they have stopped"
            ),
            Self::NoFreePort { name } => write!(f, "{name} has no free port left in its block"),
            Self::NoPort { error } => f.write_str(error),
            Self::NoRouter => f.write_str("preboot needs the router"),
            Self::PortInUse { port, dyno } => write!(
                f,
                "port {port} for {dyno} is already in use; stop what holds it and try again"
            ),
            Self::NoTargets => f.write_str("name the dynos to stop"),
            Self::NoneRunning => f.write_str("none of those dynos is running"),
            Self::NoMatch { pattern } => write!(f, "no dyno matches `{pattern}`"),
            Self::NoSuchDyno { dyno, running } if running.is_empty() => {
                write!(f, "no dyno {dyno} is running")
            }
            Self::NoSuchDyno { dyno, running } => write!(
                f,
                "no dyno {dyno} is running ({} runs {})",
                dyno.kind,
                names(running)
            ),
            Self::NoDynos { target } => write!(
                f,
                "{target} has no dynos (start some with `hkrun scale {target}=1`)"
            ),
            Self::NothingRunning => f.write_str("no dyno is running"),
            Self::Config { error } => f.write_str(error),
        }
    }
}

/// A dyno's name on the wire: `web.1`.
mod slot {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::dyno::Slot;

    pub(super) fn serialize<S: Serializer>(slot: &Slot, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(slot)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Slot, D::Error> {
        let name = String::deserialize(d)?;
        name.parse()
            .map_err(|()| D::Error::custom(format!("not a dyno name: `{name}`")))
    }
}

/// Dynos' names on the wire: `["web.1", "web.2"]`.
mod slots {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::dyno::Slot;

    pub(super) fn serialize<S: Serializer>(slots: &[Slot], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(slots.iter().map(ToString::to_string))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Slot>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|name| {
                name.parse()
                    .map_err(|()| D::Error::custom(format!("not a dyno name: `{name}`")))
            })
            .collect()
    }
}
