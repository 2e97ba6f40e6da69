//! One function per subcommand: load what it needs, do it, return an exit code.

pub(crate) mod client;
pub(crate) mod config_vars;
pub(crate) mod export;
pub(crate) mod top;

use std::fmt::Write as _;
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{CheckArgs, CompletionsArgs, OpenArgs, RunArgs, StartArgs};
use crate::config::{self, App, StartConfig, env};
use crate::control::socket::{self, SocketError};
use crate::dyno::{Exit, Slot};
use crate::errors::{self, Error};
use crate::os::{self, process};
use crate::supervisor::runtime;

fn warn_all(app: &App) {
    for warning in &app.warnings {
        errors::warn(warning);
    }
}

/// `start`'s (or `check`'s) settings: `args` as flags and `HKRUN_*` variables gave them
/// (`given`: the subcommand's matches), then the settings file's where they said nothing.
fn configured(
    args: &StartArgs,
    given: &clap::ArgMatches,
) -> Result<config::settings::StartOptions, Error> {
    let root = config::app_root(args.files.root.as_deref(), args.files.procfile.as_deref());
    Ok(
        match config::settings::Settings::find(args.config.as_deref(), &root)? {
            Some((path, settings)) => settings.apply(
                &path,
                &|id| config::settings::given_in(given, id),
                args.clone(),
            )?,
            None => config::settings::StartOptions::new(args.clone()),
        },
    )
}

/// `hkrun start`, with the settings file's defaults where flags and `HKRUN_*` variables
/// said nothing.
pub(crate) fn start_configured(args: &StartArgs, matches: &clap::ArgMatches) -> Result<i32, Error> {
    let given = matches
        .subcommand_matches("start")
        .expect("the command line is start's");
    start(&configured(args, given)?)
}

/// `hkrun start`.
pub(crate) fn start(options: &config::settings::StartOptions) -> Result<i32, Error> {
    process::close_inherited_on_exec();
    if let Err(err) = process::unblock_signals() {
        tracing::warn!(%err, "cannot unblock signals; dynos may start with some blocked");
    }
    let args = &options.args;
    let config = StartConfig::resolve(options)?;
    warn_all(&config.app);
    let path = socket::path(args.socket.as_deref(), &config.app.root);
    // One supervisor per app folder, whatever its socket; held until hkrun exits.
    let _root = socket::claim_root(&config.app.root)?;
    // Claimed before anything starts, and removed when `_socket` drops after the run.
    let (listener, _socket) = match socket::claim(&path, &config.app.root) {
        Ok((listener, file)) => (Some(listener), Some(file)),
        // The app runs all the same, as in a read-only folder.
        Err(err @ SocketError::PathTooLong { .. }) => {
            errors::warn(format_args!(
                "no control socket ({err}); choose a shorter path with --socket or HKRUN_SOCKET"
            ));
            (None, None)
        }
        // A read-only app folder (a locked-down container) still runs, uncontrolled.
        Err(SocketError::NotCreated { path, source })
            if matches!(
                source.raw_os_error(),
                Some(libc_errno::EROFS | libc_errno::EACCES)
            ) =>
        {
            errors::warn(format_args!(
                "no control socket ({}: {source}); choose a writable path with --socket or HKRUN_SOCKET",
                path.display()
            ));
            (None, None)
        }
        Err(err) => return Err(err.into()),
    };
    // After the claim: a second start of a running app hears "already running", not
    // that its ports are taken.
    let web_ports: Vec<(u16, Slot)> = config
        .plan
        .dynos
        .iter()
        .filter(|d| d.role.is_web())
        .filter_map(|d| Some((d.spec.port?, d.spec.slot.clone())))
        .collect();
    if let Some((port, slot)) = os::net::first_taken(&web_ports) {
        return Err(Error::PortInUse {
            port: *port,
            dyno: slot.to_string(),
        });
    }
    let router = match config.plan.router {
        // On loopback unless the user chose the address: it widens to 0.0.0.0 once a web
        // dyno listens there (`Effect::WidenRouter`).
        Some(port) => Some(
            os::net::listen_widenable(std::net::SocketAddr::new(
                config
                    .plan
                    .router_address
                    .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
                port,
            ))
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    Error::PortInUse {
                        port,
                        dyno: "the router".into(),
                    }
                } else {
                    Error::Setup {
                        what: "listen on the router's port",
                        source: e,
                    }
                }
            })?,
        ),
        None => None,
    };
    let metrics = (args.metrics.as_ref().map(|a| a.0.as_str()))
        .map(|addr| http_listener(addr, "--metrics", "the metrics endpoint (--metrics)"))
        .transpose()?;
    let dashboard = (args.dashboard.as_ref().map(|a| a.0.as_str()))
        .map(|addr| http_listener(addr, "--dashboard", "the dashboard (--dashboard)"))
        .transpose()?;
    let code = runtime::run(
        config,
        listener,
        runtime::Listeners {
            router,
            metrics,
            dashboard,
        },
    )
    .map_err(|runtime::SetupError { what, source }| Error::Setup { what, source })?;
    Ok(code)
}

