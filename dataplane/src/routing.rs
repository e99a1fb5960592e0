//! The routing view a worker serves: host → route table → first matching rule → weighted
//! destination → endpoint. Built once per snapshot, shared by every core behind an `Arc`.

use rustc_hash::FxHashMap;
use std::net::SocketAddr;

use regex::bytes::Regex;
use spec::matching::{Conditions, Pattern};
use spec::{OutlierDetection, Snapshot};

use crate::actions::{NotEnforced, RuleActions};
use crate::balancer::Balancer;

/// Which traffic a listener carries and so how a request is routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the local application to the mesh: routed by Host.
    Outbound,
    /// From the mesh to the local application: forwarded to the workload's inbound target.
    Inbound,
}

/// An immutable, query-ready view of one snapshot for one workload (or for every service).
#[derive(Debug)]
pub struct RouteState {
    /// Content hash of the snapshot this view was built from.
    pub hash: String,
    /// The snapshot itself, kept for the admin `/config` page.
    pub snapshot: Snapshot,
    /// Host name to route table. Fx hashing: the keys come from the snapshot, so a client's
    /// Host can only look up, never insert (no hash flooding), and SipHash cost ~130
    /// instructions per request.
    hosts: FxHashMap<Box<str>, u32>,
    /// Host name to route table, for the services this workload serves whose tables hold a
    /// `per_source` rate limit: its inbound side keys those on the caller's identity. Usually
    /// empty, so the inbound path skips the lookup.
    served_limited: FxHashMap<Box<str>, u32>,
    /// A service's virtual address (on each of its ports) or endpoint address, to the
    /// service's route table, for captured connections whose Host names no service (the
    /// service's first host entry names its table).
    by_address: FxHashMap<SocketAddr, u32>,
    /// Virtual address blocks wider than one address.
    by_block: Vec<Block>,
    /// Flattened (service, subset) groups; a destination names one by index.
    groups: Vec<EndpointGroup>,
    /// `group_of[service]` is the group index of the whole service; subsets follow it.
    group_of: Vec<u32>,
    /// The workload's inbound ports: port, local application, mTLS mode.
    inbound: Vec<(u16, SocketAddr, spec::TlsMode)>,
    /// The protocol each of `inbound`'s ports declares, in the same order.
    inbound_protocols: Vec<spec::Protocol>,
    /// The workload's SPIFFE ID in the snapshot (what its certificate must carry).
    pub identity: Option<String>,
    /// The workload's authorization policies, deciding inbound requests.
    pub authorization: Vec<spec::AuthorizationPolicy>,
    /// The workload's JWT issuers with their keys; [`crate::control::load`] reads the JWKS
    /// files, so a view built here alone has none.
    pub jwt: crate::jwt::Verifier,
    /// `tables[t][r]` is rule `r` of route table `t`, compiled.
    tables: Vec<Vec<CompiledRule>>,
    /// Features the snapshot uses that this meshd does not enforce yet.
    pub not_enforced: Vec<NotEnforced>,
    /// The workload served, as `--workload` named it.
    workload: Option<String>,
    /// The service each inbound port serves, in `inbound`'s order.
    inbound_services: Vec<Option<u32>>,
    /// How requests are logged: the workload's telemetry, or the mesh-wide one without a
    /// workload; `None` logs nothing.
    pub access_log: Option<crate::access_log::Format>,
    /// Share of requests without a caller's decision that start a trace, in millionths.
    pub trace_sampling_per_million: u32,
    /// Whether Istio's request metrics are recorded.
    pub metrics_enabled: bool,
    /// The trace collector the telemetry setting names, if any.
    pub trace_collector: Option<String>,
    /// What a captured call to a destination no service declares gets: the workload's policy,
    /// else `allow_any`.
    pub outbound_traffic: spec::OutboundTraffic,
    /// The format spans are rendered in while a collector is in force (this state's, or
    /// meshd's `--trace-collector`, set by [`crate::control::load`]); `None`: nothing is traced.
    pub tracing: Option<crate::export::collector::Protocol>,
}

