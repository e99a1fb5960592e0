//! The data types a snapshot holds. Everything is already resolved: references are indexes,
//! subsets list their endpoints, and every route rule carries the config line it came from.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// A compiled, validated mesh configuration: what one `meshd` serves.
///
/// Invariant (checked by [`Snapshot::validate`]): every index points into the vector it names,
/// and `hosts` is sorted by name, then namespace, with no duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Services by name, sorted by `name`.
    pub services: Vec<Service>,
    /// Route tables, one per routed service; referenced from `hosts`.
    pub routes: Vec<RouteTable>,
    /// Every host name a request may carry, sorted, each mapped to its route table.
    pub hosts: Vec<HostEntry>,
    /// Workloads sorted by `name`, then `namespace`; a name is used once per namespace.
    pub workloads: Vec<Workload>,
    /// Config the compiler accepted without serving it (an Istio field the snapshot cannot
    /// hold, a document out of scope, a protocol not served yet), in source order: meshd lists
    /// it under `/config`'s `not_enforced`, so nothing is ignored silently at run time either.
    pub unserved: Vec<Unserved>,
    /// The mesh-wide telemetry default: what a sidecar serving no workload applies.
    pub telemetry: Telemetry,
}

/// One piece of config accepted without being served, as its compiler warning described it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unserved {
    /// The warning's stable code, e.g. `W0200`.
    pub code: String,
    /// The warning's message.
    pub message: String,
    /// Where the config was written.
    pub source: SourceLocation,
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
    /// How traffic to the whole service is balanced, pooled and ejected.
    pub policy: TrafficPolicy,
    /// SPIFFE IDs a server for this service may present (secure naming), sorted; empty when
    /// no workload with an identity declares that it serves the service.
    pub identities: Vec<String>,
    /// Virtual addresses the service is called at (Istio ServiceEntry `addresses`, a
    /// Kubernetes Service's cluster IPs), on its ports; a captured connection to one routes to
    /// the service.
    pub addresses: Vec<AddressBlock>,
}

/// One address (a /32 or /128 block) or a CIDR block of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AddressBlock {
    /// The block's first address (its host bits are zero).
    pub ip: IpAddr,
    /// The number of leading bits every address of the block shares.
    pub prefix_len: u8,
}

impl AddressBlock {
    /// The block of `ip`'s first `prefix_len` bits (at most the address's width); host bits
    /// are cleared.
    pub fn new(ip: IpAddr, prefix_len: u8) -> Self {
        let ip = ip.to_canonical();
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let prefix_len = prefix_len.min(width);
        Self {
            ip: mask(ip, prefix_len),
            prefix_len,
        }
    }

    /// Whether the block holds exactly one address.
    pub fn is_single(&self) -> bool {
        self.prefix_len == if self.ip.is_ipv4() { 32 } else { 128 }
    }

    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.ip.is_ipv4() && mask(ip, self.prefix_len) == self.ip
    }

    /// Whether the two blocks share an address.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.contains(other.ip) || other.contains(self.ip)
    }
}

impl std::str::FromStr for AddressBlock {
    type Err = InvalidAddressBlock;

    /// `10.0.0.1`, `::1`, `10.0.0.0/8` or `fd00::/8`; host bits past the prefix are cleared.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (text, None),
        };
        let ip = ip.parse::<IpAddr>().map_err(|_| InvalidAddressBlock)?;
        let width = if ip.to_canonical().is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= width)
                .ok_or(InvalidAddressBlock)?,
        };
        Ok(Self::new(ip, prefix_len))
    }
}

/// Text that is neither an IP address nor a CIDR block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an IP address or CIDR block")]
pub struct InvalidAddressBlock;

impl std::fmt::Display for AddressBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.ip)
        } else {
            write!(f, "{}/{}", self.ip, self.prefix_len)
        }
    }
}

fn mask(ip: IpAddr, prefix_len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V4((bits & kept).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V6((bits & kept).into())
        }
    }
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
    /// The policy in force for this subset: the service's, with the subset's overrides applied.
    pub policy: TrafficPolicy,
}

