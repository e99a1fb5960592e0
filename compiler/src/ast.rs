//! The syntax tree of one `.mesh` file, exactly as written: values are raw (not range-checked,
//! names not resolved) and every node carries its byte span. `lower` validates it.

use crate::diag::{FileId, Span};

/// One parsed file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct File {
    pub(crate) id: FileId,
    pub(crate) items: Vec<Item>,
}

/// A top-level declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    Service(Service),
    Route(Route),
    Workload(Workload),
    Authorization(Authorization),
    Authentication(Authentication),
    PeerAuthentication(PeerAuthentication),
    /// A top-level `telemetry` block: the default for every workload.
    Telemetry(Telemetry),
    /// An imported Istio `Sidecar`: the outbound traffic policy of the workloads it targets.
    Sidecar(Sidecar),
}

/// An Istio `Sidecar`'s outbound traffic policy, for the workloads its target selects (the
/// root namespace without a selector: every workload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sidecar {
    pub(crate) span: Span,
    /// Its name, and the namespace or selector it targets.
    pub(crate) target: Box<(Ident, PolicyTarget)>,
    /// `allow_any` or `registry_only`, where `outboundTrafficPolicy.mode` said it.
    pub(crate) outbound_traffic: Option<Ident>,
}

/// A name as written (`[A-Za-z_][A-Za-z0-9_.-]*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ident {
    pub(crate) name: String,
    pub(crate) span: Span,
}

/// A double-quoted string with escapes resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Str {
    pub(crate) value: String,
    pub(crate) span: Span,
}

/// A decimal number; saturates at `u64::MAX` so lowering can report it as out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Number {
    pub(crate) value: u64,
    pub(crate) span: Span,
}

/// A duration such as `250ms`, `10s`, `1m`, `1h`, converted to milliseconds (saturating).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Duration {
    pub(crate) millis: u64,
    pub(crate) span: Span,
}

/// A percentage such as `10%` or `0.5%`, in millionths of all requests (`100%` = 1 000 000).
/// Not range-checked: `150%` parses and lowering reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Percent {
    pub(crate) per_million: u64,
    pub(crate) span: Span,
}

/// A socket address token, not yet parsed (e.g. `127.0.0.1:9081`, `[::1]:80`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Address {
    pub(crate) text: String,
    pub(crate) span: Span,
}

/// `key = "value"` inside braces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Label {
    pub(crate) key: Ident,
    pub(crate) value: Str,
}

/// A protocol keyword; the parser only accepts known ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Protocol {
    pub(crate) value: spec::Protocol,
    pub(crate) span: Span,
}

/// `service NAME { ... }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Service {
    /// The `service` keyword.
    pub(crate) keyword: Span,
    pub(crate) name: Ident,
    /// Every `namespace` line (more than one is a duplicate definition).
    pub(crate) namespaces: Vec<Ident>,
    pub(crate) ports: Vec<Port>,
    pub(crate) endpoints: Vec<Endpoint>,
    /// `address` lines: the virtual addresses (or CIDR blocks) the service is called at.
    pub(crate) addresses: Vec<Address>,
    pub(crate) subsets: Vec<Subset>,
    /// Every `policy` block (more than one is a duplicate definition).
    pub(crate) policies: Vec<Policy>,
    /// The closing brace, where "missing port" diagnostics could point.
    pub(crate) close: Span,
    /// Where the declaration came from; imported ones get softer checks where noted.
    pub(crate) origin: Origin,
}

/// The input language a declaration was written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A `.mesh` file.
    #[default]
    Mesh,
    /// An Istio resource imported from YAML (`crate::istio`).
    Istio,
}

/// `port NUMBER PROTOCOL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Port {
    pub(crate) number: Number,
    pub(crate) protocol: Protocol,
}

/// `endpoint ADDRESS [{ labels }] [weight N]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// Set when written in another file than its service (a WorkloadEntry, a second
    /// ServiceEntry for the host): the file its spans point into.
    pub(crate) file: Option<FileId>,
    pub(crate) address: Address,
    pub(crate) labels: Vec<Label>,
    pub(crate) weight: Option<Number>,
}

/// `subset NAME { labels } [policy { ... }]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Subset {
    /// Set when written in another file than its service (an Istio DestinationRule): the
    /// file its spans point into.
    pub(crate) file: Option<FileId>,
    pub(crate) name: Ident,
    pub(crate) selector: Vec<Label>,
    /// Overrides of the service policy; unset settings inherit it.
    pub(crate) policy: Option<Policy>,
}

