//! `.hkrun-state.toml` in the app root: what hkrun has done to the app once and must not
//! do again (README, "app.json"): app.json's `scripts.postdeploy`, run after the first
//! successful release; and what the app was set to that outlasts hkrun's run: maintenance
//! mode.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name in the app root.
pub(crate) const STATE_FILE: &str = ".hkrun-state.toml";

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct State {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub maintenance: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postdeploy: Option<Done>,
}

/// A script that has run to exit 0: which command, and when (UTC, RFC 3339).
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct Done {
    pub command: String,
    pub finished_at: String,
}

pub(crate) fn path(root: &Path) -> PathBuf {
    root.join(STATE_FILE)
}

impl State {
    /// The app's state: none recorded when the file is missing. An unreadable or
    /// malformed file is an error, so postdeploy never runs twice by mistake.
    pub(crate) fn read(root: &Path) -> Result<Self, String> {
        let path = path(root);
        match fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                format!(
                    "{}: {} (delete the file to start over)",
                    path.display(),
                    e.message().trim()
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("{}: cannot read: {e}", path.display())),
        }
    }

    /// Records that postdeploy `command` has run, replacing the file at once.
    pub(crate) fn record_postdeploy(root: &Path, command: &str) -> io::Result<()> {
        let mut state = Self::read(root).unwrap_or_default();
        state.postdeploy = Some(Done {
            command: command.to_owned(),
            finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        state.write(root)
    }

    /// Records maintenance mode on or off. A file that cannot be read is left as it is
    /// (it holds what postdeploy needs), and the error said.
    pub(crate) fn record_maintenance(root: &Path, on: bool) -> Result<(), String> {
        let mut state = Self::read(root)?;
        state.maintenance = on;
        state
            .write(root)
            .map_err(|e| format!("{}: cannot write: {e}", path(root).display()))
    }

    /// The file replaced at once with this state.
    fn write(&self, root: &Path) -> io::Result<()> {
        let text = format!(
            "# What hkrun has done to this app once. Delete a table to have it done again.\n{}",
            toml::to_string(self).map_err(io::Error::other)?
        );
        let path = path(root);
        let (folder, name) = crate::os::files::folder_and_name(&path, STATE_FILE);
        let temporary = folder.join(crate::os::files::staging_name(&name));
        let written = (|| {
            let mut file = fs::File::create_new(&temporary)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&temporary, &path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_postdeploy_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(State::read(dir.path()).unwrap().postdeploy.is_none());
        State::record_postdeploy(dir.path(), "python3 seed.py").unwrap();
        let done = State::read(dir.path()).unwrap().postdeploy.unwrap();
        assert_eq!(done.command, "python3 seed.py");
        fs::write(path(dir.path()), "postdeploy = 3\n").unwrap();
        let err = State::read(dir.path()).unwrap_err();
        assert!(err.contains(".hkrun-state.toml: "), "{err}");
    }

    #[test]
    fn maintenance_mode_is_kept_beside_postdeploy() {
        let dir = tempfile::tempdir().unwrap();
        State::record_postdeploy(dir.path(), "python3 seed.py").unwrap();
        State::record_maintenance(dir.path(), true).unwrap();
        let state = State::read(dir.path()).unwrap();
        assert!(state.maintenance);
        assert_eq!(state.postdeploy.unwrap().command, "python3 seed.py");
        State::record_maintenance(dir.path(), false).unwrap();
        assert!(!State::read(dir.path()).unwrap().maintenance);
        // A file hkrun cannot read is not replaced.
        fs::write(path(dir.path()), "postdeploy = 3\n").unwrap();
        assert!(State::record_maintenance(dir.path(), true).is_err());
        assert_eq!(
            fs::read_to_string(path(dir.path())).unwrap(),
            "postdeploy = 3\n"
        );
    }
}
