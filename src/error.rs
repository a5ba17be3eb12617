//! Typed errors, one enum per stage, whose fault each failure is, and the
//! one function that picks exit codes.

use std::path::PathBuf;

use thiserror::Error;

use crate::host::ProcessError;

/// Exit codes are part of the interface: scripts and timers rely on them.
pub mod exit {
    /// Done: changed, or already up to date.
    pub const OK: u8 = 0;
    /// An unexpected internal failure.
    pub const INTERNAL: u8 = 1;
    /// Bad usage or bad host config (also clap's code for bad flags).
    pub const CONFIG: u8 = 2;
    /// Another run holds the lock.
    pub const LOCKED: u8 = 3;
    /// The deploy repo could not be fetched.
    pub const FETCH: u8 = 4;
    /// The commit is invalid (YAML, template, path, validation, build, hook):
    /// nothing was changed, and the commit is quarantined.
    pub const INVALID: u8 = 5;
    /// The host could not apply the commit (permissions, a missing tool or
    /// user, I/O); the commit is not blamed and is retried next run.
    pub const APPLY: u8 = 6;
    /// Deployed, failed after the switch, rolled back to the previous release.
    pub const ROLLED_BACK: u8 = 7;
    /// The target commit failed before and is quarantined; nothing was done.
    pub const QUARANTINED: u8 = 8;
    /// `plumb validate` found problems.
    pub const INVALID_REPO: u8 = 9;
    /// `plumb plan`: the host would change.
    pub const CHANGES: u8 = 10;
    /// The target commit fails the signature policy: nothing was done.
    pub const UNTRUSTED: u8 = 11;
    /// The target does not descend from the deployed commit (a rewind):
    /// nothing was done.
    pub const REWIND: u8 = 12;
    /// Deployed and healthy, but a publish target of a site failed (it is
    /// retried by the next run; the host is not rolled back).
    pub const PUBLISH: u8 = 13;
}

/// What an exit code of `reconcile` means, in a word or two (status, metrics).
pub fn outcome(code: u8) -> &'static str {
    match code {
        exit::OK => "ok",
        exit::CONFIG => "config error",
        exit::LOCKED => "locked",
        exit::FETCH => "fetch failed",
        exit::INVALID => "invalid commit",
        exit::APPLY => "host failure",
        exit::ROLLED_BACK => "rolled back",
        exit::QUARANTINED => "held (quarantined head)",
        exit::UNTRUSTED => "untrusted commit",
        exit::REWIND => "rewind refused",
        exit::PUBLISH => "publish failed",
        _ => "internal error",
    }
}

/// Whose fault a failure is. Only the commit's quarantines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The deploy repo's commit: bad config, a failing build or hook, a
    /// failed validation or health check. Fix it and push.
    Commit,
    /// The host: permissions, a missing tool, user or certificate, I/O, a
    /// service manager that refused. Fix the host; the commit is retried.
    Host,
}

/// Every failure a command can end with.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Invalid(#[from] InvalidError),
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    #[error("{0}")]
    Untrusted(crate::source::trust::Untrusted),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("state file {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error("commit {commit} refused before the switch: {cause}\n{}", refused_advice(*blame))]
    Refused {
        commit: String,
        blame: Blame,
        cause: Box<ApplyError>,
    },
    #[error(
        "commit {commit} failed after the switch and was rolled back to release {previous}: {cause}\n{}",
        rolled_back_advice(*blame)
    )]
    RolledBack {
        commit: String,
        previous: String,
        blame: Blame,
        cause: Box<ApplyError>,
    },
    #[error(
        "release {release} is live and healthy, but publishing its site failed:{}\nThe host is not rolled back; every run tries again until each target serves it (`plumb status` shows what they serve).",
        failed.iter().map(|(t, e)| format!("\n  {t}: {e}")).collect::<String>()
    )]
    Publish {
        release: String,
        failed: Vec<(String, String)>,
    },
    #[error(
        "commit {commit} is quarantined since {at}: {reason}\nStaying on release {release}. Push a new commit, or retry this one with --force."
    )]
    Quarantined {
        commit: String,
        at: String,
        reason: String,
        release: String,
    },
}

