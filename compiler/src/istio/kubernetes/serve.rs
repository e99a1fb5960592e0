//! Joins Services, their endpoint sources and the workloads: each Service gets the endpoints of
//! its first source that exists (EndpointSlices, else Endpoints, else its selected Pods), each
//! workload serves the Services selecting it, one `inbound` per Service port.

use std::net::IpAddr;

use super::endpoints::{Backend, Backends};
use super::service::{Service, ServicePort, Target};
use super::workload::Workload;
use super::Import;
use crate::ast;
use crate::diag::{FileId, Span};
use crate::istio::{inbound_on_loopback, serves, Out};

pub(super) fn join(
    out: &mut Out<'_>,
    services: Vec<Service>,
    backends: &Backends,
    mut workloads: Vec<Workload>,
) -> Import {
    let mut import = Import::default();
    for service in &services {
        let endpoints = endpoints_of(out, service, backends, &workloads);
        import
            .services
            .push((service.file, declaration(service, endpoints)));
    }
    for workload in &mut workloads {
        for service in &services {
            if selects(service, workload) {
                serve(out, workload, service, backends);
            }
        }
    }
    for service in &services {
        import.members.insert(service.fqdn(), Vec::new());
        if !service.selector.is_empty() {
            import.selectors.push(super::Selector {
                file: service.file,
                name: service.name.clone(),
                namespace: service.namespace.clone(),
                labels: service.selector.clone(),
            });
        }
    }
    for workload in &workloads {
        for served in &workload.workload.serves {
            if let Some(labels) = import.members.get_mut(&served.name) {
                labels.push(workload.workload.labels.clone());
            }
        }
    }
    import.workloads = workloads
        .into_iter()
        .map(|w| (w.file, w.workload))
        .collect();
    import
}

/// The service as a ServiceEntry for its FQDN would declare it.
fn declaration(service: &Service, endpoints: Vec<ast::Endpoint>) -> ast::Service {
    let at = service.name.span;
    ast::Service {
        keyword: at,
        name: ast::Ident {
            name: service.fqdn(),
            span: at,
        },
        namespaces: vec![ast::Ident {
            name: service.namespace.clone(),
            span: at,
        }],
        ports: service.ports.iter().map(|p| p.port.clone()).collect(),
        endpoints,
        addresses: service.cluster_ips.clone(),
        subsets: Vec::new(),
        policies: Vec::new(),
        close: at,
        origin: ast::Origin::Istio,
    }
}

/// Whether a Service's selector (non-empty) selects the workload, in its own namespace.
fn selects(service: &Service, workload: &Workload) -> bool {
    service.namespace == workload.namespace()
        && crate::istio::selects(&service.selector, &workload.workload.labels)
}

/// The addresses of the first source that exists for the Service: its EndpointSlices, else
/// its Endpoints (`None` when neither exists).
fn backends_of<'b>(service: &Service, backends: &'b Backends) -> Option<&'b [Backend]> {
    let key = (service.namespace.clone(), service.name.name.clone());
    backends
        .slices
        .get(&key)
        .or_else(|| backends.endpoints.get(&key))
        .map(Vec::as_slice)
}

/// The endpoints of the Service's first port (the snapshot holds one address per endpoint).
fn endpoints_of(
    out: &mut Out<'_>,
    service: &Service,
    backends: &Backends,
    workloads: &[Workload],
) -> Vec<ast::Endpoint> {
    let Some(first) = service.ports.first() else {
        return Vec::new();
    };
    if let Some(list) = backends_of(service, backends) {
        return list
            .iter()
            .filter_map(|b| backend_endpoint(out, b, first, workloads))
            .collect();
    }
    workloads
        .iter()
        .filter(|w| w.is_pod && selects(service, w))
        .filter_map(|w| pod_endpoint(out, service, w, first))
        .collect()
}

