//! The planner and each of its builders on hand-made states: step order,
//! restarts and their reasons, hooks, and the two undo lists.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::state::{DeployedRef, StateChange};
use super::*;
use crate::render::desired::{Desired, DesiredFile, Hook};
use crate::spec::health::{HealthCheck, Probe};

const UNIT: &str = "/etc/systemd/system/web.service";
const DROPIN: &str = "/etc/systemd/system/web.service.d/limits.conf";
const SITE: &str = "/etc/nginx/conf.d/web.conf";
const CONF: &str = "/etc/web/config.yaml";

/// A release `id` of commit `commit` holding `files`; a unit file makes
/// `web.service` one of its units, triggered by CONF and the app.
fn release(id: &str, commit: &str, files: &[(&str, &str)]) -> ReleaseInfo {
    let mut d = Desired {
        commit: commit.into(),
        ..Desired::default()
    };
    for (path, text) in files {
        let file = DesiredFile {
            bytes: text.as_bytes().to_vec(),
            mode: 0o644,
            origin: "test".into(),
        };
        d.files.insert(PathBuf::from(path), file);
    }
    if d.files.contains_key(&PathBuf::from(UNIT)) {
        d.units.push("web.service".into());
        d.triggers.insert(
            "web.service".into(),
            vec![format!("files{CONF}"), "app/web/".into()],
        );
    }
    release::planned(&d, id)
}

fn target(info: &ReleaseInfo) -> Target {
    Target {
        info: info.clone(),
        new: true,
    }
}

fn link_target(path: &std::path::Path) -> PathBuf {
    PathBuf::from("/state/current/files").join(path.strip_prefix("/").unwrap())
}

/// A host with nothing deployed that knows where `info`'s links go.
fn fresh(info: &ReleaseInfo) -> Observed {
    let mut observed = Observed::default();
    for path in info.managed() {
        observed
            .link_targets
            .insert(path.clone(), link_target(&path));
    }
    observed
}

/// The host as it is after deploying `info`, every link in place.
fn deployed(info: &ReleaseInfo) -> Observed {
    let mut observed = fresh(info);
    observed.current = Some(info.clone());
    observed.owned = info.managed().collect();
    observed.deployed = Some(deployed_ref(info));
    for path in info.managed() {
        observed
            .paths
            .insert(path.clone(), PathState::Link(link_target(&path)));
    }
    observed
}

/// Make `observed` also know where `info`'s links go.
fn knows(mut observed: Observed, info: &ReleaseInfo) -> Observed {
    for path in info.managed() {
        observed
            .link_targets
            .insert(path.clone(), link_target(&path));
    }
    observed
}

fn deployed_ref(info: &ReleaseInfo) -> DeployedRef {
    DeployedRef {
        commit: info.commit.clone(),
        release: info.id.clone(),
        fingerprint: String::new(),
    }
}

fn classify(
    info: &ReleaseInfo,
    observed: &Observed,
    switching: bool,
) -> Result<links::Links, PlanError> {
    links::classify(info, &info.managed().collect(), observed, switching)
}

fn plan_for(target: &Target, observed: &Observed) -> Plan {
    plan(target, observed, &deployed_ref(&target.info)).unwrap()
}

/// The steps without bookkeeping.
fn steps(actions: &[Action]) -> Vec<Action> {
    actions
        .iter()
        .filter(|a| !matches!(a, Action::Record(_)))
        .cloned()
        .collect()
}

fn restart(unit: &str, reason: &str) -> Action {
    Action::Restart {
        unit: unit.into(),
        reason: reason.into(),
    }
}

