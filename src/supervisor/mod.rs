//! The supervisor: a pure core that decides, and a driver that does.

pub mod core;
pub mod driver;
pub mod input;
pub mod restart;
