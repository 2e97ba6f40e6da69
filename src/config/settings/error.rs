//! Why a settings file was refused (apart from `settings`, so `errors` can name it).

use std::path::PathBuf;

/// Why a settings file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// A value the flag would refuse: the flag's words, then where the file says it.
    #[error("{message} ({}{})", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Value {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
}
