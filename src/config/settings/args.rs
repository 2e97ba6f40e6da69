//! `start`'s settings as clap reads them: each a field, written once (README,
//! "Settings"): clap's attributes are its flag, `HKRUN_*` variable, default and help; its
//! type says how hkrun.toml's value is read and how `check` shows it (`value`). `cli`
//! flattens these into `start`, `check`, `run` and `export`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::value::{named, settings};
use crate::http::ListenAddress;
use crate::logs::LogFormat;
use crate::logs::drains::Drain;
use crate::plan::formation::{DynoSize, FormationText};
use crate::plan::policy::{MemoryLimit, PerType, RestartPolicy};
use crate::plan::values::{self, ByteSize, MaxRequests, PositiveSeconds, RotatedFiles, Seconds};
use crate::router::{Balance, Mode, RouterLog};

settings! {
/// Where the app's files are.
#[derive(Clone, Debug, Args)]
pub struct FileArgs {
    /// The Procfile [default: ./Procfile].
    #[arg(
        short = 'f',
        long = "procfile",
        value_name = "PATH",
        env = "HKRUN_PROCFILE"
    )]
    pub procfile: Option<PathBuf>,
    /// The app root, where dynos run [default: the Procfile's folder].
    #[arg(short = 'd', long = "root", value_name = "DIR", env = "HKRUN_ROOT")]
    pub root: Option<PathBuf>,
    /// Env files, later ones winning; a comma list or the flag repeated [default: .env in
    /// the app root, when it exists].
    #[arg(
        short = 'e',
        long = "env",
        value_name = "FILE",
        value_delimiter = ',',
        env = "HKRUN_ENV_FILES"
    )]
    pub env: Vec<PathBuf>,
    /// The base port [default: PORT from the env files, then from the environment, then 5000].
    #[arg(
        short = 'p',
        long = "port",
        value_name = "PORT",
        env = "HKRUN_PORT",
        value_parser = values::port
    )]
    pub port: Option<u16>,
}
}

settings! {
#[derive(Clone, Debug, Args)]
pub struct FormationArgs {
    /// The formation: how many of each type, e.g. `web=2,worker=1`, `all=1,clock=0`,
    /// `web=2:standard-2x`. Types not named run 0 times unless `all=N` is given.
    #[arg(
        short = 'm',
        long = "formation",
        value_name = "SPEC",
        env = "HKRUN_FORMATION"
    )]
    pub formation: Option<FormationText>,
    /// The default dyno size (memory quota): eco, basic, standard-1x, standard-2x,
    /// performance-m, performance-l, or an amount such as 768M.
    #[arg(
        long = "dyno-size",
        value_name = "SIZE",
        default_value = "standard-1x",
        env = "HKRUN_DYNO_SIZE",
        value_parser = values::dyno_size
    )]
    pub dyno_size: DynoSize,
}
}

impl Default for FormationArgs {
    /// Every type once, at the default size: what `hkrun open` lays out.
    fn default() -> Self {
        Self {
            formation: None,
            dyno_size: DynoSize::default(),
        }
    }
}

