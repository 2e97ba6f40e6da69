//! The log: framing dyno output into lines, rendering them, and the one writer of stdout.
//!
//! `pump` turns a dyno's pipe into whole lines, `writer` owns stdout, `render` is the
//! pure function that decides what a line looks like (one function per format), and
//! `history` keeps the last lines for `hkrun logs`, and `files` writes them to
//! `--log-dir` too.

pub mod drains;
pub mod files;
pub mod history;
pub mod pump;
pub mod render;
pub mod writer;

pub use history::History;
pub use render::{Clock, Label, LogFormat, Origin, Style};
pub use writer::{LogSender, Writer};

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
pub const MAX_LINE: usize = 64 * 1024;
