//! Safety properties checked after every simulation step.
//!
//! [`Safety`] keeps what has been observed over the whole run (leaders per
//! term, votes granted, the fingerprint of every `(index, term)` ever seen in
//! a log, the committed prefix, the applied sequence); a [`Monitor`] keeps
//! what one node showed in its current life. Every check is incremental, so
//! it can run after every step:
//!
//! - **election safety**: at most one leader per term, over the whole run;
//! - **one vote per term**: a node never grants votes to two candidates in
//!   one term, even across crashes (but not across a lost disk: see
//!   [`Safety::forget_votes_of`]);
//! - **a leader is elected by a quorum**: when a node is first seen leading
//!   term `T`, a quorum of the voters of its configuration granted it their
//!   vote in `T` (itself included): a vote granted in an earlier term, or
//!   one never granted, does not count;
//! - **log matching**: every `(index, term)` seen in any log, in memory or
//!   durable, has one fingerprint (previous term, type, data). By induction
//!   on the index this is equivalent to "two logs with an entry of the same
//!   index and term are identical up to it";
//! - **snapshots cover committed entries**: the point `(index, term)` a
//!   log was compacted to, and every snapshot taken, stored, installed or
//!   restarted from, is the committed entry at that index. Entries a
//!   snapshot covers therefore count as present, with their committed term,
//!   in every check below;
//! - **leader completeness**: a leader of term `T` holds (or covers with
//!   its snapshot) every entry known committed in an earlier term;
//! - **commitment is durable**: when a node's commit index advances, the
//!   entry there is in the durable log or the durable snapshot of a quorum
//!   of the voters of its configuration (crashed voters included), where
//!   that configuration is the one its log says it is in (next item), not
//!   the node's own belief; and no follower commits beyond what a leader
//!   committed;
//! - **no quorum of a configuration in force lacks a committed entry**
//!   (Raft paper §6, thesis §4.3): a server that never received the entry
//!   may still act on any configuration from the latest committed one (as
//!   of the committed prefix known before the advance) to the newest one
//!   at or below the new commit index in the committing node's log, and
//!   could win an election with any quorum of it. So when a commit index
//!   advances, for every such configuration the voters durably holding the
//!   entry must meet every quorum of it: at least half of its voters
//!   (rounded up), or for a joint configuration at least half of one of
//!   its halves. A leader that leaves a joint configuration before the
//!   joint entry commits (committing C_new with the new majority alone
//!   while C_old is still the committed configuration) fails here;
//! - **the configuration follows the log**: the configuration a node acts
//!   on (`Core::configuration`) is, with its index, the latest
//!   configuration entry of its in-memory log, or, when no configuration
//!   entry follows its compaction point, the configuration as of that
//!   point (the state some node reached by applying the committed log up
//!   to it). A configuration whose entry was truncated away is gone;
//! - **a leader's match is durable on its follower**: for each follower, the
//!   index a leader believes matched (its `matched` progress) was
//!   acknowledged in the leader's term by that follower (an AppendEntries
//!   success or a snapshot answer), and at the moment the acknowledgement
//!   was sent the follower's durable log or snapshot held the leader's entry
//!   at the acknowledged index. Moreover the follower's disk still holds the
//!   leader's entry at the matched index, unless the follower has since
//!   moved to a higher term (a newer leader may legitimately have replaced
//!   that suffix) or lost durable data since the leader's term began (a
//!   lost disk or torn tail, which the `lifecycle` module only allows when
//!   the entries are durable on a quorum of the others: the leader keeps
//!   its match until the follower's answers tell it of the reset);
//! - **state machine safety**: no two nodes apply different entries at one
//!   index, only committed entries are applied, in order, and the state
//!   after each index is the same on every node: a state restored from a
//!   snapshot must equal the state some node reached by applying the log up
//!   to the snapshot's index;
//! - **acknowledged writes are committed** (and, at the end of a run,
//!   applied everywhere);
//! - **a read index covers every earlier commit** (checked by the driver
//!   when a read is confirmed, thesis §6.4): the index a leader confirms a
//!   ReadIndex read at is at least the length of the committed log, as far
//!   as any node knew, when the read was requested;
//! - **entries of the current term are never truncated**: a node still in
//!   term `T` never truncates an entry of term `T` from its log (only the
//!   leader of `T` creates such entries, a node in `T` accepts entries only
//!   from that leader, and a leader's log only grows within its term);
//! - **a higher term in a response is adopted** (checked by the driver on
//!   delivery; Figure 2, rules for all servers): after a node handles an
//!   AppendEntries or RequestVote response carrying a higher term than its
//!   own, it is in that term (unless it is removed; answers that only tell
//!   a removed server so are exempt);
//! - **monotonicity**: within a node's life its term, commit and applied
//!   indexes never go back and its vote never changes within a term (the
//!   storage layer checks the same for the durable term and vote across
//!   crashes).

