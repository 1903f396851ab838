//! Client requests in the main task: each request from the handle is
//! answered here or passed to the part of the task that owns it, and
//! consecutive writes are folded into one proposal whose callers wait, by
//! log index, until their entries are applied (or known lost).

use super::*;

/// Most client requests folded into one proposal.
pub(super) const MAX_PROPOSAL_BATCH: usize = 4096;

/// The main task's client requests and the writes waiting on them.
pub(super) struct Clients<R> {
    /// Requests from the handle.
    pub(super) requests: mpsc::Receiver<Request<R>>,
    /// Proposals waiting to be applied, by index.
    pub(super) waiters: BTreeMap<u64, Pending<R>>,
    /// The earliest deadline among `waiters` and promotions (or earlier: it
    /// is only recomputed when it passes).
    pub(super) next_deadline: Option<tokio::time::Instant>,
    /// The caller of a leadership transfer under way.
    pub(super) transfer: Option<oneshot::Sender<Result<(), Error>>>,
    /// A user restore is storing its snapshot; client requests wait.
    pub(super) restoring: bool,
}

/// A proposal waiting to be applied.
pub(super) struct Pending<R> {
    /// The term it was proposed in: another term's entry at its index means
    /// it was lost.
    pub(super) term: u64,
    /// Who is answered once it is applied.
    pub(super) waiter: Waiter<R>,
    /// When its caller stops waiting (`None`: never).
    pub(super) deadline: Option<tokio::time::Instant>,
}

impl<R> Pending<R> {
    pub(super) fn new(term: u64, waiter: Waiter<R>) -> Self {
        Self { term, waiter, deadline: None }
    }
}

/// One client write folded into a proposal.
pub(super) struct Proposed<R> {
    /// The kind of entry.
    pub(super) log_type: LogType,
    /// Its payload, moved into the log.
    pub(super) data: bytes::Bytes,
    /// Who is answered once it is applied.
    pub(super) waiter: Waiter<R>,
    /// When its caller stops waiting (`None`: never).
    pub(super) deadline: Option<tokio::time::Instant>,
}

impl<R> Clients<R> {
    pub(super) fn new(requests: mpsc::Receiver<Request<R>>) -> Self {
        Self { requests, waiters: BTreeMap::new(), next_deadline: None, transfer: None, restoring: false }
    }

    /// Fails with [`Error::LeadershipLost`] every write waiting at an index
    /// above `index`: its entry is not committed and may be replaced.
    pub(super) fn fail_after(&mut self, index: u64) {
        let Some(first) = index.checked_add(1) else { return };
        for (_, p) in self.waiters.split_off(&first) {
            p.waiter.fail(Error::LeadershipLost);
        }
    }

    /// Fails with [`Error::LeadershipLost`] every write waiting at `index`
    /// or below: a snapshot replaced those entries, so their outcome is
    /// unknown to whoever proposed them.
    pub(super) fn fail_through(&mut self, index: u64) {
        let rest = match index.checked_add(1) {
            Some(first) => self.waiters.split_off(&first),
            None => BTreeMap::new(),
        };
        for (_, p) in std::mem::replace(&mut self.waiters, rest) {
            p.waiter.fail(Error::LeadershipLost);
        }
    }
}

