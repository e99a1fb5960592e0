//! `meshc diff`: the behavioural difference between two snapshots, one change per line.
//!
//! Everything is compared by name (services, subsets, rules, workloads) or by address
//! (endpoints), never by index: indexes shift when a service is added. Things that do not change
//! what `meshd` does are ignored: rule and policy source locations, and the order of
//! endpoints, of `match` alternatives, of conditions, of a rule's destinations, of a workload's
//! authorization policies and of a policy's rules.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use spec::{
    AccessLog, AuthorizationPolicy, AuthzCondition, AuthzOperation, AuthzRule, AuthzSource,
    ConditionKey, Endpoint, HashKey, InboundPort, LoadBalancer, PathMatch, PoolLimits, Redirect,
    RequestMatch, Rewrite, RouteRule, Service, Snapshot, StringPattern, Telemetry, TlsMode,
    TrafficPolicy, ValueMatch, WeightedDestination, Workload,
};

use crate::explain::{describe_edits, describe_fault, describe_rate_limit, describe_retries};

/// Whether something appeared, disappeared or changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `+`: only in the new snapshot.
    Added,
    /// `-`: only in the old snapshot.
    Removed,
    /// `~`: in both, different.
    Changed,
}

/// What a running `meshd` has to do to apply the change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impact {
    /// The new routing state replaces the old one; connections are unaffected.
    HotSwap,
    /// Connection pools to removed endpoints or services are drained.
    DrainsConnections,
    /// The workload's listeners are rebound (ports or identity changed).
    RestartsListeners,
}

impl Impact {
    /// The bracketed label printed at the end of a line, without brackets.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HotSwap => "hot-swap",
            Self::DrainsConnections => "drains connections",
            Self::RestartsListeners => "restarts listeners",
        }
    }
}

/// One semantic change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Added, removed or changed.
    pub kind: Kind,
    /// What changed, e.g. `endpoint reviews 127.0.0.1:9081 weight 1 -> 2`.
    pub what: String,
    /// What applying it costs.
    pub impact: Impact,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = match self.kind {
            Kind::Added => '+',
            Kind::Removed => '-',
            Kind::Changed => '~',
        };
        write!(f, "{sign} {} [{}]", self.what, self.impact.as_str())
    }
}

/// Every semantic change from `old` to `new`, grouped by services, hosts, routes, workloads.
pub fn diff(old: &Snapshot, new: &Snapshot) -> Vec<Change> {
    let mut out = Changes(Vec::new());
    let old_services = by_name(&old.services, |s| &s.name);
    let new_services = by_name(&new.services, |s| &s.name);
    for name in union(&old_services, &new_services) {
        match (old_services.get(name), new_services.get(name)) {
            (Some(_), None) => out.push(
                Kind::Removed,
                format!("service {name}"),
                Impact::DrainsConnections,
            ),
            (None, Some(_)) => out.push(Kind::Added, format!("service {name}"), Impact::HotSwap),
            (Some(a), Some(b)) => service(&mut out, a, b),
            (None, None) => {}
        }
    }
    let in_both = |name: &str| old_services.contains_key(name) && new_services.contains_key(name);
    hosts(&mut out, old, new, &in_both);
    for name in union(&old_services, &new_services) {
        if in_both(name) {
            routes(&mut out, old, new, name);
        }
    }
    workloads(&mut out, old, new);
    telemetry(&mut out, "mesh-wide", &old.telemetry, &new.telemetry);
    out.0
}

struct Changes(Vec<Change>);

impl Changes {
    fn push(&mut self, kind: Kind, what: String, impact: Impact) {
        self.0.push(Change { kind, what, impact });
    }

    /// A `~` line when the rendered values differ.
    fn changed(&mut self, what: String, old: String, new: String, impact: Impact) {
        if old != new {
            self.push(Kind::Changed, format!("{what} {old} -> {new}"), impact);
        }
    }
}

fn by_name<T>(items: &[T], name: impl Fn(&T) -> &str) -> BTreeMap<String, &T> {
    items.iter().map(|i| (name(i).to_owned(), i)).collect()
}

fn union<'a, T>(a: &'a BTreeMap<String, T>, b: &'a BTreeMap<String, T>) -> BTreeSet<&'a str> {
    a.keys().chain(b.keys()).map(String::as_str).collect()
}