/// Load balancing, connection pool limits and outlier detection for a service or subset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficPolicy {
    /// How an endpoint is picked for each request.
    pub load_balancer: LoadBalancer,
    /// Limits on the upstream connection pool (per sidecar; each core gets its share).
    pub pool: PoolLimits,
    /// When to eject a failing endpoint; `None` never ejects.
    pub outlier: Option<OutlierDetection>,
}

/// Endpoint selection for a request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoadBalancer {
    /// Weighted round robin (the default).
    #[default]
    RoundRobin,
    /// Weighted random choice.
    Random,
    /// Power of two choices by outstanding requests.
    LeastRequest,
    /// Consistent hashing on a ring (ketama).
    RingHash {
        /// What the hash is computed over.
        key: HashKey,
        /// Minimum number of ring entries; 1024 when the config does not say.
        minimum_ring_size: u64,
    },
    /// Consistent hashing with a Maglev table.
    Maglev {
        /// What the hash is computed over.
        key: HashKey,
    },
}

/// The request property a consistent hash is computed over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashKey {
    /// A request header (lower-case name); requests without it get a random endpoint.
    Header(String),
    /// A cookie; when `ttl_ms` is set and the request lacks it, the sidecar sets it.
    Cookie {
        /// Cookie name.
        name: String,
        /// Lifetime of a generated cookie in milliseconds; `None` never generates one.
        ttl_ms: Option<u64>,
    },
    /// The caller's IP address.
    SourceIp,
}

/// Upstream connection pool limits; `None` means unlimited (or the sidecar default for timeouts).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolLimits {
    /// Maximum open connections to the service.
    pub max_connections: Option<u32>,
    /// Maximum requests waiting for a connection; beyond it requests fail at once (`UO`).
    pub max_pending_requests: Option<u32>,
    /// Maximum requests sent on one connection before it is closed.
    pub max_requests_per_connection: Option<u32>,
    /// How long an idle pooled connection is kept, in milliseconds.
    pub idle_timeout_ms: Option<u64>,
    /// How long a connect may take, in milliseconds.
    pub connect_timeout_ms: Option<u64>,
    /// How long a relayed TCP connection may move no byte before it is closed, in
    /// milliseconds (Istio's `connectionPool.tcp.idleTimeout`); `None`: one hour, 0: never.
    pub tcp_idle_timeout_ms: Option<u64>,
}

/// Passive health checking: endpoints that keep failing are ejected for a while.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutlierDetection {
    /// Consecutive 5xx responses (including gateway errors) that eject; `None` disables.
    pub consecutive_5xx: Option<u32>,
    /// Consecutive 502/503/504 or connect failures that eject; `None` disables.
    pub consecutive_gateway_errors: Option<u32>,
    /// How often ejections are decided, in milliseconds.
    pub interval_ms: u64,
    /// Ejection time for a first ejection; multiplied by the number of times ejected.
    pub base_ejection_ms: u64,
    /// At most this percentage (0..=100) of a service's endpoints is ejected at once.
    pub max_ejection_percent: u32,
}

/// Maps one host name (without port) to the route table serving it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    /// Lower-case host name, e.g. `reviews` or `reviews.default.svc.cluster.local`.
    pub host: String,
    /// `Some(ns)` for a short name (`reviews`), which only callers in namespace `ns` resolve,
    /// as their DNS search path starts with `ns.svc.cluster.local`; `None` for a name every
    /// caller resolves. Invariant: a name with `None` has no other entry.
    pub namespace: Option<String>,
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
    /// Which rules a request path can match, so a sidecar need not try every rule.
    /// Invariant: equal to [`RouteTable::path_index`] of `rules`.
    pub index: PathIndex,
}

