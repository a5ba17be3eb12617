//! A real systemd booted in a container: `systemd-nspawn` on the Debian root
//! built by `tests/nspawn/rootfs.sh`, with a tmpfs overlay (every container
//! starts from the same clean root), loopback-only networking, the plumb
//! binary under test at /usr/local/bin/plumb and the test's directories
//! bound where it says. Killed and cleaned up when dropped.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::harness::Run;

/// The shipped unit's sandboxing, applied to every plumb command run in the
/// container (`systemd-run -p …`): what the tests prove, they prove under it.
const PLUMB_UNIT: &str = include_str!("../../../systemd/plumb.service");

/// Longest any single command in a container may take.
const COMMAND_LIMIT: &str = "300";

pub struct Container {
    nspawn: Child,
    init: i32,
    name: String,
}

/// The container root, built on first use (cached under target/nspawn).
fn rootfs() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = manifest.join("target/nspawn");
    let out = Command::new(manifest.join("tests/nspawn/rootfs.sh"))
        .arg(&dir)
        .output()
        .expect("tests/nspawn/rootfs.sh starts");
    assert!(
        out.status.success(),
        "building the container root failed (is mmdebstrap installed? see docs/testing.md):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("rootfs")
}

impl Container {
    /// Boot a container with these host paths bound read-write at these
    /// container paths, and wait until its systemd reports `running`.
    pub fn boot(binds: &[(&Path, &str)]) -> Container {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let root = rootfs();
        let name = format!(
            "plumb-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // The host's cgroup layout is hybrid: nspawn needs a cgroup of its
        // own in every hierarchy, entered before it starts.
        let script = r#"for h in /sys/fs/cgroup/*; do
                [ -d "$h" ] || continue
                mkdir -p "$h/$0" 2>/dev/null && echo $$ > "$h/$0/cgroup.procs" 2>/dev/null
            done
            exec systemd-nspawn "$@""#;
        let nspawn = Command::new("sh")
            .args(["-c", script, &name])
            .arg("--quiet")
            .arg(format!("--directory={}", root.display()))
            .args([
                "--boot",
                "--register=no",
                "--keep-unit",
                "--private-network",
            ])
            .args(["--volatile=overlay", "--console=pipe"])
            .arg(format!("--machine={name}"))
            .arg(format!(
                "--bind-ro={}:/usr/local/bin/plumb",
                env!("CARGO_BIN_EXE_plumb")
            ))
            .args(
                binds
                    .iter()
                    .map(|(from, to)| format!("--bind={}:{to}", from.display())),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("systemd-nspawn starts (apt-get install systemd-container)");
        let mut container = Container {
            init: 0,
            nspawn,
            name,
        };
        container.init = container.wait_for_init();
        container.wait_until_running();
        container
    }

    /// The container's PID 1, as seen from the host.
    fn wait_for_init(&mut self) -> i32 {
        let pid = self.nspawn.id();
        let started = Instant::now();
        loop {
            // nspawn forks helpers first: the init is the child that is
            // PID 1 of its own namespace.
            let children =
                fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            for child in children.split_whitespace() {
                let status =
                    fs::read_to_string(format!("/proc/{child}/status")).unwrap_or_default();
                let nspid = status.lines().find_map(|l| l.strip_prefix("NSpid:"));
                if nspid.is_some_and(|ids| ids.split_whitespace().nth(1) == Some("1")) {
                    return child.parse().unwrap();
                }
            }
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                panic!("systemd-nspawn exited: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no container init after 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_until_running(&self) {
        let started = Instant::now();
        loop {
            let run = self.sh("systemctl is-system-running --wait");
            match run.stdout.trim() {
                "running" => return,
                "degraded" => panic!(
                    "the container booted degraded:\n{}",
                    self.sh("systemctl --failed --no-pager").stdout
                ),
                _ => {}
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "container systemd not running after 60 s: {}{}",
                run.stdout,
                run.stderr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A command run inside the container's namespaces (bounded in time).
    fn enter(&self) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", COMMAND_LIMIT, "nsenter", "-t"])
            .arg(self.init.to_string())
            .args(["-a", "--"]);
        cmd
    }

    /// `sh -c SCRIPT` in the container.
    pub fn sh(&self, script: &str) -> Run {
        Run::from(
            self.enter()
                .args(["sh", "-c", script])
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        )
    }

    /// `sh -c SCRIPT` in the container, which must succeed; its stdout.
    #[track_caller]
    pub fn ok(&self, script: &str) -> String {
        let run = self.sh(script);
        assert_eq!(
            run.code, 0,
            "in the container: {script}\n{}{}",
            run.stdout, run.stderr
        );
        run.stdout
    }

    /// Write a file in the container (parents created).
    pub fn write(&self, path: &str, text: &str, mode: &str) {
        let mut child = self
            .enter()
            .args([
                "sh",
                "-c",
                "mkdir -p \"$(dirname \"$0\")\" && cat > \"$0\" && chmod \"$1\" \"$0\"",
            ])
            .args([path, mode])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "writing {path}");
    }

    /// `plumb ARGS` run as a transient service of the container's systemd,
    /// with the sandboxing of the shipped plumb.service.
    pub fn plumb(&self, args: &[&str]) -> Run {
        Run::from(
            self.enter()
                .args(["systemd-run", "--wait", "--pipe", "--quiet", "--collect"])
                .args(unit_properties())
                .arg("/usr/local/bin/plumb")
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        )
    }

    /// `systemd-run` arguments that start plumb with ARGS in the background
    /// as unit NAME (for SIGKILL tests).
    pub fn plumb_in_background(&self, unit: &str, args: &[&str]) {
        let out = self
            .enter()
            .args(["systemd-run", "--quiet", "--collect", "--no-block"])
            .arg(format!("--unit={unit}"))
            .args(unit_properties())
            .arg("/usr/local/bin/plumb")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One property of a unit, as systemd sees it.
    #[track_caller]
    pub fn show(&self, unit: &str, property: &str) -> String {
        self.ok(&format!("systemctl show --value -p {property} {unit}"))
            .trim()
            .to_string()
    }
}

/// `-p Name=value` for every sandboxing line of the shipped plumb.service.
fn unit_properties() -> Vec<String> {
    let service = PLUMB_UNIT
        .split("[Service]")
        .nth(1)
        .expect("plumb.service has a [Service] section");
    service
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| {
            let key = l.split('=').next().unwrap_or("");
            !matches!(
                key,
                "Type" | "ExecStart" | "TimeoutStartSec" | "SuccessExitStatus"
            )
        })
        .flat_map(|l| ["-p".to_string(), l.to_string()])
        .collect()
}

impl Drop for Container {
    fn drop(&mut self) {
        // PID 1 of a PID namespace dying takes every process in it along.
        if self.init > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.init),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let started = Instant::now();
        while !matches!(self.nspawn.try_wait(), Ok(Some(_))) {
            if started.elapsed() > Duration::from_secs(10) {
                let _ = self.nspawn.kill();
                let _ = self.nspawn.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for hierarchy in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            remove_cgroup(&hierarchy.path().join(&self.name));
        }
    }
}

/// Remove a cgroup and the ones below it, deepest first (they are empty
/// once the container is gone; removal may lag its last process a little).
fn remove_cgroup(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup(&entry.path());
        }
    }
    let started = Instant::now();
    while fs::remove_dir(dir).is_err() && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
}
