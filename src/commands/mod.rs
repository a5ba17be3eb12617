//! Subcommands: each takes resolved `Settings` and a `Host`.

mod common;
pub mod reconcile;

use crate::cli::{Cli, Command, Common};
use crate::error::Error;
use crate::settings::{Flags, Settings};

/// Run the command `cli` asks for; returns the exit code on success.
pub fn run(cli: Cli) -> Result<u8, Error> {
    let settings = Settings::resolve(&flags(cli.common))?;
    crate::source::prepare(&settings.remote);
    let host = settings.host();
    match cli.command {
        Command::Reconcile {
            once: _,
            dry_run,
            force,
            wait,
        } => reconcile::run(
            &settings,
            &host,
            &reconcile::Options {
                dry_run,
                force,
                wait,
            },
        ),
    }
}

fn flags(common: Common) -> Flags {
    Flags {
        config: common.config,
        root: common.root,
        repo: common.repo,
        branch: common.branch,
        path: common.path,
        state_dir: common.state_dir,
        hostname: common.hostname,
    }
}
