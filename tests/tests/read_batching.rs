//! Readers answered together read together: with many callers on one
//! worker thread (a process that gets one core's worth of a shared CPU),
//! the leader's main task lets the readers answered in one batch queue
//! their next reads before it takes them, instead of running right after
//! the first one (tokio runs a woken task right after the task that woke
//! it). Counted with [`raft::telemetry::task_polls`], which is
//! process-wide: this binary holds this one test.

use std::time::Duration;

use raft::telemetry::task_polls;
use raft::transport::inmem::InmemNetwork;
use raft_tests::{RecordingFsm, TestCluster};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn reads_from_many_callers_on_one_worker_share_main_task_turns() {
    let mut c = TestCluster::<RecordingFsm>::with_network(3, InmemNetwork::new()).await;
    let leader = c.wait_for_leader().await;
    c.raft(&leader).apply("first", T).await.expect("a write of the leader's term");
    let (readers, each) = (64u64, 50u64);
    let before = task_polls().main;
    let mut tasks = Vec::new();
    for _ in 0..readers {
        let raft = c.raft(&leader).clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..each {
                raft.read_index().await.expect("read_index");
            }
        }));
    }
    for t in tasks {
        t.await.expect("reader task");
    }
    // About 0.2 with the batch wait, about 1.0 without it.
    let per_read = (task_polls().main - before) as f64 / (readers * each) as f64;
    assert!(
        per_read < 0.5,
        "{readers} readers should share the main tasks' turns: {per_read:.3} main-task polls per read"
    );
    c.shutdown().await;
}
