//! The security kinds: schema checks Istio's CRD and webhook make (E0201), then the lowering of
//! AuthorizationPolicy, PeerAuthentication and RequestAuthentication into AST items. Whatever the
//! AST cannot hold is reported (W0200) and always resolved towards denying more, never less.

use super::yaml::{Node, Value};
use super::Out;
use crate::ast;
use crate::diag::Span;

/// Checks the parts of a security resource's `spec` that Istio's CRD and webhook validate.
pub(super) fn validate(out: &mut Out<'_>, kind: &str, spec: Option<&Node>) {
    let Some(spec) = spec else { return };
    if out.map(spec, "spec").is_none() {
        return;
    }
    match kind {
        "AuthorizationPolicy" => authorization_policy(out, spec),
        "PeerAuthentication" => peer_authentication(out, spec),
        _ => request_authentication(out, spec),
    }
}

fn authorization_policy(out: &mut Out<'_>, spec: &Node) {
    let Some(rules) = spec.get("rules") else {
        return;
    };
    for (i, rule) in out
        .seq(rules, "spec.rules")
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let Some(from) = rule.get("from") else {
            continue;
        };
        let path = format!("spec.rules[{i}].from");
        for (j, from) in out.seq(from, &path).unwrap_or_default().iter().enumerate() {
            let Some(source) = from.get("source") else {
                continue;
            };
            let Some(accounts) = source.get("serviceAccounts") else {
                continue;
            };
            if ["namespaces", "principals"]
                .iter()
                .any(|f| source.get(f).is_some())
            {
                out.schema(
                    accounts.span,
                    format!(
                        "`{path}[{j}].source.serviceAccounts` cannot be set together with \
                         `namespaces` or `principals`"
                    ),
                );
            }
        }
    }
}

const MTLS_MODES: &[&str] = &["UNSET", "DISABLE", "PERMISSIVE", "STRICT"];

fn mtls_mode(out: &mut Out<'_>, mtls: &Node, path: &str) {
    let Some(mode) = mtls.get("mode") else {
        return;
    };
    let path = format!("{path}.mode");
    if let Some(value) = out.str(mode, &path) {
        if !MTLS_MODES.contains(&value) {
            out.schema(
                mode.span,
                format!(
                    "`{path}`: unsupported value {value:?}, expected one of {}",
                    MTLS_MODES.join(", ")
                ),
            );
        }
    }
}

fn peer_authentication(out: &mut Out<'_>, spec: &Node) {
    if let Some(mtls) = spec.get("mtls") {
        mtls_mode(out, mtls, "spec.mtls");
    }
    let Some(ports) = spec.get("portLevelMtls") else {
        return;
    };
    let Some(entries) = out.map(ports, "spec.portLevelMtls") else {
        return;
    };
    if entries.is_empty() {
        out.schema(
            ports.span,
            "`spec.portLevelMtls` must have at least one port".to_owned(),
        );
    }
    if spec.get("selector").is_none() {
        out.schema(
            ports.span,
            "`spec.portLevelMtls` requires `spec.selector`".to_owned(),
        );
    }
    for (port, mtls) in entries {
        let number = match &port.value {
            super::yaml::Value::Int(n) => Some(*n),
            super::yaml::Value::Str(s) => s.parse::<i64>().ok(),
            _ => None,
        };
        match number {
            Some(n) if (1..=65535).contains(&n) => {}
            Some(n) => out.schema(
                port.span,
                format!("`spec.portLevelMtls` port {n} must be between 1 and 65535"),
            ),
            None => out.schema(
                port.span,
                format!(
                    "`spec.portLevelMtls` key {} is not a port number",
                    port.display()
                ),
            ),
        }
        mtls_mode(out, mtls, "spec.portLevelMtls[]");
    }
}

