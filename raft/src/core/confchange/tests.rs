//! Unit tests of the configuration-change rules: single-server changes
//! (Raft thesis §4.1, HashiCorp semantics) and joint changes (Raft paper
//! §6, thesis §4.3).

use super::*;
use crate::types::{Configuration, Server, Suffrage};

fn conf(spec: &str) -> Configuration {
    // "a b c:n" → a, b voters, c a non-voter; addresses are "<id>:1".
    Configuration::new(
        spec.split_whitespace()
            .map(|s| match s.split_once(':') {
                Some((id, "n")) => Server::nonvoter(id, format!("{id}:1")),
                Some((id, "I")) => {
                    Server { suffrage: Suffrage::IncomingVoter, ..Server::voter(id, format!("{id}:1")) }
                }
                Some((id, "D")) => {
                    Server { suffrage: Suffrage::DemotingVoter, ..Server::voter(id, format!("{id}:1")) }
                }
                Some((id, "L")) => {
                    Server { suffrage: Suffrage::LeavingVoter, ..Server::voter(id, format!("{id}:1")) }
                }
                _ => Server::voter(s, format!("{s}:1")),
            })
            .collect(),
    )
}

fn add_voter(id: &str) -> ConfChange {
    ConfChange::AddVoter(id.into(), format!("{id}:1").into())
}

fn add_nonvoter(id: &str) -> ConfChange {
    ConfChange::AddNonvoter(id.into(), format!("{id}:1").into())
}

/// The expected outcome of a single-server change: the next configuration
/// (as a spec; `None`: unchanged) or the refusal.
type Expected = Result<Option<&'static str>, ConfChangeError>;

#[test]
fn s4_1_single_server_changes_table() {
    use ConfChange::*;
    let cases: Vec<(&str, ConfChange, Expected)> = vec![
        ("a b", add_voter("c"), Ok(Some("a b c"))),
        ("a b c:n", add_voter("c"), Ok(Some("a b c"))),
        ("a b c", add_voter("c"), Ok(None)),
        ("a b", add_nonvoter("c"), Ok(Some("a b c:n"))),
        // HashiCorp: a voter added as a non-voter stays a voter.
        ("a b c", add_nonvoter("c"), Ok(None)),
        ("a b c", Remove("c".into()), Ok(Some("a b"))),
        ("a b", Remove("c".into()), Err(ConfChangeError::UnknownServer("c".into()))),
        ("a b:n", Remove("a".into()), Err(ConfChangeError::Invalid("configuration has no voter".into()))),
        ("a b:n", Promote("b".into()), Ok(Some("a b"))),
        ("a b", Promote("b".into()), Ok(None)),
        ("a b", Demote("b".into()), Ok(Some("a b:n"))),
        ("a b:n", Demote("b".into()), Ok(None)),
        ("a", Demote("a".into()), Err(ConfChangeError::Invalid("configuration has no voter".into()))),
        ("a", Demote("z".into()), Err(ConfChangeError::UnknownServer("z".into()))),
        ("a", Promote("z".into()), Err(ConfChangeError::UnknownServer("z".into()))),
        ("a b", UpdateAddress("b".into(), "b:1".into()), Ok(None)),
        ("a", UpdateAddress("z".into(), "z:1".into()), Err(ConfChangeError::UnknownServer("z".into()))),
        // A joint configuration accepts no single-server change.
        ("a b:L c:I", add_nonvoter("d"), Err(ConfChangeError::JointInProgress)),
    ];
    for (current, change, want) in cases {
        let got = apply_single(&conf(current), &change);
        assert_eq!(got, want.map(|o| o.map(conf)), "[{current}] {change:?}");
    }
}

#[test]
fn adding_an_existing_id_at_another_address_is_refused() {
    let current = conf("a b");
    let change = ConfChange::AddVoter("b".into(), "elsewhere:1".into());
    assert_eq!(
        apply_single(&current, &change),
        Err(ConfChangeError::ServerExists { id: "b".into(), address: "b:1".into() })
    );
    let moved = apply_single(&current, &ConfChange::UpdateAddress("b".into(), "elsewhere:1".into()));
    assert_eq!(moved.unwrap().unwrap().server(&"b".into()).unwrap().address.as_str(), "elsewhere:1");
    // Moving onto another member's address is invalid.
    let clash = apply_single(&current, &ConfChange::UpdateAddress("b".into(), "a:1".into()));
    assert!(matches!(clash, Err(ConfChangeError::Invalid(_))), "{clash:?}");
}

// §6: replacing two of three voters goes through C_old,new in which the
// old voters a, b and the new ones d, e each vote in one half only.
#[test]
fn s6_joint_plan_replaces_two_of_three_voters() {
    let plan = plan_joint(
        &conf("a b c"),
        &[ConfChange::Remove("a".into()), ConfChange::Remove("b".into()), add_voter("d"), add_voter("e")],
    )
    .expect("plan");
    assert_eq!(plan.staging, Some(conf("a b c d:n e:n")), "new voters join as non-voters first");
    assert_eq!(plan.joint, conf("a:L b:L c d:I e:I"));
    assert_eq!(plan.target, conf("c d e"));
    assert_eq!(plan.incoming, vec![ServerId::from("d"), ServerId::from("e")]);
    assert_eq!(plan.joint.leave_joint(), plan.target, "leaving joint ends in the target");
    assert_eq!(plan.joint.old_voters().cloned().collect::<Vec<_>>(), ["a", "b", "c"].map(ServerId::from));
    assert_eq!(plan.joint.new_voters().cloned().collect::<Vec<_>>(), ["c", "d", "e"].map(ServerId::from));
    // Once staged, planning again needs no staging step.
    let again = plan_joint(
        plan.staging.as_ref().unwrap(),
        &[ConfChange::Remove("a".into()), ConfChange::Remove("b".into()), add_voter("d"), add_voter("e")],
    )
    .expect("plan");
    assert_eq!((again.staging, again.joint), (None, plan.joint));
}

