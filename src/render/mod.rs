//! Rendering: a deploy repo at one commit -> the desired state of this host.
//! The only module that imports minijinja. Undefined variables are errors.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use minijinja::value::Serde;
use minijinja::{Environment, Value, context};

use crate::error::InvalidError;
use crate::spec::deploy::{App, DeployInput, FileSpec};
use crate::spec::paths::AllowedRoots;
use crate::spec::schedule;
use crate::spec::settings::Limits;
use crate::spec::tree::Tree;
use desired::{
    AppBuild, Desired, DesiredFile, DesiredSecret, Destination, Hook, ImageBuild, PublishTarget,
    SourceFile, TlsPending,
};

pub mod desired;
mod env;
pub mod escape;
mod parts;
pub mod templates;

use env::{environment, render_named};
use parts::{build_key, check_backup, health_check, image_tag, shared_paths};

/// Template instructions one file's rendering may execute.
pub const FUEL: u64 = 10_000_000;

/// Facts about the host that templates and paths depend on.
pub struct HostFacts<'a> {
    pub commit: &'a str,
    /// `Settings::fingerprint`, recorded with the deploy.
    pub fingerprint: &'a str,
    /// The state directory as the host sees it, e.g. `/var/lib/plumb`.
    pub state_dir: &'a Path,
    pub roots: &'a AllowedRoots,
    /// Trees of apps whose source is another git repository, by app name.
    pub app_trees: &'a BTreeMap<String, Tree>,
    pub limits: &'a Limits,
    /// TLS certificate and key files a site names that do not exist on the
    /// host yet: such a site is served over plain HTTP (with the ACME
    /// challenge location) until they do.
    pub missing: &'a BTreeSet<PathBuf>,
}

/// Render every app and file of `input` into the desired state.
pub fn render(
    tree: &Tree,
    input: &DeployInput,
    facts: &HostFacts,
) -> Result<Desired, InvalidError> {
    let roots = facts.roots.with_apps(input.apps.keys().map(String::as_str));
    let env = environment(tree, input, facts)?;
    let mut out = Output {
        desired: Desired {
            commit: facts.commit.to_string(),
            fingerprint: facts.fingerprint.to_string(),
            overlay: input.overlay.clone(),
            ..Desired::default()
        },
        roots,
        limits: *facts.limits,
        bytes: 0,
        added: HashSet::new(),
        dirs: HashSet::new(),
    };
    for (name, app) in &input.apps {
        render_app(&env, tree, facts, name, app, &mut out)?;
    }
    for file in &input.files {
        let content = file_content(&env, tree, file, context! {})?;
        out.add("deploy.yaml", &file.path, content, file.mode.0)?;
    }
    Ok(out.desired)
}

struct Output {
    desired: Desired,
    roots: AllowedRoots,
    limits: Limits,
    /// Bytes rendered so far.
    bytes: usize,
    /// The files added so far, and every directory above one (hashed: the
    /// ordered map compares paths component by component).
    added: HashSet<PathBuf>,
    dirs: HashSet<PathBuf>,
}

impl Output {
    /// A file already added that is inside `path`, or that `path` is inside:
    /// its ancestors are looked up, and the directories above every file
    /// (hashed) say whether one is below it — O(depth), not O(n).
    fn nested(&self, path: &Path) -> Option<PathBuf> {
        if let Some(parent) = path.ancestors().skip(1).find(|a| self.added.contains(*a)) {
            return Some(parent.to_path_buf());
        }
        if !self.dirs.contains(path) {
            return None;
        }
        self.desired
            .files
            .range::<Path, _>((std::ops::Bound::Excluded(path), std::ops::Bound::Unbounded))
            .next()
            .map(|(p, _)| p)
            .filter(|p| p.starts_with(path))
            .cloned()
    }