fn non_empty_strings(out: &mut Out<'_>, list: Option<&Node>, path: &str) {
    let Some(list) = list else { return };
    for (i, item) in out.seq(list, path).unwrap_or_default().iter().enumerate() {
        let path = format!("{path}[{i}]");
        if out.str(item, &path) == Some("") {
            out.schema(item.span, format!("`{path}` must not be empty"));
        }
    }
}

fn required_string(out: &mut Out<'_>, parent: &Node, field: &str, path: &str) -> Option<String> {
    match parent.get(field) {
        None => {
            out.schema(parent.span, format!("`{path}.{field}`: required value"));
            None
        }
        Some(node) => {
            let value = out.str(node, &format!("{path}.{field}"))?;
            if value.is_empty() {
                out.schema(node.span, format!("`{path}.{field}` must not be empty"));
            }
            Some(value.to_owned())
        }
    }
}

fn matches_pattern(value: &str, allowed: impl Fn(char) -> bool) -> bool {
    !value.is_empty() && value.chars().all(allowed)
}

fn target_ref(out: &mut Out<'_>, target: &Node, path: &str) {
    if out.map(target, path).is_none() {
        return;
    }
    required_string(out, target, "name", path);
    if let Some(namespace) = target.get("namespace") {
        if namespace.as_str().is_some_and(|n| !n.is_empty()) {
            out.schema(
                namespace.span,
                format!("`{path}.namespace`: cross namespace referencing is not supported"),
            );
        }
    }
    if let Some(group) = target.get("group") {
        if let Some(value) = out.str(group, &format!("{path}.group")) {
            let ok = value.is_empty()
                || value.split('.').all(|part| {
                    matches_pattern(part, |c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
                    }) && !part.starts_with('-')
                        && !part.ends_with('-')
                });
            if !ok {
                out.schema(
                    group.span,
                    format!("`{path}.group` {value:?} is not a valid API group"),
                );
            }
        }
    }
    if let Some(kind) = target.get("kind") {
        if let Some(value) = out.str(kind, &format!("{path}.kind")) {
            let ok = value.starts_with(|c: char| c.is_ascii_alphabetic())
                && matches_pattern(value, |c| c.is_ascii_alphanumeric() || c == '-')
                && !value.ends_with('-');
            if !ok {
                out.schema(
                    kind.span,
                    format!("`{path}.kind` {value:?} is not a valid kind"),
                );
            }
        }
    }
}

