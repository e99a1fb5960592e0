//! Evaluates a workload's authorization policies for one request, with Istio's semantics: DENY
//! policies first (any match denies), then ALLOW policies (when at least one exists, the request
//! must match one of them; none at all allows). AUDIT policies never change the decision.
//!
//! A policy matches when any of its rules does (so a policy without rules matches nothing); a
//! rule matches when any `from`, any `to` and every `when` hold, an empty list holding. A field
//! holds when one of its values matches (or it has none) and none of its `not_` values does.
//! Every pattern, `*` included, needs the attribute to be present: a request without a peer
//! identity matches neither `principals ["*"]` nor `namespaces ["*"]`, but it does hold for
//! `not_principals ["*"]`. Used by the compiler's authorization analyses and `meshc explain`.

use spec::{
    AuthorizationPolicy, AuthzAction, AuthzCondition, AuthzOperation, AuthzRule, AuthzSource,
    ConditionKey, StringPattern,
};

/// The request attributes authorization reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthzRequest {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Host header without port; compared case-insensitively. `None` when absent.
    pub host: Option<String>,
    /// Path without the query.
    pub path: String,
    /// Destination (inbound) port; `None` when unknown, which matches no `ports` condition.
    pub port: Option<u16>,
    /// The peer's SPIFFE ID from mutual TLS; `None` for plaintext.
    pub principal: Option<String>,
    /// The caller's IP address as text.
    pub source_ip: Option<String>,
    /// Headers as `(name, value)`; names compared case-insensitively.
    pub headers: Vec<(String, String)>,
    /// The validated JWT, if the request carried one.
    pub jwt: Option<JwtFacts>,
}

/// What a validated JWT contributes to authorization.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JwtFacts {
    /// `iss/sub`, Istio's request principal.
    pub principal: String,
    /// The `aud` values.
    pub audiences: Vec<String>,
    /// The `azp` claim.
    pub presenter: Option<String>,
    /// Claims as `(path, values)`: a string claim has one value, a list claim one per element.
    pub claims: Vec<(Vec<String>, Vec<String>)>,
}

/// The outcome of evaluating a workload's policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Allowed: by this ALLOW policy, or (`None`) because the workload has no ALLOW policy.
    Allow(Option<&'a AuthorizationPolicy>),
    /// Denied: by this DENY policy, or (`None`) because ALLOW policies exist and none matched.
    Deny(Option<&'a AuthorizationPolicy>),
}

impl Decision<'_> {
    /// Whether the request goes through.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow(_))
    }
}

/// Decides a request: the first matching DENY policy denies; otherwise, when ALLOW policies
/// exist, the first matching one allows and no match denies; no ALLOW policy allows.
pub fn evaluate<'a>(policies: &'a [AuthorizationPolicy], request: &AuthzRequest) -> Decision<'a> {
    let of = |action| policies.iter().filter(move |p| p.action == action);
    if let Some(deny) = of(AuthzAction::Deny).find(|p| policy_matches(p, request)) {
        return Decision::Deny(Some(deny));
    }
    let mut allows = of(AuthzAction::Allow).peekable();
    if allows.peek().is_none() {
        return Decision::Allow(None);
    }
    match allows.find(|p| policy_matches(p, request)) {
        Some(allow) => Decision::Allow(Some(allow)),
        None => Decision::Deny(None),
    }
}

/// The AUDIT policies a request matches, in config order.
pub fn audits<'a>(
    policies: &'a [AuthorizationPolicy],
    request: &AuthzRequest,
) -> Vec<&'a AuthorizationPolicy> {
    policies
        .iter()
        .filter(|p| p.action == AuthzAction::Audit && policy_matches(p, request))
        .collect()
}

/// Whether any rule of the policy matches (a policy without rules matches nothing).
pub fn policy_matches(policy: &AuthorizationPolicy, request: &AuthzRequest) -> bool {
    policy.rules.iter().any(|r| rule_matches(r, request))
}

/// Whether a rule matches: any `from`, any `to` and every `when` hold; an empty list holds.
pub fn rule_matches(rule: &AuthzRule, request: &AuthzRequest) -> bool {
    (rule.from.is_empty() || rule.from.iter().any(|s| source_holds(s, request)))
        && (rule.to.is_empty() || rule.to.iter().any(|o| operation_holds(o, request)))
        && rule.when.iter().all(|c| condition_holds(c, request))
}