#[test]
fn a_first_deploy_validates_before_the_commit_point_and_can_be_undone() {
    let r2 = release("r2", "c2", &[(UNIT, "u"), (SITE, "s")]);
    let plan = plan_for(&target(&r2), &fresh(&r2));
    assert_eq!(
        steps(&plan.actions),
        [
            Action::Switch(Some("r2".into())),
            Action::Link(SITE.into()),
            Action::Link(UNIT.into()),
            Action::ValidateNginx,
            Action::VerifyUnits(vec![UNIT.into()]),
            Action::Commit,
            Action::DaemonReload,
            Action::EnableNow("web.service".into()),
            Action::ReloadNginx,
        ]
    );
    assert_eq!(
        plan.abort,
        [
            Action::Unlink(SITE.into()),
            Action::Unlink(UNIT.into()),
            Action::Switch(None),
            Action::Discard("r2".into()),
        ]
    );
    assert_eq!(
        plan.rollback[0],
        Action::DisableNow("web.service".into()),
        "new units stop first"
    );
}

#[test]
fn the_state_changes_are_steps_right_after_the_commit_point_and_at_the_end() {
    let r1 = release("r1", "c1", &[(UNIT, "u"), (SITE, "s")]);
    let r2 = release("r2", "c2", &[(UNIT, "u")]);
    let plan = plan_for(&target(&r2), &knows(deployed(&r1), &r2));
    let commit = plan
        .actions
        .iter()
        .position(|a| *a == Action::Commit)
        .unwrap();
    let both: BTreeSet<PathBuf> = [UNIT, SITE].map(PathBuf::from).into();
    assert_eq!(
        plan.actions[commit + 1..commit + 3],
        [
            Action::Record(StateChange::Deployed(Some(deployed_ref(&r2)))),
            // Until the end, the leaving site is still ours to remove.
            Action::Record(StateChange::Owned(both)),
        ]
    );
    let only_unit: BTreeSet<PathBuf> = [PathBuf::from(UNIT)].into();
    assert_eq!(
        plan.actions.last(),
        Some(&Action::Record(StateChange::Owned(only_unit)))
    );
    // The rollback records the previous release and ownership again.
    let n = plan.rollback.len();
    assert_eq!(
        plan.rollback[n - 2..],
        [
            Action::Record(StateChange::Deployed(Some(deployed_ref(&r1)))),
            Action::Record(StateChange::Owned([UNIT, SITE].map(PathBuf::from).into())),
        ]
    );
    assert!(
        !plan.abort.iter().any(|a| matches!(a, Action::Record(_))),
        "nothing is recorded before the commit point, so the abort has nothing to undo there"
    );
}

#[test]
fn ownership_is_recorded_only_when_the_managed_paths_change() {
    let r1 = release("r1", "c1", &[(UNIT, "u"), (SITE, "s")]);
    let r2 = release("r2", "c2", &[(UNIT, "u2"), (SITE, "s")]);
    let plan = plan_for(&target(&r2), &knows(deployed(&r1), &r2));
    let owned = |a: &Action| matches!(a, Action::Record(StateChange::Owned(_)));
    assert!(!plan.actions.iter().any(owned), "{:?}", plan.actions);
    assert!(!plan.rollback.iter().any(owned), "{:?}", plan.rollback);
    assert!(
        plan.actions
            .contains(&Action::Record(StateChange::Deployed(Some(deployed_ref(
                &r2
            )))))
    );

    // A path that joins is owned from the commit point on, recorded once.
    let r3 = release("r3", "c3", &[(UNIT, "u2"), (SITE, "s"), (CONF, "c")]);
    let plan = plan_for(&target(&r3), &knows(deployed(&r2), &r3));
    let all: BTreeSet<PathBuf> = [UNIT, SITE, CONF].map(PathBuf::from).into();
    let records: Vec<&Action> = plan.actions.iter().filter(|a| owned(a)).collect();
    assert_eq!(records, [&Action::Record(StateChange::Owned(all))]);
    let before: BTreeSet<PathBuf> = [UNIT, SITE].map(PathBuf::from).into();
    assert!(
        plan.rollback
            .contains(&Action::Record(StateChange::Owned(before))),
        "the rollback gives the path up again: {:?}",
        plan.rollback
    );
}

