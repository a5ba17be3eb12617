//! App builds and hooks on the machine: commands run as the app's user
//! (never root), each with a timeout, and the tree copies that shared data
//! and build reuse need. Used by `RealHost`.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::unistd::{Gid, Uid, User};

use crate::process::{CommandError, run_command};

/// Who a build or hook runs as.
#[derive(Debug, Clone, Copy)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

/// Resolve `name` to the account commands run as. When plumb itself is not
/// root it cannot switch users and runs them as itself; as root it never
/// runs them as root. `fallback` (a sandbox) replaces a user that does not
/// exist on this machine.
pub fn account(name: Option<&str>, fallback: Option<&str>) -> Result<Account, CommandError> {
    if !Uid::effective().is_root() {
        return Ok(Account {
            uid: Uid::effective().as_raw(),
            gid: Gid::effective().as_raw(),
        });
    }
    let name = name.ok_or_else(|| CommandError::User {
        user: "(none)".into(),
        problem: "builds and hooks need the app's `user:`; they never run as root".into(),
    })?;
    let lookup = |n: &str| User::from_name(n).ok().flatten();
    let user = match (lookup(name), fallback) {
        (Some(user), _) => user,
        (None, Some(other)) => lookup(other).ok_or_else(|| CommandError::User {
            user: other.into(),
            problem: "does not exist".into(),
        })?,
        (None, None) => {
            return Err(CommandError::User {
                user: name.into(),
                problem: "does not exist; create it, or set `create_user: true` for the app".into(),
            });
        }
    };
    if user.uid.is_root() {
        return Err(CommandError::User {
            user: name.into(),
            problem: "is root; builds and hooks never run as root".into(),
        });
    }
    Ok(Account {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    })
}

/// Run a shell command in `dir` as `account`, with a timeout; on failure the
/// error carries the tail of its output.
pub fn run_as(
    account: Account,
    dir: &Path,
    command: &str,
    timeout: Duration,
) -> Result<(), CommandError> {
    let mut cmd = Command::new("/bin/sh");
    // Output goes to the captured stream, shown when the step fails.
    cmd.arg("-c")
        .arg(format!("exec 1>&2\n{command}"))
        .current_dir(dir)
        .env("HOME", dir);
    if Uid::effective().is_root() {
        // std drops supplementary groups when it changes the uid as root.
        cmd.uid(account.uid).gid(account.gid);
    }
    match run_command(cmd, command, timeout) {
        Err(CommandError::Spawn { source, .. })
            if source.kind() == io::ErrorKind::PermissionDenied =>
        {
            Err(CommandError::User {
                user: format!("uid {}", account.uid),
                problem: format!(
                    "cannot enter {}: every directory above it must be searchable by that user (chmod o+x)",
                    dir.display()
                ),
            })
        }
        other => other,
    }
}

/// Give `path` and everything below it to `account` (links are not followed).
pub fn chown_tree(path: &Path, account: Account) -> io::Result<()> {
    if !Uid::effective().is_root() {
        return Ok(());
    }
    let meta = fs::symlink_metadata(path)?;
    if meta.uid() != account.uid || meta.gid() != account.gid {
        std::os::unix::fs::lchown(path, Some(account.uid), Some(account.gid))?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), account)?;
        }
    }
    Ok(())
}

/// Copy `from` to `to` (which must not exist): files hard-linked when
/// `hard_link` (a build reused from the previous release, which nobody
/// writes), copied otherwise (data seeded into a shared directory).
pub fn copy_tree(from: &Path, to: &Path, hard_link: bool) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.file_type().is_symlink() {
        symlink(fs::read_link(from)?, to)
    } else if meta.is_dir() {
        fs::create_dir(to)?;
        fs::set_permissions(to, meta.permissions())?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()), hard_link)?;
        }
        Ok(())
    } else if hard_link {
        fs::hard_link(from, to)
    } else {
        fs::copy(from, to).map(drop)
    }
}