fn service(out: &mut Changes, a: &Service, b: &Service) {
    let name = &a.name;
    out.changed(
        format!("service {name} namespace"),
        a.namespace.clone(),
        b.namespace.clone(),
        Impact::HotSwap,
    );
    let ports = |s: &Service| {
        let mut ports: Vec<String> = s
            .ports
            .iter()
            .map(|p| format!("{}/{}", p.number, p.protocol.as_str()))
            .collect();
        ports.sort();
        list(&ports)
    };
    out.changed(
        format!("service {name} ports"),
        ports(a),
        ports(b),
        Impact::HotSwap,
    );

    // Endpoints by address; a repeated address pairs up by occurrence.
    let (old_eps, new_eps) = (endpoints_by_address(a), endpoints_by_address(b));
    for address in union(&old_eps, &new_eps) {
        let none = Vec::new();
        let olds = old_eps.get(address).unwrap_or(&none);
        let news = new_eps.get(address).unwrap_or(&none);
        for i in 0..olds.len().max(news.len()) {
            let what = format!("endpoint {name} {address}");
            match (olds.get(i), news.get(i)) {
                (Some(_), None) => out.push(Kind::Removed, what, Impact::DrainsConnections),
                (None, Some(_)) => out.push(Kind::Added, what, Impact::HotSwap),
                (Some(x), Some(y)) => {
                    let weight = format!("{what} weight");
                    out.changed(
                        weight,
                        x.weight.to_string(),
                        y.weight.to_string(),
                        Impact::HotSwap,
                    );
                    let (l, r) = (labels(&x.labels), labels(&y.labels));
                    out.changed(format!("{what} labels"), l, r, Impact::HotSwap);
                }
                (None, None) => {}
            }
        }
    }

    traffic_policy(out, &format!("service {name} policy"), &a.policy, &b.policy);
    // Pooled connections were verified against the old identities (secure naming).
    out.changed(
        format!("service {name} identities"),
        list(&a.identities),
        list(&b.identities),
        Impact::DrainsConnections,
    );
    let addresses = |s: &Service| {
        s.addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    out.changed(
        format!("service {name} addresses"),
        list(&addresses(a)),
        list(&addresses(b)),
        Impact::HotSwap,
    );

    // Subset membership follows from selectors and endpoints, both reported above.
    let old_subsets = by_name(&a.subsets, |s| &s.name);
    let new_subsets = by_name(&b.subsets, |s| &s.name);
    for subset in union(&old_subsets, &new_subsets) {
        let what = format!("subset {name}/{subset}");
        match (old_subsets.get(subset), new_subsets.get(subset)) {
            (Some(_), None) => out.push(Kind::Removed, what, Impact::HotSwap),
            (None, Some(_)) => out.push(Kind::Added, what, Impact::HotSwap),
            (Some(x), Some(y)) => {
                out.changed(
                    format!("{what} selector"),
                    labels(&x.selector),
                    labels(&y.selector),
                    Impact::HotSwap,
                );
                // A subset inherits its service's policy: only its own overrides are news.
                let own = |sub: &TrafficPolicy, svc: &TrafficPolicy| {
                    if sub == svc {
                        "(the service's)".to_owned()
                    } else {
                        policy_text(sub)
                    }
                };
                out.changed(
                    format!("{what} policy"),
                    own(&x.policy, &a.policy),
                    own(&y.policy, &b.policy),
                    Impact::HotSwap,
                );
            }
            (None, None) => {}
        }
    }
}

/// One line per changed part of a traffic policy.
fn traffic_policy(out: &mut Changes, what: &str, a: &TrafficPolicy, b: &TrafficPolicy) {
    out.changed(
        format!("{what} load balancer"),
        load_balancer(&a.load_balancer),
        load_balancer(&b.load_balancer),
        Impact::HotSwap,
    );
    out.changed(
        format!("{what} pool"),
        pool(&a.pool),
        pool(&b.pool),
        Impact::HotSwap,
    );
    out.changed(
        format!("{what} outlier detection"),
        outlier(a),
        outlier(b),
        Impact::HotSwap,
    );
}

fn policy_text(p: &TrafficPolicy) -> String {
    format!(
        "load balancer {}; pool {}; outlier detection {}",
        load_balancer(&p.load_balancer),
        pool(&p.pool),
        outlier(p)
    )
}

fn hash_key(key: &HashKey) -> String {
    match key {
        HashKey::Header(name) => format!("header {name}"),
        HashKey::Cookie { name, ttl_ms: None } => format!("cookie {name}"),
        HashKey::Cookie {
            name,
            ttl_ms: Some(ttl),
        } => format!("cookie {name} (ttl {ttl}ms)"),
        HashKey::SourceIp => "source ip".to_owned(),
    }
}

fn load_balancer(lb: &LoadBalancer) -> String {
    match lb {
        LoadBalancer::RoundRobin => "round-robin".to_owned(),
        LoadBalancer::Random => "random".to_owned(),
        LoadBalancer::LeastRequest => "least-request".to_owned(),
        LoadBalancer::RingHash {
            key,
            minimum_ring_size,
        } => format!(
            "ring-hash on {} (minimum ring size {minimum_ring_size})",
            hash_key(key)
        ),
        LoadBalancer::Maglev { key } => format!("maglev on {}", hash_key(key)),
    }
}

fn pool(p: &PoolLimits) -> String {
    let mut parts = Vec::new();
    let mut count = |name: &str, v: Option<u32>| {
        if let Some(v) = v {
            parts.push(format!("{name} {v}"));
        }
    };
    count("max connections", p.max_connections);
    count("max pending requests", p.max_pending_requests);
    count("max requests per connection", p.max_requests_per_connection);
    for (name, v) in [
        ("idle timeout", p.idle_timeout_ms),
        ("connect timeout", p.connect_timeout_ms),
        ("TCP idle timeout", p.tcp_idle_timeout_ms),
    ] {
        if let Some(v) = v {
            parts.push(format!("{name} {v}ms"));
        }
    }
    if parts.is_empty() {
        "(defaults)".to_owned()
    } else {
        parts.join(", ")
    }
}

fn outlier(p: &TrafficPolicy) -> String {
    let Some(o) = &p.outlier else {
        return "(off)".to_owned();
    };
    let mut parts = Vec::new();
    if let Some(n) = o.consecutive_5xx {
        parts.push(format!("consecutive 5xx {n}"));
    }
    if let Some(n) = o.consecutive_gateway_errors {
        parts.push(format!("consecutive gateway errors {n}"));
    }
    parts.push(format!(
        "interval {}ms, base ejection {}ms, max ejection {}%",
        o.interval_ms, o.base_ejection_ms, o.max_ejection_percent
    ));
    parts.join(", ")
}

fn endpoints_by_address(s: &Service) -> BTreeMap<String, Vec<&Endpoint>> {
    let mut map: BTreeMap<String, Vec<&Endpoint>> = BTreeMap::new();
    for e in &s.endpoints {
        map.entry(e.address.to_string()).or_default().push(e);
    }
    map
}

fn labels(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

fn service_name(snapshot: &Snapshot, index: u32) -> String {
    snapshot
        .services
        .get(index as usize)
        .map_or_else(|| format!("#{index}"), |s| s.name.clone())
}

/// Host names whose service changed; hosts of added or removed services are implied by them.
fn hosts(out: &mut Changes, old: &Snapshot, new: &Snapshot, in_both: &dyn Fn(&str) -> bool) {
    let map = |s: &Snapshot| -> BTreeMap<String, String> {
        s.hosts
            .iter()
            .map(|h| {
                let service = s
                    .routes
                    .get(h.route_table as usize)
                    .map_or_else(|| "?".to_owned(), |t| service_name(s, t.service));
                (h.host.clone(), service)
            })
            .collect()
    };
    let (a, b) = (map(old), map(new));
    for host in union(&a, &b) {
        match (a.get(host), b.get(host)) {
            (Some(x), None) if in_both(x) => {
                out.push(
                    Kind::Removed,
                    format!("host {host} (service {x})"),
                    Impact::HotSwap,
                );
            }
            (None, Some(y)) if in_both(y) => {
                out.push(
                    Kind::Added,
                    format!("host {host} (service {y})"),
                    Impact::HotSwap,
                );
            }
            (Some(x), Some(y)) if x != y => out.push(
                Kind::Changed,
                format!("host {host} service {x} -> {y}"),
                Impact::HotSwap,
            ),
            _ => {}
        }
    }
}

fn table_rules<'s>(snapshot: &'s Snapshot, service: &str) -> Option<&'s [RouteRule]> {
    let (index, _) = snapshot.service(service)?;
    snapshot
        .routes
        .iter()
        .find(|t| t.service == index)
        .map(|t| t.rules.as_slice())
}

