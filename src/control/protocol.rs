//! The control protocol, version 1: newline-delimited JSON, one request per line, one
//! response per line (a log stream sends one line per log line). Types and parsing only;
//! ARCHITECTURE.md documents it for other clients.

use std::fmt;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::logs::LogFormat;
use crate::plan::formation::ScaleChange;
use crate::supervisor::input::Target;
use crate::supervisor::outcome::Outcome;

/// The protocol version this hkrun speaks.
pub const VERSION: u32 = 1;
/// The longest request line taken, newline included; longer ones are refused.
pub const MAX_REQUEST: usize = 64 * 1024;
pub use crate::logs::DEFAULT_LINES;

/// What a client asks, as `{"v":1,"cmd":"ps"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// Every dyno and its state; with `cpu`, each running dyno's CPU time too (`top`).
    Ps {
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cpu: bool,
    },
    /// Heroku's changes, each as typed: `web=3`, `clock+1`, `web=2:standard-2x`.
    Scale { changes: Vec<Parsed<ScaleChange>> },
    /// A type (`web`), a dyno (`web.2`), a glob (`work*`), several (`targets`, with
    /// `target` or without), or every dyno.
    Restart {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<Parsed<Target>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        targets: Vec<Parsed<Target>>,
    },
    /// Types, dynos or globs, as `restart`; with no target, the whole app.
    Stop {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<Parsed<Target>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        targets: Vec<Parsed<Target>>,
    },
    /// A signal (`SIGHUP`, `HUP`, `1`) to the process group of each dyno named, as
    /// `restart` names them (at least one); the dynos keep running.
    Kill {
        targets: Vec<Parsed<Target>>,
        signal: Parsed<Signal>,
    },
    /// Attach to a `--tty` dyno's terminal (`web.1`, or a type with one dyno): after the
    /// answer, the connection carries the terminal's bytes both ways until either side
    /// closes it.
    Connect {
        dyno: String,
        /// The client's terminal, `[rows, columns]`: the dyno's while it is attached.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<[u16; 2]>,
        /// The dyno's bytes come framed (each chunk an `output` line, then its bytes), and
        /// the last line says how the run ended (`exit`). Without it, raw bytes, as for
        /// clients from before.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        framed: bool,
    },
    /// The terminal of an attached `connect` client has a new size, `[rows, columns]`:
    /// the dyno's too. Only the client attached to `dyno` may ask.
    Resize { dyno: String, size: [u16; 2] },
    /// Maintenance mode on or off (`maintenance:on`, `maintenance:off`), or as it is
    /// (`maintenance`): answered with a message.
    Maintenance {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on: Option<bool>,
    },
    /// Read the env files again, then restart every dyno (web preboot-style):
    /// `config:set` and `config:unset` on a running app.
    Reload {},
    /// Which protocol and features the server speaks (answered with `Hello`); `features`
    /// are the client's own. A server from before `hello` refuses it as an unknown
    /// `cmd`: it has none of the features.
    Hello {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        features: Vec<String>,
    },
    /// The last `lines` log lines, then with `tail` the live stream.
    Logs {
        #[serde(default = "default_lines")]
        lines: usize,
        #[serde(default)]
        tail: bool,
        /// A type (`web`) or a dyno (`web.1`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ps: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<LogSource>,
    },
}

fn default_lines() -> usize {
    DEFAULT_LINES
}

/// What a side of the protocol does beyond its first requests, as `hello` names it.
pub mod feature {
    /// `connect` takes `framed`: the dyno's bytes in `output` frames, its run's `exit`.
    pub const FRAMED: &str = "framed";
    /// `connect` takes the client's `size`, and `resize` is served.
    pub const SIZE: &str = "size";
    /// A change's answer carries its `outcome`.
    pub const OUTCOME: &str = "outcome";
    /// `ps` takes `cpu`: each running dyno's CPU time (`hkrun top`).
    pub const CPU: &str = "cpu";
    /// Everything this hkrun speaks.
    pub const ALL: [&str; 4] = [FRAMED, SIZE, OUTCOME, CPU];
}

/// The answer to `hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version (`VERSION`).
    pub version: u32,
    #[serde(default)]
    pub features: Vec<String>,
}

impl Hello {
    /// This hkrun's.
    pub fn ours() -> Self {
        Self {
            version: VERSION,
            features: feature::ALL.map(String::from).to_vec(),
        }
    }

