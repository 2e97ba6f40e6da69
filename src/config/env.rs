//! Reads `.env` files and merges the app's environment (README, "Using it").
//!
//! Owns the dotenv grammar (dotenvy's dialect, with `$NAME` read as bash reads it: see
//! README) and precedence: inherited < env files in order < hkrun's own variables. It
//! never calls `std::env::set_var`; the merged map is handed to each child.
//!
//! The parser is hand-written rather than dotenvy's: dotenvy 0.15 (the latest) reads
//! `$DB_HOST` as `$DB` then `_HOST`, refuses `"x$A"`, lets the inherited environment
//! override the file's own earlier lines, offers no hook to change that, and takes time
//! quadratic in a line's length behind a line-counting reader. One pass over the bytes
//! here gives bash's meaning, exact lines for errors, and linear time.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

pub use crate::plan::Vars;

/// One `KEY=value` of a file, with the line it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Var {
    pub key: String,
    pub value: String,
    /// 1-based line of the key.
    pub line: usize,
}

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
    #[error("{}:{line}: a value cannot hold a NUL byte (no process can be given it)", path.display())]
    Nul { path: PathBuf, line: usize },
    /// Found by `config`, which checks app.json's and hkrun.toml's variables as exec
    /// would get them (an env file's NUL is refused by the parser, as `Nul`).
    #[error(
        "{}: a variable cannot hold a NUL byte (no process can be given it)",
        at.naming(key)
    )]
    NulIn { at: Origin, key: String },
    /// Found by `config`, which knows exec's limits.
    #[error(
        "{} is too large for exec: `{key}=value` is {len} bytes, at most {max} may be passed",
        at.naming(key)
    )]
    TooLarge {
        at: Origin,
        key: String,
        len: usize,
        max: usize,
    },
    /// Found by `config`: every variable fits, but not all of them at once.
    #[error(
        "the app's environment is {total} bytes with {dyno}'s command, more than the {limit} exec allows (the largest variable is `{largest}`, from {origin})"
    )]
    Total {
        total: usize,
        limit: usize,
        dyno: String,
        largest: String,
        origin: Origin,
    },
}

/// Where a variable of a dyno's environment is set, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// hkrun's own environment, which dynos inherit.
    Inherited,
    /// An env file's line: `.env:3`.
    Line { path: PathBuf, line: usize },
    /// A table of a file with no line to give: `app.json: env`,
    /// `hkrun.toml: [types.worker] env`.
    Table { path: PathBuf, table: String },
}

impl Origin {
    /// `key` where it is set: ``.env:3: `KEY` ``, ``app.json: env `KEY` ``.
    pub fn naming<'a>(&'a self, key: &'a str) -> impl std::fmt::Display + 'a {
        struct Naming<'a>(&'a Origin, &'a str);
        impl std::fmt::Display for Naming<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let key = self.1.escape_debug();
                match self.0 {
                    Origin::Table { .. } => write!(f, "{} `{key}`", self.0),
                    Origin::Inherited | Origin::Line { .. } => write!(f, "{}: `{key}`", self.0),
                }
            }
        }
        Naming(self, key)
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inherited => f.write_str("the environment"),
            Self::Line { path, line } => write!(f, "{}:{line}", path.display()),
            Self::Table { path, table } => write!(f, "{}: {table}", path.display()),
        }
    }
}

/// Reads one env file; `path` is used as given in messages. `$NAME` in a value takes
/// the file's earlier lines first, then `outer`.
pub fn load_file(path: &Path, outer: &Vars) -> Result<Vec<Var>, EnvError> {
    let bytes = std::fs::read(path).map_err(|source| EnvError::Read {
        path: path.into(),
        source,
    })?;
    parse_in(path, &bytes, outer)
}

/// Parses env file bytes with nothing outside the file to expand from, keeping file
/// order (a repeated key appears twice; the last wins in `merge`).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<(String, String)>, EnvError> {
    let vars = parse_in(path, bytes, &Vars::new())?;
    Ok(vars.into_iter().map(|v| (v.key, v.value)).collect())
}

