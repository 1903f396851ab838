//! [`ReadPolicy`]: how much a read pays for freshness, chosen per call of
//! [`Raft::read`](crate::Raft::read).

use std::fmt;
use std::str::FromStr;

/// How a read is ordered against writes, chosen per call.
///
/// | policy | where it is served | cost | guarantee |
/// |---|---|---|---|
/// | [`Stale`](ReadPolicy::Stale) | the node asked | none | may miss recent writes |
/// | [`Lease`](ReadPolicy::Lease) | the node asked, after the leader's lease check | no round trip while the lease holds | linearizable if clocks drift less than [`Config::max_clock_drift`](crate::Config::max_clock_drift) |
/// | [`ReadIndex`](ReadPolicy::ReadIndex) | the node asked, after a quorum round | one heartbeat round (shared by concurrent reads) | linearizable |
///
/// On a follower, `Lease` and `ReadIndex` ask the leader for a read point
/// and then wait until the follower's own state machine has applied it
/// (linearizable follower reads); only when no leader is known are they
/// refused with [`Error::NotLeader`](crate::Error::NotLeader).
///
/// ```
/// use raft::ReadPolicy;
/// assert_eq!("lease".parse::<ReadPolicy>().unwrap(), ReadPolicy::Lease);
/// assert_eq!("linearizable".parse::<ReadPolicy>().unwrap(), ReadPolicy::ReadIndex);
/// assert_eq!(ReadPolicy::default(), ReadPolicy::ReadIndex);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReadPolicy {
    /// Read the local state machine as it is: no check at all.
    Stale,
    /// Served without a round trip while the leader holds a lease: a quorum
    /// acknowledged a heartbeat round sent less than the lease duration ago
    /// (the follower timeout minus the clock-drift bound). Falls back to a
    /// ReadIndex round when the lease does not hold.
    ///
    /// Assumes: clock *rates* differ by less than
    /// [`Config::max_clock_drift`](crate::Config::max_clock_drift) over a
    /// heartbeat timeout, on monotonic clocks that see every pause;
    /// `check_quorum` on (a follower that heard from a leader refuses votes
    /// for a follower timeout, and so does a restarted node). There is no
    /// lease before the leader committed an entry of its term, nor for the
    /// rest of a term in which a leadership transfer started; stepping down
    /// drops it.
    ///
    /// From LeaseGuard (Davis et al., arXiv 2512.15659) we took "the log is
    /// the lease" (every AppendEntries carries the read round, so
    /// replication keeps the lease alive without extra heartbeats), the
    /// lease anchored at send time, and deferred commit after failover,
    /// which here follows from stickiness (a new leader is elected only
    /// after the old lease expired). Not taken: serving reads during a new
    /// leader's "limbo" period, which needs synchronized clocks; a new
    /// leader's reads wait for the first commit of its term.
    Lease,
    /// Confirm leadership with a quorum round that starts after the call
    /// (ReadIndex, Raft thesis §6.4).
    #[default]
    ReadIndex,
}

impl ReadPolicy {
    /// The policy's name as [`FromStr`] accepts it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stale => "stale",
            Self::Lease => "lease",
            Self::ReadIndex => "linearizable",
        }
    }
}

impl fmt::Display for ReadPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A read policy name that is none of `stale`, `lease`, `linearizable`
/// (or `read_index`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown read policy {0:?}: expected stale, lease or linearizable")]
pub struct UnknownReadPolicy(pub String);

impl FromStr for ReadPolicy {
    type Err = UnknownReadPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stale" => Ok(Self::Stale),
            "lease" => Ok(Self::Lease),
            "linearizable" | "read_index" | "readindex" => Ok(Self::ReadIndex),
            other => Err(UnknownReadPolicy(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for p in [ReadPolicy::Stale, ReadPolicy::Lease, ReadPolicy::ReadIndex] {
            assert_eq!(p.as_str().parse::<ReadPolicy>(), Ok(p));
        }
        assert_eq!("strong".parse::<ReadPolicy>(), Err(UnknownReadPolicy("strong".into())));
    }
}
