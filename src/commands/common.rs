//! Steps shared by the commands that deploy: render a commit, observe the
//! host, execute a plan and turn its failures into errors.

use std::collections::BTreeMap;
use std::io::ErrorKind;

use crate::apply::{self, Failure, Outcome};
use crate::desired::Desired;
use crate::drift;
use crate::error::Error;
use crate::host::Host;
use crate::plan::{Change, Observed, PathState, Plan};
use crate::release::{self, Layout, ReleaseInfo};
use crate::render::{self, HostFacts};
use crate::repo;
use crate::settings::Settings;
use sha2::Digest;

use crate::source::{Mirror, Remote};
use crate::state::State;
use crate::tree::Tree;

/// Render `commit` of the mirror for this host.
pub fn render_commit(
    settings: &Settings,
    host: &dyn Host,
    mirror: &Mirror,
    commit: &str,
) -> Result<Desired, Error> {
    let tree = mirror.tree(commit, &settings.subpath)?;
    let input = repo::load(&tree, &settings.hostname)?;
    let app_trees = fetch_app_trees(
        settings,
        &input,
        &host.real(&settings.layout.state_dir.join("apps")),
    )?;
    let fingerprint = settings.fingerprint();
    let facts = HostFacts {
        commit,
        fingerprint: &fingerprint,
        state_dir: &settings.layout.state_dir,
        roots: &settings.roots,
        app_trees: &app_trees,
    };
    Ok(render::render(&tree, &input, &facts)?)
}

/// Fetch (when not already there) the pinned git source of every app that
/// has one, into a bare mirror per app under `mirrors`.
pub fn fetch_app_trees(
    settings: &Settings,
    input: &repo::DeployInput,
    mirrors: &std::path::Path,
) -> Result<BTreeMap<String, Tree>, Error> {
    let mut trees = BTreeMap::new();
    for (name, app) in &input.apps {
        let Some(git) = &app.git else { continue };
        // One mirror per app *and* URL: a changed URL never reuses old tags.
        let key = hex::encode(&sha2::Sha256::digest(git.url.as_bytes())[..6]);
        let mirror = Mirror::open(&mirrors.join(format!("{name}-{key}.git")))?;
        let mut remote = Remote {
            url: git.url.clone(),
            ..settings.remote.clone()
        };
        // The host's credentials go only to the deploy repo's own server.
        if remote.host() != settings.remote.host() {
            remote.ssh_key = None;
            remote.token_file = None;
        }
        let commit = mirror.pinned(&remote, &git.rev)?;
        trees.insert(name.clone(), mirror.tree(&commit, "")?);
    }
    Ok(trees)
}

/// Look at everything the planner depends on.
pub fn observe(host: &dyn Host, layout: &Layout, state: &State, desired: &Desired) -> Observed {
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
    let tampered = current
        .as_ref()
        .map(|info| drift::tampered(host, layout, info))
        .unwrap_or_default();
    let inactive = current
        .as_ref()
        .map(|info| host.inactive(&info.units))
        .unwrap_or_default();
    Observed {
        current,
        owned: state.owned.clone(),
        paths,
        link_targets,
        tampered,
        inactive: inactive.into_iter().collect(),
        release_exists: false,
        missing_users: desired
            .users
            .iter()
            .filter(|u| !host.user_exists(u))
            .cloned()
            .collect(),
    }
}

/// Record an empty plan's release and owned paths if state.json differs;
/// returns whether it did.
pub fn adopt(
    host: &dyn Host,
    layout: &Layout,
    plan: &Plan,
    state: &mut State,
) -> Result<bool, Error> {
    let Some(release) = plan.release.clone() else {
        return Ok(false);
    };
    let same = state.deployed.as_ref().is_some_and(|d| {
        d.commit == plan.commit && d.release == release && d.fingerprint == plan.fingerprint
    }) && state.owned == plan.owned_after;
    if same {
        return Ok(false);
    }
    state.deployed = Some(crate::state::Deployed {
        commit: plan.commit.clone(),
        release,
        at: jiff::Timestamp::now().to_string(),
        fingerprint: plan.fingerprint.clone(),
    });
    state.owned = plan.owned_after.clone();
    state.save(host, &layout.state_file())?;
    Ok(true)
}

/// Execute `plan`; a failure becomes `Refused` or `RolledBack`.
pub fn execute(
    settings: &Settings,
    host: &dyn Host,
    plan: &Plan,
    desired: &Desired,
    state: &mut State,
) -> Result<Outcome, Error> {
    let layout = &settings.layout;
    match apply::apply(
        host,
        layout,
        plan,
        Some(desired),
        state,
        settings.keep_releases,
    )? {
        Ok(outcome) => {
            state.quarantine.retain(|q| q.commit != plan.commit);
            state.save(host, &layout.state_file())?;
            Ok(outcome)
        }
        Err(Failure::Aborted(cause)) => Err(Error::Refused {
            commit: short(&plan.commit).to_string(),
            cause: Box::new(cause),
        }),
        Err(Failure::RolledBack(cause)) => Err(Error::RolledBack {
            commit: short(&plan.commit).to_string(),
            previous: plan.previous.clone().unwrap_or_else(|| "(none)".into()),
            cause: Box::new(cause),
        }),
    }
}

pub use crate::release::short;

/// The plan as the operator reads it: file changes, then the steps.
pub fn print_plan(plan: &Plan) {
    for (path, change) in &plan.changes {
        let mark = match change {
            Change::Created => "+ created",
            Change::Changed => "~ changed",
            Change::Removed => "- removed",
        };
        println!("  {mark} {}", path.display());
    }
    for action in &plan.actions {
        use crate::action::Action::*;
        match action {
            Link(path) if !plan.changes.iter().any(|(p, _)| p == path) => {
                println!("  relink {} (missing or changed by hand)", path.display());
            }
            Link(_) | Unlink(_) | Pin { .. } | Commit => {}
            _ => println!("  {action}"),
        }
    }
}

/// The last line of a deploy.
pub fn summary(plan: &Plan, outcome: &Outcome) -> String {
    let count = |kind| plan.changes.iter().filter(|(_, c)| *c == kind).count();
    let mut line = format!(
        "deployed {} as release {}: {} created, {} changed, {} removed, {} host command(s)",
        short(&plan.commit),
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
