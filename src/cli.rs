//! The command line as the user typed it (clap types only).
//!
//! Resolving files, `.env` and defaults into a runnable config is `config`'s job.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::config::settings::args::{
    BalanceArg, ColorChoice, FileArgs, FormationArgs, LogFormatArg, OutputArgs, StartArgs,
};
use crate::logs::LogSource;
use crate::plan::values::Seconds;

/// Run a Procfile app the way Heroku runs it: release first, dynos scaled to a formation,
/// one prefixed log, graceful stops.
#[derive(Debug, Parser)]
#[command(name = "hkrun", version, about, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per run: `start`'s many settings make its variant the largest, which costs
// nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the app: the release phase, then every process type of the formation.
    ///
    /// Example: `hkrun start -m web=2,worker=1`, or `hkrun start web` for one web dyno.
    #[command(alias = "local")]
    Start(StartArgs),
    /// Check the Procfile and env files, and show the dynos `start` would run.
    ///
    /// Example: `hkrun check -m web=2,worker=1`, `hkrun check --settings`.
    Check(CheckArgs),
    /// Run a one-off command (or a Procfile entry by name) with the app's environment.
    ///
    /// Example: `hkrun run rake db:migrate`, `hkrun run 'echo $PORT'`, `hkrun run worker`.
    Run(RunArgs),
    /// Show the running app's dynos: state, since when, pid, port, memory and quota.
    ///
    /// Example: `hkrun ps`, `hkrun ps --json | jq '.types'`.
    Ps(PsArgs),
    /// Change the running formation, Heroku's way.
    ///
    /// Example: `hkrun scale web=3 worker=0 clock+1 web=2:standard-2x`. New dynos start;
    /// removed ones stop gracefully, highest numbers first.
    #[command(alias = "ps:scale")]
    Scale(ScaleArgs),
    /// Restart dynos: types, dynos, globs, or all.
    ///
    /// Each dyno stops, then starts again; `hkrun restart web` returns once the new web
    /// dynos are up, and exits 1 if one does not come up.
    ///
    /// Example: `hkrun restart web`, `hkrun restart worker.2 clock`, `hkrun restart 'work*'`,
    /// `hkrun restart`.
    #[command(aliases = ["ps:restart", "dyno:restart"])]
    Restart(TargetArgs),
    /// Stop dynos: types, dynos, globs, or the whole app.
    ///
    /// A type or dyno leaves the formation until scaled again; with no target the whole
    /// app stops, as on SIGTERM, and the command returns once hkrun has exited.
    ///
    /// Example: `hkrun stop worker.2`, `hkrun stop clock 'web.[23]'`, `hkrun stop`.
    #[command(aliases = ["ps:stop", "ps:kill", "dyno:stop", "dyno:kill"])]
    Stop(TargetArgs),
    /// The running app in a terminal: dynos with state, CPU, restarts and memory against
    /// quota, and the log below.
    ///
    /// Keys: ↑/↓ (or k/j) choose a dyno, r restarts it, s stops it, + and - scale its type,
    /// / shows only its log lines, q quits.
    ///
    /// Example: `hkrun top`, `hkrun top -d ~/apps/shop`.
    Top(TopArgs),
    /// Attach to a `--tty` dyno's terminal: see its output, type into it (a debugger, a
    /// REPL); Ctrl-] detaches, and the dyno keeps running.
    ///
    /// One client at a time per dyno. The dyno must run on a terminal (`start --tty`).
    ///
    /// Example: `hkrun connect web.1`, `hkrun attach console`.
    #[command(alias = "attach")]
    Connect(ConnectArgs),
    /// Send a signal to dynos' process groups, without stopping them.
    ///
    /// The last argument is the signal (`SIGHUP`, `HUP`, `hup` or `1`) unless `-s` gives
    /// it; the dynos are named as `restart` names them.
    ///
    /// Example: `hkrun kill web HUP`, `hkrun kill -s USR1 'work*' clock.1`.
    Kill(KillArgs),
    /// Show the running app's recent log lines, and with --tail follow new ones.
    ///
    /// The supervisor keeps the last 1500 lines.
    ///
    /// Example: `hkrun logs --tail`, `hkrun logs -n 200 --ps web --source app`.
    Logs(LogsArgs),
    /// Show whether the running app is in maintenance mode.
    ///
    /// Example: `hkrun maintenance`.
    Maintenance(MaintenanceArgs),
    /// Put the running app in maintenance mode: every request gets the maintenance page
    /// (`MAINTENANCE_PAGE_URL`, or hkrun's) with 503 and H80; dynos keep running. Kept in
    /// .hkrun-state.toml, so it outlasts a restart of hkrun.
    ///
    /// Example: `hkrun maintenance:on`.
    #[command(name = "maintenance:on")]
    MaintenanceOn(MaintenanceArgs),
    /// Take the running app out of maintenance mode.
    ///
    /// Example: `hkrun maintenance:off`.
    #[command(name = "maintenance:off")]
    MaintenanceOff(MaintenanceArgs),
    /// Show the app's config vars (its .env), as `heroku config` does.
    ///
    /// `-s` prints `KEY=value` lines in .env syntax, which `config:set` and .env files
    /// read (not for a shell's eval).
    ///
    /// Example: `hkrun config`, `hkrun config -s > backup.env`.
    Config(ConfigArgs),
    /// Print one config var's value.
    ///
    /// Example: `hkrun config:get DATABASE_URL`.
    #[command(name = "config:get")]
    ConfigGet(ConfigGetArgs),
    /// Set config vars in the app's .env, then restart the running app's dynos (web
    /// preboot-style) so they get them.
    ///
    /// Example: `hkrun config:set RAILS_ENV=production 'GREETING=hello world'`.
    #[command(name = "config:set", alias = "config:add")]
    ConfigSet(ConfigSetArgs),
    /// Remove config vars from the app's .env, then restart the running app's dynos.
    ///
    /// Example: `hkrun config:unset GREETING OLD_TOKEN`.
    #[command(name = "config:unset", alias = "config:remove")]
    ConfigUnset(ConfigUnsetArgs),
    /// Print the app's URL (the router's, or web.1's without it); with `$BROWSER` set,
    /// open it there.
    ///
    /// Example: `hkrun open /admin`.
    Open(OpenArgs),
    /// Print a completion script for a shell: bash, zsh, fish, elvish or powershell.
    ///
    /// Example: `hkrun completions bash > /etc/bash_completion.d/hkrun`.
    Completions(CompletionsArgs),
    /// Print hkrun's man page (roff).
    ///
    /// Example: `hkrun man > /usr/local/share/man/man1/hkrun.1`.
    Man,
    /// Write the app's formation for another scheduler: kubernetes or systemd.
    ///
    /// Example: `hkrun export kubernetes deploy/k8s --image registry/app:1.4 -m web=3`,
    /// `hkrun export systemd deploy/systemd --app shop`.
    Export(ExportArgs),
}

