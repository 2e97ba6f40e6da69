//! Turns what the user typed, the Procfile and the env files into one resolved config:
//! the `AppPlan` the core runs, and what the driver needs around it.
//!
//! Everything that can be refused is refused here, before anything is spawned.

pub(crate) mod app_json;
pub mod env;
pub(crate) mod env_file;
pub mod error;
pub(crate) mod name;
pub mod procfile;
pub(crate) mod settings;
pub(crate) mod state;
pub(crate) mod text;

pub use name::{APP_NAME_MAX, app_name};

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{ColorChoice, FileArgs, FormationArgs, OutputArgs, StartArgs};
use crate::dyno::RELEASE;
use crate::logs::Style;
use crate::plan::formation::{self, DynoSize, FormationError, FormationSpec, Quantity};
use crate::plan::policy::{MemoryLimit, PerType, RestartPolicy};
use crate::plan::{AppPlan, DynoSpec, ProcessType, Role, TypeRules, ports};
use env::Vars;
pub use error::ConfigError;
use procfile::{Procfile, ProcfileError};
use settings::StartOptions;

/// The process type that gets HTTP traffic, readiness checks and the router.
pub const WEB: &str = "web";

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
fn read_env_files(files: &[PathBuf]) -> Result<Vec<Vec<env::Var>>, ConfigError> {
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
    fn inherited() -> Self {
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
    fn set(&mut self, at: env::Origin, key: &str, value: &str) -> Result<(), env::EnvError> {
        let len = Self::fits(&at, key, value)?;
        self.sizes.insert(key.into(), (len + 1, at));
        Ok(())
    }

    /// Refuses the environment when, with `dyno`'s command (`command` bytes as given to
    /// `sh -c`), it passes the stack's share for exec.
    fn check_total(&self, dyno: &str, command: usize) -> Result<(), env::EnvError> {
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
fn exec_room<'a>(
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
fn check_exec_limits(
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
fn check_type_env(
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
fn exec_total_limit() -> usize {
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

/// Resolves the formation for `start` and `check`.
pub fn plans(
    app: &App,
    args: &FormationArgs,
    types: &[String],
) -> Result<Vec<Quantity>, ConfigError> {
    if app.procfile().types().next().is_none() {
        return Err(ConfigError::Procfile {
            path: app.procfile_path.clone(),
            source: ProcfileError::OnlyRelease,
        });
    }
    let default_size: DynoSize = args.dyno_size.parse()?;
    // Below the flags, `HKRUN_FORMATION` and hkrun.toml (already in `args`): app.json's.
    let from_app_json = match (&args.formation, types.is_empty(), &app.app_json) {
        (None, true, Some((path, app_json))) => app_json.formation().map(|spec| (path, spec)),
        _ => None,
    };
    let in_app_json =
        |e: &dyn std::fmt::Display, path: &PathBuf| app_json::AppJsonError::Formation {
            path: path.clone(),
            message: e.to_string(),
        };
    let spec = match (&args.formation, &from_app_json) {
        (Some(spec), _) => Some(spec.parse::<FormationSpec>()?),
        (None, Some((path, spec))) => Some(
            spec.parse::<FormationSpec>()
                .map_err(|e| in_app_json(&e, path))?,
        ),
        (None, None) if !types.is_empty() => Some(FormationSpec::from_args(types)?),
        (None, None) => None,
    };
    let types: Vec<(&str, &str)> = app
        .procfile()
        .types()
        .map(|e| (e.name.as_str(), e.command.as_str()))
        .collect();
    formation::resolve(spec.as_ref(), &types, default_size).map_err(|e| match &from_app_json {
        Some((path, _)) => in_app_json(&e, path).into(),
        None => e.into(),
    })
}

/// The router's port, when web runs and `--no-router` is not given: the first of web's
/// block.
pub fn router(plans: &[Quantity], base: u16, no_router: bool) -> Result<Option<u16>, ConfigError> {
    match plans.iter().find(|p| p.name == WEB) {
        Some(web) if web.count > 0 && !no_router => Ok(Some(ports::router_port(base, web.index)?)),
        _ => Ok(None),
    }
}

/// How the dynos of each type run, as `start`'s flags say (`check` shows the defaults).
#[derive(Clone, Debug)]
pub struct Policies {
    pub restart: PerType<RestartPolicy>,
    pub memory: PerType<MemoryLimit>,
    /// For web: how long a dyno may take to listen on its PORT (R10).
    pub boot_timeout: Duration,
    /// hkrun.toml's `[types.NAME]`, by type.
    pub rules: BTreeMap<String, TypeRules>,
    /// `--tty`: the types whose dynos run on pseudo-terminals (`all`: every type).
    pub tty: Vec<String>,
    /// `--dyno`: `DYNO` and `PS` of the formation's dynos.
    pub dyno_name: Option<String>,
}

impl Default for Policies {
    fn default() -> Self {
        Self {
            restart: PerType {
                default: RestartPolicy::Always,
                overrides: Vec::new(),
            },
            memory: PerType {
                default: MemoryLimit::On,
                overrides: Vec::new(),
            },
            boot_timeout: Duration::from_secs(60),
            rules: BTreeMap::new(),
            tty: Vec::new(),
            dyno_name: None,
        }
    }
}

/// The Procfile's process types as the plan runs them: `web` gets traffic (behind the
/// router when it runs), each with its size and policies.
pub fn process_types(plans: &[Quantity], router: bool, policies: &Policies) -> Vec<ProcessType> {
    plans
        .iter()
        .map(|plan| {
            let role = if plan.name == WEB {
                Role::Web {
                    behind_router: router,
                }
            } else {
                Role::Other
            };
            let rules = policies.rules.get(&plan.name).cloned().unwrap_or_default();
            ProcessType {
                name: plan.name.clone(),
                command: plan.command.clone(),
                index: plan.index,
                role,
                size: plan.size,
                restart: policies.restart.get(&plan.name),
                memory: policies.memory.get(&plan.name),
                boot_timeout: role
                    .is_web()
                    .then(|| rules.boot_timeout.unwrap_or(policies.boot_timeout)),
                stop: rules.stop,
                env: rules.env,
                after: rules.after,
                terminal: policies.tty.iter().any(|t| t == "all" || *t == plan.name),
                dyno_name: policies.dyno_name.clone(),
            }
        })
        .collect()
}

/// Every dyno of the formation with its port, in start order: foreman's layout, with web
/// one port further along when the router runs.
pub fn dynos(
    types: &[ProcessType],
    plans: &[Quantity],
    base: u16,
) -> Result<Vec<DynoSpec>, ConfigError> {
    let mut dynos = Vec::new();
    for (ty, plan) in types.iter().zip(plans) {
        for n in 1..=plan.count {
            dynos.push(ty.dyno(n, base)?);
        }
    }
    Ok(dynos)
}

/// Everything `hkrun start` needs, checked.
#[derive(Debug)]
pub struct StartConfig {
    pub app: App,
    /// What the core runs.
    pub plan: AppPlan,
    /// How the router spreads connections.
    pub balance: crate::router::Balance,
    pub style: Style,
    /// `--quiet`: process types whose output stdout does not show.
    pub quiet: Vec<String>,
    /// `--log-dir`: the log written to files too.
    pub log_files: Option<crate::logs::files::LogFiles>,
    /// `--drain`: where else every line goes.
    pub drains: Vec<crate::logs::drains::Drain>,
}

impl StartConfig {
    /// `start`'s config: the app loaded, app.json's secrets made, then `checked`.
    pub fn resolve(options: &StartOptions) -> Result<Self, ConfigError> {
        let mut app = App::load(&options.args.files, false)?;
        app.generate_secrets()?;
        Self::checked(app, options)
    }

    /// Everything `start` refuses of its settings and the app before it runs anything,
    /// writing nothing: `check` runs it too, so the two refuse the same (README,
    /// "Settings"). What depends on the machine at the start (a port in use, a host name
    /// that does not resolve) is left to `start`.
    pub fn checked(app: App, options: &StartOptions) -> Result<Self, ConfigError> {
        let args = &options.args;
        let plans = plans(&app, &args.formation, &args.types)?;
        let router = router(&plans, app.base_port, args.no_router)?;
        let release = if args.no_release {
            None
        } else {
            app.procfile().release().map(|e| e.command.clone())
        };
        let grace = seconds("--timeout", args.timeout)?;
        let restart_cap = seconds("--restart-cap", args.restart_cap)?;
        let boot_timeout = seconds("--boot-timeout", args.boot_timeout)?;
        if boot_timeout.is_zero() {
            // No web dyno could ever come up: each would get R10 at once.
            return Err(ConfigError::BadFlag {
                flag: "--boot-timeout",
                value: args.boot_timeout.to_string(),
                reason: "expected a number of seconds above 0",
            });
        }
        let restart = args.restart.clone();
        let memory = args.memory_limit.clone();
        let procfile = app.procfile();
        if let Some(path) = options.rules_from() {
            check_rules(path, &options.rules, &plans)?;
            check_type_env(path, &options.rules, &app)?;
        }
        known_types(
            procfile,
            restart.names().chain(memory.names()).chain(typed_in(args)),
        )?;
        let policies = Policies {
            restart,
            memory,
            boot_timeout,
            rules: options.rules.clone(),
            tty: args.tty.clone().unwrap_or_default(),
            dyno_name: args.dyno.clone(),
        };
        let types = process_types(&plans, router.is_some(), &policies);
        let dynos = dynos(&types, &plans, app.base_port)?;
        if dynos.is_empty() {
            return Err(ConfigError::BadFlag {
                flag: "--formation",
                value: args
                    .formation
                    .formation
                    .clone()
                    .unwrap_or_else(|| args.types.join(" ")),
                reason: "it runs no dynos",
            });
        }
        if let (Some(name), 2..) = (&args.dyno, dynos.len()) {
            return Err(ConfigError::BadFlag {
                flag: "--dyno",
                value: name.clone(),
                reason: "it names the one dyno of a formation, and this one runs more",
            });
        }
        let names = dynos
            .iter()
            .map(|d| d.spec.slot.to_string())
            .chain(release.as_ref().map(|_| format!("{RELEASE}.1")))
            .collect::<Vec<_>>();
        let style = Style {
            strip_ansi: args.output.color == ColorChoice::Never,
            format: args.output.log_format.into(),
            color: use_color(&args.output),
            timestamps: !args.output.no_timestamp,
            width: Style::width_for(names.iter().map(String::as_str)),
        };
        let postdeploy = match &app.app_json {
            Some((path, json)) if !args.no_release => match json.postdeploy() {
                Some(command) => {
                    let state = state::State::read(&app.root).map_err(ConfigError::AppState)?;
                    let procfile = app.procfile();
                    if procfile.names().contains(&crate::dyno::POSTDEPLOY) {
                        return Err(ConfigError::AppState(format!(
                            "{}: scripts.postdeploy runs as postdeploy.1, and the Procfile has a type of that name",
                            path.display()
                        )));
                    }
                    state.postdeploy.is_none().then(|| command.to_owned())
                }
                None => None,
            },
            _ => None,
        };
        if let (Some(path), false) = (options.rules_from(), options.scheduler.is_empty()) {
            if app.procfile().names().contains(&crate::dyno::SCHEDULER) {
                return Err(ConfigError::BadSetting {
                    path: path.to_owned(),
                    key: "[[scheduler]]".into(),
                    reason: "its runs are scheduler.N, and the Procfile has a type of that name"
                        .into(),
                });
            }
        }
        for (flag, addr) in [
            ("--metrics", &args.metrics),
            ("--dashboard", &args.dashboard),
        ] {
            if let Some(addr) = addr {
                listen_address(flag, addr)?;
            }
        }
        let plan = AppPlan {
            release,
            postdeploy,
            scheduler: options.scheduler.clone(),
            dynos,
            types,
            base_port: app.base_port,
            router,
            router_address: args.router_address,
            preboot: router.is_some() && !args.no_preboot,
            grace,
            exit_on_crash: args.exit_on_crash,
            restart_cap,
        };
        Ok(Self {
            app,
            plan,
            balance: args.balance.into(),
            style,
            quiet: args.quiet.clone(),
            log_files: log_files(args)?,
            drains: args
                .drain
                .iter()
                .map(|url| {
                    url.parse().map_err(|reason| ConfigError::BadDrain {
                        url: crate::logs::drains::masked(url),
                        reason,
                    })
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The process types `--quiet` and `--tty` name (`all` aside).
pub fn typed_in(args: &StartArgs) -> impl Iterator<Item = &str> {
    args.quiet.iter().map(String::as_str).chain(
        args.tty
            .iter()
            .flatten()
            .map(String::as_str)
            .filter(|t| *t != "all"),
    )
}

/// Refuses a name that is not a process type of the Procfile.
pub fn known_types<'a>(
    procfile: &Procfile,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), ConfigError> {
    for name in names {
        if procfile.types().all(|e| e.name != name) {
            let known = procfile
                .types()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(FormationError::UnknownType {
                name: name.to_owned(),
                known,
            }
            .into());
        }
    }
    Ok(())
}

/// hkrun.toml's `[types.NAME]` rules that need the Procfile to check: `after` names
/// types there are and makes no circle, and only web has a boot timeout.
pub fn check_rules(
    path: &Path,
    rules: &BTreeMap<String, TypeRules>,
    plans: &[Quantity],
) -> Result<(), ConfigError> {
    let bad = |key: String, reason: String| ConfigError::BadSetting {
        path: path.to_owned(),
        key,
        reason,
    };
    let known = || {
        plans
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (name, rule) in rules {
        if plans.iter().all(|p| &p.name != name) {
            return Err(bad(
                format!("[types.{name}]"),
                format!(
                    "no process type `{name}` in the Procfile (it has {})",
                    known()
                ),
            ));
        }
        if rule.boot_timeout.is_some() && name != WEB {
            return Err(bad(
                format!("[types.{name}] boot-timeout"),
                "only web has a boot timeout: other types are up once started".into(),
            ));
        }
        for other in &rule.after {
            if plans.iter().all(|p| &p.name != other) {
                return Err(bad(
                    format!("[types.{name}] after"),
                    format!(
                        "no process type `{other}` in the Procfile (it has {})",
                        known()
                    ),
                ));
            }
        }
    }
    // A circle: following `after` from a type leads back to it.
    for start in rules.keys() {
        let mut seen = vec![start.as_str()];
        let mut next: Vec<&str> = rules[start].after.iter().map(String::as_str).collect();
        while let Some(name) = next.pop() {
            if name == start {
                seen.push(start);
                return Err(bad(
                    format!("[types.{start}] after"),
                    format!("a circle: {}", seen.join(" waits for ")),
                ));
            }
            if !seen.contains(&name) {
                seen.push(name);
                next.extend(
                    rules
                        .get(name)
                        .into_iter()
                        .flat_map(|r| r.after.iter().map(String::as_str)),
                );
            }
        }
    }
    Ok(())
}

/// `--log-dir`, `--log-max-size` and `--log-keep`, checked.
fn log_files(args: &StartArgs) -> Result<Option<crate::logs::files::LogFiles>, ConfigError> {
    let Some(dir) = &args.log_dir else {
        return Ok(None);
    };
    let max_size = args.log_max_size;
    if args.log_keep > crate::logs::files::KEEP_AT_MOST {
        return Err(ConfigError::BadFlag {
            flag: "--log-keep",
            value: args.log_keep.to_string(),
            reason: "expected at most 1000 rotated files",
        });
    }
    crate::logs::files::check_folder(dir).map_err(|source| ConfigError::UnsafeLogDir {
        dir: dir.clone(),
        source,
    })?;
    Ok(Some(crate::logs::files::LogFiles {
        dir: dir.clone(),
        max_size,
        keep: args.log_keep,
    }))
}

/// Refuses an address `--metrics` or `--dashboard` could never listen on, whatever the
/// machine: not `HOST:PORT` nor a port.
fn listen_address(flag: &'static str, addr: &str) -> Result<(), ConfigError> {
    crate::http::well_formed(addr).map_err(|_| ConfigError::BadFlag {
        flag,
        value: addr.to_owned(),
        reason: "expected HOST:PORT, such as 127.0.0.1:9100 or localhost:9100, or a port",
    })
}

fn seconds(flag: &'static str, value: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value).map_err(|_| ConfigError::BadFlag {
        flag,
        value: value.to_string(),
        reason: "expected a number of seconds",
    })
}

/// Colour only on a terminal, unless `TERM=dumb` or `NO_COLOR` says otherwise, or the
/// user chose explicitly.
fn use_color(output: &OutputArgs) -> bool {
    color_for(output.color)
}

/// Whether to colour stdout, given `--color`.
pub fn color_for(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn types(names: &[&str]) -> Vec<Quantity> {
        names
            .iter()
            .enumerate()
            .map(|(index, name)| Quantity {
                name: (*name).to_owned(),
                command: format!("run-{name}"),
                index,
                count: 1,
                size: DynoSize::default(),
            })
            .collect()
    }

    fn after(pairs: &[(&str, &[&str])]) -> BTreeMap<String, TypeRules> {
        pairs
            .iter()
            .map(|(name, after)| {
                let rule = TypeRules {
                    after: after.iter().map(|a| (*a).to_owned()).collect(),
                    ..TypeRules::default()
                };
                ((*name).to_owned(), rule)
            })
            .collect()
    }

    /// `check_rules`' refusal, as the user reads it.
    fn refusal(rules: &BTreeMap<String, TypeRules>, plans: &[Quantity]) -> Option<String> {
        check_rules(Path::new("hkrun.toml"), rules, plans)
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn after_chains_pass_and_a_circle_is_named_step_by_step() {
        let plans = types(&["web", "worker", "db", "clock"]);
        let chain = after(&[("web", &["db"]), ("worker", &["db", "web"]), ("clock", &[])]);
        assert_eq!(refusal(&chain, &plans), None);
        let circle = after(&[("web", &["worker"]), ("worker", &["db"]), ("db", &["web"])]);
        assert_eq!(
            refusal(&circle, &plans).as_deref(),
            Some(
                "hkrun.toml: [types.db] after: a circle: db waits for web waits for worker waits for db"
            )
        );
        let itself = after(&[("web", &["web"])]);
        assert_eq!(
            refusal(&itself, &plans).as_deref(),
            Some("hkrun.toml: [types.web] after: a circle: web waits for web")
        );
    }

    #[test]
    fn rules_name_only_the_procfiles_types_and_only_web_has_a_boot_timeout() {
        let plans = types(&["web", "worker"]);
        assert_eq!(
            refusal(&after(&[("web", &["redis"])]), &plans).as_deref(),
            Some(
                "hkrun.toml: [types.web] after: no process type `redis` in the Procfile (it has web, worker)"
            )
        );
        assert_eq!(
            refusal(&after(&[("clock", &[])]), &plans).as_deref(),
            Some(
                "hkrun.toml: [types.clock]: no process type `clock` in the Procfile (it has web, worker)"
            )
        );
        let timed = |name: &str| {
            let rule = TypeRules {
                boot_timeout: Some(Duration::from_secs(5)),
                ..TypeRules::default()
            };
            BTreeMap::from([(name.to_owned(), rule)])
        };
        assert_eq!(refusal(&timed("web"), &plans), None);
        assert_eq!(
            refusal(&timed("worker"), &plans).as_deref(),
            Some(
                "hkrun.toml: [types.worker] boot-timeout: only web has a boot timeout: other types are up once started"
            )
        );
    }

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
