//! Kubernetes import: `v1` Service, Endpoints, Pod, ServiceAccount and Namespace,
//! `discovery.k8s.io/v1` EndpointSlice and the `apps/v1` workload controllers become services
//! (named by their cluster FQDN, as a ServiceEntry for that host would be), their endpoints,
//! and workloads that serve them; one file per kind, `serve.rs` joins them.

mod endpoints;
mod fields;
mod meta;
mod protocol;
mod serve;
mod service;
pub(super) mod subsets;
mod workload;

use crate::ast;
use crate::diag::{FileId, Span};
use crate::istio::yaml::Node;
use crate::istio::Out;

/// The Kubernetes kinds the import reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Service,
    Endpoints,
    EndpointSlice,
    Pod,
    /// Deployment, StatefulSet, DaemonSet or ReplicaSet: a workload from its pod template.
    Controller(&'static str),
    /// Only names identities: accepted, nothing to import.
    ServiceAccount,
    /// Only names a scope: accepted, nothing to import.
    Namespace,
}

const CONTROLLERS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"];

/// The imported Kubernetes kind of a document's `apiVersion` and `kind`, if it is one.
pub(super) fn kind_of(api_version: &str, kind: &str) -> Option<Kind> {
    match (api_version, kind) {
        ("v1", "Service") => Some(Kind::Service),
        ("v1", "Endpoints") => Some(Kind::Endpoints),
        ("v1", "Pod") => Some(Kind::Pod),
        ("v1", "ServiceAccount") => Some(Kind::ServiceAccount),
        ("v1", "Namespace") => Some(Kind::Namespace),
        ("discovery.k8s.io/v1", "EndpointSlice") => Some(Kind::EndpointSlice),
        ("apps/v1", _) => CONTROLLERS
            .iter()
            .find(|&&c| c == kind)
            .map(|&c| Kind::Controller(c)),
        _ => None,
    }
}

/// The top-level fields of a kind's documents.
pub(super) fn document_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Endpoints => &["apiVersion", "kind", "metadata", "subsets"],
        Kind::EndpointSlice => &[
            "apiVersion",
            "kind",
            "metadata",
            "addressType",
            "endpoints",
            "ports",
        ],
        Kind::ServiceAccount => &[
            "apiVersion",
            "kind",
            "metadata",
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        ],
        _ => &["apiVersion", "kind", "metadata", "spec", "status"],
    }
}

/// One Kubernetes document to import.
#[derive(Debug)]
pub(super) struct Resource<'a> {
    pub(super) file: FileId,
    pub(super) kind: Kind,
    /// The `kind:` value, where resource-level diagnostics point.
    pub(super) kind_span: Span,
    pub(super) name: ast::Ident,
    /// `metadata.namespace`, or `default`.
    pub(super) namespace: String,
    pub(super) document: &'a Node,
}

/// What the Kubernetes documents declare: services (before any ServiceEntry, which a Service
/// of the same host takes precedence over, as in Istio) and workloads.
#[derive(Debug, Default)]
pub(super) struct Import {
    pub(super) services: Vec<(FileId, ast::Service)>,
    pub(super) workloads: Vec<(FileId, ast::Workload)>,
    /// The labels of the workloads serving each service.
    pub(super) members: subsets::Members,
    /// Each Service with a selector: what the networking import checks WorkloadEntries against.
    pub(super) selectors: Vec<Selector>,
}

/// A Service's selector, and where the Service was written.
#[derive(Debug)]
pub(super) struct Selector {
    pub(super) file: FileId,
    /// The Service's `metadata.name`, where a diagnostic about it points.
    pub(super) name: ast::Ident,
    pub(super) namespace: String,
    pub(super) labels: Vec<ast::Label>,
}

/// Reads every resource, then gives each Service its endpoints and each workload the Services
/// it serves.
pub(super) fn lower(out: &mut Out<'_>, resources: &[Resource<'_>]) -> Import {
    let mut services = Vec::new();
    let mut backends = endpoints::Backends::default();
    let mut workloads = Vec::new();
    for r in resources {
        out.file = r.file;
        if let Some(metadata) = r.document.get("metadata") {
            meta::check(out, metadata, "metadata");
        }
        match r.kind {
            Kind::Service => services.extend(service::service(out, r)),
            Kind::Endpoints => endpoints::endpoints(out, r, &mut backends),
            Kind::EndpointSlice => endpoints::slice(out, r, &mut backends),
            Kind::Pod => workloads.extend(workload::pod(out, r)),
            Kind::Controller(kind) => workloads.extend(workload::controller(out, r, kind)),
            Kind::ServiceAccount | Kind::Namespace => {}
        }
    }
    serve::join(out, services, &backends, workloads)
}

#[cfg(test)]
mod tests;
