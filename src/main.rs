//! The `plumb` binary: parse flags, set up output, run the library, pick the exit code.

use clap::Parser;
use plumb::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    plumb::ui::init(cli.verbose, cli.quiet);
    match plumb::commands::run(cli) {
        Ok(code) => code.into(),
        Err(error) => {
            plumb::ui::error(&error);
            error.exit_code().into()
        }
    }
}
