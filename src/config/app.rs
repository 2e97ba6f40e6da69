//! Loading: the Procfile and the env files read into an `App` (and app.json's secrets
//! made), the app root found.

use std::path::{Path, PathBuf};

use super::ConfigError;
use super::env::{self, Vars};
use super::procfile::Procfile;
use crate::config::settings::args::FileArgs;
use crate::plan::ports;

use super::*;

/// The app on disk: where it is, its Procfile and its environment.
#[derive(Debug)]
pub struct App {
    /// Where dynos run.
    pub root: PathBuf,
    /// The Procfile as the user named it (for messages).
    pub procfile_path: PathBuf,
    /// `None` only where a Procfile is optional (`hkrun run CMD`) and there is none.
    pub procfile: Option<Procfile>,
    /// What the env files set, later files winning. Children get hkrun's environment
    /// with this on top, so variables hkrun cannot read as UTF-8 still pass through.
    pub env: Vars,
    /// The env files read, in order.
    pub env_files: Vec<PathBuf>,
    /// The env files given with `-e` (none: the app root's `.env`).
    pub env_given: Vec<PathBuf>,
    /// `app.json`, where the app has one.
    pub app_json: Option<(PathBuf, app_json::AppJson)>,
    /// The base port: `-p`, the env files' PORT, the inherited PORT, or 5000.
    pub base_port: u16,
    /// Things worth saying that do not stop hkrun, each one line.
    pub warnings: Vec<String>,
    /// What the environment takes of exec's room, for hkrun.toml's per-type variables.
    pub(crate) exec_room: ExecRoom,
}

impl App {
    /// Loads the Procfile and the env files. A missing Procfile is an error unless
    /// `procfile_optional`.
    pub fn load(files: &FileArgs, procfile_optional: bool) -> Result<Self, ConfigError> {
        let procfile_path = match (&files.procfile, &files.root) {
            (Some(path), _) => path.clone(),
            (None, Some(root)) => root.join("Procfile"),
            (None, None) => PathBuf::from("Procfile"),
        };
        let root = app_root(files.root.as_deref(), Some(&procfile_path));
        let mut warnings = Vec::new();
        let procfile = match std::fs::read(&procfile_path) {
            Ok(bytes) => {
                let procfile = Procfile::parse(&bytes).map_err(|source| ConfigError::Procfile {
                    path: procfile_path.clone(),
                    source,
                })?;
                for warning in &procfile.warnings {
                    let at = warning.line().map(|l| format!(":{l}")).unwrap_or_default();
                    warnings.push(format!("{}{at}: {warning}", procfile_path.display()));
                }
                Some(procfile)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && procfile_optional => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::NoProcfile {
                    path: procfile_path,
                });
            }
            Err(source) => {
                return Err(ConfigError::ReadProcfile {
                    path: procfile_path,
                    source,
                });
            }
        };
        let env_files = env_files(&files.env, &root);
        let parsed = read_env_files(&env_files)?;
        let mut env = env::merge([], parsed.iter().map(Vec::as_slice));
        // app.json's defaults, below the env files and the environment.
        let app_json = app_json::AppJson::find(&root)?;
        if let Some((path, app_json)) = &app_json {
            app_json.fill(path, &mut env, &inherited_vars())?;
        }
        let exec_room = exec_room(env_files.iter().zip(&parsed), app_json.as_ref())?;
        check_exec_limits(&procfile_path, procfile.as_ref(), &exec_room)?;
        let inherited_port = std::env::var("PORT").ok();
        let base_port = ports::base_port(
            files.port,
            env.get("PORT").map(String::as_str),
            inherited_port.as_deref(),
        )?;
        Ok(Self {
            root,
            procfile_path,
            procfile,
            env,
            env_files,
            env_given: files.env.clone(),
            app_json,
            base_port,
            warnings,
            exec_room,
        })
    }

    /// Makes the config vars app.json's `generator: "secret"` asks for and nothing sets,
    /// and keeps them in the env file (the first named, else `.env`), as Heroku makes them
    /// once at the app's creation. `start` and `run` call it; `check` and `export` leave
    /// them unset.
    pub fn generate_secrets(&mut self) -> Result<(), ConfigError> {
        let Some((_, app_json)) = &self.app_json else {
            return Ok(());
        };
        let keys = app_json.to_generate(&self.env, &inherited_vars());
        if keys.is_empty() {
            return Ok(());
        }
        let path = match self.env_files.first() {
            Some(first) => first.clone(),
            None if self.root == Path::new(".") => PathBuf::from(".env"),
            None => self.root.join(".env"),
        };
        let mut file = env_file::EnvFile::load(&path)?;
        for key in &keys {
            let value = app_json::secret().map_err(|source| ConfigError::Setup {
                what: "read /dev/urandom",
                source,
            })?;
            file.set(key, &value)?;
            self.env.insert(key.clone(), value);
        }
        file.save().map_err(|source| ConfigError::WriteEnv {
            path: path.clone(),
            source,
        })?;
        self.warnings.push(format!(
            "{}: generated {} (app.json's generator: \"secret\")",
            path.display(),
            keys.join(", ")
        ));
        if !self.env_files.contains(&path) {
            self.env_files.push(path);
        }
        Ok(())
    }

    /// The Procfile, which `load(_, false)` guarantees.
    pub fn procfile(&self) -> &Procfile {
        self.procfile
            .as_ref()
            .expect("loaded with the Procfile required")
    }
}

