//! The planner: a pure function of the target release and the observed
//! host. It reads nothing from disk. A plan holds the forward steps —
//! including every change to `state.json` — and, as data, the two ways
//! back: `abort` (before the commit point: undo the staging) and `rollback`
//! (after it: restore the previous release).
//!
//! Built from small builders: `links` (links and files), `units`, `hooks`
//! and `undo`. May import `render::desired` and `spec`; never `host`,
//! `apply` or `commands`.

pub mod action;
mod hooks;
mod links;
pub mod observed;
pub mod owned;
pub mod release;
pub mod state;
mod undo;
mod units;

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use action::Action;
pub use links::Change;
pub use observed::{Observed, PathState, Target};
pub use release::ReleaseInfo;
use state::{DeployedRef, StateChange};

/// A plan that cannot be made: the host holds something plumb must not touch.
#[derive(Debug, Error)]
pub enum PlanError {
    #[error(
        "{path} exists and is not managed by plumb; move it away (or delete it) and run again. Nothing was changed"
    )]
    NotOwned { path: PathBuf },
    #[error(
        "{path} is managed by plumb but was replaced by hand with something that is not its link; compare it with the release, move it away, and run again. Nothing was changed"
    )]
    ReplacedByHand { path: PathBuf },
}

/// What a run will do, and how to undo it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub commit: String,
    /// The settings fingerprint the target was rendered with.
    pub fingerprint: String,
    /// What started the run (set by the command, recorded in the history).
    #[serde(default)]
    pub trigger: String,
    /// The release the host moves to.
    pub release: String,
    /// Whether that release was built for this plan.
    #[serde(default)]
    pub new_release: bool,
    /// The release `current` pointed at before, and its deployed commit.
    pub previous: Option<String>,
    #[serde(default)]
    pub previous_commit: Option<String>,
    /// Managed files that change, for the report, in path order.
    pub changes: Vec<(PathBuf, Change)>,
    /// Secrets that change (`<app>/<name>`): named, never shown.
    #[serde(default)]
    pub secrets: Vec<(String, Change)>,
    pub actions: Vec<Action>,
    /// Undo of the steps before `Commit`.
    pub abort: Vec<Action>,
    /// Undo of the whole plan, after `Commit`.
    pub rollback: Vec<Action>,
}

impl Plan {
    /// Nothing to do on the host (the state may still be recorded).
    pub fn is_noop(&self) -> bool {
        self.actions.iter().all(Action::is_bookkeeping)
    }

    /// How a step reads for the operator, or `None` for what the list of
    /// changed files already says (their links) and for bookkeeping.
    pub fn shown(&self, action: &Action) -> Option<String> {
        match action {
            Action::Link(path)
                if self
                    .changes
                    .binary_search_by(|(p, _)| p.as_path().cmp(path))
                    .is_err() =>
            {
                Some(format!(
                    "relink {} (missing or changed by hand)",
                    path.display()
                ))
            }
            Action::Link(_)
            | Action::Unlink(_)
            | Action::Pin { .. }
            | Action::Commit
            | Action::Record(_) => None,
            other => Some(other.to_string()),
        }
    }

    /// The state changes the plan's forward steps make.
    pub fn records(&self) -> impl Iterator<Item = &StateChange> {
        self.actions.iter().filter_map(|a| match a {
            Action::Record(change) => Some(change),
            _ => None,
        })
    }
}

/// The first 12 characters of a commit id, as plumb prints them.
pub fn short(commit: &str) -> &str {
    &commit[..12.min(commit.len())]
}

/// Whether `planned` (rendered, not yet written) needs a new release, or the
/// current one already holds exactly it. Files changed by hand in the
/// current release need a fresh one too.
pub fn needs_release(planned: &ReleaseInfo, observed: &Observed) -> bool {
    match &observed.current {
        None => true,
        Some(current) => !current.same_content(planned) || !observed.tampered.is_empty(),
    }
}

/// Fails, as `plan` would, if a path `target` manages is held by something
/// plumb may not replace: the check made before a release is built.
pub fn check(target: &ReleaseInfo, observed: &Observed) -> Result<(), PlanError> {
    links::check(target, observed)
}

