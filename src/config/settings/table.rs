//! `start`'s settings, each once: its hkrun.toml key (the flag's long name), the
//! `StartArgs` field it sets (clap's id), how the file's value is read into that field, and
//! how `check --settings` shows it. The flag, its `HKRUN_*` variable, its default and its
//! help are clap's attributes on the field (src/cli.rs), read back by id; the typed parsers
//! the flag and the file share are `values`'. Adding a setting: its field in `StartArgs`,
//! one row here, and its use.

use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::ValueEnum;
use clap::parser::ValueSource;
use serde::de::DeserializeOwned;

use super::StartOptions;
use crate::cli::{BalanceArg, ColorChoice, LogFormatArg, StartArgs};
use crate::plan::formation::DynoSize;
use crate::plan::values;

/// Why the file's value for a setting was refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The flag's parser refused it; what it expected.
    Value(String),
    /// Not of the setting's type (toml's words).
    Type(String),
    /// In words of its own, naming the key.
    Words(String),
}

/// One of `start`'s settings.
pub(crate) struct Setting {
    /// The flag's long name, and hkrun.toml's key.
    pub key: &'static str,
    /// clap's id of its field in `StartArgs`.
    pub id: &'static str,
    /// Whether hkrun.toml (or `.foreman`) may set it.
    pub in_file: bool,
    /// Whether a value is of the setting's type, before anything is set.
    pub check: fn(&toml::Value) -> Result<(), Refusal>,
    /// Sets the file's value on the arguments; paths are relative to the file's folder.
    pub set: fn(&mut StartArgs, toml::Value, &Path) -> Result<(), Refusal>,
    /// The value as `check` shows it; `None` when unset.
    pub show: fn(&StartArgs) -> Option<String>,
}

fn typed<T: DeserializeOwned>(value: toml::Value) -> Result<T, Refusal> {
    value
        .try_into()
        .map_err(|e: toml::de::Error| Refusal::Type(e.message().trim().to_owned()))
}