/// The listeners of `--metrics ADDR` or `--dashboard ADDR`: `HOST:PORT` (a host name at
/// each address it resolves to), or a port alone on 127.0.0.1 (on loopback unless an
/// address or a name is given).
fn http_listener(
    addr: &str,
    flag: &'static str,
    what: &'static str,
) -> Result<crate::http::Bound, Error> {
    use crate::http::BindError;
    crate::http::bind(addr).map_err(|e| match e {
        BindError::Malformed => Error::BadFlag {
            flag,
            value: addr.to_owned(),
            reason: "expected HOST:PORT, such as 127.0.0.1:9100 or localhost:9100, or a port",
        },
        BindError::Unresolved(_) => Error::BadFlag {
            flag,
            value: addr.to_owned(),
            reason: "the host name does not resolve (expected HOST:PORT, such as \
                     127.0.0.1:9100 or localhost:9100, or a port)",
        },
        BindError::InUse(at) => Error::AddressInUse {
            addr: at.to_string(),
            what,
        },
        BindError::Other(source) => Error::Setup {
            what: if flag == "--metrics" {
                "listen for /metrics"
            } else {
                "listen for the dashboard"
            },
            source,
        },
    })
}

mod libc_errno {
    pub(super) const EROFS: i32 = nix::errno::Errno::EROFS as i32;
    pub(super) const EACCES: i32 = nix::errno::Errno::EACCES as i32;
}

/// `hkrun check`, with the settings `start` would apply, and where each of `start`'s
/// settings comes from.
pub(crate) fn check_configured(args: &CheckArgs, matches: &clap::ArgMatches) -> Result<i32, Error> {
    let given = matches
        .subcommand_matches("check")
        .expect("the command line is check's");
    let options = configured(&args.start, given)?;
    // Whatever `start` would refuse, `check` does, by the same code (app.json's secrets
    // left unmade).
    StartConfig::checked(App::load(&options.args.files, false)?, &options)?;
    check(&options.args)?;

    // Where each of start's settings comes from, highest first.
    let app = App::load(&options.args.files, false)?;
    let app_json_formation = app.app_json.as_ref().and_then(|(_, a)| a.formation());
    let mut rows = config::settings::table::provenance(&options, given, app_json_formation);
    // A plain app's check reads as it always has: the settings show once something
    // besides flags and defaults sets one, or when asked.
    if !args.settings && rows.iter().all(|(_, _, o)| o == "flag" || o == "default") {
        rows.clear();
    }
    let key_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let value_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let mut text = String::new();
    if !rows.is_empty() {
        text.push_str(
            "settings (flags, then HKRUN_* variables, then hkrun.toml, then app.json, then defaults):\n",
        );
    }
    for (key, value, origin) in rows {
        let _ = writeln!(text, "  {key:<key_width$}  {value:<value_width$}  {origin}");
    }
    if let Some((path, a)) = &app.app_json {
        let addons: Vec<String> = a
            .addons
            .iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other
                    .get("plan")
                    .and_then(|p| p.as_str())
                    .map_or_else(|| other.to_string(), str::to_owned),
            })
            .collect();
        if !addons.is_empty() {
            let _ = writeln!(
                text,
                "{}: add-ons hkrun does not provide: {}",
                path.display(),
                addons.join(", ")
            );
        }
    }
    errors::print_out(&text)?;
    Ok(0)
}

/// `hkrun check`: validates and prints the plan, starting nothing.
pub(crate) fn check(args: &StartArgs) -> Result<i32, Error> {
    let app = App::load(&args.files, false)?;
    warn_all(&app);
    let plans = config::plans(&app, &args.formation, &args.types)?;
    let router = config::router(&plans, app.base_port, args.no_router)?;
    let types = config::process_types(&plans, router.is_some(), &config::Policies::default());
    let dynos = config::dynos(&types, &plans, app.base_port)?;
    let procfile = app.procfile();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "valid procfile detected ({})",
        procfile.names().join(", ")
    );
    let release = procfile.release().filter(|_| !args.no_release);
    let width = dynos
        .iter()
        .map(|d| d.spec.slot.to_string().len())
        .chain([9])
        .max()
        .unwrap_or(9);
    if let Some(entry) = release {
        let _ = writeln!(
            text,
            "{:<width$}  {:<10}  {}",
            "release.1", "release", entry.command
        );
    }
    if let Some(port) = router {
        let port = format!("PORT={port}");
        let _ = writeln!(
            text,
            "{:<width$}  {port:<10}  (hkrun's router, in front of web)",
            "router"
        );
    }
    for dyno in dynos.iter().map(|d| &d.spec) {
        let port = dyno.port.map(|p| format!("PORT={p}")).unwrap_or_default();
        let _ = writeln!(
            text,
            "{:<width$}  {port:<10}  {}",
            dyno.slot.to_string(),
            dyno.command
        );
    }
    errors::print_out(&text)?;
    Ok(0)
}

