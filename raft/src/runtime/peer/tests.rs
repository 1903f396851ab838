//! Tests of the peer task against a scripted transport, on tokio's paused
//! clock: the one back-off shared by appends and snapshot transfers, and
//! a transfer's outcome always reaching the core.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::backoff::{MAX_BACKOFF, MIN_BACKOFF};
use super::{spawn, PeerEvent, PeerHandle, SnapshotOffer};
use crate::core::{Body, Message};
use crate::error::{StorageError, TransportError};
use crate::message::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    RequestPreVoteRequest, RequestPreVoteResponse, RequestVoteRequest, RequestVoteResponse,
    TimeoutNowRequest, TimeoutNowResponse,
};
use crate::snapshot::{SnapshotReader, SnapshotSink, SnapshotStore};
use crate::transport::{AppendPipeline, InboundRpc, Transport};
use crate::types::{Configuration, Log, LogType, ServerAddress, ServerId, SnapshotMeta};

const TERM: u64 = 3;
const SNAPSHOT_INDEX: u64 = 10;

/// A call the peer task made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Append,
    Snapshot,
}

/// What the scripted transport answers, and what it was asked.
#[derive(Default)]
struct Script {
    /// Answers to InstallSnapshot, in order; once they run out, the call
    /// never ends.
    snapshots: VecDeque<Result<InstallSnapshotResponse, TransportError>>,
    /// Answers to unary AppendEntries, in order; once they run out, each is
    /// answered with a success.
    appends: VecDeque<Result<AppendEntriesResponse, TransportError>>,
    /// Every call made, with when it was made.
    calls: Vec<(Call, Instant)>,
}

struct ScriptedTransport(Mutex<Script>);

impl ScriptedTransport {
    fn calls(&self) -> Vec<(Call, Instant)> {
        self.0.lock().expect("script lock").calls.clone()
    }
}

fn unreachable_peer() -> TransportError {
    TransportError::Unreachable(ServerAddress::from("n2:1"), "connection refused".into())
}

fn installed() -> Result<InstallSnapshotResponse, TransportError> {
    Ok(InstallSnapshotResponse { term: TERM, success: true })
}

fn refused() -> Result<InstallSnapshotResponse, TransportError> {
    Ok(InstallSnapshotResponse { term: TERM, success: false })
}

/// A follower's acceptance of `req`.
fn accepted(req: &AppendEntriesRequest) -> AppendEntriesResponse {
    AppendEntriesResponse {
        term: req.term,
        success: true,
        last_log_index: req.prev_log_index + req.entries.len() as u64,
        conflict_term: 0,
        conflict_index: 0,
        round: req.round,
    }
}

#[async_trait]
impl Transport for ScriptedTransport {
    fn local_addr(&self) -> ServerAddress {
        ServerAddress::from("n1:1")
    }

    fn take_consumer(&self) -> Result<mpsc::Receiver<InboundRpc>, TransportError> {
        Err(TransportError::Closed)
    }

    async fn append_entries(
        &self,
        _target: &ServerId,
        _addr: &ServerAddress,
        req: AppendEntriesRequest,
    ) -> Result<AppendEntriesResponse, TransportError> {
        let mut script = self.0.lock().expect("script lock");
        script.calls.push((Call::Append, Instant::now()));
        script.appends.pop_front().unwrap_or_else(|| Ok(accepted(&req)))
    }

    /// A pipeline that accepts every request.
    async fn append_entries_pipeline(
        &self,
        _target: &ServerId,
        _addr: &ServerAddress,
    ) -> Result<AppendPipeline, TransportError> {
        let (requests, mut queued) = mpsc::channel::<AppendEntriesRequest>(16);
        let (answers, responses) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(req) = queued.recv().await {
                if answers.send(Ok(accepted(&req))).await.is_err() {
                    return;
                }
            }
        });
        Ok(AppendPipeline { requests, responses })
    }

    async fn request_vote(
        &self,
        _target: &ServerId,
        _addr: &ServerAddress,
        _req: RequestVoteRequest,
    ) -> Result<RequestVoteResponse, TransportError> {
        Err(TransportError::Other("no votes in this test".into()))
    }

    async fn request_pre_vote(
        &self,
        _target: &ServerId,
        _addr: &ServerAddress,
        _req: RequestPreVoteRequest,
    ) -> Result<RequestPreVoteResponse, TransportError> {
        Err(TransportError::Other("no votes in this test".into()))
    }

    async fn timeout_now(
        &self,
        _target: &ServerId,
        _addr: &ServerAddress,
        _req: TimeoutNowRequest,
    ) -> Result<TimeoutNowResponse, TransportError> {
        Err(TransportError::Other("no transfers in this test".into()))
    }

    async fn install_snapshot(
        &self,
        _target: &ServerId,
        _addr: &ServerAddress,
        req: InstallSnapshotRequest,
        _data: SnapshotReader,
    ) -> Result<InstallSnapshotResponse, TransportError> {
        assert_eq!((req.term, req.meta.index), (TERM, SNAPSHOT_INDEX));
        let answer = {
            let mut script = self.0.lock().expect("script lock");
            script.calls.push((Call::Snapshot, Instant::now()));
            script.snapshots.pop_front()
        };
        match answer {
            Some(answer) => answer,
            None => std::future::pending().await,
        }
    }
}

