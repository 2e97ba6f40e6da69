//! What happened, as the core says it: `Event`s, which the driver renders as Heroku's
//! lines (`heroku[web.1]: State changed from starting to up`) and hands to whoever else
//! follows the app (the dashboard's marks). The core never writes a sentence; this file
//! is the one place that does, so a change of wording is a change here and in the
//! snapshot test below.
//!
//! Pure: no I/O.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::outcome::{PrebootFailure, Refusal};
use crate::dyno::Slot;
pub use crate::dyno::names;

/// Whose name a log event is under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Dyno(Slot),
    System,
}

/// Why the app is being stopped on request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopRequest {
    /// SIGTERM, SIGINT or SIGHUP reached hkrun.
    Signal(Signal),
    /// Nobody reads hkrun's output any more (`hkrun start | head -1`).
    StdoutClosed,
    /// `hkrun stop` with no target.
    Control,
}

impl StopRequest {
    /// What every dyno's group gets: SIGINT when the user pressed Ctrl-C (or sent
    /// SIGINT), as the dyno would in a terminal of its own; SIGTERM otherwise, Heroku's.
    pub fn signal(self) -> Signal {
        match self {
            Self::Signal(Signal::SIGINT) => Signal::SIGINT,
            _ => Signal::SIGTERM,
        }
    }
}

impl fmt::Display for StopRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Signal(signal) => write!(f, "{}", signal.as_str()),
            Self::StdoutClosed => f.write_str("output closed"),
            Self::Control => f.write_str("hkrun stop"),
        }
    }
}

/// A dyno's state as Heroku's `State changed from X to Y` and `hkrun ps` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    Starting,
    Up,
    Stopping,
    Crashed,
    Down,
    /// A one-off run that has ended (a scheduler run).
    Complete,
}

impl Shown {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Up => "up",
            Self::Stopping => "stopping",
            Self::Crashed => "crashed",
            Self::Down => "down",
            Self::Complete => "complete",
        }
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a `[[scheduler]]` run did not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// It was due while the release phase ran.
    Releasing,
    /// The job's last run, this dyno, is still going.
    StillRunning(Slot),
}

/// Everything the core reports. The first group is about one dyno (logged under its
/// name), the rest about the app (logged under hkrun's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A dyno's process is being spawned.
    Launching {
        slot: Slot,
        command: String,
    },
    /// It could not be spawned at all.
    SpawnFailed {
        slot: Slot,
        error: String,
    },
    StateChanged {
        slot: Slot,
        from: Shown,
        to: Shown,
    },
    /// Its leader exited with this status (Heroku's code: 128 + a signal's number).
    Exited {
        slot: Slot,
        code: i32,
    },
    /// A crash loop's later crash, in one line: the exit, the wait, the count.
    CrashLooping {
        slot: Slot,
        code: i32,
        delay: Duration,
        crashes: u32,
    },
    /// The back-off before a crashed dyno restarts.
    RestartingIn {
        slot: Slot,
        delay: Duration,
        crashes: u32,
    },
    /// `hkrun restart` (or a resize) stops and starts it.
    Restarting {
        slot: Slot,
    },
    /// Its memory over its quota, as Heroku says with R14 and R15.
    MemoryUsage {
        slot: Slot,
        rss: u64,
        quota: u64,
    },
    /// R14: over its memory quota.
    MemoryQuotaExceeded {
        slot: Slot,
    },
    /// R15: at twice its quota or more; it is killed.
    MemoryQuotaVastlyExceeded {
        slot: Slot,
    },
    /// R10: a web dyno did not listen on its PORT within its boot timeout; it is killed.
    BootTimeout {
        slot: Slot,
        timeout: Duration,
    },
    /// R12: a process outlived the grace after the stop signal.
    ExitTimeout {
        slot: Slot,
        grace: Duration,
        signal: Signal,
    },
    /// The stop signal goes to every process of its run.
    StoppingAll {
        slot: Slot,
        signal: Signal,
    },
    /// SIGKILL to its process (R10, R15, a failed preboot, a grace that ran out).
    Killing {
        slot: Slot,
    },
    /// What its run left after its leader exited gets `signal`.
    StoppingRemaining {
        slot: Slot,
        signal: Signal,
    },
    /// `hkrun kill`: the signal to its process group.
    SignalSent {
        slot: Slot,
        signal: Signal,
    },

    /// Where the router listens, and the formation's web dynos behind it.
    RouterListening {
        address: SocketAddr,
        web: Vec<Slot>,
    },
    /// A type waits for the types of its `after` to be up.
    Held {
        kind: String,
        after: Vec<String>,
    },
    /// A held type starts: what it waited for is up.
    StartingHeld {
        kind: String,
    },
    /// A `[[scheduler]]` run did not start.
    ScheduledSkipped {
        command: String,
        why: Skipped,
    },
    /// The release phase (or postdeploy) failed: nothing else starts.
    DeployStepFailed {
        kind: String,
        code: i32,
    },
    /// `--exit-on-crash`: a dyno's exit stops the app.
    CrashStopsApp {
        slot: Slot,
        code: i32,
    },
    /// No dyno of the formation runs or will restart.
    NoneLeft {
        code: i32,
    },
    /// A stop was asked for (`again`: a second time, which means now).
    StopReceived {
        request: StopRequest,
        again: bool,
    },
    /// A stop that takes a while names what it waits for (the first few, then a count).
    StillWaiting {
        left: Duration,
        dynos: Vec<Slot>,
        more: usize,
        signal: Signal,
    },
    /// hkrun's own restart (SIGUSR2) was refused; nobody else would hear why.
    SignalledRestartRefused(Refusal),
    /// Ctrl-Z (SIGTSTP): every process stops with SIGSTOP.
    Pausing,
    /// SIGCONT: every process goes on, after this long paused.
    Resuming {
        paused: Duration,
    },
    /// Preboot: the new generation starts beside `old`.
    PrebootStarting {
        old: Vec<Slot>,
    },
    /// Preboot: the router sends new connections to `new`; the old ones stop.
    PrebootSwitched {
        new: Vec<Slot>,
    },
    /// Preboot: a new dyno failed; the new ones are killed, the old ones serve on.
    PrebootFailed(PrebootFailure),
}