    pub fn has(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }
}

/// A value a request carries as text (`web=3`, `web.2`, `HUP`), read when the request
/// is: a bad one refuses the request, in the words of `FromText`. It is sent again as it
/// was written, so what goes on the wire is what every hkrun speaking protocol 1 reads.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String", bound(deserialize = "T: FromText"))]
pub struct Parsed<T> {
    value: T,
    text: String,
}

impl<T: FromText> Parsed<T> {
    /// `text` read; the error is what the server answers.
    pub fn read(text: impl Into<String>) -> Result<Self, String> {
        let text = text.into();
        let value = T::from_text(&text)?;
        Ok(Self { value, text })
    }
}

impl<T> Parsed<T> {
    /// A value already read from `text` (the client checks its arguments first).
    pub(crate) fn from_parts(value: T, text: impl Into<String>) -> Self {
        Self {
            value,
            text: text.into(),
        }
    }

    pub fn value(&self) -> &T {
        &self.value
    }

    pub fn into_value(self) -> T {
        self.value
    }

    /// As the client wrote it.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl<T: FromText> TryFrom<String> for Parsed<T> {
    type Error = BadValue;

    fn try_from(text: String) -> Result<Self, BadValue> {
        Self::read(text).map_err(BadValue)
    }
}

impl<T> Serialize for Parsed<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// A request's value that does not read, as `parse_request` answers it: in its own
/// words, without serde's `bad request: `. Serde keeps only an error's text, so the text
/// carries a mark (`BAD_VALUE`) that no message of serde's starts with.
#[derive(Debug)]
pub struct BadValue(String);

const BAD_VALUE: char = '\u{1}';

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{BAD_VALUE}{}", self.0)
    }
}

/// What a request's text values are read as; the error is the answer's text.
pub trait FromText: Sized {
    fn from_text(text: &str) -> Result<Self, String>;
}

impl FromText for ScaleChange {
    fn from_text(text: &str) -> Result<Self, String> {
        text.parse()
            .map_err(|err: crate::plan::formation::FormationError| err.to_string())
    }
}

impl FromText for Target {
    fn from_text(text: &str) -> Result<Self, String> {
        text.parse().map_err(|()| {
            format!(
                "bad target `{text}` (expected a process type such as web, a dyno such as \
                 web.2, or a glob such as 'work*')"
            )
        })
    }
}

/// As `dyno::signal_named` reads it: `SIGHUP`, `HUP`, `hup` or `1`.
impl FromText for Signal {
    fn from_text(text: &str) -> Result<Self, String> {
        crate::dyno::signal_named(text).ok_or_else(|| {
            format!(
                "bad signal `{text}` (expected a name such as SIGHUP, HUP or USR1, or a number)"
            )
        })
    }
}

pub use crate::logs::LogSource;

/// Reads one request line (without its newline). The error is the text of the error
/// response.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("malformed request: {e}"))?;
    let serde_json::Value::Object(mut fields) = value else {
        return Err("malformed request: expected a JSON object".into());
    };
    match fields.remove("v") {
        Some(v) if v.as_u64() == Some(u64::from(VERSION)) => {}
        Some(v) => {
            return Err(format!(
                "unsupported protocol version {v} (this hkrun speaks {VERSION})"
            ));
        }
        None => return Err(format!("missing protocol version (send \"v\":{VERSION})")),
    }
    serde_json::from_value(serde_json::Value::Object(fields)).map_err(|e| {
        let text = e.to_string();
        match text.strip_prefix(BAD_VALUE) {
            Some(bad_value) => bad_value.to_owned(),
            None => format!("bad request: {text}"),
        }
    })
}

/// One request as a line, newline included.
pub fn encode_request(request: &Request) -> String {
    let mut value = serde_json::to_value(request).unwrap_or_default();
    if let serde_json::Value::Object(fields) = &mut value {
        fields.insert("v".into(), VERSION.into());
    }
    format!("{value}\n")
}

