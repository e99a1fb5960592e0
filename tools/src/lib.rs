//! Ringmesh tools: the `meshload` load generator and a small HTTP/1.1 origin server for tests, demos and benchmarks.
//!
//! Nothing here depends on the dataplane or compiler crates: a load generator must not
//! share the HTTP code paths it measures.
#![forbid(unsafe_code)]

pub mod client;
pub mod envoy;
pub mod harness;
pub mod load;
pub mod upstream;
mod wire;
