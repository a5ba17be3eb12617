//! `plumb validate [DIR]`: render a deploy repo working tree for every host it
//! defines and run every check — YAML, templates, target paths, `nginx -t`,
//! `systemd-analyze verify` — for the deploy repo's own CI, before a push.
//! The rendered files go to a scratch directory, never to the machine.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, exit};
use crate::host::process::{Proc, ProcessError};
use crate::host::{Host, RealHost};
use crate::render::desired::{self, Desired};
use crate::render::{self, HostFacts};
use crate::source::Mirror;
use crate::source::trust::Policy;
use crate::spec::deploy;
use crate::spec::settings::{Commands, Limits, Settings};
use crate::spec::tree::Tree;
use crate::ui;

/// Stands in for the commit when a working tree is rendered.
const WORKTREE: &str = "0000000000000000000000000000000000000000";

type Found = Vec<(&'static str, String)>;

/// Validate the deploy repo in `dir` (its `--path` sub-directory) for every
/// host it defines, or only for `only` (`--hostname`).
pub fn run(settings: &Settings, dir: &Path, only: Option<&str>) -> Result<u8, Error> {
    let dir = &repo_dir(dir, settings);
    let tree = read_tree(dir, settings.limits)?;
    let mut hosts: Vec<String> = tree
        .list("hosts")
        .iter()
        .filter_map(|p| {
            p.file_name()?
                .to_str()?
                .strip_suffix(".yaml")
                .map(str::to_string)
        })
        .collect();
    hosts.insert(0, String::new());
    if let Some(only) = only {
        hosts = vec![only.to_string()];
    }
    let label = |h: &str| {
        if h.is_empty() {
            "(no overlay)".to_string()
        } else {
            h.to_string()
        }
    };
    let names: Vec<String> = hosts.iter().map(|h| label(h)).collect();
    ui::out(format_args!(
        "validating {} for {} host(s): {}",
        dir.display(),
        hosts.len(),
        names.join(", ")
    ));
    let mut problems = 0;
    for host in &hosts {
        let found = check_host(settings, &tree.with_fresh_budget(), host);
        for (severity, message) in &found {
            ui::out(format_args!("{}: {severity}: {message}", label(host)));
        }
        let errors = found.iter().filter(|(s, _)| *s == "error").count();
        if errors == 0 {
            ui::out(format_args!("{}: ok", label(host)));
        }
        problems += errors;
    }
    if problems > 0 {
        ui::out(format_args!("{problems} problem(s)"));
        return Ok(exit::INVALID_REPO);
    }
    Ok(exit::OK)
}

/// The deploy repo's directory in the checkout `dir` (`--path`).
pub(super) fn repo_dir(dir: &Path, settings: &Settings) -> PathBuf {
    if settings.subpath.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(&settings.subpath)
    }
}

/// The working tree at `dir`, as a commit's would be read.
pub(super) fn read_tree(dir: &Path, limits: Limits) -> Result<Tree, Error> {
    Tree::from_dir(dir, limits).map_err(|e| {
        crate::error::ConfigError::Invalid(format!("cannot read {}: {e}", dir.display())).into()
    })
}

/// Check the signature of every commit of `range` in the repository at
/// `dir` against `policy`, as a host would before deploying them.
pub fn signatures(dir: &Path, range: &str, policy: &Policy) -> Result<u8, Error> {
    if !policy.enforced() {
        return Err(crate::error::ConfigError::Invalid(
            "--signatures needs keys: --allowed-signers FILE, --openpgp-certs FILE, or the host config's"
                .into(),
        )
        .into());
    }
    let repo = Mirror::discover(dir)?;
    let (from, to) = repo.range(range)?;
    match repo.verify_range(from.as_deref(), &to, policy) {
        Ok(signed) => {
            for (commit, who) in &signed {
                ui::out(format_args!(
                    "{}: signed by {} ({})",
                    crate::plan::short(commit),
                    who.signer,
                    who.fingerprint
                ));
            }
            ui::out(format_args!("{} commit(s): every one signed", signed.len()));
            Ok(exit::OK)
        }
        Err(untrusted) => {
            ui::out(format_args!("error: {untrusted}"));
            Ok(exit::UNTRUSTED)
        }
    }
}

