//! Runs hkrun's Procfile and `.env` parsers over the shared corpus of real-world files
//! (`../shared/corpus`, described in its README) and compares them with the oracle parses
//! of foreman, honcho and python-dotenv.
//!
//! Where hkrun reads a file differently on purpose (README, "Choices where foreman and Heroku differ"), the file is listed
//! below with its reason. The lists are checked both ways: a listed file that no longer
//! differs fails the test, and so does an unlisted file that differs. Run with
//! `cargo test --test corpus -- --nocapture` to see the summaries.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::panic;
use std::path::{Path, PathBuf};

use hkrun::config::procfile::{Procfile, ProcfileError, Warning};
use serde_json::Value;

/// Why hkrun reads a Procfile differently from foreman and honcho.
#[derive(Clone, Copy, Debug)]
enum Difference {
    /// A line that is not an entry is an error naming it; foreman and honcho skip it.
    Junk { line: usize, text: &'static str },
    /// An indented entry is read; foreman and honcho skip it (Heroku reads it).
    Indented,
    /// A repeated name: the last entry wins in the first one's place, with a warning.
    /// foreman runs every copy, honcho refuses the file.
    Duplicate,
    /// A UTF-16 file with a byte-order mark is decoded, with a warning; foreman and
    /// honcho both fail to read it.
    Utf16,
    /// A file with no entries is refused; foreman and honcho return no processes.
    Empty,
}

impl Difference {
    /// The reason, for the summary.
    fn label(self) -> &'static str {
        match self {
            Self::Junk { .. } => "junk line is an error",
            Self::Indented => "indented entry is read",
            Self::Duplicate => "duplicate: last wins, with a warning",
            Self::Utf16 => "UTF-16 decoded",
            Self::Empty => "no entries is an error",
        }
    }
}

/// Every Procfile in the corpus that hkrun reads differently from foreman and honcho,
/// including every file where those two disagree (duplicates, UTF-16).
const PROCFILE_DIFFERENCES: &[(&str, Difference)] = {
    use Difference::*;
    &[
        (
            "005-04aaayushi--ASPPred--Procfile.windows",
            Junk {
                line: 1,
                text: " heroku local web -f procfile.windows",
            },
        ),
        ("006-04aaayushi--ASPPred--procfile", Indented),
        // UTF-16: decoded, then `web:node` is followed by a line `index.js`.
        (
            "008-0c0de--heroku-url-shorter--Procfile.txt",
            Junk {
                line: 2,
                text: "index.js",
            },
        ),
        (
            "015-100devs--simple-express-app-submission--procfile",
            Utf16,
        ),
        (
            "019-18F--identity-idp--Procfile",
            Junk {
                line: 3,
                text: "mailcatcher -f --http-ip=0.0.0.0",
            },
        ),
        ("047-Ailon007--bottik--Procfile.windows", Indented),
        (
            "052-alecthomas--proctor--Procfile.example",
            Junk {
                line: 3,
                text: "migrate after=init: just db migrate",
            },
        ),
        (
            "057-Antoine1983--postal--Procfile.local",
            Junk {
                line: 1,
                text: "---",
            },
        ),
        (
            "060-AS-37--2021-2022-devops-04-cd-tp--Procfile.txt",
            Junk {
                line: 2,
                text: "yarn start",
            },
        ),
        ("070-CiviWiki--OpenCiviWiki--Procfile.prod", Duplicate),
        // Also has a duplicate `web`, but the Jinja line comes first.
        (
            "076-cookiecutter--cookiecutter-django--__cookiecutter.project_slug____Procfile",
            Junk {
                line: 2,
                text: r#"{%- if cookiecutter.use_async == "y" %}"#,
            },
        ),
        // A merge conflict: also a duplicate `web`.
        (
            "096-diveone--pitchforks--Procfile",
            Junk {
                line: 1,
                text: "<<<<<<< HEAD",
            },
        ),
        ("099-diversify--janu--Procfile", Duplicate),
        (
            "115-heroku--buildpacks-procfile--tests__fixtures__empty_procfile__Procfile",
            Empty,
        ),
        (
            "117-heroku--buildpacks-procfile--tests__fixtures__not_yaml_procfile__Procfile",
            Indented,
        ),
        // Every entry is commented out.
        ("144-ManageIQ--manageiq--Procfile.example", Empty),
        (
            "178-unknown--id1364152154--Procfile",
            Junk {
                line: 3,
                text: "<IfModule mod_rewrite.c>",
            },
        ),
        ("182-unknown--id22007188982--Procfile", Duplicate),
        // Also has a duplicate `web`.
        (
            "183-unknown--id22050586352--Procfile",
            Junk {
                line: 1,
                text: "worker : cd $HOME/heroku_output && ./SitoLotto",
            },
        ),
        ("188-unknown--id28278547032--Procfile", Duplicate),
        ("192-unknown--id35548403232--Procfile", Duplicate),
        ("193-unknown--id36528799327--Procfile", Duplicate),
    ]
};