    fn add(
        &mut self,
        origin: &str,
        path: &str,
        bytes: Vec<u8>,
        mode: u32,
    ) -> Result<PathBuf, InvalidError> {
        let path = self.roots.check(origin, path)?;
        self.bytes += bytes.len();
        let limit = |message: String| InvalidError::Repo {
            file: origin.to_string(),
            message,
        };
        let max = self.limits;
        if bytes.len() > max.max_file_bytes {
            return Err(limit(format!(
                "{} would be {} bytes; the most a managed file may have is {} (limits.max_file_bytes)",
                path.display(),
                bytes.len(),
                max.max_file_bytes
            )));
        }
        if self.desired.files.len() >= max.max_files {
            return Err(limit(format!(
                "more than {} managed files for one host (limits.max_files)",
                max.max_files
            )));
        }
        if self.bytes > max.max_rendered_bytes {
            return Err(limit(format!(
                "more than {} rendered bytes for one host (limits.max_rendered_bytes)",
                max.max_rendered_bytes
            )));
        }
        let file = DesiredFile {
            bytes,
            mode,
            origin: origin.to_string(),
        };
        if let Some(other) = self.nested(&path) {
            return Err(InvalidError::Repo {
                file: origin.to_string(),
                message: format!(
                    "{} and {} cannot both be files: one is inside the other",
                    path.display(),
                    other.display()
                ),
            });
        }
        self.added.insert(path.clone());
        for dir in path.ancestors().skip(1) {
            if !self.dirs.insert(dir.to_path_buf()) {
                break;
            }
        }
        if let Some(previous) = self.desired.files.insert(path.clone(), file) {
            return Err(InvalidError::Repo {
                file: "deploy.yaml".into(),
                message: format!(
                    "{} is produced twice: by {} and by {origin}",
                    path.display(),
                    previous.origin
                ),
            });
        }
        Ok(path)
    }
}

