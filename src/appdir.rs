//! Completing the app directories of a release being built: links to the
//! shared data, a build reused from the previous release when nothing it
//! depends on changed, or the build steps run as the app's user.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::desired::{AppBuild, Desired};
use crate::error::ApplyError;
use crate::host::Host;
use crate::release::{FileEntry, Layout, ReleaseInfo};

/// What completing the apps produced: the build key and the built files of
/// each app (paths inside the release).
#[derive(Debug, Default)]
pub struct Completed {
    pub builds: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, FileEntry>,
}

/// Complete every app of `desired` under the release directory `tmp`.
pub fn complete(
    host: &dyn Host,
    layout: &Layout,
    tmp: &Path,
    desired: &Desired,
    previous: Option<&ReleaseInfo>,
) -> Result<Completed, ApplyError> {
    let mut done = Completed::default();
    let sources = crate::release::manifest(desired);
    for (app, build) in &desired.builds {
        let dir = tmp.join("app").join(app);
        let prefix = format!("app/{app}/");
        let intact = |p: &&ReleaseInfo| {
            !crate::drift::tampered(host, layout, p)
                .iter()
                .any(|k| k.starts_with(&prefix))
        };
        match previous
            .filter(|p| p.builds.get(app) == Some(&build.key))
            .filter(intact)
        {
            Some(prev) => {
                // Same source, steps and user: the previous build, hard-linked.
                host.remove_dir_all(&dir)
                    .map_err(ApplyError::io("remove", &dir))?;
                let from = layout.release(&prev.id).join("app").join(app);
                host.copy_tree(&from, &dir, true)
                    .map_err(ApplyError::io("copy", &from))?;
            }
            None => {
                link_shared(host, layout, app, build, &dir)?;
                if !build.steps.is_empty() {
                    let timeout = Duration::from_secs(build.timeout_secs);
                    host.build(&dir, build.user.as_deref(), &build.steps, timeout)
                        .map_err(|source| ApplyError::Build {
                            app: app.clone(),
                            source: Box::new(source),
                        })?;
                }
            }
        }
        done.builds.insert(app.clone(), build.key.clone());
        let mut files = BTreeMap::new();
        walk(host, &dir, &Path::new("app").join(app), &mut files);
        files.retain(|path, _| !sources.contains_key(path));
        done.outputs.extend(files);
    }
    Ok(done)
}

/// Replace each shared path of the app by a link into its shared directory,
/// seeding the shared copy from the release the first time.
fn link_shared(
    host: &dyn Host,
    layout: &Layout,
    app: &str,
    build: &AppBuild,
    dir: &Path,
) -> Result<(), ApplyError> {
    if build.shared.is_empty() {
        return Ok(());
    }
    let root = layout.shared(app);
    host.create_dir_all(&root)
        .map_err(ApplyError::io("create", &root))?;
    // Every time: a run killed between the two must not leave it root's.
    host.chown_to(&root, build.user.as_deref())
        .map_err(ApplyError::from)?;
    for path in &build.shared {
        let (inside, shared) = (dir.join(path), root.join(path));
        if host.exists(&inside) && !host.exists(&shared) {
            if let Some(parent) = shared.parent().filter(|p| *p != root) {
                host.create_dir_all(parent)
                    .map_err(ApplyError::io("create", parent))?;
                host.chown_to(parent, build.user.as_deref())
                    .map_err(ApplyError::from)?;
            }
            host.seed(&inside, &shared, build.user.as_deref())
                .map_err(ApplyError::from)?;
        }
        if host.exists(&inside) {
            let removed = host
                .remove_dir_all(&inside)
                .or_else(|_| host.remove_file(&inside));
            removed.map_err(ApplyError::io("remove", &inside))?;
        }
        let parent = inside
            .parent()
            .expect("shared paths are inside the app dir");
        host.create_dir_all(parent)
            .map_err(ApplyError::io("create", parent))?;
        host.symlink(&host.real(&shared), &inside)
            .map_err(ApplyError::io("symlink", &inside))?;
    }
    Ok(())
}

/// Files below `dir` (not following links), with their hashes, keyed by
/// `rel`-prefixed paths.
fn walk(host: &dyn Host, dir: &Path, rel: &Path, out: &mut BTreeMap<String, FileEntry>) {
    let Ok(names) = host.list_dir(dir) else {
        return;
    };
    for name in names {
        let (path, rel): (PathBuf, PathBuf) = (dir.join(&name), rel.join(&name));
        if host.read_link(&path).is_ok() {
            continue;
        }
        if host.list_dir(&path).is_ok() {
            walk(host, &path, &rel, out);
        } else if !host.is_file(&path) {
            continue; // FIFOs and the like are not release content
        } else if let Ok(bytes) = host.read(&path) {
            let entry = FileEntry {
                sha256: hex::encode(Sha256::digest(&bytes)),
                mode: "built".into(),
            };
            out.insert(rel.display().to_string(), entry);
        }
    }
}
