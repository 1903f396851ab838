//! The types that cross the core's boundary: the messages it steps and
//! sends, the [`Ready`] work it hands its driver, what it reports about
//! installs, reads and followers, and the [`InitialState`] it restarts from.

use crate::message::{
    AppendEntriesRequest, AppendEntriesResponse, RequestPreVoteRequest, RequestPreVoteResponse,
    RequestVoteRequest, RequestVoteResponse, TimeoutNowRequest, TimeoutNowResponse,
};
use crate::types::{HardState, Log, LogEntryMeta, ServerId, SnapshotPosition};

#[cfg(doc)]
use super::Core;
use super::Refusal;

/// A message between two cores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Sender.
    pub from: ServerId,
    /// Recipient.
    pub to: ServerId,
    /// For responses: the driver's token of the request being answered
    /// (copied from the request). 0 for requests the core originates.
    pub rpc_id: u64,
    /// The payload.
    pub body: Body,
}

/// The payload of a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Body {
    AppendEntries(AppendEntriesRequest),
    AppendEntriesResponse(AppendEntriesResponse),
    RequestVote(RequestVoteRequest),
    RequestVoteResponse(RequestVoteResponse),
    RequestPreVote(RequestPreVoteRequest),
    RequestPreVoteResponse(RequestPreVoteResponse),
    TimeoutNow(TimeoutNowRequest),
    TimeoutNowResponse(TimeoutNowResponse),
}

impl Body {
    /// Whether this is a request (which the receiver answers or declines),
    /// not a response.
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            Body::AppendEntries(_) | Body::RequestVote(_) | Body::RequestPreVote(_) | Body::TimeoutNow(_)
        )
    }

    /// The term the message carries.
    pub fn term(&self) -> u64 {
        match self {
            Body::AppendEntries(m) => m.term,
            Body::AppendEntriesResponse(m) => m.term,
            Body::RequestVote(m) => m.term,
            Body::RequestVoteResponse(m) => m.term,
            Body::RequestPreVote(m) => m.term,
            Body::RequestPreVoteResponse(m) => m.term,
            Body::TimeoutNow(m) => m.term,
            Body::TimeoutNowResponse(m) => m.term,
        }
    }
}

/// What a leader knows about one follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    /// The follower.
    pub id: ServerId,
    /// Highest index known replicated there.
    pub matched: u64,
    /// Next index to send.
    pub next: u64,
    /// Ticks since the follower last answered.
    pub ticks_since_contact: u64,
}

/// A read confirmed by a quorum: safe to serve once `applied >= index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The driver's token for the read.
    pub id: u64,
    /// The read index.
    pub index: u64,
}

/// Work for the driver, produced by the core. See the module docs for the
/// order of execution.
#[derive(Debug, Default)]
pub struct Ready {
    /// Messages to send now.
    pub messages: Vec<Message>,
    /// New term/vote to make durable before `persisted_messages` go out.
    pub hard_state: Option<HardState>,
    /// Delete every stored entry with index >= this, before appending.
    pub truncate_from: Option<u64>,
    /// Entries to append durably.
    pub entries: Vec<Log>,
    /// Messages to send once the above is durable.
    pub persisted_messages: Vec<Message>,
    /// Committed entries to apply, in order.
    pub committed: Vec<Log>,
    /// Reads confirmed by a quorum.
    pub reads: Vec<ReadState>,
    /// Reads that failed.
    pub failed_reads: Vec<(u64, Refusal)>,
    /// A leadership transfer gave up (target did not take over in time).
    pub transfer_aborted: bool,
    /// A leadership transfer ended with this node no longer leading (the
    /// target, or another node, took over).
    pub transfer_completed: bool,
    /// Inbound requests (by `rpc_id`) the core declined to answer, e.g. an
    /// AppendEntries from a second leader of our term, or any request once
    /// this node is removed: the driver tells each sender that its request
    /// was ignored. Every other inbound request is answered by a message
    /// carrying its `rpc_id`.
    pub declined: Vec<u64>,
    /// Followers that need a snapshot: stream the newest one to each and
    /// report with [`Core::snapshot_sent`].
    pub snapshots_to_send: Vec<ServerId>,
    /// (Leader) entries a follower needs that the core no longer holds in
    /// memory: read each range from the log store (off the main task) and
    /// hand the entries back with `Core::entries_fetched`.
    pub fetches: Vec<LogFetch>,
    /// Committed entries to apply that the core no longer holds in memory:
    /// read `lo..=hi` from the log store and apply them, in order, before
    /// `committed` (which then starts at `hi + 1`).
    pub apply_from_store: Option<(u64, u64)>,
    /// (Leader) followers whose logs turned out not to hold entries they had
    /// acknowledged: their progress was reset and they are being
    /// re-replicated. For observers and metrics; nothing to execute.
    pub log_resets: Vec<LogReset>,
}

