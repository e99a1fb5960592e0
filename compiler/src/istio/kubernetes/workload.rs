//! `v1 Pod` and the `apps/v1` controllers (Deployment, StatefulSet, DaemonSet, ReplicaSet):
//! a workload each, with the labels, identity and container ports of its pod template.

use std::net::IpAddr;

use super::fields::{controller_spec, CONTAINER, CONTAINER_PORT, POD_SPEC, POD_TEMPLATE};
use super::{meta, Resource};
use crate::ast;
use crate::diag::{FileId, Span};
use crate::istio::yaml::{Node, Value};
use crate::istio::Out;

/// The service account Kubernetes gives a Pod that names none.
const DEFAULT_ACCOUNT: &str = "default";

/// A workload, and what its endpoints and inbound ports are derived from.
#[derive(Debug)]
pub(super) struct Workload {
    pub(super) file: FileId,
    pub(super) workload: ast::Workload,
    /// Container port numbers by port name (what a named `targetPort` refers to).
    pub(super) container_ports: Vec<(String, u64)>,
    /// A Pod (not a template).
    pub(super) is_pod: bool,
    /// A ready Pod's `status.podIP`.
    pub(super) address: Option<(IpAddr, Span)>,
}

impl Workload {
    pub(super) fn namespace(&self) -> &str {
        self.workload
            .namespace
            .as_ref()
            .map_or(spec::host::DEFAULT_NAMESPACE, |n| n.name.as_str())
    }

    /// The number of the container port named `name`.
    pub(super) fn container_port(&self, name: &str) -> Option<u64> {
        self.container_ports
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, p)| p)
    }
}

pub(super) fn pod(out: &mut Out<'_>, r: &Resource<'_>) -> Option<Workload> {
    let document = r.document;
    let labels = meta::labels(out, document.get("metadata"), "metadata");
    let Some(spec) = document.get("spec") else {
        out.schema(r.kind_span, "`spec`: required value".to_owned());
        return None;
    };
    let mut workload = pod_spec(out, r, spec, "spec", labels)?;
    workload.is_pod = true;
    workload.address = document.get("status").and_then(|s| ready_ip(out, s));
    Some(workload)
}

pub(super) fn controller(out: &mut Out<'_>, r: &Resource<'_>, kind: &str) -> Option<Workload> {
    let Some(spec) = r.document.get("spec") else {
        out.schema(r.kind_span, "`spec`: required value".to_owned());
        return None;
    };
    out.map(spec, "spec")?;
    out.check_fields(spec, "spec", controller_spec(kind));
    let Some(template) = spec.get("template") else {
        out.schema(spec.span, "`spec.template`: required value".to_owned());
        return None;
    };
    out.map(template, "spec.template")?;
    out.check_fields(template, "spec.template", POD_TEMPLATE);
    let metadata = template.get("metadata");
    if let Some(metadata) = metadata {
        meta::check(out, metadata, "spec.template.metadata");
    }
    let labels = meta::labels(out, metadata, "spec.template.metadata");
    let Some(pod_spec_node) = template.get("spec") else {
        out.schema(
            template.span,
            "`spec.template.spec`: required value".to_owned(),
        );
        return None;
    };
    pod_spec(out, r, pod_spec_node, "spec.template.spec", labels)
}

/// The workload a `PodSpec` describes, named after the resource.
fn pod_spec(
    out: &mut Out<'_>,
    r: &Resource<'_>,
    spec: &Node,
    path: &str,
    labels: Vec<ast::Label>,
) -> Option<Workload> {
    out.map(spec, path)?;
    out.check_fields(spec, path, POD_SPEC);
    if let Some(host) = spec
        .get("hostNetwork")
        .filter(|h| h.value == Value::Bool(true))
    {
        out.unsupported(
            &format!("{path}.hostNetwork"),
            host,
            "imported as a Pod with an address and sidecar of its own",
        );
    }
    let identity = identity(out, r, spec, path);
    let container_ports = container_ports(out, spec, path);
    Some(Workload {
        file: r.file,
        workload: ast::Workload {
            keyword: r.kind_span,
            name: r.name.clone(),
            identities: vec![identity],
            inbound: Vec::new(),
            outbound: None,
            serves: Vec::new(),
            namespace: Some(ast::Ident {
                name: r.namespace.clone(),
                span: r.name.span,
            }),
            labels,
            telemetry: None,
            outbound_traffic: Vec::new(),
        },
        container_ports,
        is_pod: false,
        address: None,
    })
}

/// `spiffe://cluster.local/ns/<ns>/sa/<serviceAccountName>`; the deprecated `serviceAccount`
/// when `serviceAccountName` is absent, `default` when both are.
fn identity(out: &mut Out<'_>, r: &Resource<'_>, spec: &Node, path: &str) -> ast::Str {
    let field = ["serviceAccountName", "serviceAccount"]
        .into_iter()
        .find_map(|f| spec.get(f).map(|node| (f, node)));
    let (account, span) = match field {
        Some((f, node)) => match out.str(node, &format!("{path}.{f}")) {
            Some(account) if !account.is_empty() => (account, node.span),
            _ => (DEFAULT_ACCOUNT, node.span),
        },
        None => (DEFAULT_ACCOUNT, r.name.span),
    };
    ast::Str {
        value: format!(
            "spiffe://{}/ns/{}/sa/{account}",
            spec::host::CLUSTER_DOMAIN,
            r.namespace
        ),
        span,
    }
}

/// Every named port of the containers, checking the fields of containers and their ports.
fn container_ports(out: &mut Out<'_>, spec: &Node, path: &str) -> Vec<(String, u64)> {
    let path = format!("{path}.containers");
    let containers = match spec.get("containers") {
        Some(node) => out.seq(node, &path).unwrap_or_default(),
        None => {
            out.schema(spec.span, format!("`{path}`: required value"));
            &[]
        }
    };
    let mut ports = Vec::new();
    for (i, container) in containers.iter().enumerate() {
        let path = format!("{path}[{i}]");
        if out.map(container, &path).is_none() {
            continue;
        }
        out.check_fields(container, &path, CONTAINER);
        let Some(list) = container.get("ports") else {
            continue;
        };
        for (j, port) in out
            .seq(list, &format!("{path}.ports"))
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let path = format!("{path}.ports[{j}]");
            if out.map(port, &path).is_none() {
                continue;
            }
            out.check_fields(port, &path, CONTAINER_PORT);
            let name = port.get("name").and_then(Node::as_str);
            let number = port
                .get("containerPort")
                .and_then(|n| out.int(n, &format!("{path}.containerPort"), 1, 65535));
            if let (Some(name), Some(number)) = (name, number) {
                ports.push((name.to_owned(), number as u64));
            }
        }
    }
    ports
}

/// `status.podIP` of a Pod that is not reported unready (its `Ready` condition not `False`).
fn ready_ip(out: &mut Out<'_>, status: &Node) -> Option<(IpAddr, Span)> {
    let unready = status
        .get("conditions")
        .and_then(Node::items)
        .unwrap_or_default()
        .iter()
        .any(|c| {
            c.get("type").and_then(Node::as_str) == Some("Ready")
                && c.get("status").and_then(Node::as_str) == Some("False")
        });
    if unready {
        return None;
    }
    let node = status.get("podIP")?;
    let text = out.str(node, "status.podIP")?;
    match text.parse() {
        Ok(ip) => Some((ip, node.span)),
        Err(_) => {
            out.inexpressible(
                node.span,
                format!("`status.podIP` `{text}` is not an IP address, no endpoint for the Pod"),
                "",
            );
            None
        }
    }
}
