//! `plumb plan`: what `reconcile` would do now, with unified diffs of every
//! rendered file against what is live. Changes nothing on the host.

use serde::Serialize;
use similar::TextDiff;

use crate::apply::StateStore;
use crate::apply::observe;
use crate::error::{Error, exit};
use crate::host::{Host, lock};
use crate::plan::{Change, short};
use crate::source::Mirror;
use crate::spec::layout::Layout;
use crate::spec::settings::Settings;
use crate::ui;

use super::deploy;

/// `plumb plan --json`.
#[derive(Debug, Serialize)]
struct PlanReport<'a> {
    commit: &'a str,
    branch: &'a str,
    hostname: &'a str,
    /// The host overlay applied, if any.
    overlay: Option<&'a str>,
    /// Whether reconcile would change the host.
    changes: bool,
    release: &'a str,
    new_release: bool,
    files: Vec<Entry>,
    secrets: Vec<Entry>,
    /// Container images the release runs, and whether each must be built.
    images: Vec<ImageEntry>,
    steps: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ImageEntry {
    app: String,
    tag: String,
    build: bool,
}

#[derive(Debug, Serialize)]
struct Entry {
    name: String,
    change: Change,
}

pub fn run(settings: &Settings, host: &dyn Host, json: bool) -> Result<u8, Error> {
    let layout = &settings.layout;
    let files = host.files();
    // The fetch writes the mirror: never at the same time as a reconcile.
    let _lock = lock::acquire(&files.real(&settings.lock_path), false)?;
    crate::apply::record::prepare_dirs(host, layout)?;
    let mut store = StateStore::load(host, &layout.state_file())?;
    let mirror = Mirror::open(&files.real(&layout.mirror()))?;
    let deployed = store.state.deployed.as_ref().map(|d| d.commit.as_str());
    let commit = mirror.fetch(settings.remote()?, &settings.branch, deployed)?;
    if let Some(q) = store.state.quarantined(&commit).filter(|_| !json) {
        ui::line(format_args!(
            "note: {} is quarantined ({}); reconcile will not deploy it without --force",
            short(&commit),
            q.reason
        ));
    }
    let desired = deploy::render_commit(settings, host, &mirror, &commit)?;
    let plan = deploy::prepare(settings, host, &mut store, &desired, "plan", true)?.plan;
    // An image is built when podman does not hold its tag (the hash of its
    // context): a query, nothing is built here.
    let images: Vec<ImageEntry> = desired
        .images
        .iter()
        .map(|(app, image)| ImageEntry {
            app: app.clone(),
            tag: image.tag.clone(),
            build: !crate::apply::images::exists(host, &image.tag).unwrap_or(false),
        })
        .collect();
    if json {
        let entries = |list: Vec<(String, Change)>| {
            list.into_iter()
                .map(|(name, change)| Entry { name, change })
                .collect()
        };
        let report = PlanReport {
            commit: &commit,
            branch: &settings.branch,
            hostname: &settings.hostname,
            overlay: desired.overlay.as_deref(),
            changes: !plan.is_noop(),
            release: &plan.release,
            new_release: plan.new_release,
            files: entries(
                plan.changes
                    .iter()
                    .map(|(p, c)| (p.display().to_string(), *c))
                    .collect(),
            ),
            secrets: entries(plan.secrets.clone()),
            images,
            steps: plan
                .actions
                .iter()
                .filter_map(|a| plan.shown(a))
                .map(|s| s.to_string())
                .collect(),
        };
        ui::out(serde_json::to_string_pretty(&report).expect("plan serialises"));
        return Ok(if plan.is_noop() {
            exit::OK
        } else {
            exit::CHANGES
        });
    }
    if plan.is_noop() {
        ui::line(format_args!(
            "no changes: the host is at {}",
            short(&commit)
        ));
        return Ok(exit::OK);
    }
    ui::line(format_args!(
        "plan for {} ({}) on host {} ({})",
        short(&commit),
        settings.branch,
        settings.hostname,
        deploy::overlay_note(&desired)
    ));
    deploy::print_changes(&plan);
    for image in &images {
        if image.build {
            ui::step(format_args!(
                "image {} rebuilt: its context app/{}/ changed",
                image.tag, image.app
            ));
        } else {
            ui::step(format_args!("image {} reused", image.tag));
        }
    }
    deploy::print_steps(&plan);
    for (path, change) in &plan.changes {
        let old = match change {
            Change::Created => Vec::new(),
            _ => live(host, layout, path),
        };
        let new = desired
            .files
            .get(path)
            .map(|f| f.bytes.clone())
            .unwrap_or_default();
        print_diff(&path.display().to_string(), &old, &new, short(&commit));
    }
    Ok(exit::CHANGES)
}

/// The bytes of `path` in the current release.
fn live(host: &dyn Host, layout: &Layout, path: &std::path::Path) -> Vec<u8> {
    let Some(info) = observe::current(host, layout) else {
        return Vec::new();
    };
    let key = crate::plan::release::Key::file(path);
    host.files()
        .read(&layout.release_file(&info.id, &key))
        .unwrap_or_default()
}

fn print_diff(path: &str, old: &[u8], new: &[u8], commit: &str) {
    match (std::str::from_utf8(old), std::str::from_utf8(new)) {
        (Ok(old), Ok(new)) => {
            let diff = TextDiff::from_lines(old, new);
            let text = diff
                .unified_diff()
                .context_radius(3)
                .header(&format!("{path} (live)"), &format!("{path} ({commit})"))
                .to_string();
            ui::raw(&text);
        }
        _ => ui::line(format_args!("binary file {path} differs")),
    }
}
