//! Reads `.env` files with dotenvy and merges the app's environment (DESIGN section 2).
//!
//! Owns precedence: inherited < env files in order < hkrun's own variables. It never
//! calls `std::env::set_var`; the merged map is handed to each child.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// An environment handed to children: sorted, so it prints the same every time.
pub type Vars = BTreeMap<String, String>;

/// Why an env file was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}:{line}: not valid UTF-8", path.display())]
    NotUtf8 { path: PathBuf, line: usize },
    #[error("{}:{line}: cannot parse: {text}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        text: String,
    },
}

/// Reads one env file; `path` is used as given in messages.
pub fn load_file(path: &Path) -> Result<Vec<(String, String)>, EnvError> {
    let bytes = std::fs::read(path).map_err(|source| EnvError::Read {
        path: path.into(),
        source,
    })?;
    parse(path, &bytes)
}

/// Parses env file bytes in the godotenv dialect (dotenvy), keeping file order.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<(String, String)>, EnvError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Err(e) = std::str::from_utf8(bytes) {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        return Err(EnvError::NotUtf8 {
            path: path.into(),
            line,
        });
    }
    let lines_read = Rc::new(Cell::new(0));
    let reader = LineAtATime {
        rest: bytes,
        lines_read: Rc::clone(&lines_read),
    };
    let mut vars = Vec::new();
    for item in dotenvy::from_read_iter(reader) {
        match item {
            Ok(pair) => vars.push(pair),
            Err(dotenvy::Error::LineParse(text, _)) => {
                // dotenvy names the text, not the line: the reader counted how far it got,
                // and a multi-line value started that many lines earlier.
                let span = text.trim_end_matches(['\n', '\r']).matches('\n').count();
                let line = lines_read.get().saturating_sub(span).max(1);
                // Show the whole line: dotenvy's text may be only the value.
                let text = String::from_utf8_lossy(bytes)
                    .lines()
                    .nth(line - 1)
                    .map_or_else(
                        || text.lines().next().unwrap_or_default().to_owned(),
                        str::to_owned,
                    );
                return Err(EnvError::Syntax {
                    path: path.into(),
                    line,
                    text,
                });
            }
            Err(other) => {
                let source = io::Error::other(other.to_string());
                return Err(EnvError::Read {
                    path: path.into(),
                    source,
                });
            }
        }
    }
    Ok(vars)
}

/// Hands dotenvy one line per `read`, so the count of lines given out is the line
/// dotenvy is on when it fails.
struct LineAtATime<'a> {
    rest: &'a [u8],
    lines_read: Rc<Cell<usize>>,
}

impl Read for LineAtATime<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let line_len = self
            .rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.rest.len(), |i| i + 1);
        let n = line_len.min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        buf[..n].copy_from_slice(&self.rest[..n]);
        if n == line_len {
            self.lines_read.set(self.lines_read.get() + 1);
        }
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

/// The app's environment: `inherited`, then each file's pairs in order, later wins.
pub fn merge<'a>(
    inherited: impl IntoIterator<Item = (String, String)>,
    files: impl IntoIterator<Item = &'a [(String, String)]>,
) -> Vars {
    let mut vars: Vars = inherited.into_iter().collect();
    for file in files {
        vars.extend(file.iter().cloned());
    }
    vars
}

/// What a dyno (or `hkrun run`) gets on top of hkrun's own environment: the app's env
/// files, its PORT (none for the release phase), DYNO and PS, and `PYTHONUNBUFFERED=1`
/// unless the env files or hkrun's environment set it, even empty (README).
pub fn for_dyno(app: &Vars, name: &str, port: Option<u16>) -> Vars {
    let inherited = std::env::var_os(PYTHONUNBUFFERED).is_some();
    dyno_vars(app, name, port, inherited)
}

const PYTHONUNBUFFERED: &str = "PYTHONUNBUFFERED";

fn dyno_vars(app: &Vars, name: &str, port: Option<u16>, python_set: bool) -> Vars {
    let mut env = app.clone();
    if !python_set && !env.contains_key(PYTHONUNBUFFERED) {
        // Python buffers a pipe's output in blocks: a dyno's prints would show minutes late.
        env.insert(PYTHONUNBUFFERED.into(), "1".into());
    }
    if let Some(port) = port {
        env.insert("PORT".into(), port.to_string());
    }
    env.insert("DYNO".into(), name.into());
    env.insert("PS".into(), name.into());
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_str(src: &str) -> Result<Vec<(String, String)>, EnvError> {
        parse(Path::new(".env"), src.as_bytes())
    }

    #[test]
    fn reads_the_godotenv_dialect() {
        let got = parse_str(
            "\u{feff}A=1\nexport B='two'\n# c\nC=\"x\\ny\" # note\nD=\"multi\nline\"\nE=${A}-e\n",
        )
        .unwrap();
        let want = [
            ("A", "1"),
            ("B", "two"),
            ("C", "x\ny"),
            ("D", "multi\nline"),
            ("E", "1-e"),
        ];
        assert_eq!(got, want.map(|(k, v)| (k.to_owned(), v.to_owned())));
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = parse_str("A=1\n\nB C\nD=4\n").unwrap_err();
        assert_eq!(err.to_string(), ".env:3: cannot parse: B C");
        let err = parse_str("A=1\nB=\"x$A\"\n").unwrap_err();
        assert_eq!(err.to_string(), ".env:2: cannot parse: B=\"x$A\"");
        let err = parse_str("A=1\nB=\"open\nstill open\n").unwrap_err();
        assert_eq!(err.to_string(), ".env:2: cannot parse: B=\"open");
        let err = parse(Path::new("x.env"), b"A=1\nB=\xe9\n").unwrap_err();
        assert_eq!(err.to_string(), "x.env:2: not valid UTF-8");
    }

    #[test]
    fn later_files_win_over_earlier_and_inherited() {
        let inherited = [
            ("A".to_owned(), "env".to_owned()),
            ("B".to_owned(), "env".to_owned()),
        ];
        let one = vec![
            ("A".to_owned(), "one".to_owned()),
            ("C".to_owned(), "one".to_owned()),
        ];
        let two = vec![("C".to_owned(), "two".to_owned())];
        let vars = merge(inherited, [one.as_slice(), two.as_slice()]);
        assert_eq!(vars["A"], "one");
        assert_eq!(vars["B"], "env");
        assert_eq!(vars["C"], "two");
    }

    #[test]
    fn a_dyno_gets_its_names_port_and_unbuffered_python() {
        let app = Vars::from([("A".to_owned(), "1".to_owned())]);
        let env = dyno_vars(&app, "web.1", Some(5001), false);
        let want = [
            ("A", "1"),
            ("DYNO", "web.1"),
            ("PORT", "5001"),
            ("PS", "web.1"),
            ("PYTHONUNBUFFERED", "1"),
        ];
        assert_eq!(
            env,
            Vars::from(want.map(|(k, v)| (k.to_owned(), v.to_owned())))
        );
        assert!(!dyno_vars(&app, "release.1", None, false).contains_key("PORT"));
        // Set by hkrun's environment: left to it.
        assert!(!dyno_vars(&app, "web.1", None, true).contains_key("PYTHONUNBUFFERED"));
        // Set empty in an env file: stays empty, which Python reads as unset.
        let off = Vars::from([("PYTHONUNBUFFERED".to_owned(), String::new())]);
        assert_eq!(
            dyno_vars(&off, "web.1", None, false)["PYTHONUNBUFFERED"],
            ""
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(Path::new(".env"), &bytes);
        }
    }
}
