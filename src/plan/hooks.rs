//! Hooks: with every new release, each app's shared data is backed up
//! before its pre-switch hooks (migrations), and post-switch hooks run after
//! the restarts, as Capistrano's do. Hooks must be idempotent.

use std::collections::BTreeSet;

use super::action::Action;
use super::observed::Target;

/// The snapshot and hook steps before the commit point.
pub(super) fn pre_switch(target: &Target) -> Vec<Action> {
    let mut steps = Vec::new();
    let mut snapshotted = BTreeSet::new();
    for hook in hooks(target, true) {
        if snapshotted.insert(hook.app.clone()) {
            steps.push(Action::Snapshot {
                app: hook.app.clone(),
                release: target.info.id.clone(),
            });
        }
        steps.push(Action::Hook {
            hook: hook.clone(),
            release: target.info.id.clone(),
        });
    }
    steps
}

/// The hook steps after the restarts.
pub(super) fn post_switch(target: &Target) -> Vec<Action> {
    hooks(target, false)
        .map(|hook| Action::Hook {
            hook: hook.clone(),
            release: target.info.id.clone(),
        })
        .collect()
}

fn hooks(target: &Target, pre: bool) -> impl Iterator<Item = &crate::render::desired::Hook> {
    target
        .info
        .hooks
        .iter()
        .filter(move |h| target.new && h.pre_switch == pre)
}
