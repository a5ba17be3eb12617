//! The host boundary: every side effect plumb has on a machine goes through
//! one of four traits — [`Files`], [`Services`], [`Processes`], [`Users`] —
//! reached through [`Host`]. Nothing outside this folder touches the machine.
//!
//! - [`RealHost`] is the machine. With `--root DIR` it is a *sandbox*: every
//!   host path is placed under DIR, and service-manager, web-server, user and
//!   hook commands are recorded in order instead of run ([`Recorder`]).
//! - [`MemoryHost`] is an in-memory machine for unit tests, with failure
//!   injection at any call.
//!
//! May import: `spec` (paths), `render::desired` (health checks). Never
//! `plan`, `apply` or `commands`.

mod account;
pub mod confine;
#[cfg(feature = "fault-injection")]
pub mod fault;
mod files;
pub mod health;
pub mod lock;
pub mod memory;
pub mod process;
mod real;
mod record;
mod services;
pub mod stream;
mod tree_ops;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use account::Account;
pub use memory::MemoryHost;
pub use process::{Output, ProcessError};
pub use real::RealHost;
pub use record::Recorder;
pub use services::Commands;

use crate::spec::health::HealthCheck;

/// A machine plumb changes: four kinds of effect.
pub trait Host {
    fn files(&self) -> &dyn Files;
    fn services(&self) -> &dyn Services;
    fn processes(&self) -> &dyn Processes;
    fn users(&self) -> &dyn Users;
}

/// What `lstat(2)` says about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the epoch: for a directory,
    /// it moves whenever an entry is added, removed or renamed.
    pub ctime_ns: i64,
    pub ino: u64,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub uid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// Files and directories, by host path (`/etc/nginx/...`). Paths are placed
/// under the host's root; symlinks are never followed unless a method says so.
pub trait Files {
    /// The directory host paths are placed under (`/` on a real host).
    fn root(&self) -> &Path;

    /// Where host path `path` lives on this machine.
    fn real(&self, path: &Path) -> PathBuf {
        crate::spec::paths::under(self.root(), path)
    }

