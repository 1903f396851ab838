//! Node lifecycle faults in the simulation: a node that restarts with an
//! empty disk under its old id (a replaced disk: log, term, vote and
//! snapshots all gone), a node that restarts with the last few durable log
//! entries cut off (a torn tail, as the file store truncates a damaged final
//! record), and clusters bootstrapped on one server only.
//!
//! # When a disk may be lost
//!
//! Raft's guarantees assume a node keeps what it made durable. Losing it can
//! in principle lose committed entries (if the node was part of the only
//! quorum holding them) or elect two leaders in one term (if the node votes
//! again in a term it already voted in). Real operators replace one disk at
//! a time in a healthy cluster; the simulation injects the fault only when
//! it cannot break safety, which it checks as always:
//!
//! - **entries**: every entry the node loses (its whole durable log and
//!   snapshot, or the cut-off tail) is durable on a quorum of the *other*
//!   voters, for every configuration in play (each node's latest one: in
//!   memory when it is up, on disk when it is down). A leader that still
//!   counts the node's old acknowledgements (they may even be in flight)
//!   therefore never counts an entry that is not on a real quorum, and every
//!   future leader still holds every committed entry. At most one node's
//!   loss is "uncovered" at a time follows from this: a node still catching
//!   up after its own loss holds nothing the rule could count on.
//! - **votes** (empty disk only, since the term and vote go too): every other
//!   node is at the highest term any node reached, durably and in memory,
//!   and none is campaigning. Every later election then runs in a higher
//!   term, so the node's forgotten vote can no longer decide one; a late
//!   vote request of a finished election it may grant again is ignored by
//!   its sender, which is no longer a candidate in that term.
//!
//! When the rule does not allow it, the node restarts normally. Election
//! safety (one leader per term) stays checked after every step; the
//! per-node "one vote per term" record of a wiped node is forgotten, since
//! that promise is exactly what a lost disk breaks.

use super::storage::Storage;
use super::trace::TraceKind;
use super::Sim;
use crate::types::{Configuration, LogType, RaftState};

impl Sim<'_> {
    /// Decides (from the lifecycle random source) whether node `n`, about
    /// to restart, loses its disk or the tail of its log, and applies the
    /// loss to its storage when the rule in the module docs allows it (a
    /// node that may not lose its whole disk may still lose its tail).
    pub(super) fn lifecycle_fault(&mut self, n: usize) {
        if !self.faults {
            return;
        }
        let wipe = self.life_rng.chance(self.cfg.disk_loss_rate);
        // Every term reached so far, durably or in memory.
        let top =
            self.nodes.iter().map(|node| node.storage.hard.term).max().unwrap_or(0).max(self.safety.max_term);
        if wipe && self.may_wipe(n) {
            self.nodes[n].storage = Storage::default();
            self.nodes[n].lost_data_at_term = top;
            self.safety.forget_votes_of(n);
            self.report.disks_lost += 1;
            self.trace
                .push(self.now, TraceKind::Network(format!("n{} comes back with an empty disk", n + 1)));
            return;
        }
        // A disk the rule does not allow losing may still lose its tail.
        if !wipe && !self.life_rng.chance(self.cfg.torn_tail_rate) {
            return;
        }
        let k = self.life_rng.between(1, 3) as usize;
        let cut = self.tearable_tail(n, k);
        if cut > 0 {
            let log = &mut self.nodes[n].storage.log;
            log.truncate(log.len() - cut);
            self.nodes[n].lost_data_at_term = top;
            self.report.tails_torn += 1;
            let last = self.nodes[n].storage.last_index();
            let what =
                format!("n{} comes back with its last {cut} log entries cut off (now ends at {last})", n + 1);
            self.trace.push(self.now, TraceKind::Network(what));
        }
    }

    /// Every node's latest configuration with at least one voter: in
    /// memory for running nodes, from the durable log or snapshot for
    /// crashed ones.
    fn configurations_in_play(&self) -> Vec<Configuration> {
        let mut confs: Vec<Configuration> = Vec::new();
        for node in &self.nodes {
            let conf = match &node.core {
                Some(core) => Some(core.configuration().0.clone()),
                None => durable_configuration(&node.storage),
            };
            if let Some(conf) = conf.filter(|c| c.voters().next().is_some()) {
                if !confs.contains(&conf) {
                    confs.push(conf);
                }
            }
        }
        confs
    }

    /// Whether `index`/`term` is durable on a quorum of the voters other
    /// than node `n`, in each of `confs` (each half of a joint one).
    fn held_without(&self, n: usize, index: u64, term: u64, confs: &[Configuration]) -> bool {
        let committed = self.safety.committed_terms();
        // Joint configurations: a quorum of each half.
        confs.iter().flat_map(|c| super::checks::quorum_halves(c).into_iter().map(|(_, h)| h)).all(|conf| {
            let quorum = conf.voters().count() / 2 + 1;
            let holders = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(i, node)| {
                    *i != n && conf.is_voter(&node.id) && node.storage.term_at(index, committed) == Some(term)
                })
                .count();
            holders >= quorum
        })
    }

    /// The rule for an empty disk (module docs): every entry node `n`
    /// holds durably is on a quorum of the others, and its vote can no
    /// longer matter.
    fn may_wipe(&self, n: usize) -> bool {
        let confs = self.configurations_in_play();
        if confs.is_empty() {
            return false;
        }
        let top = self
            .nodes
            .iter()
            .map(|node| node.storage.hard.term.max(node.core.as_ref().map_or(0, |c| c.term())))
            .max()
            .unwrap_or(0);
        let settled = self.nodes.iter().enumerate().filter(|(i, _)| *i != n).all(|(_, node)| {
            node.storage.hard.term == top
                && node.core.as_ref().is_none_or(|c| c.term() == top && c.state() != RaftState::Candidate)
        });
        if !settled {
            return false;
        }
        let storage = &self.nodes[n].storage;
        let committed = self.safety.committed_terms();
        let last = storage.last_index().max(storage.snapshot_point().0);
        (1..=last).all(|i| match storage.term_at(i, committed) {
            Some(t) => self.held_without(n, i, t, &confs),
            // Not part of what a restart would see: nothing to lose.
            None => true,
        })
    }

    /// How many of the last `k` durable log entries of node `n` may be cut
    /// off: only entries after its newest snapshot, each durable on a
    /// quorum of the others (module docs); 0 if the rule forbids it.
    fn tearable_tail(&self, n: usize, k: usize) -> usize {
        let storage = &self.nodes[n].storage;
        let floor = storage.log_start.max(storage.snapshot_point().0);
        let cut = storage.log.iter().rev().take(k).take_while(|e| e.index > floor).count();
        if cut == 0 {
            return 0;
        }
        let confs = self.configurations_in_play();
        if confs.is_empty() {
            return 0;
        }
        let lost = &storage.log[storage.log.len() - cut..];
        if lost.iter().all(|e| self.held_without(n, e.index, e.term, &confs)) {
            cut
        } else {
            0
        }
    }
}

/// The newest configuration a node would restart with: the last
/// configuration entry of its durable log, else its snapshot's.
fn durable_configuration(storage: &Storage) -> Option<Configuration> {
    let from_log = storage
        .log
        .iter()
        .rev()
        .find(|e| e.log_type == LogType::Configuration)
        .and_then(|e| crate::codec::decode::<Configuration>(&e.data).ok());
    from_log.or_else(|| storage.snapshot.as_ref().map(|s| s.state.conf.1.clone()))
}
