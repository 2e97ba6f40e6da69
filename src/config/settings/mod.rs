//! `start`'s defaults from a file: `hkrun.toml` in the app root (or `--config FILE`), or
//! foreman's `.foreman` where there is no `hkrun.toml` (README, "Settings"). A setting
//! applies only where the command line and the `HKRUN_*` environment said nothing:
//! flags, then `HKRUN_*` variables, then the file, then hkrun's defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;

use crate::plan::schedule::{Frequency, Job};
use crate::plan::values;
use crate::plan::{StopRule, TypeRules};
use args::StartArgs;
use value::Field;

pub(crate) mod args;
pub(crate) mod error;
pub(crate) mod table;
pub(crate) mod value;

pub(crate) use error::SettingsError;

/// `hkrun.toml` (or `.foreman`): each top-level key a `start` flag's long name (a field
/// of `StartArgs`, `table`); then `[types.NAME]` and `[[scheduler]]`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Settings {
    /// The top-level keys, each a setting's.
    values: toml::Table,
    /// `[types.NAME]`: what differs for one process type.
    types: BTreeMap<String, TypeSettings>,
    /// `[[scheduler]]`: Heroku Scheduler's jobs.
    scheduler: Vec<SchedulerJob>,
    /// Each key's line in the file (`types.web.restart` for a table's), for errors.
    lines: BTreeMap<String, usize>,
}

/// hkrun.toml's tables; its other keys are `Settings::values`.
#[derive(Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Tables {
    #[serde(default)]
    types: BTreeMap<String, TypeSettings>,
    #[serde(default)]
    scheduler: Vec<SchedulerJob>,
}

/// `start`'s settings merged: the command line's and the `HKRUN_*` variables', then the
/// settings file's where they said nothing.
#[derive(Clone, Debug)]
pub struct StartOptions {
    pub args: StartArgs,
    /// hkrun.toml's `[types.NAME]` rules that no flag has (stop signal, grace, boot
    /// timeout, env, `after`), by type.
    pub rules: BTreeMap<String, TypeRules>,
    /// hkrun.toml's `[[scheduler]]` jobs.
    pub scheduler: Vec<Job>,
    /// The settings file, when there is one.
    pub file: Option<PathBuf>,
    /// The keys the file set (flags' long names).
    pub from_file: Vec<String>,
}

impl StartOptions {
    /// The command line's and `HKRUN_*`'s settings alone.
    pub fn new(args: StartArgs) -> Self {
        Self {
            args,
            rules: BTreeMap::new(),
            scheduler: Vec::new(),
            file: None,
            from_file: Vec::new(),
        }
    }

    /// The file `rules` and `scheduler` came from, when they are some.
    pub fn rules_from(&self) -> Option<&Path> {
        let any = !self.rules.is_empty() || !self.scheduler.is_empty();
        self.file.as_deref().filter(|_| any)
    }
}