/// A store holding one snapshot, which it only reads.
struct OneSnapshot;

fn stored_meta() -> SnapshotMeta {
    SnapshotMeta {
        id: "snap-10".into(),
        index: SNAPSHOT_INDEX,
        term: TERM,
        configuration: Configuration::default(),
        configuration_index: 1,
        size: 4,
    }
}

#[async_trait]
impl SnapshotStore for OneSnapshot {
    async fn create(
        &self,
        _index: u64,
        _term: u64,
        _configuration: &Configuration,
        _configuration_index: u64,
    ) -> Result<Box<dyn SnapshotSink>, StorageError> {
        Err(StorageError::Failed("this test store is read-only".into()))
    }

    async fn list(&self) -> Result<Vec<SnapshotMeta>, StorageError> {
        Ok(vec![stored_meta()])
    }

    async fn open(&self, _id: &str) -> Result<(SnapshotMeta, SnapshotReader), StorageError> {
        Ok((stored_meta(), SnapshotReader::from_bytes(&b"data"[..])))
    }
}

/// Starts a peer task from n1 to n2 over a transport following `script`.
fn start(script: Script) -> (Arc<ScriptedTransport>, PeerHandle, mpsc::UnboundedReceiver<PeerEvent>) {
    let transport = Arc::new(ScriptedTransport(Mutex::new(script)));
    let (events_tx, events) = mpsc::unbounded_channel();
    let handle = spawn(
        ServerId::from("n1"),
        ServerId::from("n2"),
        ServerAddress::from("n2:1"),
        transport.clone(),
        Arc::new(OneSnapshot),
        events_tx,
    );
    (transport, handle, events)
}

fn offer() -> SnapshotOffer {
    SnapshotOffer { term: TERM, cluster_id: None }
}

fn heartbeat() -> Message {
    let req = AppendEntriesRequest {
        term: TERM,
        leader_id: ServerId::from("n1"),
        prev_log_index: SNAPSHOT_INDEX,
        prev_log_term: TERM,
        entries: Vec::new(),
        leader_commit: SNAPSHOT_INDEX,
        round: 1,
        cluster_id: None,
    };
    Message {
        from: ServerId::from("n1"),
        to: ServerId::from("n2"),
        rpc_id: 0,
        body: Body::AppendEntries(req),
    }
}

/// AppendEntries carrying one entry after the snapshot.
fn entries() -> Message {
    let mut msg = heartbeat();
    if let Body::AppendEntries(req) = &mut msg.body {
        req.entries = vec![Log::new(SNAPSHOT_INDEX + 1, TERM, LogType::Command, &b"x"[..])];
    }
    msg
}

/// A vote request (votes always fail on the scripted transport).
fn vote_request() -> Message {
    let req = RequestVoteRequest {
        term: TERM + 1,
        candidate_id: ServerId::from("n1"),
        last_log_index: SNAPSHOT_INDEX,
        last_log_term: TERM,
        leadership_transfer: false,
        cluster_id: None,
    };
    Message { from: ServerId::from("n1"), to: ServerId::from("n2"), rpc_id: 0, body: Body::RequestVote(req) }
}

/// The next event for the main task (a minute of paused time at most).
async fn next_event(events: &mut mpsc::UnboundedReceiver<PeerEvent>) -> PeerEvent {
    tokio::time::timeout(Duration::from_secs(60), events.recv())
        .await
        .expect("the peer task reported nothing within a minute")
        .expect("the peer task's event channel is open")
}