    /// `lstat(2)`.
    fn stat(&self, path: &Path) -> io::Result<Stat>;
    /// `lstat(2)` of many paths relative to one directory (`names` may hold
    /// `/`), with one path walk to the directory instead of one per name.
    fn stat_under(&self, dir: &Path, names: &[&str]) -> Vec<io::Result<Stat>> {
        names
            .iter()
            .map(|name| self.stat(&dir.join(name)))
            .collect()
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn read_link(&self, path: &Path) -> io::Result<PathBuf>;
    /// Names of the entries of a directory, sorted.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// The SHA-256 of a file's bytes, read in pieces (files may be large).
    fn sha256(&self, path: &Path) -> io::Result<String>;
    /// git's id of a file's bytes as a blob (SHA-1 of `blob <size>\0` and
    /// the bytes), read in pieces.
    fn git_blob_id(&self, path: &Path) -> io::Result<String>;
    /// The content id of `path` in the scheme of `like`: `git:<blob id>`
    /// for a `git:` id, a SHA-256 otherwise (see `spec::tree::Blob::id`).
    fn content_id(&self, path: &Path, like: &str) -> io::Result<String> {
        if like.starts_with("git:") {
            Ok(format!("git:{}", self.git_blob_id(path)?))
        } else {
            self.sha256(path)
        }
    }

    /// Create a directory and its parents (mode 0755 unless it exists).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Set the permission bits of `path` (not following a link).
    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Create `path`, which must not exist, with `bytes` and exactly `mode`.
    /// Durable only after `sync` or `sync_fs`.
    fn write_new(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()>;
    /// Create `path`, which must not exist, from a reader (large files).
    fn write_stream(&self, path: &Path, from: &mut dyn io::Read, mode: u32) -> io::Result<()>;
    /// Replace `path` durably: a temporary file, fsynced, renamed over it,
    /// then the directory fsynced. Readers see the old or the new bytes.
    fn write_atomic(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        match self.remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.write_new(&tmp, bytes, mode)?;
        self.sync(&tmp)?;
        self.rename(&tmp, path)?;
        self.sync(path.parent().unwrap_or(Path::new("/")))
    }
    /// Replace `path` with `bytes` through a rename, without fsync: readers
    /// see the old or the new bytes, a crash may lose both (caches and
    /// informational files only).
    fn replace(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        let _ = self.remove_file(&tmp);
        self.write_new(&tmp, bytes, mode)?;
        self.rename(&tmp, path)
    }
    /// Point the link at `path` to `target` atomically (a temporary link
    /// renamed over it), creating missing directories. No directory on the
    /// way may be a symlink: a managed path never leads outside its root.
    fn place_link(&self, target: &Path, path: &Path) -> io::Result<()>;
    /// Remove the link (or file) at `path` through the same walk; a path
    /// that is not there is not an error.
    fn remove_link(&self, path: &Path) -> io::Result<()>;
    /// A second name for a file (same inode, same bytes and times).
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Create a symlink at `path` pointing to `target` (taken literally).
    fn symlink(&self, target: &Path, path: &Path) -> io::Result<()>;
    /// `rename(2)`: atomic replacement of `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// fsync a file or directory.
    fn sync(&self, path: &Path) -> io::Result<()>;
    /// Flush the whole filesystem holding `path` (one `syncfs(2)`).
    fn sync_fs(&self, path: &Path) -> io::Result<()>;
    /// Copy a tree to a new path, never following links; files hard-linked
    /// when `hard_link`. Only for trees nobody else can write (releases).
    fn copy_tree(&self, from: &Path, to: &Path, hard_link: bool) -> io::Result<()>;
    /// The first directory on the way to `path` (from the machine's `/`,
    /// the root included) that `account` may not enter, if any: a process
    /// of that user could not work there.
    fn blocked_for(&self, path: &Path, account: &Account) -> Option<PathBuf>;
    /// Give `path` (and with `recursive`, everything below it, walking by
    /// file descriptor without following links) to `owner`. With
    /// `lock_down`, group/other write and set-id bits are cleared too.
    fn chown(
        &self,
        path: &Path,
        owner: &Account,
        recursive: bool,
        lock_down: bool,
    ) -> io::Result<()>;
}

/// The service manager and the web server.
pub trait Services {
    /// `systemctl <args…>`.
    fn systemctl(&self, args: &[&str]) -> Result<(), ProcessError>;
    /// The state of each unit, in order (a query: a sandbox reports all active).
    fn unit_states(&self, units: &[String]) -> Vec<UnitState>;
    /// `systemd-analyze verify` these unit files (host paths).
    fn verify_units(&self, paths: &[PathBuf]) -> Result<(), ProcessError>;
    /// Check nginx's full configuration (`nginx -t`).
    fn nginx_test(&self) -> Result<(), ProcessError>;
    /// Make nginx load its configuration again.
    fn nginx_reload(&self) -> Result<(), ProcessError>;
}

/// What systemd says of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitState {
    Active,
    /// Inactive, activating, or anything else that is not running or failed.
    Inactive,
    /// Failed: needs `reset-failed` before it can be started again.
    Failed,
}

/// What a child process is for; decides how a sandbox treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// A build step of an app (runs even on a sandbox: it only writes the release).
    Build,
    /// Copying an app's first shared data (runs on a sandbox too).
    Seed,
    /// A pre- or post-switch hook.
    Hook,
    /// Archiving an app's shared data before its hooks.
    Snapshot,
    /// Building or querying a container image (runs on a sandbox too: it
    /// only adds images, never changes what runs).
    Image,
    /// Removing a container image (a sandbox records it).
    ImageRemove,
    /// Publishing a site to a target (a sandbox records it).
    Publish,
}

/// A command plumb runs on behalf of the deploy repo.
#[derive(Debug, Clone)]
pub struct Job {
    pub kind: JobKind,
    pub argv: Vec<String>,
    /// Host path of the working directory.
    pub dir: PathBuf,
    /// Who it runs as; `None` only for plumb's own tools (tar as root).
    pub account: Option<Account>,
    pub timeout: Duration,
    /// Extra environment, on top of the documented allow list.
    pub env: Vec<(String, String)>,
}

impl Job {
    /// `/bin/sh -c <command>`.
    pub fn shell(kind: JobKind, command: &str) -> Job {
        Job {
            kind,
            argv: vec!["/bin/sh".into(), "-c".into(), command.into()],
            dir: PathBuf::from("/"),
            account: None,
            timeout: Duration::from_secs(300),
            env: Vec::new(),
        }
    }

    /// The command as the operator reads it.
    pub fn label(&self) -> String {
        match self.argv.as_slice() {
            [sh, c, command] if sh == "/bin/sh" && c == "-c" => command.clone(),
            argv => argv.join(" "),
        }
    }
}

/// Child processes started for the deploy repo: confined, bounded, as a user.
pub trait Processes {
    fn run(&self, job: &Job) -> Result<Output, ProcessError>;
    /// Wait for a health check to pass, until its deadline.
    fn health(&self, check: &HealthCheck) -> Result<(), ProcessError>;
}

/// System accounts.
pub trait Users {
    fn lookup(&self, name: &str) -> Option<Account>;
    /// Create a system user (and its group).
    fn create(&self, name: &str) -> Result<(), ProcessError>;
    /// The account the app's builds and hooks run as: never root. A sandbox
    /// may stand in `nobody` for a user that does not exist here.
    fn account_for(&self, name: Option<&str>) -> Result<Account, ProcessError>;
}
