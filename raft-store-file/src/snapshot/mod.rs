//! [`FileSnapshotStore`]: snapshots as directories of a store directory.
//!
//! ```text
//! <dir>/<id>/data     the snapshot bytes, exactly as the FSM wrote them
//! <dir>/<id>/meta     SnapshotMeta + data size + CRC32C of data (see `meta`)
//! <dir>/<id>.tmp/     a snapshot being written; never listed, removed on open
//! ```
//!
//! # Layout
//! - `meta`: the metadata file.
//! - `sink`: the sink that writes and finalizes a snapshot.
//! - `reader`: the checksum-verifying reader `open` hands out.

mod meta;
mod reader;
mod sink;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use raft::{
    async_trait, Configuration, SnapshotMeta, SnapshotReader, SnapshotSink, SnapshotStore, StorageError,
};

use crate::fsutil::{self, TMP_SUFFIX};
use meta::MetaFile;
use reader::ChecksumReader;
use sink::FileSnapshotSink;

/// A durable [`SnapshotStore`] keeping the newest `retain` snapshots in a
/// directory. Cheap to [`Clone`].
///
/// A snapshot is written to `<id>.tmp/`, and on finalize its data and
/// metadata are fsync'd and the directory renamed to `<id>/` (then the
/// parent directory fsync'd): it is listed only once complete and durable.
/// Partial snapshots left by a crash are removed by [`FileSnapshotStore::new`].
/// [`open`](SnapshotStore::open) first reads the whole data file once and
/// checks its size and CRC32C against the metadata: a damaged snapshot is
/// refused with [`StorageError::Corrupt`] and never handed out. The reader
/// it returns checks the CRC32C again as it streams (damage appearing after
/// `open` is then an I/O error of kind [`std::io::ErrorKind::InvalidData`]
/// at the end of the data).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use raft::{Configuration, SnapshotStore};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// let dir = tempfile::tempdir().unwrap();
/// let store = raft_store_file::FileSnapshotStore::new(dir.path(), 2).await.unwrap();
/// let mut sink = store.create(10, 2, &Configuration::default(), 1).await.unwrap();
/// sink.write_all(b"state").await.unwrap();
/// let meta = sink.finalize().await.unwrap();
/// let (_, mut reader) = store.open(&meta.id).await.unwrap();
/// let mut data = Vec::new();
/// reader.read_to_end(&mut data).await.unwrap();
/// assert_eq!(data, b"state");
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct FileSnapshotStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// How many snapshots to keep; at least 1.
    retain: usize,
    /// Makes ids created within one millisecond unique.
    seq: AtomicU64,
}

fn join_error(e: tokio::task::JoinError) -> StorageError {
    StorageError::Failed(format!("blocking snapshot task failed: {e}"))
}

/// Newest first: by term, then index, then id.
fn sort_newest_first(metas: &mut [SnapshotMeta]) {
    metas.sort_by(|a, b| (b.term, b.index, &b.id).cmp(&(a.term, a.index, &a.id)));
}

impl FileSnapshotStore {
    /// Opens (creating it if needed) the snapshot store in `dir`, keeping the
    /// newest `retain` snapshots (at least 1). Removes partial snapshots of
    /// an earlier crash.
    pub async fn new(dir: impl AsRef<Path>, retain: usize) -> Result<Self, StorageError> {
        let dir = dir.as_ref().to_owned();
        let open_dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&open_dir)
                .map_err(|e| StorageError::io(format!("create directory {}", open_dir.display()), e))?;
            if fsutil::remove_tmp_entries(&open_dir)? > 0 {
                fsutil::sync_dir(&open_dir)?;
            }
            Ok::<_, StorageError>(())
        })
        .await
        .map_err(join_error)??;
        Ok(Self { inner: Arc::new(Inner { dir, retain: retain.max(1), seq: AtomicU64::new(0) }) })
    }

    /// The directory the snapshots live in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// How many snapshots are kept.
    pub fn retain(&self) -> usize {
        self.inner.retain
    }

    /// Every readable snapshot, newest first. Blocking.
    fn list_blocking(&self) -> Result<Vec<SnapshotMeta>, StorageError> {
        let dir = self.dir();
        let mut metas = Vec::new();
        let entries =
            std::fs::read_dir(dir).map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(TMP_SUFFIX) || !entry.path().is_dir() {
                continue;
            }
            match MetaFile::read(&entry.path().join("meta")) {
                Ok(file) if file.meta.id == name => metas.push(file.meta),
                Ok(file) => {
                    tracing::warn!(dir = %name, id = %file.meta.id, "skipping snapshot whose metadata names another id")
                }
                Err(e) => {
                    tracing::warn!(dir = %name, error = %e, "skipping snapshot with unreadable metadata")
                }
            }
        }
        sort_newest_first(&mut metas);
        Ok(metas)
    }

    /// Deletes all but the newest `retain` snapshots. Blocking.
    fn reap(&self) -> Result<(), StorageError> {
        let metas = self.list_blocking()?;
        let mut removed = false;
        for old in metas.iter().skip(self.inner.retain) {
            let path = self.dir().join(&old.id);
            tracing::info!(id = %old.id, "removing old snapshot");
            std::fs::remove_dir_all(&path)
                .map_err(|e| StorageError::io(format!("remove {}", path.display()), e))?;
            removed = true;
        }
        if removed {
            fsutil::sync_dir(self.dir())?;
        }
        Ok(())
    }

    fn snapshot_dir(&self, id: &str) -> Result<PathBuf, StorageError> {
        let valid = !id.is_empty()
            && !id.ends_with(TMP_SUFFIX)
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(StorageError::SnapshotNotFound(id.to_owned()));
        }
        Ok(self.dir().join(id))
    }
}

