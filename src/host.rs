//! The `Host` trait: every side effect plumb has on a machine goes through it.
//!
//! Paths are host paths (`/etc/nginx/...`); `RealHost` places them under its
//! root, so `--root DIR` turns any run into a sandbox run. Service-manager and
//! web-server commands are executed on a real root and recorded (in order, in
//! the state dir) on a sandbox root.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::desired::HealthCheck;
pub use crate::process::{CommandError, execute};
use crate::{build, health, paths};
use std::fmt;

/// A command plumb asks the host to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCall {
    /// `systemctl <args…>`.
    Systemctl(Vec<String>),
    /// Check nginx's full configuration (`nginx -t`).
    NginxTest,
    /// Make nginx load its configuration again.
    NginxReload,
    /// `systemd-analyze verify` these unit files (real paths).
    VerifyUnits(Vec<PathBuf>),
    /// Wait for a health check to pass.
    Health(HealthCheck),
    /// A hook: a shell command run in `dir` as `user`.
    Hook {
        dir: PathBuf,
        user: Option<String>,
        command: String,
        timeout_secs: u64,
    },
    /// Create a system user (and its group).
    CreateUser(String),
    /// Archive the directory `from` into the tar.gz `to` (a backup of an
    /// app's shared data before its pre-switch hooks).
    Snapshot { from: PathBuf, to: PathBuf },
}

impl fmt::Display for HostCall {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            HostCall::Health(check) => write!(f, "health {}: {}", check.app, check.probe),
            HostCall::Hook { dir, command, .. } => {
                write!(f, "hook in {}: {command}", dir.display())
            }
            HostCall::CreateUser(user) => write!(f, "useradd --system {user}"),
            HostCall::Snapshot { from, to } => {
                write!(f, "tar -C {} -czf {} .", from.display(), to.display())
            }
            other => write!(f, "{}", Commands::default().argv(other).join(" ")),
        }
    }
}

impl HostCall {
    /// `systemctl <verb> <units…>`.
    pub fn systemctl<I: IntoIterator<Item = S>, S: Into<String>>(args: I) -> Self {
        HostCall::Systemctl(args.into_iter().map(Into::into).collect())
    }
}

/// The argv used for each kind of call; the host config may override them.
#[derive(Debug, Clone)]
pub struct Commands {
    pub systemctl: Vec<String>,
    pub nginx_test: Vec<String>,
    pub nginx_reload: Vec<String>,
    pub systemd_verify: Vec<String>,
}

impl Default for Commands {
    fn default() -> Self {
        let argv = |s: &str| s.split(' ').map(String::from).collect();
        Commands {
            systemctl: argv("systemctl"),
            nginx_test: argv("nginx -t -q"),
            nginx_reload: argv("systemctl reload nginx.service"),
            systemd_verify: argv("systemd-analyze verify"),
        }
    }
}

impl Commands {
    /// The full argv for `call`.
    pub fn argv(&self, call: &HostCall) -> Vec<String> {
        match call {
            HostCall::Systemctl(args) => self.systemctl.iter().chain(args).cloned().collect(),
            HostCall::NginxTest => self.nginx_test.clone(),
            HostCall::NginxReload => self.nginx_reload.clone(),
            HostCall::VerifyUnits(paths) => {
                let paths = paths.iter().map(|p| p.display().to_string());
                self.systemd_verify.iter().cloned().chain(paths).collect()
            }
            HostCall::CreateUser(user) => [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                user,
            ]
            .map(String::from)
            .to_vec(),
            HostCall::Snapshot { from, to } => vec![
                "tar".into(),
                "-C".into(),
                from.display().to_string(),
                "-czf".into(),
                to.display().to_string(),
                ".".into(),
            ],
            HostCall::Health(_) | HostCall::Hook { .. } => Vec::new(),
        }
    }
}

/// Everything plumb does to a machine.
pub trait Host {
    /// The directory host paths are placed under (`/` on a real host).
    fn root(&self) -> &Path;

