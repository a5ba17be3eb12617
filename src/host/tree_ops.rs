//! Walking trees safely as root: ownership changes by file descriptor that
//! never follow a link (a process of the app user that swaps a directory
//! for a symlink mid-walk cannot redirect it), and tree copies.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::symlink;
use std::path::Path;

use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat};
use nix::unistd::{Gid, Uid, fchown, fchownat};

use super::Account;

const CWD: std::os::fd::BorrowedFd<'static> = nix::fcntl::AT_FDCWD;

/// Give `path` (and, with `recursive`, everything below it) to `owner`.
/// With `lock_down`, group/other write and set-id bits are cleared as well.
pub fn chown(path: &Path, owner: &Account, recursive: bool, lock_down: bool) -> io::Result<()> {
    let base = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let flags = if recursive {
        base | OFlag::O_DIRECTORY
    } else {
        base | OFlag::O_NOCTTY
    };
    let fd = openat(CWD, path, flags, Mode::empty())?;
    own(&fd, owner, lock_down)?;
    if recursive {
        chown_below(&fd, owner, lock_down)?;
    }
    Ok(())
}

fn ids(owner: &Account) -> (Option<Uid>, Option<Gid>) {
    (
        Some(Uid::from_raw(owner.uid)),
        Some(Gid::from_raw(owner.gid)),
    )
}

fn own(fd: &OwnedFd, owner: &Account, lock_down: bool) -> io::Result<()> {
    let (uid, gid) = ids(owner);
    fchown(fd, uid, gid)?;
    if lock_down {
        let mode = fstat(fd)?.st_mode & 0o7777 & !0o7022;
        fchmod(fd, Mode::from_bits_truncate(mode))?;
    }
    Ok(())
}

fn names(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    let listing = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok(listing
        .into_iter()
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_owned())
        .filter(|name| name.as_bytes() != b"." && name.as_bytes() != b"..")
        .collect())
}

fn kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

fn chown_below(dir: &OwnedFd, owner: &Account, lock_down: bool) -> io::Result<()> {
    let (uid, gid) = ids(owner);
    for name in names(dir)? {
        let stat = fstatat(dir, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let kind = kind(&stat);
        if kind == SFlag::S_IFLNK {
            fchownat(dir, name.as_c_str(), uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            continue;
        }
        let mut flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY;
        if kind == SFlag::S_IFDIR {
            flags |= OFlag::O_DIRECTORY;
        }
        // Fails (ELOOP/ENOTDIR) if the entry was swapped for a link since.
        let fd = openat(dir, name.as_c_str(), flags, Mode::empty())?;
        own(&fd, owner, lock_down)?;
        if kind == SFlag::S_IFDIR {
            chown_below(&fd, owner, lock_down)?;
        }
    }
    Ok(())
}

/// Copy `from` to `to` (which must not exist), never following links:
/// files hard-linked when `hard_link`. Only for trees nobody else can
/// write (releases).
pub fn copy_tree(from: &Path, to: &Path, hard_link: bool) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.file_type().is_symlink() {
        symlink(fs::read_link(from)?, to)
    } else if meta.is_dir() {
        fs::create_dir(to)?;
        fs::set_permissions(to, meta.permissions())?;
        let mut entries: Vec<_> = fs::read_dir(from)?.collect::<io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            copy_tree(&entry.path(), &to.join(entry.file_name()), hard_link)?;
        }
        Ok(())
    } else if !meta.is_file() {
        Ok(()) // FIFOs, sockets and devices are not release content
    } else if hard_link {
        fs::hard_link(from, to)
    } else {
        fs::copy(from, to).map(drop)
    }
}

/// Open the directory `dir` (relative to `root`) one component at a time,
/// never following a symlink, creating missing components when `create`. A
/// directory on the way that is a link — `/etc/nginx/evil -> /elsewhere` —
/// could lead a managed path outside the allowed roots: it is refused.
pub fn open_dir_beneath(root: &Path, dir: &Path, create: bool) -> io::Result<OwnedFd> {
    let mut fd = openat(
        CWD,
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut walked = root.to_path_buf();
    for part in dir.components() {
        let std::path::Component::Normal(name) = part else {
            continue;
        };
        walked.push(name);
        match fstatat(&fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) if kind(&stat) == SFlag::S_IFLNK => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!(
                        "{} is a symlink: plumb does not write through links (one could lead outside the allowed roots); replace it with a directory",
                        walked.display()
                    ),
                ));
            }
            Ok(_) => {}
            Err(nix::errno::Errno::ENOENT) if create => {
                nix::sys::stat::mkdirat(&fd, name, Mode::from_bits_truncate(0o755))?;
            }
            Err(e) => return Err(e.into()),
        }
        // O_NOFOLLOW: a link swapped in since the check fails here.
        fd = openat(
            &fd,
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
    }
    Ok(fd)
}

/// Point the link `name` in `dir` at `target` atomically: a temporary link
/// renamed over it.
pub fn place_link(dir: &OwnedFd, name: &std::ffi::OsStr, target: &Path) -> io::Result<()> {
    let tmp = format!(".{}.plumb-tmp", name.to_string_lossy());
    // A leftover of an interrupted run is a link; anything else is not ours.
    if let Ok(stat) = fstatat(dir, tmp.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
        && kind(&stat) == SFlag::S_IFLNK
    {
        nix::unistd::unlinkat(dir, tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir)?;
    }
    nix::unistd::symlinkat(target, dir, tmp.as_str())?;
    nix::fcntl::renameat(dir, tmp.as_str(), dir, name)?;
    Ok(())
}

/// Remove the entry `name` of `dir` (not a directory).
pub fn remove_entry(dir: &OwnedFd, name: &std::ffi::OsStr) -> io::Result<()> {
    nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)?;
    Ok(())
}
