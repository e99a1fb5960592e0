//! Resolve and validate the ASTs of all input files into one [`spec::Snapshot`].
//!
//! This is the one place validation happens: every name is resolved, every value range-checked,
//! and every invariant of [`spec::Snapshot::validate`] established. All semantic problems are
//! reported, not just the first.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use spec::{
    AddressBlock, Endpoint, HostEntry, InboundPort, OutboundTraffic, RouteRule, RouteTable,
    Service, ServicePort, Snapshot, SourceLocation, Subset, WeightedDestination, Workload,
};

use crate::ast;
use crate::diag::{did_you_mean, Code, Diagnostic, FileId, SourceSpan, Sources, Span};

/// Lists of names longer than this are not spelled out in help lines.
const MAX_LISTED: usize = 6;

/// Lowers parsed files. Returns the snapshot only when no error was found, plus every
/// diagnostic (errors and warnings).
pub(crate) fn lower(files: &[ast::File], sources: &Sources) -> (Option<Snapshot>, Vec<Diagnostic>) {
    let mut lowerer = Lowerer {
        sources,
        diagnostics: Vec::new(),
    };
    let snapshot = lowerer.snapshot(files);
    let failed = lowerer.diagnostics.iter().any(Diagnostic::is_error);
    if !failed {
        if let Err(e) = snapshot.validate() {
            lowerer.diagnostics.push(Diagnostic::without_span(
                Code::Internal,
                format!("internal compiler error: the snapshot breaks an invariant: {e}"),
            ));
            return (None, lowerer.diagnostics);
        }
    }
    ((!failed).then_some(snapshot), lowerer.diagnostics)
}

struct Lowerer<'a> {
    sources: &'a Sources,
    diagnostics: Vec<Diagnostic>,
}

/// A declaration and the file it is in.
type In<'a, T> = (FileId, &'a T);

/// A workload's namespace as written, `default` when it names none.
fn workload_namespace(w: &ast::Workload) -> &str {
    w.namespace
        .as_ref()
        .map_or(spec::host::DEFAULT_NAMESPACE, |n| n.name.as_str())
}

/// The declared services, sorted by name, for resolving references.
struct ServiceIndex<'a> {
    names: Vec<&'a str>,
    subsets: Vec<Vec<String>>,
}

impl ServiceIndex<'_> {
    fn get(&self, name: &str) -> Option<u32> {
        self.names.binary_search(&name).ok().map(|i| i as u32)
    }
}

impl<'a> Lowerer<'a> {
    fn at(&self, file: FileId, span: Span) -> SourceSpan {
        SourceSpan { file, span }
    }

    fn report(&mut self, code: Code, file: FileId, span: Span, message: String, help: &str) {
        let mut diagnostic = Diagnostic::new(code, self.at(file, span), message);
        if !help.is_empty() {
            diagnostic = diagnostic.with_help(help);
        }
        self.diagnostics.push(diagnostic);
    }

    /// Reports a second definition, naming where the first one is.
    fn duplicate(&mut self, what: String, file: FileId, span: Span, first: SourceSpan) {
        let message = format!(
            "{what} is defined more than once (first at {})",
            self.sources.describe(first)
        );
        self.report(
            Code::Duplicate,
            file,
            span,
            message,
            "remove or rename one of them",
        );
    }

    fn location(&self, file: FileId, span: Span) -> SourceLocation {
        let source = self.sources.get(file);
        let (line, column) = source.line_col(span.start);
        SourceLocation {
            file: source.path().to_owned(),
            line: line as u32,
            column: column as u32,
        }
    }

