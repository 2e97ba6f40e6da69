//! The errors that stop hkrun, their exit codes, and the one place that prints them.
//!
//! A dyno's failure is an event the supervisor logs, never one of these.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::ConfigError;
use crate::config::app_json::AppJsonError;
use crate::config::env::EnvError;
use crate::config::settings::error::SettingsError;
use crate::control::socket::SocketError;
use crate::export::error::ExportError;
use crate::plan::formation::FormationError;
use crate::plan::policy::PolicyError;
use crate::plan::ports::PortError;

/// hkrun's own exit codes. A dyno's or the release's code is passed through as it is.
pub(crate) mod exit_code {
    /// A requested stop, or every dyno finished with 0.
    pub(crate) const OK: u8 = 0;
    /// The supervisor refused a control command, or what it started failed.
    pub(crate) const REFUSED: u8 = 1;
    /// The command line was not understood (clap's code).
    #[expect(dead_code, reason = "clap exits with it; listed so every code is here")]
    pub(crate) const USAGE: u8 = 2;
    /// The Procfile, an env file, the formation or a port is malformed (EX_DATAERR).
    pub(crate) const BAD_INPUT: u8 = 65;
    /// The Procfile or an env file cannot be read (EX_NOINPUT).
    pub(crate) const NO_INPUT: u8 = 66;
    /// A port the app needs is taken, hkrun already runs the app, or (for control
    /// commands) no hkrun runs it (EX_UNAVAILABLE).
    pub(crate) const UNAVAILABLE: u8 = 69;
    /// hkrun could not set itself up: signals, runtime, pipes (EX_OSERR).
    pub(crate) const OS_ERROR: u8 = 71;
    /// `hkrun export` could not write its folder (EX_CANTCREAT).
    pub(crate) const CANNOT_CREATE: u8 = 73;
    /// (control commands) the supervisor runs as another user (EX_NOPERM).
    pub(crate) const NO_PERMISSION: u8 = 77;
    /// `hkrun run` could not start its command (the shell's code).
    pub(crate) const CANNOT_RUN: u8 = 127;
}

/// Failures that stop hkrun before or instead of running the app.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Control(#[from] SocketError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    AppJson(#[from] AppJsonError),
    /// A `config:set` or `config:unset` argument.
    #[error("{0}")]
    ConfigVar(String),
    #[error("{}: cannot write: {source}", path.display())]
    WriteEnv { path: PathBuf, source: io::Error },
    #[error(
        "{}: another config:set or config:unset was still changing it after {}s; nothing changed, try again",
        path.display(),
        waited.as_secs()
    )]
    EnvBusy {
        path: PathBuf,
        waited: std::time::Duration,
    },
    #[error("{0}")]
    Formation(#[from] FormationError),
    #[error("{0}")]
    Port(#[from] PortError),
    #[error("{0}")]
    Policy(#[from] PolicyError),
    #[error(
        "port {port} for {dyno} is already in use (stop what holds it, or choose another base port with -p)"
    )]
    PortInUse { port: u16, dyno: String },
    #[error("{addr} for {what} is already in use (stop what holds it, or choose another)")]
    AddressInUse { addr: String, what: &'static str },
    #[error("bad value `{value}` for {flag}: {reason}")]
    BadFlag {
        flag: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("cannot {what}: {source}")]
    Setup {
        what: &'static str,
        source: io::Error,
    },
    #[error("cannot run `{command}`: {source}")]
    CannotRun { command: String, source: io::Error },
    /// The supervisor's own words.
    #[error("{0}")]
    Refused(String),
    #[error("control socket {}: {what}", path.display())]
    BadAnswer { path: PathBuf, what: String },
    /// Nobody reads stdout any more (`hkrun ps | head -1`): the command ends quietly.
    #[error("stdout is closed")]
    StdoutClosed,
}

impl Error {
    /// The documented exit code for this failure.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Config(error) => config_exit_code(error),
            Self::Env(EnvError::Read { .. }) => exit_code::NO_INPUT,
            Self::Env(_)
            | Self::Formation(_)
            | Self::Port(_)
            | Self::Policy(_)
            | Self::BadFlag { .. } => exit_code::BAD_INPUT,
            Self::Export(ExportError::Write { .. }) | Self::WriteEnv { .. } => {
                exit_code::CANNOT_CREATE
            }
            Self::ConfigVar(_)
            | Self::Settings(SettingsError::Invalid { .. } | SettingsError::Value { .. }) => {
                exit_code::BAD_INPUT
            }
            Self::Settings(SettingsError::Read { .. })
            | Self::AppJson(AppJsonError::Read { .. }) => exit_code::NO_INPUT,
            Self::AppJson(_) => exit_code::BAD_INPUT,
            Self::Export(_) => exit_code::BAD_INPUT,
            Self::PortInUse { .. }
            | Self::AddressInUse { .. }
            | Self::Control(SocketError::AlreadyRunning { .. } | SocketError::NotRunning { .. })
            | Self::EnvBusy { .. } => exit_code::UNAVAILABLE,
            Self::Control(SocketError::PathTooLong { .. }) => exit_code::BAD_INPUT,
            Self::Control(SocketError::Socket { .. } | SocketError::NotCreated { .. })
            | Self::BadAnswer { .. } => exit_code::OS_ERROR,
            Self::Refused(_) => exit_code::REFUSED,
            Self::Control(SocketError::OtherUser { .. }) => exit_code::NO_PERMISSION,
            Self::Setup { .. } => exit_code::OS_ERROR,
            Self::CannotRun { .. } => exit_code::CANNOT_RUN,
            // As ripgrep and other pipeline tools do: a reader that has gone is no failure.
            Self::StdoutClosed => exit_code::OK,
        }
    }
}

