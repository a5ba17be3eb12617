//! Looking at the host: everything the planner needs ([`observe`]), and
//! drift — ways the host no longer matches the release it is on
//! ([`detect`]). The quick check trusts a file whose size, mtime and inode
//! are what they were when the release was written and hashes only the
//! others; the full check (`plumb status --verify`) hashes every file.

use std::collections::{BTreeSet, HashMap};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::check;
use crate::host::{Host, Kind, Stat, UnitState};
use crate::plan::observed::{Observed, PathState};
use crate::plan::release::{FileEntry, FileStat, ReleaseInfo};
use crate::plan::state::{DeployedRef, State};
use crate::render::desired::TlsPending;
use crate::spec::layout::Layout;

/// How hard to look for files changed by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// An up-to-date run: the check index and a slice of the files
    /// (`apply::check`), or the quick check when the index does not answer.
    Sampled,
    /// Hash only files whose stat changed since they were written.
    Quick,
    /// Hash every file.
    Full,
}

/// One difference between the host and its release.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Drift {
    /// An owned link is missing or points elsewhere.
    Link { path: String },
    /// A release file no longer matches its manifest.
    Modified { path: String },
    /// A unit that should run is not active.
    Inactive { unit: String },
    /// A unit that should run has failed.
    Failed { unit: String },
    /// The release's secrets are gone from tmpfs (after a reboot).
    Secrets { release: String },
    /// `current` is not the release state.json records, or a run was interrupted.
    Current { detail: String },
    /// A site served over HTTP while its certificate was missing: the
    /// certificate is there now, and its TLS part can be deployed.
    TlsReady { app: String, certificate: String },
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Drift::Link { path } => write!(f, "{path}: link missing or changed"),
            Drift::Modified { path } => write!(f, "{path}: modified since the release was written"),
            Drift::Inactive { unit } => write!(f, "{unit}: should be running but is not"),
            Drift::Failed { unit } => write!(f, "{unit}: failed"),
            Drift::Secrets { release } => {
                write!(f, "the secrets of release {release} are not in place")
            }
            Drift::Current { detail } => write!(f, "{detail}"),
            Drift::TlsReady { app, certificate } => {
                write!(
                    f,
                    "{app}: certificate {certificate} issued: TLS to be enabled"
                )
            }
        }
    }
}

/// The release `current` points at, with its `release.json`.
pub fn current(host: &dyn Host, layout: &Layout) -> Option<ReleaseInfo> {
    let id = super::release::current_id(host, layout)?;
    super::release::load(host, layout, &id)
}

/// Look at everything the planner depends on for moving to `target`.
pub fn observe(
    host: &dyn Host,
    layout: &Layout,
    state: &State,
    target: &ReleaseInfo,
    depth: Depth,
) -> Observed {
    let files = host.files();
    let current = current(host, layout);
    let mut paths = HashMap::new();
    let mut link_targets = HashMap::new();
    // Owned links in a directory unchanged since a check read them are as
    // they were then: not read again (`apply::check`).
    let trusted = state
        .deployed
        .as_ref()
        .map(|d| check::intact_link_dirs(host, layout, &d.release))
        .unwrap_or_default();
    let mut look = |path: PathBuf, owned: bool| {
        if paths.contains_key(&path) {
            return; // owned and desired: looked at once
        }
        let expected = files.real(&layout.link_target(&path));
        let known = owned && path.parent().is_some_and(|dir| trusted.contains(dir));
        let seen = if known {
            PathState::Link(expected.clone())
        } else {
            match files.read_link(&path) {
                Ok(target) => PathState::Link(target),
                Err(e) if e.kind() == ErrorKind::NotFound => PathState::Missing,
                Err(_) => PathState::Other,
            }
        };
        link_targets.insert(path.clone(), expected);
        paths.insert(path, seen);
    };
    for path in &state.owned {
        look(path.clone(), true);
    }
    for path in target.managed() {
        look(path, false);
    }
    let inspection = current
        .as_ref()
        .map(|info| inspect(host, layout, info, depth))
        .unwrap_or_default();
    let (inactive, failed) = current
        .as_ref()
        .map(|info| unit_states(host, &info.units))
        .unwrap_or_default();
    Observed {
        current,
        deployed: state.deployed.as_ref().map(|d| DeployedRef {
            commit: d.commit.clone(),
            release: d.release.clone(),
            fingerprint: d.fingerprint.clone(),
        }),
        owned: (*state.owned).clone(),
        paths,
        link_targets,
        tampered: inspection.tampered,
        restat: inspection.restat,
        inactive,
        failed,
    }
}

/// Units that should run but are inactive, and those that failed.
fn unit_states(host: &dyn Host, units: &[String]) -> (BTreeSet<String>, BTreeSet<String>) {
    let states = host.services().unit_states(units);
    let pick = |want: UnitState| {
        units
            .iter()
            .zip(&states)
            .filter(|(_, s)| **s == want)
            .map(|(u, _)| u.clone())
            .collect()
    };
    (pick(UnitState::Inactive), pick(UnitState::Failed))
}

