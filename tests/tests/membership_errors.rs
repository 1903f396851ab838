//! Membership changes an operator gets wrong, and the errors a caller must
//! be able to tell apart (issue 13, items 2, 3, 4 and 10), through the
//! public API on the in-memory network.

use std::sync::Arc;
use std::time::Duration;

use raft::observer::{Observation, Observer};
use raft::transport::inmem::InmemNetwork;
use raft::{Error, Raft, RaftState, ServerAddress, ServerId, Suffrage};
use raft_store_mem::{InmemSnapshotStore, InmemStore};
use raft_tests::{test_config, AppliedLog, RecordingFsm, TestCluster, TestNode};

const T: Duration = Duration::from_secs(10);

fn suffrage(c: &raft::Configuration, id: &str) -> Option<Suffrage> {
    c.server(&ServerId::from(id)).map(|s| s.suffrage)
}

fn follower_of(c: &TestCluster, leader: &str) -> String {
    c.running().into_iter().find(|id| id != leader).expect("a follower")
}

/// Item 2: `add_voter` of a server nobody answers for must not make it a
/// voter, however short the log (its match index is 0), so the cluster
/// keeps its quorum arithmetic: with three voters, one crash is survived.
#[tokio::test(start_paused = true)]
async fn add_voter_of_a_server_that_never_answered_does_not_promote_it() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    c.raft(&leader).apply("short log", T).await.expect("apply");
    // Nothing is registered at this address on the in-memory network.
    let added = c.raft(&leader).add_voter("n9".into(), "127.0.0.1:1".into(), 0, Duration::from_secs(2)).await;
    assert!(
        matches!(&added, Err(Error::CatchUpTimeout { id, matched: 0, .. }) if id.as_str() == "n9"),
        "got {added:?}"
    );
    let (conf, _) = c.raft(&leader).get_configuration().await.expect("configuration");
    assert_eq!(suffrage(&conf, "n9"), Some(Suffrage::Nonvoter), "n9 stays a non-voter");
    // One crash out of the three real voters: writes still commit.
    let crashed = follower_of(&c, &leader);
    c.stop(&crashed).await;
    c.raft(&leader).apply("after a crash", T).await.expect("a quorum of the voters remains");
    c.shutdown().await;
}

/// Item 2: a server that caught up once but has not answered within the
/// last election timeout is not promoted either.
#[tokio::test(start_paused = true)]
async fn add_voter_of_a_caught_up_server_that_went_silent_does_not_promote_it() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    c.add_node("n4").await;
    c.raft(&leader).add_nonvoter("n4".into(), "n4".into(), 0, T).await.expect("add non-voter");
    let last = c.raft(&leader).barrier(T).await.expect("barrier");
    c.wait_applied("n4", last, T).await;
    // n4 holds the whole log, then stops answering.
    c.net.isolate(&"n4".into());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let added = c.raft(&leader).add_voter("n4".into(), "n4".into(), 0, Duration::from_secs(1)).await;
    assert!(matches!(&added, Err(Error::CatchUpTimeout { id, .. }) if id.as_str() == "n4"), "got {added:?}");
    let (conf, _) = c.raft(&leader).get_configuration().await.expect("configuration");
    assert_eq!(suffrage(&conf, "n4"), Some(Suffrage::Nonvoter));
    // Once it answers again, the same call promotes it.
    c.net.heal();
    c.raft(&leader).add_voter("n4".into(), "n4".into(), 0, T).await.expect("promoted once it answers");
    let (conf, _) = c.raft(&leader).get_configuration().await.expect("configuration");
    assert_eq!(suffrage(&conf, "n4"), Some(Suffrage::Voter));
    c.shutdown().await;
}