fn refused_advice(blame: Blame) -> &'static str {
    match blame {
        Blame::Commit => {
            "Nothing was restarted or reloaded: the host runs what it ran before. The commit is quarantined: fix it and push, or retry with --force."
        }
        Blame::Host => {
            "Nothing was restarted or reloaded: the host runs what it ran before. This is the host's problem, not the commit's: fix it on the host; the next run tries the commit again."
        }
    }
}

fn rolled_back_advice(blame: Blame) -> &'static str {
    match blame {
        Blame::Commit => "The commit is quarantined: fix it and push, or retry with --force.",
        Blame::Host => {
            "This is the host's problem, not the commit's: fix it on the host; the next run tries the commit again."
        }
    }
}

impl Error {
    /// The documented exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => exit::CONFIG,
            Error::Lock(LockError::Held { .. }) => exit::LOCKED,
            Error::Lock(LockError::Io { .. }) => exit::APPLY,
            Error::Fetch(_) => exit::FETCH,
            Error::Invalid(InvalidError::Unreadable { .. }) => exit::FETCH,
            Error::Invalid(e) if !e.is_the_commits() => exit::CONFIG,
            Error::Invalid(_) | Error::Plan(_) => exit::INVALID,
            Error::Untrusted(crate::source::trust::Untrusted::Rewind { .. }) => exit::REWIND,
            Error::Untrusted(crate::source::trust::Untrusted::Signature { .. }) => exit::UNTRUSTED,
            Error::Untrusted(crate::source::trust::Untrusted::Range { .. }) => exit::FETCH,
            Error::Apply(_) => exit::APPLY,
            Error::State { .. } => exit::INTERNAL,
            Error::Refused {
                blame: Blame::Commit,
                ..
            } => exit::INVALID,
            Error::Refused {
                blame: Blame::Host, ..
            } => exit::APPLY,
            Error::RolledBack { .. } => exit::ROLLED_BACK,
            Error::Quarantined { .. } => exit::QUARANTINED,
            Error::Publish { .. } => exit::PUBLISH,
        }
    }
}

/// The host config or flags are unusable.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read host config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("host config {0}")]
    Yaml(#[from] crate::spec::yaml::YamlError),
    #[error("no deploy repo given: set `repo:` in {config} or pass --repo")]
    NoRepo { config: PathBuf },
    #[error("{0}")]
    Invalid(String),
}

/// The run lock.
#[derive(Debug, Error)]
pub enum LockError {
    #[error(
        "another plumb run (pid {pid}) holds the lock {path}; wait for it to finish, or pass --wait"
    )]
    Held { path: PathBuf, pid: String },
    #[error("cannot take the lock {path}: {source}{}", lock_hint(source))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn lock_hint(source: &std::io::Error) -> &'static str {
    if source.kind() == std::io::ErrorKind::PermissionDenied {
        " (run as root, or pass --root DIR to try plumb in a sandbox)"
    } else {
        ""
    }
}

