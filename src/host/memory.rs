//! An in-memory machine for unit tests: a filesystem of files, directories
//! and symlinks, users, unit states, and a log of every service, process and
//! user call in order. Failures can be injected at any call, and a crash
//! simulated: from a chosen call on, every change fails and nothing more is
//! written, as if the process had been killed there.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::process::{Output, ProcessError};
use super::{Account, Files, Host, Job, Kind, Processes, Services, Stat, UnitState, Users};
use crate::spec::health::HealthCheck;

#[derive(Debug, Clone)]
enum Node {
    File {
        bytes: Vec<u8>,
        mode: u32,
        ino: u64,
        mtime: i64,
        uid: u32,
    },
    Dir {
        mode: u32,
        uid: u32,
    },
    Link(PathBuf),
}

/// What a scripted command does when run.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// Exit with this code.
    Exit(i32),
    /// Exit with this code the first time only.
    ExitOnce(i32),
    /// Write a file (host path) and succeed.
    Write(PathBuf, Vec<u8>),
}

#[derive(Debug, Default)]
struct Mem {
    nodes: BTreeMap<PathBuf, Node>,
    calls: Vec<String>,
    /// Changes (mutations and calls) so far.
    changes: u64,
    /// The change that fails (once).
    fail_at: Option<u64>,
    /// From this change on, everything fails: the process is "dead".
    crash_at: Option<u64>,
    next_ino: u64,
    clock: i64,
    users: BTreeMap<String, u32>,
    units: BTreeMap<String, UnitState>,
    scripts: Vec<(String, Behavior)>,
}

/// An in-memory host; see the module docs.
#[derive(Debug, Default)]
pub struct MemoryHost {
    mem: RefCell<Mem>,
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected failure: {what}"))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: not found", path.display()),
    )
}

/// `path` made absolute and plain (`..` and `.` applied).
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

impl MemoryHost {
    pub fn new() -> MemoryHost {
        let host = MemoryHost::default();
        host.mem.borrow_mut().nodes.insert(
            PathBuf::from("/"),
            Node::Dir {
                mode: 0o755,
                uid: 0,
            },
        );
        host.add_user("nobody", 65534);
        host
    }

