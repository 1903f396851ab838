//! Table tests for majority and joint quorums (Raft paper §5.3 commitment,
//! §5.2 elections, §6 / thesis §4.3 joint consensus).

use std::collections::BTreeMap;

use super::{Quorum, VoteResult};
use crate::types::{Configuration, Server, ServerId};

/// `"a=5 b=3"` → match indexes by id (ids absent from the map are unknown).
fn indexes(spec: &str) -> BTreeMap<ServerId, u64> {
    spec.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("id=index");
            (ServerId::from(k), v.parse().expect("index"))
        })
        .collect()
}

/// `"a=y b=n"` → votes by id (absent: not answered).
fn votes(spec: &str) -> BTreeMap<ServerId, bool> {
    spec.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("id=y|n");
            (ServerId::from(k), v == "y")
        })
        .collect()
}

fn sets(old: &str, new: Option<&str>) -> Quorum {
    let o: Vec<&str> = old.split_whitespace().collect();
    let n: Option<Vec<&str>> = new.map(|n| n.split_whitespace().collect());
    Quorum::from_sets(&o, n.as_deref())
}

// §5.3: an entry is committed once a majority of voters hold it; the
// committed index is the one the (n/2+1)-th highest match index reaches.
#[test]
fn s5_3_majority_committed_index_table() {
    let cases: &[(&str, &str, u64)] = &[
        // voters, match indexes, committed
        ("a", "a=7", 7),
        ("a", "", 0),
        ("a b", "a=5 b=3", 3),
        ("a b", "a=5", 0),
        ("a b c", "a=5 b=3 c=1", 3),
        ("a b c", "a=5 b=5", 5),
        ("a b c", "a=9", 0),
        ("a b c d", "a=9 b=8 c=7 d=6", 7),
        ("a b c d", "a=9 b=8", 0),
        ("a b c d e", "a=9 b=8 c=7", 7),
        ("a b c d e", "a=1 b=2 c=3 d=4 e=5", 3),
        // Match indexes of non-voters never count.
        ("a b c", "a=9 x=9 y=9", 0),
    ];
    for (voters, matched, want) in cases {
        let m = indexes(matched);
        let got = sets(voters, None).committed_index(|id| m.get(id).copied());
        assert_eq!(got, *want, "voters [{voters}] match [{matched}]");
    }
}

// §6 / thesis §4.3: while joint, an entry commits only once a majority of
// the old voters AND a majority of the new voters hold it: the joint
// committed index is the smaller of the two.
#[test]
fn s6_joint_committed_index_is_the_smaller_half_table() {
    let cases: &[(&str, &str, &str, u64)] = &[
        // old, new, match indexes, committed
        ("a b c", "a b c", "a=5 b=4 c=3", 4),
        ("a b c", "c d e", "a=9 b=9 c=1 d=1 e=1", 1),
        ("a b c", "c d e", "a=9 b=9 c=5 d=5 e=1", 5),
        ("a b c", "d e f", "a=9 b=9 c=9", 0),
        ("a b c", "d e f", "a=9 b=9 d=7 e=6", 6),
        // The old half lags: it decides.
        ("a b c", "c d e", "a=1 b=1 c=5 d=5 e=5", 1),
        ("a b c", "d e f", "a=2 b=3 d=8 e=8 f=8", 2),
        // Shared voter counts in both halves.
        ("a b", "b c", "b=4", 0),
        ("a b", "b c", "a=4 b=4 c=2", 2),
        // A one-voter old half next to a three-voter new half.
        ("a", "a b c", "a=9 b=3", 3),
        ("a", "a b c", "a=9", 0),
    ];
    for (old, new, matched, want) in cases {
        let m = indexes(matched);
        let got = sets(old, Some(new)).committed_index(|id| m.get(id).copied());
        assert_eq!(got, *want, "old [{old}] new [{new}] match [{matched}]");
    }
}