/// A route table's rules by the path conditions of their matches: a request path can only
/// match the rules listed under its exact path, under each entry that is a prefix of it, and
/// in `any_path`. Every list is ascending, so merging them keeps the rule order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathIndex {
    /// Exact paths, sorted, each with the rules that have a match requiring exactly it.
    pub exact: Vec<PathRules>,
    /// Path prefixes, sorted, each with the rules that have a match requiring it.
    pub prefixes: Vec<PrefixRules>,
    /// Rules with a match that has no exact or prefix path condition (none, or a regex).
    pub any_path: Vec<u32>,
}

/// An exact path and the rules indexed under it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRules {
    /// The path.
    pub path: String,
    /// Rule indexes, ascending.
    pub rules: Vec<u32>,
}

/// A path prefix, the rules indexed under it, and its nearest enclosing prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixRules {
    /// The prefix.
    pub prefix: String,
    /// Rule indexes, ascending.
    pub rules: Vec<u32>,
    /// Index in [`PathIndex::prefixes`] of the longest other entry that is a prefix of this one.
    pub parent: Option<u32>,
}

/// One routing rule: when any of its matches holds, apply its actions and send the request to
/// its destinations (or answer it with its redirect).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRule {
    /// Rule name, unique within its table.
    pub name: String,
    /// Alternatives (OR); an empty list matches every request.
    pub matches: Vec<RequestMatch>,
    /// Weighted destinations. Invariant: weights sum to 100, or the list is empty and
    /// `redirect` is set.
    pub destinations: Vec<WeightedDestination>,
    /// Where in the config this rule was written.
    pub source: SourceLocation,
    /// Time allowed for the whole request including retries, in milliseconds; `None` uses the
    /// sidecar's `--upstream-timeout`.
    pub timeout_ms: Option<u64>,
    /// Retry policy; `None` uses the sidecar default (one retry of an idempotent request that
    /// failed before any response byte).
    pub retries: Option<RetryPolicy>,
    /// Delays and aborts injected before the request is forwarded.
    pub fault: Option<FaultInjection>,
    /// Header edits on the request and the response.
    pub headers: HeaderOps,
    /// Path and authority rewrite applied before forwarding.
    pub rewrite: Option<Rewrite>,
    /// Answer with a redirect instead of forwarding.
    pub redirect: Option<Redirect>,
    /// Copy a share of the requests to another destination, fire and forget.
    pub mirror: Option<Mirror>,
    /// Local rate limit on requests matching this rule.
    pub rate_limit: Option<RateLimit>,
}

/// When and how a failed request is tried again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retries after the first try (0 disables retries).
    pub attempts: u32,
    /// Time allowed for each try, in milliseconds; `None` is bounded only by the rule timeout.
    pub per_try_timeout_ms: Option<u64>,
    /// The failures that are retried.
    pub retry_on: RetryOn,
    /// First backoff interval in milliseconds (full jitter, doubling per retry).
    pub backoff_base_ms: u64,
    /// Cap on the backoff interval in milliseconds.
    pub backoff_max_ms: u64,
    /// Whether requests with non-idempotent methods (POST, PATCH) are retried too.
    pub non_idempotent: bool,
}

/// Retry conditions (Envoy's `retry_on` names).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryOn {
    /// `5xx`: any 5xx response, reset or connect failure.
    pub server_error: bool,
    /// `gateway-error`: 502, 503, 504.
    pub gateway_error: bool,
    /// `reset`: the upstream closed or reset before a response.
    pub reset: bool,
    /// `connect-failure`: the connection could not be established.
    pub connect_failure: bool,
    /// `retriable-status-codes`: these statuses, ascending.
    pub status_codes: Vec<u16>,
    /// gRPC calls answered with these gRPC statuses, ascending (Envoy's gRPC conditions, see
    /// [`GRPC_RETRY_ON`]).
    #[serde(default)]
    pub grpc_statuses: Vec<u8>,
}

/// The gRPC retry conditions (Envoy's `x-envoy-retry-grpc-on` names, as Istio's `retryOn`
/// takes them) and the status each names.
pub const GRPC_RETRY_ON: [(&str, u8); 5] = [
    ("cancelled", 1),
    ("deadline-exceeded", 4),
    ("resource-exhausted", 8),
    ("internal", 13),
    ("unavailable", 14),
];

