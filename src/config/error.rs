//! What stops `config` from giving a runnable app: each failure with the file, line or
//! value it is about. `errors` turns it into hkrun's top-level `Error` and its exit code.

use std::io;
use std::path::PathBuf;

use super::app_json::AppJsonError;
use super::env::EnvError;
use super::procfile::ProcfileError;
use super::settings::error::SettingsError;
use crate::plan::formation::FormationError;
use crate::plan::policy::PolicyError;
use crate::plan::ports::PortError;

/// Why the app as configured cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: no such file (give the Procfile with -f)", path.display())]
    NoProcfile { path: PathBuf },
    #[error("{}: cannot read: {source}", path.display())]
    ReadProcfile { path: PathBuf, source: io::Error },
    #[error("{}{}: {source}", path.display(), source.line().map(|l| format!(":{l}")).unwrap_or_default())]
    Procfile {
        path: PathBuf,
        source: ProcfileError,
    },
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    AppJson(#[from] AppJsonError),
    #[error("{}: cannot write: {source}", path.display())]
    WriteEnv { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Formation(#[from] FormationError),
    #[error("{0}")]
    Port(#[from] PortError),
    #[error("{0}")]
    Policy(#[from] PolicyError),
    /// What `.hkrun-state.toml` or app.json's scripts make impossible.
    #[error("{0}")]
    AppState(String),
    #[error("{}: {key}: {reason}", path.display())]
    BadSetting {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error("bad value `{value}` for {flag}: {reason}")]
    BadFlag {
        flag: &'static str,
        value: String,
        reason: &'static str,
    },
    /// A `--log-dir` whoever can write to could make hkrun write elsewhere.
    #[error("log folder {} refused: {source}", dir.display())]
    UnsafeLogDir {
        dir: PathBuf,
        source: crate::logs::files::UnsafeFolder,
    },
    #[error("cannot {what}: {source}")]
    Setup {
        what: &'static str,
        source: io::Error,
    },
}
