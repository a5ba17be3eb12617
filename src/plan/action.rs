//! The steps a plan is made of; each prints as one line for the operator.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::state::StateChange;
use crate::render::desired::Hook;
use crate::spec::health::HealthCheck;

/// One step, in execution order. Every step is idempotent — hooks are
/// required to be (migrations are) — so an interrupted plan can be run
/// again from its first step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Archive an app's shared data before its pre-switch hooks.
    Snapshot {
        app: String,
        release: String,
    },
    /// Run a hook in the app's directory of a release.
    Hook {
        hook: Hook,
        release: String,
    },
    /// Point an owned link straight at a release, so a unit file being
    /// removed stays readable until its unit is stopped.
    Pin {
        path: PathBuf,
        release: String,
    },
    /// Point `current` at a release (none: remove `current`).
    Switch(Option<String>),
    /// Create (or repair) the owned link at a path, through `current`.
    Link(PathBuf),
    /// Remove an owned link.
    Unlink(PathBuf),
    /// `nginx -t` on the full configuration as switched.
    ValidateNginx,
    /// `systemd-analyze verify` on these unit files.
    VerifyUnits(Vec<PathBuf>),
    /// Validation passed: from here on a failure rolls back.
    Commit,
    /// Delete a release that never became live.
    Discard(String),
    DisableNow(String),
    DaemonReload,
    /// Clear a unit's failed state and start limit, then restart it.
    Restart {
        unit: String,
        reason: String,
    },
    Reload {
        unit: String,
        reason: String,
    },
    /// Clear a unit's failed state, then enable and start it.
    EnableNow(String),
    /// Clear a unit's failed state, then start it.
    Start {
        unit: String,
        reason: String,
    },
    ReloadNginx,
    Check(HealthCheck),
    /// Change `state.json`.
    Record(StateChange),
}

impl Action {
    /// Whether the step is only bookkeeping (nothing an operator would
    /// call a change to the host).
    pub fn is_bookkeeping(&self) -> bool {
        matches!(self, Action::Commit | Action::Record(_))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Action::Snapshot { app, .. } => write!(f, "back up the shared data of {app}"),
            Action::Hook { hook, .. } => {
                let when = if hook.pre_switch {
                    "pre-switch"
                } else {
                    "post-switch"
                };
                write!(f, "{when} hook of {}: {}", hook.app, hook.command)
            }
            Action::Pin { path, release } => {
                write!(f, "pin {} to release {release}", path.display())
            }
            Action::Switch(Some(id)) => write!(f, "switch current to {id}"),
            Action::Switch(None) => write!(f, "remove current"),
            Action::Link(path) => write!(f, "link {}", path.display()),
            Action::Unlink(path) => write!(f, "remove {}", path.display()),
            Action::ValidateNginx => write!(f, "check nginx configuration (nginx -t)"),
            Action::VerifyUnits(paths) => write!(
                f,
                "verify {} unit file(s) (systemd-analyze verify)",
                paths.len()
            ),
            Action::Commit => write!(f, "validation passed"),
            Action::Discard(id) => write!(f, "delete release {id}"),
            Action::DisableNow(unit) => write!(f, "stop and disable {unit}"),
            Action::DaemonReload => write!(f, "systemctl daemon-reload"),
            Action::Restart { unit, reason } => write!(f, "restart {unit} ({reason})"),
            Action::Reload { unit, reason } => write!(f, "reload {unit} ({reason})"),
            Action::EnableNow(unit) => write!(f, "enable and start {unit}"),
            Action::Start { unit, reason } => write!(f, "start {unit} ({reason})"),
            Action::ReloadNginx => write!(f, "reload nginx (config changed)"),
            Action::Check(check) => write!(f, "health check {}: {}", check.app, check.probe),
            Action::Record(StateChange::Deployed(Some(d))) => {
                write!(f, "record release {} as deployed", d.release)
            }
            Action::Record(StateChange::Deployed(None)) => write!(f, "record nothing deployed"),
            Action::Record(StateChange::Owned(paths)) => {
                write!(f, "record {} owned path(s)", paths.len())
            }
            Action::Record(StateChange::Quarantine { commit, .. }) => {
                write!(f, "quarantine {}", crate::plan::short(commit))
            }
        }
    }
}