fn routes(out: &mut Changes, old: &Snapshot, new: &Snapshot, service: &str) {
    let (a, b) = match (table_rules(old, service), table_rules(new, service)) {
        (None, None) => return,
        (Some(_), None) => {
            return out.push(Kind::Removed, format!("route {service}"), Impact::HotSwap)
        }
        (None, Some(_)) => {
            return out.push(Kind::Added, format!("route {service}"), Impact::HotSwap)
        }
        (Some(a), Some(b)) => (a, b),
    };
    let old_rules = by_name(a, |r| &r.name);
    let new_rules = by_name(b, |r| &r.name);
    for rule in a.iter().filter(|r| !new_rules.contains_key(&r.name)) {
        let what = format!("route {service} rule {}", rule.name);
        out.push(Kind::Removed, what, Impact::HotSwap);
    }
    for (i, rule) in b.iter().enumerate() {
        let what = format!("route {service} rule {}", rule.name);
        let Some(before) = old_rules.get(&rule.name) else {
            let place = match (b.get(i + 1), i.checked_sub(1).and_then(|p| b.get(p))) {
                (Some(next), _) => format!(" (before {})", next.name),
                (None, Some(previous)) => format!(" (after {})", previous.name),
                (None, None) => String::new(),
            };
            out.push(Kind::Added, format!("{what}{place}"), Impact::HotSwap);
            continue;
        };
        let (m1, m2) = (matches(before), matches(rule));
        if normalized(&before.matches) != normalized(&rule.matches) {
            out.push(
                Kind::Changed,
                format!("{what} matches {m1} -> {m2}"),
                Impact::HotSwap,
            );
        }
        let (d1, d2) = (
            destinations(old, &before.destinations),
            destinations(new, &rule.destinations),
        );
        let (mut s1, mut s2) = (d1.clone(), d2.clone());
        s1.sort();
        s2.sort();
        if s1 != s2 {
            let what = format!("{what} destinations {} -> {}", list(&d1), list(&d2));
            out.push(Kind::Changed, what, Impact::HotSwap);
        }
        for (action, x, y) in actions(old, before)
            .into_iter()
            .zip(actions(new, rule))
            .map(|((action, x), (_, y))| (action, x, y))
        {
            out.changed(format!("{what} {action}"), x, y, Impact::HotSwap);
        }
    }
    let common = |rules: &[RouteRule], other: &BTreeMap<String, &RouteRule>| -> Vec<String> {
        rules
            .iter()
            .filter(|r| other.contains_key(&r.name))
            .map(|r| r.name.clone())
            .collect()
    };
    out.changed(
        format!("route {service} rule order"),
        list(&common(a, &new_rules)),
        list(&common(b, &old_rules)),
        Impact::HotSwap,
    );
}

