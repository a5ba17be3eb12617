//! Completing the app directories of a release being written: links to the
//! shared data, a build reused from the previous release when nothing it
//! depends on changed, or the build steps run as the app's user.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::release::Source;
use crate::error::ApplyError;
use crate::host::{Account, Host, Job, JobKind, Kind};
use crate::plan::release::{FileEntry, FileStat, ReleaseInfo};
use crate::render::desired::AppBuild;
use crate::spec::layout::Layout;

/// How long seeding an app's shared data may take.
const SEED_TIMEOUT: Duration = Duration::from_secs(3600);

/// Complete every app under the release directory `tmp`; returns the files
/// the builds produced (keys inside the release, with hashes).
pub fn complete(
    host: &dyn Host,
    layout: &Layout,
    tmp: &Path,
    source: &Source,
) -> Result<BTreeMap<String, FileEntry>, ApplyError> {
    let mut outputs = BTreeMap::new();
    for (app, build) in &source.desired.builds {
        let dir = tmp.join("app").join(app);
        let prefix = format!("app/{app}/");
        let files = host.files();
        match reused_build(source, app) {
            Some(prev) => {
                // Same source, steps and user: the previous build, hard-linked
                // (`release::build` wrote none of the app's sources).
                let parent = tmp.join("app");
                files
                    .create_dir_all(&parent)
                    .map_err(ApplyError::io("create", &parent))?;
                let from = layout.release(&prev.id).join("app").join(app);
                files
                    .copy_tree(&from, &dir, true)
                    .map_err(ApplyError::io("copy", &from))?;
                outputs.extend(
                    prev.outputs
                        .range(prefix.clone()..)
                        .take_while(|(k, _)| k.starts_with(&prefix))
                        .map(|(k, e)| (k.clone(), e.clone())),
                );
            }
            None => {
                let account = host
                    .users()
                    .account_for(build.user.as_deref())
                    .map_err(|source| build_failed(app, source))?;
                if let Some(blocked) = host.files().blocked_for(&dir, &account) {
                    return Err(build_failed(app, unreachable(&account, &blocked)));
                }
                link_shared(host, layout, app, build, &dir, &account)?;
                if !build.steps.is_empty() {
                    run_build(host, app, build, &dir, &account)?;
                }
                let mut found = BTreeMap::new();
                walk(host, &dir, &PathBuf::from(&prefix), &mut found);
                found.retain(|key, _| !source.planned.manifest.contains_key(key));
                outputs.extend(found);
            }
        }
        if let Some(image) = source.desired.images.get(app) {
            super::images::ensure(host, layout, tmp, app, image)?;
        }
    }
    Ok(outputs)
}

/// The release whose build of `app` this one reuses: the current one, when
/// it built the same key and none of its files of the app were changed.
pub fn reused_build<'a>(source: &Source<'a>, app: &str) -> Option<&'a ReleaseInfo> {
    let build = source.desired.builds.get(app)?;
    let prefix = format!("app/{app}/");
    source
        .previous
        .filter(|p| p.builds.get(app) == Some(&build.key))
        .filter(|_| !source.tampered.iter().any(|k| k.starts_with(&prefix)))
}

/// The host's fault: the app's user cannot reach its own release.
fn unreachable(account: &Account, blocked: &Path) -> crate::host::ProcessError {
    crate::host::ProcessError::User {
        user: account.name.clone(),
        problem: format!(
            "cannot enter {}, so the app's build cannot run in its release: \
             make every directory on the way searchable (chmod o+x {}) or deploy under another --root",
            blocked.display(),
            blocked.display()
        ),
    }
}

fn build_failed(app: &str, source: crate::host::ProcessError) -> ApplyError {
    ApplyError::Build {
        app: app.to_string(),
        source: Box::new(source),
    }
}

/// Give the app directory to the app's user, run each step there as that
/// user, then take it back and make it read-only for everyone but root.
fn run_build(
    host: &dyn Host,
    app: &str,
    build: &AppBuild,
    dir: &Path,
    account: &Account,
) -> Result<(), ApplyError> {
    let files = host.files();
    files
        .chown(dir, account, true, false)
        .map_err(ApplyError::io("chown", dir))?;
    for step in &build.steps {
        let mut job = Job::shell(JobKind::Build, step);
        job.dir = dir.to_path_buf();
        job.account = Some(account.clone());
        job.timeout = Duration::from_secs(build.timeout_secs);
        job.env.push(("PLUMB_APP".into(), app.to_string()));
        host.processes()
            .run(&job)
            .map_err(|source| build_failed(app, source))?;
    }
    // Back to root: the app cannot change its own code.
    files
        .chown(dir, &Account::root(), true, true)
        .map_err(ApplyError::io("chown", dir))
}

