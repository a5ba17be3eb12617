//! `plumb reconcile --once`: fetch, render, plan, apply.

use crate::drift;
use crate::error::{Error, exit};
use crate::host::{CallMode, Host};
use crate::lock;
use crate::plan;
use crate::release;
use crate::settings::Settings;
use crate::source::Mirror;
use crate::state::State;

use super::common::{self, short};

/// How `reconcile` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub dry_run: bool,
    pub force: bool,
    pub wait: bool,
    /// What started the run, for the history and `status`.
    pub trigger: String,
}

/// Repair drift of the current release (missing links, stopped
/// units) without deploying anything new: what a run does while the branch
/// head is quarantined.
fn repair_current(
    settings: &Settings,
    host: &dyn Host,
    state: &mut State,
    options: &Options,
) -> Result<(), Error> {
    let layout = &settings.layout;
    if drift::detect(host, layout, state).is_empty() {
        return Ok(());
    }
    let Some(info) = release::current_id(host, layout)
        .and_then(|id| crate::release::ReleaseInfo::load(host, layout, &id))
    else {
        return Ok(());
    };
    let desired = release::desired_of(host, layout, &info).map_err(
        crate::error::ApplyError::io("read", layout.release(&info.id)),
    )?;
    let mut observed = common::observe(host, layout, state, &desired);
    if !observed.tampered.is_empty() {
        // Rebuilding needs the commit rendered again: that waits for a deployable head.
        eprintln!(
            "warning: files of release {} were modified; they are repaired by the next deploy",
            info.id
        );
        observed.tampered.clear();
    }
    observed.release_exists = true;
    let mut plan = plan::plan(&desired, &observed, &info.id)?;
    if plan.is_empty() {
        return Ok(());
    }
    plan.trigger = options.trigger.clone();
    println!("repairing release {} ({})", info.id, short(&info.commit));
    common::print_plan(&plan);
    common::execute(settings, host, &plan, &desired, state)?;
    Ok(())
}

/// `run`, then the metrics file (if configured) with how it went.
pub fn run_with_metrics(
    settings: &Settings,
    host: &dyn Host,
    options: &Options,
) -> Result<u8, Error> {
    let started = std::time::Instant::now();
    let result = run(settings, host, options);
    if let (Some(path), false) = (&settings.metrics_file, options.dry_run) {
        let state = State::load(host, &settings.layout.state_file()).unwrap_or_default();
        if let Err(e) = crate::metrics::write(host, path, &state, result.is_ok(), started.elapsed())
        {
            eprintln!("warning: cannot write metrics: {e}");
        }
    }
    result
}

/// Bring the host to the commit the branch points at.
pub fn run(settings: &Settings, host: &dyn Host, options: &Options) -> Result<u8, Error> {
    let layout = &settings.layout;
    let _lock = lock::acquire(&host.real(&settings.lock_path), options.wait)?;
    host.create_dir_all(&layout.state_dir)
        .map_err(crate::error::ApplyError::io("create", &layout.state_dir))?;
    let mut state = State::load(host, &layout.state_file())?;
    if !options.dry_run
        && let Some(message) =
            crate::journal::resume(host, layout, &mut state, settings.keep_releases)?
    {
        println!("{message}");
    }
    let mirror = Mirror::open(&host.real(&layout.mirror()))?;
    let commit = mirror.fetch(&settings.remote, &settings.branch)?;
    if !options.force {
        if let Some(q) = state.quarantined(&commit).cloned() {
            // Stay on the current release, but keep it whole.
            if !options.dry_run {
                repair_current(settings, host, &mut state, options)?;
            }
            return Err(Error::Quarantined {
                commit: short(&commit).to_string(),
                at: q.at,
                reason: q.reason,
                release: release::current_id(host, layout).unwrap_or_else(|| "(none)".into()),
            });
        }
        let fingerprint = settings.fingerprint();
        let on_commit = state
            .deployed
            .as_ref()
            .is_some_and(|d| d.commit == commit && d.fingerprint == fingerprint);
        if on_commit && drift::detect(host, layout, &state).is_empty() {
            println!("up to date at {}", short(&commit));
            return Ok(exit::OK);
        }
    }

    let desired = common::render_commit(settings, host, &mirror, &commit)?;
    let observed = common::observe(host, layout, &state, &desired);
    let id = release::new_id(host, layout, &commit);
    let mut plan = plan::plan(&desired, &observed, &id)?;
    plan.trigger = options.trigger.clone();
    if plan.is_empty() {
        // The host matches; make sure state.json says so (e.g. after it was
        // moved aside, or the settings changed), so the next run is cheap.
        if !options.dry_run && common::adopt(host, layout, &plan, &mut state)? {
            println!("up to date at {} (state recorded)", short(&commit));
        } else {
            println!("up to date at {} (checked in full)", short(&commit));
        }
        return Ok(exit::OK);
    }
    let verb = if options.dry_run {
        "plan for"
    } else {
        "deploying"
    };
    println!(
        "{verb} {} ({}) for host {}",
        short(&commit),
        settings.branch,
        settings.hostname
    );
    common::print_plan(&plan);
    if options.dry_run {
        println!("dry run: nothing was changed");
        return Ok(exit::OK);
    }
    let outcome = common::execute(settings, host, &plan, &desired, &mut state)?;
    if let (CallMode::Record(log), true) = (&settings.call_mode, outcome.host_calls > 0) {
        println!(
            "  (sandbox root: host commands recorded in {}, not run)",
            host.real(log).display()
        );
    }
    println!("{}", common::summary(&plan, &outcome));
    Ok(exit::OK)
}