/// Fetching or reading the deploy repo.
#[derive(Debug, Error)]
pub enum FetchError {
    #[error("fetch from {remote} failed: {message}")]
    Remote { remote: String, message: String },
    #[error(
        "ssh host key of {host} is not trusted: the server offered {key_type} {fingerprint}, {reason}; \
         add the server's key to {known_hosts} after checking it out of band"
    )]
    HostKey {
        host: String,
        key_type: String,
        fingerprint: String,
        reason: String,
        known_hosts: PathBuf,
    },
    #[error("branch {branch:?} not found at {remote}{}", list_branches(available))]
    NoBranch {
        remote: String,
        branch: String,
        available: Vec<String>,
    },
    #[error("revision {rev:?} of {remote} {why}")]
    NoRevision {
        remote: String,
        rev: String,
        why: String,
    },
    #[error("git mirror {path}: {message}")]
    Mirror { path: PathBuf, message: String },
    #[error("cannot read {path}: {source}")]
    Credential {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn list_branches(available: &[String]) -> String {
    if available.is_empty() {
        "; it has no branches at all".into()
    } else {
        format!("; it has: {}", available.join(", "))
    }
}

/// The commit cannot be deployed as it is; the host was not touched.
#[derive(Debug, Error)]
pub enum InvalidError {
    #[error("{0}")]
    Yaml(#[from] crate::spec::yaml::YamlError),
    #[error("{file}: {message}")]
    Repo { file: String, message: String },
    #[error("template {template}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Template {
        template: String,
        line: Option<usize>,
        message: String,
    },
    #[error("{0}")]
    Path(#[from] crate::spec::paths::PathError),
    /// The repo requires an overlay per host and this host has none: the
    /// host's name is wrong (or the overlay missing), not the commit.
    #[error(
        "{file} not found, and deploy.yaml requires an overlay for every host (require_overlay: true): check this host's name (--hostname, or `hostname:` in the host config), or add {file}"
    )]
    NoOverlay { hostname: String, file: String },
    /// plumb's own copy of the repository could not be read (permissions,
    /// a damaged pack, no file descriptors left): the host's problem.
    #[error(
        "{file}: cannot be read from plumb's git mirror: {message}; check the mirror (<state_dir>/repo.git) and the disk, or remove the mirror to fetch it again"
    )]
    Unreadable { file: String, message: String },
}

impl InvalidError {
    /// Whether the commit is to blame (and may be quarantined).
    pub fn is_the_commits(&self) -> bool {
        !matches!(
            self,
            InvalidError::NoOverlay { .. } | InvalidError::Unreadable { .. }
        )
    }
}

/// Changing the host failed part-way.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// What a build left in the release breaks a rule (the commit's fault).
    #[error("app {app}: {message}")]
    Release { app: String, message: String },
    #[error("{action}: {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{step}: {source}")]
    Step {
        step: String,
        blame: Blame,
        source: Box<ProcessError>,
    },
    #[error("build of app {app} failed: {source}")]
    Build {
        app: String,
        source: Box<ProcessError>,
    },
    #[error("{} hook of app {app} failed: {source}{}", if *pre_switch { "pre-switch" } else { "post-switch" }, backup.as_ref().map(|b| format!("\nThe app's shared data was archived before it: {}", b.display())).unwrap_or_default())]
    Hook {
        app: String,
        pre_switch: bool,
        backup: Option<PathBuf>,
        source: Box<ProcessError>,
    },
    /// Something the host lacks, and how to fix it.
    #[error("{problem}; {fix}")]
    Host { problem: String, fix: String },
    #[error(
        "undoing the failed deploy did not finish; these steps failed:\n  {}\nThe host may run parts of both releases. The journal is kept: the next run tries the undo again. Check `plumb status`.",
        failed.join("\n  ")
    )]
    UndoIncomplete { failed: Vec<String> },
    #[error(
        "journal {path} cannot be read ({message}); it may belong to another plumb version. Check the host with `plumb status`, then move the journal away"
    )]
    Journal { path: PathBuf, message: String },
}

impl ApplyError {
    /// Whose fault the failure is.
    pub fn blame(&self) -> Blame {
        match self {
            ApplyError::Step { blame, .. } => *blame,
            ApplyError::Build { source, .. } | ApplyError::Hook { source, .. } => source.blame(),
            ApplyError::Release { .. } => Blame::Commit,
            ApplyError::Io { .. }
            | ApplyError::Host { .. }
            | ApplyError::UndoIncomplete { .. }
            | ApplyError::Journal { .. } => Blame::Host,
        }
    }

    /// Wrap an I/O error with what was being done and on which path.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ApplyError::Io {
            action,
            path,
            source,
        }
    }
}
