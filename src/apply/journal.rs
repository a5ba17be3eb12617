//! `journal.json`: the plan a run is executing, written durably before its
//! first step, so a run killed at any instant is finished or undone by the
//! next one. Resuming happens after the fetch: a newer target (or `--force`)
//! supersedes an unfinished plan by undoing it first, and a plan that was
//! interrupted again and again is undone instead of replayed forever.

use serde::{Deserialize, Serialize};

use super::executor::{Executor, Failure, remove_if_present};
use super::record::StateStore;
use crate::error::ApplyError;
use crate::host::Host;
use crate::plan::{Plan, short};
use crate::spec::layout::Layout;

/// A forward plan interrupted this many times is undone, not retried.
pub const MAX_ATTEMPTS: u32 = 3;

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
    /// How many runs started this plan.
    #[serde(default)]
    pub attempts: u32,
    pub plan: Plan,
}

/// What to do with an unfinished plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Run it again from its first step (its steps are idempotent).
    Finish,
    /// Undo it: a newer target supersedes it.
    Supersede,
}

/// The journal, if a run was interrupted.
pub fn read(host: &dyn Host, layout: &Layout) -> Result<Option<Journal>, ApplyError> {
    let path = layout.journal();
    let Ok(bytes) = host.files().read(&path) else {
        return Ok(None);
    };
    // Journals are written atomically: one that does not parse was written
    // by another plumb version, and may have been acted on.
    serde_json::from_slice::<Journal>(&bytes)
        .map(Some)
        .map_err(|e| ApplyError::Journal {
            path: host.files().real(&path),
            message: e.to_string(),
        })
}

/// Write the journal durably before acting on it.
pub fn write(
    host: &dyn Host,
    layout: &Layout,
    phase: Phase,
    reason: Option<&str>,
    quarantine: bool,
    plan: &Plan,
) -> Result<(), ApplyError> {
    let attempts = read(host, layout)
        .ok()
        .flatten()
        .filter(|j| j.plan == *plan)
        .map(|j| j.attempts)
        .unwrap_or(0);
    write_journal(
        host,
        layout,
        &Journal {
            phase,
            reason: reason.map(str::to_string),
            quarantine,
            attempts,
            plan: plan.clone(),
        },
    )
}

fn write_journal(host: &dyn Host, layout: &Layout, journal: &Journal) -> Result<(), ApplyError> {
    let bytes = serde_json::to_vec(journal).expect("journal serialises");
    let path = layout.journal();
    host.files()
        .write_atomic(&path, &bytes, 0o600)
        .map_err(ApplyError::io("write", &path))
}

pub fn remove(host: &dyn Host, layout: &Layout) -> Result<(), ApplyError> {
    remove_if_present(host, &layout.journal())?;
    host.files()
        .sync(&layout.state_dir)
        .map_err(ApplyError::io("fsync", &layout.state_dir))
}

/// Finish or undo an interrupted run, as `how` and its journal say.
/// Returns what was done, for the operator.
pub fn resume(
    exec: &Executor,
    mut journal: Journal,
    how: Resume,
    store: &mut StateStore,
) -> Result<String, ApplyError> {
    let (host, layout) = (exec.host, exec.layout);
    let plan = journal.plan.clone();
    let commit = short(&plan.commit).to_string();
    if journal.phase != Phase::Forward {
        let reason = journal
            .reason
            .clone()
            .unwrap_or_else(|| "interrupted".into());
        exec.undo(&plan, journal.phase, &reason, journal.quarantine, store)?;
        return Ok(format!("finished undoing the deploy of {commit}"));
    }
    journal.attempts += 1;
    write_journal(host, layout, &journal)?;
    let release_there = super::release::load(host, layout, &plan.release).is_some();
    let again = how == Resume::Finish && release_there && journal.attempts < MAX_ATTEMPTS;
    if again {
        return Ok(match exec.run(&plan, store)? {
            Ok(_) => format!("finished the interrupted deploy of {commit}"),
            Err(Failure::Aborted(e)) | Err(Failure::RolledBack(e)) => {
                format!("undid the interrupted deploy of {commit}: {e}")
            }
        });
    }
    // Past the commit point when the state already records the plan's release.
    let committed = store
        .state
        .deployed
        .as_ref()
        .is_some_and(|d| d.release == plan.release && d.commit == plan.commit)
        && plan.previous.as_deref() != Some(plan.release.as_str());
    let phase = if committed {
        Phase::Rollback
    } else {
        Phase::Abort
    };
    let (reason, quarantine) = if how == Resume::Supersede {
        (
            "superseded by a newer target before it finished".to_string(),
            false,
        )
    } else {
        (
            format!(
                "interrupted {} times before it finished (a step that hangs or kills plumb?)",
                journal.attempts
            ),
            plan.previous_commit.as_deref() != Some(plan.commit.as_str()),
        )
    };
    exec.undo(&plan, phase, &reason, quarantine, store)?;
    Ok(format!("undid the unfinished deploy of {commit}: {reason}"))
}