/// One line from the supervisor, as it is on the wire: which field is set says what it
/// is (`Reply` has one variant for each). Clients of any version read it as this; hkrun
/// writes and reads it as a `Reply`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What a change came to, as data, beside the `message` or `error` that says it. One
    /// this hkrun does not know (a newer one's) is left out: the text still says it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "known_outcome"
    )]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ps: Option<Ps>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogsHeader>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<LogLine>,
    /// Batches of lines a `--tail` client missed because it read too slowly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub end: bool,
    /// The next this many bytes, right after this line, are what the dyno wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<usize>,
    /// The dyno's run has ended, as `Process exited with status N` says: its code, or
    /// 128 + the signal that killed it. The last line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    /// The answer to `hello`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hello: Option<Hello>,
}

fn known_outcome<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Outcome>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(value.and_then(|value| serde_json::from_value(value).ok()))
}

/// One line from the supervisor: one variant per kind of line. Written as a `Response`
/// would be, field for field, so clients of every version read it.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `ok: false`: what went wrong; with the core's outcome when it refused a change.
    Error {
        error: String,
        outcome: Option<Outcome>,
    },
    /// Done, and what to tell the user; with the core's outcome for a change.
    Message {
        message: String,
        outcome: Option<Outcome>,
    },
    /// Done, nothing to say (`resize`).
    Done,
    Ps(Ps),
    /// The header of a `logs` answer.
    Logs(LogsHeader),
    Line(LogLine),
    /// Batches of lines a `--tail` client missed because it read too slowly.
    Skipped(u64),
    /// The end of the log lines.
    End,
    /// The next this many bytes, right after this line, are what the dyno wrote.
    Output(usize),
    /// The dyno's run has ended: its code, or 128 + the signal that killed it.
    Exit(i32),
    Hello(Hello),
}

impl Reply {
    pub fn error(text: impl Into<String>) -> Self {
        Self::Error {
            error: text.into(),
            outcome: None,
        }
    }

    pub fn message(text: impl Into<String>) -> Self {
        Self::Message {
            message: text.into(),
            outcome: None,
        }
    }

    /// A change's answer: `ok` when done, its text for clients that only print, and the
    /// outcome itself.
    pub fn outcome(outcome: Outcome) -> Self {
        let text = outcome.to_string();
        match outcome.is_done() {
            true => Self::Message {
                message: text,
                outcome: Some(outcome),
            },
            false => Self::Error {
                error: text,
                outcome: Some(outcome),
            },
        }
    }

    /// What the user is told of a message or an error: the outcome in this hkrun's words
    /// when the line carries one, else the server's text.
    pub fn said(&self) -> Option<String> {
        match self {
            Self::Error {
                error: text,
                outcome,
            }
            | Self::Message {
                message: text,
                outcome,
            } => Some(
                outcome
                    .as_ref()
                    .map_or_else(|| text.clone(), ToString::to_string),
            ),
            _ => None,
        }
    }

