//! `plumb reconcile --once`: fetch, verify, render, prepare, plan, apply.

use std::path::Path;

use crate::apply::journal::{self, Resume};
use crate::apply::observe::{self, Depth};
use crate::apply::record::LastRun;
use crate::apply::{Executor, StateStore, release};
use crate::error::{Error, exit};
use crate::host::{Host, lock};
use crate::plan::state::DeployedRef;
use crate::plan::{self, Target, short};
use crate::source::Mirror;
use crate::spec::settings::Settings;
use crate::ui;

use super::deploy;

/// How `reconcile` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub dry_run: bool,
    pub force: bool,
    pub wait: bool,
    /// Accept a target that does not descend from the deployed commit.
    pub allow_rewind: bool,
    /// What started the run, for the history and `status`.
    pub trigger: String,
}

/// `run`, then the metrics file (if configured) with how it went.
pub fn run_with_metrics(
    settings: &Settings,
    host: &dyn Host,
    options: &Options,
) -> Result<u8, Error> {
    let started = std::time::Instant::now();
    let result = run(settings, host, options);
    let code = match &result {
        Ok(code) => *code,
        Err(e) => e.exit_code(),
    };
    // A run that could not take the lock did nothing: the run holding it
    // records its own outcome.
    if options.dry_run || code == exit::LOCKED {
        return result;
    }
    let message = result.as_ref().err().map(|e| e.to_string());
    let last = LastRun::new(&options.trigger, code, message);
    if let Err(e) = last.save(host, Path::new(super::status::LAST_RUN)) {
        ui::warn(&format!("cannot record the run: {e}"));
    }
    if let Some(path) = &settings.metrics_file {
        let state = StateStore::load(host, &settings.layout.state_file())
            .map(|s| s.state)
            .unwrap_or_default();
        let published = crate::apply::publish::Published::load(host, &settings.layout);
        let written =
            crate::daemon::metrics::write(host, path, &state, &published, &last, started.elapsed());
        if let Err(e) = written {
            ui::warn(&format!("cannot write metrics: {e}"));
        }
    }
    result
}

/// Bring the host to the commit the branch points at.
pub fn run(settings: &Settings, host: &dyn Host, options: &Options) -> Result<u8, Error> {
    let layout = &settings.layout;
    let files = host.files();
    let _lock = lock::acquire(&files.real(&settings.lock_path), options.wait)?;
    crate::host::confine::sweep_stale();
    crate::apply::record::prepare_dirs(host, layout)?;
    let mut store = StateStore::load(host, &layout.state_file())?;
    refuse_detached(&store)?;
    let mirror = Mirror::open(&files.real(&layout.mirror()))?;
    let deployed = store.state.deployed.as_ref().map(|d| d.commit.as_str());
    let commit = mirror.fetch(settings.remote()?, &settings.branch, deployed)?;
    let exec = Executor {
        host,
        layout,
        keep_releases: settings.keep_releases,
    };
    // An interrupted run: finished when it deploys this very commit,
    // undone when a newer commit (or --force) supersedes it.
    if !options.dry_run
        && let Some(unfinished) = journal::read(host, layout)?
    {
        // A rollback is the operator's word: it is always finished.
        let asked = unfinished.plan.trigger == "rollback";
        let how = if asked || (unfinished.plan.commit == commit && !options.force) {
            Resume::Finish
        } else {
            Resume::Supersede
        };
        ui::line(journal::resume(&exec, unfinished, how, &mut store)?);
    }
    verify(settings, host, &mirror, &mut store, &commit, options)?;
    if !options.force {
        if let Some(q) = store.state.quarantined(&commit).cloned() {
            // Stay on the current release, but keep it whole.
            if !options.dry_run {
                repair_current(settings, host, &mut store, options)?;
            }
            return Err(Error::Quarantined {
                commit: short(&commit).to_string(),
                at: q.at,
                reason: q.reason,
                release: release::current_id(host, layout).unwrap_or_else(|| "(none)".into()),
            });
        }
        let fingerprint = settings.fingerprint();
        let on_commit = store
            .state
            .deployed
            .as_ref()
            .is_some_and(|d| d.commit == commit && d.fingerprint == fingerprint);
        if on_commit && observe::detect(host, layout, &store.state, Depth::Sampled).is_empty() {
            ui::line(format_args!("up to date at {}", short(&commit)));
            return publish(settings, host, options);
        }
    }

    let desired = deploy::render_commit(settings, host, &mirror, &commit)
        .map_err(|e| deploy::invalid(host, &mut store, &commit, e, &options.trigger))?;
    let prepared = deploy::prepare(
        settings,
        host,
        &mut store,
        &desired,
        &options.trigger,
        options.dry_run,
    )?;
    let plan = &prepared.plan;
    if plan.is_noop() {
        let recorded = store.state.deployed.as_ref().is_some_and(|d| {
            d.commit == plan.commit
                && d.release == plan.release
                && d.fingerprint == plan.fingerprint
        }) && plan.records().all(|r| match r {
            crate::plan::state::StateChange::Owned(o) => *o == *store.state.owned,
            _ => true,
        });
        if recorded || options.dry_run {
            ui::line(format_args!(
                "up to date at {} (checked in full)",
                short(&commit)
            ));
            return publish(settings, host, options);
        }
        deploy::execute(settings, host, plan, &mut store)?;
        ui::line(format_args!(
            "commit {} deployed with no changes: release {} already holds it",
            short(&commit),
            plan.release
        ));
        return publish(settings, host, options);
    }
    let verb = if options.dry_run {
        "plan for"
    } else {
        "deploying"
    };
    ui::line(format_args!(
        "{verb} {} ({}) for host {} ({})",
        short(&commit),
        settings.branch,
        settings.hostname,
        deploy::overlay_note(&desired)
    ));
    deploy::print_changes(plan);
    if options.dry_run {
        deploy::print_steps(plan);
        ui::line("dry run: nothing was changed");
        return Ok(exit::OK);
    }
    let outcome = deploy::execute(settings, host, plan, &mut store)?;
    if settings.record && outcome.host_calls > 0 {
        ui::line(format_args!(
            "  (sandbox root: host commands recorded in {}, not run)",
            files.real(&layout.calls_log()).display()
        ));
    }
    ui::line(deploy::summary(plan, &outcome));
    prepared.succeeded(settings, host, &store);
    let published = publish(settings, host, options);
    // Off the up-to-date path, after the sites are served: every fetch adds
    // a pack, and a mirror of a thousand packs makes every later run slower.
    if let Err(e) = mirror.maintain() {
        ui::warn(&format!("cannot repack the mirror: {e}"));
    }
    published
}

