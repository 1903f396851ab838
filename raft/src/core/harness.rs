//! Executing a [`Ready`] against in-memory durable state: the one driver
//! shared by the core's scenario tests ([`scenario`](super::scenario)) and the
//! core simulation (`testing::sim`). Built for tests and the `testing`
//! feature only.
//!
//! - [`execute`] runs one `Ready` in the order the [core](super) documents,
//!   calling a [`ReadyHost`] for each output: reports, messages, the
//!   snapshot install that `install_snapshot` or `restore_snapshot` returned
//!   just before (its log deletion becomes part of the write), the durable
//!   [`DurableWrite`], snapshots to stream, reads of the log store for
//!   followers ([`Ready::fetches`]), committed entries (those read from the
//!   store first, [`Ready::apply_from_store`]), reads, then declined
//!   requests and the end of a leadership transfer.
//! - [`MemLog`] is a durable log in memory (term, vote, entries after a
//!   compaction point) that applies a `DurableWrite` the way a log store
//!   must, refusing writes that would corrupt it.
//! - [`DurableWrite::completed`] is the other half of step 3: once a write is
//!   durable, the core learns which entries are, and the messages that
//!   waited for it may go out.
//!
//! The async runtime executes `Ready` against real stores with its own
//! batching and tasks and does not use this module.

use super::{Core, InstalledSnapshot, LogFetch, LogReset, Message, ReadState, Ready, Refusal};
use crate::types::{HardState, Log, ServerId};

/// Deletes stored entries a snapshot covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Compaction {
    /// Delete entries up to and including this index.
    pub(crate) through: u64,
    /// Term of the entry at `through`.
    pub(crate) term: u64,
    /// Delete the whole log, also after `through` (a snapshot install whose
    /// snapshot conflicts with the log).
    pub(crate) discard_all: bool,
}

impl Compaction {
    /// The log deletion an installed snapshot asks for.
    pub(crate) fn of_install(snapshot: &InstalledSnapshot) -> Self {
        Self {
            through: snapshot.position.index,
            term: snapshot.position.term,
            discard_all: snapshot.discard_log,
        }
    }
}

/// The durable part of one `Ready`, in the order it is written: term and
/// vote, a compaction, a truncation, new entries; `persisted_messages` go
/// out only once all of it is durable.
#[derive(Debug, Default)]
pub(crate) struct DurableWrite {
    /// New term and vote.
    pub(crate) hard_state: Option<HardState>,
    /// Applied before `truncate_from` and `entries`.
    pub(crate) compact: Option<Compaction>,
    /// Delete every entry with index >= this, before appending.
    pub(crate) truncate_from: Option<u64>,
    /// Entries to append.
    pub(crate) entries: Vec<Log>,
    /// Sent once the write is durable.
    pub(crate) persisted_messages: Vec<Message>,
}

impl DurableWrite {
    /// Whether there is nothing to write and nothing waiting for it.
    pub(crate) fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.compact.is_none()
            && self.truncate_from.is_none()
            && self.entries.is_empty()
            && self.persisted_messages.is_empty()
    }

    /// Step 3, once the write is durable: tells `core` (if it still runs)
    /// up to which entry its log is durable, and returns the messages that
    /// waited for the write.
    pub(crate) fn completed(self, core: Option<&mut Core>) -> Vec<Message> {
        if let (Some(core), Some(last)) = (core, self.entries.last()) {
            core.persisted(last.index, last.term);
        }
        self.persisted_messages
    }
}

/// A durable log in memory: term and vote, and the entries after a
/// compaction point.
#[derive(Clone, Debug, Default)]
pub(crate) struct MemLog {
    /// Durable term and vote.
    pub(crate) hard: HardState,
    /// Index of the last deleted (compacted) entry: `log` starts right
    /// after it.
    pub(crate) log_start: u64,
    /// Term of the entry at `log_start` (0 if none).
    pub(crate) log_start_term: u64,
    /// Durable entries, contiguous from `log_start + 1`.
    pub(crate) log: Vec<Log>,
}

impl MemLog {
    /// Last index the log holds (its compaction point if it is empty).
    pub(crate) fn last_index(&self) -> u64 {
        self.log_start + self.log.len() as u64
    }

    /// Term of the entry at `index` as the log holds it (including the
    /// compaction point).
    pub(crate) fn log_term(&self, index: u64) -> Option<u64> {
        if index == self.log_start {
            return Some(self.log_start_term);
        }
        if index < self.log_start {
            return None;
        }
        self.log.get((index - self.log_start - 1) as usize).map(|e| e.term)
    }

    /// The durable entry at `index`, if the log holds it.
    pub(crate) fn entry(&self, index: u64) -> Option<&Log> {
        if index <= self.log_start {
            return None;
        }
        self.log.get((index - self.log_start - 1) as usize)
    }