#[test]
fn a_path_held_by_someone_else_is_refused_before_the_release_is_built() {
    let r2 = release("r2", "c2", &[(SITE, "s")]);
    let mut observed = fresh(&r2);
    assert!(check(&r2, &observed).is_ok());
    // An owned link pointed elsewhere is repaired, not refused.
    observed.owned.insert(PathBuf::from(SITE));
    observed
        .paths
        .insert(PathBuf::from(SITE), PathState::Link("/srv/other".into()));
    assert!(check(&r2, &observed).is_ok());
    observed.owned.clear();
    observed.paths.insert(PathBuf::from(SITE), PathState::Other);
    assert!(matches!(
        check(&r2, &observed),
        Err(PlanError::NotOwned { .. })
    ));
    observed.owned.insert(PathBuf::from(SITE));
    assert!(matches!(
        check(&r2, &observed),
        Err(PlanError::ReplacedByHand { .. })
    ));
}

#[test]
fn links_a_path_held_by_someone_else_is_refused() {
    let r2 = release("r2", "c2", &[(SITE, "s")]);
    let mut observed = fresh(&r2);
    observed.paths.insert(PathBuf::from(SITE), PathState::Other);
    assert!(matches!(
        plan(&target(&r2), &observed, &deployed_ref(&r2)),
        Err(PlanError::NotOwned { .. })
    ));
    observed.owned.insert(PathBuf::from(SITE));
    assert!(matches!(
        plan(&target(&r2), &observed, &deployed_ref(&r2)),
        Err(PlanError::ReplacedByHand { .. })
    ));
}

#[test]
fn links_classify_new_repaired_removed_and_changed_paths() {
    let r1 = release("r1", "c1", &[(UNIT, "u"), (SITE, "s"), (CONF, "a")]);
    let r2 = release(
        "r2",
        "c2",
        &[(UNIT, "u"), (CONF, "b"), ("/etc/web/new", "n")],
    );
    let mut observed = knows(deployed(&r1), &r2);
    // Someone deleted the unit's link.
    observed
        .paths
        .insert(PathBuf::from(UNIT), PathState::Missing);
    let links = classify(&r2, &observed, true).unwrap();
    assert_eq!(links.new, [PathBuf::from("/etc/web/new")]);
    assert_eq!(links.repairs, [PathBuf::from(UNIT)]);
    assert_eq!(links.removed_files, [PathBuf::from(SITE)]);
    assert!(links.removed_units.is_empty());
    assert_eq!(
        links.changes,
        [
            (PathBuf::from(CONF), Change::Changed),
            (PathBuf::from("/etc/web/new"), Change::Created),
            (PathBuf::from(SITE), Change::Removed),
        ]
    );
}

#[test]
fn units_a_config_change_reloads_a_reloadable_unit_and_nothing_else() {
    let r1 = release("r1", "c1", &[(UNIT, "u"), (CONF, "a")]);
    let mut r2 = release("r2", "c2", &[(UNIT, "u"), (CONF, "b")]);
    r2.reloadable.insert("web.service".into());
    let plan = plan_for(&target(&r2), &deployed(&r1));
    assert_eq!(
        steps(&plan.actions),
        [
            Action::Switch(Some("r2".into())),
            Action::Commit,
            Action::Reload {
                unit: "web.service".into(),
                reason: format!("config {CONF} changed"),
            },
        ]
    );
    assert!(
        plan.rollback
            .contains(&restart("web.service", "rolled back"))
    );
}

