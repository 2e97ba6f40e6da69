//! Resolving: the formation, the router, the process types and each dyno's spec, from
//! the app and the options, into a `StartConfig`; what it refuses, in `checked`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;
use super::procfile::ProcfileError;
use super::settings::StartOptions;
use crate::config::settings::args::{ColorChoice, FormationArgs, OutputArgs, StartArgs};
use crate::dyno::RELEASE;
use crate::logs::Style;
use crate::plan::formation::{self, FormationSpec, Quantity};
use crate::plan::policy::{MemoryLimit, PerType, RestartPolicy};
use crate::plan::{AppPlan, DynoSpec, ProcessType, Role, TypeRules, ports};

use super::*;

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
    let default_size = args.dyno_size;
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
        (Some(spec), _) => Some(spec.0.parse::<FormationSpec>()?),
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
    /// How the router speaks, spreads requests and logs them.
    pub router: crate::router::Settings,
    /// The pages the HTTP router answers with itself.
    pub pages: crate::router::Pages,
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
    pub fn checked(mut app: App, options: &StartOptions) -> Result<Self, ConfigError> {
        let args = &options.args;
        let pages = router_pages(&mut app);
        let plans = plans(&app, &args.formation, &args.types)?;
        let router = router(&plans, app.base_port, args.no_router)?;
        let release = if args.no_release {
            None
        } else {
            app.procfile().release().map(|e| e.command.clone())
        };
        let grace = args.timeout.0;
        let restart_cap = args.restart_cap.0;
        let boot_timeout = args.boot_timeout.0;
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
                value: (args.formation.formation.as_ref())
                    .map_or_else(|| args.types.join(" "), |f| f.0.clone()),
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
            router: crate::router::Settings {
                mode: args.router.into(),
                balance: args.balance.into(),
                log: args.router_log.into(),
                request_timeout: Some(args.request_timeout.0).filter(|t| !t.is_zero()),
                max_requests: args.max_requests.0,
            },
            pages,
            style,
            quiet: args.quiet.clone(),
            log_files: log_files(args)?,
            drains: args.drain.clone(),
        })
    }
}

/// The router's own pages: `ERROR_PAGE_URL` and `MAINTENANCE_PAGE_URL`, as on Heroku (the
/// env files', else hkrun's environment), each a file: `file:///path`, or a path from the
/// app root. One that cannot be read is said once, and hkrun's page is served instead.
fn router_pages(app: &mut App) -> crate::router::Pages {
    let mut pages = crate::router::Pages::default();
    for (name, page) in [
        ("ERROR_PAGE_URL", &mut pages.error),
        ("MAINTENANCE_PAGE_URL", &mut pages.maintenance),
    ] {
        let Some(url) = app
            .env
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
            .filter(|u| !u.trim().is_empty())
        else {
            continue;
        };
        if url.starts_with("http://") || url.starts_with("https://") {
            app.warnings.push(format!(
                "{name} is a web address ({url}): hkrun serves its page from a file (file:///PATH or a path in the app); its own page is served"
            ));
            continue;
        }
        let path = app.root.join(url.strip_prefix("file://").unwrap_or(&url));
        match std::fs::read(&path) {
            Ok(bytes) => *page = bytes.into(),
            Err(err) => app.warnings.push(format!(
                "{name}: cannot read {}: {err}; hkrun's own page is served",
                path.display()
            )),
        }
    }
    pages
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

/// `--log-dir`, `--log-max-size` and `--log-keep`, checked.
pub(super) fn log_files(
    args: &StartArgs,
) -> Result<Option<crate::logs::files::LogFiles>, ConfigError> {
    let Some(dir) = &args.log_dir else {
        return Ok(None);
    };
    crate::logs::files::check_folder(dir).map_err(|source| ConfigError::UnsafeLogDir {
        dir: dir.clone(),
        source,
    })?;
    Ok(Some(crate::logs::files::LogFiles {
        dir: dir.clone(),
        max_size: args.log_max_size.0,
        keep: args.log_keep.0,
    }))
}

/// Colour only on a terminal, unless `TERM=dumb` or `NO_COLOR` says otherwise, or the
/// user chose explicitly.
pub(super) fn use_color(output: &OutputArgs) -> bool {
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