fn joined<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> Option<String> {
    let text = items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    (!text.is_empty()).then_some(text)
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn named<T: ValueEnum>(value: &T) -> Option<String> {
    value.to_possible_value().map(|v| v.get_name().to_owned())
}

/// A row: key, clap id, the file value's type, how it is set (`Ok(())` once done), and
/// how it is shown; `plain` (set as it is, shown by `Display`), `some` (an `Option` field)
/// and `list` (a list of names) for the usual ones.
macro_rules! row {
    (plain $key:literal, $id:literal, $t:ty, $($f:ident).+) => {
        row!($key, $id, $t, |a, v, _f| {
            a.$($f).+ = v;
            Ok(())
        }, |a| Some(a.$($f).+.to_string()))
    };
    (some $key:literal, $id:literal, $t:ty, $($f:ident).+) => {
        row!($key, $id, $t, |a, v, _f| {
            a.$($f).+ = Some(v);
            Ok(())
        }, |a| a.$($f).+.as_ref().map(ToString::to_string))
    };
    (list $key:literal, $id:literal, $($f:ident).+) => {
        row!($key, $id, Vec<String>, |a, v, _f| {
            a.$($f).+ = v;
            Ok(())
        }, |a| joined(&a.$($f).+))
    };
    ($key:literal, $id:literal, $t:ty, |$a:ident, $v:ident, $f:ident| $set:expr, |$s:ident| $show:expr) => {
        Setting {
            key: $key,
            id: $id,
            in_file: true,
            check: |value| typed::<$t>(value.clone()).map(drop),
            set: |$a, value, $f| {
                let $v: $t = typed(value)?;
                $set
            },
            show: |$s| $show,
        }
    };
    // Not a key of the file: the flag and its variable only.
    ($key:literal, $id:literal, |$s:ident| $show:expr) => {
        Setting {
            key: $key,
            id: $id,
            in_file: false,
            check: |_| Ok(()),
            set: |_, _, _| Ok(()),
            show: |$s| $show,
        }
    };
}

/// Every setting of `start` but `--config`, `--socket` and `--dyno` (which hkrun.toml
/// cannot name, and `check` does not list), in `start --help`'s order.
pub(crate) static SETTINGS: &[Setting] = &[
    row!(
        "procfile",
        "procfile",
        PathBuf,
        |a, v, f| {
            a.files.procfile = Some(f.join(v));
            Ok(())
        },
        |a| a.files.procfile.as_deref().map(path)
    ),
    row!("root", "root", |a| a.files.root.as_deref().map(path)),
    row!(
        "env",
        "env",
        Vec<PathBuf>,
        |a, v, f| {
            a.files.env = v.into_iter().map(|p| f.join(p)).collect();
            Ok(())
        },
        |a| joined(a.files.env.iter().map(|p| p.display()))
    ),
    row!(some "port", "port", u16, files.port),
    row!(
        "formation",
        "formation",
        String,
        |a, v, _f| {
            a.formation.formation = Some(v);
            Ok(())
        },
        |a| a.formation.formation.clone()
    ),
    row!(
        "dyno-size",
        "dyno_size",
        String,
        |a, v, _f| {
            a.formation.dyno_size = values::dyno_size(&v).map_err(Refusal::Value)?;
            Ok(())
        },
        |a| Some(a.formation.dyno_size.clone())
    ),
    row!(plain "timeout", "timeout", f64, timeout),
    row!(plain "no-release", "no_release", bool, no_release),
    row!(
        "tty",
        "tty",
        Vec<String>,
        |a, v, _f| {
            a.tty = Some(v);
            Ok(())
        },
        |a| a.tty.as_ref().and_then(joined)
    ),
    row!(some "metrics", "metrics", String, metrics),
    row!(some "dashboard", "dashboard", String, dashboard),
    row!(
        "drain",
        "drain",
        Vec<String>,
        |a, v, _f| {
            a.drain = v;
            Ok(())
        },
        // A drain's credentials are never shown (README, "Log drains").
        |a| joined(a.drain.iter().map(|d| crate::logs::drains::masked(d)))
    ),
    row!(
        "log-dir",
        "log_dir",
        PathBuf,
        |a, v, f| {
            a.log_dir = Some(f.join(v));
            Ok(())
        },
        |a| a.log_dir.as_deref().map(path)
    ),
    row!(
        "log-max-size",
        "log_max_size",
        String,
        |a, v, _f| {
            a.log_max_size = values::log_max_size(&v).map_err(Refusal::Value)?;
            Ok(())
        },
        |a| Some(
            DynoSize {
                name: None,
                bytes: a.log_max_size
            }
            .to_string()
        )
    ),
    row!(plain "log-keep", "log_keep", usize, log_keep),
    row!(list "quiet", "quiet", quiet),
    row!(plain "no-router", "no_router", bool, no_router),
    row!(plain "no-preboot", "no_preboot", bool, no_preboot),
    row!(
        "router-address",
        "router_address",
        String,
        |a, v, _f| {
            a.router_address = Some(v.parse().map_err(|_| {
                Refusal::Words(format!(
                    "bad router-address `{v}` (expected an IP address such as 0.0.0.0)"
                ))
            })?);
            Ok(())
        },
        |a| a.router_address.map(|r| r.to_string())
    ),
    row!(
        "balance",
        "balance",
        String,
        |a, v, _f| {
            a.balance = BalanceArg::from_str(&v, false).map_err(|_| {
                Refusal::Words(format!(
                    "bad balance `{v}` (expected round-robin or least-connections)"
                ))
            })?;
            Ok(())
        },
        |a| named(&a.balance)
    ),
    row!(plain "exit-on-crash", "exit_on_crash", bool, exit_on_crash),
    row!(
        "restart",
        "restart",
        String,
        |a, v, _f| {
            a.restart = values::restart(&v).map_err(Refusal::Value)?;
            Ok(())
        },
        |a| Some(a.restart.to_string())
    ),
    row!(plain "restart-cap", "restart_cap", f64, restart_cap),
    row!(plain "boot-timeout", "boot_timeout", f64, boot_timeout),
    row!(
        "memory-limit",
        "memory_limit",
        String,
        |a, v, _f| {
            a.memory_limit = values::memory_limit(&v).map_err(Refusal::Value)?;
            Ok(())
        },
        |a| Some(a.memory_limit.to_string())
    ),
    row!(
        "color",
        "color",
        String,
        |a, v, _f| {
            a.output.color = ColorChoice::from_str(&v, false).map_err(|_| {
                Refusal::Words(format!("bad color `{v}` (expected auto, always or never)"))
            })?;
            Ok(())
        },
        |a| named(&a.output.color)
    ),
    row!(plain "no-timestamp", "no_timestamp", bool, output.no_timestamp),
    row!(
        "log-format",
        "log_format",
        String,
        |a, v, _f| {
            a.output.log_format = LogFormatArg::from_str(&v, false).map_err(|_| {
                Refusal::Words(format!(
                    "bad log-format `{v}` (expected default, heroku or json)"
                ))
            })?;
            Ok(())
        },
        |a| named(&a.output.log_format)
    ),
];

/// The setting hkrun.toml's `key` names (`drains` is `drain`'s other name).
pub(crate) fn in_file(key: &str) -> Option<&'static Setting> {
    let key = if key == "drains" { "drain" } else { key };
    SETTINGS.iter().find(|s| s.in_file && s.key == key)
}

