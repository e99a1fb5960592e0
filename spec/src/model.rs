//! The data types a snapshot holds. Everything is already resolved: references are indexes,
//! subsets list their endpoints, and every route rule carries the config line it came from.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A compiled, validated mesh configuration: what one `meshd` serves.
///
/// Invariant (checked by [`Snapshot::validate`]): every index points into the vector it names,
/// and `hosts` is sorted by name with no duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Services by name, sorted by `name`.
    pub services: Vec<Service>,
    /// Route tables, one per routed service; referenced from `hosts`.
    pub routes: Vec<RouteTable>,
    /// Every host name a request may carry, sorted, each mapped to its route table.
    pub hosts: Vec<HostEntry>,
    /// Workloads by name, sorted by `name`.
    pub workloads: Vec<Workload>,
}

/// A named service and the endpoints that serve it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Short name, e.g. `reviews`.
    pub name: String,
    /// Namespace; `default` unless the config says otherwise.
    pub namespace: String,
    /// Ports the service listens on, each with an explicit protocol.
    pub ports: Vec<ServicePort>,
    /// Endpoints serving the service, in declaration order.
    pub endpoints: Vec<Endpoint>,
    /// Named subsets, sorted by `name`.
    pub subsets: Vec<Subset>,
}

/// A service port and the protocol spoken on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    /// Port number.
    pub number: u16,
    /// Application protocol on this port.
    pub protocol: Protocol,
}

/// Application protocol of a port or listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// HTTP/1.1.
    Http,
    /// HTTP/2 (prior knowledge or ALPN).
    Http2,
    /// gRPC over HTTP/2.
    Grpc,
    /// Opaque TCP.
    Tcp,
}

impl Protocol {
    /// The name used in config files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Http2 => "http2",
            Self::Grpc => "grpc",
            Self::Tcp => "tcp",
        }
    }
}

/// One backend instance of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Socket address the sidecar connects to.
    pub address: SocketAddr,
    /// Labels subsets select on, e.g. `version=v1`.
    pub labels: BTreeMap<String, String>,
    /// Relative load-balancing weight; 1 by default. Invariant: at least 1.
    pub weight: u32,
}

/// A named group of a service's endpoints, selected by labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subset {
    /// Subset name, e.g. `v1`.
    pub name: String,
    /// The label selector: an endpoint belongs if it carries every pair.
    pub selector: BTreeMap<String, String>,
    /// Indexes into the service's `endpoints` that the selector matches, ascending.
    pub endpoints: Vec<u32>,
}

/// Maps one host name (without port) to the route table serving it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    /// Lower-case host name, e.g. `reviews` or `reviews.default.svc.cluster.local`.
    pub host: String,
    /// Index into [`Snapshot::routes`].
    pub route_table: u32,
}

/// The ordered rules for requests addressed to one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    /// Index into [`Snapshot::services`] of the service these hosts name.
    pub service: u32,
    /// Rules in evaluation order; the first that matches wins.
    pub rules: Vec<RouteRule>,
}

/// One routing rule: when any of its matches holds, send to its destinations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRule {
    /// Rule name, unique within its table.
    pub name: String,
    /// Alternatives (OR); an empty list matches every request.
    pub matches: Vec<RequestMatch>,
    /// Weighted destinations. Invariant: non-empty and weights sum to 100.
    pub destinations: Vec<WeightedDestination>,
    /// Where in the config this rule was written.
    pub source: SourceLocation,
}

/// Conditions that must all hold (AND) for a request to match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestMatch {
    /// Path condition, if any; compared against the request path without the query.
    pub path: Option<PathMatch>,
    /// Header conditions; every one must hold.
    pub headers: Vec<HeaderMatch>,
}

/// How a request path is compared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathMatch {
    /// The path equals this string.
    Exact(String),
    /// The path starts with this string.
    Prefix(String),
}

/// A header that must be present with exactly this value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderMatch {
    /// Lower-case header name.
    pub name: String,
    /// Required value, compared byte for byte.
    pub exact: String,
}

/// A destination and its share of the traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightedDestination {
    /// Index into [`Snapshot::services`].
    pub service: u32,
    /// Index into that service's `subsets`; `None` means every endpoint.
    pub subset: Option<u32>,
    /// Percentage of matching requests, 0 to 100.
    pub weight: u32,
}

/// A position in a config file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceLocation {
    /// File path as given to the compiler.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl std::fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// An application instance that a sidecar runs beside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// Workload name, passed to `meshd --workload`.
    pub name: String,
    /// SPIFFE ID, e.g. `spiffe://cluster.local/ns/default/sa/productpage`.
    pub identity: Option<String>,
    /// Ports the sidecar accepts for this workload and forwards to the local application.
    pub inbound: Vec<InboundPort>,
    /// Indexes into [`Snapshot::services`] the workload may call, ascending.
    pub outbound: Vec<u32>,
}

/// An inbound port: traffic for `port` is forwarded to the application at `target`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundPort {
    /// The service port callers address.
    pub port: u16,
    /// Protocol spoken on it.
    pub protocol: Protocol,
    /// Where the local application listens.
    pub target: SocketAddr,
}

impl Snapshot {
    /// Looks up a service by name.
    pub fn service(&self, name: &str) -> Option<(u32, &Service)> {
        let index = self
            .services
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()?;
        Some((index as u32, &self.services[index]))
    }

    /// Looks up a workload by name.
    pub fn workload(&self, name: &str) -> Option<&Workload> {
        let index = self
            .workloads
            .binary_search_by(|w| w.name.as_str().cmp(name))
            .ok()?;
        Some(&self.workloads[index])
    }
}