/// A read of stored entries for a follower (see [`Ready::fetches`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFetch {
    /// The follower the entries are for.
    pub peer: ServerId,
    /// First index to read.
    pub lo: u64,
    /// Last index to read (inclusive).
    pub hi: u64,
}

/// A follower whose log lost entries it had acknowledged (see
/// [`Ready::log_resets`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogReset {
    /// The follower.
    pub peer: ServerId,
    /// The index it had acknowledged (its match index before the reset).
    pub matched: u64,
    /// Its last log index, as its rejection reported it.
    pub last_log_index: u64,
}

/// Instructions after [`Core::install_snapshot`] accepted a snapshot or
/// [`Core::restore_snapshot`] restored one. Before executing the next
/// [`Ready`], the driver deletes the stored log as instructed and restores
/// the state machine from the snapshot (nothing after it is applied
/// before).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledSnapshot {
    /// What the snapshot covers, as the log now starts after it.
    pub position: SnapshotPosition,
    /// Delete the whole stored log (it conflicted with or ended before the
    /// snapshot); otherwise delete only entries up to `position.index`.
    pub discard_log: bool,
}

impl Ready {
    /// Whether there is anything to do.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.hard_state.is_none()
            && self.truncate_from.is_none()
            && self.entries.is_empty()
            && self.persisted_messages.is_empty()
            && self.committed.is_empty()
            && self.reads.is_empty()
            && self.failed_reads.is_empty()
            && !self.transfer_aborted
            && !self.transfer_completed
            && self.declined.is_empty()
            && self.snapshots_to_send.is_empty()
            && self.fetches.is_empty()
            && self.apply_from_store.is_none()
            && self.log_resets.is_empty()
    }

    /// Whether the durable part (`hard_state`, `truncate_from`, `entries`,
    /// `persisted_messages`) is non-empty.
    pub fn needs_persist(&self) -> bool {
        self.hard_state.is_some()
            || self.truncate_from.is_some()
            || !self.entries.is_empty()
            || !self.persisted_messages.is_empty()
    }
}

/// The durable state a core restarts from.
#[derive(Clone, Debug, Default)]
pub struct InitialState {
    /// Term and vote.
    pub hard_state: HardState,
    /// The last compacted entry and the configuration as of it (`None`:
    /// nothing compacted).
    pub snapshot: Option<SnapshotPosition>,
    /// Log entries after the snapshot, contiguous, with their payloads:
    /// the whole log, or (with `entry_meta`) its newest part.
    pub entries: Vec<Log>,
    /// The shape of the entries between the snapshot and `entries`, whose
    /// payloads stay in the log store (contiguous, ending just before
    /// `entries[0]`, or at the log's end if `entries` is empty). Empty when
    /// `entries` holds the whole log. Configuration entries among them are
    /// also passed, with payloads, in `configurations`.
    pub entry_meta: Vec<LogEntryMeta>,
    /// The configuration entries among `entry_meta`, with their payloads.
    pub configurations: Vec<Log>,
    /// The highest index this node had recorded as committed (0: none).
    /// Never above the last log index it names.
    pub commit: u64,
    /// Index up to which the state machine has already applied entries.
    pub applied: u64,
    /// The node recorded earlier that it was removed from the cluster: it
    /// starts in the terminal removed state.
    pub removed: bool,
}

impl InitialState {
    /// Index of the last compacted entry (0 if none).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.index)
    }

    /// Term of the last compacted entry (0 if none).
    pub fn snapshot_term(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.term)
    }
}

#[cfg(test)]
mod tests;
