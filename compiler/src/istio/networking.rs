//! ServiceEntry, WorkloadEntry, DestinationRule and VirtualService into AST declarations.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::security::ROOT_NAMESPACE;
use super::yaml::Node;
use super::{Kind, Out, Resource};
use crate::ast;
use crate::diag::{Code, FileId, Span};

/// A service imported from a ServiceEntry host, and where its AST lives.
struct Imported {
    file: FileId,
    service: ast::Service,
}

/// Lowers the resources: services first (with WorkloadEntry endpoints), then subsets, then routes.
pub(super) fn lower(
    out: &mut Out<'_>,
    resources: &[Resource<'_>],
    mesh: &[ast::File],
    authenticated: &HashSet<String>,
) -> Vec<ast::File> {
    let entries: Vec<&Resource<'_>> = resources
        .iter()
        .filter(|r| r.kind == Kind::WorkloadEntry)
        .collect();
    let mut items: HashMap<FileId, Vec<ast::Item>> = HashMap::new();
    let mut workload_entries = Vec::new();
    for entry in &entries {
        out.file = entry.file;
        if let Some(parsed) = workload_entry(out, entry) {
            if let Some(workload) = &parsed.workload {
                items
                    .entry(entry.file)
                    .or_default()
                    .push(ast::Item::Workload(workload.clone()));
            }
            workload_entries.push(parsed);
        }
    }

    let mut services: Vec<Imported> = Vec::new();
    let mut protocols = HashMap::new();
    for r in resources.iter().filter(|r| r.kind == Kind::ServiceEntry) {
        out.file = r.file;
        service_entry(out, r, &workload_entries, &mut services);
        addresses_required(out, r);
        conflicting_protocols(out, r, &mut protocols);
    }

    // Every host name a route or rule may use, mapped to the declared service's name and, for
    // imported services, its index in `services`.
    let mut hosts: HashMap<String, (String, Option<usize>)> = HashMap::new();
    let mut ports: HashMap<String, Vec<u64>> = HashMap::new();
    for file in mesh {
        for item in &file.items {
            if let ast::Item::Service(s) = item {
                ports
                    .entry(s.name.name.clone())
                    .or_insert_with(|| s.ports.iter().map(|p| p.number.value).collect());
                let namespace = s.namespaces.first().map_or("default", |n| n.name.as_str());
                for alias in aliases(&s.name.name, namespace) {
                    hosts.entry(alias).or_insert((s.name.name.clone(), None));
                }
            }
        }
    }
    for (i, imported) in services.iter().enumerate() {
        let s = &imported.service;
        ports
            .entry(s.name.name.clone())
            .or_insert_with(|| s.ports.iter().map(|p| p.number.value).collect());
        let namespace = s.namespaces.first().map_or("default", |n| n.name.as_str());
        for alias in aliases(&s.name.name, namespace) {
            hosts.entry(alias).or_insert((s.name.name.clone(), Some(i)));
        }
    }
    let resolver = Resolver { hosts, ports };

    for r in resources.iter().filter(|r| r.kind == Kind::DestinationRule) {
        out.file = r.file;
        destination_rule(out, r, &resolver, &mut services);
    }
    for r in resources.iter().filter(|r| r.kind == Kind::VirtualService) {
        out.file = r.file;
        for route in virtual_service(out, r, &resolver, authenticated) {
            items
                .entry(r.file)
                .or_default()
                .push(ast::Item::Route(route));
        }
    }
    for imported in services {
        items
            .entry(imported.file)
            .or_default()
            .push(ast::Item::Service(imported.service));
    }
    let mut files: Vec<ast::File> = items
        .into_iter()
        .map(|(id, items)| ast::File { id, items })
        .collect();
    files.sort_by_key(|f| f.id);
    files
}

/// The four host names the lowering gives a service, lower-cased.
fn aliases(name: &str, namespace: &str) -> [String; 4] {
    let short = name.to_lowercase();
    let namespaced = format!("{short}.{}", namespace.to_lowercase());
    [
        format!("{namespaced}.svc.cluster.local"),
        format!("{namespaced}.svc"),
        namespaced,
        short,
    ]
}

struct Resolver {
    hosts: HashMap<String, (String, Option<usize>)>,
    /// The port numbers of every declared service, by service name.
    ports: HashMap<String, Vec<u64>>,
}

impl Resolver {
    /// The declared service a host names; a short name is relative to `namespace`, as in Istio.
    fn resolve(&self, host: &str, namespace: &str) -> Option<&(String, Option<usize>)> {
        let host = host.to_lowercase();
        if !host.contains('.') {
            let qualified = format!("{host}.{}.svc.cluster.local", namespace.to_lowercase());
            if let Some(found) = self.hosts.get(&qualified) {
                return Some(found);
            }
        }
        self.hosts.get(&host)
    }
}

/// W0181 (Istio IST0112): a destination (or mirror) `dest` of `service` names no `port` although
/// the service declares several.
fn require_port(out: &mut Out<'_>, resolver: &Resolver, service: &str, dest: &Node, path: &str) {
    if dest.get("port").is_some() {
        return;
    }
    let Some(ports) = resolver.ports.get(service).filter(|p| p.len() > 1) else {
        return;
    };
    let list: Vec<String> = ports.iter().map(u64::to_string).collect();
    out.push(
        Code::IstioDestinationPortRequired,
        dest.span,
        format!(
            "`{path}` names no `port`, but service `{service}` declares {} ports ({})",
            ports.len(),
            list.join(", ")
        ),
        "Istio requires `port: {number: N}` on a destination of a service with several ports \
         (IST0112); add the port the traffic is meant for",
    );
}

fn ident(name: impl Into<String>, span: Span) -> ast::Ident {
    ast::Ident {
        name: name.into(),
        span,
    }
}

/// A WorkloadEntry: its endpoint data (for the ServiceEntries that select it) and its workload.
struct WorkloadEntry<'a> {
    file: FileId,
    namespace: String,
    address: Option<&'a Node>,
    labels: Vec<ast::Label>,
    ports: Option<&'a Node>,
    weight: Option<&'a Node>,
    workload: Option<ast::Workload>,
}

const ENDPOINT_FIELDS: &[&str] = &[
    "address",
    "ports",
    "labels",
    "network",
    "locality",
    "weight",
    "serviceAccount",
];

/// Checks the fields an endpoint (ServiceEntry `endpoints[]` or WorkloadEntry `spec`) shares.
fn check_endpoint(out: &mut Out<'_>, node: &Node, path: &str) {
    out.check_fields(node, path, ENDPOINT_FIELDS);
    for field in ["network", "locality"] {
        if let Some(value) = node.get(field) {
            out.unsupported(&format!("{path}.{field}"), value, "ignored");
        }
    }
    if let Some(ports) = node.get("ports") {
        let ports_path = format!("{path}.ports");
        for (name, number) in out.map(ports, &ports_path).unwrap_or_default() {
            let port_path = format!("{ports_path}.{}", super::plain(name));
            out.int(number, &port_path, 1, 65535);
        }
    }
    if let Some(weight) = node.get("weight") {
        out.int(weight, &format!("{path}.weight"), 0, i64::from(u32::MAX));
    }
}

fn workload_entry<'a>(out: &mut Out<'_>, r: &Resource<'a>) -> Option<WorkloadEntry<'a>> {
    let spec = r.spec;
    check_endpoint(out, spec, "spec");
    let labels = spec
        .get("labels")
        .map(|l| out.labels(l, "spec.labels"))
        .unwrap_or_default();
    let identity = match spec.get("serviceAccount") {
        Some(node) => out
            .str(node, "spec.serviceAccount")
            .filter(|sa| !sa.is_empty())
            .map(|sa| ast::Str {
                value: format!("spiffe://cluster.local/ns/{}/sa/{sa}", r.namespace),
                span: node.span,
            }),
        None => None,
    };
    let workload = ast::Workload {
        labels: labels.clone(),
        namespace: Some(ident(r.namespace.clone(), r.name.span)),
        serves: Vec::new(),
        telemetry: None,
        keyword: r.kind_span,
        name: r.name.clone(),
        identities: identity.into_iter().collect(),
        inbound: Vec::new(),
        outbound: None,
    };
    Some(WorkloadEntry {
        file: r.file,
        namespace: r.namespace.clone(),
        address: spec.get("address"),
        labels,
        ports: spec.get("ports"),
        weight: spec.get("weight"),
        workload: Some(workload),
    })
}

/// A service port as written, for endpoint port lookup.
struct PortSpec {
    name: Option<String>,
    /// `targetPort`, else `number`.
    target: i64,
}

