//! Turns what the user typed, the Procfile and the env files into one resolved config:
//! the `AppPlan` the core runs, and what the driver needs around it.
//!
//! Everything that can be refused is refused here, before anything is spawned.

mod app;
pub(crate) mod app_json;
pub mod env;
pub(crate) mod env_file;
pub mod error;
mod exec;
pub(crate) mod name;
pub mod procfile;
mod resolve;
mod rules;
pub(crate) mod settings;
pub(crate) mod state;
pub(crate) mod text;

pub use name::{APP_NAME_MAX, app_name};

pub use app::*;
pub(crate) use exec::*;
pub use resolve::*;
pub use rules::*;

pub use error::ConfigError;

/// The process type that gets HTTP traffic, readiness checks and the router.
pub const WEB: &str = "web";