/// Item 3: while a promotion is under way, other changes are refused with
/// an error naming it; the caller's timeout ends it on the leader (the
/// server stays a non-voter, the error says so) and the next change goes
/// through at once, under the same leader.
#[tokio::test(start_paused = true)]
async fn a_timed_out_add_voter_ends_the_promotion_and_unblocks_later_changes() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let term = c.raft(&leader).metrics().borrow().term;
    let raft = c.raft(&leader).clone();
    let adding = tokio::spawn(async move {
        raft.add_voter("n9".into(), "nowhere".into(), 0, Duration::from_secs(3)).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let blocked = c.raft(&leader).add_nonvoter("n5".into(), "n5".into(), 0, T).await;
    match &blocked {
        Err(Error::ConfigurationChangeInProgress { pending }) => {
            assert!(pending.contains("n9") && pending.contains("add_voter"), "{pending}")
        }
        other => panic!("expected ConfigurationChangeInProgress, got {other:?}"),
    }
    let started = tokio::time::Instant::now();
    let added = adding.await.expect("add_voter task");
    let waited = started.elapsed();
    assert!(waited <= Duration::from_secs(3), "answered at the caller's deadline, not later: {waited:?}");
    let message = match &added {
        Err(e @ Error::CatchUpTimeout { id, .. }) if id.as_str() == "n9" => e.to_string(),
        other => panic!("expected CatchUpTimeout for n9, got {other:?}"),
    };
    assert!(message.contains("n9") && message.contains("stays a non-voter"), "{message}");
    // Right away, under the same leader: nothing is blocked any more.
    let before = tokio::time::Instant::now();
    c.raft(&leader).remove_server("n9".into(), 0, T).await.expect("remove the non-voter");
    c.raft(&leader).add_nonvoter("n5".into(), "n5".into(), 0, T).await.expect("add another");
    assert!(before.elapsed() < Duration::from_secs(1), "changes went through at once");
    assert_eq!(c.raft(&leader).state(), RaftState::Leader);
    assert_eq!(c.raft(&leader).metrics().borrow().term, term, "no leader change was needed");
    let (conf, _) = c.raft(&leader).get_configuration().await.expect("configuration");
    assert_eq!(suffrage(&conf, "n9"), None);
    assert_eq!(suffrage(&conf, "n5"), Some(Suffrage::Nonvoter));
    c.shutdown().await;
}

/// Starts a node with id `id` whose transport listens at `address`, with
/// empty stores, in place of `c.nodes[id]` (which must be stopped).
async fn start_at(c: &mut TestCluster, id: &str, address: &str) {
    let fsm = RecordingFsm::default();
    let store = InmemStore::new();
    let snaps = InmemSnapshotStore::new();
    let raft = Raft::new(
        test_config(id),
        fsm.clone(),
        store.clone(),
        store.clone(),
        snaps.clone(),
        c.net.transport(address),
    )
    .await
    .expect("start node");
    let applied: AppliedLog = fsm.applied.clone();
    c.nodes.insert(
        id.to_owned(),
        TestNode {
            raft: Some(raft),
            fsm,
            store,
            snaps,
            applied,
            faults: raft::testing::faulty::FaultInjector::new(),
        },
    );
}

/// Item 4: a second process with an existing member's id at a new address
/// is refused (the member keeps its place); the explicit `update_address`
/// moves the member; the same id at the same address stays idempotent.
#[tokio::test(start_paused = true)]
async fn a_duplicate_id_at_another_address_is_refused_unless_replaced_explicitly() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let member = follower_of(&c, &leader);
    let (_, index) = c.raft(&leader).get_configuration().await.expect("configuration");
    let elsewhere = format!("{member}-new");
    for voter in [true, false] {
        let (id, addr): (ServerId, ServerAddress) = (member.as_str().into(), elsewhere.as_str().into());
        let refused = if voter {
            c.raft(&leader).add_voter(id, addr, 0, T).await
        } else {
            c.raft(&leader).add_nonvoter(id, addr, 0, T).await
        };
        match &refused {
            Err(e @ Error::ServerExists { id, address }) => {
                assert_eq!((id.as_str(), address.as_str()), (member.as_str(), member.as_str()));
                assert!(e.to_string().contains("update_address"), "the error says how to replace: {e}");
            }
            other => panic!("expected ServerExists, got {other:?}"),
        }
    }
    // The same id at the same address: a no-op returning the index.
    let again = c.raft(&leader).add_voter(member.as_str().into(), member.as_str().into(), 0, T).await;
    assert_eq!(again.expect("idempotent add_voter"), index);
    let again = c.raft(&leader).add_nonvoter(member.as_str().into(), member.as_str().into(), 0, T).await;
    assert_eq!(again.expect("idempotent add_nonvoter"), index);
    let (conf, now) = c.raft(&leader).get_configuration().await.expect("configuration");
    assert_eq!(now, index, "nothing was proposed");
    assert_eq!(conf.server(&member.as_str().into()).map(|s| s.address.to_string()), Some(member.clone()));

    // The member's machine is replaced: a new process, empty disk, new address.
    c.stop(&member).await;
    start_at(&mut c, &member, &elsewhere).await;
    let unknown = c.raft(&leader).update_address("nobody".into(), "x".into(), 0, T).await;
    assert!(matches!(&unknown, Err(Error::UnknownServer(id)) if id.as_str() == "nobody"), "got {unknown:?}");
    c.raft(&leader)
        .update_address(member.as_str().into(), elsewhere.as_str().into(), index, T)
        .await
        .expect("explicit replace");
    let (conf, _) = c.raft(&leader).get_configuration().await.expect("configuration");
    let moved = conf.server(&member.as_str().into()).expect("still a member");
    assert_eq!((moved.address.as_str(), moved.suffrage), (elsewhere.as_str(), Suffrage::Voter));
    // The process at the new address gets the whole log.
    let last = c.raft(&leader).apply("after the move", T).await.expect("apply").index;
    c.wait_applied(&member, last, T).await;
    c.shutdown().await;
}

