//! The one way plumb starts a process. Every child — builds, hooks, health
//! commands, seeding, snapshots, and plumb's own `systemctl`/`nginx` calls —
//! is started by [`Proc`], which gives it:
//!
//! - a new session (`setsid`): no controlling terminal to type into;
//! - an environment cleared to a short allow list ([`ALLOWED_ENV`]);
//! - the user's uid, gid and supplementary groups (never root for the repo's
//!   commands), and a working directory;
//! - a deadline, after which it is killed with everything it started;
//! - its own cgroup when one can be made ([`super::confine`]), killed as a
//!   whole when the step ends, so nothing outlives its step; otherwise its
//!   process group;
//! - stdout and stderr captured together, keeping at most [`OUTPUT_CAP`]
//!   bytes (the end).
//!
//! Failures become one error type: could not start, exited with a code,
//! killed by a signal, timed out — each knowing whose fault it is.

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use thiserror::Error;
use wait_timeout::ChildExt;

use super::account::{self, Account};
use super::confine::Cgroup;
use crate::error::Blame;

/// The environment every child gets; nothing else of plumb's is passed on.
pub const ALLOWED_ENV: &[&str] = &["PATH", "LANG", "HOME", "USER", "LOGNAME", "SHELL"];
/// `PATH` of every child.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Output kept per process (the last bytes); the rest is counted, not kept.
pub const OUTPUT_CAP: usize = 64 * 1024;
/// How long plumb's own tools (`systemctl`, `nginx -t`, …) may run.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(600);

/// A child process that did not succeed.
#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("could not start `{command}`: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("`{command}` exited with code {code}{}", tail(output))]
    Exit {
        command: String,
        code: i32,
        output: String,
    },
    #[error("`{command}` was killed by signal {signal}{}", tail(output))]
    Signal {
        command: String,
        signal: i32,
        output: String,
    },
    #[error(
        "`{command}` did not finish within {seconds}s and was killed{}",
        tail(output)
    )]
    Timeout {
        command: String,
        seconds: u64,
        output: String,
    },
    /// A health check that never passed (its step names the check).
    #[error("no success in {attempts} attempt(s) over {seconds}s; last: {last}")]
    Unhealthy {
        attempts: u32,
        seconds: f64,
        last: String,
    },
    #[error("user {user} {problem}")]
    User { user: String, problem: String },
    #[error("cannot record `{command}` in {log}: {source}")]
    Record {
        command: String,
        log: PathBuf,
        source: io::Error,
    },
}

impl ProcessError {
    /// Whose fault the failure is when the command came from the commit: a
    /// command that ran and failed is the commit's; one that could not run
    /// (missing program, missing user, permissions) is the host's.
    pub fn blame(&self) -> Blame {
        match self {
            ProcessError::Exit { .. }
            | ProcessError::Signal { .. }
            | ProcessError::Timeout { .. }
            | ProcessError::Unhealthy { .. } => Blame::Commit,
            ProcessError::Spawn { .. }
            | ProcessError::User { .. }
            | ProcessError::Record { .. } => Blame::Host,
        }
    }
}

fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.trim_end().lines().collect();
    let start = lines.len().saturating_sub(40);
    if lines.is_empty() {
        String::new()
    } else {
        format!(":\n{}", lines[start..].join("\n"))
    }
}

/// What a finished process printed (stdout and stderr, interleaved).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// The last `OUTPUT_CAP` bytes, lossily decoded.
    pub text: String,
    /// Bytes printed in all (more than `text` holds when it was cut).
    pub total: u64,
    /// Whether it ran in a cgroup of its own (else in its process group).
    pub confined: bool,
}

/// A process about to be started.
#[derive(Debug, Clone)]
pub struct Proc {
    argv: Vec<String>,
    dir: PathBuf,
    account: Option<Account>,
    env: Vec<(String, String)>,
    timeout: Duration,
    confine: bool,
}