/// `service` or `service/subset`, by name.
fn target(snapshot: &Snapshot, service: u32, subset: Option<u32>) -> String {
    let name = service_name(snapshot, service);
    let subset = subset.map(|s| {
        snapshot
            .services
            .get(service as usize)
            .and_then(|svc| svc.subsets.get(s as usize))
            .map_or_else(|| format!("#{s}"), |sub| sub.name.clone())
    });
    match subset {
        Some(subset) => format!("{name}/{subset}"),
        None => name,
    }
}

fn destinations(snapshot: &Snapshot, destinations: &[WeightedDestination]) -> Vec<String> {
    destinations
        .iter()
        .map(|d| format!("{} {}%", target(snapshot, d.service, d.subset), d.weight))
        .collect()
}

/// Every action of a rule besides its destinations, as `(name, text)` in a fixed order.
fn actions(snapshot: &Snapshot, rule: &RouteRule) -> [(&'static str, String); 9] {
    let or_none = |text: Option<String>| text.unwrap_or_else(|| "(none)".to_owned());
    let edits = |e: &spec::HeaderEdits| {
        let text = describe_edits(e);
        if text.is_empty() {
            "(none)".to_owned()
        } else {
            text
        }
    };
    [
        (
            "timeout",
            rule.timeout_ms
                .map_or_else(|| "(sidecar default)".to_owned(), |ms| format!("{ms}ms")),
        ),
        (
            "retries",
            rule.retries
                .as_ref()
                .map_or_else(|| "(sidecar default)".to_owned(), describe_retries),
        ),
        ("fault", or_none(rule.fault.as_ref().map(describe_fault))),
        ("request headers", edits(&rule.headers.request)),
        ("response headers", edits(&rule.headers.response)),
        ("rewrite", or_none(rule.rewrite.as_ref().map(rewrite))),
        ("redirect", or_none(rule.redirect.as_ref().map(redirect))),
        (
            "mirror",
            or_none(rule.mirror.as_ref().map(|m| {
                format!(
                    "{} of requests to {}",
                    crate::explain::percent(m.per_million),
                    target(snapshot, m.service, m.subset)
                )
            })),
        ),
        (
            "rate limit",
            or_none(rule.rate_limit.as_ref().map(describe_rate_limit)),
        ),
    ]
}

fn rewrite(r: &Rewrite) -> String {
    let mut parts = Vec::new();
    if let Some(p) = &r.path_prefix {
        parts.push(format!("path prefix {p:?}"));
    }
    if let Some(re) = &r.path_regex {
        parts.push(format!(
            "path regex {:?} -> {:?}",
            re.pattern, re.substitution
        ));
    }
    if let Some(a) = &r.authority {
        parts.push(format!("authority {a:?}"));
    }
    list(&parts)
}

fn redirect(r: &Redirect) -> String {
    let mut parts = vec![r.status.to_string()];
    if let Some(s) = &r.scheme {
        parts.push(format!("scheme {s}"));
    }
    if let Some(a) = &r.authority {
        parts.push(format!("authority {a:?}"));
    }
    if let Some(p) = r.port {
        parts.push(format!("port {p}"));
    }
    if let Some(p) = &r.path {
        parts.push(format!("path {p:?}"));
    }
    parts.join(", ")
}

fn value(v: &ValueMatch) -> String {
    match v {
        ValueMatch::Exact(s) => format!("= {s:?}"),
        ValueMatch::Prefix(s) => format!("prefix {s:?}"),
        ValueMatch::Regex(s) => format!("regex {s:?}"),
        ValueMatch::Present => "present".to_owned(),
        ValueMatch::Absent => "absent".to_owned(),
    }
}

fn condition_list(m: &RequestMatch) -> Vec<String> {
    let mut conditions: Vec<String> = m
        .path
        .iter()
        .map(|p| match p {
            PathMatch::Exact(p) => format!("path exact {p:?}"),
            PathMatch::Prefix(p) => format!("path prefix {p:?}"),
            PathMatch::Regex(p) => format!("path regex {p:?}"),
        })
        .collect();
    conditions.extend(m.method.iter().map(|v| format!("method {}", value(v))));
    conditions.extend(
        m.headers
            .iter()
            .map(|h| format!("header {:?} {}", h.name, value(&h.value))),
    );
    conditions.extend(
        m.query
            .iter()
            .map(|q| format!("query {:?} {}", q.name, value(&q.value))),
    );
    conditions
}

/// The matches as written, `a and b or c`; "every request" when there are none.
fn matches(rule: &RouteRule) -> String {
    if rule.matches.is_empty() {
        return "(every request)".to_owned();
    }
    let alternatives: Vec<String> = rule
        .matches
        .iter()
        .map(|m| condition_list(m).join(" and "))
        .collect();
    alternatives.join(" or ")
}

/// Order-independent form: ORed alternatives and ANDed conditions are both sets.
fn normalized(matches: &[RequestMatch]) -> BTreeSet<BTreeSet<String>> {
    matches
        .iter()
        .map(|m| condition_list(m).into_iter().collect())
        .collect()
}

fn inbound(ports: &[InboundPort]) -> String {
    let mut ports: Vec<String> = ports
        .iter()
        .map(|p| format!("{}/{} (to {})", p.port, p.protocol.as_str(), p.target))
        .collect();
    ports.sort();
    list(&ports)
}

fn workloads<'s>(out: &mut Changes, old: &'s Snapshot, new: &'s Snapshot) {
    // A name used in several namespaces is told apart as `NAMESPACE/NAME`.
    let by_query = |snapshot: &'s Snapshot| -> BTreeMap<String, &'s Workload> {
        snapshot
            .workloads
            .iter()
            .map(|w| (snapshot.workload_query(w), w))
            .collect()
    };
    let (a, b) = (by_query(old), by_query(new));
    for name in union(&a, &b) {
        let what = format!("workload {name}");
        match (a.get(name), b.get(name)) {
            (Some(_), None) => out.push(Kind::Removed, what, Impact::DrainsConnections),
            (None, Some(_)) => out.push(Kind::Added, what, Impact::HotSwap),
            (Some(x), Some(y)) => workload(out, &what, old, x, new, y),
            (None, None) => {}
        }
    }
}

