//! `plumb reconcile --once`: fetch, render, plan, apply.

use std::collections::BTreeMap;
use std::io::ErrorKind;

use crate::apply;
use crate::desired::Desired;
use crate::error::{Error, exit};
use crate::host::{CallMode, Host};
use crate::lock;
use crate::plan::{self, Change, Observed, PathState, Plan};
use crate::release::{self, Layout, ReleaseInfo};
use crate::render::{self, HostFacts};
use crate::repo;
use crate::settings::Settings;
use crate::source::Mirror;
use crate::state::State;

/// How `reconcile` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub dry_run: bool,
    pub force: bool,
    pub wait: bool,
}

/// Bring the host to the commit the branch points at.
pub fn run(settings: &Settings, host: &dyn Host, options: &Options) -> Result<u8, Error> {
    let layout = &settings.layout;
    let _lock = lock::acquire(&host.real(&settings.lock_path), options.wait)?;
    host.create_dir_all(&layout.state_dir)
        .map_err(crate::error::ApplyError::io("create", &layout.state_dir))?;
    let mirror = Mirror::open(&host.real(&layout.mirror()))?;
    let commit = mirror.fetch(&settings.remote, &settings.branch)?;
    let short = &commit[..12];
    let mut state = State::load(host, &layout.state_file())?;
    if !options.force && up_to_date(host, layout, &state, &commit) {
        println!("up to date at {short}");
        return Ok(exit::OK);
    }

    let tree = mirror.tree(&commit, &settings.subpath)?;
    let input = repo::load(&tree, &settings.hostname)?;
    let facts = HostFacts {
        commit: &commit,
        state_dir: &layout.state_dir,
        roots: &settings.roots,
    };
    let desired = render::render(&tree, &input, &facts)?;
    let observed = observe(host, layout, &state, &desired);
    let plan = plan::plan(&desired, &observed)?;
    if plan.is_empty() {
        println!("up to date at {short} (checked in full)");
        return Ok(exit::OK);
    }
    println!(
        "{} {short} ({}) for host {}",
        if options.dry_run {
            "plan for"
        } else {
            "deploying"
        },
        settings.branch,
        settings.hostname
    );
    print_plan(&plan);
    if options.dry_run {
        println!("dry run: nothing was changed");
        return Ok(exit::OK);
    }
    let id = release::new_id(host, layout, &commit);
    let outcome = apply::apply(
        host,
        layout,
        &plan,
        &desired,
        &id,
        &mut state,
        settings.keep_releases,
    )?;
    if let (CallMode::Record(log), true) = (&settings.call_mode, outcome.host_calls > 0) {
        println!(
            "  (sandbox root: host commands recorded in {}, not run)",
            host.real(log).display()
        );
    }
    println!("{}", summary(&plan, &outcome, short));
    Ok(exit::OK)
}

/// The cheap check: same commit, `current` as recorded, every owned link in place.
fn up_to_date(host: &dyn Host, layout: &Layout, state: &State, commit: &str) -> bool {
    let Some(deployed) = &state.deployed else {
        return false;
    };
    deployed.commit == commit
        && release::current_id(host, layout).as_deref() == Some(deployed.release.as_str())
        && state
            .owned
            .iter()
            .all(|path| host.read_link(path).ok() == Some(layout.link_target(host, path)))
}

/// Look at the host paths the plan depends on.
fn observe(host: &dyn Host, layout: &Layout, state: &State, desired: &Desired) -> Observed {
    let current =
        release::current_id(host, layout).and_then(|id| ReleaseInfo::load(host, layout, &id));
    let mut paths = BTreeMap::new();
    let mut link_targets = BTreeMap::new();
    for path in desired.files.keys().chain(state.owned.iter()) {
        let seen = match host.read_link(path) {
            Ok(target) => PathState::Link(target),
            Err(e) if e.kind() == ErrorKind::NotFound => PathState::Missing,
            Err(_) => PathState::Other,
        };
        paths.insert(path.clone(), seen);
        link_targets.insert(path.clone(), layout.link_target(host, path));
    }
    Observed {
        current,
        owned: state.owned.clone(),
        paths,
        link_targets,
    }
}

fn print_plan(plan: &Plan) {
    for (path, change) in &plan.changes {
        let mark = match change {
            Change::Created => "+ created",
            Change::Changed => "~ changed",
            Change::Removed => "- removed",
        };
        println!("  {mark} {}", path.display());
    }
    for action in &plan.actions {
        if !matches!(action, plan::Action::Link(_) | plan::Action::Unlink(_)) {
            println!("  {action}");
        }
    }
}

fn summary(plan: &Plan, outcome: &apply::Outcome, short: &str) -> String {
    let count = |kind| plan.changes.iter().filter(|(_, c)| *c == kind).count();
    let mut line = format!(
        "deployed {short} as release {}: {} created, {} changed, {} removed, {} host command(s)",
        outcome.release.as_deref().unwrap_or("?"),
        count(Change::Created),
        count(Change::Changed),
        count(Change::Removed),
        outcome.host_calls,
    );
    if !outcome.pruned.is_empty() {
        line.push_str(&format!(", pruned {} old release(s)", outcome.pruned.len()));
    }
    line
}
