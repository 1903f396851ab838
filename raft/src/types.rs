//! Plain data types shared by every layer: server identities, cluster
//! configurations, log entries, and the node's externally visible state.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The unique, permanent identity of a server.
///
/// Cheap to clone (a shared string): ids travel in every message.
///
/// An id must never be reused for a different server: Raft's safety relies on
/// a vote or a log acknowledgement from an id meaning the same disk every time.
///
/// ```
/// use raft::ServerId;
/// let id = ServerId::from("node-1");
/// assert_eq!(id.to_string(), "node-1");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct ServerId(Arc<str>);

impl ServerId {
    /// Creates an id from anything string-like.
    pub fn new(id: impl Into<String>) -> Self {
        Self(Arc::from(id.into()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ServerId {
    fn from(s: &str) -> Self {
        Self(Arc::from(s))
    }
}

impl From<String> for ServerId {
    fn from(s: String) -> Self {
        Self(Arc::from(s))
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The address a transport uses to reach a server (for gRPC, `host:port`).
///
/// ```
/// use raft::ServerAddress;
/// let addr = ServerAddress::from("127.0.0.1:7000");
/// assert_eq!(addr.as_str(), "127.0.0.1:7000");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct ServerAddress(Arc<str>);

impl ServerAddress {
    /// Creates an address from anything string-like.
    pub fn new(addr: impl Into<String>) -> Self {
        Self(Arc::from(addr.into()))
    }

    /// The address as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ServerAddress {
    fn from(s: &str) -> Self {
        Self(Arc::from(s))
    }
}

impl From<String> for ServerAddress {
    fn from(s: String) -> Self {
        Self(Arc::from(s))
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity of a cluster. Every RPC carries the sender's, and a node
/// refuses RPCs from another cluster, so pointing a node of one cluster at
/// another cluster's server cannot disturb it.
///
/// A node gets its id once and keeps it in its stable store: from
/// [`Config::cluster_id`](crate::Config::cluster_id) when set, else derived
/// from the bootstrap configuration ([`ClusterId::derive`]), else adopted
/// from the first leader that contacts it.
///
/// ```
/// use raft::ClusterId;
/// let id: ClusterId = "payments-prod".parse().unwrap();
/// assert_eq!(id.to_string(), "payments-prod");
/// assert!("".parse::<ClusterId>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClusterId(Arc<str>);

impl ClusterId {
    /// Creates an id from anything string-like. Prefer [`str::parse`], which
    /// refuses an empty or over-long id; this does not check.
    pub fn new(id: impl Into<String>) -> Self {
        Self(Arc::from(id.into()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id every server bootstrapped with `configuration` derives: a
    /// 128-bit hash of its members (id, address and suffrage, in id order,
    /// so the listing order does not matter), as 32 hex digits. Servers
    /// that all bootstrap with the same configuration agree on it; clusters
    /// with different members differ.
    ///
    /// ```
    /// use raft::{ClusterId, Configuration, Server};
    /// let a = Configuration::new(vec![Server::voter("n1", "h1:1"), Server::voter("n2", "h2:1")]);
    /// let b = Configuration::new(vec![Server::voter("n2", "h2:1"), Server::voter("n1", "h1:1")]);
    /// assert_eq!(ClusterId::derive(&a), ClusterId::derive(&b));
    /// let c = Configuration::new(vec![Server::voter("n1", "h1:1")]);
    /// assert_ne!(ClusterId::derive(&a), ClusterId::derive(&c));
    /// ```
    pub fn derive(configuration: &Configuration) -> Self {
        let mut servers: Vec<&Server> = configuration.servers.iter().collect();
        servers.sort_by(|a, b| a.id.cmp(&b.id));
        // Two independent FNV-1a-64 streams over a length-prefixed encoding:
        // stable across platforms and releases (unlike `std`'s hasher).
        let mut h = [0xcbf2_9ce4_8422_2325u64, 0x6c62_272e_07bb_0142u64];
        let mut feed = |bytes: &[u8]| {
            for chunk in [&(bytes.len() as u64).to_be_bytes()[..], bytes] {
                for &b in chunk {
                    h[0] = (h[0] ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
                    h[1] = (h[1] ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(5);
                }
            }
        };
        for s in servers {
            feed(s.id.as_str().as_bytes());
            feed(s.address.as_str().as_bytes());
            feed(match s.suffrage {
                Suffrage::Voter => b"voter",
                Suffrage::Nonvoter => b"nonvoter",
                Suffrage::IncomingVoter => b"incoming-voter",
                Suffrage::DemotingVoter => b"demoting-voter",
                Suffrage::LeavingVoter => b"leaving-voter",
            });
        }
        Self::new(format!("{:016x}{:016x}", h[0], h[1]))
    }
}

/// Longest accepted [`ClusterId`], in bytes.
pub(crate) const MAX_CLUSTER_ID_LEN: usize = 256;

impl std::str::FromStr for ClusterId {
    type Err = String;

    /// Parses an id: not empty, at most 256 bytes, no control characters.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("cluster id must not be empty".into());
        }
        if s.len() > MAX_CLUSTER_ID_LEN {
            return Err(format!(
                "cluster id is {} bytes long; at most {MAX_CLUSTER_ID_LEN} allowed",
                s.len()
            ));
        }
        if s.chars().any(char::is_control) {
            return Err("cluster id must not contain control characters".into());
        }
        Ok(Self::new(s))
    }
}

impl From<&str> for ClusterId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for ClusterId {
    fn from(s: String) -> Self {
        Self(Arc::from(s))
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a server's vote counts towards elections and commitment.
///
/// The last three variants appear only in a *joint* configuration
/// (C_old,new, Raft thesis §4.3 and the Raft paper §6), the step between
/// two configurations whose voter sets differ in more than one server.
/// They say how the server votes in each half: while a joint configuration
/// is the latest one, every decision (commit, election, pre-vote, ReadIndex,
/// check-quorum) needs a majority of the old voters ([`Voter`],
/// [`DemotingVoter`], [`LeavingVoter`]) *and* a majority of the new voters
/// ([`Voter`], [`IncomingVoter`]). See [`Configuration::is_joint`].
///
/// Encoding: the variants are appended after the original two, so
/// configurations written before joint consensus existed (log entries and
/// snapshot metadata encoded with [`crate::codec`]) decode unchanged.
///
/// [`Voter`]: Suffrage::Voter
/// [`DemotingVoter`]: Suffrage::DemotingVoter
/// [`LeavingVoter`]: Suffrage::LeavingVoter
/// [`IncomingVoter`]: Suffrage::IncomingVoter
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Suffrage {
    /// Receives log entries and is counted in every quorum (in a joint
    /// configuration: a voter of both the old and the new configuration).
    Voter,
    /// Receives log entries but never votes or counts towards commitment.
    Nonvoter,
    /// Joint configurations only: a voter of the new configuration that
    /// does not vote in the old one (being added or promoted).
    IncomingVoter,
    /// Joint configurations only: a voter of the old configuration that
    /// stays as a non-voter in the new one (being demoted).
    DemotingVoter,
    /// Joint configurations only: a voter of the old configuration that
    /// the new one no longer includes (being removed).
    LeavingVoter,
}

impl Suffrage {
    /// Whether the server votes in the old half (for a configuration that
    /// is not joint: whether it votes at all).
    pub fn votes_in_old(self) -> bool {
        matches!(self, Suffrage::Voter | Suffrage::DemotingVoter | Suffrage::LeavingVoter)
    }

    /// Whether the server votes in the new half (for a configuration that
    /// is not joint: whether it votes at all).
    pub fn votes_in_new(self) -> bool {
        matches!(self, Suffrage::Voter | Suffrage::IncomingVoter)
    }

    /// Whether the variant only exists in joint configurations.
    pub fn is_joint(self) -> bool {
        matches!(self, Suffrage::IncomingVoter | Suffrage::DemotingVoter | Suffrage::LeavingVoter)
    }
}

impl fmt::Display for Suffrage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Suffrage::Voter => "voter",
            Suffrage::Nonvoter => "nonvoter",
            Suffrage::IncomingVoter => "incoming-voter",
            Suffrage::DemotingVoter => "demoting-voter",
            Suffrage::LeavingVoter => "leaving-voter",
        })
    }
}

/// One member of a cluster configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Server {
    /// Whether this server votes.
    pub suffrage: Suffrage,
    /// The server's permanent identity.
    pub id: ServerId,
    /// Where the transport reaches it.
    pub address: ServerAddress,
}

impl Server {
    /// A voting member.
    pub fn voter(id: impl Into<ServerId>, address: impl Into<ServerAddress>) -> Self {
        Self { suffrage: Suffrage::Voter, id: id.into(), address: address.into() }
    }

    /// A non-voting member.
    pub fn nonvoter(id: impl Into<ServerId>, address: impl Into<ServerAddress>) -> Self {
        Self { suffrage: Suffrage::Nonvoter, id: id.into(), address: address.into() }
    }
}

/// The set of servers in a cluster.
///
/// Invariant (checked by [`Configuration::validate`]): ids and addresses are
/// unique and there is at least one voter (in a joint configuration, at
/// least one in each half).
///
/// A configuration is *joint* (C_old,new) when a member has one of the
/// joint suffrages ([`Suffrage::IncomingVoter`], [`Suffrage::DemotingVoter`],
/// [`Suffrage::LeavingVoter`]): it then stands for two voter sets at once,
/// [`Configuration::old_voters`] and [`Configuration::new_voters`]. A
/// leader leaves it automatically by appending the configuration
/// [`Configuration::leave_joint`] returns once the joint entry commits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Configuration {
    /// Every member, voters and non-voters.
    pub servers: Vec<Server>,
}

impl Configuration {
    /// Creates a configuration from its members.
    pub fn new(servers: Vec<Server>) -> Self {
        Self { servers }
    }

    /// Checks that ids and addresses are unique and at least one voter exists.
    pub fn validate(&self) -> Result<(), String> {
        let mut ids = std::collections::HashSet::new();
        let mut addrs = std::collections::HashSet::new();
        for s in &self.servers {
            if s.id.as_str().is_empty() {
                return Err("server id must not be empty".into());
            }
            if !ids.insert(&s.id) {
                return Err(format!("duplicate server id {}", s.id));
            }
            if !addrs.insert(&s.address) {
                return Err(format!("duplicate server address {}", s.address));
            }
        }
        if !self.servers.iter().any(|s| s.suffrage.votes_in_old()) {
            return Err("configuration has no voter".into());
        }
        if self.is_joint() && !self.servers.iter().any(|s| s.suffrage.votes_in_new()) {
            return Err("joint configuration has no voter in its new half".into());
        }
        Ok(())
    }

    /// Whether this is a joint configuration (C_old,new): a member votes
    /// in only one of its halves.
    pub fn is_joint(&self) -> bool {
        self.servers.iter().any(|s| s.suffrage.is_joint())
    }

    /// Ids of the voters of the old half, in configuration order (for a
    /// configuration that is not joint: all voters).
    pub fn old_voters(&self) -> impl Iterator<Item = &ServerId> {
        self.servers.iter().filter(|s| s.suffrage.votes_in_old()).map(|s| &s.id)
    }

    /// Ids of the voters of the new half, in configuration order (for a
    /// configuration that is not joint: all voters).
    pub fn new_voters(&self) -> impl Iterator<Item = &ServerId> {
        self.servers.iter().filter(|s| s.suffrage.votes_in_new()).map(|s| &s.id)
    }

    /// Whether `id` votes in the new half (for a configuration that is not
    /// joint: whether it is a voter).
    pub fn is_new_voter(&self, id: &ServerId) -> bool {
        self.server(id).is_some_and(|s| s.suffrage.votes_in_new())
    }

    /// The configuration a joint one leads to (C_new): incoming voters
    /// become voters, demoting voters non-voters, leaving voters are
    /// dropped. A configuration that is not joint is returned unchanged.
    pub fn leave_joint(&self) -> Configuration {
        let servers = self
            .servers
            .iter()
            .filter_map(|s| {
                let suffrage = match s.suffrage {
                    Suffrage::Voter | Suffrage::IncomingVoter => Suffrage::Voter,
                    Suffrage::Nonvoter | Suffrage::DemotingVoter => Suffrage::Nonvoter,
                    Suffrage::LeavingVoter => return None,
                };
                Some(Server { suffrage, ..s.clone() })
            })
            .collect();
        Configuration { servers }
    }

    /// The member with this id, if any.
    pub fn server(&self, id: &ServerId) -> Option<&Server> {
        self.servers.iter().find(|s| &s.id == id)
    }

    /// Whether `id` is a voter in this configuration (in a joint
    /// configuration: in either half).
    pub fn is_voter(&self, id: &ServerId) -> bool {
        self.server(id).is_some_and(|s| s.suffrage.votes_in_old() || s.suffrage.votes_in_new())
    }

    /// Ids of the voters, in configuration order (in a joint configuration:
    /// of either half; quorums are counted per half, see
    /// [`Configuration::old_voters`] and [`Configuration::new_voters`]).
    pub fn voters(&self) -> impl Iterator<Item = &ServerId> {
        self.servers.iter().filter(|s| s.suffrage.votes_in_old() || s.suffrage.votes_in_new()).map(|s| &s.id)
    }
}

/// What a log entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LogType {
    /// A user command, applied to the [`Fsm`](crate::Fsm).
    Command,
    /// Appended by every new leader to commit entries of earlier terms.
    Noop,
    /// Appended by [`Raft::barrier`](crate::Raft::barrier); not given to the FSM.
    Barrier,
    /// A new cluster [`Configuration`], encoded with [`crate::codec`].
    Configuration,
}

/// One replicated log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Log {
    /// Position in the log, starting at 1.
    pub index: u64,
    /// Term of the leader that created the entry.
    pub term: u64,
    /// What the entry carries.
    pub log_type: LogType,
    /// The payload: the command for [`LogType::Command`], the encoded
    /// configuration for [`LogType::Configuration`], empty otherwise.
    pub data: Bytes,
}

impl Log {
    /// Creates an entry.
    pub fn new(index: u64, term: u64, log_type: LogType, data: impl Into<Bytes>) -> Self {
        Self { index, term, log_type, data: data.into() }
    }
}

/// What a log entry is, without its payload: enough for the protocol core
/// to know the log's shape (terms, configuration entries, sizes) while the
/// payload stays in the [`LogStore`](crate::LogStore). Returned by
/// [`LogStore::entry_meta`](crate::LogStore::entry_meta).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogEntryMeta {
    /// Position in the log.
    pub index: u64,
    /// Term of the leader that created the entry.
    pub term: u64,
    /// What the entry carries.
    pub log_type: LogType,
    /// Length of the entry's payload (`data`) in bytes.
    pub size: u64,
}

impl LogEntryMeta {
    /// The metadata of `entry`.
    pub fn of(entry: &Log) -> Self {
        Self { index: entry.index, term: entry.term, log_type: entry.log_type, size: entry.data.len() as u64 }
    }
}

/// The role a node currently plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RaftState {
    /// Accepts entries from a leader.
    Follower,
    /// Running an election (or a pre-vote round).
    Candidate,
    /// Accepts writes and replicates them.
    Leader,
    /// Stopped; every call returns [`Error::Shutdown`](crate::Error::Shutdown).
    Shutdown,
    /// Terminal: this server learned that it was removed from the cluster's
    /// configuration. It no longer campaigns or answers peers, and every
    /// call returns [`Error::Removed`](crate::Error::Removed). To serve
    /// again it must be stopped, its data directory wiped, and then joined
    /// as a new server.
    Removed,
}

impl fmt::Display for RaftState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            RaftState::Follower => "Follower",
            RaftState::Candidate => "Candidate",
            RaftState::Leader => "Leader",
            RaftState::Shutdown => "Shutdown",
            RaftState::Removed => "Removed",
        };
        f.write_str(s)
    }
}

