//! Small blocking filesystem helpers shared by the stores: directory fsync,
//! atomic file replacement and the directory lock.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use raft::StorageError;

/// Suffix of files being written that are not yet durable; any such file
/// found on open is debris of a crash and is removed.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Makes the directory entries of `dir` (new files, renames, removals)
/// durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(format!("fsync directory {}", dir.display()), e))
}

/// Replaces `path` with `bytes` atomically and durably: write a temporary
/// file, fsync it, rename it over `path`, fsync the directory. After a
/// crash `path` holds either the old or the new contents.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = tmp_path(path);
    let io = |op: &str, e: io::Error| StorageError::io(format!("{op} {}", tmp.display()), e);
    let mut file = File::create(&tmp).map_err(|e| io("create", e))?;
    file.write_all(bytes).map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("fsync", e))?;
    drop(file);
    fs::rename(&tmp, path)
        .map_err(|e| StorageError::io(format!("rename {} to {}", tmp.display(), path.display()), e))?;
    sync_dir(parent(path))
}

/// `path` with [`TMP_SUFFIX`] appended.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(TMP_SUFFIX);
    PathBuf::from(s)
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Removes every `*.tmp` entry (file or directory) of `dir`; returns how
/// many were removed. The caller fsyncs the directory if that is not zero.
pub(crate) fn remove_tmp_entries(dir: &Path) -> Result<usize, StorageError> {
    let mut removed = 0;
    let entries = fs::read_dir(dir).map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
        if !entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
            continue;
        }
        let path = entry.path();
        tracing::info!(path = %path.display(), "removing leftover temporary file of an interrupted write");
        let res = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        match res {
            // Something else (an abandoned snapshot sink's own clean-up) got there first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other.map_err(|e| StorageError::io(format!("remove {}", path.display()), e))?,
        }
        removed += 1;
    }
    Ok(removed)
}

/// An exclusive advisory lock on `<dir>/LOCK`, held until dropped. Stops a
/// second process (or a second store in this process) from opening the
/// same directory.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock without waiting; a clear error if someone holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<Self, StorageError> {
        let path = dir.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StorageError::io(format!("open lock file {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(StorageError::io(
                format!("lock {}", path.display()),
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "directory {} is already in use by another store (in this or another process)",
                        dir.display()
                    ),
                ),
            )),
            Err(TryLockError::Error(e)) => Err(StorageError::io(format!("lock {}", path.display()), e)),
        }
    }
}