/// The env files to read: those given with `-e`, else the app root's `.env` when there
/// is one (read again on `config:set`, it may have appeared since the start).
pub fn env_files(given: &[PathBuf], root: &Path) -> Vec<PathBuf> {
    if !given.is_empty() {
        return given.to_vec();
    }
    // Shown as `.env`, not `./.env`, when the app is the current directory.
    let default = if root == Path::new(".") {
        PathBuf::from(".env")
    } else {
        root.join(".env")
    };
    // Optional when absent; anything else by that name (a folder) is read, and so refused
    // with its name, rather than silently ignored.
    Some(default)
        .filter(|p| p.symlink_metadata().is_ok())
        .into_iter()
        .collect()
}

/// Each env file's variables, in order. `$NAME` in a file sees the inherited environment
/// and earlier files, as bash sourcing them in order would (README).
pub(super) fn read_env_files(files: &[PathBuf]) -> Result<Vec<Vec<env::Var>>, ConfigError> {
    let mut scope = inherited_vars();
    let mut parsed = Vec::new();
    for path in files {
        let vars = env::load_file(path, &scope)?;
        scope.extend(vars.iter().map(|v| (v.key.clone(), v.value.clone())));
        parsed.push(vars);
    }
    Ok(parsed)
}

/// The inherited environment, where it is UTF-8.
pub(crate) fn inherited_vars() -> Vars {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// The env files read again, merged and with app.json's defaults under them, as at the
/// start (`config:set` on a running app); refused, as at the start, when exec could never
/// pass a value to a dyno, or the whole environment with `longest`, the longest command
/// (its type, its length).
pub fn load_env(
    files: &[PathBuf],
    root: &Path,
    longest: Option<(&str, usize)>,
) -> Result<Vars, ConfigError> {
    let parsed = read_env_files(files)?;
    let app_json = app_json::AppJson::find(root)?;
    let room = exec_room(files.iter().zip(parsed.iter()), app_json.as_ref())?;
    if let Some((dyno, command)) = longest {
        room.check_total(dyno, command)?;
    }
    let mut env = env::merge([], parsed.iter().map(Vec::as_slice));
    if let Some((path, app_json)) = &app_json {
        app_json.fill(path, &mut env, &inherited_vars())?;
    }
    Ok(env)
}

/// The app root, where dynos run and the control socket is: `-d`, else the Procfile's
/// folder, else the current directory.
pub fn app_root(root: Option<&Path>, procfile: Option<&Path>) -> PathBuf {
    match (root, procfile.and_then(Path::parent)) {
        (Some(root), _) => root.to_path_buf(),
        (None, Some(parent)) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
