//! What the cores counted, for admin `/clusters`, `/certs` and `/metrics`, gathered on demand:
//! the admin thread asks the control loop, which asks every core (a `u` on its control socket);
//! each core answers with its own counts, and the admin thread sums them. Beyond the request
//! metrics, nothing is counted for this that the pools, breakers and balancers do not keep
//! already, and no core wakes unless asked.

use crate::export::sink::LogCounts;
use crate::metrics::Metrics;

/// One core's (or, summed, the sidecar's) pool usage for one route state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Content hash of the route state the group and endpoint indexes refer to.
    pub hash: String,
    /// Per endpoint group, in route-state order.
    pub groups: Vec<GroupUsage>,
    /// What happened to mirrored requests' copies.
    pub mirrors: MirrorUsage,
    /// Mutual TLS handshakes and refusals, JWTs verified and refused.
    pub authn: AuthnUsage,
    /// Requests refused for what their clients sent.
    pub refusals: RefusalUsage,
    /// Istio's request metrics (admin `/metrics`).
    pub requests: Metrics,
    /// Access log lines rendered and dropped.
    pub access_log: LogCounts,
    /// Spans rendered and dropped.
    pub spans: LogCounts,
    /// Per core: its index, the requests it finished and the downstream connections it holds.
    pub cores: Vec<CoreUsage>,
}

/// One core's load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreUsage {
    pub index: usize,
    pub requests: u64,
    pub active_connections: u64,
}

/// Peer and request authentication counts since start (see admin `/certs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthnUsage {
    /// Inbound connections that completed a handshake.
    pub inbound_handshakes: u64,
    /// Of those, connections that chose HTTP/2 by ALPN.
    pub inbound_h2: u64,
    /// HTTP/2 connections closed (GOAWAY `ENHANCE_YOUR_CALM`) for resetting most streams.
    pub inbound_h2_reset_floods: u64,
    /// Inbound TLS connections whose handshake failed (no or a bad client certificate, ...).
    pub inbound_failures: u64,
    /// Inbound plaintext connections refused by strict mTLS.
    pub plaintext_refused: u64,
    /// Outbound connections that completed a handshake.
    pub outbound_handshakes: u64,
    /// Outbound handshakes that failed for another reason than secure naming.
    pub outbound_failures: u64,
    /// Outbound handshakes refused because the server's identity was not the service's.
    pub naming_failures: u64,
    /// Inbound requests whose JWT verified.
    pub jwt_verified: u64,
    /// Inbound requests refused (401) for their JWT.
    pub jwt_rejected: u64,
}

impl AuthnUsage {
    fn add(&mut self, other: &Self) {
        self.inbound_handshakes += other.inbound_handshakes;
        self.inbound_h2 += other.inbound_h2;
        self.inbound_h2_reset_floods += other.inbound_h2_reset_floods;
        self.inbound_failures += other.inbound_failures;
        self.plaintext_refused += other.plaintext_refused;
        self.outbound_handshakes += other.outbound_handshakes;
        self.outbound_failures += other.outbound_failures;
        self.naming_failures += other.naming_failures;
        self.jwt_verified += other.jwt_verified;
        self.jwt_rejected += other.jwt_rejected;
    }
}

/// Requests refused for what their clients sent (admin `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusalUsage {
    /// Requests that were not HTTP where HTTP was expected: answered 400, then closed.
    pub malformed_requests: u64,
    /// gRPC calls that sent a message over `--grpc-max-message`.
    pub grpc_messages_too_large: u64,
}

/// Mirroring's counts (see [`crate::mirror::Mirrors`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MirrorUsage {
    /// Copies in flight now.
    pub in_flight: u64,
    /// Copies sent and answered.
    pub completed: u64,
    /// Copies that failed, or were given up (a chunked body over the bound).
    pub failed: u64,
    /// Requests not mirrored because too many copies were in flight.
    pub skipped_busy: u64,
    /// Requests not mirrored for their body (a Content-Length over the bound) or an upgrade.
    pub skipped_body: u64,
}

