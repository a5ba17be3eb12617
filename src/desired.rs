//! The desired state of a host at one commit: pure data, built by `render`.

use std::collections::BTreeMap;
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
    /// Managed files by absolute host path.
    pub files: BTreeMap<PathBuf, DesiredFile>,
    /// Units that should be enabled and running, in start order.
    pub units: Vec<String>,
    /// App sources copied into the release, by app name.
    pub apps: BTreeMap<String, Vec<SourceFile>>,
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
    pub bytes: Vec<u8>,
    pub executable: bool,
}

/// The unit name if `path` is a systemd unit file plumb manages.
pub fn unit_name(path: &Path) -> Option<&str> {
    if path.parent()? != Path::new(UNIT_DIR) {
        return None;
    }
    let name = path.file_name()?.to_str()?;
    const KINDS: &[&str] = &[
        ".service", ".timer", ".socket", ".path", ".target", ".mount",
    ];
    KINDS.iter().any(|k| name.ends_with(k)).then_some(name)
}

/// Whether `path` is part of nginx's configuration.
pub fn is_nginx(path: &Path) -> bool {
    path.starts_with(NGINX_DIR)
}
