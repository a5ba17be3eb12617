//! Rendering: a deploy repo at one commit -> the desired state of this host.
//! The only module that imports minijinja. Undefined variables are errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, Value, context};

use crate::desired::{AppBuild, Desired, DesiredFile, HealthCheck, Hook, Probe, SourceFile};
use crate::error::InvalidError;
use crate::paths::AllowedRoots;
use crate::repo::{App, DeployInput, FileSpec, Health};
use crate::tree::Tree;
use crate::{schedule, templates};

/// Where a deploy repo's own templates live.
const TEMPLATE_DIR: &str = "templates";

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
            ..Desired::default()
        },
        roots,
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
}

impl Output {
    fn add(
        &mut self,
        origin: &str,
        path: &str,
        bytes: Vec<u8>,
        mode: u32,
    ) -> Result<PathBuf, InvalidError> {
        let path = self.roots.check(origin, path)?;
        let file = DesiredFile {
            bytes,
            mode,
            origin: origin.to_string(),
        };
        if let Some(other) = self
            .desired
            .files
            .keys()
            .find(|p| p.starts_with(&path) || path.starts_with(p))
            .filter(|p| **p != path)
        {
            return Err(InvalidError::Repo {
                file: origin.to_string(),
                message: format!(
                    "{} and {} cannot both be files: one is inside the other",
                    path.display(),
                    other.display()
                ),
            });
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
    let app_ctx = context! {
        name => name,
        user => app.user.clone(),
        dir => format!("{state}/current/app/{name}"),
        shared => format!("{state}/shared/{name}"),
        ..app_value
    };
    let origin = format!("deploy.yaml: app {name}");
    if let Some(service) = &app.service {
        let text = render_named(
            env,
            "service.j2",
            context! { app => app_ctx.clone(), service => Serde(service) },
        )?;
        out.add(
            &origin,
            &format!("/etc/systemd/system/{name}.service"),
            text,
            0o644,
        )?;
        out.desired.units.push(format!("{name}.service"));
    }
    if let Some(site) = &app.site {
        let text = render_named(
            env,
            "site.j2",
            context! { app => app_ctx.clone(), site => Serde(site) },
        )?;
        out.add(
            &origin,
            &format!("/etc/nginx/conf.d/{name}.conf"),
            text,
            0o644,
        )?;
    }
    if let Some(backup) = &app.backup {
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
        out.desired.health.push(health_check(&origin, name, check)?);
    }
    Ok(())
}

/// Shared paths are plain relative paths inside the app directory.
fn shared_paths(origin: &str, app: &App) -> Result<Vec<String>, InvalidError> {
    let mut out = Vec::new();
    for path in app.shared.iter().flatten() {
        let plain = !path.is_empty()
            && !path.starts_with('/')
            && Path::new(path)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain {
            return Err(InvalidError::Repo {
                file: origin.to_string(),
                message: format!(
                    "shared path {path:?} must be relative, inside the app directory, without `..`"
                ),
            });
        }
        out.push(path.trim_end_matches('/').to_string());
    }
    Ok(out)
}

/// What a build depends on, hashed.
fn build_key(files: &[SourceFile], app: &App) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for file in files {
        hash.update(file.path.to_string_lossy().as_bytes());
        hash.update([0, file.executable as u8]);
        hash.update(Sha256::digest(&file.bytes));
    }
    let extra = format!("{:?} {:?} {:?}", app.build, app.user, app.shared);
    hash.update(extra.as_bytes());
    hex::encode(&hash.finalize()[..16])
}

fn health_check(origin: &str, app: &str, check: &Health) -> Result<HealthCheck, InvalidError> {
    let probe = match (&check.http, &check.tcp, &check.command) {
        (Some(url), None, None) => Probe::Http {
            url: url.clone(),
            status: check.status,
        },
        (None, Some(address), None) => Probe::Tcp {
            address: address.clone(),
        },
        (None, None, Some(argv)) if !argv.is_empty() => Probe::Command { argv: argv.clone() },
        _ => {
            return Err(InvalidError::Repo {
                file: origin.to_string(),
                message: "each health check needs exactly one of `http`, `tcp` or `command`".into(),
            });
        }
    };
    Ok(HealthCheck {
        app: app.to_string(),
        probe,
        timeout_ms: check.timeout * 1000,
        interval_ms: check.interval_ms,
    })
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
            .map(|(bytes, _)| bytes.to_vec())
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
        let (bytes, executable) = tree.read(&key)?.ok_or_else(|| InvalidError::Repo {
            file: key.to_string(),
            message:
                "is a symlink to a directory or to a missing file; commit the files themselves"
                    .into(),
        })?;
        files.push(SourceFile {
            path: path.strip_prefix(dir).unwrap_or(path).to_path_buf(),
            bytes: bytes.to_vec(),
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

/// A template environment: the repo's `templates/` first, then the built-ins.
fn environment<'a>(
    tree: &Tree,
    input: &DeployInput,
    facts: &HostFacts,
) -> Result<Environment<'a>, InvalidError> {
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    for path in tree.list(TEMPLATE_DIR) {
        let key = path.to_string_lossy();
        let text = tree.read_text(&key)?.ok_or_else(|| InvalidError::Repo {
            file: key.to_string(),
            message: "is a symlink to a directory or to a missing file".into(),
        })?;
        let name = path.strip_prefix(TEMPLATE_DIR).unwrap_or(path);
        sources.insert(name.to_string_lossy().into_owned(), text);
    }
    let sources = Arc::new(sources);
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .expect("default delimiters are valid");
    env.set_syntax(syntax);
    env.set_loader(move |name| {
        Ok(sources
            .get(name)
            .cloned()
            .or_else(|| templates::builtin(name).map(str::to_string)))
    });
    env.add_filter("sh", shell_quote);
    env.add_filter("unit", unit_value);
    env.add_filter("unit_env", unit_env);
    let state = facts.state_dir.display().to_string();
    env.add_global("host", input.hostname.clone());
    env.add_global("commit", facts.commit.to_string());
    env.add_global("vars", Value::from(Serde(&input.vars)));
    env.add_global(
        "plumb",
        context! { current => format!("{state}/current"), state_dir => state },
    );
    Ok(env)
}

fn render_named(env: &Environment, name: &str, ctx: Value) -> Result<Vec<u8>, InvalidError> {
    let template = env
        .get_template(name)
        .map_err(|e| template_error(env, name, e))?;
    template
        .render(ctx)
        .map(String::into_bytes)
        .map_err(|e| template_error(env, name, e))
}

/// A template error naming the template, the line and quoting that line.
fn template_error(env: &Environment, name: &str, error: minijinja::Error) -> InvalidError {
    let template = error.name().unwrap_or(name).to_string();
    let line = error.line();
    let mut message = match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    };
    if error.kind() == minijinja::ErrorKind::TemplateNotFound {
        message =
            format!("template {name:?} not found in {TEMPLATE_DIR}/ or the built-in templates");
    }
    let source_line = line.and_then(|l| {
        let source = env.get_template(&template).ok()?.source().to_string();
        source
            .lines()
            .nth(l.checked_sub(1)?)
            .map(|s| s.trim().to_string())
    });
    if let Some(text) = source_line {
        message = format!("{message}\n    | {text}");
    }
    InvalidError::Template {
        template: if templates::builtin(&template).is_some() {
            format!("{template} (built-in)")
        } else {
            format!("{TEMPLATE_DIR}/{template}")
        },
        line,
        message,
    }
}

/// A value inside `Environment="…"`: as `unit`, with `"` and `\` escaped.
fn unit_env(value: String) -> Result<String, minijinja::Error> {
    unit_value(value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A value for a systemd unit line: one line only, and `%` taken literally
/// (not a specifier).
fn unit_value(value: String) -> Result<String, minijinja::Error> {
    if value.contains(['\n', '\r']) {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("{value:?} spans lines; a unit setting must be one line"),
        ));
    }
    Ok(value.replace('%', "%%"))
}

/// Quote a string for POSIX sh: `'...'` with embedded quotes escaped.
fn shell_quote(value: String) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}