/// Render a working tree for `host`; apps from other repos are fetched
/// into `scratch` (a throwaway root).
pub(super) fn render_tree(
    settings: &Settings,
    tree: &Tree,
    host: &str,
    scratch: &RealHost,
) -> Result<Desired, Error> {
    let input = deploy::load(tree, host)?;
    let mirrors = scratch.files().real(Path::new("/apps"));
    let app_trees = super::deploy::fetch_app_trees(settings, &input, &mirrors)?;
    let facts = HostFacts {
        commit: WORKTREE,
        fingerprint: "",
        state_dir: &settings.layout.state_dir,
        roots: &settings.roots,
        app_trees: &app_trees,
        limits: &settings.limits,
        // The full configuration is checked (missing certificates are
        // replaced by a throwaway one for `nginx -t`).
        missing: &BTreeSet::new(),
    };
    Ok(render::render(tree, &input, &facts)?)
}

/// A throwaway root for one rendering, removed by the caller.
pub(super) fn scratch() -> Result<RealHost, Error> {
    let dir = tempfile::TempDir::new().map_err(|e| {
        crate::error::ConfigError::Invalid(format!("cannot create a temporary directory: {e}"))
    })?;
    Ok(RealHost::machine(dir.keep(), Commands::default()))
}

/// Every problem of one host's rendering, as (severity, message).
fn check_host(settings: &Settings, tree: &Tree, host: &str) -> Found {
    let scratch = match scratch() {
        Ok(scratch) => scratch,
        Err(e) => return vec![("error", e.to_string())],
    };
    let rendered = render_tree(settings, tree, host, &scratch);
    let mut found = match rendered {
        Ok(desired) => {
            let mut found = check_nginx(&desired, &scratch);
            found.extend(check_units(&desired, &scratch));
            found
        }
        Err(e) => vec![("error", e.to_string())],
    };
    let _ = scratch.files().remove_dir_all(Path::new("/"));
    found.dedup();
    found
}

/// Whether `argv` runs and succeeds (a tool is installed).
fn tool(argv: &[&str]) -> bool {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    Proc::new(&argv).run().is_ok()
}

/// `nginx -t` on the rendered nginx files, placed under a scratch prefix.
/// Certificates missing on this machine are replaced by a throwaway
/// self-signed one, so the check runs anywhere.
fn check_nginx(desired: &Desired, scratch: &RealHost) -> Found {
    let files: Vec<(&PathBuf, String)> = desired
        .files
        .iter()
        .filter(|(p, _)| desired::is_nginx(p))
        .map(|(p, f)| (p, String::from_utf8_lossy(&f.bytes).into_owned()))
        .collect();
    if files.is_empty() {
        return Vec::new();
    }
    if !tool(&["nginx", "-v"]) {
        return vec![(
            "warning",
            "nginx is not installed here: nginx -t skipped".into(),
        )];
    }
    let fs = scratch.files();
    let prefix = fs.root().to_path_buf();
    let cert = prefix.join("selfsigned.pem");
    let mut needs_cert = false;
    for (path, text) in &files {
        let mut text = text.replace("/etc/nginx/", &format!("{}/etc/nginx/", prefix.display()));
        for line in text.clone().lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let [
                directive @ ("ssl_certificate" | "ssl_certificate_key"),
                file,
            ] = words[..]
            {
                let file = file.trim_end_matches(';');
                if !Path::new(file).exists() {
                    needs_cert = true;
                    text = text.replace(
                        &format!("{directive} {file};"),
                        &format!("{directive} {};", cert.display()),
                    );
                }
            }
        }
        let written = path
            .parent()
            .map(|dir| fs.create_dir_all(dir))
            .unwrap_or(Ok(()))
            .and_then(|_| fs.write_new(path, text.as_bytes(), 0o644));
        if let Err(e) = written {
            return vec![("error", format!("cannot write {}: {e}", path.display()))];
        }
    }
    if needs_cert {
        let cert = cert.display().to_string();
        let made = tool(&[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=validate",
            "-keyout",
            &cert,
            "-out",
            &cert,
        ]);
        if !made {
            return vec![(
                "warning",
                "certificates are missing and openssl is not available: nginx -t skipped".into(),
            )];
        }
    }
    let p = prefix.display();
    // `nginx -t` binds the listening ports: as a user who may not bind
    // 80 and 443, it runs as root of a user and network namespace of its
    // own (unprivileged user namespaces, as on Debian).
    // There, workers would be an unmapped user: they are that root too.
    let mut argv: Vec<String> = Vec::new();
    let mut user = "";
    if !nix::unistd::geteuid().is_root()
        && tool(&["unshare", "--user", "--map-root-user", "--net", "true"])
    {
        argv.extend(["unshare", "--user", "--map-root-user", "--net"].map(String::from));
        user = "user root;\n";
    }
    // Logs and temporary directories under the prefix too: nginx opens
    // them during `-t`, and their defaults are root's.
    let conf = format!(
        "{user}pid {p}/nginx.pid;\nerror_log {p}/error.log;\nevents {{}}\nhttp {{\n  access_log {p}/access.log;\n  client_body_temp_path {p}/tmp/body;\n  proxy_temp_path {p}/tmp/proxy;\n  fastcgi_temp_path {p}/tmp/fastcgi;\n  uwsgi_temp_path {p}/tmp/uwsgi;\n  scgi_temp_path {p}/tmp/scgi;\n  include {p}/etc/nginx/conf.d/*.conf;\n  include {p}/etc/nginx/sites-enabled/*;\n}}\n"
    );
    let written = fs
        .create_dir_all(Path::new("/tmp"))
        .and_then(|_| fs.write_new(Path::new("/nginx.conf"), conf.as_bytes(), 0o644));
    if let Err(e) = written {
        return vec![("error", format!("cannot write nginx.conf: {e}"))];
    }
    argv.extend(
        [
            "nginx",
            "-t",
            "-q",
            "-c",
            &format!("{p}/nginx.conf"),
            "-p",
            &p.to_string(),
            "-e",
            &format!("{p}/error.log"),
        ]
        .map(String::from),
    );
    match Proc::new(&argv).run() {
        Ok(_) => Vec::new(),
        Err(ProcessError::Exit { output, .. }) => {
            let text = output.replace(&format!("{p}/"), "/");
            vec![("error", format!("nginx -t: {}", text.trim()))]
        }
        Err(e) => vec![("warning", format!("nginx -t could not run: {e}"))],
    }
}