/// W0182 (Istio IST0134): a ServiceEntry without `addresses` with a port whose protocol is TCP
/// or not set. Istio then listens for the port on every address, so it cannot tell this
/// service's connections from other traffic to the same port.
fn addresses_required(out: &mut Out<'_>, r: &Resource<'_>) {
    let spec = r.spec;
    if spec
        .get("addresses")
        .and_then(Node::items)
        .is_some_and(|a| !a.is_empty())
    {
        return;
    }
    let ports = spec.get("ports").and_then(Node::items).unwrap_or_default();
    for (i, port) in ports.iter().enumerate() {
        let written = port.get("protocol").and_then(Node::as_str).unwrap_or("");
        if !written.is_empty() && !written.eq_ignore_ascii_case("TCP") {
            continue;
        }
        let what = if written.is_empty() {
            "has no protocol".to_owned()
        } else {
            format!("has protocol `{written}`")
        };
        let number = port
            .get("number")
            .and_then(Node::as_int)
            .map_or_else(|| "its port".to_owned(), |n| format!("port {n}"));
        out.push(
            Code::IstioServiceEntryAddressesRequired,
            port.get("protocol").unwrap_or(port).span,
            format!(
                "ServiceEntry `{}/{}` has no `addresses` but `spec.ports[{i}]` {what}: Istio \
                 cannot tell its connections from any other traffic to {number}",
                r.namespace, r.name.name
            ),
            "add `spec.addresses` (the service's virtual IPs or CIDRs), or declare an \
             application protocol such as HTTP (IST0134)",
        );
    }
}

/// Where a host and port was first declared: its protocol and the ServiceEntry.
type DeclaredPort = (String, String);

/// W0184 (Istio IST0177): a ServiceEntry declares a host and port another ServiceEntry already
/// declared with another protocol. Ports without a protocol are not compared (Istio detects it).
fn conflicting_protocols(
    out: &mut Out<'_>,
    r: &Resource<'_>,
    seen: &mut HashMap<(String, i64), DeclaredPort>,
) {
    let spec = r.spec;
    let this = format!("{}/{}", r.namespace, r.name.name);
    let hosts = spec.get("hosts").and_then(Node::items).unwrap_or_default();
    let ports = spec.get("ports").and_then(Node::items).unwrap_or_default();
    for host in hosts.iter().filter_map(Node::as_str) {
        for port in ports {
            let (Some(number), Some(protocol_node)) = (
                port.get("number").and_then(Node::as_int),
                port.get("protocol"),
            ) else {
                continue;
            };
            let protocol = protocol_node.as_str().unwrap_or("").to_ascii_uppercase();
            if protocol.is_empty() {
                continue;
            }
            let key = (host.to_lowercase(), number);
            match seen.get(&key) {
                None => {
                    seen.insert(key, (protocol, this.clone()));
                }
                Some((first, by)) if *first != protocol => {
                    let message = format!(
                        "ServiceEntry `{this}` declares host `{host}` port {number} as \
                         {protocol}, but ServiceEntry `{by}` declares it as {first}"
                    );
                    out.push(
                        Code::IstioConflictingServiceEntryProtocol,
                        protocol_node.span,
                        message,
                        "give a host and port one protocol in every ServiceEntry (IST0177)",
                    );
                }
                Some(_) => {}
            }
        }
    }
}

const RESOLUTIONS: &[&str] = &["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"];

fn service_entry(
    out: &mut Out<'_>,
    r: &Resource<'_>,
    workload_entries: &[WorkloadEntry<'_>],
    services: &mut Vec<Imported>,
) {
    let spec = r.spec;
    out.check_fields(
        spec,
        "spec",
        &[
            "hosts",
            "addresses",
            "ports",
            "location",
            "resolution",
            "endpoints",
            "workloadSelector",
            "exportTo",
            "subjectAltNames",
        ],
    );
    for field in ["addresses", "exportTo", "subjectAltNames", "location"] {
        if let Some(value) = spec.get(field) {
            out.unsupported(&format!("spec.{field}"), value, "ignored");
        }
    }

    let mut hosts = Vec::new();
    match spec.get("hosts") {
        None => out.schema(r.kind_span, "`spec.hosts`: required value".to_owned()),
        Some(list) => {
            let items = out.seq(list, "spec.hosts").unwrap_or_default();
            if items.is_empty() {
                out.schema(list.span, "`spec.hosts` must not be empty".to_owned());
            }
            for (i, host) in items.iter().enumerate() {
                if let Some(name) = out.str(host, &format!("spec.hosts[{i}]")) {
                    if name == "*" {
                        out.schema(
                            host.span,
                            "`spec.hosts`: hostname cannot be wildcard `*`".to_owned(),
                        );
                    } else {
                        hosts.push((name.to_owned(), host.span));
                    }
                }
            }
        }
    }

    let resolution_node = spec.get("resolution");
    let resolution = match resolution_node {
        None => "NONE",
        Some(node) => match out.str(node, "spec.resolution") {
            Some(value) if RESOLUTIONS.contains(&value) => value,
            Some(value) => {
                let message = format!(
                    "`spec.resolution`: unsupported value {value:?}, expected one of {}",
                    RESOLUTIONS.join(", ")
                );
                out.schema(node.span, message);
                "NONE"
            }
            None => "NONE",
        },
    };
    if let Some(addresses) = spec.get("addresses") {
        for address in out.seq(addresses, "spec.addresses").unwrap_or_default() {
            let cidr = address.as_str().is_some_and(|a| a.contains('/'));
            if cidr && !matches!(resolution, "NONE" | "STATIC") {
                out.schema(
                    address.span,
                    "CIDR addresses are allowed only for NONE/STATIC resolution".to_owned(),
                );
            }
        }
    }

    // Ports.
    let mut ports = Vec::new();
    let mut port_specs = Vec::new();
    let mut names: HashMap<String, Span> = HashMap::new();
    let mut numbers: HashMap<i64, Span> = HashMap::new();
    let port_list = spec.get("ports");
    let port_items = port_list
        .and_then(|p| out.seq(p, "spec.ports"))
        .unwrap_or_default();
    for (i, port) in port_items.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        if out.map(port, &path).is_none() {
            continue;
        }
        out.check_fields(port, &path, &["number", "protocol", "name", "targetPort"]);
        let name = port
            .get("name")
            .and_then(|n| out.str(n, &format!("{path}.name")));
        if let (Some(name), Some(node)) = (name, port.get("name")) {
            if names.insert(name.to_owned(), node.span).is_some() {
                out.schema(
                    node.span,
                    format!("`{path}.name`: duplicate value {name:?}"),
                );
            }
        }
        let Some(number_node) = port.get("number") else {
            out.schema(port.span, format!("`{path}.number`: required value"));
            continue;
        };
        let Some(number) = out.int(number_node, &format!("{path}.number"), 1, 65535) else {
            continue;
        };
        if numbers.insert(number, number_node.span).is_some() {
            out.schema(
                number_node.span,
                format!("`{path}.number`: port number {number} cannot be duplicated"),
            );
            continue;
        }
        let mut target = number;
        if let Some(node) = port.get("targetPort") {
            match out.int(node, &format!("{path}.targetPort"), 1, 65535) {
                Some(t) => target = t,
                None => continue,
            }
        }
        let protocol = protocol(out, port, &path, name);
        ports.push(ast::Port {
            number: ast::Number {
                value: number as u64,
                span: number_node.span,
            },
            protocol: ast::Protocol {
                value: protocol,
                span: port.get("protocol").map_or(number_node.span, |p| p.span),
            },
        });
        port_specs.push(PortSpec {
            name: name.map(str::to_owned),
            target,
        });
    }
    if let Some(extra) = port_items.get(1) {
        out.unsupported(
            "spec.ports[1..]",
            extra,
            "endpoints get the first port's address only (the snapshot holds one socket \
             address per endpoint)",
        );
    }

    // Workload selector and endpoints.
    let selector = spec.get("workloadSelector");
    let endpoints_node = spec.get("endpoints");
    if let (Some(selector), Some(_)) = (selector, endpoints_node) {
        out.schema(
            selector.span,
            "only one of `spec.workloadSelector` or `spec.endpoints` can be set".to_owned(),
        );
    }
    let mut selector_labels = Vec::new();
    if let Some(selector) = selector {
        if out.map(selector, "spec.workloadSelector").is_some() {
            out.check_fields(selector, "spec.workloadSelector", &["labels"]);
            if let Some(labels) = selector.get("labels") {
                selector_labels = out.labels(labels, "spec.workloadSelector.labels");
                for label in &selector_labels {
                    if label.key.name.contains('*') || label.value.value.contains('*') {
                        out.schema(
                            label.value.span,
                            "`spec.workloadSelector.labels`: wildcard is not supported in selector"
                                .to_owned(),
                        );
                    }
                }
            }
        }
    }
    let first_port = port_specs.first();
    let mut endpoints = Vec::new();
    if let Some(list) = endpoints_node {
        let items = out.seq(list, "spec.endpoints").unwrap_or_default();
        if resolution == "NONE" && !items.is_empty() {
            out.schema(
                list.span,
                "`spec.endpoints`: NONE resolution cannot set endpoints".to_owned(),
            );
        }
        if resolution == "DNS_ROUND_ROBIN" && items.len() > 1 {
            out.schema(
                list.span,
                "`spec.endpoints`: DNS_ROUND_ROBIN resolution cannot have multiple endpoints"
                    .to_owned(),
            );
        }
        for (i, e) in items.iter().enumerate() {
            let path = format!("spec.endpoints[{i}]");
            if out.map(e, &path).is_none() {
                continue;
            }
            check_endpoint(out, e, &path);
            if let Some(sa) = e.get("serviceAccount") {
                out.unsupported(&format!("{path}.serviceAccount"), sa, "ignored");
            }
            let labels = e
                .get("labels")
                .map(|l| out.labels(l, &format!("{path}.labels")))
                .unwrap_or_default();
            let source = EndpointSource {
                path: &path,
                address: e.get("address"),
                ports: e.get("ports"),
                weight: e.get("weight"),
                labels,
                at: e.span,
            };
            if let Some(endpoint) = endpoint(out, &source, first_port) {
                endpoints.push(endpoint);
            }
        }
    } else if !selector_labels.is_empty() || selector.is_some() {
        for entry in workload_entries {
            let matches = entry.namespace == r.namespace
                && selector_labels.iter().all(|want| {
                    entry
                        .labels
                        .iter()
                        .any(|l| l.key.name == want.key.name && l.value.value == want.value.value)
                });
            if !matches {
                continue;
            }
            let at = entry.address.map_or(r.kind_span, |a| a.span);
            // The WorkloadEntry's diagnostics point into its own file.
            let source = EndpointSource {
                path: "WorkloadEntry spec",
                address: entry.address,
                ports: entry.ports,
                weight: entry.weight,
                labels: entry.labels.clone(),
                at,
            };
            let file = out.file;
            out.file = entry.file;
            let lowered = endpoint(out, &source, first_port);
            out.file = file;
            if let Some(endpoint) = lowered {
                endpoints.push(endpoint);
            }
        }
    } else if matches!(
        resolution,
        "DNS" | "DNS_ROUND_ROBIN" | "DYNAMIC_DNS" | "NONE"
    ) {
        let at = resolution_node.map_or(r.kind_span, |n| n.span);
        out.inexpressible(
            at,
            format!(
                "resolution `{resolution}` without endpoints: addresses are found at run time \
                 (DNS of the hosts, or the original destination), which the snapshot cannot hold"
            ),
            "add `endpoints` with IP addresses to route through the mesh",
        );
    }

    let namespace = ident(r.namespace.clone(), r.name.span);
    for (host, span) in hosts {
        if services.iter().any(|s| s.service.name.name == host) {
            out.inexpressible(
                span,
                format!(
                    "host `{host}` is already declared by another ServiceEntry; merging \
                     ServiceEntries is not supported yet, this one is skipped"
                ),
                "declare each host in one ServiceEntry",
            );
            continue;
        }
        services.push(Imported {
            file: r.file,
            service: ast::Service {
                policies: Vec::new(),
                keyword: span,
                name: ident(host, span),
                namespaces: vec![namespace.clone()],
                ports: ports.clone(),
                endpoints: endpoints.clone(),
                subsets: Vec::new(),
                close: span,
                origin: ast::Origin::Istio,
            },
        });
    }
}

