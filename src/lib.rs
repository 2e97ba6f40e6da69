//! hkrun: a Procfile process supervisor, Heroku's dyno manager on a laptop and in a
//! container. Unix only (Linux for `/proc` and the child subreaper).
//!
//! # Layout
//! - `cli` (what the user typed) → `config` (Procfile + env files + flags, checked).
//! - `procfile`, `env`, `formation`, `ports`: the parsers and the arithmetic, pure.
//! - `supervisor::core` decides (pure `handle(now, input) -> effects`);
//!   `supervisor::driver` does (signals, spawning, reaping, timers).
//! - `process`: spawning in process groups, signalling, reaping, `/proc` scans.
//! - `logs`: pumps that frame dyno output into lines, the render functions, the one
//!   writer of stdout.
//! - `control`: the socket, its protocol, the server in `start`, and the client
//!   commands (`ps`, `scale`, `restart`, `stop`, `logs`).
//! - `commands`: one function per subcommand; `errors`: what stops hkrun and its exit codes.

pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod env;
pub mod errors;
pub mod formation;
pub mod logs;
pub mod memory;
pub mod policy;
pub mod ports;
pub mod process;
pub mod procfile;
pub mod readiness;
pub mod router;
pub mod supervisor;

use std::process::ExitCode;

/// Runs a parsed command line; `main` is only this.
pub fn main(cli: cli::Cli) -> ExitCode {
    let result = match &cli.command {
        cli::Command::Start(args) => commands::start(args),
        cli::Command::Check(args) => commands::check(args),
        cli::Command::Run(args) => commands::run(args),
        cli::Command::Ps(args) => control::client::ps(args),
        cli::Command::Scale(args) => control::client::scale(args),
        cli::Command::Restart(args) => control::client::restart(args),
        cli::Command::Stop(args) => control::client::stop(args),
        cli::Command::Logs(args) => control::client::logs(args),
    };
    match result {
        // Codes past 255 cannot be passed on; 1 says "failed" without lying about which.
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => errors::report(&err),
    }
}
