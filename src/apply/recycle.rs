//! Recycling the release the deploy would prune: its directory becomes the
//! new one's. Its files that are the current release's unchanged files (the
//! same inode, hard-linked when it was written) stay where they are, and the
//! rest is removed; writing the release then costs what changed since that
//! release, not one link and one unlink per file.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::Path;

use super::release::Source;
use crate::host::{Files, Kind, Stat};

/// The files a recycled release may keep: key inside the release, and the
/// inode the current release's file has (intact, as observed).
pub struct Keepable {
    inodes: HashMap<String, u64>,
    /// Every directory above a keepable file (`files`, `files/etc`, …).
    dirs: HashSet<String>,
}

impl Keepable {
    /// The files of the planned release that `release::build` would link
    /// from the current one: the managed files, and the sources of apps
    /// without a build (a build's directory is written afresh, as its user).
    pub fn of(source: &Source) -> Keepable {
        let mut keepable = Keepable {
            inodes: HashMap::new(),
            dirs: HashSet::new(),
        };
        let Some(previous) = source.previous else {
            return keepable;
        };
        let unbuilt = |key: &str| {
            key.strip_prefix("app/")
                .and_then(|rest| rest.split_once('/'))
                .is_some_and(|(app, _)| !source.desired.builds.contains_key(app))
        };
        for (key, entry) in &source.planned.manifest {
            if !(key.starts_with("files/") || unbuilt(key))
                || source.tampered.contains(key)
                || source.restat.contains(key)
            {
                continue;
            }
            let Some(old) = previous.manifest.get(key) else {
                continue;
            };
            let Some(stat) = old.stat.filter(|_| old.same_content(entry)) else {
                continue;
            };
            keepable.inodes.insert(key.clone(), stat.ino);
            let mut dir = Path::new(key).parent();
            while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
                if !keepable.dirs.insert(d.to_string_lossy().into_owned()) {
                    break;
                }
                dir = d.parent();
            }
        }
        keepable
    }
}

/// Empty the recycled release directory `dir` of everything but the files
/// it may keep; returns their keys. A file is kept only if it is the very
/// inode the current release has for its key; a directory only if it has
/// the owner and mode of `like` (the releases directory), as a fresh one
/// would: a directory changed by hand is made again, not carried on.
pub fn sweep(
    files: &dyn Files,
    dir: &Path,
    keepable: &Keepable,
    like: &Stat,
) -> io::Result<HashSet<String>> {
    let top = files.stat(dir)?;
    if !same_owner_and_mode(&top, like) {
        return Err(io::Error::other("the release directory was changed"));
    }
    let mut kept = HashSet::new();
    sweep_dir(files, dir, "", keepable, like, &mut kept)?;
    Ok(kept)
}

fn same_owner_and_mode(stat: &Stat, like: &Stat) -> bool {
    stat.kind == Kind::Dir && (stat.uid, stat.mode) == (like.uid, like.mode)
}

fn sweep_dir(
    files: &dyn Files,
    dir: &Path,
    prefix: &str,
    keepable: &Keepable,
    like: &Stat,
    kept: &mut HashSet<String>,
) -> io::Result<()> {
    let here = dir.join(prefix);
    let names = files.list_dir(&here)?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let stats = files.stat_under(&here, &refs);
    for (name, stat) in names.iter().zip(stats) {
        let stat = stat?;
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let path = here.join(name);
        match stat.kind {
            Kind::Dir if keepable.dirs.contains(&key) && same_owner_and_mode(&stat, like) => {
                sweep_dir(files, dir, &key, keepable, like, kept)?;
            }
            Kind::Dir => files.remove_dir_all(&path)?,
            Kind::File if keepable.inodes.get(&key) == Some(&stat.ino) => {
                kept.insert(key);
            }
            _ => files.remove_file(&path)?,
        }
    }
    Ok(())
}
