//! Node and cluster identity in the stable store.
//!
//! The stable store records which node a data directory belongs to
//! ([`NODE_ID_KEY`]) and which cluster ([`CLUSTER_ID_KEY`]). At start
//! ([`check_on_start`]) a directory of another node, an explicit
//! [`Config::cluster_id`] that contradicts the stored one, or a log without
//! the hard state that must accompany it (a lost stable store: the node's
//! term and vote are gone) refuse to start with an error saying how to
//! recover. [`bootstrap_cluster`](super::startup::bootstrap_cluster) and
//! [`recover_cluster`](super::startup::recover_cluster) record both ids
//! ([`claim_for_bootstrap`]).
//!
//! How a node gets its cluster id, in order: the stored one; else
//! [`Config::cluster_id`]; else, at bootstrap, [`ClusterId::derive`] of the
//! bootstrap configuration (every server bootstrapped with the same
//! configuration agrees); else the id of the first leader that contacts it
//! (the main task adopts it, durably, before handling that leader's request).

use crate::config::Config;
use crate::error::{Error, StorageError};
use crate::storage::{LogStore, StableStore};
use crate::types::{ClusterId, Configuration, ServerId};

use super::HARD_STATE_KEY;

/// Stable-store key of the id of the node the store belongs to.
pub(crate) const NODE_ID_KEY: &[u8] = b"raft/node_id";
/// Stable-store key of the id of the cluster the node belongs to.
pub(crate) const CLUSTER_ID_KEY: &[u8] = b"raft/cluster_id";

/// Reads a stored id, refusing bytes that are not a valid id.
async fn load_str(stable: &dyn StableStore, key: &[u8]) -> Result<Option<String>, Error> {
    let Some(bytes) = stable.get(key).await? else { return Ok(None) };
    match String::from_utf8(bytes) {
        Ok(s) if !s.is_empty() => Ok(Some(s)),
        _ => Err(Error::Storage(StorageError::Corrupt {
            path: "stable store".into(),
            offset: 0,
            reason: format!("the value of key {} is not a valid id", String::from_utf8_lossy(key)),
        })),
    }
}

/// The node id recorded in the stable store, if any.
pub(crate) async fn stored_node_id(stable: &dyn StableStore) -> Result<Option<ServerId>, Error> {
    Ok(load_str(stable, NODE_ID_KEY).await?.map(ServerId::from))
}

/// The cluster id recorded in the stable store, if any.
pub(crate) async fn stored_cluster_id(stable: &dyn StableStore) -> Result<Option<ClusterId>, Error> {
    Ok(load_str(stable, CLUSTER_ID_KEY).await?.map(ClusterId::from))
}

/// Records the cluster id durably.
pub(crate) async fn store_cluster_id(stable: &dyn StableStore, id: &ClusterId) -> Result<(), StorageError> {
    stable.set(CLUSTER_ID_KEY, id.as_str().as_bytes()).await
}

/// Refuses a store that records another node id; records ours if none is.
async fn claim_node_id(config: &Config, stable: &dyn StableStore) -> Result<(), Error> {
    match stored_node_id(stable).await? {
        Some(stored) if stored != config.local_id => {
            tracing::error!(stored = %stored, configured = %config.local_id, "data directory belongs to another node");
            Err(Error::NodeIdMismatch { stored, configured: config.local_id.clone() })
        }
        Some(_) => Ok(()),
        None => Ok(stable.set(NODE_ID_KEY, config.local_id.as_str().as_bytes()).await?),
    }
}

/// Refuses an explicit [`Config::cluster_id`] that contradicts the stored
/// id; returns the id the node starts with (stored, else explicit).
fn resolve_cluster_id(config: &Config, stored: Option<ClusterId>) -> Result<Option<ClusterId>, Error> {
    match (stored, &config.cluster_id) {
        (Some(ours), Some(theirs)) if &ours != theirs => {
            tracing::error!(stored = %ours, configured = %theirs, "configured cluster id differs from the stored one");
            Err(Error::ClusterMismatch { ours, theirs: theirs.clone() })
        }
        (Some(ours), _) => Ok(Some(ours)),
        (None, explicit) => Ok(explicit.clone()),
    }
}