/// Parses env file bytes; `$NAME` takes the file's earlier lines first, then `outer`
/// (the inherited environment and earlier files), as bash sourcing them in order would.
pub fn parse_in(path: &Path, bytes: &[u8], outer: &Vars) -> Result<Vec<Var>, EnvError> {
    let text = super::text::utf8(bytes).map_err(|line| EnvError::NotUtf8 {
        path: path.into(),
        line,
    })?;
    Ok(entries(path, text, outer)?
        .into_iter()
        .map(|(var, _)| var)
        .collect())
}

/// Each variable of an env file's text with where its entry is: from its key (or
/// `export`) to its line's end, the newline left out. What `env_file` edits in place.
pub fn entries(
    path: &Path,
    text: &str,
    outer: &Vars,
) -> Result<Vec<(Var, std::ops::Range<usize>)>, EnvError> {
    let mut parser = Parser {
        text,
        pos: 0,
        line: 1,
        outer,
        defined: HashMap::new(),
    };
    let mut vars = Vec::new();
    while parser.skip_blank() {
        let line = parser.line;
        let start = parser.pos;
        let var = parser.entry().map_err(|fault| match fault {
            Fault::Syntax => EnvError::Syntax {
                path: path.into(),
                line,
                text: line_at(text, start).to_owned(),
            },
            Fault::Nul => EnvError::Nul {
                path: path.into(),
                line,
            },
        })?;
        if let Some((key, value)) = var {
            parser.defined.insert(key.clone(), value.clone());
            vars.push((Var { key, value, line }, start..parser.pos));
        }
    }
    Ok(vars)
}

/// The whole line around byte `at`, without its line end.
fn line_at(text: &str, at: usize) -> &str {
    let from = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let to = text[at..].find('\n').map_or(text.len(), |i| at + i);
    text[from..to].trim_end_matches('\r')
}

enum Fault {
    Syntax,
    Nul,
}