/// How a client command finds the running supervisor.
#[derive(Clone, Debug, Args)]
pub struct ControlArgs {
    /// The control socket [default: .hkrun.sock in the app root].
    #[arg(long, value_name = "PATH", env = "HKRUN_SOCKET")]
    pub socket: Option<PathBuf>,
    /// The app root [default: the Procfile's folder, or the current one].
    #[arg(short = 'd', long = "root", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The Procfile, whose folder is the app root.
    #[arg(
        short = 'f',
        long = "procfile",
        value_name = "PATH",
        env = "HKRUN_PROCFILE"
    )]
    pub procfile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// `TYPE=N`, `TYPE+N`, `TYPE-N`, optionally with `:SIZE` (`web=2:standard-2x`).
    #[arg(value_name = "CHANGE", required = true)]
    pub changes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// Process types (`web`), dynos (`web.2`) or globs over their names (`'work*'`)
    /// [default: every dyno].
    #[arg(value_name = "TYPE|DYNO|GLOB")]
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// A dyno (`web.1`), or a type that runs one dyno.
    #[arg(value_name = "DYNO")]
    pub dyno: String,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// The signal, instead of the last argument.
    #[arg(short = 's', long = "signal", value_name = "SIGNAL")]
    pub signal: Option<String>,
    /// The dynos (as `restart` names them), then the signal unless `-s` gave it.
    #[arg(value_name = "TYPE|DYNO|GLOB... SIGNAL", required = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// How many past lines to show (at most 1500).
    #[arg(short = 'n', long = "num", value_name = "N", default_value_t = crate::logs::DEFAULT_LINES)]
    pub num: usize,
    /// Keep showing new lines as they come.
    #[arg(short = 't', long)]
    pub tail: bool,
    /// Only this process type (`web`) or dyno (`web.1`).
    #[arg(short = 'p', long = "ps", alias = "dyno", value_name = "TYPE|DYNO")]
    pub ps: Option<String>,
    /// Only the app's lines or only hkrun's (Heroku's `heroku[...]` events).
    #[arg(short = 's', long, value_name = "SOURCE")]
    pub source: Option<LogSourceArg>,
    /// Colour the prefixes: auto, always or never.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub color: ColorChoice,
}