/// Fault injection for testing resilience.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultInjection {
    /// Hold the request before forwarding it.
    pub delay: Option<FaultDelay>,
    /// Answer the request locally with an error status.
    pub abort: Option<FaultAbort>,
}

/// A delay injected into a share of requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultDelay {
    /// Delay in milliseconds.
    pub delay_ms: u64,
    /// Share of requests delayed, in millionths (1 000 000 = all).
    pub per_million: u32,
}

/// An abort injected into a share of requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultAbort {
    /// Status answered (200..=599).
    pub status: u16,
    /// Share of requests aborted, in millionths (1 000 000 = all).
    pub per_million: u32,
}

/// Header edits on both directions of a rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderOps {
    /// Edits to the request before it is forwarded.
    pub request: HeaderEdits,
    /// Edits to the response before it is returned.
    pub response: HeaderEdits,
}

/// Header edits, applied in the order remove, set, add.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderEdits {
    /// Headers replaced (any existing values removed first).
    pub set: Vec<HeaderValue>,
    /// Headers appended.
    pub add: Vec<HeaderValue>,
    /// Lower-case names of headers removed.
    pub remove: Vec<String>,
}

/// A header name (lower-case) and value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderValue {
    /// Lower-case header name.
    pub name: String,
    /// Value, sent byte for byte.
    pub value: String,
}

/// Rewrites applied to a request before it is forwarded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rewrite {
    /// Replaces the part of the path the rule's prefix (or exact) match matched.
    pub path_prefix: Option<String>,
    /// Replaces every match of a regex in the path.
    pub path_regex: Option<RegexRewrite>,
    /// Replaces the Host header.
    pub authority: Option<String>,
}

/// A regex substitution on the path (`\1`-style groups are not supported; `$1` is).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegexRewrite {
    /// Pattern (RE2 syntax).
    pub pattern: String,
    /// Replacement; `$1` refers to the first group.
    pub substitution: String,
}

/// A redirect answered by the sidecar; unset parts keep the request's own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    /// New scheme, `http` or `https`.
    pub scheme: Option<String>,
    /// New host.
    pub authority: Option<String>,
    /// New port.
    pub port: Option<u16>,
    /// New path (replaces the whole path; the query is kept).
    pub path: Option<String>,
    /// Status: 301, 302, 303, 307 or 308.
    pub status: u16,
}

/// Mirroring: a copy of a share of the requests goes to another destination and its response
/// is discarded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mirror {
    /// Index into [`Snapshot::services`].
    pub service: u32,
    /// Index into that service's `subsets`; `None` means every endpoint.
    pub subset: Option<u32>,
    /// Share of requests mirrored, in millionths (1 000 000 = all).
    pub per_million: u32,
}

/// A local token-bucket rate limit; requests beyond it get 429.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Tokens added per interval (the sustained rate).
    pub tokens_per_fill: u32,
    /// Refill interval in milliseconds.
    pub fill_interval_ms: u64,
    /// Bucket size (the burst); at least `tokens_per_fill`.
    pub max_tokens: u32,
    /// One bucket per caller identity rather than one for the rule.
    pub per_source: bool,
}

/// Conditions that must all hold (AND) for a request to match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestMatch {
    /// Path condition, if any; compared against the request path without the query.
    pub path: Option<PathMatch>,
    /// Method condition, if any (`Exact`, `Prefix` or `Regex`).
    pub method: Option<ValueMatch>,
    /// Header conditions; every one must hold.
    pub headers: Vec<HeaderMatch>,
    /// Query parameter conditions; every one must hold.
    pub query: Vec<QueryMatch>,
}

/// How a request path is compared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathMatch {
    /// The path equals this string.
    Exact(String),
    /// The path starts with this string.
    Prefix(String),
    /// The whole path matches this regex (RE2 syntax, anchored at both ends).
    Regex(String),
}