fn request_authentication(out: &mut Out<'_>, spec: &Node) {
    let targets = spec.get("targetRef").or_else(|| spec.get("targetRefs"));
    if let (Some(targets), Some(_)) = (targets, spec.get("selector")) {
        out.schema(
            targets.span,
            "only one of `spec.targetRefs` (or `targetRef`) and `spec.selector` can be set"
                .to_owned(),
        );
    }
    if let Some(target) = spec.get("targetRef") {
        target_ref(out, target, "spec.targetRef");
    }
    if let Some(list) = spec.get("targetRefs") {
        for (i, target) in out
            .seq(list, "spec.targetRefs")
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            target_ref(out, target, &format!("spec.targetRefs[{i}]"));
        }
    }
    let Some(rules) = spec.get("jwtRules") else {
        return;
    };
    for (i, rule) in out
        .seq(rules, "spec.jwtRules")
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let path = format!("spec.jwtRules[{i}]");
        if rule.entries().is_none() {
            out.schema(
                rule.span,
                format!("`{path}` must be a mapping, found {}", rule.kind()),
            );
            continue;
        }
        non_empty_strings(out, rule.get("audiences"), &format!("{path}.audiences"));
        non_empty_strings(out, rule.get("fromParams"), &format!("{path}.fromParams"));
        non_empty_strings(out, rule.get("fromCookies"), &format!("{path}.fromCookies"));
        non_empty_strings(
            out,
            rule.get("spaceDelimitedClaims"),
            &format!("{path}.spaceDelimitedClaims"),
        );
        if let Some(timeout) = rule.get("timeout") {
            if !timeout.as_str().is_some_and(is_duration) {
                out.schema(
                    timeout.span,
                    format!(
                        "`{path}.timeout` {} must be a valid duration such as \"5s\"",
                        timeout.display()
                    ),
                );
            }
        }
        if let Some(uri) = rule.get("jwksUri") {
            if let Some(value) = out.str(uri, &format!("{path}.jwksUri")) {
                let scheme = value.split_once("://").map(|(s, _)| s);
                if !scheme.is_some_and(|s| matches_pattern(s, |c| c.is_ascii_alphanumeric())) {
                    out.schema(
                        uri.span,
                        format!("`{path}.jwksUri` {value:?}: url must have a scheme"),
                    );
                }
            }
        }
        if let Some(headers) = rule.get("fromHeaders") {
            let list_path = format!("{path}.fromHeaders");
            for (j, header) in out
                .seq(headers, &list_path)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let item = format!("{list_path}[{j}]");
                if out.map(header, &item).is_some() {
                    required_string(out, header, "name", &item);
                }
            }
        }
        if let Some(claims) = rule.get("outputClaimToHeaders") {
            let list_path = format!("{path}.outputClaimToHeaders");
            for (j, claim) in out
                .seq(claims, &list_path)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let item = format!("{list_path}[{j}]");
                if claim.is_null() {
                    out.schema(
                        claim.span,
                        format!("`{item}` must be a mapping, found null"),
                    );
                    continue;
                }
                if out.map(claim, &item).is_none() {
                    continue;
                }
                required_string(out, claim, "claim", &item);
                let header = required_string(out, claim, "header", &item);
                let header_node = claim.get("header");
                if let (Some(header), Some(node)) = (header, header_node) {
                    let ok = header.is_empty()
                        || matches_pattern(&header, |c| {
                            c.is_ascii_alphanumeric() || c == '-' || c == '_'
                        });
                    if !ok {
                        out.schema(
                            node.span,
                            format!("`{item}.header` {header:?} must match ^[-_A-Za-z0-9]+$"),
                        );
                    }
                }
            }
        }
    }
}

/// A protobuf-JSON duration as Kubernetes accepts it: `1.5s`, `300ms`, `1m30s`, `2h`.
pub(super) fn is_duration(text: &str) -> bool {
    duration_millis(text).is_some()
}

/// A duration in milliseconds (fractions of a millisecond round up, saturating), or `None` when
/// the text is not a duration.
pub(super) fn duration_millis(text: &str) -> Option<u64> {
    let mut rest = text;
    let mut nanos = 0.0_f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, scale) = [
            ("ns", 1.0),
            ("us", 1e3),
            ("µs", 1e3),
            ("ms", 1e6),
            ("s", 1e9),
            ("m", 60e9),
            ("h", 3600e9),
        ]
        .into_iter()
        .find(|(u, _)| rest.starts_with(*u))?;
        rest = &rest[unit.len()..];
        nanos += value * scale;
    }
    if text.is_empty() {
        return None;
    }
    let millis = (nanos / 1e6).ceil();
    Some(if millis >= u64::MAX as f64 {
        u64::MAX
    } else {
        millis as u64
    })
}

/// What the lowering needs from a security resource's header.
#[derive(Debug)]
pub(super) struct Header {
    /// The `kind:` value, where the item's keyword points.
    pub(super) kind_span: Span,
    pub(super) name: ast::Ident,
    /// `metadata.namespace`, or `default`.
    pub(super) namespace: String,
    pub(super) namespace_span: Option<Span>,
}

/// Istio's root namespace: a policy there applies to the whole mesh.
pub(super) const ROOT_NAMESPACE: &str = "istio-system";

impl Header {
    /// `namespace/name`, unique across namespaces.
    fn item_name(&self) -> ast::Ident {
        ast::Ident {
            name: format!("{}/{}", self.namespace, self.name.name),
            span: self.name.span,
        }
    }

