//! Host paths named by a deploy repo: normalisation and the allowed roots.
//!
//! Every target path is checked here before anything is written, so a commit
//! cannot reach outside the directories the host config allows.

use std::os::unix::ffi::OsStrExt;
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

/// Where backups may be written by default (besides the allowed roots).
pub const BACKUP_ROOT: &str = "/var/backups";

/// Paths no deploy repo may ever write, whatever the allow list says: plumb
/// itself, and the places that hand out root (the deny list always wins).
const DENIED: &[(&str, &str)] = &[
    ("/etc/plumb", "plumb's own configuration"),
    ("/run/plumb", "plumb's own runtime files"),
    ("/etc/sudoers", "sudo's configuration"),
    ("/etc/sudoers.d", "sudo's configuration"),
    ("/etc/pam.d", "PAM"),
    ("/etc/security", "PAM"),
    ("/etc/ssh", "the ssh server's configuration"),
    ("/etc/passwd", "the user database"),
    ("/etc/shadow", "the user database"),
    ("/etc/group", "the user database"),
    ("/etc/gshadow", "the user database"),
    ("/etc/crontab", "cron"),
    ("/etc/cron.d", "cron"),
    ("/etc/cron.hourly", "cron"),
    ("/etc/cron.daily", "cron"),
    ("/etc/cron.weekly", "cron"),
    ("/etc/cron.monthly", "cron"),
    ("/var/spool/cron", "cron"),
    ("/etc/ld.so.preload", "the dynamic loader"),
    ("/etc/ld.so.conf.d", "the dynamic loader"),
    ("/proc", "the kernel"),
    ("/sys", "the kernel"),
    ("/dev", "devices"),
    ("/boot", "the boot loader"),
];

/// Whether the normalised `path` is `root` or lies below it, as
/// `Path::starts_with` says. Compared as bytes when `root` is in normal
/// form too (then a component prefix is a byte prefix ending at a `/`):
/// every managed file is checked against every root and denied prefix.
fn at_or_under(path: &Path, root: &Path) -> bool {
    let (p, r) = (path.as_os_str().as_bytes(), root.as_os_str().as_bytes());
    debug_assert!(is_normal(p), "{path:?} is not normalised");
    if !is_normal(r) {
        return path.starts_with(root);
    }
    p.starts_with(r) && (p.len() == r.len() || p[r.len()] == b'/')
}

/// Strictly below `root` (see `at_or_under`).
fn strictly_under(path: &Path, root: &Path) -> bool {
    at_or_under(path, root) && path != root
}

/// What `normalize` returns: absolute, not `/`, plain components only.
fn is_normal(bytes: &[u8]) -> bool {
    bytes.len() > 1
        && bytes[0] == b'/'
        && bytes[1..]
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
}

/// Why the normalised `path` may never be written by a deploy repo, if it
/// may not.
fn denied(path: &Path, state_dir: &Path) -> Option<String> {
    if at_or_under(path, state_dir) {
        return Some("is plumb's state directory".into());
    }
    if let Some((_, what)) = DENIED.iter().find(|(p, _)| at_or_under(path, Path::new(p))) {
        return Some(format!("belongs to {what}"));
    }
    let components: Vec<&str> = path.iter().filter_map(|c| c.to_str()).collect();
    if components.contains(&".ssh") || path.file_name().is_some_and(|n| n == "authorized_keys") {
        return Some("holds ssh keys".into());
    }
    // plumb's own units and their drop-ins (plumb.service, plumb.timer,
    // plumb-daemon.service.d/…), wherever systemd reads units from.
    let unit_dir = [
        "/etc/systemd",
        "/run/systemd",
        "/lib/systemd",
        "/usr/lib/systemd",
    ]
    .iter()
    .any(|d| at_or_under(path, Path::new(d)));
    if unit_dir && components.iter().any(|c| c.starts_with("plumb")) {
        return Some("is one of plumb's own units".into());
    }
    None
}

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

/// What a deploy repo may write: an allow list of roots (the defaults,
/// `/etc/<app>` per app, and the host config's `allow_paths`), and a deny
/// list that always wins.
#[derive(Debug, Clone)]
pub struct AllowedRoots {
    roots: Vec<PathBuf>,
    /// `user@host:/prefix` entries an ssh publish target must fall under
    /// (the host config's `allow_publish`).
    publish: Vec<String>,
    state_dir: PathBuf,
}