settings! {
#[derive(Clone, Debug, Args)]
pub struct StartArgs {
    /// Run only these process types, one dyno each, or as many as `TYPE=COUNT[:SIZE]`
    /// says: `hkrun start web=2 worker` is `-m web=2,worker=1`.
    #[arg(value_name = "TYPE", conflicts_with = "formation")]
    pub types: Vec<String>,
    #[command(flatten)]
    pub files: FileArgs,
    #[command(flatten)]
    pub formation: FormationArgs,
    /// Seconds a dyno gets between SIGTERM and SIGKILL when stopping.
    #[arg(
        short = 't',
        long = "timeout",
        value_name = "SECONDS",
        default_value = "30",
        env = "HKRUN_TIMEOUT"
    )]
    pub timeout: Seconds,
    /// Skip the Procfile's `release` entry.
    #[arg(long, env = "HKRUN_NO_RELEASE")]
    pub no_release: bool,
    /// Run these process types' dynos on pseudo-terminals of their own (comma-separated;
    /// `--tty` alone: every type): they see a terminal, so they line-buffer and keep their
    /// colours, and `hkrun connect` can attach to them.
    #[arg(
        long,
        value_name = "TYPES",
        num_args = 0..=1,
        default_missing_value = "all",
        value_delimiter = ',',
        env = "HKRUN_TTY"
    )]
    pub tty: Option<Vec<String>>,
    /// Serve Prometheus metrics on `GET /metrics` at ADDR (`127.0.0.1:9100`, or a host
    /// name such as `localhost:9100` at each address it resolves to; a port alone listens
    /// on 127.0.0.1, and 0 on a free port, its URL printed): what `ps` shows, restarts,
    /// R10/R14/R15, CPU, the router's connections and bytes, log lines and bytes per dyno.
    #[arg(long = "metrics", value_name = "ADDR", env = "HKRUN_METRICS")]
    pub metrics: Option<ListenAddress>,
    /// Serve a live dashboard at ADDR (given alone: a free port on 127.0.0.1, its URL
    /// printed): each dyno's state, memory against its quota over 15 minutes with R14/R15
    /// marked, restarts and crashes, the router's traffic, the live log; `/metrics` too.
    /// On loopback unless another address or a host name is given (`localhost:9000`: each
    /// address it resolves to).
    #[arg(
        long = "dashboard",
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = "127.0.0.1:0",
        env = "HKRUN_DASHBOARD"
    )]
    pub dashboard: Option<ListenAddress>,
    /// Send every log line to a drain too (repeatable), as Heroku's drains: RFC 5424 over
    /// syslog+tcp://HOST:PORT (or syslog://, octet-counted), syslog+tls://, syslog+udp://,
    /// or https://[USER:PASSWORD@]HOST/PATH (logplex batches). TLS trusts Mozilla's roots,
    /// or only SSL_CERT_FILE's certificates when it is set.
    #[arg(
        long = "drain",
        value_name = "URL",
        value_delimiter = ',',
        env = "HKRUN_DRAIN",
        value_parser = DrainUrl
    )]
    pub drain: Vec<Drain>,
    /// Also write each dyno's lines (and hkrun's events about it) to DIR/TYPE.N.log,
    /// hkrun's about the whole app to DIR/system.log.
    #[arg(long = "log-dir", value_name = "DIR", env = "HKRUN_LOG_DIR")]
    pub log_dir: Option<PathBuf>,
    /// Rotate a log file before it grows past this size (`10M`, `512K`, `1G`).
    #[arg(
        long = "log-max-size",
        value_name = "SIZE",
        default_value = "10M",
        env = "HKRUN_LOG_MAX_SIZE"
    )]
    pub log_max_size: ByteSize,
    /// Rotated log files kept beside each current one (web.1.log.1 is the newest), at
    /// most 1000.
    #[arg(
        long = "log-keep",
        value_name = "N",
        default_value = "5",
        env = "HKRUN_LOG_KEEP"
    )]
    pub log_keep: RotatedFiles,
    /// Hide these process types' output (comma-separated): hkrun's lines about them
    /// still show, and `hkrun logs` still has their output.
    #[arg(
        short = 'q',
        long = "quiet",
        value_name = "TYPES",
        value_delimiter = ',',
        env = "HKRUN_QUIET"
    )]
    pub quiet: Vec<String>,
    /// `DYNO` and `PS` of the formation's one dyno, instead of `TYPE.1`: a scheduler's
    /// name for it, such as its Kubernetes pod's (`hkrun export kubernetes` sets it).
    #[arg(long = "dyno", value_name = "NAME", env = "HKRUN_DYNO")]
    pub dyno: Option<String>,
    /// Settings file [default: hkrun.toml in the app root, else foreman's .foreman].
    #[arg(long = "config", value_name = "FILE", env = "HKRUN_CONFIG")]
    pub config: Option<PathBuf>,
    /// The control socket for `hkrun ps`, `scale` and the rest [default: .hkrun.sock in
    /// the app root].
    #[arg(long, value_name = "PATH", env = "HKRUN_SOCKET")]
    pub socket: Option<PathBuf>,
    /// No router: web dynos take foreman's ports (web.1 on the base port) and are reached
    /// directly, as with foreman.
    #[arg(long, env = "HKRUN_NO_ROUTER")]
    pub no_router: bool,
    /// Restart web dynos by stopping, then starting them, instead of preboot (new dynos
    /// first, traffic moved once they are up, then the old ones stopped).
    #[arg(long, env = "HKRUN_NO_PREBOOT")]
    pub no_preboot: bool,
    /// Where the router listens [default: 127.0.0.1, and every interface too once a web
    /// dyno listens on every interface]: 0.0.0.0 or :: to be reached from other machines
    /// whatever the app does.
    #[arg(long, value_name = "ADDR", env = "HKRUN_ROUTER_ADDRESS")]
    pub router_address: Option<std::net::IpAddr>,
    /// How the router spreads new connections over the web dynos that are up:
    /// round-robin, least-connections or random (Heroku's router's way).
    #[arg(
        long,
        value_name = "HOW",
        default_value = "round-robin",
        env = "HKRUN_BALANCE"
    )]
    pub balance: BalanceArg,
    /// What the router speaks: http (Heroku's router: each request routed on its own,
    /// its headers, a log line per request, H-codes) or tcp (connections passed through
    /// whole, for web processes that do not speak HTTP/1.1).
    #[arg(long, value_name = "MODE", default_value = "http", env = "HKRUN_ROUTER")]
    pub router: RouterModeArg,
    /// Which of the router's lines a request gets (`--router http`): all, errors (the
    /// H-codes) or off.
    #[arg(
        long,
        value_name = "WHICH",
        default_value = "all",
        env = "HKRUN_ROUTER_LOG"
    )]
    pub router_log: RouterLogArg,
    /// How long the router waits for a response's first byte before answering H12 (503);
    /// 0 waits for ever (a dyno paused in a debugger).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "30",
        env = "HKRUN_REQUEST_TIMEOUT"
    )]
    pub request_timeout: Seconds,
    /// Requests in flight per web dyno before the router answers H11 (503).
    #[arg(
        long,
        value_name = "N",
        default_value = "200",
        env = "HKRUN_MAX_REQUESTS"
    )]
    pub max_requests: MaxRequests,
    /// Stop the whole app when any dyno exits, and exit with its code (foreman's
    /// behaviour, for CI), instead of restarting it.
    #[arg(long, env = "HKRUN_EXIT_ON_CRASH")]
    pub exit_on_crash: bool,
    /// Restart policy after a dyno exits unasked: always (Heroku's), on-failure (exit 0
    /// means done) or never; per type as `css=never,web=always`. hkrun exits once no dyno
    /// is running or waiting to restart.
    #[arg(
        long,
        value_name = "POLICY",
        default_value = "always",
        env = "HKRUN_RESTART",
        value_parser = values::restart
    )]
    pub restart: PerType<RestartPolicy>,
    /// The longest wait between restarts of a crashing dyno (the back-off doubles from
    /// 1 second up to this).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "300",
        env = "HKRUN_RESTART_CAP"
    )]
    pub restart_cap: Seconds,
    /// Seconds a web dyno has to listen on its PORT before Error R10 and a kill.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "60",
        env = "HKRUN_BOOT_TIMEOUT"
    )]
    pub boot_timeout: PositiveSeconds,
    /// Memory quota enforcement: on (R14 over the quota, R15 and a kill at twice it),
    /// warn (R14 only) or off; per type as `worker=warn,web=on`.
    #[arg(
        long,
        value_name = "MODE",
        default_value = "on",
        env = "HKRUN_MEMORY_LIMIT",
        value_parser = values::memory_limit
    )]
    pub memory_limit: PerType<MemoryLimit>,
    #[command(flatten)]
    pub output: OutputArgs,
}
}

