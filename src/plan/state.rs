//! `state.json` as data: what is deployed, which host paths plumb owns, the
//! quarantine and the history, and the changes a plan makes to it. Pure:
//! `apply::record` is the one place that reads and writes the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::action::Action;
use super::owned::Owned;

/// How many history and quarantine entries are kept.
const HISTORY: usize = 50;

/// The layout of `state.json` this plumb writes. A file with a higher
/// number was written by a newer plumb and is not read (docs/operations.md,
/// "Upgrading plumb").
pub const FORMAT: u32 = 1;

/// The persistent state of plumb on one host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// `FORMAT` when written (0: before the field existed; read the same).
    #[serde(default)]
    pub format: u32,
    /// Since when the host is detached (`plumb detach`): plumb changes
    /// nothing until `plumb attach`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detached: Option<String>,
    /// The release `current` points at, and the commit it was deployed for.
    pub deployed: Option<Deployed>,
    /// Host paths that are plumb's links into `current/files`.
    #[serde(default)]
    pub owned: Owned,
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
    pub started_on: BTreeMap<String, String>,
}

/// A commit that failed to deploy, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    pub commit: String,
    pub reason: String,
    pub at: String,
}

/// The deployed commit and release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployed {
    pub commit: String,
    pub release: String,
    pub at: String,
    /// What else the rendering depended on (plumb version, host name,
    /// sub-path, roots): when it differs, the same commit is rendered again.
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
    /// Why the run did not deploy (refusals, failures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A change to the state, made by a step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateChange {
    /// The release now current, for this commit (none: nothing deployed).
    Deployed(Option<DeployedRef>),
    /// The host paths plumb owns from now on.
    Owned(BTreeSet<PathBuf>),
    /// Keep this commit from being deployed again without `--force`.
    Quarantine { commit: String, reason: String },
}

/// `Deployed` without its time, which is taken when the step runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployedRef {
    pub commit: String,
    pub release: String,
    pub fingerprint: String,
}

impl State {
    /// The quarantine entry of `commit`, if it failed before.
    pub fn quarantined(&self, commit: &str) -> Option<&Quarantined> {
        self.quarantine.iter().find(|q| q.commit == commit)
    }

    /// Make `change`, at time `now`.
    pub fn change(&mut self, change: &StateChange, now: &str) {
        match change {
            StateChange::Deployed(target) => {
                self.deployed = target.as_ref().map(|d| Deployed {
                    commit: d.commit.clone(),
                    release: d.release.clone(),
                    at: now.to_string(),
                    fingerprint: d.fingerprint.clone(),
                });
            }
            StateChange::Owned(paths) => self.owned = paths.clone().into(),
            StateChange::Quarantine { commit, reason } => {
                self.quarantine.retain(|q| q.commit != *commit);
                self.quarantine.push(Quarantined {
                    commit: commit.clone(),
                    reason: reason.clone(),
                    at: now.to_string(),
                });
                let excess = self.quarantine.len().saturating_sub(HISTORY);
                self.quarantine.drain(..excess);
            }
        }
    }

    /// Note the units `actions` (re)started on `release`, and forget the
    /// units they stopped.
    pub fn note_starts(&mut self, actions: &[Action], release: &str) {
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
