//! What every layer says about a dyno: its name (`Slot`), how its process ended
//! (`Exit`), the address it serves on (`Backend`), and the rule for a process type's name.
//!
//! The core, the OS actors, the log, the router and the control socket all speak these;
//! this module depends on none of them.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use nix::sys::signal::Signal;

/// The release phase's name in the Procfile: run once before the dynos, never scaled.
pub const RELEASE: &str = "release";
/// app.json's `scripts.postdeploy`: run once, after the first successful release.
pub const POSTDEPLOY: &str = "postdeploy";
/// The runs of hkrun.toml's `[[scheduler]]` jobs, as Heroku Scheduler names them.
pub const SCHEDULER: &str = "scheduler";

/// Whether dynos of `kind` are one-off runs hkrun starts itself (`release`, `postdeploy`,
/// `scheduler`), not a process type of the formation: never scaled, restarted or counted
/// in its exit.
pub fn is_one_off(kind: &str) -> bool {
    [RELEASE, POSTDEPLOY, SCHEDULER].contains(&kind)
}

/// A signal as users write it: `SIGQUIT`, `QUIT`, `quit` or its number (`3`).
pub fn signal_named(name: &str) -> Option<Signal> {
    if let Ok(number) = name.parse::<i32>() {
        return Signal::try_from(number).ok();
    }
    let upper = name.to_ascii_uppercase();
    let full = match upper.starts_with("SIG") {
        true => upper,
        false => format!("SIG{upper}"),
    };
    full.parse().ok()
}

/// A process type's name, as the Procfile, formations and control requests accept it.
pub const TYPE_NAME: &str = "[A-Za-z0-9_-]+";

/// Whether `name` can name a process type (`TYPE_NAME`).
pub fn is_type_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Dynos' names as a list: `web.1, web.2`.
pub fn names(slots: &[Slot]) -> String {
    slots
        .iter()
        .map(Slot::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One dyno, e.g. `web.2`, or the release phase, `release.1`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    /// The process type.
    pub kind: String,
    /// The instance number, from 1.
    pub index: u32,
    /// Which process under this name: a preboot starts `web.1` anew beside the running
    /// one, and both are `web.1` to the app and in the log.
    pub generation: u32,
}

impl Slot {
    pub fn new(kind: &str, index: u32) -> Self {
        Self {
            kind: kind.to_owned(),
            index,
            generation: 0,
        }
    }

    /// The same name, one generation on.
    pub fn next_generation(&self) -> Self {
        Self {
            generation: self.generation + 1,
            ..self.clone()
        }
    }
}

impl FromStr for Slot {
    type Err = ();

    /// `web.2`: a type, a dot and an instance number from 1.
    fn from_str(s: &str) -> Result<Self, ()> {
        let (kind, index) = s.rsplit_once('.').ok_or(())?;
        match index.parse::<u32>() {
            // `web.01` is not a name hkrun gives, so it names no dyno.
            Ok(n) if n > 0 && !kind.is_empty() && n.to_string() == index => Ok(Self::new(kind, n)),
            _ => Err(()),
        }
    }
}

/// `web.1`: the name the app, the log and `ps` know, the same for every generation. The
/// alternate form, `{:#}`, tells generations apart where two may live at once (a preboot):
/// `web.1` for the first, `web.1 (generation 2)` after.
impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind, self.index)?;
        if f.alternate() && self.generation > 0 {
            write!(f, " (generation {})", self.generation + 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Slot;

    #[test]
    fn the_alternate_form_tells_generations_apart() {
        let first = Slot::new("web", 1);
        let next = first.next_generation();
        assert_eq!(
            (first.to_string(), next.to_string()),
            ("web.1".into(), "web.1".into())
        );
        assert_eq!(format!("{first:#}"), "web.1");
        assert_eq!(format!("{next:#}"), "web.1 (generation 2)");
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It called `exit(code)`.
    Code(i32),
    /// A signal killed it.
    Signaled(Signal),
}

impl Exit {
    /// The shell's convention: the code, or 128 + the signal's number.
    pub fn code(self) -> i32 {
        match self {
            Self::Code(code) => code,
            Self::Signaled(signal) => 128 + signal as i32,
        }
    }
}

/// A web dyno taking traffic, and where it listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub slot: Slot,
    pub addr: SocketAddr,
}

/// Where the router may send traffic now: the web dynos that are up, and, while none
/// is, why (which of Heroku's answers a request gets meanwhile).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    /// In slot order.
    pub up: Vec<Backend>,
    /// What the web dynos are doing; it matters only while `up` is empty.
    pub web: WebState,
}

/// Why no web dyno takes traffic (Heroku's H20, H10 and H14).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WebState {
    /// Some are starting (or the app is): a request waits for one (H20 after 75 s).
    #[default]
    Booting,
    /// They crashed: a request is answered H10 at once.
    Crashed,
    /// web is scaled to 0 (or stopping): H14 at once.
    NoDynos,
}
