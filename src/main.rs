use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    hkrun::init_logging();
    let matches = match hkrun::cli::Cli::command().try_get_matches() {
        Ok(matches) => matches,
        // Help and the version as clap prints them (help, too, for a bare `hkrun`).
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            err.exit()
        }
        Err(err) => return refuse(&err),
    };
    let cli = match hkrun::cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => return refuse(&err),
    };
    hkrun::main(cli, &matches)
}

/// Bad input is one line naming the value, as everywhere else in hkrun; exit 2, clap's
/// code for a command line it cannot take.
fn refuse(err: &clap::Error) -> ExitCode {
    eprintln!("hkrun: {}", hkrun::cli::one_line_error(&err.to_string()));
    ExitCode::from(2)
}
