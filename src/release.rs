//! Release directories: built in full under a temporary name, fsynced, renamed
//! into place; `current` swapped with one `rename(2)`; old releases pruned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::desired::{Desired, DesiredFile, HealthCheck, SourceFile};
use crate::error::ApplyError;
use crate::host::Host;

/// Where plumb keeps its files, as host paths under the state directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub state_dir: PathBuf,
}

impl Layout {
    pub fn releases(&self) -> PathBuf {
        self.state_dir.join("releases")
    }
    pub fn release(&self, id: &str) -> PathBuf {
        self.releases().join(id)
    }
    pub fn current(&self) -> PathBuf {
        self.state_dir.join("current")
    }
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }
    pub fn mirror(&self) -> PathBuf {
        self.state_dir.join("repo.git")
    }
    /// Data of `app` that outlives releases.
    pub fn shared(&self, app: &str) -> PathBuf {
        self.state_dir.join("shared").join(app)
    }
    /// Archives of an app's shared data taken before its pre-switch hooks.
    pub fn backups(&self, app: &str) -> PathBuf {
        self.state_dir.join("backups").join(app)
    }
    pub fn journal(&self) -> PathBuf {
        self.state_dir.join("journal.json")
    }
    pub fn calls_log(&self) -> PathBuf {
        self.state_dir.join("host-calls.log")
    }
    /// The literal target of the owned link for host path `path`: through
    /// `current`, so one swap of `current` flips every existing link at once.
    pub fn link_target(&self, host: &dyn Host, path: &Path) -> PathBuf {
        host.real(&self.current().join("files").join(relative(path)))
    }
}

/// `release.json`: what a release holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    pub id: String,
    pub commit: String,
    pub created: String,
    /// Units enabled and running while this release is current.
    pub units: Vec<String>,
    /// sha256 and mode of every file, by path inside the release.
    pub manifest: BTreeMap<String, FileEntry>,
    /// What else the release needs to be switched to again without
    /// rendering: restart triggers, reloadable units, health checks.
    #[serde(default)]
    pub triggers: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub reloadable: BTreeSet<String>,
    #[serde(default)]
    pub health: Vec<HealthCheck>,
    #[serde(default)]
    pub fingerprint: String,
    /// Build key of each app (see `desired::AppBuild::key`).
    #[serde(default)]
    pub builds: BTreeMap<String, String>,
    /// Files the builds produced, with their hashes (mode `built`).
    #[serde(default)]
    pub outputs: BTreeMap<String, FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub sha256: String,
    pub mode: String,
}

