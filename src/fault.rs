//! Fault injection for crash tests: with `PLUMB_FAULT_KILL_AFTER=N` set, the
//! process SIGKILLs itself just before its Nth host call that changes
//! something. Tests use it to prove a run killed at any step leaves a
//! complete release behind and the next run converges.

use std::cell::Cell;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::host::{CommandError, Host, HostCall};

/// The environment variable that arms the fault.
pub const VAR: &str = "PLUMB_FAULT_KILL_AFTER";

/// A host that dies at a chosen step.
pub struct KillAt<H> {
    inner: H,
    remaining: Cell<u64>,
}

impl<H: Host> KillAt<H> {
    /// Wrap `inner` if `PLUMB_FAULT_KILL_AFTER` is set to a number.
    pub fn from_env(inner: H) -> Result<KillAt<H>, H> {
        match std::env::var(VAR).ok().and_then(|v| v.parse().ok()) {
            Some(n) => Ok(KillAt {
                inner,
                remaining: Cell::new(n),
            }),
            None => Err(inner),
        }
    }

    fn step(&self) {
        let left = self.remaining.get().saturating_sub(1);
        self.remaining.set(left);
        if left == 0 {
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
        }
    }
}

impl<H: Host> Host for KillAt<H> {
    fn root(&self) -> &Path {
        self.inner.root()
    }
    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        self.inner.read_link(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn inactive(&self, units: &[String]) -> Vec<String> {
        self.inner.inactive(units)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.step();
        self.inner.create_dir_all(path)
    }
    fn write_file(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        self.step();
        self.inner.write_file(path, bytes, mode)
    }
    fn symlink(&self, target: &Path, path: &Path) -> io::Result<()> {
        self.step();
        self.inner.symlink(target, path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step();
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.step();
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.step();
        self.inner.remove_dir_all(path)
    }
    fn sync(&self, path: &Path) -> io::Result<()> {
        self.step();
        self.inner.sync(path)
    }
    fn sync_fs(&self, path: &Path) -> io::Result<()> {
        self.step();
        self.inner.sync_fs(path)
    }
    fn run(&self, call: &HostCall) -> Result<(), CommandError> {
        self.step();
        self.inner.run(call)
    }
    fn build(
        &self,
        dir: &Path,
        user: Option<&str>,
        steps: &[String],
        timeout: Duration,
    ) -> Result<(), CommandError> {
        self.step();
        self.inner.build(dir, user, steps, timeout)
    }
    fn copy_tree(&self, from: &Path, to: &Path, hard_link: bool) -> io::Result<()> {
        self.step();
        self.inner.copy_tree(from, to, hard_link)
    }
    fn chown_to(&self, path: &Path, user: Option<&str>) -> Result<(), CommandError> {
        self.step();
        self.inner.chown_to(path, user)
    }
    fn user_exists(&self, name: &str) -> bool {
        self.inner.user_exists(name)
    }
    fn seed(&self, from: &Path, to: &Path, user: Option<&str>) -> Result<(), CommandError> {
        self.step();
        self.inner.seed(from, to, user)
    }
    fn is_file(&self, path: &Path) -> bool {
        self.inner.is_file(path)
    }
}
