//! Command-line types (clap). Only `commands::run` looks at them, to build `Settings`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A pull-based GitOps agent: brings this host to match a commit of a deploy repo.
#[derive(Debug, Parser)]
#[command(name = "plumb", version = crate::VERSION, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// The host-config flags given before the subcommand's name.
    #[command(flatten)]
    pub before: Common,
    /// More detail on stderr (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print only errors and the answer a command exists for.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

// Flags that override the host config, accepted before a subcommand's name
// and after it (by each subcommand that reads the host config). Not
// `global`: clap would copy each into every subcommand on every run. (A
// plain comment: a doc comment would become every subcommand's `about`.)
#[derive(Debug, Args, Default, Clone)]
pub struct Common {
    /// Host config file [default: <root>/etc/plumb/plumb.yaml].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Put every absolute host path under DIR (a sandbox; no root needed).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Deploy repo: a local path, file://, ssh:// or https:// URL.
    #[arg(long, value_name = "URL|PATH")]
    pub repo: Option<String>,
    /// Branch to deploy.
    #[arg(long, value_name = "NAME")]
    pub branch: Option<String>,
    /// Sub-directory of the repo that holds deploy.yaml.
    #[arg(long, value_name = "SUBDIR")]
    pub path: Option<String>,
    /// State directory (host path) [default: /var/lib/plumb].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Host name that selects hosts/<NAME>.yaml [default: this machine's].
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
}

/// Each subcommand's arguments are built only when it is the one invoked
/// (`defer`): a run parses its own flags, not every command's.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
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
        #[command(flatten)]
        common: Common,
    },
    /// Daemon: reconcile on the schedule, on SIGHUP and on webhooks; SIGTERM stops it.
    Run {
        #[command(flatten)]
        common: Common,
    },
    /// Show what reconcile would do, with unified diffs; exit 10 if it would change anything.
    Plan {
        /// Machine-readable output (files, secrets and steps; no diffs).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
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
        #[command(flatten)]
        common: Common,
    },
    /// Releases on disk, newest first.
    Releases {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Switch back to an earlier release (default: the previous one), with the
    /// same validation, restarts and health checks; quarantines the commit it leaves.
    Rollback {
        /// Release id (see `plumb releases`).
        release: Option<String>,
        /// Wait for the lock instead of failing when another run holds it.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Stop managing this host without breaking it: every managed link
    /// becomes a plain copy of its file; reconcile refuses until `attach`.
    Detach {
        #[command(flatten)]
        common: Common,
    },
    /// Manage a detached host again: the copies become links (refused if
    /// one was changed since `detach`).
    Attach {
        #[command(flatten)]
        common: Common,
    },
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
        #[command(flatten)]
        common: Common,
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
        #[command(flatten)]
        common: Common,
    },
}

impl Cli {
    /// The host-config flags, those after the subcommand's name over those
    /// before it.
    pub fn common(&self) -> Common {
        let before = self.before.clone();
        let Some(after) = self.command.common().cloned() else {
            return before;
        };
        Common {
            config: after.config.or(before.config),
            root: after.root.or(before.root),
            repo: after.repo.or(before.repo),
            branch: after.branch.or(before.branch),
            path: after.path.or(before.path),
            state_dir: after.state_dir.or(before.state_dir),
            hostname: after.hostname.or(before.hostname),
        }
    }
}

impl Command {
    /// The host-config flags given to this subcommand; none for those that
    /// only describe plumb itself (completions, man pages).
    pub fn common(&self) -> Option<&Common> {
        match self {
            Command::Reconcile { common, .. }
            | Command::Run { common }
            | Command::Plan { common, .. }
            | Command::Status { common, .. }
            | Command::Releases { common, .. }
            | Command::Rollback { common, .. }
            | Command::Detach { common }
            | Command::Attach { common }
            | Command::Render { common, .. }
            | Command::Validate { common, .. } => Some(common),
            Command::Completions { .. } | Command::Manpages { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    #[test]
    fn every_subcommand_is_well_formed() {
        // Builds the deferred subcommands too.
        Cli::command().debug_assert();
    }

    #[test]
    fn host_flags_go_before_or_after_the_subcommand_and_after_wins() {
        let cli = Cli::try_parse_from(["plumb", "-v", "status", "--root", "/r"]).unwrap();
        assert_eq!(cli.verbose, 1);
        assert_eq!(cli.common().root.as_deref(), Some(Path::new("/r")));
        assert!(matches!(cli.command, Command::Status { .. }));
        let after = Cli::try_parse_from(["plumb", "status", "-vv", "--root", "/r"]).unwrap();
        assert_eq!(after.verbose, 2);
        let both = Cli::try_parse_from([
            "plumb",
            "--root",
            "/before",
            "--hostname",
            "h",
            "run",
            "--root",
            "/after",
        ])
        .unwrap();
        let common = both.common();
        assert_eq!(common.root.as_deref(), Some(Path::new("/after")));
        assert_eq!(common.hostname.as_deref(), Some("h"));
        let completions = Cli::try_parse_from(["plumb", "completions", "bash"]).unwrap();
        assert!(completions.command.common().is_none());
        let unknown = Cli::try_parse_from(["plumb", "completions", "bash", "--root", "/r"]);
        assert_eq!(
            unknown.unwrap_err().kind(),
            clap::error::ErrorKind::UnknownArgument
        );
    }
}
