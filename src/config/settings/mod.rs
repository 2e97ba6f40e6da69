//! `start`'s defaults from a file: `hkrun.toml` in the app root (or `--config FILE`), or
//! foreman's `.foreman` where there is no `hkrun.toml` (README, "Settings"). A setting
//! applies only where the command line and the `HKRUN_*` environment said nothing:
//! flags, then `HKRUN_*` variables, then the file, then hkrun's defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::{Deserialize, Serialize};

use crate::cli::{BalanceArg, ColorChoice, LogFormatArg, StartArgs};
use crate::plan::schedule::{Frequency, Job};
use crate::plan::{StopRule, TypeRules};

pub(crate) mod error;
pub mod values;

pub use error::SettingsError;

/// `hkrun.toml`: each key is a `start` flag's long name.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub procfile: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<PathBuf>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub formation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dyno_size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_release: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quiet: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// `dashboard = "127.0.0.1:0"` (an address, a host name and port, or a port on
    /// 127.0.0.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard: Option<String>,
    /// Log drains' URLs (`drains` is taken too).
    #[serde(skip_serializing_if = "Option::is_none", alias = "drains")]
    pub drain: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_max_size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_keep: Option<usize>,
    /// Types whose dynos run on pseudo-terminals (`["all"]`: every type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tty: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_router: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_preboot: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
    /// `router-address = "0.0.0.0"`: where the router listens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_on_crash: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_cap: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_timeout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_timestamp: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    /// `[types.NAME]`: what differs for one process type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub types: Option<BTreeMap<String, TypeSettings>>,
    /// `[[scheduler]]`: Heroku Scheduler's jobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scheduler: Vec<SchedulerJob>,
    /// Each key's line in the file (`types.web.restart` for a table's), for errors.
    #[serde(skip)]
    pub lines: BTreeMap<String, usize>,
}

/// One `[[scheduler]]` job: a command, and either Scheduler's `frequency` or `cron`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SchedulerJob {
    pub command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
}

impl SchedulerJob {
    fn job(&self) -> Result<Job, String> {
        let frequency = match (&self.frequency, &self.cron) {
            (Some(f), None) => f.parse()?,
            (None, Some(c)) => Frequency::cron(c).map_err(|e| format!("cron `{c}`: {e}"))?,
            _ => return Err("give either frequency or cron".into()),
        };
        if self.command.trim().is_empty() {
            return Err("command is empty".into());
        }
        Ok(Job {
            command: self.command.clone(),
            frequency,
        })
    }
}

/// `[types.NAME]` in hkrun.toml: the per-type forms of `--restart`, `--memory-limit`,
/// `--timeout` and `--boot-timeout`, and what only a type can have: its stop signal,
/// its own variables, and the types it starts after.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TypeSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_timeout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<String>>,
    /// Its dynos run on pseudo-terminals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
}

impl TypeSettings {
    /// The rules no flag has, checked; `bad(key, value, expected)` makes the error.
    fn rules(
        &self,
        bad: &dyn Fn(&str, &str, &str) -> SettingsError,
    ) -> Result<TypeRules, SettingsError> {
        let secs = |key: &str, value: Option<f64>| {
            value
                .map(|v| {
                    Duration::try_from_secs_f64(v)
                        .map_err(|_| bad(key, &v.to_string(), "a number of seconds"))
                })
                .transpose()
        };
        let signal = self
            .stop_signal
            .as_deref()
            .map(|name| {
                crate::dyno::signal_named(name).ok_or_else(|| {
                    bad(
                        "stop-signal",
                        name,
                        "a signal name such as SIGINT or SIGQUIT",
                    )
                })
            })
            .transpose()?;
        let boot_timeout = secs("boot-timeout", self.boot_timeout)?;
        if boot_timeout.is_some_and(|t| t.is_zero()) {
            return Err(bad("boot-timeout", "0", "a number of seconds above 0"));
        }
        let env = self.env.clone().unwrap_or_default();
        if let Some(name) = env
            .keys()
            .find(|k| ["PORT", "DYNO", "PS"].contains(&k.as_str()))
        {
            return Err(bad(
                "env",
                name,
                "a name other than PORT, DYNO and PS, which hkrun sets",
            ));
        }
        Ok(TypeRules {
            stop: StopRule {
                signal,
                grace: secs("timeout", self.timeout)?,
            },
            boot_timeout,
            env: env.into_iter().collect(),
            after: self.after.clone().unwrap_or_default(),
        })
    }
}

