//! The two ways back, as data: `abort` undoes the staging before the commit
//! point (the host never ran the new release), `rollback` restores the
//! previous release after it.

use super::action::Action;
use super::links::Links;
use super::observed::{Observed, Target};
use super::state::{DeployedRef, StateChange};
use super::units::Units;

/// Undo of the steps before `Commit`, in order: new links go, `current`
/// goes back, removed paths come back through it, a new release is deleted.
pub(super) fn abort(
    target: &Target,
    observed: &Observed,
    links: &Links,
    switching: bool,
) -> Vec<Action> {
    let mut steps: Vec<Action> = links.new.iter().cloned().map(Action::Unlink).collect();
    if switching {
        steps.push(Action::Switch(
            observed.current.as_ref().map(|c| c.id.clone()),
        ));
    }
    steps.extend(
        links
            .removed_files
            .iter()
            .chain(&links.removed_units)
            .cloned()
            .map(Action::Link),
    );
    if target.new {
        steps.push(Action::Discard(target.info.id.clone()));
    }
    steps
}

/// Undo of the whole plan: stop what is new while its files exist, put
/// back `current` and the links, restart what the failed release touched,
/// wait for the previous release's health checks, and record it as
/// deployed again (and what it owned, when the plan changed that). A
/// rolled-back release is kept for inspection until pruned.
pub(super) fn rollback(
    observed: &Observed,
    links: &Links,
    units: &Units,
    abort: &[Action],
    deployed: Option<DeployedRef>,
    owned_changes: bool,
) -> Vec<Action> {
    let mut steps: Vec<Action> = units
        .added
        .iter()
        .cloned()
        .map(Action::DisableNow)
        .collect();
    steps.extend(
        abort
            .iter()
            .filter(|a| !matches!(a, Action::Discard(_)))
            .cloned(),
    );
    if units.files_changed || !links.removed_units.is_empty() {
        steps.push(Action::DaemonReload);
    }
    steps.extend(units.removed.iter().cloned().map(Action::EnableNow));
    steps.extend(units.rollback.iter().cloned());
    if units.nginx_changed {
        steps.push(Action::ReloadNginx);
    }
    // What was restarted answers again before the rollback is called done
    // (a failure here is reported, and the rest of the rollback still runs).
    let restarted = !units.rollback.is_empty() || !units.removed.is_empty() || units.nginx_changed;
    if restarted && let Some(previous) = &observed.current {
        steps.extend(previous.health.iter().cloned().map(Action::Check));
    }
    steps.push(Action::Record(StateChange::Deployed(deployed)));
    if owned_changes {
        steps.push(Action::Record(StateChange::Owned(observed.owned.clone())));
    }
    steps
}
