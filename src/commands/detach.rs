//! `plumb detach` and `plumb attach`: a way out. Detaching turns every link
//! plumb placed in `/etc` and elsewhere into a plain copy of its file, and
//! stops plumb from managing the host (reconcile refuses) while keeping the
//! state, so `attach` can take the host back where it was.

use std::path::PathBuf;

use crate::apply::{StateStore, release};
use crate::error::{ApplyError, ConfigError, Error, exit};
use crate::host::{Host, Kind, lock};
use crate::plan::release::Key;
use crate::spec::settings::Settings;
use crate::ui;

pub fn detach(settings: &Settings, host: &dyn Host) -> Result<u8, Error> {
    let layout = &settings.layout;
    let files = host.files();
    let _lock = lock::acquire(&files.real(&settings.lock_path), false)?;
    let mut store = StateStore::load(host, &layout.state_file())?;
    if let Some(at) = &store.state.detached {
        ui::line(format_args!("already detached since {at}"));
        return Ok(exit::OK);
    }
    let id = release::current_id(host, layout).ok_or_else(|| {
        ConfigError::Invalid("nothing is deployed here: there is nothing to detach".into())
    })?;
    let mut copied = 0;
    for path in store.state.owned.clone() {
        if !files.stat(&path).is_ok_and(|s| s.kind == Kind::Symlink) {
            continue; // not plumb's link any more: left as it is
        }
        let file = layout.release_file(&id, &Key::file(&path));
        let stat = files.stat(&file).map_err(ApplyError::io("read", &file))?;
        let bytes = files.read(&file).map_err(ApplyError::io("read", &file))?;
        // A copy renamed over the link: the path is never missing.
        files
            .write_atomic(&path, &bytes, stat.mode)
            .map_err(ApplyError::io("write", &path))?;
        ui::line(format_args!("  copy {}", path.display()));
        copied += 1;
    }
    store.state.detached = Some(crate::apply::record::now());
    store.save(host).map_err(Error::from)?;
    ui::line(format_args!(
        "detached: {copied} file(s) are plain files now; plumb will not change this host until `plumb attach`"
    ));
    ui::line(format_args!(
        "still in use: {} (the apps run from their release there, secrets too; secrets are on tmpfs and gone after a reboot)",
        layout.current().display()
    ));
    ui::line("stop the scheduler too: systemctl disable --now plumb.timer (or plumb-daemon)");
    Ok(exit::OK)
}

pub fn attach(settings: &Settings, host: &dyn Host) -> Result<u8, Error> {
    let layout = &settings.layout;
    let files = host.files();
    let _lock = lock::acquire(&files.real(&settings.lock_path), false)?;
    let mut store = StateStore::load(host, &layout.state_file())?;
    if store.state.detached.is_none() {
        ui::line("not detached: plumb manages this host");
        return Ok(exit::OK);
    }
    let id = release::current_id(host, layout)
        .ok_or_else(|| ConfigError::Invalid("the current release is gone: cannot attach".into()))?;
    // Check everything first: a copy changed since `detach` is not replaced.
    let mut changed: Vec<PathBuf> = Vec::new();
    for path in &store.state.owned {
        if !files.stat(path).is_ok_and(|s| s.kind == Kind::File) {
            continue;
        }
        let release_file = layout.release_file(&id, &Key::file(path));
        if files.read(path).ok() != files.read(&release_file).ok() {
            changed.push(path.clone());
        }
    }
    if !changed.is_empty() {
        let list: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
        return Err(ConfigError::Invalid(format!(
            "changed since `plumb detach`: {}. Move each away (or put the deployed version back), then attach again",
            list.join(", ")
        ))
        .into());
    }
    let mut linked = 0;
    for path in store.state.owned.clone() {
        let target = files.real(&layout.link_target(&path));
        files
            .place_link(&target, &path)
            .map_err(ApplyError::io("link", &path))?;
        linked += 1;
    }
    store.state.detached = None;
    store.save(host).map_err(Error::from)?;
    ui::line(format_args!(
        "attached: {linked} link(s) back in place; the next reconcile brings the host to the branch head"
    ));
    Ok(exit::OK)
}