/// Replace each shared path of the app by a link into its shared directory,
/// seeding the shared copy from the release the first time, as the app's
/// user (root never writes into a directory that user owns).
fn link_shared(
    host: &dyn Host,
    layout: &Layout,
    app: &str,
    build: &AppBuild,
    dir: &Path,
    account: &Account,
) -> Result<(), ApplyError> {
    if build.shared.is_empty() {
        return Ok(());
    }
    let files = host.files();
    let root = layout.shared(app);
    files
        .create_dir_all(&root)
        .map_err(ApplyError::io("create", &root))?;
    // Every time: a run killed between the two must not leave it root's.
    files
        .chown(&root, account, false, false)
        .map_err(ApplyError::io("chown", &root))?;
    for path in &build.shared {
        let (inside, shared) = (dir.join(path), root.join(path));
        let exists = |p: &Path| files.stat(p).is_ok();
        if exists(&inside) && !exists(&shared) {
            let mut job = Job {
                kind: JobKind::Seed,
                argv: vec![
                    "cp".into(),
                    "-a".into(),
                    "--".into(),
                    files.real(&inside).display().to_string(),
                    files.real(&shared).display().to_string(),
                ],
                dir: PathBuf::from("/"),
                account: Some(account.clone()),
                timeout: SEED_TIMEOUT,
                env: Vec::new(),
            };
            job.env.push(("PLUMB_APP".into(), app.to_string()));
            host.processes()
                .run(&job)
                .map_err(|source| build_failed(app, source))?;
        }
        if exists(&inside) {
            let removed = files
                .remove_dir_all(&inside)
                .or_else(|_| files.remove_file(&inside));
            removed.map_err(ApplyError::io("remove", &inside))?;
        }
        let parent = inside
            .parent()
            .expect("shared paths are inside the app dir");
        files
            .create_dir_all(parent)
            .map_err(ApplyError::io("create", parent))?;
        files
            .symlink(&files.real(&shared), &inside)
            .map_err(ApplyError::io("symlink", &inside))?;
    }
    Ok(())
}

/// Regular files below `dir` (not following links), with their hashes and
/// stats, keyed by `rel`-prefixed paths.
fn walk(host: &dyn Host, dir: &Path, rel: &Path, out: &mut BTreeMap<String, FileEntry>) {
    let files = host.files();
    let Ok(names) = files.list_dir(dir) else {
        return;
    };
    for name in names {
        let (path, rel): (PathBuf, PathBuf) = (dir.join(&name), rel.join(&name));
        let Ok(stat) = files.stat(&path) else {
            continue;
        };
        match stat.kind {
            Kind::Dir => walk(host, &path, &rel, out),
            Kind::File => {
                if let Ok(sha256) = files.sha256(&path) {
                    let entry = FileEntry {
                        sha256,
                        mode: "built".into(),
                        stat: Some(FileStat {
                            size: stat.size,
                            mtime_ns: stat.mtime_ns,
                            ino: stat.ino,
                        }),
                    };
                    out.insert(rel.display().to_string(), entry);
                }
            }
            // Links (shared data) and FIFOs are not release content.
            Kind::Symlink | Kind::Other => {}
        }
    }
}

/// What `rel` below `base` is, if every directory on the way to it is a
/// real directory (never a link) — `None` when it is missing or the way
/// passes through a link. A build runs as the app's user and may leave
/// links in its release directory; root must not follow them.
pub fn kind_without_links(host: &dyn Host, base: &Path, rel: &Path) -> Option<Kind> {
    let mut path = base.to_path_buf();
    let mut kind = Some(Kind::Dir);
    for part in rel.components() {
        if kind != Some(Kind::Dir) {
            return None;
        }
        path.push(part);
        kind = host.files().stat(&path).ok().map(|s| s.kind);
    }
    kind
}
