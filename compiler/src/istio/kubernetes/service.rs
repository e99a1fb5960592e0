//! `v1 Service`: a service named by its cluster FQDN, its ports and its selector.

use super::fields::{SERVICE_PORT, SERVICE_SPEC_READ};
use super::{protocol, Resource};
use crate::ast;
use crate::diag::{FileId, Span};
use crate::istio::yaml::{Node, Value};
use crate::istio::Out;

/// `ServiceSpec` fields the import does not model, with the value that changes nothing (no
/// warning then).
const SETTINGS: &[(&str, Option<&str>)] = &[
    ("type", Some("ClusterIP")),
    ("sessionAffinity", Some("None")),
    ("internalTrafficPolicy", Some("Cluster")),
    ("externalTrafficPolicy", Some("Cluster")),
    ("publishNotReadyAddresses", Some("false")),
    ("externalIPs", None),
    ("externalName", None),
    ("sessionAffinityConfig", None),
    ("loadBalancerIP", None),
    ("loadBalancerSourceRanges", None),
    ("loadBalancerClass", None),
    ("allocateLoadBalancerNodePorts", None),
    ("healthCheckNodePort", None),
    ("trafficDistribution", None),
];

/// Where a Service port's traffic goes on a Pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Target {
    Number(u64),
    /// A container port name, resolved per Pod.
    Name(String),
}

/// One Service port the snapshot can hold.
#[derive(Clone, Debug)]
pub(super) struct ServicePort {
    pub(super) port: ast::Port,
    /// `name`, empty when unnamed (as EndpointSlice ports are matched).
    pub(super) name: String,
    pub(super) target: Target,
    /// `targetPort`, else `port`: where findings about the target point.
    pub(super) target_span: Span,
}

/// A Service as read.
#[derive(Debug)]
pub(super) struct Service {
    pub(super) file: FileId,
    pub(super) name: ast::Ident,
    pub(super) namespace: String,
    /// Empty: the Service selects no Pods (its endpoints are managed by hand, if any).
    pub(super) selector: Vec<ast::Label>,
    pub(super) ports: Vec<ServicePort>,
    /// `clusterIPs` (else `clusterIP`): the virtual addresses the Service is called at; none
    /// for a headless Service.
    pub(super) cluster_ips: Vec<ast::Address>,
}

impl Service {
    /// `<name>.<namespace>.svc.cluster.local`.
    pub(super) fn fqdn(&self) -> String {
        spec::host::qualify(&self.name.name, &self.namespace)
    }
}

pub(super) fn service(out: &mut Out<'_>, r: &Resource<'_>) -> Option<Service> {
    let Some(spec) = r.document.get("spec") else {
        out.schema(r.kind_span, "`spec`: required value".to_owned());
        return None;
    };
    out.map(spec, "spec")?;
    let known: Vec<&str> = SERVICE_SPEC_READ
        .iter()
        .copied()
        .chain(SETTINGS.iter().map(|(field, _)| *field))
        .collect();
    out.check_fields(spec, "spec", &known);
    settings(out, spec);
    let selector = match spec.get("selector") {
        Some(node) => out.labels(node, "spec.selector"),
        None => Vec::new(),
    };
    let items = spec
        .get("ports")
        .and_then(|p| out.seq(p, "spec.ports"))
        .unwrap_or_default();
    let mut ports = Vec::new();
    let mut second = None;
    for (i, node) in items.iter().enumerate() {
        if let Some(port) = service_port(out, node, &format!("spec.ports[{i}]")) {
            if ports.len() == 1 {
                second = Some(node);
            }
            ports.push(port);
        }
    }
    if let Some(node) = second {
        out.unsupported(
            "spec.ports[1..]",
            node,
            "endpoints get the first port's address only (the snapshot holds one socket \
             address per endpoint)",
        );
    }
    Some(Service {
        file: r.file,
        name: r.name.clone(),
        namespace: r.namespace.clone(),
        selector,
        ports,
        cluster_ips: cluster_ips(out, spec),
    })
}

