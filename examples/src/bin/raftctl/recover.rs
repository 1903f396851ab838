//! `raftctl recover`: HashiCorp's `peers.json` recovery for a `kv` node
//! whose cluster lost its quorum for good, over [`raft::recover_cluster`].
//!
//! Offline: the node must be stopped (its data directory is locked while
//! it runs, and recover refuses a locked one). It opens the node's stores
//! exactly as `kv serve` does (`DIR/raft`: a `FileStore`; `DIR/snapshots`:
//! a `FileSnapshotStore`), replays the node's state through the kv FSM,
//! writes a snapshot of it carrying the configuration of `peers.json`, and
//! appends that configuration in a new term. `--dry-run` prints the
//! configuration it would write and changes nothing.
//!
//! # peers.json
//!
//! A JSON array with one object per surviving server (HashiCorp's v3
//! format); `non_voter` is optional and defaults to `false`:
//!
//! ```json
//! [
//!   { "id": "n1", "address": "10.0.0.1:7001", "non_voter": false },
//!   { "id": "n2", "address": "10.0.0.2:7001" }
//! ]
//! ```
//!
//! Every survivor gets the same file, must be listed in it, and at least
//! one server must vote. Unknown fields are refused (a misspelt
//! `nonvoter` would otherwise make a voter).

use std::path::Path;

use raft::{Config, Configuration, LogStore, Server, ServerId};
use raft_examples::kv::KvFsm;
use raft_store_file::{FileSnapshotStore, FileStore};
use serde::Deserialize;
use serde_json::{json, Value};

/// Snapshots kept on disk: the number `kv serve` keeps.
const SNAPSHOTS_RETAINED: usize = 2;

/// One server of `peers.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Peer {
    id: String,
    address: String,
    #[serde(default)]
    non_voter: bool,
}

