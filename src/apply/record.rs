//! The one place that reads and writes `state.json`: loaded once per run,
//! changed by plan steps and run outcomes, written atomically (temporary
//! file, fsync, rename, directory fsync), so it is always parseable.

use std::path::{Path, PathBuf};

use crate::error::{ApplyError, Error};
use crate::host::Host;
use crate::plan::state::{Event, State, StateChange};

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
    ];
    for (dir, mode) in dirs {
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
        Ok(StateStore {
            path: path.to_path_buf(),
            state,
        })
    }

    /// Write the state durably.
    pub fn save(&self, host: &dyn Host) -> Result<(), ApplyError> {
        let bytes = serde_json::to_vec_pretty(&self.state).expect("state serialises");
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