settings! {
#[derive(Clone, Debug, Args)]
pub struct OutputArgs {
    /// Colour the prefixes: auto (on a terminal, unless NO_COLOR is set or TERM=dumb),
    /// always or never.
    #[arg(long, value_name = "WHEN", default_value = "auto", env = "HKRUN_COLOR")]
    pub color: ColorChoice,
    /// Leave the time out of each log line (default format).
    #[arg(long, env = "HKRUN_NO_TIMESTAMP")]
    pub no_timestamp: bool,
    /// Line format: default (`HH:MM:SS web.1 | text`), heroku (`heroku logs`' format) or
    /// json (one object per line).
    #[arg(
        long,
        value_name = "FORMAT",
        default_value = "default",
        env = "HKRUN_LOG_FORMAT"
    )]
    pub log_format: LogFormatArg,
}
}

/// `--drain`'s parser: a drain refused is named masked, as hkrun shows a drain
/// everywhere (clap's own error would repeat the URL as typed, credentials and all).
#[derive(Clone)]
struct DrainUrl;

impl clap::builder::TypedValueParser for DrainUrl {
    type Value = Drain;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Drain, clap::Error> {
        let url = value.to_string_lossy();
        url.parse().map_err(|reason: String| {
            let masked = crate::logs::drains::masked(&url);
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value '{masked}' for '--drain <URL>': {reason}\n"),
            )
            .with_cmd(cmd)
        })
    }
}