    /// Every service, process and user call so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.mem.borrow().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.mem.borrow_mut().calls.clear();
    }

    /// How many changes (writes, calls) were made so far.
    pub fn changes(&self) -> u64 {
        self.mem.borrow().changes
    }

    /// Make the `n`th change from now fail once (1-based).
    pub fn fail_at(&self, n: u64) {
        let mut mem = self.mem.borrow_mut();
        mem.fail_at = Some(mem.changes + n);
    }

    /// Make every change from the `n`th from now on fail: a crash there.
    pub fn crash_at(&self, n: u64) {
        let mut mem = self.mem.borrow_mut();
        mem.crash_at = Some(mem.changes + n);
    }

    /// Bring the host back to life (after `crash_at`), as a new process.
    pub fn revive(&self) {
        let mut mem = self.mem.borrow_mut();
        mem.crash_at = None;
        mem.fail_at = None;
    }

    pub fn add_user(&self, name: &str, uid: u32) {
        self.mem.borrow_mut().users.insert(name.to_string(), uid);
    }

    pub fn set_unit(&self, unit: &str, state: UnitState) {
        self.mem.borrow_mut().units.insert(unit.to_string(), state);
    }

    /// Script the command whose label starts with `prefix`.
    pub fn script(&self, prefix: &str, behavior: Behavior) {
        self.mem
            .borrow_mut()
            .scripts
            .push((prefix.to_string(), behavior));
    }

    /// Write `bytes` into the file at `path` in place, as an editor that
    /// keeps the inode does: every hard link to it sees them.
    #[cfg(test)]
    pub fn edit_in_place(&self, path: &Path, bytes: &[u8]) {
        let (_, node) = self.node(path, true).expect("the file exists");
        let Node::File { ino: edited, .. } = node else {
            panic!("{}: not a file", path.display());
        };
        let mut mem = self.mem.borrow_mut();
        mem.clock += 1;
        let now = mem.clock;
        for node in mem.nodes.values_mut() {
            if let Node::File {
                bytes: b,
                ino,
                mtime,
                ..
            } = node
                && *ino == edited
            {
                *b = bytes.to_vec();
                *mtime = now;
            }
        }
    }

    /// A snapshot of every path with what it holds, for comparisons.
    pub fn tree(&self) -> BTreeMap<PathBuf, String> {
        self.mem
            .borrow()
            .nodes
            .iter()
            .map(|(p, n)| {
                let v = match n {
                    Node::File { bytes, mode, .. } => {
                        format!("file {:o} {}", mode, String::from_utf8_lossy(bytes))
                    }
                    Node::Dir { .. } => "dir".into(),
                    Node::Link(t) => format!("link {}", t.display()),
                };
                (p.clone(), v)
            })
            .collect()
    }

    /// Count a change; fail it when injected.
    fn change(&self, what: &str) -> io::Result<()> {
        let mut mem = self.mem.borrow_mut();
        mem.changes += 1;
        let n = mem.changes;
        if mem.crash_at.is_some_and(|at| n >= at) || mem.fail_at == Some(n) {
            return Err(injected(what));
        }
        Ok(())
    }

    fn call(&self, line: String) -> Result<(), ProcessError> {
        self.change(&line).map_err(|source| ProcessError::Spawn {
            command: line.clone(),
            source,
        })?;
        self.mem.borrow_mut().calls.push(line.clone());
        let script = {
            let mut mem = self.mem.borrow_mut();
            let found = mem
                .scripts
                .iter()
                .position(|(prefix, _)| line.starts_with(prefix.as_str()));
            match found.map(|i| (i, mem.scripts[i].1.clone())) {
                Some((i, Behavior::ExitOnce(code))) => {
                    mem.scripts.remove(i);
                    Some(Behavior::Exit(code))
                }
                other => other.map(|(_, b)| b),
            }
        };
        match script {
            None | Some(Behavior::ExitOnce(_)) => Ok(()),
            Some(Behavior::Exit(code)) => Err(ProcessError::Exit {
                command: line,
                code,
                output: "scripted failure".into(),
            }),
            Some(Behavior::Write(path, bytes)) => {
                let mut mem = self.mem.borrow_mut();
                let node = new_file(&mut mem, bytes, 0o644);
                mem.nodes.insert(clean(&path), node);
                Ok(())
            }
        }
    }

    /// Follow links in every component but (unless `follow_last`) the last.
    fn resolve(&self, path: &Path, follow_last: bool) -> io::Result<PathBuf> {
        let mem = self.mem.borrow();
        let mut done = PathBuf::from("/");
        let parts: Vec<_> = clean(path)
            .components()
            .filter_map(|c| match c {
                Component::Normal(p) => Some(p.to_os_string()),
                _ => None,
            })
            .collect();
        let mut queue: std::collections::VecDeque<_> = parts.into();
        let mut hops = 0;
        while let Some(part) = queue.pop_front() {
            let next = done.join(&part);
            let last = queue.is_empty();
            match mem.nodes.get(&next) {
                Some(Node::Link(target)) if !last || follow_last => {
                    hops += 1;
                    if hops > 40 {
                        return Err(io::Error::other("too many levels of symbolic links"));
                    }
                    let joined = if target.is_absolute() {
                        target.clone()
                    } else {
                        done.join(target)
                    };
                    let mut rest: Vec<_> = clean(&joined)
                        .components()
                        .filter_map(|c| match c {
                            Component::Normal(p) => Some(p.to_os_string()),
                            _ => None,
                        })
                        .collect();
                    rest.extend(queue.drain(..));
                    queue = rest.into();
                    done = PathBuf::from("/");
                }
                _ => done = next,
            }
        }
        Ok(done)
    }

    fn node(&self, path: &Path, follow_last: bool) -> io::Result<(PathBuf, Node)> {
        let at = self.resolve(path, follow_last)?;
        let node = self.mem.borrow().nodes.get(&at).cloned();
        node.map(|n| (at, n)).ok_or_else(|| not_found(path))
    }

    /// The resolved path of a new entry at `path`, whose parent must be a dir.
    fn new_entry(&self, path: &Path) -> io::Result<PathBuf> {
        let parent = path.parent().ok_or_else(|| not_found(path))?;
        let (dir, node) = self.node(parent, true)?;
        if !matches!(node, Node::Dir { .. }) {
            return Err(io::Error::other(format!(
                "{}: not a directory",
                parent.display()
            )));
        }
        let at = dir.join(path.file_name().ok_or_else(|| not_found(path))?);
        if self.mem.borrow().nodes.contains_key(&at) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists", path.display()),
            ));
        }
        Ok(at)
    }
}

