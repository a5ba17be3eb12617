//! Executes a `Plan` through the `Host`. A journal is written first, so a run
//! killed at any instant is finished (or undone) by the next one. A failure
//! before the plan's commit point undoes the staging (`abort`); a failure
//! after it restores the previous release (`rollback`). Both are data in the
//! plan; this module only runs steps.

use std::path::Path;

use crate::desired::Desired;
use crate::error::ApplyError;
use crate::host::{Host, HostCall};
use crate::journal::{Phase, remove_journal, write_journal};
use crate::plan::{Action, Plan};
use crate::release::{self, Layout};
use crate::state::{Deployed, Event, Quarantined, State};

/// How an apply ended, when it did not deploy.
#[derive(Debug)]
pub enum Failure {
    /// Failed before the commit point; the staging was undone. The host runs
    /// exactly what it ran before.
    Aborted(ApplyError),
    /// Failed after the commit point; the previous release was restored.
    RolledBack(ApplyError),
}

/// What a successful apply did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub release: Option<String>,
    pub host_calls: usize,
    pub pruned: Vec<String>,
}

/// Runs steps against a host, counting host calls.
struct Steps<'a> {
    host: &'a dyn Host,
    layout: &'a Layout,
    desired: Option<&'a Desired>,
    calls: usize,
}

/// Execute `plan` (from a fresh render, `desired`) to the end, or undo it.
pub fn apply(
    host: &dyn Host,
    layout: &Layout,
    plan: &Plan,
    desired: Option<&Desired>,
    state: &mut State,
    keep_releases: usize,
) -> Result<Result<Outcome, Failure>, ApplyError> {
    write_journal(host, layout, Phase::Forward, None, false, plan)?;
    let mut steps = Steps {
        host,
        layout,
        desired,
        calls: 0,
    };
    let mut committed = false;
    for action in &plan.actions {
        if *action == Action::Commit {
            committed = true;
            state.deployed = plan.release.clone().map(|release| Deployed {
                commit: plan.commit.clone(),
                release,
                at: now(),
                fingerprint: plan.fingerprint.clone(),
            });
            state.owned = plan
                .owned_before
                .union(&plan.owned_after)
                .cloned()
                .collect();
            state.save(host, &layout.state_file())?;
            continue;
        }
        if let Err(error) = steps.run(action) {
            let phase = if committed {
                Phase::Rollback
            } else {
                Phase::Abort
            };
            let quarantine = error.is_the_commits_fault() && !same_commit(host, layout, plan);
            undo(
                host,
                layout,
                plan,
                phase,
                &error.to_string(),
                quarantine,
                state,
            )?;
            return Ok(Err(match phase {
                Phase::Rollback => Failure::RolledBack(error),
                _ => Failure::Aborted(error),
            }));
        }
    }
    state.owned = plan.owned_after.clone();
    let current = release::current_id(host, layout);
    if let Some(id) = &current {
        state.note_starts(&plan.actions, id);
    }
    state.record(Event {
        at: now(),
        commit: plan.commit.clone(),
        release: current.clone(),
        result: "deployed".into(),
        trigger: plan.trigger.clone(),
    });
    state.save(host, &layout.state_file())?;
    remove_journal(host, layout)?;
    let keep: Vec<&str> = [current.as_deref(), plan.previous.as_deref()]
        .into_iter()
        .flatten()
        .chain(state.started_on.values().map(String::as_str))
        .collect();
    let pruned = release::prune(host, layout, keep_releases, &keep)?;
    Ok(Ok(Outcome {
        release: current,
        host_calls: steps.calls,
        pruned,
    }))
}

/// Whether `plan` re-deploys the commit the host already runs (a drift
/// repair, a re-render after an upgrade): a failure of that is no reason to
/// quarantine the commit the host is on.
fn same_commit(host: &dyn Host, layout: &Layout, plan: &Plan) -> bool {
    plan.previous
        .as_ref()
        .and_then(|id| release::ReleaseInfo::load(host, layout, id))
        .is_some_and(|info| info.commit == plan.commit)
}