/// `.env` files hkrun refuses: file, the line the error names, and why.
const DOTENV_REFUSED: &[(&str, usize, &str)] = &[
    (
        "008-bkeepers--dotenv--spec__fixtures__yaml.env",
        1,
        "YAML `KEY: value`, not `KEY=value`",
    ),
    (
        "019-compose-spec--compose-go--dotenv__fixtures__inherited-multi-var.env",
        2,
        "a bare `NAME` without `=` (compose inherits it)",
    ),
    (
        "020-compose-spec--compose-go--dotenv__fixtures__invalid1.env",
        7,
        "`INVALID LINE` (a fixture meant to be invalid)",
    ),
    (
        "021-compose-spec--compose-go--dotenv__fixtures__quoted.env",
        14,
        r"`'Let\'s go!'`: no escapes in single quotes, so the quote ends early",
    ),
    (
        "022-compose-spec--compose-go--dotenv__fixtures__special.env",
        3,
        "`-` in a key (`VAR-WITH-DASHES`)",
    ),
    (
        "024-compose-spec--compose-go--dotenv__fixtures__unquoted.env",
        2,
        UNQUOTED_SPACE,
    ),
    (
        "045-motdotla--dotenv--tests__.env",
        19,
        "backticks are not quotes, so the value has unquoted spaces",
    ),
    (
        "046-motdotla--dotenv--tests__.env-multiline",
        15,
        UNQUOTED_SPACE,
    ),
    ("050-outline--outline--.env.sample", 204, UNQUOTED_SPACE),
    (
        "061-vlucas--phpdotenv--tests__fixtures__env__commented.env",
        10,
        "`foo# comment`: `#` glued to a word starts no comment, so unquoted spaces",
    ),
    (
        "062-vlucas--phpdotenv--tests__fixtures__env__exported.env",
        4,
        "a quoted key (`export \"EDQUOTED\" = 123`)",
    ),
    (
        "068-vlucas--phpdotenv--tests__fixtures__env__unicodevarnames.env",
        1,
        "a non-ASCII key (`AlbertÅberg`)",
    ),
    (
        "070-vlucas--phpdotenv--tests__fixtures__env__windows.env",
        1,
        "not UTF-8 (Windows-1252)",
    ),
];

const UNQUOTED_SPACE: &str = "an unquoted value with a space in it";

