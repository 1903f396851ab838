//! gRPC transport for the `raft` crate. Under construction.