fn protocol(out: &mut Out<'_>, port: &Node, path: &str, name: Option<&str>) -> spec::Protocol {
    let (written, node) = match port.get("protocol") {
        Some(node) => (
            out.str(node, &format!("{path}.protocol")).unwrap_or(""),
            node,
        ),
        None => {
            // Istio derives a missing protocol from the port name prefix (`http-web`).
            let prefix = name.map(|n| n.split('-').next().unwrap_or(n)).unwrap_or("");
            (prefix, port)
        }
    };
    match written.to_ascii_uppercase().as_str() {
        "HTTP" => spec::Protocol::Http,
        "HTTP2" => spec::Protocol::Http2,
        "GRPC" => spec::Protocol::Grpc,
        "TCP" => spec::Protocol::Tcp,
        other => {
            let message = if port.get("protocol").is_some() {
                format!("protocol `{other}` of `{path}` is not modeled yet, treated as tcp")
            } else {
                format!(
                    "`{path}` has no protocol (Istio would detect it at run time), treated as tcp"
                )
            };
            out.inexpressible(
                node.span,
                message,
                "the snapshot models http, http2, grpc and tcp",
            );
            spec::Protocol::Tcp
        }
    }
}

struct EndpointSource<'a, 'n> {
    path: &'a str,
    address: Option<&'n Node>,
    ports: Option<&'n Node>,
    weight: Option<&'n Node>,
    labels: Vec<ast::Label>,
    at: Span,
}

/// An endpoint with an IP address; anything else is skipped with a warning.
fn endpoint(
    out: &mut Out<'_>,
    source: &EndpointSource<'_, '_>,
    port: Option<&PortSpec>,
) -> Option<ast::Endpoint> {
    let path = source.path;
    let Some(address_node) = source.address else {
        out.inexpressible(
            source.at,
            format!("`{path}` has no `address`, endpoint skipped"),
            "the snapshot needs an IP address per endpoint",
        );
        return None;
    };
    let address = address_node.as_str()?;
    let Ok(ip) = address.parse::<IpAddr>() else {
        let what = if address.starts_with("unix://") {
            "a Unix domain socket"
        } else {
            "a DNS name"
        };
        out.inexpressible(
            address_node.span,
            format!(
                "`{path}.address` `{address}` is {what}; the snapshot holds socket \
                     addresses, so this endpoint is skipped"
            ),
            "use an IP address",
        );
        return None;
    };
    let Some(port) = port else {
        out.inexpressible(
            address_node.span,
            format!("endpoint `{address}` has no port (the ServiceEntry declares none), skipped"),
            "declare `ports` on the ServiceEntry",
        );
        return None;
    };
    let mut number = port.target;
    if let (Some(ports), Some(name)) = (source.ports, &port.name) {
        if let Some(n) = ports.get(name).and_then(Node::as_int) {
            number = n;
        }
    }
    let text = match ip {
        IpAddr::V4(ip) => format!("{ip}:{number}"),
        IpAddr::V6(ip) => format!("[{ip}]:{number}"),
    };
    let weight = source
        .weight
        .and_then(Node::as_int)
        .filter(|&w| w > 0)
        .map(|w| ast::Number {
            value: w as u64,
            span: source.weight.map_or(address_node.span, |n| n.span),
        });
    Some(ast::Endpoint {
        address: ast::Address {
            text,
            span: address_node.span,
        },
        labels: source.labels.clone(),
        weight,
    })
}

fn destination_rule(
    out: &mut Out<'_>,
    r: &Resource<'_>,
    resolver: &Resolver,
    services: &mut [Imported],
) {
    let spec = r.spec;
    out.check_fields(
        spec,
        "spec",
        &[
            "host",
            "trafficPolicy",
            "subsets",
            "exportTo",
            "workloadSelector",
        ],
    );
    for field in ["exportTo", "workloadSelector"] {
        if let Some(value) = spec.get(field) {
            out.unsupported(&format!("spec.{field}"), value, "ignored");
        }
    }
    let policy = spec
        .get("trafficPolicy")
        .and_then(|p| traffic_policy(out, p, "spec.trafficPolicy"));
    let mut subsets = Vec::new();
    if let Some(list) = spec.get("subsets") {
        for (i, subset) in out
            .seq(list, "spec.subsets")
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let path = format!("spec.subsets[{i}]");
            if out.map(subset, &path).is_none() {
                continue;
            }
            out.check_fields(subset, &path, &["name", "labels", "trafficPolicy"]);
            let policy = subset
                .get("trafficPolicy")
                .and_then(|p| traffic_policy(out, p, &format!("{path}.trafficPolicy")));
            let Some(name_node) = subset.get("name") else {
                out.schema(subset.span, format!("`{path}.name`: required value"));
                continue;
            };
            let Some(name) = out.str(name_node, &format!("{path}.name")) else {
                continue;
            };
            let selector = subset
                .get("labels")
                .map(|l| out.labels(l, &format!("{path}.labels")))
                .unwrap_or_default();
            subsets.push(ast::Subset {
                policy,
                name: ident(name, name_node.span),
                selector,
            });
        }
    }
    let Some(host_node) = spec.get("host") else {
        out.schema(r.kind_span, "`spec.host`: required value".to_owned());
        return;
    };
    let Some(host) = out.str(host_node, "spec.host") else {
        return;
    };
    match resolver.resolve(host, &r.namespace) {
        Some((_, Some(index))) => {
            let service = &mut services[*index].service;
            service.subsets.extend(subsets);
            service.policies.extend(policy);
        }
        Some((name, None)) => out.inexpressible(
            host_node.span,
            format!(
                "`{host}` is service `{name}` declared in a .mesh file; its subsets and traffic \
                 policy cannot come from a DestinationRule yet, rule ignored"
            ),
            "declare the subsets and the policy in the .mesh file",
        ),
        None => out.inexpressible(
            host_node.span,
            format!("host `{host}` is not a declared service, destination rule ignored"),
            "declare it with a ServiceEntry or in a .mesh file",
        ),
    }
}