/// Values where hkrun and python-dotenv disagree: file, python-dotenv's key, why.
const DOTENV_DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "002-allan2--dotenvy--.env",
        "CODEGEN_TEST_VAR7",
        r"`\ ` outside quotes is an escaped space; python-dotenv keeps the backslash",
    ),
    (
        "003-allan2--dotenvy--.env-substitution",
        "RESULT",
        UNBRACED_EXPANDED,
    ),
    (
        "004-bkeepers--dotenv--spec__fixtures__bom.env",
        "\u{feff}BOM",
        BOM_SKIPPED,
    ),
    (
        "023-compose-spec--compose-go--dotenv__fixtures__substitutions-default.env",
        "OPTION_C",
        UNBRACED_EXPANDED,
    ),
    (
        "047-motdotla--dotenv--tests__.env.bom",
        "\u{feff}BASIC",
        BOM_SKIPPED,
    ),
    (
        "058-rust-lang--crates.io--.env.sample",
        "GIT_REPO_URL",
        UNBRACED_EXPANDED,
    ),
    (
        "067-vlucas--phpdotenv--tests__fixtures__env__specialchars.env",
        "SPVAR1",
        UNBRACED_EXPANDED,
    ),
    (
        "067-vlucas--phpdotenv--tests__fixtures__env__specialchars.env",
        "SPVAR3",
        UNBRACED_EXPANDED,
    ),
    (
        "065-vlucas--phpdotenv--tests__fixtures__env__nested.env",
        "NVAR3",
        UNBRACED_EXPANDED,
    ),
    (
        "065-vlucas--phpdotenv--tests__fixtures__env__nested.env",
        "NVAR5",
        UNBRACED_EXPANDED,
    ),
    (
        "065-vlucas--phpdotenv--tests__fixtures__env__nested.env",
        "NVAR13",
        SINGLE_QUOTES_LITERAL,
    ),
    (
        "065-vlucas--phpdotenv--tests__fixtures__env__nested.env",
        "NVAR14",
        SINGLE_QUOTES_LITERAL,
    ),
    (
        "065-vlucas--phpdotenv--tests__fixtures__env__nested.env",
        "NVAR15",
        r"`\$` escapes the `$`; python-dotenv keeps the backslash and expands",
    ),
    (
        "066-vlucas--phpdotenv--tests__fixtures__env__quoted.env",
        "SQSLASH",
        SINGLE_QUOTES_LITERAL,
    ),
    (
        "069-vlucas--phpdotenv--tests__fixtures__env__utf8-with-bom-encoding.env",
        "\u{feff}FOO",
        BOM_SKIPPED,
    ),
];

const BOM_SKIPPED: &str =
    "hkrun skips a UTF-8 byte-order mark; python-dotenv keeps it in the first key";
const UNBRACED_EXPANDED: &str =
    "`$NAME` is expanded as bash expands it; python-dotenv only expands `${NAME}`";
const SINGLE_QUOTES_LITERAL: &str =
    "single quotes are literal in dotenvy; python-dotenv expands and unescapes in them";

