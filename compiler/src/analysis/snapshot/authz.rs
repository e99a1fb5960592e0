//! Authorization that locks callers out, per workload: ALLOW policies that admit nothing
//! (W0164), DENY rules that match every request (E0165), ALLOW rules that all need a peer
//! identity on a workload that accepts no mTLS (W0166), and health probe paths that no probe
//! can reach (W0167).

use spec::{
    AuthorizationPolicy, AuthzAction, AuthzCondition, AuthzOperation, AuthzRule, AuthzSource,
    ConditionKey, InboundPort, Protocol, Snapshot, StringPattern, TlsMode, Workload,
};

use super::at_location;
use crate::diag::{Code, Diagnostic, Sources};
use spec::authz::{evaluate, AuthzRequest, Decision};

/// Paths health and readiness probes commonly use.
const HEALTH_PATHS: [&str; 5] = ["/healthz", "/ready", "/readyz", "/livez", "/health"];

pub(super) fn check(snapshot: &Snapshot, sources: &Sources, out: &mut Vec<Diagnostic>) {
    for workload in &snapshot.workloads {
        check_workload(workload, sources, out);
    }
}

fn check_workload(workload: &Workload, sources: &Sources, out: &mut Vec<Diagnostic>) {
    let policies = &workload.authorization;
    let allows: Vec<&AuthorizationPolicy> = of(policies, AuthzAction::Allow).collect();
    let name = &workload.name;
    // W0164: ALLOW policies exist but none has a rule, so none can match.
    let allow_nothing = !allows.is_empty() && allows.iter().all(|p| p.rules.is_empty());
    if let Some(first) = allows.first().filter(|_| allow_nothing) {
        out.push(
            at_location(
                Code::AllowPolicyDeniesAll,
                sources,
                &first.source,
                format!(
                    "allow policy `{}` of workload `{name}` has no rules and no other allow \
                     policy exists: it denies every request",
                    first.name
                ),
            )
            .with_help(
                "add rules saying whom to allow; if denying everything is intended, this is \
                 the way to say it",
            ),
        );
    }
    // E0165: a DENY rule that holds for every request the workload can receive.
    let all_strict =
        !workload.inbound.is_empty() && workload.inbound.iter().all(|p| p.tls == TlsMode::Strict);
    let mut denies_all = Vec::new();
    for policy in of(policies, AuthzAction::Deny) {
        if policy
            .rules
            .iter()
            .any(|r| rule_matches_everything(r, &workload.inbound, all_strict))
        {
            denies_all.push(policy.name.as_str());
            out.push(
                at_location(
                    Code::DenyPolicyDeniesAll,
                    sources,
                    &policy.source,
                    format!(
                        "deny policy `{}` of workload `{name}` has a rule that matches every \
                         request: it denies every request",
                        policy.name
                    ),
                )
                .with_help(
                    "narrow the rule with `from`, `to` or `when` conditions; to deny every \
                     request on purpose, write an allow policy with no rules",
                ),
            );
        }
    }
    // W0166: every ALLOW rule needs a peer identity, and no inbound port accepts mTLS.
    let no_mtls =
        !workload.inbound.is_empty() && workload.inbound.iter().all(|p| p.tls == TlsMode::Disable);
    let identity_only = no_mtls
        && !allow_nothing
        && allows
            .iter()
            .flat_map(|p| &p.rules)
            .all(rule_requires_identity);
    if identity_only {
        if let Some(first) = allows.first() {
            out.push(
                at_location(
                    Code::PrincipalWithoutMtls,
                    sources,
                    &first.source,
                    format!(
                        "every rule of the allow policies of workload `{name}` ({}) requires a \
                         peer identity, but mTLS is disabled on all its inbound ports: no \
                         request carries one, so every request is denied",
                        names(&allows)
                    ),
                )
                .with_help(
                    "set `mtls permissive` or `mtls strict` on the inbound ports, or allow \
                     callers by something other than `principals` and `namespaces`",
                ),
            );
        }
    }
    // When no request at all gets through, W0164 or W0166 already says so.
    let allows_reported = allow_nothing || identity_only;
    check_health(
        workload,
        &allows,
        allows_reported,
        &denies_all,
        sources,
        out,
    );
}