/// Everything that differs between the host and the release `state` records.
pub fn detect(host: &dyn Host, layout: &Layout, state: &State, depth: Depth) -> Vec<Drift> {
    let files = host.files();
    let mut found = Vec::new();
    if files.stat(&layout.journal()).is_ok() {
        found.push(Drift::Current {
            detail: "a run was interrupted (journal.json)".into(),
        });
    }
    let Some(deployed) = &state.deployed else {
        return found;
    };
    if super::release::current_id(host, layout).as_deref() != Some(deployed.release.as_str()) {
        found.push(Drift::Current {
            detail: format!("current does not point at release {}", deployed.release),
        });
        return found;
    }
    if depth == Depth::Sampled
        && let Some(summary) = check::accept(host, layout, &deployed.release)
    {
        found.extend(live(host, &summary));
        return found;
    }
    let began = check::coarse_now();
    let link_dirs = (depth == Depth::Sampled)
        .then(|| check::stamp_link_dirs(host, state, began))
        .flatten();
    for path in &state.owned {
        if files.read_link(path).ok() != Some(files.real(&layout.link_target(path))) {
            found.push(Drift::Link {
                path: path.display().to_string(),
            });
        }
    }
    let Some(info) = super::release::load(host, layout, &deployed.release) else {
        found.push(Drift::Current {
            detail: format!("release {} has no readable release.json", deployed.release),
        });
        return found;
    };
    let quick = if depth == Depth::Full {
        depth
    } else {
        Depth::Quick
    };
    let inspection = inspect(host, layout, &info, quick);
    for path in inspection.tampered {
        found.push(Drift::Modified { path });
    }
    if found.is_empty()
        && let Some(link_dirs) = link_dirs
        && let Err(e) = check::write(
            host,
            layout,
            &info,
            &inspection.restat,
            check::Checked {
                link_dirs,
                at_ns: began,
                restart_rotation: true,
            },
        )
    {
        tracing::warn!("cannot write the check index {}: {e}", check::INDEX);
    }
    found.extend(live(host, &check::Summary::of(&info)));
    found
}

/// What can differ while every file is intact: the secrets on tmpfs, the
/// units' states, certificates that arrived.
fn live(host: &dyn Host, summary: &check::Summary) -> Vec<Drift> {
    let mut found = Vec::new();
    if !super::secrets::present(host, &summary.release, &summary.secrets) {
        found.push(Drift::Secrets {
            release: summary.release.clone(),
        });
    }
    let (inactive, failed) = unit_states(host, &summary.units);
    found.extend(inactive.into_iter().map(|unit| Drift::Inactive { unit }));
    found.extend(failed.into_iter().map(|unit| Drift::Failed { unit }));
    found.extend(tls_ready(host, &summary.tls_pending));
    found
}

/// Sites of the release waiting for a certificate that now exists.
fn tls_ready(host: &dyn Host, pending: &[TlsPending]) -> Vec<Drift> {
    let files = host.files();
    pending
        .iter()
        .filter(|t| {
            [&t.certificate, &t.key]
                .iter()
                .all(|f| files.stat(Path::new(f.as_str())).is_ok())
        })
        .map(|t| Drift::TlsReady {
            app: t.app.clone(),
            certificate: t.certificate.clone(),
        })
        .collect()
}

/// The files of a release as found on disk.
#[derive(Debug, Default)]
pub struct Inspection {
    /// Missing, or with other bytes or mode than the manifest says.
    pub tampered: BTreeSet<String>,
    /// Intact, but found so by their bytes: their stat is no longer the
    /// one recorded (touched), so a link to them takes a fresh one.
    pub restat: BTreeSet<String>,
}

/// Look at every file of `info` (one `lstat` each, relative to the
/// release directory; a hash where the stat differs, or everywhere at
/// `Depth::Full`).
pub fn inspect(host: &dyn Host, layout: &Layout, info: &ReleaseInfo, depth: Depth) -> Inspection {
    let entries: Vec<(&String, &FileEntry)> = info.manifest.iter().chain(&info.outputs).collect();
    let names: Vec<&str> = entries.iter().map(|(key, _)| key.as_str()).collect();
    let stats = host.files().stat_under(&layout.release(&info.id), &names);
    let mut found = Inspection::default();
    for ((key, entry), stat) in entries.into_iter().zip(stats) {
        let path = || layout.release_file(&info.id, key);
        match stat
            .ok()
            .and_then(|stat| intact(host, path, entry, &stat, depth))
        {
            Some(true) => {}
            Some(false) => {
                found.restat.insert(key.clone());
            }
            None => {
                found.tampered.insert(key.clone());
            }
        }
    }
    found
}

/// `Some(true)`: intact with the stat recorded; `Some(false)`: intact by
/// its bytes; `None`: tampered.
fn intact(
    host: &dyn Host,
    path: impl FnOnce() -> PathBuf,
    entry: &FileEntry,
    stat: &Stat,
    depth: Depth,
) -> Option<bool> {
    let unchanged = as_recorded(&entry.mode, entry.stat, stat)?;
    if depth != Depth::Full && unchanged {
        return Some(true);
    }
    let same = host
        .files()
        .content_id(&path(), &entry.sha256)
        .is_ok_and(|id| id == entry.sha256);
    same.then_some(unchanged)
}

/// What `stat` says of a release file recorded with `mode` and `recorded`:
/// `None` if it is not a file or has another mode (not for `built`
/// files), else whether its size, mtime and inode are the recorded ones.
pub fn as_recorded(mode: &str, recorded: Option<FileStat>, stat: &Stat) -> Option<bool> {
    let bits = u32::from_str_radix(mode, 8).ok();
    if stat.kind != Kind::File || (mode != "built" && bits != Some(stat.mode)) {
        return None;
    }
    Some(
        recorded
            .is_some_and(|s| (s.size, s.mtime_ns, s.ino) == (stat.size, stat.mtime_ns, stat.ino)),
    )
}
