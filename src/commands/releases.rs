//! `plumb releases`: the releases on disk, newest first, marking the current
//! one and the ones that failed.

use crate::error::{ApplyError, Error, exit};
use crate::host::Host;
use crate::release::{self, ReleaseInfo};
use crate::settings::Settings;
use crate::state::State;

pub fn run(settings: &Settings, host: &dyn Host) -> Result<u8, Error> {
    let layout = &settings.layout;
    let state = State::load(host, &layout.state_file())?;
    let current = release::current_id(host, layout);
    let mut ids = match host.list_dir(&layout.releases()) {
        Ok(ids) => ids,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(ApplyError::io("list", layout.releases())(e).into()),
    };
    ids.retain(|id| !id.starts_with('.'));
    ids.sort();
    if ids.is_empty() {
        println!("no releases yet");
    }
    for id in ids.iter().rev() {
        let Some(info) = ReleaseInfo::load(host, layout, id) else {
            println!("  {id}  (unreadable release.json)");
            continue;
        };
        let mut marks = Vec::new();
        if current.as_deref() == Some(id.as_str()) {
            marks.push("current".to_string());
        }
        if let Some(event) = state
            .history
            .iter()
            .rev()
            .find(|e| e.release.as_deref() == Some(id.as_str()))
            && event.result != "deployed"
        {
            marks.push(event.result.clone());
        }
        if let Some(q) = state.quarantined(&info.commit) {
            marks.push(format!(
                "quarantined: {}",
                q.reason.lines().next().unwrap_or_default()
            ));
        }
        let star = if current.as_deref() == Some(id.as_str()) {
            "*"
        } else {
            " "
        };
        let marks = if marks.is_empty() {
            String::new()
        } else {
            format!("  ({})", marks.join("; "))
        };
        println!(
            "{star} {id}  {}  {}{marks}",
            crate::release::short(&info.commit),
            info.created
        );
    }
    Ok(exit::OK)
}