    /// Where host path `path` lives on this machine.
    fn real(&self, path: &Path) -> PathBuf {
        paths::under(self.root(), path)
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf>;
    /// Whether anything (file, dir or link, even dangling) is at `path`.
    fn exists(&self, path: &Path) -> bool;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;

    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Create `path` (which must not exist) with `bytes` and `mode`; durable
    /// only after `sync` or `sync_fs`.
    fn write_file(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()>;
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
    /// Names of the entries of a directory.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;

    /// Run (or, on a sandbox, record) a service-manager or web-server command.
    fn run(&self, call: &HostCall) -> Result<(), CommandError>;

    /// Complete an app's release directory: give it to the app's user, run
    /// the build steps there as that user, then give it back to root. Runs
    /// on a sandbox too (it only writes the release being built).
    fn build(
        &self,
        dir: &Path,
        user: Option<&str>,
        steps: &[String],
        timeout: Duration,
    ) -> Result<(), CommandError>;
    /// Copy a tree to a new path; files hard-linked when `hard_link`.
    fn copy_tree(&self, from: &Path, to: &Path, hard_link: bool) -> io::Result<()>;
    /// Give a path (not what is below it) to an app's user.
    fn chown_to(&self, path: &Path, user: Option<&str>) -> Result<(), CommandError>;
    /// Copy `from` to `to` as the app's user: seeds its shared data, in a
    /// directory that user owns, without root ever writing there.
    fn seed(&self, from: &Path, to: &Path, user: Option<&str>) -> Result<(), CommandError>;
    /// Whether `path` is a regular file (not a link, FIFO, directory, …).
    fn is_file(&self, path: &Path) -> bool;
    /// Whether a system user exists.
    fn user_exists(&self, name: &str) -> bool;

    /// Which of `units` are not active (`systemctl is-active`). A query, not
    /// a change: a sandbox neither records it nor runs it, and reports none.
    fn inactive(&self, units: &[String]) -> Vec<String>;
}

/// What `RealHost` does with `HostCall`s.
#[derive(Debug, Clone)]
pub enum CallMode {
    /// Run the commands (a real root, or a test with its own nginx).
    Execute,
    /// Append each command line to this host-path log and print it.
    Record(PathBuf),
}

/// The machine plumb runs on, with every path under `root`.
#[derive(Debug, Clone)]
pub struct RealHost {
    pub root: PathBuf,
    pub mode: CallMode,
    pub commands: Commands,
}

impl Host for RealHost {
    fn root(&self) -> &Path {
        &self.root
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        fs::read_link(self.real(path))
    }

    fn exists(&self, path: &Path) -> bool {
        fs::symlink_metadata(self.real(path)).is_ok()
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(self.real(path))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(self.real(path))
    }

    fn write_file(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        let real = self.real(path);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&real)?;
        file.write_all(bytes)?;
        // The umask may have narrowed the mode; the manifest promises this one.
        file.set_permissions(fs::Permissions::from_mode(mode))
        // Durability comes from the caller's sync or sync_fs.
    }

    fn symlink(&self, target: &Path, path: &Path) -> io::Result<()> {
        symlink(target, self.real(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(self.real(from), self.real(to))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(self.real(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(self.real(path))
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        File::open(self.real(path))?.sync_all()
    }

    fn sync_fs(&self, path: &Path) -> io::Result<()> {
        let dir = File::open(self.real(path))?;
        rustix::fs::syncfs(&dir).map_err(io::Error::from)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        fs::read_dir(self.real(path))?
            .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
            .collect()
    }

    fn build(
        &self,
        dir: &Path,
        user: Option<&str>,
        steps: &[String],
        timeout: Duration,
    ) -> Result<(), CommandError> {
        let dir = self.real(dir);
        let account = build::account(user, self.sandbox_user())?;
        let give = |to, lock_down| {
            build::chown_tree(&dir, to, lock_down).map_err(|source| CommandError::Spawn {
                command: format!("chown -R {}", dir.display()),
                source,
            })
        };
        give(account, false)?;
        for step in steps {
            build::run_as(account, &dir, step, timeout)?;
        }
        // Back to root, and no longer writable by the app: it cannot change its own code.
        give(build::Account { uid: 0, gid: 0 }, true)
    }

    fn seed(&self, from: &Path, to: &Path, user: Option<&str>) -> Result<(), CommandError> {
        let account = build::account(user, self.sandbox_user())?;
        let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
        let command = format!(
            "cp -a -- {} {}",
            quote(&self.real(from)),
            quote(&self.real(to))
        );
        build::run_as(account, Path::new("/"), &command, build::SEED_TIMEOUT)
    }

    fn is_file(&self, path: &Path) -> bool {
        fs::symlink_metadata(self.real(path)).is_ok_and(|m| m.is_file())
    }

    fn copy_tree(&self, from: &Path, to: &Path, hard_link: bool) -> io::Result<()> {
        build::copy_tree(&self.real(from), &self.real(to), hard_link)
    }

    fn chown_to(&self, path: &Path, user: Option<&str>) -> Result<(), CommandError> {
        let path = self.real(path);
        let account = build::account(user, self.sandbox_user())?;
        build::chown_one(&path, account).map_err(|source| CommandError::Spawn {
            command: format!("chown -R {}", path.display()),
            source,
        })
    }

    fn user_exists(&self, name: &str) -> bool {
        nix::unistd::User::from_name(name).ok().flatten().is_some()
    }

    fn inactive(&self, units: &[String]) -> Vec<String> {
        if matches!(self.mode, CallMode::Record(_)) || units.is_empty() {
            return Vec::new();
        }
        let mut argv = self.commands.systemctl.clone();
        argv.push("is-active".into());
        argv.extend(units.iter().cloned());
        // One line per unit, in order; anything but "active" needs a start.
        let output = Command::new(&argv[0])
            .args(&argv[1..])
            .env_remove("SSL_CERT_FILE")
            .output();
        let text = output
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let states: Vec<&str> = text.lines().collect();
        units
            .iter()
            .enumerate()
            .filter(|(i, _)| states.get(*i).map(|s| s.trim()) != Some("active"))
            .map(|(_, u)| u.clone())
            .collect()
    }

    fn run(&self, call: &HostCall) -> Result<(), CommandError> {
        let command = call.to_string();
        match &self.mode {
            CallMode::Record(log) => {
                let log = self.real(log);
                let record = |source| CommandError::Record {
                    command: command.clone(),
                    log: log.clone(),
                    source,
                };
                let mut file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .map_err(record)?;
                writeln!(file, "{command}").map_err(record)?;
                Ok(())
            }
            CallMode::Execute => match call {
                HostCall::Health(check) => health::wait(check),
                HostCall::Hook {
                    dir,
                    user,
                    command,
                    timeout_secs,
                } => {
                    let account = build::account(user.as_deref(), None)?;
                    build::run_as(account, dir, command, Duration::from_secs(*timeout_secs))
                }
                HostCall::VerifyUnits(_) => match execute(&self.commands.argv(call)) {
                    // "where the tool exists": a host without systemd-analyze skips the check.
                    Err(CommandError::Spawn { source, .. })
                        if source.kind() == io::ErrorKind::NotFound =>
                    {
                        eprintln!(
                            "warning: systemd-analyze is not installed: unit files not verified"
                        );
                        Ok(())
                    }
                    other => other,
                },
                _ => execute(&self.commands.argv(call)),
            },
        }
    }
}

impl RealHost {
    /// On a sandbox, builds of an app whose user does not exist here run as
    /// `nobody`: the sandbox does not create users.
    fn sandbox_user(&self) -> Option<&'static str> {
        matches!(self.mode, CallMode::Record(_)).then_some("nobody")
    }
}
