//! The lease's promise, checked where a lease read is answered (Raft
//! thesis §6.4.1, `core::lease`): while a leader answers a read under its
//! lease, no other leader can be elected, because enough voters still
//! refuse to vote for anyone else.
//!
//! When a leader of term `T` answers a lease read at once, the voters that
//! block every rival now form a set meeting every quorum of the leader's
//! latest configuration (at least half of its voters, rounded up; for a
//! joint configuration at least half of one of its halves, since every
//! joint quorum holds a majority of each). A voter blocks a rival now when
//! it has not moved past term `T` (it voted in no later term) and either:
//! - it is the leader itself;
//! - it is down (it cannot vote; it restarts sticky, see
//!   `core::election`);
//! - it refuses votes because it heard from a leader less than
//!   `follower_timeout_ticks` ago by its own clock, counting the ticks its
//!   clock passed that its core has not been given yet (a paused node, or
//!   one whose tick comes later in this simulated tick: it gets them before
//!   it handles any vote request).
//!
//! This is the lease's own argument, checked at the moment it is relied
//! on, so a lease that outlives the voters' stickiness fails here even
//! when no rival happens to be elected in time to expose a stale read (an
//! election timeout is usually well above the stickiness, and the history
//! checker needs a write by the rival as well). It caught a lease kept
//! after a leadership transfer started, and a lease earned from a
//! follower's refusal of a delayed heartbeat of the leader's previous term
//! (seed 1202: the refusal, sent in the leader's new term, echoed a round
//! number of the old term, above every round of the new one; fixed in
//! `Core::reject_stale`).

use super::checks::{quorum_halves, violation, Check};
use super::Sim;

impl Sim<'_> {
    /// Leader `n` is about to answer a lease read at once (its lease
    /// holds): checks that a set of voters meeting every quorum of its
    /// configuration blocks any rival now.
    pub(super) fn check_lease_blocks_rivals(&self, n: usize) -> Check {
        let Some(leader) = self.nodes[n].core.as_ref() else { return Ok(()) };
        let term = leader.term();
        let follower_timeout = self.core_cfg.follower_timeout_ticks;
        let (conf, _) = leader.configuration();
        let blocks = |i: usize| -> bool {
            let node = &self.nodes[i];
            match node.core.as_ref() {
                _ if i == n => true,
                None => node.storage.hard.term <= term,
                Some(core) => {
                    let since = core.since_leader.saturating_add(self.clocks.pending(i));
                    core.term() <= term && core.lease_stickiness() && since < follower_timeout
                }
            }
        };
        let halves = quorum_halves(conf);
        let met: Vec<(usize, usize)> = halves
            .iter()
            .map(|(_, voters)| {
                let count = voters.voters().count();
                let blocking = voters
                    .voters()
                    .filter(|id| self.nodes.iter().position(|node| node.id == **id).is_some_and(blocks))
                    .count();
                (blocking, count - count / 2)
            })
            .collect();
        if met.iter().any(|(blocking, needed)| blocking >= needed) {
            return Ok(());
        }
        let states: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| match node.core.as_ref() {
                None => format!("n{} down (durable t{})", i + 1, node.storage.hard.term),
                Some(core) => format!(
                    "n{} t{} {} ticks since it heard a leader (+{} pending)",
                    i + 1,
                    core.term(),
                    core.since_leader,
                    self.clocks.pending(i)
                ),
            })
            .collect();
        Err(violation(
            "a lease read is answered only while voters block every rival",
            format!(
                "n{} answers a lease read in t{term} (lease left: {:?} ticks) but too few voters of its \
                 configuration refuse votes now (blocking/needed per half: {met:?}; follower timeout \
                 {follower_timeout} ticks): {}; {conf:?}",
                n + 1,
                leader.lease_remaining_ticks(),
                states.join(", ")
            ),
        ))
    }
}
