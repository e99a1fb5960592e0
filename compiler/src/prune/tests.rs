use std::collections::BTreeMap;

use spec::{PathMatch, RequestMatch, Service, Snapshot, SourceLocation};

use super::for_workload;
use crate::diag::Sources;
use crate::explain::{explain, Outcome, Request};

/// `alpha` sorts first and is unreachable, so every kept service moves down one index.
/// `productpage` calls `reviews`, which sends to `ratings`, which sends to `zeta`, which sends
/// back to `reviews` (a cycle).
const MESH: &str = r#"service alpha { port 1000 http endpoint 127.0.0.1:1000 }
service details { port 2000 http endpoint 127.0.0.1:2000 }
service ratings {
  port 3000 http
  endpoint 127.0.0.1:3001 { version = "v1" }
  endpoint 127.0.0.1:3002 { version = "v2" }
  subset v1 { version = "v1" }
  subset v2 { version = "v2" }
}
service reviews { port 4000 http endpoint 127.0.0.1:4000 }
service zeta { port 5000 http endpoint 127.0.0.1:5000 }
route reviews {
  rule stars {
    match header "x-stars" = "yes" and path prefix "/api"
    to ratings/v2
  }
  rule split {
    match path exact "/split"
    to ratings/v1 weight 30
    to reviews weight 70
  }
  rule rest { to reviews }
}
route ratings { rule all { to zeta } }
route zeta {
  rule back { match path prefix "/loop" to reviews }
  rule rest { to zeta }
}
workload everything { inbound 9000 http -> 127.0.0.1:9001 }
workload lonely { outbound details }
workload productpage {
  identity "spiffe://cluster.local/ns/default/sa/productpage"
  inbound 9080 http -> 127.0.0.1:9090
  outbound reviews
}
"#;

fn mesh() -> Snapshot {
    let mut sources = Sources::new();
    sources.add("m.mesh", MESH);
    match crate::compile_sources(sources) {
        Ok(compiled) => compiled.snapshot,
        Err(failed) => panic!("compilation failed:\n{}", failed.render()),
    }
}

fn pruned(snapshot: &Snapshot, workload: &str) -> Snapshot {
    for_workload(snapshot, workload).expect("the workload exists")
}

fn service_names(snapshot: &Snapshot) -> Vec<&str> {
    snapshot.services.iter().map(|s| s.name.as_str()).collect()
}

fn host_services(snapshot: &Snapshot) -> Vec<(&str, &str)> {
    snapshot
        .hosts
        .iter()
        .map(|h| {
            let table = &snapshot.routes[h.route_table as usize];
            let service = &snapshot.services[table.service as usize];
            (h.host.as_str(), service.name.as_str())
        })
        .collect()
}

#[test]
fn keeps_outbound_and_transitively_referenced_services() {
    let s = pruned(&mesh(), "productpage");
    assert_eq!(service_names(&s), ["ratings", "reviews", "zeta"]);
    let routed: Vec<&str> = s
        .routes
        .iter()
        .map(|t| s.services[t.service as usize].name.as_str())
        .collect();
    assert_eq!(routed, ["ratings", "reviews", "zeta"]);
    let hosts = host_services(&s);
    assert!(hosts
        .iter()
        .all(|(_, service)| *service != "alpha" && *service != "details"));
    assert!(hosts.contains(&("reviews", "reviews")));
    assert!(hosts.contains(&("zeta.default.svc.cluster.local", "zeta")));
}

#[test]
fn drops_services_the_workload_cannot_reach() {
    let s = pruned(&mesh(), "lonely");
    assert_eq!(service_names(&s), ["details"]);
    assert_eq!(s.routes.len(), 1);
    assert!(host_services(&s)
        .iter()
        .all(|(_, service)| *service == "details"));
    assert_eq!(s.workloads[0].outbound, [0]);
}

#[test]
fn keeps_only_the_workload_itself() {
    let original = mesh();
    let s = pruned(&original, "productpage");
    assert_eq!(s.workloads.len(), 1);
    let w = &s.workloads[0];
    let before = original.workload("productpage").expect("declared");
    assert_eq!(w.name, "productpage");
    assert_eq!(w.identity, before.identity);
    assert_eq!(w.inbound, before.inbound);
    // reviews was index 3 of five services and is index 1 of three.
    assert_eq!(before.outbound, [3]);
    assert_eq!(w.outbound, [1]);
}