impl AllowedRoots {
    /// The defaults plus `extra` from the host config.
    pub fn new(extra: &[PathBuf], state_dir: &Path) -> Self {
        let mut roots: Vec<PathBuf> = DEFAULT_ROOTS.iter().map(PathBuf::from).collect();
        roots.extend(extra.iter().cloned());
        AllowedRoots {
            roots,
            publish: Vec::new(),
            state_dir: state_dir.to_path_buf(),
        }
    }

    /// With the host config's `allow_publish` entries (`user@host:/prefix`).
    pub fn with_publish(mut self, entries: &[String]) -> Self {
        self.publish = entries.to_vec();
        self
    }

    /// Whether the host config lets the deploy repo publish over ssh as
    /// `user` to `path` on `host`: some `allow_publish` entry names that
    /// user and host, and a directory `path` is equal to or inside.
    pub fn allows_publish(&self, user: &str, host: &str, path: &str) -> bool {
        self.publish.iter().any(|entry| {
            let Some((who, prefix)) = entry.split_once(':') else {
                return false;
            };
            who == format!("{user}@{host}")
                && Path::new(path).starts_with(Path::new(prefix))
                && !path.split('/').any(|c| c == "..")
        })
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
        self.check_within(origin, raw, &[])
    }

    /// Where a backup of `app` may be written: an allowed root, or below
    /// `/var/backups`.
    pub fn check_backup_destination(&self, origin: &str, raw: &str) -> Result<PathBuf, PathError> {
        self.check_within(origin, raw, &[PathBuf::from(BACKUP_ROOT)])
    }

    /// What a backup of `app` may read (as root): its shared data, or an
    /// allowed root.
    pub fn check_backup_source(
        &self,
        origin: &str,
        raw: &str,
        app: &str,
    ) -> Result<PathBuf, PathError> {
        let shared = self.state_dir.join("shared").join(app);
        let path = normalize(raw).map_err(|why| fail(origin, raw, why))?;
        if path.starts_with(&shared) {
            return Ok(path);
        }
        self.check_within(origin, raw, &[])
    }

    fn check_within(
        &self,
        origin: &str,
        raw: &str,
        more: &[PathBuf],
    ) -> Result<PathBuf, PathError> {
        let path = normalize(raw).map_err(|why| fail(origin, raw, why))?;
        if let Some(why) = denied(&path, &self.state_dir) {
            return Err(fail(
                origin,
                raw,
                &format!("{why}: no deploy repo may write it, whatever allow_paths says"),
            ));
        }
        let inside = self
            .roots
            .iter()
            .chain(more)
            .any(|root| strictly_under(&path, root));
        if !inside {
            let roots: Vec<String> = self
                .roots
                .iter()
                .chain(more)
                .map(|r| r.display().to_string())
                .collect();
            return Err(fail(
                origin,
                raw,
                &format!(
                    "is outside the allowed roots ({}); add it to `allow_paths` in the host config if this is intended",
                    roots.join(", ")
                ),
            ));
        }
        Ok(path)
    }
}

