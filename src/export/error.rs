//! Why `hkrun export` wrote nothing (apart from `errors`, which prints it).

use std::io;
use std::path::PathBuf;

use crate::config::name::APP_NAME_MAX;

/// Why nothing was exported.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    #[error("unknown export format `{0}` (expected kubernetes or systemd)")]
    UnknownFormat(String),
    #[error("kubernetes needs the image that holds the app and hkrun: give it with --image")]
    NoImage,
    #[error(
        "bad app name `{0}` (expected lowercase letters, digits and `-`, starting with a letter, at most {APP_NAME_MAX} characters)"
    )]
    BadAppName(String),
    #[error("process types `{0}` and `{1}` would get the same name in {2}")]
    NameClash(String, String, &'static str),
    #[error(
        "process type `{0}` cannot name Kubernetes objects (a DNS label of letters, digits and `-`, not yes/no/on/off/y/n)"
    )]
    BadTypeName(String),
    #[error("config var `{0}` would reach kubectl as a boolean (YAML 1.1): rename it")]
    BadKey(String),
    #[error("config var `{0}` cannot be passed by systemd (letters, digits and `_` only)")]
    SystemdKey(String),
    #[error("{}: not empty (--force replaces an earlier export)", .0.display())]
    NotEmpty(PathBuf),
    #[error("{}: holds files hkrun did not export; --force replaces only an earlier export", .0.display())]
    NotAnExport(PathBuf),
    #[error(
        "{}: holds files an earlier export did not write ({}); --force replaces only what hkrun wrote: move them away first",
        dir.display(),
        listed_briefly(files)
    )]
    Foreign { dir: PathBuf, files: Vec<String> },
    #[error("{}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// The first few, then a count.
fn listed_briefly(files: &[String]) -> String {
    const NAMED: usize = 3;
    let named = files[..files.len().min(NAMED)].join(", ");
    match files.len().saturating_sub(NAMED) {
        0 => named,
        more => format!("{named} and {more} more"),
    }
}
