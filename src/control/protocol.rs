//! The control protocol, version 1: newline-delimited JSON, one request per line, one
//! response per line (a log stream sends one line per log line). Types and parsing only;
//! ARCHITECTURE.md documents it for other clients.

use serde::{Deserialize, Serialize};

use crate::logs::LogFormat;

/// The protocol version this hkrun speaks.
pub const VERSION: u32 = 1;
/// The longest request line taken, newline included; longer ones are refused.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Log lines `hkrun logs` shows without `-n`.
pub const DEFAULT_LINES: usize = 100;

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
    Scale { changes: Vec<String> },
    /// A type (`web`), a dyno (`web.2`), a glob (`work*`), several (`targets`, with
    /// `target` or without), or every dyno.
    Restart {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        targets: Vec<String>,
    },
    /// Types, dynos or globs, as `restart`; with no target, the whole app.
    Stop {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        targets: Vec<String>,
    },
    /// A signal (`SIGHUP`, `HUP`, `1`) to the process group of each dyno named, as
    /// `restart` names them (at least one); the dynos keep running.
    Kill {
        targets: Vec<String>,
        signal: String,
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
    /// Read the env files again, then restart every dyno (web preboot-style):
    /// `config:set` and `config:unset` on a running app.
    Reload {},
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

/// Who wrote a log line, as `heroku logs --source` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// The dynos' own output.
    App,
    /// hkrun's events (Heroku's `heroku[web.1]` lines).
    Heroku,
}

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
    serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| format!("bad request: {e}"))
}

/// One request as a line, newline included.
pub fn encode_request(request: &Request) -> String {
    let mut value = serde_json::to_value(request).unwrap_or_default();
    if let serde_json::Value::Object(fields) = &mut value {
        fields.insert("v".into(), VERSION.into());
    }
    format!("{value}\n")
}

/// One line from the supervisor. Which fields are set says what it is: `error`, a
/// `message` (scale, restart, stop), `ps`, the `logs` header, a log `line`, `skipped`,
/// `end` of the log lines, or to a framed `connect` client, `output` or `exit`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
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
}

impl Response {
    pub fn ok() -> Self {
        Self {
            v: VERSION,
            ok: true,
            ..Self::default()
        }
    }

    pub fn error(text: impl Into<String>) -> Self {
        Self {
            v: VERSION,
            ok: false,
            error: Some(text.into()),
            ..Self::default()
        }
    }

    pub fn message(text: impl Into<String>) -> Self {
        Self {
            message: Some(text.into()),
            ..Self::ok()
        }
    }

    /// The line to send, newline included.
    pub fn encode(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
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
            let requests = [
                Request::Ps { cpu: tail },
                Request::Logs { lines, tail, ps, source: Some(LogSource::App) },
                Request::Restart { target: target.clone(), targets: Vec::new() },
                Request::Stop { target: target.clone(), targets: Vec::new() },
                Request::Kill { targets: target.into_iter().collect(), signal: "HUP".into() },
                Request::Scale { changes },
                Request::Connect { dyno: "repl.1".into(), size: Some([24, 80]), framed: tail },
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
                "bad request: unknown variant `dance`, expected one of `ps`, `scale`, `restart`, `stop`, `kill`, `connect`, `resize`, `reload`, `logs`",
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
    fn responses_leave_out_what_they_do_not_carry() {
        assert_eq!(
            String::from_utf8(Response::error("no").encode()).unwrap(),
            "{\"v\":1,\"ok\":false,\"error\":\"no\"}\n"
        );
        let line = Response::message("done").encode();
        let back: Response = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, Response::message("done"));
    }
}