/// Run the abort or rollback list of `plan`, record the outcome and (if
/// `quarantine`) quarantine the commit. Every undo step is tried even when
/// one fails; if any failed, the journal is kept so the next run tries the
/// undo again, and the state is left alone.
pub(crate) fn undo(
    host: &dyn Host,
    layout: &Layout,
    plan: &Plan,
    phase: Phase,
    reason: &str,
    quarantine: bool,
    state: &mut State,
) -> Result<(), ApplyError> {
    if let Err(e) = write_journal(host, layout, phase, Some(reason), quarantine, plan) {
        // Undo anyway: stopping here would leave the failed release live.
        eprintln!("warning: cannot record the undo in the journal: {e}");
    }
    let (list, label) = match phase {
        Phase::Rollback => (&plan.rollback, "rollback"),
        _ => (&plan.abort, "undo"),
    };
    let mut steps = Steps {
        host,
        layout,
        desired: None,
        calls: 0,
    };
    let mut failed = Vec::new();
    for action in list {
        println!("  {label}: {action}");
        if let Err(error) = steps.run(action) {
            eprintln!("warning: {action} failed while undoing: {error}");
            failed.push(format!("{action}: {error}"));
        }
    }
    if !failed.is_empty() {
        return Err(ApplyError::UndoIncomplete { failed });
    }
    state.deployed = plan.previous.as_ref().and_then(|id| {
        let info = release::ReleaseInfo::load(host, layout, id)?;
        Some(Deployed {
            commit: info.commit,
            release: id.clone(),
            at: now(),
            fingerprint: plan.fingerprint.clone(),
        })
    });
    state.owned = plan.owned_before.clone();
    if let Some(previous) = &plan.previous {
        state.note_starts(list, previous);
    }
    if quarantine {
        state.add_quarantine(Quarantined {
            commit: plan.commit.clone(),
            reason: reason.to_string(),
            at: now(),
        });
    }
    let result = match phase {
        Phase::Rollback => "rolled back",
        _ => "refused",
    };
    state.record(Event {
        at: now(),
        commit: plan.commit.clone(),
        release: plan.release.clone(),
        result: result.into(),
        trigger: plan.trigger.clone(),
    });
    if phase == Phase::Rollback {
        state.rollbacks_total += 1;
    }
    state.save(host, &layout.state_file())?;
    remove_journal(host, layout)
}