    /// Reads the durable entries `lo..=hi`, as a log store does for
    /// [`Ready::fetches`] and [`Ready::apply_from_store`]: every one of them
    /// must be there.
    pub(crate) fn read(&self, lo: u64, hi: u64) -> Result<Vec<Log>, String> {
        if lo <= self.log_start || hi > self.last_index() || lo > hi {
            return Err(format!(
                "entries {lo}..={hi} are not in the log (it holds {}..={})",
                self.log_start + 1,
                self.last_index()
            ));
        }
        Ok(self.log[(lo - self.log_start - 1) as usize..(hi - self.log_start) as usize].to_vec())
    }

    /// Makes `write` durable. Errors describe writes that would corrupt the
    /// log: a term going back, a vote changing within a term, a hole, a
    /// decreasing term along the log.
    pub(crate) fn write(&mut self, write: &DurableWrite) -> Result<(), String> {
        if let Some(hs) = &write.hard_state {
            if hs.term < self.hard.term {
                return Err(format!("durable term goes back from {} to {}", self.hard.term, hs.term));
            }
            if hs.term == self.hard.term && self.hard.vote.is_some() && hs.vote != self.hard.vote {
                return Err(format!(
                    "durable vote in term {} changes from {:?} to {:?}",
                    hs.term, self.hard.vote, hs.vote
                ));
            }
            self.hard = hs.clone();
        }
        if let Some(c) = write.compact {
            if c.discard_all || c.through >= self.last_index() {
                self.log.clear();
            } else if c.through > self.log_start {
                self.log.drain(..(c.through - self.log_start) as usize);
            }
            if c.discard_all || c.through > self.log_start {
                self.log_start = c.through;
                self.log_start_term = c.term;
            }
        }
        if let Some(from) = write.truncate_from {
            let keep = from.saturating_sub(1).saturating_sub(self.log_start) as usize;
            self.log.truncate(keep.min(self.log.len()));
        }
        for e in &write.entries {
            let expected = self.last_index() + 1;
            if e.index != expected {
                return Err(format!("write leaves a hole: expected index {expected}, got {}", e.index));
            }
            if e.term < self.log.last().map_or(self.log_start_term, |l| l.term) {
                return Err(format!("durable log term decreases at index {}", e.index));
            }
            self.log.push(e.clone());
        }
        Ok(())
    }
}

/// What a driver does with each output of a `Ready`. [`execute`] calls these
/// in the documented order; each host decides what "send", "write" and
/// "apply" mean for it (an in-memory cluster, a simulated network and disk).
pub(crate) trait ReadyHost {
    /// Why the host stops executing.
    type Error;

    /// A follower's log turned out to lack entries it had acknowledged
    /// (a report; nothing to execute).
    fn log_reset(&mut self, reset: LogReset) -> Result<(), Self::Error>;

    /// Step 1: sends a message now.
    fn send(&mut self, msg: Message) -> Result<(), Self::Error>;

    /// Before the write: the core installed a snapshot (what
    /// `install_snapshot` or `restore_snapshot` returned); restore the state
    /// machine from it. The log deletion it needs is written first in the
    /// same [`DurableWrite`].
    fn install(&mut self, snapshot: InstalledSnapshot) -> Result<(), Self::Error>;

    /// Step 2: queues the durable write; once it is durable the host calls
    /// [`DurableWrite::completed`] and sends what that returns (step 3).
    fn write(&mut self, write: DurableWrite) -> Result<(), Self::Error>;

    /// Followers that need a snapshot streamed to them.
    fn send_snapshots(&mut self, to: Vec<ServerId>) -> Result<(), Self::Error>;

    /// (Leader) reads `fetch.lo..=fetch.hi` from the durable log for a
    /// follower, then (at once or later) hands the outcome to
    /// [`Core::entries_fetched`].
    fn fetch(&mut self, fetch: LogFetch) -> Result<(), Self::Error>;

    /// Step 4, first: reads the committed entries `lo..=hi` from the
    /// durable log and applies them in order (they left the core's window).
    fn apply_from_store(&mut self, lo: u64, hi: u64) -> Result<(), Self::Error>;

    /// Step 4: applies one committed entry to the state machine.
    fn apply(&mut self, entry: Log) -> Result<(), Self::Error>;

