//! The `plumb` binary: parse flags, set up logging, run the library, pick the exit code.

use clap::Parser;
use plumb::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    plumb::logging::init(cli.verbose);
    match plumb::commands::run(cli) {
        Ok(code) => code.into(),
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_code().into()
        }
    }
}
