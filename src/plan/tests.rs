//! The planner on hand-made states: order of steps, and the undo lists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::*;
use crate::desired::DesiredFile;
use crate::release;

const UNIT: &str = "/etc/systemd/system/web.service";
const SITE: &str = "/etc/nginx/conf.d/web.conf";
const CONF: &str = "/etc/web/config.yaml";

fn desired(files: &[(&str, &str)]) -> Desired {
    let mut d = Desired {
        commit: "c2".into(),
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
        d.triggers
            .insert("web.service".into(), vec![format!("files{CONF}")]);
    }
    d
}

/// The host as it is after deploying `d` as release `r1` with every link in place.
fn deployed(d: &Desired) -> Observed {
    let info = ReleaseInfo {
        id: "r1".into(),
        commit: "c1".into(),
        created: String::new(),
        units: d.units.clone(),
        manifest: release::manifest(d),
        triggers: d.triggers.clone(),
        reloadable: d.reloadable.clone(),
        health: Vec::new(),
        fingerprint: String::new(),
        builds: BTreeMap::new(),
        outputs: BTreeMap::new(),
    };
    let mut observed = Observed {
        current: Some(info),
        owned: d.files.keys().cloned().collect(),
        ..Observed::default()
    };
    for path in d.files.keys() {
        let target = PathBuf::from("/state/current/files").join(path.strip_prefix("/").unwrap());
        observed
            .paths
            .insert(path.clone(), PathState::Link(target.clone()));
        observed.link_targets.insert(path.clone(), target);
    }
    observed
}

fn targets_for(observed: &mut Observed, d: &Desired) {
    for path in d.files.keys() {
        let target = PathBuf::from("/state/current/files").join(path.strip_prefix("/").unwrap());
        observed.link_targets.insert(path.clone(), target);
    }
}

#[test]
fn a_first_deploy_validates_before_the_commit_point_and_can_be_undone() {
    let d = desired(&[(UNIT, "u"), (SITE, "s")]);
    let mut observed = Observed::default();
    targets_for(&mut observed, &d);
    let plan = plan(&d, &observed, "r2").unwrap();
    assert_eq!(
        plan.actions,
        [
            Action::BuildRelease("r2".into()),
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
fn a_path_held_by_someone_else_is_refused() {
    let d = desired(&[(SITE, "s")]);
    let mut observed = Observed::default();
    targets_for(&mut observed, &d);
    observed.paths.insert(SITE.into(), PathState::Other);
    assert!(matches!(
        plan(&d, &observed, "r2"),
        Err(InvalidError::NotOwned { .. })
    ));
}

#[test]
fn a_config_change_reloads_a_reloadable_unit_and_nothing_else() {
    let old = desired(&[(UNIT, "u"), (CONF, "a"), (SITE, "s")]);
    let mut new = desired(&[(UNIT, "u"), (CONF, "b"), (SITE, "s")]);
    new.reloadable.insert("web.service".into());
    let plan = plan(&new, &deployed(&old), "r2").unwrap();
    let services: Vec<&Action> = plan.unit_actions().collect();
    assert_eq!(
        services,
        [&Action::Reload {
            unit: "web.service".into(),
            reason: format!("config {CONF} changed"),
        }]
    );
    assert!(!plan.actions.contains(&Action::ReloadNginx));
    assert!(!plan.actions.contains(&Action::DaemonReload));
}

#[test]
fn a_removed_unit_is_pinned_stopped_then_unlinked_and_comes_back_on_rollback() {
    let old = desired(&[(UNIT, "u"), (SITE, "s")]);
    let new = desired(&[(SITE, "s2")]);
    let plan = plan(&new, &deployed(&old), "r2").unwrap();
    let at = |a: &Action| plan.actions.iter().position(|x| x == a).unwrap();
    let pin = Action::Pin {
        path: UNIT.into(),
        release: "r1".into(),
    };
    assert!(at(&pin) < at(&Action::Switch(Some("r2".into()))));
    assert!(at(&Action::Commit) < at(&Action::DisableNow("web.service".into())));
    assert!(at(&Action::DisableNow("web.service".into())) < at(&Action::Unlink(UNIT.into())));
    assert!(
        plan.rollback
            .contains(&Action::EnableNow("web.service".into()))
    );
    assert!(plan.rollback.contains(&Action::Link(UNIT.into())));
    assert_eq!(plan.owned_after, BTreeSet::from([PathBuf::from(SITE)]));
}

#[test]
fn nothing_changed_means_an_empty_plan() {
    let d = desired(&[(UNIT, "u"), (SITE, "s")]);
    let mut observed = deployed(&d);
    observed.current.as_mut().unwrap().commit = "c2".into();
    assert!(plan(&d, &observed, "r2").unwrap().is_empty());
    // ...unless a unit that should run does not.
    observed.inactive.insert("web.service".into());
    let repaired = plan(&d, &observed, "r2").unwrap();
    assert_eq!(
        repaired.unit_actions().collect::<Vec<_>>(),
        [&Action::Start {
            unit: "web.service".into(),
            reason: "should be running but is not".into(),
        }]
    );
}