impl MemoryHost {
    /// Refuse a directory path with a symlink among its components.
    fn no_link_on_the_way(&self, dir: &Path) -> io::Result<()> {
        let mut at = PathBuf::from("/");
        for part in clean(dir).components().skip(1) {
            at.push(part);
            if let Some(Node::Link(_)) = self.mem.borrow().nodes.get(&at) {
                return Err(io::Error::other(format!("{} is a symlink", at.display())));
            }
        }
        Ok(())
    }
}

fn new_file(mem: &mut Mem, bytes: Vec<u8>, mode: u32) -> Node {
    mem.next_ino += 1;
    mem.clock += 1;
    Node::File {
        bytes,
        mode,
        ino: mem.next_ino,
        mtime: mem.clock,
        uid: 0,
    }
}

impl Host for MemoryHost {
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

impl MemoryHost {
    /// A directory's ctime, made of its entries (name, kind, link target):
    /// it moves whenever an entry is added, removed or replaced, as a real
    /// one does. Within the epoch's first second, so always in the past.
    fn dir_ctime(&self, dir: &Path) -> i64 {
        use std::hash::{Hash, Hasher};
        let mem = self.mem.borrow();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for (path, node) in mem.nodes.range(dir.to_path_buf()..) {
            if !path.starts_with(dir) {
                break;
            }
            if path.parent() != Some(dir) {
                continue;
            }
            path.hash(&mut hasher);
            match node {
                Node::File { ino, .. } => (0, *ino).hash(&mut hasher),
                Node::Dir { .. } => 1.hash(&mut hasher),
                Node::Link(target) => target.hash(&mut hasher),
            }
        }
        (hasher.finish() % 999_999_999) as i64 + 1
    }
}

impl Files for MemoryHost {
    fn root(&self) -> &Path {
        Path::new("/")
    }

