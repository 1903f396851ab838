//! Loading a node's durable state at start, and the free functions that
//! work on stores directly: [`has_existing_state`], [`stored_node_id`],
//! [`bootstrap_cluster`] and [`recover_cluster`].

use std::ops::Range;

use crate::config::Config;
use crate::core::InitialState;
use crate::error::{Error, StorageError};
use crate::fsm::Fsm;
use crate::snapshot::SnapshotStore;
use crate::storage::{LogStore, StableStore};
use crate::transport::ENTRY_OVERHEAD;
use crate::types::{Configuration, HardState, Log, LogEntryMeta, LogType, SnapshotMeta, SnapshotPosition};

use super::{COMMIT_KEY, HARD_STATE_KEY, REMOVED_KEY};

/// Reads the hard state, or the default for a new node.
pub(crate) async fn load_hard_state(stable: &dyn StableStore) -> Result<HardState, StorageError> {
    match stable.get(HARD_STATE_KEY).await? {
        None => Ok(HardState::default()),
        Some(bytes) => crate::codec::decode(&bytes),
    }
}

/// Whether the stores hold any Raft state (a log entry, a term, a snapshot).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use raft::{has_existing_state, DiscardSnapshotStore};
/// # struct Empty;
/// # #[raft::async_trait] impl raft::LogStore for Empty {
/// #   async fn first_index(&self) -> Result<u64, raft::StorageError> { Ok(0) }
/// #   async fn last_index(&self) -> Result<u64, raft::StorageError> { Ok(0) }
/// #   async fn get_log(&self, _: u64) -> Result<Option<raft::Log>, raft::StorageError> { Ok(None) }
/// #   async fn get_logs(&self, _: std::ops::Range<u64>) -> Result<Vec<raft::Log>, raft::StorageError> { Ok(vec![]) }
/// #   async fn store_logs(&self, _: &[raft::Log]) -> Result<(), raft::StorageError> { Ok(()) }
/// #   async fn delete_range(&self, _: u64, _: u64) -> Result<(), raft::StorageError> { Ok(()) } }
/// # #[raft::async_trait] impl raft::StableStore for Empty {
/// #   async fn set(&self, _: &[u8], _: &[u8]) -> Result<(), raft::StorageError> { Ok(()) }
/// #   async fn get(&self, _: &[u8]) -> Result<Option<Vec<u8>>, raft::StorageError> { Ok(None) } }
/// assert!(!has_existing_state(&Empty, &Empty, &DiscardSnapshotStore).await.unwrap());
/// # });
/// ```
pub async fn has_existing_state(
    logs: &dyn LogStore,
    stable: &dyn StableStore,
    snaps: &dyn SnapshotStore,
) -> Result<bool, Error> {
    if logs.last_index().await? > 0 {
        return Ok(true);
    }
    if load_hard_state(stable).await?.term > 0 {
        return Ok(true);
    }
    Ok(!snaps.list().await?.is_empty())
}

/// The id of the node whose stores these are, as recorded by
/// [`bootstrap_cluster`], [`recover_cluster`] or the node's first start;
/// `None` if the stores record none (new, or written before node ids were
/// recorded). Offline tools (e.g. `raftctl recover`) use it to act as the
/// node without being told its id.
pub async fn stored_node_id(stable: &dyn StableStore) -> Result<Option<crate::types::ServerId>, Error> {
    super::identity::stored_node_id(stable).await
}

/// Writes the first configuration of a new cluster directly to the stores
/// of a node that is not running: term 1 and a configuration entry at
/// index 1. Call it with the same configuration on every initial server (or
/// on one, and add the others later). Returns [`Error::CantBootstrap`] if the
/// stores already hold state.
///
/// Also records the node's id and its cluster id in `stable`: the cluster
/// id is [`Config::cluster_id`] if set, else [`ClusterId::derive`] of
/// `configuration` (so every server bootstrapped with the same
/// configuration agrees). Returns [`Error::NodeIdMismatch`] if the stores
/// belong to another node.
///
/// API change: it no longer takes a transport (it never used one); drop
/// that argument from calls.
///
/// [`ClusterId::derive`]: crate::ClusterId::derive
pub async fn bootstrap_cluster(
    config: &Config,
    logs: &dyn LogStore,
    stable: &dyn StableStore,
    snaps: &dyn SnapshotStore,
    configuration: Configuration,
) -> Result<(), Error> {
    config.validate()?;
    configuration.validate().map_err(Error::InvalidConfig)?;
    if has_existing_state(logs, stable, snaps).await? {
        return Err(Error::CantBootstrap);
    }
    let cluster_id = super::identity::claim_for_bootstrap(config, stable, &configuration).await?;
    tracing::info!(id = %config.local_id, cluster = %cluster_id, "bootstrapping a new cluster");
    let data = crate::codec::encode(&configuration)?;
    stable.set(HARD_STATE_KEY, &crate::codec::encode(&HardState { term: 1, vote: None })?).await?;
    logs.store_logs(&[Log::new(1, 1, LogType::Configuration, data)]).await?;
    Ok(())
}

