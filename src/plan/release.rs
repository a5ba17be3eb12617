//! What a release holds — `release.json` — and the manifest of a rendered
//! desired state. Pure data: the planner compares manifests; `apply` writes
//! and reads them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::render::desired::{Desired, Hook, PublishTarget, TlsPending};
use crate::spec::health::HealthCheck;
use crate::spec::layout::relative;

/// `release.json`: everything needed to switch to a release again without
/// rendering anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    pub id: String,
    pub commit: String,
    pub created: String,
    /// Units enabled and running while this release is current.
    pub units: Vec<String>,
    /// Every file the release was written with, by key inside the release.
    pub manifest: BTreeMap<String, FileEntry>,
    /// What makes each unit restart besides its own file (keys: `files/…`
    /// for a file, `app/<name>/` for an app's directory).
    #[serde(default)]
    pub triggers: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub reloadable: BTreeSet<String>,
    #[serde(default)]
    pub health: Vec<HealthCheck>,
    #[serde(default)]
    pub hooks: Vec<Hook>,
    #[serde(default)]
    pub fingerprint: String,
    /// Build key of each app (see `render::desired::AppBuild::key`).
    #[serde(default)]
    pub builds: BTreeMap<String, String>,
    /// Files the builds produced, with their hashes (mode `built`).
    #[serde(default)]
    pub outputs: BTreeMap<String, FileEntry>,
    /// Secrets by `<app>/<name>`: the hash of their *ciphertext* (never of
    /// the plaintext), owner and mode. The plaintext lives on tmpfs only.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretEntry>,
    /// Sites served over HTTP until their certificate exists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_pending: Vec<TlsPending>,
    /// The container image each container app runs, by app name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, String>,
    /// Where the release's static sites are published once it is live.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<PublishTarget>,
}

/// A secret of a release, as far as a release may say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretEntry {
    pub sha256: String,
    pub owner: String,
    pub mode: String,
}

/// One file of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The content's id: a SHA-256 (hex), or `git:<object id>` for an app
    /// source file written from a git blob (see `spec::tree::Blob::id`).
    pub sha256: String,
    pub mode: String,
    /// What `lstat` said right after the file was written: an unchanged
    /// size, mtime and inode means an unchanged file (drift checks hash
    /// only files whose stat differs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<FileStat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ino: u64,
}

impl FileEntry {
    /// Same bytes and mode (the stat is only a cache).
    pub fn same_content(&self, other: &FileEntry) -> bool {
        self.sha256 == other.sha256 && self.mode == other.mode
    }
}

/// Where a file sits in a release.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// A managed file, by host path: `files/<host path>`.
    File(PathBuf),
    /// A file of an app's directory: `app/<name>/<path>`.
    App { app: String, path: PathBuf },
}

impl Key {
    pub fn parse(key: &str) -> Option<Key> {
        if let Some(path) = key.strip_prefix("files/") {
            return Some(Key::File(Path::new("/").join(path)));
        }
        let (app, path) = key.strip_prefix("app/")?.split_once('/')?;
        Some(Key::App {
            app: app.to_string(),
            path: PathBuf::from(path),
        })
    }

    pub fn file(path: &Path) -> String {
        Key::File(path.to_path_buf()).to_string()
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Key::File(path) => write!(f, "files/{}", relative(path).display()),
            Key::App { app, path } => write!(f, "app/{app}/{}", path.display()),
        }
    }
}

/// What restarts a unit besides its own file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A managed file (e.g. the app's config).
    File(PathBuf),
    /// The app's release directory (its source and build).
    App(String),
    /// A secret, by `<app>/<name>`.
    Secret(String),
}

impl Trigger {
    pub fn parse(text: &str) -> Option<Trigger> {
        if let Some(path) = text.strip_prefix("files/") {
            return Some(Trigger::File(Path::new("/").join(path)));
        }
        if let Some(secret) = text.strip_prefix("secret/") {
            return Some(Trigger::Secret(secret.to_string()));
        }
        let app = text.strip_prefix("app/")?.trim_end_matches('/');
        Some(Trigger::App(app.to_string()))
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Trigger::File(path) => write!(f, "files/{}", relative(path).display()),
            Trigger::App(app) => write!(f, "app/{app}/"),
            Trigger::Secret(secret) => write!(f, "secret/{secret}"),
        }
    }
}