#[test]
fn procfiles_read_like_foreman_and_honcho_except_where_listed() {
    let Some(corpus) = corpus() else { return };
    let files = files_in(&corpus.join("procfiles"));
    let listed: BTreeMap<&str, Difference> = PROCFILE_DIFFERENCES.iter().copied().collect();
    let mut problems = unknown_files(listed.keys().copied(), &files);
    let mut matched = 0;
    let mut by_reason = BTreeMap::<&str, usize>::new();

    for name in &files {
        let bytes = fs::read(corpus.join("procfiles").join(name)).expect("corpus file is readable");
        let oracle = oracle(&corpus, "procfiles", name);
        let foreman = procfile_pairs(&oracle["foreman"]);
        let honcho = procfile_pairs(&oracle["honcho"]);
        let agreed = foreman
            .as_ref()
            .filter(|_| oracle["agree"].as_bool() == Some(true));
        let parsed = Procfile::parse(&bytes);
        let same = match (&parsed, agreed) {
            (Ok(procfile), Some(agreed)) => pairs(procfile) == *agreed,
            _ => false,
        };
        match (same, listed.get(name.as_str())) {
            (true, None) => {
                matched += 1;
                if let Ok(Procfile { warnings, .. }) = &parsed
                    && !warnings.is_empty()
                {
                    problems.push(format!("{name}: same entries but warnings {warnings:?}"));
                }
            }
            (true, Some(difference)) => problems.push(format!(
                "{name}: listed as {difference:?}, but hkrun now reads it like foreman and \
                 honcho: remove it from PROCFILE_DIFFERENCES"
            )),
            (false, None) => problems.push(format!(
                "{name}: hkrun gives {parsed:?}, foreman {foreman:?}, honcho {honcho:?}: \
                 fix the parser or list the file in PROCFILE_DIFFERENCES with its reason"
            )),
            (false, Some(&difference)) => {
                let checked = check_difference(
                    difference,
                    &bytes,
                    &parsed,
                    foreman.as_deref(),
                    honcho.as_deref(),
                );
                match checked {
                    Ok(()) => *by_reason.entry(difference.label()).or_default() += 1,
                    Err(why) => problems.push(format!(
                        "{name}: listed as {difference:?}, but {why} (hkrun gives {parsed:?})"
                    )),
                }
            }
        }
    }

    let reasons: Vec<String> = by_reason
        .iter()
        .map(|(reason, count)| format!("  {count:3}  {reason}"))
        .collect();
    println!(
        "procfiles: {} files, {matched} read as foreman and honcho read them, {} deliberate \
         differences:\n{}",
        files.len(),
        by_reason.values().sum::<usize>(),
        reasons.join("\n")
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Checks that hkrun differs from foreman and honcho in the way `difference` says.
fn check_difference(
    difference: Difference,
    bytes: &[u8],
    parsed: &Result<Procfile, ProcfileError>,
    foreman: Option<&[(String, String)]>,
    honcho: Option<&[(String, String)]>,
) -> Result<(), String> {
    match difference {
        Difference::Junk { line, text } => {
            let want = ProcfileError::NotAnEntry {
                line,
                text: text.to_owned(),
            };
            if parsed.as_ref().err() != Some(&want) {
                return Err(format!("hkrun should refuse line {line}"));
            }
            if foreman_reads(text) {
                return Err("foreman and honcho read that line as an entry".to_owned());
            }
        }
        Difference::Indented => {
            let procfile = parsed.as_ref().map_err(|e| format!("hkrun fails: {e}"))?;
            let text = std::str::from_utf8(bytes).expect("an indented Procfile is UTF-8");
            let lines: Vec<&str> = text.split('\n').collect();
            let (indented, flush): (Vec<_>, Vec<_>) = procfile
                .entries()
                .iter()
                .partition(|e| lines[e.line - 1].starts_with(char::is_whitespace));
            let flush: Vec<_> = flush
                .into_iter()
                .map(|e| (e.name.clone(), e.command.clone()))
                .collect();
            if indented.is_empty() || Some(flush.as_slice()) != foreman {
                return Err("hkrun should give foreman's entries plus indented ones".to_owned());
            }
            if !procfile.warnings.is_empty() {
                return Err("hkrun should not warn".to_owned());
            }
        }
        Difference::Duplicate => {
            let procfile = parsed.as_ref().map_err(|e| format!("hkrun fails: {e}"))?;
            let foreman = foreman.ok_or("foreman should read the file")?;
            if honcho.is_some() {
                return Err("honcho should refuse the file".to_owned());
            }
            // Last wins, in the first one's place.
            let mut want: Vec<(String, String)> = Vec::new();
            for (name, command) in foreman {
                match want.iter_mut().find(|(n, _)| n == name) {
                    Some(first) => first.1.clone_from(command),
                    None => want.push((name.clone(), command.clone())),
                }
            }
            if pairs(procfile) != want {
                return Err(format!("hkrun should give {want:?}"));
            }
            let duplicates = procfile
                .warnings
                .iter()
                .filter(|w| matches!(w, Warning::Duplicate { .. }))
                .count();
            if duplicates != foreman.len() - want.len() || duplicates != procfile.warnings.len() {
                return Err("hkrun should warn once per repeated line".to_owned());
            }
        }
        Difference::Utf16 => {
            let procfile = parsed.as_ref().map_err(|e| format!("hkrun fails: {e}"))?;
            if foreman.is_some() || honcho.is_some() {
                return Err("foreman and honcho should fail to read the file".to_owned());
            }
            let units: Vec<u16> = bytes
                .strip_prefix(&[0xFF, 0xFE])
                .ok_or("the file should start with a UTF-16LE byte-order mark")?
                .chunks_exact(2)
                .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
                .collect();
            let utf8 = String::from_utf16(&units).map_err(|e| e.to_string())?;
            let as_utf8 = Procfile::parse(utf8.as_bytes()).map_err(|e| e.to_string())?;
            if procfile.entries() != as_utf8.entries() || procfile.warnings != [Warning::Utf16] {
                return Err("hkrun should read it as its UTF-8 text, with a warning".to_owned());
            }
        }
        Difference::Empty => {
            if !matches!(parsed, Err(ProcfileError::Empty)) {
                return Err("hkrun should refuse it as empty".to_owned());
            }
            if foreman.is_none_or(|f| !f.is_empty()) {
                return Err("foreman and honcho should find no entries".to_owned());
            }
        }
    }
    Ok(())
}

/// Whether foreman and honcho read `line` as an entry: `^([A-Za-z0-9_-]+):\s*(.+)$`.
fn foreman_reads(line: &str) -> bool {
    line.split_once(':').is_some_and(|(name, rest)| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && !rest.is_empty()
    })
}

#[test]
fn dotenv_files_load_or_name_the_failing_line() {
    let Some(corpus) = corpus() else { return };
    let files = files_in(&corpus.join("dotenv"));
    let refused: BTreeMap<&str, (usize, &str)> = DOTENV_REFUSED
        .iter()
        .map(|&(name, line, why)| (name, (line, why)))
        .collect();
    let mut problems = unknown_files(refused.keys().copied(), &files);
    let mut report = Vec::new();
    let mut loaded = 0;
    let mut keys = 0;
    let mut refused_as_listed = 0;

    for name in &files {
        let path = corpus.join("dotenv").join(name);
        let bytes = fs::read(&path).expect("corpus file is readable");
        let Ok(result) = panic::catch_unwind(|| hkrun::config::env::parse(&path, &bytes)) else {
            problems.push(format!("{name}: the parser panicked"));
            continue;
        };
        match (result, refused.get(name.as_str())) {
            (Ok(vars), None) => {
                loaded += 1;
                // A repeated key counts once: the last value wins.
                let distinct = vars.iter().map(|(k, _)| k).collect::<BTreeSet<_>>().len();
                keys += distinct;
                report.push(format!("  loads {distinct:3} keys   {name}"));
            }
            (Ok(_), Some(_)) => {
                problems.push(format!("{name}: loads now: remove it from DOTENV_REFUSED"));
            }
            (Err(err), want) => {
                let message = err.to_string();
                let prefix = format!("{}:", path.display());
                let line = message
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.split_once(':'))
                    .and_then(|(line, _)| line.parse::<usize>().ok());
                if message.contains(['\n', '\r']) || line.is_none() {
                    problems.push(format!(
                        "{name}: the error should be one line starting with `{prefix}<line>:`, \
                         not {message:?}"
                    ));
                }
                match want {
                    Some(&(want, why)) if line == Some(want) => {
                        refused_as_listed += 1;
                        report.push(format!("  refused, line {want:3}  {name}: {why}"));
                    }
                    Some(&(want, _)) => problems.push(format!(
                        "{name}: expected an error on line {want}, got {message:?}"
                    )),
                    None => problems.push(format!(
                        "{name}: refused ({message}): fix the parser or list the file in \
                         DOTENV_REFUSED with its reason"
                    )),
                }
            }
        }
    }

    println!(
        "dotenv: {} files, {loaded} load ({keys} keys), {refused_as_listed} refused as listed:\n{}",
        files.len(),
        report.join("\n")
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn dotenv_values_match_python_dotenv_except_where_listed() {
    let Some(corpus) = corpus() else { return };
    let files = files_in(&corpus.join("dotenv"));
    let listed: BTreeMap<(&str, &str), &str> = DOTENV_DIFFERENCES
        .iter()
        .map(|&(name, key, why)| ((name, key), why))
        .collect();
    let mut problems = unknown_files(listed.keys().map(|&(name, _)| name), &files);
    let mut report = Vec::new();
    let mut compared = 0;

    for name in &files {
        let path = corpus.join("dotenv").join(name);
        let bytes = fs::read(&path).expect("corpus file is readable");
        // Files hkrun refuses are the other test's business.
        let Ok(vars) = hkrun::config::env::parse(&path, &bytes) else {
            continue;
        };
        let oracle = oracle(&corpus, "dotenv", name);
        let Some(python) = oracle["python-dotenv"].as_array() else {
            continue;
        };
        for pair in python {
            let key = pair[0].as_str().expect("python-dotenv keys are strings");
            // A key without `=` is null to python-dotenv: nothing to compare.
            let Some(want) = pair[1].as_str() else {
                continue;
            };
            compared += 1;
            // A repeated key: the last value wins, as in python-dotenv's dict.
            let got = vars.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
            let same = got.is_some_and(|got| got == want);
            match (same, listed.get(&(name.as_str(), key))) {
                (true, None) => {}
                (true, Some(_)) => problems.push(format!(
                    "{name}: {key:?} now matches python-dotenv: remove it from \
                     DOTENV_DIFFERENCES"
                )),
                (false, Some(why)) => {
                    report.push(format!("  {name} {key:?}: {got:?}, not {want:?}: {why}"));
                }
                (false, None) => problems.push(format!(
                    "{name}: {key:?} is {got:?}, python-dotenv says {want:?}: fix the parser \
                     or list it in DOTENV_DIFFERENCES"
                )),
            }
        }
    }

    println!(
        "python-dotenv: {compared} values compared, {} differ as listed:\n{}",
        report.len(),
        report.join("\n")
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Values where hkrun and bash differ: file, key, why. bash's value is what
/// `set -a; . FILE` leaves in an empty environment (`env -i`), which is what `$NAME`
/// means in a `.env` file (README).
const BASH_DIFFERENCES: &[(&str, &str, &str)] = &[
    ("001-0xNF--radionf--.env", "SPOTIPY_CLIENT_ID", CRLF),
    ("001-0xNF--radionf--.env", "SPOTIPY_CLIENT_SECRET", CRLF),
    ("001-0xNF--radionf--.env", "SPOTIPY_REDIRECT_URI", CRLF),
    (
        "002-allan2--dotenvy--.env",
        "CODEGEN_TEST_VAR10",
        BLANKS_AROUND_EQUALS,
    ),
    (
        "002-allan2--dotenvy--.env",
        "CODEGEN_TEST_VAR11",
        BLANKS_AROUND_EQUALS,
    ),
    ("004-bkeepers--dotenv--spec__fixtures__bom.env", "BOM", BOM),
    (
        "006-bkeepers--dotenv--spec__fixtures__plain.env",
        "OPTION_C",
        BLANKS_AROUND_EQUALS,
    ),
    (
        "006-bkeepers--dotenv--spec__fixtures__plain.env",
        "OPTION_D",
        BLANKS_AROUND_EQUALS,
    ),
    (
        "006-bkeepers--dotenv--spec__fixtures__plain.env",
        "OPTION_E",
        BLANKS_AROUND_EQUALS,
    ),
    (
        "007-bkeepers--dotenv--spec__fixtures__quoted.env",
        "OPTION_H",
        NEWLINE_ESCAPE,
    ),
    (
        "011-Brunoaleht--Strapi-Blog-Api--.env.example",
        "DATABASE_HOST",
        BLANKS_AROUND_EQUALS,
    ),
    (
        "011-Brunoaleht--Strapi-Blog-Api--.env.example",
        "DATABASE_SSL",
        BLANKS_AROUND_EQUALS,
    ),
    (
        "015-BrunoV21--AiCore--.env.example",
        "ASYNC_CONNECTION_STRING",
        BLANKS_AROUND_EQUALS,
    ),
    (
        "015-BrunoV21--AiCore--.env.example",
        "CUSTOM_MODELS",
        BLANKS_AROUND_EQUALS,
    ),
    (
        "034-houndci--hound--.env.test",
        "GITHUB_APP_PEM",
        NEWLINE_ESCAPE,
    ),
    (
        "041-mattermost--docker--env.example",
        "MM_SQLSETTINGS_DATASOURCE",
        SHELL_OPERATOR,
    ),
    ("047-motdotla--dotenv--tests__.env.bom", "BASIC", BOM),
    (
        "051-outline--outline--.env.test",
        "GITHUB_APP_NAME",
        SHELL_OPERATOR,
    ),
    (
        "051-outline--outline--.env.test",
        "GITHUB_CLIENT_ID",
        SHELL_OPERATOR,
    ),
    (
        "051-outline--outline--.env.test",
        "GITHUB_CLIENT_SECRET",
        SHELL_OPERATOR,
    ),
    (
        "051-outline--outline--.env.test",
        "GITHUB_APP_PRIVATE_KEY",
        NEWLINE_ESCAPE,
    ),
    (
        "064-vlucas--phpdotenv--tests__fixtures__env__multiline.env",
        "TEST_ND",
        NEWLINE_ESCAPE,
    ),
    (
        "065-vlucas--phpdotenv--tests__fixtures__env__nested.env",
        "N.VAR6",
        DOTTED_NAME,
    ),
    (
        "065-vlucas--phpdotenv--tests__fixtures__env__nested.env",
        "NVAR7",
        DOTTED_NAME,
    ),
    (
        "065-vlucas--phpdotenv--tests__fixtures__env__nested.env",
        "NVAR12",
        BAD_SUBSTITUTION,
    ),
    (
        "066-vlucas--phpdotenv--tests__fixtures__env__quoted.env",
        "QWHITESPACE",
        BLANKS_AROUND_EQUALS,
    ),
    (
        "069-vlucas--phpdotenv--tests__fixtures__env__utf8-with-bom-encoding.env",
        "FOO",
        BOM,
    ),
];

const CRLF: &str = "CRLF line ends: bash keeps the `\\r` in the value";
const BLANKS_AROUND_EQUALS: &str =
    "blanks around `=` are allowed (dotenvy's dialect); to bash the line is a command";
const BOM: &str = "hkrun skips a UTF-8 byte-order mark; bash keeps it glued to the first key";
const NEWLINE_ESCAPE: &str =
    "`\\n` in double quotes is a newline (dotenv's escape); bash keeps backslash-n";
const SHELL_OPERATOR: &str = "`;` and `&` are text in a value; to bash they end the assignment";
const DOTTED_NAME: &str = "`.` may be in a key (dotenvy's dialect); bash has no such names";
const BAD_SUBSTITUTION: &str =
    "`${${NAME}}` is looked up as written, as dotenvy and python-dotenv do; bash refuses it";

#[test]
fn dotenv_values_match_bash_except_where_listed() {
    let Some(corpus) = corpus() else { return };
    let Some(bash) = bash() else { return };
    let files = files_in(&corpus.join("dotenv"));
    let listed: BTreeMap<(&str, &str), &str> = BASH_DIFFERENCES
        .iter()
        .map(|&(name, key, why)| ((name, key), why))
        .collect();
    let mut problems = unknown_files(listed.keys().map(|&(name, _)| name), &files);
    let mut unused: BTreeSet<(&str, &str)> = listed.keys().copied().collect();
    let mut report = Vec::new();
    let (mut compared, mut expanded) = (0, 0);
    // bash runs in an empty folder with no PATH, so a `$(...)` in a file runs no program.
    let scratch = tempfile::tempdir().expect("a scratch folder");
    // What bash starts with: the PATH given to it, and the PWD it sets itself.
    let outer: hkrun::config::env::Vars = [
        ("PATH", "/nonexistent".to_owned()),
        ("PWD", scratch.path().display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();

    for name in &files {
        let path = corpus.join("dotenv").join(name);
        let bytes = fs::read(&path).expect("corpus file is readable");
        // Files hkrun refuses are another test's business.
        let Ok(vars) = hkrun::config::env::parse_in(&path, &bytes, &outer) else {
            continue;
        };
        let mut last = BTreeMap::new();
        for var in &vars {
            last.insert(var.key.as_str(), var.value.as_str());
        }
        let shell = bash_values(&bash, &path, last.keys().copied(), scratch.path());
        let text = String::from_utf8_lossy(&bytes);
        for (key, got) in last {
            compared += 1;
            let uses_dollar = text
                .lines()
                .any(|l| l.contains(&format!("{key}=")) && l.contains('$'));
            expanded += usize::from(uses_dollar);
            let want = shell.get(key);
            let same = want.is_some_and(|want| want == got);
            let listed_why = listed.get(&(name.as_str(), key));
            unused.retain(|&(n, k)| (n, k) != (name.as_str(), key));
            match (same, listed_why) {
                (true, None) => {}
                (true, Some(_)) => problems.push(format!(
                    "{name}: {key:?} now matches bash: remove it from BASH_DIFFERENCES"
                )),
                (false, Some(why)) => {
                    report.push(format!("  {name} {key:?}: {got:?}, bash {want:?}: {why}"));
                }
                (false, None) => problems.push(format!(
                    "{name}: {key:?} is {got:?}, bash says {want:?}: fix the parser or list \
                     it in BASH_DIFFERENCES"
                )),
            }
        }
    }
    for (name, key) in unused {
        if files.iter().any(|f| f == name) {
            problems.push(format!(
                "{name}: {key:?} is listed but hkrun does not load it"
            ));
        }
    }

    println!(
        "bash: {compared} values compared ({expanded} on lines with `$`), {} differ as listed:\n{}",
        report.len(),
        report.join("\n")
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// bash, or `None` (after saying so) where there is none; under `CI=true` its absence
/// fails the test.
fn bash() -> Option<PathBuf> {
    let found = ["/bin/bash", "/usr/bin/bash"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            !under_ci(),
            "bash not found: under CI the bash comparison must run"
        );
        let _ = writeln!(std::io::stderr(), "skipped: bash not found");
    }
    found
}

/// What `set -a; . FILE` gives each of `keys` in bash, started with an empty environment
/// in `cwd`; a key bash leaves unset is absent.
fn bash_values<'a>(
    bash: &Path,
    file: &Path,
    keys: impl Iterator<Item = &'a str>,
    cwd: &Path,
) -> BTreeMap<String, String> {
    let script = r#"set -a; . "$1" >/dev/null 2>&1; shift
        for k; do
            if [[ $k =~ ^[A-Za-z_][A-Za-z0-9_]*$ && -v $k ]]; then printf '%s\0%s\0' "$k" "${!k}"; fi
        done"#;
    let output = std::process::Command::new(bash)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", "/nonexistent")
        .args(["--norc", "--noprofile", "-c", script, "bash"])
        .arg(file)
        .args(keys)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("bash runs");
    let fields: Vec<String> = output
        .stdout
        .split(|&b| b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    fields
        .chunks_exact(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect()
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The corpus folder, or `None` (after saying so) when this checkout has none. Under
/// `CI=true` a missing corpus is a failure: CI must check what these tests check.
fn corpus() -> Option<PathBuf> {
    let corpus = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus"));
    if corpus.is_dir() {
        return Some(corpus.to_owned());
    }
    assert!(
        !under_ci(),
        "{} not found: under CI the corpus tests must run",
        corpus.display()
    );
    // Straight to stderr: the test harness hides `println!` of a passing test.
    let _ = writeln!(std::io::stderr(), "skipped: {} not found", corpus.display());
    None
}

/// The names of the files in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("corpus folder is readable")
        .map(|entry| entry.expect("corpus folder is readable"))
        .filter(|entry| entry.path().is_file())
        .map(|entry| {
            entry
                .file_name()
                .into_string()
                .expect("corpus file names are UTF-8")
        })
        .collect();
    names.sort();
    names
}

/// A problem for each listed name that is not a corpus file (so a typo is not silently
/// never checked).
fn unknown_files<'a>(listed: impl Iterator<Item = &'a str>, files: &[String]) -> Vec<String> {
    listed
        .filter(|name| !files.iter().any(|f| f == name))
        .map(|name| format!("{name}: listed but not in the corpus"))
        .collect()
}

/// The oracle parse of the corpus file `kind/name`.
fn oracle(corpus: &Path, kind: &str, name: &str) -> Value {
    let path = corpus
        .join("oracle")
        .join(kind)
        .join(format!("{name}.json"));
    let text = fs::read(&path).expect("every corpus file has an oracle file");
    serde_json::from_slice(&text).expect("oracle files are JSON")
}

/// A tool's Procfile parse with commands trimmed (hkrun trims), or `None` if it failed.
fn procfile_pairs(parse: &Value) -> Option<Vec<(String, String)>> {
    let pairs = parse.as_array()?.iter().map(|pair| {
        let text = |i: usize| pair[i].as_str().expect("oracle pairs are strings");
        (text(0).to_owned(), text(1).trim().to_owned())
    });
    Some(pairs.collect())
}

/// hkrun's entries as `(name, command)` pairs.
fn pairs(procfile: &Procfile) -> Vec<(String, String)> {
    procfile
        .entries()
        .iter()
        .map(|e| (e.name.clone(), e.command.clone()))
        .collect()
}