fn fail(origin: &str, raw: &str, reason: &str) -> PathError {
    PathError {
        origin: origin.to_string(),
        path: raw.to_string(),
        reason: reason.to_string(),
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
    let rel = path.strip_prefix("/").unwrap_or(path);
    let mut out = PathBuf::with_capacity(root.as_os_str().len() + 1 + rel.as_os_str().len());
    out.push(root);
    out.push(rel);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn ssh_publish_targets_need_an_allow_publish_entry_above_them() {
        let roots = super::AllowedRoots::new(&[], std::path::Path::new("/var/lib/plumb"))
            .with_publish(&["deploy@cdn1.example.com:/srv/www".to_string()]);
        assert!(roots.allows_publish("deploy", "cdn1.example.com", "/srv/www"));
        assert!(roots.allows_publish("deploy", "cdn1.example.com", "/srv/www/blog"));
        assert!(!roots.allows_publish("deploy", "cdn1.example.com", "/srv/wwwx"));
        assert!(!roots.allows_publish("deploy", "cdn1.example.com", "/srv/www/../../etc"));
        assert!(!roots.allows_publish("root", "cdn1.example.com", "/srv/www"));
        assert!(!roots.allows_publish("deploy", "git.example.com", "/srv/www"));
        let none = super::AllowedRoots::new(&[], std::path::Path::new("/var/lib/plumb"));
        assert!(!none.allows_publish("deploy", "cdn1.example.com", "/srv/www"));
    }

    use super::*;

    fn roots() -> AllowedRoots {
        AllowedRoots::new(&[], Path::new("/var/lib/plumb")).with_apps(["blog"])
    }

    #[test]
    fn the_byte_comparison_of_roots_says_what_path_components_say() {
        let roots = [
            "/etc/nginx",
            "/etc/nginx/",
            "/etc//nginx",
            "/etc/./nginx",
            "/etc/../etc/nginx",
            "/",
            "/etc",
            "etc/nginx",
            "/etc/nginx/conf.d",
        ];
        let paths = [
            "/etc/nginx",
            "/etc/nginx/a.conf",
            "/etc/nginxx/a.conf",
            "/etc/ngin",
            "/etc/nginx/conf.d/b.conf",
            "/etc",
            "/var/x",
        ];
        for root in roots {
            for raw in paths {
                let path = normalize(raw).unwrap();
                let root = Path::new(root);
                assert_eq!(
                    at_or_under(&path, root),
                    path.starts_with(root),
                    "{raw} {root:?}"
                );
                assert_eq!(
                    strictly_under(&path, root),
                    path.starts_with(root) && path != root,
                    "{raw} {root:?}"
                );
            }
        }
    }

    #[test]
    fn accepts_paths_under_roots() {
        let p = roots().check("t", "/etc/nginx//conf.d/blog.conf").unwrap();
        assert_eq!(p, PathBuf::from("/etc/nginx/conf.d/blog.conf"));
        assert!(roots().check("t", "/etc/blog/config.yaml").is_ok());
    }

    #[test]
    fn the_deny_list_wins_over_any_allowed_root() {
        let everything = AllowedRoots::new(
            &[PathBuf::from("/etc"), PathBuf::from("/")],
            Path::new("/var/lib/plumb"),
        );
        for bad in [
            "/etc/plumb/plumb.yaml",
            "/etc/systemd/system/plumb.service",
            "/etc/systemd/system/plumb.service.d/override.conf",
            "/etc/systemd/system/plumb-daemon.service",
            "/etc/systemd/system/timers.target.wants/plumb.timer",
            "/etc/sudoers.d/web",
            "/etc/pam.d/sshd",
            "/etc/ssh/sshd_config",
            "/root/.ssh/authorized_keys",
            "/home/web/.ssh/config",
            "/etc/passwd",
            "/etc/shadow",
            "/etc/cron.d/web",
            "/var/spool/cron/crontabs/root",
            "/proc/sys/kernel/x",
            "/dev/sda",
            "/boot/grub/grub.cfg",
            "/var/lib/plumb/state.json",
            "/etc/ld.so.preload",
        ] {
            let err = everything.check("t", bad).unwrap_err().to_string();
            assert!(err.contains("whatever allow_paths says"), "{bad}: {err}");
        }
        assert!(everything.check("t", "/etc/web/config.yaml").is_ok());
        assert!(
            everything
                .check("t", "/etc/systemd/system/web.service")
                .is_ok()
        );
    }

    #[test]
    fn backups_read_the_apps_shared_data_and_write_under_var_backups() {
        let r = roots();
        assert!(
            r.check_backup_source("t", "/var/lib/plumb/shared/blog/db.sqlite", "blog")
                .is_ok()
        );
        assert!(
            r.check_backup_source("t", "/var/lib/plumb/shared/other/db", "blog")
                .is_err()
        );
        assert!(r.check_backup_source("t", "/etc/shadow", "blog").is_err());
        assert!(r.check_backup_destination("t", "/var/backups/blog").is_ok());
        assert!(r.check_backup_destination("t", "/etc").is_err());
        assert!(r.check_backup_destination("t", "/root/.ssh").is_err());
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
