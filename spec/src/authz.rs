//! Evaluates a workload's authorization policies for one request, with Istio's semantics: DENY
//! policies first (any match denies), then ALLOW policies (when at least one exists, the request
//! must match one of them; none at all allows). AUDIT policies never change the decision.
//!
//! A policy matches when any of its rules does (so a policy without rules matches nothing); a
//! rule matches when any `from`, any `to` and every `when` hold, an empty list holding. A field
//! holds when one of its values matches (or it has none) and none of its `not_` values does.
//! Every pattern, `*` included, needs the attribute to be present: a request without a peer
//! identity matches neither `principals ["*"]` nor `namespaces ["*"]`, but it does hold for
//! `not_principals ["*"]`.
//!
//! One definition for both sides of the contract: `meshd` decides live requests with it (over
//! its borrowed view of the request, without allocating; a TCP connection's DENY and AUDIT
//! rules are copied once without their HTTP conditions), and the compiler's authorization
//! analyses and `meshc explain` predict those decisions with it.

use std::net::IpAddr;

use crate::{
    AddressBlock, AuthorizationPolicy, AuthzAction, AuthzCondition, AuthzOperation, AuthzRule,
    AuthzSource, ConditionKey, StringPattern,
};

/// The request attributes authorization reads: meshd's view of a live request implements it,
/// and [`AuthzRequest`] is an owned one for analyses and tests.
pub trait Attributes {
    /// Method, e.g. `GET`.
    fn method(&self) -> &str;
    /// Host header without port, in any case; `None` when absent.
    fn host(&self) -> Option<&str>;
    /// Path without the query.
    fn path(&self) -> &str;
    /// Destination (inbound) port; `None` when unknown, which matches no `ports` condition.
    fn port(&self) -> Option<u16>;
    /// The peer's SPIFFE ID from mutual TLS; `None` for plaintext.
    fn principal(&self) -> Option<&str>;
    /// The caller's IP address.
    fn source_ip(&self) -> Option<IpAddr>;
    /// Whether `test` holds for a value of header `name` (lower-case; compared without case).
    fn any_header(&self, name: &str, test: &mut dyn FnMut(&str) -> bool) -> bool;
    /// The validated JWT, if the request carried one.
    fn jwt(&self) -> Option<&JwtFacts>;
    /// Whether this is a TCP connection rather than an HTTP request: it has no method, host,
    /// path, headers or JWT, and rules that read them mean what they mean to Istio for TCP.
    fn is_tcp(&self) -> bool {
        false
    }
}

/// An owned request for [`Attributes`].
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
    /// The caller's IP address.
    pub source_ip: Option<IpAddr>,
    /// Headers as `(name, value)`; names compared case-insensitively.
    pub headers: Vec<(String, String)>,
    /// The validated JWT, if the request carried one.
    pub jwt: Option<JwtFacts>,
    /// A TCP connection rather than an HTTP request.
    pub tcp: bool,
}

impl Attributes for AuthzRequest {
    fn method(&self) -> &str {
        &self.method
    }

    fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn port(&self) -> Option<u16> {
        self.port
    }

    fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    fn source_ip(&self) -> Option<IpAddr> {
        self.source_ip
    }

    fn any_header(&self, name: &str, test: &mut dyn FnMut(&str) -> bool) -> bool {
        self.headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && test(v))
    }

    fn jwt(&self) -> Option<&JwtFacts> {
        self.jwt.as_ref()
    }

    fn is_tcp(&self) -> bool {
        self.tcp
    }
}

/// What a validated JWT contributes to authorization.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JwtFacts {
    /// `iss/sub`, Istio's request principal; `None` for a token without `sub`.
    pub principal: Option<String>,
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
pub fn evaluate<'a, R: Attributes + ?Sized>(
    policies: &'a [AuthorizationPolicy],
    request: &R,
) -> Decision<'a> {
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
pub fn audits<'a, R: Attributes + ?Sized>(
    policies: &'a [AuthorizationPolicy],
    request: &'a R,
) -> impl Iterator<Item = &'a AuthorizationPolicy> + 'a {
    policies
        .iter()
        .filter(move |p| p.action == AuthzAction::Audit && policy_matches(p, request))
}