/// A traffic policy block; each setting is optional and appears at most once (the parser
/// reports a repeated setting).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    /// The `policy` keyword (or the table header in TOML / the field in YAML).
    pub(crate) span: Span,
    /// Set when written in another file than its service (an Istio DestinationRule): the
    /// file its spans point into.
    pub(crate) file: Option<FileId>,
    pub(crate) load_balancer: Option<LoadBalancer>,
    pub(crate) pool: Option<Pool>,
    pub(crate) outlier: Option<Outlier>,
    /// How callers secure connections to the service (Istio DestinationRule `tls.mode`); `None`
    /// lets the mesh decide (mutual TLS to a server with an identity).
    pub(crate) tls: Option<UpstreamTls>,
}

/// An Istio DestinationRule `tls.mode` the snapshot can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UpstreamTls {
    /// `true` for `ISTIO_MUTUAL` (the mesh's mutual TLS), `false` for `DISABLE` (plaintext).
    pub(crate) mutual: bool,
    pub(crate) span: Span,
}

/// `load_balancer KIND [KEY]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LoadBalancer {
    pub(crate) kind: LbKind,
    /// Required for `RingHash` and `Maglev`, refused for the others (checked in lowering).
    pub(crate) key: Option<HashKey>,
    /// `ring_hash` minimum ring size.
    pub(crate) minimum_ring_size: Option<Number>,
    pub(crate) span: Span,
}

/// Load balancer kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LbKind {
    RoundRobin,
    Random,
    LeastRequest,
    RingHash,
    Maglev,
}

/// What a consistent hash is computed over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HashKey {
    Header(Str),
    Cookie { name: Str, ttl: Option<Duration> },
    SourceIp(Span),
}

/// `pool { ... }`: connection pool limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pool {
    pub(crate) span: Span,
    pub(crate) max_connections: Option<Number>,
    pub(crate) max_pending: Option<Number>,
    pub(crate) max_requests_per_connection: Option<Number>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) connect_timeout: Option<Duration>,
    /// How long a relayed TCP connection may stay silent.
    pub(crate) tcp_idle_timeout: Option<Duration>,
}

/// `outlier { ... }`: outlier detection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Outlier {
    pub(crate) span: Span,
    pub(crate) consecutive_5xx: Option<Number>,
    pub(crate) consecutive_gateway_errors: Option<Number>,
    pub(crate) interval: Option<Duration>,
    pub(crate) base_ejection: Option<Duration>,
    pub(crate) max_ejection_percent: Option<Number>,
    /// Every trigger explicitly turned off (Istio `consecutive5xxErrors: 0` without gateway
    /// errors): nothing is ejected, rather than the default of 5 consecutive 5xx.
    pub(crate) triggers_off: bool,
}

/// `route SERVICE { rule ... }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) keyword: Span,
    pub(crate) service: Ident,
    /// At least one (the parser requires it).
    pub(crate) rules: Vec<Rule>,
}

/// `rule NAME { match ... to ... actions }`. Each action appears at most once (the parser
/// reports a repeated one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rule {
    /// The `rule` keyword: the rule's source location in the snapshot.
    pub(crate) keyword: Span,
    pub(crate) name: Ident,
    /// Alternatives (OR), one per `match` line.
    pub(crate) matches: Vec<Match>,
    /// Empty only with a `redirect` (lowering checks: exactly one of the two).
    pub(crate) destinations: Vec<Destination>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: Option<Retries>,
    pub(crate) fault: Option<Fault>,
    pub(crate) request_headers: Option<HeaderEdits>,
    pub(crate) response_headers: Option<HeaderEdits>,
    pub(crate) rewrite: Option<Rewrite>,
    pub(crate) redirect: Option<Redirect>,
    pub(crate) mirror: Option<Mirror>,
    pub(crate) rate_limit: Option<RateLimit>,
}

/// `retries { ... }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Retries {
    pub(crate) span: Span,
    pub(crate) attempts: Option<Number>,
    pub(crate) per_try_timeout: Option<Duration>,
    /// Condition names as written (`5xx`, `gateway-error`, `reset`, `connect-failure`,
    /// `retriable-status-codes`) or status codes; lowering checks them.
    pub(crate) retry_on: Vec<Str>,
    pub(crate) backoff: Option<Duration>,
    pub(crate) max_backoff: Option<Duration>,
    /// The explicit opt-in to retrying POST/PATCH.
    pub(crate) non_idempotent: Option<Span>,
}

/// `fault { delay ... abort ... }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) span: Span,
    /// Delay and the share of requests delayed (`None` share = 100%).
    pub(crate) delay: Option<(Duration, Option<Percent>)>,
    /// Status and the share of requests aborted (`None` share = 100%).
    pub(crate) abort: Option<(Number, Option<Percent>)>,
}

