//! The pure protocol core.

/// Tick counts and switches for the core.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub heartbeat_ticks: u64,
    pub follower_timeout_ticks: u64,
    pub candidate_timeout_ticks: u64,
    pub lease_ticks: u64,
    pub pre_vote: bool,
    pub check_quorum: bool,
    pub max_append_entries: usize,
    pub max_inflight: usize,
}