use std::collections::HashMap;

use bytes::Bytes;

use super::kv::KvState;
use crate::core::harness::MemLog;
use crate::core::Core;
use crate::types::{Configuration, LogType, Server, ServerId, Suffrage};

/// A violated property.
#[derive(Debug)]
pub(crate) struct Violation {
    pub(crate) property: &'static str,
    pub(crate) details: String,
}

pub(crate) type Check = Result<(), Violation>;

/// Counts, for `(configuration, index, term, committed terms)`, the voters
/// of that configuration whose durable log or snapshot holds that entry;
/// returns the count and the quorum size.
pub(crate) type DurableCount<'a> = dyn Fn(&Configuration, u64, u64, &[u64]) -> (usize, usize) + 'a;

/// What a leader's check needs to know about one follower right now.
#[derive(Debug)]
pub(crate) struct FollowerDisk {
    /// The follower's node number.
    pub(crate) node: usize,
    /// The term its durable log or snapshot holds at the index asked about.
    pub(crate) durable_term: Option<u64>,
    /// Its durable log still is what it acknowledged in the leader's term:
    /// it has not moved past that term and lost no durable data since it
    /// began.
    pub(crate) kept: bool,
}

/// The voter sets whose majorities a configuration's decisions need, each
/// as a plain configuration of voters: the configuration itself, or for a
/// joint configuration (Raft paper §6) its old and its new half. Counted
/// independently of the core's quorum module, from the configuration the
/// node's log holds.
pub(crate) fn quorum_halves(conf: &Configuration) -> Vec<(&'static str, Configuration)> {
    if !conf.is_joint() {
        return vec![("", conf.clone())];
    }
    let half = |votes: fn(Suffrage) -> bool| Configuration {
        servers: conf
            .servers
            .iter()
            .filter(|s| votes(s.suffrage))
            .map(|s| Server { suffrage: Suffrage::Voter, ..s.clone() })
            .collect(),
    };
    vec![("old voters", half(Suffrage::votes_in_old)), ("new voters", half(Suffrage::votes_in_new))]
}

pub(crate) fn violation(property: &'static str, details: String) -> Violation {
    Violation { property, details }
}

/// What one node has shown in its current life.
#[derive(Debug, Default)]
pub(crate) struct Monitor {
    pub(crate) term: u64,
    pub(crate) vote: Option<ServerId>,
    pub(crate) commit: u64,
    pub(crate) applied: u64,
    /// In-memory log entries up to here were checked against the fingerprints.
    pub(crate) mem_verified: u64,
    /// Compaction point of the in-memory log last checked.
    pub(crate) snapshot: u64,
    /// The configuration entries of the checked in-memory log (indexes
    /// after the compaction point, up to `mem_verified`), ascending.
    pub(crate) confs: Vec<(u64, Configuration)>,
    /// The last index of the log if its entry is of the node's term (0
    /// otherwise), as last checked.
    pub(crate) own_term_last: u64,
}

