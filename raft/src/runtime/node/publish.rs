//! Publishing for the main task: the shared state read by the handle
//! (`state`, `leader`), the leader watch, the metrics watch, observer
//! notifications of role and leader changes, and failing what a lost
//! leadership invalidates.

use super::*;
use crate::core::LogReset;

/// What the main task last published, and the figures only it counts.
pub(super) struct Publisher {
    /// The role last published (before the first: none, so that the first
    /// publication reports every field).
    last: Role,
    /// (Leader) per follower: how many times its log was found to have lost
    /// acknowledged entries and its replication started over.
    log_resets: HashMap<ServerId, u64>,
}

impl Default for Publisher {
    fn default() -> Self {
        let last = Role { state: RaftState::Shutdown, term: u64::MAX, leader: None };
        Self { last, log_resets: HashMap::new() }
    }
}

/// A node's role as published: a change of any field is published.
#[derive(Clone, PartialEq, Eq)]
struct Role {
    /// Its state.
    state: RaftState,
    /// Its term.
    term: u64,
    /// The leader it knows of.
    leader: Option<ServerId>,
}

impl Role {
    /// The core's current role.
    fn of(core: &Core) -> Self {
        Self { state: core.state(), term: core.term(), leader: core.leader().cloned() }
    }
}

impl<R: Send + 'static> Node<R> {
    /// Publishes role changes and fails what a lost leadership invalidates.
    pub(super) fn after_state_change(&mut self) {
        let role = Role::of(&self.core);
        if role == self.publisher.last {
            return;
        }
        let state = role.state;
        if state == RaftState::Removed && self.publisher.last.state != RaftState::Removed {
            self.on_removed();
        }
        let was_leader = self.publisher.last.state == RaftState::Leader;
        if was_leader && state != RaftState::Leader {
            self.clients.fail_after(self.core.commit_index());
        }
        self.publish(false);
    }

    /// Updates the shared state, leader watch and metrics.
    pub(super) fn publish(&mut self, periodic: bool) {
        let core = &self.core;
        let role = Role::of(core);
        let (state, leader) = (role.state, role.leader.clone());
        let changed = role != self.publisher.last;
        if !changed && !periodic {
            return;
        }
        let leader_pair = leader.as_ref().and_then(|id| self.address_of(id).map(|a| (id.clone(), a)));
        if changed {
            tracing::debug!(state = %state, term = core.term(), leader = ?leader, "state changed");
            self.telemetry.role_changed(state, core.term(), leader.as_ref());
            if state != self.publisher.last.state {
                self.shared.observers.notify(Observation::StateChanged(state));
            }
            if leader != self.publisher.last.leader {
                self.shared.observers.notify(Observation::LeaderChanged(leader_pair.clone()));
            }
            self.shared.set_state(state, leader_pair.clone());
            let is_leader = state == RaftState::Leader;
            self.shared.leader_tx.send_if_modified(|v| {
                let modified = *v != is_leader;
                *v = is_leader;
                modified
            });
            self.publisher.last = role;
        } else if self.shared.get_state().1 != leader_pair {
            // The leader's address became known later than the leader (a
            // joining node hears from it before it has the configuration).
            self.shared.set_state(state, leader_pair.clone());
        }
        let core = &self.core;
        let (configuration, configuration_index) = core.configuration();
        let metrics = Metrics {
            id: self.config.local_id.clone(),
            state,
            term: core.term(),
            current_leader: leader_pair,
            last_log_index: core.last_index(),
            last_log_term: core.last_term(),
            commit_index: core.commit_index(),
            applied_index: self.shared.applied.load(Ordering::Acquire),
            snapshot_index: self.store.compacted_through,
            configuration: configuration.clone(),
            configuration_index,
            peers: core
                .peer_progress()
                .into_iter()
                .map(|p| {
                    let ticks = p.ticks_since_contact.min(u32::MAX as u64) as u32;
                    let last_contact = self.config.tick_interval() * ticks;
                    let log_resets = self.publisher.log_resets.get(&p.id).copied().unwrap_or(0);
                    let health = self.autopilot.tracker.health(&p.id);
                    let healthy = health.is_some_and(|h| h.healthy);
                    let healthy_ticks = health.map_or(0, |h| h.healthy_ticks).min(u32::MAX as u64) as u32;
                    let peer = PeerMetrics {
                        match_index: p.matched,
                        next_index: p.next,
                        last_contact,
                        log_resets,
                        healthy,
                        healthy_for: self.config.tick_interval() * healthy_ticks,
                        lag: core.last_index().saturating_sub(p.matched),
                    };
                    (p.id, peer)
                })
                .collect(),
            cluster_id: self.cluster.id.clone(),
            last_snapshot_index: self.store.last_snapshot.index,
            last_snapshot_term: self.store.last_snapshot.term,
            first_index: self.store.compacted_through + 1,
            log_compacted_through: self.store.compacted_through,
            fatal_error: self.fatal.clone(),
            log_window_bytes: core.held_bytes() as u64,
            writes_waiting_for_room: self.room.held.len() as u64,
            bytes_waiting_for_room: self.room.held_bytes,
            writes_timed_out_waiting_for_room: self.room.timed_out,
            log_fetches: self.fetches.done,
            log_fetch_failures: self.fetches.failed,
            log_fetched_bytes: self.fetches.bytes,
            recorded_commit_index: self.commit_record.recorded,
            uncommitted_bytes: if state == RaftState::Leader { core.uncommitted_bytes() as u64 } else { 0 },
            reads: self.shared.read_counts.snapshot(),
            lease_remaining: core
                .lease_remaining_ticks()
                .map(|ticks| self.config.tick_interval() * u32::try_from(ticks).unwrap_or(u32::MAX)),
        };
        self.shared.last_index.store(core.last_index(), Ordering::Release);
        let snapshot = self.store.last_snapshot.index;
        self.telemetry.publish(core, metrics.applied_index, snapshot, self.config.tick_interval());
        self.shared.metrics_tx.send_if_modified(|old| {
            let modified = *old != metrics;
            if modified {
                *old = metrics;
            }
            modified
        });
    }

    /// Counts followers' log resets the core reported (it logged the
    /// warning) and tells observers.
    pub(super) fn count_log_resets(&mut self, resets: Vec<LogReset>) {
        for reset in resets {
            *self.publisher.log_resets.entry(reset.peer.clone()).or_default() += 1;
            self.shared.observers.notify(Observation::FollowerLogReset {
                peer: reset.peer,
                matched: reset.matched,
                last_log_index: reset.last_log_index,
            });
        }
    }
}
