//! Executes a `Plan` through the `Host`, one idempotent step at a time. A
//! journal is written first, so a run killed at any instant is finished (or
//! undone) by the next one. A failure before the plan's commit point undoes
//! the staging (`abort`); a failure after it restores the previous release
//! (`rollback`). Both are data in the plan; this module only runs steps, and
//! says what happened.

use std::path::Path;

use super::journal::{self, Phase};
use super::record::StateStore;
use super::release;
use crate::error::{ApplyError, Blame};
use crate::host::{Host, Job, JobKind};
use crate::plan::state::StateChange;
use crate::plan::{Action, Plan};
use crate::spec::layout::Layout;
use crate::ui;

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub release: String,
    /// Service-manager, web-server, process and health calls made.
    pub host_calls: usize,
    pub pruned: Vec<String>,
}

/// Where and how to execute.
pub struct Executor<'a> {
    pub host: &'a dyn Host,
    pub layout: &'a Layout,
    pub keep_releases: usize,
}

impl Executor<'_> {
    /// Execute `plan` to the end, or undo it.
    pub fn run(
        &self,
        plan: &Plan,
        store: &mut StateStore,
    ) -> Result<Result<Outcome, Failure>, ApplyError> {
        let noop = plan.is_noop();
        if !noop {
            journal::write(self.host, self.layout, Phase::Forward, None, false, plan)?;
        }
        let mut steps = Steps::new(self, store);
        let mut committed = false;
        for action in &plan.actions {
            if *action == Action::Commit {
                committed = true;
                continue;
            }
            if let Some(text) = plan.shown(action) {
                ui::step(text);
            }
            if let Err(error) = steps.run(action) {
                ui::failed(&error);
                let phase = if committed {
                    Phase::Rollback
                } else {
                    Phase::Abort
                };
                let quarantine = error.blame() == Blame::Commit
                    && plan.previous_commit.as_deref() != Some(plan.commit.as_str());
                self.undo(plan, phase, &error.to_string(), quarantine, store)?;
                return Ok(Err(match phase {
                    Phase::Rollback => Failure::RolledBack(error),
                    _ => Failure::Aborted(error),
                }));
            }
        }
        let calls = steps.calls;
        store.state.note_starts(&plan.actions, &plan.release);
        let result = if noop { "no changes" } else { "deployed" };
        store.event(
            &plan.commit,
            Some(plan.release.clone()),
            result,
            &plan.trigger,
        );
        store.save(self.host)?;
        if !noop {
            journal::remove(self.host, self.layout)?;
        }
        let keep: Vec<&str> = [Some(plan.release.as_str()), plan.previous.as_deref()]
            .into_iter()
            .flatten()
            .chain(store.state.started_on.values().map(String::as_str))
            .collect();
        let pruned = release::prune(self.host, self.layout, self.keep_releases, &keep)?;
        super::secrets::prune(self.host, self.layout);
        // Only when a release that ran containers went: podman is not
        // started (nor needed) on a host without them.
        if pruned.containers {
            super::images::prune(self.host, self.layout);
        }
        Ok(Ok(Outcome {
            release: plan.release.clone(),
            host_calls: calls,
            pruned: pruned.ids,
        }))
    }

    /// Run the abort or rollback list of `plan`, record the outcome and (if
    /// `quarantine`) quarantine the commit. Every undo step is tried even
    /// when one fails; if any failed, the journal is kept so the next run
    /// tries the undo again, and the state is left alone.
    pub fn undo(
        &self,
        plan: &Plan,
        phase: Phase,
        reason: &str,
        quarantine: bool,
        store: &mut StateStore,
    ) -> Result<(), ApplyError> {
        if let Err(e) = journal::write(
            self.host,
            self.layout,
            phase,
            Some(reason),
            quarantine,
            plan,
        ) {
            // Undo anyway: stopping here would leave the failed release live.
            ui::warn(&format!("cannot record the undo in the journal: {e}"));
        }
        let list = match phase {
            Phase::Rollback => &plan.rollback,
            _ => &plan.abort,
        };
        let mut steps = Steps::new(self, store);
        let mut failed = Vec::new();
        for action in list {
            if !action.is_bookkeeping() {
                ui::undo_step(action);
            }
            match steps.run(action) {
                Ok(()) => {}
                // The previous release is back in place either way: say it
                // is unhealthy, but finish (a retry would not change it).
                Err(error) if matches!(action, Action::Check(_)) => ui::warn(&format!(
                    "the release rolled back to is not healthy either: {error}"
                )),
                Err(error) => {
                    ui::warn(&format!("failed while undoing: {error}"));
                    failed.push(error.to_string());
                }
            }
        }
        if !failed.is_empty() {
            return Err(ApplyError::UndoIncomplete { failed });
        }
        if let Some(previous) = &plan.previous {
            store.state.note_starts(list, previous);
        }
        if quarantine {
            store.state.change(
                &StateChange::Quarantine {
                    commit: plan.commit.clone(),
                    reason: reason.to_string(),
                },
                &super::record::now(),
            );
        }
        let result = match phase {
            Phase::Rollback => "rolled back",
            _ => "refused",
        };
        store.event(
            &plan.commit,
            Some(plan.release.clone()),
            result,
            &plan.trigger,
        );
        if phase == Phase::Rollback {
            store.state.rollbacks_total += 1;
        }
        store.save(self.host)?;
        journal::remove(self.host, self.layout)
    }
}