/// `hkrun run`: one process attached to the terminal, as `run.1`, with the app's env.
pub(crate) fn run(args: &RunArgs) -> Result<i32, Error> {
    let mut app = App::load(&args.files, true)?;
    app.generate_secrets()?;
    warn_all(&app);
    let entry = match args.command.as_slice() {
        [one] => app.procfile.as_ref().and_then(|p| p.get(one)),
        _ => None,
    };
    let mut command = match (entry, args.command.as_slice()) {
        (Some(entry), _) => shell(&entry.command),
        (None, [line]) => shell(line),
        (None, [program, rest @ ..]) => {
            let mut command = Command::new(program);
            command.args(rest);
            command
        }
        (None, []) => unreachable!("clap requires a command"),
    };
    let shown = args.command.join(" ");
    crate::os::process::without_settings(&mut command);
    command
        .envs(env::for_dyno(&app.env, "run.1", Some(app.base_port)))
        .current_dir(&app.root)
        .stdin(Stdio::inherit());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Setup {
            what: "start the runtime",
            source,
        })?;
    runtime.block_on(async move {
        let setup = |what| move |source| Error::Setup { what, source };
        // The terminal sends SIGINT and SIGQUIT to the child as well: hkrun only waits.
        // SIGTERM and SIGHUP come for hkrun alone, so they are passed on.
        let mut sigint = signal(SignalKind::interrupt()).map_err(setup("handle SIGINT"))?;
        let mut sigquit = signal(SignalKind::quit()).map_err(setup("handle SIGQUIT"))?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(setup("handle SIGTERM"))?;
        let mut sighup = signal(SignalKind::hangup()).map_err(setup("handle SIGHUP"))?;
        let mut child = command.spawn().map_err(|source| Error::CannotRun { command: shown, source })?;
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let mut wait = tokio::task::spawn_blocking(move || child.wait());
        loop {
            tokio::select! {
                status = &mut wait => {
                    let status = status
                        .map_err(|e| Error::Setup { what: "wait for the command", source: e.into() })?
                        .map_err(setup("wait for the command"))?;
                    return Ok(exit_code(status));
                }
                _ = sigint.recv() => {}
                _ = sigquit.recv() => {}
                _ = sigterm.recv() => process::signal_process(pid, Signal::SIGTERM),
                _ = sighup.recv() => process::signal_process(pid, Signal::SIGHUP),
            }
        }
    })
}

fn shell(line: &str) -> Command {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(process::exec_form(line));
    command
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal().map(Signal::try_from)) {
        (Some(code), _) => code,
        (None, Some(Ok(signal))) => Exit::Signaled(signal).code(),
        (None, _) => 1,
    }
}

/// `hkrun open [PATH]`: the URL web is reached at, as `start` would lay it out.
pub(crate) fn open(args: &OpenArgs) -> Result<i32, Error> {
    let app = App::load(&args.files, false)?;
    let plans = config::plans(&app, &crate::cli::FormationArgs::default(), &[])?;
    let port = match config::router(&plans, app.base_port, args.no_router)? {
        Some(router) => router,
        None => {
            let web = plans
                .iter()
                .find(|p| p.name == config::WEB)
                .ok_or_else(|| crate::plan::formation::FormationError::UnknownType {
                    name: config::WEB.to_owned(),
                    known: app.procfile().names().join(", "),
                })?;
            crate::plan::ports::dyno_port(app.base_port, web.index, 1, false, "web.1")?
        }
    };
    let path = args.path.trim_start_matches('/');
    let url = format!("http://127.0.0.1:{port}/{path}");
    errors::print_out(&format!("{url}\n"))?;
    // `$BROWSER`, as `xdg-open` and Python's webbrowser read it: only where one is named.
    if let Some(browser) = std::env::var_os("BROWSER").filter(|b| !b.is_empty()) {
        let _ = Command::new(browser)
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
    Ok(0)
}

/// `hkrun completions SHELL`, from the clap definitions.
pub(crate) fn completions(args: &CompletionsArgs) -> Result<i32, Error> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    clap_complete::generate(
        args.shell,
        &mut crate::cli::Cli::command(),
        "hkrun",
        &mut out,
    );
    errors::print_out(&String::from_utf8_lossy(&out))?;
    Ok(0)
}

/// `hkrun man`, from the clap definitions.
pub(crate) fn man() -> Result<i32, Error> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    clap_mangen::Man::new(crate::cli::Cli::command())
        .render(&mut out)
        .map_err(|source| Error::Setup {
            what: "render the man page",
            source,
        })?;
    errors::print_out(&String::from_utf8_lossy(&out))?;
    Ok(0)
}