/// What identifies an entry beyond its index and term.
#[derive(Debug)]
struct Fingerprint {
    prev_term: u64,
    log_type: LogType,
    data: Bytes,
}

/// Run-wide safety state.
#[derive(Debug)]
pub(crate) struct Safety {
    /// Every node's id, by node number.
    ids: Vec<ServerId>,
    leaders: HashMap<u64, usize>,
    votes: HashMap<(usize, u64), usize>,
    fingerprints: HashMap<(u64, u64), Fingerprint>,
    /// Term of each committed entry (index `i` at position `i - 1`).
    committed: Vec<u64>,
    /// The lowest term in which each entry was known committed;
    /// non-decreasing along the log.
    commit_term: Vec<u64>,
    /// The entry applied at each index, by whichever node applied it first.
    applied: Vec<(u64, Bytes)>,
    /// The state machine's state after each index, as the node that applied
    /// it first saw it.
    states: Vec<KvState>,
    /// Per (follower, term): the highest index the follower acknowledged
    /// to the leader of that term, and the term its durable log or snapshot
    /// held there when it sent the acknowledgement.
    acks: HashMap<(usize, u64), (u64, Option<u64>)>,
    pub(crate) leaders_elected: u64,
    pub(crate) max_term: u64,
}

impl Safety {
    pub(crate) fn new(ids: Vec<ServerId>) -> Self {
        Self {
            ids,
            leaders: HashMap::new(),
            votes: HashMap::new(),
            fingerprints: HashMap::new(),
            committed: Vec::new(),
            commit_term: Vec::new(),
            applied: Vec::new(),
            states: Vec::new(),
            acks: HashMap::new(),
            leaders_elected: 0,
            max_term: 0,
        }
    }

    /// Length of the committed prefix known so far.
    pub(crate) fn committed_len(&self) -> u64 {
        self.committed.len() as u64
    }

    /// Term of each committed entry (index `i` at position `i - 1`).
    pub(crate) fn committed_terms(&self) -> &[u64] {
        &self.committed
    }

    /// The committed term at `index` (0 for index 0).
    fn committed_at(&self, index: u64) -> Option<u64> {
        match index {
            0 => Some(0),
            i => self.committed.get(i as usize - 1).copied(),
        }
    }

    /// Checks that `index`/`term`, the end of a snapshot or compacted
    /// prefix, is the committed entry at that index.
    pub(crate) fn check_covered(&self, what: &dyn Fn() -> String, index: u64, term: u64) -> Check {
        if self.committed_at(index) != Some(term) {
            return Err(violation(
                "snapshots cover committed entries",
                format!(
                    "{} covers the log up to {index}/t{term}, but the committed entry there is {:?}",
                    what(),
                    self.committed_at(index)
                ),
            ));
        }
        Ok(())
    }

    /// A state machine was restored (from a snapshot install or a restart)
    /// or snapshotted at `index`/`term` with `state`: it must be the
    /// committed entry there and the state some node reached by applying
    /// the log up to it.
    pub(crate) fn check_snapshot_state(
        &self,
        what: &dyn Fn() -> String,
        index: u64,
        term: u64,
        state: &KvState,
    ) -> Check {
        self.check_covered(what, index, term)?;
        match self.states.get(index as usize - 1) {
            Some(s) if s == state => Ok(()),
            Some(s) => Err(violation(
                "state machine safety",
                format!(
                    "{} at {index}/t{term} holds {state:?}, but applying the log up to {index} gave {s:?}",
                    what()
                ),
            )),
            None => Err(violation(
                "state machine safety",
                format!("{} at {index}/t{term}, but no node applied entry {index}", what()),
            )),
        }
    }