/// Runs steps against a host, counting the calls that leave plumb.
struct Steps<'a, 'b> {
    exec: &'a Executor<'a>,
    store: &'b mut StateStore,
    calls: usize,
}

/// A failed service call, blamed on `blame` when the command ran and failed.
fn step_error(step: &Action, blame: Blame) -> impl FnOnce(crate::host::ProcessError) -> ApplyError {
    let step = step.to_string();
    move |source| ApplyError::Step {
        step,
        blame: if source.blame() == Blame::Host {
            Blame::Host
        } else {
            blame
        },
        source: Box::new(source),
    }
}

impl<'a, 'b> Steps<'a, 'b> {
    fn new(exec: &'a Executor<'a>, store: &'b mut StateStore) -> Self {
        Steps {
            exec,
            store,
            calls: 0,
        }
    }

    fn systemctl(
        &mut self,
        action: &Action,
        args: &[&str],
        blame: Blame,
    ) -> Result<(), ApplyError> {
        self.calls += 1;
        self.exec
            .host
            .services()
            .systemctl(args)
            .map_err(step_error(action, blame))
    }

    /// Clear the unit's failed state and start limit, so plumb's own
    /// (re)start is never refused as "attempted too often". Best effort: a
    /// unit systemd does not know yet has nothing to reset.
    fn reset_then(&mut self, action: &Action, verb: &[&str], unit: &str) -> Result<(), ApplyError> {
        if let Err(e) = self.systemctl(action, &["reset-failed", unit], Blame::Host) {
            tracing::debug!("{e}");
        }
        let mut args = verb.to_vec();
        args.push(unit);
        self.systemctl(action, &args, Blame::Commit)
    }

    /// One idempotent step.
    fn run(&mut self, action: &Action) -> Result<(), ApplyError> {
        tracing::debug!("{action}");
        let (host, layout) = (self.exec.host, self.exec.layout);
        let files = host.files();
        match action {
            Action::Pin { path, release } => {
                let target = files.real(&layout.pinned_target(release, path));
                link(host, &target, path)
            }
            Action::Switch(Some(id)) => release::switch(host, layout, id),
            Action::Switch(None) => remove_if_present(host, &layout.current()),
            Action::Link(path) => link(host, &files.real(&layout.link_target(path)), path),
            Action::Unlink(path) => host
                .files()
                .remove_link(path)
                .map_err(ApplyError::io("remove", path)),
            Action::ValidateNginx => {
                self.calls += 1;
                host.services().nginx_test().map_err(|e| {
                    // A certificate not issued yet is the host's to fix.
                    let blame = if missing_certificate(&e) {
                        Blame::Host
                    } else {
                        Blame::Commit
                    };
                    step_error(action, blame)(e)
                })
            }
            Action::VerifyUnits(paths) => {
                self.calls += 1;
                host.services()
                    .verify_units(paths)
                    .map_err(step_error(action, Blame::Commit))
            }
            Action::Commit => Ok(()),
            Action::Snapshot { app, release } => self.snapshot(app, release),
            Action::Hook { hook, release } => {
                let app_dir = layout.release(release).join("app").join(&hook.app);
                let dir = if files.stat(&app_dir).is_ok() {
                    app_dir
                } else {
                    layout.release(release)
                };
                let backup = layout.backups(&hook.app).join(format!("{release}.tar.gz"));
                let failed = |source| ApplyError::Hook {
                    app: hook.app.clone(),
                    pre_switch: hook.pre_switch,
                    backup: (hook.pre_switch && files.stat(&backup).is_ok())
                        .then(|| files.real(&backup)),
                    source: Box::new(source),
                };
                let account = host
                    .users()
                    .account_for(hook.user.as_deref())
                    .map_err(failed)?;
                let mut job = Job::shell(JobKind::Hook, &hook.command);
                job.dir = dir;
                job.account = Some(account);
                job.timeout = std::time::Duration::from_secs(hook.timeout_secs);
                job.env.push(("PLUMB_APP".into(), hook.app.clone()));
                job.env.push(("PLUMB_RELEASE".into(), release.clone()));
                self.calls += 1;
                host.processes().run(&job).map(drop).map_err(failed)
            }
            Action::Discard(id) => {
                let path = layout.release(id);
                if release::current_id(host, layout).as_deref() == Some(id)
                    || files.stat(&path).is_err()
                {
                    return Ok(());
                }
                files
                    .remove_dir_all(&path)
                    .map_err(ApplyError::io("remove", &path))
            }
            Action::DisableNow(unit) => {
                self.systemctl(action, &["disable", "--now", unit], Blame::Host)
            }
            Action::DaemonReload => self.systemctl(action, &["daemon-reload"], Blame::Host),
            Action::Restart { unit, .. } => self.reset_then(action, &["restart"], unit),
            Action::Reload { unit, .. } => self.systemctl(action, &["reload", unit], Blame::Commit),
            Action::EnableNow(unit) => self.reset_then(action, &["enable", "--now"], unit),
            Action::Start { unit, .. } => self.reset_then(action, &["start"], unit),
            // The configuration was tested by ValidateNginx before the commit point.
            Action::ReloadNginx => {
                self.calls += 1;
                host.services()
                    .nginx_reload()
                    .map_err(step_error(action, Blame::Host))
            }
            Action::Check(check) => {
                self.calls += 1;
                host.processes()
                    .health(check)
                    .map_err(step_error(action, Blame::Commit))
            }
            Action::Record(change) => self.store.change(host, change),
        }
    }

