//! Lowering of the workload, security and telemetry part: what each workload serves (and so
//! which identities each service may present), policy targeting, authorization policies, JWT
//! rules, the effective mTLS mode of every inbound port, and telemetry settings.

use std::collections::{BTreeMap, HashMap, HashSet};

use spec::{
    AccessLog, AuthorizationPolicy, AuthzAction, AuthzCondition, AuthzOperation, AuthzRule,
    AuthzSource, ConditionKey, JwtRule, Service, StringPattern, Telemetry, TlsMode, Workload,
};

use super::{name_help, In, Lowerer, ServiceIndex};
use crate::ast;
use crate::diag::{Code, FileId, SourceSpan, Span};

/// The `when` keys the data plane understands, for help lines.
const SUPPORTED_KEYS: &str = "request.headers[NAME], request.auth.claims[NAME]..., \
    request.auth.principal, request.auth.audiences, request.auth.presenter, source.principal, \
    source.namespace, source.ip, destination.port";

/// What policy targeting needs to know about a declared workload.
struct Target<'a> {
    name: &'a str,
    namespace: String,
    labels: BTreeMap<String, String>,
}

/// Every declared workload (sorted by name, then namespace), and their indexes per namespace
/// (ascending).
struct Targets<'t, 'a> {
    list: &'t [Target<'a>],
    by_namespace: HashMap<&'t str, Vec<usize>>,
}

/// How specific a peer authentication is; a more specific one overrides a less specific one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Level {
    Workload,
    Namespace,
    Mesh,
}

impl Level {
    fn describe(self) -> &'static str {
        match self {
            Self::Workload => "workload-specific",
            Self::Namespace => "namespace-wide",
            Self::Mesh => "mesh-wide",
        }
    }
}

/// The peer authentications in force for one workload, one per level.
#[derive(Default)]
struct PeerSlots<'a> {
    workload: Option<In<'a, ast::PeerAuthentication>>,
    namespace: Option<In<'a, ast::PeerAuthentication>>,
    mesh: Option<In<'a, ast::PeerAuthentication>>,
}

impl<'a> PeerSlots<'a> {
    fn slot(&mut self, level: Level) -> &mut Option<In<'a, ast::PeerAuthentication>> {
        match level {
            Level::Workload => &mut self.workload,
            Level::Namespace => &mut self.namespace,
            Level::Mesh => &mut self.mesh,
        }
    }
}

