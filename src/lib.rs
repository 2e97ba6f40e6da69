//! hkrun: a Procfile process supervisor, Heroku's dyno manager on a laptop and in a
//! container. Unix only (Linux for `/proc` and the child subreaper).
//!
//! # Layout (ARCHITECTURE.md)
//! - `cli` (what the user typed) → `config` (Procfile + env files + flags, checked) → a
//!   `plan::AppPlan`.
//! - `dyno` and `plan`: the vocabulary every layer speaks (a dyno's name and exit, the
//!   process types, formation, policies and ports), pure.
//! - `supervisor::core` decides (pure `handle(now, input) -> effects`);
//!   `supervisor::runtime` does (signals, spawning, reaping, timers).
//! - `os`: spawning in process groups, signalling, reaping, `/proc`, the memory sampler
//!   and the readiness probe.
//! - `logs`: pumps that frame dyno output into lines, the render functions, the one
//!   writer of stdout.
//! - `control`: the socket, its protocol, the server in `start`, and the client
//!   commands (`ps`, `scale`, `restart`, `stop`, `logs`).
//! - `router`: the public port's proxy.
//! - `cmd`: one function per subcommand; `errors`: what stops hkrun and its exit codes.

pub mod cli;
pub(crate) mod cmd;
pub mod config;
pub mod control;
pub(crate) mod dashboard;
pub mod dyno;
pub(crate) mod errors;
pub(crate) mod export;
pub(crate) mod http;
pub(crate) mod logs;
pub(crate) mod metrics;
pub mod os;
pub mod plan;
pub(crate) mod router;
pub(crate) mod scheduler;
pub(crate) mod seats;
pub mod supervisor;

use std::fmt::Write as _;
use std::process::ExitCode;

use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, format};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// hkrun's diagnostics on stderr: warnings always, as `hkrun: warning: ...` (one line
/// each, the form of `errors::warn`); `HKRUN_LOG`, or else `RUST_LOG`, adds more (`info`,
/// `debug`, per module) in the same form. Writing never panics, even on a closed stderr.
pub fn init_logging() {
    let more = std::env::var("HKRUN_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_default();
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::OFF.into())
        .parse_lossy(more)
        .or(LevelFilter::WARN);
    let layer = tracing_subscriber::fmt::layer()
        .event_format(OneLine)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::Layer::with_filter(layer, filter))
        .try_init();
}

/// `hkrun: LEVEL: message: err (field=value, ...)`.
struct OneLine;

impl<S, N> FormatEvent<S, N> for OneLine
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = format!("hkrun: {level}: {}", fields.message);
        if let Some(err) = fields.err {
            let _ = write!(line, ": {err}");
        }
        if !fields.rest.is_empty() {
            let _ = write!(line, " ({})", fields.rest.join(", "));
        }
        // One line, whatever the values hold.
        writeln!(writer, "{}", line.replace('\n', " "))
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    err: Option<String>,
    rest: Vec<String>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "err" | "error" => self.err = Some(format!("{value:?}")),
            name => self.rest.push(format!("{name}={value:?}")),
        }
    }
}

/// Runs a parsed command line (`matches` says where each value came from: flag,
/// `HKRUN_*` variable or default); `main` is only this.
pub fn main(cli: cli::Cli, matches: &clap::ArgMatches) -> ExitCode {
    // hkrun's settings are its own, never the app's: no command it starts inherits them.
    os::process::hide_from_dynos(cli::settings_variables().to_vec());
    let result = match &cli.command {
        cli::Command::Start(args) => cmd::start_configured(args, matches),
        cli::Command::Check(args) => cmd::check_configured(args, matches),
        cli::Command::Run(args) => cmd::run(args),
        cli::Command::Ps(args) => cmd::client::ps(args),
        cli::Command::Scale(args) => cmd::client::scale(args),
        cli::Command::Restart(args) => cmd::client::restart(args),
        cli::Command::Maintenance(args) => cmd::client::maintenance(args, None),
        cli::Command::MaintenanceOn(args) => cmd::client::maintenance(args, Some(true)),
        cli::Command::MaintenanceOff(args) => cmd::client::maintenance(args, Some(false)),
        cli::Command::Stop(args) => cmd::client::stop(args),
        cli::Command::Kill(args) => cmd::client::kill(args),
        cli::Command::Connect(args) => cmd::client::connect(args),
        cli::Command::Top(args) => cmd::top::top(args),
        cli::Command::Logs(args) => cmd::client::logs(args),
        cli::Command::Export(args) => cmd::export::export(args),
        cli::Command::Open(args) => cmd::open(args),
        cli::Command::Completions(args) => cmd::completions(args),
        cli::Command::Man => cmd::man(),
        cli::Command::Config(args) => cmd::config_vars::show(args),
        cli::Command::ConfigGet(args) => cmd::config_vars::get(args),
        cli::Command::ConfigSet(args) => cmd::config_vars::set(args),
        cli::Command::ConfigUnset(args) => cmd::config_vars::unset(args),
    };
    match result {
        // Codes past 255 cannot be passed on; 1 says "failed" without lying about which.
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => errors::report(&err),
    }
}