/// A rule with its matches and actions compiled.
#[derive(Debug)]
struct CompiledRule {
    matches: Vec<Conditions<Anchored>>,
    /// The rule's destinations, copied out of the snapshot's (much larger) rule.
    destinations: Box<[spec::WeightedDestination]>,
    /// Boxed: a first-match scan touches only the matches, so rules stay small and adjacent.
    actions: Box<RuleActions>,
}

/// A regex of a match condition, anchored at both ends when compiled.
#[derive(Debug)]
struct Anchored(Regex);

impl Pattern for Anchored {
    #[inline]
    fn is_match(&self, value: &[u8]) -> bool {
        self.0.is_match(value)
    }
}

/// The endpoints one destination balances over.
#[derive(Debug)]
pub struct EndpointGroup {
    /// The service's index in the snapshot.
    pub service: u32,
    /// Human-readable name for error messages and logs: `service` or `service/subset`.
    pub name: String,
    /// Endpoint addresses, in snapshot order.
    pub endpoints: Vec<SocketAddr>,
    /// The order round robin visits `endpoints` (indexes), each endpoint as often as its weight
    /// and spread out (smooth weighted round robin, as nginx does). Empty when there are no
    /// endpoints.
    pub schedule: Vec<u32>,
    /// The group's connection pool limits (the service's or the subset's policy).
    pub pool: spec::PoolLimits,
    /// How an endpoint is picked (the group's load balancer, rings and tables built).
    pub balancer: Balancer,
    /// The group's outlier detection, if any.
    pub outlier: Option<OutlierDetection>,
    /// SPIFFE IDs its servers may present (the service's secure naming); empty: plaintext.
    pub identities: Vec<String>,
}

impl EndpointGroup {
    fn new(
        (service, name): (u32, String),
        endpoints: &[&spec::Endpoint],
        policy: &spec::TrafficPolicy,
        identities: &[String],
    ) -> Self {
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        let addresses: Vec<SocketAddr> = endpoints.iter().map(|e| e.address).collect();
        Self {
            service,
            name,
            balancer: Balancer::new(&policy.load_balancer, &addresses, &weights),
            endpoints: addresses,
            schedule: weighted_schedule(&weights),
            outlier: policy.outlier.clone(),
            pool: policy.pool.clone(),
            identities: identities.to_vec(),
        }
    }
}

/// The service `workload` serves on inbound `port`: the first of its served services with that
/// port, else its only one.
fn served_on(snapshot: &Snapshot, workload: &spec::Workload, port: u16) -> Option<u32> {
    let has_port = |&&s: &&u32| {
        snapshot
            .services
            .get(s as usize)
            .is_some_and(|svc| svc.ports.iter().any(|p| p.number == port))
    };
    match workload.serves.as_slice() {
        [only] => Some(*only),
        serves => serves.iter().find(has_port).copied(),
    }
}

/// Route tables with at most this many rules are tried rule by rule; larger ones go through
/// the snapshot's path index (merging candidate lists costs more than a few direct tries).
const LINEAR_RULES: usize = 8;

/// Most candidate lists one path may draw from the index (exact, any-path, and one per
/// enclosing prefix); a deeper nesting falls back to trying every rule.
const MAX_CANDIDATE_LISTS: usize = 16;

/// Longest weighted round-robin cycle; larger weight sums are scaled down to fit.
const MAX_SCHEDULE: u64 = 1024;

