//! The commit flush in the main task (HashiCorp's `commit_timeout`): a
//! leader tells followers a commit index they have not heard yet at most
//! `commit_timeout` after it advanced, instead of at the next heartbeat.

use super::*;

/// The main task's commit flush.
#[derive(Default)]
pub(super) struct CommitFlush {
    /// (Leader) when to tell followers about a commit index they have not
    /// heard yet (`None`: nothing to tell).
    pub(super) at: Option<tokio::time::Instant>,
    /// The commit index last sent out by a flush.
    flushed: u64,
}

impl<R: Send + 'static> Node<R> {
    /// Arms the commit flush when the leader's commit index moved past what
    /// followers were last told.
    pub(super) fn schedule_commit_flush(&mut self) {
        if self.commit.at.is_none() && self.core.is_leader() && self.core.commit_index() > self.commit.flushed
        {
            self.commit.at = Some(tokio::time::Instant::now() + self.config.commit_timeout);
        }
    }

    /// Sends the current commit index to followers: without it, an idle
    /// cluster's followers would apply the last writes only at the next
    /// heartbeat.
    pub(super) fn flush_commit(&mut self) {
        self.commit.at = None;
        if self.core.is_leader() {
            self.commit.flushed = self.core.commit_index();
            self.core.send_heartbeats();
        }
    }
}
