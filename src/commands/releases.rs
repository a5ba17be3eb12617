//! `plumb releases`: the releases on disk, newest first, marking the current
//! one and the ones that failed.

use serde::Serialize;

use crate::apply::{StateStore, release};
use crate::error::{ApplyError, Error, exit};
use crate::host::Host;
use crate::plan::short;
use crate::spec::settings::Settings;
use crate::ui;

/// One release, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Entry {
    id: String,
    commit: Option<String>,
    created: Option<String>,
    current: bool,
    /// What happened to it, when not simply deployed: rolled back,
    /// quarantined (with the reason's first line), an unreadable record.
    notes: Vec<String>,
}

pub fn run(settings: &Settings, host: &dyn Host, json: bool) -> Result<u8, Error> {
    let layout = &settings.layout;
    let store = StateStore::load(host, &layout.state_file())?;
    let state = &store.state;
    let current = release::current_id(host, layout);
    let ids = release::list(host, layout).map_err(ApplyError::io("list", layout.releases()))?;
    let mut entries = Vec::new();
    for id in ids.iter().rev() {
        let is_current = current.as_deref() == Some(id.as_str());
        let Some(info) = release::load(host, layout, id) else {
            entries.push(Entry {
                id: id.clone(),
                commit: None,
                created: None,
                current: is_current,
                notes: vec!["unreadable release.json".into()],
            });
            continue;
        };
        let mut notes = Vec::new();
        if let Some(event) = state
            .history
            .iter()
            .rev()
            .find(|e| e.release.as_deref() == Some(id.as_str()))
            && event.result != "deployed"
            && event.result != "no changes"
        {
            notes.push(event.result.clone());
        }
        if let Some(q) = state.quarantined(&info.commit) {
            notes.push(format!(
                "quarantined: {}",
                q.reason.lines().next().unwrap_or_default()
            ));
        }
        entries.push(Entry {
            id: id.clone(),
            commit: Some(info.commit),
            created: Some(info.created),
            current: is_current,
            notes,
        });
    }
    if json {
        ui::out(serde_json::to_string_pretty(&entries).expect("releases serialise"));
        return Ok(exit::OK);
    }
    if entries.is_empty() {
        ui::out("no releases yet");
    }
    for entry in &entries {
        let mut marks = entry.notes.clone();
        if entry.current {
            marks.insert(0, "current".into());
        }
        let star = if entry.current { "*" } else { " " };
        let marks = if marks.is_empty() {
            String::new()
        } else {
            format!("  ({})", marks.join("; "))
        };
        match (&entry.commit, &entry.created) {
            (Some(commit), Some(created)) => ui::out(format_args!(
                "{star} {}  {}  {created}{marks}",
                entry.id,
                short(commit)
            )),
            _ => ui::out(format_args!("{star} {}{marks}", entry.id)),
        }
    }
    Ok(exit::OK)
}
