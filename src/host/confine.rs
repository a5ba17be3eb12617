//! A cgroup per step: builds, hooks and seeding run in a cgroup (v2) of
//! their own below plumb's, and the whole cgroup is killed when the step
//! ends, so a process that double-forks or calls `setsid` cannot outlive
//! it. Under systemd this needs `Delegate=yes` on plumb's unit (its units
//! have it); in a sandbox it works wherever plumb may write its own cgroup
//! (root, cgroup v2 mounted). Where no cgroup can be made, a step is stopped
//! through its process group only, and `plumb` says so once per run.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Prefix of the step cgroups plumb creates.
const PREFIX: &str = "plumb-step-";

/// A cgroup holding one step's processes; killed and removed when dropped.
#[derive(Debug)]
pub struct Cgroup {
    dir: PathBuf,
    procs: File,
}

impl Cgroup {
    /// A new, empty cgroup below plumb's own, if the machine allows one.
    pub fn create() -> Option<Cgroup> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let base = own_dir()?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("{PREFIX}{}-{n}", std::process::id()));
        fs::create_dir(&dir).ok()?;
        match OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
        {
            Ok(procs) => Some(Cgroup { dir, procs }),
            Err(_) => {
                let _ = fs::remove_dir(&dir);
                None
            }
        }
    }

    /// The open `cgroup.procs`, written by the child before exec.
    pub fn procs_fd(&self) -> i32 {
        self.procs.as_raw_fd()
    }

    /// SIGKILL every process in the cgroup.
    pub fn kill(&self) {
        kill_dir(&self.dir);
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        kill_dir(&self.dir);
        remove_when_empty(&self.dir, Duration::from_secs(5));
    }
}

/// Whether steps can be confined in cgroups on this machine.
pub fn available() -> bool {
    Cgroup::create().is_some()
}

/// Kill and remove step cgroups left by plumb runs that died (SIGKILL,
/// power loss): their processes must not outlive the run either.
pub fn sweep_stale() {
    let Some(base) = own_dir() else { return };
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: Option<i32> = rest.split('-').next().and_then(|p| p.parse().ok());
        let alive = pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            kill_dir(&entry.path());
            remove_when_empty(&entry.path(), Duration::from_secs(2));
        }
    }
}

fn kill_dir(dir: &Path) {
    // cgroup.kill (Linux 5.14+) kills atomically, forks included.
    let killed = OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.kill"))
        .and_then(|mut f| f.write_all(b"1"));
    if killed.is_ok() {
        return;
    }
    // Older kernels: kill what is listed until nothing is left.
    for _ in 0..100 {
        let pids = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        if pids.trim().is_empty() {
            return;
        }
        for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn remove_when_empty(dir: &Path, limit: Duration) {
    let started = Instant::now();
    while fs::remove_dir(dir).is_err() && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// plumb's own cgroup directory on the cgroup2 hierarchy, if writable.
fn own_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let mount = cgroup2_mount()?;
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
        let dir = mount.join(path.trim_start_matches('/'));
        nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).ok()?;
        Some(dir)
    })
    .as_deref()
}

/// Where the cgroup2 (unified) hierarchy is mounted: where systemd puts
/// it (a `statfs` each), else wherever mountinfo says.
fn cgroup2_mount() -> Option<PathBuf> {
    use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};
    for usual in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if statfs(usual).is_ok_and(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC) {
            return Some(PathBuf::from(usual));
        }
    }
    let mounts = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| {
        // "... mount-point options - fstype source super-options"
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(unescape))?
    })
}

/// mountinfo escapes spaces and the like as `\040`.
fn unescape(field: &str) -> PathBuf {
    let mut out = Vec::new();
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(n) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            out.push(n);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&out),
    ))
}
