//! What exec can pass to a dyno: each variable within the longest string, the whole
//! environment within the stack's share, refused before anything starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ConfigError;
use super::env::{self};
use super::procfile::{Procfile, ProcfileError};
use crate::plan::TypeRules;

use super::*;

/// The longest string exec passes to a process, its NUL included: Linux's
/// MAX_ARG_STRLEN (32 pages of 4 KiB), whatever the stack limit.
const EXEC_STRING_MAX: usize = 131_072;

/// What a dyno's environment takes of exec's room: each variable's `KEY=value\0` bytes
/// and where it is set. Every variable hkrun reads from a file (env files, app.json's
/// `env`, hkrun.toml's `[types.NAME] env`) goes through `set`, so what exec could never
/// pass is refused before anything starts: without this, the dyno's spawn fails, and it
/// is restarted forever.
#[derive(Clone, Debug)]
pub(crate) struct ExecRoom {
    sizes: BTreeMap<std::ffi::OsString, (usize, env::Origin)>,
}

impl ExecRoom {
    /// hkrun's own environment, which every dyno inherits.
    pub(super) fn inherited() -> Self {
        let sizes = std::env::vars_os()
            .map(|(k, v)| {
                let len = k.len() + v.len() + 2;
                (k, (len, env::Origin::Inherited))
            })
            .collect();
        Self { sizes }
    }

    /// The length of `KEY=value`, or why exec could never pass it: a NUL byte, or more
    /// than `EXEC_STRING_MAX`.
    fn fits(at: &env::Origin, key: &str, value: &str) -> Result<usize, env::EnvError> {
        if key.contains('\0') || value.contains('\0') {
            return Err(env::EnvError::NulIn {
                at: at.clone(),
                key: key.to_owned(),
            });
        }
        let len = key.len() + 1 + value.len();
        let max = EXEC_STRING_MAX - 1;
        if len > max {
            return Err(env::EnvError::TooLarge {
                at: at.clone(),
                key: key.to_owned(),
                len,
                max,
            });
        }
        Ok(len)
    }

    /// Sets `key` over what set it before, once `fits` takes it.
    pub(super) fn set(
        &mut self,
        at: env::Origin,
        key: &str,
        value: &str,
    ) -> Result<(), env::EnvError> {
        let len = Self::fits(&at, key, value)?;
        self.sizes.insert(key.into(), (len + 1, at));
        Ok(())
    }

    /// Refuses the environment when, with `dyno`'s command (`command` bytes as given to
    /// `sh -c`), it passes the stack's share for exec.
    pub(super) fn check_total(&self, dyno: &str, command: usize) -> Result<(), env::EnvError> {
        // PORT, DYNO and PS, generously; argv is `/bin/sh -c SCRIPT`; one pointer each.
        let ours = 3 * 32;
        let argv = "/bin/sh".len() + 1 + "-c".len() + 1 + command + 1;
        let pointers = std::mem::size_of::<usize>() * (self.sizes.len() + 3 + 3);
        let total = self.sizes.values().map(|(len, _)| len).sum::<usize>() + ours + argv + pointers;
        let limit = exec_total_limit();
        if total > limit {
            let (key, (_, origin)) = self
                .sizes
                .iter()
                .max_by_key(|(_, (len, _))| *len)
                .expect("an environment over the limit has variables");
            return Err(env::EnvError::Total {
                total,
                limit,
                dyno: dyno.to_owned(),
                largest: key.to_string_lossy().into_owned(),
                origin: origin.clone(),
            });
        }
        Ok(())
    }
}

/// The room the app's environment takes: hkrun's own, the env files' in order, then
/// app.json's defaults where those leave a key unset (every one of app.json's values is
/// checked all the same: no file may hold what exec could never pass).
pub(super) fn exec_room<'a>(
    files: impl Iterator<Item = (&'a PathBuf, &'a Vec<env::Var>)>,
    app_json: Option<&(PathBuf, app_json::AppJson)>,
) -> Result<ExecRoom, ConfigError> {
    let mut room = ExecRoom::inherited();
    for (path, vars) in files {
        for var in vars {
            let at = env::Origin::Line {
                path: path.clone(),
                line: var.line,
            };
            room.set(at, &var.key, &var.value)?;
        }
    }
    if let Some((path, app_json)) = app_json {
        for (key, value) in app_json.values() {
            let at = env::Origin::Table {
                path: path.clone(),
                table: "env".into(),
            };
            if room.sizes.contains_key(std::ffi::OsStr::new(key)) {
                ExecRoom::fits(&at, key, value)?;
            } else {
                room.set(at, key, value)?;
            }
        }
    }
    Ok(room)
}

