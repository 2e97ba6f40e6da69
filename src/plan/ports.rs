//! PORT assignment: the base port and foreman's layout, where each process type has a
//! block of `BLOCK` ports (README, "Ports").
//!
//! Owns the arithmetic only; whether a port is free is checked where dynos start.

/// Ports per process type in foreman's layout, and so the most dynos of one type.
pub const BLOCK: u16 = 100;

/// The port when nothing else says: foreman's and Heroku's local default.
pub const DEFAULT_BASE: u16 = 5000;

/// Why no port could be chosen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("bad PORT `{value}` from {origin} (expected a number from 1 to 65535)")]
    BadBase { value: String, origin: &'static str },
    #[error("port for {dyno} would be {port}, past 65535 (choose a lower base port with -p)")]
    OutOfRange { dyno: String, port: u32 },
    #[error(
        "{dyno} would take a port of the next type's block (the router takes the first of web's 100)"
    )]
    BlockFull { dyno: String },
}

/// Base port: `-p` > `.env` PORT > inherited PORT > 5000.
pub fn base_port(
    flag: Option<u16>,
    dotenv: Option<&str>,
    inherited: Option<&str>,
) -> Result<u16, PortError> {
    match flag {
        // A dyno cannot listen on port 0 (the kernel would pick one nobody knows).
        Some(0) => {
            return Err(PortError::BadBase {
                value: "0".to_owned(),
                origin: "-p",
            });
        }
        Some(port) => return Ok(port),
        None => {}
    }
    for (value, origin) in [(dotenv, "the env files"), (inherited, "the environment")] {
        if let Some(value) = value {
            return match value.trim().parse::<u16>() {
                Ok(port) if port > 0 => Ok(port),
                _ => Err(PortError::BadBase {
                    value: value.to_owned(),
                    origin,
                }),
            };
        }
    }
    Ok(DEFAULT_BASE)
}

/// A dyno's port: foreman's layout, or behind the router the port after it, so the
/// router keeps the first of the type's block (router 5000, web.1 5001, web.2 5002).
pub fn dyno_port(
    base: u16,
    type_index: usize,
    instance: u32,
    behind_router: bool,
    dyno: &str,
) -> Result<u16, PortError> {
    if !behind_router {
        return foreman(base, type_index, instance, dyno);
    }
    if instance >= u32::from(BLOCK) {
        return Err(PortError::BlockFull {
            dyno: dyno.to_owned(),
        });
    }
    foreman(base, type_index, instance + 1, dyno)
}

/// The router's port: the first of the type's block.
pub fn router_port(base: u16, type_index: usize) -> Result<u16, PortError> {
    foreman(base, type_index, 1, "the router")
}

/// The ports a type's dynos may take: its block, less the router's first port; cut at
/// 65535.
pub fn block(base: u16, type_index: usize, behind_router: bool) -> std::ops::RangeInclusive<u16> {
    let first = u64::from(base) + u64::from(BLOCK) * type_index as u64;
    let last = first + u64::from(BLOCK) - 1;
    let first = first + u64::from(behind_router);
    let clamp = |port: u64| u16::try_from(port).unwrap_or(u16::MAX);
    clamp(first)..=clamp(last)
}

/// Foreman's layout: `base + BLOCK * type_index + (instance - 1)`.
pub fn foreman(base: u16, type_index: usize, instance: u32, dyno: &str) -> Result<u16, PortError> {
    let port = u64::from(base)
        + u64::from(BLOCK) * type_index as u64
        + u64::from(instance.saturating_sub(1));
    u16::try_from(port).map_err(|_| PortError::OutOfRange {
        dyno: dyno.to_owned(),
        port: u32::try_from(port).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_precedence() {
        assert_eq!(base_port(Some(4000), Some("6000"), Some("7000")), Ok(4000));
        assert_eq!(base_port(None, Some("6000"), Some("7000")), Ok(6000));
        assert_eq!(base_port(None, None, Some("7000")), Ok(7000));
        assert_eq!(base_port(None, None, None), Ok(5000));
        assert_eq!(
            base_port(Some(0), Some("6000"), None)
                .unwrap_err()
                .to_string(),
            "bad PORT `0` from -p (expected a number from 1 to 65535)"
        );
        assert!(base_port(None, Some("0"), None).is_err());
        assert_eq!(
            base_port(None, Some("http"), None).unwrap_err().to_string(),
            "bad PORT `http` from the env files (expected a number from 1 to 65535)"
        );
    }

    #[test]
    fn foreman_layout() {
        assert_eq!(foreman(5000, 0, 1, "web.1"), Ok(5000));
        assert_eq!(foreman(5000, 0, 2, "web.2"), Ok(5001));
        assert_eq!(foreman(5000, 1, 1, "worker.1"), Ok(5100));
        assert!(foreman(65500, 1, 1, "worker.1").is_err());
    }

    #[test]
    fn behind_the_router() {
        assert_eq!(router_port(5000, 0), Ok(5000));
        assert_eq!(dyno_port(5000, 0, 1, true, "web.1"), Ok(5001));
        assert_eq!(dyno_port(5000, 0, 2, true, "web.2"), Ok(5002));
        assert_eq!(dyno_port(5000, 0, 99, true, "web.99"), Ok(5099));
        assert!(dyno_port(5000, 0, 100, true, "web.100").is_err());
        assert_eq!(dyno_port(5000, 0, 2, false, "web.2"), Ok(5001));
    }
}
