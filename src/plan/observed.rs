//! The host as plumb found it: what the planner needs to know, gathered by
//! `apply::observe` and handed in as data.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use super::release::ReleaseInfo;
use super::state::DeployedRef;

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
    /// What `state.json` records as deployed (commit, release, fingerprint).
    pub deployed: Option<DeployedRef>,
    /// Paths recorded as owned in `state.json`.
    pub owned: BTreeSet<PathBuf>,
    /// What is at every desired or owned path (hashed: looked up once or
    /// twice per managed file, never walked in order).
    pub paths: HashMap<PathBuf, PathState>,
    /// The literal link target each desired or owned path must have.
    pub link_targets: HashMap<PathBuf, PathBuf>,
    /// Files of the current release whose bytes no longer match its manifest.
    pub tampered: BTreeSet<String>,
    /// Files of the current release intact by their bytes but not with the
    /// stat recorded for them (touched).
    pub restat: BTreeSet<String>,
    /// Units of the current release that should run but do not.
    pub inactive: BTreeSet<String>,
    /// Units of the current release in the failed state.
    pub failed: BTreeSet<String>,
}

impl Observed {
    /// Whether the link at `path` is plumb's, pointing where it must.
    pub fn ours(&self, path: &PathBuf) -> bool {
        matches!(self.paths.get(path), Some(PathState::Link(t)) if Some(t) == self.link_targets.get(path))
    }
}

/// The release a plan moves the host to.
#[derive(Debug, Clone)]
pub struct Target {
    pub info: ReleaseInfo,
    /// Built for this plan (hooks run; a failure before the commit point
    /// deletes it), rather than a release already on disk.
    pub new: bool,
}
