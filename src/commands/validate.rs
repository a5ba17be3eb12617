//! `plumb validate [DIR]`: render a deploy repo working tree for every host it
//! defines and run every check — YAML, templates, target paths, `nginx -t`,
//! `systemd-analyze verify` — for the deploy repo's own CI, before a push.
//! The rendered files go to a scratch directory, never to the machine.

use std::path::{Path, PathBuf};

use crate::error::{Error, exit};
use crate::host::process::{Proc, ProcessError};
use crate::host::{Host, RealHost};
use crate::render::desired::{self, Desired};
use crate::render::{self, HostFacts};
use crate::source::Mirror;
use crate::source::trust::Policy;
use crate::spec::deploy;
use crate::spec::settings::{Commands, Settings};
use crate::spec::tree::Tree;
use crate::ui;

/// Stands in for the commit when a working tree is rendered.
const WORKTREE: &str = "0000000000000000000000000000000000000000";

type Found = Vec<(&'static str, String)>;

pub fn run(settings: &Settings, dir: &Path) -> Result<u8, Error> {
    let tree = Tree::from_dir(dir).map_err(|e| {
        crate::error::ConfigError::Invalid(format!("cannot read {}: {e}", dir.display()))
    })?;
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
        let found = check_host(settings, &tree, host);
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

/// Every problem of one host's rendering, as (severity, message).
fn check_host(settings: &Settings, tree: &Tree, host: &str) -> Found {
    let Ok(scratch) = tempfile::TempDir::new() else {
        return vec![("error", "cannot create a temporary directory".into())];
    };
    let scratch = RealHost::machine(scratch.keep(), Commands::default());
    let rendered = deploy::load(tree, host)
        .map_err(Error::from)
        .and_then(|input| {
            let mirrors = scratch.files().real(Path::new("/apps"));
            let app_trees = super::deploy::fetch_app_trees(settings, &input, &mirrors)?;
            let facts = HostFacts {
                commit: WORKTREE,
                fingerprint: "",
                state_dir: &settings.layout.state_dir,
                roots: &settings.roots,
                app_trees: &app_trees,
                limits: &settings.limits,
            };
            Ok(render::render(tree, &input, &facts)?)
        });
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
    let conf = format!(
        "pid {p}/nginx.pid;\nerror_log {p}/error.log;\nevents {{}}\nhttp {{\n  include {p}/etc/nginx/conf.d/*.conf;\n  include {p}/etc/nginx/sites-enabled/*;\n}}\n"
    );
    if let Err(e) = fs.write_new(Path::new("/nginx.conf"), conf.as_bytes(), 0o644) {
        return vec![("error", format!("cannot write nginx.conf: {e}"))];
    }
    let argv: Vec<String> = [
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
    .map(String::from)
    .to_vec();
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
    let mut argv = vec!["systemd-analyze".to_string(), "verify".to_string()];
    for (name, bytes) in units {
        let path = dir.join(name);
        if let Err(e) = fs
            .create_dir_all(dir)
            .and_then(|_| fs.write_new(&path, bytes, 0o644))
        {
            return vec![("error", format!("cannot write {}: {e}", path.display()))];
        }
        argv.push(fs.real(&path).display().to_string());
    }
    let output = match Proc::new(&argv).run() {
        Ok(out) => out.text,
        Err(ProcessError::Exit { output, .. }) => output,
        Err(e) => return vec![("warning", format!("systemd-analyze could not run: {e}"))],
    };
    let real = format!("{}/", fs.real(dir).display());
    output
        .replace(&real, "/etc/systemd/system/")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let host_only = line.contains("is not executable: No such file or directory");
            let severity = if host_only { "warning" } else { "error" };
            (severity, format!("systemd-analyze verify: {line}"))
        })
        .collect()
}
