//! `discovery.k8s.io/v1 EndpointSlice` and `v1 Endpoints`: the ready addresses of a Service,
//! their ports by name, and the Pod each one is.

use std::collections::HashMap;
use std::net::IpAddr;

use super::fields::{
    CONDITIONS, ENDPOINT_ADDRESS, ENDPOINT_PORT, OBJECT_REFERENCE, SLICE_ENDPOINT, SUBSET,
};
use super::Resource;
use crate::diag::{FileId, Span};
use crate::istio::yaml::Node;
use crate::istio::Out;

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service in a namespace: `(namespace, name)`.
pub(super) type ServiceKey = (String, String);

/// One ready address of a Service.
#[derive(Debug)]
pub(super) struct Backend {
    pub(super) file: FileId,
    pub(super) ip: IpAddr,
    pub(super) ip_span: Span,
    /// `(namespace, name)` of the Pod its `targetRef` names.
    pub(super) pod: Option<(String, String)>,
    /// Port numbers by port name (empty for an unnamed port).
    pub(super) ports: Vec<(String, u64)>,
}

impl Backend {
    /// The number of the port named `name`.
    pub(super) fn port(&self, name: &str) -> Option<u64> {
        self.ports.iter().find(|(n, _)| n == name).map(|&(_, p)| p)
    }
}

/// The addresses found for each Service, by source. A key is present once the source exists
/// for the Service, even when none of its addresses is ready: the source still wins.
#[derive(Debug, Default)]
pub(super) struct Backends {
    pub(super) slices: HashMap<ServiceKey, Vec<Backend>>,
    pub(super) endpoints: HashMap<ServiceKey, Vec<Backend>>,
}

pub(super) fn slice(out: &mut Out<'_>, r: &Resource<'_>, backends: &mut Backends) {
    let document = r.document;
    let service = document
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .and_then(Node::as_str);
    let Some(service) = service else {
        out.inexpressible(
            r.name.span,
            format!(
                "EndpointSlice `{}/{}` has no label `{SERVICE_NAME_LABEL}`: it belongs to no \
                 Service, ignored",
                r.namespace, r.name.name
            ),
            "label the slice with the name of its Service",
        );
        return;
    };
    if !address_type_is_ip(out, r) {
        return;
    }
    let ports = ports(out, document.get("ports"), "ports");
    let list = backends
        .slices
        .entry((r.namespace.clone(), service.to_owned()))
        .or_default();
    let endpoints = document
        .get("endpoints")
        .and_then(|e| out.seq(e, "endpoints"))
        .unwrap_or_default();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let path = format!("endpoints[{i}]");
        if out.map(endpoint, &path).is_none() {
            continue;
        }
        out.check_fields(endpoint, &path, SLICE_ENDPOINT);
        if let Some(hints) = endpoint.get("hints") {
            out.unsupported(&format!("{path}.hints"), hints, "ignored");
        }
        if !ready(out, endpoint.get("conditions"), &path) {
            continue;
        }
        let pod = endpoint
            .get("targetRef")
            .and_then(|t| pod_ref(out, t, &format!("{path}.targetRef"), &r.namespace));
        let addresses = endpoint
            .get("addresses")
            .and_then(|a| out.seq(a, &format!("{path}.addresses")))
            .unwrap_or_default();
        for (j, address) in addresses.iter().enumerate() {
            if let Some(ip) = ip(out, address, &format!("{path}.addresses[{j}]")) {
                list.push(Backend {
                    file: r.file,
                    ip,
                    ip_span: address.span,
                    pod: pod.clone(),
                    ports: ports.clone(),
                });
            }
        }
    }
}

/// Whether the slice holds IP addresses; FQDN slices are W0203 (the snapshot holds socket
/// addresses), other values E0201.
fn address_type_is_ip(out: &mut Out<'_>, r: &Resource<'_>) -> bool {
    let Some(node) = r.document.get("addressType") else {
        out.schema(r.kind_span, "`addressType`: required value".to_owned());
        return false;
    };
    match out.str(node, "addressType") {
        Some("IPv4" | "IPv6") => true,
        Some("FQDN") => {
            out.inexpressible(
                node.span,
                "an EndpointSlice of DNS names: the snapshot holds socket addresses, slice \
                 ignored"
                    .to_owned(),
                "list the IP addresses instead",
            );
            false
        }
        Some(other) => {
            out.schema(
                node.span,
                format!("`addressType`: unsupported value {other:?}, expected IPv4, IPv6 or FQDN"),
            );
            false
        }
        None => false,
    }
}