    /// The namespace a policy is scoped to (`None` = mesh-wide, from the root namespace).
    pub(super) fn scope(&self) -> Option<ast::Ident> {
        (self.namespace != ROOT_NAMESPACE).then(|| ast::Ident {
            name: self.namespace.clone(),
            span: self.namespace_span.unwrap_or(self.name.span),
        })
    }

    /// Scopes `target` as Istio scopes a `Telemetry` or `Sidecar`: one in the root namespace
    /// is mesh-wide only without a selector; with one it selects workloads of the root
    /// namespace alone (unlike an AuthorizationPolicy there, which selects across the mesh).
    pub(super) fn scope_selector_locally(&self, target: &mut ast::PolicyTarget) {
        let selects = target.selector.as_ref().is_some_and(|s| !s.is_empty());
        if selects && target.namespace.is_none() {
            target.namespace = Some(ast::Ident {
                name: self.namespace.clone(),
                span: self.namespace_span.unwrap_or(self.name.span),
            });
        }
    }
}

/// Lowers a security resource whose schema checks passed; `None` when it is skipped (with a
/// diagnostic saying why).
pub(super) fn lower(
    out: &mut Out<'_>,
    kind: &str,
    header: &Header,
    spec: Option<&Node>,
) -> Option<ast::Item> {
    let empty = Node {
        value: Value::Map(Vec::new()),
        span: header.kind_span,
    };
    let spec = spec.unwrap_or(&empty);
    match kind {
        "AuthorizationPolicy" => {
            lower_authorization(out, header, spec).map(ast::Item::Authorization)
        }
        "PeerAuthentication" => lower_peer(out, header, spec).map(ast::Item::PeerAuthentication),
        _ => lower_request_authentication(out, header, spec).map(ast::Item::Authentication),
    }
}

/// `selector.matchLabels` and the namespace; `None` (policy skipped) for `targetRef(s)`.
pub(super) fn target(
    out: &mut Out<'_>,
    header: &Header,
    spec: &Node,
    kind: &str,
) -> Option<ast::PolicyTarget> {
    for field in ["targetRef", "targetRefs"] {
        if let Some(node) = spec.get(field) {
            out.unsupported(
                &format!("spec.{field}"),
                node,
                &format!(
                    "the {kind} is skipped (it targets a gateway or service, not sidecar \
                     workloads by label)"
                ),
            );
            return None;
        }
    }
    let mut target = ast::PolicyTarget {
        namespace: header.scope(),
        ..ast::PolicyTarget::default()
    };
    if let Some(selector) = spec.get("selector") {
        out.map(selector, "spec.selector")?;
        out.fields(selector, "spec.selector", &["matchLabels"], &[], "");
        if let Some(labels) = selector.get("matchLabels") {
            target.selector = Some(out.labels(labels, "spec.selector.matchLabels"));
        }
    }
    Some(target)
}

const AUTHZ_FIELDS: &[&str] = &["selector", "targetRef", "targetRefs", "action", "rules"];
const SOURCE_FIELDS: &[&str] = &[
    "principals",
    "notPrincipals",
    "requestPrincipals",
    "notRequestPrincipals",
    "namespaces",
    "notNamespaces",
    "serviceAccounts",
    "notServiceAccounts",
    "ipBlocks",
    "notIpBlocks",
];
/// Source conditions the AST lacks: an ALLOW/AUDIT rule using one is dropped, a DENY rule
/// ignores it.
const SOURCE_UNMODELED: &[&str] = &[
    "remoteIpBlocks",
    "notRemoteIpBlocks",
    "trustDomains",
    "notTrustDomains",
];
const OPERATION_FIELDS: &[&str] = &[
    "hosts",
    "notHosts",
    "ports",
    "notPorts",
    "methods",
    "notMethods",
    "paths",
    "notPaths",
];

