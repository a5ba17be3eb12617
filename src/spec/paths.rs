//! Host paths named by a deploy repo: normalisation and the allowed roots.
//!
//! Every target path is checked here before anything is written, so a commit
//! cannot reach outside the directories the host config allows.

use std::path::{Component, Path, PathBuf};

use thiserror::Error;

/// A target path the deploy repo may not write.
#[derive(Debug, Error)]
#[error("{origin}: target path {path:?} {reason}")]
pub struct PathError {
    /// Where the path was declared (file and app).
    pub origin: String,
    pub path: String,
    pub reason: String,
}

/// Roots that deployed files may live under, whatever the host config adds.
pub const DEFAULT_ROOTS: &[&str] = &["/etc/systemd/system", "/etc/nginx", "/usr/local/lib/plumb"];

/// Paths that are never managed: the host config is the trust root.
const FORBIDDEN: &[&str] = &["/etc/plumb"];

/// App names whose `/etc/<app>` is a system directory: an app with such a
/// name does not get its `/etc/<app>` root, so a deploy repo cannot reach
/// `/etc/ssh` or `/etc/apt` by naming an app after them.
const SYSTEM_ETC: &[&str] = &[
    "alternatives",
    "apparmor",
    "apt",
    "audit",
    "cloud",
    "containerd",
    "cron",
    "default",
    "dhcp",
    "docker",
    "dpkg",
    "environment",
    "firewalld",
    "init",
    "iptables",
    "kernel",
    "letsencrypt",
    "modules",
    "netplan",
    "network",
    "networkmanager",
    "nginx",
    "pam",
    "plumb",
    "polkit-1",
    "resolvconf",
    "rsyslog",
    "security",
    "selinux",
    "skel",
    "ssh",
    "ssl",
    "sudo",
    "sysconfig",
    "systemd",
    "udev",
    "ufw",
];

/// The directories deployed files may be written under.
#[derive(Debug, Clone)]
pub struct AllowedRoots {
    roots: Vec<PathBuf>,
    forbidden: Vec<PathBuf>,
}

impl AllowedRoots {
    /// The defaults plus `extra` from the host config; `state_dir` is always forbidden.
    pub fn new(extra: &[PathBuf], state_dir: &Path) -> Self {
        let mut roots: Vec<PathBuf> = DEFAULT_ROOTS.iter().map(PathBuf::from).collect();
        roots.extend(extra.iter().cloned());
        let mut forbidden: Vec<PathBuf> = FORBIDDEN.iter().map(PathBuf::from).collect();
        forbidden.push(state_dir.to_path_buf());
        AllowedRoots { roots, forbidden }
    }

    /// These roots plus `/etc/<app>` for each app.
    pub fn with_apps<'a>(&self, apps: impl IntoIterator<Item = &'a str>) -> Self {
        let mut more = self.clone();
        more.roots.extend(
            apps.into_iter()
                .filter(|app| !SYSTEM_ETC.contains(app))
                .map(|app| Path::new("/etc").join(app)),
        );
        more
    }

    /// Normalise `raw` and check it lies strictly under an allowed root.
    pub fn check(&self, origin: &str, raw: &str) -> Result<PathBuf, PathError> {
        let fail = |reason: &str| PathError {
            origin: origin.to_string(),
            path: raw.to_string(),
            reason: reason.to_string(),
        };
        let path = normalize(raw).map_err(fail)?;
        if self.forbidden.iter().any(|f| path.starts_with(f)) {
            return Err(fail("is reserved for plumb itself"));
        }
        if !self
            .roots
            .iter()
            .any(|root| path.starts_with(root) && path != *root)
        {
            let roots: Vec<String> = self.roots.iter().map(|r| r.display().to_string()).collect();
            return Err(fail(&format!(
                "is outside the allowed roots ({}); add a root to `allowed_roots` in the host config if this is intended",
                roots.join(", ")
            )));
        }
        Ok(path)
    }
}

/// An absolute path with no `.`/`..` components and no repeated slashes.
pub fn normalize(raw: &str) -> Result<PathBuf, &'static str> {
    let path = Path::new(raw);
    if !path.is_absolute() {
        return Err("is not absolute");
    }
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir => return Err("contains `..`"),
            Component::CurDir | Component::Prefix(_) => return Err("is not a plain path"),
        }
    }
    if out == Path::new("/") {
        return Err("is the root directory");
    }
    Ok(out)
}

/// `path` (absolute, host view) placed under `root`.
pub fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> AllowedRoots {
        AllowedRoots::new(&[], Path::new("/var/lib/plumb")).with_apps(["blog"])
    }

    #[test]
    fn accepts_paths_under_roots() {
        let p = roots().check("t", "/etc/nginx//conf.d/blog.conf").unwrap();
        assert_eq!(p, PathBuf::from("/etc/nginx/conf.d/blog.conf"));
        assert!(roots().check("t", "/etc/blog/config.yaml").is_ok());
    }

    #[test]
    fn rejects_escapes_and_outsiders() {
        for bad in [
            "/etc/nginx/../shadow",
            "etc/nginx/x",
            "/etc/passwd",
            "/etc/nginx",
            "/etc/blogger/x",
            "/etc/plumb/plumb.yaml",
            "/var/lib/plumb/current",
        ] {
            assert!(roots().check("t", bad).is_err(), "{bad} accepted");
        }
        // An app named after a system directory does not open it up.
        let system = AllowedRoots::new(&[], Path::new("/var/lib/plumb")).with_apps(["ssh", "apt"]);
        for bad in ["/etc/ssh/sshd_config.d/x.conf", "/etc/apt/apt.conf.d/99x"] {
            assert!(system.check("t", bad).is_err(), "{bad} accepted");
        }
    }
}