    fn stat(&self, path: &Path) -> io::Result<Stat> {
        let (at, node) = self.node(path, false)?;
        Ok(match node {
            Node::File {
                bytes,
                mode,
                ino,
                mtime,
                uid,
            } => Stat {
                kind: Kind::File,
                size: bytes.len() as u64,
                mtime_ns: mtime,
                ctime_ns: mtime,
                ino,
                mode,
                uid,
            },
            Node::Dir { mode, uid } => Stat {
                kind: Kind::Dir,
                size: 0,
                mtime_ns: 0,
                ctime_ns: self.dir_ctime(&at),
                ino: 0,
                mode,
                uid,
            },
            Node::Link(target) => Stat {
                kind: Kind::Symlink,
                size: target.as_os_str().len() as u64,
                mtime_ns: 0,
                ctime_ns: 0,
                ino: 0,
                mode: 0o777,
                uid: 0,
            },
        })
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        match self.node(path, true)? {
            (_, Node::File { bytes, .. }) => Ok(bytes),
            _ => Err(io::Error::other(format!("{}: not a file", path.display()))),
        }
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        match self.node(path, false)? {
            (_, Node::Link(target)) => Ok(target),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a link", path.display()),
            )),
        }
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let (dir, node) = self.node(path, true)?;
        if !matches!(node, Node::Dir { .. }) {
            return Err(io::Error::other(format!(
                "{}: not a directory",
                path.display()
            )));
        }
        let mem = self.mem.borrow();
        Ok(mem
            .nodes
            .range(dir.clone()..)
            .skip(1)
            .take_while(|(p, _)| p.starts_with(&dir))
            .filter(|(p, _)| p.parent() == Some(dir.as_path()))
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect())
    }

    fn sha256(&self, path: &Path) -> io::Result<String> {
        Ok(hex::encode(Sha256::digest(self.read(path)?)))
    }

    fn git_blob_id(&self, path: &Path) -> io::Result<String> {
        let bytes = self.read(path)?;
        git2::Oid::hash_object(git2::ObjectType::Blob, &bytes)
            .map(|oid| oid.to_string())
            .map_err(io::Error::other)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let path = clean(path);
        let mut at = PathBuf::from("/");
        for part in path.components().skip(1) {
            at.push(part);
            let resolved = self.resolve(&at, true)?;
            let exists = self.mem.borrow().nodes.get(&resolved).cloned();
            match exists {
                Some(Node::Dir { .. }) => {}
                Some(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{}: not a directory", at.display()),
                    ));
                }
                None => {
                    self.change(&format!("mkdir {}", at.display()))?;
                    self.mem.borrow_mut().nodes.insert(
                        resolved,
                        Node::Dir {
                            mode: 0o755,
                            uid: 0,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.change(&format!("chmod {mode:o} {}", path.display()))?;
        let (at, _) = self.node(path, false)?;
        match self.mem.borrow_mut().nodes.get_mut(&at) {
            Some(Node::File { mode: m, .. }) | Some(Node::Dir { mode: m, .. }) => *m = mode,
            _ => return Err(io::Error::other("not a file or directory")),
        }
        Ok(())
    }

    fn write_new(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        self.change(&format!("write {}", path.display()))?;
        let at = self.new_entry(path)?;
        let mut mem = self.mem.borrow_mut();
        let node = new_file(&mut mem, bytes.to_vec(), mode);
        mem.nodes.insert(at, node);
        Ok(())
    }

    fn write_stream(&self, path: &Path, from: &mut dyn Read, mode: u32) -> io::Result<()> {
        let mut bytes = Vec::new();
        from.read_to_end(&mut bytes)?;
        self.write_new(path, &bytes, mode)
    }

    fn place_link(&self, target: &Path, path: &Path) -> io::Result<()> {
        let dir = path.parent().ok_or_else(|| not_found(path))?;
        self.no_link_on_the_way(dir)?;
        self.create_dir_all(dir)?;
        let tmp = dir.join(format!(
            ".{}.plumb-tmp",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        if self.read_link(&tmp).is_ok() {
            self.remove_file(&tmp)?;
        }
        self.symlink(target, &tmp)?;
        self.rename(&tmp, path)
    }

    fn remove_link(&self, path: &Path) -> io::Result<()> {
        self.no_link_on_the_way(path.parent().ok_or_else(|| not_found(path))?)?;
        match self.remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.change(&format!("link {} {}", from.display(), to.display()))?;
        let (_, node) = self.node(from, false)?;
        let at = self.new_entry(to)?;
        self.mem.borrow_mut().nodes.insert(at, node);
        Ok(())
    }

    fn symlink(&self, target: &Path, path: &Path) -> io::Result<()> {
        self.change(&format!("symlink {}", path.display()))?;
        let at = self.new_entry(path)?;
        self.mem
            .borrow_mut()
            .nodes
            .insert(at, Node::Link(target.to_path_buf()));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.change(&format!("rename {} {}", from.display(), to.display()))?;
        let from = self.resolve(from, false)?;
        let parent = to.parent().ok_or_else(|| not_found(to))?;
        let to = self
            .resolve(parent, true)?
            .join(to.file_name().unwrap_or_default());
        let mut mem = self.mem.borrow_mut();
        if !mem.nodes.contains_key(&from) {
            return Err(not_found(&from));
        }
        if let Some(Node::Dir { .. }) = mem.nodes.get(&to) {
            let has_children = mem.nodes.keys().any(|p| p.starts_with(&to) && *p != to);
            if has_children {
                return Err(io::Error::other("rename over a non-empty directory"));
            }
        }
        let moved: Vec<(PathBuf, Node)> = mem
            .nodes
            .iter()
            .filter(|(p, _)| p.starts_with(&from))
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect();
        mem.nodes
            .retain(|p, _| !p.starts_with(&from) && !p.starts_with(&to));
        for (p, n) in moved {
            let rest = p.strip_prefix(&from).unwrap().to_path_buf();
            let dest = if rest.as_os_str().is_empty() {
                to.clone()
            } else {
                to.join(rest)
            };
            mem.nodes.insert(dest, n);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.change(&format!("rm {}", path.display()))?;
        let (at, node) = self.node(path, false)?;
        if matches!(node, Node::Dir { .. }) {
            return Err(io::Error::other(format!(
                "{}: is a directory",
                path.display()
            )));
        }
        self.mem.borrow_mut().nodes.remove(&at);
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.change(&format!("rm -r {}", path.display()))?;
        let (at, _) = self.node(path, false)?;
        self.mem
            .borrow_mut()
            .nodes
            .retain(|p, _| !p.starts_with(&at));
        Ok(())
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        self.change(&format!("fsync {}", path.display()))?;
        self.node(path, true).map(drop)
    }

    fn sync_fs(&self, path: &Path) -> io::Result<()> {
        self.change(&format!("syncfs {}", path.display()))?;
        self.node(path, true).map(drop)
    }

    fn copy_tree(&self, from: &Path, to: &Path, hard_link: bool) -> io::Result<()> {
        self.change(&format!("copy {} {}", from.display(), to.display()))?;
        let (from, _) = self.node(from, false)?;
        let to = self.new_entry(to)?;
        let mut mem = self.mem.borrow_mut();
        let copied: Vec<(PathBuf, Node)> = mem
            .nodes
            .iter()
            .filter(|(p, _)| p.starts_with(&from))
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect();
        for (p, n) in copied {
            let rest = p.strip_prefix(&from).unwrap();
            let dest = if rest.as_os_str().is_empty() {
                to.clone()
            } else {
                to.join(rest)
            };
            let n = match n {
                Node::File { bytes, mode, .. } if !hard_link => new_file(&mut mem, bytes, mode),
                other => other,
            };
            mem.nodes.insert(dest, n);
        }
        Ok(())
    }

    fn blocked_for(&self, _path: &Path, _account: &Account) -> Option<PathBuf> {
        None
    }

    fn chown(
        &self,
        path: &Path,
        owner: &Account,
        recursive: bool,
        lock_down: bool,
    ) -> io::Result<()> {
        self.change(&format!("chown {} {}", owner.name, path.display()))?;
        let (at, _) = self.node(path, false)?;
        let mut mem = self.mem.borrow_mut();
        for (p, node) in mem.nodes.iter_mut() {
            if *p != at && !(recursive && p.starts_with(&at)) {
                continue;
            }
            match node {
                Node::File { uid, mode, .. } | Node::Dir { uid, mode } => {
                    *uid = owner.uid;
                    if lock_down {
                        *mode &= !0o7022;
                    }
                }
                Node::Link(_) => {}
            }
        }
        Ok(())
    }
}

impl Services for MemoryHost {
    fn systemctl(&self, args: &[&str]) -> Result<(), ProcessError> {
        self.call(format!("systemctl {}", args.join(" ")))?;
        let mut mem = self.mem.borrow_mut();
        match args {
            ["restart" | "start", unit] | ["enable", "--now", unit] => {
                mem.units.insert(unit.to_string(), UnitState::Active);
            }
            ["disable", "--now", unit] | ["stop", unit] => {
                mem.units.insert(unit.to_string(), UnitState::Inactive);
            }
            _ => {}
        }
        Ok(())
    }

    fn unit_states(&self, units: &[String]) -> Vec<UnitState> {
        let mem = self.mem.borrow();
        units
            .iter()
            .map(|u| mem.units.get(u).copied().unwrap_or(UnitState::Inactive))
            .collect()
    }

    fn verify_units(&self, paths: &[PathBuf]) -> Result<(), ProcessError> {
        let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        self.call(format!("systemd-analyze verify {}", paths.join(" ")))
    }

    fn nginx_test(&self) -> Result<(), ProcessError> {
        self.call("nginx -t".into())
    }

    fn nginx_reload(&self) -> Result<(), ProcessError> {
        self.call("nginx reload".into())
    }
}

impl Processes for MemoryHost {
    fn run(&self, job: &Job) -> Result<Output, ProcessError> {
        let user = job
            .account
            .as_ref()
            .map(|a| a.name.as_str())
            .unwrap_or("root");
        self.call(format!(
            "{:?} as {user} in {}: {}",
            job.kind,
            job.dir.display(),
            job.label()
        ))
        .map(|_| Output::default())
    }

    fn health(&self, check: &HealthCheck) -> Result<(), ProcessError> {
        self.call(format!("health {}: {}", check.app, check.probe))
            .map_err(|e| match e {
                ProcessError::Exit { .. } => ProcessError::Unhealthy {
                    attempts: 1,
                    seconds: 0.0,
                    last: "scripted failure".into(),
                },
                other => other,
            })
    }
}

impl Users for MemoryHost {
    fn lookup(&self, name: &str) -> Option<Account> {
        let uid = *self.mem.borrow().users.get(name)?;
        Some(Account {
            name: name.to_string(),
            uid,
            gid: uid,
            groups: vec![uid],
        })
    }

    fn create(&self, name: &str) -> Result<(), ProcessError> {
        self.call(format!("useradd --system {name}"))?;
        let mut mem = self.mem.borrow_mut();
        let uid = 900 + mem.users.len() as u32;
        mem.users.insert(name.to_string(), uid);
        Ok(())
    }

    fn account_for(&self, name: Option<&str>) -> Result<Account, ProcessError> {
        let name = name.unwrap_or("(none)");
        self.lookup(name).ok_or_else(|| ProcessError::User {
            user: name.to_string(),
            problem: "does not exist".into(),
        })
    }
}

/// Every path below `root` in the memory host, as a set (for assertions).
pub fn paths_below(host: &MemoryHost, root: &Path) -> BTreeSet<PathBuf> {
    host.tree()
        .into_keys()
        .filter(|p| p.starts_with(root))
        .collect()
}
