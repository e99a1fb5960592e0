//! ServiceEntry, WorkloadEntry, DestinationRule and VirtualService into AST declarations, one
//! file per kind; this one orders them and resolves host names.

mod client_tls;
mod destination_rule;
mod http_actions;
mod http_match;
mod selection;
mod service_entry;
mod virtual_service;
mod workload_entry;

use std::collections::{HashMap, HashSet};

use super::kubernetes::{subsets, Import};
use super::yaml::Node;
use super::{Kind, Out, Resource};
use crate::ast;
use crate::diag::{Code, FileId, Span};
use destination_rule::destination_rule;
use service_entry::{addresses_required, conflicting_protocols, service_entry};
use virtual_service::virtual_service;
use workload_entry::workload_entry;

/// A service imported from a ServiceEntry host, and where its AST lives.
struct Imported {
    file: FileId,
    /// What declared it, as diagnostics name it: ServiceEntry `ns/name` or Kubernetes
    /// Service `ns/name`.
    declared_by: String,
    /// Declared by a Kubernetes Service, which ServiceEntries for its host do not merge into.
    kubernetes: bool,
    service: ast::Service,
}

/// Lowers the resources: services first (the Kubernetes Services, which take precedence over a
/// ServiceEntry of the same host as in Istio, then ServiceEntries with WorkloadEntry
/// endpoints), then subsets, then routes.
pub(super) fn lower(
    out: &mut Out<'_>,
    resources: &[Resource<'_>],
    kube: Import,
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
        workload_entries.extend(workload_entry(out, entry));
    }

    let mut services: Vec<Imported> = kube
        .services
        .into_iter()
        .map(|(file, service)| Imported {
            file,
            declared_by: kubernetes_service(&service.name.name),
            kubernetes: true,
            service,
        })
        .collect();
    selection::services_selecting_entries(out, &kube.selectors, &workload_entries);
    let mut protocols = HashMap::new();
    for r in resources.iter().filter(|r| r.kind == Kind::ServiceEntry) {
        out.file = r.file;
        service_entry(
            out,
            r,
            &mut workload_entries,
            &kube.workloads,
            &mut services,
        );
        addresses_required(out, r);
        conflicting_protocols(out, r, &mut protocols);
    }
    for (file, workload) in kube.workloads {
        items
            .entry(file)
            .or_default()
            .push(ast::Item::Workload(workload));
    }
    // Workload entries serve what the ServiceEntries selecting them declared.
    for entry in workload_entries {
        items
            .entry(entry.file)
            .or_default()
            .push(ast::Item::Workload(entry.workload));
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
                let host = canonical_host(s);
                hosts.entry(host).or_insert((s.name.name.clone(), None));
            }
        }
    }
    for (i, imported) in services.iter().enumerate() {
        let s = &imported.service;
        ports
            .entry(s.name.name.clone())
            .or_insert_with(|| s.ports.iter().map(|p| p.number.value).collect());
        let host = canonical_host(s);
        hosts.entry(host).or_insert((s.name.name.clone(), Some(i)));
    }
    let resolver = Resolver { hosts, ports };

    for r in resources.iter().filter(|r| r.kind == Kind::DestinationRule) {
        out.file = r.file;
        let before: Vec<usize> = services.iter().map(|s| s.service.subsets.len()).collect();
        destination_rule(out, r, &resolver, &mut services);
        for (imported, before) in services.iter().zip(before) {
            let service = &imported.service;
            subsets::check(out, &kube.members, service, &service.subsets[before..]);
        }
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

/// The one name a VirtualService or DestinationRule host must resolve to, as Istio compares
/// them: a `.mesh` service's FQDN (its name qualified in its namespace); an imported service's
/// host as written (a ServiceEntry host, a Kubernetes Service's FQDN).
fn canonical_host(s: &ast::Service) -> String {
    match s.origin {
        ast::Origin::Mesh => {
            let namespace = s
                .namespaces
                .first()
                .map_or(spec::host::DEFAULT_NAMESPACE, |n| n.name.as_str());
            spec::host::qualify(&s.name.name, namespace)
        }
        ast::Origin::Istio => s.name.name.to_ascii_lowercase(),
    }
}

struct Resolver {
    hosts: HashMap<String, (String, Option<usize>)>,
    /// The port numbers of every declared service, by service name.
    ports: HashMap<String, Vec<u64>>,
}

impl Resolver {
    /// The declared service a host names: a name without a dot is a service of `namespace`,
    /// any other is compared as written (`reviews.default` is not `reviews`), as in Istio.
    fn resolve(&self, host: &str, namespace: &str) -> Option<&(String, Option<usize>)> {
        self.hosts.get(&spec::host::qualify(host, namespace))
    }
}

/// E0101 (Istio IST0101): a VirtualService sends traffic to a host no service declares; Istio
/// would answer those requests 503, and `istioctl analyze` refuses the config.
fn unknown_host(out: &mut Out<'_>, span: Span, what: &str, host: &str, namespace: &str) {
    let qualified = spec::host::qualify(host, namespace);
    let means = if qualified == host.to_ascii_lowercase() {
        String::new()
    } else {
        format!(" (`{qualified}` in namespace `{namespace}`)")
    };
    out.push(
        Code::UnknownService,
        span,
        format!("{what} `{host}`{means} is not a declared service"),
        "declare it with a ServiceEntry, a Kubernetes Service or in a .mesh file (Istio \
         IST0101 ReferencedResourceNotFound)",
    );
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

fn number(value: i64, span: Span) -> ast::Number {
    ast::Number {
        value: u64::try_from(value).unwrap_or(0),
        span,
    }
}

fn float(node: &Node) -> Option<f64> {
    match node.value {
        super::yaml::Value::Int(n) => Some(n as f64),
        super::yaml::Value::Float(f) => Some(f),
        _ => None,
    }
}

/// How a diagnostic names the Kubernetes Service an FQDN came from.
fn kubernetes_service(fqdn: &str) -> String {
    match spec::host::cluster_service(fqdn) {
        Some((name, namespace)) => format!("Kubernetes Service `{namespace}/{name}`"),
        None => format!("Kubernetes Service `{fqdn}`"),
    }
}