impl Proc {
    /// `argv[0]` with its arguments; by default as plumb itself, in `/`,
    /// with the tool timeout and no cgroup.
    pub fn new(argv: &[String]) -> Proc {
        assert!(!argv.is_empty(), "a command has a program");
        Proc {
            argv: argv.to_vec(),
            dir: PathBuf::from("/"),
            account: None,
            env: Vec::new(),
            timeout: TOOL_TIMEOUT,
            confine: false,
        }
    }

    /// Run as `account` (when plumb is root; otherwise as plumb's own user).
    pub fn account(mut self, account: &Account) -> Proc {
        self.account = Some(account.clone());
        self
    }

    /// Working directory (a real path).
    pub fn dir(mut self, dir: &Path) -> Proc {
        self.dir = dir.to_path_buf();
        self
    }

    /// One more environment variable besides the allow list.
    pub fn env(mut self, key: &str, value: &str) -> Proc {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Proc {
        self.timeout = timeout;
        self
    }

    /// Put it in a cgroup of its own, killed as a whole when it ends.
    pub fn confined(mut self) -> Proc {
        self.confine = true;
        self
    }

    fn label(&self) -> String {
        match self.argv.as_slice() {
            [sh, c, command] if sh == "/bin/sh" && c == "-c" => command.clone(),
            argv => argv.join(" "),
        }
    }

    /// Start it, wait for it (up to its deadline), stop whatever it left
    /// behind, and say how it ended.
    pub fn run(&self) -> Result<Output, ProcessError> {
        let command = self.label();
        let spawn_error = |source: io::Error| ProcessError::Spawn {
            command: command.clone(),
            source,
        };
        let (reader, writer) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| spawn_error(e.into()))?;
        let writer2 = writer.try_clone().map_err(spawn_error)?;
        let cgroup = if self.confine { Cgroup::create() } else { None };
        if self.confine && cgroup.is_none() {
            warn_unconfined();
        }
        let mut cmd = self.command(
            cgroup.as_ref(),
            Stdio::null(),
            Stdio::from(writer),
            Stdio::from(writer2),
        );
        let child = cmd.spawn();
        drop(cmd); // closes our copies of the pipe's write end
        let mut child = match child {
            Ok(child) => child,
            Err(source) => return Err(self.spawn_failed(command, source)),
        };
        let output = read_capped(reader);
        let group = nix::unistd::Pid::from_raw(child.id() as i32);
        let stop_leftovers = || match &cgroup {
            Some(cgroup) => cgroup.kill(),
            None => {
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
        };
        let status = match child.wait_timeout(self.timeout) {
            Ok(Some(status)) => status,
            Ok(None) => {
                stop_leftovers();
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProcessError::Timeout {
                    command,
                    seconds: self.timeout.as_secs(),
                    output: collect(&output, true).text,
                });
            }
            Err(source) => return Err(ProcessError::Spawn { command, source }),
        };
        // Nothing outlives its step: whatever it started in the background
        // goes now (it would otherwise keep the pipe, and a release, open).
        stop_leftovers();
        let mut out = collect(&output, false);
        out.confined = cgroup.is_some();
        drop(cgroup);
        if !out.text.trim().is_empty() {
            tracing::info!("`{command}` output:\n{}", out.text.trim_end());
        }
        match (status.code(), status.signal()) {
            (Some(0), _) => Ok(out),
            (Some(code), _) => Err(ProcessError::Exit {
                command,
                code,
                output: out.text,
            }),
            (None, signal) => Err(ProcessError::Signal {
                command,
                signal: signal.unwrap_or(0),
                output: out.text,
            }),
        }
    }

