//! `plumb rollback [RELEASE]`: switch back to an earlier release with the same
//! validation, restarts and health checks as a deploy, then quarantine the
//! commit it leaves so the next scheduled run does not redeploy it.

use crate::error::{ConfigError, Error, exit};
use crate::host::Host;
use crate::lock;
use crate::plan;
use crate::release::{self, ReleaseInfo};
use crate::settings::Settings;
use crate::state::{Quarantined, State};

use super::common::{self, short};

/// Switch to `target` (default: the release before the current one).
pub fn run(
    settings: &Settings,
    host: &dyn Host,
    target: Option<&str>,
    wait: bool,
) -> Result<u8, Error> {
    let layout = &settings.layout;
    let _lock = lock::acquire(&host.real(&settings.lock_path), wait)?;
    let mut state = State::load(host, &layout.state_file())?;
    if let Some(message) = crate::journal::resume(host, layout, &mut state, settings.keep_releases)?
    {
        println!("{message}");
    }
    let current = release::current_id(host, layout).ok_or_else(|| {
        ConfigError::Invalid(
            "nothing is deployed yet: there is no release to roll back from".into(),
        )
    })?;
    let target = match target {
        Some(id) => id.to_string(),
        None => previous(host, layout, &state, &current).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "release {current} is the only release; there is nothing to roll back to"
            ))
        })?,
    };
    if target == current {
        println!("release {current} is already current");
        return Ok(exit::OK);
    }
    let info = ReleaseInfo::load(host, layout, &target).ok_or_else(|| {
        ConfigError::Invalid(format!(
            "release {target} not found in {}; see `plumb releases`",
            host.real(&layout.releases()).display()
        ))
    })?;
    let desired = release::desired_of(host, layout, &info).map_err(
        crate::error::ApplyError::io("read", layout.release(&target)),
    )?;
    let mut observed = common::observe(host, layout, &state, &desired);
    observed.release_exists = true;
    let mut plan = plan::plan(&desired, &observed, &target)?;
    plan.trigger = "rollback".into();
    let leaving = state.deployed.as_ref().map(|d| d.commit.clone());
    println!(
        "rolling back from release {current} to {target} ({})",
        short(&info.commit)
    );
    common::print_plan(&plan);
    let outcome = common::execute(settings, host, &plan, &desired, &mut state)?;
    if let Some(commit) = leaving.filter(|c| *c != info.commit) {
        state.add_quarantine(Quarantined {
            commit: commit.clone(),
            reason: format!("rolled back by hand from release {current} to {target}"),
            at: jiff::Timestamp::now().to_string(),
        });
        state.save(host, &layout.state_file())?;
        println!(
            "  quarantined {}: the next run stays on {target} until a new commit or --force",
            short(&commit)
        );
    }
    println!("{}", common::summary(&plan, &outcome));
    Ok(exit::OK)
}

/// The release deployed before `current`: the newest one older than it.
fn previous(
    host: &dyn Host,
    layout: &crate::release::Layout,
    state: &State,
    current: &str,
) -> Option<String> {
    let from_history = state
        .history
        .iter()
        .rev()
        .filter(|e| e.result == "deployed")
        .filter_map(|e| e.release.clone())
        .find(|id| {
            id != current
                && ReleaseInfo::load(host, layout, id)
                    .is_some_and(|info| state.quarantined(&info.commit).is_none())
        });
    from_history.or_else(|| {
        let mut ids = host.list_dir(&layout.releases()).ok()?;
        ids.sort();
        ids.into_iter()
            .rfind(|id| !id.starts_with('.') && id.as_str() < current)
    })
}
