//! `journal.json`: the plan a run is executing, written durably before its
//! first step, so a run killed at any instant is finished or undone by the
//! next one.

use serde::{Deserialize, Serialize};

use crate::apply::{Failure, apply, remove_if_present, undo};
use crate::error::ApplyError;
use crate::host::Host;
use crate::plan::{Action, Plan};
use crate::release::short;
use crate::release::{self, Layout};
use crate::state::State;

/// Which list of the plan a run is executing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Forward,
    Abort,
    Rollback,
}

/// `journal.json`: the plan being executed, written before the first step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub phase: Phase,
    /// Why an abort or rollback started.
    pub reason: Option<String>,
    /// Whether the commit is to be quarantined once the undo is done.
    #[serde(default)]
    pub quarantine: bool,
    pub plan: Plan,
}

/// Finish or undo a run that was interrupted, as its journal says. Returns
/// what was resumed, or `None` when there was no journal.
pub fn resume(
    host: &dyn Host,
    layout: &Layout,
    state: &mut State,
    keep_releases: usize,
) -> Result<Option<String>, ApplyError> {
    let path = layout.journal();
    let Ok(bytes) = host.read(&path) else {
        return Ok(None);
    };
    // Journals are written atomically: one that does not parse was written
    // by another plumb version, and may have been acted on.
    let journal = serde_json::from_slice::<Journal>(&bytes).map_err(|e| ApplyError::Journal {
        path: host.real(&path),
        message: e.to_string(),
    })?;
    let plan = &journal.plan;
    match journal.phase {
        Phase::Forward => {
            let build = plan.actions.iter().find_map(|a| match a {
                Action::BuildRelease(id) => Some(id),
                _ => None,
            });
            if let Some(id) = build
                && release::ReleaseInfo::load(host, layout, id).is_none()
            {
                // Killed before the release was complete: only idempotent
                // preparations (creating a user) can have run.
                remove_journal(host, layout)?;
                return Ok(Some("discarded an interrupted build".into()));
            }
            match apply(host, layout, plan, None, state, keep_releases)? {
                Ok(_) => Ok(Some(format!(
                    "finished the interrupted deploy of {}",
                    short(&plan.commit)
                ))),
                Err(Failure::Aborted(e)) | Err(Failure::RolledBack(e)) => Ok(Some(format!(
                    "undid the interrupted deploy of {}: {e}",
                    short(&plan.commit)
                ))),
            }
        }
        phase => {
            let reason = journal
                .reason
                .clone()
                .unwrap_or_else(|| "interrupted".into());
            undo(
                host,
                layout,
                plan,
                phase,
                &reason,
                journal.quarantine,
                state,
            )?;
            Ok(Some(format!(
                "finished undoing the deploy of {}",
                short(&plan.commit)
            )))
        }
    }
}

/// Write the journal durably before acting on it.
pub(crate) fn write_journal(
    host: &dyn Host,
    layout: &Layout,
    phase: Phase,
    reason: Option<&str>,
    quarantine: bool,
    plan: &Plan,
) -> Result<(), ApplyError> {
    let journal = Journal {
        phase,
        reason: reason.map(str::to_string),
        quarantine,
        plan: plan.clone(),
    };
    let bytes = serde_json::to_vec(&journal).expect("journal serialises");
    crate::state::write_atomic(host, &layout.journal(), &bytes, 0o600)
}

pub(crate) fn remove_journal(host: &dyn Host, layout: &Layout) -> Result<(), ApplyError> {
    remove_if_present(host, &layout.journal())?;
    host.sync(&layout.state_dir)
        .map_err(ApplyError::io("fsync", &layout.state_dir))
}
