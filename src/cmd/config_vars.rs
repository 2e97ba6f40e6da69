//! `hkrun config`, `config:get`, `config:set` and `config:unset`: Heroku's config vars,
//! kept in the app's env file (README, "Config vars"). A change restarts the running
//! app's dynos, which read the env files again, as Heroku restarts an app on
//! `config:set`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use super::client;
use crate::cli::{ConfigArgs, ConfigFileArgs, ConfigGetArgs, ConfigSetArgs, ConfigUnsetArgs};
use crate::config::env_file::{self, EnvFile};
use crate::config::{self};
use crate::errors::{self, Error};

/// How long a change waits for another one to the same env file to finish.
const TURN_WAIT: Duration = Duration::from_secs(5);

/// The env file named, or the app root's `.env`, and the app's name.
fn env_path(args: &ConfigFileArgs) -> (PathBuf, String) {
    let root = config::app_root(
        args.control.root.as_deref(),
        args.control.procfile.as_deref(),
    );
    let path = match &args.env {
        Some(path) => path.clone(),
        None if root == std::path::Path::new(".") => PathBuf::from(".env"),
        None => root.join(".env"),
    };
    (path, config::app_name(&root))
}

/// The env file named, or the app root's `.env`, read.
fn open(args: &ConfigFileArgs) -> Result<(EnvFile, String), Error> {
    let (path, app) = env_path(args);
    Ok((EnvFile::load(&path)?, app))
}

/// The env file read once it is this command's turn to change it: read, change and
/// replace are one step, so `config:set`s run at once each keep their keys.
fn open_to_change(args: &ConfigFileArgs) -> Result<(EnvFile, env_file::Turn), Error> {
    let (path, _) = env_path(args);
    let turn = match env_file::take_turn(&path, TURN_WAIT) {
        Ok(Some(turn)) => turn,
        Ok(None) => {
            return Err(Error::EnvBusy {
                path,
                waited: TURN_WAIT,
            });
        }
        Err(source) => return Err(Error::WriteEnv { path, source }),
    };
    Ok((EnvFile::load(&path)?, turn))
}

/// `KEY: value` lines, the values lined up (`heroku config`).
fn aligned(vars: &[(&str, &str)]) -> String {
    let width = vars.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    let mut text = String::new();
    for (key, value) in vars {
        let _ = writeln!(text, "{:<width$} {value}", format!("{key}:"));
    }
    text
}

/// `A`, `A and B`, `A, B and C`.
fn listed(keys: &[&str]) -> String {
    match keys {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// `hkrun config [-s | --json]`.
pub(crate) fn show(args: &ConfigArgs) -> Result<i32, Error> {
    let (file, app) = open(&args.file)?;
    let vars = file.vars();
    let text = if args.shell {
        vars.iter()
            .map(|(k, v)| format!("{k}={}\n", env_file::quote(v)))
            .collect()
    } else if args.json {
        let object: serde_json::Map<String, serde_json::Value> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        format!("{}\n", serde_json::Value::Object(object))
    } else if vars.is_empty() {
        format!("{app} has no config vars.\n")
    } else {
        format!("=== {app} Config Vars\n\n{}", aligned(&vars))
    };
    errors::print_out(&text)?;
    Ok(0)
}

/// `hkrun config:get KEY`: the value, or an empty line when it is not set (as Heroku).
pub(crate) fn get(args: &ConfigGetArgs) -> Result<i32, Error> {
    let (file, _) = open(&args.file)?;
    let value = file.get(&args.key).unwrap_or_default();
    let text = match args.shell {
        true => format!("{}={}\n", args.key, env_file::quote(value)),
        false => format!("{value}\n"),
    };
    errors::print_out(&text)?;
    Ok(0)
}

/// `hkrun config:set KEY=VALUE...`.
pub(crate) fn set(args: &ConfigSetArgs) -> Result<i32, Error> {
    // Every pair is checked before the file is touched.
    let mut pairs = Vec::new();
    for pair in &args.pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(Error::ConfigVar(format!(
                "bad config var `{pair}` (expected KEY=value)"
            )));
        };
        env_file::check_key(key).map_err(Error::ConfigVar)?;
        pairs.push((key, value));
    }
    let (mut file, turn) = open_to_change(&args.file)?;
    for (key, value) in &pairs {
        file.set(key, value)?;
    }
    save(&file)?;
    drop(turn);
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
    let mut text = format!(
        "Setting {} in {}... done\n",
        listed(&keys),
        file.path().display()
    );
    let shown: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, *v)).collect();
    text.push_str(&aligned(&shown));
    errors::print_out(&text)?;
    restart(&args.file, file.path(), args.no_restart)
}

/// `hkrun config:unset KEY...`.
pub(crate) fn unset(args: &ConfigUnsetArgs) -> Result<i32, Error> {
    for key in &args.keys {
        env_file::check_key(key).map_err(Error::ConfigVar)?;
    }
    let (mut file, turn) = open_to_change(&args.file)?;
    let mut removed = false;
    for key in &args.keys {
        removed |= file.unset(key)?;
    }
    if removed {
        save(&file)?;
    }
    drop(turn);
    let keys: Vec<&str> = args.keys.iter().map(String::as_str).collect();
    errors::print_out(&format!(
        "Unsetting {} in {}... done\n",
        listed(&keys),
        file.path().display()
    ))?;
    match removed {
        true => restart(&args.file, file.path(), args.no_restart),
        false => Ok(0),
    }
}

fn save(file: &EnvFile) -> Result<(), Error> {
    file.save().map_err(|source| Error::WriteEnv {
        path: file.path().to_owned(),
        source,
    })
}

/// A running app reads its env files again and restarts every dyno; or, if it refuses
/// (a preboot under way, a bad line), keeps its old config vars, and the user is told the
/// file has changed all the same.
fn restart(args: &ConfigFileArgs, path: &std::path::Path, no_restart: bool) -> Result<i32, Error> {
    if no_restart {
        return Ok(0);
    }
    match client::reload(&args.control) {
        Ok(Some(answer)) => errors::print_out(&format!("{answer}\n"))?,
        Ok(None) => {}
        Err(Error::Refused(why)) => {
            let why = why
                .split_once("; try again")
                .map_or(why.as_str(), |(why, _)| why);
            return Err(Error::Refused(format!(
                "{} is changed, but the running app was not restarted and keeps its old config vars ({why}); `hkrun restart` applies them",
                path.display()
            )));
        }
        Err(err) => return Err(err),
    }
    Ok(0)
}
