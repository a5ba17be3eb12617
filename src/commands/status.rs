//! `plumb status [--json]`: what is deployed, the last run, quarantine and
//! drift. Reads only; takes no lock and fetches nothing.

use serde::Serialize;

use crate::drift::{self, Drift};
use crate::error::{Error, exit};
use crate::host::Host;
use crate::release;
use crate::settings::Settings;
use crate::state::{Event, Quarantined, State};

/// The report, as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub commit: Option<String>,
    pub release: Option<String>,
    pub deployed_at: Option<String>,
    /// `current` as it is on disk (normally the same as `release`).
    pub current: Option<String>,
    /// The last run that changed something or failed, with its trigger.
    pub last_run: Option<Event>,
    /// When `plumb run` will reconcile next (if the daemon is running).
    pub next_run: Option<String>,
    pub quarantine: Vec<Quarantined>,
    pub drift: Vec<Drift>,
}

/// Gather the status of the host.
pub fn status(settings: &Settings, host: &dyn Host) -> Result<Status, Error> {
    let layout = &settings.layout;
    let state = State::load(host, &layout.state_file())?;
    Ok(Status {
        commit: state.deployed.as_ref().map(|d| d.commit.clone()),
        release: state.deployed.as_ref().map(|d| d.release.clone()),
        deployed_at: state.deployed.as_ref().map(|d| d.at.clone()),
        current: release::current_id(host, layout),
        last_run: state.history.last().cloned(),
        next_run: host
            .read(std::path::Path::new(super::daemon::NEXT_RUN))
            .ok()
            .map(|b| String::from_utf8_lossy(&b).trim().to_string()),
        quarantine: state.quarantine.clone(),
        drift: drift::detect(host, layout, &state),
    })
}

pub fn run(settings: &Settings, host: &dyn Host, json: bool) -> Result<u8, Error> {
    let status = status(settings, host)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("status serialises")
        );
        return Ok(exit::OK);
    }
    match (&status.commit, &status.release) {
        (Some(commit), Some(release)) => {
            println!("deployed: {commit}");
            println!(
                "release:  {release} (since {})",
                status.deployed_at.as_deref().unwrap_or("?")
            );
        }
        _ => println!("deployed: nothing yet"),
    }
    if let Some(run) = &status.last_run {
        println!(
            "last run: {} {} {}",
            run.at,
            run.result,
            crate::release::short(&run.commit)
        );
    }
    if let Some(next) = &status.next_run {
        println!("next run: {next} (plumb run)");
    }
    if status.quarantine.is_empty() {
        println!("quarantine: none");
    }
    for q in &status.quarantine {
        println!(
            "quarantined: {} since {}: {}",
            crate::release::short(&q.commit),
            q.at,
            q.reason
        );
    }
    if status.drift.is_empty() {
        println!("drift: none");
    }
    for d in &status.drift {
        println!("drift: {d}");
    }
    Ok(exit::OK)
}