/// A condition on one request header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderMatch {
    /// Lower-case header name.
    pub name: String,
    /// What its value must be.
    pub value: ValueMatch,
}

/// A condition on one query parameter (`?name=value`, compared after percent-decoding).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryMatch {
    /// Parameter name, case-sensitive.
    pub name: String,
    /// What its value must be.
    pub value: ValueMatch,
}

/// How a header, query parameter or method value is compared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueMatch {
    /// Equal byte for byte.
    Exact(String),
    /// Starts with this string.
    Prefix(String),
    /// The whole value matches this regex (RE2 syntax, anchored at both ends).
    Regex(String),
    /// Present, with any value.
    Present,
    /// Not present.
    Absent,
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
    /// Workload name, without `/`; passed to `meshd --workload` (as `NAMESPACE/NAME` when
    /// another namespace has a workload of the same name).
    pub name: String,
    /// Namespace; `default` unless the config says otherwise. Short host names resolve
    /// relative to it.
    pub namespace: String,
    /// SPIFFE ID, e.g. `spiffe://cluster.local/ns/default/sa/productpage`.
    pub identity: Option<String>,
    /// Ports the sidecar accepts for this workload and forwards to the local application.
    pub inbound: Vec<InboundPort>,
    /// Indexes into [`Snapshot::services`] the workload may call, ascending.
    pub outbound: Vec<u32>,
    /// Indexes into [`Snapshot::services`] this workload serves, ascending.
    pub serves: Vec<u32>,
    /// Authorization policies applied to inbound requests, in config order.
    pub authorization: Vec<AuthorizationPolicy>,
    /// JWT validation rules for inbound requests.
    pub jwt: Vec<JwtRule>,
    /// Access log and tracing settings.
    pub telemetry: Telemetry,
    /// Its labels (`app`, `version`, ...): what its metrics report it by.
    pub labels: BTreeMap<String, String>,
    /// What its sidecar does with a captured call to a destination no service declares.
    pub outbound_traffic: OutboundTraffic,
}

/// What a sidecar does with a captured call to a destination no service declares (Istio's
/// `outboundTrafficPolicy.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutboundTraffic {
    /// Pass it through to where it was sent (`ALLOW_ANY`, the default).
    #[default]
    AllowAny,
    /// Refuse it: 502 for HTTP, a closed connection otherwise (`REGISTRY_ONLY`).
    RegistryOnly,
}

impl OutboundTraffic {
    /// The DSL's keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllowAny => "allow_any",
            Self::RegistryOnly => "registry_only",
        }
    }
}

/// Peer authentication mode of an inbound port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsMode {
    /// Mutual TLS only; plaintext connections are refused.
    Strict,
    /// Mutual TLS or plaintext, told apart by the first bytes (the default, as in Istio).
    #[default]
    Permissive,
    /// Plaintext only.
    Disable,
}

impl TlsMode {
    /// The name used in config files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::Permissive => "permissive",
            Self::Disable => "disable",
        }
    }
}

/// An authorization policy bound to a workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationPolicy {
    /// Policy name (`namespace/name` for imported Istio policies).
    pub name: String,
    /// What a match does.
    pub action: AuthzAction,
    /// The policy matches a request when any rule does. An ALLOW policy without rules
    /// matches nothing (it denies everything); a DENY or AUDIT policy without rules matches
    /// nothing.
    pub rules: Vec<AuthzRule>,
    /// Where in the config the policy was written.
    pub source: SourceLocation,
}

/// The effect of a matching authorization policy. DENY is evaluated before ALLOW; when any
/// ALLOW policy exists, a request must match one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthzAction {
    /// Allow matching requests.
    Allow,
    /// Deny matching requests with 403.
    Deny,
    /// Log matching requests; no effect on the decision.
    Audit,
}

impl AuthzAction {
    /// The name used in config files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Audit => "audit",
        }
    }
}

/// One rule of a policy: it matches when any `from`, any `to` and every `when` hold (an empty
/// list holds).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthzRule {
    /// Caller conditions (OR).
    pub from: Vec<AuthzSource>,
    /// Request conditions (OR).
    pub to: Vec<AuthzOperation>,
    /// Extra conditions (AND).
    pub when: Vec<AuthzCondition>,
}

