//! The metric handles of the node's log writer (driven by the main task)
//! and of its other tasks (FSM, snapshot and peer tasks), each created once
//! when the node or the task starts, and the trace events they emit.

use std::time::Duration;

use ::metrics::{counter, histogram, Counter, Histogram};

use super::names::*;
use super::stages::WriteStamp;
use crate::core::Body;
use crate::types::ServerId;

/// The log writer's handles.
pub(crate) struct WriterTelemetry {
    /// The local server id (trace field).
    pub(crate) node: String,
    /// [`FSYNC`].
    fsync: Histogram,
    /// [`ENTRIES_APPENDED`].
    appended: Counter,
}

impl WriterTelemetry {
    /// The handles of node `id`.
    pub(crate) fn new(id: &ServerId) -> Self {
        let node = id.to_string();
        Self {
            fsync: histogram!(FSYNC, NODE => node.clone()),
            appended: counter!(ENTRIES_APPENDED, NODE => node.clone()),
            node,
        }
    }

    /// A write job carrying `entries` entries (`first..=last`) was made
    /// durable in `took`.
    pub(crate) fn wrote(&self, entries: usize, first: u64, last: u64, took: Duration) {
        if entries == 0 {
            return;
        }
        self.fsync.record(took);
        self.appended.increment(entries as u64);
        tracing::debug!(node = %self.node, first, last, entries, took_us = took.as_micros() as u64, "persisted");
    }
}

/// The FSM task's handles.
pub(crate) struct ApplyTelemetry {
    /// The local server id (trace field).
    node: String,
    /// [`WRITE_STAGE`] `stage="apply"`.
    apply_stage: Histogram,
    /// [`WRITE`].
    total: Histogram,
    /// [`SNAPSHOT_DURATION`] `kind="restore"`.
    restore_duration: Histogram,
    /// [`SNAPSHOT_SIZE`] `kind="restore"`.
    restore_size: Histogram,
}

impl ApplyTelemetry {
    /// The handles of node `id`.
    pub(crate) fn new(id: &ServerId) -> Self {
        let node = id.to_string();
        Self {
            apply_stage: histogram!(WRITE_STAGE, NODE => node.clone(), STAGE_LABEL => "apply"),
            total: histogram!(WRITE, NODE => node.clone()),
            restore_duration: histogram!(SNAPSHOT_DURATION, NODE => node.clone(), KIND => "restore"),
            restore_size: histogram!(SNAPSHOT_SIZE, NODE => node.clone(), KIND => "restore"),
            node,
        }
    }

    /// Entries `lo..=hi` were applied; `stamp`: when the client writes
    /// among them were proposed and committed.
    pub(crate) fn applied(&self, lo: u64, hi: u64, stamp: Option<WriteStamp>) {
        if let Some(stamp) = stamp {
            let now = tokio::time::Instant::now();
            self.apply_stage.record(now.saturating_duration_since(stamp.committed));
            self.total.record(now.saturating_duration_since(stamp.proposed));
        }
        tracing::debug!(node = %self.node, lo, hi, "applied");
    }

    /// The FSM was restored from a stored snapshot of `size` bytes in `took`.
    pub(crate) fn restored(&self, took: Duration, size: u64) {
        self.restore_duration.record(took);
        self.restore_size.record(size as f64);
    }
}

/// The snapshot task's handles.
pub(crate) struct SnapshotTelemetry {
    /// [`SNAPSHOTS_TAKEN`].
    taken: Counter,
    /// [`SNAPSHOT_DURATION`] `kind="take"`.
    duration: Histogram,
    /// [`SNAPSHOT_SIZE`] `kind="take"`.
    size: Histogram,
}

impl SnapshotTelemetry {
    /// The handles of node `id`.
    pub(crate) fn new(id: &ServerId) -> Self {
        let node = id.to_string();
        Self {
            taken: counter!(SNAPSHOTS_TAKEN, NODE => node.clone()),
            duration: histogram!(SNAPSHOT_DURATION, NODE => node.clone(), KIND => "take"),
            size: histogram!(SNAPSHOT_SIZE, NODE => node, KIND => "take"),
        }
    }

    /// A snapshot of `size` bytes was captured and stored in `took`.
    pub(crate) fn taken(&self, took: Duration, size: u64) {
        self.taken.increment(1);
        self.duration.record(took);
        self.size.record(size as f64);
    }
}

/// The handles for a snapshot received from a leader (cloned into the task
/// receiving it).
#[derive(Clone)]
pub(crate) struct InstallTelemetry {
    /// [`SNAPSHOT_DURATION`] `kind="install"`.
    duration: Histogram,
    /// [`SNAPSHOT_SIZE`] `kind="install"`.
    size: Histogram,
}

impl InstallTelemetry {
    /// The handles of node `node`.
    pub(crate) fn new(node: &str) -> Self {
        Self {
            duration: histogram!(SNAPSHOT_DURATION, NODE => node.to_owned(), KIND => "install"),
            size: histogram!(SNAPSHOT_SIZE, NODE => node.to_owned(), KIND => "install"),
        }
    }

    /// A leader's snapshot of `size` bytes was received, stored and
    /// verified in `took`.
    pub(crate) fn received(&self, took: Duration, size: u64) {
        self.duration.record(took);
        self.size.record(size as f64);
    }
}

/// A peer task's handles (labels `node` and `peer`).
pub(crate) struct PeerTelemetry {
    /// [`APPEND_ENTRIES_SENT`].
    sent: Counter,
    /// [`APPEND_ENTRIES_SENT_BYTES`].
    sent_bytes: Counter,
    /// [`HEARTBEATS_SENT`].
    heartbeats: Counter,
    /// [`APPEND_ENTRIES_BATCH_ENTRIES`].
    batch_entries: Histogram,
    /// [`APPEND_ENTRIES_BATCH_BYTES`].
    batch_bytes: Histogram,
}

impl PeerTelemetry {
    /// The handles of node `local` sending to `peer`.
    pub(crate) fn new(local: &ServerId, peer: &ServerId) -> Self {
        let (node, peer) = (local.to_string(), peer.to_string());
        Self {
            sent: counter!(APPEND_ENTRIES_SENT, NODE => node.clone(), PEER => peer.clone()),
            sent_bytes: counter!(APPEND_ENTRIES_SENT_BYTES, NODE => node.clone(), PEER => peer.clone()),
            heartbeats: counter!(HEARTBEATS_SENT, NODE => node.clone(), PEER => peer.clone()),
            batch_entries: histogram!(APPEND_ENTRIES_BATCH_ENTRIES, NODE => node.clone(), PEER => peer.clone()),
            batch_bytes: histogram!(APPEND_ENTRIES_BATCH_BYTES, NODE => node, PEER => peer),
        }
    }

    /// A request is about to be sent to the peer.
    pub(crate) fn sending(&self, body: &Body) {
        let Body::AppendEntries(req) = body else { return };
        if req.entries.is_empty() {
            self.heartbeats.increment(1);
            return;
        }
        let bytes: u64 = req.entries.iter().map(|e| e.data.len() as u64).sum();
        self.sent.increment(1);
        self.sent_bytes.increment(bytes);
        self.batch_entries.record(req.entries.len() as f64);
        self.batch_bytes.record(bytes as f64);
    }
}