    /// Start it with its stdin and stdout as pipes to talk to, its stderr
    /// kept for the error, and its deadline as the longest silence allowed
    /// (never in a cgroup: it lives as long as the conversation).
    pub fn stream(&self) -> Result<super::stream::Stream, ProcessError> {
        let command = self.label();
        let (reader, writer) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ProcessError::Spawn {
                command: command.clone(),
                source: e.into(),
            })?;
        let mut cmd = self.command(None, Stdio::piped(), Stdio::piped(), Stdio::from(writer));
        let child = cmd.spawn();
        drop(cmd); // closes our copy of the pipe's write end
        match child {
            Ok(child) => Ok(super::stream::Stream::new(
                command,
                child,
                read_capped(reader),
                self.timeout,
            )),
            Err(source) => Err(self.spawn_failed(command, source)),
        }
    }

    fn command(&self, cgroup: Option<&Cgroup>, stdin: Stdio, out: Stdio, err: Stdio) -> Command {
        let (program, args) = self.argv.split_first().expect("argv is not empty");
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", PATH)
            .env("LANG", "C.UTF-8")
            .env("SHELL", "/bin/sh")
            .stdin(stdin)
            .stdout(out)
            .stderr(err);
        let (name, home) = match &self.account {
            Some(account) => (account.name.clone(), self.dir.display().to_string()),
            None => ("root".to_string(), "/root".to_string()),
        };
        cmd.env("HOME", home)
            .env("USER", &name)
            .env("LOGNAME", &name);
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        let procs = cgroup.map(|c| c.procs_fd());
        let switch = self
            .account
            .clone()
            .filter(|a| account::privileged() && !a.is_root());
        let groups: Vec<nix::unistd::Gid> = switch
            .as_ref()
            .map(|a| {
                a.groups
                    .iter()
                    .map(|g| nix::unistd::Gid::from_raw(*g))
                    .collect()
            })
            .unwrap_or_default();
        // SAFETY: only async-signal-safe calls (setsid, write, setgroups,
        // setgid, setuid) between fork and exec, on values prepared above.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setsid()?;
                if let Some(fd) = procs {
                    // "0" moves the writing process into the cgroup.
                    nix::unistd::write(std::os::fd::BorrowedFd::borrow_raw(fd), b"0")?;
                }
                if let Some(account) = &switch {
                    nix::unistd::setgroups(&groups)?;
                    nix::unistd::setgid(nix::unistd::Gid::from_raw(account.gid))?;
                    nix::unistd::setuid(nix::unistd::Uid::from_raw(account.uid))?;
                }
                Ok(())
            });
        }
        cmd
    }

    fn spawn_failed(&self, command: String, source: io::Error) -> ProcessError {
        match (&self.account, source.kind()) {
            (Some(account), io::ErrorKind::PermissionDenied) => ProcessError::User {
                user: account.name.clone(),
                problem: format!(
                    "cannot enter {}: every directory above it must be searchable by that user \
                     (chmod o+x on each, or deploy under another --root)",
                    self.dir.display()
                ),
            },
            _ => ProcessError::Spawn { command, source },
        }
    }
}

/// Say once per run that steps are stopped through their process group
/// only: a step that calls `setsid` could then outlive it.
fn warn_unconfined() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "no cgroup can be made here (cgroup v2 not mounted or not writable; under systemd, \
             plumb's unit needs Delegate=yes): build and hook processes are stopped through \
             their process group only, and one that calls setsid can outlive its step"
        );
    });
}

/// Read the pipe on a thread, keeping the last `OUTPUT_CAP` bytes.
pub(super) fn read_capped(reader: OwnedFd) -> mpsc::Receiver<(Vec<u8>, u64)> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut file = std::fs::File::from(reader);
        let mut kept: Vec<u8> = Vec::new();
        let mut total = 0u64;
        let mut buf = [0u8; 8192];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    total += n as u64;
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > 2 * OUTPUT_CAP {
                        kept.drain(..kept.len() - OUTPUT_CAP);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let start = kept.len().saturating_sub(OUTPUT_CAP);
        let _ = sender.send((kept[start..].to_vec(), total));
    });
    receiver
}

/// The output, once the pipe closed (every writer gone). A writer that
/// escaped the kill may hold it open: then give up after a moment.
pub(super) fn collect(receiver: &mpsc::Receiver<(Vec<u8>, u64)>, timed_out: bool) -> Output {
    let wait = if timed_out {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(2)
    };
    let (bytes, total) = receiver.recv_timeout(wait).unwrap_or_default();
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if total > bytes.len() as u64 {
        text = format!(
            "[{} earlier bytes of output not kept]\n{text}",
            total - bytes.len() as u64
        );
    }
    Output {
        text,
        total,
        confined: false,
    }
}
