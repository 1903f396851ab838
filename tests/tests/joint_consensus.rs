//! Joint consensus through the public API ([`Raft::change_membership`],
//! Raft paper §6, thesis §4.3): several voters in and out in one call while
//! clients write, a change interrupted by a leader crash that the restarted
//! cluster completes, a leader outside the new configuration handing off,
//! and the typed refusals. Paused clock, in-memory network.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft::observer::{Observation, Observer};
use raft::{ConfChange, ConfChangeError, Configuration, Error, Raft, RaftState, ServerId, Suffrage};
use raft_tests::{RecordingFsm, TestCluster};

const T: Duration = Duration::from_secs(10);

fn id(s: &str) -> ServerId {
    ServerId::from(s)
}

fn voters(c: &Configuration) -> BTreeSet<String> {
    c.servers.iter().filter(|s| s.suffrage == Suffrage::Voter).map(|s| s.id.to_string()).collect()
}

fn members(c: &Configuration) -> BTreeSet<String> {
    c.servers.iter().map(|s| s.id.to_string()).collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Writes through `raft` until stopped; returns the commands acknowledged.
fn spawn_writer(
    raft: Raft<RecordingFsm>,
    prefix: &'static str,
) -> (Arc<AtomicBool>, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let handle = tokio::spawn({
        let (stop, acked) = (stop.clone(), acked.clone());
        async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let cmd = format!("{prefix}-{i}");
                if raft.apply(cmd.clone(), T).await.is_ok() {
                    acked.lock().expect("lock").push(cmd);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    (stop, acked, handle)
}

/// Waits (bounded, virtual time) until `check` holds for node `node`.
async fn wait_until(
    c: &TestCluster<RecordingFsm>,
    node: &str,
    what: &str,
    check: impl Fn(&Raft<RecordingFsm>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + T;
    while !check(c.raft(node)) {
        assert!(tokio::time::Instant::now() < deadline, "{node}: {what} within {T:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The commands node `node` applied, as strings.
fn applied(c: &TestCluster<RecordingFsm>, node: &str) -> Vec<String> {
    c.applied(node).into_iter().map(|(_, d)| String::from_utf8_lossy(&d).into_owned()).collect()
}

#[tokio::test(start_paused = true)]
async fn s6_replace_two_of_three_voters_in_one_call_while_clients_write() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    // Round trips longer than a tick: the joint entry and C_new commit at
    // visibly different times.
    c.net.set_delay(Duration::from_millis(4), Duration::from_millis(8));
    let old: Vec<String> = c.running().into_iter().filter(|n| *n != leader).collect();
    let (stop, acked, writer) = spawn_writer(c.raft(&leader).clone(), "w");
    c.add_node("n4").await;
    c.add_node("n5").await;
    let (_, prev) = c.raft(&leader).get_configuration().await.expect("configuration");
    let index = c
        .raft(&leader)
        .change_membership(
            [
                ConfChange::AddVoter(id("n4"), "n4".into()),
                ConfChange::AddVoter(id("n5"), "n5".into()),
                ConfChange::Remove(id(&old[0])),
                ConfChange::Remove(id(&old[1])),
            ],
            prev,
            T,
        )
        .await
        .expect("replace two voters in one call");
    let (conf, at) = c.raft(&leader).get_configuration().await.expect("configuration");
    assert_eq!(at, index, "the call answers with the index of the new configuration");
    assert!(!conf.is_joint());
    let commit = c.raft(&leader).metrics().borrow().commit_index;
    assert!(commit >= index, "answered once C_new is committed (commit index {commit}, C_new at {index})");
    assert_eq!(voters(&conf), set(&[leader.as_str(), "n4", "n5"]));
    assert_eq!(members(&conf), voters(&conf), "the old servers are gone");
    // Writes kept committing through the change.
    let during = acked.lock().expect("lock").len();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("writer");
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > during, "writes commit in the new configuration");
    let last = c.raft(&leader).barrier(T).await.expect("barrier");
    for n in [leader.as_str(), "n4", "n5"] {
        c.wait_applied(n, last, T).await;
        let got: BTreeSet<String> = applied(&c, n).into_iter().collect();
        for cmd in &acked {
            assert!(got.contains(cmd), "{n} lost acknowledged write {cmd}");
        }
        assert_eq!(c.applied(n), c.applied(&leader), "{n} has the leader's state");
    }
    // The removed servers learn it and stop for good.
    for n in &old {
        wait_until(&c, n, "learns it was removed", |r| r.state() == RaftState::Removed).await;
    }
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn s6_promote_and_demote_several_in_one_call() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    for n in ["n4", "n5"] {
        c.add_node(n).await;
        c.raft(&leader).add_nonvoter(id(n), n.into(), 0, T).await.expect("add non-voter");
    }
    let followers: Vec<String> =
        ["n1", "n2", "n3"].iter().map(|s| s.to_string()).filter(|n| *n != leader).collect();
    let changes = [
        ConfChange::Promote(id("n4")),
        ConfChange::Promote(id("n5")),
        ConfChange::Demote(id(&followers[0])),
        ConfChange::Demote(id(&followers[1])),
    ];
    c.raft(&leader).change_membership(changes, 0, T).await.expect("swap voters");
    let (conf, _) = c.raft(&leader).get_configuration().await.expect("configuration");
    assert_eq!(voters(&conf), set(&[leader.as_str(), "n4", "n5"]));
    assert_eq!(members(&conf).len(), 5, "demoted servers stay as non-voters");
    c.raft(&leader).apply("after", T).await.expect("commits in the new configuration");
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn s6_a_demoted_leader_hands_off_and_stays_as_a_nonvoter() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    c.add_node("n4").await;
    let follower = c.running().into_iter().find(|n| *n != leader && n.as_str() < "n4").expect("follower");
    let changes = [ConfChange::AddVoter(id("n4"), "n4".into()), ConfChange::Demote(id(&leader))];
    let index = c.raft(&leader).change_membership(changes, 0, T).await.expect("demote the leader");
    let others: Vec<String> = c.running().into_iter().filter(|n| *n != leader).collect();
    let next = c.wait_for_leader_among(&others, T).await;
    assert_ne!(next, leader);
    let (conf, at) = c.raft(&next).get_configuration().await.expect("configuration");
    assert!(at >= index);
    let third = others.iter().find(|n| **n != follower && n.as_str() < "n4").expect("third").clone();
    assert_eq!(voters(&conf), set(&[follower.as_str(), third.as_str(), "n4"]));
    assert_eq!(conf.server(&id(&leader)).map(|s| s.suffrage), Some(Suffrage::Nonvoter));
    assert_eq!(c.raft(&leader).state(), RaftState::Follower, "the old leader follows as a non-voter");
    let applied = c.raft(&next).apply("after", T).await.expect("commits").index;
    c.wait_applied(&leader, applied, T).await;
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn s6_a_leader_outside_the_new_configuration_hands_off_leadership() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    c.raft(&leader).apply("before", T).await.expect("apply");
    let stays = c.running().into_iter().find(|n| *n != leader).expect("a follower");
    let leaves = c.running().into_iter().find(|n| *n != leader && *n != stays).expect("another follower");
    c.add_node("n4").await;
    c.add_node("n5").await;
    let changes = [
        ConfChange::AddVoter(id("n4"), "n4".into()),
        ConfChange::AddVoter(id("n5"), "n5".into()),
        ConfChange::Remove(id(&leader)),
        ConfChange::Remove(id(&leaves)),
    ];
    let index = c.raft(&leader).change_membership(changes, 0, T).await.expect("change without the leader");
    let answered = tokio::time::Instant::now();
    let new = vec![stays.clone(), "n4".to_string(), "n5".to_string()];
    let next = c.wait_for_leader_among(&new, T).await;
    // Handed over (TimeoutNow), not left to an election timeout (50 ms
    // in the test config, randomized up to twice that).
    let took = answered.elapsed();
    assert!(took < Duration::from_millis(50), "a voter of C_new took over after {took:?}");
    assert!(new.contains(&next));
    assert_ne!(c.raft(&leader).state(), RaftState::Leader, "the old leader stopped leading");
    let (conf, at) = c.raft(&next).get_configuration().await.expect("configuration");
    assert!(at >= index);
    assert_eq!(voters(&conf), new.iter().cloned().collect());
    c.raft(&next).apply("after", T).await.expect("the new configuration commits");
    wait_until(&c, &leader, "learns it was removed", |r| r.state() == RaftState::Removed).await;
    c.shutdown().await;
}

/// Key-value clients write, compare-and-swap and read linearizably
/// (following redirects) while the leader and a follower are replaced in
/// one call; the recorded history must be linearizable.
#[tokio::test(start_paused = true)]
async fn s6_replacing_the_leader_and_a_follower_keeps_client_history_linearizable() {
    use raft::testing::linearizability::check_kv;
    use raft::transport::inmem::InmemNetwork;
    use raft_tests::sim_client::SimClients;
    use raft_tests::KvTestFsm;

    let net = InmemNetwork::new();
    net.set_delay(Duration::from_millis(1), Duration::from_millis(4));
    let mut c: TestCluster<KvTestFsm> = TestCluster::with_network(3, net).await;
    let leader = c.wait_for_leader().await;
    c.add_node("n4").await;
    c.add_node("n5").await;
    let mut clients = SimClients::spawn(4, 18, Duration::from_millis(5));
    clients.publish(&c, &c.running());
    // Load before, during and after the change.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stays = c.running().into_iter().find(|n| *n != leader && n.as_str() < "n4").expect("a follower");
    let leaves =
        c.running().into_iter().find(|n| *n != leader && *n != stays && n.as_str() < "n4").expect("another");
    let changes = [
        ConfChange::AddVoter(id("n4"), "n4".into()),
        ConfChange::AddVoter(id("n5"), "n5".into()),
        ConfChange::Remove(id(&leader)),
        ConfChange::Remove(id(&leaves)),
    ];
    c.raft(&leader).change_membership(changes, 0, T).await.expect("replace the leader and a follower");
    let new = vec![stays, "n4".to_string(), "n5".to_string()];
    c.wait_for_leader_among(&new, T).await;
    clients.publish(&c, &new);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let history = clients.finish().await.expect("clients");
    let completed = history.iter().filter(|op| op.output.is_some()).count();
    assert!(completed > 50, "the clients got work done: {completed} operations completed");
    let result = check_kv(&history);
    assert!(result.is_ok(), "history is not linearizable: {result}");
    c.shutdown().await;
}

/// The leader enters the joint configuration, but its messages to the new
/// servers are lost, so the joint entry reaches only the old voters and
/// cannot commit; then the leader crashes, and the other old voters
/// restart too. The change completes once the cluster is whole again:
/// whoever leads (a restarted node: only they hold the joint entry) finds
/// the joint configuration in its stored log and leaves it for C_new.
#[tokio::test(start_paused = true)]
async fn s6_a_joint_change_interrupted_by_a_leader_crash_completes_after_the_restart() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let old: Vec<String> = c.running().into_iter().filter(|n| *n != leader).collect();
    for i in 0..5 {
        c.raft(&leader).apply(format!("before-{i}"), T).await.expect("apply");
    }
    c.add_node("n4").await;
    c.add_node("n5").await;
    // When the leader appends the joint configuration (an incoming voter
    // appears), cut its links to the new servers before anything is sent.
    let cut_done = Arc::new(AtomicBool::new(false));
    let filter = {
        let (net, from, cut_done) = (c.net.clone(), leader.clone(), cut_done.clone());
        Arc::new(move |o: &Observation| {
            if let Observation::PeerChanged(s) = o {
                if s.suffrage == Suffrage::IncomingVoter && !cut_done.swap(true, Ordering::SeqCst) {
                    for to in ["n4", "n5"] {
                        net.cut(&from.as_str().into(), &to.into());
                        net.cut(&to.into(), &from.as_str().into());
                    }
                }
            }
            false
        })
    };
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    c.raft(&leader).register_observer(Observer::new(tx, false, Some(filter)));
    let call = tokio::spawn({
        let raft = c.raft(&leader).clone();
        let changes = [
            ConfChange::AddVoter(id("n4"), "n4".into()),
            ConfChange::AddVoter(id("n5"), "n5".into()),
            ConfChange::Remove(id(&old[0])),
            ConfChange::Remove(id(&old[1])),
        ];
        async move { raft.change_membership(changes, 0, T).await }
    });
    // The old voters hold the joint entry; it cannot commit without n4, n5.
    for n in &old {
        wait_until(&c, n, "holds the joint configuration", |r| r.metrics().borrow().configuration.is_joint())
            .await;
    }
    assert!(cut_done.load(Ordering::SeqCst));
    for n in ["n4", "n5"] {
        let conf = c.raft(n).metrics().borrow().configuration.clone();
        assert!(!conf.is_joint(), "{n} never got the joint entry: {conf:?}");
    }
    // Crash the leader mid-change and restart it from its stores.
    c.stop(&leader).await;
    let answer = call.await.expect("call task");
    assert!(
        matches!(answer, Err(Error::Shutdown | Error::LeadershipLost)),
        "the interrupted call's outcome is unknown: {answer:?}"
    );
    // The whole old half restarts too: every server holding the joint
    // entry resumes the change from its stored log.
    for n in &old {
        c.stop(n).await;
    }
    c.net.heal();
    c.start(&leader).await;
    for n in &old {
        c.start(n).await;
    }
    let new = vec![leader.clone(), "n4".to_string(), "n5".to_string()];
    let deadline = tokio::time::Instant::now() + T;
    let done = loop {
        let leaders: Vec<String> = c.leaders().into_iter().filter(|l| new.contains(l)).collect();
        if let Some(l) = leaders.first() {
            let (conf, at) = c.raft(l).get_configuration().await.expect("configuration");
            let committed = c.raft(l).metrics().borrow().commit_index >= at;
            if !conf.is_joint() && committed && voters(&conf) == new.iter().cloned().collect() {
                break l.clone();
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "the joint change did not complete within {T:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let (conf, _) = c.raft(&done).get_configuration().await.expect("configuration");
    assert_eq!(members(&conf), new.iter().cloned().collect(), "the old servers ended removed");
    let last = c.raft(&done).barrier(T).await.expect("barrier");
    for n in &new {
        c.wait_applied(n, last, T).await;
        let got = applied(&c, n);
        for i in 0..5 {
            assert!(got.contains(&format!("before-{i}")), "{n} lost before-{i}");
        }
    }
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn s6_refusals_are_typed_errors() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader).clone();
    let (before, prev) = raft.get_configuration().await.expect("configuration");

    let err = raft.change_membership([ConfChange::Remove(id("n9"))], 0, T).await.expect_err("unknown");
    assert!(matches!(&err, Error::UnknownServer(s) if s.as_str() == "n9"), "{err:?}");

    let err = raft
        .change_membership([ConfChange::AddVoter(id("n2"), "elsewhere".into())], 0, T)
        .await
        .expect_err("existing id");
    assert!(
        matches!(&err, Error::ServerExists { id, address } if id.as_str() == "n2" && address.as_str() == "n2"),
        "{err:?}"
    );

    let all = ["n1", "n2", "n3"].map(|n| ConfChange::Remove(id(n)));
    let err = raft.change_membership(all, 0, T).await.expect_err("no voter left");
    assert!(matches!(err, Error::MembershipChangeRefused(ConfChangeError::Invalid(_))), "{err:?}");

    let twice = [ConfChange::Remove(id("n2")), ConfChange::Demote(id("n2"))];
    let err = raft.change_membership(twice, 0, T).await.expect_err("named twice");
    assert!(
        matches!(&err, Error::MembershipChangeRefused(ConfChangeError::DuplicateServer(s)) if s.as_str() == "n2"),
        "{err:?}"
    );

    let err = raft.change_membership([], 0, T).await.expect_err("nothing");
    assert!(matches!(err, Error::MembershipChangeRefused(ConfChangeError::NoChanges)), "{err:?}");

    let err = raft.change_membership([ConfChange::Remove(id("n2"))], prev + 7, T).await.expect_err("stale");
    assert!(matches!(err, Error::StalePrevIndex { current } if current == prev), "{err:?}");

    let follower = c.running().into_iter().find(|n| *n != leader).expect("follower");
    let err = c
        .raft(&follower)
        .change_membership([ConfChange::Remove(id("n2"))], 0, T)
        .await
        .expect_err("follower");
    assert!(
        matches!(&err, Error::NotLeader { leader: Some((l, _)) } if l.as_str() == leader),
        "a follower names the leader: {err:?}"
    );

    // Nothing changed.
    let (after, at) = raft.get_configuration().await.expect("configuration");
    assert_eq!((after, at), (before.clone(), prev));

    // A set that changes nothing answers the current index (the design's
    // name for the change type is the same type).
    let same = raft.change_membership([raft::MembershipChange::AddVoter(id("n2"), "n2".into())], 0, T).await;
    assert_eq!(same.expect("no-op"), prev);
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn s6_a_new_voter_that_never_catches_up_stays_a_nonvoter_and_blocks_nothing_after() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader).clone();
    // n9 is never started.
    let pending = tokio::spawn({
        let raft = raft.clone();
        let changes = [ConfChange::AddVoter(id("n9"), "n9".into()), ConfChange::Remove(id("n3"))];
        async move { raft.change_membership(changes, 0, Duration::from_secs(2)).await }
    });
    // While it is under way, every other change is refused, naming it.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let (conf, _) = raft.get_configuration().await.expect("configuration");
        if conf.server(&id("n9")).is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "n9 staged");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let err = raft.remove_server(id("n2"), 0, T).await.expect_err("in progress");
    assert!(
        matches!(&err, Error::ConfigurationChangeInProgress { pending } if pending.contains("n9")),
        "{err:?}"
    );
    let err = raft.change_membership([ConfChange::Remove(id("n2"))], 0, T).await.expect_err("in progress");
    assert!(matches!(err, Error::ConfigurationChangeInProgress { .. }), "{err:?}");

    let answer = pending.await.expect("task");
    assert!(matches!(&answer, Err(Error::CatchUpTimeout { id, .. }) if id.as_str() == "n9"), "{answer:?}");
    let (conf, _) = raft.get_configuration().await.expect("configuration");
    assert_eq!(voters(&conf), set(&["n1", "n2", "n3"]), "nothing else changed");
    assert_eq!(conf.server(&id("n9")).map(|s| s.suffrage), Some(Suffrage::Nonvoter), "n9 stays a non-voter");
    // Later changes go through.
    raft.remove_server(id("n9"), 0, T).await.expect("remove the staged server");
    let _ = c.running();
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn s6_a_change_whose_caller_stopped_waiting_is_abandoned_and_blocks_nothing_after() {
    let mut c = TestCluster::new(3).await;
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader).clone();
    // n9 is never started, and the caller sets no timeout, then gives up.
    let pending = tokio::spawn({
        let raft = raft.clone();
        let changes = [ConfChange::AddVoter(id("n9"), "n9".into()), ConfChange::Remove(id("n3"))];
        async move { raft.change_membership(changes, 0, Duration::ZERO).await }
    });
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let (conf, _) = raft.get_configuration().await.expect("configuration");
        if conf.server(&id("n9")).is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "n9 staged");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pending.abort();
    // The abandoned change no longer refuses later ones.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        match raft.remove_server(id("n9"), 0, T).await {
            Ok(_) => break,
            Err(Error::ConfigurationChangeInProgress { .. }) => {
                assert!(tokio::time::Instant::now() < deadline, "the abandoned change still blocks");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    let (conf, _) = raft.get_configuration().await.expect("configuration");
    assert_eq!(voters(&conf), set(&["n1", "n2", "n3"]), "nothing else changed");
    c.shutdown().await;
}