#[test]
fn units_restart_for_the_unit_file_for_the_app_and_start_when_stopped_or_failed() {
    let r1 = release("r1", "c1", &[(UNIT, "u"), (CONF, "a")]);
    let changed_unit = release("r2", "c2", &[(UNIT, "u2"), (CONF, "a")]);
    let mut changed_app = release("r3", "c3", &[(UNIT, "u"), (CONF, "a")]);
    changed_app.builds.insert("web".into(), "k2".into());
    let r1_links = classify(&changed_unit, &deployed(&r1), true).unwrap();
    let units = units::plan(&changed_unit, &deployed(&r1), &r1_links);
    assert_eq!(units.steps, [restart("web.service", "unit file changed")]);
    assert!(units.files_changed);
    assert_eq!(units.verify, [PathBuf::from(UNIT)]);

    let links = classify(&changed_app, &deployed(&r1), true).unwrap();
    let units = units::plan(&changed_app, &deployed(&r1), &links);
    assert_eq!(units.steps, [restart("web.service", "app release changed")]);
    assert!(!units.files_changed);

    // Nothing changed, but the unit is stopped (or failed): start it.
    let mut observed = deployed(&r1);
    observed.inactive.insert("web.service".into());
    let links = classify(&r1, &observed, false).unwrap();
    let units = units::plan(&r1, &observed, &links);
    assert!(matches!(&units.steps[..], [Action::Start { reason, .. }] if reason.contains("not")));
    observed.inactive.clear();
    observed.failed.insert("web.service".into());
    let units = units::plan(&r1, &observed, &links);
    assert!(
        matches!(&units.steps[..], [Action::Start { reason, .. }] if reason.contains("failed"))
    );
}

#[test]
fn units_a_changed_drop_in_reloads_systemd_verifies_and_restarts_its_unit() {
    let r1 = release(
        "r1",
        "c1",
        &[(UNIT, "u"), (DROPIN, "[Service]\nLimitNOFILE=1024\n")],
    );
    let r2 = release(
        "r2",
        "c2",
        &[(UNIT, "u"), (DROPIN, "[Service]\nLimitNOFILE=4096\n")],
    );
    let plan = plan_for(&target(&r2), &deployed(&r1));
    assert_eq!(
        steps(&plan.actions),
        [
            Action::Switch(Some("r2".into())),
            // systemd-analyze refuses a drop-in: its unit is verified.
            Action::VerifyUnits(vec![UNIT.into()]),
            Action::Commit,
            Action::DaemonReload,
            restart("web.service", "unit file changed"),
        ]
    );
    // A drop-in for a unit plumb does not render: verified by its name; a
    // removed drop-in: its unit verified without it.
    let other = "/etc/systemd/system/nginx.service.d/limits.conf";
    let r3 = release(
        "r3",
        "c3",
        &[(UNIT, "u"), (other, "[Service]\nLimitNOFILE=4096\n")],
    );
    let plan = plan_for(&target(&r3), &deployed(&r1));
    assert!(
        plan.actions.contains(&Action::VerifyUnits(vec![
            UNIT.into(),
            "nginx.service".into()
        ])),
        "{:?}",
        plan.actions
    );
}

#[test]
fn units_a_removed_unit_is_pinned_stopped_then_unlinked_and_comes_back_on_rollback() {
    let r1 = release("r1", "c1", &[(UNIT, "u"), (SITE, "s")]);
    let r2 = release("r2", "c2", &[(SITE, "s")]);
    let plan = plan_for(&target(&r2), &knows(deployed(&r1), &r2));
    assert_eq!(
        steps(&plan.actions),
        [
            Action::Pin {
                path: UNIT.into(),
                release: "r1".into(),
            },
            Action::Switch(Some("r2".into())),
            Action::Commit,
            Action::DisableNow("web.service".into()),
            Action::Unlink(UNIT.into()),
            Action::DaemonReload,
        ]
    );
    assert!(plan.rollback.contains(&Action::Link(UNIT.into())));
    assert!(
        plan.rollback
            .contains(&Action::EnableNow("web.service".into()))
    );
}