impl<R: Send + 'static> Node<R> {
    /// Whether other callers are likely to send requests right now: some
    /// of this node's writes or reads are under way, so their callers are
    /// answered in batches and come back together.
    ///
    /// The main task woken by a request then yields once before it drains
    /// its queue. Tokio runs a task woken from a worker right after the
    /// task that woke it: without the yield, the main task would run after
    /// the first caller of a batch and propose its one write, then again
    /// after the next caller, and so on. On a quiet machine other workers
    /// hide this, but when the CPU is shared (the process runs on fewer
    /// cores than it has workers) proposals shrink to a write or two and
    /// every write pays for a turn of the main loop. While it yields, the
    /// main task is not woken again by the queue (its receiver registered
    /// no waker): it comes back after the worker ran the other ready
    /// tasks, with their requests queued. A lone caller (nothing under
    /// way) is served without the detour.
    pub(super) fn more_requests_likely(&self) -> bool {
        !self.clients.waiters.is_empty() || self.reads.in_flight()
    }

    /// Handles one request plus any others already queued, folding
    /// consecutive writes into one proposal.
    pub(super) fn on_requests(&mut self, first: Request<R>) -> Flow {
        let _span = tracing::debug_span!("client_requests", term = self.core.term()).entered();
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(req) = next.take() {
            if self.core.is_removed() {
                self.propose(std::mem::take(&mut batch));
                if let Flow::Stop = self.refuse_removed(req) {
                    return Flow::Stop;
                }
                next = self.clients.requests.try_recv().ok();
                continue;
            }
            match req {
                Request::Apply { log_type, data, waiter, deadline } => {
                    batch.push(Proposed { log_type, data, waiter, deadline });
                    if batch.len() >= MAX_PROPOSAL_BATCH {
                        self.propose(std::mem::take(&mut batch));
                    }
                }
                other => {
                    self.propose(std::mem::take(&mut batch));
                    if let Flow::Stop = self.on_request(other) {
                        return Flow::Stop;
                    }
                }
            }
            if let Ok(req) = self.clients.requests.try_recv() {
                next = Some(req);
            }
        }
        self.propose(batch);
        Flow::Continue
    }

    /// Proposes a batch of writes as one proposal; their callers wait by
    /// index. Writes the core refuses for lack of room under the
    /// uncommitted-bytes limit are held (see [`room`](super::room)), and
    /// while any are held new writes queue behind them.
    fn propose(&mut self, mut batch: Vec<Proposed<R>>) {
        self.drop_expired(&mut batch);
        if batch.is_empty() {
            return;
        }
        if self.writes_held() {
            self.hold_behind(batch);
            return;
        }
        if let Err((batch, uncommitted, limit)) = self.propose_now(batch) {
            self.hold(batch, uncommitted, limit);
            // Part of the batch may fit at once.
            self.retry_held_now();
        }
    }

    /// Proposes `batch` now. Hands it back if the core refused it for lack
    /// of room ([`Refusal::UncommittedLimit`]); any other refusal fails
    /// its writes.
    #[allow(clippy::type_complexity)]
    pub(super) fn propose_now(
        &mut self,
        batch: Vec<Proposed<R>>,
    ) -> Result<(), (Vec<Proposed<R>>, usize, usize)> {
        // The payloads are shared with the log (a reference count, no
        // copy): a batch refused for lack of room is held as it is.
        let commands: Vec<(LogType, bytes::Bytes)> =
            batch.iter().map(|p| (p.log_type, p.data.clone())).collect();
        match self.core.propose(commands) {
            Ok(first) => {
                let term = self.core.term();
                self.telemetry.proposed(term, first, batch.len());
                for (index, p) in (first..).zip(batch) {
                    if let Some(at) = p.deadline {
                        self.track_deadline(at);
                    }
                    self.clients
                        .waiters
                        .insert(index, Pending { term, waiter: p.waiter, deadline: p.deadline });
                }
                Ok(())
            }
            Err(Refusal::UncommittedLimit { uncommitted, limit }) => Err((batch, uncommitted, limit)),
            Err(r) => {
                for p in batch {
                    p.waiter.fail(self.refusal(r.clone()));
                }
                Ok(())
            }
        }
    }

    /// Handles one request other than a batched write.
    pub(super) fn on_request(&mut self, req: Request<R>) -> Flow {
        match req {
            Request::Apply { log_type, data, waiter, deadline } => {
                self.propose(vec![Proposed { log_type, data, waiter, deadline }])
            }
            Request::ReadIndex { ticket } => self.start_read(ticket),
            Request::LeaseRead { ticket } => self.start_lease_read(ticket),
            Request::Bootstrap { configuration, tx } => {
                let result = match configuration.validate() {
                    Err(msg) => Err(Error::InvalidConfig(msg)),
                    Ok(()) => match self.core.bootstrap(configuration.clone()) {
                        Ok(_) => {
                            self.bootstrap_cluster_id(&configuration);
                            Ok(())
                        }
                        Err(_) => Err(Error::CantBootstrap),
                    },
                };
                let _ = tx.send(result);
            }
            Request::GetConfiguration { tx } => {
                let (c, i) = self.core.configuration();
                let _ = tx.send(Ok((c.clone(), i)));
            }
            Request::ChangeMembership { change, prev_index, deadline, tx } => {
                self.on_change_membership(change, prev_index, deadline, tx)
            }
            Request::ChangeMembershipJoint { changes, prev_index, deadline, tx } => {
                self.on_change_membership_joint(changes, prev_index, deadline, tx)
            }
            Request::Restore(restore) => self.on_restore(*restore),
            Request::Reload { config } => {
                let config = *config;
                tracing::info!(
                    max_log_window_bytes = config.max_log_window_bytes,
                    max_inflight_bytes = config.max_inflight_bytes,
                    max_uncommitted_bytes = config.max_uncommitted_bytes,
                    "configuration reloaded"
                );
                self.core.reconfigure(config.core_config_for_transport(self.transport.max_message_size()));
                let _ = self.snapshots.task.tx.send(SnapshotCmd::Reload {
                    interval: config.snapshot_interval,
                    threshold: config.snapshot_threshold,
                    log_limit: config.snapshot_log_limit,
                });
                self.config = config;
                self.reload_ticker = true;
                self.room_may_have_grown();
            }
            Request::TransferLeadership { target, tx } => {
                // An unknown target is `UnknownServer`, a non-voter
                // `NotAVoter` (both refused by the core).
                match self.core.transfer_leadership(target) {
                    Ok(_) => self.clients.transfer = Some(tx),
                    Err(r) => {
                        let _ = tx.send(Err(self.refusal(r)));
                    }
                }
            }
            Request::Snapshot { tx } => {
                if self.snapshots.task.tx.send(SnapshotCmd::Take(tx)).is_err() {
                    tracing::error!("snapshot task stopped");
                }
            }
            Request::Shutdown { tx } => {
                self.shutdown_ack.push(tx);
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// The target of a leadership transfer took over: its caller learns it
    /// succeeded.
    pub(super) fn transfer_completed(&mut self) {
        if let Some(tx) = self.clients.transfer.take() {
            let _ = tx.send(Ok(()));
        }
    }

    /// The core gave up a leadership transfer: its caller learns it failed.
    pub(super) fn transfer_aborted(&mut self) {
        if let Some(tx) = self.clients.transfer.take() {
            let msg = "the target did not take over within an election timeout";
            let _ = tx.send(Err(Error::LeadershipTransferFailed(msg.into())));
        }
    }

    /// Hands committed entries to the FSM task with the waiters of the
    /// writes among them.
    pub(super) fn dispatch_apply(&mut self, entries: Vec<crate::types::Log>) {
        let mut waiters = Vec::new();
        let mut stamp = None;
        if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
            let (lo, hi) = (first.index, last.index);
            stamp = self.telemetry.committed(self.core.term(), lo, hi);
            // Waiters are keyed by index, so the ones for this batch are the
            // smallest keys: pop them off the front, no lookups.
            while let Some(entry) = self.clients.waiters.first_entry() {
                let k = *entry.key();
                if k > hi {
                    break;
                }
                let Pending { term, waiter, .. } = entry.remove();
                let entry_term = k.checked_sub(lo).and_then(|i| entries.get(i as usize)).map(|e| e.term);
                if entry_term == Some(term) {
                    waiters.push((k, waiter));
                } else {
                    // Another leader's entry replaced ours at this index (or
                    // a snapshot covered it): its outcome is unknown here.
                    waiter.fail(Error::LeadershipLost);
                }
            }
        }
        let _ = self.apply.tx.send(ApplyMsg::Batch(ApplyBatch { entries, waiters, stamp }));
    }

    /// Asks the FSM task to read committed entries `lo..=hi` from the log
    /// store and apply them (the core no longer holds them in memory), with
    /// the waiters of the writes among them. Sent before the entries that
    /// follow, so the FSM applies in log order.
    ///
    /// The range goes in reads bounded by the entries' recorded sizes
    /// (`MAX_READ_BYTES`, `MAX_BATCH` entries), one
    /// message to the FSM task per read.
    pub(super) fn dispatch_apply_from_store(&mut self, lo: u64, hi: u64) {
        let _ = self.telemetry.committed(self.core.term(), lo, hi);
        let max_bytes = usize::try_from(crate::runtime::apply::MAX_READ_BYTES).unwrap_or(usize::MAX);
        for (first, last) in self.core.store_read_ranges(lo, hi, crate::runtime::apply::MAX_BATCH, max_bytes)
        {
            let waiters = self.take_waiters(lo, last);
            let _ = self.apply.tx.send(ApplyMsg::FromStore { lo: first, hi: last, waiters });
        }
    }

    /// Takes the waiters of writes at indexes up to `hi`: those of entries
    /// in `lo..=hi` that are still the entries written, to be answered once
    /// applied; the others (overwritten by a new leader) fail.
    fn take_waiters(&mut self, lo: u64, hi: u64) -> Vec<(u64, Waiter<R>)> {
        let mut waiters = Vec::new();
        while let Some(entry) = self.clients.waiters.first_entry() {
            let k = *entry.key();
            if k > hi {
                break;
            }
            let Pending { term, waiter, .. } = entry.remove();
            // The core keeps every entry's term, payload or not.
            if k >= lo && self.core.term_at(k) == Some(term) {
                waiters.push((k, waiter));
            } else {
                waiter.fail(Error::LeadershipLost);
            }
        }
        waiters
    }
}
