//! `plumb rollback [RELEASE]`: switch back to an earlier release with the same
//! validation, restarts and health checks as a deploy, and quarantine the
//! commit it leaves — as a step of the plan, so a rollback killed half-way
//! is finished with its quarantine by the next run.

use crate::apply::journal::{self, Resume};
use crate::apply::observe::{self, Depth};
use crate::apply::{Executor, StateStore, release};
use crate::error::{ConfigError, Error, exit};
use crate::host::{Host, lock};
use crate::plan::state::{DeployedRef, StateChange};
use crate::plan::{self, Action, Target, short};
use crate::spec::layout::Layout;
use crate::spec::settings::Settings;
use crate::ui;

use super::deploy;

/// Switch to `target` (default: the release before the current one).
pub fn run(
    settings: &Settings,
    host: &dyn Host,
    target: Option<&str>,
    wait: bool,
) -> Result<u8, Error> {
    let layout = &settings.layout;
    let _lock = lock::acquire(&host.files().real(&settings.lock_path), wait)?;
    let mut store = StateStore::load(host, &layout.state_file())?;
    super::reconcile::refuse_detached(&store)?;
    let exec = Executor {
        host,
        layout,
        keep_releases: settings.keep_releases,
    };
    if let Some(unfinished) = journal::read(host, layout)? {
        // A rollback supersedes whatever was under way.
        ui::line(journal::resume(
            &exec,
            unfinished,
            Resume::Supersede,
            &mut store,
        )?);
    }
    let current = release::current_id(host, layout).ok_or_else(|| {
        ConfigError::Invalid(
            "nothing is deployed yet: there is no release to roll back from".into(),
        )
    })?;
    let target = match target {
        Some(id) => checked_name(host, layout, id)?,
        None => {
            release::rollback_target(host, layout, &store.state, &current).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "release {current} is the only release; there is nothing to roll back to"
                ))
            })?
        }
    };
    if target == current {
        ui::line(format_args!("release {current} is already current"));
        return Ok(exit::OK);
    }
    let info = release::load(host, layout, &target).ok_or_else(|| {
        ConfigError::Invalid(format!(
            "release {target} has no readable release.json; see `plumb releases`"
        ))
    })?;
    let observed = observe::observe(host, layout, &store.state, &info, Depth::Quick);
    let deployed = DeployedRef {
        commit: info.commit.clone(),
        release: info.id.clone(),
        fingerprint: info.fingerprint.clone(),
    };
    let leaving = store.state.deployed.as_ref().map(|d| d.commit.clone());
    let commit = info.commit.clone();
    let mut plan = plan::plan(&Target { info, new: false }, &observed, &deployed)?;
    plan.trigger = "rollback".into();
    if let Some(left) = leaving.as_ref().filter(|c| **c != commit) {
        plan.actions.push(Action::Record(StateChange::Quarantine {
            commit: left.clone(),
            reason: format!("rolled back by hand from release {current} to {target}"),
        }));
    }
    ui::line(format_args!(
        "rolling back from release {current} to {target} ({})",
        short(&commit)
    ));
    deploy::print_changes(&plan);
    let outcome = deploy::execute(settings, host, &plan, &mut store)?;
    if let Some(left) = leaving.filter(|c| *c != commit) {
        ui::line(format_args!(
            "  quarantined {}: the next run stays on {target} until a new commit or --force",
            short(&left)
        ));
    }
    ui::line(deploy::summary(&plan, &outcome));
    // The sites' targets go back too (to the version they kept, if any).
    super::reconcile::publish(settings, host, &Default::default())
}

/// A release name as given on the command line: a plain name of a release
/// directory that exists (never a path).
fn checked_name(host: &dyn Host, layout: &Layout, id: &str) -> Result<String, ConfigError> {
    let plain = !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    let exists = plain
        && release::list(host, layout)
            .unwrap_or_default()
            .iter()
            .any(|r| r == id);
    if exists {
        Ok(id.to_string())
    } else {
        Err(ConfigError::Invalid(format!(
            "{id:?} is not a release; `plumb releases` lists them"
        )))
    }
}
