//! `meshc diff`: the behavioural difference between two snapshots, one change per line.
//!
//! Everything is compared by name (services, subsets, rules, workloads) or by address
//! (endpoints), never by index: indexes shift when a service is added. Things that do not change
//! what `meshd` does are ignored: rule source locations, and the order of endpoints, of `match`
//! alternatives, of header conditions and of a rule's destinations. Traffic policies and rule
//! actions are compared as whole settings and printed as compact JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use spec::{
    Endpoint, InboundPort, PathMatch, RequestMatch, RouteRule, Service, Snapshot,
    WeightedDestination, Workload,
};

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
    out.changed(
        format!("service {name} policy"),
        json(&a.policy),
        json(&b.policy),
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
                out.changed(
                    format!("{what} policy"),
                    json(&x.policy),
                    json(&y.policy),
                    Impact::HotSwap,
                );
            }
            (None, None) => {}
        }
    }
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
            let what = format!("{what} destinations {} -> {}", d1.join(", "), d2.join(", "));
            out.push(Kind::Changed, what, Impact::HotSwap);
        }
        rule_actions(out, &what, (old, before), (new, rule));
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

fn destinations(snapshot: &Snapshot, destinations: &[WeightedDestination]) -> Vec<String> {
    destinations
        .iter()
        .map(|d| format!("{} {}%", target(snapshot, d.service, d.subset), d.weight))
        .collect()
}

/// `service[/subset]` by name.
fn target(snapshot: &Snapshot, service: u32, subset: Option<u32>) -> String {
    let name = service_name(snapshot, service);
    match subset {
        None => name,
        Some(s) => {
            let subset = snapshot
                .services
                .get(service as usize)
                .and_then(|svc| svc.subsets.get(s as usize))
                .map_or_else(|| format!("#{s}"), |sub| sub.name.clone());
            format!("{name}/{subset}")
        }
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
    conditions.extend(m.method.iter().map(|v| format!("method {v:?}")));
    conditions.extend(
        m.headers
            .iter()
            .map(|h| format!("header {:?} {:?}", h.name, h.value)),
    );
    conditions.extend(
        m.query
            .iter()
            .map(|q| format!("query {:?} {:?}", q.name, q.value)),
    );
    conditions
}

/// A snapshot value as compact JSON for `~` lines (`null` when absent).
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("<{e}>"))
}

/// Reports changed rule actions. Mirror targets are compared by name, not index.
fn rule_actions(
    out: &mut Changes,
    what: &str,
    (old, a): (&Snapshot, &RouteRule),
    (new, b): (&Snapshot, &RouteRule),
) {
    let fields: [(&str, String, String); 7] = [
        ("timeout_ms", json(&a.timeout_ms), json(&b.timeout_ms)),
        ("retries", json(&a.retries), json(&b.retries)),
        ("fault", json(&a.fault), json(&b.fault)),
        ("headers", json(&a.headers), json(&b.headers)),
        ("rewrite", json(&a.rewrite), json(&b.rewrite)),
        ("redirect", json(&a.redirect), json(&b.redirect)),
        ("rate_limit", json(&a.rate_limit), json(&b.rate_limit)),
    ];
    for (field, x, y) in fields {
        out.changed(format!("{what} {field}"), x, y, Impact::HotSwap);
    }
    let mirror = |snapshot: &Snapshot, rule: &RouteRule| match &rule.mirror {
        None => "none".to_owned(),
        Some(m) => format!(
            "{} {}/1000000",
            target(snapshot, m.service, m.subset),
            m.per_million
        ),
    };
    out.changed(
        format!("{what} mirror"),
        mirror(old, a),
        mirror(new, b),
        Impact::HotSwap,
    );
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

fn workloads(out: &mut Changes, old: &Snapshot, new: &Snapshot) {
    let a = by_name(&old.workloads, |w| &w.name);
    let b = by_name(&new.workloads, |w| &w.name);
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
}

#[cfg(test)]
mod tests;
