//! Joint membership changes in the simulation (Raft paper §6, thesis
//! §4.3): with probability [`SimConfig::joint_rate`](super::SimConfig::joint_rate)
//! a membership change is a set of two or three changes applied atomically
//! (servers added as voters or non-voters, removed, promoted, demoted;
//! the leader itself may be removed or demoted), run the way the runtime
//! runs them: the leader first commits the staging configuration (new
//! voters as non-voters), then proposes the joint configuration once they
//! caught up ([`Core::propose_joint`](crate::core::Core::propose_joint)),
//! retrying on whichever node leads, for a bounded time. The core leaves
//! the joint configuration by itself.
//!
//! The checks that matter for it live in `checks`: every committed entry is
//! durable on a majority of each half of a joint configuration, and every
//! leader was granted votes by a majority of each half.
//!
//! Draws come from a random source of their own, and only at a non-zero
//! rate, so with `joint_rate` 0 a seed runs exactly as it did before.

use super::checks::Check;
use super::trace::TraceKind;
use super::Sim;
use crate::core::{ConfChange, ConfChangeError, Refusal};
use crate::types::{ServerId, Suffrage};

/// Ticks a joint change may wait for its new voters before it is dropped.
const PATIENCE_TICKS: u64 = 150;

/// A joint change under way: staged, waiting to enter C_old,new.
#[derive(Clone, Debug)]
pub(super) struct JointJob {
    /// The changes, applied atomically.
    changes: Vec<ConfChange>,
    /// The tick it started.
    started: u64,
    /// Human-readable summary for the trace.
    what: String,
}

impl Sim<'_> {
    /// Starts a joint change on the leader (if any and none is under way):
    /// picks the changes, commits the staging step, and tries to enter the
    /// joint configuration at once.
    pub(super) fn start_joint_change(&mut self) -> Check {
        if self.joint_job.is_some() {
            return Ok(());
        }
        let Some(n) = self.leader().filter(|&n| !self.is_paused(n)) else { return Ok(()) };
        let Some(core) = self.nodes[n].core.as_ref() else { return Ok(()) };
        let (conf, _) = core.configuration();
        if conf.is_joint() {
            return Ok(());
        }
        let conf = conf.clone();
        // Candidate changes, one per server.
        let mut options: Vec<ConfChange> = Vec::new();
        for node in self.nodes.iter().filter(|node| !node.retired && !node.removed) {
            let id = node.id.clone();
            match conf.server(&id).map(|s| s.suffrage) {
                None => {
                    options.push(if self.joint_rng.chance(0.7) {
                        ConfChange::AddVoter(id.clone(), id.as_str().into())
                    } else {
                        ConfChange::AddNonvoter(id.clone(), id.as_str().into())
                    });
                }
                Some(Suffrage::Voter) => {
                    options.push(if self.joint_rng.chance(0.7) {
                        ConfChange::Remove(id)
                    } else {
                        ConfChange::Demote(id)
                    });
                }
                Some(_) => {
                    options.push(if self.joint_rng.chance(0.6) {
                        ConfChange::Promote(id)
                    } else {
                        ConfChange::Remove(id)
                    });
                }
            }
        }
        // Two or three of them, at random.
        let want = self.joint_rng.between(2, 3) as usize;
        let mut changes = Vec::new();
        while changes.len() < want && !options.is_empty() {
            let i = self.joint_rng.index(options.len());
            changes.push(options.swap_remove(i));
        }
        let Some(core) = self.nodes[n].core.as_ref() else { return Ok(()) };
        let Ok(plan) = core.plan_membership_change(&changes) else { return Ok(()) };
        // Keep at least three voters in each configuration, as the
        // single-server changes do.
        if plan.target.voters().count() < 3 || plan.target == conf {
            return Ok(());
        }
        let what = changes.iter().map(describe).collect::<Vec<_>>().join(", ");
        if let Some(staging) = plan.staging {
            let Some(core) = self.nodes[n].core.as_mut() else { return Ok(()) };
            if core.propose_configuration(staging).is_err() {
                return Ok(());
            }
            self.trace.push(self.now, TraceKind::Network(format!("n{} stages joint change: {what}", n + 1)));
            self.after_step(n)?;
        }
        self.joint_job = Some(JointJob { changes, started: self.tick, what });
        self.advance_joint_change()
    }

    /// Tries to enter the joint configuration of the change under way on
    /// the current leader; drops the change once it waited too long or the
    /// configuration moved on.
    pub(super) fn advance_joint_change(&mut self) -> Check {
        let Some(job) = self.joint_job.clone() else { return Ok(()) };
        // A server removed since the job was planned is never added back
        // (its id is retired; a removed server stays removed for good).
        let retired =
            |id: &ServerId| self.nodes.iter().any(|node| &node.id == id && (node.retired || node.removed));
        if job
            .changes
            .iter()
            .any(|c| matches!(c, ConfChange::AddVoter(id, _) | ConfChange::AddNonvoter(id, _) if retired(id)))
        {
            self.joint_job = None;
            let line = format!("joint change dropped (it would add back a removed server): {}", job.what);
            self.trace.push(self.now, TraceKind::Network(line));
            return Ok(());
        }
        let Some(n) = self.leader().filter(|&n| !self.is_paused(n)) else { return Ok(()) };
        let Some(core) = self.nodes[n].core.as_mut() else { return Ok(()) };
        let leader_out = !core.configuration().0.leave_joint().servers.is_empty()
            && job
                .changes
                .iter()
                .any(|c| c.id() == core.id() && matches!(c, ConfChange::Remove(_) | ConfChange::Demote(_)));
        match core.propose_joint(&job.changes) {
            Ok(index) => {
                self.joint_job = None;
                self.report.config_changes += 1;
                self.report.joint_changes += 1;
                if leader_out {
                    self.report.joint_leader_out += 1;
                }
                for c in &job.changes {
                    if let ConfChange::Remove(id) = c {
                        if let Some(node) = self.nodes.iter_mut().find(|node| &node.id == id) {
                            node.retired = true;
                        }
                    }
                }
                let line = format!("n{} enters joint configuration at {index}: {}", n + 1, job.what);
                self.trace.push(self.now, TraceKind::Network(line));
                self.after_step(n)
            }
            Err(
                Refusal::Membership(ConfChangeError::NotCaughtUp { .. })
                | Refusal::ConfigurationChangeInProgress
                | Refusal::TransferInProgress,
            ) if self.tick < job.started + PATIENCE_TICKS => Ok(()),
            Err(refusal) => {
                self.joint_job = None;
                let line = format!("joint change dropped ({refusal}): {}", job.what);
                self.trace.push(self.now, TraceKind::Network(line));
                Ok(())
            }
        }
    }
}

fn describe(c: &ConfChange) -> String {
    match c {
        ConfChange::AddVoter(id, _) => format!("add voter {id}"),
        ConfChange::AddNonvoter(id, _) => format!("add non-voter {id}"),
        ConfChange::Remove(id) => format!("remove {id}"),
        ConfChange::Promote(id) => format!("promote {id}"),
        ConfChange::Demote(id) => format!("demote {id}"),
        ConfChange::UpdateAddress(id, a) => format!("move {id} to {a}"),
    }
}