/// `request_headers { ... }` / `response_headers { ... }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct HeaderEdits {
    pub(crate) span: Span,
    pub(crate) set: Vec<(Str, Str)>,
    pub(crate) add: Vec<(Str, Str)>,
    pub(crate) remove: Vec<Str>,
}

/// `rewrite { ... }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rewrite {
    pub(crate) span: Span,
    pub(crate) prefix: Option<Str>,
    /// Pattern and substitution.
    pub(crate) regex: Option<(Str, Str)>,
    pub(crate) authority: Option<Str>,
}

/// `redirect { ... }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Redirect {
    pub(crate) span: Span,
    pub(crate) scheme: Option<Str>,
    pub(crate) authority: Option<Str>,
    pub(crate) port: Option<Number>,
    pub(crate) path: Option<Str>,
    /// Status; 301 when absent.
    pub(crate) code: Option<Number>,
}

/// `mirror SERVICE[/SUBSET] [PERCENT]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mirror {
    pub(crate) span: Span,
    pub(crate) service: Ident,
    pub(crate) subset: Option<Ident>,
    /// `None` = 100%.
    pub(crate) percent: Option<Percent>,
}

/// `rate_limit N per DURATION [burst M] [per_source]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RateLimit {
    pub(crate) span: Span,
    pub(crate) requests: Number,
    pub(crate) per: Duration,
    /// Bucket size; `requests` when absent.
    pub(crate) burst: Option<Number>,
    pub(crate) per_source: Option<Span>,
}

/// One `match` line: conditions joined by `and`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Match {
    pub(crate) conditions: Vec<Condition>,
}

/// One condition of a `match` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Condition {
    /// `path exact "..."`; the span covers the whole condition.
    PathExact { value: Str, span: Span },
    /// `path prefix "..."`.
    PathPrefix { value: Str, span: Span },
    /// `path regex "..."`.
    PathRegex { value: Str, span: Span },
    /// `method GET` / `method prefix "..."` / `method regex "..."` (never present/absent).
    Method { value: ValueCondition, span: Span },
    /// `header "name" = "value"` and the other value forms.
    Header { name: Str, value: ValueCondition },
    /// `query "name" = "value"` and the other value forms.
    Query { name: Str, value: ValueCondition },
}

/// The value part of a header, query or method condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ValueCondition {
    Exact(Str),
    Prefix(Str),
    Regex(Str),
    Present(Span),
    Absent(Span),
}

/// `to SERVICE[/SUBSET] [weight N]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Destination {
    pub(crate) service: Ident,
    pub(crate) subset: Option<Ident>,
    pub(crate) weight: Option<Number>,
    /// From `to` to the end of the line's last token.
    pub(crate) span: Span,
}

/// `workload NAME { ... }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Workload {
    pub(crate) keyword: Span,
    pub(crate) name: Ident,
    /// Every `identity` line (more than one is a duplicate definition).
    pub(crate) identities: Vec<Str>,
    pub(crate) inbound: Vec<Inbound>,
    /// `None` when no `outbound` line is present; several lines accumulate.
    pub(crate) outbound: Option<Vec<Ident>>,
    /// Services this workload serves (`serves a, b`); several lines accumulate.
    pub(crate) serves: Vec<Ident>,
    /// `namespace NAME`; `None` = `default`. Scopes namespace-level policies.
    pub(crate) namespace: Option<Ident>,
    /// `labels { k = "v" }`: what policy selectors match on.
    pub(crate) labels: Vec<Label>,
    /// Overrides of the mesh-wide telemetry block.
    pub(crate) telemetry: Option<Telemetry>,
    /// Every `outbound_traffic` line (more than one is a duplicate definition).
    pub(crate) outbound_traffic: Vec<Ident>,
}

/// `inbound PORT PROTOCOL -> ADDRESS [mtls MODE]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Inbound {
    pub(crate) port: Number,
    pub(crate) protocol: Protocol,
    pub(crate) target: Address,
    /// `None` = permissive, or whatever a PeerAuthentication sets.
    pub(crate) mtls: Option<TlsMode>,
}

/// An mTLS mode keyword.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TlsMode {
    pub(crate) value: spec::TlsMode,
    pub(crate) span: Span,
}

/// `authorization NAME { ... }`: an authorization policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Authorization {
    pub(crate) keyword: Span,
    pub(crate) name: Ident,
    pub(crate) target: PolicyTarget,
    /// `action allow|deny|audit`; `None` = allow.
    pub(crate) action: Option<(spec::AuthzAction, Span)>,
    pub(crate) rules: Vec<AuthzRule>,
    pub(crate) origin: Origin,
}

