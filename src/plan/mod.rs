//! The planner: a pure function of the desired state and the observed host
//! state. It reads nothing from disk. A plan holds the forward actions and,
//! as data, the two ways back: `abort` (before the commit point: undo the
//! staging) and `rollback` (after it: restore the previous release).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::action::Action;
use crate::desired::{self, Desired};
use crate::error::InvalidError;
use crate::release::{self, FileEntry, ReleaseInfo};

/// What is at a host path plumb wants to manage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathState {
    Missing,
    /// A symlink with this literal target.
    Link(PathBuf),
    /// A file, directory or anything else that is not a link.
    Other,
}

/// The host as plumb found it.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The release `current` points at, with its `release.json`.
    pub current: Option<ReleaseInfo>,
    /// Paths recorded as owned in `state.json`.
    pub owned: BTreeSet<PathBuf>,
    /// What is at every desired or owned path.
    pub paths: BTreeMap<PathBuf, PathState>,
    /// The link target each desired or owned path must have.
    pub link_targets: BTreeMap<PathBuf, PathBuf>,
    /// Files of the current release whose bytes no longer match its manifest.
    pub tampered: BTreeSet<String>,
    /// Units of the current release that should run but do not.
    pub inactive: BTreeSet<String>,
    /// Whether the release being deployed already exists (a rollback to it):
    /// then it is neither built nor discarded.
    pub release_exists: bool,
    /// Users the repo asks to create that do not exist yet.
    pub missing_users: BTreeSet<String>,
}

/// How a managed file changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    Created,
    Changed,
    Removed,
}

/// What a reconcile will do, and how to undo it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub commit: String,
    /// The settings fingerprint the desired state was rendered with.
    pub fingerprint: String,
    /// What started the run (set by the command, recorded in the history).
    #[serde(default)]
    pub trigger: String,
    /// The release being deployed (new, or the current one when only repairing).
    pub release: Option<String>,
    /// The release `current` pointed at before.
    pub previous: Option<String>,
    /// Managed files that change, for the report.
    pub changes: Vec<(PathBuf, Change)>,
    pub actions: Vec<Action>,
    /// Undo of the steps before `Commit`.
    pub abort: Vec<Action>,
    /// Undo of the whole plan, after `Commit`.
    pub rollback: Vec<Action>,
    pub owned_before: BTreeSet<PathBuf>,
    pub owned_after: BTreeSet<PathBuf>,
}

impl Plan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The units a run restarts, reloads or starts, with the reason.
    pub fn unit_actions(&self) -> impl Iterator<Item = &Action> {
        self.actions.iter().filter(|a| {
            matches!(
                a,
                Action::Restart { .. }
                    | Action::Reload { .. }
                    | Action::Start { .. }
                    | Action::EnableNow(_)
                    | Action::DisableNow(_)
            )
        })
    }
}