/// The durable part of a node's state besides its log.
///
/// Invariant: `term` never decreases, and `vote` is only ever set once per
/// term; both are durable before any message that depends on them is sent.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: u64,
    /// Who this node voted for in `term`, if anyone.
    pub vote: Option<ServerId>,
}

/// Describes a stored snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Store-assigned identifier, unique within the store.
    pub id: String,
    /// Index of the last entry the snapshot includes.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// The latest configuration at `index`.
    pub configuration: Configuration,
    /// Index of the entry that carried `configuration`.
    pub configuration_index: u64,
    /// Size of the snapshot data in bytes.
    pub size: u64,
}

impl SnapshotMeta {
    /// The log position the snapshot covers (everything but its id and
    /// size).
    pub fn position(&self) -> SnapshotPosition {
        SnapshotPosition {
            index: self.index,
            term: self.term,
            configuration: self.configuration.clone(),
            configuration_index: self.configuration_index,
        }
    }
}

/// A position in the log as a snapshot sees it: the last entry it covers
/// and the cluster configuration in force there.
///
/// This is what the state machine reflects after applying (or restoring)
/// up to `index`, and what a node needs to restart from a compacted log.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SnapshotPosition {
    /// Index of the last entry covered.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// The latest configuration at `index`.
    pub configuration: Configuration,
    /// Index of the entry that carried `configuration`.
    pub configuration_index: u64,
}