fn lower_authorization(
    out: &mut Out<'_>,
    header: &Header,
    spec: &Node,
) -> Option<ast::Authorization> {
    out.fields(spec, "spec", AUTHZ_FIELDS, &["provider"], "ignored");
    let target = target(out, header, spec, "authorization policy")?;
    let action = match spec.get("action") {
        None => None,
        Some(node) => {
            let value = out.str(node, "spec.action")?;
            let action = match value {
                "ALLOW" => spec::AuthzAction::Allow,
                "DENY" => spec::AuthzAction::Deny,
                "AUDIT" => spec::AuthzAction::Audit,
                "CUSTOM" => {
                    out.unsupported(
                        "spec.action: CUSTOM",
                        node,
                        "the policy is skipped (external authorization providers are not \
                         modeled)",
                    );
                    return None;
                }
                other => {
                    out.schema(
                        node.span,
                        format!(
                            "`spec.action`: unsupported value {other:?}, expected one of ALLOW, \
                             DENY, AUDIT, CUSTOM"
                        ),
                    );
                    return None;
                }
            };
            Some((action, node.span))
        }
    };
    let action_kind = action.map_or(spec::AuthzAction::Allow, |(a, _)| a);
    let mut rules = Vec::new();
    if let Some(list) = spec.get("rules") {
        for (i, rule) in out.seq(list, "spec.rules")?.iter().enumerate() {
            let path = format!("spec.rules[{i}]");
            if let Some(rule) = authz_rule(out, rule, &path, action_kind, &header.namespace) {
                rules.push(rule);
            }
        }
    }
    Some(ast::Authorization {
        keyword: header.kind_span,
        name: header.item_name(),
        target,
        action,
        rules,
        origin: ast::Origin::Istio,
    })
}

