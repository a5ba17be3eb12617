//! The desired state of a host at one commit: pure data, built by `render`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where systemd looks for the units plumb installs.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// Where nginx configuration lives.
pub const NGINX_DIR: &str = "/etc/nginx";

/// Everything rendering one commit for one host yields.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// Full commit id the state was rendered from.
    pub commit: String,
    /// Fingerprint of the host settings it was rendered with.
    pub fingerprint: String,
    /// The host overlay applied (`hosts/<hostname>.yaml`), if any.
    pub overlay: Option<String>,
    /// Managed files by absolute host path.
    pub files: BTreeMap<PathBuf, DesiredFile>,
    /// Units that should be enabled and running, in start order.
    pub units: Vec<String>,
    /// App sources copied into the release, by app name.
    pub apps: BTreeMap<String, Vec<SourceFile>>,
    /// What makes each unit restart besides its own file: release paths
    /// (`files/etc/app/config.yaml`, `app/<name>/`) by unit.
    pub triggers: BTreeMap<String, Vec<String>>,
    /// Units that can reload their configuration instead of restarting.
    pub reloadable: BTreeSet<String>,
    /// Checks that must pass after a switch.
    pub health: Vec<crate::spec::health::HealthCheck>,
    /// How each app with a source is built, by app name.
    pub builds: BTreeMap<String, AppBuild>,
    /// Commands run before and after the switch.
    pub hooks: Vec<Hook>,
    /// System users to create if missing.
    pub users: BTreeSet<String>,
    /// Secrets, still encrypted, by `<app>/<name>`.
    pub secrets: BTreeMap<String, DesiredSecret>,
    /// Sites rendered without TLS because their certificate is missing.
    pub tls_pending: Vec<TlsPending>,
    /// Container images the apps run, by app name.
    pub images: BTreeMap<String, ImageBuild>,
    /// Where sites' static files are published after a successful deploy.
    pub publish: Vec<PublishTarget>,
}

/// A site's static files, published to a target after each successful
/// deploy (written to the release as `publish.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishTarget {
    pub app: String,
    /// The directory of the release published, relative to the release
    /// (`app/<name>/build`).
    pub source: String,
    pub to: Destination,
    /// Versions kept on the target.
    pub keep: u32,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// A directory of this host.
    Dir(PathBuf),
    /// A directory of another host, over ssh.
    Ssh {
        user: String,
        host: String,
        port: u16,
        path: String,
    },
}

impl PublishTarget {
    /// How the target is named in messages and `published.json`.
    pub fn name(&self) -> String {
        match &self.to {
            Destination::Dir(dir) => dir.display().to_string(),
            Destination::Ssh {
                user,
                host,
                port,
                path,
            } => format!("ssh://{user}@{host}:{port}{path}"),
        }
    }
}

/// A container image built from an app's release directory with podman.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageBuild {
    /// `localhost/plumb-<app>:<hash of the build context and recipe>`.
    pub tag: String,
    /// The Containerfile, relative to the app directory.
    pub file: String,
    pub build_args: BTreeMap<String, String>,
    /// Whether `RUN` steps may reach the network.
    pub network: bool,
    pub timeout_secs: u64,
    /// The account the container runs as (written to the release at build time).
    pub user: String,
}

/// A site whose certificate is not there yet (served over HTTP meanwhile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsPending {
    pub app: String,
    pub certificate: String,
    pub key: String,
}

/// A secret as the commit holds it: encrypted to the host with age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredSecret {
    pub app: String,
    pub name: String,
    pub ciphertext: Vec<u8>,
    /// Who may read the plaintext, and with which mode.
    pub owner: String,
    pub mode: u32,
}

/// How an app's release directory is completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppBuild {
    pub user: Option<String>,
    pub steps: Vec<String>,
    pub timeout_secs: u64,
    /// Paths in the app directory linked to its shared directory.
    pub shared: Vec<String>,
    /// Hash of the source, steps, user and shared paths: an equal key in the
    /// previous release means its build can be reused.
    pub key: String,
}

/// A command run around the switch, as the app's user, in its release dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    pub app: String,
    /// Before the switch (after a backup of the shared data) or after it.
    pub pre_switch: bool,
    pub command: String,
    pub user: Option<String>,
    pub timeout_secs: u64,
}

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredFile {
    pub bytes: Vec<u8>,
    pub mode: u32,
    /// Which declaration produced it, for messages.
    pub origin: String,
}

/// A file of an app's source tree, relative to the app directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: PathBuf,
    /// The bytes, read when the release is written.
    pub blob: crate::spec::tree::Blob,
    pub executable: bool,
}

/// Kinds of unit plumb manages.
const UNIT_KINDS: &[&str] = &[
    ".service", ".timer", ".socket", ".path", ".target", ".mount",
];

/// The unit name if `path` is a systemd unit file plumb manages.
pub fn unit_name(path: &Path) -> Option<&str> {
    if path.parent()? != Path::new(UNIT_DIR) {
        return None;
    }
    let name = path.file_name()?.to_str()?;
    UNIT_KINDS.iter().any(|k| name.ends_with(k)).then_some(name)
}

/// The unit a unit file or a drop-in (`<unit>.d/*.conf`) belongs to.
pub fn unit_of(path: &Path) -> Option<&str> {
    if let Some(name) = unit_name(path) {
        return Some(name);
    }
    let dir = path.parent()?;
    if dir.parent()? != Path::new(UNIT_DIR) || path.extension()? != "conf" {
        return None;
    }
    let unit = dir.file_name()?.to_str()?.strip_suffix(".d")?;
    UNIT_KINDS.iter().any(|k| unit.ends_with(k)).then_some(unit)
}

/// Whether `path` is part of nginx's configuration.
pub fn is_nginx(path: &Path) -> bool {
    path.starts_with(NGINX_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_ins_belong_to_their_unit() {
        fn unit(p: &str) -> Option<&str> {
            unit_of(Path::new(p))
        }
        assert_eq!(unit("/etc/systemd/system/web.service"), Some("web.service"));
        assert_eq!(
            unit("/etc/systemd/system/web.service.d/limits.conf"),
            Some("web.service")
        );
        assert_eq!(unit("/etc/systemd/system/web.service.d/notes.txt"), None);
        assert_eq!(unit("/etc/systemd/system/x.d/a.conf"), None);
        assert_eq!(unit("/etc/nginx/conf.d/web.conf"), None);
    }
}