/// foreman's `.foreman` (YAML), the keys hkrun has a meaning for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Foreman {
    concurrency: Option<String>,
    formation: Option<String>,
    port: Option<u16>,
    env: Option<String>,
    procfile: Option<PathBuf>,
    timeout: Option<f64>,
}

/// The line of each `key =` in a TOML file, by its dotted path (`port`,
/// `types.web.restart`): the first line it is on.
fn key_lines(text: &str) -> BTreeMap<String, usize> {
    let mut table = String::new();
    let mut lines = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            table = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned();
        } else if let Some((key, _)) = line.split_once('=') {
            let key = key.trim().trim_matches('"');
            let path = match table.is_empty() {
                true => key.to_owned(),
                false => format!("{table}.{key}"),
            };
            lines.entry(path).or_insert(n + 1);
        }
    }
    lines
}

/// The 1-based line of byte `at`.
fn line_of(text: &str, at: usize) -> usize {
    1 + text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

impl Settings {
    /// The settings for an app whose root is `root`: `explicit` (`--config`), else
    /// `hkrun.toml`, else `.foreman`, else none; with the file they came from.
    pub fn find(
        explicit: Option<&Path>,
        root: &Path,
    ) -> Result<Option<(PathBuf, Self)>, SettingsError> {
        if let Some(path) = explicit {
            return Ok(Some((path.to_owned(), Self::read_toml(path)?)));
        }
        // Shown as `hkrun.toml`, not `./hkrun.toml`, when the app is the current folder.
        let at = |name: &str| match root == Path::new(".") {
            true => PathBuf::from(name),
            false => root.join(name),
        };
        let toml = at("hkrun.toml");
        if toml.exists() {
            return Ok(Some((toml.clone(), Self::read_toml(&toml)?)));
        }
        let foreman = at(".foreman");
        if foreman.exists() {
            return Ok(Some((foreman.clone(), Self::read_foreman(&foreman)?)));
        }
        Ok(None)
    }

    fn read(path: &Path) -> Result<String, SettingsError> {
        std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_owned(),
            source,
        })
    }

    pub fn read_toml(path: &Path) -> Result<Self, SettingsError> {
        let text = Self::read(path)?;
        let settings: Self = toml::from_str(&text).map_err(|e| SettingsError::Invalid {
            path: path.to_owned(),
            line: e.span().map(|s| line_of(&text, s.start)),
            message: e.message().trim().to_owned(),
        })?;
        Ok(Self {
            lines: key_lines(&text),
            ..settings
        })
    }

    fn read_foreman(path: &Path) -> Result<Self, SettingsError> {
        let text = Self::read(path)?;
        let foreman: Foreman = match text.trim().is_empty() {
            true => Foreman::default(),
            false => serde_norway::from_str(&text).map_err(|e| SettingsError::Invalid {
                path: path.to_owned(),
                line: e.location().map(|l| l.line()),
                message: crate::config::text::without_position(&e),
            })?,
        };
        Ok(Self {
            procfile: foreman.procfile,
            // foreman's `env` is one file or several, comma-separated.
            env: foreman
                .env
                .map(|e| e.split(',').map(|f| PathBuf::from(f.trim())).collect()),
            port: foreman.port,
            formation: foreman.formation.or(foreman.concurrency),
            timeout: foreman.timeout,
            ..Self::default()
        })
    }

    /// The keys the file sets, each as text (`hkrun check`).
    pub fn shown(&self) -> Vec<(String, String)> {
        let Ok(toml::Value::Table(table)) = toml::Value::try_from(self) else {
            return Vec::new();
        };
        table
            .into_iter()
            .map(|(key, value)| {
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(","),
                    other => other.to_string(),
                };
                (key, text)
            })
            .collect()
    }

    /// `args` with every setting that neither a flag nor an `HKRUN_*` variable gave
    /// (`given`, by clap's argument id). Paths in the file are relative to its folder.
    pub fn apply(
        self,
        from: &Path,
        given: &dyn Fn(&str) -> bool,
        mut args: StartArgs,
    ) -> Result<StartArgs, SettingsError> {
        let folder = from.parent().unwrap_or(Path::new("."));
        let unset = |id: &str| !given(id);
        let invalid = |key: &str, value: &str, expected: &str| SettingsError::Invalid {
            path: from.to_owned(),
            line: None,
            message: format!("bad {key} `{value}` (expected {expected})"),
        };
        // A value the flag's parser refuses, at the line of `key` (else of `or_key`).
        let refused =
            |key: &str, or_key: Option<String>, value: &str, reason: String| SettingsError::Value {
                path: from.to_owned(),
                line: self
                    .lines
                    .get(key)
                    .or_else(|| self.lines.get(&or_key?))
                    .copied(),
                message: format!("bad value `{value}` for --{key}: {reason}"),
            };
        if let (Some(p), true) = (self.procfile, unset("procfile")) {
            args.files.procfile = Some(folder.join(p));
        }
        if let (Some(files), true) = (self.env, unset("env")) {
            args.files.env = files.into_iter().map(|f| folder.join(f)).collect();
        }
        if let (Some(port), true) = (self.port, unset("port")) {
            args.files.port = Some(port);
        }
        // `start web=2` names the formation too.
        if let (Some(f), true, true) = (self.formation, unset("formation"), args.types.is_empty()) {
            args.formation.formation = Some(f);
        }
        if let (Some(size), true) = (self.dyno_size, unset("dyno_size")) {
            args.formation.dyno_size =
                values::dyno_size(&size).map_err(|r| refused("dyno-size", None, &size, r))?;
        }
        macro_rules! plain {
            ($($field:ident),*) => {$(
                if let (Some(value), true) = (self.$field, unset(stringify!($field))) {
                    args.$field = value;
                }
            )*};
        }
        // `[types.NAME]` adds `NAME=value` to the flag's form, unless a flag or an
        // `HKRUN_*` variable gave the whole setting.
        let types = self.types.clone().unwrap_or_default();
        let per_type = |pick: fn(&TypeSettings) -> Option<&String>| -> String {
            types
                .iter()
                .filter_map(|(name, t)| pick(t).map(|v| format!(",{name}={v}")))
                .collect()
        };
        // The first `[types.NAME]` that sets `key`, for the line of an error.
        let type_key = |pick: fn(&TypeSettings) -> Option<&String>, key: &str| {
            let (name, _) = types.iter().find(|(_, t)| pick(t).is_some())?;
            Some(format!("types.{name}.{key}"))
        };
        for (name, t) in &types {
            let bad = |key: &str, value: &str, expected: &str| {
                invalid(&format!("[types.{name}] {key}"), value, expected)
            };
            let mut rules = t.rules(&bad)?;
            // The flags, or their `HKRUN_*` variables, are for every type.
            if given("timeout") {
                rules.stop.grace = None;
            }
            if given("boot_timeout") {
                rules.boot_timeout = None;
            }
            args.rules.insert(name.clone(), rules);
            args.rules_from = Some(from.to_owned());
        }
        for (n, job) in self.scheduler.iter().enumerate() {
            let job = job.job().map_err(|message| SettingsError::Invalid {
                path: from.to_owned(),
                line: None,
                message: format!("[[scheduler]] #{}: {message}", n + 1),
            })?;
            args.scheduler.push(job);
            args.rules_from = Some(from.to_owned());
        }
        // `--tty` (or `HKRUN_TTY`) says which types, whole; else the file's list and the
        // types whose table says `tty = true`.
        if !given("tty") {
            let mut tty = self.tty.clone().unwrap_or_default();
            tty.extend(
                types
                    .iter()
                    .filter(|(_, t)| t.tty == Some(true))
                    .map(|(name, _)| name.clone()),
            );
            if !tty.is_empty() {
                args.tty = Some(tty);
            }
        }
        let restart_types = per_type(|t| t.restart.as_ref());
        let memory_types = per_type(|t| t.memory_limit.as_ref());
        if let (Some(dir), true) = (self.log_dir, unset("log_dir")) {
            args.log_dir = Some(folder.join(dir));
        }
        if let (Some(addr), true) = (self.metrics, unset("metrics")) {
            args.metrics = Some(addr);
        }
        if let (Some(addr), true) = (self.dashboard, unset("dashboard")) {
            args.dashboard = Some(addr);
        }
        plain!(
            drain,
            log_keep,
            quiet,
            timeout,
            no_release,
            no_router,
            no_preboot,
            exit_on_crash,
            restart_cap,
            boot_timeout
        );
        if let (Some(size), true) = (self.log_max_size, unset("log_max_size")) {
            args.log_max_size =
                values::log_max_size(&size).map_err(|r| refused("log-max-size", None, &size, r))?;
        }
        // The file's policy (else the default), then its `[types.NAME]` ones, parsed as
        // the flag's value would be.
        if unset("restart") && (self.restart.is_some() || !restart_types.is_empty()) {
            let base = (self.restart.clone()).unwrap_or_else(|| args.restart.to_string());
            let text = format!("{base}{restart_types}");
            let or_key = type_key(|t| t.restart.as_ref(), "restart");
            args.restart =
                values::restart(&text).map_err(|r| refused("restart", or_key, &text, r))?;
        }
        if unset("memory_limit") && (self.memory_limit.is_some() || !memory_types.is_empty()) {
            let base = (self.memory_limit.clone()).unwrap_or_else(|| args.memory_limit.to_string());
            let text = format!("{base}{memory_types}");
            let or_key = type_key(|t| t.memory_limit.as_ref(), "memory-limit");
            args.memory_limit = values::memory_limit(&text)
                .map_err(|r| refused("memory-limit", or_key, &text, r))?;
        }
        if let (Some(a), true) = (self.router_address, unset("router_address")) {
            args.router_address = Some(
                a.parse()
                    .map_err(|_| invalid("router-address", &a, "an IP address such as 0.0.0.0"))?,
            );
        }
        if let (Some(b), true) = (self.balance, unset("balance")) {
            args.balance = match b.as_str() {
                "round-robin" => BalanceArg::RoundRobin,
                "least-connections" => BalanceArg::LeastConnections,
                _ => return Err(invalid("balance", &b, "round-robin or least-connections")),
            };
        }
        if let (Some(c), true) = (self.color, unset("color")) {
            args.output.color = match c.as_str() {
                "auto" => ColorChoice::Auto,
                "always" => ColorChoice::Always,
                "never" => ColorChoice::Never,
                _ => return Err(invalid("color", &c, "auto, always or never")),
            };
        }
        if let (Some(t), true) = (self.no_timestamp, unset("no_timestamp")) {
            args.output.no_timestamp = t;
        }
        if let (Some(f), true) = (self.log_format, unset("log_format")) {
            args.output.log_format = match f.as_str() {
                "default" => LogFormatArg::Default,
                "heroku" => LogFormatArg::Heroku,
                "json" => LogFormatArg::Json,
                _ => return Err(invalid("log-format", &f, "default, heroku or json")),
            };
        }
        Ok(args)
    }
}