/// One rule; `None` when an ALLOW/AUDIT rule uses a condition the AST lacks (the rule is dropped,
/// so it allows less). In a DENY rule such a condition is ignored instead (it denies more).
fn authz_rule(
    out: &mut Out<'_>,
    rule: &Node,
    path: &str,
    action: spec::AuthzAction,
    namespace: &str,
) -> Option<ast::AuthzRule> {
    out.map(rule, path)?;
    out.fields(rule, path, &["from", "to", "when"], &[], "");
    let deny = action == spec::AuthzAction::Deny;
    let consequence = match action {
        spec::AuthzAction::Deny => {
            "ignored: the DENY rule matches more requests than Istio's would (denies more)"
        }
        spec::AuthzAction::Allow => {
            "the whole rule is dropped: the policy allows fewer requests than Istio's would"
        }
        spec::AuthzAction::Audit => {
            "the whole rule is dropped: fewer requests are audited than with Istio"
        }
    };
    let mut keep = true;
    let mut lowered = ast::AuthzRule {
        span: rule.span,
        ..ast::AuthzRule::default()
    };
    if let Some(from) = rule.get("from") {
        for (i, entry) in out.seq(from, &format!("{path}.from"))?.iter().enumerate() {
            let entry_path = format!("{path}.from[{i}]");
            out.map(entry, &entry_path)?;
            out.fields(entry, &entry_path, &["source"], &[], "");
            let Some(source) = entry.get("source") else {
                out.schema(entry.span, format!("`{entry_path}.source`: required value"));
                return None;
            };
            let source_path = format!("{entry_path}.source");
            out.map(source, &source_path)?;
            out.fields(
                source,
                &source_path,
                SOURCE_FIELDS,
                SOURCE_UNMODELED,
                consequence,
            );
            if SOURCE_UNMODELED.iter().any(|f| source.get(f).is_some()) {
                keep &= deny;
            }
            let mut s = ast::AuthzSource {
                span: source.span,
                ..ast::AuthzSource::default()
            };
            let mut list = |field: &str| {
                source
                    .get(field)
                    .map(|n| out.strings(n, &format!("{source_path}.{field}")))
                    .unwrap_or_default()
            };
            s.principals = list("principals");
            s.not_principals = list("notPrincipals");
            s.request_principals = list("requestPrincipals");
            s.not_request_principals = list("notRequestPrincipals");
            s.namespaces = list("namespaces");
            s.not_namespaces = list("notNamespaces");
            s.ip_blocks = list("ipBlocks");
            s.not_ip_blocks = list("notIpBlocks");
            let accounts = list("serviceAccounts");
            let not_accounts = list("notServiceAccounts");
            for (accounts, into, field) in [
                (accounts, &mut s.principals, "serviceAccounts"),
                (not_accounts, &mut s.not_principals, "notServiceAccounts"),
            ] {
                for account in accounts {
                    // `ns/sa`, or a bare `sa` in the policy's namespace.
                    let (ns, sa) = account
                        .value
                        .split_once('/')
                        .unwrap_or((namespace, account.value.as_str()));
                    if ns.is_empty() || sa.is_empty() || sa.contains('/') {
                        out.schema(
                            account.span,
                            format!(
                                "`{source_path}.{field}` entry {:?} must be \
                                 `<namespace>/<service account>` or `<service account>`",
                                account.value
                            ),
                        );
                        continue;
                    }
                    // Any trust domain, as Istio matches service accounts.
                    into.push(ast::Str {
                        value: format!("*/ns/{ns}/sa/{sa}"),
                        span: account.span,
                    });
                }
            }
            lowered.from.push(s);
        }
    }
    if let Some(to) = rule.get("to") {
        for (i, entry) in out.seq(to, &format!("{path}.to"))?.iter().enumerate() {
            let entry_path = format!("{path}.to[{i}]");
            out.map(entry, &entry_path)?;
            out.fields(entry, &entry_path, &["operation"], &[], "");
            let Some(operation) = entry.get("operation") else {
                out.schema(
                    entry.span,
                    format!("`{entry_path}.operation`: required value"),
                );
                return None;
            };
            let op_path = format!("{entry_path}.operation");
            out.map(operation, &op_path)?;
            out.fields(operation, &op_path, OPERATION_FIELDS, &[], "");
            let mut o = ast::AuthzOperation {
                span: operation.span,
                ..ast::AuthzOperation::default()
            };
            let mut list = |field: &str| {
                operation
                    .get(field)
                    .map(|n| out.strings(n, &format!("{op_path}.{field}")))
                    .unwrap_or_default()
            };
            o.hosts = list("hosts");
            o.not_hosts = list("notHosts");
            o.methods = list("methods");
            o.not_methods = list("notMethods");
            o.paths = list("paths");
            o.not_paths = list("notPaths");
            for (field, values) in [("paths", &mut o.paths), ("notPaths", &mut o.not_paths)] {
                keep &= path_templates(out, values, &format!("{op_path}.{field}"), action, field);
            }
            o.ports = ports(out, operation.get("ports"), &format!("{op_path}.ports"))?;
            o.not_ports = ports(
                out,
                operation.get("notPorts"),
                &format!("{op_path}.notPorts"),
            )?;
            lowered.to.push(o);
        }
    }
    if let Some(when) = rule.get("when") {
        for (i, condition) in out.seq(when, &format!("{path}.when"))?.iter().enumerate() {
            let cond_path = format!("{path}.when[{i}]");
            out.map(condition, &cond_path)?;
            out.fields(
                condition,
                &cond_path,
                &["key", "values", "notValues"],
                &[],
                "",
            );
            let Some(key) = condition.get("key") else {
                out.schema(condition.span, format!("`{cond_path}.key`: required value"));
                return None;
            };
            let key_node = key;
            let key = out.ast_str(key, &format!("{cond_path}.key"))?;
            if crate::lower::parse_condition_key(&key.value).is_none() {
                // Istio knows more attributes (`remote.ip`, `destination.ip`, `connection.sni`,
                // `experimental.envoy.filters.*`, ...) than the snapshot holds.
                out.unsupported(
                    &format!("{cond_path}.key: {}", key.value),
                    key_node,
                    consequence,
                );
                keep &= deny;
                continue;
            }
            let values = condition
                .get("values")
                .map(|n| out.strings(n, &format!("{cond_path}.values")))
                .unwrap_or_default();
            let not_values = condition
                .get("notValues")
                .map(|n| out.strings(n, &format!("{cond_path}.notValues")))
                .unwrap_or_default();
            lowered.when.push(ast::AuthzWhen {
                span: condition.span,
                key,
                values,
                not_values,
            });
        }
    }
    keep.then_some(lowered)
}

