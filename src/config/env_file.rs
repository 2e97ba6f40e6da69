//! Changing an env file as `heroku config:set` and `config:unset` change an app's config
//! vars: only the entries of the keys named change; every other byte (comments, blank
//! lines, order, quoting, `export`) stays as it was. Values are written so that the
//! reader (`env`) gives them back exactly, and the file is replaced at once (a temporary
//! file beside it, synced, renamed over it, with its mode), so a crash never leaves half
//! a file. Changes made at once take turns (`take_turn`), so none is lost.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::env::{self, EnvError, Var};

const BOM: &str = "\u{feff}";

/// How often a change waiting for its turn tries again.
const TURN_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// The turn to read, change and replace an env file: a lock on its folder (the file
/// itself is replaced, so a lock on it would not hold across the change), released on
/// drop.
pub(crate) struct Turn {
    _lock: nix::fcntl::Flock<fs::File>,
}

/// Waits up to `max` for the turn to change the env file at `path` (the folder of the
/// file a symbolic link points to, which is what `save` replaces). `Ok(None)`: another
/// change held it all that time.
pub(crate) fn take_turn(path: &Path, max: std::time::Duration) -> io::Result<Option<Turn>> {
    use nix::fcntl::{Flock, FlockArg};
    let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let (folder, _) = crate::os::files::folder_and_name(&target, ".env");
    let deadline = std::time::Instant::now() + max;
    let mut folder = fs::File::open(folder)?;
    loop {
        match Flock::lock(folder, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(Some(Turn { _lock: lock })),
            Err((file, nix::errno::Errno::EWOULDBLOCK | nix::errno::Errno::EINTR)) => {
                if std::time::Instant::now() >= deadline {
                    return Ok(None);
                }
                folder = file;
                std::thread::sleep(TURN_RETRY);
            }
            Err((_, errno)) => return Err(errno.into()),
        }
    }
}

/// An env file's text, and its variables with where each entry is.
#[derive(Debug)]
pub(crate) struct EnvFile {
    path: PathBuf,
    /// Whether the file starts with a UTF-8 byte-order mark (kept).
    bom: bool,
    text: String,
    entries: Vec<(Var, std::ops::Range<usize>)>,
    /// The file's mode, or `None` when it does not exist yet.
    mode: Option<u32>,
    /// The file's owner and group, kept when it is replaced.
    owner: Option<(u32, u32)>,
}

/// Why a key cannot be set.
pub(crate) fn check_key(key: &str) -> Result<(), String> {
    let ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    match ok {
        true => Ok(()),
        false => Err(format!(
            "bad config var name `{key}` (expected letters, digits, `_` and `.`, not starting with a digit)"
        )),
    }
}

