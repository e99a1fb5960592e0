//! End-to-end tests: the real `meshc` and `meshd` binaries, real upstream servers, real
//! sockets on 127.0.0.1, under both IO drivers.

// Helper functions called from generated #[test]s are test code too.
#![allow(clippy::unwrap_used)]

mod access_log;
mod actions;
mod admin;
mod balancing;
mod bodies;
mod compile;
mod errors;
mod grpc;
mod h2c;
mod http1;
mod identity;
mod intercept;
mod interop;
mod istio;
mod language;
mod layering;
mod lifecycle;
mod limits;
mod meshca;
mod metrics;
mod mtls;
mod reload;
mod resilience;
mod routing;
mod tracing;
mod upgrade;