/// The Service's virtual addresses: `clusterIPs`, else `clusterIP`; `None` (headless) and an
/// empty value (not allocated yet) give none.
fn cluster_ips(out: &mut Out<'_>, spec: &Node) -> Vec<ast::Address> {
    let nodes = match (spec.get("clusterIPs"), spec.get("clusterIP")) {
        (Some(list), _) => out
            .seq(list, "spec.clusterIPs")
            .unwrap_or_default()
            .iter()
            .collect(),
        (None, Some(one)) => vec![one],
        (None, None) => Vec::new(),
    };
    let path = if spec.get("clusterIPs").is_some() {
        "spec.clusterIPs[]"
    } else {
        "spec.clusterIP"
    };
    nodes
        .into_iter()
        .filter_map(|node| {
            let ip = out.str(node, path)?;
            (!ip.is_empty() && ip != "None").then(|| ast::Address {
                text: ip.to_owned(),
                span: node.span,
            })
        })
        .collect()
}

/// W0200 for every setting that is there and not its harmless default.
fn settings(out: &mut Out<'_>, spec: &Node) {
    for (field, default) in SETTINGS {
        let Some(node) = spec.get(field) else {
            continue;
        };
        let harmless = match (*field, default) {
            (_, Some(default)) => text(node) == *default,
            _ => false,
        };
        if harmless {
            continue;
        }
        out.unsupported(&format!("spec.{field}"), node, "ignored");
    }
}

/// A scalar as written (strings unquoted), to compare with a default.
fn text(node: &Node) -> String {
    match &node.value {
        Value::Str(s) => s.clone(),
        _ => node.display(),
    }
}

/// One `spec.ports[]` entry; `None` when the snapshot cannot hold it (reported).
fn service_port(out: &mut Out<'_>, node: &Node, path: &str) -> Option<ServicePort> {
    out.map(node, path)?;
    out.check_fields(node, path, SERVICE_PORT);
    if let Some(node_port) = node.get("nodePort") {
        out.unsupported(&format!("{path}.nodePort"), node_port, "ignored");
    }
    let Some(number_node) = node.get("port") else {
        out.schema(node.span, format!("`{path}.port`: required value"));
        return None;
    };
    let number = out.int(number_node, &format!("{path}.port"), 1, 65535)? as u64;
    if !transport_is_tcp(out, node, path, number)? {
        return None;
    }
    let name = match node.get("name") {
        Some(n) => out.str(n, &format!("{path}.name"))?.to_owned(),
        None => String::new(),
    };
    let (target, target_span) = match node.get("targetPort") {
        None => (Target::Number(number), number_node.span),
        Some(t) => (target(out, t, &format!("{path}.targetPort"))?, t.span),
    };
    let protocol = protocol::of_port(out, node, path);
    let protocol_span = node
        .get("appProtocol")
        .or_else(|| node.get("name"))
        .map_or(number_node.span, |n| n.span);
    Some(ServicePort {
        port: ast::Port {
            number: ast::Number {
                value: number,
                span: number_node.span,
            },
            protocol: ast::Protocol {
                value: protocol,
                span: protocol_span,
            },
        },
        name,
        target,
        target_span,
    })
}

/// Whether the port's transport `protocol` is TCP (the default); UDP and SCTP ports are left
/// out with W0203, any other value is E0201 (`None`).
fn transport_is_tcp(out: &mut Out<'_>, node: &Node, path: &str, number: u64) -> Option<bool> {
    let Some(protocol) = node.get("protocol") else {
        return Some(true);
    };
    match out.str(protocol, &format!("{path}.protocol"))? {
        "TCP" => Some(true),
        transport @ ("UDP" | "SCTP") => {
            out.inexpressible(
                protocol.span,
                format!("port {number} is {transport}; the mesh proxies TCP only, port left out"),
                "the snapshot holds TCP ports (http, http2, grpc, tcp)",
            );
            Some(false)
        }
        other => {
            out.schema(
                protocol.span,
                format!(
                    "`{path}.protocol`: unsupported value {other:?}, expected TCP, UDP or SCTP"
                ),
            );
            None
        }
    }
}

/// `targetPort`: a port number, or the name of a container port.
fn target(out: &mut Out<'_>, node: &Node, path: &str) -> Option<Target> {
    if let Some(name) = node.as_str() {
        if name.is_empty() {
            out.schema(node.span, format!("`{path}` must not be empty"));
            return None;
        }
        return Some(Target::Name(name.to_owned()));
    }
    out.int(node, path, 1, 65535)
        .map(|n| Target::Number(n as u64))
}
