//! The transport's message size limit on the in-memory network (which
//! refuses oversized messages the way the gRPC transport does), under
//! tokio's paused clock:
//!
//! - a follower that was down while 200 entries of 4 KiB were written
//!   catches up under a 64 KiB limit, also after the byte budget was reloaded
//!   far above the limit (the node keeps it within the limit);
//! - a command larger than one message is refused at once with
//!   `CommandTooLarge`, the largest accepted one commits everywhere, and
//!   writes go on.

use std::time::Duration;

use raft::transport::inmem::InmemNetwork;
use raft::{Error, ReloadableConfig};
use raft_tests::{RecordingFsm, TestCluster};

const T: Duration = Duration::from_secs(5);

async fn limited_cluster(limit: usize) -> TestCluster<RecordingFsm> {
    let net = InmemNetwork::new();
    net.set_max_message_size(Some(limit));
    TestCluster::<RecordingFsm>::with_network(3, net).await
}

/// Stops a follower, writes 200 entries of 4 KiB, restarts it, and waits
/// (bounded, in virtual time) until it has applied everything.
async fn lagging_follower_catches_up(c: &mut TestCluster<RecordingFsm>) {
    let leader = c.wait_for_leader().await;
    let follower = c.running().into_iter().find(|id| *id != leader).expect("a follower");
    c.stop(&follower).await;
    let mut last = 0;
    for i in 0..200u32 {
        let mut cmd = vec![(i % 251) as u8; 4096];
        cmd[..4].copy_from_slice(&i.to_le_bytes());
        last = c.raft(&leader).apply(cmd, T).await.expect("write").index;
    }
    c.start(&follower).await;
    c.wait_applied(&follower, last, Duration::from_secs(30)).await;
    let leader_applied = c.applied(&leader);
    let follower_applied = c.applied(&follower);
    assert_eq!(follower_applied.last(), leader_applied.last(), "the follower applied the same last command");
}

#[tokio::test(start_paused = true)]
async fn a_lagging_follower_catches_up_under_the_message_limit() {
    let mut c = limited_cluster(64 * 1024).await;
    lagging_follower_catches_up(&mut c).await;
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_byte_budget_reloaded_above_the_limit_stays_within_it() {
    let mut c = limited_cluster(64 * 1024).await;
    for id in c.running() {
        let raft = c.raft(&id);
        let rc = ReloadableConfig { max_append_entries_bytes: 16 * 1024 * 1024, ..raft.reloadable_config() };
        raft.reload_config(rc).expect("reload");
        assert_eq!(raft.reloadable_config().max_append_entries_bytes, 16 * 1024 * 1024);
        let bad = ReloadableConfig { max_append_entries_bytes: 0, ..raft.reloadable_config() };
        assert!(
            matches!(raft.reload_config(bad), Err(Error::InvalidConfig(m)) if m.contains("max_append_entries_bytes"))
        );
    }
    lagging_follower_catches_up(&mut c).await;
    c.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_command_over_the_message_limit_is_refused_at_once_and_writes_go_on() {
    const LIMIT: usize = 16 * 1024;
    let mut c = limited_cluster(LIMIT).await;
    let leader = c.wait_for_leader().await;
    let raft = c.raft(&leader).clone();
    let max = raft.max_command_size().expect("the network has a limit");
    assert!(max < LIMIT && max > LIMIT - 2048, "{max}");

    let started = tokio::time::Instant::now();
    let err = raft.apply(vec![1u8; 64 * 1024], T).await.expect_err("refused");
    assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");
    assert!(
        matches!(err, Error::CommandTooLarge { size, max: m } if size == 64 * 1024 && m == max),
        "{err:?}"
    );
    let err = raft.apply(vec![1u8; max + 1], T).await.expect_err("one byte over is refused");
    assert!(matches!(err, Error::CommandTooLarge { size, .. } if size == max + 1), "{err:?}");

    let index = raft.apply(vec![2u8; max], T).await.expect("the largest command commits").index;
    let next = raft.apply(&b"small"[..], T).await.expect("a normal write commits").index;
    assert_eq!(next, index + 1, "the refused commands took no place in the log");
    for id in c.running() {
        c.wait_applied(&id, next, T).await;
        let applied = c.applied(&id);
        assert_eq!(applied.iter().find(|(i, _)| *i == index).map(|(_, d)| d.len()), Some(max), "{id}");
    }
    c.shutdown().await;
}
