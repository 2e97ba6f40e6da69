use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    hkrun::init_logging();
    hkrun::main(hkrun::cli::Cli::parse())
}