/// Whether an endpoint may receive traffic: `conditions.ready` is not `false` (unknown counts
/// as ready, as Kubernetes says consumers should take it).
fn ready(out: &mut Out<'_>, conditions: Option<&Node>, path: &str) -> bool {
    let Some(conditions) = conditions else {
        return true;
    };
    let path = format!("{path}.conditions");
    if out.map(conditions, &path).is_none() {
        return true;
    }
    out.check_fields(conditions, &path, CONDITIONS);
    conditions.get("ready").map(|r| &r.value) != Some(&crate::istio::yaml::Value::Bool(false))
}

pub(super) fn endpoints(out: &mut Out<'_>, r: &Resource<'_>, backends: &mut Backends) {
    let list = backends
        .endpoints
        .entry((r.namespace.clone(), r.name.name.clone()))
        .or_default();
    let subsets = r
        .document
        .get("subsets")
        .and_then(|s| out.seq(s, "subsets"))
        .unwrap_or_default();
    for (i, subset) in subsets.iter().enumerate() {
        let path = format!("subsets[{i}]");
        if out.map(subset, &path).is_none() {
            continue;
        }
        out.check_fields(subset, &path, SUBSET);
        let ports = ports(out, subset.get("ports"), &format!("{path}.ports"));
        // `notReadyAddresses` receive no traffic in Kubernetes either.
        let addresses = subset
            .get("addresses")
            .and_then(|a| out.seq(a, &format!("{path}.addresses")))
            .unwrap_or_default();
        for (j, address) in addresses.iter().enumerate() {
            let path = format!("{path}.addresses[{j}]");
            if out.map(address, &path).is_none() {
                continue;
            }
            out.check_fields(address, &path, ENDPOINT_ADDRESS);
            let Some(ip_node) = address.get("ip") else {
                out.schema(address.span, format!("`{path}.ip`: required value"));
                continue;
            };
            let pod = address
                .get("targetRef")
                .and_then(|t| pod_ref(out, t, &format!("{path}.targetRef"), &r.namespace));
            if let Some(ip) = ip(out, ip_node, &format!("{path}.ip")) {
                list.push(Backend {
                    file: r.file,
                    ip,
                    ip_span: ip_node.span,
                    pod,
                    ports: ports.clone(),
                });
            }
        }
    }
}

/// `ports[]` of a slice or subset: numbers by name. A port without number (an EndpointSlice's
/// "every port") is left out.
fn ports(out: &mut Out<'_>, node: Option<&Node>, path: &str) -> Vec<(String, u64)> {
    let items = node.and_then(|n| out.seq(n, path)).unwrap_or_default();
    let mut ports = Vec::new();
    for (i, port) in items.iter().enumerate() {
        let path = format!("{path}[{i}]");
        if out.map(port, &path).is_none() {
            continue;
        }
        out.check_fields(port, &path, ENDPOINT_PORT);
        let name = port.get("name").and_then(Node::as_str).unwrap_or("");
        let number = port
            .get("port")
            .filter(|p| !p.is_null())
            .and_then(|p| out.int(p, &format!("{path}.port"), 1, 65535));
        if let Some(number) = number {
            ports.push((name.to_owned(), number as u64));
        }
    }
    ports
}

/// The Pod a `targetRef` names (`None` for other kinds).
fn pod_ref(
    out: &mut Out<'_>,
    node: &Node,
    path: &str,
    namespace: &str,
) -> Option<(String, String)> {
    out.map(node, path)?;
    out.check_fields(node, path, OBJECT_REFERENCE);
    if node.get("kind").and_then(Node::as_str) != Some("Pod") {
        return None;
    }
    let name = node.get("name").and_then(Node::as_str)?;
    let namespace = node
        .get("namespace")
        .and_then(Node::as_str)
        .unwrap_or(namespace);
    Some((namespace.to_owned(), name.to_owned()))
}

/// An IP address; anything else is W0203 and left out.
fn ip(out: &mut Out<'_>, node: &Node, path: &str) -> Option<IpAddr> {
    let text = out.str(node, path)?;
    let parsed = text.parse().ok();
    if parsed.is_none() {
        out.inexpressible(
            node.span,
            format!("`{path}` `{text}` is not an IP address, endpoint skipped"),
            "the snapshot holds socket addresses",
        );
    }
    parsed
}