// §5.2: a candidate wins with a majority of grants, loses once a majority
// refused, and waits otherwise.
#[test]
fn s5_2_majority_vote_result_table() {
    use VoteResult::*;
    let cases: &[(&str, &str, VoteResult)] = &[
        ("a", "a=y", Won),
        ("a", "a=n", Lost),
        ("a", "", Pending),
        ("a b", "a=y", Pending),
        ("a b", "a=y b=y", Won),
        ("a b", "a=y b=n", Lost),
        ("a b c", "a=y", Pending),
        ("a b c", "a=y b=y", Won),
        ("a b c", "a=y b=n", Pending),
        ("a b c", "b=n c=n", Lost),
        ("a b c d", "a=y b=y", Pending),
        ("a b c d", "a=y b=y c=y", Won),
        ("a b c d", "a=y b=n c=n", Lost),
        // Grants from outside the voter set do not count.
        ("a b c", "a=y x=y y=y", Pending),
    ];
    for (voters, v, want) in cases {
        let m = votes(v);
        let got = sets(voters, None).vote_result(|id| m.get(id).copied());
        assert_eq!(got, *want, "voters [{voters}] votes [{v}]");
    }
}

// §6: while joint, elections (and pre-votes) need a majority of each half;
// losing either half loses the election.
#[test]
fn s6_joint_vote_result_table() {
    use VoteResult::*;
    let cases: &[(&str, &str, &str, VoteResult)] = &[
        ("a b c", "d e f", "a=y b=y", Pending),
        ("a b c", "d e f", "a=y b=y d=y e=y", Won),
        ("a b c", "d e f", "a=y b=y d=n e=n", Lost),
        ("a b c", "d e f", "a=n b=n d=y e=y f=y", Lost),
        ("a b c", "c d e", "a=y c=y d=y", Won),
        ("a b c", "c d e", "a=y b=y c=n", Pending),
        ("a b c", "c d e", "a=y b=y c=n d=n e=n", Lost),
        ("a", "a b c", "a=y", Pending),
        ("a", "a b c", "a=y b=y", Won),
    ];
    for (old, new, v, want) in cases {
        let m = votes(v);
        let got = sets(old, Some(new)).vote_result(|id| m.get(id).copied());
        assert_eq!(got, *want, "old [{old}] new [{new}] votes [{v}]");
    }
}

// ReadIndex (thesis §6.4) and check-quorum (§6.2): the acknowledging (or
// recently active) voters must form a quorum, of both halves while joint.
#[test]
fn s6_4_acknowledgements_reach_a_quorum_table() {
    let cases: &[(&str, Option<&str>, &str, bool)] = &[
        ("a b c", None, "a b", true),
        ("a b c", None, "a", false),
        ("a b c", None, "a x y", false),
        ("a b c", Some("d e f"), "a b c", false),
        ("a b c", Some("d e f"), "a b d e", true),
        ("a b c", Some("c d e"), "c d", false),
        ("a b c", Some("c d e"), "b c d", true),
    ];
    for (old, new, acked, want) in cases {
        let acked: Vec<ServerId> = acked.split_whitespace().map(ServerId::from).collect();
        let got = sets(old, *new).is_reached(|id| acked.contains(id));
        assert_eq!(got, *want, "old [{old}] new {new:?} acked {acked:?}");
    }
}

#[test]
fn an_unconfigured_node_never_commits_or_wins() {
    let q = Quorum::of(&Configuration::default());
    assert!(q.is_empty());
    assert_eq!(q.committed_index(|_| Some(9)), 0);
    assert_eq!(q.vote_result(|_| Some(true)), VoteResult::Pending);
}

#[test]
fn a_quorum_is_built_from_the_halves_of_a_joint_configuration() {
    let plain = Configuration::new(vec![Server::voter("a", "a:1"), Server::nonvoter("b", "b:1")]);
    let q = Quorum::of(&plain);
    assert!(!q.is_joint());
    assert!(q.contains(&"a".into()) && !q.contains(&"b".into()));
    assert!(q.is_sole_voter(&"a".into()));

    let mut joint = plain.clone();
    joint.servers[0].suffrage = crate::types::Suffrage::LeavingVoter;
    joint.servers[1].suffrage = crate::types::Suffrage::IncomingVoter;
    let q = Quorum::of(&joint);
    assert!(q.is_joint());
    assert!(!q.is_sole_voter(&"a".into()));
    // a alone is the old half, b alone the new one: both must hold it.
    assert_eq!(q.committed_index(|id| Some(if id.as_str() == "a" { 9 } else { 4 })), 4);
    assert_eq!(q, Quorum::from_sets(&["a"], Some(&["b"])));
}
