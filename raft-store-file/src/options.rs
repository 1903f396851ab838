//! [`FileStoreOptions`]: the knobs of a [`FileStore`](crate::FileStore).

/// Options for [`FileStore::open_with`](crate::FileStore::open_with).
///
/// ```
/// let opts = raft_store_file::FileStoreOptions { segment_size: 8 << 20, ..Default::default() };
/// assert_eq!(opts.cache_entries, raft_store_file::FileStoreOptions::default().cache_entries);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStoreOptions {
    /// Target size of one log segment file in bytes (default 64 MiB). A
    /// segment is sealed and a new one started when the next record would
    /// push it past this size; a single record larger than this gets a
    /// segment of its own. Values below 4 KiB are raised to 4 KiB.
    ///
    /// Segments are zero-filled ahead of the writer (see the crate docs),
    /// and a log's first preallocated segment is smaller: 4 MiB, each next
    /// one twice the one before, up to this size. A new or small log then
    /// zero-fills about as much as it holds, not a whole `segment_size` at
    /// once while its first writes wait for the disk.
    pub segment_size: u64,
    /// How many of the most recently appended entries are kept in memory, so
    /// reads of the log's tail (replication) rarely touch the disk
    /// (default 1024; 0 disables the cache). The cache also never holds more
    /// than [`cache_bytes`](Self::cache_bytes) of payload.
    pub cache_entries: usize,
    /// The most `store_logs` calls the writer groups into one fdatasync
    /// (group commit; default 256; at least 1).
    pub max_group_requests: usize,
    /// The most payload bytes the cache of recent entries holds (default
    /// 4 MiB; 0 disables the cache): its memory stays bounded whatever the
    /// entries' size. The protocol core keeps its own window of recent
    /// entries, so this cache mostly serves other readers of the log tail.
    pub cache_bytes: usize,
    /// Whether a `store_logs` or `delete_range` that finds the log idle
    /// writes and syncs on the calling thread (default `false`), inside
    /// [`tokio::task::block_in_place`] unless the previous sync was very
    /// quick. It then needs no hand-off to the writer thread and back:
    /// fewer thread and task wake-ups per durable write. Only on tokio's
    /// multi-thread runtime; on the current-thread runtime, outside tokio,
    /// when the log is busy, or with `false`, the writer thread does the
    /// write.
    ///
    /// Off by default because a Raft node polls its log writes from its
    /// main task: a caller that syncs itself holds that task for the whole
    /// fdatasync, so the leader cannot send the next batch to followers
    /// meanwhile. Measured with the bench (`--store file --transport grpc`,
    /// 2026-11-26): 64 clients 61k-66k writes/s with it on against 68k-76k
    /// with it off; 1 client about the same either way (2.2k-2.6k/s). Turn
    /// it on for a caller that has nothing else to do while it waits.
    pub caller_writes: bool,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            cache_entries: 1024,
            max_group_requests: 256,
            cache_bytes: 4 << 20,
            caller_writes: false,
        }
    }
}

impl FileStoreOptions {
    /// The options with every value clamped into its valid range.
    pub(crate) fn normalized(mut self) -> Self {
        self.segment_size = self.segment_size.max(4096);
        self.max_group_requests = self.max_group_requests.max(1);
        self
    }
}