/// Manual recovery after a cluster lost its quorum for good (HashiCorp's
/// `peers.json` case). Run it, with the node stopped, on every surviving
/// server with the same `configuration` listing only the survivors; then
/// start them normally.
///
/// It restores the newest usable snapshot into `fsm` (a damaged newest
/// snapshot falls back to an older one, or to the whole log, only when the
/// log still bridges the gap, as at start; otherwise it refuses with
/// [`StorageError::Corrupt`] saying what to do), applies the rest of the
/// node's log to `fsm`, writes a snapshot of the
/// result whose configuration is `configuration`, and appends a
/// configuration entry in a new term, so the survivors can elect a leader
/// among themselves.
///
/// **This can lose committed writes** that only the lost servers had, and it
/// breaks Raft's guarantees if any server not listed is still running:
/// make sure every other server is gone for good before using it.
///
/// Operator walk-through:
/// 1. Stop every surviving node.
/// 2. Decide the new membership (the survivors) and build a `Configuration`.
/// 3. On each survivor, call `recover_cluster` with its own stores and that
///    configuration.
/// 4. Start the survivors. They elect a leader; add new servers with
///    `add_voter` to restore redundancy.
///
/// The node keeps its stored cluster id; a node that has none (its store
/// predates cluster ids) gets [`Config::cluster_id`] if set, else the id
/// derived from `configuration`, like a bootstrap.
///
/// API change: it no longer takes a transport (it never used one); drop
/// that argument from calls. `raftctl recover --data-dir DIR --peers
/// peers.json` runs it on a `kv` node's data directory.
pub async fn recover_cluster<F: Fsm>(
    config: &Config,
    mut fsm: F,
    logs: &dyn LogStore,
    stable: &dyn StableStore,
    snaps: &dyn SnapshotStore,
    configuration: Configuration,
) -> Result<(), Error> {
    config.validate()?;
    configuration.validate().map_err(Error::InvalidConfig)?;
    if !has_existing_state(logs, stable, snaps).await? {
        return Err(Error::InvalidConfig("no existing state to recover; use bootstrap_cluster".into()));
    }
    let cluster_id = super::identity::claim_for_bootstrap(config, stable, &configuration).await?;
    tracing::warn!(id = %config.local_id, cluster = %cluster_id, "recovering the cluster with a new configuration");
    let hard = load_hard_state(stable).await?;
    let mut last_index = 0;
    let mut last_term = 0;
    // The newest usable snapshot, as at start: a damaged newest one falls
    // back to an older one (or the whole log) when the log bridges the gap.
    if let Some(meta) = restore_newest_snapshot(&mut fsm, snaps, logs).await? {
        last_index = meta.index;
        last_term = meta.term;
    }
    let first = logs.first_index().await?.max(last_index + 1);
    let last = logs.last_index().await?;
    if last >= first {
        // A batch of entries at a time, bounded in bytes: never the whole
        // log in memory.
        let metas = logs.entry_meta(first..last + 1).await?;
        for range in byte_batches(&metas, READ_BATCH_BYTES) {
            for log in logs.get_logs(range).await? {
                if log.log_type == LogType::Command {
                    fsm.apply(&log).await;
                }
                last_index = log.index;
                last_term = log.term;
            }
        }
    }
    let snapshot = fsm.snapshot().await.map_err(|e| Error::fsm(crate::error::FsmOperation::Snapshot, e))?;
    let position = SnapshotPosition {
        index: last_index,
        term: last_term,
        configuration: configuration.clone(),
        configuration_index: last_index,
    };
    super::snapshot::write_snapshot(snaps, snapshot, &position).await?;
    if last >= 1 {
        logs.delete_range(logs.first_index().await?.max(1), last).await?;
    }
    let term = hard.term.max(last_term) + 1;
    let data = crate::codec::encode(&configuration)?;
    stable.set(HARD_STATE_KEY, &crate::codec::encode(&HardState { term, vote: None })?).await?;
    // The operator decides membership here: a removed mark no longer holds.
    stable.set(REMOVED_KEY, &[]).await?;
    logs.store_logs(&[Log::new(last_index + 1, term, LogType::Configuration, data)]).await?;
    Ok(())
}