impl Steps<'_> {
    fn call(&mut self, call: HostCall) -> Result<(), ApplyError> {
        self.calls += 1;
        self.host.run(&call).map_err(ApplyError::from)
    }

    fn systemctl(&mut self, verb: &str, unit: &str) -> Result<(), ApplyError> {
        self.call(HostCall::systemctl([verb, unit]))
    }

    /// One idempotent step.
    fn run(&mut self, action: &Action) -> Result<(), ApplyError> {
        tracing::debug!("{action}");
        let (host, layout) = (self.host, self.layout);
        match action {
            Action::BuildRelease(id) => {
                if release::ReleaseInfo::load(host, layout, id).is_none() {
                    let desired = self.desired.ok_or_else(|| ApplyError::Io {
                        action: "rebuild",
                        path: layout.release(id),
                        source: std::io::Error::other(
                            "the release is gone and cannot be rebuilt from a journal",
                        ),
                    })?;
                    let previous = release::current_id(host, layout)
                        .and_then(|c| release::ReleaseInfo::load(host, layout, &c));
                    release::build(host, layout, id, desired, previous.as_ref())?;
                }
                Ok(())
            }
            Action::Pin { path, release } => {
                let target = host.real(
                    &layout
                        .release(release)
                        .join("files")
                        .join(path.strip_prefix("/").unwrap_or(path)),
                );
                link(host, &target, path)
            }
            Action::Switch(Some(id)) => release::switch(host, layout, id),
            Action::Switch(None) => remove_if_present(host, &layout.current()),
            Action::Link(path) => link(host, &layout.link_target(host, path), path),
            Action::Unlink(path) => remove_if_present(host, path),
            Action::ValidateNginx => self.call(HostCall::NginxTest),
            Action::VerifyUnits(paths) => self.call(HostCall::VerifyUnits(
                paths.iter().map(|p| host.real(p)).collect(),
            )),
            Action::Commit => Ok(()),
            Action::CreateUser(user) => {
                if host.user_exists(user) {
                    return Ok(());
                }
                self.call(HostCall::CreateUser(user.clone()))
            }
            Action::Snapshot { app, release } => {
                let shared = layout.shared(app);
                if !host.exists(&shared) {
                    return Ok(()); // nothing to back up yet
                }
                let dir = layout.backups(app);
                host.create_dir_all(&dir)
                    .map_err(ApplyError::io("create", &dir))?;
                let to = dir.join(format!("{release}.tar.gz"));
                if host.exists(&to) {
                    // A resumed run: keep the archive taken before the first try.
                    return Ok(());
                }
                let partial = dir.join(format!(".{release}.tar.gz.partial"));
                self.call(HostCall::Snapshot {
                    from: host.real(&shared),
                    to: host.real(&partial),
                })?;
                if host.exists(&partial) {
                    // (A sandbox only records the archive command.)
                    host.rename(&partial, &to)
                        .map_err(ApplyError::io("rename", &to))?;
                }
                prune_backups(host, &dir)
            }
            Action::Hook { hook, release } => {
                let app_dir = layout.release(release).join("app").join(&hook.app);
                let dir = if host.exists(&app_dir) {
                    app_dir
                } else {
                    layout.release(release)
                };
                let backup = layout.backups(&hook.app).join(format!("{release}.tar.gz"));
                self.calls += 1;
                let call = HostCall::Hook {
                    dir: host.real(&dir),
                    user: hook.user.clone(),
                    command: hook.command.clone(),
                    timeout_secs: hook.timeout_secs,
                };
                host.run(&call).map_err(|source| ApplyError::Hook {
                    app: hook.app.clone(),
                    pre_switch: hook.pre_switch,
                    backup: (hook.pre_switch && host.exists(&backup)).then(|| host.real(&backup)),
                    source: Box::new(source),
                })
            }
            Action::Discard(id) => {
                let path = layout.release(id);
                if release::current_id(host, layout).as_deref() == Some(id) || !host.exists(&path) {
                    return Ok(());
                }
                host.remove_dir_all(&path)
                    .map_err(ApplyError::io("remove", &path))
            }
            Action::DisableNow(unit) => self.call(HostCall::systemctl(["disable", "--now", unit])),
            Action::DaemonReload => self.call(HostCall::systemctl(["daemon-reload"])),
            Action::Restart { unit, .. } => self.systemctl("restart", unit),
            Action::Reload { unit, .. } => self.systemctl("reload", unit),
            Action::EnableNow(unit) => self.call(HostCall::systemctl(["enable", "--now", unit])),
            Action::Start { unit, .. } => self.systemctl("start", unit),
            // The configuration was tested by ValidateNginx before the commit point.
            Action::ReloadNginx => self.call(HostCall::NginxReload),
            Action::Check(check) => self.call(HostCall::Health(check.clone())),
        }
    }
}

/// Snapshots of shared data kept per app.
const KEEP_SNAPSHOTS: usize = 3;

fn prune_backups(host: &dyn Host, dir: &Path) -> Result<(), ApplyError> {
    let mut names = host.list_dir(dir).map_err(ApplyError::io("list", dir))?;
    names.retain(|n| !n.starts_with('.'));
    names.sort();
    let excess = names.len().saturating_sub(KEEP_SNAPSHOTS);
    for name in names.into_iter().take(excess) {
        let path = dir.join(name);
        remove_if_present(host, &path)?;
    }
    Ok(())
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

pub(crate) fn remove_if_present(host: &dyn Host, path: &Path) -> Result<(), ApplyError> {
    match host.remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(ApplyError::io("remove", path)(e))
        }
        _ => Ok(()),
    }
}

/// Point `path` at `target` atomically: a temporary link renamed over it.
fn link(host: &dyn Host, target: &Path, path: &Path) -> Result<(), ApplyError> {
    let dir = path.parent().expect("managed paths are never /");
    host.create_dir_all(dir)
        .map_err(ApplyError::io("create", dir))?;
    let name = path
        .file_name()
        .expect("managed paths have a name")
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.plumb-tmp"));
    // A leftover of an interrupted run is a symlink; anything else is not ours.
    if host.read_link(&tmp).is_ok() {
        remove_if_present(host, &tmp)?;
    }
    host.symlink(target, &tmp)
        .map_err(ApplyError::io("symlink", &tmp))?;
    host.rename(&tmp, path)
        .map_err(ApplyError::io("rename", path))
}
