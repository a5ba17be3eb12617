//! App builds and hooks on the machine: commands run as the app's user
//! (never root), each with a timeout, and the tree copies that shared data
//! and build reuse need. Used by `RealHost`.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::unistd::{Gid, Uid, User};

use crate::process::{CommandError, run_command};

/// How long seeding an app's shared data may take.
pub const SEED_TIMEOUT: Duration = Duration::from_secs(3600);

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

/// Run `argv` as `account` with a clean environment and a timeout.
pub fn run_argv_as(
    account: Account,
    argv: &[String],
    timeout: Duration,
) -> Result<(), CommandError> {
    let (program, args) = argv.split_first().expect("argv is never empty");
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir("/")
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LANG", "C.UTF-8");
    if Uid::effective().is_root() {
        cmd.uid(account.uid).gid(account.gid);
    }
    run_command(cmd, &argv.join(" "), timeout)
}

/// Give `path` and everything below it to `account`, walking by file
/// descriptor and never following a link, so a process of the app user that
/// swaps a directory for a symlink mid-walk cannot redirect it. With
/// `lock_down`, group/other write and set-id bits are cleared as well: the
/// tree becomes read-only for everyone but root.
pub fn chown_tree(path: &Path, account: Account, lock_down: bool) -> io::Result<()> {
    use rustix::fs::{CWD, Mode, OFlags, fchmod, fchown, fstat, openat};
    if !Uid::effective().is_root() {
        return Ok(());
    }
    let top = openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let (uid, gid) = (
        Some(rustix::fs::Uid::from_raw(account.uid)),
        Some(rustix::fs::Gid::from_raw(account.gid)),
    );
    fchown(&top, uid, gid)?;
    if lock_down {
        let mode = fstat(&top)?.st_mode & 0o7777 & !0o7022;
        fchmod(&top, Mode::from_raw_mode(mode))?;
    }
    chown_below(&top, account, lock_down)
}

/// Give `path` itself (not what is below it) to `account`, without following
/// a link at `path`.
pub fn chown_one(path: &Path, account: Account) -> io::Result<()> {
    use rustix::fs::{CWD, Mode, OFlags, fchown, openat};
    if !Uid::effective().is_root() {
        return Ok(());
    }
    let fd = openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    fchown(
        &fd,
        Some(rustix::fs::Uid::from_raw(account.uid)),
        Some(rustix::fs::Gid::from_raw(account.gid)),
    )?;
    Ok(())
}

fn chown_below(dir: &rustix::fd::OwnedFd, account: Account, lock_down: bool) -> io::Result<()> {
    use rustix::fs::{
        AtFlags, Dir, FileType, Mode, OFlags, chownat, fchmod, fchown, fstat, openat, statat,
    };
    let (uid, gid) = (
        Some(rustix::fs::Uid::from_raw(account.uid)),
        Some(rustix::fs::Gid::from_raw(account.gid)),
    );
    let names: Vec<std::ffi::CString> = Dir::read_from(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_owned())
        .filter(|name| name.as_bytes() != b"." && name.as_bytes() != b"..")
        .collect();
    for name in names {
        let stat = statat(dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Symlink => {
                chownat(dir, name.as_c_str(), uid, gid, AtFlags::SYMLINK_NOFOLLOW)?
            }
            kind => {
                let flags = OFlags::RDONLY
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC
                    | OFlags::NONBLOCK
                    | OFlags::NOCTTY;
                let flags = if kind == FileType::Directory {
                    flags | OFlags::DIRECTORY
                } else {
                    flags
                };
                // Fails (ELOOP/ENOTDIR) if the entry was swapped for a link since.
                let fd = openat(dir, name.as_c_str(), flags, Mode::empty())?;
                fchown(&fd, uid, gid)?;
                if lock_down {
                    let mode = fstat(&fd)?.st_mode & 0o7777 & !0o7022;
                    fchmod(&fd, Mode::from_raw_mode(mode))?;
                }
                if kind == FileType::Directory {
                    chown_below(&fd, account, lock_down)?;
                }
            }
        }
    }
    Ok(())
}

/// Copy `from` to `to` (which must not exist) as root: files hard-linked
/// when `hard_link`. Only for trees nobody else can write (releases); data
/// for a shared directory is seeded by `run_as` the app user instead.
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
