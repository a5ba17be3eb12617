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

/// The binary's one use of the C math library is `pow`, for minijinja's
/// `**` on floats: answered here (the `libm` crate's, fdlibm's in Rust), so
/// that every run does not load `libm.so` for it (about 0.1 ms of an
/// up-to-date run). A test checks the binary needs no library but libc.
#[unsafe(no_mangle)]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}