impl<'a> Lowerer<'a> {
    /// Fills the security-related fields of `workloads` (same order as `decls`) and
    /// `Service::identities`, from the workload declarations and the policy `items` (in file
    /// order, then declaration order).
    pub(super) fn security(
        &mut self,
        decls: &[In<'a, ast::Workload>],
        workloads: &mut [Workload],
        services: &mut [Service],
        index: &ServiceIndex<'_>,
        items: &[(FileId, &'a ast::Item)],
    ) -> Telemetry {
        let targets: Vec<Target<'a>> = decls
            .iter()
            .zip(workloads.iter_mut())
            .map(|(&(file, w), out)| {
                out.serves = self.serves(file, w, index);
                out.labels = self.labels(file, &w.labels);
                Target {
                    name: &w.name.name,
                    namespace: w.namespace.as_ref().map_or_else(
                        || spec::host::DEFAULT_NAMESPACE.to_owned(),
                        |n| n.name.clone(),
                    ),
                    labels: out.labels.clone(),
                }
            })
            .collect();

        let mut by_namespace: HashMap<&str, Vec<usize>> = HashMap::new();
        for (w, target) in targets.iter().enumerate() {
            by_namespace.entry(&target.namespace).or_default().push(w);
        }
        let targets = Targets {
            list: &targets,
            by_namespace,
        };
        let mesh_telemetry = self.telemetry_all(decls, workloads, items, &targets);
        self.sidecars(decls, workloads, items, &targets);

        let mut seen: HashMap<(&str, Option<&str>, &str), SourceSpan> = HashMap::new();
        let mut peers: Vec<PeerSlots<'a>> = decls.iter().map(|_| PeerSlots::default()).collect();
        let mut conflicts: HashSet<(SourceSpan, SourceSpan)> = HashSet::new();
        for &(file, item) in items {
            match item {
                ast::Item::Authorization(a) => {
                    self.unique_name(&mut seen, "authorization", file, &a.name, &a.target);
                    let selected = self.select(file, &a.name, &a.target, &targets);
                    let policy = self.authorization(file, a);
                    for w in selected {
                        workloads[w].authorization.push(policy.clone());
                    }
                }
                ast::Item::Authentication(a) => {
                    self.unique_name(&mut seen, "authentication", file, &a.name, &a.target);
                    let selected = self.select(file, &a.name, &a.target, &targets);
                    let rules: Vec<JwtRule> = a.jwt.iter().map(|j| self.jwt(file, j)).collect();
                    for w in selected {
                        workloads[w].jwt.extend(rules.iter().cloned());
                    }
                }
                ast::Item::PeerAuthentication(p) => {
                    let kind = "peer_authentication";
                    self.unique_name(&mut seen, kind, file, &p.name, &p.target);
                    let selected = self.select(file, &p.name, &p.target, &targets);
                    let level = level(&p.target);
                    self.port_modes(file, p, level);
                    for w in selected {
                        let slot = peers[w].slot(level);
                        match *slot {
                            Some((first_file, first)) => {
                                let pair = (
                                    self.at(first_file, first.name.span),
                                    self.at(file, p.name.span),
                                );
                                if conflicts.insert(pair) {
                                    let name = targets.list[w].name;
                                    self.peer_conflict(file, p, pair.0, name, level);
                                }
                            }
                            None => *slot = Some((file, p)),
                        }
                    }
                }
                // Lowered first, by `telemetry_all`: workloads need the mesh-wide default.
                ast::Item::Telemetry(_) => {}
                // Lowered by `sidecars`, which needs them all to pick by level.
                ast::Item::Sidecar(_) => {}
                // `lower` collects only the four kinds above into `items`.
                ast::Item::Service(_) | ast::Item::Route(_) | ast::Item::Workload(_) => {}
            }
        }

        for (w, out) in workloads.iter_mut().enumerate() {
            self.tls_modes(decls[w].1, out, &peers[w]);
        }
        // A server presents its identity only where it speaks mTLS: a workload whose inbound
        // ports are all `disable` is called in plaintext (Istio's auto mTLS does the same).
        for w in workloads.iter() {
            let plaintext_only =
                !w.inbound.is_empty() && w.inbound.iter().all(|p| p.tls == TlsMode::Disable);
            if let Some(identity) = w.identity.as_ref().filter(|_| !plaintext_only) {
                for &s in &w.serves {
                    services[s as usize].identities.push(identity.clone());
                }
            }
        }
        for s in services.iter_mut() {
            s.identities.sort_unstable();
            s.identities.dedup();
        }
        mesh_telemetry
    }

    /// The services a workload serves, resolved, ascending.
    fn serves(&mut self, file: FileId, w: &ast::Workload, index: &ServiceIndex<'_>) -> Vec<u32> {
        let mut out = Vec::new();
        for service in &w.serves {
            match index.get(&service.name) {
                Some(i) => out.push(i),
                None => self.unknown_service(file, service, index),
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Reports a second policy of one kind with the same name in the same namespace.
    fn unique_name(
        &mut self,
        seen: &mut HashMap<(&'a str, Option<&'a str>, &'a str), SourceSpan>,
        kind: &'a str,
        file: FileId,
        name: &'a ast::Ident,
        target: &'a ast::PolicyTarget,
    ) {
        let namespace = target.namespace.as_ref().map(|n| n.name.as_str());
        let key = (kind, namespace, name.name.as_str());
        if let Some(&first) = seen.get(&key) {
            self.duplicate(format!("{kind} `{}`", name.name), file, name.span, first);
        } else {
            seen.insert(key, self.at(file, name.span));
        }
    }

    /// Indexes of the workloads a policy applies to, ascending (workloads are sorted by name,
    /// then namespace).
    /// Costs the number of workloads named or in the namespace, not of every workload.
    fn select(
        &mut self,
        file: FileId,
        policy: &ast::Ident,
        target: &ast::PolicyTarget,
        targets: &Targets<'_, '_>,
    ) -> Vec<usize> {
        let workloads = targets.list;
        let namespace = target.namespace.as_ref().map(|n| n.name.as_str());
        let in_namespace = |w: &Target<'_>| namespace.is_none_or(|ns| w.namespace == ns);
        // Set when a named workload was already reported: "selects nothing" would repeat it.
        let mut reported = false;
        let mut selected: Vec<usize> = match (&target.workloads, namespace) {
            (None, None) => (0..workloads.len()).collect(),
            (None, Some(ns)) => targets.by_namespace.get(ns).cloned().unwrap_or_default(),
            (Some(names), _) => {
                let mut named = Vec::new();
                for name in names {
                    // Workloads are sorted by name: those of this name are adjacent, one per
                    // namespace.
                    let first = workloads.partition_point(|w| w.name < name.name.as_str());
                    let same_name = (first..workloads.len())
                        .take_while(|&w| workloads[w].name == name.name.as_str());
                    let before = named.len();
                    named.extend(same_name.clone().filter(|&w| in_namespace(&workloads[w])));
                    if named.len() > before {
                        continue;
                    }
                    match same_name.clone().next() {
                        Some(w) => {
                            reported = true;
                            let message = format!(
                                "`{}` names workload `{}`, which is in namespace `{}`, not `{}`",
                                policy.name,
                                name.name,
                                workloads[w].namespace,
                                namespace.unwrap_or_default()
                            );
                            self.report(
                                Code::WorkloadOutsideNamespace,
                                file,
                                name.span,
                                message,
                                "a policy only applies inside its namespace: fix the policy's \
                                 `namespace` or move the workload into a policy of its own",
                            );
                        }
                        None => {
                            reported = true;
                            let declared: Vec<&str> = workloads.iter().map(|w| w.name).collect();
                            let help = name_help("workloads", &name.name, &declared);
                            let message = format!("unknown workload `{}`", name.name);
                            self.report(Code::UnknownWorkload, file, name.span, message, &help);
                        }
                    }
                }
                named.sort_unstable();
                named.dedup();
                named
            }
        };
        if let Some(selector) = &target.selector {
            let wanted = self.labels(file, selector);
            selected.retain(|&w| {
                wanted
                    .iter()
                    .all(|(k, v)| workloads[w].labels.get(k) == Some(v))
            });
        }
        if selected.is_empty() && !reported {
            let scope = match namespace {
                Some(ns) => format!("namespace `{ns}`"),
                None => "the mesh".to_owned(),
            };
            let message = format!(
                "policy `{}` selects no workload in {scope}; it has no effect",
                policy.name
            );
            self.report(
                Code::PolicySelectsNothing,
                file,
                policy.span,
                message,
                "check its `namespace`, `workloads` or label selector against the workloads",
            );
        }
        selected
    }

    fn authorization(&mut self, file: FileId, a: &ast::Authorization) -> AuthorizationPolicy {
        AuthorizationPolicy {
            name: a.name.name.clone(),
            action: a.action.map_or(AuthzAction::Allow, |(action, _)| action),
            rules: a
                .rules
                .iter()
                .map(|r| self.authz_rule(file, r, a.origin))
                .collect(),
            source: self.location(file, a.keyword),
        }
    }

    fn authz_rule(
        &mut self,
        file: FileId,
        rule: &ast::AuthzRule,
        origin: ast::Origin,
    ) -> AuthzRule {
        let from = rule
            .from
            .iter()
            .map(|f| AuthzSource {
                principals: self.principals(file, &f.principals),
                not_principals: self.principals(file, &f.not_principals),
                request_principals: self.patterns(file, &f.request_principals),
                not_request_principals: self.patterns(file, &f.not_request_principals),
                namespaces: self.patterns(file, &f.namespaces),
                not_namespaces: self.patterns(file, &f.not_namespaces),
                ip_blocks: self.ip_blocks(file, &f.ip_blocks),
                not_ip_blocks: self.ip_blocks(file, &f.not_ip_blocks),
            })
            .collect();
        let to = rule
            .to
            .iter()
            .map(|t| AuthzOperation {
                hosts: self.hosts_patterns(file, &t.hosts),
                not_hosts: self.hosts_patterns(file, &t.not_hosts),
                methods: self.methods(file, &t.methods, origin),
                not_methods: self.methods(file, &t.not_methods, origin),
                paths: self.paths(file, &t.paths),
                not_paths: self.paths(file, &t.not_paths),
                ports: t
                    .ports
                    .iter()
                    .filter_map(|&p| self.port_number(file, p))
                    .collect(),
                not_ports: t
                    .not_ports
                    .iter()
                    .filter_map(|&p| self.port_number(file, p))
                    .collect(),
            })
            .collect();
        let when = rule
            .when
            .iter()
            .filter_map(|w| self.condition(file, w))
            .collect();
        AuthzRule { from, to, when }
    }

    fn invalid_authz(&mut self, file: FileId, span: Span, message: String, help: &str) {
        self.report(Code::InvalidAuthzValue, file, span, message, help);
    }

    /// An Istio string pattern: `*`, `prefix*`, `*suffix` or exact.
    fn pattern(&mut self, file: FileId, s: &ast::Str) -> Option<StringPattern> {
        let v = s.value.as_str();
        let pattern = if v == "*" {
            StringPattern::Any
        } else if let Some(rest) = v.strip_prefix('*').filter(|r| !r.contains('*')) {
            StringPattern::Suffix(rest.to_owned())
        } else if let Some(rest) = v.strip_suffix('*').filter(|r| !r.contains('*')) {
            StringPattern::Prefix(rest.to_owned())
        } else if !v.contains('*') && !v.is_empty() {
            StringPattern::Exact(v.to_owned())
        } else if v.is_empty() {
            self.invalid_authz(
                file,
                s.span,
                "empty value in an authorization policy".to_owned(),
                "write a value, or `\"*\"` for any value",
            );
            return None;
        } else {
            self.invalid_authz(
                file,
                s.span,
                format!("{v:?} has a `*` that is neither at the start nor at the end"),
                "a pattern is exact, `prefix*`, `*suffix` or `*`",
            );
            return None;
        };
        Some(pattern)
    }

    fn patterns(&mut self, file: FileId, values: &[ast::Str]) -> Vec<StringPattern> {
        values
            .iter()
            .filter_map(|v| self.pattern(file, v))
            .collect()
    }

    /// Caller addresses and CIDR blocks; anything else is E0144.
    fn ip_blocks(&mut self, file: FileId, values: &[ast::Str]) -> Vec<spec::AddressBlock> {
        let mut blocks = Vec::new();
        for v in values {
            match v.value.parse() {
                Ok(block) => blocks.push(block),
                Err(_) => {
                    let message = format!("{:?} is not an IP address or CIDR block", v.value);
                    let help = "ip blocks are addresses or CIDR ranges, e.g. \"10.0.0.0/8\"";
                    self.invalid_authz(file, v.span, message, help);
                }
            }
        }
        blocks
    }

    /// Principals in `spiffe://` form; `cluster.local/ns/x/sa/y` gains the scheme.
    fn principals(&mut self, file: FileId, values: &[ast::Str]) -> Vec<StringPattern> {
        values
            .iter()
            .filter_map(|v| self.pattern(file, v).map(spiffe))
            .collect()
    }

    /// Host patterns, lower-cased (hosts compare case-insensitively).
    fn hosts_patterns(&mut self, file: FileId, values: &[ast::Str]) -> Vec<StringPattern> {
        self.patterns(file, values)
            .into_iter()
            .map(|p| match p {
                StringPattern::Exact(s) => StringPattern::Exact(s.to_ascii_lowercase()),
                StringPattern::Prefix(s) => StringPattern::Prefix(s.to_ascii_lowercase()),
                StringPattern::Suffix(s) => StringPattern::Suffix(s.to_ascii_lowercase()),
                StringPattern::Any => StringPattern::Any,
            })
            .collect()
    }

    /// Method patterns. `.mesh` and TOML methods must be upper-case tokens (a lower-case one is
    /// almost always a typo that would never match); Istio accepts any non-empty value, so an
    /// imported policy keeps it as written (it matches the request method exactly, case
    /// included).
    fn methods(
        &mut self,
        file: FileId,
        values: &[ast::Str],
        origin: ast::Origin,
    ) -> Vec<StringPattern> {
        let mut out = Vec::new();
        for v in values {
            let Some(p) = self.pattern(file, v) else {
                continue;
            };
            let text = pattern_text(&p);
            if origin == ast::Origin::Mesh
                && !text
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
            {
                self.invalid_authz(
                    file,
                    v.span,
                    format!("method {:?} is not an upper-case HTTP method", v.value),
                    "write methods in upper case, e.g. \"GET\", \"POST\"",
                );
                continue;
            }
            out.push(p);
        }
        out
    }

    fn paths(&mut self, file: FileId, values: &[ast::Str]) -> Vec<StringPattern> {
        let mut out = Vec::new();
        for v in values {
            let Some(p) = self.pattern(file, v) else {
                continue;
            };
            if let StringPattern::Exact(s) | StringPattern::Prefix(s) = &p {
                if !s.starts_with('/') {
                    self.invalid_authz(
                        file,
                        v.span,
                        format!("path {:?} does not start with `/`", v.value),
                        "request paths start with `/`, e.g. \"/api/*\" (or use \"*suffix\")",
                    );
                    continue;
                }
            }
            out.push(p);
        }
        out
    }

    fn condition(&mut self, file: FileId, w: &ast::AuthzWhen) -> Option<AuthzCondition> {
        let key = self.condition_key(file, &w.key);
        if w.values.is_empty() && w.not_values.is_empty() {
            self.invalid_authz(
                file,
                w.span,
                format!("condition on {:?} has no values", w.key.value),
                "give it `values` or `not_values`",
            );
            return None;
        }
        let key = key?;
        let normalise = |this: &mut Self, values: &[ast::Str]| {
            if key == ConditionKey::SourcePrincipal {
                this.principals(file, values)
            } else {
                this.patterns(file, values)
            }
        };
        for v in w.values.iter().chain(&w.not_values) {
            self.check_condition_value(file, &key, &w.key.value, v);
        }
        let values = normalise(self, &w.values);
        let not_values = normalise(self, &w.not_values);
        Some(AuthzCondition {
            key,
            values,
            not_values,
        })
    }

    /// Ports and addresses must be what the attribute can hold: `destination.port` values are
    /// port numbers, `source.ip` values are IP addresses or CIDR ranges.
    fn check_condition_value(
        &mut self,
        file: FileId,
        key: &ConditionKey,
        name: &str,
        v: &ast::Str,
    ) {
        let (valid, help) = match key {
            ConditionKey::DestinationPort => (
                v.value.parse::<u16>().is_ok_and(|p| p != 0),
                "destination.port values are port numbers, 1 to 65535",
            ),
            ConditionKey::SourceIp => (
                v.value.parse::<spec::AddressBlock>().is_ok(),
                "source.ip values are IP addresses or CIDR ranges, e.g. \"10.0.0.0/8\"",
            ),
            _ => return,
        };
        if !valid {
            let message = format!("{:?} is not a valid value of `{name}`", v.value);
            self.invalid_authz(file, v.span, message, help);
        }
    }

    fn condition_key(&mut self, file: FileId, key: &ast::Str) -> Option<ConditionKey> {
        let k = key.value.as_str();
        let parsed = parse_condition_key(k);
        if parsed.is_none() {
            let message = format!("unsupported condition key {k:?}");
            let help = format!("supported keys: {SUPPORTED_KEYS}");
            self.report(Code::UnknownConditionKey, file, key.span, message, &help);
        }
        parsed
    }

    fn jwt(&mut self, file: FileId, j: &ast::JwtRule) -> JwtRule {
        if j.issuer.value.is_empty() {
            self.report(
                Code::InvalidValue,
                file,
                j.issuer.span,
                "empty JWT issuer".to_owned(),
                "write the `iss` claim tokens must carry, e.g. \"https://auth.example.com\"",
            );
        }
        if j.jwks.value.is_empty() {
            self.report(
                Code::InvalidValue,
                file,
                j.jwks.span,
                "empty JWKS file path".to_owned(),
                "write the path of the issuer's JWKS file",
            );
        }
        for audience in &j.audiences {
            if audience.value.is_empty() {
                self.report(
                    Code::InvalidValue,
                    file,
                    audience.span,
                    "empty JWT audience".to_owned(),
                    "remove it, or write the `aud` value tokens must carry",
                );
            }
        }
        JwtRule {
            issuer: j.issuer.value.clone(),
            audiences: j.audiences.iter().map(|a| a.value.clone()).collect(),
            jwks_file: j.jwks.value.clone(),
            source: self.location(file, j.span),
        }
    }

    /// Checks a peer authentication's port overrides (ranges, duplicates, target).
    fn port_modes(&mut self, file: FileId, p: &ast::PeerAuthentication, level: Level) {
        if level != Level::Workload {
            if let Some((port, _)) = p.port_modes.first() {
                let message = format!(
                    "peer authentication `{}` has port overrides but no workload target",
                    p.name.name
                );
                self.report(
                    Code::PortModeWithoutWorkload,
                    file,
                    port.span,
                    message,
                    "port overrides need `workloads` (or a label selector): ports belong to \
                     workloads",
                );
            }
        }
        let mut seen: HashMap<u64, Span> = HashMap::new();
        for (port, _) in &p.port_modes {
            if let Some(&first) = seen.get(&port.value) {
                let first = self.at(file, first);
                let what = format!(
                    "port {} of peer authentication `{}`",
                    port.value, p.name.name
                );
                self.duplicate(what, file, port.span, first);
                continue;
            }
            seen.insert(port.value, port.span);
            self.port_number(file, *port);
        }
    }

    fn peer_conflict(
        &mut self,
        file: FileId,
        p: &ast::PeerAuthentication,
        first: SourceSpan,
        workload: &str,
        level: Level,
    ) {
        let message = format!(
            "peer authentication `{}` and the one at {} are both {} for workload `{workload}`",
            p.name.name,
            self.sources.describe(first),
            level.describe()
        );
        self.report(
            Code::PeerAuthenticationConflict,
            file,
            p.name.span,
            message,
            "keep one peer authentication per workload at each level (mesh, namespace, workload)",
        );
    }

    /// The effective mTLS mode of every inbound port: explicit `mtls` on the inbound line, then
    /// the workload-specific policy's port override, then its mode, then the namespace-wide,
    /// then the mesh-wide mode, then permissive.
    fn tls_modes(&mut self, decl: &ast::Workload, out: &mut Workload, peers: &PeerSlots<'_>) {
        if let Some((pfile, p)) = peers.workload {
            let mut checked: HashSet<u64> = HashSet::new();
            for (port, _) in &p.port_modes {
                // Out-of-range and repeated ports are reported by `port_modes`.
                let valid = (1..=u64::from(u16::MAX)).contains(&port.value);
                if !valid || !checked.insert(port.value) {
                    continue;
                }
                if !out.inbound.iter().any(|i| u64::from(i.port) == port.value) {
                    let message = format!(
                        "peer authentication `{}` overrides port {}, which workload `{}` does \
                         not expose",
                        p.name.name, port.value, out.name
                    );
                    let ports: Vec<String> =
                        out.inbound.iter().map(|i| i.port.to_string()).collect();
                    let help = if ports.is_empty() {
                        "the workload has no inbound port".to_owned()
                    } else {
                        format!("its inbound ports: {}", ports.join(", "))
                    };
                    self.report(Code::UnusedPortMode, pfile, port.span, message, &help);
                }
            }
        }
        let mode_of = |slot: Option<In<'_, ast::PeerAuthentication>>| {
            slot.and_then(|(_, p)| p.mode.map(|m| m.value))
        };
        let inherited = mode_of(peers.workload)
            .or_else(|| mode_of(peers.namespace))
            .or_else(|| mode_of(peers.mesh))
            .unwrap_or(TlsMode::Permissive);
        for inbound in &mut out.inbound {
            let explicit = decl
                .inbound
                .iter()
                .find(|i| i.port.value == u64::from(inbound.port))
                .and_then(|i| i.mtls.map(|m| m.value));
            let port_override = peers.workload.and_then(|(_, p)| {
                p.port_modes
                    .iter()
                    .find(|(n, _)| n.value == u64::from(inbound.port))
                    .map(|(_, m)| m.value)
            });
            inbound.tls = explicit.or(port_override).unwrap_or(inherited);
        }
    }

    /// Lowers every workload's telemetry, which it returns: the mesh-wide default (the DSL's
    /// block, or an Istio `Telemetry` in the root namespace without a selector), then imported
    /// namespace-wide ones, then those selecting the workload, then the workload's own block,
    /// each setting only the fields it has (Istio's hierarchy).
    fn telemetry_all(
        &mut self,
        decls: &[In<'a, ast::Workload>],
        workloads: &mut [Workload],
        items: &[(FileId, &'a ast::Item)],
        targets: &Targets<'_, '_>,
    ) -> Telemetry {
        let mut mesh: Option<In<'a, ast::Telemetry>> = None;
        // Per workload, the scoped telemetry applying to it at each level, and where.
        let mut scoped: Vec<[Option<In<'a, ast::Telemetry>>; 2]> = vec![[None, None]; decls.len()];
        for &(file, item) in items {
            let ast::Item::Telemetry(t) = item else {
                continue;
            };
            let Some((name, target)) = t.target.as_deref().filter(|(_, target)| !is_mesh(target))
            else {
                match mesh {
                    Some((first_file, first)) => {
                        let first = self.at(first_file, first.span);
                        self.duplicate("the mesh-wide telemetry".to_owned(), file, t.span, first);
                    }
                    None => mesh = Some((file, t)),
                }
                continue;
            };
            let level = usize::from(target.selector.as_ref().is_some_and(|s| !s.is_empty()));
            for w in self.select(file, name, target, targets) {
                match scoped[w][level] {
                    Some((first_file, first)) => {
                        let first = self.at(first_file, first.span);
                        let what = format!("a telemetry for workload `{}`", targets.list[w].name);
                        self.duplicate(what, file, t.span, first);
                    }
                    None => scoped[w][level] = Some((file, t)),
                }
            }
        }
        let default = match mesh {
            Some((file, t)) => self.telemetry(file, t, &Telemetry::default()),
            None => Telemetry::default(),
        };
        for (w, (&(file, decl), out)) in decls.iter().zip(workloads.iter_mut()).enumerate() {
            let mut telemetry = default.clone();
            for &(t_file, t) in scoped[w].iter().flatten() {
                telemetry = self.telemetry(t_file, t, &telemetry);
            }
            if let Some(own) = &decl.telemetry {
                telemetry = self.telemetry(file, own, &telemetry);
            }
            out.telemetry = telemetry;
        }
        default
    }

    /// Sets each workload's outbound traffic policy from the Istio `Sidecar` applying to it,
    /// as Istio picks one: the one selecting it by label, else its namespace's, else the root
    /// namespace's. Its `outboundTrafficPolicy.mode`, if set, is the policy (unset: Istio's
    /// mesh default, ALLOW_ANY). A workload's own `outbound_traffic` line beats them all. Two
    /// at one level for one workload are E0103.
    fn sidecars(
        &mut self,
        decls: &[In<'a, ast::Workload>],
        workloads: &mut [Workload],
        items: &[(FileId, &'a ast::Item)],
        targets: &Targets<'_, '_>,
    ) {
        // Per workload: the sidecar applying at each level (mesh, namespace, selector).
        let mut applying: Vec<[Option<In<'a, ast::Sidecar>>; 3]> = vec![[None; 3]; decls.len()];
        for &(file, item) in items {
            let ast::Item::Sidecar(sidecar) = item else {
                continue;
            };
            let (name, target) = &*sidecar.target;
            let level = if is_mesh(target) {
                0
            } else {
                1 + usize::from(target.selector.as_ref().is_some_and(|s| !s.is_empty()))
            };
            for w in self.select(file, name, target, targets) {
                match applying[w][level] {
                    Some((first_file, first)) => {
                        let first = self.at(first_file, first.span);
                        let what = format!("a Sidecar for workload `{}`", targets.list[w].name);
                        self.duplicate(what, file, sidecar.span, first);
                    }
                    None => applying[w][level] = Some((file, sidecar)),
                }
            }
        }
        for (w, out) in workloads.iter_mut().enumerate() {
            if !decls[w].1.outbound_traffic.is_empty() {
                continue;
            }
            let chosen = applying[w].iter().rev().flatten().next();
            let mode = chosen.and_then(|(_, s)| s.outbound_traffic.as_ref());
            out.outbound_traffic = match mode.map(|m| m.name.as_str()) {
                Some("registry_only") => spec::OutboundTraffic::RegistryOnly,
                _ => spec::OutboundTraffic::AllowAny,
            };
        }
    }

    /// `t` applied over `base`: each field set in `t` replaces the base's.
    fn telemetry(&mut self, file: FileId, t: &ast::Telemetry, base: &Telemetry) -> Telemetry {
        let mut out = base.clone();
        match &t.access_log {
            None => {}
            Some(ast::AccessLog::Off) => out.access_log = None,
            Some(ast::AccessLog::Json) => out.access_log = Some(AccessLog::Json),
            Some(ast::AccessLog::Text(format)) if format.value.is_empty() => self.report(
                Code::InvalidValue,
                file,
                format.span,
                "empty access log format".to_owned(),
                "write a format such as \"%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%\", `json`, \
                 or `access_log off`",
            ),
            Some(ast::AccessLog::Text(format)) => match spec::access_log::parse(&format.value) {
                Ok(_) => out.access_log = Some(AccessLog::Text(format.value.clone())),
                Err(e) => self.report(
                    Code::InvalidAccessLogFormat,
                    file,
                    within_string(format, e.offset, e.len),
                    e.message,
                    "docs/access-log.md lists the operators meshd serves",
                ),
            },
        }
        if let Some(on) = t.metrics {
            out.metrics_disabled = !on;
        }
        if let Some(url) = &t.trace_collector {
            match spec::collector::parse(&url.value) {
                Ok(_) => out.trace_collector = Some(url.value.clone()),
                Err(e) => self.report(
                    Code::InvalidValue,
                    file,
                    url.span,
                    e.to_string(),
                    "write http://HOST:PORT/api/v2/spans (Zipkin v2) or \
                     http://HOST:PORT/v1/traces (OTLP/HTTP)",
                ),
            }
        }
        if let Some(p) = t.trace_sampling {
            match u32::try_from(p.per_million) {
                Ok(v) if v <= 1_000_000 => out.trace_sampling_per_million = v,
                _ => self.report(
                    Code::InvalidValue,
                    file,
                    p.span,
                    "trace sampling is above 100%".to_owned(),
                    "trace sampling is a percentage, 0% to 100%",
                ),
            }
        }
        out
    }
}

/// The span of `len` bytes at `offset` in a string's value; the whole string when escapes
/// make the value's offsets differ from the source's.
fn within_string(string: &ast::Str, offset: usize, len: usize) -> Span {
    let quoted = string.value.len() + 2;
    if string.span.end - string.span.start == quoted {
        let start = string.span.start + 1 + offset;
        Span::new(start, start + len)
    } else {
        string.span
    }
}

/// Whether an imported telemetry's target is the whole mesh: the root namespace (no namespace)
/// without a selector.
fn is_mesh(target: &ast::PolicyTarget) -> bool {
    target.namespace.is_none()
        && target.workloads.is_none()
        && target.selector.as_ref().is_none_or(Vec::is_empty)
}

/// The peer authentication level a target sets: with workloads or a non-empty selector it is
/// workload-specific; an empty selector selects the whole namespace, as in Istio.
fn level(target: &ast::PolicyTarget) -> Level {
    let specific =
        target.workloads.is_some() || target.selector.as_ref().is_some_and(|s| !s.is_empty());
    if specific {
        Level::Workload
    } else if target.namespace.is_some() {
        Level::Namespace
    } else {
        Level::Mesh
    }
}

/// A principal pattern in `spiffe://` form.
fn spiffe(p: StringPattern) -> StringPattern {
    let add = |s: String| {
        if s.starts_with("spiffe://") {
            s
        } else {
            format!("spiffe://{s}")
        }
    };
    match p {
        StringPattern::Exact(s) => StringPattern::Exact(add(s)),
        StringPattern::Prefix(s) => StringPattern::Prefix(add(s)),
        other => other,
    }
}

/// The literal part of a pattern.
fn pattern_text(p: &StringPattern) -> &str {
    match p {
        StringPattern::Exact(s) | StringPattern::Prefix(s) | StringPattern::Suffix(s) => s,
        StringPattern::Any => "",
    }
}

/// `[a][b]` into `["a", "b"]`; `None` unless the text is one or more non-empty bracketed names.
fn brackets(mut rest: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let body = rest.strip_prefix('[')?;
        let end = body.find(']')?;
        let name = &body[..end];
        if name.is_empty() || name.contains('[') {
            return None;
        }
        out.push(name.to_owned());
        rest = &body[end + 1..];
    }
    (!out.is_empty()).then_some(out)
}

/// The attribute a `when` condition key names, or `None` for a key the snapshot cannot hold
/// (the Istio import uses this too, to drop such conditions with a warning before lowering).
pub(crate) fn parse_condition_key(key: &str) -> Option<ConditionKey> {
    match key {
        "request.auth.principal" => Some(ConditionKey::RequestPrincipal),
        "request.auth.audiences" => Some(ConditionKey::JwtAudience),
        "request.auth.presenter" => Some(ConditionKey::JwtPresenter),
        "source.principal" => Some(ConditionKey::SourcePrincipal),
        "source.namespace" => Some(ConditionKey::SourceNamespace),
        "source.ip" => Some(ConditionKey::SourceIp),
        "destination.port" => Some(ConditionKey::DestinationPort),
        _ => {
            if let Some(rest) = key.strip_prefix("request.headers") {
                match brackets(rest).as_deref() {
                    Some([name]) => Some(ConditionKey::RequestHeader(name.to_ascii_lowercase())),
                    _ => None,
                }
            } else if let Some(rest) = key.strip_prefix("request.auth.claims") {
                brackets(rest).map(ConditionKey::JwtClaim)
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