fn render_app(
    env: &Environment,
    tree: &Tree,
    facts: &HostFacts,
    name: &str,
    app: &App,
    out: &mut Output,
) -> Result<(), InvalidError> {
    let app_value = Value::from(Serde(app));
    let state = facts.state_dir.display();
    let secret_paths: BTreeMap<&str, String> = app
        .secrets
        .iter()
        .flatten()
        .map(|s| {
            (
                s.name.as_str(),
                format!("{state}/current/secrets/{name}/{}", s.name),
            )
        })
        .collect();
    let app_ctx = context! {
        name => name,
        user => app.user.clone(),
        dir => format!("{state}/current/app/{name}"),
        shared => format!("{state}/shared/{name}"),
        secrets => secret_paths,
        ..app_value
    };
    let origin = format!("deploy.yaml: app {name}");
    let timeout_secs = app.timeout.unwrap_or(300);
    let source = match (&app.source, &app.git) {
        (Some(dir), None) => Some(app_source(tree, name, dir)?),
        (None, Some(git)) => {
            let fetched = facts
                .app_trees
                .get(name)
                .ok_or_else(|| InvalidError::Repo {
                    file: origin.clone(),
                    message: format!("git source {} at {} was not fetched", git.url, git.rev),
                })?;
            Some(app_source(fetched, name, "")?)
        }
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(InvalidError::Repo {
                file: origin,
                message: "an app has `source` or `git`, not both".into(),
            });
        }
    };
    let image = match (&app.container, &source) {
        (Some(container), Some(files)) => {
            if !files.iter().any(|f| f.path == Path::new(&container.file)) {
                return Err(InvalidError::Repo {
                    file: origin.clone(),
                    message: format!(
                        "container.file {:?} is not in the app's source",
                        container.file
                    ),
                });
            }
            let user = app.user.clone().unwrap_or_default();
            let image = ImageBuild {
                tag: image_tag(name, &build_key(files, app), container),
                file: container.file.clone(),
                build_args: container.build_args.clone(),
                network: container.build_network,
                timeout_secs,
                user,
            };
            out.desired.images.insert(name.to_string(), image.clone());
            Some(image)
        }
        _ => None,
    };
    if let Some(service) = &app.service {
        let text = match (&app.container, &image) {
            (Some(container), Some(image)) => render_named(
                env,
                "container.j2",
                context! {
                    app => app_ctx.clone(),
                    service => Serde(service),
                    container => Serde(container),
                    image => image.tag.clone(),
                    env_file => format!("{state}/current/containers/{name}.env"),
                    secrets_dir => app.secrets.as_ref().map(|_| format!("{state}/current/secrets/{name}")),
                },
            )?,
            _ => render_named(
                env,
                "service.j2",
                context! { app => app_ctx.clone(), service => Serde(service) },
            )?,
        };
        out.add(
            &origin,
            &format!("/etc/systemd/system/{name}.service"),
            text,
            0o644,
        )?;
        out.desired.units.push(format!("{name}.service"));
    }
    if let Some(site) = &app.site {
        // A certificate not issued yet: the site goes live over HTTP, and
        // its TLS part with the first run after the files appear.
        let pending = site.tls.as_ref().filter(|tls| {
            [&tls.certificate, &tls.key]
                .iter()
                .any(|f| facts.missing.contains(Path::new(f.as_str())))
        });
        if let Some(tls) = pending {
            out.desired.tls_pending.push(TlsPending {
                app: name.to_string(),
                certificate: tls.certificate.clone(),
                key: tls.key.clone(),
            });
        }
        let text = render_named(
            env,
            "site.j2",
            context! {
                app => app_ctx.clone(),
                site => Serde(site),
                tls_pending => pending.is_some(),
                acme_root => format!("{state}/acme"),
            },
        )?;
        out.add(
            &origin,
            &format!("/etc/nginx/conf.d/{name}.conf"),
            text,
            0o644,
        )?;
    }
    if let Some(site) = &app.site {
        publish_targets(site, facts, name, &origin, out)?;
    }
    if let Some(backup) = &app.backup {
        check_backup(&origin, name, backup, &out.roots)?;
        let on_calendar =
            schedule::on_calendar(&backup.schedule).map_err(|e| InvalidError::Repo {
                file: origin.clone(),
                message: format!("backup: {e}"),
            })?;
        let script = format!("/usr/local/lib/plumb/{name}/backup.sh");
        let ctx = context! {
            app => app_ctx.clone(), backup => Serde(backup), on_calendar => on_calendar, backup_script => script.clone(),
        };
        let text = render_named(env, "backup.sh.j2", ctx.clone())?;
        out.add(&origin, &script, text, 0o755)?;
        let text = render_named(env, "restore.sh.j2", ctx.clone())?;
        out.add(
            &origin,
            &format!("/usr/local/lib/plumb/{name}/restore.sh"),
            text,
            0o755,
        )?;
        let text = render_named(env, "backup.service.j2", ctx.clone())?;
        out.add(
            &origin,
            &format!("/etc/systemd/system/{name}-backup.service"),
            text,
            0o644,
        )?;
        let text = render_named(env, "backup.timer.j2", ctx)?;
        out.add(
            &origin,
            &format!("/etc/systemd/system/{name}-backup.timer"),
            text,
            0o644,
        )?;
        out.desired.units.push(format!("{name}-backup.timer"));
    }
    let mut triggers = Vec::new();
    for file in app.files.iter().flatten() {
        let content = file_content(env, tree, file, context! { app => app_ctx.clone() })?;
        let path = out.add(&origin, &file.path, content, file.mode.0)?;
        triggers.push(format!("files{}", path.display()));
    }
    if let Some(files) = source {
        let build = AppBuild {
            user: app.user.clone(),
            steps: app.build.clone().unwrap_or_default(),
            timeout_secs,
            shared: shared_paths(&origin, app)?,
            key: build_key(&files, app),
        };
        out.desired.apps.insert(name.to_string(), files);
        out.desired.builds.insert(name.to_string(), build);
        triggers.push(format!("app/{name}/"));
    } else if app.build.is_some() || app.shared.is_some() {
        return Err(InvalidError::Repo {
            file: origin,
            message: "`build` and `shared` need a `source` directory".into(),
        });
    }
    for secret in app.secrets.iter().flatten() {
        let ciphertext = tree
            .read(&secret.source)?
            .map(|(bytes, _)| bytes.into_owned())
            .ok_or_else(|| InvalidError::Repo {
                file: origin.clone(),
                message: format!(
                    "secret {}: {:?} is not in the deploy repo",
                    secret.name, secret.source
                ),
            })?;
        let key = format!("{name}/{}", secret.name);
        let owner = secret
            .owner
            .clone()
            .or_else(|| app.user.clone())
            .unwrap_or_default();
        out.desired.secrets.insert(
            key.clone(),
            DesiredSecret {
                app: name.to_string(),
                name: secret.name.clone(),
                ciphertext,
                owner,
                mode: secret.mode.0,
            },
        );
        triggers.push(format!("secret/{key}"));
    }
    let hooks = app.hooks.clone().unwrap_or_default();
    for (pre_switch, commands) in [(true, hooks.pre_switch), (false, hooks.post_switch)] {
        for command in commands {
            out.desired.hooks.push(Hook {
                app: name.to_string(),
                pre_switch,
                command,
                user: app.user.clone(),
                timeout_secs,
            });
        }
    }
    if app.create_user == Some(true) {
        let user = app.user.clone().ok_or_else(|| InvalidError::Repo {
            file: origin.clone(),
            message: "`create_user: true` needs `user:`".into(),
        })?;
        out.desired.users.insert(user);
    }
    if let Some(service) = &app.service {
        let unit = format!("{name}.service");
        if service.reload.is_some() {
            out.desired.reloadable.insert(unit.clone());
        }
        out.desired.triggers.insert(unit, triggers);
    }
    for check in app.health.iter().flatten() {
        out.desired
            .health
            .push(health_check(&origin, name, app.user.as_deref(), check)?);
    }
    Ok(())
}

