//! `plumb render [DIR] --out OUT`: a deploy repo working tree rendered for
//! one host into OUT, in the host's layout (`OUT/etc/nginx/conf.d/…`), for
//! review, for diffing two hosts, or for a machine that runs no agent.
//! Nothing is deployed, no secret is decrypted.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{ConfigError, Error, exit};
use crate::host::Host;
use crate::spec::layout::relative;
use crate::spec::settings::Settings;
use crate::ui;

use super::validate::{read_tree, render_tree, repo_dir, scratch};

pub fn run(settings: &Settings, dir: &Path, out: &Path) -> Result<u8, Error> {
    let invalid = |what: String| Error::from(ConfigError::Invalid(what));
    if fs::read_dir(out).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(invalid(format!(
            "--out {} is not empty: render into a new or empty directory",
            out.display()
        )));
    }
    let dir = repo_dir(dir, settings);
    let tree = read_tree(&dir, settings.limits)?;
    let scratch = scratch()?;
    let rendered = render_tree(settings, &tree, &settings.hostname, &scratch);
    let _ = fs::remove_dir_all(scratch.files().root());
    let desired = rendered?;
    ui::line(format_args!(
        "rendering {} for host {} ({}) into {}",
        dir.display(),
        settings.hostname,
        super::deploy::overlay_note(&desired),
        out.display()
    ));
    for (path, file) in &desired.files {
        let target = out.join(relative(path));
        let written = target
            .parent()
            .map(fs::create_dir_all)
            .unwrap_or(Ok(()))
            .and_then(|_| {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(file.mode)
                    .open(&target)
            })
            .and_then(|mut f| f.write_all(&file.bytes))
            // Exactly the mode it would have on the host, whatever the umask.
            .and_then(|_| fs::set_permissions(&target, fs::Permissions::from_mode(file.mode)));
        written.map_err(|e| invalid(format!("cannot write {}: {e}", target.display())))?;
        ui::out(path.display());
    }
    for secret in desired.secrets.values() {
        ui::line(format_args!(
            "  secret {}/{} not rendered (decrypted on the host only)",
            secret.app, secret.name
        ));
    }
    Ok(exit::OK)
}