/// A `trafficPolicy`: load balancer, connection pool and outlier detection. `None` when nothing
/// in it could be lowered (each part left out has its own diagnostic).
fn traffic_policy(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ast::Policy> {
    out.map(node, path)?;
    out.fields(
        node,
        path,
        &["loadBalancer", "connectionPool", "outlierDetection"],
        &[
            "tls",
            "portLevelSettings",
            "tunnel",
            "proxyProtocol",
            "retryBudget",
        ],
        "ignored",
    );
    warmup(out, node, path);
    let policy = ast::Policy {
        span: node.span,
        load_balancer: node
            .get("loadBalancer")
            .and_then(|lb| load_balancer(out, lb, &format!("{path}.loadBalancer"))),
        pool: node
            .get("connectionPool")
            .and_then(|p| pool(out, p, &format!("{path}.connectionPool"))),
        outlier: node
            .get("outlierDetection")
            .and_then(|o| outlier(out, o, &format!("{path}.outlierDetection"))),
    };
    let empty = policy.load_balancer.is_none() && policy.pool.is_none() && policy.outlier.is_none();
    (!empty).then_some(policy)
}

/// `loadBalancer.simple` or `loadBalancer.consistentHash`.
fn load_balancer(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ast::LoadBalancer> {
    out.map(node, path)?;
    out.fields(
        node,
        path,
        &["simple", "consistentHash"],
        &["localityLbSetting", "warmupDurationSecs", "warmup"],
        "ignored",
    );
    if let (Some(simple), Some(_)) = (node.get("simple"), node.get("consistentHash")) {
        out.schema(
            simple.span,
            format!("`{path}`: only one of `simple` and `consistentHash` can be set"),
        );
        return None;
    }
    if let Some(simple) = node.get("simple") {
        let kind = match out.str(simple, &format!("{path}.simple"))? {
            "ROUND_ROBIN" => ast::LbKind::RoundRobin,
            "LEAST_REQUEST" => ast::LbKind::LeastRequest,
            "LEAST_CONN" => {
                out.deprecated(
                    &format!("{path}.simple: LEAST_CONN"),
                    simple.span,
                    "LEAST_REQUEST",
                );
                ast::LbKind::LeastRequest
            }
            "RANDOM" => ast::LbKind::Random,
            "UNSPECIFIED" => return None,
            "PASSTHROUGH" => {
                out.unsupported(
                    &format!("{path}.simple: PASSTHROUGH"),
                    simple,
                    "the default load balancer is used (meshd always picks an endpoint)",
                );
                return None;
            }
            other => {
                out.schema(
                    simple.span,
                    format!(
                        "`{path}.simple`: unsupported value {other:?}, expected one of \
                         UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST"
                    ),
                );
                return None;
            }
        };
        return Some(ast::LoadBalancer {
            kind,
            key: None,
            minimum_ring_size: None,
            span: simple.span,
        });
    }
    let hash = node.get("consistentHash")?;
    let hash_path = format!("{path}.consistentHash");
    out.map(hash, &hash_path)?;
    out.fields(
        hash,
        &hash_path,
        &[
            "httpHeaderName",
            "httpCookie",
            "useSourceIp",
            "ringHash",
            "maglev",
            "minimumRingSize",
        ],
        &["httpQueryParameterName"],
        "the consistent hash is left out (the default load balancer is used)",
    );
    if hash.get("httpQueryParameterName").is_some() {
        return None;
    }
    let mut key = None;
    let mut keys = 0;
    if let Some(header) = hash.get("httpHeaderName") {
        keys += 1;
        key = Some(ast::HashKey::Header(
            out.ast_str(header, &format!("{hash_path}.httpHeaderName"))?,
        ));
    }
    if let Some(cookie) = hash.get("httpCookie") {
        keys += 1;
        let cookie_path = format!("{hash_path}.httpCookie");
        out.map(cookie, &cookie_path)?;
        out.fields(
            cookie,
            &cookie_path,
            &["name", "ttl"],
            &["path", "attributes"],
            "ignored (the cookie meshd sets has no path or attributes)",
        );
        let Some(name) = cookie.get("name") else {
            out.schema(cookie.span, format!("`{cookie_path}.name`: required value"));
            return None;
        };
        let name = out.ast_str(name, &format!("{cookie_path}.name"))?;
        let ttl = match cookie.get("ttl") {
            Some(ttl) => Some(out.duration(ttl, &format!("{cookie_path}.ttl"))?),
            None => None,
        };
        key = Some(ast::HashKey::Cookie { name, ttl });
    }
    if let Some(source) = hash.get("useSourceIp") {
        match source.value {
            super::yaml::Value::Bool(true) => {
                keys += 1;
                key = Some(ast::HashKey::SourceIp(source.span));
            }
            super::yaml::Value::Bool(false) => {}
            _ => {
                out.schema(
                    source.span,
                    format!(
                        "`{hash_path}.useSourceIp` must be a boolean, found {}",
                        source.display()
                    ),
                );
                return None;
            }
        }
    }
    if keys > 1 {
        out.schema(
            hash.span,
            format!(
                "`{hash_path}`: only one of `httpHeaderName`, `httpCookie`, `useSourceIp` and \
                 `httpQueryParameterName` can be set"
            ),
        );
        return None;
    }
    let Some(key) = key else {
        out.schema(
            hash.span,
            format!(
                "`{hash_path}` needs a hash key: `httpHeaderName`, `httpCookie`, `useSourceIp` \
                 or `httpQueryParameterName`"
            ),
        );
        return None;
    };
    let mut kind = ast::LbKind::RingHash;
    let mut minimum_ring_size = None;
    if let Some(size) = hash.get("minimumRingSize") {
        out.deprecated(
            &format!("{hash_path}.minimumRingSize"),
            size.span,
            "`ringHash.minimumRingSize`",
        );
        let n = out.int(size, &format!("{hash_path}.minimumRingSize"), 0, i64::MAX)?;
        minimum_ring_size = Some(number(n, size.span));
    }
    match (hash.get("ringHash"), hash.get("maglev")) {
        (Some(ring), Some(_)) => {
            out.schema(
                ring.span,
                format!("`{hash_path}`: only one of `ringHash` and `maglev` can be set"),
            );
            return None;
        }
        (Some(ring), None) => {
            let ring_path = format!("{hash_path}.ringHash");
            out.map(ring, &ring_path)?;
            out.check_fields(ring, &ring_path, &["minimumRingSize"]);
            if let Some(size) = ring.get("minimumRingSize") {
                let n = out.int(size, &format!("{ring_path}.minimumRingSize"), 0, i64::MAX)?;
                minimum_ring_size = Some(number(n, size.span));
            }
        }
        (None, Some(maglev)) => {
            let maglev_path = format!("{hash_path}.maglev");
            out.map(maglev, &maglev_path)?;
            out.fields(
                maglev,
                &maglev_path,
                &[],
                &["tableSize"],
                "ignored (meshd uses its default table size)",
            );
            kind = ast::LbKind::Maglev;
        }
        (None, None) => {}
    }
    Some(ast::LoadBalancer {
        kind,
        key: Some(key),
        minimum_ring_size,
        span: hash.span,
    })
}

/// `connectionPool.tcp` and `connectionPool.http`.
fn pool(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ast::Pool> {
    out.map(node, path)?;
    out.check_fields(node, path, &["tcp", "http"]);
    let mut pool = ast::Pool {
        span: node.span,
        ..ast::Pool::default()
    };
    let count = |out: &mut Out<'_>, n: &Node, p: String| {
        out.int(n, &p, 0, i64::from(i32::MAX))
            .map(|v| number(v, n.span))
    };
    if let Some(tcp) = node.get("tcp") {
        let tcp_path = format!("{path}.tcp");
        out.map(tcp, &tcp_path)?;
        out.fields(
            tcp,
            &tcp_path,
            &["maxConnections", "connectTimeout"],
            &["tcpKeepalive", "maxConnectionDuration", "idleTimeout"],
            "ignored",
        );
        if let Some(n) = tcp.get("maxConnections") {
            pool.max_connections = Some(count(out, n, format!("{tcp_path}.maxConnections"))?);
        }
        if let Some(n) = tcp.get("connectTimeout") {
            pool.connect_timeout = Some(out.duration(n, &format!("{tcp_path}.connectTimeout"))?);
        }
    }
    if let Some(http) = node.get("http") {
        let http_path = format!("{path}.http");
        out.map(http, &http_path)?;
        out.fields(
            http,
            &http_path,
            &[
                "http1MaxPendingRequests",
                "maxRequestsPerConnection",
                "idleTimeout",
            ],
            &[
                "http2MaxRequests",
                "maxRetries",
                "h2UpgradePolicy",
                "useClientProtocol",
                "maxConcurrentStreams",
            ],
            "ignored",
        );
        if let Some(n) = http.get("http1MaxPendingRequests") {
            pool.max_pending = Some(count(
                out,
                n,
                format!("{http_path}.http1MaxPendingRequests"),
            )?);
        }
        if let Some(n) = http.get("maxRequestsPerConnection") {
            pool.max_requests_per_connection = Some(count(
                out,
                n,
                format!("{http_path}.maxRequestsPerConnection"),
            )?);
        }
        if let Some(n) = http.get("idleTimeout") {
            pool.idle_timeout = Some(out.duration(n, &format!("{http_path}.idleTimeout"))?);
        }
    }
    let set = pool.max_connections.is_some()
        || pool.connect_timeout.is_some()
        || pool.max_pending.is_some()
        || pool.max_requests_per_connection.is_some()
        || pool.idle_timeout.is_some();
    set.then_some(pool)
}

/// `outlierDetection`.
fn outlier(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ast::Outlier> {
    out.map(node, path)?;
    out.fields(
        node,
        path,
        &[
            "consecutive5xxErrors",
            "consecutiveGatewayErrors",
            "interval",
            "baseEjectionTime",
            "maxEjectionPercent",
        ],
        &[
            "consecutiveErrors",
            "minHealthPercent",
            "splitExternalLocalOriginErrors",
            "consecutiveLocalOriginFailures",
        ],
        "ignored",
    );
    let mut outlier = ast::Outlier {
        span: node.span,
        ..ast::Outlier::default()
    };
    let count = |out: &mut Out<'_>, field: &str, max: i64| -> Option<Option<ast::Number>> {
        match node.get(field) {
            None => Some(None),
            Some(n) => out
                .int(n, &format!("{path}.{field}"), 0, max)
                .map(|v| Some(number(v, n.span))),
        }
    };
    let max = i64::from(u32::MAX);
    outlier.consecutive_5xx = count(out, "consecutive5xxErrors", max)?;
    outlier.consecutive_gateway_errors = count(out, "consecutiveGatewayErrors", max)?;
    outlier.max_ejection_percent = count(out, "maxEjectionPercent", 100)?;
    if let Some(n) = node.get("interval") {
        outlier.interval = Some(out.duration(n, &format!("{path}.interval"))?);
    }
    if let Some(n) = node.get("baseEjectionTime") {
        outlier.base_ejection = Some(out.duration(n, &format!("{path}.baseEjectionTime"))?);
    }
    Some(outlier)
}

/// Checks what Istio validates in `loadBalancer.warmup` (the warmup itself is not modeled).
fn warmup(out: &mut Out<'_>, policy: &Node, path: &str) {
    let Some(warmup) = policy.get("loadBalancer").and_then(|lb| lb.get("warmup")) else {
        return;
    };
    let path = format!("{path}.loadBalancer.warmup");
    if out.map(warmup, &path).is_none() {
        return;
    }
    if warmup.get("duration").is_none() {
        out.schema(warmup.span, format!("`{path}.duration`: required value"));
    }
    if let Some(percent) = warmup.get("minimumPercent") {
        let value = float(percent);
        if !value.is_some_and(|v| (0.0..=100.0).contains(&v)) {
            out.schema(
                percent.span,
                format!(
                    "`{path}.minimumPercent` {}: must be between 0 and 100",
                    percent.display()
                ),
            );
        }
    }
    if let Some(aggression) = warmup.get("aggression") {
        if !float(aggression).is_some_and(|v| v >= 1.0) {
            out.schema(
                aggression.span,
                format!(
                    "`{path}.aggression` {}: must be at least 1",
                    aggression.display()
                ),
            );
        }
    }
}

fn float(node: &Node) -> Option<f64> {
    match node.value {
        super::yaml::Value::Int(n) => Some(n as f64),
        super::yaml::Value::Float(f) => Some(f),
        _ => None,
    }
}

const HTTP_ROUTE_FIELDS: &[&str] = &[
    "name",
    "match",
    "route",
    "redirect",
    "directResponse",
    "delegate",
    "rewrite",
    "timeout",
    "retries",
    "fault",
    "mirror",
    "mirrors",
    "mirrorPercentage",
    "mirrorPercent",
    "mirror_percent",
    "corsPolicy",
    "headers",
];

const MATCH_FIELDS: &[&str] = &[
    "name",
    "uri",
    "scheme",
    "method",
    "authority",
    "headers",
    "port",
    "sourceLabels",
    "gateways",
    "queryParams",
    "ignoreUriCase",
    "withoutHeaders",
    "sourceNamespace",
    "statPrefix",
];

/// W0183 (Istio IST0149): every match header `@request.auth.claims.*` of a VirtualService in a
/// namespace that no RequestAuthentication covers (neither its own nor the root `istio-system`):
/// no JWT is validated there, so the claim is never set and the match never succeeds.
fn jwt_claim_routes(out: &mut Out<'_>, r: &Resource<'_>, authenticated: &HashSet<String>) {
    if authenticated.contains(&r.namespace) || authenticated.contains(ROOT_NAMESPACE) {
        return;
    }
    let rules = r.spec.get("http").and_then(Node::items).unwrap_or_default();
    for rule in rules {
        let matches = rule.get("match").and_then(Node::items).unwrap_or_default();
        for m in matches {
            let headers = m.get("headers").and_then(Node::entries).unwrap_or_default();
            for (name, _) in headers {
                let Some(claim) = name
                    .as_str()
                    .filter(|n| n.starts_with("@request.auth.claims"))
                else {
                    continue;
                };
                out.push(
                    Code::IstioJwtClaimRouteWithoutAuthentication,
                    name.span,
                    format!(
                        "virtual service `{}/{}` routes on JWT claim `{claim}`, but no \
                         RequestAuthentication in namespace `{}` or `{ROOT_NAMESPACE}` validates \
                         a JWT: the claim is never set and this match never succeeds",
                        r.namespace, r.name.name, r.namespace
                    ),
                    "add a RequestAuthentication for the workloads this route runs on (IST0149)",
                );
            }
        }
    }
}

fn virtual_service(
    out: &mut Out<'_>,
    r: &Resource<'_>,
    resolver: &Resolver,
    authenticated: &HashSet<String>,
) -> Vec<ast::Route> {
    let spec = r.spec;
    jwt_claim_routes(out, r, authenticated);
    out.check_fields(
        spec,
        "spec",
        &[
            "hosts", "gateways", "http", "tls", "tcp", "exportTo", "delegate",
        ],
    );
    if ["http", "tcp", "tls"].iter().all(|f| spec.get(f).is_none()) {
        out.schema(
            spec.span,
            "virtual service must have at least one of `http`, `tcp` or `tls`".to_owned(),
        );
        return Vec::new();
    }
    for field in ["tcp", "tls", "exportTo"] {
        if let Some(value) = spec.get(field) {
            out.unsupported(&format!("spec.{field}"), value, "ignored");
        }
    }
    let mut hosts = Vec::new();
    if let Some(list) = spec.get("hosts") {
        for (i, host) in out
            .seq(list, "spec.hosts")
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if let Some(name) = out.str(host, &format!("spec.hosts[{i}]")) {
                hosts.push((name, host.span));
            }
        }
    }
    if let Some(gateways) = spec.get("gateways") {
        let names = out.seq(gateways, "spec.gateways").unwrap_or_default();
        let mesh = names.is_empty() || names.iter().any(|g| g.as_str() == Some("mesh"));
        if !mesh {
            out.unsupported(
                "spec.gateways",
                gateways,
                "the virtual service binds only to gateways (no `mesh`) and is ignored",
            );
            return Vec::new();
        }
    }
    let mut rules = Vec::new();
    if let Some(http) = spec.get("http") {
        for (i, entry) in out
            .seq(http, "spec.http")
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if let Some(rule) = http_rule(out, r, entry, i, resolver) {
                rules.push(rule);
            }
        }
    }
    let mut routes: Vec<ast::Route> = Vec::new();
    for (host, span) in hosts {
        let Some((service, _)) = resolver.resolve(host, &r.namespace) else {
            out.inexpressible(
                span,
                format!("host `{host}` is not a declared service, skipped"),
                "declare it with a ServiceEntry or in a .mesh file",
            );
            continue;
        };
        if routes.iter().any(|route| &route.service.name == service) {
            continue;
        }
        if rules.is_empty() {
            out.inexpressible(
                span,
                format!(
                    "no rule of virtual service `{}` could be imported, service `{service}` \
                     keeps its default route",
                    r.name.name
                ),
                "see the warnings above for each dropped rule",
            );
            continue;
        }
        routes.push(ast::Route {
            keyword: r.kind_span,
            service: ident(service.clone(), span),
            rules: rules.clone(),
        });
    }
    routes
}

