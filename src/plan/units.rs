//! Units: which are stopped, started, restarted or reloaded, and why —
//! only what the change touches — and what a rollback restarts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::action::Action;
use super::links::{Change, Links};
use super::observed::Observed;
use super::release::{ReleaseInfo, Trigger};
use crate::render::desired::{UNIT_DIR, is_nginx, unit_name, unit_of};

/// The unit steps of a plan.
#[derive(Debug, Default)]
pub(super) struct Units {
    /// Units to verify before the commit point: their files, or their
    /// names when plumb renders only a drop-in of theirs.
    pub verify: Vec<PathBuf>,
    /// Units of the previous release that the target drops.
    pub removed: Vec<String>,
    /// Units the target adds.
    pub added: Vec<String>,
    /// Whether any unit file or drop-in changed (daemon-reload).
    pub files_changed: bool,
    /// Whether nginx's configuration changed.
    pub nginx_changed: bool,
    /// Start, restart or reload steps, in the target's unit order.
    pub steps: Vec<Action>,
    /// What the rollback restarts: the units these steps restarted.
    pub rollback: Vec<Action>,
}

pub(super) fn plan(target: &ReleaseInfo, observed: &Observed, links: &Links) -> Units {
    let current = observed.current.as_ref();
    let old_units: &[String] = current.map(|c| c.units.as_slice()).unwrap_or_default();
    let changed: BTreeSet<&PathBuf> = links.changes.iter().map(|(p, _)| p).collect();
    let unit_changed: BTreeSet<&str> = changed.iter().filter_map(|p| unit_of(p)).collect();
    let mut units = Units {
        files_changed: !unit_changed.is_empty(),
        nginx_changed: changed.iter().any(|p| is_nginx(p)),
        removed: old_units
            .iter()
            .filter(|u| !target.units.contains(u))
            .cloned()
            .collect(),
        ..Units::default()
    };
    // systemd-analyze verifies units, not drop-ins: a changed or removed
    // drop-in verifies its unit (with every drop-in it now has). A unit
    // whose file plumb does not render is named, for systemd to find.
    let verify: BTreeSet<PathBuf> = links
        .changes
        .iter()
        .filter(|(p, c)| *c != Change::Removed || unit_name(p).is_none())
        .filter_map(|(p, _)| unit_of(p))
        .filter(|unit| !units.removed.iter().any(|u| u == unit))
        .map(|unit| {
            let file = Path::new(UNIT_DIR).join(unit);
            let key = format!("files{}", file.display());
            if target.manifest.contains_key(&key) {
                file
            } else {
                PathBuf::from(unit)
            }
        })
        .collect();
    units.verify = verify.into_iter().collect();
    for unit in &target.units {
        if !old_units.contains(unit) {
            units.added.push(unit.clone());
            units.steps.push(Action::EnableNow(unit.clone()));
            continue;
        }
        let step = restart_step(target, observed, unit, &unit_changed, &changed);
        if let Some(step) = step {
            if let Action::Restart { .. } | Action::Reload { .. } = &step {
                let back = Action::Restart {
                    unit: unit.clone(),
                    reason: "rolled back".into(),
                };
                if !units.rollback.contains(&back) {
                    units.rollback.push(back);
                }
            }
            units.steps.push(step);
        }
    }
    units
}

/// Why `unit` (of both releases) must restart, reload or start, if at all.
fn restart_step(
    target: &ReleaseInfo,
    observed: &Observed,
    unit: &str,
    unit_changed: &BTreeSet<&str>,
    changed: &BTreeSet<&PathBuf>,
) -> Option<Action> {
    let current = observed.current.as_ref();
    let triggers: Vec<Trigger> = target
        .triggers
        .get(unit)
        .into_iter()
        .flatten()
        .filter_map(|t| Trigger::parse(t))
        .collect();
    let restart = |reason: String| {
        Some(Action::Restart {
            unit: unit.to_string(),
            reason,
        })
    };
    if unit_changed.contains(unit) {
        return restart("unit file changed".into());
    }
    let switching = current.map(|c| c.id.as_str()) != Some(target.id.as_str());
    let app_changed = switching
        && triggers.iter().any(|t| match t {
            Trigger::App(app) => {
                target.app_changed(current, app)
                    || observed
                        .tampered
                        .iter()
                        .any(|k| k.starts_with(&format!("app/{app}/")))
            }
            Trigger::File(_) | Trigger::Secret(_) => false,
        });
    if app_changed {
        return restart("app release changed".into());
    }
    let secrets: Vec<&str> = triggers
        .iter()
        .filter_map(|t| match t {
            Trigger::Secret(key)
                if switching
                    && target.secrets.get(key) != current.and_then(|c| c.secrets.get(key)) =>
            {
                Some(key.as_str())
            }
            _ => None,
        })
        .collect();
    if !secrets.is_empty() {
        return restart(format!("secret {} changed", secrets.join(", ")));
    }
    let config: Vec<String> = triggers
        .iter()
        .filter_map(|t| match t {
            Trigger::File(path) if changed.contains(path) => Some(path.display().to_string()),
            _ => None,
        })
        .collect();
    if !config.is_empty() {
        let reason = format!("config {} changed", config.join(", "));
        return Some(if target.reloadable.contains(unit) {
            Action::Reload {
                unit: unit.to_string(),
                reason,
            }
        } else {
            Action::Restart {
                unit: unit.to_string(),
                reason,
            }
        });
    }
    if observed.failed.contains(unit) {
        return Some(Action::Start {
            unit: unit.to_string(),
            reason: "failed; its failed state is reset".into(),
        });
    }
    if observed.inactive.contains(unit) {
        return Some(Action::Start {
            unit: unit.to_string(),
            reason: "should be running but is not".into(),
        });
    }
    None
}
