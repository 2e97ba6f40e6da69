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
