//! Subcommands: each takes resolved `Settings` and a `Host`.

mod common;
pub mod reconcile;

use crate::cli::{Cli, Command, Common};
use crate::error::Error;
use crate::host::Host;
use crate::settings::{Flags, Settings};

/// Run the command `cli` asks for; returns the exit code on success.
pub fn run(cli: Cli) -> Result<u8, Error> {
    let settings = Settings::resolve(&flags(cli.common))?;
    crate::source::prepare(&settings.remote);
    match crate::fault::KillAt::from_env(settings.host()) {
        Ok(host) => dispatch(cli.command, &settings, &host),
        Err(host) => dispatch(cli.command, &settings, &host),
    }
}

fn dispatch(command: Command, settings: &Settings, host: &dyn Host) -> Result<u8, Error> {
    match command {
        Command::Reconcile {
            once: _,
            dry_run,
            force,
            wait,
        } => reconcile::run(
            settings,
            host,
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
