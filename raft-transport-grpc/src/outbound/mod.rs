//! The client side's streaming calls (unary calls live in
//! [`crate::transport`]).
//!
//! - [`pipeline`]: the ordered AppendEntries pipeline.
//! - [`snapshot`]: InstallSnapshot, streamed in chunks.

pub(crate) mod pipeline;
pub(crate) mod snapshot;
