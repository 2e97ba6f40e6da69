use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    hkrun::init_logging();
    let matches = hkrun::cli::Cli::command().get_matches();
    let cli = hkrun::cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    hkrun::main(cli, &matches)
}
