//! The pipeline the deploying commands share: render a commit, prepare its
//! release (build it when it differs from the current one), plan, execute,
//! and turn failures into errors that say whose fault they are.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use sha2::Digest;

use crate::apply::check::Seen;
use crate::apply::observe::{self, Depth};
use crate::apply::secrets::{self, Keys};
use crate::apply::{Executor, Failure, Outcome, StateStore, release};
use crate::error::{ApplyError, Blame, Error};
use crate::host::Host;
use crate::plan::release::{ReleaseInfo, planned};
use crate::plan::state::{DeployedRef, StateChange};
use crate::plan::{self, Change, Observed, Plan, Target, short};
use crate::render::desired::Desired;
use crate::render::{self, HostFacts};
use crate::source::Mirror;
use crate::spec::deploy::{self, DeployInput};
use crate::spec::remote::Remote;
use crate::spec::settings::Settings;
use crate::spec::tree::Tree;
use crate::ui;

/// Render `commit` of the mirror for this host.
pub fn render_commit(
    settings: &Settings,
    host: &dyn Host,
    mirror: &Mirror,
    commit: &str,
) -> Result<Desired, Error> {
    let tree = mirror.tree(commit, &settings.subpath, &settings.limits)?;
    let input = deploy::load(&tree, &settings.hostname)?;
    let mirrors = host.files().real(&settings.layout.app_mirrors());
    let app_trees = fetch_app_trees(settings, &input, &mirrors)?;
    let fingerprint = settings.fingerprint();
    let missing = missing_certificates(host, &input);
    let facts = HostFacts {
        commit,
        fingerprint: &fingerprint,
        state_dir: &settings.layout.state_dir,
        roots: &settings.roots,
        app_trees: &app_trees,
        limits: &settings.limits,
        missing: &missing,
    };
    let desired = render::render(&tree, &input, &facts)?;
    for t in &desired.tls_pending {
        ui::warn(&format!(
            "{}: no certificate at {} yet: the site is served over HTTP (and answers ACME challenges) until it exists, then TLS is enabled by the next run (docs/tls.md)",
            t.app, t.certificate
        ));
    }
    Ok(desired)
}

/// The TLS certificate and key files the sites name that this host does
/// not have (yet).
fn missing_certificates(host: &dyn Host, input: &DeployInput) -> BTreeSet<PathBuf> {
    let files = host.files();
    input
        .apps
        .values()
        .filter_map(|app| app.site.as_ref()?.tls.as_ref())
        .flat_map(|tls| [&tls.certificate, &tls.key])
        .map(PathBuf::from)
        .filter(|path| files.stat(path).is_err())
        .collect()
}

/// Fetch (when not already there) the pinned git source of every app that
/// has one, into a bare mirror per app under `mirrors` (a real path).
pub fn fetch_app_trees(
    settings: &Settings,
    input: &DeployInput,
    mirrors: &std::path::Path,
) -> Result<BTreeMap<String, Tree>, Error> {
    let mut trees = BTreeMap::new();
    let deploy_repo = settings.remote()?;
    for (name, app) in &input.apps {
        let Some(git) = &app.git else { continue };
        // One mirror per app *and* URL: a changed URL never reuses old tags.
        let key = hex::encode(&sha2::Sha256::digest(git.url.as_bytes())[..6]);
        let mirror = Mirror::open(&mirrors.join(format!("{name}-{key}.git")))?;
        let mut remote = Remote {
            url: git.url.clone(),
            ..deploy_repo.clone()
        };
        // The host's credentials go only to the deploy repo's own server.
        if remote.host() != deploy_repo.host() {
            remote.ssh_key = None;
            remote.token_file = None;
        }
        let commit = mirror.pinned(&remote, &git.rev)?;
        trees.insert(name.clone(), mirror.tree(&commit, "", &settings.limits)?);
    }
    Ok(trees)
}

/// A plan, and what recording its success needs.
pub struct Prepared {
    pub plan: Plan,
    /// The host as seen before the plan, and the release it builds.
    seen: Option<(Seen, ReleaseInfo)>,
}

impl Prepared {
    /// After the plan ran to the end: write the up-to-date check's index
    /// for the new release (`apply::check::Seen`).
    pub fn succeeded(self, settings: &Settings, host: &dyn Host, store: &StateStore) {
        if let Some((seen, info)) = self.seen {
            seen.record(host, &settings.layout, &store.state, &info);
        }
    }
}