impl EnvFile {
    /// Reads `path`; a file that does not exist is empty (`config:set` creates it).
    pub(crate) fn load(path: &Path) -> Result<Self, EnvError> {
        let (bytes, meta) = match fs::read(path) {
            Ok(bytes) => (bytes, fs::metadata(path).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), None),
            Err(source) => {
                return Err(EnvError::Read {
                    path: path.into(),
                    source,
                });
            }
        };
        let bom = bytes.starts_with(BOM.as_bytes());
        let text = super::text::utf8(&bytes)
            .map_err(|line| EnvError::NotUtf8 {
                path: path.into(),
                line,
            })?
            .to_owned();
        let mut file = Self {
            path: path.to_owned(),
            bom,
            text,
            entries: Vec::new(),
            mode: meta.as_ref().map(|m| m.permissions().mode() & 0o7777),
            owner: meta.as_ref().map(|m| (m.uid(), m.gid())),
        };
        file.reparse()?;
        Ok(file)
    }

    fn reparse(&mut self) -> Result<(), EnvError> {
        // Values as a dyno gets them: `$NAME` sees the inherited environment too.
        self.entries = env::entries(&self.path, &self.text, &super::inherited_vars())?;
        Ok(())
    }

    /// The variables, later entries of a key winning, in the file's order.
    pub(crate) fn vars(&self) -> Vec<(&str, &str)> {
        let mut vars: Vec<(&str, &str)> = Vec::new();
        for (var, _) in &self.entries {
            match vars.iter_mut().find(|(k, _)| *k == var.key) {
                Some(slot) => slot.1 = &var.value,
                None => vars.push((&var.key, &var.value)),
            }
        }
        vars
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(var, _)| var.key == key)
            .map(|(var, _)| var.value.as_str())
    }

    /// Sets `key`: its last entry is rewritten in place (keeping an `export`), or a new
    /// line is added at the end.
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Result<(), EnvError> {
        let last = self.entries.iter().rev().find(|(var, _)| var.key == key);
        match last {
            Some((_, span)) => {
                let old = &self.text[span.clone()];
                let exported = old
                    .strip_prefix("export")
                    .is_some_and(|rest| rest.starts_with([' ', '\t']));
                let export = if exported { "export " } else { "" };
                let cr = if old.ends_with('\r') { "\r" } else { "" };
                let entry = format!("{export}{key}={}{cr}", quote(value));
                self.text.replace_range(span.clone(), &entry);
            }
            None => {
                // The file's own line end.
                let end = if self.text.contains("\r\n") {
                    "\r\n"
                } else {
                    "\n"
                };
                if !self.text.is_empty() && !self.text.ends_with('\n') {
                    self.text.push_str(end);
                }
                self.text.push_str(&format!("{key}={}{end}", quote(value)));
            }
        }
        self.reparse()
    }

    /// Removes every entry of `key`, line and all; whether there was one.
    pub(crate) fn unset(&mut self, key: &str) -> Result<bool, EnvError> {
        let spans: Vec<_> = self
            .entries
            .iter()
            .filter(|(var, _)| var.key == key)
            .map(|(_, span)| span.clone())
            .collect();
        for span in spans.iter().rev() {
            let start = self.text[..span.start].rfind('\n').map_or(0, |i| i + 1);
            let end = match self.text[span.end..].find('\n') {
                Some(i) => span.end + i + 1,
                None => self.text.len(),
            };
            self.text.replace_range(start..end, "");
        }
        self.reparse()?;
        Ok(!spans.is_empty())
    }

    /// The file's bytes as they would be written.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.text.len() + 3);
        if self.bom {
            bytes.extend_from_slice(BOM.as_bytes());
        }
        bytes.extend_from_slice(self.text.as_bytes());
        bytes
    }

    /// Replaces the file at once: a temporary file in its folder, with its mode (0600 for
    /// a new file: it holds secrets), synced, then renamed over it.
    pub(crate) fn save(&self) -> io::Result<()> {
        self.save_with(|from, to| fs::rename(from, to))
    }

    /// `save`, with the rename given (the tests make it fail).
    fn save_with(&self, rename: impl FnOnce(&Path, &Path) -> io::Result<()>) -> io::Result<()> {
        // A symbolic link keeps pointing where it did: its target is replaced.
        let target = match fs::canonicalize(&self.path) {
            Ok(real) => real,
            Err(_) => self.path.clone(),
        };
        let (folder, name) = crate::os::files::folder_and_name(&target, ".env");
        let temporary = folder.join(crate::os::files::staging_name(&name));
        let mode = self.mode.unwrap_or(0o600);
        let written = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&temporary)?;
            // The umask may have narrowed it; and the owner stays (`sudo hkrun config:set`).
            file.set_permissions(fs::Permissions::from_mode(mode))?;
            if let Some((uid, gid)) = self.owner {
                nix::unistd::fchown(&file, Some(uid.into()), Some(gid.into()))
                    .map_err(io::Error::from)?;
            }
            file.write_all(&self.bytes())?;
            file.sync_all()?;
            rename(&temporary, &target)?;
            // The rename itself, on disk.
            fs::File::open(&folder)?.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        written
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// A value as the env reader gives it back: bare when it is plain, else double-quoted
/// with `\`, `"` and `$` escaped and a newline as `\n`.
pub(crate) fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@+,=%^~".contains(c));
    if plain {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(text: &str) -> EnvFile {
        let dir = std::env::temp_dir().join(format!("hkrun-env-file-{}", std::process::id()));
        let mut file = EnvFile {
            path: dir.join(".env"),
            bom: false,
            text: text.to_owned(),
            entries: Vec::new(),
            mode: None,
            owner: None,
        };
        file.reparse().unwrap();
        file
    }

    const MIXED: &str = "\
# The app's settings
export SECRET_KEY='abc def'   # quoted, with a comment

DATABASE_URL=\"postgres://db/app\"
MULTI=\"line one
line two\"
  INDENTED=1
PLAIN=x # note
PLAIN=y
";

    #[test]
    fn untouched_lines_stay_byte_for_byte() {
        let mut f = file(MIXED);
        f.set("PLAIN", "new value").unwrap();
        f.set("SECRET_KEY", "s3cr$t").unwrap();
        f.set("ADDED", "1").unwrap();
        assert_eq!(
            f.text,
            "\
# The app's settings
export SECRET_KEY=\"s3cr\\$t\"

DATABASE_URL=\"postgres://db/app\"
MULTI=\"line one
line two\"
  INDENTED=1
PLAIN=x # note
PLAIN=\"new value\"
ADDED=1
"
        );
        assert!(f.unset("MULTI").unwrap());
        assert!(f.unset("PLAIN").unwrap());
        assert!(!f.unset("NOPE").unwrap());
        assert_eq!(
            f.text,
            "\
# The app's settings
export SECRET_KEY=\"s3cr\\$t\"

DATABASE_URL=\"postgres://db/app\"
  INDENTED=1
ADDED=1
"
        );
        assert_eq!(
            f.vars(),
            [
                ("SECRET_KEY", "s3cr$t"),
                ("DATABASE_URL", "postgres://db/app"),
                ("INDENTED", "1"),
                ("ADDED", "1")
            ]
        );
    }

    #[test]
    fn crlf_lines_keep_their_line_end_and_a_last_line_gets_one() {
        let mut f = file("A=1\r\nB=2\r\nC=3");
        f.set("B", "two").unwrap();
        f.set("D", "4").unwrap();
        assert_eq!(f.text, "A=1\r\nB=two\r\nC=3\r\nD=4\r\n");
        // `e` is not `export`.
        let mut f = file("export e=1\nexporter=2\n");
        f.set("e", "3").unwrap();
        f.set("exporter", "4").unwrap();
        assert_eq!(f.text, "export e=3\nexporter=4\n");
    }

    #[test]
    fn a_failed_rename_leaves_the_old_file_and_no_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        fs::write(&path, "A=1\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let mut f = EnvFile::load(&path).unwrap();
        f.set("A", "2").unwrap();
        let err = f
            .save_with(|_, _| Err(io::Error::other("the disk went away")))
            .unwrap_err();
        assert_eq!(err.to_string(), "the disk went away");
        assert_eq!(fs::read_to_string(&path).unwrap(), "A=1\n");
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        // The real one replaces it, mode kept.
        f.save().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "A=2\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    proptest! {
        #[test]
        fn any_value_reads_back_exactly(
            key in "[A-Za-z_][A-Za-z0-9_.]{0,12}",
            value in "\\PC*|[ -~\\n\\t\\r]*",
            before in prop::sample::select(vec!["", "# c\n", "export K=1\n", "X='a b' # c\nY=\"1\n2\"\n"]),
        ) {
            prop_assume!(!value.contains('\0'));
            let mut f = file(before);
            f.set(&key, &value).unwrap();
            prop_assert_eq!(f.get(&key), Some(value.as_str()));
            let parsed = env::parse(Path::new(".env"), &f.bytes()).unwrap();
            prop_assert_eq!(
                parsed.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v.as_str()),
                Some(value.as_str())
            );
            // A new key leaves what was there before byte for byte.
            if !before.contains(&format!("{key}=")) {
                prop_assert!(f.text.starts_with(before));
            }
        }
    }
}
