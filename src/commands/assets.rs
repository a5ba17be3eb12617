//! `plumb completions SHELL` and `plumb manpages DIR`: shell completions
//! and man pages generated from the command line definition itself, so
//! they never drift from it (clap_complete, clap_mangen).

use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{ConfigError, Error, exit};

pub fn completions(shell: clap_complete::Shell) -> u8 {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "plumb", &mut std::io::stdout());
    exit::OK
}

/// `plumb.1` and `plumb-<command>.1` for every visible command.
pub fn manpages(dir: &Path) -> Result<u8, Error> {
    let fail = |e: std::io::Error| ConfigError::Invalid(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let command = Cli::command().version(crate::VERSION);
    clap_mangen::generate_to(command, dir).map_err(fail)?;
    Ok(exit::OK)
}
