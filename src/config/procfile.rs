//! Reads a Procfile into ordered entries (README, "Using it").
//!
//! Owns the Procfile grammar: comments, CRLF, byte-order marks, UTF-16, junk lines and
//! duplicates. It does not decide what runs: that is `formation`'s job.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use crate::dyno::{RELEASE, TYPE_NAME};

static ENTRY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"^\s*({TYPE_NAME}):\s*(.+)$")).expect("the entry pattern is a valid regex")
});

/// One `name: command` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The process type, e.g. `web`.
    pub name: String,
    /// The command, trimmed; run by `/bin/sh -c`.
    pub command: String,
    /// 1-based line number in the file.
    pub line: usize,
}

/// Something worth telling the user that does not stop hkrun.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// A later entry replaced an earlier one of the same name (Heroku keeps the last).
    Duplicate {
        name: String,
        first: usize,
        line: usize,
    },
    /// The file was UTF-16 (PowerShell's `echo >`) and was decoded as such.
    Utf16,
}

impl Warning {
    /// The 1-based line the warning is about, when it is about one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Duplicate { line, .. } => Some(*line),
            Self::Utf16 => None,
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Duplicate { name, first, line } => write!(
                f,
                "process type `{name}` is also defined on line {first}; line {line} wins"
            ),
            Self::Utf16 => f.write_str("file is UTF-16; read it as such (save it as UTF-8)"),
        }
    }
}

/// Why a Procfile was refused. Line numbers are 1-based.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProcfileError {
    #[error("not a process entry: {text}")]
    NotAnEntry { line: usize, text: String },
    #[error("not valid UTF-8")]
    NotUtf8 { line: usize },
    #[error("not valid UTF-16 (the file starts with a UTF-16 byte-order mark)")]
    BadUtf16,
    #[error("no process entries")]
    Empty,
    #[error("a command cannot hold a NUL byte (no process can be given it)")]
    Nul { line: usize },
    /// Found by `config`, which knows exec's limits.
    #[error(
        "the command is too large for exec: {len} bytes as given to `sh -c`, at most {max} may be passed"
    )]
    TooLong { line: usize, len: usize, max: usize },
    /// Found by `config`: the types are what `start` and `check` run.
    #[error("no process type besides `release` (add one, such as `web: ./server`)")]
    OnlyRelease,
}

impl ProcfileError {
    /// The 1-based line the error is on, when it is on one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::NotAnEntry { line, .. }
            | Self::NotUtf8 { line }
            | Self::Nul { line }
            | Self::TooLong { line, .. } => Some(*line),
            Self::BadUtf16 | Self::Empty | Self::OnlyRelease => None,
        }
    }
}

/// A parsed Procfile: entries in file order, one per name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Procfile {
    entries: Vec<Entry>,
    /// Non-fatal findings, in file order.
    pub warnings: Vec<Warning>,
}

impl Procfile {
    /// Parses a Procfile's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ProcfileError> {
        let mut warnings = Vec::new();
        let text = decode(bytes, &mut warnings)?;
        let mut entries: Vec<Entry> = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((name, command)) = ENTRY
                .captures(raw)
                .map(|c| (c[1].to_owned(), c[2].trim().to_owned()))
                .filter(|(_, command)| !command.is_empty())
            else {
                return Err(ProcfileError::NotAnEntry {
                    line,
                    text: raw.to_owned(),
                });
            };
            if command.contains('\0') {
                return Err(ProcfileError::Nul { line });
            }
            let entry = Entry {
                name,
                command,
                line,
            };
            if let Some(old) = entries.iter_mut().find(|e| e.name == entry.name) {
                warnings.push(Warning::Duplicate {
                    name: entry.name.clone(),
                    first: old.line,
                    line,
                });
                // The last wins but keeps the first one's place in the order.
                *old = entry;
            } else {
                entries.push(entry);
            }
        }
        if entries.is_empty() {
            return Err(ProcfileError::Empty);
        }
        Ok(Self { entries, warnings })
    }

    /// Every entry, `release` included, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The release phase command, if the Procfile has one.
    pub fn release(&self) -> Option<&Entry> {
        self.get(RELEASE)
    }

    /// The dyno types (every entry but `release`) in file order.
    pub fn types(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.name != RELEASE)
    }

    /// Names of all entries, for `valid procfile detected (web, worker)`.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }
}

