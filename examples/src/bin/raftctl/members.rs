//! How `raftctl members` shows the `Members` answer: per server its
//! suffrage, address, match index, lag behind the leader, last contact and
//! whether it is catching up, and its autopilot health (from the leader's
//! view), as a table or JSON.

use raft_transport_grpc::admin::pb;
use serde_json::{json, Value};

use super::{suffrage, table};

/// The JSON form of a `Members` answer. Progress fields are `null` for
/// members the answering node has no progress for (it is not the leader).
pub(crate) fn members_json(r: &pb::MembersResponse) -> Value {
    let members: Vec<Value> = r
        .members
        .iter()
        .map(|m| {
            let known = m.has_progress || (m.leader && r.from_leader);
            let opt = |v: Value| if known { v } else { Value::Null };
            json!({
                "id": m.id,
                "address": m.address,
                "suffrage": suffrage(m.suffrage),
                "leader": m.leader,
                "match_index": opt(json!(m.match_index)),
                "lag": opt(json!(m.lag)),
                "last_contact_ms": if m.has_progress { json!(m.last_contact_ms) } else { Value::Null },
                "catching_up": opt(json!(m.catching_up)),
                "healthy": opt(json!(m.healthy)),
                "healthy_for_ms": opt(json!(m.healthy_for_ms)),
            })
        })
        .collect();
    json!({
        "configuration_index": r.configuration_index,
        "leader": if r.leader_id.is_empty() { Value::Null } else { json!({ "id": r.leader_id, "address": r.leader_address }) },
        "from_leader": r.from_leader,
        "answered_by": r.node_id,
        "last_index": r.last_index,
        "commit_index": r.commit_index,
        "members": members,
    })
}

/// The table form of a `Members` answer.
pub(crate) fn members_table(r: &pb::MembersResponse) -> String {
    let mut rows = vec![[
        "ID".to_owned(),
        "ADDRESS".into(),
        "SUFFRAGE".into(),
        "ROLE".into(),
        "MATCH".into(),
        "LAG".into(),
        "LAST CONTACT".into(),
        "STATE".into(),
        "HEALTH".into(),
    ]];
    for m in &r.members {
        let role = if m.leader { "leader" } else { "" };
        let (matched, lag, contact, state, health) = if m.leader && r.from_leader {
            (
                m.match_index.to_string(),
                "0".to_owned(),
                "-".to_owned(),
                "leading".to_owned(),
                "healthy".to_owned(),
            )
        } else if m.has_progress {
            let state = if m.catching_up { "catching up" } else { "up to date" };
            let health = if m.healthy {
                format!("healthy for {:.1}s", m.healthy_for_ms as f64 / 1000.0)
            } else {
                "unhealthy".to_owned()
            };
            (
                m.match_index.to_string(),
                m.lag.to_string(),
                format!("{}ms ago", m.last_contact_ms),
                state.into(),
                health,
            )
        } else {
            ("-".into(), "-".into(), "-".into(), "-".into(), "-".into())
        };
        rows.push([
            m.id.clone(),
            m.address.clone(),
            suffrage(m.suffrage).into(),
            role.into(),
            matched,
            lag,
            contact,
            state,
            health,
        ]);
    }
    let footer = if r.from_leader {
        format!(
            "configuration index {}; leader {} (last index {}, commit index {})",
            r.configuration_index, r.node_id, r.last_index, r.commit_index
        )
    } else if r.leader_id.is_empty() {
        format!(
            "configuration index {}; {} knows no leader, so replication progress is unknown",
            r.configuration_index, r.node_id
        )
    } else {
        format!(
            "configuration index {}; progress unknown: {} is not the leader (the leader is {} at {})",
            r.configuration_index, r.node_id, r.leader_id, r.leader_address
        )
    };
    format!("{}\n{footer}", table(&rows))
}