/// The publish targets of a site: the published directory is the site's
/// `root`, which must be inside the app's release directory.
fn publish_targets(
    site: &crate::spec::deploy::Site,
    facts: &HostFacts,
    name: &str,
    origin: &str,
    out: &mut Output,
) -> Result<(), InvalidError> {
    if site.publish.is_empty() {
        return Ok(());
    }
    let root = site.root.as_deref().unwrap_or_default();
    let app_dir = format!("{}/current/app/{name}", facts.state_dir.display());
    let inside = Path::new(root)
        .strip_prefix(&app_dir)
        .ok()
        .filter(|_| !root.contains("/../") && !root.ends_with("/.."));
    let Some(sub) = inside else {
        return Err(InvalidError::Repo {
            file: origin.to_string(),
            message: format!(
                "site.publish publishes site.root, which must be inside the app's release directory ({app_dir}/…), not {root:?}"
            ),
        });
    };
    let source = Path::new("app").join(name).join(sub);
    for publish in &site.publish {
        let to = match (&publish.dir, &publish.ssh) {
            (Some(dir), None) => Destination::Dir(out.roots.check(origin, dir)?),
            (None, Some(ssh)) => {
                let (user, host, path) =
                    crate::spec::validate::ssh_target(ssh).map_err(|message| {
                        InvalidError::Repo {
                            file: origin.to_string(),
                            message: format!("site.publish: {message}"),
                        }
                    })?;
                if !out.roots.allows_publish(&user, &host, &path) {
                    return Err(InvalidError::Repo {
                        file: origin.to_string(),
                        message: format!(
                            "site.publish: {ssh} is not allowed on this host: its host config must list it (or a directory above it) in allow_publish"
                        ),
                    });
                }
                Destination::Ssh {
                    user,
                    host,
                    port: publish.port,
                    path,
                }
            }
            _ => {
                return Err(InvalidError::Repo {
                    file: origin.to_string(),
                    message: "site.publish: each target needs exactly one of `dir:` or `ssh:`"
                        .into(),
                });
            }
        };
        let target = PublishTarget {
            app: name.to_string(),
            source: source.display().to_string(),
            to,
            keep: publish.keep,
            timeout_secs: publish.timeout,
        };
        if let Some(other) = out
            .desired
            .publish
            .iter()
            .find(|t| t.name() == target.name())
        {
            return Err(InvalidError::Repo {
                file: origin.to_string(),
                message: format!(
                    "site.publish: {} is a target of app {} already; two sites cannot share one",
                    target.name(),
                    other.app
                ),
            });
        }
        out.desired.publish.push(target);
    }
    Ok(())
}