fn http_rule(
    out: &mut Out<'_>,
    r: &Resource<'_>,
    entry: &Node,
    index: usize,
    resolver: &Resolver,
) -> Option<ast::Rule> {
    let path = format!("spec.http[{index}]");
    out.map(entry, &path)?;
    out.check_fields(entry, &path, HTTP_ROUTE_FIELDS);
    let name = match entry.get("name") {
        Some(node) => ident(out.str(node, &format!("{path}.name"))?, node.span),
        None => ident(format!("{}-{index}", r.name.name), entry.span),
    };
    let drop_note = "the whole rule is dropped (requests it would match fall through to the \
                     following rules)";
    let mut keep = true;
    for field in ["directResponse", "delegate"] {
        if let Some(value) = entry.get(field) {
            out.unsupported(&format!("{path}.{field}"), value, drop_note);
            keep = false;
        }
    }
    if let Some(value) = entry.get("corsPolicy") {
        out.unsupported(
            &format!("{path}.corsPolicy"),
            value,
            "ignored (the rule is kept)",
        );
    }
    for field in ["mirrorPercent", "mirror_percent"] {
        if let Some(value) = entry.get(field) {
            out.deprecated(
                &format!("{path}.{field}"),
                value.span,
                "`mirrorPercentage: {value: N}`",
            );
        }
    }
    let mut matches = Vec::new();
    if let Some(list) = entry.get("match") {
        for (i, m) in out
            .seq(list, &format!("{path}.match"))
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            match request_match(out, m, &format!("{path}.match[{i}]"), drop_note) {
                Some(m) => matches.push(m),
                None => keep = false,
            }
        }
    }
    let mut rule = ast::Rule {
        keyword: Span::new(entry.span.start, entry.span.start),
        name,
        matches,
        ..ast::Rule::default()
    };
    let redirect = entry.get("redirect");
    match (entry.get("route"), redirect) {
        (Some(route), Some(_)) => {
            out.schema(
                route.span,
                format!("`{path}`: a rule cannot have both `route` and `redirect`"),
            );
            keep = false;
        }
        (None, Some(node)) => match http_redirect(out, node, &format!("{path}.redirect")) {
            Some(redirect) => rule.redirect = Some(redirect),
            None => keep = false,
        },
        (None, None) if keep => {
            out.schema(entry.span, format!("`{path}.route`: required value"));
            keep = false;
        }
        (None, None) => {}
        (Some(list), None) => {
            let route_path = format!("{path}.route");
            for (i, d) in out
                .seq(list, &route_path)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                match destination(out, r, d, &format!("{route_path}[{i}]"), resolver) {
                    Ok(Some(d)) => rule.destinations.push(d),
                    Ok(None) => {}
                    Err(()) => keep = false,
                }
            }
            if rule.destinations.is_empty() && keep {
                out.inexpressible(
                    list.span,
                    format!("`{route_path}` has no destination left, rule dropped"),
                    "",
                );
                keep = false;
            }
        }
    }
    if let Some(node) = entry.get("timeout") {
        rule.timeout = out.duration(node, &format!("{path}.timeout"));
    }
    if let Some(node) = entry.get("retries") {
        rule.retries = retries(out, node, &format!("{path}.retries"));
    }
    if let Some(node) = entry.get("fault") {
        rule.fault = fault(out, node, &format!("{path}.fault"));
    }
    if let Some(node) = entry.get("rewrite") {
        rule.rewrite = rewrite(out, node, &format!("{path}.rewrite"));
    }
    if let Some(node) = entry.get("headers") {
        let headers_path = format!("{path}.headers");
        if out.map(node, &headers_path).is_some() {
            out.check_fields(node, &headers_path, &["request", "response"]);
            if let Some(edits) = node.get("request") {
                rule.request_headers = header_edits(out, edits, &format!("{headers_path}.request"));
            }
            if let Some(edits) = node.get("response") {
                rule.response_headers =
                    header_edits(out, edits, &format!("{headers_path}.response"));
            }
        }
    }
    rule.mirror = mirror(out, r, entry, &path, resolver);
    keep.then_some(rule)
}

