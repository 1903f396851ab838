//! The shared cluster id: stamped on every outbound RPC as
//! `x-raft-cluster-id` metadata by [`ClusterIdStamp`], checked on every
//! inbound RPC by [`ClusterIdCheck`] (mismatch → `PERMISSION_DENIED`).

use std::sync::Arc;

use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::error::GrpcError;

/// The metadata key carrying the cluster id.
pub const CLUSTER_ID_METADATA_KEY: &str = "x-raft-cluster-id";

/// Client-side interceptor adding the cluster id to each request.
#[derive(Clone, Debug)]
pub struct ClusterIdStamp {
    value: Option<AsciiMetadataValue>,
}

impl ClusterIdStamp {
    /// Builds the interceptor; fails if the id is not valid metadata.
    pub fn new(cluster_id: Option<&str>) -> Result<Self, GrpcError> {
        let value = cluster_id
            .map(|id| {
                id.parse::<AsciiMetadataValue>()
                    .map_err(|_| GrpcError::InvalidConfig(format!("cluster id {id:?} is not valid metadata")))
            })
            .transpose()?;
        Ok(Self { value })
    }
}

impl Interceptor for ClusterIdStamp {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.value {
            request.metadata_mut().insert(CLUSTER_ID_METADATA_KEY, value.clone());
        }
        Ok(request)
    }
}

/// Server-side interceptor refusing callers from another cluster.
///
/// The comparison is strict: a server with an id refuses callers without
/// one, and a server without an id refuses callers that send one.
#[derive(Clone, Debug)]
pub struct ClusterIdCheck {
    expected: Option<Arc<str>>,
}

impl ClusterIdCheck {
    /// Builds the check for this node's cluster id.
    pub fn new(cluster_id: Option<&str>) -> Self {
        Self { expected: cluster_id.map(Arc::from) }
    }

    fn check(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let got = match metadata.get(CLUSTER_ID_METADATA_KEY) {
            None => None,
            Some(v) => match v.to_str() {
                Ok(s) => Some(s),
                Err(_) => {
                    tracing::warn!("refusing rpc: cluster id metadata is not ascii");
                    return Err(Status::permission_denied("cluster id metadata is not valid"));
                }
            },
        };
        if got == self.expected.as_deref() {
            return Ok(());
        }
        let name = |id: Option<&str>| id.map_or_else(|| "none".to_owned(), str::to_owned);
        let (ours, theirs) = (name(self.expected.as_deref()), name(got));
        tracing::warn!(expected = %ours, got = %theirs, "refusing rpc from another cluster");
        Err(Status::permission_denied(format!(
            "cluster id mismatch: this node's cluster id is {ours}, the caller sent {theirs}"
        )))
    }
}

impl Interceptor for ClusterIdCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(request.metadata())?;
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(expected: Option<&str>, sent: Option<&str>) -> String {
        let mut metadata = tonic::metadata::MetadataMap::new();
        if let Some(sent) = sent {
            metadata.insert(CLUSTER_ID_METADATA_KEY, sent.parse().expect("ascii"));
        }
        let status = ClusterIdCheck::new(expected).check(&metadata).expect_err("mismatch");
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        status.message().to_owned()
    }

    #[test]
    fn mismatches_name_the_ids_plainly() {
        let msg = refusal(Some("kv-a"), Some("kv-b"));
        assert_eq!(msg, "cluster id mismatch: this node's cluster id is kv-a, the caller sent kv-b");
        let msg = refusal(Some("kv-a"), None);
        assert!(msg.ends_with("the caller sent none"), "{msg}");
        let msg = refusal(None, Some("kv-b"));
        assert!(msg.contains("cluster id is none, the caller sent kv-b") && !msg.contains("Some("), "{msg}");
    }
}