fn workload(
    out: &mut Changes,
    what: &str,
    old: &Snapshot,
    x: &Workload,
    new: &Snapshot,
    y: &Workload,
) {
    let identity = |w: &Workload| {
        w.identity
            .as_ref()
            .map_or_else(|| "(none)".to_owned(), |i| format!("{i:?}"))
    };
    out.changed(
        format!("{what} identity"),
        identity(x),
        identity(y),
        Impact::RestartsListeners,
    );
    let ports = |w: &Workload| w.inbound.iter().map(|p| p.port).collect::<BTreeSet<_>>();
    // New or closed ports mean rebinding; a new target or protocol on the same ports does not.
    let impact = if ports(x) == ports(y) {
        Impact::HotSwap
    } else {
        Impact::RestartsListeners
    };
    out.changed(
        format!("{what} inbound"),
        inbound(&x.inbound),
        inbound(&y.inbound),
        impact,
    );
    let outbound = |s: &Snapshot, w: &Workload| {
        let mut names: Vec<String> = w.outbound.iter().map(|&i| service_name(s, i)).collect();
        names.sort();
        list(&names)
    };
    out.changed(
        format!("{what} outbound"),
        outbound(old, x),
        outbound(new, y),
        Impact::HotSwap,
    );
    out.changed(
        format!("{what} outbound_traffic"),
        x.outbound_traffic.as_str().to_owned(),
        y.outbound_traffic.as_str().to_owned(),
        Impact::HotSwap,
    );
    // The listener of a port whose TLS mode changes is restarted: connections accepted under
    // the old mode must not carry on under the new one.
    let tls = |w: &Workload| -> BTreeMap<u16, TlsMode> {
        w.inbound.iter().map(|p| (p.port, p.tls)).collect()
    };
    let (old_tls, new_tls) = (tls(x), tls(y));
    for (port, mode) in &new_tls {
        match old_tls.get(port) {
            Some(before) if before != mode => out.push(
                Kind::Changed,
                format!(
                    "{what} inbound {port} tls {} -> {}",
                    before.as_str(),
                    mode.as_str()
                ),
                Impact::RestartsListeners,
            ),
            // A new port's mode is news only when it is not the default.
            None if *mode != TlsMode::default() => out.push(
                Kind::Added,
                format!("{what} inbound {port} tls {}", mode.as_str()),
                Impact::RestartsListeners,
            ),
            _ => {}
        }
    }
    let serves = |s: &Snapshot, w: &Workload| {
        let mut names: Vec<String> = w.serves.iter().map(|&i| service_name(s, i)).collect();
        names.sort();
        list(&names)
    };
    out.changed(
        format!("{what} serves"),
        serves(old, x),
        serves(new, y),
        Impact::HotSwap,
    );
    authorization(out, what, &x.authorization, &y.authorization);
    jwt(out, what, x, y);
    telemetry(out, what, &x.telemetry, &y.telemetry);
}

