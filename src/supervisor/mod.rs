//! The supervisor: a pure core that decides, and a driver that does.

pub mod core;
pub(crate) mod driver;
pub mod event;
pub mod input;
pub mod outcome;
pub(crate) mod restart;