/// Conditions on the caller; every non-empty field must hold (a field holds when any of its
/// values matches and none of its `not_` values does).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthzSource {
    /// Peer SPIFFE IDs (`spiffe://` form).
    pub principals: Vec<StringPattern>,
    /// Peer SPIFFE IDs excluded.
    pub not_principals: Vec<StringPattern>,
    /// JWT `iss/sub` pairs.
    pub request_principals: Vec<StringPattern>,
    /// JWT `iss/sub` pairs excluded.
    pub not_request_principals: Vec<StringPattern>,
    /// Peer namespaces (from the SPIFFE ID).
    pub namespaces: Vec<StringPattern>,
    /// Peer namespaces excluded.
    pub not_namespaces: Vec<StringPattern>,
    /// Blocks the caller's address must be in (Istio's `ipBlocks`).
    pub ip_blocks: Vec<AddressBlock>,
    /// Blocks the caller's address must not be in.
    pub not_ip_blocks: Vec<AddressBlock>,
}

/// Conditions on the request; every non-empty field must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthzOperation {
    /// Request hosts (Host header without port, case-insensitive).
    pub hosts: Vec<StringPattern>,
    /// Hosts excluded.
    pub not_hosts: Vec<StringPattern>,
    /// Methods.
    pub methods: Vec<StringPattern>,
    /// Methods excluded.
    pub not_methods: Vec<StringPattern>,
    /// Paths (without the query).
    pub paths: Vec<StringPattern>,
    /// Paths excluded.
    pub not_paths: Vec<StringPattern>,
    /// Destination ports.
    pub ports: Vec<u16>,
    /// Destination ports excluded.
    pub not_ports: Vec<u16>,
}

/// A condition on a request attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthzCondition {
    /// The attribute.
    pub key: ConditionKey,
    /// It holds when the attribute matches one of these (or the list is empty)...
    pub values: Vec<StringPattern>,
    /// ...and none of these.
    pub not_values: Vec<StringPattern>,
}

/// An attribute an authorization condition reads (Istio's `when.key`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionKey {
    /// `request.headers[NAME]` (lower-case name).
    RequestHeader(String),
    /// `request.auth.claims[a][b]`: a claim path into the validated JWT.
    JwtClaim(Vec<String>),
    /// `request.auth.principal`.
    RequestPrincipal,
    /// `request.auth.audiences`.
    JwtAudience,
    /// `request.auth.presenter`.
    JwtPresenter,
    /// `source.principal`.
    SourcePrincipal,
    /// `source.namespace`.
    SourceNamespace,
    /// `source.ip`.
    SourceIp,
    /// `destination.port`.
    DestinationPort,
}

/// An Istio-style string pattern: exact, `prefix*`, `*suffix`, or `*`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StringPattern {
    /// Equal byte for byte.
    Exact(String),
    /// Starts with this.
    Prefix(String),
    /// Ends with this.
    Suffix(String),
    /// Anything, as long as the attribute is present.
    Any,
}

/// A JWT issuer whose tokens inbound requests may carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtRule {
    /// Required `iss` claim.
    pub issuer: String,
    /// Accepted `aud` values; empty accepts any.
    pub audiences: Vec<String>,
    /// Path of the JWKS file with the issuer's public keys.
    pub jwks_file: String,
    /// Where in the config the rule was written.
    pub source: SourceLocation,
}

/// Access log and tracing settings of a workload, or of the whole mesh.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Telemetry {
    /// How each request is logged; `None` disables the log.
    pub access_log: Option<AccessLog>,
    /// Share of requests traced, in millionths (1 000 000 = all).
    pub trace_sampling_per_million: u32,
    /// Istio's request metrics are not recorded (`metrics off`, Istio `metrics` `disabled`).
    pub metrics_disabled: bool,
    /// Where sampled requests' spans go (see [`crate::collector::parse`]); meshd's
    /// `--trace-collector` overrides it.
    pub trace_collector: Option<String>,
}