impl Event {
    /// Whose name the line is under.
    pub fn source(&self) -> Source {
        match self {
            Self::Launching { slot, .. }
            | Self::SpawnFailed { slot, .. }
            | Self::StateChanged { slot, .. }
            | Self::Exited { slot, .. }
            | Self::CrashLooping { slot, .. }
            | Self::RestartingIn { slot, .. }
            | Self::Restarting { slot }
            | Self::MemoryUsage { slot, .. }
            | Self::MemoryQuotaExceeded { slot }
            | Self::MemoryQuotaVastlyExceeded { slot }
            | Self::BootTimeout { slot, .. }
            | Self::ExitTimeout { slot, .. }
            | Self::StoppingAll { slot, .. }
            | Self::Killing { slot }
            | Self::StoppingRemaining { slot, .. }
            | Self::SignalSent { slot, .. } => Source::Dyno(slot.clone()),
            Self::RouterListening { .. }
            | Self::Held { .. }
            | Self::StartingHeld { .. }
            | Self::ScheduledSkipped { .. }
            | Self::DeployStepFailed { .. }
            | Self::CrashStopsApp { .. }
            | Self::NoneLeft { .. }
            | Self::StopReceived { .. }
            | Self::StillWaiting { .. }
            | Self::SignalledRestartRefused(_)
            | Self::Pausing
            | Self::Resuming { .. }
            | Self::PrebootStarting { .. }
            | Self::PrebootSwitched { .. }
            | Self::PrebootFailed(_) => Source::System,
        }
    }
}

/// The line as users see it, after the name (`heroku[web.1]:` or `hkrun:`).
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.dyno_line(f) {
            Some(written) => written,
            None => self.app_line(f),
        }
    }
}

