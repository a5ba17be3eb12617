//! Release directories: written in full under a temporary name, flushed,
//! renamed into place; `current` swapped with one `rename(2)`; old releases
//! pruned. A file that did not change since the previous release is a hard
//! link to it, and a release is written into the directory of the one it
//! will prune (`recycle`), where most of those links already are: writing a
//! release costs what changed, and an unchanged unit file keeps its inode
//! and mtime (systemd sees no change on disk).

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use crate::error::ApplyError;
use crate::host::{Files, Host, Kind};
use crate::plan::release::{FileEntry, FileStat, ReleaseInfo};
use crate::plan::state::State;
use crate::render::desired::{Desired, SourceFile};
use crate::spec::layout::{Layout, relative};

/// Read `releases/<id>/release.json`.
pub fn load(host: &dyn Host, layout: &Layout, id: &str) -> Option<ReleaseInfo> {
    load_as(host, layout, id)
}

/// Read the fields of `releases/<id>/release.json` that `T` names (the
/// rest is skipped, not built: its manifest is most of a big release's).
pub fn load_as<T: serde::de::DeserializeOwned>(
    host: &dyn Host,
    layout: &Layout,
    id: &str,
) -> Option<T> {
    let bytes = host
        .files()
        .read(&layout.release(id).join("release.json"))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The release id `current` points at, if any.
pub fn current_id(host: &dyn Host, layout: &Layout) -> Option<String> {
    let target = host.files().read_link(&layout.current()).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// Names of the finished releases on disk, oldest first.
pub fn list(host: &dyn Host, layout: &Layout) -> std::io::Result<Vec<String>> {
    match host.files().list_dir(&layout.releases()) {
        Ok(mut names) => {
            names.retain(|n| !n.starts_with('.'));
            Ok(names)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// A fresh release id: UTC time to the millisecond, then the short commit.
pub fn new_id(host: &dyn Host, layout: &Layout, commit: &str) -> String {
    let now = chrono::Utc::now();
    let base = format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%S%.3fZ"),
        crate::plan::short(commit)
    );
    let mut id = base.clone();
    let mut n = 1;
    while host.files().stat(&layout.release(&id)).is_ok() {
        n += 1;
        id = format!("{base}.{n}");
    }
    id
}

/// What a release is written from.
pub struct Source<'a> {
    pub desired: &'a Desired,
    /// `release.json` as planned (manifest, triggers, builds).
    pub planned: &'a ReleaseInfo,
    /// The current release, whose unchanged files are reused.
    pub previous: Option<&'a ReleaseInfo>,
    /// Files of the previous release changed by hand: never reused.
    pub tampered: &'a BTreeSet<String>,
    /// Files of the previous release intact but touched: reused, with a
    /// fresh stat (the others keep theirs: a link has its file's stat).
    pub restat: &'a BTreeSet<String>,
    /// How to read the commit's secrets.
    pub keys: &'a super::secrets::Keys,
    /// A release the deploy would prune (`recyclable`): its directory is
    /// the new release's, with the files it shares with this one kept.
    pub recycle: Option<String>,
}

/// Write release `id`: every file, the apps completed (shared data links,
/// reused or fresh builds), `release.json` with each file's stat; one
/// `syncfs`; then the rename that makes it exist. Nothing under the final
/// name exists until it is complete; a failure leaves nothing behind.
pub fn build(
    host: &dyn Host,
    layout: &Layout,
    id: &str,
    source: &Source,
) -> Result<ReleaseInfo, ApplyError> {
    let files = host.files();
    let releases = layout.releases();
    let tmp = releases.join(format!(".tmp-{id}"));
    files
        .create_dir_all(&releases)
        .map_err(ApplyError::io("create", &releases))?;
    if files.stat(&tmp).is_ok() {
        files
            .remove_dir_all(&tmp)
            .map_err(ApplyError::io("remove", &tmp))?;
    }
    let kept = match &source.recycle {
        Some(old) => recycle(host, layout, old, &tmp, source)?,
        None => HashSet::new(),
    };
    files
        .create_dir_all(&tmp)
        .map_err(ApplyError::io("create", &tmp))?;
    let result = write_all(host, layout, &tmp, id, source, &kept);
    let mut info = match result {
        Ok(info) => info,
        Err(error) => {
            // A failed build leaves nothing behind.
            let _ = files.remove_dir_all(&tmp);
            return Err(error);
        }
    };
    info.id = id.to_string();
    info.created = super::record::now();
    let json = tmp.join("release.json");
    let bytes = serde_json::to_vec_pretty(&info).expect("release info serialises");
    files
        .write_new(&json, &bytes, 0o644)
        .map_err(ApplyError::io("write", &json))?;
    // One syncfs flushes every file and directory written above.
    files.sync_fs(&tmp).map_err(ApplyError::io("sync", &tmp))?;
    let dest = layout.release(id);
    files
        .rename(&tmp, &dest)
        .map_err(ApplyError::io("rename", &dest))?;
    files
        .sync(&releases)
        .map_err(ApplyError::io("fsync", &releases))?;
    Ok(info)
}

/// Take release `old` as the start of the one written under `tmp`: renamed
/// (it is no longer a release), then swept of all but the files it may keep.
/// Returns their keys; if the sweep fails, the directory is emptied instead.
fn recycle(
    host: &dyn Host,
    layout: &Layout,
    old: &str,
    tmp: &Path,
    source: &Source,
) -> Result<HashSet<String>, ApplyError> {
    let files = host.files();
    let releases = layout.releases();
    if files.rename(&layout.release(old), tmp).is_err() {
        return Ok(HashSet::new()); // written from scratch; prune removes it
    }
    // Durable before the first file of it changes: a crash never brings
    // back a release under its name with files missing.
    files
        .sync(&releases)
        .map_err(ApplyError::io("fsync", &releases))?;
    let keepable = super::recycle::Keepable::of(source);
    let like = files
        .stat(&releases)
        .map_err(ApplyError::io("stat", &releases))?;
    match super::recycle::sweep(files, tmp, &keepable, &like) {
        Ok(kept) => Ok(kept),
        Err(_) => {
            files
                .remove_dir_all(tmp)
                .map_err(ApplyError::io("remove", tmp))?;
            Ok(HashSet::new())
        }
    }
}

fn write_all(
    host: &dyn Host,
    layout: &Layout,
    tmp: &Path,
    id: &str,
    source: &Source,
    kept: &HashSet<String>,
) -> Result<ReleaseInfo, ApplyError> {
    let files = host.files();
    let mut info = source.planned.clone();
    let mut dirs = BTreeSet::new();
    // Bytes are asked for only when a file is not reused from the previous
    // release: an unchanged app source is never read out of git again.
    let mut write = |key: String,
                     bytes: &dyn Fn() -> Result<Vec<u8>, ApplyError>,
                     mode: u32,
                     reusable: bool| {
        if kept.contains(&key) {
            // The recycled release's link to the current release's file.
            let stat = source
                .previous
                .and_then(|prev| prev.manifest.get(&key)?.stat);
            if let Some(entry) = info.manifest.get_mut(&key) {
                entry.stat = stat;
            }
            return Ok(());
        }
        let full = tmp.join(&key);
        let dir = full
            .parent()
            .expect("release files have a parent")
            .to_path_buf();
        if dirs.insert(dir.clone()) {
            files
                .create_dir_all(&dir)
                .map_err(ApplyError::io("create", &dir))?;
        }
        let reuse = source.previous.filter(|prev| {
            reusable
                && !source.tampered.contains(&key)
                && prev
                    .manifest
                    .get(&key)
                    .zip(info.manifest.get(&key))
                    .is_some_and(|(a, b)| a.same_content(b))
        });
        let linked = reuse.is_some_and(|prev| {
            files
                .hard_link(&layout.release_file(&prev.id, &key), &full)
                .is_ok()
        });
        let recorded = reuse
            .filter(|_| linked && !source.restat.contains(&key))
            .and_then(|prev| prev.manifest.get(&key)?.stat);
        if !linked {
            files
                .write_new(&full, &bytes()?, mode)
                .map_err(ApplyError::io("write", &full))?;
        }
        match (recorded, info.manifest.get_mut(&key)) {
            (Some(stat), Some(entry)) => entry.stat = Some(stat),
            (_, entry) => stat_into(files, &full, entry),
        }
        Ok::<(), ApplyError>(())
    };
    for (path, file) in &source.desired.files {
        let key = format!("files/{}", relative(path).display());
        write(key, &|| Ok(file.bytes.clone()), file.mode, true)?;
    }
    for (app, sources) in &source.desired.apps {
        if super::appdir::reused_build(source, app).is_some() {
            continue; // `appdir::complete` links the previous build's tree
        }
        let build = source.desired.builds.get(app);
        let shared: &[String] = build.map(|b| b.shared.as_slice()).unwrap_or_default();
        // A build writes its directory as the app's user: it gets fresh
        // copies, never links to a live release's files.
        let reusable = build.is_none_or(|b| b.steps.is_empty());
        for file in sources {
            let key = format!("app/{app}/{}", file.path.display());
            let mode = if file.executable { 0o755 } else { 0o644 };
            if shared.iter().any(|s| file.path.starts_with(s)) {
                // Seeds the shared data the first time; not part of the manifest.
                let full = tmp.join(&key);
                if let Some(dir) = full.parent() {
                    files
                        .create_dir_all(dir)
                        .map_err(ApplyError::io("create", dir))?;
                }
                files
                    .write_new(&full, &source_bytes(file, &key)?, mode)
                    .map_err(ApplyError::io("write", &full))?;
                continue;
            }
            write(key.clone(), &|| source_bytes(file, &key), mode, reusable)?;
        }
    }
    let completed = super::appdir::complete(host, layout, tmp, source)?;
    info.outputs = completed;
    // The sources of a reused build are links to the previous release's:
    // recorded with the stat they have there.
    for app in source.desired.apps.keys() {
        if super::appdir::reused_build(source, app).is_none() {
            continue;
        }
        let prefix = format!("app/{app}/");
        let keys: Vec<String> = info
            .manifest
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            stat_into(files, &tmp.join(&key), info.manifest.get_mut(&key));
        }
        // Outputs come with the previous release's record: a touched one
        // takes its stat again.
        for key in source.restat.iter().filter(|k| k.starts_with(&prefix)) {
            stat_into(files, &tmp.join(key), info.outputs.get_mut(key));
        }
    }
    for target in &source.desired.publish {
        super::publish::check_source(host, tmp, target)?;
    }
    if !source.desired.secrets.is_empty() {
        super::secrets::materialize(host, id, &source.desired.secrets, source.keys)?;
        super::secrets::link_into(host, tmp, id)?;
    }
    Ok(info)
}

/// The bytes of an app's source file (counted against the commit's limits
/// when it was rendered).
fn source_bytes(file: &SourceFile, key: &str) -> Result<Vec<u8>, ApplyError> {
    file.blob
        .bytes(u64::MAX)
        .map(|b| b.into_owned())
        .map_err(|message| ApplyError::Io {
            action: "read",
            path: key.into(),
            source: std::io::Error::other(message),
        })
}

/// Record what `lstat` says of a file just written.
fn stat_into(files: &dyn Files, path: &Path, entry: Option<&mut FileEntry>) {
    if let (Some(entry), Ok(stat)) = (entry, files.stat(path)) {
        entry.stat = Some(FileStat {
            size: stat.size,
            mtime_ns: stat.mtime_ns,
            ino: stat.ino,
        });
    }
}

/// Point `current` at `releases/<id>`: a new link under a temporary name,
/// renamed over `current`. Never remove-then-create.
pub fn switch(host: &dyn Host, layout: &Layout, id: &str) -> Result<(), ApplyError> {
    let files = host.files();
    let tmp = layout.state_dir.join(".current.tmp");
    if files.stat(&tmp).is_ok() {
        files
            .remove_file(&tmp)
            .map_err(ApplyError::io("remove", &tmp))?;
    }
    let target = Path::new("releases").join(id);
    files
        .symlink(&target, &tmp)
        .map_err(ApplyError::io("symlink", &tmp))?;
    let current = layout.current();
    files
        .rename(&tmp, &current)
        .map_err(ApplyError::io("rename", &current))?;
    files
        .sync(&layout.state_dir)
        .map_err(ApplyError::io("fsync", &layout.state_dir))
}

/// What `prune` removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub ids: Vec<String>,
    /// Whether one of them ran containers (its images may go now).
    pub containers: bool,
}

/// Remove all but the newest `keep` releases; never `keep_ids` (current,
/// previous, releases running services started on), and clean up
/// unfinished temporary builds.
pub fn prune(
    host: &dyn Host,
    layout: &Layout,
    keep: usize,
    keep_ids: &[&str],
) -> Result<Pruned, ApplyError> {
    let files = host.files();
    let releases = layout.releases();
    let names = files
        .list_dir(&releases)
        .map_err(ApplyError::io("list", &releases))?;
    for name in names.iter().filter(|n| n.starts_with(".tmp-")) {
        let path = releases.join(name);
        files
            .remove_dir_all(&path)
            .map_err(ApplyError::io("remove", &path))?;
    }
    let mut removed = Pruned::default();
    for name in prunable(&names, keep, 0, keep_ids) {
        let path = releases.join(name);
        removed.containers |= files.stat(&path.join("containers")).is_ok();
        files
            .remove_dir_all(&path)
            .map_err(ApplyError::io("remove", &path))?;
        removed.ids.push(name.clone());
    }
    Ok(removed)
}

/// The finished releases among `names` that `prune` removes once `adding`
/// more exist, oldest first.
fn prunable<'a>(
    names: &'a [String],
    keep: usize,
    adding: usize,
    keep_ids: &'a [&str],
) -> impl Iterator<Item = &'a String> {
    let finished: Vec<&String> = names.iter().filter(|n| !n.starts_with('.')).collect();
    let excess = (finished.len() + adding).saturating_sub(keep);
    finished
        .into_iter()
        .take(excess)
        .filter(|name| !keep_ids.contains(&name.as_str()))
}