/// What the next event is, in a few words.
fn describe(ev: &PeerEvent) -> String {
    match ev {
        PeerEvent::Response(m) => format!("response {:?}", m.body),
        PeerEvent::Unreachable(p) => format!("unreachable {p}"),
        PeerEvent::Reachable(p) => format!("reachable {p}"),
        PeerEvent::SnapshotSent { index, term, success, .. } => {
            format!("snapshot sent index {index} term {term} success {success}")
        }
        PeerEvent::ClusterMismatch { .. } => "cluster mismatch".into(),
        PeerEvent::PeerRemoved(p) => format!("removed {p}"),
        PeerEvent::RestoreStored { .. } => "restore stored".into(),
        PeerEvent::SnapshotReceived { .. } => "snapshot received".into(),
        PeerEvent::Fetched { .. } => "fetched".into(),
    }
}

/// The next `n` events, in a few words each, sorted (for events sent by
/// different tasks, whose order is not fixed).
async fn next_events(events: &mut mpsc::UnboundedReceiver<PeerEvent>, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    for _ in 0..n {
        got.push(describe(&next_event(events).await));
    }
    got.sort();
    got
}

async fn expect_event(events: &mut mpsc::UnboundedReceiver<PeerEvent>, expected: &str) {
    let got = describe(&next_event(events).await);
    assert_eq!(got, expected);
}

const SENT_OK: &str = "snapshot sent index 10 term 3 success true";
const SENT_FAILED: &str = "snapshot sent index 0 term 3 success false";
const REFUSED: &str = "snapshot sent index 10 term 3 success false";

#[tokio::test(start_paused = true)]
async fn s7_a_failed_snapshot_transfer_backs_off_its_retry_and_the_heartbeats() {
    let script = Script { snapshots: [Err(unreachable_peer()), installed()].into(), ..Script::default() };
    let (transport, peer, mut events) = start(script);
    peer.send_snapshot(offer());
    expect_event(&mut events, "unreachable n2").await;
    expect_event(&mut events, SENT_FAILED).await;
    let failed_at = Instant::now();
    // Within the back-off: the heartbeat is dropped, the transfer waits.
    peer.send(heartbeat());
    peer.send_snapshot(offer());
    expect_event(&mut events, "reachable n2").await;
    expect_event(&mut events, SENT_OK).await;
    let calls = transport.calls();
    let kinds: Vec<Call> = calls.iter().map(|c| c.0).collect();
    assert_eq!(kinds, [Call::Snapshot, Call::Snapshot], "a heartbeat went out during the back-off");
    let waited = calls[1].1 - failed_at;
    // The first failure backs off 2 * MIN_BACKOFF, half of it jitter.
    assert!(
        waited >= MIN_BACKOFF && waited <= 2 * MIN_BACKOFF,
        "the retry waited {waited:?} after the failure"
    );
}

#[tokio::test(start_paused = true)]
async fn s7_a_failed_append_backs_off_the_next_snapshot_transfer() {
    let script = Script {
        snapshots: [installed()].into(),
        appends: [Err(unreachable_peer())].into(),
        ..Script::default()
    };
    let (transport, peer, mut events) = start(script);
    peer.send(heartbeat());
    expect_event(&mut events, "unreachable n2").await;
    let failed_at = Instant::now();
    peer.send_snapshot(offer());
    expect_event(&mut events, "reachable n2").await;
    expect_event(&mut events, SENT_OK).await;
    let calls = transport.calls();
    assert_eq!(calls.iter().map(|c| c.0).collect::<Vec<_>>(), [Call::Append, Call::Snapshot]);
    let waited = calls[1].1 - failed_at;
    assert!(
        waited >= MIN_BACKOFF && waited <= 2 * MIN_BACKOFF,
        "the transfer started {waited:?} after the failed append"
    );
}

#[tokio::test(start_paused = true)]
async fn s7_a_follower_that_keeps_refusing_snapshots_is_retried_ever_more_slowly_despite_answered_heartbeats()
{
    let script = Script {
        snapshots: [refused(), refused(), refused(), refused(), installed()].into(),
        ..Script::default()
    };
    let (transport, peer, mut events) = start(script);
    for _ in 0..3 {
        peer.send_snapshot(offer());
        expect_event(&mut events, REFUSED).await;
        // The back-off ends; the follower answers a heartbeat.
        tokio::time::advance(MAX_BACKOFF).await;
        peer.send(heartbeat());
        let answer = describe(&next_event(&mut events).await);
        assert!(answer.starts_with("response AppendEntriesResponse"), "got {answer}");
    }
    peer.send_snapshot(offer());
    expect_event(&mut events, REFUSED).await;
    let failed_at = Instant::now();
    peer.send_snapshot(offer());
    expect_event(&mut events, SENT_OK).await;
    let waited = transport.calls().last().expect("calls").1 - failed_at;
    // The fourth failure in a row backs off 16 * MIN_BACKOFF, half of it
    // jitter; had the heartbeats cleared it, it would be the first.
    assert!(waited >= 8 * MIN_BACKOFF, "the fifth transfer started only {waited:?} after the fourth failed");
}

