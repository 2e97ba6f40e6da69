//! Replacing a file or folder at once: a new one is written beside it under a name of
//! its own, then renamed over it.

use std::path::{Path, PathBuf};

/// `path`'s folder (`.` for a bare name) and its name (`default` when it has none).
pub(crate) fn folder_and_name(path: &Path, default: &str) -> (PathBuf, String) {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| default.to_owned(), |n| n.to_string_lossy().into_owned());
    (folder, name)
}

/// A hidden name beside `name` for what will replace it, unique however often this
/// process id comes back (PID 1 in a container, where a crash left one behind).
pub(crate) fn staging_name(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(".{name}.hkrun-{}-{nanos}", std::process::id())
}