/// Access log and trace sampling of a workload, or of the mesh (`what`).
fn telemetry(out: &mut Changes, what: &str, x: &Telemetry, y: &Telemetry) {
    out.changed(
        format!("{what} access log"),
        access_log(x.access_log.as_ref()),
        access_log(y.access_log.as_ref()),
        Impact::HotSwap,
    );
    out.changed(
        format!("{what} trace sampling"),
        crate::explain::percent(x.trace_sampling_per_million),
        crate::explain::percent(y.trace_sampling_per_million),
        Impact::HotSwap,
    );
    out.changed(
        format!("{what} trace collector"),
        x.trace_collector
            .clone()
            .unwrap_or_else(|| "(none)".to_owned()),
        y.trace_collector
            .clone()
            .unwrap_or_else(|| "(none)".to_owned()),
        Impact::HotSwap,
    );
    let metrics = |t: &Telemetry| if t.metrics_disabled { "off" } else { "on" }.to_owned();
    out.changed(
        format!("{what} metrics"),
        metrics(x),
        metrics(y),
        Impact::HotSwap,
    );
}

fn access_log(log: Option<&AccessLog>) -> String {
    match log {
        None => "(off)".to_owned(),
        Some(AccessLog::Json) => "json".to_owned(),
        Some(AccessLog::Text(format)) => format!("{format:?}"),
    }
}