    /// Log matching, one entry at a time.
    pub(crate) fn check_entry(
        &mut self,
        where_: &dyn Fn() -> String,
        index: u64,
        term: u64,
        prev_term: u64,
        log_type: LogType,
        data: &Bytes,
    ) -> Check {
        match self.fingerprints.get(&(index, term)) {
            Some(f) => {
                if f.prev_term != prev_term || f.log_type != log_type || f.data != *data {
                    return Err(violation(
                        "log matching",
                        format!(
                            "{}: entry {index}/t{term} (prev term {prev_term}, {log_type:?}, {:?}) differs from \
                             an entry seen before with the same index and term (prev term {}, {:?}, {:?})",
                            where_(),
                            data,
                            f.prev_term,
                            f.log_type,
                            f.data
                        ),
                    ));
                }
            }
            None => {
                let f = Fingerprint { prev_term, log_type, data: data.clone() };
                self.fingerprints.insert((index, term), f);
            }
        }
        Ok(())
    }

    /// A granted vote is being sent.
    pub(crate) fn on_vote_granted(&mut self, voter: usize, term: u64, candidate: usize) -> Check {
        match self.votes.insert((voter, term), candidate) {
            Some(previous) if previous != candidate => Err(violation(
                "one vote per term",
                format!(
                    "n{} granted its vote in term {term} to n{} after granting it to n{}",
                    voter + 1,
                    candidate + 1,
                    previous + 1
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Node `voter` lost its disk (term and vote included): forget the
    /// votes it granted, since that promise is what a lost disk breaks.
    /// The simulation only wipes a node when its old votes can no longer
    /// decide an election (see the `lifecycle` module), and election safety
    /// itself stays checked.
    pub(crate) fn forget_votes_of(&mut self, voter: usize) {
        self.votes.retain(|(v, _), _| *v != voter);
    }

    /// Checks node `n` after a step. `durable_count(index, term, committed)`
    /// counts the voters of the node's latest configuration whose durable
    /// log or snapshot holds that entry (an entry a snapshot covers has the
    /// term `committed` records for it), and returns that count and the
    /// quorum size.
    pub(crate) fn check_node(
        &mut self,
        n: usize,
        core: &Core,
        disk: &MemLog,
        m: &mut Monitor,
        durable_count: &DurableCount<'_>,
    ) -> Check {
        let name = || format!("n{}", n + 1);
        let term = core.term();
        self.max_term = self.max_term.max(term);
        if term < m.term {
            return Err(violation(
                "monotonic term",
                format!("{} went from term {} to {term}", name(), m.term),
            ));
        }
        if term == m.term && m.vote.is_some() && core.vote() != m.vote.as_ref() {
            return Err(violation(
                "one vote per term",
                format!("{} changed its vote in term {term} from {:?} to {:?}", name(), m.vote, core.vote()),
            ));
        }
        let commit = core.commit_index();
        if commit < m.commit {
            return Err(violation("monotonic commit", format!("{} commit {} -> {commit}", name(), m.commit)));
        }
        let applied = core.applied_index();
        if applied < m.applied {
            return Err(violation(
                "monotonic applied",
                format!("{} applied {} -> {applied}", name(), m.applied),
            ));
        }
        if core.is_leader() {
            match self.leaders.get(&term) {
                Some(&other) if other != n => {
                    return Err(violation(
                        "election safety",
                        format!("{} and n{} are both leaders of term {term}", name(), other + 1),
                    ));
                }
                Some(_) => {}
                None => {
                    self.check_elected(n, core)?;
                    self.leaders.insert(term, n);
                    self.leaders_elected += 1;
                }
            }
        }

        // The compacted prefix is committed.
        let snapshot = core.snapshot_index();
        if snapshot != m.snapshot {
            let t = core.term_at(snapshot).unwrap_or(0);
            self.check_covered(&|| format!("n{}'s in-memory log", n + 1), snapshot, t)?;
            m.snapshot = snapshot;
        }
        // Log matching over the in-memory log entries not yet checked (a
        // truncation the driver has not taken yet invalidates the suffix).
        let last = core.last_index();
        if let Some(t) = core.ready.truncate_from {
            // Only the leader of a term creates its entries, and a node in
            // that term takes entries only from that leader, whose log
            // never drops them: a conflict with one is impossible.
            if term == m.term && t <= m.own_term_last {
                return Err(violation(
                    "entries of the current term are never truncated",
                    format!(
                        "{} (still in term {term}) truncated its log from {t}, dropping entries of term {term} \
                         up to {}",
                        name(),
                        m.own_term_last
                    ),
                ));
            }
            m.mem_verified = m.mem_verified.min(t.saturating_sub(1));
        }
        m.mem_verified = m.mem_verified.min(last).max(snapshot);
        let verified = m.mem_verified;
        m.confs.retain(|(i, _)| *i > snapshot && *i <= verified);
        for i in m.mem_verified + 1..=last {
            // Entries outside the core's window are durable: the disk
            // holds them, with the terms the core's log names.
            let e = match core.entry(i) {
                Some(e) => e,
                None if i < core.window_start() => match disk.entry(i) {
                    Some(e) if core.term_at(i) == Some(e.term) => e,
                    other => {
                        return Err(violation(
                            "entries outside the window are durable",
                            format!(
                                "{}'s log names entry {i} of term {:?} outside its window, but its disk holds {:?}",
                                name(),
                                core.term_at(i),
                                other.map(|e| e.term)
                            ),
                        ))
                    }
                },
                None => {
                    return Err(violation(
                        "log matching",
                        format!("{}'s in-memory log has no entry {i}", name()),
                    ))
                }
            };
            let prev = core.term_at(i - 1).unwrap_or(0);
            let where_ = || format!("in-memory log of n{}", n + 1);
            self.check_entry(&where_, i, e.term, prev, e.log_type, &e.data)?;
            if e.log_type == LogType::Configuration {
                let conf = crate::codec::decode::<Configuration>(&e.data).map_err(|err| {
                    violation("configurations survive replication", format!("{}: entry {i}: {err}", name()))
                })?;
                // §6: a leader appends C_new only once C_old,new committed.
                if let Some((j, prev)) = m.confs.last() {
                    if prev.is_joint() && core.is_leader() && e.term == term && *j > commit {
                        return Err(violation(
                            "a joint configuration is left only once committed",
                            format!(
                                "leader {} appended the configuration at {i} after the joint one at {j}, \
                                 which is not committed (commit index {commit})",
                                name()
                            ),
                        ));
                    }
                }
                m.confs.push((i, conf));
            }
        }
        m.mem_verified = last;
        m.own_term_last = if core.last_term() == term { last } else { 0 };

        // The configuration the node acts on is the one its log says.
        let empty = (0, Configuration::default());
        let (expected_index, expected) = match m.confs.last() {
            Some(c) => c,
            None if snapshot == 0 => &empty,
            None => match self.states.get(snapshot as usize - 1) {
                Some(state) => &state.conf,
                None => {
                    return Err(violation(
                        "state machine safety",
                        format!(
                            "{} compacted its log to {snapshot}, but no node applied entry {snapshot}",
                            name()
                        ),
                    ))
                }
            },
        };
        let (acting, acting_index) = core.configuration();
        if acting_index != *expected_index || acting != expected {
            return Err(violation(
                "the configuration follows the log",
                format!(
                    "{} acts on the configuration of index {acting_index} ({acting:?}), but the latest \
                     configuration its log (compacted to {snapshot}, last index {last}) holds is that of index \
                     {expected_index} ({expected:?})",
                    name()
                ),
            ));
        }

        // §6 / thesis §4.2.2: once the latest configuration (plain, not
        // joint) is committed, a leader that is not one of its voters has
        // handed off and stepped down (or become removed) in that step.
        if core.is_leader()
            && *expected_index <= commit
            && !expected.is_joint()
            && !expected.servers.is_empty()
            && !expected.is_voter(core.id())
        {
            return Err(violation(
                "a leader outside the committed configuration steps down",
                format!(
                    "{} still leads t{term} though the configuration at {expected_index} (committed, commit \
                     index {commit}) does not count it as a voter: {expected:?}",
                    name()
                ),
            ));
        }
        if commit > m.commit {
            let conf = expected.clone();
            let in_force = self.configurations_in_force(m, snapshot, commit);
            self.check_quorums_in_force(n, core, commit, &in_force, durable_count)?;
            self.on_commit(n, core, commit, &conf, durable_count)?;
        }
        m.term = term;
        m.vote = core.vote().cloned();
        m.commit = commit;
        m.applied = applied;
        Ok(())
    }

    /// The configurations a server that lacks a newly committed entry at
    /// `commit` might act on, as the log of the node committing it (its
    /// checked configuration entries `m.confs`, compacted to `snapshot`)
    /// tells: the one in force at the end of the committed prefix known so
    /// far, and every later one at or below `commit`, with their indexes.
    fn configurations_in_force(&self, m: &Monitor, snapshot: u64, commit: u64) -> Vec<(u64, Configuration)> {
        let known = self.committed.len() as u64;
        let mut in_force = Vec::new();
        let base = m.confs.iter().rev().find(|(i, _)| *i <= known);
        match base {
            Some((i, conf)) => in_force.push((*i, conf.clone())),
            // No configuration entry after the compaction point below the
            // committed prefix: the one as of the compaction point.
            None if snapshot > 0 => {
                if let Some(state) = self.states.get(snapshot as usize - 1) {
                    in_force.push(state.conf.clone());
                }
            }
            None => {}
        }
        in_force.extend(m.confs.iter().filter(|(i, _)| *i > known && *i <= commit).cloned());
        in_force
    }

    /// Node `n` advanced its commit index to `commit`: the voters that
    /// hold that entry durably meet every quorum of each configuration in
    /// force (see [`Safety::configurations_in_force`]).
    fn check_quorums_in_force(
        &self,
        n: usize,
        core: &Core,
        commit: u64,
        in_force: &[(u64, Configuration)],
        durable_count: &DurableCount<'_>,
    ) -> Check {
        let known = self.committed.len() as u64;
        let Some(t) = core.term_at(commit) else { return Ok(()) };
        if !(core.is_leader() || commit > known) {
            return Ok(());
        }
        for (index, conf) in in_force {
            // Every quorum of a plain configuration of v voters meets a set
            // holding v - v/2 of them; every quorum of a joint one meets a
            // set that does so for one of its halves.
            let halves = quorum_halves(conf);
            let met: Vec<(usize, usize)> = halves
                .iter()
                .map(|(_, voters)| {
                    let (durable, _) = durable_count(voters, commit, t, &self.committed);
                    let v = voters.voters().count();
                    (durable, v - v / 2)
                })
                .collect();
            if !met.iter().any(|(durable, needed)| durable >= needed) {
                return Err(violation(
                    "no quorum of a configuration in force lacks a committed entry",
                    format!(
                        "n{} ({:?}) counts {commit}/t{t} as committed, but some quorum of the configuration at \
                         {index} (in force: the committed prefix known before ends at {known}) holds no durable \
                         copy of it (durable/needed per half: {met:?}; {conf:?})",
                        n + 1,
                        core.state()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn on_commit(
        &mut self,
        n: usize,
        core: &Core,
        commit: u64,
        conf: &Configuration,
        durable_count: &DurableCount<'_>,
    ) -> Check {
        let term = core.term();
        let Some(t) = core.term_at(commit) else {
            return Err(violation(
                "commit within log",
                format!("n{} commit index {commit} is beyond its log (last {})", n + 1, core.last_index()),
            ));
        };
        let known = self.committed.len() as u64;
        // A leader commits by counting durable copies among the voters of its
        // latest configuration (as its log says: `conf`, checked above
        // against the one it acts on); a follower only learns commits from a leader,
        // so it must never be ahead of what some leader committed. (A leader
        // that stepped down in the step that advanced its commit, after
        // committing its own removal, is checked like a leader.)
        if core.is_leader() || commit > known {
            // Joint configurations: a majority of each half.
            for (half, voters) in quorum_halves(conf) {
                let (durable, quorum) = durable_count(&voters, commit, t, &self.committed);
                if durable < quorum {
                    return Err(violation(
                        "committed entries are durable on a quorum",
                        format!(
                            "n{} ({:?}) counts {commit}/t{t} as committed but only {durable} voters of the \
                             configuration its log holds {half} hold it durably (quorum {quorum}; {conf:?})",
                            n + 1,
                            core.state()
                        ),
                    ));
                }
            }
        }
        // Below the compaction point the log is covered (checked above).
        let check_at = commit.min(known);
        if check_at > 0 && check_at >= core.snapshot_index() {
            let expected = self.committed[check_at as usize - 1];
            if core.term_at(check_at) != Some(expected) {
                return Err(violation(
                    "state machine safety",
                    format!(
                        "n{} commits {:?} at index {check_at} but t{expected} was committed there before",
                        n + 1,
                        core.term_at(check_at)
                    ),
                ));
            }
        }
        for i in known + 1..=commit {
            let Some(ti) = core.term_at(i) else {
                return Err(violation("commit within log", format!("n{} has no entry {i}", n + 1)));
            };
            self.committed.push(ti);
            self.commit_term.push(term);
        }
        let mut j = commit as usize;
        while j > 0 && self.commit_term[j - 1] > term {
            self.commit_term[j - 1] = term;
            j -= 1;
        }
        Ok(())
    }

    /// Node `n` is first seen leading its term: a quorum of the voters of
    /// its configuration granted it their vote in that term.
    fn check_elected(&self, n: usize, core: &Core) -> Check {
        let term = core.term();
        let conf = core.configuration().0;
        // Joint configurations: a majority of each half granted.
        for (half, voters) in quorum_halves(conf) {
            let count = voters.voters().count();
            let granted: Vec<&ServerId> = voters
                .voters()
                .filter(|v| {
                    let own = *v == core.id() && core.vote() == Some(core.id());
                    own || self
                        .ids
                        .iter()
                        .position(|id| id == *v)
                        .is_some_and(|i| self.votes.get(&(i, term)) == Some(&n))
                })
                .collect();
            if granted.len() < count / 2 + 1 {
                return Err(violation(
                    "a leader is elected by a quorum",
                    format!(
                        "n{} leads term {term} but only {granted:?} of the {count} voters of its configuration \
                         {half} granted it their vote in that term ({conf:?})",
                        n + 1
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Leader completeness for a node that is currently leader.
    pub(crate) fn check_leader(&self, n: usize, core: &Core) -> Check {
        let term = core.term();
        let k = self.commit_term.partition_point(|ct| *ct < term);
        if k == 0 {
            return Ok(());
        }
        let expected = self.committed[k - 1];
        // A compacted prefix is committed (checked in `check_node`).
        if (k as u64) < core.snapshot_index() {
            return Ok(());
        }
        if core.term_at(k as u64) != Some(expected) {
            return Err(violation(
                "leader completeness",
                format!(
                    "n{} leads term {term} but its log has {:?} at index {k}, where an entry of t{expected} \
                     was committed in an earlier term (its last index is {})",
                    n + 1,
                    core.term_at(k as u64),
                    core.last_index()
                ),
            ));
        }
        Ok(())
    }

    /// Node `follower` sends an acknowledgement in `term` (a successful
    /// AppendEntries answer, or a snapshot answer) saying its log matches
    /// the leader's up to `index`; its durable log or snapshot holds
    /// `durable` (a term) at `index` as it sends it.
    pub(crate) fn on_ack_sent(&mut self, follower: usize, term: u64, index: u64, durable: Option<u64>) {
        let best = self.acks.entry((follower, term)).or_insert((0, Some(0)));
        if index >= best.0 {
            *best = (index, durable);
        }
    }

    /// A leader's view of its followers (module docs): for every follower
    /// with a non-zero match, the match was acknowledged durably in the
    /// leader's term and, unless the follower moved on or lost data since,
    /// is still durable there. `follower(id, index)` describes the
    /// follower's disk at `index`.
    pub(crate) fn check_matches(
        &self,
        n: usize,
        core: &Core,
        follower: &dyn Fn(&ServerId, u64) -> Option<FollowerDisk>,
    ) -> Check {
        let term = core.term();
        // The leader's entry at `i` (a compacted one is the committed one).
        let leader_term = |i: u64| {
            if i < core.snapshot_index() {
                self.committed_at(i)
            } else {
                core.term_at(i)
            }
        };
        for p in core.peer_progress() {
            if p.matched == 0 {
                continue;
            }
            let Some(disk) = follower(&p.id, p.matched) else { continue };
            let f = disk.node;
            match self.acks.get(&(f, term)) {
                Some(&(acked, durable)) if acked >= p.matched && durable == leader_term(acked) => {}
                ack => {
                    return Err(violation(
                        "a leader's match was acknowledged durably",
                        format!(
                            "n{} (leader of t{term}) believes n{} matches its log up to {}, but n{}'s best \
                             acknowledgement in t{term} (index, durable term then) is {ack:?} and the leader's \
                             entry there is t{:?}",
                            n + 1,
                            f + 1,
                            p.matched,
                            f + 1,
                            ack.and_then(|a| leader_term(a.0))
                        ),
                    ))
                }
            }
            if disk.kept && disk.durable_term != leader_term(p.matched) {
                return Err(violation(
                    "a leader's match is durable on its follower",
                    format!(
                        "n{} (leader of t{term}) believes n{} matches its log up to {} (t{:?}), but n{}'s disk \
                         holds {:?} there, though it is still in t{term} at most and lost no data since",
                        n + 1,
                        f + 1,
                        p.matched,
                        leader_term(p.matched),
                        f + 1,
                        disk.durable_term
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Node `n` applied `index`/`term` after having applied `previous`,
    /// reaching `state`.
    pub(crate) fn on_apply(
        &mut self,
        n: usize,
        previous: u64,
        index: u64,
        term: u64,
        data: &Bytes,
        state: &KvState,
    ) -> Check {
        if index == 0 || index != previous + 1 {
            return Err(violation(
                "state machine safety",
                format!("n{} applied index {index} right after {previous}", n + 1),
            ));
        }
        if self.committed.get(index as usize - 1) != Some(&term) {
            return Err(violation(
                "state machine safety",
                format!(
                    "n{} applied {index}/t{term}, which is not the committed entry there ({:?})",
                    n + 1,
                    self.committed.get(index as usize - 1)
                ),
            ));
        }
        match self.applied.get(index as usize - 1) {
            Some((t, d)) if *t != term || d != data => {
                return Err(violation(
                    "state machine safety",
                    format!("n{} applied {index}/t{term} but another node applied {index}/t{t} there", n + 1),
                ))
            }
            Some(_) => {}
            None if self.applied.len() as u64 == index - 1 => self.applied.push((term, data.clone())),
            None => {
                return Err(violation(
                    "state machine safety",
                    format!(
                        "n{} is the first to apply {index}, but entries before it were never applied",
                        n + 1
                    ),
                ))
            }
        }
        match self.states.get(index as usize - 1) {
            Some(s) if s != state => Err(violation(
                "state machine safety",
                format!(
                    "n{} reached {state:?} by applying {index}/t{term}, but another node reached {s:?} there",
                    n + 1
                ),
            )),
            Some(_) => Ok(()),
            None => {
                self.states.push(state.clone());
                Ok(())
            }
        }
    }

    /// A write carried by `index`/`term` was acknowledged to its client.
    pub(crate) fn on_ack(&self, index: u64, term: u64) -> Check {
        if index == 0 || self.committed.get(index as usize - 1) != Some(&term) {
            return Err(violation(
                "acknowledged writes are committed",
                format!("write {index}/t{term} was acknowledged but is not the committed entry there"),
            ));
        }
        Ok(())
    }
}
