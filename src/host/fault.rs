//! Fault injection for crash tests (cargo feature `fault-injection`, never
//! in a release build): with `PLUMB_FAULT_KILL_AFTER=N` set, the process
//! SIGKILLs itself just before its Nth change to the host. Tests use it to
//! prove that a run killed at any step leaves a complete release behind and
//! the next run converges.

use std::cell::Cell;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::process::{Output, ProcessError};
use super::{Account, Files, Host, Job, Processes, Services, Stat, UnitState, Users};
use crate::spec::health::HealthCheck;

/// The environment variable that arms the fault.
pub const VAR: &str = "PLUMB_FAULT_KILL_AFTER";

/// A host that dies at a chosen change.
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
            let _ =
                nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl<H: Host> Host for KillAt<H> {
    fn files(&self) -> &dyn Files {
        self
    }
    fn services(&self) -> &dyn Services {
        self
    }
    fn processes(&self) -> &dyn Processes {
        self
    }
    fn users(&self) -> &dyn Users {
        self
    }
}

impl<H: Host> Files for KillAt<H> {
    fn root(&self) -> &Path {
        self.inner.files().root()
    }
    fn stat(&self, path: &Path) -> io::Result<Stat> {
        self.inner.files().stat(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.files().read(path)
    }
    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        self.inner.files().read_link(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.files().list_dir(path)
    }
    fn sha256(&self, path: &Path) -> io::Result<String> {
        self.inner.files().sha256(path)
    }
    fn git_blob_id(&self, path: &Path) -> io::Result<String> {
        self.inner.files().git_blob_id(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.step();
        self.inner.files().create_dir_all(path)
    }
    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.step();
        self.inner.files().set_mode(path, mode)
    }
    fn write_new(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        self.step();
        self.inner.files().write_new(path, bytes, mode)
    }
    fn write_stream(&self, path: &Path, from: &mut dyn Read, mode: u32) -> io::Result<()> {
        self.step();
        self.inner.files().write_stream(path, from, mode)
    }
    fn place_link(&self, target: &Path, path: &Path) -> io::Result<()> {
        self.step();
        self.inner.files().place_link(target, path)
    }
    fn remove_link(&self, path: &Path) -> io::Result<()> {
        self.step();
        self.inner.files().remove_link(path)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step();
        self.inner.files().hard_link(from, to)
    }
    fn symlink(&self, target: &Path, path: &Path) -> io::Result<()> {
        self.step();
        self.inner.files().symlink(target, path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step();
        self.inner.files().rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.step();
        self.inner.files().remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.step();
        self.inner.files().remove_dir_all(path)
    }
    fn sync(&self, path: &Path) -> io::Result<()> {
        self.step();
        self.inner.files().sync(path)
    }
    fn sync_fs(&self, path: &Path) -> io::Result<()> {
        self.step();
        self.inner.files().sync_fs(path)
    }
    fn copy_tree(&self, from: &Path, to: &Path, hard_link: bool) -> io::Result<()> {
        self.step();
        self.inner.files().copy_tree(from, to, hard_link)
    }
    fn blocked_for(&self, path: &Path, account: &Account) -> Option<PathBuf> {
        self.inner.files().blocked_for(path, account)
    }
    fn chown(
        &self,
        path: &Path,
        owner: &Account,
        recursive: bool,
        lock_down: bool,
    ) -> io::Result<()> {
        self.step();
        self.inner.files().chown(path, owner, recursive, lock_down)
    }
}

impl<H: Host> Services for KillAt<H> {
    fn systemctl(&self, args: &[&str]) -> Result<(), ProcessError> {
        self.step();
        self.inner.services().systemctl(args)
    }
    fn unit_states(&self, units: &[String]) -> Vec<UnitState> {
        self.inner.services().unit_states(units)
    }
    fn verify_units(&self, paths: &[PathBuf]) -> Result<(), ProcessError> {
        self.step();
        self.inner.services().verify_units(paths)
    }
    fn nginx_test(&self) -> Result<(), ProcessError> {
        self.step();
        self.inner.services().nginx_test()
    }
    fn nginx_reload(&self) -> Result<(), ProcessError> {
        self.step();
        self.inner.services().nginx_reload()
    }
}

impl<H: Host> Processes for KillAt<H> {
    fn run(&self, job: &Job) -> Result<Output, ProcessError> {
        self.step();
        self.inner.processes().run(job)
    }
    fn health(&self, check: &HealthCheck) -> Result<(), ProcessError> {
        self.step();
        self.inner.processes().health(check)
    }
}

impl<H: Host> Users for KillAt<H> {
    fn lookup(&self, name: &str) -> Option<Account> {
        self.inner.users().lookup(name)
    }
    fn create(&self, name: &str) -> Result<(), ProcessError> {
        self.step();
        self.inner.users().create(name)
    }
    fn account_for(&self, name: Option<&str>) -> Result<Account, ProcessError> {
        self.inner.users().account_for(name)
    }
}
