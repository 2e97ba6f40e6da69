//! What `/metrics` shows, as the driver gathers it at one moment (apart from `metrics`,
//! so the driver's `supervisor::api` can name it).

use crate::supervisor::view::View;

/// What the driver knows at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The app as `hkrun ps` shows it, with the core's counters.
    pub view: View,
    pub router: Option<RouterFigures>,
    /// `(dyno, lines, bytes)` of output so far.
    pub output: Vec<(String, u64, u64)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouterFigures {
    pub connections: u64,
    pub unserved: u64,
    pub failed_connects: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Each dyno's share, by name.
    pub dynos: Vec<(String, crate::router::Traffic)>,
}
