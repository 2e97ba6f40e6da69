//! Per-type policies given on the command line: restart policy and memory enforcement.
//!
//! `--restart always`, `--restart css=never,web=always`, `--restart on-failure,web=always`:
//! a bare value sets the default, `TYPE=VALUE` overrides it for one type.

use std::fmt;
use std::str::FromStr;

/// What happens when a dyno exits without being asked to (README, "Supervision").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart after any exit, 0 included (Heroku's behaviour).
    Always,
    /// Restart after a non-zero exit; exit 0 means done.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// Whether an exit with `code` is followed by a restart.
    pub fn restarts(self, code: i32) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => code != 0,
            Self::Never => false,
        }
    }
}

impl FromStr for RestartPolicy {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "always" => Ok(Self::Always),
            "on-failure" => Ok(Self::OnFailure),
            "never" => Ok(Self::Never),
            _ => Err(()),
        }
    }
}

/// How a dyno's memory quota is enforced (README, "Supervision").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryLimit {
    /// R14 over the quota, R15 and SIGKILL at twice the quota (Heroku's behaviour).
    On,
    /// R14 only; never killed.
    Warn,
    /// Not watched.
    Off,
}

impl FromStr for MemoryLimit {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "on" => Ok(Self::On),
            "warn" => Ok(Self::Warn),
            "off" => Ok(Self::Off),
            _ => Err(()),
        }
    }
}

/// A refused policy value, naming the flag and what it takes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad value `{value}` for {flag} (expected {expected}, or TYPE=VALUE pairs)")]
pub struct PolicyError {
    pub flag: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// A default and per-type overrides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerType<T> {
    pub default: T,
    pub overrides: Vec<(String, T)>,
}

impl<T: FromStr + Copy> PerType<T> {
    /// Parses `VALUE`, `TYPE=VALUE,...` or a mix; `flag` and `expected` go into errors.
    pub fn parse(
        s: &str,
        default: T,
        flag: &'static str,
        expected: &'static str,
    ) -> Result<Self, PolicyError> {
        let bad = || PolicyError {
            flag,
            value: s.to_owned(),
            expected,
        };
        let mut policy = Self {
            default,
            overrides: Vec::new(),
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((name, value)) if !name.is_empty() => {
                    let value = value.parse().map_err(|_| bad())?;
                    policy.overrides.push((name.to_owned(), value));
                }
                Some(_) => return Err(bad()),
                None => policy.default = part.parse().map_err(|_| bad())?,
            }
        }
        Ok(policy)
    }

    /// The value for one process type; the last override wins.
    pub fn get(&self, name: &str) -> T {
        self.overrides
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map_or(self.default, |(_, v)| *v)
    }

    /// The overridden type names, to check against the Procfile.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.overrides.iter().map(|(n, _)| n.as_str())
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Always => "always",
            Self::OnFailure => "on-failure",
            Self::Never => "never",
        })
    }
}

impl fmt::Display for MemoryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::On => "on",
            Self::Warn => "warn",
            Self::Off => "off",
        })
    }
}

/// As typed: the default, then each `TYPE=VALUE` (`always,css=never`).
impl<T: fmt::Display> fmt::Display for PerType<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.default)?;
        for (name, value) in &self.overrides {
            write!(f, ",{name}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPECTED: &str = "always, on-failure or never";

    fn restart(s: &str) -> Result<PerType<RestartPolicy>, PolicyError> {
        PerType::parse(s, RestartPolicy::Always, "--restart", EXPECTED)
    }

    #[test]
    fn parses_defaults_and_overrides() {
        let p = restart("css=never,web=always").unwrap();
        assert_eq!(p.get("css"), RestartPolicy::Never);
        assert_eq!(p.get("worker"), RestartPolicy::Always);
        let p = restart("on-failure, web=always").unwrap();
        assert_eq!(p.get("worker"), RestartPolicy::OnFailure);
        assert_eq!(p.get("web"), RestartPolicy::Always);
        assert_eq!(p.names().collect::<Vec<_>>(), ["web"]);
        assert_eq!(p.to_string(), "on-failure,web=always");
    }

    #[test]
    fn refuses_bad_values_by_name() {
        assert_eq!(
            restart("web=sometimes").unwrap_err().to_string(),
            "bad value `web=sometimes` for --restart (expected always, on-failure or never, or TYPE=VALUE pairs)"
        );
        assert!(restart("=never").is_err());
        assert!(PerType::parse("web=maybe", MemoryLimit::On, "--memory-limit", "on").is_err());
    }

    #[test]
    fn restart_decisions() {
        assert!(RestartPolicy::Always.restarts(0));
        assert!(!RestartPolicy::OnFailure.restarts(0));
        assert!(RestartPolicy::OnFailure.restarts(3));
        assert!(!RestartPolicy::Never.restarts(3));
    }
}
