//! The supervisor: a pure core that decides, and a runtime (the driver) that does.

pub(crate) mod api;
pub(crate) mod attach;
pub mod core;
pub mod event;
pub mod input;
pub mod outcome;
pub(crate) mod restart;
pub(crate) mod runtime;
pub(crate) mod view;