/// Policies by name; their order and source do not matter (DENY before ALLOW regardless).
fn authorization(
    out: &mut Changes,
    what: &str,
    a: &[AuthorizationPolicy],
    b: &[AuthorizationPolicy],
) {
    let (old, new) = (by_name(a, |p| &p.name), by_name(b, |p| &p.name));
    for name in union(&old, &new) {
        let line = format!("{what} authorization {name}");
        match (old.get(name), new.get(name)) {
            (Some(p), None) => out.push(
                Kind::Removed,
                format!("{line} ({})", p.action.as_str()),
                Impact::HotSwap,
            ),
            (None, Some(p)) => out.push(
                Kind::Added,
                format!("{line} ({})", p.action.as_str()),
                Impact::HotSwap,
            ),
            (Some(x), Some(y)) => {
                out.changed(
                    format!("{line} action"),
                    x.action.as_str().to_owned(),
                    y.action.as_str().to_owned(),
                    Impact::HotSwap,
                );
                // Rules are ORed: their order does not matter.
                let set = |p: &AuthorizationPolicy| -> BTreeSet<String> {
                    p.rules.iter().map(authz_rule).collect()
                };
                if set(x) != set(y) {
                    let show = |p: &AuthorizationPolicy| {
                        if p.rules.is_empty() {
                            "(no rules)".to_owned()
                        } else {
                            p.rules
                                .iter()
                                .map(authz_rule)
                                .collect::<Vec<_>>()
                                .join(" | ")
                        }
                    };
                    out.push(
                        Kind::Changed,
                        format!("{line} rules {} -> {}", show(x), show(y)),
                        Impact::HotSwap,
                    );
                }
            }
            (None, None) => {}
        }
    }
}

fn pattern(p: &StringPattern) -> String {
    match p {
        StringPattern::Exact(s) => s.clone(),
        StringPattern::Prefix(s) => format!("{s}*"),
        StringPattern::Suffix(s) => format!("*{s}"),
        StringPattern::Any => "*".to_owned(),
    }
}

/// `name [a, b]` for a non-empty list, pushed onto `parts`.
fn push_field<T>(parts: &mut Vec<String>, name: &str, items: &[T], show: impl Fn(&T) -> String) {
    if !items.is_empty() {
        let items: Vec<String> = items.iter().map(show).collect();
        parts.push(format!("{name} [{}]", items.join(", ")));
    }
}

fn authz_source(s: &AuthzSource) -> String {
    let mut parts = Vec::new();
    push_field(&mut parts, "principals", &s.principals, pattern);
    push_field(&mut parts, "not principals", &s.not_principals, pattern);
    push_field(
        &mut parts,
        "request principals",
        &s.request_principals,
        pattern,
    );
    push_field(
        &mut parts,
        "not request principals",
        &s.not_request_principals,
        pattern,
    );
    push_field(&mut parts, "namespaces", &s.namespaces, pattern);
    push_field(&mut parts, "not namespaces", &s.not_namespaces, pattern);
    push_field(&mut parts, "ip blocks", &s.ip_blocks, |b| b.to_string());
    push_field(&mut parts, "not ip blocks", &s.not_ip_blocks, |b| {
        b.to_string()
    });
    format!("({})", parts.join(" and "))
}