    /// Archive the app's shared data (root-only: 0600 in a 0700 directory).
    fn snapshot(&mut self, app: &str, release: &str) -> Result<(), ApplyError> {
        let (host, layout) = (self.exec.host, self.exec.layout);
        let files = host.files();
        let shared = layout.shared(app);
        if files.stat(&shared).is_err() {
            return Ok(()); // nothing to back up yet
        }
        let dir = layout.backups(app);
        files
            .create_dir_all(&dir)
            .map_err(ApplyError::io("create", &dir))?;
        files
            .set_mode(&dir, 0o700)
            .map_err(ApplyError::io("chmod", &dir))?;
        let to = dir.join(format!("{release}.tar.gz"));
        if files.stat(&to).is_ok() {
            // A resumed run: keep the archive taken before the first try.
            return Ok(());
        }
        let partial = dir.join(format!(".{release}.tar.gz.partial"));
        let _ = files.remove_file(&partial);
        // Created 0600 first: tar writes into it and keeps the mode.
        files
            .write_new(&partial, b"", 0o600)
            .map_err(ApplyError::io("create", &partial))?;
        let job = Job {
            kind: JobKind::Snapshot,
            argv: vec![
                "tar".into(),
                "-C".into(),
                files.real(&shared).display().to_string(),
                "-czf".into(),
                files.real(&partial).display().to_string(),
                ".".into(),
            ],
            dir: "/".into(),
            account: None,
            timeout: crate::host::process::TOOL_TIMEOUT,
            env: Vec::new(),
        };
        self.calls += 1;
        host.processes().run(&job).map_err(step_error(
            &Action::Snapshot {
                app: app.into(),
                release: release.into(),
            },
            Blame::Host,
        ))?;
        files
            .rename(&partial, &to)
            .map_err(ApplyError::io("rename", &to))?;
        prune_backups(host, &dir)
    }
}

/// Whether `nginx -t` failed only because a certificate file is missing.
fn missing_certificate(error: &crate::host::ProcessError) -> bool {
    let crate::host::ProcessError::Exit { output, .. } = error else {
        return false;
    };
    output.lines().any(|l| {
        l.contains("cannot load certificate") && l.contains("No such file")
            || l.contains("BIO_new_file") && l.contains("No such file")
    })
}

/// Snapshots of shared data kept per app.
const KEEP_SNAPSHOTS: usize = 3;

fn prune_backups(host: &dyn Host, dir: &Path) -> Result<(), ApplyError> {
    let mut names = host
        .files()
        .list_dir(dir)
        .map_err(ApplyError::io("list", dir))?;
    names.retain(|n| !n.starts_with('.'));
    let excess = names.len().saturating_sub(KEEP_SNAPSHOTS);
    for name in names.into_iter().take(excess) {
        remove_if_present(host, &dir.join(name))?;
    }
    Ok(())
}

pub(crate) fn remove_if_present(host: &dyn Host, path: &Path) -> Result<(), ApplyError> {
    match host.files().remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(ApplyError::io("remove", path)(e))
        }
        _ => Ok(()),
    }
}

/// Point `path` at `target` atomically, never through a linked directory.
fn link(host: &dyn Host, target: &Path, path: &Path) -> Result<(), ApplyError> {
    host.files()
        .place_link(target, path)
        .map_err(ApplyError::io("link", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::ProcessError;

    #[test]
    fn a_missing_certificate_is_the_hosts_problem_and_a_bad_directive_the_commits() {
        let nginx = |output: &str| ProcessError::Exit {
            command: "nginx -t -q".into(),
            code: 1,
            output: output.into(),
        };
        assert!(missing_certificate(&nginx(
            "nginx: [emerg] cannot load certificate \"/etc/letsencrypt/live/blog/fullchain.pem\": \
             BIO_new_file() failed (SSL: error:80000002:system library::No such file or directory)"
        )));
        assert!(!missing_certificate(&nginx(
            "nginx: [emerg] unknown directive \"bogus_directive\" in /etc/nginx/conf.d/blog.conf:12"
        )));
    }
}
