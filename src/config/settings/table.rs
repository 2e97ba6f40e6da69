//! `start`'s settings listed: each a flag of `start` (but `--config`, `--socket` and
//! `--dyno`), its key in hkrun.toml the flag's long name, in `start --help`'s order; and
//! where each value `check` shows came from.

use clap::ArgMatches;
use clap::parser::ValueSource;

use super::StartOptions;
use super::args::StartArgs;
use super::value::{Field, Value};

/// `start`'s arguments as clap has them, in `start --help`'s order.
fn start_command() -> clap::Command {
    <StartArgs as clap::Args>::augment_args(clap::Command::new("start"))
}

/// Flags that are not settings: the file cannot name them and `check` does not list them.
const NOT_SETTINGS: [&str; 4] = ["help", "config", "socket", "dyno"];

/// Listed by `check`, but not a key of the file: it is where the file is looked for.
const NOT_IN_FILE: [&str; 1] = ["root"];

/// Each setting of `start`: its key (the flag's long name) and clap's id, in `start
/// --help`'s order.
pub(crate) fn all() -> Vec<(String, String)> {
    start_command()
        .get_arguments()
        .filter_map(|a| Some((a.get_long()?.to_owned(), a.get_id().to_string())))
        .filter(|(long, _)| !NOT_SETTINGS.contains(&long.as_str()))
        .collect()
}

/// The setting hkrun.toml's `key` names (`drains` is `drain`'s other name): its key and
/// clap's id.
pub(crate) fn in_file(key: &str) -> Option<(String, String)> {
    let key = if key == "drains" { "drain" } else { key };
    all()
        .into_iter()
        .find(|(long, _)| long == key && !NOT_IN_FILE.contains(&key))
}

/// The keys hkrun.toml may have, for an error naming them.
pub(crate) fn file_keys() -> Vec<String> {
    all()
        .into_iter()
        .map(|(long, _)| long)
        .filter(|long| !NOT_IN_FILE.contains(&long.as_str()))
        .collect()
}

/// Each setting `start` would run with, its value and where it came from, highest
/// first: `flag`, its `HKRUN_*` variable (clap's value source in `given`, the
/// subcommand's matches), the settings file (the keys it set), app.json's formation, or
/// `default`; a setting nothing set is left out.
pub(crate) fn provenance(
    options: &StartOptions,
    given: &ArgMatches,
    app_json_formation: Option<String>,
) -> Vec<(String, String, String)> {
    let command = start_command();
    let file = options.file.as_ref().map(|p| p.display().to_string());
    let mut rows = Vec::new();
    for (key, id) in all() {
        let source = (given.try_contains_id(&id).unwrap_or(false))
            .then(|| given.value_source(&id))
            .flatten();
        let origin = match source {
            Some(ValueSource::CommandLine) => Some("flag".to_owned()),
            Some(ValueSource::EnvVariable) => command
                .get_arguments()
                .find(|a| a.get_id() == id.as_str())
                .and_then(|a| a.get_env())
                .map(|e| e.to_string_lossy().into_owned()),
            _ if options.from_file.contains(&key) => file.clone(),
            Some(ValueSource::DefaultValue) => Some("default".to_owned()),
            _ => None,
        };
        let value = options.args.find("", &id).and_then(Value::show);
        let row = match (origin, value) {
            (Some(origin), Some(value)) => Some((value, origin)),
            // The formation has no default: below the flags, `HKRUN_FORMATION` and the
            // file, app.json's.
            _ if key == "formation" && options.args.types.is_empty() => app_json_formation
                .clone()
                .map(|spec| (spec, "app.json".to_owned())),
            _ => None,
        };
        if let Some((value, origin)) = row {
            rows.push((key, value, origin));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every setting is found by its id, the flag's long name its key.
    #[test]
    fn every_flag_of_start_is_a_setting_found_by_its_id() {
        let mut args = super::super::args::defaults();
        let settings = all();
        assert!(settings.len() > 25, "{settings:?}");
        for (key, id) in &settings {
            assert!(args.find_mut("", id).is_some(), "no field for {key} ({id})");
        }
        assert_eq!(settings.first().map(|s| s.0.as_str()), Some("procfile"));
    }

    #[test]
    fn a_file_value_is_read_by_the_flags_parser_and_shown_as_check_shows_it() {
        let mut args = super::super::args::defaults();
        let folder = Path::new("/app");
        let mut set = |id: &str, value: toml::Value| {
            args.find_mut("", id)
                .expect("a setting")
                .set(value, folder)
                .map_err(|r| format!("{r:?}"))
        };
        set("restart", "never,web=always".into()).unwrap();
        set("log_max_size", "1024M".into()).unwrap();
        set("timeout", 5.into()).unwrap();
        set("env", vec![".env", ".env.local"].into()).unwrap();
        set("no_release", true.into()).unwrap();
        set("balance", "least-connections".into()).unwrap();
        assert!(
            set("balance", "random-ish".into())
                .unwrap_err()
                .contains("expected round-robin, least-connections or random")
        );
        assert!(set("boot_timeout", 0.into()).is_err());
        assert!(set("env", ".env".into()).is_err());
        assert!(set("no_release", "yes".into()).is_err());
        let show = |id: &str| args.find("", id).and_then(Value::show);
        assert_eq!(show("restart").as_deref(), Some("never,web=always"));
        assert_eq!(show("log_max_size").as_deref(), Some("1G"));
        assert_eq!(show("timeout").as_deref(), Some("5"));
        assert_eq!(show("env").as_deref(), Some("/app/.env,/app/.env.local"));
        assert_eq!(show("dyno_size").as_deref(), Some("standard-1x"));
        assert_eq!(show("tty"), None);
    }
}