fn authz_operation(o: &AuthzOperation) -> String {
    let mut parts = Vec::new();
    push_field(&mut parts, "hosts", &o.hosts, pattern);
    push_field(&mut parts, "not hosts", &o.not_hosts, pattern);
    push_field(&mut parts, "methods", &o.methods, pattern);
    push_field(&mut parts, "not methods", &o.not_methods, pattern);
    push_field(&mut parts, "paths", &o.paths, pattern);
    push_field(&mut parts, "not paths", &o.not_paths, pattern);
    push_field(&mut parts, "ports", &o.ports, u16::to_string);
    push_field(&mut parts, "not ports", &o.not_ports, u16::to_string);
    format!("({})", parts.join(" and "))
}

fn condition_key(key: &ConditionKey) -> String {
    match key {
        ConditionKey::RequestHeader(name) => format!("request.headers[{name}]"),
        ConditionKey::JwtClaim(path) => format!("request.auth.claims[{}]", path.join("][")),
        ConditionKey::RequestPrincipal => "request.auth.principal".to_owned(),
        ConditionKey::JwtAudience => "request.auth.audiences".to_owned(),
        ConditionKey::JwtPresenter => "request.auth.presenter".to_owned(),
        ConditionKey::SourcePrincipal => "source.principal".to_owned(),
        ConditionKey::SourceNamespace => "source.namespace".to_owned(),
        ConditionKey::SourceIp => "source.ip".to_owned(),
        ConditionKey::DestinationPort => "destination.port".to_owned(),
    }
}

fn authz_condition(c: &AuthzCondition) -> String {
    let mut parts = vec![condition_key(&c.key)];
    push_field(&mut parts, "in", &c.values, pattern);
    push_field(&mut parts, "not in", &c.not_values, pattern);
    parts.join(" ")
}

/// A rule as `from (…) or (…); to (…); when …`; `(any request)` when it has no conditions.
fn authz_rule(r: &AuthzRule) -> String {
    let mut parts = Vec::new();
    let join = |items: Vec<String>, sep: &str| items.join(sep);
    if !r.from.is_empty() {
        parts.push(format!(
            "from {}",
            join(r.from.iter().map(authz_source).collect(), " or ")
        ));
    }
    if !r.to.is_empty() {
        parts.push(format!(
            "to {}",
            join(r.to.iter().map(authz_operation).collect(), " or ")
        ));
    }
    if !r.when.is_empty() {
        parts.push(format!(
            "when {}",
            join(r.when.iter().map(authz_condition).collect(), " and ")
        ));
    }
    if parts.is_empty() {
        "(any request)".to_owned()
    } else {
        parts.join("; ")
    }
}

/// JWT rules by issuer.
fn jwt(out: &mut Changes, what: &str, x: &Workload, y: &Workload) {
    let (old, new) = (
        by_name(&x.jwt, |j| &j.issuer),
        by_name(&y.jwt, |j| &j.issuer),
    );
    for issuer in union(&old, &new) {
        let line = format!("{what} jwt issuer {issuer}");
        match (old.get(issuer), new.get(issuer)) {
            (Some(_), None) => out.push(Kind::Removed, line, Impact::HotSwap),
            (None, Some(_)) => out.push(Kind::Added, line, Impact::HotSwap),
            (Some(a), Some(b)) => {
                let audiences = |j: &spec::JwtRule| {
                    let mut names = j.audiences.clone();
                    names.sort();
                    if names.is_empty() {
                        "(any)".to_owned()
                    } else {
                        names.join(", ")
                    }
                };
                out.changed(
                    format!("{line} audiences"),
                    audiences(a),
                    audiences(b),
                    Impact::HotSwap,
                );
                out.changed(
                    format!("{line} jwks file"),
                    a.jwks_file.clone(),
                    b.jwks_file.clone(),
                    Impact::HotSwap,
                );
            }
            (None, None) => {}
        }
    }
}

#[cfg(test)]
mod tests;
