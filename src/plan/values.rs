//! The parsers of `start`'s typed settings, one per setting: clap's `value_parser` for
//! the flag and its `HKRUN_*` variable (a bad value exits 2), and the same function for
//! hkrun.toml's key (a bad value exits 65, naming the file and line). Each says what it
//! expected, without the value: clap and the settings file each name the value their way.

use crate::plan::formation::DynoSize;
use crate::plan::policy::{MemoryLimit, PerType, RestartPolicy};

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

/// `--dyno-size`: a Heroku size's name or an amount, checked and kept as typed (the
/// formation and `export` read it as a `DynoSize`).
pub fn dyno_size(s: &str) -> Result<String, String> {
    s.parse::<DynoSize>().map(|_| s.to_owned()).map_err(|_| {
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
        assert_eq!(dyno_size("standard-2x").unwrap(), "standard-2x");
        assert!(dyno_size("huge").is_err());
        assert_eq!(log_max_size("4K"), Ok(4096));
        assert!(log_max_size("512").is_ok(), "512 megabytes");
        assert!(log_max_size("tiny").is_err());
        assert!(log_max_size("standard-1x").is_err());
    }
}
