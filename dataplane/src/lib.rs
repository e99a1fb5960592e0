//! meshd: the Ringmesh sidecar data plane: one pinned monoio worker per core serving a
//! compiled snapshot, plus a control thread for signals, admin and lifecycle.
#![deny(unsafe_code)]

pub mod access_log;
pub mod actions;
pub mod admin;
pub mod authz;
pub mod balancer;
pub mod conn;
pub mod control;
pub mod drain;
pub mod export;
pub mod grpc;
pub mod http1;
pub mod http2;
pub mod intercept;
pub mod json;
pub mod jwt;
pub mod logging;
pub mod metrics;
pub mod mirror;
pub mod outlier;
pub mod percore;
pub mod pool;
pub mod proxy;
pub mod ratelimit;
pub mod renew;
pub mod retry;
pub mod routing;
pub mod stream;
mod sys;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod usage;
pub mod worker;