/// `systemd-analyze verify` on the rendered units. Programs that only exist
/// on the target host (ExecStart= of deployed scripts) are warnings here.
fn check_units(desired: &Desired, scratch: &RealHost) -> Found {
    let units: Vec<(&str, &[u8])> = desired
        .files
        .iter()
        .filter_map(|(p, f)| desired::unit_name(p).map(|name| (name, &f.bytes[..])))
        .collect();
    if units.is_empty() {
        return Vec::new();
    }
    if !tool(&["systemd-analyze", "--version"]) {
        return vec![(
            "warning",
            "systemd-analyze is not installed here: unit checks skipped".into(),
        )];
    }
    let fs = scratch.files();
    let dir = Path::new("/units");
    // Programs the units run that plumb renders too (a backup script) are
    // written under the scratch prefix, and the units pointed at them.
    let programs: Vec<&PathBuf> = desired
        .files
        .keys()
        .filter(|p| desired::unit_of(p).is_none() && !desired::is_nginx(p))
        .collect();
    let mut argv = vec!["systemd-analyze".to_string(), "verify".to_string()];
    for (name, bytes) in units {
        let path = dir.join(name);
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        for program in &programs {
            let word = program.display().to_string();
            if text.contains(&word) {
                text = text.replace(&word, &fs.real(program).display().to_string());
            }
        }
        if let Err(e) = fs
            .create_dir_all(dir)
            .and_then(|_| fs.write_new(&path, text.as_bytes(), 0o644))
        {
            return vec![("error", format!("cannot write {}: {e}", path.display()))];
        }
        argv.push(fs.real(&path).display().to_string());
    }
    for program in programs {
        let file = &desired.files[program];
        let written = program
            .parent()
            .map(|d| fs.create_dir_all(d))
            .unwrap_or(Ok(()))
            .and_then(|_| fs.write_new(program, &file.bytes, file.mode));
        if let Err(e) = written {
            return vec![("error", format!("cannot write {}: {e}", program.display()))];
        }
    }
    let output = match Proc::new(&argv).run() {
        Ok(out) => out.text,
        Err(ProcessError::Exit { output, .. }) => output,
        Err(e) => return vec![("warning", format!("systemd-analyze could not run: {e}"))],
    };
    let real = format!("{}/", fs.real(dir).display());
    let prefix = fs.real(Path::new("/")).display().to_string();
    output
        .replace(&real, "/etc/systemd/system/")
        .replace(prefix.trim_end_matches('/'), "")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let host_only = line.contains("is not executable: No such file or directory");
            let severity = if host_only { "warning" } else { "error" };
            (severity, format!("systemd-analyze verify: {line}"))
        })
        .collect()
}
