//! PORT assignment (DESIGN section 3): the base port and foreman's layout.
//!
//! Owns the arithmetic only; whether a port is free is checked where dynos start.

/// The port when nothing else says: foreman's and Heroku's local default.
pub const DEFAULT_BASE: u16 = 5000;

/// Why no port could be chosen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("bad PORT `{value}` from {origin} (expected a number from 1 to 65535)")]
    BadBase { value: String, origin: &'static str },
    #[error("port for {dyno} would be {port}, past 65535 (choose a lower base port with -p)")]
    OutOfRange { dyno: String, port: u32 },
}

/// Base port: `-p` > `.env` PORT > inherited PORT > 5000.
pub fn base_port(
    flag: Option<u16>,
    dotenv: Option<&str>,
    inherited: Option<&str>,
) -> Result<u16, PortError> {
    if let Some(port) = flag {
        return Ok(port);
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

/// Foreman's layout: `base + 100 * type_index + (instance - 1)`.
pub fn foreman(base: u16, type_index: usize, instance: u32, dyno: &str) -> Result<u16, PortError> {
    let port = u64::from(base) + 100 * type_index as u64 + u64::from(instance.saturating_sub(1));
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
}