    /// The line to send, newline included.
    pub fn encode(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// As a `Response` writes it: `v`, `ok`, then the one field of its kind.
impl Serialize for Reply {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("v", &VERSION)?;
        map.serialize_entry("ok", &!matches!(self, Self::Error { .. }))?;
        match self {
            Self::Error {
                error: text,
                outcome,
            }
            | Self::Message {
                message: text,
                outcome,
            } => {
                let key = match self {
                    Self::Error { .. } => "error",
                    _ => "message",
                };
                map.serialize_entry(key, text)?;
                if let Some(outcome) = outcome {
                    map.serialize_entry("outcome", outcome)?;
                }
            }
            Self::Done => {}
            Self::Ps(ps) => map.serialize_entry("ps", ps)?,
            Self::Logs(header) => map.serialize_entry("logs", header)?,
            Self::Line(line) => map.serialize_entry("line", line)?,
            Self::Skipped(n) => map.serialize_entry("skipped", n)?,
            Self::End => map.serialize_entry("end", &true)?,
            Self::Output(n) => map.serialize_entry("output", n)?,
            Self::Exit(code) => map.serialize_entry("exit", code)?,
            Self::Hello(hello) => map.serialize_entry("hello", hello)?,
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Reply {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Response::deserialize(d).map(Self::from)
    }
}

/// The kind of line by which field is set, as clients have always read it.
impl From<Response> for Reply {
    fn from(line: Response) -> Self {
        let Response {
            ok,
            error,
            message,
            outcome,
            ..
        } = line;
        if !ok {
            return Self::Error {
                error: error.unwrap_or_default(),
                outcome,
            };
        }
        if let Some(message) = message {
            return Self::Message { message, outcome };
        }
        match line {
            Response { ps: Some(ps), .. } => Self::Ps(ps),
            Response {
                logs: Some(header), ..
            } => Self::Logs(header),
            Response { line: Some(l), .. } => Self::Line(l),
            Response {
                skipped: Some(n), ..
            } => Self::Skipped(n),
            Response { end: true, .. } => Self::End,
            Response {
                output: Some(n), ..
            } => Self::Output(n),
            Response { exit: Some(c), .. } => Self::Exit(c),
            Response {
                hello: Some(hello), ..
            } => Self::Hello(hello),
            _ => Self::Done,
        }
    }
}

/// `hkrun ps --json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ps {
    /// The router's port, when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<u16>,
    /// Types with dynos, in Procfile order (`release` first while it runs).
    pub types: Vec<PsType>,
    pub dynos: Vec<PsDyno>,
    /// hkrun.toml's `[[scheduler]]` jobs, in its order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scheduler: Vec<PsJob>,
    /// Every process type of the Procfile, running or not: what `logs --ps` may name.
    /// Kept in hkrun, never sent.
    #[serde(skip)]
    pub procfile: Vec<String>,
}

/// A `[[scheduler]]` job in `ps`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsJob {
    pub command: String,
    /// `every 10 minutes`, `hourly at :30`, `daily at 01:30 UTC`, `cron */5 * * * *`.
    pub frequency: String,
    /// When it runs next, UTC, RFC 3339.
    pub next_run: Option<String>,
    /// Its run still going (`scheduler.3`), if any.
    pub running: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsType {
    pub name: String,
    pub command: String,
    /// `Standard-1X`, or an amount such as `256M`; none for `release`.
    pub size: Option<String>,
    /// Dynos in the formation (not counting ones leaving it).
    pub count: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsDyno {
    /// `web.1`.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// starting, up, crashed, stopping or down.
    pub state: String,
    /// When the state began, UTC, RFC 3339.
    pub since: String,
    /// Seconds in this state when the answer was made.
    pub age_secs: u64,
    pub pid: Option<i32>,
    pub port: Option<u16>,
    /// Resident memory of the dyno's processes at the last sample, in bytes.
    pub memory: Option<u64>,
    /// The memory quota in bytes; none for `release`.
    pub quota: Option<u64>,
    /// How the last process ended: its code, or 128 + the signal.
    pub last_exit: Option<i32>,
    /// Times its process was started again (crashes, restarts, R15).
    #[serde(default)]
    pub restarts: u64,
    /// CPU time its running processes have used, and the children they reaped, in
    /// milliseconds; only when asked (`"cpu":true`), so `ps --json` never has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
}

/// How to render the lines that follow, as the supervisor does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsHeader {
    pub format: LogFormat,
    pub timestamps: bool,
    pub width: usize,
}

/// One log line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// UTC, RFC 3339 with microseconds.
    pub ts: String,
    /// Local `HH:MM:SS`, as the default format shows it.
    pub hms: String,
    pub source: LogSource,
    /// `web.1`, or `system`.
    pub dyno: String,
    /// The prefix colour's slot (Procfile order), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<usize>,
    /// The text; invalid UTF-8 is replaced.
    pub line: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_request(&bytes);
        }

        #[test]
        fn parsing_json_shaped_text_never_panics(text in "[{}\\[\\]\":,a-z0-9 v.-]{0,80}") {
            let _ = parse_request(text.as_bytes());
        }