struct Parser<'a> {
    text: &'a str,
    /// Byte offset of the next character; only ever moves forward.
    pos: usize,
    /// 1-based line of `pos`.
    line: usize,
    outer: &'a Vars,
    /// What the file's earlier lines set: `$NAME` looks here first.
    defined: HashMap<String, String>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// Skips blank lines and whitespace; whether anything is left.
    fn skip_blank(&mut self) -> bool {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
        self.pos < self.text.len()
    }

    fn skip_inline_space(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }

    /// Skips to the end of the line, leaving the newline.
    fn skip_comment(&mut self) {
        let rest = &self.text[self.pos..];
        self.pos += rest.find('\n').unwrap_or(rest.len());
    }

    /// At a line end (or the file's end), after optional `\r`.
    fn at_line_end(&self) -> bool {
        let rest = &self.text[self.pos..];
        rest.is_empty() || rest.starts_with('\n') || rest.starts_with("\r\n")
    }

    /// One line from a non-blank character: a comment (`None`) or `KEY=value`.
    fn entry(&mut self) -> Result<Option<(String, String)>, Fault> {
        if self.peek() == Some('#') {
            self.skip_comment();
            return Ok(None);
        }
        let mut key = self.key()?;
        self.skip_inline_space();
        if key == "export" && self.peek() != Some('=') {
            key = self.key()?;
            self.skip_inline_space();
        }
        if self.bump() != Some('=') {
            return Err(Fault::Syntax);
        }
        self.skip_inline_space();
        let value = self.value()?;
        if value.contains('\0') {
            return Err(Fault::Nul);
        }
        Ok(Some((key, value)))
    }

    /// `[A-Za-z_][A-Za-z0-9_.]*` (dotenvy's keys).
    fn key(&mut self) -> Result<String, Fault> {
        let rest = &self.text[self.pos..];
        if !rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return Err(Fault::Syntax);
        }
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        self.pos += len;
        Ok(rest[..len].to_owned())
    }

    /// A value up to its line's end: unquoted, `'literal'` and `"escaped"` parts glued
    /// together; a blank then `#` starts a comment.
    fn value(&mut self) -> Result<String, Fault> {
        let mut out = String::new();
        if self.peek() == Some('#') {
            self.skip_comment();
            return Ok(out);
        }
        loop {
            if self.at_line_end() {
                if self.peek() == Some('\r') {
                    self.bump();
                }
                return Ok(out);
            }
            let c = self.bump().ok_or(Fault::Syntax)?;
            match c {
                ' ' | '\t' => {
                    // Only blanks and a comment may follow an unquoted blank.
                    self.skip_inline_space();
                    if self.peek() == Some('#') {
                        self.skip_comment();
                    }
                    if !self.at_line_end() {
                        return Err(Fault::Syntax);
                    }
                }
                '\'' => self.single_quoted(&mut out)?,
                '"' => self.double_quoted(&mut out)?,
                '\\' => {
                    if self.at_line_end() {
                        continue;
                    }
                    self.escape(&mut out)?;
                }
                '$' => self.dollar(&mut out)?,
                c => {
                    out.push(c);
                    self.take_run(&mut out, |b| {
                        matches!(
                            b,
                            b' ' | b'\t' | b'\'' | b'"' | b'\\' | b'$' | b'\r' | b'\n'
                        )
                    });
                }
            }
        }
    }

    /// Copies plain text up to the next byte `special` picks, at once rather than a
    /// character at a time (a long value costs a copy, not a loop turn per byte).
    fn take_run(&mut self, out: &mut String, special: impl Fn(u8) -> bool) {
        let rest = &self.text[self.pos..];
        // Every special byte is ASCII, so the cut is on a character boundary.
        let len = rest.bytes().position(special).unwrap_or(rest.len());
        out.push_str(&rest[..len]);
        self.line += memchr::memchr_iter(b'\n', &rest.as_bytes()[..len]).count();
        self.pos += len;
    }

    fn single_quoted(&mut self, out: &mut String) -> Result<(), Fault> {
        let rest = &self.text[self.pos..];
        let len = rest.find('\'').ok_or(Fault::Syntax)?;
        out.push_str(&rest[..len]);
        self.line += memchr::memchr_iter(b'\n', &rest.as_bytes()[..len]).count();
        self.pos += len + 1;
        Ok(())
    }

    fn double_quoted(&mut self, out: &mut String) -> Result<(), Fault> {
        loop {
            match self.bump().ok_or(Fault::Syntax)? {
                '"' => return Ok(()),
                '\\' => self.escape(out)?,
                '$' => self.dollar(out)?,
                c => {
                    out.push(c);
                    self.take_run(out, |b| matches!(b, b'"' | b'\\' | b'$'));
                }
            }
        }
    }

    /// After a backslash: dotenvy's escapes.
    fn escape(&mut self, out: &mut String) -> Result<(), Fault> {
        match self.bump().ok_or(Fault::Syntax)? {
            c @ ('\\' | '\'' | '"' | '$' | ' ') => out.push(c),
            'n' => out.push('\n'),
            _ => return Err(Fault::Syntax),
        }
        Ok(())
    }

    /// After a `$`: bash's `$NAME` (letters, digits and `_`), `${NAME}`,
    /// `${NAME:-word}` and `${NAME-word}`; a `$` before anything else is itself.
    fn dollar(&mut self, out: &mut String) -> Result<(), Fault> {
        let rest = &self.text[self.pos..];
        if let Some(braced) = rest.strip_prefix('{') {
            // `${...}` closes on its own line.
            let len = braced.find(['}', '\n']).ok_or(Fault::Syntax)?;
            if braced.as_bytes()[len] != b'}' {
                return Err(Fault::Syntax);
            }
            let inner = &braced[..len];
            self.pos += len + 2;
            let name_len = name_len(inner);
            let (name, default) = match &inner[name_len..] {
                tail if name_len > 0 && tail.starts_with(":-") => {
                    (&inner[..name_len], Some((&tail[2..], true)))
                }
                tail if name_len > 0 && tail.starts_with('-') => {
                    (&inner[..name_len], Some((&tail[1..], false)))
                }
                // Anything else is looked up as written, as dotenvy does (`${N.VAR}`).
                _ => (inner, None),
            };
            let value = self.lookup(name);
            match default {
                Some((word, colon)) if value.is_none() || (colon && value == Some("")) => {
                    out.push_str(word);
                }
                _ => out.push_str(value.unwrap_or_default()),
            }
            return Ok(());
        }
        let len = name_len(rest);
        if len == 0 {
            out.push('$');
            return Ok(());
        }
        self.pos += len;
        if let Some(value) = self.lookup(&rest[..len]) {
            out.push_str(value);
        }
        Ok(())
    }

    fn lookup(&self, name: &str) -> Option<&str> {
        self.defined
            .get(name)
            .or_else(|| self.outer.get(name))
            .map(String::as_str)
    }
}

