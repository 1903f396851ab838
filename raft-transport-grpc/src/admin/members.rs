//! The `Members` answer: the configuration with the leader's view of each
//! member's replication (match index, lag, last contact, catching up,
//! autopilot health),
//! built from a node's [`Metrics`].

use std::collections::BTreeMap;

use raft::{Configuration, Metrics, PeerMetrics, RaftState, ServerAddress, ServerId};

use super::pb;
use super::service::members as pb_members;

/// The `Members` answer of a node whose metrics are `metrics`.
///
/// On the leader every other member gets its progress: its match and next
/// index, its lag behind the leader's last log index, how long ago it
/// answered, and whether it is catching up (its match index is below the
/// leader's commit index: it lacks committed entries). On other nodes only
/// the configuration and the leader's identity are given.
pub(crate) fn from_metrics(metrics: &Metrics) -> pb::MembersResponse {
    from_view(&View {
        id: &metrics.id,
        state: metrics.state,
        current_leader: metrics.current_leader.as_ref(),
        configuration: &metrics.configuration,
        configuration_index: metrics.configuration_index,
        last_log_index: metrics.last_log_index,
        commit_index: metrics.commit_index,
        peers: &metrics.peers,
    })
}

/// The parts of [`Metrics`] the answer is made of.
struct View<'a> {
    id: &'a ServerId,
    state: RaftState,
    current_leader: Option<&'a (ServerId, ServerAddress)>,
    configuration: &'a Configuration,
    configuration_index: u64,
    last_log_index: u64,
    commit_index: u64,
    peers: &'a BTreeMap<ServerId, PeerMetrics>,
}

fn from_view(metrics: &View<'_>) -> pb::MembersResponse {
    let from_leader = metrics.state == RaftState::Leader;
    let leader = metrics.current_leader;
    let mut response = skeleton(metrics.configuration, metrics.configuration_index, leader);
    response.from_leader = from_leader;
    response.node_id = metrics.id.to_string();
    response.last_index = metrics.last_log_index;
    response.commit_index = metrics.commit_index;
    if !from_leader {
        return response;
    }
    for member in &mut response.members {
        if member.id == metrics.id.as_str() {
            member.leader = true;
            member.healthy = true;
            member.match_index = metrics.last_log_index;
            member.next_index = metrics.last_log_index + 1;
            continue;
        }
        let Some(peer) = metrics.peers.get(&ServerId::from(member.id.as_str())) else { continue };
        member.has_progress = true;
        member.match_index = peer.match_index;
        member.next_index = peer.next_index;
        member.lag = metrics.last_log_index.saturating_sub(peer.match_index);
        member.last_contact_ms = u64::try_from(peer.last_contact.as_millis()).unwrap_or(u64::MAX);
        member.catching_up = peer.match_index < metrics.commit_index;
        member.healthy = peer.healthy;
        member.healthy_for_ms = u64::try_from(peer.healthy_for.as_millis()).unwrap_or(u64::MAX);
    }
    response
}

/// The members of `configuration` without progress; `leader` marks the
/// leader.
pub(crate) fn skeleton(
    configuration: &Configuration,
    index: u64,
    leader: Option<&(ServerId, ServerAddress)>,
) -> pb::MembersResponse {
    let members = pb_members(configuration)
        .into_iter()
        .map(|m| pb::MemberProgress {
            leader: leader.is_some_and(|(id, _)| id.as_str() == m.id),
            id: m.id,
            address: m.address,
            suffrage: m.suffrage,
            ..pb::MemberProgress::default()
        })
        .collect();
    let (leader_id, leader_address) =
        leader.map(|(id, addr)| (id.to_string(), addr.to_string())).unwrap_or_default();
    pb::MembersResponse {
        members,
        configuration_index: index,
        leader_id,
        leader_address,
        ..pb::MembersResponse::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use raft::Server;

    use super::*;

    struct Owned {
        id: ServerId,
        leader: (ServerId, ServerAddress),
        configuration: Configuration,
        peers: BTreeMap<ServerId, PeerMetrics>,
    }

    fn owned(id: &str) -> Owned {
        let peer = |match_index, ms| PeerMetrics {
            match_index,
            next_index: match_index + 1,
            last_contact: Duration::from_millis(ms),
            log_resets: 0,
            healthy: ms < 10,
            healthy_for: Duration::from_millis(if ms < 10 { 1500 } else { 0 }),
            lag: 0,
        };
        Owned {
            id: id.into(),
            leader: ("n1".into(), "a1".into()),
            configuration: Configuration::new(vec![
                Server::voter("n1", "a1"),
                Server::voter("n2", "a2"),
                Server::nonvoter("n3", "a3"),
            ]),
            peers: [("n2".into(), peer(95, 12)), ("n3".into(), peer(40, 7))].into_iter().collect(),
        }
    }

    fn view(o: &Owned, state: RaftState) -> View<'_> {
        View {
            id: &o.id,
            state,
            current_leader: Some(&o.leader),
            configuration: &o.configuration,
            configuration_index: 3,
            last_log_index: 100,
            commit_index: 90,
            peers: &o.peers,
        }
    }

    #[test]
    fn the_leader_reports_lag_contact_and_catching_up() {
        let o = owned("n1");
        let r = from_view(&view(&o, RaftState::Leader));
        assert!(r.from_leader);
        assert_eq!((r.leader_id.as_str(), r.configuration_index), ("n1", 3));
        let get = |id: &str| r.members.iter().find(|m| m.id == id).expect("member").clone();
        let (n1, n2, n3) = (get("n1"), get("n2"), get("n3"));
        assert!(n1.leader && !n1.has_progress && n1.lag == 0 && !n1.catching_up);
        assert_eq!((n2.match_index, n2.lag, n2.last_contact_ms, n2.catching_up), (95, 5, 12, false));
        assert_eq!((n3.match_index, n3.lag, n3.last_contact_ms, n3.catching_up), (40, 60, 7, true));
        assert_eq!(n3.suffrage, pb::MemberSuffrage::Nonvoter as i32);
        assert!(n1.healthy, "the leader is healthy");
        assert_eq!((n2.healthy, n2.healthy_for_ms), (false, 0));
        assert_eq!((n3.healthy, n3.healthy_for_ms), (true, 1500));
    }

    #[test]
    fn a_follower_names_the_leader_without_progress() {
        let o = owned("n2");
        let r = from_view(&view(&o, RaftState::Follower));
        assert!(!r.from_leader);
        assert_eq!(r.leader_address, "a1");
        assert!(r.members.iter().all(|m| !m.has_progress && m.lag == 0 && !m.catching_up));
        assert!(r.members.iter().any(|m| m.id == "n1" && m.leader));
    }
}
