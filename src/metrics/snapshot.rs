//! What `/metrics` shows, as the driver gathers it at one moment (apart from `metrics`,
//! so the driver's `supervisor::api` can name it).

/// What the driver knows at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every dyno `hkrun ps` shows, with the core's counters.
    pub dynos: Vec<DynoFigures>,
    pub router: Option<RouterFigures>,
    /// `(dyno, lines, bytes)` of output so far.
    pub output: Vec<(String, u64, u64)>,
}

/// The core's counters for one dyno.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DynoFigures {
    pub name: String,
    pub kind: String,
    /// Which process under that name: a preboot runs two `web.1` for a while (0, then 1).
    pub generation: u32,
    /// What `ps` shows.
    pub state: String,
    pub pid: Option<i32>,
    pub memory: Option<u64>,
    pub quota: Option<u64>,
    /// Its process group while it runs, for its CPU time.
    pub group: Option<i32>,
    pub restarts: u64,
    pub crashes: u64,
    pub r10: u64,
    pub r14: u64,
    pub r15: u64,
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