/// Smooth weighted round robin: each step adds every weight to its endpoint's credit, picks the
/// endpoint with the most credit, and takes the total from it. Weights 5,1,1 give
/// a a b a c a a rather than a a a a a b c.
pub(crate) fn weighted_schedule(weights: &[u32]) -> Vec<u32> {
    let weights: Vec<u64> = weights.iter().map(|&w| u64::from(w.max(1))).collect();
    let gcd = weights.iter().copied().fold(0, gcd);
    let mut weights: Vec<u64> = weights.iter().map(|w| w / gcd.max(1)).collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_SCHEDULE {
        weights = weights
            .iter()
            .map(|w| (w * MAX_SCHEDULE / total).max(1))
            .collect();
    }
    let total: u64 = weights.iter().sum();
    let mut credit = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in credit.iter_mut().zip(&weights) {
            *c += *w as i64;
        }
        let Some((best, _)) = credit
            .iter()
            .enumerate()
            .max_by_key(|&(i, c)| (*c, usize::MAX - i))
        else {
            break;
        };
        credit[best] -= total as i64;
        schedule.push(best as u32);
    }
    schedule
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A routing decision for one request.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    /// Where the matched rule sits, to find its actions again later in the request.
    pub rule: RuleRef,
    /// The matched rule's actions.
    pub actions: &'a RuleActions,
    /// Leading bytes of the path the matching conditions covered (what a prefix rewrite
    /// replaces): see [`spec::matching::rule_holds`].
    pub path_covered: usize,
    /// The chosen destination; `None` when the rule has none (it redirects).
    pub destination: Option<Destination<'a>>,
}

/// The endpoint group a request goes to.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    /// Index of the chosen endpoint group (for the per-core round-robin counters).
    pub group_index: usize,
    /// The chosen group.
    pub group: &'a EndpointGroup,
}

/// A rule's position in a [`RouteState`]: route table index and rule index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleRef {
    /// Index into the snapshot's route tables.
    pub table: u32,
    /// Index into that table's rules.
    pub rule: u32,
}

/// Why a request could not be routed.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No route table for the request's host.
    UnknownHost,
    /// The host is known but no rule matched.
    NoRuleMatched,
}

/// The parts of a request head that routing looks at.
#[derive(Debug)]
pub struct RequestView<'r, 'h> {
    /// Host without port, as sent.
    pub host: &'r str,
    /// Port from the Host header, if present.
    pub port: Option<u16>,
    /// Path without the query string.
    pub path: &'r str,
    /// Method token.
    pub method: &'r str,
    /// Query string without the `?`; empty when there is none.
    pub query: &'r str,
    /// Request headers as parsed.
    pub headers: &'r [httparse::Header<'h>],
}

