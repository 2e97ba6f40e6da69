//! `start`'s typed values and their parsers: clap's `value_parser` for the flag and its
//! `HKRUN_*` variable (a bad value exits 2), and the same parser for hkrun.toml's key (a
//! bad value exits 65, naming the file and line; `config::settings::table`). Each says
//! what it expected, without the value: clap and the settings file each name the value
//! their way.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::plan::formation::DynoSize;
use crate::plan::policy::{MemoryLimit, PerType, RestartPolicy};

/// A number of seconds, 0 or more (`--timeout`, `--restart-cap`): shown as typed, `30`
/// or `0.5`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl FromStr for Seconds {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.trim()
            .parse::<f64>()
            .ok()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .map(Self)
            .ok_or_else(|| "expected a number of seconds".to_owned())
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

/// A number of seconds above 0 (`--boot-timeout`: at 0 no web dyno could ever come up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositiveSeconds(pub Duration);

impl FromStr for PositiveSeconds {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.parse::<Seconds>() {
            Ok(Seconds(secs)) if !secs.is_zero() => Ok(Self(secs)),
            _ => Err("expected a number of seconds above 0".to_owned()),
        }
    }
}

impl fmt::Display for PositiveSeconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Seconds(self.0).fmt(f)
    }
}

/// How many rotated log files to keep beside each current one (`--log-keep`), 1000 at
/// most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotatedFiles(pub usize);

/// `--log-keep` at most: rotation moves each kept file, and a count nobody means is a
/// typo better refused at start.
pub const KEEP_AT_MOST: usize = 1000;

impl FromStr for RotatedFiles {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().parse::<usize>() {
            Ok(n) if n <= KEEP_AT_MOST => Ok(Self(n)),
            _ => Err(format!(
                "expected a number of files, at most {KEEP_AT_MOST}"
            )),
        }
    }
}

impl fmt::Display for RotatedFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Requests in flight per web dyno before the router answers H11 (`--max-requests`),
/// 1 at least.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxRequests(pub usize);

impl FromStr for MaxRequests {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(Self(n)),
            _ => Err("expected a number of requests above 0".to_owned()),
        }
    }
}

impl fmt::Display for MaxRequests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A log file's size before it rotates (`--log-max-size`), 1K at least: shown as
/// `DynoSize` shows an amount (`1024M` as `1G`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        log_max_size(s).map(Self)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        DynoSize {
            name: None,
            bytes: self.0,
        }
        .fmt(f)
    }
}

/// `--port`: the base port, 1 to 65535.
pub fn port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err("expected a number from 1 to 65535".to_owned()),
    }
}

/// `--restart`: a policy, and `TYPE=POLICY` pairs.
pub fn restart(s: &str) -> Result<PerType<RestartPolicy>, String> {
    PerType::parse(
        s,
        RestartPolicy::Always,
        "--restart",
        "always, on-failure or never",
    )
    .map_err(|e| format!("expected {}, or TYPE=VALUE pairs", e.expected))
}

/// `--memory-limit`: a mode, and `TYPE=MODE` pairs.
pub fn memory_limit(s: &str) -> Result<PerType<MemoryLimit>, String> {
    PerType::parse(s, MemoryLimit::On, "--memory-limit", "on, warn or off")
        .map_err(|e| format!("expected {}, or TYPE=VALUE pairs", e.expected))
}

/// `--dyno-size`: a Heroku size's name or an amount.
pub fn dyno_size(s: &str) -> Result<DynoSize, String> {
    s.parse::<DynoSize>().map_err(|_| {
        "expected eco, basic, standard-1x, standard-2x, performance-m, performance-l or an \
         amount such as 768M"
            .to_owned()
    })
}

/// `--log-max-size`: the bytes a log file may hold before it rotates, 1K at least.
pub fn log_max_size(s: &str) -> Result<u64, String> {
    match s.parse::<DynoSize>() {
        Ok(size) if size.name.is_none() && size.bytes >= 1024 => Ok(size.bytes),
        _ => Err("expected a size of 1K or more, such as 512K, 10M or 1G".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_parser_gives_the_domains_value_or_what_it_expected() {
        assert_eq!(
            restart("never,web=always").unwrap().get("web"),
            RestartPolicy::Always
        );
        assert_eq!(
            restart("sometimes").unwrap_err(),
            "expected always, on-failure or never, or TYPE=VALUE pairs"
        );
        assert_eq!(memory_limit("warn").unwrap().get("web"), MemoryLimit::Warn);
        assert!(memory_limit("lots").is_err());
        assert_eq!(dyno_size("standard-2x").unwrap().name, Some("Standard-2X"));
        assert!(dyno_size("huge").is_err());
        assert_eq!(log_max_size("4K"), Ok(4096));
        assert!(log_max_size("512").is_ok(), "512 megabytes");
        assert!(log_max_size("tiny").is_err());
        assert!(log_max_size("standard-1x").is_err());
        assert_eq!("30".parse::<Seconds>().unwrap().to_string(), "30");
        assert_eq!("0.5".parse::<Seconds>().unwrap().to_string(), "0.5");
        assert!("-1".parse::<Seconds>().is_err());
        assert!("0".parse::<PositiveSeconds>().is_err());
        assert_eq!("1024M".parse::<ByteSize>().unwrap().to_string(), "1G");
    }
}