/// Item 10: a stale `prev_index`, a transfer to a non-voter and one to an
/// unknown id each have their own variant; `leader()` is (id, address).
#[tokio::test(start_paused = true)]
async fn errors_callers_tell_apart_have_their_own_variants() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let (_, old) = c.raft(&leader).get_configuration().await.expect("configuration");
    c.add_node("n4").await;
    let current =
        c.raft(&leader).add_nonvoter("n4".into(), "n4".into(), old, T).await.expect("add non-voter");
    let stale = c.raft(&leader).remove_server("n4".into(), old, T).await;
    assert!(matches!(stale, Err(Error::StalePrevIndex { current: i }) if i == current), "got {stale:?}");

    let to_nonvoter = c.raft(&leader).leadership_transfer_to_server("n4".into(), "n4".into()).await;
    assert!(matches!(&to_nonvoter, Err(Error::NotAVoter(id)) if id.as_str() == "n4"), "got {to_nonvoter:?}");
    let to_unknown = c.raft(&leader).leadership_transfer_to_server("n8".into(), "n8".into()).await;
    assert!(
        matches!(&to_unknown, Err(Error::UnknownServer(id)) if id.as_str() == "n8"),
        "got {to_unknown:?}"
    );
    assert_eq!(c.raft(&leader).state(), RaftState::Leader, "refused transfers change nothing");

    // A node whose address differs from its id tells the two apart.
    c.raft(&leader).remove_server("n4".into(), 0, T).await.expect("remove n4");
    c.stop("n4").await;
    start_at(&mut c, "n4", "addr-of-n4").await;
    c.raft(&leader).add_voter("n4".into(), "addr-of-n4".into(), 0, T).await.expect("add n4");
    c.raft(&leader)
        .leadership_transfer_to_server("n4".into(), "addr-of-n4".into())
        .await
        .expect("transfer to n4");
    assert_eq!(c.wait_for_leader().await, "n4");
    let (id, address): (ServerId, ServerAddress) = c.raft(&leader).leader().expect("leader known");
    assert_eq!((id.as_str(), address.as_str()), ("n4", "addr-of-n4"));
    c.shutdown().await;
}

/// Item 10: `leadership_transfer()` resolves only once `state()` no longer
/// says Leader. The observer slows the old leader's main task down right
/// when it steps down, so a caller answered before the new role is
/// published would see `Leader` (real threads: the caller runs on the
/// test's thread while the node runs on a worker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_transfer_returns_after_state_stops_saying_leader() {
    // Real time on a busy machine: timeouts long enough that elections and
    // the transfer do not depend on scheduling luck.
    let mut c: TestCluster = TestCluster::with_config(3, InmemNetwork::new(), |config| {
        config.heartbeat_timeout = Duration::from_millis(500);
        config.election_timeout = Duration::from_millis(500);
        config.leader_lease_timeout = Duration::from_millis(500);
    })
    .await;
    let leader = c.wait_for_leader().await;
    c.raft(&leader).apply("x", T).await.expect("apply");
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let slow_step_down = Arc::new(|o: &Observation| {
        if matches!(o, Observation::StateChanged(s) if *s != RaftState::Leader) {
            std::thread::sleep(Duration::from_millis(300));
        }
        false
    });
    c.raft(&leader).register_observer(Observer::new(tx, false, Some(slow_step_down)));
    c.raft(&leader).leadership_transfer().await.expect("transfer");
    assert_ne!(c.raft(&leader).state(), RaftState::Leader, "state() still said Leader after the transfer");
    c.shutdown().await;
}
