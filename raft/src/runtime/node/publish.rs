//! Publishing for the main task: the shared state read by the handle
//! (`state`, `leader`), the leader watch, the metrics watch, observer
//! notifications of role and leader changes, and failing what a lost
//! leadership invalidates.

use super::*;

impl<R: Send + 'static> Node<R> {
    /// Publishes role changes and fails what a lost leadership invalidates.
    pub(super) fn after_state_change(&mut self) {
        let state = self.t.core.state();
        let key = (state, self.t.core.term(), self.t.core.leader().cloned());
        if key == self.published {
            return;
        }
        if state == RaftState::Removed && self.published.0 != RaftState::Removed {
            self.on_removed();
        }
        let was_leader = self.published.0 == RaftState::Leader;
        if was_leader && state != RaftState::Leader {
            let commit = self.t.core.commit_index();
            let lost: Vec<u64> = self.waiters.range(commit + 1..).map(|(k, _)| *k).collect();
            for k in lost {
                if let Some(p) = self.waiters.remove(&k) {
                    p.waiter.fail(Error::LeadershipLost);
                }
            }
        }
        self.publish(false);
    }

    /// Updates the shared state, leader watch and metrics.
    pub(super) fn publish(&mut self, periodic: bool) {
        let core = &self.t.core;
        let state = core.state();
        let leader = core.leader().cloned();
        let key = (state, core.term(), leader.clone());
        let changed = key != self.published;
        if !changed && !periodic {
            return;
        }
        let leader_pair = leader.as_ref().and_then(|id| self.address_of(id).map(|a| (id.clone(), a)));
        if changed {
            tracing::debug!(state = %state, term = core.term(), leader = ?leader, "state changed");
            if state != self.published.0 {
                self.t.shared.observers.notify(Observation::StateChanged(state));
            }
            if leader != self.published.2 {
                self.t.shared.observers.notify(Observation::LeaderChanged(leader_pair.clone()));
            }
            self.t.shared.set_state(state, leader_pair.clone());
            let is_leader = state == RaftState::Leader;
            self.t.shared.leader_tx.send_if_modified(|v| {
                let modified = *v != is_leader;
                *v = is_leader;
                modified
            });
            self.published = key;
        } else if self.t.shared.get_state().1 != leader_pair {
            // The leader's address became known later than the leader (a
            // joining node hears from it before it has the configuration).
            self.t.shared.set_state(state, leader_pair.clone());
        }
        let core = &self.t.core;
        let (configuration, configuration_index) = core.configuration();
        let metrics = Metrics {
            id: self.t.config.local_id.clone(),
            state,
            term: core.term(),
            current_leader: leader_pair,
            last_log_index: core.last_index(),
            last_log_term: core.last_term(),
            commit_index: core.commit_index(),
            applied_index: self.t.shared.applied.load(Ordering::Acquire),
            snapshot_index: self.t.compacted_through,
            configuration: configuration.clone(),
            configuration_index,
            peers: core
                .peer_progress()
                .into_iter()
                .map(|p| {
                    let ticks = p.ticks_since_contact.min(u32::MAX as u64) as u32;
                    let last_contact = self.t.config.tick_interval() * ticks;
                    let log_resets = self.log_resets.get(&p.id).copied().unwrap_or(0);
                    (
                        p.id,
                        PeerMetrics { match_index: p.matched, next_index: p.next, last_contact, log_resets },
                    )
                })
                .collect(),
            cluster_id: self.t.cluster_id.clone(),
            last_snapshot_index: self.t.last_snapshot.0,
            last_snapshot_term: self.t.last_snapshot.1,
            first_index: self.t.compacted_through + 1,
            log_compacted_through: self.t.compacted_through,
            fatal_error: self.fatal.clone(),
        };
        self.t.shared.last_index.store(core.last_index(), Ordering::Release);
        self.t.shared.metrics_tx.send_if_modified(|old| {
            let modified = *old != metrics;
            if modified {
                *old = metrics;
            }
            modified
        });
    }
}
