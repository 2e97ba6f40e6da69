//! The app's name, as `hkrun config` shows it and `export` names objects and units.

use std::path::Path;

/// The app's name: its root folder's name, lowercase, other characters as `-` (the
/// header of `hkrun config`, and the name `export` gives objects and units).
pub fn app_name(root: &Path) -> String {
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_owned());
    let folder = root
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let mut name = String::new();
    for c in folder.chars() {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && (name.is_empty() || name.ends_with('-'))) {
            name.push(c);
        }
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.insert_str(0, "app-");
    }
    name.truncate(APP_NAME_MAX);
    match name.trim_end_matches('-') {
        "app" | "" => "app".to_owned(),
        // Words YAML 1.1 reads as booleans.
        word if reads_as_boolean(word) => format!("app-{word}"),
        name => name.to_owned(),
    }
}

/// The longest app name: Kubernetes names of 63 characters hold it with a type's name,
/// or `release-` and a hash, after it.
pub const APP_NAME_MAX: usize = 30;

/// Words YAML 1.1 (what kubectl and Helm read) takes for booleans when bare, and which a
/// YAML 1.2 writer leaves bare: never an app's name, nor a name or key in an export.
pub(crate) fn reads_as_boolean(word: &str) -> bool {
    matches!(
        word.to_ascii_lowercase().as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off"
    )
}