/// Checks the stores' identity before a node starts and returns the cluster
/// id it starts with (`None`: it adopts one from the first leader).
///
/// Refuses: a store of another node ([`Error::NodeIdMismatch`]); a stored
/// cluster id other than an explicit [`Config::cluster_id`]
/// ([`Error::ClusterMismatch`]); log entries without a hard
/// state (the stable store was lost, and with it the node's term and vote).
/// Records the node id (and an explicit cluster id) if the store has none,
/// which is how stores written before identity was recorded are upgraded.
pub(crate) async fn check_on_start(
    config: &Config,
    logs: &dyn LogStore,
    stable: &dyn StableStore,
) -> Result<Option<ClusterId>, Error> {
    if stable.get(HARD_STATE_KEY).await?.is_none() {
        let last = logs.last_index().await?;
        if last > 0 {
            let first = logs.first_index().await?;
            tracing::error!(first_index = first, last_index = last, "stable store lost but log present");
            return Err(Error::Storage(StorageError::Corrupt {
                path: "stable store".into(),
                offset: 0,
                reason: format!(
                    "no term or vote is stored but the log holds entries {first}..={last}: the \
                     stable store was lost, and with it the node's vote (starting would let it \
                     vote twice in a term). Restore the stable store from a backup, or wipe the \
                     whole data directory and rejoin the cluster as a new, empty node"
                ),
            }));
        }
    }
    claim_node_id(config, stable).await?;
    let stored = stored_cluster_id(stable).await?;
    let had_stored = stored.is_some();
    let id = resolve_cluster_id(config, stored)?;
    if let (false, Some(id)) = (had_stored, &id) {
        store_cluster_id(stable, id).await?;
    }
    Ok(id)
}

/// The cluster id for a node being bootstrapped (or recovered) with
/// `configuration`: the stored one, else [`Config::cluster_id`], else
/// derived from `configuration`.
pub(crate) async fn bootstrap_cluster_id(
    config: &Config,
    stable: &dyn StableStore,
    configuration: &Configuration,
) -> Result<ClusterId, Error> {
    let stored = stored_cluster_id(stable).await?;
    Ok(resolve_cluster_id(config, stored)?.unwrap_or_else(|| ClusterId::derive(configuration)))
}

/// Records the node id and the cluster id of a node bootstrapped or
/// recovered offline with `configuration`, so a later `Raft::new` accepts
/// the stores. Refuses a store of another node or another cluster.
pub(crate) async fn claim_for_bootstrap(
    config: &Config,
    stable: &dyn StableStore,
    configuration: &Configuration,
) -> Result<ClusterId, Error> {
    claim_node_id(config, stable).await?;
    let id = bootstrap_cluster_id(config, stable, configuration).await?;
    store_cluster_id(stable, &id).await?;
    Ok(id)
}

/// The text of the refusal a node sends for a request of another cluster;
/// [`parse_mismatch`] reads it back on the sender.
pub(crate) fn mismatch_message(ours: &ClusterId, theirs: &ClusterId) -> String {
    format!("{MISMATCH_PREFIX}{ours}, the request is from cluster {theirs}")
}

const MISMATCH_PREFIX: &str = "cluster mismatch: the receiver belongs to cluster ";

/// The receiver's and the sender's cluster ids named by a refusal made by
/// [`mismatch_message`], in that order.
pub(crate) fn parse_mismatch(message: &str) -> Option<(ClusterId, ClusterId)> {
    let rest = &message[message.find(MISMATCH_PREFIX)? + MISMATCH_PREFIX.len()..];
    let (receiver, sender) = rest.split_once(", the request is from cluster ")?;
    Some((ClusterId::from(receiver), ClusterId::from(sender)))
}

/// The refusal a removed server answers every request with; its sender
/// recognises it with [`is_removed_refusal`].
pub(crate) fn removed_message(id: &ServerId) -> String {
    format!(
        "{REMOVED_PREFIX}{id} was removed from the cluster and ignores requests; to add it again, stop it, \
         wipe its data directory and start it again"
    )
}

const REMOVED_PREFIX: &str = "removed server: ";

/// Whether a refusal was made by [`removed_message`].
pub(crate) fn is_removed_refusal(message: &str) -> bool {
    message.contains(REMOVED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_servers_refusal_is_recognised_through_a_transports_wrapping() {
        let msg = format!("InvalidArgument: {}", removed_message(&ServerId::from("n3")));
        assert!(is_removed_refusal(&msg));
        assert!(!is_removed_refusal("rpc rejected: request ignored by the receiver"));
    }

    #[test]
    fn mismatch_message_round_trips() {
        let (a, b) = (ClusterId::from("alpha"), ClusterId::from("beta-2"));
        let msg = format!("rpc rejected: {}", mismatch_message(&a, &b));
        assert_eq!(parse_mismatch(&msg), Some((a, b)));
        assert_eq!(parse_mismatch("rpc rejected: request ignored by the receiver"), None);
    }
}
