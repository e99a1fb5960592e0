//! WorkloadEntry: a workload outside Kubernetes, and an endpoint of the ServiceEntries that
//! select it.

use super::ident;
use super::service_entry::{endpoint_port, PortSpec};
use crate::ast;
use crate::diag::{FileId, Span};
use crate::istio::yaml::Node;
use crate::istio::{inbound_on_loopback, serves, Out, Resource};

/// A WorkloadEntry: its endpoint data (for the ServiceEntries that select it) and its workload.
pub(super) struct WorkloadEntry<'a> {
    pub(super) file: FileId,
    pub(super) namespace: String,
    pub(super) address: Option<&'a Node>,
    pub(super) labels: Vec<ast::Label>,
    pub(super) ports: Option<&'a Node>,
    pub(super) weight: Option<&'a Node>,
    pub(super) workload: ast::Workload,
}

pub(super) const ENDPOINT_FIELDS: &[&str] = &[
    "address",
    "ports",
    "labels",
    "network",
    "locality",
    "weight",
    "serviceAccount",
];

/// Checks the fields an endpoint (ServiceEntry `endpoints[]` or WorkloadEntry `spec`) shares.
pub(super) fn check_endpoint(out: &mut Out<'_>, node: &Node, path: &str) {
    out.check_fields(node, path, ENDPOINT_FIELDS);
    for field in ["network", "locality"] {
        if let Some(value) = node.get(field) {
            out.unsupported(&format!("{path}.{field}"), value, "ignored");
        }
    }
    if let Some(ports) = node.get("ports") {
        let ports_path = format!("{path}.ports");
        for (name, number) in out.map(ports, &ports_path).unwrap_or_default() {
            let port_path = format!("{ports_path}.{}", crate::istio::plain(name));
            out.int(number, &port_path, 1, 65535);
        }
    }
    if let Some(weight) = node.get("weight") {
        out.int(weight, &format!("{path}.weight"), 0, i64::from(u32::MAX));
    }
}

pub(super) fn workload_entry<'a>(out: &mut Out<'_>, r: &Resource<'a>) -> Option<WorkloadEntry<'a>> {
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
        outbound_traffic: Vec::new(),
    };
    Some(WorkloadEntry {
        file: r.file,
        namespace: r.namespace.clone(),
        address: spec.get("address"),
        labels,
        ports: spec.get("ports"),
        weight: spec.get("weight"),
        workload,
    })
}

impl WorkloadEntry<'_> {
    /// The entry's workload serves `hosts`, whose ServiceEntry selected it, on `ports`: each
    /// the port its endpoint gets (see [`endpoint_port`]), forwarded to the application on the
    /// machine's loopback, as Istio's sidecar on a VM does.
    pub(super) fn serve(&mut self, hosts: &[(String, Span)], ports: &[(&ast::Port, &PortSpec)]) {
        for (host, _) in hosts {
            serves(&mut self.workload, host);
        }
        for (port, spec) in ports {
            if let Ok(number) = u64::try_from(endpoint_port(self.ports, spec)) {
                inbound_on_loopback(&mut self.workload, number, port.protocol.value);
            }
        }
    }
}
