//! Why a try got no upstream connection, typed: which side failed, whether it counts against
//! the endpoint, and which retry condition (if any) it is. The reply to the client follows
//! from the type, never the other way round.

use std::net::SocketAddr;
use std::time::Duration;

use crate::http1::reply::LocalReply;
use crate::retry::Failure;
use crate::upstream::ConnectError;

/// A try's connection could not be had.
#[derive(Debug)]
pub(super) enum AcquireError {
    /// The endpoint refused, or its TLS handshake failed, or it did not connect within the
    /// connect timeout: the endpoint's fault.
    Connect { addr: SocketAddr, detail: String },
    /// The endpoint presented another identity than its service's (secure naming).
    Naming { addr: SocketAddr, detail: String },
    /// The try's own deadline (per-try or rule timeout) passed: while connecting (which counts
    /// against the endpoint, as any connect that does not complete), or while waiting for the
    /// group's pool (which does not).
    Deadline { detail: String, connecting: bool },
    /// The group's circuit breaker is full (connections and pending requests).
    Overflow { group: String },
}

impl AcquireError {
    /// From a failed connect that had `timeout` of its own, cut short at the try's deadline
    /// when `deadline_first`.
    pub(super) fn connect(
        addr: SocketAddr,
        error: ConnectError,
        timeout: Duration,
        deadline_first: bool,
    ) -> Self {
        match error {
            ConnectError::Refused(e) => Self::Connect {
                addr,
                detail: e.to_string(),
            },
            ConnectError::Naming(mismatch) => Self::Naming {
                addr,
                detail: mismatch.to_string(),
            },
            ConnectError::Tls(e) => Self::Connect {
                addr,
                detail: format!("TLS handshake failed: {e}"),
            },
            ConnectError::TimedOut if deadline_first => Self::Deadline {
                detail: format!("{addr}: the rule timeout expired while connecting"),
                connecting: true,
            },
            ConnectError::TimedOut => Self::Connect {
                addr,
                detail: format!("no connection within {} ms", timeout.as_millis()),
            },
        }
    }

    /// Whether outlier detection counts it against the endpoint.
    pub(super) fn endpoint_fault(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::Naming { .. }
                | Self::Deadline {
                    connecting: true,
                    ..
                }
        )
    }

    /// The retry condition it is, if any; a deadline is one only when a per-try timeout set it.
    pub(super) fn failure(&self, per_try_deadline: bool) -> Option<Failure> {
        match self {
            Self::Connect { .. } | Self::Naming { .. } => Some(Failure::ConnectFailure),
            Self::Deadline { .. } => per_try_deadline.then_some(Failure::PerTryTimeout),
            Self::Overflow { .. } => None,
        }
    }

    /// What the client is answered when no retry follows, and why.
    pub(super) fn reply(self) -> (LocalReply, String) {
        match self {
            Self::Connect { addr, detail } => {
                (LocalReply::ConnectFailure, format!("{addr}: {detail}"))
            }
            Self::Naming { addr, detail } => {
                (LocalReply::SecureNaming, format!("{addr}: {detail}"))
            }
            Self::Deadline { detail, .. } => (LocalReply::UpstreamTimeout, detail),
            Self::Overflow { group } => (
                LocalReply::UpstreamOverflow,
                format!("{group}: the connection and pending request limits are reached"),
            ),
        }
    }
}