/// Why a snapshot cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The workload named on the command line is not in the snapshot, or not by that name
    /// alone.
    #[error(transparent)]
    UnknownWorkload(#[from] spec::WorkloadLookupError),
    /// A regex in a match or rewrite does not compile.
    #[error("{0}")]
    Regex(String),
    /// The access log format does not parse.
    #[error("access log format: {0}")]
    AccessLog(#[from] spec::access_log::FormatError),
}

/// Compiles `pattern` anchored at both ends (the whole value must match).
fn anchored(pattern: &str, rule: &str, what: &str) -> Result<Regex, BuildError> {
    Regex::new(&spec::matching::anchored(pattern)).map_err(|e| {
        BuildError::Regex(format!(
            "rule {rule}: invalid regex {pattern:?} in the {what} match: {}",
            crate::actions::regex_reason(&e)
        ))
    })
}

impl RouteState {
    /// Builds the view a sidecar for `workload` serves; `None` serves every service outbound.
    /// Regexes are compiled here, so a snapshot with a bad one is refused before it serves.
    pub fn new(
        snapshot: Snapshot,
        hash: String,
        workload: Option<&str>,
    ) -> Result<Self, BuildError> {
        let own = workload
            .map(|query| snapshot.find_workload(query))
            .transpose()?;
        let served = own.map_or(&[][..], |w| &w.serves[..]);
        let inbound_protocols = own.map_or(Vec::new(), |w| {
            w.inbound.iter().map(|p| p.protocol).collect()
        });
        let (visible, inbound, identity, authorization) = match own {
            None => (
                (0..snapshot.services.len() as u32).collect::<Vec<_>>(),
                Vec::new(),
                None,
                Vec::new(),
            ),
            Some(w) => {
                let inbound = w.inbound.iter().map(|p| (p.port, p.target, p.tls));
                let (identity, authorization) = (w.identity.clone(), w.authorization.clone());
                (
                    w.outbound.clone(),
                    inbound.collect(),
                    identity,
                    authorization,
                )
            }
        };

        let mut groups = Vec::new();
        let mut group_of = Vec::with_capacity(snapshot.services.len());
        for (index, service) in (0u32..).zip(&snapshot.services) {
            group_of.push(groups.len() as u32);
            let all: Vec<&spec::Endpoint> = service.endpoints.iter().collect();
            groups.push(EndpointGroup::new(
                (index, service.name.clone()),
                &all,
                &service.policy,
                &service.identities,
            ));
            for subset in &service.subsets {
                let members: Vec<&spec::Endpoint> = subset
                    .endpoints
                    .iter()
                    .filter_map(|&i| service.endpoints.get(i as usize))
                    .collect();
                groups.push(EndpointGroup::new(
                    (index, format!("{}/{}", service.name, subset.name)),
                    &members,
                    &subset.policy,
                    &service.identities,
                ));
            }
        }

        // Short host names resolve in the sidecar's own namespace, as its DNS search path would.
        let namespace = own.map_or(spec::host::DEFAULT_NAMESPACE, |w| &w.namespace);
        let hosts = snapshot
            .hosts
            .iter()
            .filter(|h| h.resolves_for(namespace))
            .filter(|h| {
                let table = &snapshot.routes[h.route_table as usize];
                visible.binary_search(&table.service).is_ok()
            })
            .map(|h| (h.host.as_str().into(), h.route_table))
            .collect();
        let (by_address, by_block) = addresses(&snapshot, &visible);
        let outbound_traffic = own.map_or_else(Default::default, |w| w.outbound_traffic);
        let per_source = |table: &spec::RouteTable| {
            let limited = |r: &spec::RouteRule| r.rate_limit.as_ref().is_some_and(|l| l.per_source);
            served.binary_search(&table.service).is_ok() && table.rules.iter().any(limited)
        };
        let served_limited = snapshot
            .hosts
            .iter()
            .filter(|h| h.resolves_for(namespace))
            .filter(|h| per_source(&snapshot.routes[h.route_table as usize]))
            .map(|h| (h.host.as_str().into(), h.route_table))
            .collect();

        let mut tables = Vec::with_capacity(snapshot.routes.len());
        for table in &snapshot.routes {
            let service = snapshot
                .services
                .get(table.service as usize)
                .map_or("?", |s| s.name.as_str());
            let mut rules = Vec::with_capacity(table.rules.len());
            for rule in &table.rules {
                let name = format!("{service}/{}", rule.name);
                let matches = rule
                    .matches
                    .iter()
                    .map(|m| {
                        Conditions::compile(m, |pattern, what| {
                            anchored(pattern, &name, what).map(Anchored)
                        })
                    })
                    .collect::<Result<_, _>>()?;
                let actions = RuleActions::compile(name, rule).map_err(BuildError::Regex)?;
                rules.push(CompiledRule {
                    matches,
                    destinations: rule.destinations.clone().into_boxed_slice(),
                    actions: Box::new(actions),
                });
            }
            tables.push(rules);
        }
        let not_enforced = crate::actions::not_enforced(&snapshot, workload);
        let telemetry = own.map_or(&snapshot.telemetry, |w| &w.telemetry);
        let trace_sampling_per_million = telemetry.trace_sampling_per_million;
        let metrics_enabled = !telemetry.metrics_disabled;
        let trace_collector = telemetry.trace_collector.clone();
        let access_log = telemetry
            .access_log
            .as_ref()
            .map(crate::access_log::Format::compile)
            .transpose()?;
        let inbound_services = match own {
            Some(w) => inbound
                .iter()
                .map(|&(port, ..)| served_on(&snapshot, w, port))
                .collect(),
            None => Vec::new(),
        };

        Ok(Self {
            hash,
            snapshot,
            hosts,
            served_limited,
            by_address,
            by_block,
            groups,
            group_of,
            inbound,
            inbound_protocols,
            identity,
            authorization,
            jwt: crate::jwt::Verifier::default(),
            tables,
            not_enforced,
            workload: workload.map(str::to_owned),
            inbound_services,
            access_log,
            trace_sampling_per_million,
            metrics_enabled,
            tracing: trace_collector
                .as_deref()
                .and_then(|url| spec::collector::parse(url).ok())
                .map(|url| url.protocol),
            trace_collector,
            outbound_traffic,
        })
    }

    /// The snapshot's rule `rule` points at.
    pub fn rule(&self, rule: RuleRef) -> Option<&spec::RouteRule> {
        self.snapshot
            .routes
            .get(rule.table as usize)?
            .rules
            .get(rule.rule as usize)
    }

    /// The actions of the rule `rule` points at.
    pub fn actions(&self, rule: RuleRef) -> Option<&RuleActions> {
        self.tables
            .get(rule.table as usize)?
            .get(rule.rule as usize)
            .map(|r| &*r.actions)
    }

    /// Every endpoint address this view can route to (outbound and inbound targets).
    pub fn endpoint_addresses(&self) -> std::collections::HashSet<SocketAddr> {
        let outbound = self.groups.iter().flat_map(|g| g.endpoints.iter().copied());
        outbound
            .chain(self.inbound.iter().map(|&(_, target, _)| target))
            .collect()
    }

    /// Whether any group or inbound port of this state has the endpoint `addr`.
    pub fn has_endpoint(&self, addr: SocketAddr) -> bool {
        self.groups.iter().any(|g| g.endpoints.contains(&addr))
            || self.inbound.iter().any(|&(_, target, _)| target == addr)
    }

    /// Endpoint group `index` (as a [`Destination`] names it).
    pub fn group(&self, index: usize) -> Option<&EndpointGroup> {
        self.groups.get(index)
    }

    /// Every endpoint group: each service, then its subsets, in snapshot order.
    pub fn groups(&self) -> &[EndpointGroup] {
        &self.groups
    }

    /// How often cores report failure counts: the shortest outlier interval of any group;
    /// `None` when no group has outlier detection.
    pub fn outlier_interval(&self) -> Option<std::time::Duration> {
        self.groups
            .iter()
            .filter_map(|g| g.outlier.as_ref())
            .map(|o| std::time::Duration::from_millis(o.interval_ms.max(1)))
            .min()
    }

    /// The endpoint group of `service` (or of its `subset`), e.g. a mirror's destination;
    /// `None` when either index is out of range.
    pub fn destination(&self, service: u32, subset: Option<u32>) -> Option<Destination<'_>> {
        let base = *self.group_of.get(service as usize)? as usize;
        let subsets = self.snapshot.services.get(service as usize)?.subsets.len();
        let group_index = match subset {
            None => base,
            Some(s) if (s as usize) < subsets => base + s as usize + 1,
            Some(_) => return None,
        };
        Some(Destination {
            group_index,
            group: self.groups.get(group_index)?,
        })
    }

    /// The inbound port a request for `port` (the Host header's, if any) is served by: its
    /// number, the local application address and the port's mTLS mode.
    pub fn inbound_target(&self, port: Option<u16>) -> Option<(u16, SocketAddr, spec::TlsMode)> {
        port.and_then(|p| self.declared_inbound(p))
            .or_else(|| self.inbound.first().copied())
    }

    /// Where a connection capture sent to `original` (an address of this host) goes: the
    /// declared inbound port with that number, else `original` itself (Istio's inbound
    /// passthrough) under the listener's mTLS mode.
    pub fn captured_inbound_target(
        &self,
        original: SocketAddr,
    ) -> (u16, SocketAddr, spec::TlsMode) {
        self.declared_inbound(original.port()).unwrap_or((
            original.port(),
            original,
            self.inbound_listener_mode(),
        ))
    }

    /// Whether a captured inbound connection to `port` that is not HTTP may be relayed to the
    /// application as bytes: only where no HTTP is declared (an undeclared or `tcp` port).
    /// Authorization decides each relayed connection as Istio does for TCP: an ALLOW rule that
    /// reads a method, path or header never matches one, so bytes that would hide a request
    /// (after a blank line, say) get no further than the policies let any TCP caller.
    pub fn relays_opaque_inbound(&self, port: u16) -> bool {
        self.declared_protocol(port)
            .is_none_or(|p| p == spec::Protocol::Tcp)
    }

    /// Whether inbound `port` is declared `tcp`: everything sent to it is relayed as bytes, and
    /// authorized as TCP, even bytes that look like HTTP.
    pub fn inbound_port_is_tcp(&self, port: u16) -> bool {
        self.declared_protocol(port) == Some(spec::Protocol::Tcp)
    }

    /// Whether a request for `service` on `port` (its only port when `None` or unknown) is
    /// sent with HTTP/2: the port says `http2` or `grpc`, or the service's servers have
    /// sidecars (identities) and the request `arrived_h2` (so streams stay multiplexed, and a
    /// bidirectional call stays full duplex, whatever the port says).
    pub fn service_speaks_h2(&self, service: u32, port: Option<u16>, arrived_h2: bool) -> bool {
        let Some(service) = self.snapshot.services.get(service as usize) else {
            return false;
        };
        if arrived_h2 && !service.identities.is_empty() {
            return true;
        }
        let declared = match (&service.ports[..], port) {
            ([only], _) => Some(only),
            (ports, Some(port)) => ports.iter().find(|p| p.number == port),
            (_, None) => None,
        };
        declared.is_some_and(|p| matches!(p.protocol, spec::Protocol::Http2 | spec::Protocol::Grpc))
    }

    /// Whether the application on inbound `port` speaks HTTP/2 (the port says `http2` or
    /// `grpc`): it is called with h2c, trailers and all.
    pub fn inbound_speaks_h2(&self, port: u16) -> bool {
        matches!(
            self.declared_protocol(port),
            Some(spec::Protocol::Http2 | spec::Protocol::Grpc)
        )
    }

    fn declared_protocol(&self, port: u16) -> Option<spec::Protocol> {
        let index = self.inbound.iter().position(|&(p, ..)| p == port)?;
        self.inbound_protocols.get(index).copied()
    }

    fn declared_inbound(&self, port: u16) -> Option<(u16, SocketAddr, spec::TlsMode)> {
        self.inbound.iter().find(|(p, ..)| *p == port).copied()
    }

    /// The service route table `table` routes.
    pub fn table_service(&self, table: u32) -> Option<u32> {
        self.snapshot.routes.get(table as usize).map(|t| t.service)
    }

    /// The service this workload serves on inbound `port`: the first of its served services with
    /// that port, else its only one.
    pub fn served_service(&self, port: u16) -> Option<u32> {
        let index = self.inbound.iter().position(|&(p, ..)| p == port)?;
        self.inbound_services.get(index).copied().flatten()
    }

    /// The workload this state serves, if any.
    pub fn own_workload(&self) -> Option<&spec::Workload> {
        self.workload
            .as_deref()
            .and_then(|w| self.snapshot.workload(w))
    }

    /// What the one inbound listener does before reading HTTP: strict (TLS only) when every
    /// inbound port is strict, disable (plaintext only) when every one is, else permissive
    /// (told apart by the first byte; a strict port then refuses a plaintext request).
    pub fn inbound_listener_mode(&self) -> spec::TlsMode {
        use spec::TlsMode::{Disable, Permissive, Strict};
        let all = |mode| !self.inbound.is_empty() && self.inbound.iter().all(|p| p.2 == mode);
        if all(Strict) {
            Strict
        } else if all(Disable) {
            Disable
        } else {
            Permissive
        }
    }

    /// An inbound port with strict mTLS, if any.
    pub fn strict_inbound_port(&self) -> Option<u16> {
        let strict = self.inbound.iter().find(|p| p.2 == spec::TlsMode::Strict);
        strict.map(|p| p.0)
    }

    /// Routes one outbound request. `pick` draws a number in `0..100` for the weighted split.
    pub fn route(
        &self,
        request: &RequestView<'_, '_>,
        pick: impl FnOnce() -> u32,
    ) -> Result<Decision<'_>, RouteError> {
        let table = lookup_host(&self.hosts, request.host).ok_or(RouteError::UnknownHost)?;
        self.route_by_table(table, request, pick)
    }

    /// Whether `addr` is a service's virtual address or endpoint (on its port).
    pub fn is_mesh_address(&self, addr: SocketAddr) -> bool {
        self.address_table(addr).is_some()
    }

    /// Whether a captured connection to `addr` that is not HTTP is refused: the workload allows
    /// only the mesh's services, and no service has that address or an endpoint there.
    pub fn refuses_opaque(&self, addr: SocketAddr) -> bool {
        self.outbound_traffic == spec::OutboundTraffic::RegistryOnly
            && self.address_table(addr).is_none()
    }

    /// Where a captured connection to `addr` that is not HTTP is relayed, and the endpoint
    /// group (with its index) of the service it reaches, if any: `addr` itself, unless it is a
    /// service's virtual address, which no host has: then the endpoint `pick` chooses among
    /// the group's (an index past the last is taken as the last).
    pub fn opaque_target(
        &self,
        addr: SocketAddr,
        pick: impl FnOnce(usize, &EndpointGroup) -> usize,
    ) -> (SocketAddr, Option<(usize, &EndpointGroup)>) {
        let group = self
            .address_table(addr)
            .and_then(|table| self.table_service(table))
            .map(|service| self.group_of[service as usize] as usize)
            .and_then(|index| Some((index, self.groups.get(index)?)));
        if self.by_address.contains_key(&addr) && self.has_endpoint(addr) {
            return (addr, group);
        }
        match group {
            Some((index, g)) if !g.endpoints.is_empty() => {
                let n = g.endpoints.len();
                (g.endpoints[pick(index, g).min(n - 1)], group)
            }
            _ => (addr, group),
        }
    }

    /// Whether a captured connection to `addr` reaches a service port declared `tcp`: its
    /// virtual address on that port, or an endpoint of a service whose port it is (or whose
    /// only port is `tcp`). Such a connection is relayed without sniffing its first bytes.
    pub fn declares_tcp(&self, addr: SocketAddr) -> bool {
        let Some(service) = self
            .address_table(addr)
            .and_then(|table| self.table_service(table))
            .and_then(|s| self.snapshot.services.get(s as usize))
        else {
            return false;
        };
        let port = match &service.ports[..] {
            [only] => Some(only),
            ports => ports.iter().find(|p| p.number == addr.port()),
        };
        port.is_some_and(|p| p.protocol == spec::Protocol::Tcp)
    }

    /// The route table of the service with `addr` as a virtual address (on one of its ports)
    /// or an endpoint.
    fn address_table(&self, addr: SocketAddr) -> Option<u32> {
        self.by_address.get(&addr).copied().or_else(|| {
            let mut blocks = self.by_block.iter();
            let block =
                blocks.find(|(block, port, _)| *port == addr.port() && block.contains(addr.ip()));
            block.map(|&(_, _, table)| table)
        })
    }

    /// Routes a request by the address its client sent it to (capture redirected it, and its
    /// Host names no service): the route table of the service with that virtual address or an
    /// endpoint there.
    pub fn route_address(
        &self,
        addr: SocketAddr,
        request: &RequestView<'_, '_>,
        pick: impl FnOnce() -> u32,
    ) -> Result<Decision<'_>, RouteError> {
        let table = self.address_table(addr).ok_or(RouteError::UnknownHost)?;
        self.route_by_table(table, request, pick)
    }

    fn route_by_table(
        &self,
        table: u32,
        request: &RequestView<'_, '_>,
        pick: impl FnOnce() -> u32,
    ) -> Result<Decision<'_>, RouteError> {
        let compiled = &self.tables[table as usize];
        let (index, path_covered) = self
            .first_match(table, request)
            .ok_or(RouteError::NoRuleMatched)?;
        let destination = match &*compiled[index].destinations {
            [] => None,
            [only] => Some(only),
            many => {
                let mut draw = pick();
                many.iter()
                    .find(|d| {
                        if draw < d.weight {
                            true
                        } else {
                            draw -= d.weight;
                            false
                        }
                    })
                    .or(many.last())
            }
        };
        let destination = destination.map(|d| {
            let base = self.group_of[d.service as usize] as usize;
            let group_index = base + d.subset.map_or(0, |s| s as usize + 1);
            Destination {
                group_index,
                group: &self.groups[group_index],
            }
        });
        Ok(Decision {
            rule: RuleRef {
                table,
                rule: index as u32,
            },
            actions: &compiled[index].actions,
            path_covered,
            destination,
        })
    }

    /// The rule an inbound request for a service this workload serves matches, when that rule
    /// has a `per_source` rate limit (which the inbound side enforces by caller identity).
    pub fn served_limited_rule(&self, request: &RequestView<'_, '_>) -> Option<RuleRef> {
        if self.served_limited.is_empty() {
            return None;
        }
        let table = lookup_host(&self.served_limited, request.host)?;
        let (index, _) = self.first_match(table, request)?;
        let rule = &self.snapshot.routes[table as usize].rules[index];
        rule.rate_limit
            .as_ref()
            .is_some_and(|l| l.per_source)
            .then_some(RuleRef {
                table,
                rule: index as u32,
            })
    }

    /// The first rule of `table` that `request` matches, and how much of the path its
    /// conditions covered.
    // Forced inline: outlined, the routing hot path cost +0.6% instructions per request.
    #[inline(always)]
    fn first_match(&self, table: u32, request: &RequestView<'_, '_>) -> Option<(usize, usize)> {
        let compiled = &self.tables[table as usize];
        let try_rule = |i: usize| {
            spec::matching::rule_holds(&compiled[i].matches, request).map(|covered| (i, covered))
        };
        let path_index = &self.snapshot.routes[table as usize].index;
        let candidates = (compiled.len() > LINEAR_RULES)
            .then(|| path_index.candidate_lists::<MAX_CANDIDATE_LISTS>(request.path))
            .flatten();
        match candidates {
            Some(candidates) => candidates.map(|i| i as usize).find_map(try_rule),
            None => (0..compiled.len()).find_map(try_rule),
        }
    }
}

