//! ServiceEntry: a service, its ports and its endpoints (listed, or WorkloadEntries selected).

use std::collections::HashMap;
use std::net::IpAddr;

use super::workload_entry::{check_endpoint, WorkloadEntry};
use super::{ident, selection, Imported};
use crate::ast;
use crate::diag::{Code, FileId, Span};
use crate::istio::yaml::Node;
use crate::istio::{selects, Out, Resource};

/// A service port as written, for endpoint port lookup.
pub(super) struct PortSpec {
    name: Option<String>,
    /// `targetPort`, else `number`.
    target: i64,
}

/// W0182 (Istio IST0134): a ServiceEntry without `addresses` with a port whose protocol is TCP
/// or not set. Istio then listens for the port on every address, so it cannot tell this
/// service's connections from other traffic to the same port.
pub(super) fn addresses_required(out: &mut Out<'_>, r: &Resource<'_>) {
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
pub(super) type DeclaredPort = (String, String);

/// W0184 (Istio IST0177): a ServiceEntry declares a host and port another ServiceEntry already
/// declared with another protocol. Ports without a protocol are not compared (Istio detects it).
pub(super) fn conflicting_protocols(
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

pub(super) const RESOLUTIONS: &[&str] =
    &["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"];

pub(super) fn service_entry(
    out: &mut Out<'_>,
    r: &Resource<'_>,
    workload_entries: &mut [WorkloadEntry<'_>],
    pods: &[(FileId, ast::Workload)],
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
    for field in ["exportTo", "subjectAltNames"] {
        if let Some(value) = spec.get(field) {
            out.unsupported(&format!("spec.{field}"), value, "ignored");
        }
    }
    if let Some(location) = spec.get("location") {
        // Inside the mesh is what the import models; outside is not told apart yet.
        match out.str(location, "spec.location") {
            Some("MESH_INTERNAL") | None => {}
            Some("MESH_EXTERNAL") => out.unsupported(
                "spec.location: MESH_EXTERNAL",
                location,
                "the service is treated as inside the mesh",
            ),
            Some(other) => out.schema(
                location.span,
                format!(
                    "`spec.location`: unsupported value {other:?}, expected MESH_EXTERNAL or \
                     MESH_INTERNAL"
                ),
            ),
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
    let mut addresses = Vec::new();
    if let Some(list) = spec.get("addresses") {
        for (i, node) in out
            .seq(list, "spec.addresses")
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            // Istio's own validation accepts what YAML reads as another type here.
            let Some(address) = node.as_str() else {
                let path = format!("spec.addresses[{i}]");
                out.unsupported(&path, node, "ignored: not an address");
                continue;
            };
            if address.contains('/') && !matches!(resolution, "NONE" | "STATIC") {
                out.schema(
                    node.span,
                    "CIDR addresses are allowed only for NONE/STATIC resolution".to_owned(),
                );
            }
            addresses.push(ast::Address {
                text: address.to_owned(),
                span: node.span,
            });
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
        selection::entry_selecting_pods(out, r, selector.span, &selector_labels, pods);
    }
    let first_port = port_specs.first();
    let mut endpoints = Vec::new();
    // The WorkloadEntries selected: they serve the hosts this ServiceEntry ends up declaring.
    let mut selected = Vec::new();
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
        for (index, entry) in workload_entries.iter().enumerate() {
            // An empty selector selects every WorkloadEntry in the namespace.
            let matches = entry.namespace == r.namespace
                && (selector_labels.is_empty() || selects(&selector_labels, &entry.labels));
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
            selected.push(index);
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
    let mut declared = Vec::new();
    for (host, span) in hosts {
        let this = format!("{}/{}", r.namespace, r.name.name);
        if let Some(first) = services.iter_mut().find(|s| s.service.name.name == host) {
            let merged = merge(
                out,
                first,
                (&host, span),
                (&this, &r.namespace),
                (&ports, &endpoints),
            );
            if merged {
                for address in &addresses {
                    if !first
                        .service
                        .addresses
                        .iter()
                        .any(|a| a.text == address.text)
                    {
                        first.service.addresses.push(address.clone());
                    }
                }
                declared.push((host, span));
            }
            continue;
        }
        declared.push((host.clone(), span));
        services.push(Imported {
            file: r.file,
            declared_by: format!("ServiceEntry `{this}`"),
            kubernetes: false,
            service: ast::Service {
                policies: Vec::new(),
                keyword: span,
                name: ident(host, span),
                namespaces: vec![namespace.clone()],
                ports: ports.clone(),
                endpoints: endpoints.clone(),
                addresses: addresses.clone(),
                subsets: Vec::new(),
                close: span,
                origin: ast::Origin::Istio,
            },
        });
    }
    // A host refused above is another declaration's: its servers are not this one's.
    let served: Vec<(&ast::Port, &PortSpec)> = ports.iter().zip(&port_specs).collect();
    for index in selected.into_iter().filter(|_| !declared.is_empty()) {
        workload_entries[index].serve(&declared, &served);
    }
}

pub(super) fn protocol(
    out: &mut Out<'_>,
    port: &Node,
    path: &str,
    name: Option<&str>,
) -> spec::Protocol {
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

pub(super) struct EndpointSource<'a, 'n> {
    path: &'a str,
    address: Option<&'n Node>,
    ports: Option<&'n Node>,
    weight: Option<&'n Node>,
    labels: Vec<ast::Label>,
    at: Span,
}

/// An endpoint with an IP address; anything else is skipped with a warning.
pub(super) fn endpoint(
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
    let number = endpoint_port(source.ports, port);
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
        file: Some(out.file),
        address: ast::Address {
            text,
            span: address_node.span,
        },
        labels: source.labels.clone(),
        weight,
    })
}

/// The port of an endpoint for a ServiceEntry `port`: the endpoint's `ports` entry of that
/// port's name, else the port's `targetPort`, else its number.
pub(super) fn endpoint_port(endpoint_ports: Option<&Node>, port: &PortSpec) -> i64 {
    let named = endpoint_ports.zip(port.name.as_deref());
    named
        .and_then(|(ports, name)| ports.get(name).and_then(Node::as_int))
        .unwrap_or(port.target)
}

/// A second ServiceEntry for a host: Istio merges the endpoints of ServiceEntries that agree on
/// the host's namespace and ports; any other pair is refused, naming both. Whether it merged.
fn merge(
    out: &mut Out<'_>,
    first: &mut Imported,
    (host, span): (&str, Span),
    (this, namespace): (&str, &str),
    (ports, endpoints): (&[ast::Port], &[ast::Endpoint]),
) -> bool {
    let key = |p: &ast::Port| (p.number.value, p.protocol.value);
    let same_ports = first
        .service
        .ports
        .iter()
        .map(key)
        .eq(ports.iter().map(key));
    let same_namespace = first.service.namespaces.iter().any(|n| n.name == namespace);
    if same_ports && same_namespace && !first.kubernetes {
        first.service.endpoints.extend(endpoints.iter().cloned());
        return true;
    }
    let why = if first.kubernetes {
        "(a Kubernetes Service wins over a ServiceEntry for its host, as in Istio)"
    } else if same_ports {
        "in another namespace"
    } else {
        "with other ports"
    };
    out.inexpressible(
        span,
        format!(
            "host `{host}` of ServiceEntry `{this}` is already declared by {} {why}; this one \
             is skipped",
            first.declared_by
        ),
        "Istio merges ServiceEntries of one host only when their namespace and ports agree; \
         declare the host once, or give both the same ports",
    );
    false
}
