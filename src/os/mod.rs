//! The operating system's side of running dynos: spawning in process groups, signals and
//! reaping (`process`), whether a port is free (`net`), the one reader of /proc (`proc`),
//! the memory sampler (`memory`) and the readiness probe (`readiness`). These carry out
//! and measure; the core decides.

pub mod memory;
pub(crate) mod net;
pub mod proc;
pub mod process;
pub(crate) mod readiness;
