//! `plumb releases`: the releases on disk, newest first, marking the current
//! one and the ones that failed.

use crate::apply::{StateStore, release};
use crate::error::{ApplyError, Error, exit};
use crate::host::Host;
use crate::plan::short;
use crate::spec::settings::Settings;
use crate::ui;

pub fn run(settings: &Settings, host: &dyn Host) -> Result<u8, Error> {
    let layout = &settings.layout;
    let store = StateStore::load(host, &layout.state_file())?;
    let state = &store.state;
    let current = release::current_id(host, layout);
    let ids = release::list(host, layout).map_err(ApplyError::io("list", layout.releases()))?;
    if ids.is_empty() {
        ui::out("no releases yet");
    }
    for id in ids.iter().rev() {
        let Some(info) = release::load(host, layout, id) else {
            ui::out(format_args!("  {id}  (unreadable release.json)"));
            continue;
        };
        let is_current = current.as_deref() == Some(id.as_str());
        let mut marks = Vec::new();
        if is_current {
            marks.push("current".to_string());
        }
        if let Some(event) = state
            .history
            .iter()
            .rev()
            .find(|e| e.release.as_deref() == Some(id.as_str()))
            && event.result != "deployed"
            && event.result != "no changes"
        {
            marks.push(event.result.clone());
        }
        if let Some(q) = state.quarantined(&info.commit) {
            marks.push(format!(
                "quarantined: {}",
                q.reason.lines().next().unwrap_or_default()
            ));
        }
        let star = if is_current { "*" } else { " " };
        let marks = if marks.is_empty() {
            String::new()
        } else {
            format!("  ({})", marks.join("; "))
        };
        ui::out(format_args!(
            "{star} {id}  {}  {}{marks}",
            short(&info.commit),
            info.created
        ));
    }
    Ok(exit::OK)
}