#[tokio::test(start_paused = true)]
async fn heartbeats_do_not_wait_behind_a_transfer_and_a_stopped_task_reports_its_transfer_failed() {
    // The transfer never ends.
    let (transport, peer, mut events) = start(Script::default());
    peer.send_snapshot(offer());
    peer.send(heartbeat());
    let answer = describe(&next_event(&mut events).await);
    assert!(answer.starts_with("response AppendEntriesResponse"), "got {answer}");
    assert!(transport.calls().iter().any(|c| c.0 == Call::Append));
    // The peer leaves the configuration: its task is stopped mid-transfer,
    // and the core, which waits for the outcome, hears it failed.
    peer.task.abort();
    expect_event(&mut events, SENT_FAILED).await;
}

#[tokio::test(start_paused = true)]
async fn a_pipeline_answer_ends_the_back_off_and_makes_the_peer_reachable() {
    let script = Script { appends: [Err(unreachable_peer())].into(), ..Script::default() };
    let (_transport, peer, mut events) = start(script);
    peer.send(heartbeat());
    expect_event(&mut events, "unreachable n2").await;
    tokio::time::advance(MAX_BACKOFF).await;
    peer.send(entries());
    let got = next_events(&mut events, 2).await;
    assert!(got[0] == "reachable n2" && got[1].starts_with("response AppendEntriesResponse"), "got {got:?}");
    // The back-off is over: a heartbeat goes out at once (on the idle
    // pipeline) and is answered.
    peer.send(heartbeat());
    let answer = describe(&next_event(&mut events).await);
    assert!(answer.starts_with("response AppendEntriesResponse"), "got {answer}");
}

#[tokio::test(start_paused = true)]
async fn s7_once_entries_flow_again_after_failed_transfers_an_answer_clears_the_back_off() {
    let script = Script { snapshots: [refused(), refused(), installed()].into(), ..Script::default() };
    let (transport, peer, mut events) = start(script);
    for _ in 0..2 {
        peer.send_snapshot(offer());
        expect_event(&mut events, REFUSED).await;
        tokio::time::advance(MAX_BACKOFF).await;
    }
    // The core sends entries again: the follower no longer needs a
    // snapshot, so their answer clears the two failures.
    peer.send(entries());
    let answer = describe(&next_event(&mut events).await);
    assert!(answer.starts_with("response AppendEntriesResponse"), "got {answer}");
    peer.send(vote_request());
    expect_event(&mut events, "unreachable n2").await;
    let failed_at = Instant::now();
    peer.send_snapshot(offer());
    expect_event(&mut events, "reachable n2").await;
    expect_event(&mut events, SENT_OK).await;
    let waited = transport.calls().last().expect("calls").1 - failed_at;
    assert!(
        waited <= 2 * MIN_BACKOFF,
        "backed off {waited:?} after one failure: the earlier ones still counted"
    );
}

/// Counts the WARN and ERROR events of the tasks on this thread.
#[derive(Clone, Default)]
struct WarnCounter(Arc<std::sync::atomic::AtomicUsize>);

impl tracing::Subscriber for WarnCounter {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() <= tracing::Level::WARN {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(start_paused = true)]
async fn a_dead_peer_is_warned_about_once_not_at_every_snapshot_retry() {
    let warnings = WarnCounter::default();
    let _guard = tracing::subscriber::set_default(warnings.clone());
    let script = Script { snapshots: (0..4).map(|_| Err(unreachable_peer())).collect(), ..Script::default() };
    let (_transport, peer, mut events) = start(script);
    peer.send_snapshot(offer());
    expect_event(&mut events, "unreachable n2").await;
    expect_event(&mut events, SENT_FAILED).await;
    for _ in 0..3 {
        // The core asks again after each failure; the peer stays down.
        peer.send_snapshot(offer());
        expect_event(&mut events, SENT_FAILED).await;
    }
    let count = warnings.0.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(count, 1, "four failed transfers to a peer known to be down logged {count} warnings");
}