/// Plan the steps that bring the host from `observed` to `target`.
///
/// Fails, before anything is changed, if a desired path is occupied by
/// something plumb does not own.
pub fn plan(
    target: &Target,
    observed: &Observed,
    deployed: &DeployedRef,
) -> Result<Plan, PlanError> {
    let info = &target.info;
    let previous = observed.current.as_ref().map(|c| c.id.clone());
    let switching = previous.as_deref() != Some(info.id.as_str());
    let owned_after: BTreeSet<PathBuf> = info.managed().collect();
    let links = links::classify(info, &owned_after, observed, switching)?;
    let units = units::plan(info, observed, &links);
    let before = observed.deployed.clone();
    // Ownership is recorded only when it changes: a commit that adds or
    // removes no file records nothing (and journals no copy of the set).
    let owned_during: Option<BTreeSet<PathBuf>> = (owned_after != observed.owned)
        .then(|| observed.owned.union(&owned_after).cloned().collect());
    let owned_shrinks = owned_during.as_ref().is_some_and(|d| *d != owned_after);

    let mut actions = Vec::new();
    if let Some(prev) = previous.as_ref().filter(|_| switching) {
        for path in &links.removed_units {
            actions.push(Action::Pin {
                path: path.clone(),
                release: prev.clone(),
            });
        }
    }
    if switching {
        actions.push(Action::Switch(Some(info.id.clone())));
    }
    actions.extend(
        links
            .new
            .iter()
            .chain(&links.repairs)
            .cloned()
            .map(Action::Link),
    );
    actions.extend(links.removed_files.iter().cloned().map(Action::Unlink));
    if units.nginx_changed {
        actions.push(Action::ValidateNginx);
    }
    if !units.verify.is_empty() {
        actions.push(Action::VerifyUnits(units.verify.clone()));
    }
    actions.extend(hooks::pre_switch(target));
    actions.push(Action::Commit);
    actions.push(Action::Record(StateChange::Deployed(Some(
        deployed.clone(),
    ))));
    let owned_changes = owned_during.is_some();
    actions.extend(owned_during.map(|during| Action::Record(StateChange::Owned(during))));
    actions.extend(units.removed.iter().cloned().map(Action::DisableNow));
    actions.extend(links.removed_units.iter().cloned().map(Action::Unlink));
    if units.files_changed || !links.removed_units.is_empty() {
        actions.push(Action::DaemonReload);
    }
    actions.extend(units.steps.iter().cloned());
    if units.nginx_changed {
        actions.push(Action::ReloadNginx);
    }
    actions.extend(hooks::post_switch(target));
    let touched = actions
        .iter()
        .any(|a| !a.is_bookkeeping() && !matches!(a, Action::Link(_)));
    if touched {
        actions.extend(info.health.iter().cloned().map(Action::Check));
    }
    if owned_shrinks {
        actions.push(Action::Record(StateChange::Owned(owned_after)));
    }

    let before_secrets = observed.current.as_ref().map(|c| &c.secrets);
    let mut secrets = Vec::new();
    for (key, entry) in &info.secrets {
        match before_secrets.and_then(|b| b.get(key)) {
            None => secrets.push((key.clone(), Change::Created)),
            Some(old) if old != entry => secrets.push((key.clone(), Change::Changed)),
            _ => {}
        }
    }
    for key in before_secrets.into_iter().flat_map(|b| b.keys()) {
        if !info.secrets.contains_key(key) {
            secrets.push((key.clone(), Change::Removed));
        }
    }
    let abort = undo::abort(target, observed, &links, switching);
    let rollback = undo::rollback(observed, &links, &units, &abort, before, owned_changes);
    let mut changes = links.changes;
    changes.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Plan {
        commit: deployed.commit.clone(),
        fingerprint: deployed.fingerprint.clone(),
        trigger: String::new(),
        release: info.id.clone(),
        new_release: target.new,
        previous,
        previous_commit: observed.deployed.as_ref().map(|d| d.commit.clone()),
        changes,
        secrets,
        actions,
        abort,
        rollback,
    })
}

#[cfg(test)]
mod tests;
