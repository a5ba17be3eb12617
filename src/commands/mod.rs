//! Subcommands: each takes resolved `Settings` and a `Host`. This is the
//! only layer that sees clap's types (to turn them into `Settings`) and
//! that chooses the host (the machine, or a sandbox).

mod assets;
mod deploy;
pub mod detach;
pub mod plan;
pub mod reconcile;
pub mod releases;
pub mod render;
pub mod rollback;
pub mod run;
pub mod status;
mod trust;
pub mod validate;

use crate::cli::{Cli, Command, Common};
use crate::error::Error;
use crate::host::{Host, RealHost};
use crate::spec::settings::{Flags, Settings};

/// Run the command `cli` asks for; returns the exit code on success.
pub fn run(cli: Cli) -> Result<u8, Error> {
    // What only describes plumb itself needs no host config.
    match &cli.command {
        Command::Completions { shell } => return Ok(assets::completions(*shell)),
        Command::Manpages { dir } => return assets::manpages(dir),
        _ => {}
    }
    let mut flags = flags(cli.common());
    if let Command::Validate { .. } | Command::Render { .. } = cli.command {
        // Validation renders a working tree; no remote is involved.
        flags.repo.get_or_insert_with(|| ".".into());
    }
    let settings = Settings::resolve(&flags)?;
    trust::check_files(&settings)?;
    let host = host_for(&settings);
    #[cfg(feature = "fault-injection")]
    {
        match crate::host::fault::KillAt::from_env(host) {
            Ok(host) => dispatch(cli.command, &settings, &flags, &host),
            Err(host) => dispatch(cli.command, &settings, &flags, &host),
        }
    }
    #[cfg(not(feature = "fault-injection"))]
    dispatch(cli.command, &settings, &flags, &host)
}

/// The machine, or (on a sandbox root) the machine below it with a recorder.
pub fn host_for(settings: &Settings) -> RealHost {
    if settings.record {
        RealHost::sandbox(
            settings.root.clone(),
            settings.commands.clone(),
            settings.layout.calls_log(),
        )
    } else {
        RealHost::machine(settings.root.clone(), settings.commands.clone())
    }
}

fn dispatch(
    command: Command,
    settings: &Settings,
    flags: &Flags,
    host: &dyn Host,
) -> Result<u8, Error> {
    match command {
        Command::Reconcile {
            once: _,
            dry_run,
            force,
            wait,
            allow_rewind,
            ..
        } => {
            // `plumb run` says why it started this run; systemd sets
            // INVOCATION_ID for the runs of plumb.service (the timer).
            let trigger = match std::env::var(run::TRIGGER_VAR) {
                Ok(trigger) => trigger,
                Err(_) if std::env::var_os("INVOCATION_ID").is_some() => "timer".into(),
                Err(_) => "manual".into(),
            };
            let options = reconcile::Options {
                dry_run,
                force,
                wait,
                allow_rewind,
                trigger,
            };
            reconcile::run_with_metrics(settings, host, &options)
        }
        Command::Run { .. } => run::run(settings, flags),
        Command::Plan { json, .. } => plan::run(settings, host, json),
        Command::Status { json, verify, .. } => status::run(settings, host, json, verify),
        Command::Releases { json, .. } => releases::run(settings, host, json),
        Command::Rollback { release, wait, .. } => {
            rollback::run(settings, host, release.as_deref(), wait)
        }
        Command::Completions { .. } | Command::Manpages { .. } => {
            unreachable!("answered before the settings are read")
        }
        Command::Detach { .. } => detach::detach(settings, host),
        Command::Attach { .. } => detach::attach(settings, host),
        Command::Render { dir, out, .. } => {
            let dir = dir.as_deref().unwrap_or(std::path::Path::new("."));
            render::run(settings, dir, &out)
        }
        Command::Validate {
            dir,
            signatures,
            allowed_signers,
            openpgp_certs,
            ..
        } => {
            let dir = dir.as_deref().unwrap_or(std::path::Path::new("."));
            let mut settings = settings.clone();
            if allowed_signers.is_some() || openpgp_certs.is_some() {
                settings.trust.allowed_signers = allowed_signers;
                settings.trust.openpgp_certs = openpgp_certs;
            }
            let code = validate::run(&settings, dir, flags.hostname.as_deref())?;
            match signatures {
                Some(range) => {
                    let policy = trust::policy(&settings)?;
                    Ok(code.max(validate::signatures(dir, &range, &policy)?))
                }
                None => Ok(code),
            }
        }
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