/// `hkrun logs --source`: `logs::LogSource` as typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogSourceArg {
    /// The dynos' own output.
    App,
    /// hkrun's events (Heroku's `heroku[web.1]` lines).
    Heroku,
}

impl From<LogSourceArg> for LogSource {
    fn from(arg: LogSourceArg) -> Self {
        match arg {
            LogSourceArg::App => Self::App,
            LogSourceArg::Heroku => Self::Heroku,
        }
    }
}

/// `check` takes `start`'s settings (flags, `HKRUN_*` variables, the settings file), and
/// shows the plan `start` would run.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub start: StartArgs,
    /// List every setting of `start` and where it comes from, even when only defaults
    /// and flags set them (with hkrun.toml, app.json or an `HKRUN_*` variable, always).
    #[arg(long)]
    pub settings: bool,
}

#[derive(Debug, Args)]
pub struct OpenArgs {
    #[command(flatten)]
    pub files: FileArgs,
    /// Foreman's ports: web.1 on the base port, with no router in front.
    #[arg(long)]
    pub no_router: bool,
    /// A path to add to the URL.
    #[arg(value_name = "PATH", default_value = "/")]
    pub path: String,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// Which env file the config commands read and change, and how they find a running app.
#[derive(Debug, Args)]
pub struct ConfigFileArgs {
    /// The env file [default: .env in the app root].
    #[arg(short = 'e', long = "env", value_name = "FILE")]
    pub env: Option<PathBuf>,
    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub file: ConfigFileArgs,
    /// `KEY=value` lines in .env syntax, quoted where the value needs it.
    #[arg(short = 's', long)]
    pub shell: bool,
    /// A JSON object.
    #[arg(long, conflicts_with = "shell")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConfigGetArgs {
    #[command(flatten)]
    pub file: ConfigFileArgs,
    /// The config var.
    #[arg(value_name = "KEY")]
    pub key: String,
    /// `KEY=value`, quoted where the value needs it.
    #[arg(short = 's', long)]
    pub shell: bool,
}

#[derive(Debug, Args)]
pub struct ConfigSetArgs {
    #[command(flatten)]
    pub file: ConfigFileArgs,
    /// `KEY=value`, one or more.
    #[arg(value_name = "KEY=VALUE", required = true)]
    pub pairs: Vec<String>,
    /// Leave the running app's dynos as they are.
    #[arg(long)]
    pub no_restart: bool,
}

#[derive(Debug, Args)]
pub struct ConfigUnsetArgs {
    #[command(flatten)]
    pub file: ConfigFileArgs,
    /// The config vars to remove.
    #[arg(value_name = "KEY", required = true)]
    pub keys: Vec<String>,
    /// Leave the running app's dynos as they are.
    #[arg(long)]
    pub no_restart: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// kubernetes (a Deployment per process type, a Service for web, a Secret, a Job for
    /// release) or systemd (a target, a template unit per type, a release unit).
    #[arg(value_name = "FORMAT")]
    pub format: String,
    /// The folder to write, which must not exist or be empty (see --force).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub files: FileArgs,
    #[command(flatten)]
    pub formation: FormationArgs,
    /// The app's name, in every object's or unit's name [default: the app root's folder
    /// name].
    #[arg(long = "app", short = 'a', value_name = "NAME")]
    pub app: Option<String>,
    /// (kubernetes) The image that holds the app and hkrun.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Seconds a dyno gets between SIGTERM and SIGKILL when stopping.
    #[arg(
        short = 't',
        long = "timeout",
        value_name = "SECONDS",
        default_value = "30"
    )]
    pub timeout: Seconds,
    /// Replace DIR when it holds an earlier export (never a folder hkrun did not write).
    #[arg(long)]
    pub force: bool,
    /// (kubernetes) Run release as a Helm pre-install and pre-upgrade hook.
    #[arg(long)]
    pub helm_hooks: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub files: FileArgs,
    /// A Procfile entry's name, a shell command line in one argument, or a program and its
    /// arguments.
    #[arg(
        value_name = "COMMAND",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// The exit-code table shown by `hkrun --help` and in the README.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0        a requested stop (SIGTERM, SIGINT, SIGHUP), or every dyno exited 0; any
           command whose stdout was closed
  N        the release phase failed with N; once no dyno is left running (--restart
           on-failure or never), the first non-zero exit code of a dyno; with
           --exit-on-crash, the code of the first dyno to exit (128+signal when a signal
           killed it)
  1        (ps, scale, restart, stop, logs) the supervisor refused the command, or a
           restarted dyno did not come up
  2        the command line was not understood, or a flag's value was refused
  65       the Procfile, an env file, a settings file, app.json, the formation's
           types or a port is malformed
  66       the Procfile or an env file cannot be read
  69       a port the app needs is already in use, or hkrun already runs this app;
           (control commands) no hkrun runs this app
  71       hkrun could not set itself up (signals, pipes, runtime)
  73       (export) the folder could not be written; (config:set, config:unset) the
           env file could not be written
  77       (control commands) the hkrun running the app is another user's
  127      `hkrun run` could not start its command";