/// `redirect`: `uri`, `authority`, `port`, `scheme`, `redirectCode`.
fn http_redirect(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ast::Redirect> {
    out.map(node, path)?;
    out.fields(
        node,
        path,
        &["uri", "authority", "port", "scheme", "redirectCode"],
        &["derivePort"],
        "ignored (the redirect keeps the request's port unless `port` is set)",
    );
    let mut redirect = ast::Redirect {
        span: node.span,
        ..ast::Redirect::default()
    };
    let field = |name: &str| node.get(name);
    if let Some(n) = field("uri") {
        redirect.path = Some(out.ast_str(n, &format!("{path}.uri"))?);
    }
    if let Some(n) = field("authority") {
        redirect.authority = Some(out.ast_str(n, &format!("{path}.authority"))?);
    }
    if let Some(n) = field("scheme") {
        redirect.scheme = Some(out.ast_str(n, &format!("{path}.scheme"))?);
    }
    if let Some(n) = field("port") {
        let port = out.int(n, &format!("{path}.port"), 1, 65535)?;
        redirect.port = Some(number(port, n.span));
    }
    if let Some(n) = field("redirectCode") {
        let code = out.int(n, &format!("{path}.redirectCode"), 300, 399)?;
        redirect.code = Some(number(code, n.span));
    }
    Some(redirect)
}

fn number(value: i64, span: Span) -> ast::Number {
    ast::Number {
        value: u64::try_from(value).unwrap_or(0),
        span,
    }
}

/// Retry conditions the snapshot models, as Istio (Envoy) spells them.
const RETRY_ON_MODELED: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "connect-failure",
    "retriable-status-codes",
];
/// Other conditions Istio accepts (Envoy HTTP and gRPC names): warned about and left out.
const RETRY_ON_OTHER: &[&str] = &[
    "retriable-4xx",
    "refused-stream",
    "retriable-headers",
    "envoy-ratelimited",
    "reset-before-request",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// `retries`: `attempts`, `perTryTimeout`, `retryOn`.
fn retries(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ast::Retries> {
    out.map(node, path)?;
    out.fields(
        node,
        path,
        &["attempts", "perTryTimeout", "retryOn"],
        &[
            "retryRemoteLocalities",
            "retryIgnorePreviousHosts",
            "backoff",
        ],
        "ignored",
    );
    let mut retries = ast::Retries {
        span: node.span,
        ..ast::Retries::default()
    };
    if let Some(n) = node.get("attempts") {
        let attempts = out.int(n, &format!("{path}.attempts"), 0, i64::from(i32::MAX))?;
        retries.attempts = Some(number(attempts, n.span));
    }
    if let Some(n) = node.get("perTryTimeout") {
        retries.per_try_timeout = Some(out.duration(n, &format!("{path}.perTryTimeout"))?);
    }
    if let Some(n) = node.get("retryOn") {
        let list = out.str(n, &format!("{path}.retryOn"))?;
        let mut ignored = Vec::new();
        for condition in list.split(',').map(str::trim) {
            let status = condition
                .parse::<u16>()
                .is_ok_and(|c| (100..=599).contains(&c));
            if status || RETRY_ON_MODELED.contains(&condition) {
                // The span of the whole string: conditions have no position of their own.
                retries.retry_on.push(ast::Str {
                    value: condition.to_owned(),
                    span: n.span,
                });
            } else if RETRY_ON_OTHER.contains(&condition) {
                ignored.push(condition);
            } else {
                out.schema(
                    n.span,
                    format!("`{path}.retryOn`: {condition:?} is not a valid retryOn policy"),
                );
                return None;
            }
        }
        if !ignored.is_empty() {
            out.unsupported(
                &format!("{path}.retryOn: {}", ignored.join(", ")),
                n,
                "these conditions are ignored (meshd retries on 5xx, gateway-error, reset, \
                 connect-failure, retriable-status-codes and status codes)",
            );
        }
    }
    Some(retries)
}

/// `fault`: `delay` (`fixedDelay`) and `abort` (`httpStatus`), each with a `percentage`.
fn fault(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ast::Fault> {
    out.map(node, path)?;
    out.check_fields(node, path, &["delay", "abort"]);
    let mut fault = ast::Fault {
        span: node.span,
        ..ast::Fault::default()
    };
    if let Some(delay) = node.get("delay") {
        let delay_path = format!("{path}.delay");
        out.map(delay, &delay_path)?;
        out.fields(
            delay,
            &delay_path,
            &["fixedDelay", "percentage", "percent"],
            &["exponentialDelay"],
            "the delay is left out",
        );
        if let Some(percent) = delay.get("percent") {
            out.deprecated(
                &format!("{delay_path}.percent"),
                percent.span,
                "`percentage: {value: N}`",
            );
        }
        if let Some(fixed) = delay.get("fixedDelay") {
            let duration = out.duration(fixed, &format!("{delay_path}.fixedDelay"))?;
            let share = share(out, delay, &delay_path, true)?;
            fault.delay = Some((duration, share));
        } else if delay.get("exponentialDelay").is_none() {
            out.schema(
                delay.span,
                format!("`{delay_path}.fixedDelay`: required value"),
            );
            return None;
        }
    }
    if let Some(abort) = node.get("abort") {
        let abort_path = format!("{path}.abort");
        out.map(abort, &abort_path)?;
        out.fields(
            abort,
            &abort_path,
            &["httpStatus", "percentage"],
            &["grpcStatus", "http2Error"],
            "the abort is left out",
        );
        if let Some(status) = abort.get("httpStatus") {
            let code = out.int(status, &format!("{abort_path}.httpStatus"), 200, 599)?;
            let share = share(out, abort, &abort_path, false)?;
            fault.abort = Some((number(code, status.span), share));
        } else if ["grpcStatus", "http2Error"]
            .iter()
            .all(|f| abort.get(f).is_none())
        {
            out.schema(
                abort.span,
                format!("`{abort_path}.httpStatus`: required value"),
            );
            return None;
        }
    }
    (fault.delay.is_some() || fault.abort.is_some()).then_some(fault)
}

/// The `percentage.value` (or, for a delay, the legacy integer `percent`) of a fault;
/// `Some(None)` = 100%.
fn share(out: &mut Out<'_>, node: &Node, path: &str, legacy: bool) -> Option<Option<ast::Percent>> {
    if let Some(percentage) = node.get("percentage") {
        let p = format!("{path}.percentage");
        out.map(percentage, &p)?;
        out.check_fields(percentage, &p, &["value"]);
        return match percentage.get("value") {
            Some(value) => out.percent(value, &format!("{p}.value")).map(Some),
            // An empty percentage is 0%.
            None => Some(Some(ast::Percent {
                per_million: 0,
                span: percentage.span,
            })),
        };
    }
    if let Some(percent) = node.get("percent").filter(|_| legacy) {
        let value = out.int(percent, &format!("{path}.percent"), 0, 100)?;
        return Some(Some(ast::Percent {
            per_million: u64::try_from(value).unwrap_or(0) * 10_000,
            span: percent.span,
        }));
    }
    Some(None)
}

/// `rewrite`: `uri` (replaces the matched prefix), `uriRegexRewrite`, `authority`.
fn rewrite(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ast::Rewrite> {
    out.map(node, path)?;
    out.check_fields(node, path, &["uri", "uriRegexRewrite", "authority"]);
    let mut rewrite = ast::Rewrite {
        span: node.span,
        ..ast::Rewrite::default()
    };
    if let (Some(uri), Some(_)) = (node.get("uri"), node.get("uriRegexRewrite")) {
        out.schema(
            uri.span,
            format!("`{path}`: only one of `uri` and `uriRegexRewrite` can be set"),
        );
        return None;
    }
    if let Some(uri) = node.get("uri") {
        rewrite.prefix = Some(out.ast_str(uri, &format!("{path}.uri"))?);
    }
    if let Some(regex) = node.get("uriRegexRewrite") {
        let p = format!("{path}.uriRegexRewrite");
        out.map(regex, &p)?;
        out.check_fields(regex, &p, &["match", "rewrite"]);
        let pattern = regex
            .get("match")
            .and_then(|n| out.ast_str(n, &format!("{p}.match")));
        let with = regex
            .get("rewrite")
            .and_then(|n| out.ast_str(n, &format!("{p}.rewrite")));
        match (pattern, with) {
            (Some(pattern), Some(with)) => rewrite.regex = Some((pattern, with)),
            _ => {
                out.schema(
                    regex.span,
                    format!("`{p}` needs both `match` and `rewrite`"),
                );
                return None;
            }
        }
    }
    if let Some(authority) = node.get("authority") {
        rewrite.authority = Some(out.ast_str(authority, &format!("{path}.authority"))?);
    }
    Some(rewrite)
}

/// `headers.request` / `headers.response`: `set`, `add`, `remove`.
fn header_edits(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ast::HeaderEdits> {
    out.map(node, path)?;
    out.check_fields(node, path, &["set", "add", "remove"]);
    let mut edits = ast::HeaderEdits {
        span: node.span,
        ..ast::HeaderEdits::default()
    };
    for (field, into) in [("set", &mut edits.set), ("add", &mut edits.add)] {
        let Some(map) = node.get(field) else { continue };
        for label in out.labels(map, &format!("{path}.{field}")) {
            into.push((
                ast::Str {
                    value: label.key.name,
                    span: label.key.span,
                },
                label.value,
            ));
        }
    }
    if let Some(remove) = node.get("remove") {
        edits.remove = out.strings(remove, &format!("{path}.remove"));
    }
    Some(edits)
}

/// `mirror` + `mirrorPercentage` (or legacy `mirrorPercent`), or the first of `mirrors[]`.
/// A mirror to an undeclared host is left out with W0203 (the rule is kept).
fn mirror(
    out: &mut Out<'_>,
    r: &Resource<'_>,
    entry: &Node,
    path: &str,
    resolver: &Resolver,
) -> Option<ast::Mirror> {
    let (destination, dest_path, percent) = if let Some(node) = entry.get("mirror") {
        if let Some(list) = entry.get("mirrors") {
            out.schema(
                list.span,
                format!("`{path}`: only one of `mirror` and `mirrors` can be set"),
            );
            return None;
        }
        let percent = match (
            entry.get("mirrorPercentage"),
            entry
                .get("mirrorPercent")
                .or_else(|| entry.get("mirror_percent")),
        ) {
            (Some(p), _) => {
                let pp = format!("{path}.mirrorPercentage");
                out.map(p, &pp)?;
                out.check_fields(p, &pp, &["value"]);
                match p.get("value") {
                    Some(v) => Some(out.percent(v, &format!("{pp}.value"))?),
                    None => Some(ast::Percent {
                        per_million: 0,
                        span: p.span,
                    }),
                }
            }
            (None, Some(p)) => {
                let value = out.int(p, &format!("{path}.mirrorPercent"), 0, 100)?;
                Some(ast::Percent {
                    per_million: u64::try_from(value).unwrap_or(0) * 10_000,
                    span: p.span,
                })
            }
            (None, None) => None,
        };
        (node, format!("{path}.mirror"), percent)
    } else if let Some(list) = entry.get("mirrors") {
        let items = out.seq(list, &format!("{path}.mirrors"))?;
        if let Some(extra) = items.get(1) {
            out.unsupported(
                &format!("{path}.mirrors[1..]"),
                extra,
                "only the first mirror is kept (a rule mirrors to one destination)",
            );
        }
        let first = items.first()?;
        let first_path = format!("{path}.mirrors[0]");
        out.map(first, &first_path)?;
        out.check_fields(first, &first_path, &["destination", "percentage"]);
        let percent = match first.get("percentage") {
            Some(p) => {
                let pp = format!("{first_path}.percentage");
                out.map(p, &pp)?;
                out.check_fields(p, &pp, &["value"]);
                match p.get("value") {
                    Some(v) => Some(out.percent(v, &format!("{pp}.value"))?),
                    None => Some(ast::Percent {
                        per_million: 0,
                        span: p.span,
                    }),
                }
            }
            None => None,
        };
        let Some(destination) = first.get("destination") else {
            out.schema(
                first.span,
                format!("`{first_path}.destination`: required value"),
            );
            return None;
        };
        (destination, format!("{first_path}.destination"), percent)
    } else {
        for field in ["mirrorPercentage", "mirrorPercent", "mirror_percent"] {
            if let Some(node) = entry.get(field) {
                out.inexpressible(
                    node.span,
                    format!("`{path}.{field}` without `mirror` has no effect, ignored"),
                    "",
                );
            }
        }
        return None;
    };
    out.map(destination, &dest_path)?;
    out.fields(
        destination,
        &dest_path,
        &["host", "subset"],
        &["port"],
        "ignored (the mirror uses the service's port)",
    );
    let Some(host_node) = destination.get("host") else {
        out.schema(
            destination.span,
            format!("`{dest_path}.host`: required value"),
        );
        return None;
    };
    let host = out.str(host_node, &format!("{dest_path}.host"))?;
    let Some((service, _)) = resolver.resolve(host, &r.namespace) else {
        out.inexpressible(
            host_node.span,
            format!("mirror host `{host}` is not a declared service; the mirror is left out"),
            "declare it with a ServiceEntry or in a .mesh file",
        );
        return None;
    };
    require_port(out, resolver, service, destination, &dest_path);
    let subset = match destination.get("subset") {
        None => None,
        Some(node) => Some(ident(
            out.str(node, &format!("{dest_path}.subset"))?,
            node.span,
        )),
    };
    Some(ast::Mirror {
        span: destination.span,
        service: ident(service.clone(), host_node.span),
        subset,
        percent,
    })
}

/// One `match[]` entry, or `None` when it uses a condition the model lacks (rule dropped).
fn request_match(out: &mut Out<'_>, m: &Node, path: &str, drop_note: &str) -> Option<ast::Match> {
    out.map(m, path)?;
    out.check_fields(m, path, MATCH_FIELDS);
    let mut conditions = Vec::new();
    let mut supported = true;
    for (key, value) in m.entries().unwrap_or_default() {
        let field = super::plain(key);
        match field.as_str() {
            "name" => {}
            "statPrefix" => out.unsupported(&format!("{path}.statPrefix"), value, "ignored"),
            "uri" => match string_match(value) {
                Some(StringMatch::Exact(value_str)) => {
                    conditions.push(ast::Condition::PathExact {
                        value: value_str,
                        span: value.span,
                    });
                }
                Some(StringMatch::Prefix(value_str)) => {
                    conditions.push(ast::Condition::PathPrefix {
                        value: value_str,
                        span: value.span,
                    });
                }
                Some(StringMatch::Regex(value_str)) => {
                    conditions.push(ast::Condition::PathRegex {
                        value: value_str,
                        span: value.span,
                    });
                }
                _ => {
                    out.unsupported(&format!("{path}.uri"), value, drop_note);
                    supported = false;
                }
            },
            "method" => match string_match(value).and_then(StringMatch::value) {
                Some(condition) => conditions.push(ast::Condition::Method {
                    value: condition,
                    span: value.span,
                }),
                None => {
                    out.unsupported(&format!("{path}.method"), value, drop_note);
                    supported = false;
                }
            },
            "headers" | "queryParams" | "withoutHeaders" => {
                for (name, matcher) in out
                    .map(value, &format!("{path}.{field}"))
                    .unwrap_or_default()
                {
                    let name_str = ast::Str {
                        value: super::plain(name),
                        span: name.span,
                    };
                    let found = string_match(matcher);
                    let condition = match (field.as_str(), found) {
                        ("headers", Some(StringMatch::Present)) => {
                            Some(ast::ValueCondition::Present(matcher.span))
                        }
                        ("withoutHeaders", Some(StringMatch::Present)) => {
                            Some(ast::ValueCondition::Absent(matcher.span))
                        }
                        ("withoutHeaders", _) => None,
                        (_, found) => found.and_then(StringMatch::value),
                    };
                    let Some(condition) = condition else {
                        let item_path = format!("{path}.{field}.{}", name_str.value);
                        out.unsupported(&item_path, matcher, drop_note);
                        supported = false;
                        continue;
                    };
                    conditions.push(if field == "queryParams" {
                        ast::Condition::Query {
                            name: name_str,
                            value: condition,
                        }
                    } else {
                        ast::Condition::Header {
                            name: name_str,
                            value: condition,
                        }
                    });
                }
            }
            _ => {
                out.unsupported(&format!("{path}.{field}"), value, drop_note);
                supported = false;
            }
        }
    }
    supported.then_some(ast::Match { conditions })
}

/// An Istio `StringMatch`: one of `exact`, `prefix`, `regex` with a string, or `{}`.
enum StringMatch {
    Exact(ast::Str),
    Prefix(ast::Str),
    Regex(ast::Str),
    /// `{}`: the header is present (with any value).
    Present,
}

impl StringMatch {
    /// The value condition of an `exact`, `prefix` or `regex` match.
    fn value(self) -> Option<ast::ValueCondition> {
        match self {
            Self::Exact(s) => Some(ast::ValueCondition::Exact(s)),
            Self::Prefix(s) => Some(ast::ValueCondition::Prefix(s)),
            Self::Regex(s) => Some(ast::ValueCondition::Regex(s)),
            Self::Present => None,
        }
    }
}

/// An Istio `StringMatch` with at most one string-valued field.
fn string_match(node: &Node) -> Option<StringMatch> {
    let entries = node.entries()?;
    let [(key, value)] = entries else {
        return entries.is_empty().then_some(StringMatch::Present);
    };
    let text = ast::Str {
        value: value.as_str()?.to_owned(),
        span: value.span,
    };
    match key.as_str()? {
        "exact" => Some(StringMatch::Exact(text)),
        "prefix" => Some(StringMatch::Prefix(text)),
        "regex" => Some(StringMatch::Regex(text)),
        _ => None,
    }
}

/// One `route[]` destination: `Ok(None)` when it is left out without changing the traffic
/// (weight 0), `Err` when the rule must be dropped.
fn destination(
    out: &mut Out<'_>,
    r: &Resource<'_>,
    d: &Node,
    path: &str,
    resolver: &Resolver,
) -> Result<Option<ast::Destination>, ()> {
    out.map(d, path).ok_or(())?;
    out.check_fields(d, path, &["destination", "weight", "headers"]);
    if let Some(headers) = d.get("headers") {
        out.unsupported(
            &format!("{path}.headers"),
            headers,
            "ignored (the rule is kept)",
        );
    }
    let Some(dest) = d.get("destination") else {
        out.schema(d.span, format!("`{path}.destination`: required value"));
        return Err(());
    };
    out.map(dest, &format!("{path}.destination")).ok_or(())?;
    out.check_fields(
        dest,
        &format!("{path}.destination"),
        &["host", "subset", "port"],
    );
    if let Some(port) = dest.get("port") {
        out.unsupported(
            &format!("{path}.destination.port"),
            port,
            "ignored (the rule is kept)",
        );
    }
    let weight = match d.get("weight") {
        None => None,
        Some(node) => {
            let w = out.int(node, &format!("{path}.weight"), 0, 100).ok_or(())?;
            if w == 0 {
                out.inexpressible(
                    node.span,
                    format!("`{path}` has weight 0 and receives no traffic, left out"),
                    "",
                );
                return Ok(None);
            }
            Some(ast::Number {
                value: w as u64,
                span: node.span,
            })
        }
    };
    let Some(host_node) = dest.get("host") else {
        out.schema(
            dest.span,
            format!("`{path}.destination.host`: required value"),
        );
        return Err(());
    };
    let host = out
        .str(host_node, &format!("{path}.destination.host"))
        .ok_or(())?;
    let Some((service, _)) = resolver.resolve(host, &r.namespace) else {
        out.inexpressible(
            host_node.span,
            format!(
                "destination host `{host}` is not a declared service; the whole rule is dropped"
            ),
            "declare it with a ServiceEntry or in a .mesh file",
        );
        return Err(());
    };
    require_port(out, resolver, service, dest, &format!("{path}.destination"));
    let subset = match dest.get("subset") {
        None => None,
        Some(node) => Some(ident(
            out.str(node, &format!("{path}.destination.subset"))
                .ok_or(())?,
            node.span,
        )),
    };
    Ok(Some(ast::Destination {
        service: ident(service.clone(), host_node.span),
        subset,
        weight,
        span: d.span,
    }))
}