/// The release `plumb rollback` goes back to from `current`: the newest
/// one deployed before it whose commit is not quarantined.
pub fn rollback_target(
    host: &dyn Host,
    layout: &Layout,
    state: &State,
    current: &str,
) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Commit {
        commit: String,
    }
    let usable = |id: &String| {
        id != current
            && load_as::<Commit>(host, layout, id)
                .is_some_and(|info| state.quarantined(&info.commit).is_none())
    };
    let from_history = state
        .history
        .iter()
        .rev()
        .filter(|e| e.result == "deployed")
        .filter_map(|e| e.release.clone())
        .find(usable);
    from_history.or_else(|| {
        list(host, layout)
            .ok()?
            .into_iter()
            .rfind(|id| id.as_str() < current)
    })
}

/// The release a deploy would prune once its new release exists, if one
/// would go: the new release is written into its directory. Never the
/// current release, one the state names, the one `plumb rollback` would go
/// back to (a deploy that fails keeps it), one that ran containers
/// (pruning it is what removes their images), nor anything but a directory.
pub fn recyclable(
    host: &dyn Host,
    layout: &Layout,
    keep: usize,
    state: &State,
    current: Option<&ReleaseInfo>,
) -> Option<String> {
    let files = host.files();
    let names = files.list_dir(&layout.releases()).ok()?;
    let linked = current_id(host, layout);
    let keep_ids: Vec<&str> = current
        .map(|c| c.id.as_str())
        .into_iter()
        .chain(linked.as_deref())
        .chain(state.deployed.as_ref().map(|d| d.release.as_str()))
        .chain(state.started_on.values().map(String::as_str))
        .collect();
    let candidate = prunable(&names, keep, 1, &keep_ids)
        .find(|name| {
            let dir = layout.release(name);
            files.stat(&dir).is_ok_and(|s| s.kind == Kind::Dir)
                && files.stat(&dir.join("containers")).is_err()
        })?
        .clone();
    let back_to = linked.and_then(|id| rollback_target(host, layout, state, &id));
    (back_to.as_ref() != Some(&candidate)).then_some(candidate)
}

/// The real path of release file `key` of release `id`.
pub fn real_file(host: &dyn Host, layout: &Layout, id: &str, key: &str) -> PathBuf {
    host.files().real(&layout.release_file(id, key))
}
