//! The one place that reads and writes `state.json`: loaded once per run,
//! changed by plan steps and run outcomes, written atomically (temporary
//! file, fsync, rename, directory fsync), so it is always parseable.

use std::path::{Path, PathBuf};

use crate::error::{ApplyError, Error};
use crate::host::Host;
use crate::plan::state::{Event, FORMAT, State, StateChange};
use serde::{Deserialize, Serialize};

/// `state.json` of one host, held in memory for a run.
#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
    pub state: State,
}

/// plumb's own directories, each with the mode it needs: the state
/// directory traversable but not listable (0711: an app's user and nginx
/// reach their release through it), and what is plumb's alone — the git
/// mirrors and the snapshots of shared data — private (0700).
pub fn prepare_dirs(
    host: &dyn Host,
    layout: &crate::spec::layout::Layout,
) -> Result<(), ApplyError> {
    let files = host.files();
    let dirs = [
        (layout.state_dir.clone(), 0o711),
        (layout.mirror(), 0o700),
        (layout.app_mirrors(), 0o700),
        (layout.state_dir.join("backups"), 0o700),
        // ACME challenges, served by nginx (docs/tls.md).
        (layout.acme(), 0o755),
    ];
    for (dir, mode) in dirs {
        // Usually there already, as it should be: one `lstat`, no write (a
        // `chmod` to the same mode still changes the inode's ctime).
        if files
            .stat(&dir)
            .is_ok_and(|s| s.kind == crate::host::Kind::Dir && s.mode == mode)
        {
            continue;
        }
        files
            .create_dir_all(&dir)
            .and_then(|_| files.set_mode(&dir, mode))
            .map_err(ApplyError::io("create", &dir))?;
    }
    Ok(())
}

/// The current time as plumb records it (RFC 3339, UTC).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl StateStore {
    /// Read the state file at `path`; a missing file is a fresh host.
    pub fn load(host: &dyn Host, path: &Path) -> Result<StateStore, Error> {
        let files = host.files();
        let state = match files.read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::State {
                path: files.real(path),
                message: format!("{e}; restore it from a backup or move it away to start afresh"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                return Err(Error::State {
                    path: files.real(path),
                    message: e.to_string(),
                });
            }
        };
        if state.format > FORMAT {
            return Err(Error::State {
                path: files.real(path),
                message: format!(
                    "it was written by a newer plumb (state format {}; this plumb reads up to {FORMAT}): install that version again, or a newer one",
                    state.format
                ),
            });
        }
        Ok(StateStore {
            path: path.to_path_buf(),
            state,
        })
    }

    /// Write the state durably.
    pub fn save(&self, host: &dyn Host) -> Result<(), ApplyError> {
        let state = State {
            format: FORMAT,
            ..self.state.clone()
        };
        let bytes = serde_json::to_vec_pretty(&state).expect("state serialises");
        host.files()
            .write_atomic(&self.path, &bytes, 0o600)
            .map_err(ApplyError::io("write", &self.path))
    }

    /// Make a plan's state change and save it.
    pub fn change(&mut self, host: &dyn Host, change: &StateChange) -> Result<(), ApplyError> {
        self.state.change(change, &now());
        self.save(host)
    }

    /// Add a line of history (saved with the next `save`).
    pub fn event(&mut self, commit: &str, release: Option<String>, result: &str, trigger: &str) {
        self.state.record(Event {
            at: now(),
            commit: commit.to_string(),
            release,
            result: result.to_string(),
            trigger: trigger.to_string(),
            reason: None,
        });
    }

    /// Add a line of history saying why the run did not deploy.
    pub fn event_with(
        &mut self,
        commit: &str,
        release: Option<String>,
        result: &str,
        trigger: &str,
        reason: &str,
    ) {
        self.event(commit, release, result, trigger);
        if let Some(last) = self.state.history.last_mut() {
            last.reason = Some(reason.to_string());
        }
    }
}

/// The outcome of the last reconcile, whatever it was: `state.json` keeps
/// the history of changes and failures, this says what the latest run did
/// (an up-to-date run, a held quarantined head, a fetch that failed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    pub at: String,
    pub trigger: String,
    pub exit_code: u8,
    /// `crate::error::outcome` of the exit code.
    pub outcome: String,
    /// The error, when the run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Longest error message kept in `last-run.json`.
const MESSAGE_LIMIT: usize = 4096;

impl LastRun {
    pub fn new(trigger: &str, exit_code: u8, message: Option<String>) -> LastRun {
        LastRun {
            at: now(),
            trigger: trigger.to_string(),
            exit_code,
            outcome: crate::error::outcome(exit_code).to_string(),
            message: message.map(|mut m| {
                if m.len() > MESSAGE_LIMIT {
                    let mut end = MESSAGE_LIMIT;
                    while !m.is_char_boundary(end) {
                        end -= 1;
                    }
                    m.truncate(end);
                }
                m
            }),
        }
    }

    /// Record it: renamed into place, so readers see a whole file; not
    /// fsynced (it is informational, and written by every no-op run).
    pub fn save(&self, host: &dyn Host, path: &Path) -> Result<(), ApplyError> {
        let bytes = serde_json::to_vec_pretty(self).expect("last run serialises");
        let files = host.files();
        if let Some(dir) = path.parent() {
            files
                .create_dir_all(dir)
                .map_err(ApplyError::io("create", dir))?;
        }
        files
            .replace(path, &bytes, 0o600)
            .map_err(ApplyError::io("write", path))
    }

    /// The recorded last run, if any (an unreadable file is no record).
    pub fn load(host: &dyn Host, path: &Path) -> Option<LastRun> {
        let bytes = host.files().read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}
