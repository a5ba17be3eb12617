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

/// Classify every desired and owned path. Fails, before anything changes,
/// if a desired path is held by something plumb does not own.
pub(super) fn classify(
    target: &ReleaseInfo,
    observed: &Observed,
    switching: bool,
) -> Result<Links, PlanError> {
    let before = observed.current.as_ref();
    let mut links = Links::default();
    let desired: BTreeSet<PathBuf> = target.managed().collect();
    for path in &desired {
        let owned = observed.owned.contains(path);
        match observed.paths.get(path).unwrap_or(&PathState::Missing) {
            PathState::Missing if owned => links.repairs.push(path.clone()),
            PathState::Missing => links.new.push(path.clone()),
            PathState::Link(_) if observed.ours(path) => {}
            PathState::Link(_) if owned => links.repairs.push(path.clone()),
            _ if owned => return Err(PlanError::ReplacedByHand { path: path.clone() }),
            _ => return Err(PlanError::NotOwned { path: path.clone() }),
        }
        let old = before.and_then(|b| b.file(path));
        let new = target.file(path);
        let key = super::release::Key::file(path);
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
    for path in observed.owned.difference(&desired) {
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