/// Whether any rule of the policy matches (a policy without rules matches nothing).
pub fn policy_matches<R: Attributes + ?Sized>(policy: &AuthorizationPolicy, request: &R) -> bool {
    if request.is_tcp() {
        return policy
            .rules
            .iter()
            .any(|r| tcp_rule_matches(r, policy.action, request));
    }
    policy.rules.iter().any(|r| rule_matches(r, request))
}

/// A rule for a TCP connection, as Istio builds it: an ALLOW rule that reads an HTTP attribute
/// never matches (the policy allows less); a DENY or AUDIT rule matches without its HTTP
/// conditions (it denies or audits more).
fn tcp_rule_matches<R: Attributes + ?Sized>(
    rule: &AuthzRule,
    action: AuthzAction,
    connection: &R,
) -> bool {
    match action {
        AuthzAction::Allow => !reads_http(rule) && rule_matches(rule, connection),
        AuthzAction::Deny | AuthzAction::Audit => rule_matches(&without_http(rule), connection),
    }
}

/// Whether a rule reads anything only an HTTP request has.
pub fn reads_http(rule: &AuthzRule) -> bool {
    rule.from
        .iter()
        .any(|s| !s.request_principals.is_empty() || !s.not_request_principals.is_empty())
        || rule.to.iter().any(|o| {
            !(o.hosts.is_empty()
                && o.not_hosts.is_empty()
                && o.methods.is_empty()
                && o.not_methods.is_empty()
                && o.paths.is_empty()
                && o.not_paths.is_empty())
        })
        || rule.when.iter().any(|c| is_http_key(&c.key))
}

fn without_http(rule: &AuthzRule) -> AuthzRule {
    let mut rule = rule.clone();
    for source in &mut rule.from {
        source.request_principals.clear();
        source.not_request_principals.clear();
    }
    for operation in &mut rule.to {
        for field in [
            &mut operation.hosts,
            &mut operation.not_hosts,
            &mut operation.methods,
            &mut operation.not_methods,
            &mut operation.paths,
            &mut operation.not_paths,
        ] {
            field.clear();
        }
    }
    rule.when.retain(|c| !is_http_key(&c.key));
    rule
}

fn is_http_key(key: &ConditionKey) -> bool {
    match key {
        ConditionKey::RequestHeader(_)
        | ConditionKey::JwtClaim(_)
        | ConditionKey::RequestPrincipal
        | ConditionKey::JwtAudience
        | ConditionKey::JwtPresenter => true,
        ConditionKey::SourcePrincipal
        | ConditionKey::SourceNamespace
        | ConditionKey::SourceIp
        | ConditionKey::DestinationPort => false,
    }
}