/// The newest usable snapshot, restored into `fsm` (every restore is
/// verified: see [`super::verify::restore_verified`]).
///
/// A newest snapshot that cannot be opened or fails verification is logged
/// as an error and the state is rebuilt from an older snapshot or from the
/// log alone, but only if `logs` still holds every entry from there up to
/// the damaged snapshot's index (with its term there): the node must come
/// back with all it had applied and acknowledged, never with less or with
/// wrong state. Otherwise, or if a failed restore left the FSM half-written
/// and no older snapshot replaced it, start is refused with
/// [`StorageError::Corrupt`] saying what to do.
pub(crate) async fn restore_newest_snapshot<F: Fsm>(
    fsm: &mut F,
    snaps: &dyn SnapshotStore,
    logs: &dyn LogStore,
) -> Result<Option<SnapshotMeta>, Error> {
    // The newest snapshot, once it failed: what a fallback must reach.
    let mut damaged: Option<(SnapshotMeta, String)> = None;
    // Whether a failed restore may have left part of a snapshot in the FSM.
    let mut fsm_dirty = false;
    for listed in snaps.list().await? {
        if let Some((bad, why)) = &damaged {
            if !log_bridges(logs, listed.index, bad).await? {
                return Err(refuse_start(bad, why, Some(&listed)));
            }
        }
        let result = match snaps.open(&listed.id).await {
            Ok((meta, reader)) => {
                let restored = super::verify::restore_verified(fsm, &meta.id, reader, Some(meta.size)).await;
                if restored.is_err() {
                    fsm_dirty = true;
                }
                restored.map(|()| meta)
            }
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(meta) => {
                if let Some((bad, _)) = &damaged {
                    tracing::error!(
                        damaged = %bad.id, damaged_index = bad.index, snapshot = %meta.id, index = meta.index,
                        "restored an older snapshot instead of the damaged newest one; the log replays the rest"
                    );
                }
                return Ok(Some(meta));
            }
            Err(e) => {
                tracing::error!(snapshot = %listed.id, index = listed.index, error = %e,
                    "snapshot is damaged or unreadable; trying an older snapshot or the log");
                if damaged.is_none() {
                    damaged = Some((listed, e.to_string()));
                }
            }
        }
    }
    if let Some((bad, why)) = &damaged {
        if fsm_dirty || !log_bridges(logs, 0, bad).await? {
            return Err(refuse_start(bad, why, None));
        }
        tracing::error!(damaged = %bad.id, damaged_index = bad.index,
            "no usable snapshot: rebuilding the state from the whole log");
    }
    Ok(None)
}

/// Whether `logs` holds every entry after `from` up to `bad.index`, the
/// last one of `bad.term` (the damaged snapshot's own entry, so the log is
/// the history the snapshot summarized).
async fn log_bridges(logs: &dyn LogStore, from: u64, bad: &SnapshotMeta) -> Result<bool, Error> {
    let first = logs.first_index().await?;
    let last = logs.last_index().await?;
    if last < bad.index || last == 0 || first > from + 1 {
        return Ok(false);
    }
    Ok(term_at(logs, bad.index).await? == Some(bad.term))
}