/// How an access log line is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessLog {
    /// One JSON object per line, with the keys of [`crate::access_log::json_fields`].
    Json,
    /// A text format with Envoy's `%COMMAND%` operators (see [`crate::access_log::parse`]).
    Text(String),
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
    /// Whether callers must use mutual TLS.
    pub tls: TlsMode,
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

    /// The route table a caller in `namespace` reaches by the lower-case `host` (without port).
    pub fn route_table_for_host(&self, host: &str, namespace: &str) -> Option<u32> {
        let first = self.hosts.partition_point(|h| h.host.as_str() < host);
        self.hosts[first..]
            .iter()
            .take_while(|h| h.host == host)
            .find(|h| h.resolves_for(namespace))
            .map(|h| h.route_table)
    }

    /// Looks up a workload by `NAME`, or by `NAMESPACE/NAME`; `None` when there is no such
    /// workload or a bare name is used in several namespaces ([`Snapshot::find_workload`] says
    /// which).
    pub fn workload(&self, query: &str) -> Option<&Workload> {
        self.find_workload(query).ok()
    }

    /// Looks up a workload by `NAME`, or by `NAMESPACE/NAME` (which a name used in several
    /// namespaces needs).
    pub fn find_workload(&self, query: &str) -> Result<&Workload, WorkloadLookupError> {
        let (namespace, name) = match query.split_once('/') {
            Some((namespace, name)) => (Some(namespace), name),
            None => (None, query),
        };
        let named = self.named(name);
        let found = match (named, namespace) {
            ([only], None) => Some(only),
            ([_, _, ..], None) => {
                return Err(WorkloadLookupError::Ambiguous {
                    name: name.to_owned(),
                    namespaces: named.iter().map(|w| w.namespace.clone()).collect(),
                })
            }
            (named, namespace) => named
                .iter()
                .find(|w| Some(w.namespace.as_str()) == namespace),
        };
        found.ok_or_else(|| {
            let known: Vec<String> = self
                .workloads
                .iter()
                .map(|w| self.workload_query(w))
                .collect();
            WorkloadLookupError::Unknown {
                query: query.to_owned(),
                known: if known.is_empty() {
                    "(no workloads)".to_owned()
                } else {
                    known.join(", ")
                },
            }
        })
    }

    /// The workloads named `name`, one per namespace (adjacent: workloads are sorted by name).
    fn named(&self, name: &str) -> &[Workload] {
        let first = self.workloads.partition_point(|w| w.name.as_str() < name);
        let named = &self.workloads[first..];
        &named[..named.partition_point(|w| w.name == name)]
    }

    /// The shortest query [`Snapshot::find_workload`] finds `workload` by: its name, or
    /// `NAMESPACE/NAME` when another workload has the same name.
    pub fn workload_query(&self, workload: &Workload) -> String {
        if self.named(&workload.name).len() > 1 {
            format!("{}/{}", workload.namespace, workload.name)
        } else {
            workload.name.clone()
        }
    }
}

/// Why [`Snapshot::find_workload`] found no workload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadLookupError {
    /// No workload has that name (in that namespace).
    #[error("unknown workload `{query}`; the snapshot has: {known}")]
    Unknown {
        /// What was asked for.
        query: String,
        /// The snapshot's workloads, as each is asked for, comma-separated.
        known: String,
    },
    /// The name is used in several namespaces; `NAMESPACE/NAME` picks one.
    #[error("workload `{name}` is in namespaces {}: give NAMESPACE/{name}", .namespaces.join(", "))]
    Ambiguous {
        /// The name asked for.
        name: String,
        /// The namespaces with a workload of that name.
        namespaces: Vec<String>,
    },
}

impl HostEntry {
    /// Whether a caller in `namespace` resolves this name.
    pub fn resolves_for(&self, namespace: &str) -> bool {
        self.namespace.as_deref().is_none_or(|own| own == namespace)
    }
}