/// The configuration `peers.json` describes; refuses an empty list, empty
/// or repeated ids, empty addresses and a list without a voter.
pub(crate) fn parse_peers(text: &str) -> Result<Configuration, String> {
    let peers: Vec<Peer> = serde_json::from_str(text).map_err(|e| {
        format!("not a peers.json array of {{\"id\", \"address\", \"non_voter\"}} objects: {e}")
    })?;
    if peers.is_empty() {
        return Err("the list of peers is empty: list every surviving server".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut servers = Vec::with_capacity(peers.len());
    for (i, p) in peers.into_iter().enumerate() {
        let (id, address) = (p.id.trim(), p.address.trim());
        if id.is_empty() {
            return Err(format!("peer {i}: the id is empty"));
        }
        if address.is_empty() {
            return Err(format!("peer {id}: the address is empty"));
        }
        if !seen.insert(id.to_owned()) {
            return Err(format!("peer {id} is listed twice"));
        }
        servers.push(if p.non_voter { Server::nonvoter(id, address) } else { Server::voter(id, address) });
    }
    if servers.iter().all(|s| s.suffrage != raft::Suffrage::Voter) {
        return Err("no peer is a voter: at least one must have \"non_voter\": false".into());
    }
    let configuration = Configuration::new(servers);
    configuration.validate().map_err(|e| format!("invalid configuration: {e}"))?;
    Ok(configuration)
}

/// The JSON form of `configuration` (peers.json's shape).
pub(crate) fn configuration_json(configuration: &Configuration) -> Value {
    configuration
        .servers
        .iter()
        .map(|s| {
            json!({ "id": s.id.as_str(), "address": s.address.as_str(),
                    "non_voter": s.suffrage != raft::Suffrage::Voter })
        })
        .collect()
}

/// Runs the recovery (or its dry run); returns the JSON report and its
/// human form.
pub(crate) async fn recover(
    data_dir: &Path,
    peers: &Path,
    id: Option<&str>,
    cluster_id: Option<&str>,
    dry_run: bool,
) -> Result<(Value, String), String> {
    let text = std::fs::read_to_string(peers).map_err(|e| format!("cannot read {}: {e}", peers.display()))?;
    let configuration = parse_peers(&text).map_err(|e| format!("{}: {e}", peers.display()))?;
    let (log_dir, snap_dir) = (data_dir.join("raft"), data_dir.join("snapshots"));
    for dir in [&log_dir, &snap_dir] {
        if !dir.is_dir() {
            return Err(format!(
                "{} does not exist: is {} the --data-dir of a kv node?",
                dir.display(),
                data_dir.display()
            ));
        }
    }
    let store = FileStore::open(&log_dir).await.map_err(|e| {
        format!(
            "cannot open the log in {}: {e} (is the node still running? stop it first)",
            log_dir.display()
        )
    })?;
    let snaps = FileSnapshotStore::new(&snap_dir, SNAPSHOTS_RETAINED)
        .await
        .map_err(|e| format!("cannot open the snapshots in {}: {e}", snap_dir.display()))?;
    if !raft::has_existing_state(&store, &store, &snaps).await.map_err(|e| e.to_string())? {
        return Err(format!(
            "{} holds no raft state: nothing to recover (a new node is bootstrapped or joins instead)",
            data_dir.display()
        ));
    }
    let stored = raft::stored_node_id(&store).await.map_err(|e| e.to_string())?;
    let local_id = match (id, stored) {
        (Some(given), Some(stored)) if stored.as_str() != given => {
            return Err(format!("{} belongs to node {stored}, not {given}", data_dir.display()));
        }
        (Some(given), _) => ServerId::from(given),
        (None, Some(stored)) => stored,
        (None, None) => {
            return Err(format!("{} records no node id: pass --id with the node's id", data_dir.display()))
        }
    };
    if !configuration.servers.iter().any(|s| s.id == local_id) {
        return Err(format!(
            "this node ({local_id}) is not in {}: list every survivor, this one included",
            peers.display()
        ));
    }
    let last_index = store.last_index().await.map_err(|e| e.to_string())?;
    let members = configuration_json(&configuration);
    let listing = configuration
        .servers
        .iter()
        .map(|s| {
            format!(
                "  {} {} ({})",
                s.id,
                s.address,
                if s.suffrage == raft::Suffrage::Voter { "voter" } else { "non-voter" }
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    if dry_run {
        let value = json!({ "dry_run": true, "id": local_id.as_str(), "data_dir": data_dir,
                            "last_index": last_index, "configuration": members });
        let human = format!(
            "dry run: nothing was changed.\nrecovering node {local_id} ({}, log up to index {last_index}) \
             would write this configuration:\n{listing}",
            data_dir.display()
        );
        return Ok((value, human));
    }
    let config = Config {
        local_id: local_id.clone(),
        cluster_id: cluster_id
            .map(str::parse::<raft::ClusterId>)
            .transpose()
            .map_err(|e| format!("--cluster-id: {e}"))?,
        ..Config::default()
    };
    raft::recover_cluster(&config, KvFsm::new(), &store, &store, &snaps, configuration)
        .await
        .map_err(|e| format!("recovery of {local_id} failed: {e}"))?;
    let index = store.last_index().await.map_err(|e| e.to_string())?;
    let term = store.get_log(index).await.map_err(|e| e.to_string())?.map(|l| l.term).unwrap_or(0);
    let value = json!({ "dry_run": false, "id": local_id.as_str(), "data_dir": data_dir,
                        "configuration_index": index, "term": term, "configuration": members });
    let human = format!(
        "recovered node {local_id}: wrote this configuration at index {index} (term {term}):\n{listing}\n\
         run the same recovery on every other survivor, then start them normally"
    );
    Ok((value, human))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_json_in_hashicorps_format_parses() {
        let c = parse_peers(
            r#"[{"id":"n1","address":"a:1","non_voter":false},{"id":"n2","address":"a:2"},
                {"id":"n3","address":"a:3","non_voter":true}]"#,
        )
        .expect("valid");
        assert_eq!(
            c.servers,
            vec![Server::voter("n1", "a:1"), Server::voter("n2", "a:2"), Server::nonvoter("n3", "a:3")]
        );
        assert_eq!(configuration_json(&c)[2], json!({ "id": "n3", "address": "a:3", "non_voter": true }));
    }

    #[test]
    fn malformed_peers_are_refused_with_a_reason() {
        for (text, reason) in [
            ("[]", "empty"),
            ("{}", "not a peers.json array"),
            (r#"[{"id":"","address":"a:1"}]"#, "id is empty"),
            (r#"[{"id":"n1","address":""}]"#, "address is empty"),
            (r#"[{"id":"n1","address":"a:1"},{"id":"n1","address":"a:2"}]"#, "listed twice"),
            (r#"[{"id":"n1","address":"a:1","non_voter":true}]"#, "no peer is a voter"),
            (r#"[{"id":"n1","address":"a:1","nonvoter":true}]"#, "unknown field"),
        ] {
            let err = parse_peers(text).expect_err(text);
            assert!(err.contains(reason), "{text}: {err}");
        }
    }
}