/// Each setting `start` would run with, its value and where it came from, highest
/// first: `flag`, its `HKRUN_*` variable (clap's value source in `given`, the
/// subcommand's matches), the settings file (the keys it set), app.json's formation, or
/// `default`; a setting nothing set is left out.
pub(crate) fn provenance(
    options: &StartOptions,
    given: &ArgMatches,
    app_json_formation: Option<String>,
) -> Vec<(&'static str, String, String)> {
    let command = <StartArgs as clap::Args>::augment_args(clap::Command::new("start"));
    let file = options.file.as_ref().map(|p| p.display().to_string());
    let mut rows = Vec::new();
    for setting in SETTINGS {
        let source = (given.try_contains_id(setting.id).unwrap_or(false))
            .then(|| given.value_source(setting.id))
            .flatten();
        let origin = match source {
            Some(ValueSource::CommandLine) => Some("flag".to_owned()),
            Some(ValueSource::EnvVariable) => command
                .get_arguments()
                .find(|a| a.get_id() == setting.id)
                .and_then(|a| a.get_env())
                .map(|e| e.to_string_lossy().into_owned()),
            _ if options.from_file.contains(&setting.key) => file.clone(),
            Some(ValueSource::DefaultValue) => Some("default".to_owned()),
            _ => None,
        };
        let row = match (origin, (setting.show)(&options.args)) {
            (Some(origin), Some(value)) => Some((value, origin)),
            // The formation has no default: below the flags, `HKRUN_FORMATION` and the
            // file, app.json's.
            _ if setting.key == "formation" && options.args.types.is_empty() => app_json_formation
                .clone()
                .map(|spec| (spec, "app.json".to_owned())),
            _ => None,
        };
        if let Some((value, origin)) = row {
            rows.push((setting.key, value, origin));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// The table and `start`'s flags name the same settings, each key the flag's long
    /// name: a flag added without its row (or a row without its flag) fails here.
    #[test]
    fn every_flag_of_start_has_its_row_and_every_row_its_flag() {
        let cli = crate::cli::Cli::command();
        let start = cli.find_subcommand("start").expect("start");
        let flags: Vec<(&str, &str)> = start
            .get_arguments()
            .filter_map(|a| Some((a.get_long()?, a.get_id().as_str())))
            .filter(|(long, _)| !["help", "config", "socket", "dyno"].contains(long))
            .collect();
        let rows: Vec<(&str, &str)> = SETTINGS.iter().map(|s| (s.key, s.id)).collect();
        assert_eq!(flags, rows);
    }
}