/// A virtual address block, a port of its service and the service's route table.
type Block = (spec::AddressBlock, u16, u32);

/// Where captured connections to an address go: the route table of the service with that
/// virtual address (on one of its ports) or endpoint; blocks wider than one address apart.
fn addresses(snapshot: &Snapshot, visible: &[u32]) -> (FxHashMap<SocketAddr, u32>, Vec<Block>) {
    let (mut exact, mut blocks) = (FxHashMap::default(), Vec::new());
    let mut seen = vec![false; snapshot.services.len()];
    for entry in &snapshot.hosts {
        let service = snapshot.routes[entry.route_table as usize].service;
        if visible.binary_search(&service).is_err()
            || std::mem::replace(&mut seen[service as usize], true)
        {
            continue;
        }
        let declared = &snapshot.services[service as usize];
        let table = entry.route_table;
        for block in &declared.addresses {
            for port in &declared.ports {
                if block.is_single() {
                    exact
                        .entry(SocketAddr::new(block.ip, port.number))
                        .or_insert(table);
                } else {
                    blocks.push((*block, port.number, table));
                }
            }
        }
        for endpoint in &declared.endpoints {
            exact.entry(endpoint.address).or_insert(table);
        }
    }
    (exact, blocks)
}

/// The route table of `host` in `hosts`. Host names are case-insensitive; the snapshot stores
/// them lower-case.
#[inline(always)]
fn lookup_host(hosts: &FxHashMap<Box<str>, u32>, host: &str) -> Option<u32> {
    if let Some(&table) = hosts.get(host) {
        return Some(table);
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        return hosts.get(host.to_ascii_lowercase().as_str()).copied();
    }
    None
}

impl spec::matching::Request for RequestView<'_, '_> {
    #[inline(always)]
    fn path(&self) -> &str {
        self.path
    }

    #[inline(always)]
    fn method(&self) -> &str {
        self.method
    }

    #[inline(always)]
    fn query(&self) -> &str {
        self.query
    }

    #[inline(always)]
    fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|h| (h.name, h.value))
    }
}

#[cfg(test)]
mod tests;
