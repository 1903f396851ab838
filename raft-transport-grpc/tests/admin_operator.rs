//! The operator calls of the admin service against three real nodes over
//! gRPC (durable stores): `Members` reports the leader's view of every
//! member, `DownloadSnapshot` streams the latest snapshot, and
//! `RestoreSnapshot` puts it back through `Raft::restore`, refusing
//! malformed uploads without touching the state.

mod common;

use bytes::Bytes;
use common::nodes::{distinct, new_nodes, poll, start_cluster, sync_all, wait_for_leader, write, GrpcNode};
use common::{bounded, test_config};
use raft_transport_grpc::admin::pb::restore_snapshot_chunk::Item as Up;
use raft_transport_grpc::admin::pb::snapshot_chunk::Item as Down;
use raft_transport_grpc::admin::{self, pb, AdminClient, LEADER_ID_METADATA_KEY};

async fn client(node: &GrpcNode) -> AdminClient {
    admin::connect(&node.addr(), &test_config()).await.expect("admin connect")
}

/// Downloads the latest snapshot: its metadata and data.
async fn download(client: &mut AdminClient) -> (pb::SnapshotMetadata, Vec<u8>) {
    let mut stream = bounded("download", client.download_snapshot(pb::DownloadSnapshotRequest {}))
        .await
        .expect("download")
        .into_inner();
    let Some(pb::SnapshotChunk { item: Some(Down::Meta(meta)) }) = stream.message().await.expect("meta")
    else {
        panic!("the metadata comes first");
    };
    let mut data = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = stream.message().await.expect("chunk") {
        let Some(Down::Data(bytes)) = chunk.item else { panic!("only data after the metadata") };
        data.extend_from_slice(&bytes);
        chunks += 1;
    }
    assert!(chunks >= 1, "the data came in {chunks} chunks");
    (meta, data)
}

fn header(meta: pb::SnapshotMetadata) -> pb::RestoreSnapshotChunk {
    pb::RestoreSnapshotChunk {
        item: Some(Up::Header(pb::RestoreSnapshotHeader { meta: Some(meta), timeout_ms: 20_000 })),
    }
}

fn data(bytes: &[u8]) -> pb::RestoreSnapshotChunk {
    pb::RestoreSnapshotChunk { item: Some(Up::Data(Bytes::copy_from_slice(bytes))) }
}

async fn upload(
    client: &mut AdminClient,
    messages: Vec<pb::RestoreSnapshotChunk>,
) -> Result<u64, tonic::Status> {
    bounded("upload", client.restore_snapshot(futures::stream::iter(messages)))
        .await
        .map(|r| r.into_inner().applied_index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_download_and_restore_over_the_admin_service() {
    let mut nodes = new_nodes(3, |_| test_config()).await;
    start_cluster(&mut nodes).await;
    wait_for_leader(&nodes).await;
    bounded("writes", write(&nodes, 0..300)).await;
    let (leader, _) = sync_all(&nodes).await;
    let follower = (leader + 1) % nodes.len();
    let mut leader_client = client(&nodes[leader]).await;
    let mut follower_client = client(&nodes[follower]).await;

    // Members: the leader reports every follower's progress; a follower
    // names the leader and reports none.
    poll("followers caught up in the leader's metrics", || {
        let metrics = nodes[leader].raft().metrics().borrow().clone();
        metrics.peers.values().all(|p| p.match_index == metrics.last_log_index).then_some(())
    })
    .await;
    let answer = leader_client.members(pb::MembersRequest {}).await.expect("members").into_inner();
    assert!(answer.from_leader);
    assert_eq!(answer.members.len(), 3);
    for m in &answer.members {
        if m.id == nodes[leader].id {
            assert!(m.leader && !m.has_progress);
        } else {
            assert!(m.has_progress && !m.catching_up, "{m:?}");
            assert_eq!(m.match_index + m.lag, answer.last_index, "{m:?}");
        }
    }
    let answer = follower_client.members(pb::MembersRequest {}).await.expect("members").into_inner();
    assert!(!answer.from_leader && answer.leader_id == nodes[leader].id, "{answer:?}");
    assert!(answer.members.iter().all(|m| !m.has_progress));

    // Download the latest snapshot (taken now: nothing was snapshotted yet).
    let (meta, bytes) = download(&mut leader_client).await;
    assert_eq!(meta.size, bytes.len() as u64);
    assert!(meta.index >= 300 && meta.configuration.len() == 3, "{meta:?}");
    let saved = nodes[leader].fsm.values();

    // The cluster moves on.
    bounded("more writes", write(&nodes, 1000..1100)).await;

    // Malformed uploads are refused and change nothing.
    let code = |r: Result<u64, tonic::Status>| r.expect_err("refused").code();
    assert_eq!(code(upload(&mut leader_client, vec![]).await), tonic::Code::InvalidArgument);
    assert_eq!(code(upload(&mut leader_client, vec![data(&bytes)]).await), tonic::Code::InvalidArgument);
    let no_meta = pb::RestoreSnapshotChunk {
        item: Some(Up::Header(pb::RestoreSnapshotHeader { meta: None, timeout_ms: 0 })),
    };
    assert_eq!(
        code(upload(&mut leader_client, vec![no_meta, data(&bytes)]).await),
        tonic::Code::InvalidArgument
    );
    let short = upload(&mut leader_client, vec![header(meta.clone()), data(&bytes[..bytes.len() - 3])]).await;
    assert_eq!(code(short), tonic::Code::DataLoss);
    let twice =
        upload(&mut leader_client, vec![header(meta.clone()), header(meta.clone()), data(&bytes)]).await;
    assert!(twice.is_err(), "a second header is refused");
    // A follower refuses and names the leader.
    let refused =
        upload(&mut follower_client, vec![header(meta.clone()), data(&bytes)]).await.expect_err("follower");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        refused.metadata().get(LEADER_ID_METADATA_KEY).and_then(|v| v.to_str().ok()),
        Some(nodes[leader].id.as_str())
    );
    sync_all(&nodes).await;
    assert!(distinct(nodes[leader].fsm.values()).contains(&1050), "the refused uploads changed nothing");

    // The real restore, in several chunks: every node is back at the saved state.
    let mut messages = vec![header(meta)];
    messages.extend(bytes.chunks(1000).map(data));
    let applied = upload(&mut leader_client, messages).await.expect("restore");
    assert!(applied > 0);
    sync_all(&nodes).await;
    for node in &nodes {
        assert_eq!(node.fsm.values(), saved, "{} is back at the saved state", node.id);
    }
}
