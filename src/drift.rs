//! Drift: ways the host no longer matches the release it is on. The checks
//! are cheap enough for the up-to-date path; `reconcile` repairs what they
//! find and `status` reports it.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use crate::host::Host;
use crate::release::{Layout, ReleaseInfo};
use crate::state::State;

/// One difference between the host and its release.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Drift {
    /// An owned link is missing or points elsewhere.
    Link { path: String },
    /// A release file no longer matches its manifest hash.
    Modified { path: String },
    /// A unit that should run is not active.
    Inactive { unit: String },
    /// `current` is not the release state.json records, or a run was interrupted.
    Current { detail: String },
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Drift::Link { path } => write!(f, "{path}: link missing or changed"),
            Drift::Modified { path } => write!(f, "{path}: modified since the release was written"),
            Drift::Inactive { unit } => write!(f, "{unit}: should be running but is not"),
            Drift::Current { detail } => write!(f, "{detail}"),
        }
    }
}

/// Everything that differs between the host and the release `state` records.
pub fn detect(host: &dyn Host, layout: &Layout, state: &State) -> Vec<Drift> {
    let mut found = Vec::new();
    if host.exists(&layout.journal()) {
        found.push(Drift::Current {
            detail: "a run was interrupted (journal.json)".into(),
        });
    }
    let Some(deployed) = &state.deployed else {
        return found;
    };
    if crate::release::current_id(host, layout).as_deref() != Some(deployed.release.as_str()) {
        found.push(Drift::Current {
            detail: format!("current does not point at release {}", deployed.release),
        });
        return found;
    }
    for path in &state.owned {
        if host.read_link(path).ok() != Some(layout.link_target(host, path)) {
            found.push(Drift::Link {
                path: path.display().to_string(),
            });
        }
    }
    let Some(info) = ReleaseInfo::load(host, layout, &deployed.release) else {
        found.push(Drift::Current {
            detail: format!("release {} has no readable release.json", deployed.release),
        });
        return found;
    };
    for path in tampered(host, layout, &info) {
        found.push(Drift::Modified { path });
    }
    for unit in host.inactive(&info.units) {
        found.push(Drift::Inactive { unit });
    }
    found
}

/// Manifest paths of `info` whose file is missing or has other bytes or mode.
pub fn tampered(host: &dyn Host, layout: &Layout, info: &ReleaseInfo) -> BTreeSet<String> {
    let dir = layout.release(&info.id);
    info.manifest
        .iter()
        .chain(&info.outputs)
        .filter(|(path, entry)| match host.read(&dir.join(path)) {
            Ok(bytes) => hex::encode(Sha256::digest(&bytes)) != entry.sha256,
            Err(_) => true,
        })
        .map(|(path, _)| path.clone())
        .collect()
}
