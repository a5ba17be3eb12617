//! `Files` on the real filesystem, every host path placed under a root.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Account, Files, Kind, Stat, tree_ops};

/// The machine's filesystem below `root`.
#[derive(Debug, Clone)]
pub struct RealFiles {
    pub root: PathBuf,
}

fn stat_of(meta: &fs::Metadata) -> Stat {
    let kind = if meta.file_type().is_symlink() {
        Kind::Symlink
    } else if meta.is_dir() {
        Kind::Dir
    } else if meta.is_file() {
        Kind::File
    } else {
        Kind::Other
    };
    Stat {
        kind,
        size: meta.size(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        ino: meta.ino(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
    }
}

/// `Stat` from a raw `stat` buffer (`fstatat`).
fn raw_stat(st: &nix::sys::stat::FileStat) -> Stat {
    use nix::libc::{S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
    let kind = match st.st_mode & S_IFMT {
        S_IFLNK => Kind::Symlink,
        S_IFDIR => Kind::Dir,
        S_IFREG => Kind::File,
        _ => Kind::Other,
    };
    Stat {
        kind,
        size: st.st_size as u64,
        mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
        ctime_ns: st.st_ctime * 1_000_000_000 + st.st_ctime_nsec,
        ino: st.st_ino,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
    }
}

impl Files for RealFiles {
    fn root(&self) -> &Path {
        &self.root
    }

    fn stat(&self, path: &Path) -> io::Result<Stat> {
        fs::symlink_metadata(self.real(path)).map(|m| stat_of(&m))
    }

    fn stat_under(&self, dir: &Path, names: &[&str]) -> Vec<io::Result<Stat>> {
        use nix::fcntl::{OFlag, open};
        use nix::sys::stat::{Mode, fstatat};
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let dir = match open(&self.real(dir), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) => return names.iter().map(|_| Err(io::Error::from(e))).collect(),
        };
        let nofollow = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
        names
            .iter()
            .map(|name| {
                if Path::new(name).is_absolute() {
                    return Err(io::Error::other(format!("{name}: not relative")));
                }
                let st = fstatat(&dir, *name, nofollow).map_err(io::Error::from)?;
                Ok(raw_stat(&st))
            })
            .collect()
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(self.real(path))
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        fs::read_link(self.real(path))
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = fs::read_dir(self.real(path))?
            .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<Vec<String>>>()?;
        names.sort();
        Ok(names)
    }

    fn sha256(&self, path: &Path) -> io::Result<String> {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(self.real(path))?;
        let mut hash = Sha256::new();
        feed(&mut file, &mut |piece| hash.update(piece))?;
        Ok(hex::encode(hash.finalize()))
    }

    fn git_blob_id(&self, path: &Path) -> io::Result<String> {
        use sha1::{Digest as _, Sha1};
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(self.real(path))?;
        let size = file.metadata()?.len();
        let mut hash = Sha1::new();
        hash.update(format!("blob {size}\0").as_bytes());
        feed(&mut file, &mut |piece| hash.update(piece))?;
        Ok(hex::encode(hash.finalize()))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(self.real(path))
    }

    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        let real = self.real(path);
        if fs::symlink_metadata(&real)?.file_type().is_symlink() {
            return Err(io::Error::other(format!(
                "{}: is a symlink",
                real.display()
            )));
        }
        fs::set_permissions(real, fs::Permissions::from_mode(mode))
    }

    fn write_new(&self, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        let mut file = create_new(&self.real(path), mode)?;
        file.write_all(bytes)?;
        // The umask may have narrowed the mode; the manifest promises this one.
        file.set_permissions(fs::Permissions::from_mode(mode))
    }

    fn write_stream(&self, path: &Path, from: &mut dyn Read, mode: u32) -> io::Result<()> {
        let mut file = create_new(&self.real(path), mode)?;
        io::copy(from, &mut file)?;
        file.set_permissions(fs::Permissions::from_mode(mode))
    }

    fn place_link(&self, target: &Path, path: &Path) -> io::Result<()> {
        let (dir, name) = split(path)?;
        let fd = tree_ops::open_dir_beneath(&self.root, dir, true)?;
        tree_ops::place_link(&fd, name, target)
    }

    fn remove_link(&self, path: &Path) -> io::Result<()> {
        let (dir, name) = split(path)?;
        // Not there, or behind a linked directory plumb never writes through:
        // then it was never plumb's link.
        match tree_ops::open_dir_beneath(&self.root, dir, false)
            .and_then(|fd| tree_ops::remove_entry(&fd, name))
        {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::hard_link(self.real(from), self.real(to))
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
        nix::unistd::syncfs(&dir).map_err(io::Error::from)
    }

    fn copy_tree(&self, from: &Path, to: &Path, hard_link: bool) -> io::Result<()> {
        tree_ops::copy_tree(&self.real(from), &self.real(to), hard_link)
    }

    fn blocked_for(&self, path: &Path, account: &Account) -> Option<PathBuf> {
        if account.is_root() {
            return None;
        }
        let real = self.real(path);
        let mut at = PathBuf::from("/");
        for part in real.components().skip(1) {
            at.push(part);
            let Ok(meta) = fs::metadata(&at) else {
                return None; // not there yet: it will be created searchable
            };
            let mode = meta.mode();
            let bit = if meta.uid() == account.uid {
                0o100
            } else if meta.gid() == account.gid || account.groups.contains(&meta.gid()) {
                0o010
            } else {
                0o001
            };
            if mode & bit == 0 {
                return Some(at);
            }
        }
        None
    }

    fn chown(
        &self,
        path: &Path,
        owner: &Account,
        recursive: bool,
        lock_down: bool,
    ) -> io::Result<()> {
        if !super::account::privileged() {
            return Ok(());
        }
        tree_ops::chown(&self.real(path), owner, recursive, lock_down)
    }
}

fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// The directory and the name of a host path.
fn split(path: &Path) -> io::Result<(&Path, &std::ffi::OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((dir.strip_prefix("/").unwrap_or(dir), name)),
        _ => Err(io::Error::other(format!(
            "{} has no parent",
            path.display()
        ))),
    }
}

/// Read `file` to its end in pieces, handing each to `take`.
fn feed(file: &mut fs::File, take: &mut dyn FnMut(&[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(()),
            n => take(&buf[..n]),
        }
    }
}