/// The length of the bash name at the start of `s`: `[A-Za-z_][A-Za-z0-9_]*`, or 0.
fn name_len(s: &str) -> usize {
    if !s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return 0;
    }
    s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len())
}

/// The app's environment: `inherited`, then each file's variables in order, later wins.
pub fn merge<'a>(
    inherited: impl IntoIterator<Item = (String, String)>,
    files: impl IntoIterator<Item = &'a [Var]>,
) -> Vars {
    let mut vars: Vars = inherited.into_iter().collect();
    for file in files {
        vars.extend(file.iter().map(|v| (v.key.clone(), v.value.clone())));
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
        let err = parse_str("A=1\nB=${A\nC=}\n").unwrap_err();
        assert_eq!(err.to_string(), ".env:2: cannot parse: B=${A");
        let err = parse_str("A=1\nB=\"open\nstill open\n").unwrap_err();
        assert_eq!(err.to_string(), ".env:2: cannot parse: B=\"open");
        let err = parse(Path::new("x.env"), b"A=1\nB=\xe9\n").unwrap_err();
        assert_eq!(err.to_string(), "x.env:2: not valid UTF-8");
    }

    fn value<'a>(vars: &'a [(String, String)], key: &str) -> &'a str {
        let found = vars.iter().rev().find(|(k, _)| k == key);
        found.map_or_else(|| panic!("no {key} in {vars:?}"), |(_, v)| v.as_str())
    }

    #[test]
    fn unbraced_names_take_letters_digits_and_underscores() {
        let got = parse_str(
            "HK_DB=wrong\nHK_DB_HOST=db.internal\n\
             DATABASE_URL=postgres://$HK_DB_HOST:5432/app\nQ=\"$HK_DB_HOST\"\nN=$HK_DB2x\n",
        )
        .unwrap();
        assert_eq!(
            value(&got, "DATABASE_URL"),
            "postgres://db.internal:5432/app"
        );
        assert_eq!(value(&got, "Q"), "db.internal");
        assert_eq!(value(&got, "N"), "");
    }

    #[test]
    fn a_name_just_before_a_closing_quote_is_expanded() {
        let got = parse_str("A=1\nB=\"x$A\"\nC=\"$A\"\nD=\"${A}y$A\" # note\n").unwrap();
        assert_eq!(value(&got, "B"), "x1");
        assert_eq!(value(&got, "C"), "1");
        assert_eq!(value(&got, "D"), "1y1");
    }

    #[test]
    fn expansion_reads_like_bash() {
        let got = parse_str(concat!(
            "A=1\nB=$A\nA=2\nC=$A\n",
            "PRICE=\"5$\"\nDASH=a$-b\nSPACE=\"$ x\"\n",
            "SQ='$A'\nESC=\\$A\nDQESC=\"\\$A\"\n",
            "DEF=${HK_UNSET_VAR:-fallback}\nSET=${A:-fallback}\nE=\nEMPTY=${E:-f}\nEMPTY2=${E-f}\n",
        ))
        .unwrap();
        let want = [
            ("B", "1"),
            ("C", "2"),
            ("PRICE", "5$"),
            ("DASH", "a$-b"),
            ("SPACE", "$ x"),
            ("SQ", "$A"),
            ("ESC", "$A"),
            ("DQESC", "$A"),
            ("DEF", "fallback"),
            ("SET", "2"),
            ("EMPTY", "f"),
            ("EMPTY2", ""),
        ];
        for (key, want) in want {
            assert_eq!(value(&got, key), want, "{key}");
        }
    }

    #[test]
    fn nul_bytes_are_refused_with_their_line() {
        let err = parse_str("A=1\nB=x\0y\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            ".env:2: a value cannot hold a NUL byte (no process can be given it)"
        );
        let err = parse_str("A=1\n\nB=\"multi\nli\0ne\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            ".env:3: a value cannot hold a NUL byte (no process can be given it)"
        );
    }

    /// A value of 20 MB parses in well under a second in a release build (the figure is
    /// in TESTING.md); the bound here is generous for debug builds and busy machines.
    #[test]
    fn a_20_mb_value_parses_in_linear_time() {
        for (what, value) in [
            ("unquoted", "x".repeat(20 << 20)),
            ("quoted", format!("\"{}\"", "y ".repeat(10 << 20))),
        ] {
            let src = format!("A=1\nBIG={value}\nC=2\n");
            let started = std::time::Instant::now();
            let got = parse_str(&src).unwrap();
            let took = started.elapsed();
            eprintln!("{what} 20 MB value: parsed in {took:?}");
            assert_eq!(got.len(), 3);
            assert!(took < std::time::Duration::from_secs(5), "{what}: {took:?}");
        }
    }

    #[test]
    fn later_files_win_over_earlier_and_inherited() {
        let inherited = [
            ("A".to_owned(), "env".to_owned()),
            ("B".to_owned(), "env".to_owned()),
        ];
        let var = |key: &str, value: &str| Var {
            key: key.to_owned(),
            value: value.to_owned(),
            line: 1,
        };
        let one = vec![var("A", "one"), var("C", "one")];
        let two = vec![var("C", "two")];
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

    /// `.env`-shaped text: entries with every kind of value, comments, blanks, junk.
    fn dotenv_text() -> impl Strategy<Value = String> {
        let value = prop_oneof![
            "[A-Za-z0-9_./:@#-]{0,12}",
            "'[ -&(-~\\n]{0,12}'?",
            "\"[ -!#-~\\n]{0,12}\"?",
            "[ -~]{0,16}",
            "\\$\\{?[A-Z_][A-Z0-9_]{0,3}(:?-[a-z]{0,3})?\\}?[a-z_]{0,3}",
            "\\\\[\\\\'\" $n]{0,1}[a-z]{0,3}",
        ];
        let entry = (
            "(export )?",
            "[A-Za-z_][A-Za-z0-9_.]{0,5}",
            "[ ]?=[ ]?",
            value,
            "( #[ -~]{0,6})?",
        )
            .prop_map(|(export, key, eq, value, comment)| {
                format!("{export}{key}{eq}{value}{comment}")
            });
        let line = prop_oneof![
            4 => entry,
            1 => "[ \\t]{0,2}#[ -~]{0,10}",
            1 => "[ \\t]{0,3}",
            1 => "[ -~\\u{e9}\\u{0}]{0,12}",
        ];
        proptest::collection::vec((line, prop_oneof!["\\n", "\\r\\n"]), 0..10)
            .prop_map(|lines| lines.into_iter().map(|(l, end)| l + &end).collect())
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(Path::new(".env"), &bytes);
        }

        /// Valid text reaches the grammar: the result is variables, or an error naming a
        /// line of the file.
        #[test]
        fn shaped_text_loads_or_names_a_line(text in dotenv_text()) {
            let lines = text.split('\n').count();
            let outer = Vars::from([("HOME".to_owned(), "/home/x".to_owned())]);
            match parse_in(Path::new(".env"), text.as_bytes(), &outer) {
                Ok(vars) => {
                    for var in vars {
                        prop_assert!(var.line >= 1 && var.line <= lines);
                        prop_assert!(!var.value.contains('\0'));
                    }
                }
                Err(EnvError::Syntax { line, .. } | EnvError::Nul { line, .. }) => {
                    prop_assert!(line >= 1 && line <= lines, "line {} of {}", line, lines);
                }
                Err(other) => prop_assert!(false, "{}", other),
            }
        }

        /// Any value written double-quoted (escaping `\`, `"` and `$`) or single-quoted
        /// reads back as itself, and `$KEY` gives it.
        #[test]
        fn quoted_values_round_trip(
            vars in proptest::collection::btree_map("[A-Z_][A-Z0-9_]{0,6}", "[ -~\n]{0,20}", 1..6),
            single in any::<bool>(),
        ) {
            let mut src = String::new();
            for (key, value) in &vars {
                if single && !value.contains('\'') {
                    src += &format!("{key}='{value}'\n");
                } else {
                    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$");
                    src += &format!("export {key} = \"{escaped}\" # {key}\n");
                }
            }
            let (key, value) = vars.iter().next().expect("one at least");
            src += &format!("REF_=\"{key}:$ {{$ $x ${key}.${{{key}}}\"\n");
            let got = parse(Path::new(".env"), src.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
            let want: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .chain([("REF_".to_owned(), format!("{key}:$ {{$  {value}.{value}"))])
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