/// `rule { from ... to ... when ... }` inside an authorization block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AuthzRule {
    pub(crate) span: Span,
    pub(crate) from: Vec<AuthzSource>,
    pub(crate) to: Vec<AuthzOperation>,
    pub(crate) when: Vec<AuthzWhen>,
}

/// One `from` clause. Patterns are Istio strings (`exact`, `prefix*`, `*suffix`, `*`);
/// principals may be written `cluster.local/ns/x/sa/y` or as a full `spiffe://` URI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AuthzSource {
    pub(crate) span: Span,
    pub(crate) principals: Vec<Str>,
    pub(crate) not_principals: Vec<Str>,
    pub(crate) request_principals: Vec<Str>,
    pub(crate) not_request_principals: Vec<Str>,
    pub(crate) namespaces: Vec<Str>,
    pub(crate) not_namespaces: Vec<Str>,
    /// Caller addresses or CIDR blocks.
    pub(crate) ip_blocks: Vec<Str>,
    pub(crate) not_ip_blocks: Vec<Str>,
}

/// One `to` clause.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AuthzOperation {
    pub(crate) span: Span,
    pub(crate) hosts: Vec<Str>,
    pub(crate) not_hosts: Vec<Str>,
    pub(crate) methods: Vec<Str>,
    pub(crate) not_methods: Vec<Str>,
    pub(crate) paths: Vec<Str>,
    pub(crate) not_paths: Vec<Str>,
    pub(crate) ports: Vec<Number>,
    pub(crate) not_ports: Vec<Number>,
}

/// One `when` condition; `key` uses Istio's syntax (`request.headers[x-token]`,
/// `request.auth.claims[iss]`, `source.namespace`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AuthzWhen {
    pub(crate) span: Span,
    pub(crate) key: Str,
    pub(crate) values: Vec<Str>,
    pub(crate) not_values: Vec<Str>,
}

/// `authentication NAME { ... }`: JWT request authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Authentication {
    pub(crate) keyword: Span,
    pub(crate) name: Ident,
    pub(crate) target: PolicyTarget,
    pub(crate) jwt: Vec<JwtRule>,
}

/// Which workloads a policy applies to: those in `namespace` (every namespace when `None`),
/// further narrowed to the named `workloads` or to those whose labels include every `selector`
/// pair. Specific beats namespace-wide beats mesh-wide where policies override each other
/// (peer authentication).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PolicyTarget {
    /// `namespace NAME` (DSL) or `metadata.namespace` (Istio; the root namespace maps to `None`).
    pub(crate) namespace: Option<Ident>,
    /// `workloads a, b` (DSL).
    pub(crate) workloads: Option<Vec<Ident>>,
    /// `selector.matchLabels` (Istio).
    pub(crate) selector: Option<Vec<Label>>,
}

/// `peer_authentication NAME { mode strict  port 9080 disable }`: mTLS mode of inbound ports.
/// An explicit `mtls` on a workload's `inbound` line beats every peer authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PeerAuthentication {
    pub(crate) keyword: Span,
    pub(crate) name: Ident,
    pub(crate) target: PolicyTarget,
    /// `None` inherits from the less specific policy (Istio `UNSET`).
    pub(crate) mode: Option<TlsMode>,
    /// Per-port overrides (only meaningful with a workload-specific target).
    pub(crate) port_modes: Vec<(Number, TlsMode)>,
    pub(crate) origin: Origin,
}

/// `jwt { issuer "..." audiences "a", "b" jwks "path" }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JwtRule {
    pub(crate) span: Span,
    pub(crate) issuer: Str,
    pub(crate) audiences: Vec<Str>,
    pub(crate) jwks: Str,
}

/// `telemetry { access_log "FORMAT" | json | off; trace_sampling PERCENT; metrics on | off;
/// trace_collector "URL" }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Telemetry {
    pub(crate) span: Span,
    pub(crate) access_log: Option<AccessLog>,
    pub(crate) trace_sampling: Option<Percent>,
    /// `Some(false)`: `metrics off`.
    pub(crate) metrics: Option<bool>,
    /// `trace_collector "URL"`.
    pub(crate) trace_collector: Option<Str>,
    /// An imported Istio `Telemetry` scoped to a namespace or selected workloads, with its
    /// name; `None` for the DSL's mesh-wide block (and an Istio one in the root namespace
    /// without a selector).
    pub(crate) target: Option<Box<(Ident, PolicyTarget)>>,
}

/// An `access_log` setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AccessLog {
    /// `access_log off`: no log, overriding the mesh-wide one.
    Off,
    /// `access_log json`.
    Json,
    /// `access_log "FORMAT"`.
    Text(Str),
}