/// Make the publish targets of the live release serve it (a no-op when they
/// do). A failure is reported, never rolled back: the host is healthy.
pub fn publish(settings: &Settings, host: &dyn Host, options: &Options) -> Result<u8, Error> {
    if options.dry_run {
        return Ok(exit::OK);
    }
    let layout = &settings.layout;
    let failed = crate::apply::publish::converge(host, layout, &settings.ssh)?;
    if failed.is_empty() {
        return Ok(exit::OK);
    }
    Err(Error::Publish {
        release: release::current_id(host, layout).unwrap_or_default(),
        failed,
    })
}

/// The trust checks, before anything is rendered: the target descends from
/// the deployed commit (found in the live release when state.json is gone),
/// and every commit between them is signed by a trusted key. A refusal is
/// recorded with its reason and changes nothing else.
fn verify(
    settings: &Settings,
    host: &dyn Host,
    mirror: &Mirror,
    store: &mut StateStore,
    commit: &str,
    options: &Options,
) -> Result<(), Error> {
    let deployed = store
        .state
        .deployed
        .as_ref()
        .map(|d| d.commit.clone())
        .or_else(|| observe::current(host, &settings.layout).map(|info| info.commit));
    if deployed.as_deref() == Some(commit) {
        return Ok(()); // nothing new to trust: the up-to-date path reads no keys
    }
    let policy = super::trust::policy(settings)?;
    let checked = || -> Result<(), crate::source::trust::Untrusted> {
        if let Some(deployed) = &deployed
            && !options.allow_rewind
        {
            mirror.check_ancestry(deployed, commit)?;
        }
        if policy.enforced() {
            let signed = mirror.verify_range(deployed.as_deref(), commit, &policy)?;
            if let Some((_, last)) = signed.last() {
                tracing::info!(
                    "{} commit(s) verified; the target is signed by {} ({})",
                    signed.len(),
                    last.signer,
                    last.fingerprint
                );
            }
        }
        Ok(())
    };
    checked().map_err(|untrusted| {
        let result = match untrusted {
            crate::source::trust::Untrusted::Rewind { .. } => "refused: rewind",
            _ => "refused: untrusted",
        };
        if !options.dry_run {
            store.event_with(
                commit,
                None,
                result,
                &options.trigger,
                &untrusted.to_string(),
            );
            if let Err(e) = store.save(host) {
                ui::warn(&format!("cannot record the refusal: {e}"));
            }
        }
        Error::Untrusted(untrusted)
    })
}

/// Repair drift of the current release (missing links, stopped units)
/// without deploying anything new: what a run does while the branch head
/// is quarantined. Files of the release modified by hand are reported, and
/// wait for the next deployable commit (never a restart loop).
fn repair_current(
    settings: &Settings,
    host: &dyn Host,
    store: &mut StateStore,
    options: &Options,
) -> Result<(), Error> {
    let layout = &settings.layout;
    if observe::detect(host, layout, &store.state, Depth::Sampled).is_empty() {
        return Ok(());
    }
    let Some(info) = observe::current(host, layout) else {
        return Ok(());
    };
    let mut observed = observe::observe(host, layout, &store.state, &info, Depth::Quick);
    if !observed.tampered.is_empty() {
        ui::warn(&format!(
            "files of release {} were modified by hand; they are repaired by the next deploy",
            info.id
        ));
        observed.tampered.clear();
    }
    let deployed = observed.deployed.clone().unwrap_or(DeployedRef {
        commit: info.commit.clone(),
        release: info.id.clone(),
        fingerprint: info.fingerprint.clone(),
    });
    let target = Target { info, new: false };
    let mut plan = plan::plan(&target, &observed, &deployed)?;
    if plan.is_noop() {
        return Ok(());
    }
    plan.trigger = options.trigger.clone();
    ui::line(format_args!(
        "repairing release {} ({})",
        plan.release,
        short(&plan.commit)
    ));
    deploy::execute(settings, host, &plan, store)?;
    Ok(())
}

/// A detached host is not changed until `plumb attach`.
pub fn refuse_detached(store: &StateStore) -> Result<(), Error> {
    match &store.state.detached {
        Some(at) => Err(crate::error::ConfigError::Invalid(format!(
            "this host was detached from plumb on {at} (`plumb detach`): run `plumb attach` to manage it again"
        ))
        .into()),
        None => Ok(()),
    }
}