/// W0167: health probe paths denied on every HTTP inbound port to a GET without identity. DENY
/// policies in `denies_all` (E0165) are not reported again, nor the ALLOW policies when
/// `allows_reported`.
fn check_health(
    workload: &Workload,
    allows: &[&AuthorizationPolicy],
    allows_reported: bool,
    denies_all: &[&str],
    sources: &Sources,
    out: &mut Vec<Diagnostic>,
) {
    let ports: Vec<&InboundPort> = workload
        .inbound
        .iter()
        .filter(|p| p.protocol != Protocol::Tcp)
        .collect();
    if ports.is_empty() || workload.authorization.is_empty() {
        return;
    }
    // For each probe path, the decision on the first port when every port denies it.
    let mut blocked = Vec::new();
    for path in HEALTH_PATHS {
        let decisions: Vec<Decision<'_>> = ports
            .iter()
            .map(|p| evaluate(&workload.authorization, &probe(p, path)))
            .collect();
        if decisions.iter().all(|d| !d.is_allowed()) {
            blocked.push((path, decisions[0]));
        }
    }
    let name = &workload.name;
    // DENY policies that take probe paths, each once, naming its paths.
    for policy in of(&workload.authorization, AuthzAction::Deny) {
        if denies_all.contains(&policy.name.as_str()) {
            continue;
        }
        let paths: Vec<&str> = blocked
            .iter()
            .filter(|(_, d)| *d == Decision::Deny(Some(policy)))
            .map(|(p, _)| *p)
            .collect();
        if paths.is_empty() {
            continue;
        }
        out.push(
            at_location(
                Code::HealthPathDenied,
                sources,
                &policy.source,
                format!(
                    "deny policy `{}` of workload `{name}` denies the health probe path{} {} to a \
                     GET without identity: probes get 403",
                    policy.name,
                    if paths.len() == 1 { "" } else { "s" },
                    quoted(&paths)
                ),
            )
            .with_help("exclude the probe path from the rule with `not_paths`"),
        );
    }
    // ALLOW policies none of whose rules admits any probe path.
    let unallowed = blocked
        .iter()
        .filter(|(_, d)| *d == Decision::Deny(None))
        .count();
    let report = !allows_reported && unallowed == HEALTH_PATHS.len();
    if let Some(first) = allows.first().filter(|_| report) {
        out.push(
            at_location(
                Code::HealthPathDenied,
                sources,
                &first.source,
                format!(
                    "no allow policy of workload `{name}` ({}) admits a health probe path ({}) \
                     to a GET without identity: probes get 403",
                    names(allows),
                    quoted(&HEALTH_PATHS)
                ),
            )
            .with_help("add an allow rule for the probe path, e.g. `to paths \"/healthz\"`"),
        );
    }
}

/// The request a health probe sends: GET to the pod's address, no identity, no token.
fn probe(port: &InboundPort, path: &str) -> AuthzRequest {
    AuthzRequest {
        method: "GET".to_owned(),
        host: Some(port.target.ip().to_string()),
        path: path.to_owned(),
        port: Some(port.port),
        ..AuthzRequest::default()
    }
}

fn of(
    policies: &[AuthorizationPolicy],
    action: AuthzAction,
) -> impl Iterator<Item = &AuthorizationPolicy> {
    policies.iter().filter(move |p| p.action == action)
}

fn names(policies: &[&AuthorizationPolicy]) -> String {
    quoted(&policies.iter().map(|p| p.name.as_str()).collect::<Vec<_>>())
}

fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a rule matches every request the workload can receive. An attribute always present
/// makes `*` match everything: method, path and host always; the peer identity only when every
/// inbound port is mTLS strict; a JWT never (it is optional). Ports match everything when they
/// list every inbound port.
fn rule_matches_everything(rule: &AuthzRule, inbound: &[InboundPort], all_strict: bool) -> bool {
    (rule.from.is_empty() || rule.from.iter().any(|s| source_everything(s, all_strict)))
        && (rule.to.is_empty() || rule.to.iter().any(|o| operation_everything(o, inbound)))
        && rule
            .when
            .iter()
            .all(|c| condition_everything(c, inbound, all_strict))
}

/// A field with these values matches every present attribute: no values, or a `*`.
fn any(values: &[StringPattern]) -> bool {
    values.is_empty() || values.contains(&StringPattern::Any)
}

fn source_everything(source: &AuthzSource, all_strict: bool) -> bool {
    let identity = |values: &[StringPattern]| {
        values.is_empty() || (all_strict && values.contains(&StringPattern::Any))
    };
    identity(&source.principals)
        && identity(&source.namespaces)
        && source.request_principals.is_empty()
        && source.not_principals.is_empty()
        && source.not_namespaces.is_empty()
        && source.not_request_principals.is_empty()
        && source.ip_blocks.is_empty()
        && source.not_ip_blocks.is_empty()
}

fn operation_everything(operation: &AuthzOperation, inbound: &[InboundPort]) -> bool {
    let ports = operation.ports.is_empty()
        || (!inbound.is_empty() && inbound.iter().all(|p| operation.ports.contains(&p.port)));
    let not_ports = inbound
        .iter()
        .all(|p| !operation.not_ports.contains(&p.port));
    any(&operation.hosts)
        && any(&operation.methods)
        && any(&operation.paths)
        && operation.not_hosts.is_empty()
        && operation.not_methods.is_empty()
        && operation.not_paths.is_empty()
        && ports
        && not_ports
}

fn condition_everything(
    condition: &AuthzCondition,
    inbound: &[InboundPort],
    all_strict: bool,
) -> bool {
    if !condition.not_values.is_empty() {
        return false;
    }
    if condition.values.is_empty() {
        return true;
    }
    let present = match condition.key {
        ConditionKey::DestinationPort => !inbound.is_empty(),
        ConditionKey::SourcePrincipal | ConditionKey::SourceNamespace => all_strict,
        _ => false,
    };
    present && condition.values.contains(&StringPattern::Any)
}

/// Whether a rule can only match requests with a peer identity: each of its `from` sources
/// names principals or namespaces, or a `when` condition needs the peer's principal or
/// namespace.
fn rule_requires_identity(rule: &AuthzRule) -> bool {
    let source = |s: &AuthzSource| !s.principals.is_empty() || !s.namespaces.is_empty();
    let condition = |c: &AuthzCondition| {
        matches!(
            c.key,
            ConditionKey::SourcePrincipal | ConditionKey::SourceNamespace
        ) && !c.values.is_empty()
    };
    (!rule.from.is_empty() && rule.from.iter().all(source)) || rule.when.iter().any(condition)
}