/// Refuses what exec could never pass to a dyno: a command over `EXEC_STRING_MAX`, or
/// the app's environment with the longest command over the stack's share for exec.
pub(super) fn check_exec_limits(
    procfile_path: &Path,
    procfile: Option<&Procfile>,
    room: &ExecRoom,
) -> Result<(), ConfigError> {
    let max = EXEC_STRING_MAX - 1;
    let Some(procfile) = procfile else {
        return Ok(());
    };
    let mut longest: Option<(&str, usize)> = None;
    for entry in procfile.entries() {
        let len = crate::os::process::exec_form(&entry.command).len();
        if len > max {
            return Err(ConfigError::Procfile {
                path: procfile_path.to_owned(),
                source: ProcfileError::TooLong {
                    line: entry.line,
                    len,
                    max,
                },
            });
        }
        if longest.is_none_or(|(_, l)| len > l) {
            longest = Some((&entry.name, len));
        }
    }
    if let Some((dyno, command)) = longest {
        room.check_total(dyno, command)?;
    }
    Ok(())
}

/// hkrun.toml's `[types.NAME] env`, checked as the env files are: each variable, and
/// the type's whole environment with its command.
pub(super) fn check_type_env(
    path: &Path,
    rules: &BTreeMap<String, TypeRules>,
    app: &App,
) -> Result<(), ConfigError> {
    for (name, rule) in rules.iter().filter(|(_, r)| !r.env.is_empty()) {
        let mut room = app.exec_room.clone();
        for (key, value) in &rule.env {
            let at = env::Origin::Table {
                path: path.to_owned(),
                table: format!("[types.{name}] env"),
            };
            room.set(at, key, value)?;
        }
        if let Some(entry) = app.procfile().get(name) {
            room.check_total(name, crate::os::process::exec_form(&entry.command).len())?;
        }
    }
    Ok(())
}

/// What exec lets arguments and environment take together: a quarter of the stack's
/// soft limit, at most 6 MiB and at least `EXEC_STRING_MAX` (Linux's rule). The largest
/// when the limit cannot be read, so nothing is refused that might pass.
pub(super) fn exec_total_limit() -> usize {
    use procfs::process::{LimitValue, Process};
    let stack = Process::myself()
        .and_then(|p| p.limits())
        .map(|l| l.max_stack_size.soft_limit);
    let quarter = match stack {
        Ok(LimitValue::Value(bytes)) => usize::try_from(bytes / 4).unwrap_or(usize::MAX),
        _ => usize::MAX,
    };
    quarter.clamp(EXEC_STRING_MAX, 6 << 20)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    #[test]
    fn exec_refuses_a_nul_and_a_variable_past_its_longest_string() {
        let at = env::Origin::Line {
            path: PathBuf::from(".env"),
            line: 3,
        };
        assert_eq!(ExecRoom::fits(&at, "KEY", "value").ok(), Some(9));
        assert!(matches!(
            ExecRoom::fits(&at, "KEY", "a\0b"),
            Err(env::EnvError::NulIn { .. })
        ));
        // `KEY=` and the value, its NUL aside, may take all but one byte of the string.
        let longest = "v".repeat(EXEC_STRING_MAX - 1 - "KEY=".len());
        assert!(ExecRoom::fits(&at, "KEY", &longest).is_ok());
        let over = format!("{longest}v");
        assert!(matches!(
            ExecRoom::fits(&at, "KEY", &over),
            Err(env::EnvError::TooLarge { len, .. }) if len == EXEC_STRING_MAX
        ));
    }

    #[test]
    fn an_environment_past_execs_room_names_its_largest_variable() {
        let mut room = ExecRoom {
            sizes: BTreeMap::new(),
        };
        let at = |line| env::Origin::Line {
            path: PathBuf::from(".env"),
            line,
        };
        room.set(at(1), "SMALL", "x").expect("fits");
        assert!(room.check_total("web.1", 20).is_ok());
        // Many variables, each within the longest string, together past the limit.
        let value = "v".repeat(EXEC_STRING_MAX / 2);
        let count = exec_total_limit() / value.len() + 1;
        for n in 0..count {
            room.set(at(n + 2), &format!("BIG_{n}"), &value)
                .expect("fits");
        }
        room.set(at(count + 2), "BIGGEST", &format!("{value}vv"))
            .expect("fits");
        match room.check_total("web.1", 20) {
            Err(env::EnvError::Total { dyno, largest, .. }) => {
                assert_eq!((dyno.as_str(), largest.as_str()), ("web.1", "BIGGEST"));
            }
            other => panic!("{other:?}"),
        }
    }
}
