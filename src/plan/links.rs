//! Links and files: which owned links are created, repaired or removed,
//! and how each managed file changes.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::PlanError;
use super::observed::{Observed, PathState};
use super::release::ReleaseInfo;
use crate::render::desired::unit_of;

/// How a managed file changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    Created,
    Changed,
    Removed,
}

/// The link work of a plan.
#[derive(Debug, Default)]
pub(super) struct Links {
    /// Desired paths with no link yet.
    pub new: Vec<PathBuf>,
    /// Owned paths whose link is missing or points elsewhere.
    pub repairs: Vec<PathBuf>,
    /// Owned files (not units) that leave.
    pub removed_files: Vec<PathBuf>,
    /// Owned unit files (and drop-ins) that leave: unlinked only after
    /// their unit is stopped.
    pub removed_units: Vec<PathBuf>,
    /// Every managed file that changes, for the report and the restarts.
    pub changes: Vec<(PathBuf, Change)>,
}

/// What a desired path needs: nothing (its link is in place), a new link,
/// or a repair.
enum Need {
    Nothing,
    New,
    Repair,
}

/// What `path` needs before it can be linked. Fails if it is held by
/// something plumb does not own, or by something that replaced its link.
fn need(path: &PathBuf, observed: &Observed) -> Result<Need, PlanError> {
    let state = observed.paths.get(path).unwrap_or(&PathState::Missing);
    if let PathState::Link(target) = state
        && observed.link_targets.get(path) == Some(target)
    {
        return Ok(Need::Nothing); // ours, where it must point
    }
    let owned = observed.owned.contains(path);
    match state {
        PathState::Missing if owned => Ok(Need::Repair),
        PathState::Missing => Ok(Need::New),
        PathState::Link(_) if owned => Ok(Need::Repair),
        _ if owned => Err(PlanError::ReplacedByHand { path: path.clone() }),
        _ => Err(PlanError::NotOwned { path: path.clone() }),
    }
}

/// Fails, as `classify` would, if a path `target` manages is held by
/// something plumb may not replace: checked before a release is built.
pub(super) fn check(target: &ReleaseInfo, observed: &Observed) -> Result<(), PlanError> {
    target
        .managed()
        .try_for_each(|path| need(&path, observed).map(drop))
}

/// Classify every desired (`target`'s managed paths, `desired`) and owned
/// path. Fails, before anything changes, if a desired path is held by
/// something plumb does not own.
pub(super) fn classify(
    target: &ReleaseInfo,
    desired: &BTreeSet<PathBuf>,
    observed: &Observed,
    switching: bool,
) -> Result<Links, PlanError> {
    let before = observed.current.as_ref();
    let mut links = Links::default();
    for path in desired {
        match need(path, observed)? {
            Need::Nothing => {}
            Need::New => links.new.push(path.clone()),
            Need::Repair => links.repairs.push(path.clone()),
        }
        let key = super::release::Key::file(path);
        let old = before.and_then(|b| b.manifest.get(&key));
        let new = target.manifest.get(&key);
        match (old, new) {
            (None, _) => links.changes.push((path.clone(), Change::Created)),
            (Some(old), Some(new)) if !old.same_content(new) => {
                links.changes.push((path.clone(), Change::Changed))
            }
            _ if switching && observed.tampered.contains(&key) => {
                links.changes.push((path.clone(), Change::Changed))
            }
            _ => {}
        }
    }
    for path in observed.owned.difference(desired) {
        links.changes.push((path.clone(), Change::Removed));
        if !observed.ours(path) {
            continue; // changed by hand since: no longer ours to remove
        }
        if unit_of(path).is_some() {
            links.removed_units.push(path.clone());
        } else {
            links.removed_files.push(path.clone());
        }
    }
    Ok(links)
}
