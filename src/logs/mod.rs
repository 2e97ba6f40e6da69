//! The log: framing dyno output into lines, rendering them, and the one writer of stdout.
//!
//! `pump` turns a dyno's pipe into whole lines, `writer` owns stdout, `render` is the
//! pure function that decides what a line looks like (one function per format), and
//! `history` keeps the last lines for `hkrun logs`, and `files` writes them to
//! `--log-dir` too.

pub(crate) mod drains;
pub(crate) mod files;
pub(crate) mod history;
pub(crate) mod pump;
pub(crate) mod render;
pub(crate) mod writer;

pub(crate) use history::History;
pub(crate) use render::{Clock, Label, LogFormat, Origin, Style};
pub(crate) use writer::{LogSender, Writer};

/// Log lines `hkrun logs` shows without `-n`.
pub const DEFAULT_LINES: usize = 100;

/// Who wrote a log line, as `heroku logs --source` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// The dynos' own output.
    App,
    /// hkrun's events (Heroku's `heroku[web.1]` lines).
    Heroku,
}

/// The longest line written as one; longer lines are cut into pieces of this size, each
/// a full line, so a runaway dyno cannot make hkrun hold unbounded memory.
pub(crate) const MAX_LINE: usize = 64 * 1024;