    /// After this `Ready`'s committed entries were applied.
    fn applied(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// A read confirmed by a quorum (serve it once `applied >= index`).
    fn read(&mut self, read: ReadState) -> Result<(), Self::Error>;

    /// A read that failed.
    fn read_failed(&mut self, id: u64, why: Refusal) -> Result<(), Self::Error>;

    /// A leadership transfer gave up.
    fn transfer_aborted(&mut self) -> Result<(), Self::Error>;

    /// A leadership transfer ended with this node no longer leading.
    fn transfer_completed(&mut self) -> Result<(), Self::Error>;

    /// The core declined to answer the inbound request `rpc_id` (see
    /// [`Ready::declined`]): its sender gets no answer.
    fn declined(&mut self, rpc_id: u64) -> Result<(), Self::Error>;
}

/// Executes one `Ready` on `host` in the documented order; `installed` is
/// the snapshot install the core returned since the previous `Ready` (if
/// any), executed ahead of this `Ready`'s writes.
pub(crate) fn execute<H: ReadyHost>(
    ready: Ready,
    installed: Option<InstalledSnapshot>,
    host: &mut H,
) -> Result<(), H::Error> {
    for reset in ready.log_resets {
        host.log_reset(reset)?;
    }
    for m in ready.messages {
        host.send(m)?;
    }
    let compact = installed.as_ref().map(Compaction::of_install);
    if let Some(snapshot) = installed {
        host.install(snapshot)?;
    }
    let write = DurableWrite {
        hard_state: ready.hard_state,
        compact,
        truncate_from: ready.truncate_from,
        entries: ready.entries,
        persisted_messages: ready.persisted_messages,
    };
    if !write.is_empty() {
        host.write(write)?;
    }
    if !ready.snapshots_to_send.is_empty() {
        host.send_snapshots(ready.snapshots_to_send)?;
    }
    for fetch in ready.fetches {
        host.fetch(fetch)?;
    }
    if let Some((lo, hi)) = ready.apply_from_store {
        host.apply_from_store(lo, hi)?;
    }
    for e in ready.committed {
        host.apply(e)?;
    }
    host.applied()?;
    for r in ready.reads {
        host.read(r)?;
    }
    for (id, why) in ready.failed_reads {
        host.read_failed(id, why)?;
    }
    if ready.transfer_aborted {
        host.transfer_aborted()?;
    }
    if ready.transfer_completed {
        host.transfer_completed()?;
    }
    for rpc_id in ready.declined {
        host.declined(rpc_id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::LogType;

    fn e(i: u64, t: u64) -> Log {
        Log::new(i, t, LogType::Command, "")
    }

    fn entries(es: Vec<Log>) -> DurableWrite {
        DurableWrite { entries: es, ..DurableWrite::default() }
    }

    #[test]
    fn a_write_truncates_before_it_appends() {
        let mut m = MemLog::default();
        m.write(&entries(vec![e(1, 1), e(2, 1), e(3, 1)])).expect("contiguous");
        let w = DurableWrite { truncate_from: Some(2), entries: vec![e(2, 2)], ..DurableWrite::default() };
        m.write(&w).expect("truncated first");
        assert_eq!((m.last_index(), m.log_term(2), m.log_term(3)), (2, Some(2), None));
    }

    #[test]
    fn corrupting_writes_are_refused() {
        let mut m = MemLog::default();
        assert!(m.write(&entries(vec![e(2, 1)])).is_err(), "a hole");
        m.write(&entries(vec![e(1, 2)])).expect("first entry");
        assert!(m.write(&entries(vec![e(2, 1)])).is_err(), "a decreasing term");
        let vote = |term: u64, vote: &str| DurableWrite {
            hard_state: Some(HardState { term, vote: Some(vote.into()) }),
            ..DurableWrite::default()
        };
        m.write(&vote(3, "n1")).expect("a vote");
        assert!(m.write(&vote(3, "n2")).is_err(), "a second vote in a term");
        assert!(m.write(&vote(2, "n2")).is_err(), "a term going back");
    }

    #[test]
    fn reads_return_durable_entries_or_say_what_is_missing() {
        let mut m = MemLog::default();
        m.write(&entries(vec![e(1, 1), e(2, 1), e(3, 2)])).expect("contiguous");
        assert_eq!(m.read(2, 3).expect("held"), vec![e(2, 1), e(3, 2)]);
        assert_eq!(m.entry(3), Some(&e(3, 2)));
        assert!(m.read(3, 4).is_err(), "past the end");
        assert!(m.read(0, 1).is_err(), "index 0 is never an entry");
        let compact = DurableWrite {
            compact: Some(Compaction { through: 1, term: 1, discard_all: false }),
            ..DurableWrite::default()
        };
        m.write(&compact).expect("compacts");
        assert!(m.read(1, 2).is_err() && m.entry(1).is_none(), "compacted");
    }

    #[test]
    fn a_compaction_keeps_the_log_contiguous() {
        let mut m = MemLog::default();
        m.write(&entries(vec![e(1, 1), e(2, 1), e(3, 2)])).expect("contiguous");
        let compact = |through: u64, term: u64, discard_all: bool| DurableWrite {
            compact: Some(Compaction { through, term, discard_all }),
            ..DurableWrite::default()
        };
        m.write(&compact(2, 1, false)).expect("compacts");
        assert_eq!((m.log_start, m.last_index(), m.log_term(2), m.log_term(1)), (2, 3, Some(1), None));
        m.write(&compact(7, 4, true)).expect("a conflicting snapshot replaces the log");
        assert_eq!((m.log_start, m.last_index(), m.log_term(7)), (7, 7, Some(4)));
        m.write(&entries(vec![e(8, 4)])).expect("appends after the snapshot");
    }
}