#[test]
fn remaps_destinations_to_services_whose_index_changed() {
    let original = mesh();
    let s = pruned(&original, "productpage");
    let (reviews, _) = s.service("reviews").expect("kept");
    let table = s
        .routes
        .iter()
        .find(|t| t.service == reviews)
        .expect("reviews has a route table");
    let stars = &table.rules[0].destinations[0];
    let target = &s.services[stars.service as usize];
    assert_eq!(target.name, "ratings");
    assert_eq!(
        stars.service, 0,
        "ratings was index 2 before alpha and details were dropped"
    );
    let subset = stars
        .subset
        .map(|i| target.subsets[i as usize].name.as_str());
    assert_eq!(subset, Some("v2"));
    // Every host still names the route table of its own service.
    for (host, service) in host_services(&s) {
        assert!(host.starts_with(service), "{host} -> {service}");
    }
}

#[test]
fn every_pruned_snapshot_validates() {
    let original = mesh();
    for w in &original.workloads {
        let s = pruned(&original, &w.name);
        assert_eq!(s.validate(), Ok(()), "workload {}", w.name);
        let bytes = spec::encode(&s);
        let (decoded, _) = spec::decode(&bytes).expect("decodes");
        assert_eq!(decoded, s);
    }
}

#[test]
fn pruning_is_deterministic_and_idempotent() {
    let original = mesh();
    for w in &original.workloads {
        let once = pruned(&original, &w.name);
        let again = pruned(&mesh(), &w.name);
        assert_eq!(
            spec::encode(&once),
            spec::encode(&again),
            "workload {}",
            w.name
        );
        let twice = pruned(&once, &w.name);
        assert_eq!(twice, once, "workload {}", w.name);
    }
}

#[test]
fn a_workload_without_outbound_list_keeps_every_service() {
    let original = mesh();
    let s = pruned(&original, "everything");
    assert_eq!(s.services, original.services);
    assert_eq!(s.routes, original.routes);
    assert_eq!(s.hosts, original.hosts);
    assert_eq!(
        s.workloads,
        [original.workload("everything").expect("declared").clone()]
    );
}

#[test]
fn an_unknown_workload_gives_none() {
    assert_eq!(for_workload(&mesh(), "nope"), None);
    assert_eq!(for_workload(&Snapshot::default(), "nope"), None);
}

/// A destination by names: (service, subset, weight).
type NamedDestination = (String, Option<String>, u32);
/// A rule by names: (name, matches, source, destinations).
type NamedRule = (
    String,
    Vec<RequestMatch>,
    SourceLocation,
    Vec<NamedDestination>,
);

/// Visible host -> (its service, its rules); service name -> every service a rule sends to.
type RoutingView = (
    BTreeMap<String, (String, Vec<NamedRule>)>,
    BTreeMap<String, Service>,
);

/// What the workload's sidecar routes, by names only: for each visible host, its service and
/// rules, and every service a rule sends to as it is (endpoints, subsets).
fn routing_view(snapshot: &Snapshot, workload: &str) -> RoutingView {
    let outbound = &snapshot.workload(workload).expect("declared").outbound;
    let mut hosts = BTreeMap::new();
    let mut targets = BTreeMap::new();
    for entry in &snapshot.hosts {
        let table = &snapshot.routes[entry.route_table as usize];
        if outbound.binary_search(&table.service).is_err() {
            continue;
        }
        let rules = table
            .rules
            .iter()
            .map(|rule| {
                let destinations = rule
                    .destinations
                    .iter()
                    .map(|d| {
                        let service = &snapshot.services[d.service as usize];
                        targets.insert(service.name.clone(), service.clone());
                        let subset = d.subset.map(|i| service.subsets[i as usize].name.clone());
                        (service.name.clone(), subset, d.weight)
                    })
                    .collect();
                let name = rule.name.clone();
                (
                    name,
                    rule.matches.clone(),
                    rule.source.clone(),
                    destinations,
                )
            })
            .collect();
        let service = snapshot.services[table.service as usize].name.clone();
        hosts.insert(entry.host.clone(), (service, rules));
    }
    (hosts, targets)
}