impl ReleaseInfo {
    /// The host paths this release manages (its `files/` entries).
    pub fn managed(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.manifest
            .range::<str, _>((Bound::Included("files/"), Bound::Unbounded))
            .map_while(|(k, _)| match Key::parse(k)? {
                Key::File(path) => Some(path),
                Key::App { .. } => None,
            })
    }

    /// Whether `app`'s directory differs from `other`'s: its sources, its
    /// build key, or (`tampered`) files changed by hand.
    pub fn app_changed(&self, other: Option<&ReleaseInfo>, app: &str) -> bool {
        let Some(other) = other else { return true };
        let prefix = format!("app/{app}/");
        let mine = self
            .manifest
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix));
        let theirs = other
            .manifest
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix));
        let differs = mine
            .map(|(k, e)| (k, &e.sha256, &e.mode))
            .ne(theirs.map(|(k, e)| (k, &e.sha256, &e.mode)));
        differs || self.builds.get(app) != other.builds.get(app)
    }

    /// Same files and builds as `other`: switching would change nothing.
    pub fn same_content(&self, other: &ReleaseInfo) -> bool {
        self.builds == other.builds
            && self.images == other.images
            && self.publish == other.publish
            && self.units == other.units
            && self.secrets == other.secrets
            && self.manifest.len() == other.manifest.len()
            && self
                .manifest
                .iter()
                .zip(&other.manifest)
                .all(|((k1, a), (k2, b))| k1 == k2 && a.same_content(b))
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The release `desired` becomes, before it is written: its manifest and
/// everything else `release.json` holds (`outputs` come from the builds).
pub fn planned(desired: &Desired, id: &str) -> ReleaseInfo {
    ReleaseInfo {
        id: id.to_string(),
        commit: desired.commit.clone(),
        created: String::new(),
        units: desired.units.clone(),
        manifest: manifest(desired),
        triggers: desired.triggers.clone(),
        reloadable: desired.reloadable.clone(),
        health: desired.health.clone(),
        hooks: desired.hooks.clone(),
        fingerprint: desired.fingerprint.clone(),
        builds: desired
            .builds
            .iter()
            .map(|(app, b)| (app.clone(), b.key.clone()))
            .collect(),
        outputs: BTreeMap::new(),
        secrets: desired
            .secrets
            .iter()
            .map(|(key, s)| {
                let entry = SecretEntry {
                    sha256: sha256(&s.ciphertext),
                    owner: s.owner.clone(),
                    mode: format!("{:04o}", s.mode),
                };
                (key.clone(), entry)
            })
            .collect(),
        tls_pending: desired.tls_pending.clone(),
        images: desired
            .images
            .iter()
            .map(|(app, image)| (app.clone(), image.tag.clone()))
            .collect(),
        publish: desired.publish.clone(),
    }
}

/// The manifest of `desired`. Source files under an app's shared paths are
/// left out: in the release they are links to data that changes on its own.
pub fn manifest(desired: &Desired) -> BTreeMap<String, FileEntry> {
    let mut out = BTreeMap::new();
    for (path, file) in &desired.files {
        let entry = FileEntry {
            sha256: sha256(&file.bytes),
            mode: format!("{:04o}", file.mode),
            stat: None,
        };
        out.insert(Key::file(path), entry);
    }
    for (app, files) in &desired.apps {
        let shared: &[String] = desired
            .builds
            .get(app)
            .map(|b| b.shared.as_slice())
            .unwrap_or_default();
        for file in files {
            if shared.iter().any(|s| file.path.starts_with(s)) {
                continue;
            }
            // The blob's id: a git object id is never re-hashed here.
            let entry = FileEntry {
                sha256: file.blob.id().to_string(),
                mode: if file.executable { "0755" } else { "0644" }.into(),
                stat: None,
            };
            let key = Key::App {
                app: app.clone(),
                path: file.path.clone(),
            };
            out.insert(key.to_string(), entry);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_triggers_read_back_as_written() {
        for text in ["files/etc/nginx/conf.d/x.conf", "app/blog/bin/run"] {
            assert_eq!(Key::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Key::parse("files/etc/x"), Some(Key::File("/etc/x".into())));
        assert_eq!(Key::parse("release.json"), None);
        for text in [
            "files/etc/blog/config.yaml",
            "app/blog/",
            "secret/blog/htpasswd",
        ] {
            assert_eq!(Trigger::parse(text).unwrap().to_string(), text);
        }
    }
}