    fn snapshot(&mut self, files: &'a [ast::File]) -> Snapshot {
        let mut services: BTreeMap<&'a str, In<'a, ast::Service>> = BTreeMap::new();
        let mut routes: Vec<In<'a, ast::Route>> = Vec::new();
        let mut workloads: BTreeMap<(&'a str, &'a str), In<'a, ast::Workload>> = BTreeMap::new();
        let mut security_items: Vec<(FileId, &'a ast::Item)> = Vec::new();
        for file in files {
            for item in &file.items {
                match item {
                    ast::Item::Service(s) => {
                        if let Some(&(f, first)) = services.get(s.name.name.as_str()) {
                            let first = self.at(f, first.name.span);
                            self.duplicate(
                                format!("service `{}`", s.name.name),
                                file.id,
                                s.name.span,
                                first,
                            );
                        } else {
                            services.insert(&s.name.name, (file.id, s));
                        }
                    }
                    ast::Item::Route(r) => routes.push((file.id, r)),
                    ast::Item::Workload(w) => {
                        // One name may be used once per namespace, as in Kubernetes.
                        let key = (w.name.name.as_str(), workload_namespace(w));
                        if let Some(&(f, first)) = workloads.get(&key) {
                            let first = self.at(f, first.name.span);
                            let what = match key {
                                (name, spec::host::DEFAULT_NAMESPACE) => {
                                    format!("workload `{name}`")
                                }
                                (name, namespace) => format!("workload `{namespace}/{name}`"),
                            };
                            self.duplicate(what, file.id, w.name.span, first);
                        } else {
                            workloads.insert(key, (file.id, w));
                        }
                    }
                    ast::Item::Authorization(_)
                    | ast::Item::Authentication(_)
                    | ast::Item::PeerAuthentication(_)
                    | ast::Item::Telemetry(_)
                    | ast::Item::Sidecar(_) => security_items.push((file.id, item)),
                }
            }
        }

        let mut lowered: Vec<Service> = services
            .values()
            .map(|&(f, s)| self.service(f, s))
            .collect();
        let index = ServiceIndex {
            names: services.keys().copied().collect(),
            subsets: lowered
                .iter()
                .map(|s| s.subsets.iter().map(|s| s.name.clone()).collect())
                .collect(),
        };
        let declared: Vec<In<'a, ast::Service>> = services.values().copied().collect();
        self.address_conflicts(&declared);
        let hosts = self.hosts(&declared, &lowered);
        let routes = self.route_tables(&declared, &routes, &index);
        let workload_decls: Vec<In<'a, ast::Workload>> = workloads.values().copied().collect();
        let mut workloads: Vec<Workload> = workload_decls
            .iter()
            .map(|&(f, w)| self.workload(f, w, &index))
            .collect();
        let telemetry = self.security(
            &workload_decls,
            &mut workloads,
            &mut lowered,
            &index,
            &security_items,
        );
        self.upstream_tls(&declared, &mut lowered, &workloads);
        Snapshot {
            services: lowered,
            routes,
            hosts,
            workloads,
            unserved: Vec::new(),
            telemetry,
        }
    }

    fn service(&mut self, file: FileId, s: &ast::Service) -> Service {
        let name = &s.name.name;
        let namespace = match s.namespaces.split_first() {
            None => spec::host::DEFAULT_NAMESPACE.to_owned(),
            Some((first, rest)) => {
                for again in rest {
                    let first = self.at(file, first.span);
                    self.duplicate(
                        format!("the namespace of service `{name}`"),
                        file,
                        again.span,
                        first,
                    );
                }
                first.name.clone()
            }
        };

        let mut ports = Vec::new();
        let mut seen_ports: HashMap<u64, Span> = HashMap::new();
        for port in &s.ports {
            if let Some(&first) = seen_ports.get(&port.number.value) {
                let first = self.at(file, first);
                self.duplicate(
                    format!("port {} of service `{name}`", port.number.value),
                    file,
                    port.number.span,
                    first,
                );
                continue;
            }
            seen_ports.insert(port.number.value, port.number.span);
            if let Some(number) = self.port_number(file, port.number) {
                ports.push(ServicePort {
                    number,
                    protocol: port.protocol.value,
                });
            }
        }
        if s.ports.is_empty() {
            let (code, help) = match s.origin {
                ast::Origin::Mesh => (Code::NoPort, "add a line such as `port 8080 http`"),
                ast::Origin::Istio => (
                    Code::IstioIncomplete,
                    "add `ports` to the ServiceEntry or Service",
                ),
            };
            let message = format!("service `{name}` has no port");
            self.report(code, file, s.name.span, message, help);
        }

        let endpoints: Vec<Endpoint> = s.endpoints.iter().map(|e| self.endpoint(file, e)).collect();
        if s.endpoints.is_empty() {
            // Istio allows services whose endpoints are found at run time (DNS, passthrough); the
            // import has already said why each endpoint was skipped, so this is only a warning.
            let (code, help) = match s.origin {
                ast::Origin::Mesh => (
                    Code::NoEndpoints,
                    "add a line such as `endpoint 127.0.0.1:8080`",
                ),
                ast::Origin::Istio => (
                    Code::IstioIncomplete,
                    "add `endpoints` or WorkloadEntries to a ServiceEntry; EndpointSlices or Pods \
                     with `status.podIP` for a Kubernetes Service",
                ),
            };
            let message = format!("service `{name}` has no endpoints");
            self.report(code, file, s.name.span, message, help);
        }

        let policy = self.service_policy(file, s);
        let mut subsets: BTreeMap<&str, Subset> = BTreeMap::new();
        let mut subset_spans: HashMap<&str, (FileId, Span)> = HashMap::new();
        for subset in &s.subsets {
            let subset_name = subset.name.name.as_str();
            // A DestinationRule's subsets live in its own file.
            let file = subset.file.unwrap_or(file);
            if let Some(&(first_file, first)) = subset_spans.get(subset_name) {
                let first = self.at(first_file, first);
                self.duplicate(
                    format!("subset `{subset_name}` of service `{name}`"),
                    file,
                    subset.name.span,
                    first,
                );
                continue;
            }
            subset_spans.insert(subset_name, (file, subset.name.span));
            let selector = self.labels(file, &subset.selector);
            let members: Vec<u32> = endpoints
                .iter()
                .enumerate()
                .filter(|(_, e)| selector.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
                .map(|(i, _)| i as u32)
                .collect();
            if members.is_empty() && !endpoints.is_empty() {
                let wanted: Vec<String> = selector
                    .iter()
                    .map(|(k, v)| format!("{k} = {v:?}"))
                    .collect();
                self.report(
                    Code::EmptySubset,
                    file,
                    subset.name.span,
                    format!("subset `{subset_name}` of service `{name}` selects no endpoint"),
                    &format!("no endpoint carries all of: {}", wanted.join(", ")),
                );
            }
            subsets.insert(
                subset_name,
                Subset {
                    policy: self.subset_policy(file, &policy, subset.policy.as_ref()),
                    name: subset_name.to_owned(),
                    selector,
                    endpoints: members,
                },
            );
        }

        Service {
            policy,
            identities: Vec::new(),
            addresses: s
                .addresses
                .iter()
                .filter_map(|a| self.address_block(file, a))
                .collect(),
            name: name.clone(),
            namespace,
            ports,
            endpoints,
            subsets: subsets.into_values().collect(),
        }
    }

    fn port_number(&mut self, file: FileId, n: ast::Number) -> Option<u16> {
        match u16::try_from(n.value) {
            Ok(p) if p != 0 => Some(p),
            _ => {
                let message = format!("port {} is out of range", n.value);
                self.report(
                    Code::InvalidValue,
                    file,
                    n.span,
                    message,
                    "ports are 1 to 65535",
                );
                None
            }
        }
    }

    fn address(&mut self, file: FileId, a: &ast::Address) -> SocketAddr {
        const HELP: &str = "write an IP address and a port, e.g. 127.0.0.1:8080 or [::1]:8080";
        match a.text.parse::<SocketAddr>() {
            Ok(addr) if addr.port() != 0 => addr,
            Ok(_) => {
                let message = format!("socket address `{}` has port 0", a.text);
                self.report(
                    Code::InvalidValue,
                    file,
                    a.span,
                    message,
                    "ports are 1 to 65535",
                );
                addr_placeholder()
            }
            Err(_) => {
                let message = format!("invalid socket address `{}`", a.text);
                self.report(Code::InvalidValue, file, a.span, message, HELP);
                addr_placeholder()
            }
        }
    }

    /// A service's virtual address: an IP address, or a CIDR block.
    fn address_block(&mut self, file: FileId, a: &ast::Address) -> Option<AddressBlock> {
        if let Some(block) = parse_block(&a.text) {
            return Some(block);
        }
        let message = format!("invalid virtual address `{}`", a.text);
        let help = "write an IP address or a CIDR block, e.g. 10.96.0.10 or 240.240.0.0/16";
        self.report(Code::InvalidValue, file, a.span, message, help);
        None
    }

    /// E0149 at a virtual address another service already claims on one of the same ports.
    fn address_conflicts(&mut self, declared: &[In<'_, ast::Service>]) {
        let mut claimed: Vec<(AddressBlock, &[ast::Port], SourceSpan, &str)> = Vec::new();
        for &(file, service) in declared {
            for address in &service.addresses {
                let Some(block) = parse_block(&address.text) else {
                    continue;
                };
                let shares_port = |ports: &[ast::Port]| {
                    let number = |p: &ast::Port| p.number.value;
                    ports
                        .iter()
                        .any(|p| service.ports.iter().any(|q| number(p) == number(q)))
                };
                let here = self.at(file, address.span);
                // One ServiceEntry's address serves each of its hosts. An address inside another
                // service's block is no conflict: the single address is the more specific.
                let first = claimed.iter().find(|(other, ports, at, name)| {
                    *name != service.name.name
                        && *at != here
                        && other.is_single() == block.is_single()
                        && other.overlaps(&block)
                        && shares_port(ports)
                });
                if let Some((_, _, at, name)) = first {
                    let message = format!(
                        "virtual address `{}` of service `{}` is also service `{name}`'s (at {}) on a port both declare",
                        address.text,
                        service.name.name,
                        self.sources.describe(*at)
                    );
                    let help = "a captured connection to it could go to either: give each service its own address or ports";
                    self.report(Code::AddressConflict, file, address.span, message, help);
                    continue;
                }
                claimed.push((block, &service.ports, here, &service.name.name));
            }
        }
    }

    fn endpoint(&mut self, file: FileId, e: &ast::Endpoint) -> Endpoint {
        let file = e.file.unwrap_or(file);
        let address = self.address(file, &e.address);
        let labels = self.labels(file, &e.labels);
        let weight = match e.weight {
            None => 1,
            Some(w) => match u32::try_from(w.value) {
                Ok(v) if v >= 1 => v,
                _ => {
                    let message = format!("endpoint weight {} is out of range", w.value);
                    let help = format!("endpoint weights are 1 to {}", u32::MAX);
                    self.report(Code::InvalidValue, file, w.span, message, &help);
                    1
                }
            },
        };
        Endpoint {
            address,
            labels,
            weight,
        }
    }

    fn labels(&mut self, file: FileId, labels: &[ast::Label]) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut spans: HashMap<&str, Span> = HashMap::new();
        for label in labels {
            if let Some(&first) = spans.get(label.key.name.as_str()) {
                let first = self.at(file, first);
                self.duplicate(
                    format!("label `{}`", label.key.name),
                    file,
                    label.key.span,
                    first,
                );
                continue;
            }
            spans.insert(&label.key.name, label.key.span);
            out.insert(label.key.name.clone(), label.value.value.clone());
        }
        out
    }

    /// Every name of every service (`spec::host::service_hosts`), each mapped to its route
    /// table (index = service index). A short name belongs to its namespace, so two services
    /// share one only across namespaces.
    fn hosts(&mut self, declared: &[In<'_, ast::Service>], services: &[Service]) -> Vec<HostEntry> {
        let mut hosts: BTreeMap<(String, Option<String>), u32> = BTreeMap::new();
        for (index, service) in services.iter().enumerate() {
            for name in host_names(declared[index].1, service) {
                let clash = hosts
                    .range((name.name.clone(), None)..)
                    .take_while(|((host, _), _)| *host == name.name)
                    .find(|((_, ns), _)| {
                        ns.is_none() || name.namespace.is_none() || *ns == name.namespace
                    })
                    .map(|(_, &other)| other);
                if let Some(other) = clash {
                    self.duplicate_host(declared, index, other as usize, &name.name);
                    continue;
                }
                hosts.insert((name.name, name.namespace), index as u32);
            }
        }
        hosts
            .into_iter()
            .map(|((host, namespace), route_table)| HostEntry {
                host,
                namespace,
                route_table,
            })
            .collect()
    }

    fn duplicate_host(
        &mut self,
        declared: &[In<'_, ast::Service>],
        index: usize,
        other: usize,
        host: &str,
    ) {
        let (file, s) = declared[index];
        let (other_file, other_s) = declared[other];
        let first = self
            .sources
            .describe(self.at(other_file, other_s.name.span));
        let message = format!(
            "host `{host}` of service `{}` is also a host of service `{}` (declared at {first})",
            s.name.name, other_s.name.name
        );
        let help = "host names are compared in lower case; rename one of the services or move it to another namespace";
        self.report(Code::Duplicate, file, s.name.span, message, help);
    }

    fn unknown_service(&mut self, file: FileId, name: &ast::Ident, index: &ServiceIndex<'_>) {
        let help = name_help("services", &name.name, &index.names);
        let message = format!("unknown service `{}`", name.name);
        self.report(Code::UnknownService, file, name.span, message, &help);
    }

    fn route_tables(
        &mut self,
        declared: &[In<'a, ast::Service>],
        routes: &[In<'a, ast::Route>],
        index: &ServiceIndex<'_>,
    ) -> Vec<RouteTable> {
        let mut by_service: Vec<Option<In<'a, ast::Route>>> = vec![None; declared.len()];
        for &(file, route) in routes {
            let Some(service) = index.get(&route.service.name) else {
                self.unknown_service(file, &route.service, index);
                continue;
            };
            match by_service[service as usize] {
                Some((f, first)) => {
                    let first = self.at(f, first.service.span);
                    let what = format!("route for service `{}`", route.service.name);
                    self.duplicate(what, file, route.service.span, first);
                }
                None => by_service[service as usize] = Some((file, route)),
            }
        }
        let mut tables = Vec::with_capacity(declared.len());
        for (service, route) in by_service.into_iter().enumerate() {
            let rules = match route {
                Some((file, route)) => self.rules(file, route, index),
                None => {
                    let (file, s) = declared[service];
                    vec![RouteRule {
                        name: "default".to_owned(),
                        matches: Vec::new(),
                        destinations: vec![WeightedDestination {
                            service: service as u32,
                            subset: None,
                            weight: 100,
                        }],
                        source: self.location(file, s.keyword),
                        ..RouteRule::default()
                    }]
                }
            };
            let mut table = RouteTable {
                service: service as u32,
                rules,
                index: Default::default(),
            };
            table.index = table.path_index();
            tables.push(table);
        }
        tables
    }

    fn rules(
        &mut self,
        file: FileId,
        route: &ast::Route,
        index: &ServiceIndex<'_>,
    ) -> Vec<RouteRule> {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut rules = Vec::new();
        for rule in &route.rules {
            if let Some(&first) = seen.get(rule.name.name.as_str()) {
                let first = self.at(file, first);
                let what = format!(
                    "rule `{}` of route `{}`",
                    rule.name.name, route.service.name
                );
                self.duplicate(what, file, rule.name.span, first);
                continue;
            }
            seen.insert(&rule.name.name, rule.name.span);
            let matches = rule
                .matches
                .iter()
                .map(|m| self.request_match(file, m))
                .collect();
            let destinations = self.destinations(file, rule, index);
            let mut lowered = RouteRule {
                name: rule.name.name.clone(),
                matches,
                destinations,
                source: self.location(file, rule.keyword),
                ..RouteRule::default()
            };
            self.rule_actions(file, rule, index, &mut lowered);
            rules.push(lowered);
        }
        rules
    }

    /// Resolves `SERVICE[/SUBSET]` to indexes, reporting unknown names (E0101, E0102).
    fn resolve(
        &mut self,
        file: FileId,
        service_name: &ast::Ident,
        subset: Option<&ast::Ident>,
        index: &ServiceIndex<'_>,
    ) -> (Option<u32>, Option<u32>) {
        let service = index.get(&service_name.name);
        if service.is_none() {
            self.unknown_service(file, service_name, index);
        }
        let subset = match (service, subset) {
            (Some(service), Some(subset)) => {
                let names = &index.subsets[service as usize];
                let found = names.binary_search(&subset.name).ok().map(|i| i as u32);
                if found.is_none() {
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    let help = if names.is_empty() {
                        format!("service `{}` declares no subsets", service_name.name)
                    } else {
                        name_help("subsets", &subset.name, &names)
                    };
                    let message = format!(
                        "unknown subset `{}` of service `{}`",
                        subset.name, service_name.name
                    );
                    self.report(Code::UnknownSubset, file, subset.span, message, &help);
                }
                found
            }
            _ => None,
        };
        (service, subset)
    }

    fn destinations(
        &mut self,
        file: FileId,
        rule: &ast::Rule,
        index: &ServiceIndex<'_>,
    ) -> Vec<WeightedDestination> {
        let mut out = Vec::with_capacity(rule.destinations.len());
        let mut weights_valid = true;
        for dest in &rule.destinations {
            let (service, subset) = self.resolve(file, &dest.service, dest.subset.as_ref(), index);
            let weight = match dest.weight {
                None => None,
                Some(w) if (1..=100).contains(&w.value) => Some(w.value as u32),
                Some(w) => {
                    let message = format!("destination weight {} is out of range", w.value);
                    self.report(
                        Code::InvalidValue,
                        file,
                        w.span,
                        message,
                        "destination weights are percentages, 1 to 100",
                    );
                    weights_valid = false;
                    None
                }
            };
            out.push(WeightedDestination {
                service: service.unwrap_or(0),
                subset,
                weight: weight.unwrap_or(0),
            });
        }
        if !weights_valid {
            return out;
        }
        let rule_span = Span::new(rule.keyword.start, rule.name.span.end);
        let name = &rule.name.name;
        match rule.destinations.as_slice() {
            [only] if only.weight.is_none() => out[0].weight = 100,
            [_] | [_, _, ..] => {
                if rule.destinations.iter().any(|d| d.weight.is_none()) {
                    let message = format!(
                        "rule `{name}` has several destinations but not every one has a weight"
                    );
                    self.report(
                        Code::WeightSum,
                        file,
                        rule_span,
                        message,
                        "give every `to` line a `weight`; the weights must sum to 100",
                    );
                } else {
                    let sum: u64 = out.iter().map(|d| u64::from(d.weight)).sum();
                    if sum != 100 {
                        let message =
                            format!("destination weights of rule `{name}` sum to {sum}, not 100");
                        self.report(
                            Code::WeightSum,
                            file,
                            rule_span,
                            message,
                            "adjust the weights so they sum to 100",
                        );
                    }
                }
            }
            [] => {}
        }
        out
    }

    /// A workload's `outbound_traffic` line, if any (E0002 for another word, E0103 twice).
    fn outbound_traffic(&mut self, file: FileId, w: &ast::Workload) -> OutboundTraffic {
        let Some((first, rest)) = w.outbound_traffic.split_first() else {
            return OutboundTraffic::default();
        };
        for again in rest {
            let what = format!("the outbound traffic policy of workload `{}`", w.name.name);
            let first = self.at(file, first.span);
            self.duplicate(what, file, again.span, first);
        }
        match first.name.as_str() {
            "allow_any" => OutboundTraffic::AllowAny,
            "registry_only" => OutboundTraffic::RegistryOnly,
            other => {
                let message = format!("unknown outbound traffic policy `{other}`");
                let help = "write `allow_any` (the default) or `registry_only`";
                self.report(Code::InvalidValue, file, first.span, message, help);
                OutboundTraffic::default()
            }
        }
    }

    fn workload(&mut self, file: FileId, w: &ast::Workload, index: &ServiceIndex<'_>) -> Workload {
        let name = &w.name.name;
        if name.contains('/') {
            self.report(
                Code::InvalidValue,
                file,
                w.name.span,
                format!("workload name `{name}` holds a `/`"),
                "`meshd --workload` reads `A/B` as workload B of namespace A: rename the workload",
            );
        }
        let identity = match w.identities.split_first() {
            None => None,
            Some((first, rest)) => {
                for again in rest {
                    let first = self.at(file, first.span);
                    self.duplicate(
                        format!("the identity of workload `{name}`"),
                        file,
                        again.span,
                        first,
                    );
                }
                if !first.value.starts_with("spiffe://") {
                    let message = format!("identity {:?} is not a SPIFFE ID", first.value);
                    self.report(
                        Code::InvalidValue,
                        file,
                        first.span,
                        message,
                        "write it as \"spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/ACCOUNT\"",
                    );
                }
                Some(first.value.clone())
            }
        };
        let mut inbound = Vec::new();
        let mut seen_ports: HashMap<u64, Span> = HashMap::new();
        for port in &w.inbound {
            if let Some(&first) = seen_ports.get(&port.port.value) {
                let first = self.at(file, first);
                self.duplicate(
                    format!("inbound port {} of workload `{name}`", port.port.value),
                    file,
                    port.port.span,
                    first,
                );
                continue;
            }
            seen_ports.insert(port.port.value, port.port.span);
            let number = self.port_number(file, port.port);
            let target = self.address(file, &port.target);
            if let Some(number) = number {
                inbound.push(InboundPort {
                    tls: spec::TlsMode::default(),
                    port: number,
                    protocol: port.protocol.value,
                    target,
                });
            }
        }
        let outbound = match &w.outbound {
            None => (0..index.names.len() as u32).collect(),
            Some(names) => {
                let mut outbound = Vec::new();
                for service in names {
                    match index.get(&service.name) {
                        Some(i) => outbound.push(i),
                        None => self.unknown_service(file, service, index),
                    }
                }
                outbound.sort_unstable();
                outbound.dedup();
                outbound
            }
        };
        Workload {
            authorization: Vec::new(),
            jwt: Vec::new(),
            serves: Vec::new(),
            telemetry: spec::Telemetry::default(),
            outbound_traffic: self.outbound_traffic(file, w),
            // Filled with the security settings, which read the labels too.
            labels: BTreeMap::new(),
            name: name.clone(),
            // Lower case, as host names (and the namespaces of short ones) are compared.
            namespace: w.namespace.as_ref().map_or_else(
                || spec::host::DEFAULT_NAMESPACE.to_owned(),
                |n| n.name.to_ascii_lowercase(),
            ),
            identity,
            inbound,
            outbound,
        }
    }
}

/// The host names of a service. A ServiceEntry host is used as written, as Istio uses it; only
/// a name in the cluster domain (a Kubernetes Service's, or a `.mesh` service's short name) gets
/// the names of the DNS search path.
fn host_names(declared: &ast::Service, service: &Service) -> Vec<spec::host::HostName> {
    let literal = declared.origin == ast::Origin::Istio && !service.name.contains('.');
    if literal {
        return vec![spec::host::HostName {
            name: service.name.to_ascii_lowercase(),
            namespace: None,
        }];
    }
    spec::host::service_hosts(&service.name, &service.namespace)
}

fn addr_placeholder() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// Help for an unknown name: the declared names when there are few, else a close match.
fn name_help(kind: &str, name: &str, declared: &[&str]) -> String {
    if declared.is_empty() {
        format!("no {kind} are declared")
    } else if declared.len() <= MAX_LISTED {
        format!("declared {kind}: {}", declared.join(", "))
    } else if let Some(close) = did_you_mean(name, declared.iter().copied()) {
        format!("did you mean `{close}`?")
    } else {
        String::new()
    }
}

mod security;
mod traffic;
mod upstream_tls;

pub(crate) use security::parse_condition_key;

#[cfg(test)]
mod tests;

/// An IP address (a block of one) or a CIDR block, as written.
fn parse_block(text: &str) -> Option<AddressBlock> {
    text.parse().ok()
}