/// Whether a rule matches: any `from`, any `to` and every `when` hold; an empty list holds.
pub fn rule_matches<R: Attributes + ?Sized>(rule: &AuthzRule, request: &R) -> bool {
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

fn source_holds<R: Attributes + ?Sized>(source: &AuthzSource, request: &R) -> bool {
    let principal = request.principal();
    let namespace = principal.and_then(spiffe_namespace);
    let request_principal = request.jwt().and_then(|j| j.principal.as_deref());
    field_holds(&source.principals, &source.not_principals, |p| {
        pattern_matches(p, principal)
    }) && field_holds(
        &source.request_principals,
        &source.not_request_principals,
        |p| pattern_matches(p, request_principal),
    ) && field_holds(&source.namespaces, &source.not_namespaces, |p| {
        pattern_matches(p, namespace)
    }) && field_holds(&source.ip_blocks, &source.not_ip_blocks, |block| {
        request.source_ip().is_some_and(|ip| block.contains(ip))
    })
}

/// `source.ip` values are addresses or CIDR blocks: `pattern` holds when `ip` is in its block.
fn source_ip_matches(pattern: &StringPattern, ip: Option<IpAddr>) -> bool {
    let Some(ip) = ip else {
        return false;
    };
    match pattern {
        StringPattern::Exact(text) => text
            .parse::<AddressBlock>()
            .is_ok_and(|block| block.contains(ip)),
        StringPattern::Any => true,
        // The compiler refuses `source.ip` patterns; kept literal for hand-made snapshots.
        StringPattern::Prefix(_) | StringPattern::Suffix(_) => false,
    }
}

/// Host names are case-insensitive: `pattern` matches `host` ignoring ASCII case.
fn host_matches(pattern: &StringPattern, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let (h, p) = (host.as_bytes(), pattern_text(pattern).as_bytes());
    match pattern {
        StringPattern::Exact(_) => h.eq_ignore_ascii_case(p),
        StringPattern::Prefix(_) => h.len() >= p.len() && h[..p.len()].eq_ignore_ascii_case(p),
        StringPattern::Suffix(_) => {
            h.len() >= p.len() && h[h.len() - p.len()..].eq_ignore_ascii_case(p)
        }
        StringPattern::Any => true,
    }
}

fn pattern_text(pattern: &StringPattern) -> &str {
    match pattern {
        StringPattern::Exact(s) | StringPattern::Prefix(s) | StringPattern::Suffix(s) => s,
        StringPattern::Any => "",
    }
}

fn operation_holds<R: Attributes + ?Sized>(operation: &AuthzOperation, request: &R) -> bool {
    let host = request.host();
    let method = Some(request.method());
    let path = Some(request.path());
    field_holds(&operation.hosts, &operation.not_hosts, |p| {
        host_matches(p, host)
    }) && field_holds(&operation.methods, &operation.not_methods, |p| {
        pattern_matches(p, method)
    }) && field_holds(&operation.paths, &operation.not_paths, |p| {
        pattern_matches(p, path)
    }) && field_holds(&operation.ports, &operation.not_ports, |&p| {
        request.port() == Some(p)
    })
}

/// Whether a value of the condition's attribute matches `pattern` (none does when the
/// request lacks the attribute).
fn attribute_matches<R: Attributes + ?Sized>(
    key: &ConditionKey,
    pattern: &StringPattern,
    request: &R,
) -> bool {
    let mut test = |value: &str| pattern_matches(pattern, Some(value));
    let jwt = request.jwt();
    let any =
        |values: &[String], test: &mut dyn FnMut(&str) -> bool| values.iter().any(|v| test(v));
    match key {
        ConditionKey::RequestHeader(name) => request.any_header(name, &mut test),
        ConditionKey::JwtClaim(path) => jwt
            .and_then(|j| j.claims.iter().find(|(p, _)| p == path))
            .is_some_and(|(_, values)| any(values, &mut test)),
        ConditionKey::RequestPrincipal => {
            jwt.and_then(|j| j.principal.as_deref()).is_some_and(test)
        }
        ConditionKey::JwtAudience => jwt.is_some_and(|j| any(&j.audiences, &mut test)),
        ConditionKey::JwtPresenter => jwt.and_then(|j| j.presenter.as_deref()).is_some_and(test),
        ConditionKey::SourcePrincipal => request.principal().is_some_and(test),
        ConditionKey::SourceNamespace => request
            .principal()
            .and_then(spiffe_namespace)
            .is_some_and(test),
        ConditionKey::SourceIp => source_ip_matches(pattern, request.source_ip()),
        ConditionKey::DestinationPort => request.port().is_some_and(|port| {
            let mut digits = [0u8; 5];
            test(port_text(port, &mut digits))
        }),
    }
}

/// `port` in decimal, written into `buf`.
fn port_text(port: u16, buf: &mut [u8; 5]) -> &str {
    let mut n = port;
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap_or("0")
}

fn condition_holds<R: Attributes + ?Sized>(condition: &AuthzCondition, request: &R) -> bool {
    let matches = |p: &StringPattern| attribute_matches(&condition.key, p, request);
    field_holds(&condition.values, &condition.not_values, matches)
}

#[cfg(test)]
mod tests;