#[test]
fn hooks_run_with_a_new_release_after_a_snapshot_and_never_on_a_switch_back() {
    let mut r2 = release("r2", "c2", &[(UNIT, "u")]);
    let hook = |pre_switch, command: &str| Hook {
        app: "web".into(),
        pre_switch,
        command: command.into(),
        user: Some("web".into()),
        timeout_secs: 60,
    };
    r2.hooks = vec![
        hook(true, "migrate"),
        hook(true, "warm"),
        hook(false, "notify"),
    ];
    let pre = hooks::pre_switch(&target(&r2));
    assert_eq!(
        pre,
        [
            Action::Snapshot {
                app: "web".into(),
                release: "r2".into()
            },
            Action::Hook {
                hook: hook(true, "migrate"),
                release: "r2".into()
            },
            Action::Hook {
                hook: hook(true, "warm"),
                release: "r2".into()
            },
        ],
        "one snapshot per app, before its hooks"
    );
    assert_eq!(hooks::post_switch(&target(&r2)).len(), 1);
    let back = Target {
        info: r2.clone(),
        new: false,
    };
    assert!(hooks::pre_switch(&back).is_empty() && hooks::post_switch(&back).is_empty());

    let plan = plan_for(&target(&r2), &fresh(&r2));
    let at = |a: &Action| plan.actions.iter().position(|b| b == a).unwrap();
    assert!(
        at(&pre[2]) < at(&Action::Commit),
        "pre-switch hooks before the commit point"
    );
    assert!(
        at(&Action::EnableNow("web.service".into())) < at(&hooks::post_switch(&target(&r2))[0]),
        "post-switch hooks after the starts"
    );
}

#[test]
fn health_checks_run_only_when_something_was_touched() {
    let mut r1 = release("r1", "c1", &[(UNIT, "u"), (CONF, "a")]);
    let check = HealthCheck {
        app: "web".into(),
        probe: Probe::Tcp {
            address: "127.0.0.1:1".into(),
        },
        timeout_ms: 1000,
        interval_ms: 100,
        user: None,
    };
    r1.health = vec![check.clone()];
    let mut r2 = release("r2", "c2", &[(UNIT, "u"), (CONF, "b")]);
    let mut new_check = check.clone();
    new_check.timeout_ms = 2000;
    r2.health = vec![new_check.clone()];
    let plan = plan_for(&target(&r2), &deployed(&r1));
    assert!(plan.actions.contains(&Action::Check(new_check.clone())));
    // The rollback restarts the old release, then waits for its own checks.
    let restart = plan
        .rollback
        .iter()
        .position(|a| matches!(a, Action::Restart { .. }))
        .expect("the rollback restarts the unit");
    let old_check = plan
        .rollback
        .iter()
        .position(|a| *a == Action::Check(check.clone()));
    assert!(
        old_check.is_some_and(|at| at > restart),
        "{:?}",
        plan.rollback
    );
    assert!(!plan.rollback.contains(&Action::Check(new_check)));
    // Only a missing link to repair: no restart, no health check.
    let mut observed = deployed(&r1);
    observed
        .paths
        .insert(PathBuf::from(CONF), PathState::Missing);
    let repair = plan_for(
        &Target {
            info: r1.clone(),
            new: false,
        },
        &observed,
    );
    assert_eq!(
        steps(&repair.actions),
        [Action::Link(CONF.into()), Action::Commit]
    );
}

#[test]
fn nothing_changed_means_a_plan_of_bookkeeping_only() {
    let r1 = release("r1", "c1", &[(UNIT, "u"), (SITE, "s")]);
    let observed = deployed(&r1);
    let current = Target {
        info: r1.clone(),
        new: false,
    };
    let plan = plan_for(&current, &observed);
    assert!(plan.is_noop(), "{:?}", plan.actions);
    // A new commit whose rendering is identical needs no release.
    let same = release("<new>", "c2", &[(UNIT, "u"), (SITE, "s")]);
    assert!(!needs_release(&same, &observed));
    let other = release("<new>", "c2", &[(UNIT, "u2"), (SITE, "s")]);
    assert!(needs_release(&other, &observed));
    let mut tampered = observed.clone();
    tampered
        .tampered
        .insert("files/etc/nginx/conf.d/web.conf".into());
    assert!(
        needs_release(&same, &tampered),
        "a file changed by hand needs a fresh release"
    );
}