/// hkrun's settings variables: the `HKRUN_*` each flag reads (`env = "HKRUN_..."`), read
/// from clap, so a flag added later is among them. Only these: the run mark
/// (`HKRUN_DYNO_ID`), `HKRUN_LOG` and the tests' `HKRUN_TEST_*` are not settings.
pub fn settings_variables() -> &'static [String] {
    fn walk(command: &clap::Command, names: &mut std::collections::BTreeSet<String>) {
        for arg in command.get_arguments() {
            if let Some(name) = arg.get_env() {
                names.insert(name.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, names);
        }
    }
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names = std::collections::BTreeSet::new();
        walk(&<Cli as clap::CommandFactory>::command(), &mut names);
        names.into_iter().collect()
    })
}

/// clap's error for what the user typed, as one line: the error, then its tip or its
/// possible values, without the usage and `--help` lines.
pub fn one_line_error(text: &str) -> String {
    let mut line = String::new();
    // After a line ending in `:` (`the following required arguments were not provided:`),
    // its list: `<FORMAT>, <DIR>`.
    let mut listing = None;
    for part in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if part.starts_with("Usage:") || part.starts_with("For more information") {
            continue;
        }
        if let Some(items) = listing.as_mut()
            && !part.starts_with("tip: ")
            && !part.starts_with('[')
        {
            line.push_str(if *items == 0 { " " } else { ", " });
            line.push_str(part);
            *items += 1;
            continue;
        }
        listing = part.ends_with(':').then_some(0);
        match (part.strip_prefix("tip: "), part.strip_prefix('[')) {
            (Some(tip), _) => {
                line.push_str("; ");
                line.push_str(tip);
            }
            (None, Some(values)) => {
                line.push_str(" (");
                line.push_str(values.trim_end_matches(']'));
                line.push(')');
            }
            (None, None) if line.is_empty() => {
                line.push_str(part.strip_prefix("error: ").unwrap_or(part));
            }
            (None, None) => {
                line.push_str(": ");
                line.push_str(part);
            }
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_variables_are_the_flags_ones_only() {
        let names = settings_variables();
        for setting in [
            "HKRUN_DRAIN",
            "HKRUN_DASHBOARD",
            "HKRUN_METRICS",
            "HKRUN_PORT",
        ] {
            assert!(names.iter().any(|n| n == setting), "{setting}: {names:?}");
        }
        for other in ["HKRUN_DYNO_ID", "HKRUN_LOG", "HKRUN_TEST_TAG"] {
            assert!(!names.iter().any(|n| n == other), "{other}");
        }
    }
    use clap::CommandFactory;

    #[test]
    fn a_bad_command_line_is_one_line_naming_the_value() {
        let said = |line: &str| {
            let err = Cli::try_parse_from(line.split_whitespace()).unwrap_err();
            one_line_error(&err.to_string())
        };
        assert_eq!(
            said("hkrun start -p 70000"),
            "invalid value '70000' for '--port <PORT>': expected a number from 1 to 65535"
        );
        assert_eq!(
            said("hkrun start --color sometimes"),
            "invalid value 'sometimes' for '--color <WHEN>' (possible values: auto, always, never)"
        );
        assert_eq!(
            said("hkrun start --restart web=sometimes"),
            "invalid value 'web=sometimes' for '--restart <POLICY>': expected always, on-failure or never, or TYPE=VALUE pairs"
        );
        assert_eq!(
            said("hkrun start --log-max-size 1B"),
            "invalid value '1B' for '--log-max-size <SIZE>': expected a size of 1K or more, such as 512K, 10M or 1G"
        );
        assert_eq!(
            said("hkrun sacle web=2"),
            "unrecognized subcommand 'sacle'; some similar subcommands exist: 'ps:scale', 'scale'"
        );
        assert_eq!(
            said("hkrun export"),
            "the following required arguments were not provided: <FORMAT>, <DIR>"
        );
        assert_eq!(
            said("hkrun connect"),
            "the following required arguments were not provided: <DYNO>"
        );
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn herokus_names_reach_the_same_commands() {
        let command = |line: &str| {
            Cli::try_parse_from(line.split_whitespace())
                .unwrap()
                .command
        };
        for (alias, name) in [
            ("hkrun local web", "hkrun start web"),
            ("hkrun ps:scale web=2", "hkrun scale web=2"),
            ("hkrun ps:restart web", "hkrun restart web"),
            ("hkrun dyno:restart web.1", "hkrun restart web.1"),
            ("hkrun ps:stop web.1", "hkrun stop web.1"),
            ("hkrun ps:kill web.1", "hkrun stop web.1"),
            ("hkrun dyno:stop web", "hkrun stop web"),
            ("hkrun dyno:kill web", "hkrun stop web"),
            ("hkrun config:add A=1", "hkrun config:set A=1"),
            ("hkrun config:remove A", "hkrun config:unset A"),
        ] {
            // The same variant with the same arguments: the same function runs.
            assert_eq!(
                format!("{:?}", command(alias)),
                format!("{:?}", command(name)),
                "{alias}"
            );
        }
    }

    #[test]
    fn parses_command_lines() {
        let ok = [
            "hkrun start",
            "hkrun start web worker",
            "hkrun start web=2 worker",
            "hkrun start -m web=2,worker=1 -p 6000 -t 5 --color never --no-timestamp",
            "hkrun start -e a.env,b.env -e c.env -f x/Procfile -d x",
            "hkrun start --restart css=never,web=always --log-format json --boot-timeout 2",
            "hkrun check -m all=2",
            "hkrun run -- ls -la",
            "hkrun run echo hi",
            "hkrun ps --json -d app",
            "hkrun scale web=3 worker=0 clock+1",
            "hkrun ps:scale web-1",
            "hkrun restart",
            "hkrun dyno:restart web.2",
            "hkrun stop web",
            "hkrun logs -n 20 --tail --ps web --source app",
            "hkrun export kubernetes out --image app:1 -m web=2 -e .env --app shop",
            "hkrun export systemd out -t 10 --force",
            "hkrun config -s",
            "hkrun config:get KEY -e prod.env",
            "hkrun config:set A=1 B=two --no-restart",
            "hkrun config:add A=1",
            "hkrun config:unset A B",
            "hkrun config:remove A",
            "hkrun local web=2",
            "hkrun ps:kill web.1",
            "hkrun open /admin --no-router",
            "hkrun completions bash",
            "hkrun man",
        ];
        for line in ok {
            let args = line.split_whitespace();
            assert!(Cli::try_parse_from(args).is_ok(), "{line}");
        }
        let bad = [
            "hkrun start web -m web=1",
            "hkrun start --color sometimes",
            "hkrun start --log-format xml",
            "hkrun start --restart sometimes",
            "hkrun start --memory-limit lots",
            "hkrun start --dyno-size huge",
            "hkrun check --dyno-size huge",
            "hkrun start --log-max-size tiny",
            "hkrun run",
            "hkrun scale",
            "hkrun logs --source db",
            "hkrun config:set",
            "hkrun config:unset",
            "hkrun config -s --json",
            "hkrun completions tcsh",
        ];
        for line in bad {
            assert!(
                Cli::try_parse_from(line.split_whitespace()).is_err(),
                "{line}"
            );
        }
        let cli = Cli::try_parse_from(["hkrun", "start", "-e", "a,b", "-e", "c"]).unwrap();
        let Command::Start(start) = cli.command else {
            panic!("start")
        };
        assert_eq!(start.files.env, ["a", "b", "c"].map(PathBuf::from));
    }
}