/// Observe the host, build the release `desired` needs unless the current
/// one holds exactly it (never with `dry_run`), and plan the switch.
pub fn prepare(
    settings: &Settings,
    host: &dyn Host,
    store: &mut StateStore,
    desired: &Desired,
    trigger: &str,
    dry_run: bool,
) -> Result<Prepared, Error> {
    let layout = &settings.layout;
    let planned = planned(desired, "<new release>");
    // Stamped before `observe` reads a link: what changes after (by hand
    // or by this deploy) then keeps the deploy from vouching for it.
    let seen = (!dry_run)
        .then(|| Seen::before(host, layout, &store.state))
        .flatten();
    let observed = observe::observe(host, layout, &store.state, &planned, Depth::Quick);
    let deployed = |release: &str| DeployedRef {
        commit: desired.commit.clone(),
        release: release.to_string(),
        fingerprint: desired.fingerprint.clone(),
    };
    let target = match &observed.current {
        Some(current) if !plan::needs_release(&planned, &observed) => {
            // After a reboot, tmpfs lost the release's secrets: put them back.
            if !dry_run && !secrets::present(host, &current.id, &current.secrets) {
                let keys = keys(settings, desired)
                    .map_err(|cause| refused(host, store, &desired.commit, cause, trigger))?;
                secrets::materialize(host, &current.id, &desired.secrets, &keys)
                    .map_err(|cause| refused(host, store, &desired.commit, cause, trigger))?;
            }
            Target {
                info: current.clone(),
                new: false,
            }
        }
        _ if dry_run => Target {
            info: planned,
            new: true,
        },
        _ => {
            // A path held by something plumb does not own refuses the commit
            // before anything is built or created.
            plan::check(&planned, &observed)?;
            Target {
                info: build(settings, host, store, desired, &planned, &observed, trigger)?,
                new: true,
            }
        }
    };
    let mut plan = plan::plan(&target, &observed, &deployed(&target.info.id))?;
    plan.trigger = trigger.to_string();
    Ok(Prepared {
        plan,
        seen: seen.filter(|_| target.new).map(|seen| (seen, target.info)),
    })
}

/// Create the users the repo asks for, then write the release. A failure is
/// recorded (and, when it is the commit's, quarantines it).
fn build(
    settings: &Settings,
    host: &dyn Host,
    store: &mut StateStore,
    desired: &Desired,
    planned: &ReleaseInfo,
    observed: &Observed,
    trigger: &str,
) -> Result<ReleaseInfo, Error> {
    let layout = &settings.layout;
    let id = release::new_id(host, layout, &desired.commit);
    ui::line(format_args!("building release {id}"));
    let result = (|| {
        for user in &desired.users {
            if host.users().lookup(user).is_none() {
                ui::step(format_args!("create system user {user}"));
                host.users()
                    .create(user)
                    .map_err(|source| ApplyError::Step {
                        step: format!("create system user {user}"),
                        blame: Blame::Host,
                        source: Box::new(source),
                    })?;
            }
        }
        let keys = keys(settings, desired)?;
        let source = release::Source {
            desired,
            planned,
            previous: observed.current.as_ref(),
            tampered: &observed.tampered,
            restat: &observed.restat,
            keys: &keys,
            recycle: release::recyclable(
                host,
                layout,
                settings.keep_releases,
                &store.state,
                observed.current.as_ref(),
            ),
        };
        release::build(host, layout, &id, &source)
    })();
    result.map_err(|cause| refused(host, store, &desired.commit, cause, trigger))
}

/// The host's age identity, when the commit has secrets. A sandbox without
/// one decrypts nothing and writes placeholders (saying so); a real host
/// without one cannot deploy secrets: the host's problem, not the commit's.
fn keys(settings: &Settings, desired: &Desired) -> Result<Keys, ApplyError> {
    if desired.secrets.is_empty() {
        return Ok(Keys::Placeholders);
    }
    let path = &settings.trust.age_identity;
    let fix = format!(
        "create the host's identity with `age-keygen -o {p} && chmod 600 {p}` and encrypt the repo's \
         secrets to its public key (`age-keygen -y {p}`), or set `age_identity:` in the host config",
        p = path.display()
    );
    if !path.exists() {
        if settings.record {
            ui::warn(&format!(
                "no age identity at {}: secrets are placeholders in this sandbox",
                path.display()
            ));
            return Ok(Keys::Placeholders);
        }
        return Err(ApplyError::Host {
            problem: format!(
                "the commit has secrets, and there is no age identity at {}",
                path.display()
            ),
            fix,
        });
    }
    let problem = |message: String| ApplyError::Host {
        problem: message,
        fix: fix.clone(),
    };
    crate::spec::settings::check_trusted_file(path).map_err(|e| problem(e.to_string()))?;
    let text = std::fs::read_to_string(path).map_err(|e| {
        problem(format!(
            "cannot read the age identity {}: {e}",
            path.display()
        ))
    })?;
    Keys::parse(&text).map_err(problem)
}

