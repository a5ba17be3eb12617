//! Subcommands: each takes resolved `Settings` and a `Host`.

mod common;
pub mod daemon;
pub mod plan;
pub mod reconcile;
pub mod releases;
pub mod rollback;
pub mod status;
pub mod validate;

use crate::cli::{Cli, Command, Common};
use crate::error::Error;
use crate::host::Host;
use crate::settings::{Flags, Settings};

/// Run the command `cli` asks for; returns the exit code on success.
pub fn run(cli: Cli) -> Result<u8, Error> {
    let mut flags = flags(cli.common);
    if let Command::Validate { .. } = cli.command {
        // Validation renders a working tree; no remote is involved.
        flags.repo.get_or_insert_with(|| ".".into());
    }
    let settings = Settings::resolve(&flags)?;
    if let Command::Run = cli.command {
        return daemon::run(&settings, &flags);
    }
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
        } => {
            // `plumb run` says why it started this run; systemd sets
            // INVOCATION_ID for the runs of plumb.service (the timer).
            let trigger = match std::env::var(daemon::TRIGGER_VAR) {
                Ok(trigger) => trigger,
                Err(_) if std::env::var_os("INVOCATION_ID").is_some() => "timer".into(),
                Err(_) => "manual".into(),
            };
            let options = reconcile::Options {
                dry_run,
                force,
                wait,
                trigger,
            };
            reconcile::run_with_metrics(settings, host, &options)
        }
        Command::Run => unreachable!("handled before dispatch"),
        Command::Plan => plan::run(settings, host),
        Command::Status { json } => status::run(settings, host, json),
        Command::Releases => releases::run(settings, host),
        Command::Rollback { release, wait } => {
            rollback::run(settings, host, release.as_deref(), wait)
        }
        Command::Validate { dir } => validate::run(
            settings,
            dir.as_deref().unwrap_or(std::path::Path::new(".")),
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