/// The documented exit code for what stops `config`: the same as for the top-level
/// errors of the same kind.
fn config_exit_code(error: &ConfigError) -> u8 {
    match error {
        ConfigError::NoProcfile { .. }
        | ConfigError::ReadProcfile { .. }
        | ConfigError::Env(EnvError::Read { .. })
        | ConfigError::Settings(SettingsError::Read { .. })
        | ConfigError::AppJson(AppJsonError::Read { .. }) => exit_code::NO_INPUT,
        ConfigError::WriteEnv { .. } => exit_code::CANNOT_CREATE,
        ConfigError::Setup { .. } => exit_code::OS_ERROR,
        ConfigError::Procfile { .. }
        | ConfigError::Env(_)
        | ConfigError::Settings(_)
        | ConfigError::AppJson(_)
        | ConfigError::Formation(_)
        | ConfigError::Port(_)
        | ConfigError::Policy(_)
        | ConfigError::AppState(_)
        | ConfigError::BadSetting { .. }
        | ConfigError::BadFlag { .. }
        | ConfigError::UnsafeLogDir { .. } => exit_code::BAD_INPUT,
    }
}

/// Prints `hkrun: <error>` on one line to stderr and gives the exit code.
pub(crate) fn report(err: &Error) -> ExitCode {
    if !matches!(err, Error::StdoutClosed) {
        to_stderr(&format!("hkrun: {err}\n"));
    }
    ExitCode::from(err.exit_code())
}

/// Prints `hkrun: warning: <text>` on one line to stderr: the one form of warnings, that
/// of `tracing::warn!` too (see `init_logging`).
pub(crate) fn warn(text: impl std::fmt::Display) {
    to_stderr(&format!("hkrun: warning: {text}\n"));
}

/// Prints a note for the user (not an error) to stderr, as is.
pub(crate) fn print_err(text: &str) {
    to_stderr(text);
}

/// One write, so lines from several threads never mix; a closed stderr is no reason to
/// panic.
fn to_stderr(line: &str) {
    let _ = io::stderr().lock().write_all(line.as_bytes());
}

/// Writes a command's answer to stdout; `Error::StdoutClosed` when nobody reads it.
pub(crate) fn print_out(text: &str) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Error::StdoutClosed),
        Err(source) => Err(Error::Setup {
            what: "write to stdout",
            source,
        }),
    }
}