/// An EndpointSlice or Endpoints address at its port of the Service port's name, labelled as
/// the Pod it names when that Pod is among the inputs.
fn backend_endpoint(
    out: &mut Out<'_>,
    backend: &Backend,
    port: &ServicePort,
    workloads: &[Workload],
) -> Option<ast::Endpoint> {
    let Some(number) = backend.port(&port.name) else {
        let file = std::mem::replace(&mut out.file, backend.file);
        out.inexpressible(
            backend.ip_span,
            format!(
                "address `{}` has no port named `{}` (the Service's first port), endpoint skipped",
                backend.ip, port.name
            ),
            "list the Service's ports in the EndpointSlice or Endpoints, by name",
        );
        out.file = file;
        return None;
    };
    let pod = backend.pod.as_ref().and_then(|(namespace, name)| {
        workloads
            .iter()
            .find(|w| w.is_pod && w.namespace() == namespace && w.workload.name.name == *name)
    });
    let labels = pod.map(|w| w.workload.labels.clone()).unwrap_or_default();
    Some(endpoint(
        backend.ip,
        number,
        (backend.file, backend.ip_span),
        labels,
    ))
}

/// A selected Pod's `podIP` at the Service port's target (a named one through the Pod's
/// container ports).
fn pod_endpoint(
    out: &mut Out<'_>,
    service: &Service,
    pod: &Workload,
    port: &ServicePort,
) -> Option<ast::Endpoint> {
    let (ip, span) = pod.address?;
    let number = target_port(out, service, pod, port, "no endpoint for it")?;
    Some(endpoint(
        ip,
        number,
        (pod.file, span),
        pod.workload.labels.clone(),
    ))
}

/// An endpoint at `span` of `file` (its EndpointSlice, Endpoints or Pod).
fn endpoint(
    ip: IpAddr,
    port: u64,
    (file, span): (FileId, Span),
    labels: Vec<ast::Label>,
) -> ast::Endpoint {
    let text = match ip {
        IpAddr::V4(ip) => format!("{ip}:{port}"),
        IpAddr::V6(ip) => format!("[{ip}]:{port}"),
    };
    ast::Endpoint {
        file: Some(file),
        address: ast::Address { text, span },
        labels,
        weight: None,
    }
}

/// The Service port's `targetPort` on a workload: a number, or the container port of that
/// name (W0203 at the `targetPort`, with `consequence`, when it has none).
fn target_port(
    out: &mut Out<'_>,
    service: &Service,
    workload: &Workload,
    port: &ServicePort,
    consequence: &str,
) -> Option<u64> {
    let name = match &port.target {
        Target::Number(n) => return Some(*n),
        Target::Name(name) => name,
    };
    let number = workload.container_port(name);
    if number.is_none() {
        let file = std::mem::replace(&mut out.file, service.file);
        out.inexpressible(
            port.target_span,
            format!(
                "`{}` has no container port named `{name}` (the `targetPort` of port {} of \
                 Service `{}/{}`), {consequence}",
                workload.workload.name.name,
                port.port.number.value,
                service.namespace,
                service.name.name
            ),
            "name the port in the pod template's `containers[].ports`",
        );
        out.file = file;
    }
    number
}

/// The workload serves the Service with one `inbound` per Service port: the port of the Pod's
/// own address in the Service's EndpointSlices or Endpoints, else the `targetPort`, forwarded
/// to the application beside the sidecar.
fn serve(out: &mut Out<'_>, workload: &mut Workload, service: &Service, backends: &Backends) {
    serves(&mut workload.workload, &service.fqdn());
    for port in &service.ports {
        let listed = own_backend(workload, service, backends).and_then(|b| b.port(&port.name));
        let Some(number) =
            listed.or_else(|| target_port(out, service, workload, port, "no inbound for it"))
        else {
            continue;
        };
        inbound_on_loopback(&mut workload.workload, number, port.port.protocol.value);
    }
}

/// A Pod's own address among the Service's EndpointSlice or Endpoints addresses.
fn own_backend<'b>(
    workload: &Workload,
    service: &Service,
    backends: &'b Backends,
) -> Option<&'b Backend> {
    if !workload.is_pod {
        return None;
    }
    let name = &workload.workload.name.name;
    backends_of(service, backends)?.iter().find(|b| {
        b.pod
            .as_ref()
            .is_some_and(|(ns, pod)| ns == workload.namespace() && pod == name)
    })
}
