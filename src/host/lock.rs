//! One run at a time: an exclusive flock on `/run/plumb/lock` held for the
//! whole run, with the holder's pid written inside for the error message.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::LockError;

/// Held until dropped; the kernel releases it if the process dies.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Take the lock at `path` (a real path); with `wait`, block until it is free.
pub fn acquire(path: &Path, wait: bool) -> Result<RunLock, LockError> {
    let io = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    if wait {
        file.lock().map_err(io)?;
    } else {
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(LockError::Held {
                    path: PathBuf::from(path),
                    pid: pid.trim().to_string(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
    }
    // The pid, padded to a fixed width and written in place: truncating
    // first would make ext4 flush the file at close, on every run.
    let pid = format!("{:<10}\n", std::process::id());
    file.write_all_at(pid.as_bytes(), 0).map_err(io)?;
    if file.metadata().map_err(io)?.len() > pid.len() as u64 {
        file.set_len(pid.len() as u64).map_err(io)?;
    }
    Ok(RunLock { _file: file })
}