/// Whether the command line or an `HKRUN_*` variable gave argument `id` in `matches`.
pub fn given_in(matches: &ArgMatches, id: &str) -> bool {
    matches.try_contains_id(id).unwrap_or(false)
        && matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hkrun.toml");
        std::fs::write(&path, "port = 6000\n# typo below\nformaton = \"web=2\"\n").unwrap();
        let err = Settings::read_toml(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:3: unknown field `formaton`", path.display())),
            "{err}"
        );
        std::fs::write(&path, "port = \"six thousand\"\n").unwrap();
        let err = Settings::read_toml(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}:1: ", path.display())), "{err}");
    }

    #[test]
    fn foreman_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".foreman");
        std::fs::write(
            &path,
            "concurrency: web=2,worker=1\nport: 6000\nenv: .env,.env.local\n",
        )
        .unwrap();
        let settings = Settings::read_foreman(&path).unwrap();
        assert_eq!(settings.formation.as_deref(), Some("web=2,worker=1"));
        assert_eq!(settings.port, Some(6000));
        assert_eq!(
            settings.env.unwrap(),
            [".env", ".env.local"].map(PathBuf::from)
        );
        std::fs::write(&path, "port: 6000\nbogus: 1\n").unwrap();
        let err = Settings::read_foreman(&path).unwrap_err().to_string();
        assert!(err.contains(":2: unknown field `bogus`"), "{err}");
    }
}