impl ReleaseInfo {
    /// Read `releases/<id>/release.json`.
    pub fn load(host: &dyn Host, layout: &Layout, id: &str) -> Option<ReleaseInfo> {
        let bytes = host.read(&layout.release(id).join("release.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// The desired state a release holds, read back from its files: what a
/// rollback switches to, without rendering anything again.
pub fn desired_of(
    host: &dyn Host,
    layout: &Layout,
    info: &ReleaseInfo,
) -> std::io::Result<Desired> {
    let dir = layout.release(&info.id);
    let mut desired = Desired {
        commit: info.commit.clone(),
        fingerprint: info.fingerprint.clone(),
        units: info.units.clone(),
        triggers: info.triggers.clone(),
        reloadable: info.reloadable.clone(),
        health: info.health.clone(),
        ..Desired::default()
    };
    // Only the keys matter once built: the planner compares them.
    for (app, key) in &info.builds {
        let build = crate::desired::AppBuild {
            user: None,
            steps: Vec::new(),
            timeout_secs: 0,
            shared: Vec::new(),
            key: key.clone(),
        };
        desired.builds.insert(app.clone(), build);
    }
    for (path, entry) in &info.manifest {
        let bytes = host.read(&dir.join(path))?;
        let mode = u32::from_str_radix(&entry.mode, 8).unwrap_or(0o644);
        if let Some(host_path) = path.strip_prefix("files") {
            let file = DesiredFile {
                bytes,
                mode,
                origin: format!("release {}", info.id),
            };
            desired.files.insert(PathBuf::from(host_path), file);
        } else if let Some((app, rel)) = path.strip_prefix("app/").and_then(|p| p.split_once('/')) {
            desired
                .apps
                .entry(app.to_string())
                .or_default()
                .push(SourceFile {
                    path: PathBuf::from(rel),
                    bytes,
                    executable: mode & 0o111 != 0,
                });
        }
    }
    Ok(desired)
}

fn relative(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every file a release holds, by path inside the release, with its mode.
fn contents(desired: &Desired) -> Vec<(PathBuf, &[u8], u32)> {
    let mut out = Vec::new();
    for (path, file) in &desired.files {
        out.push((
            Path::new("files").join(relative(path)),
            &file.bytes[..],
            file.mode,
        ));
    }
    for (app, files) in &desired.apps {
        for file in files {
            let mode = if file.executable { 0o755 } else { 0o644 };
            out.push((
                Path::new("app").join(app).join(&file.path),
                &file.bytes[..],
                mode,
            ));
        }
    }
    out
}

/// The manifest `desired` will have; pure, so a plan can compare it.
///
/// Source files under an app's shared paths are left out: in the release
/// they are replaced by links to data that changes on its own.
pub fn manifest(desired: &Desired) -> BTreeMap<String, FileEntry> {
    let shared: Vec<PathBuf> = desired
        .builds
        .iter()
        .flat_map(|(app, b)| {
            b.shared
                .iter()
                .map(move |p| Path::new("app").join(app).join(p))
        })
        .collect();
    contents(desired)
        .into_iter()
        .filter(|(path, _, _)| !shared.iter().any(|s| path.starts_with(s)))
        .map(|(path, bytes, mode)| {
            let entry = FileEntry {
                sha256: sha256(bytes),
                mode: format!("{mode:04o}"),
            };
            (path.display().to_string(), entry)
        })
        .collect()
}

/// The first 12 characters of a commit id, as plumb prints them.
pub fn short(commit: &str) -> &str {
    &commit[..12.min(commit.len())]
}

/// A fresh release id: UTC time to the millisecond, then the short commit.
pub fn new_id(host: &dyn Host, layout: &Layout, commit: &str) -> String {
    let now = jiff::Timestamp::now();
    let base = format!("{}-{}", now.strftime("%Y%m%dT%H%M%S%.3fZ"), short(commit));
    let mut id = base.clone();
    let mut n = 1;
    while host.exists(&layout.release(&id)) {
        n += 1;
        id = format!("{base}.{n}");
    }
    id
}

/// Write the release in a temporary directory, sync it, and rename it into
/// `releases/<id>`. Nothing under that name exists until it is complete.
pub fn build(
    host: &dyn Host,
    layout: &Layout,
    id: &str,
    desired: &Desired,
    previous: Option<&ReleaseInfo>,
) -> Result<ReleaseInfo, ApplyError> {
    let releases = layout.releases();
    let tmp = releases.join(format!(".tmp-{id}"));
    host.create_dir_all(&releases)
        .map_err(ApplyError::io("create", &releases))?;
    if host.exists(&tmp) {
        host.remove_dir_all(&tmp)
            .map_err(ApplyError::io("remove", &tmp))?;
    }
    let mut dirs = std::collections::BTreeSet::new();
    for (path, bytes, mode) in contents(desired) {
        let full = tmp.join(&path);
        let dir = full.parent().expect("release files have a parent");
        if dirs.insert(dir.to_path_buf()) {
            host.create_dir_all(dir)
                .map_err(ApplyError::io("create", dir))?;
        }
        host.write_file(&full, bytes, mode)
            .map_err(ApplyError::io("write", &full))?;
    }
    let completed = match crate::appdir::complete(host, layout, &tmp, desired, previous) {
        Ok(completed) => completed,
        Err(error) => {
            // A failed build leaves nothing behind.
            let _ = host.remove_dir_all(&tmp);
            return Err(error);
        }
    };
    let info = ReleaseInfo {
        id: id.to_string(),
        commit: desired.commit.clone(),
        created: jiff::Timestamp::now().to_string(),
        units: desired.units.clone(),
        manifest: manifest(desired),
        triggers: desired.triggers.clone(),
        reloadable: desired.reloadable.clone(),
        health: desired.health.clone(),
        fingerprint: desired.fingerprint.clone(),
        builds: completed.builds,
        outputs: completed.outputs,
    };
    let json = tmp.join("release.json");
    let bytes = serde_json::to_vec_pretty(&info).expect("release info serialises");
    host.write_file(&json, &bytes, 0o644)
        .map_err(ApplyError::io("write", &json))?;
    // One syncfs flushes every file and directory written above.
    host.sync_fs(&tmp).map_err(ApplyError::io("sync", &tmp))?;
    let dest = layout.release(id);
    host.rename(&tmp, &dest)
        .map_err(ApplyError::io("rename", &dest))?;
    host.sync(&releases)
        .map_err(ApplyError::io("fsync", &releases))?;
    Ok(info)
}

/// Point `current` at `releases/<id>`: a new link under a temporary name,
/// renamed over `current`. Never remove-then-create.
pub fn switch(host: &dyn Host, layout: &Layout, id: &str) -> Result<(), ApplyError> {
    let tmp = layout.state_dir.join(".current.tmp");
    if host.exists(&tmp) {
        host.remove_file(&tmp)
            .map_err(ApplyError::io("remove", &tmp))?;
    }
    let target = Path::new("releases").join(id);
    host.symlink(&target, &tmp)
        .map_err(ApplyError::io("symlink", &tmp))?;
    let current = layout.current();
    host.rename(&tmp, &current)
        .map_err(ApplyError::io("rename", &current))?;
    host.sync(&layout.state_dir)
        .map_err(ApplyError::io("fsync", &layout.state_dir))
}

/// The release id `current` points at, if any.
pub fn current_id(host: &dyn Host, layout: &Layout) -> Option<String> {
    let target = host.read_link(&layout.current()).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// Remove all but the newest `keep` releases; never `keep_ids`
/// (current and previous), and clean up unfinished temporary builds.
pub fn prune(
    host: &dyn Host,
    layout: &Layout,
    keep: usize,
    keep_ids: &[&str],
) -> Result<Vec<String>, ApplyError> {
    let releases = layout.releases();
    let mut names = host
        .list_dir(&releases)
        .map_err(ApplyError::io("list", &releases))?;
    names.sort();
    let mut removed = Vec::new();
    let finished: Vec<&String> = names.iter().filter(|n| !n.starts_with('.')).collect();
    let excess = finished.len().saturating_sub(keep);
    for name in names.iter().filter(|n| n.starts_with(".tmp-")) {
        let path = releases.join(name);
        host.remove_dir_all(&path)
            .map_err(ApplyError::io("remove", &path))?;
    }
    for name in finished.into_iter().take(excess) {
        if keep_ids.contains(&name.as_str()) {
            continue;
        }
        let path = releases.join(name);
        host.remove_dir_all(&path)
            .map_err(ApplyError::io("remove", &path))?;
        removed.push(name.clone());
    }
    Ok(removed)
}