/// The term of the entry at `index`, from its metadata (no payload is
/// read), or `None` if the log does not hold it.
async fn term_at(logs: &dyn LogStore, index: u64) -> Result<Option<u64>, StorageError> {
    if index == 0 {
        return Ok(None);
    }
    match logs.entry_meta(index..index + 1).await {
        Ok(metas) => Ok(metas.first().filter(|m| m.index == index).map(|m| m.term)),
        Err(StorageError::LogNotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Splits the entries `metas` (contiguous) into ranges of indexes whose
/// payloads add up to at most `max_bytes` each (a single larger entry gets
/// a range of its own).
fn byte_batches(metas: &[LogEntryMeta], max_bytes: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let mut start: Option<u64> = None;
    let mut bytes = 0u64;
    for m in metas {
        if let Some(lo) = start {
            if bytes.saturating_add(m.size) > max_bytes {
                out.push(lo..m.index);
                start = None;
            }
        }
        if start.is_none() {
            start = Some(m.index);
            bytes = 0;
        }
        bytes = bytes.saturating_add(m.size);
    }
    if let (Some(lo), Some(last)) = (start, metas.last()) {
        out.push(lo..last.index + 1);
    }
    out
}

/// The error refusing a start whose newest snapshot `bad` is damaged and
/// cannot be rebuilt from `older` (or the log alone) plus the log.
fn refuse_start(bad: &SnapshotMeta, why: &str, older: Option<&SnapshotMeta>) -> Error {
    let from = match older {
        Some(o) => format!("the older snapshot {} (index {}) plus the log", o.id, o.index),
        None => "the log alone".to_owned(),
    };
    let reason = format!(
        "the newest snapshot {} (index {}) is damaged ({why}) and {from} cannot rebuild the state up to it: \
         refusing to start with wrong state. Restore the snapshot from a backup, or wipe this node's data \
         and rejoin it to the cluster (remove_server, then add_voter) so it receives a fresh snapshot",
        bad.id, bad.index
    );
    tracing::error!(snapshot = %bad.id, index = bad.index, %reason, "cannot start");
    Error::Storage(StorageError::Corrupt { path: format!("snapshot {}", bad.id), offset: 0, reason })
}

/// Deletes a stored log that a snapshot installed from the leader has
/// superseded but that a crash left behind (the install stores the snapshot
/// first and deletes the log after): a log that ends before the snapshot, or
/// whose entry at the snapshot's index has another term, cannot continue it.
async fn discard_log_superseded_by_snapshot(
    logs: &dyn LogStore,
    snapshot: Option<&SnapshotPosition>,
) -> Result<(), Error> {
    let Some(&SnapshotPosition { index: snapshot_index, term: snapshot_term, .. }) = snapshot else {
        return Ok(());
    };
    if snapshot_index == 0 {
        return Ok(());
    }
    let first = logs.first_index().await?;
    let last = logs.last_index().await?;
    if last == 0 || first > snapshot_index {
        return Ok(());
    }
    let superseded = if last < snapshot_index {
        true
    } else {
        term_at(logs, snapshot_index).await? != Some(snapshot_term)
    };
    if superseded {
        tracing::warn!(first, last, snapshot_index, "discarding a log superseded by the newest snapshot");
        logs.delete_range(first, last).await?;
    }
    Ok(())
}

/// Reads everything the core needs to restart.
pub(crate) async fn load_initial_state<F: Fsm>(
    config: &Config,
    fsm: &mut F,
    logs: &dyn LogStore,
    stable: &dyn StableStore,
    snaps: &dyn SnapshotStore,
) -> Result<InitialState, Error> {
    let hard_state = load_hard_state(stable).await?;
    let removed = stable.get(REMOVED_KEY).await?.is_some_and(|v| !v.is_empty());
    let mut init = InitialState { hard_state, removed, ..InitialState::default() };
    if !config.no_snapshot_restore_on_start {
        if let Some(meta) = restore_newest_snapshot(fsm, snaps, logs).await? {
            init.snapshot = Some(meta.position());
            init.applied = meta.index;
        }
    } else if let Some(meta) = snaps.list().await?.into_iter().next() {
        // The FSM keeps its own state: only the log position is taken.
        init.snapshot = Some(meta.position());
    }
    if let Some(applied) = fsm.last_applied() {
        init.applied = init.applied.max(applied);
    }
    discard_log_superseded_by_snapshot(logs, init.snapshot.as_ref()).await?;
    let snapshot_index = init.snapshot_index();
    let first = logs.first_index().await?;
    let last = logs.last_index().await?;
    if last > 0 {
        if first > snapshot_index + 1 {
            return Err(Error::Storage(StorageError::Corrupt {
                path: "log store".into(),
                offset: first,
                reason: format!(
                    "log starts at {first} but the newest usable snapshot ends at {}: entries are missing",
                    snapshot_index
                ),
            }));
        }
        let from = first.max(snapshot_index + 1);
        if from <= last {
            let window = config.max_log_window_bytes.min(STARTUP_WINDOW_BYTES) as u64;
            load_log(logs, from..last + 1, window, &mut init).await?;
        }
    }
    init.commit = load_commit(stable, snapshot_index, last.max(snapshot_index)).await?;
    Ok(init)
}

/// The most payload bytes of the log's newest entries a node loads at
/// start (less if [`Config::max_log_window_bytes`] is smaller). Startup
/// needs no payloads but the configuration entries: committed entries are
/// applied from the store in bounded batches and a lagging follower is
/// served by reads of the store, so the window starts small and grows to
/// its full budget as the node writes. This keeps a restart's memory (and
/// time) independent of the window's size.
const STARTUP_WINDOW_BYTES: usize = 4 << 20;

/// The most payload bytes startup asks the log store for in one read.
const READ_BATCH_BYTES: u64 = 4 << 20;

/// The error for a log store whose answers contradict each other.
fn inconsistent(reason: String) -> Error {
    tracing::error!(%reason, "the log store is inconsistent");
    Error::Storage(StorageError::Corrupt { path: "log store".into(), offset: 0, reason })
}

/// Loads the log `range` (after the snapshot, non-empty) into `init`
/// without reading it all: the metadata of every entry, the payloads of the
/// newest entries up to `window` bytes (`init.entries`: what the core keeps
/// in its window), and the configuration entries before those
/// (`init.configurations`); the metadata of those before the window goes
/// to `init.entry_meta`, their payloads stay in the store.
async fn load_log(
    logs: &dyn LogStore,
    range: Range<u64>,
    window: u64,
    init: &mut InitialState,
) -> Result<(), Error> {
    let mut metas = logs.entry_meta(range.clone()).await?;
    let contiguous = metas.len() as u64 == range.end - range.start
        && metas.iter().zip(range.clone()).all(|(m, index)| m.index == index);
    if !contiguous {
        return Err(inconsistent(format!(
            "entry_meta({}..{}) returned {} entries, not the contiguous log the store's bounds promise",
            range.start,
            range.end,
            metas.len()
        )));
    }
    // The newest entries that fit in the window, each counted like the
    // core counts its window: its data plus `ENTRY_OVERHEAD`.
    let mut split = metas.len();
    let mut bytes = 0u64;
    while split > 0 {
        let size = metas[split - 1].size.saturating_add(ENTRY_OVERHEAD as u64);
        if bytes.saturating_add(size) > window {
            break;
        }
        bytes += size;
        split -= 1;
    }
    let split_index = range.start + split as u64;
    if split_index < range.end {
        // Read in batches of at most `READ_BATCH_BYTES`: a store may hand
        // out entries that share one buffer per read, which then lives until
        // the core has dropped every entry of it from its window.
        let mut entries = Vec::with_capacity(metas.len() - split);
        for batch in byte_batches(&metas[split..], READ_BATCH_BYTES) {
            entries.extend(logs.get_logs(batch).await?);
        }
        let matches = entries.len() == metas.len() - split
            && entries.iter().zip(&metas[split..]).all(|(e, m)| LogEntryMeta::of(e) == *m);
        if !matches {
            return Err(inconsistent(format!(
                "the entries {split_index}..{} read back do not match their metadata",
                range.end
            )));
        }
        init.entries = entries;
    }
    for meta in metas[..split].iter().filter(|m| m.log_type == LogType::Configuration) {
        match logs.get_log(meta.index).await? {
            Some(entry) if LogEntryMeta::of(&entry) == *meta => init.configurations.push(entry),
            Some(entry) => {
                return Err(inconsistent(format!(
                    "configuration entry {} read back as {:?}, its metadata says {meta:?}",
                    meta.index,
                    LogEntryMeta::of(&entry)
                )))
            }
            None => return Err(Error::Storage(StorageError::LogNotFound(meta.index))),
        }
    }
    metas.truncate(split);
    if metas.capacity() > 2 * metas.len() {
        metas.shrink_to_fit();
    }
    tracing::info!(
        first = range.start,
        last = range.end - 1,
        in_memory_from = split_index,
        in_memory_bytes = bytes,
        configurations = init.configurations.len(),
        "loaded the log's metadata; payloads outside the window stay in the log store"
    );
    init.entry_meta = metas;
    Ok(())
}

/// The commit index the node recorded ([`COMMIT_KEY`]), clamped to `last`
/// (the last index of the log, or the snapshot's if later). A recorded
/// value below the snapshot is superseded by it and ignored (0); a
/// malformed value is ignored with a warning (the node then learns its
/// commit index from a leader, as without the record).
async fn load_commit(stable: &dyn StableStore, snapshot_index: u64, last: u64) -> Result<u64, Error> {
    let recorded = match stable.get_u64(COMMIT_KEY).await {
        Ok(Some(commit)) => commit,
        Ok(None) => return Ok(0),
        Err(StorageError::Codec(why)) => {
            tracing::warn!(%why, "ignoring the recorded commit index: malformed; waiting for a leader's instead");
            return Ok(0);
        }
        Err(e) => return Err(e.into()),
    };
    if recorded > last {
        tracing::warn!(
            recorded,
            last,
            "the recorded commit index is past the end of the log; using the log's end"
        );
        return Ok(last);
    }
    if recorded < snapshot_index {
        tracing::debug!(
            recorded,
            snapshot_index,
            "the recorded commit index is older than the snapshot; ignored"
        );
        return Ok(0);
    }
    Ok(recorded)
}

#[cfg(test)]
#[path = "startup_tests.rs"]
mod tests;
