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
        // Bad input is one line naming the value, as everywhere else in hkrun; exit 2,
        // clap's code for a command line it cannot take.
        Err(err) => {
            eprintln!("hkrun: {}", hkrun::cli::one_line_error(&err.to_string()));
            return ExitCode::from(2);
        }
    };
    let cli = hkrun::cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    hkrun::main(cli, &matches)
}
