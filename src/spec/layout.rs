//! Where plumb keeps its own files on a host, as host paths below the state
//! directory.

use std::path::{Path, PathBuf};

/// plumb's files on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub state_dir: PathBuf,
}

impl Layout {
    pub fn releases(&self) -> PathBuf {
        self.state_dir.join("releases")
    }
    pub fn release(&self, id: &str) -> PathBuf {
        self.releases().join(id)
    }
    /// A file of a release, by its key inside the release (`files/etc/x`).
    pub fn release_file(&self, id: &str, key: &str) -> PathBuf {
        self.release(id).join(key)
    }
    pub fn current(&self) -> PathBuf {
        self.state_dir.join("current")
    }
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }
    pub fn mirror(&self) -> PathBuf {
        self.state_dir.join("repo.git")
    }
    /// Bare mirrors of apps' own git sources.
    pub fn app_mirrors(&self) -> PathBuf {
        self.state_dir.join("apps")
    }
    /// Data of `app` that outlives releases.
    pub fn shared(&self, app: &str) -> PathBuf {
        self.state_dir.join("shared").join(app)
    }
    /// Archives of an app's shared data taken before its pre-switch hooks.
    pub fn backups(&self, app: &str) -> PathBuf {
        self.state_dir.join("backups").join(app)
    }
    pub fn journal(&self) -> PathBuf {
        self.state_dir.join("journal.json")
    }
    /// The webroot of ACME HTTP-01 challenges (`certbot --webroot -w`).
    pub fn acme(&self) -> PathBuf {
        self.state_dir.join("acme")
    }
    pub fn calls_log(&self) -> PathBuf {
        self.state_dir.join("host-calls.log")
    }
    /// The host path an owned link at `path` points to: through `current`,
    /// so one swap of `current` flips every existing link at once.
    pub fn link_target(&self, path: &Path) -> PathBuf {
        // Sized once: built for every managed path on every deploy.
        let rel = relative(path);
        let mut target = PathBuf::with_capacity(
            self.state_dir.as_os_str().len() + "/current/files/".len() + rel.as_os_str().len(),
        );
        target.push(&self.state_dir);
        target.push("current/files");
        target.push(rel);
        target
    }
    /// The same file in a given release (a pinned link).
    pub fn pinned_target(&self, release: &str, path: &Path) -> PathBuf {
        self.release(release).join("files").join(relative(path))
    }
}

/// `path` without its leading `/`.
pub fn relative(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}