impl Event {
    /// A line about one dyno (`Source::Dyno`); `None` for the app's.
    fn dyno_line(&self, f: &mut fmt::Formatter<'_>) -> Option<fmt::Result> {
        Some(match self {
            Self::Launching { command, .. } => {
                write!(f, "Starting process with command `{command}`")
            }
            Self::SpawnFailed { error, .. } => write!(f, "Failed to start process: {error}"),
            Self::StateChanged { from, to, .. } => write!(f, "State changed from {from} to {to}"),
            Self::Exited { code, .. } => write!(f, "Process exited with status {code}"),
            Self::CrashLooping {
                code,
                delay,
                crashes,
                ..
            } => write!(
                f,
                "Process exited with status {code}; restarting in {} ({crashes} crashes in a row)",
                seconds(*delay)
            ),
            Self::RestartingIn { delay, crashes, .. } => write!(
                f,
                "Restarting in {} ({crashes} crashes in a row)",
                seconds(*delay)
            ),
            Self::Restarting { .. } => f.write_str("Restarting"),
            Self::MemoryUsage { rss, quota, .. } => f.write_str(&usage_line(*rss, *quota)),
            Self::MemoryQuotaExceeded { .. } => f.write_str("Error R14 (Memory quota exceeded)"),
            Self::MemoryQuotaVastlyExceeded { .. } => {
                f.write_str("Error R15 (Memory quota vastly exceeded)")
            }
            Self::BootTimeout { timeout, .. } => write!(
                f,
                "Error R10 (Boot timeout) -> Web process failed to bind to $PORT within {} of launch",
                seconds(*timeout)
            ),
            Self::ExitTimeout { grace, signal, .. } => write!(
                f,
                "Error R12 (Exit timeout) -> At least one process failed to exit within {} of {}",
                seconds(*grace),
                signal.as_str()
            ),
            Self::StoppingAll { signal, .. } => {
                write!(f, "Stopping all processes with {}", signal.as_str())
            }
            Self::Killing { .. } => f.write_str("Stopping process with SIGKILL"),
            Self::StoppingRemaining { signal, .. } => {
                write!(f, "Stopping remaining processes with {}", signal.as_str())
            }
            Self::SignalSent { signal, .. } => write!(
                f,
                "Sending {} to the process group (hkrun kill)",
                signal.as_str()
            ),
            _ => return None,
        })
    }

    /// A line about the app (`Source::System`).
    fn app_line(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RouterListening { address, web } => write!(
                f,
                "router listening on http://{address} \u{2192} {}",
                names(web)
            ),
            Self::Held { kind, after } => write!(
                f,
                "{kind} starts once {} {} up",
                after.join(" and "),
                if after.len() == 1 { "is" } else { "are" }
            ),
            Self::StartingHeld { kind } => write!(f, "starting {kind}"),
            Self::ScheduledSkipped { command, why } => match why {
                Skipped::Releasing => write!(
                    f,
                    "scheduler: `{command}` was due before the formation started (release phase): \
                     this run is skipped"
                ),
                Skipped::StillRunning(last) => write!(
                    f,
                    "scheduler: `{command}` is still running as {last}: this run is skipped"
                ),
            },
            Self::DeployStepFailed { kind, code } => write!(f, "{kind} failed (exit {code})"),
            Self::CrashStopsApp { slot, code } => {
                write!(f, "{slot} exited with status {code}: stopping the app")
            }
            Self::NoneLeft { code } => {
                write!(f, "no dyno is left running: stopping (exit {code})")
            }
            Self::StopReceived { request, again } => match again {
                false => write!(f, "{request} received"),
                true => write!(f, "{request} received again"),
            },
            Self::StillWaiting {
                left,
                dynos,
                more,
                signal,
            } => {
                let again = match signal {
                    Signal::SIGINT => "press Ctrl-C again",
                    _ => "send SIGTERM again",
                };
                write!(f, "waiting up to {} for {}", seconds(*left), names(dynos))?;
                if *more > 0 {
                    write!(f, " and {more} more")?;
                }
                write!(f, "; {again} to stop now")
            }
            Self::SignalledRestartRefused(why) => write!(f, "SIGUSR2 restart refused: {why}"),
            Self::Pausing => f.write_str("SIGTSTP received: pausing all processes with SIGSTOP"),
            Self::Resuming { paused } => write!(
                f,
                "Resuming all processes with SIGCONT (paused for {:.1}s)",
                paused.as_secs_f64()
            ),
            Self::PrebootStarting { old } => write!(
                f,
                "Preboot: starting new {} beside the running ones",
                names(old)
            ),
            Self::PrebootSwitched { new } => write!(
                f,
                "Preboot: new {} take new connections; stopping the old ones",
                names(new)
            ),
            Self::PrebootFailed(why) => {
                write!(f, "Preboot failed: {why}; the old dynos keep serving")
            }
            // Written by `dyno_line`.
            _ => Ok(()),
        }
    }
}

/// `60 seconds`, `1.5 seconds`: Heroku's way of writing a duration in its errors.
pub fn seconds(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs == 1.0 {
        "1 second".into()
    } else {
        format!("{secs} seconds")
    }
}

/// Heroku's `Process running mem=600M(117.2%)`.
pub fn usage_line(rss: u64, quota: u64) -> String {
    const MB: f64 = 1024.0 * 1024.0;
    #[expect(clippy::cast_precision_loss, reason = "megabytes for display")]
    let (mb, percent) = (rss as f64 / MB, rss as f64 * 100.0 / quota.max(1) as f64);
    format!("Process running mem={mb:.0}M({percent:.1}%)")
}

#[cfg(test)]
mod tests;