/// Whether a path uses an Istio path template (`{*}` one segment, `{**}` any number of them).
fn is_path_template(path: &str) -> bool {
    path.contains("{*}") || path.contains("{**}")
}

/// Path templates (`/api/{*}/x`, `/{**}/y`) cannot be expressed yet: W0200 for each. In a DENY
/// rule the whole `paths`/`notPaths` list is cleared (the operation then matches any path, so it
/// denies more; keeping only the other values would deny less); returns `false` for an
/// ALLOW/AUDIT rule, which is dropped.
fn path_templates(
    out: &mut Out<'_>,
    values: &mut Vec<ast::Str>,
    path: &str,
    action: spec::AuthzAction,
    field: &str,
) -> bool {
    let deny = action == spec::AuthzAction::Deny;
    let consequence = match action {
        spec::AuthzAction::Deny => format!(
            "the whole `{field}` list is ignored: the DENY rule matches more requests than \
             Istio's would (denies more)"
        ),
        spec::AuthzAction::Allow => "the whole rule is dropped: the policy allows fewer \
                                     requests than Istio's would"
            .to_owned(),
        spec::AuthzAction::Audit => {
            "the whole rule is dropped: fewer requests are audited than with Istio".to_owned()
        }
    };
    let mut found = false;
    for (i, value) in values.iter().enumerate() {
        if is_path_template(&value.value) {
            out.unsupported_at(
                &format!("{path}[{i}]: path template {}", value.value),
                value.span,
                &consequence,
            );
            found = true;
        }
    }
    if found && deny {
        values.clear();
    }
    !found || deny
}

/// Istio writes operation ports as strings (`"8080"`); numbers are accepted too.
fn ports(out: &mut Out<'_>, node: Option<&Node>, path: &str) -> Option<Vec<ast::Number>> {
    let Some(node) = node else {
        return Some(Vec::new());
    };
    let mut numbers = Vec::new();
    for (i, item) in out.seq(node, path)?.iter().enumerate() {
        let number = match &item.value {
            Value::Int(n) => u64::try_from(*n).ok(),
            Value::Str(s) => s.parse::<u64>().ok(),
            _ => None,
        };
        match number {
            Some(value) if (1..=65535).contains(&value) => numbers.push(ast::Number {
                value,
                span: item.span,
            }),
            _ => {
                out.schema(
                    item.span,
                    format!("`{path}[{i}]` {} is not a port number", item.display()),
                );
                return None;
            }
        }
    }
    Some(numbers)
}

/// An mTLS mode; `None` for `UNSET` (inherit). Values were checked by `validate`.
fn tls_mode(out: &mut Out<'_>, mtls: &Node, path: &str) -> Option<ast::TlsMode> {
    out.map(mtls, path)?;
    out.fields(mtls, path, &["mode"], &[], "");
    let node = mtls.get("mode")?;
    let value = match node.as_str()? {
        "STRICT" => spec::TlsMode::Strict,
        "PERMISSIVE" => spec::TlsMode::Permissive,
        "DISABLE" => spec::TlsMode::Disable,
        _ => return None,
    };
    Some(ast::TlsMode {
        value,
        span: node.span,
    })
}