/// One `[[scheduler]]` job: a command, and either Scheduler's `frequency` or `cron`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct SchedulerJob {
    pub command: String,
    pub frequency: Option<String>,
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
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct TypeSettings {
    pub restart: Option<String>,
    pub memory_limit: Option<String>,
    pub stop_signal: Option<String>,
    pub timeout: Option<f64>,
    pub boot_timeout: Option<f64>,
    pub env: Option<BTreeMap<String, String>>,
    pub after: Option<Vec<String>>,
    /// Its dynos run on pseudo-terminals.
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
/// `types.web.restart`): the first line it is on; each `[[scheduler]]` header as
/// `scheduler#N`.
fn key_lines(text: &str) -> BTreeMap<String, usize> {
    let mut table = String::new();
    let mut lines = BTreeMap::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("[[") {
            // An array of tables: each entry's header by its number (`scheduler#2`).
            table = name.trim_end_matches(']').trim().to_owned();
            let count = counts.entry(table.clone()).or_insert(0);
            *count += 1;
            lines.insert(format!("{table}#{count}"), n + 1);
        } else if line.starts_with('[') {
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
    pub(crate) fn find(
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

    pub(crate) fn read_toml(path: &Path) -> Result<Self, SettingsError> {
        let text = Self::read(path)?;
        let invalid = |e: toml::de::Error| SettingsError::Invalid {
            path: path.to_owned(),
            line: e.span().map(|s| line_of(&text, s.start)),
            message: e.message().trim().to_owned(),
        };
        let tables: Tables = toml::from_str(&text).map_err(invalid)?;
        let mut values: toml::Table = toml::from_str(&text).map_err(invalid)?;
        values.remove("types");
        values.remove("scheduler");
        Self {
            values,
            types: tables.types,
            scheduler: tables.scheduler,
            lines: key_lines(&text),
        }
        .checked(path)
    }

    /// Refuses a key no setting has, with its line.
    fn checked(self, path: &Path) -> Result<Self, SettingsError> {
        for key in self.values.keys() {
            if table::in_file(key).is_some() {
                continue;
            }
            let known: Vec<String> = table::file_keys()
                .into_iter()
                .chain(["types".into(), "scheduler".into()])
                .map(|k| format!("`{k}`"))
                .collect();
            return Err(SettingsError::Invalid {
                path: path.to_owned(),
                line: self.lines.get(key).copied(),
                message: format!(
                    "unknown field `{key}`, expected one of {}",
                    known.join(", ")
                ),
            });
        }
        Ok(self)
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
        let mut values = toml::Table::new();
        let mut put = |key: &str, value: Option<toml::Value>| {
            if let Some(value) = value {
                values.insert(key.to_owned(), value);
            }
        };
        put(
            "procfile",
            foreman.procfile.map(|p| p.display().to_string().into()),
        );
        // foreman's `env` is one file or several, comma-separated.
        put(
            "env",
            foreman.env.map(|e| {
                e.split(',')
                    .map(|f| f.trim().to_owned())
                    .collect::<Vec<_>>()
                    .into()
            }),
        );
        put("port", foreman.port.map(|p| i64::from(p).into()));
        put(
            "formation",
            foreman.formation.or(foreman.concurrency).map(Into::into),
        );
        put("timeout", foreman.timeout.map(Into::into));
        Ok(Self {
            values,
            ..Self::default()
        })
    }

    /// `args` with every setting that neither a flag nor an `HKRUN_*` variable gave
    /// (`given`, by clap's argument id), set from the file by `table`; with the
    /// file's `[types.NAME]` rules and `[[scheduler]]` jobs. Paths in the file are relative
    /// to its folder.
    pub(crate) fn apply(
        self,
        from: &Path,
        given: &dyn Fn(&str) -> bool,
        args: StartArgs,
    ) -> Result<StartOptions, SettingsError> {
        let folder = from.parent().unwrap_or(Path::new("."));
        let line = |key: &str| self.lines.get(key).copied();
        let mut options = StartOptions::new(args);
        options.file = Some(from.to_owned());
        for (name, value) in &self.values {
            let (key, id) = table::in_file(name).expect("checked when read");
            // `start web=2` names the formation too.
            let typed_formation = key == "formation" && !options.args.types.is_empty();
            let overridden = given(&id) || typed_formation;
            // A value a flag overrides is read all the same, so a bad one is refused
            // whatever the command line says.
            let mut probe;
            let args = match overridden {
                true => {
                    probe = options.args.clone();
                    &mut probe
                }
                false => &mut options.args,
            };
            let setting = args.find_mut("", &id).expect("every setting has its field");
            let text = match value {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            setting
                .set(value.clone(), folder)
                .map_err(|refusal| SettingsError::Value {
                    path: from.to_owned(),
                    line: line(name),
                    message: match refusal {
                        value::Refusal::Value(reason) => {
                            format!("bad value `{text}` for --{key}: {reason}")
                        }
                        value::Refusal::Item { value, reason } => {
                            format!("bad value `{value}` for --{key}: {reason}")
                        }
                        value::Refusal::Kind(kind) => {
                            format!("bad value `{text}` for --{key}: expected {kind}")
                        }
                    },
                })?;
            if !overridden {
                options.from_file.push(key);
            }
        }
        let types = &self.types;
        for (name, t) in types {
            // The line of the key, or of the entry in its table (`[types.web.env]`).
            let bad = |key: &str, value: &str, expected: &str| SettingsError::Invalid {
                path: from.to_owned(),
                line: line(&format!("types.{name}.{key}"))
                    .or_else(|| line(&format!("types.{name}.{key}.{value}"))),
                message: format!("bad [types.{name}] {key} `{value}` (expected {expected})"),
            };
            let mut rules = t.rules(&bad)?;
            // The flags, or their `HKRUN_*` variables, are for every type.
            if given("timeout") {
                rules.stop.grace = None;
            }
            if given("boot_timeout") {
                rules.boot_timeout = None;
            }
            options.rules.insert(name.clone(), rules);
        }
        for (n, job) in self.scheduler.iter().enumerate() {
            let job = job.job().map_err(|message| SettingsError::Invalid {
                path: from.to_owned(),
                line: line(&format!("scheduler#{}", n + 1)),
                message: format!("[[scheduler]] #{}: {message}", n + 1),
            })?;
            options.scheduler.push(job);
        }
        // `--tty` (or `HKRUN_TTY`) says which types, whole; else the file's list and the
        // types whose table says `tty = true`.
        let tty_types = types.iter().filter(|(_, t)| t.tty == Some(true));
        if !given("tty") && tty_types.clone().next().is_some() {
            let tty = options.args.tty.get_or_insert_with(Vec::new);
            tty.extend(tty_types.map(|(name, _)| name.clone()));
            if !options.from_file.iter().any(|k| k == "tty") {
                options.from_file.push("tty".to_owned());
            }
        }
        // `[types.NAME]` adds `NAME=value` to the flag's form (the file's, else the
        // default), unless a flag or an `HKRUN_*` variable gave the whole setting; parsed as
        // the flag's value would be.
        let per_type = |pick: fn(&TypeSettings) -> Option<&String>, key: &str| {
            let text: String = types
                .iter()
                .filter_map(|(name, t)| pick(t).map(|v| format!(",{name}={v}")))
                .collect();
            let first = types.iter().find(|(_, t)| pick(t).is_some());
            let at = first.and_then(|(name, _)| line(&format!("types.{name}.{key}")));
            (text, at)
        };
        let refused =
            |key: &str, at: Option<usize>, value: &str, reason: String| SettingsError::Value {
                path: from.to_owned(),
                line: at.or(line(key)),
                message: format!("bad value `{value}` for --{key}: {reason}"),
            };
        let (restart_types, at) = per_type(|t| t.restart.as_ref(), "restart");
        if !given("restart") && !restart_types.is_empty() {
            let text = format!("{}{restart_types}", options.args.restart);
            options.args.restart =
                values::restart(&text).map_err(|r| refused("restart", at, &text, r))?;
            options.from_file.push("restart".to_owned());
        }
        let (memory_types, at) = per_type(|t| t.memory_limit.as_ref(), "memory-limit");
        if !given("memory_limit") && !memory_types.is_empty() {
            let text = format!("{}{memory_types}", options.args.memory_limit);
            options.args.memory_limit =
                values::memory_limit(&text).map_err(|r| refused("memory-limit", at, &text, r))?;
            options.from_file.push("memory-limit".to_owned());
        }
        Ok(options)
    }
}

/// Whether the command line or an `HKRUN_*` variable gave argument `id` in `matches`.
pub(crate) fn given_in(matches: &ArgMatches, id: &str) -> bool {
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
    }

    /// A value is read by its flag's parser, and refused naming the file and line, even
    /// where a flag overrides it.
    #[test]
    fn a_bad_value_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hkrun.toml");
        let start = args::defaults;
        for (text, line, message) in [
            (
                "port = \"six thousand\"\n",
                1,
                "bad value `six thousand` for --port",
            ),
            (
                "\nrestart = \"sometimes\"\n",
                2,
                "bad value `sometimes` for --restart",
            ),
            (
                "balance = \"random-ish\"\n",
                1,
                "bad value `random-ish` for --balance: expected round-robin, least-connections or random",
            ),
            (
                "boot-timeout = 0\n",
                1,
                "bad value `0` for --boot-timeout: expected a number of seconds above 0",
            ),
            (
                "[types.web]\nstop-signal = \"SIGNOPE\"\n",
                2,
                "bad [types.web] stop-signal `SIGNOPE`",
            ),
            (
                "[[scheduler]]\ncommand = \"a\"\nfrequency = \"hourly at :05\"\n[[scheduler]]\ncommand = \"b\"\n",
                4,
                "[[scheduler]] #2",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let settings = Settings::read_toml(&path).unwrap();
            let given = |id: &str| id == "port";
            let err = settings
                .apply(&path, &given, start())
                .unwrap_err()
                .to_string();
            let at = format!("hkrun.toml:{line}");
            assert!(
                err.contains(message) && err.contains(&at),
                "{text:?}: {err}"
            );
        }
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
        let value = |key: &str| settings.values.get(key).cloned();
        assert_eq!(value("formation"), Some("web=2,worker=1".into()));
        assert_eq!(value("port"), Some(6000.into()));
        assert_eq!(
            value("env").map(|e| e.try_into::<Vec<PathBuf>>().unwrap()),
            Some([".env", ".env.local"].map(PathBuf::from).to_vec())
        );
        std::fs::write(&path, "port: 6000\nbogus: 1\n").unwrap();
        let err = Settings::read_foreman(&path).unwrap_err().to_string();
        assert!(err.contains(":2: unknown field `bogus`"), "{err}");
    }
}
