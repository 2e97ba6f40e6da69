//! The operating system's side of running dynos: spawning in process groups, signals and
//! reaping (`process`), whether a port is free (`net`), the one reader of /proc (`proc`),
//! the memory sampler (`memory`), the readiness probe (`readiness`) and the kernel's list
//! of listening sockets (`sockets`), and files replaced at once (`files`). These carry out
//! and measure; the core decides.

pub(crate) mod files;
pub mod memory;
pub(crate) mod net;
pub mod proc;
pub mod process;
pub(crate) mod readiness;
pub(crate) mod sockets;
pub(crate) mod terminal;

/// A wait hkrun's own integration tests shorten: `knob`'s milliseconds when that variable
/// is set, else `default`; read once, into `cell` (TESTING.md, Tests that control time).
pub(crate) fn test_knob(
    cell: &'static std::sync::OnceLock<std::time::Duration>,
    knob: &str,
    default: std::time::Duration,
) -> std::time::Duration {
    *cell.get_or_init(|| {
        std::env::var(knob)
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(default, std::time::Duration::from_millis)
    })
}