/// Plan the steps that bring the host from `observed` to `desired`, deploying
/// it as release `new_release` if the release must change.
///
/// Fails, before anything is changed, if a desired path is occupied by
/// something plumb does not own.
pub fn plan(
    desired: &Desired,
    observed: &Observed,
    new_release: &str,
) -> Result<Plan, InvalidError> {
    let before: BTreeMap<String, FileEntry> = observed
        .current
        .as_ref()
        .map(|r| r.manifest.clone())
        .unwrap_or_default();
    let after = release::manifest(desired);
    let key = |path: &PathBuf| format!("files{}", path.display());
    let ours = |path: &PathBuf| matches!(observed.paths.get(path), Some(PathState::Link(t)) if Some(t) == observed.link_targets.get(path));

    let mut changes = Vec::new();
    let mut new_links = Vec::new();
    let mut repairs = Vec::new();
    for path in desired.files.keys() {
        match observed.paths.get(path).unwrap_or(&PathState::Missing) {
            PathState::Missing if observed.owned.contains(path) => repairs.push(path.clone()),
            PathState::Missing => new_links.push(path.clone()),
            PathState::Link(_) if ours(path) => {}
            PathState::Link(_) if observed.owned.contains(path) => repairs.push(path.clone()),
            _ if observed.owned.contains(path) => {
                return Err(InvalidError::ReplacedByHand { path: path.clone() });
            }
            _ => return Err(InvalidError::NotOwned { path: path.clone() }),
        }
        match (before.get(&key(path)), after.get(&key(path))) {
            (None, _) => changes.push((path.clone(), Change::Created)),
            (Some(old), Some(new)) if old != new => changes.push((path.clone(), Change::Changed)),
            _ if observed.tampered.contains(&key(path)) => {
                changes.push((path.clone(), Change::Changed))
            }
            _ => {}
        }
    }
    let mut removed_units = Vec::new();
    let mut removed_files = Vec::new();
    for path in observed
        .owned
        .iter()
        .filter(|p| !desired.files.contains_key(*p))
    {
        changes.push((path.clone(), Change::Removed));
        if !ours(path) {
            continue; // changed by hand since: no longer ours to remove
        }
        if desired::unit_name(path).is_some() {
            removed_units.push(path.clone());
        } else {
            removed_files.push(path.clone());
        }
    }

    let previous = observed.current.as_ref().map(|r| r.id.clone());
    let keys: BTreeMap<String, String> = desired
        .builds
        .iter()
        .map(|(app, b)| (app.clone(), b.key.clone()))
        .collect();
    let old_keys = observed
        .current
        .as_ref()
        .map(|r| r.builds.clone())
        .unwrap_or_default();
    let rebuild = observed.current.as_ref().map(|r| (&r.commit, &r.manifest))
        != Some((&desired.commit, &after))
        || old_keys != keys
        || !observed.tampered.is_empty();
    let release = if rebuild {
        Some(new_release.to_string())
    } else {
        previous.clone()
    };
    let changed: BTreeSet<&PathBuf> = changes.iter().map(|(p, _)| p).collect();
    let changed_keys: BTreeSet<String> = changed.iter().map(|p| key(p)).collect();
    let app_changed = |prefix: &str| {
        before
            .keys()
            .chain(after.keys())
            .filter(|k| k.starts_with(prefix))
            .any(|k| before.get(k) != after.get(k))
            || observed.tampered.iter().any(|k| k.starts_with(prefix))
            || prefix
                .strip_prefix("app/")
                .map(|app| app.trim_end_matches('/'))
                .is_some_and(|app| old_keys.get(app) != keys.get(app))
    };
    // Hooks run with every new release (as Capistrano's do): migrations
    // are written to be idempotent.
    let hooks_for = |pre: bool| -> Vec<Action> {
        let Some(release) = release.clone().filter(|_| rebuild) else {
            return Vec::new();
        };
        desired
            .hooks
            .iter()
            .filter(|h| h.pre_switch == pre)
            .map(|hook| Action::Hook {
                hook: hook.clone(),
                release: release.clone(),
            })
            .collect()
    };
    let old_units: Vec<String> = observed
        .current
        .as_ref()
        .map(|r| r.units.clone())
        .unwrap_or_default();
    let units_changed = changed.iter().any(|p| desired::unit_name(p).is_some());
    let nginx_changed = changed.iter().any(|p| desired::is_nginx(p));

    let mut actions = Vec::new();
    let mut abort = Vec::new();
    let mut rollback = Vec::new();
    actions.extend(
        observed
            .missing_users
            .iter()
            .cloned()
            .map(Action::CreateUser),
    );
    if rebuild && !observed.release_exists {
        actions.push(Action::BuildRelease(new_release.to_string()));
    }
    if let Some(prev) = &previous {
        for path in &removed_units {
            actions.push(Action::Pin {
                path: path.clone(),
                release: prev.clone(),
            });
        }
    }
    if rebuild {
        actions.push(Action::Switch(Some(new_release.to_string())));
    }
    actions.extend(new_links.iter().chain(&repairs).cloned().map(Action::Link));
    actions.extend(removed_files.iter().cloned().map(Action::Unlink));
    if nginx_changed {
        actions.push(Action::ValidateNginx);
    }
    let verify: Vec<PathBuf> = desired
        .files
        .keys()
        .filter(|p| desired::unit_name(p).is_some() && changed.contains(p))
        .cloned()
        .collect();
    if !verify.is_empty() {
        actions.push(Action::VerifyUnits(verify));
    }

    // Undo of the staging, in order: new links go, `current` goes back,
    // removed paths come back through it.
    abort.extend(new_links.iter().cloned().map(Action::Unlink));
    if rebuild {
        abort.push(Action::Switch(previous.clone()));
    }
    abort.extend(
        removed_files
            .iter()
            .chain(&removed_units)
            .cloned()
            .map(Action::Link),
    );

    // Pre-switch hooks (migrations) only once the commit passed validation,
    // after a backup of the app's shared data, as DESIGN orders them.
    let pre_hooks = hooks_for(true);
    let mut snapshotted = BTreeSet::new();
    for hook in &pre_hooks {
        if let Action::Hook { hook, release } = hook
            && snapshotted.insert(hook.app.clone())
        {
            actions.push(Action::Snapshot {
                app: hook.app.clone(),
                release: release.clone(),
            });
        }
        actions.push(hook.clone());
    }
    actions.push(Action::Commit);
    for unit in old_units.iter().filter(|u| !desired.units.contains(u)) {
        actions.push(Action::DisableNow(unit.clone()));
        rollback_after(&mut rollback, Action::EnableNow(unit.clone()));
    }
    actions.extend(removed_units.iter().cloned().map(Action::Unlink));
    if units_changed {
        actions.push(Action::DaemonReload);
    }
    for unit in &desired.units {
        let unit_path = PathBuf::from(desired::UNIT_DIR).join(unit);
        if !old_units.contains(unit) {
            actions.push(Action::EnableNow(unit.clone()));
            continue;
        }
        let triggers = desired
            .triggers
            .get(unit)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let config: Vec<&String> = triggers
            .iter()
            .filter(|t| t.starts_with("files/") && changed_keys.contains(*t))
            .collect();
        let app_release = triggers
            .iter()
            .any(|t| t.starts_with("app/") && app_changed(t));
        let step = if changed.contains(&unit_path) {
            Some(restart(unit, "unit file changed"))
        } else if app_release {
            Some(restart(unit, "app release changed"))
        } else if !config.is_empty() {
            let reason = format!(
                "config {} changed",
                config
                    .iter()
                    .map(|c| &c[5..])
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Some(if desired.reloadable.contains(unit) {
                Action::Reload {
                    unit: unit.clone(),
                    reason,
                }
            } else {
                Action::Restart {
                    unit: unit.clone(),
                    reason,
                }
            })
        } else if observed.inactive.contains(unit) {
            Some(Action::Start {
                unit: unit.clone(),
                reason: "should be running but is not".into(),
            })
        } else {
            None
        };
        if let Some(step) = step {
            if let Action::Restart { .. } | Action::Reload { .. } = &step {
                rollback_after(&mut rollback, restart(unit, "rolled back"));
            }
            actions.push(step);
        }
    }
    if nginx_changed {
        actions.push(Action::ReloadNginx);
    }
    actions.extend(hooks_for(false));
    let touched = actions
        .iter()
        .any(|a| !matches!(a, Action::Commit | Action::Link(_)));
    if touched {
        actions.extend(desired.health.iter().cloned().map(Action::Check));
    }

    // The full rollback: stop what is new while its files exist, put back
    // `current` and the links, then restart what the failed release touched.
    let mut full = Vec::new();
    full.extend(
        desired
            .units
            .iter()
            .filter(|u| !old_units.contains(u))
            .cloned()
            .map(Action::DisableNow),
    );
    full.extend(abort.iter().cloned());
    if units_changed {
        full.push(Action::DaemonReload);
    }
    full.extend(rollback);
    if nginx_changed {
        full.push(Action::ReloadNginx);
    }

    // A release that never went live is deleted; a rolled-back one is kept
    // for inspection until pruned.
    if rebuild && !observed.release_exists {
        abort.push(Action::Discard(new_release.to_string()));
    }
    if actions == [Action::Commit] {
        actions.clear();
    }
    Ok(Plan {
        commit: desired.commit.clone(),
        fingerprint: desired.fingerprint.clone(),
        trigger: String::new(),
        release,
        previous,
        changes,
        actions,
        abort,
        rollback: full,
        owned_before: observed.owned.clone(),
        owned_after: desired.files.keys().cloned().collect(),
    })
}

fn restart(unit: &str, reason: &str) -> Action {
    Action::Restart {
        unit: unit.to_string(),
        reason: reason.to_string(),
    }
}

fn rollback_after(rollback: &mut Vec<Action>, action: Action) {
    if !rollback.contains(&action) {
        rollback.push(action);
    }
}

#[cfg(test)]
mod tests;
