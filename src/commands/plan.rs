//! `plumb plan`: what `reconcile` would do now, with unified diffs of every
//! rendered file against what is live. Changes nothing on the host.

use similar::TextDiff;

use crate::error::{Error, exit};
use crate::host::Host;
use crate::lock;
use crate::plan::{self, Change};
use crate::release::{self, Layout};
use crate::settings::Settings;
use crate::source::Mirror;
use crate::state::State;

use super::common::{self, short};

pub fn run(settings: &Settings, host: &dyn Host) -> Result<u8, Error> {
    let layout = &settings.layout;
    // The fetch writes the mirror: never at the same time as a reconcile.
    let _lock = lock::acquire(&host.real(&settings.lock_path), false)?;
    host.create_dir_all(&layout.state_dir)
        .map_err(crate::error::ApplyError::io("create", &layout.state_dir))?;
    let state = State::load(host, &layout.state_file())?;
    let mirror = Mirror::open(&host.real(&layout.mirror()))?;
    let commit = mirror.fetch(&settings.remote, &settings.branch)?;
    if let Some(q) = state.quarantined(&commit) {
        println!(
            "note: {} is quarantined ({}); reconcile will not deploy it without --force",
            short(&commit),
            q.reason
        );
    }
    let desired = common::render_commit(settings, host, &mirror, &commit)?;
    let observed = common::observe(host, layout, &state, &desired);
    let plan = plan::plan(&desired, &observed, "<new release>")?;
    if plan.is_empty() {
        println!("no changes: the host is at {}", short(&commit));
        return Ok(exit::OK);
    }
    println!(
        "plan for {} ({}) on host {}",
        short(&commit),
        settings.branch,
        settings.hostname
    );
    common::print_plan(&plan);
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
    let Some(id) = release::current_id(host, layout) else {
        return Vec::new();
    };
    let file = layout
        .release(&id)
        .join("files")
        .join(path.strip_prefix("/").unwrap_or(path));
    host.read(&file).unwrap_or_default()
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
            print!("{text}");
        }
        _ => println!("binary file {path} differs"),
    }
}
