//! Command-line types (clap). Only `commands::run` looks at them, to build `Settings`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A pull-based GitOps agent: brings this host to match a commit of a deploy repo.
#[derive(Debug, Parser)]
#[command(name = "plumb", version = crate::VERSION, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub common: Common,
    /// More detail on stderr (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print only errors and the answer a command exists for.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// Flags every subcommand accepts; each overrides the host config.
#[derive(Debug, Args, Default)]
pub struct Common {
    /// Host config file [default: <root>/etc/plumb/plumb.yaml].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Put every absolute host path under DIR (a sandbox; no root needed).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Deploy repo: a local path, file://, ssh:// or https:// URL.
    #[arg(long, global = true, value_name = "URL|PATH")]
    pub repo: Option<String>,
    /// Branch to deploy.
    #[arg(long, global = true, value_name = "NAME")]
    pub branch: Option<String>,
    /// Sub-directory of the repo that holds deploy.yaml.
    #[arg(long, global = true, value_name = "SUBDIR")]
    pub path: Option<String>,
    /// State directory (host path) [default: /var/lib/plumb].
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Host name that selects hosts/<NAME>.yaml [default: this machine's].
    #[arg(long, global = true, value_name = "NAME")]
    pub hostname: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch the deploy repo, plan, and bring the host to the target commit.
    Reconcile {
        /// Run once and exit. Accepted for the units' sake: reconcile always
        /// runs once (`plumb run` is the daemon).
        #[arg(long)]
        once: bool,
        /// Print the plan, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Retry a quarantined commit, and check the host in full even when it looks up to date.
        #[arg(long)]
        force: bool,
        /// Wait for the lock instead of failing when another run holds it.
        #[arg(long)]
        wait: bool,
        /// Deploy the target even if it does not descend from the deployed
        /// commit (the branch was rewound on purpose). This run only.
        #[arg(long)]
        allow_rewind: bool,
    },
    /// Daemon: reconcile on the schedule, on SIGHUP and on webhooks; SIGTERM stops it.
    Run,
    /// Show what reconcile would do, with unified diffs; exit 10 if it would change anything.
    Plan {
        /// Machine-readable output (files, secrets and steps; no diffs).
        #[arg(long)]
        json: bool,
    },
    /// Deployed commit and release, last run, quarantine and drift.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Hash every file of the release (the quick check trusts files
        /// whose size, mtime and inode did not change).
        #[arg(long)]
        verify: bool,
    },
    /// Releases on disk, newest first.
    Releases {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Switch back to an earlier release (default: the previous one), with the
    /// same validation, restarts and health checks; quarantines the commit it leaves.
    Rollback {
        /// Release id (see `plumb releases`).
        release: Option<String>,
        /// Wait for the lock instead of failing when another run holds it.
        #[arg(long)]
        wait: bool,
    },
    /// Stop managing this host without breaking it: every managed link
    /// becomes a plain copy of its file; reconcile refuses until `attach`.
    Detach,
    /// Manage a detached host again: the copies become links (refused if
    /// one was changed since `detach`).
    Attach,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Write a man page per command into DIR (for packaging).
    #[command(hide = true)]
    Manpages { dir: PathBuf },
    /// Render a deploy repo working tree for this host (--hostname) into
    /// OUT, in the host's layout, without deploying anything.
    Render {
        /// The deploy repo directory [default: .].
        dir: Option<PathBuf>,
        /// An empty or new directory to write the files into.
        #[arg(long, value_name = "OUT")]
        out: PathBuf,
    },
    /// Render a deploy repo working tree for every host it defines and check
    /// it (templates, paths, nginx -t, systemd-analyze verify).
    Validate {
        /// The deploy repo directory [default: .].
        dir: Option<PathBuf>,
        /// Also check that every commit of this range (`A..B`, or one
        /// commit) is signed as the hosts require, with the keys below (or
        /// the host config's `allowed_signers` / `openpgp_certs`).
        #[arg(long, value_name = "RANGE")]
        signatures: Option<String>,
        /// An allowed signers file (git's format) for `--signatures`.
        #[arg(long, value_name = "FILE")]
        allowed_signers: Option<PathBuf>,
        /// An armored OpenPGP keyring for `--signatures`.
        #[arg(long, value_name = "FILE")]
        openpgp_certs: Option<PathBuf>,
    },
}