/// The namespace of a SPIFFE ID of the form `spiffe://TRUST_DOMAIN/ns/NAMESPACE/...`.
pub fn spiffe_namespace(id: &str) -> Option<&str> {
    let path = id.strip_prefix("spiffe://")?;
    let mut segments = path.split('/').skip(1);
    while let Some(segment) = segments.next() {
        if segment == "ns" {
            return segments.next().filter(|ns| !ns.is_empty());
        }
    }
    None
}

/// Whether a pattern matches a present value (an absent one matches no pattern).
pub fn pattern_matches(pattern: &StringPattern, value: Option<&str>) -> bool {
    let Some(value) = value else {
        return false;
    };
    match pattern {
        StringPattern::Exact(s) => value == s,
        StringPattern::Prefix(s) => value.starts_with(s.as_str()),
        StringPattern::Suffix(s) => value.ends_with(s.as_str()),
        StringPattern::Any => true,
    }
}

/// A field holds when one of `values` matches (or there are none) and none of `not_values`
/// does; `matches` tells whether one pattern matches the attribute.
fn field_holds<T>(values: &[T], not_values: &[T], matches: impl Fn(&T) -> bool) -> bool {
    (values.is_empty() || values.iter().any(&matches)) && !not_values.iter().any(matches)
}

fn source_holds(source: &AuthzSource, request: &AuthzRequest) -> bool {
    let principal = request.principal.as_deref();
    let namespace = principal.and_then(spiffe_namespace);
    let request_principal = request.jwt.as_ref().map(|j| j.principal.as_str());
    field_holds(&source.principals, &source.not_principals, |p| {
        pattern_matches(p, principal)
    }) && field_holds(
        &source.request_principals,
        &source.not_request_principals,
        |p| pattern_matches(p, request_principal),
    ) && field_holds(&source.namespaces, &source.not_namespaces, |p| {
        pattern_matches(p, namespace)
    })
}

fn operation_holds(operation: &AuthzOperation, request: &AuthzRequest) -> bool {
    let host = request.host.as_deref().map(str::to_ascii_lowercase);
    let host_matches = |p: &StringPattern| match p {
        // Host names are case-insensitive: compare both sides lower-cased.
        StringPattern::Exact(s) => host.as_deref() == Some(s.to_ascii_lowercase().as_str()),
        StringPattern::Prefix(s) => host
            .as_deref()
            .is_some_and(|h| h.starts_with(&s.to_ascii_lowercase())),
        StringPattern::Suffix(s) => host
            .as_deref()
            .is_some_and(|h| h.ends_with(&s.to_ascii_lowercase())),
        StringPattern::Any => host.is_some(),
    };
    let method = Some(request.method.as_str());
    let path = Some(request.path.as_str());
    field_holds(&operation.hosts, &operation.not_hosts, host_matches)
        && field_holds(&operation.methods, &operation.not_methods, |p| {
            pattern_matches(p, method)
        })
        && field_holds(&operation.paths, &operation.not_paths, |p| {
            pattern_matches(p, path)
        })
        && field_holds(&operation.ports, &operation.not_ports, |&p| {
            request.port == Some(p)
        })
}

/// The values of a condition's attribute; empty when the request does not have it.
fn attribute(key: &ConditionKey, request: &AuthzRequest) -> Vec<String> {
    let jwt = request.jwt.as_ref();
    match key {
        ConditionKey::RequestHeader(name) => request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect(),
        ConditionKey::JwtClaim(path) => jwt
            .and_then(|j| j.claims.iter().find(|(p, _)| p == path))
            .map(|(_, values)| values.clone())
            .unwrap_or_default(),
        ConditionKey::RequestPrincipal => jwt.map(|j| j.principal.clone()).into_iter().collect(),
        ConditionKey::JwtAudience => jwt.map(|j| j.audiences.clone()).unwrap_or_default(),
        ConditionKey::JwtPresenter => jwt.and_then(|j| j.presenter.clone()).into_iter().collect(),
        ConditionKey::SourcePrincipal => request.principal.iter().cloned().collect(),
        ConditionKey::SourceNamespace => request
            .principal
            .as_deref()
            .and_then(spiffe_namespace)
            .map(str::to_owned)
            .into_iter()
            .collect(),
        ConditionKey::SourceIp => request.source_ip.iter().cloned().collect(),
        ConditionKey::DestinationPort => request.port.map(|p| p.to_string()).into_iter().collect(),
    }
}

fn condition_holds(condition: &AuthzCondition, request: &AuthzRequest) -> bool {
    let values = attribute(&condition.key, request);
    let matches = |p: &StringPattern| values.iter().any(|v| pattern_matches(p, Some(v)));
    field_holds(&condition.values, &condition.not_values, matches)
}

#[cfg(test)]
mod tests;