#[test]
fn visible_hosts_route_by_the_same_rules_after_pruning() {
    let original = mesh();
    for w in &original.workloads {
        let s = pruned(&original, &w.name);
        assert_eq!(
            routing_view(&s, &w.name),
            routing_view(&original, &w.name),
            "{}",
            w.name
        );
    }
}

/// Requests that exercise every rule: each match of each rule (a prefix is extended), with and
/// without its headers, plus `/`, sent to every host of the original snapshot and one unknown.
fn requests(snapshot: &Snapshot) -> Vec<Request> {
    let mut shapes: Vec<(String, Vec<(String, String)>)> = vec![("/".to_owned(), Vec::new())];
    for rule in snapshot.routes.iter().flat_map(|t| &t.rules) {
        for m in &rule.matches {
            let path = match &m.path {
                None => "/".to_owned(),
                Some(PathMatch::Exact(p)) => p.clone(),
                Some(PathMatch::Prefix(p)) => format!("{p}/more"),
                Some(PathMatch::Regex(_)) => continue,
            };
            let headers = m
                .headers
                .iter()
                .filter_map(|h| match &h.value {
                    spec::ValueMatch::Exact(v) => Some((h.name.to_uppercase(), v.clone())),
                    _ => None,
                })
                .collect();
            shapes.push((path.clone(), headers));
            shapes.push((path, Vec::new()));
        }
    }
    let hosts = snapshot.hosts.iter().map(|h| h.host.as_str());
    let mut out = Vec::new();
    for host in hosts.chain(["unknown.example", "REVIEWS.Default"]) {
        for (path, headers) in &shapes {
            out.push(Request {
                method: "GET".to_owned(),
                host: host.to_owned(),
                port: None,
                path: path.clone(),
                query: None,
                headers: headers.clone(),
            });
        }
    }
    out
}

/// The routing decision only: why a host is unknown is `explain`'s commentary, not routing.
fn decision(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::UnknownHost { host, .. } => Outcome::UnknownHost {
            host,
            hidden_service: None,
        },
        other => other,
    }
}

#[test]
fn every_request_gets_the_same_destinations_after_pruning() {
    let original = mesh();
    let requests = requests(&original);
    for w in &original.workloads {
        let s = pruned(&original, &w.name);
        let mut routed = 0;
        for request in &requests {
            let ask = |snapshot: &Snapshot| {
                explain(snapshot, Some(&w.name), request.clone(), None)
                    .map(|e| decision(e.outcome))
                    .expect("the workload exists")
            };
            let before = ask(&original);
            routed += usize::from(matches!(before, Outcome::Routed { .. }));
            assert_eq!(ask(&s), before, "workload {}, {request:?}", w.name);
        }
        assert!(
            routed > 0,
            "workload {} routes nothing; the test proves nothing",
            w.name
        );
    }
}

#[test]
fn keeps_and_renumbers_mirror_targets() {
    let mut sources = Sources::new();
    sources.add(
        "m.mesh",
        r#"service alpha { port 1 http endpoint 127.0.0.1:1 }
service front { port 2 http endpoint 127.0.0.1:2 }
service shadow {
  port 3 http
  endpoint 127.0.0.1:3 { v = "1" }
  subset v1 { v = "1" }
}
route front { rule all { to front mirror shadow/v1 10% } }
workload w { outbound front }
"#,
    );
    let snapshot = match crate::compile_sources(sources) {
        Ok(compiled) => compiled.snapshot,
        Err(failed) => panic!("{}", failed.render()),
    };
    let p = pruned(&snapshot, "w");
    let names: Vec<&str> = p.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["front", "shadow"]);
    let mirror = p.routes[0].rules[0].mirror.clone().expect("mirror");
    assert_eq!((mirror.service, mirror.subset), (1, Some(0)));
    assert_eq!(p.validate(), Ok(()));
}
