//! `plumb validate [DIR]`: render a deploy repo working tree for every host it
//! defines and run every check — YAML, templates, target paths, `nginx -t`,
//! `systemd-analyze verify` — for the deploy repo's own CI, before a push.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::desired::{self, Desired};
use crate::error::{Error, exit};
use crate::render::{self, HostFacts};
use crate::repo;
use crate::settings::Settings;
use crate::tree::Tree;

/// Stands in for the commit when a working tree is rendered.
const WORKTREE: &str = "0000000000000000000000000000000000000000";

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
    println!(
        "validating {} for {} host(s): {}",
        dir.display(),
        hosts.len(),
        hosts
            .iter()
            .map(|h| label(h))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut problems = 0;
    for host in &hosts {
        let found = check_host(settings, &tree, host);
        for (severity, message) in &found {
            println!("{}: {severity}: {message}", label(host));
        }
        let errors = found.iter().filter(|(s, _)| *s == "error").count();
        if errors == 0 {
            println!("{}: ok", label(host));
        }
        problems += errors;
    }
    if problems > 0 {
        println!("{problems} problem(s)");
        return Ok(exit::INVALID_REPO);
    }
    Ok(exit::OK)
}

/// Every problem of one host's rendering, as (severity, message).
fn check_host(settings: &Settings, tree: &Tree, host: &str) -> Vec<(&'static str, String)> {
    let Ok(scratch) = tempfile::TempDir::new() else {
        return vec![("error", "cannot create a temporary directory".into())];
    };
    let rendered = repo::load(tree, host)
        .map_err(Error::from)
        .and_then(|input| {
            let app_trees =
                super::common::fetch_app_trees(settings, &input, &scratch.path().join("apps"))?;
            let facts = HostFacts {
                commit: WORKTREE,
                fingerprint: "",
                state_dir: &settings.layout.state_dir,
                roots: &settings.roots,
                app_trees: &app_trees,
            };
            Ok(render::render(tree, &input, &facts)?)
        });
    let desired = match rendered {
        Ok(desired) => desired,
        Err(e) => return vec![("error", e.to_string())],
    };
    let mut found = Vec::new();
    found.extend(check_nginx(&desired, scratch.path()));
    found.extend(check_units(&desired, scratch.path()));
    found
}

fn tool(name: &str, arg: &str) -> bool {
    Command::new(name)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `nginx -t` on the rendered nginx files, placed under a scratch prefix.
/// Certificates missing on this machine are replaced by a throwaway
/// self-signed one, so the check runs anywhere.
fn check_nginx(desired: &Desired, scratch: &Path) -> Vec<(&'static str, String)> {
    let files: Vec<(&PathBuf, String)> = desired
        .files
        .iter()
        .filter(|(p, _)| desired::is_nginx(p))
        .map(|(p, f)| (p, String::from_utf8_lossy(&f.bytes).into_owned()))
        .collect();
    if files.is_empty() {
        return Vec::new();
    }
    if !tool("nginx", "-v") {
        return vec![(
            "warning",
            "nginx is not installed here: nginx -t skipped".into(),
        )];
    }
    let prefix = scratch.join("nginx");
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
        let to = prefix.join(path.strip_prefix("/").unwrap_or(path));
        let written =
            std::fs::create_dir_all(to.parent().unwrap()).and_then(|_| std::fs::write(&to, text));
        if let Err(e) = written {
            return vec![("error", format!("cannot write {}: {e}", to.display()))];
        }
    }
    if needs_cert {
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=validate",
            ])
            .arg("-keyout")
            .arg(&cert)
            .arg("-out")
            .arg(&cert)
            .output();
        if !made.is_ok_and(|o| o.status.success()) {
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
    let conf_path = prefix.join("nginx.conf");
    if let Err(e) = std::fs::write(&conf_path, conf) {
        return vec![(
            "error",
            format!("cannot write {}: {e}", conf_path.display()),
        )];
    }
    let out = Command::new("nginx")
        .arg("-t")
        .arg("-q")
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(&prefix)
        .arg("-e")
        .arg(prefix.join("error.log"))
        .output();
    match out {
        Ok(o) if o.status.success() => Vec::new(),
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stderr).replace(&format!("{p}/"), "/");
            vec![("error", format!("nginx -t: {}", text.trim()))]
        }
        Err(e) => vec![("warning", format!("nginx -t could not run: {e}"))],
    }
}

/// `systemd-analyze verify` on the rendered units. Programs that only exist
/// on the target host (ExecStart= of deployed scripts) are warnings here.
fn check_units(desired: &Desired, scratch: &Path) -> Vec<(&'static str, String)> {
    let units: Vec<(&str, &[u8])> = desired
        .files
        .iter()
        .filter_map(|(p, f)| desired::unit_name(p).map(|name| (name, &f.bytes[..])))
        .collect();
    if units.is_empty() {
        return Vec::new();
    }
    if !tool("systemd-analyze", "--version") {
        return vec![(
            "warning",
            "systemd-analyze is not installed here: unit checks skipped".into(),
        )];
    }
    let dir = scratch.join("units");
    let mut paths = Vec::new();
    for (name, bytes) in units {
        let path = dir.join(name);
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, bytes)) {
            return vec![("error", format!("cannot write {}: {e}", path.display()))];
        }
        paths.push(path);
    }
    let out = match Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
    {
        Ok(out) => out,
        Err(e) => return vec![("warning", format!("systemd-analyze could not run: {e}"))],
    };
    let text = String::from_utf8_lossy(&out.stderr)
        .replace(&format!("{}/", dir.display()), "/etc/systemd/system/");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let host_only = line.contains("is not executable: No such file or directory");
            let severity = if host_only { "warning" } else { "error" };
            (severity, format!("systemd-analyze verify: {line}"))
        })
        .collect()
}