/// A declared file's bytes: a rendered template or a copied repo file.
fn file_content(
    env: &Environment,
    tree: &Tree,
    file: &FileSpec,
    ctx: Value,
) -> Result<Vec<u8>, InvalidError> {
    let fail = |message: &str| InvalidError::Repo {
        file: format!("deploy.yaml: file {}", file.path),
        message: message.to_string(),
    };
    match (&file.template, &file.source) {
        (Some(name), None) => render_named(env, name, ctx),
        (None, Some(source)) => tree
            .read(source)?
            .map(|(bytes, _)| bytes.into_owned())
            .ok_or_else(|| fail(&format!("source {source:?} is not in the deploy repo"))),
        _ => Err(fail("needs exactly one of `template:` or `source:`")),
    }
}

/// Every file under `dir` of the repo, relative to `dir`.
fn app_source(tree: &Tree, app: &str, dir: &str) -> Result<Vec<SourceFile>, InvalidError> {
    let dir = dir.trim_end_matches('/');
    let mut files = Vec::new();
    for path in tree.list(dir) {
        let key = path.to_string_lossy();
        let (blob, executable) = tree.file(&key)?.ok_or_else(|| InvalidError::Repo {
            file: key.to_string(),
            message:
                "is a symlink to a directory or to a missing file; commit the files themselves"
                    .into(),
        })?;
        // Counted against the commit's limits now, read when the release
        // is written (and not at all when the previous release has it).
        tree.reserve(&key, blob)?;
        files.push(SourceFile {
            path: path.strip_prefix(dir).unwrap_or(path).to_path_buf(),
            blob: blob.clone(),
            executable,
        });
    }
    if files.is_empty() {
        return Err(InvalidError::Repo {
            file: format!("deploy.yaml: app {app}"),
            message: format!("source directory {dir:?} is empty or missing"),
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output() -> Output {
        Output {
            desired: Desired::default(),
            roots: AllowedRoots::new(&[PathBuf::from("/srv")], Path::new("/var/lib/plumb")),
            limits: Limits::default(),
            bytes: 0,
            added: HashSet::new(),
            dirs: HashSet::new(),
        }
    }

    #[test]
    fn a_file_inside_another_or_twice_is_refused_whatever_the_order() {
        for (first, second) in [
            ("/srv/a", "/srv/a/b"),
            ("/srv/a/b", "/srv/a"),
            ("/srv/a/b/c", "/srv/a"),
            ("/srv/x", "/srv/x"),
        ] {
            let mut out = output();
            out.add("t", first, b"1".to_vec(), 0o644).unwrap();
            let err = out.add("t", second, b"2".to_vec(), 0o644).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("cannot both be files") || text.contains("produced twice"),
                "{first} then {second}: {text}"
            );
        }
        // Neighbours in sort order that are not nested are fine.
        let mut out = output();
        for path in ["/srv/a", "/srv/a.conf", "/srv/a-b", "/srv/ab/c", "/srv/b"] {
            out.add("t", path, b"1".to_vec(), 0o644).unwrap();
        }
    }
}
