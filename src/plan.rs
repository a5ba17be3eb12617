//! The planner: a pure function of the desired state and the observed host
//! state. It reads nothing from disk; every action prints as one line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

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
    /// The link target each owned path must have.
    pub link_targets: BTreeMap<PathBuf, PathBuf>,
}

/// How a managed file changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Changed,
    Removed,
}

/// One step of a plan, in execution order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write `releases/<id>/` from the desired state.
    BuildRelease,
    /// `systemctl disable --now` a unit that left the desired state.
    DisableNow(String),
    /// Point `current` at the new release.
    Switch,
    /// Create (or repair) the owned link at a path.
    Link(PathBuf),
    /// Remove an owned link whose path left the desired state.
    Unlink(PathBuf),
    DaemonReload,
    Restart {
        unit: String,
        reason: String,
    },
    EnableNow(String),
    /// `nginx -t`, then reload.
    ReloadNginx,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Action::BuildRelease => write!(f, "build release"),
            Action::DisableNow(unit) => write!(f, "stop and disable {unit}"),
            Action::Switch => write!(f, "switch current to the new release"),
            Action::Link(path) => write!(f, "link {}", path.display()),
            Action::Unlink(path) => write!(f, "remove {}", path.display()),
            Action::DaemonReload => write!(f, "systemctl daemon-reload"),
            Action::Restart { unit, reason } => write!(f, "restart {unit} ({reason})"),
            Action::EnableNow(unit) => write!(f, "enable and start {unit}"),
            Action::ReloadNginx => write!(f, "reload nginx (config changed)"),
        }
    }
}

/// What a reconcile will do.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Managed files that change, for the report.
    pub changes: Vec<(PathBuf, Change)>,
    pub actions: Vec<Action>,
}

impl Plan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Plan the steps that bring the host from `observed` to `desired`.
///
/// Fails, before anything is changed, if a desired path is occupied by
/// something plumb does not own.
pub fn plan(desired: &Desired, observed: &Observed) -> Result<Plan, InvalidError> {
    let before: BTreeMap<String, FileEntry> = observed
        .current
        .as_ref()
        .map(|r| r.manifest.clone())
        .unwrap_or_default();
    let after = release::manifest(desired);
    let entry = |m: &BTreeMap<String, FileEntry>, path: &PathBuf| {
        m.get(&format!(
            "files/{}",
            path.strip_prefix("/").unwrap_or(path).display()
        ))
        .cloned()
    };

    let mut plan = Plan::default();
    let mut links = Vec::new();
    for path in desired.files.keys() {
        let state = observed.paths.get(path).unwrap_or(&PathState::Missing);
        let target = observed.link_targets.get(path);
        let ours = matches!(state, PathState::Link(t) if Some(t) == target);
        let owned = observed.owned.contains(path);
        match state {
            PathState::Missing => links.push(path.clone()),
            PathState::Link(_) if ours => {}
            PathState::Link(_) if owned => links.push(path.clone()),
            _ => return Err(InvalidError::NotOwned { path: path.clone() }),
        }
        match (entry(&before, path), entry(&after, path)) {
            (None, _) => plan.changes.push((path.clone(), Change::Created)),
            (Some(old), Some(new)) if old != new => {
                plan.changes.push((path.clone(), Change::Changed))
            }
            _ => {}
        }
    }
    let mut unlinks = Vec::new();
    for path in &observed.owned {
        if desired.files.contains_key(path) {
            continue;
        }
        plan.changes.push((path.clone(), Change::Removed));
        let target = observed.link_targets.get(path);
        if matches!(observed.paths.get(path), Some(PathState::Link(t)) if Some(t) == target) {
            unlinks.push(path.clone());
        }
    }

    let release_changed = observed.current.as_ref().map(|r| &r.manifest) != Some(&after)
        || observed.current.as_ref().map(|r| &r.commit) != Some(&desired.commit);
    let changed: BTreeSet<&PathBuf> = plan.changes.iter().map(|(p, _)| p).collect();
    let old_units: Vec<String> = observed
        .current
        .as_ref()
        .map(|r| r.units.clone())
        .unwrap_or_default();

    if release_changed {
        plan.actions.push(Action::BuildRelease);
    }
    for unit in old_units.iter().filter(|u| !desired.units.contains(u)) {
        plan.actions.push(Action::DisableNow(unit.clone()));
    }
    if release_changed {
        plan.actions.push(Action::Switch);
    }
    plan.actions.extend(links.into_iter().map(Action::Link));
    plan.actions.extend(unlinks.into_iter().map(Action::Unlink));
    if changed.iter().any(|p| desired::unit_name(p).is_some()) {
        plan.actions.push(Action::DaemonReload);
    }
    for unit in &desired.units {
        if !old_units.contains(unit) {
            continue;
        }
        let path = PathBuf::from(desired::UNIT_DIR).join(unit);
        if changed.contains(&path) {
            plan.actions.push(Action::Restart {
                unit: unit.clone(),
                reason: "unit file changed".into(),
            });
        }
    }
    for unit in desired.units.iter().filter(|u| !old_units.contains(u)) {
        plan.actions.push(Action::EnableNow(unit.clone()));
    }
    if changed.iter().any(|p| desired::is_nginx(p)) {
        plan.actions.push(Action::ReloadNginx);
    }
    Ok(plan)
}