/// Record a commit refused before its plan ran, and make the error.
pub fn refused(
    host: &dyn Host,
    store: &mut StateStore,
    commit: &str,
    cause: ApplyError,
    trigger: &str,
) -> Error {
    let blame = cause.blame();
    let live = store.state.deployed.as_ref().map(|d| d.commit.as_str());
    if blame == Blame::Commit && live != Some(commit) {
        store.state.change(
            &StateChange::Quarantine {
                commit: commit.to_string(),
                reason: cause.to_string(),
            },
            &crate::apply::record::now(),
        );
    }
    store.event_with(commit, None, "refused", trigger, &cause.to_string());
    if let Err(e) = store.save(host) {
        ui::warn(&format!("cannot record the refusal: {e}"));
    }
    Error::Refused {
        commit: short(commit).to_string(),
        blame,
        cause: Box::new(cause),
    }
}

/// Record a commit that cannot be rendered (the commit's fault).
pub fn invalid(
    host: &dyn Host,
    store: &mut StateStore,
    commit: &str,
    error: Error,
    trigger: &str,
) -> Error {
    let live = store.state.deployed.as_ref().map(|d| d.commit.as_str());
    if matches!(&error, Error::Invalid(e) if e.is_the_commits()) && live != Some(commit) {
        store.state.change(
            &StateChange::Quarantine {
                commit: commit.to_string(),
                reason: error.to_string(),
            },
            &crate::apply::record::now(),
        );
        store.event_with(commit, None, "invalid", trigger, &error.to_string());
        if let Err(e) = store.save(host) {
            ui::warn(&format!("cannot record the invalid commit: {e}"));
        }
    }
    error
}

/// Execute `plan`; a failure becomes `Refused` or `RolledBack`.
pub fn execute(
    settings: &Settings,
    host: &dyn Host,
    plan: &Plan,
    store: &mut StateStore,
) -> Result<Outcome, Error> {
    let exec = Executor {
        host,
        layout: &settings.layout,
        keep_releases: settings.keep_releases,
    };
    match exec.run(plan, store)? {
        Ok(outcome) => {
            if store.state.quarantined(&plan.commit).is_some() {
                store.state.quarantine.retain(|q| q.commit != plan.commit);
                store.save(host)?;
            }
            Ok(outcome)
        }
        Err(Failure::Aborted(cause)) => Err(Error::Refused {
            commit: short(&plan.commit).to_string(),
            blame: cause.blame(),
            cause: Box::new(cause),
        }),
        Err(Failure::RolledBack(cause)) => Err(Error::RolledBack {
            commit: short(&plan.commit).to_string(),
            previous: plan.previous.clone().unwrap_or_else(|| "(none)".into()),
            blame: cause.blame(),
            cause: Box::new(cause),
        }),
    }
}

/// The files a plan will change, as the operator reads them (before
/// anything runs: worded as what will be done).
pub fn print_changes(plan: &Plan) {
    for (path, change) in &plan.changes {
        let mark = match change {
            Change::Created => "+ create",
            Change::Changed => "~ change",
            Change::Removed => "- remove",
        };
        ui::line(format_args!("  {mark} {}", path.display()));
    }
    for (key, change) in &plan.secrets {
        let what = match change {
            Change::Created => "+ add secret {key}",
            Change::Changed => "~ change secret {key}",
            Change::Removed => "- remove secret {key}",
        };
        ui::line(format_args!("  {}", what.replace("{key}", key)));
    }
}

/// Which overlay the host got, for the first line of a deploy or plan.
pub fn overlay_note(desired: &Desired) -> String {
    match &desired.overlay {
        Some(file) => format!("overlay {file}"),
        None => "no overlay: deploy.yaml as it is".into(),
    }
}

/// The steps a plan would take (for `plan` and `--dry-run`).
pub fn print_steps(plan: &Plan) {
    for action in &plan.actions {
        if let Some(text) = plan.shown(action) {
            ui::step(text);
        }
    }
}

/// The last line of a deploy.
pub fn summary(plan: &Plan, outcome: &Outcome) -> String {
    let count = |kind| plan.changes.iter().filter(|(_, c)| *c == kind).count();
    let mut line = format!(
        "deployed {} as release {}: {} created, {} changed, {} removed, {} host command(s)",
        short(&plan.commit),
        outcome.release,
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