/// One endpoint group's usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupUsage {
    /// Connections open under the group's pool limits; `None` when the group has none.
    pub open_connections: Option<u32>,
    /// Requests waiting for one of the group's connections.
    pub pending_requests: u32,
    /// Per endpoint, in the group's order.
    pub endpoints: Vec<EndpointUsage>,
}

/// One endpoint's usage within a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointUsage {
    /// Requests of this group in flight to the endpoint.
    pub requests_in_flight: u32,
    /// Idle pooled connections to the endpoint's address (shared by every group that has it).
    pub idle_connections: u32,
}

impl Usage {
    /// An empty sum for the route state `hash`, to [`Usage::add`] the cores' reports to.
    pub fn sum_for(hash: &str) -> Self {
        Self {
            hash: hash.to_owned(),
            ..Self::default()
        }
    }

    /// Adds another core's usage. Its mirror counts always count; its pool counts only for
    /// the same route state (a core that had not installed a reload yet is left out). The
    /// first report of the state gives an empty sum its groups.
    pub fn add(&mut self, other: &Self) {
        let (m, o) = (&mut self.mirrors, &other.mirrors);
        m.in_flight += o.in_flight;
        m.completed += o.completed;
        m.failed += o.failed;
        m.skipped_busy += o.skipped_busy;
        m.skipped_body += o.skipped_body;
        self.authn.add(&other.authn);
        self.refusals.malformed_requests += other.refusals.malformed_requests;
        self.refusals.grpc_messages_too_large += other.refusals.grpc_messages_too_large;
        self.requests.add(&other.requests);
        self.access_log.lines += other.access_log.lines;
        self.access_log.dropped += other.access_log.dropped;
        self.spans.lines += other.spans.lines;
        self.spans.dropped += other.spans.dropped;
        self.cores.extend_from_slice(&other.cores);
        if other.hash != self.hash {
            return;
        }
        if self.groups.is_empty() {
            self.groups.clone_from(&other.groups);
            return;
        }
        for (mine, theirs) in self.groups.iter_mut().zip(&other.groups) {
            mine.open_connections = match (mine.open_connections, theirs.open_connections) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            mine.pending_requests += theirs.pending_requests;
            for (e, t) in mine.endpoints.iter_mut().zip(&theirs.endpoints) {
                e.requests_in_flight += t.requests_in_flight;
                e.idle_connections += t.idle_connections;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(hash: &str, open: Option<u32>, in_flight: u32) -> Usage {
        Usage {
            hash: hash.into(),
            groups: vec![GroupUsage {
                open_connections: open,
                pending_requests: 1,
                endpoints: vec![EndpointUsage {
                    requests_in_flight: in_flight,
                    idle_connections: 2,
                }],
            }],
            mirrors: MirrorUsage {
                failed: 1,
                ..MirrorUsage::default()
            },
            authn: AuthnUsage {
                plaintext_refused: 1,
                ..AuthnUsage::default()
            },
            refusals: RefusalUsage::default(),
            requests: Metrics::default(),
            access_log: LogCounts::default(),
            spans: LogCounts::default(),
            cores: Vec::new(),
        }
    }

    #[test]
    fn sums_the_cores_reports_of_the_same_route_state() {
        let mut total = Usage::sum_for("h");
        total.add(&usage("other", Some(100), 100));
        total.add(&usage("h", Some(3), 1));
        total.add(&usage("h", Some(4), 5));
        assert_eq!(total.groups[0].open_connections, Some(7));
        assert_eq!(total.groups[0].pending_requests, 2);
        assert_eq!(total.groups[0].endpoints[0].requests_in_flight, 6);
        assert_eq!(total.groups[0].endpoints[0].idle_connections, 4);
        // Mirror counts are per core, whatever route state it serves.
        assert_eq!(
            total.mirrors.failed, 3,
            "a report of another state counts its mirrors"
        );
        assert_eq!(total.authn.plaintext_refused, 3);
        let mut none = usage("h", None, 0);
        none.add(&usage("h", None, 0));
        assert_eq!(none.groups[0].open_connections, None);
    }
}
