//! `plumb status [--json] [--verify]`: what is deployed, the last run,
//! quarantine and drift. Reads only; takes no lock and fetches nothing.

use std::path::Path;

use serde::Serialize;

use crate::apply::observe::{self, Depth, Drift};
use crate::apply::record::LastRun;
use crate::apply::{StateStore, release};
use crate::error::{Error, exit};
use crate::host::Host;
use crate::plan::short;
use crate::plan::state::{Event, Quarantined};
use crate::render::desired::TlsPending;
use crate::spec::settings::Settings;
use crate::ui;

/// Where the daemon publishes its next run for `plumb status`.
pub const NEXT_RUN: &str = "/run/plumb/next-run";

/// The outcome of the last reconcile (on tmpfs: an up-to-date run writes
/// nothing to disk; gone after a reboot, until the next run).
pub const LAST_RUN: &str = "/run/plumb/last-run.json";

/// The report, as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub commit: Option<String>,
    pub release: Option<String>,
    pub deployed_at: Option<String>,
    /// `current` as it is on disk (normally the same as `release`).
    pub current: Option<String>,
    /// The outcome of the last reconcile, whatever it was.
    pub last_run: Option<LastRun>,
    /// The last run that changed something or failed, with its trigger.
    pub last_change: Option<Event>,
    /// When `plumb run` will reconcile next (if the daemon is running).
    pub next_run: Option<String>,
    pub quarantine: Vec<Quarantined>,
    pub drift: Vec<Drift>,
    /// Sites of the current release served over HTTP until their
    /// certificate exists.
    pub tls_pending: Vec<TlsPending>,
    /// Since when the host is detached (`plumb detach`), if it is.
    pub detached: Option<String>,
    /// Each container app: the image its release names, and the one its
    /// container runs (as podman says; none when it is not running).
    pub containers: Vec<ContainerStatus>,
    /// What each publish target of a site serves.
    pub published: crate::apply::publish::Published,
}

#[derive(Debug, Serialize)]
pub struct ContainerStatus {
    pub app: String,
    pub image: String,
    pub running: Option<String>,
}

/// Gather the status of the host.
pub fn status(settings: &Settings, host: &dyn Host, depth: Depth) -> Result<Status, Error> {
    let layout = &settings.layout;
    let store = StateStore::load(host, &layout.state_file())?;
    let state = &store.state;
    let current = observe::current(host, layout);
    Ok(Status {
        commit: state.deployed.as_ref().map(|d| d.commit.clone()),
        release: state.deployed.as_ref().map(|d| d.release.clone()),
        deployed_at: state.deployed.as_ref().map(|d| d.at.clone()),
        current: release::current_id(host, layout),
        last_run: LastRun::load(host, Path::new(LAST_RUN)),
        last_change: state.history.last().cloned(),
        next_run: host
            .files()
            .read(std::path::Path::new(NEXT_RUN))
            .ok()
            .map(|b| String::from_utf8_lossy(&b).trim().to_string()),
        quarantine: state.quarantine.clone(),
        drift: observe::detect(host, layout, state, depth),
        detached: state.detached.clone(),
        tls_pending: current
            .as_ref()
            .map(|info| info.tls_pending.clone())
            .unwrap_or_default(),
        containers: current
            .iter()
            .flat_map(|info| &info.images)
            .map(|(app, image)| ContainerStatus {
                app: app.clone(),
                image: image.clone(),
                running: crate::apply::images::running(host, app),
            })
            .collect(),
        published: crate::apply::publish::Published::load(host, layout),
    })
}

pub fn run(settings: &Settings, host: &dyn Host, json: bool, verify: bool) -> Result<u8, Error> {
    let depth = if verify { Depth::Full } else { Depth::Quick };
    let status = status(settings, host, depth)?;
    if json {
        ui::out(serde_json::to_string_pretty(&status).expect("status serialises"));
        return Ok(exit::OK);
    }
    match (&status.commit, &status.release) {
        (Some(commit), Some(release)) => {
            ui::out(format_args!("deployed: {commit}"));
            ui::out(format_args!(
                "release:  {release} (since {})",
                status.deployed_at.as_deref().unwrap_or("?")
            ));
        }
        _ => ui::out("deployed: nothing yet"),
    }
    if let Some(at) = &status.detached {
        ui::out(format_args!(
            "detached: since {at}; plumb changes nothing until `plumb attach`"
        ));
    }
    if let Some(run) = &status.last_run {
        ui::out(format_args!(
            "last run: {} {} (exit {}, {})",
            run.at, run.outcome, run.exit_code, run.trigger
        ));
        if let Some(first) = run.message.as_deref().and_then(|m| m.lines().next()) {
            ui::out(format_args!("  {first}"));
        }
    }
    if let Some(change) = &status.last_change {
        ui::out(format_args!(
            "last change: {} {} {}",
            change.at,
            change.result,
            short(&change.commit)
        ));
        if let Some(reason) = &change.reason {
            ui::out(format_args!("  because: {reason}"));
        }
    }
    if let Some(next) = &status.next_run {
        ui::out(format_args!("next run: {next} (plumb run)"));
    }
    if status.quarantine.is_empty() {
        ui::out("quarantine: none");
    }
    for q in &status.quarantine {
        ui::out(format_args!(
            "quarantined: {} since {}: {}",
            short(&q.commit),
            q.at,
            q.reason
        ));
    }
    for t in &status.tls_pending {
        ui::out(format_args!(
            "tls: {} is served over HTTP until {} exists (docs/tls.md)",
            t.app, t.certificate
        ));
    }
    for c in &status.containers {
        match &c.running {
            Some(running) if *running == c.image => {
                ui::out(format_args!("container: {} runs {running}", c.app))
            }
            Some(running) => ui::out(format_args!(
                "container: {} runs {running}, but the release names {}: restart {}.service",
                c.app, c.image, c.app
            )),
            None => ui::out(format_args!(
                "container: {} is not running (its release names {})",
                c.app, c.image
            )),
        }
    }
    for (name, target) in &status.published.targets {
        let serves = target.serves.as_deref().unwrap_or("nothing yet");
        match &target.error {
            None => ui::out(format_args!(
                "published: {name} serves release {serves} ({})",
                target.at
            )),
            Some(error) => ui::out(format_args!(
                "published: {name} serves release {serves}; publishing release {} failed at {}: {error}",
                status.published.release, target.at
            )),
        }
    }
    if status.drift.is_empty() {
        ui::out("drift: none");
    }
    for d in &status.drift {
        ui::out(format_args!("drift: {d}"));
    }
    Ok(exit::OK)
}