fn lower_peer(out: &mut Out<'_>, header: &Header, spec: &Node) -> Option<ast::PeerAuthentication> {
    out.fields(
        spec,
        "spec",
        &["selector", "mtls", "portLevelMtls"],
        &[],
        "",
    );
    let target = target(out, header, spec, "peer authentication")?;
    let mode = spec.get("mtls").and_then(|m| tls_mode(out, m, "spec.mtls"));
    let mut port_modes = Vec::new();
    if let Some(ports) = spec.get("portLevelMtls") {
        for (port, mtls) in ports.entries().unwrap_or_default() {
            let number = match &port.value {
                Value::Int(n) => u64::try_from(*n).ok(),
                Value::Str(s) => s.parse::<u64>().ok(),
                _ => None,
            };
            let path = format!("spec.portLevelMtls.{}", super::plain(port));
            if let (Some(value), Some(mode)) = (number, tls_mode(out, mtls, &path)) {
                port_modes.push((
                    ast::Number {
                        value,
                        span: port.span,
                    },
                    mode,
                ));
            }
        }
    }
    Some(ast::PeerAuthentication {
        keyword: header.kind_span,
        name: header.item_name(),
        target,
        mode,
        port_modes,
        origin: ast::Origin::Istio,
    })
}

const JWT_FIELDS: &[&str] = &["issuer", "audiences", "jwksUri", "jwks"];
const JWT_IGNORED: &[&str] = &[
    "fromHeaders",
    "fromParams",
    "fromCookies",
    "outputPayloadToHeader",
    "forwardOriginalToken",
    "outputClaimToHeaders",
    "spaceDelimitedClaims",
    "timeout",
];

fn lower_request_authentication(
    out: &mut Out<'_>,
    header: &Header,
    spec: &Node,
) -> Option<ast::Authentication> {
    out.fields(
        spec,
        "spec",
        &["selector", "jwtRules", "targetRef", "targetRefs"],
        &[],
        "",
    );
    let target = target(out, header, spec, "request authentication")?;
    let mut jwt = Vec::new();
    if let Some(rules) = spec.get("jwtRules") {
        for (i, rule) in out.seq(rules, "spec.jwtRules")?.iter().enumerate() {
            let path = format!("spec.jwtRules[{i}]");
            out.fields(rule, &path, JWT_FIELDS, JWT_IGNORED, "ignored");
            let Some(issuer_node) = rule.get("issuer") else {
                out.schema(rule.span, format!("`{path}.issuer`: required value"));
                continue;
            };
            let Some(issuer) = out.ast_str(issuer_node, &format!("{path}.issuer")) else {
                continue;
            };
            let audiences = rule
                .get("audiences")
                .map(|n| out.strings(n, &format!("{path}.audiences")))
                .unwrap_or_default();
            let dropped = "this JWT rule is left out: meshc reads signing keys only from local \
                           files, so tokens of this issuer are not accepted";
            let jwks = match (rule.get("jwksUri"), rule.get("jwks")) {
                (_, Some(inline)) => {
                    out.unsupported(&format!("{path}.jwks"), inline, dropped);
                    None
                }
                (Some(uri), None) => match uri.as_str().and_then(|u| u.strip_prefix("file://")) {
                    Some(file) if !file.is_empty() => Some(ast::Str {
                        value: file.to_owned(),
                        span: uri.span,
                    }),
                    _ => {
                        out.unsupported(&format!("{path}.jwksUri"), uri, dropped);
                        None
                    }
                },
                (None, None) => {
                    out.unsupported(
                        &format!("{path}.issuer (OpenID discovery of the keys)"),
                        issuer_node,
                        dropped,
                    );
                    None
                }
            };
            if let Some(jwks) = jwks {
                jwt.push(ast::JwtRule {
                    span: rule.span,
                    issuer,
                    audiences,
                    jwks,
                });
            }
        }
    }
    Some(ast::Authentication {
        keyword: header.kind_span,
        name: header.item_name(),
        target,
        jwt,
    })
}