#[test]
fn s6_joint_plan_promotions_demotions_and_nonvoters() {
    let plan = plan_joint(
        &conf("a b c d:n e:n"),
        &[
            ConfChange::Promote("d".into()),
            ConfChange::Demote("a".into()),
            ConfChange::Remove("e".into()),
            add_nonvoter("f"),
        ],
    )
    .expect("plan");
    assert_eq!(plan.staging, None);
    // e (a non-voter) leaves at once; f joins as a non-voter at once.
    assert_eq!(plan.joint, conf("a:D b c d:I f:n"));
    assert_eq!(plan.target, conf("a:n b c d f:n"));
    assert_eq!(plan.incoming, vec![ServerId::from("d")]);
}

#[test]
fn a_plan_that_changes_no_voter_set_is_not_joint() {
    let plan =
        plan_joint(&conf("a b c:n"), &[ConfChange::Remove("c".into()), add_nonvoter("d")]).expect("plan");
    assert!(!plan.joint.is_joint());
    assert_eq!(plan.joint, plan.target);
    assert_eq!(plan.target, conf("a b d:n"));
}

#[test]
fn joint_plan_refusals_table() {
    let cases: Vec<(&str, Vec<ConfChange>, ConfChangeError)> = vec![
        ("a b c", vec![], ConfChangeError::NoChanges),
        (
            "a b c",
            vec![ConfChange::Remove("a".into()), ConfChange::Demote("a".into())],
            ConfChangeError::DuplicateServer("a".into()),
        ),
        ("a b:L c:I", vec![add_voter("d")], ConfChangeError::JointInProgress),
        ("a b c", vec![ConfChange::Remove("z".into())], ConfChangeError::UnknownServer("z".into())),
        (
            "a b",
            vec![ConfChange::Remove("a".into()), ConfChange::Remove("b".into())],
            ConfChangeError::Invalid("configuration has no voter".into()),
        ),
        (
            "a b",
            vec![ConfChange::AddVoter("a".into(), "x:1".into())],
            ConfChangeError::ServerExists { id: "a".into(), address: "a:1".into() },
        ),
    ];
    for (current, changes, want) in cases {
        assert_eq!(plan_joint(&conf(current), &changes), Err(want), "[{current}] {changes:?}");
    }
}

#[test]
fn joint_configurations_validate_both_halves() {
    assert!(conf("a:L b:L c:I").validate().is_ok());
    assert_eq!(conf("a:D b:L").validate(), Err("joint configuration has no voter in its new half".into()));
    assert_eq!(conf("c:I").validate(), Err("configuration has no voter".into()));
    assert!(conf("a:L c:I").is_voter(&"a".into()) && conf("a:L c:I").is_voter(&"c".into()));
    assert!(!conf("a:L c:I").is_new_voter(&"a".into()));
}

// Data compatibility: configuration entries and snapshot metadata written
// before joint consensus existed (bincode, `crate::codec`) still decode to
// the same plain configuration; the joint suffrages are new variant
// numbers after the two old ones.
#[test]
fn configurations_encoded_by_the_previous_format_still_decode() {
    // Configuration { servers: [voter n1 "a:1", nonvoter n2 "b:2"] }: a
    // length, then per server the suffrage's variant number, id, address.
    let old_bytes: &[u8] = &[2, 0, 2, b'n', b'1', 3, b'a', b':', b'1', 1, 2, b'n', b'2', 3, b'b', b':', b'2'];
    let expected = Configuration::new(vec![Server::voter("n1", "a:1"), Server::nonvoter("n2", "b:2")]);
    let decoded: Configuration = crate::codec::decode(old_bytes).expect("old bytes decode");
    assert_eq!(decoded, expected);
    assert!(!decoded.is_joint());
    assert_eq!(
        crate::codec::encode(&expected).expect("encode"),
        old_bytes,
        "plain configurations encode as before"
    );

    // SnapshotMeta { id "s", index 7, term 2, configuration, configuration_index 5, size 9 }.
    let mut meta_bytes = vec![1, b's', 7, 2];
    meta_bytes.extend_from_slice(old_bytes);
    meta_bytes.extend_from_slice(&[5, 9]);
    let meta: crate::types::SnapshotMeta =
        crate::codec::decode(&meta_bytes).expect("old snapshot meta decodes");
    assert_eq!((meta.configuration, meta.configuration_index, meta.size), (expected, 5, 9));

    // A joint configuration round-trips, with its new variant numbers.
    let joint = conf("a:L b c:I d:D");
    let bytes = crate::codec::encode(&joint).expect("encode");
    assert_eq!(crate::codec::decode::<Configuration>(&bytes).expect("decode"), joint);
    assert_eq!(bytes[1], 4, "LeavingVoter is variant 4");
}