/// Text of the file: UTF-8 (a byte-order mark skipped) or UTF-16 with a byte-order mark.
fn decode(bytes: &[u8], warnings: &mut Vec<Warning>) -> Result<String, ProcfileError> {
    let utf16 = |bytes: &[u8], from: fn([u8; 2]) -> u16| {
        let units: Vec<u16> = bytes
            .chunks(2)
            .map(|pair| from([pair[0], *pair.get(1).unwrap_or(&0)]))
            .collect();
        String::from_utf16(&units).map_err(|_| ProcfileError::BadUtf16)
    };
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        warnings.push(Warning::Utf16);
        return utf16(rest, u16::from_le_bytes);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        warnings.push(Warning::Utf16);
        return utf16(rest, u16::from_be_bytes);
    }
    super::text::utf8(bytes)
        .map(str::to_owned)
        .map_err(|line| ProcfileError::NotUtf8 { line })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs(src: &str) -> Vec<(String, String)> {
        Procfile::parse(src.as_bytes())
            .expect("parses")
            .entries()
            .iter()
            .map(|e| (e.name.clone(), e.command.clone()))
            .collect()
    }

    #[test]
    fn keeps_order_and_trims_commands() {
        let got = pairs(
            "web: bundle exec puma  \n# comment\n\n  worker:sidekiq\r\nrelease: rake db:migrate",
        );
        assert_eq!(
            got,
            [
                ("web", "bundle exec puma"),
                ("worker", "sidekiq"),
                ("release", "rake db:migrate")
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
    }

    #[test]
    fn colons_in_commands_are_kept() {
        assert_eq!(pairs("web: gunicorn: app:app")[0].1, "gunicorn: app:app");
    }

    #[test]
    fn refuses_junk_with_its_line() {
        let err = Procfile::parse(b"web: a\n\nworker : b\n").unwrap_err();
        assert_eq!(err.to_string(), "not a process entry: worker : b");
        assert_eq!(err.line(), Some(3));
        let err = Procfile::parse(b"web:   \n").unwrap_err();
        assert_eq!(
            err,
            ProcfileError::NotAnEntry {
                line: 1,
                text: "web:   ".into()
            }
        );
    }

    #[test]
    fn refuses_empty_files() {
        assert_eq!(Procfile::parse(b"").unwrap_err(), ProcfileError::Empty);
        assert_eq!(
            Procfile::parse(b"# only\n\n").unwrap_err().to_string(),
            "no process entries"
        );
    }

    #[test]
    fn last_duplicate_wins_in_first_place() {
        let p = Procfile::parse(b"web: a\nworker: w\nweb: b\n").unwrap();
        assert_eq!(p.names(), ["web", "worker"]);
        assert_eq!(p.get("web").unwrap().command, "b");
        assert_eq!(
            p.warnings[0].to_string(),
            "process type `web` is also defined on line 1; line 3 wins"
        );
    }

    #[test]
    fn skips_utf8_bom_and_decodes_utf16() {
        assert_eq!(pairs("\u{feff}web: a")[0].0, "web");
        let mut le = vec![0xFF, 0xFE];
        le.extend(
            "web: node index.js\r\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        );
        let p = Procfile::parse(&le).unwrap();
        assert_eq!(p.get("web").unwrap().command, "node index.js");
        assert_eq!(p.warnings, [Warning::Utf16]);
        assert_eq!(
            Procfile::parse(&[0xFF, 0xFE, 0x00, 0xD8]).unwrap_err(),
            ProcfileError::BadUtf16
        );
    }

    #[test]
    fn refuses_a_nul_byte_in_a_command_with_its_line() {
        let err = Procfile::parse(b"web: a\nworker: b\0c\n").unwrap_err();
        assert_eq!(err, ProcfileError::Nul { line: 2 });
        assert_eq!(
            err.to_string(),
            "a command cannot hold a NUL byte (no process can be given it)"
        );
    }

    #[test]
    fn names_the_line_of_invalid_utf8() {
        assert_eq!(
            Procfile::parse(b"web: a\nworker: \xff\n").unwrap_err(),
            ProcfileError::NotUtf8 { line: 2 }
        );
    }

    /// Procfile-shaped lines: entries, near-entries, comments, blanks, CRLF.
    fn procfile_text() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            "[a-z][a-z0-9_-]{0,6}: [ -~]{1,20}",
            "[ \t]{0,2}[A-Za-z0-9_-]{0,6}[ ]?:[ ]?[ -~]{0,12}",
            "#[ -~]{0,10}",
            "[ \t]{0,3}",
            "[ -~\u{e9}\u{feff}\u{0}]{0,12}",
        ];
        (
            proptest::collection::vec((line, prop_oneof!["\n", "\r\n"]), 0..12),
            any::<bool>(),
        )
            .prop_map(|(lines, bom)| {
                let body: String = lines.into_iter().map(|(l, end)| l + &end).collect();
                if bom { format!("\u{feff}{body}") } else { body }
            })
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Procfile::parse(&bytes);
        }

        /// Valid text reaches the grammar: the result is entries, or an error naming a
        /// line of the file.
        #[test]
        fn shaped_text_parses_or_names_a_line(text in procfile_text()) {
            let lines = text.split('\n').count();
            match Procfile::parse(text.as_bytes()) {
                Ok(procfile) => {
                    for entry in procfile.entries() {
                        prop_assert!(!entry.command.is_empty() && entry.line <= lines);
                        prop_assert_eq!(entry.command.trim(), entry.command.as_str());
                    }
                }
                Err(ProcfileError::Empty) => {}
                Err(err) => {
                    let line = err.line();
                    prop_assert!(line.is_some_and(|l| l >= 1 && l <= lines), "{err:?}");
                    prop_assert!(!matches!(err, ProcfileError::NotUtf8 { .. }), "{:?}", err);
                }
            }
        }

        /// The same text as UTF-16 reads as it does as UTF-8.
        #[test]
        fn utf16_reads_like_utf8(text in procfile_text()) {
            let mut bytes = vec![0xFF, 0xFE];
            bytes.extend(text.trim_start_matches('\u{feff}').encode_utf16().flat_map(u16::to_le_bytes));
            let utf8 = Procfile::parse(text.trim_start_matches('\u{feff}').as_bytes());
            let utf16 = Procfile::parse(&bytes);
            prop_assert_eq!(
                utf8.map(|p| p.entries().to_vec()),
                utf16.map(|p| p.entries().to_vec())
            );
        }

        #[test]
        fn rendered_entries_round_trip(
            entries in proptest::collection::btree_map(
                "[a-z][a-z0-9_-]{0,8}", "[a-z][a-z0-9 ./=:-]{0,20}[a-z]", 1..6)
        ) {
            let src: String = entries.iter().map(|(n, c)| format!("{n}: {c}\n")).collect();
            let got = pairs(&src);
            prop_assert_eq!(got, entries.into_iter().collect::<Vec<_>>());
        }
    }
}