        #[test]
        fn requests_round_trip(
            lines in 0usize..5000,
            tail: bool,
            ps in proptest::option::of("[a-z]{1,8}(\\.[1-9])?"),
            target in proptest::option::of("[a-z]{1,8}"),
            changes in proptest::collection::vec("[a-z]{1,5}[=+-][0-9]{1,3}", 0..4),
        ) {
            let target = target.map(|t| Parsed::read(t).unwrap());
            let changes_text = changes.clone();
            let changes = changes.into_iter().map(|c| Parsed::read(c).unwrap()).collect();
            let requests = [
                Request::Ps { cpu: tail },
                Request::Logs { lines, tail, ps, source: Some(LogSource::App) },
                Request::Restart { target: target.clone(), targets: Vec::new() },
                Request::Stop { target: target.clone(), targets: Vec::new() },
                Request::Kill {
                    targets: target.into_iter().collect(),
                    signal: Parsed::read("HUP").unwrap(),
                },
                Request::Scale { changes },
                Request::Connect { dyno: "repl.1".into(), size: Some([24, 80]), framed: tail },
                Request::Hello { features: changes_text.clone() },
                Request::Hello { features: Vec::new() },
            ];
            for request in requests {
                let line = encode_request(&request);
                prop_assert!(line.ends_with('\n'));
                prop_assert_eq!(parse_request(line.trim_end().as_bytes()), Ok(request));
            }
        }
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        let cases: [(&[u8], &str); 7] = [
            (
                b"hello",
                "malformed request: expected value at line 1 column 1",
            ),
            (b"[1]", "malformed request: expected a JSON object"),
            (
                br#"{"cmd":"ps"}"#,
                "missing protocol version (send \"v\":1)",
            ),
            (
                br#"{"v":2,"cmd":"ps"}"#,
                "unsupported protocol version 2 (this hkrun speaks 1)",
            ),
            (
                br#"{"v":1,"cmd":"dance"}"#,
                "bad request: unknown variant `dance`, expected one of `ps`, `scale`, `restart`, `stop`, `kill`, `connect`, `resize`, `maintenance`, `reload`, `hello`, `logs`",
            ),
            (
                br#"{"v":1,"cmd":"ps","x":1}"#,
                "bad request: unknown field `x`, expected `cpu`",
            ),
            (
                br#"{"v":1,"cmd":"scale"}"#,
                "bad request: missing field `changes`",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_request(line).unwrap_err(),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            parse_request(br#"{"v":1,"cmd":"logs"}"#),
            Ok(Request::Logs {
                lines: DEFAULT_LINES,
                tail: false,
                ps: None,
                source: None
            })
        );
    }

    #[test]
    fn values_are_read_with_the_request_and_refused_in_the_servers_words() {
        let cases: [(&[u8], &str); 4] = [
            (
                br#"{"v":1,"cmd":"restart","target":"web!"}"#,
                "bad target `web!` (expected a process type such as web, a dyno such as web.2, or a glob such as 'work*')",
            ),
            (
                br#"{"v":1,"cmd":"stop","targets":["web","[z"]}"#,
                "bad target `[z` (expected a process type such as web, a dyno such as web.2, or a glob such as 'work*')",
            ),
            (
                br#"{"v":1,"cmd":"kill","targets":["web"],"signal":"SIGNOPE"}"#,
                "bad signal `SIGNOPE` (expected a name such as SIGHUP, HUP or USR1, or a number)",
            ),
            (
                br#"{"v":1,"cmd":"scale","changes":["web=2","worker"]}"#,
                "bad scale change `worker` (expected TYPE=COUNT, TYPE+N, TYPE-N or TYPE=COUNT:SIZE, e.g. web=3, clock+1, web=2:standard-2x)",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_request(line).unwrap_err(),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        // Not a string at all is serde's to say.
        assert_eq!(
            parse_request(br#"{"v":1,"cmd":"kill","targets":["web"],"signal":1}"#).unwrap_err(),
            "bad request: invalid type: integer `1`, expected a string"
        );
        let Ok(Request::Kill { targets, signal }) =
            parse_request(br#"{"v":1,"cmd":"kill","targets":["web.2","w*"],"signal":"hup"}"#)
        else {
            panic!("a kill request");
        };
        assert_eq!(*signal.value(), Signal::SIGHUP);
        let targets: Vec<String> = targets.iter().map(|t| t.value().to_string()).collect();
        assert_eq!(targets, ["web.2", "w*"]);
    }

    #[test]
    fn values_go_back_on_the_wire_as_they_were_written() {
        let kill = Request::Kill {
            targets: vec![Parsed::read("web").unwrap()],
            signal: Parsed::read("hup").unwrap(),
        };
        assert_eq!(
            encode_request(&kill),
            "{\"cmd\":\"kill\",\"signal\":\"hup\",\"targets\":[\"web\"],\"v\":1}\n"
        );
        let scale = Request::Scale {
            changes: vec![Parsed::read("web=03:STANDARD-2x").unwrap()],
        };
        assert_eq!(
            encode_request(&scale),
            "{\"changes\":[\"web=03:STANDARD-2x\"],\"cmd\":\"scale\",\"v\":1}\n"
        );
    }

    #[test]
    fn each_kind_of_line_is_written_as_it_always_was_and_read_back() {
        let header = LogsHeader {
            format: LogFormat::Default,
            timestamps: false,
            width: 6,
        };
        let line = LogLine {
            ts: "2024-01-01T00:00:00.000000Z".into(),
            hms: "00:00:00".into(),
            source: LogSource::App,
            dyno: "web.1".into(),
            color: Some(1),
            line: "hi".into(),
        };
        let cases = [
            (Reply::error("no"), r#"{"v":1,"ok":false,"error":"no"}"#),
            (
                Reply::message("done"),
                r#"{"v":1,"ok":true,"message":"done"}"#,
            ),
            (Reply::Done, r#"{"v":1,"ok":true}"#),
            (
                Reply::Ps(Ps::default()),
                r#"{"v":1,"ok":true,"ps":{"types":[],"dynos":[]}}"#,
            ),
            (
                Reply::Logs(header),
                r#"{"v":1,"ok":true,"logs":{"format":"default","timestamps":false,"width":6}}"#,
            ),
            (
                Reply::Line(line),
                r#"{"v":1,"ok":true,"line":{"ts":"2024-01-01T00:00:00.000000Z","hms":"00:00:00","source":"app","dyno":"web.1","color":1,"line":"hi"}}"#,
            ),
            (Reply::Skipped(3), r#"{"v":1,"ok":true,"skipped":3}"#),
            (Reply::End, r#"{"v":1,"ok":true,"end":true}"#),
            (Reply::Output(42), r#"{"v":1,"ok":true,"output":42}"#),
            (Reply::Exit(130), r#"{"v":1,"ok":true,"exit":130}"#),
            (
                Reply::Hello(Hello::ours()),
                r#"{"v":1,"ok":true,"hello":{"version":1,"features":["framed","size","outcome","cpu"]}}"#,
            ),
        ];
        for (reply, want) in cases {
            let encoded = reply.encode();
            assert_eq!(String::from_utf8_lossy(&encoded), format!("{want}\n"));
            let back: Reply = serde_json::from_slice(&encoded).unwrap();
            assert_eq!(back, reply, "{want}");
            // Read as the wire's struct and written again: the same bytes, so `Response`
            // and `Reply` agree field for field.
            let wire: Response = serde_json::from_slice(&encoded).unwrap();
            assert_eq!(serde_json::to_string(&wire).unwrap(), want);
        }
    }

    #[test]
    fn a_changes_answer_carries_its_outcome_beside_the_text_older_clients_print() {
        use crate::supervisor::outcome::{Refusal, TypeSize};
        let scaled = Outcome::Scaled {
            types: vec![TypeSize {
                name: "web".into(),
                count: 2,
                size: "Standard-1X".into(),
            }],
        };
        assert_eq!(
            String::from_utf8_lossy(&Reply::outcome(scaled.clone()).encode()),
            "{\"v\":1,\"ok\":true,\"message\":\"Scaling dynos... done, now running web at 2:Standard-1X\",\
             \"outcome\":{\"outcome\":\"scaled\",\"types\":[{\"name\":\"web\",\"count\":2,\"size\":\"Standard-1X\"}]}}\n"
        );
        let refused = Reply::outcome(Outcome::Refused(Refusal::NothingRunning));
        assert_eq!(
            String::from_utf8_lossy(&refused.encode()),
            "{\"v\":1,\"ok\":false,\"error\":\"no dyno is running\",\
             \"outcome\":{\"outcome\":\"refused\",\"kind\":\"nothing_running\"}}\n"
        );
        // The client says the outcome in its own words, whatever text came with it.
        let line = br#"{"v":1,"ok":true,"message":"(a newer text)","outcome":{"outcome":"scaled","types":[{"name":"web","count":2,"size":"Standard-1X"}]}}"#;
        let reply: Reply = serde_json::from_slice(line).unwrap();
        assert_eq!(reply.said().unwrap(), scaled.to_string());
        // An outcome it does not know (a newer hkrun's): the text.
        let line = br#"{"v":1,"ok":false,"error":"no can do","outcome":{"outcome":"vanished"}}"#;
        let reply: Reply = serde_json::from_slice(line).unwrap();
        assert_eq!(reply, Reply::error("no can do"));
        assert_eq!(reply.said().unwrap(), "no can do");
    }
}