/// Reads the data file once and checks it against the CRC32C of its
/// metadata. Blocking.
fn verify_data(path: &Path, file: &MetaFile) -> Result<(), StorageError> {
    use std::io::Read;
    let mut data =
        std::fs::File::open(path).map_err(|e| StorageError::io(format!("open {}", path.display()), e))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut crc = 0u32;
    let mut read = 0u64;
    loop {
        let n = match data.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StorageError::io(format!("read {}", path.display()), e)),
        };
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        read += n as u64;
    }
    let corrupt = |reason: String| {
        tracing::error!(path = %path.display(), %reason, "snapshot data is corrupt");
        StorageError::Corrupt { path: path.display().to_string(), offset: 0, reason }
    };
    if read != file.meta.size {
        return Err(corrupt(format!("{read} bytes read, metadata says {}", file.meta.size)));
    }
    if crc != file.checksum {
        return Err(corrupt(format!("data checksum {crc:#010x}, metadata says {:#010x}", file.checksum)));
    }
    Ok(())
}

#[async_trait]
impl SnapshotStore for FileSnapshotStore {
    async fn create(
        &self,
        index: u64,
        term: u64,
        configuration: &Configuration,
        configuration_index: u64,
    ) -> Result<Box<dyn SnapshotSink>, StorageError> {
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let id = format!("{term}-{index}-{millis}-{seq}");
        let tmp_dir = self.dir().join(format!("{id}{TMP_SUFFIX}"));
        let io = |op: &str, e| StorageError::io(format!("{op} {}", tmp_dir.display()), e);
        tokio::fs::create_dir(&tmp_dir).await.map_err(|e| io("create", e))?;
        let file =
            tokio::fs::File::create(tmp_dir.join("data")).await.map_err(|e| io("create data in", e))?;
        tracing::debug!(%id, index, term, "snapshot started");
        Ok(Box::new(FileSnapshotSink {
            store: self.clone(),
            meta: SnapshotMeta {
                id,
                index,
                term,
                configuration: configuration.clone(),
                configuration_index,
                size: 0,
            },
            tmp_dir,
            file: Some(file),
            crc: 0,
        }))
    }

    async fn list(&self) -> Result<Vec<SnapshotMeta>, StorageError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.list_blocking()).await.map_err(join_error)?
    }

    async fn delete(&self, id: &str) -> Result<bool, StorageError> {
        let dir = self.snapshot_dir(id)?;
        let parent = self.dir().to_owned();
        tokio::task::spawn_blocking(move || {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(StorageError::io(format!("remove {}", dir.display()), e)),
            }
            fsutil::sync_dir(&parent)?;
            tracing::info!(path = %dir.display(), "deleted a damaged snapshot");
            Ok(true)
        })
        .await
        .map_err(join_error)?
    }

    async fn open(&self, id: &str) -> Result<(SnapshotMeta, SnapshotReader), StorageError> {
        let dir = self.snapshot_dir(id)?;
        let owned_id = id.to_owned();
        let (file, data_path) = tokio::task::spawn_blocking(move || {
            if !dir.is_dir() {
                return Err(StorageError::SnapshotNotFound(owned_id));
            }
            let file = MetaFile::read(&dir.join("meta"))?;
            let data_path = dir.join("data");
            let len = std::fs::metadata(&data_path)
                .map_err(|e| StorageError::io(format!("stat {}", data_path.display()), e))?
                .len();
            if len != file.meta.size {
                return Err(StorageError::Corrupt {
                    path: data_path.display().to_string(),
                    offset: len.min(file.meta.size),
                    reason: format!("data is {len} bytes, metadata says {}", file.meta.size),
                });
            }
            verify_data(&data_path, &file)?;
            Ok((file, data_path))
        })
        .await
        .map_err(join_error)??;
        let data = tokio::fs::File::open(&data_path)
            .await
            .map_err(|e| StorageError::io(format!("open {}", data_path.display()), e))?;
        let reader = ChecksumReader::new(
            tokio::io::BufReader::with_capacity(256 * 1024, data),
            data_path.display().to_string(),
            file.meta.size,
            file.checksum,
        );
        Ok((file.meta, SnapshotReader::new(reader)))
    }
}