/// `--balance`: `router::Balance` as typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BalanceArg {
    /// Each dyno in turn.
    RoundRobin,
    /// The dyno with the fewest open connections through the router (in turn on ties).
    LeastConnections,
    /// A dyno at random, as Heroku's router chooses.
    Random,
}

impl From<BalanceArg> for Balance {
    fn from(arg: BalanceArg) -> Self {
        match arg {
            BalanceArg::RoundRobin => Self::RoundRobin,
            BalanceArg::LeastConnections => Self::LeastConnections,
            BalanceArg::Random => Self::Random,
        }
    }
}

/// `--router`: `router::Mode` as typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RouterModeArg {
    /// Heroku's HTTP router: each request routed on its own.
    Http,
    /// Connections passed through whole.
    Tcp,
}

impl From<RouterModeArg> for Mode {
    fn from(arg: RouterModeArg) -> Self {
        match arg {
            RouterModeArg::Http => Self::Http,
            RouterModeArg::Tcp => Self::Tcp,
        }
    }
}

/// `--router-log`: `router::RouterLog` as typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RouterLogArg {
    /// A line for every request.
    All,
    /// Lines for the requests that got an H-code.
    Errors,
    /// No line.
    Off,
}

impl From<RouterLogArg> for RouterLog {
    fn from(arg: RouterLogArg) -> Self {
        match arg {
            RouterLogArg::All => Self::All,
            RouterLogArg::Errors => Self::Errors,
            RouterLogArg::Off => Self::Off,
        }
    }
}

/// `--log-format`: `logs::LogFormat` as typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// foreman's `HH:MM:SS web.1  | text`.
    Default,
    /// `heroku logs`: `2026-11-26T17:41:03.123456+00:00 app[web.1]: text`.
    Heroku,
    /// One JSON object per line: `{"ts","source","dyno","line"}`.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(arg: LogFormatArg) -> Self {
        match arg {
            LogFormatArg::Default => Self::Default,
            LogFormatArg::Heroku => Self::Heroku,
            LogFormatArg::Json => Self::Json,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

named!(
    BalanceArg,
    ColorChoice,
    LogFormatArg,
    RouterModeArg,
    RouterLogArg
);

/// `start` with no flags and no `HKRUN_*` variables read: hkrun's defaults.
#[cfg(test)]
pub(crate) fn defaults() -> StartArgs {
    use clap::FromArgMatches;
    let command =
        <StartArgs as Args>::augment_args(clap::Command::new("start")).mut_args(|a| a.env(None));
    StartArgs::from_arg_matches(&command.get_matches_from(["start"])).expect("defaults")
}
