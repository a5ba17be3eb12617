//! Executes a `Plan` through the `Host`, step by step, keeping `state.json`
//! in line with what is on disk.

use std::path::Path;

use crate::desired::Desired;
use crate::error::ApplyError;
use crate::host::{Host, HostCall};
use crate::plan::{Action, Plan};
use crate::release::{self, Layout};
use crate::state::{Deployed, Event, State};

/// What an apply did, for the summary line.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub release: Option<String>,
    pub host_calls: usize,
    pub pruned: Vec<String>,
}

/// Perform `plan` so the host matches `desired`; `release_id` names the new
/// release. `state` is updated and saved as steps complete.
pub fn apply(
    host: &dyn Host,
    layout: &Layout,
    plan: &Plan,
    desired: &Desired,
    release_id: &str,
    state: &mut State,
    keep_releases: usize,
) -> Result<Outcome, ApplyError> {
    let previous = release::current_id(host, layout);
    let mut outcome = Outcome::default();
    let mut call = |c: HostCall| -> Result<(), ApplyError> {
        outcome.host_calls += 1;
        host.run(&c).map_err(ApplyError::from)
    };
    let now = || jiff::Timestamp::now().to_string();
    for action in &plan.actions {
        tracing::debug!("{action}");
        match action {
            Action::BuildRelease => {
                release::build(host, layout, release_id, desired)?;
            }
            Action::DisableNow(unit) => call(HostCall::systemctl(["disable", "--now", unit]))?,
            Action::Switch => {
                release::switch(host, layout, release_id)?;
                state.deployed = Some(Deployed {
                    commit: desired.commit.clone(),
                    release: release_id.to_string(),
                    at: now(),
                });
                state.save(host, &layout.state_file())?;
            }
            Action::Link(path) => {
                link(host, &layout.link_target(host, path), path)?;
                state.owned.insert(path.clone());
            }
            Action::Unlink(path) => {
                host.remove_file(path)
                    .map_err(ApplyError::io("remove", path))?;
                state.owned.remove(path);
            }
            Action::DaemonReload => call(HostCall::systemctl(["daemon-reload"]))?,
            Action::Restart { unit, .. } => call(HostCall::systemctl(["restart", unit]))?,
            Action::EnableNow(unit) => call(HostCall::systemctl(["enable", "--now", unit]))?,
            Action::ReloadNginx => {
                call(HostCall::NginxTest)?;
                call(HostCall::NginxReload)?;
            }
        }
    }
    // Paths that left the desired state but were changed by hand are no longer ours.
    state.owned.retain(|p| desired.files.contains_key(p));
    let current = release::current_id(host, layout);
    outcome.release = current.clone();
    state.record(Event {
        at: now(),
        commit: desired.commit.clone(),
        release: current.clone(),
        result: "deployed".into(),
    });
    state.save(host, &layout.state_file())?;
    let keep: Vec<&str> = [current.as_deref(), previous.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    outcome.pruned = release::prune(host, layout, keep_releases, &keep)?;
    Ok(outcome)
}

/// Point `path` at `target` atomically: a temporary link renamed over it.
fn link(host: &dyn Host, target: &Path, path: &Path) -> Result<(), ApplyError> {
    let dir = path.parent().expect("managed paths are never /");
    host.create_dir_all(dir)
        .map_err(ApplyError::io("create", dir))?;
    let name = path
        .file_name()
        .expect("managed paths have a name")
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.plumb-tmp"));
    if host.exists(&tmp) {
        host.remove_file(&tmp)
            .map_err(ApplyError::io("remove", &tmp))?;
    }
    host.symlink(target, &tmp)
        .map_err(ApplyError::io("symlink", &tmp))?;
    host.rename(&tmp, path)
        .map_err(ApplyError::io("rename", path))
}
