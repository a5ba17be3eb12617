//! `state.json`: what is deployed, which host paths plumb owns, and history.
//! Written to a temporary file, fsynced and renamed, so it is always parseable.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ApplyError, Error};
use crate::host::Host;

/// How many history entries are kept.
const HISTORY: usize = 50;

/// The persistent state of plumb on one host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The release `current` points at.
    pub deployed: Option<Deployed>,
    /// Host paths that are plumb's links into `current/files`.
    #[serde(default)]
    pub owned: BTreeSet<PathBuf>,
    /// Past runs that changed something or failed, newest last.
    #[serde(default)]
    pub history: Vec<Event>,
    /// Commits that failed to deploy: not retried until a new commit or `--force`.
    #[serde(default)]
    pub quarantine: Vec<Quarantined>,
    /// Rollbacks after a failed switch, ever (for metrics).
    #[serde(default)]
    pub rollbacks_total: u64,
    /// The release each unit was last (re)started on: its processes may
    /// still use it, so pruning keeps it.
    #[serde(default)]
    pub started_on: std::collections::BTreeMap<String, String>,
}

/// A commit that failed to deploy, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    pub commit: String,
    pub reason: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployed {
    pub commit: String,
    pub release: String,
    pub at: String,
    /// What else the rendering depended on (plumb version, host name, sub-path,
    /// roots): when it differs, the same commit is rendered again.
    #[serde(default)]
    pub fingerprint: String,
}

/// One line of history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at: String,
    pub commit: String,
    pub release: Option<String>,
    pub result: String,
    /// What started the run: manual, timer, schedule, webhook, signal, …
    #[serde(default)]
    pub trigger: String,
}

/// Temporary file, fsync, rename over `path`, fsync the directory.
pub fn write_atomic(
    host: &dyn Host,
    path: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), ApplyError> {
    let tmp = path.with_extension("tmp");
    if host.exists(&tmp) {
        host.remove_file(&tmp)
            .map_err(ApplyError::io("remove", &tmp))?;
    }
    host.write_file(&tmp, bytes, mode)
        .map_err(ApplyError::io("write", &tmp))?;
    host.sync(&tmp).map_err(ApplyError::io("fsync", &tmp))?;
    host.rename(&tmp, path)
        .map_err(ApplyError::io("rename", path))?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    host.sync(dir).map_err(ApplyError::io("fsync", dir))
}

impl State {
    /// Read the state file; a missing file is a fresh host.
    pub fn load(host: &dyn Host, path: &Path) -> Result<State, Error> {
        match host.read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::State {
                path: host.real(path),
                message: format!("{e}; restore it from a backup or move it away to start afresh"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Error::State {
                path: host.real(path),
                message: e.to_string(),
            }),
        }
    }

    /// Write atomically, so the file is always parseable.
    pub fn save(&self, host: &dyn Host, path: &Path) -> Result<(), ApplyError> {
        let bytes = serde_json::to_vec_pretty(self).expect("state serialises");
        write_atomic(host, path, &bytes, 0o600)
    }

    /// The quarantine entry of `commit`, if it failed before.
    pub fn quarantined(&self, commit: &str) -> Option<&Quarantined> {
        self.quarantine.iter().find(|q| q.commit == commit)
    }

    /// Put a commit in quarantine (replacing an older entry for it).
    pub fn add_quarantine(&mut self, entry: Quarantined) {
        self.quarantine.retain(|q| q.commit != entry.commit);
        self.quarantine.push(entry);
        let excess = self.quarantine.len().saturating_sub(HISTORY);
        self.quarantine.drain(..excess);
    }

    /// Note the units `actions` (re)started on `release`, and forget the
    /// units they stopped.
    pub fn note_starts(&mut self, actions: &[crate::action::Action], release: &str) {
        use crate::action::Action;
        for action in actions {
            match action {
                // Only services run processes that can hold on to a release.
                Action::Restart { unit, .. }
                | Action::Reload { unit, .. }
                | Action::Start { unit, .. }
                | Action::EnableNow(unit)
                    if unit.ends_with(".service") =>
                {
                    self.started_on.insert(unit.clone(), release.to_string());
                }
                Action::DisableNow(unit) => {
                    self.started_on.remove(unit);
                }
                _ => {}
            }
        }
    }

    /// Append to the history, keeping the last few entries.
    pub fn record(&mut self, event: Event) {
        self.history.push(event);
        let excess = self.history.len().saturating_sub(HISTORY);
        self.history.drain(..excess);
    }
}
