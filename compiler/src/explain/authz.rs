//! Authorization of one request on the inbound side of one workload, with Istio's semantics:
//! a strict-mTLS port refuses callers without a peer identity; then DENY policies (any match
//! denies); then, when the workload has ALLOW policies, the request must match one of them;
//! AUDIT policies never decide, they are listed.
//!
//! `explain` takes no JWT and no source address, so `request.auth.*` and `source.ip` attributes
//! are absent; every policy that reads them gets a note saying so rather than a silent answer.

use spec::{AuthorizationPolicy, AuthzAction, ConditionKey, SourceLocation, TlsMode, Workload};

use super::Request;
use spec::authz::{self as authz_eval, AuthzRequest, Decision as Outcome};

/// The request attributes authorization reads.
#[derive(Clone, Copy, Debug)]
pub(super) struct Attributes<'a> {
    /// The request (method, host, path, headers).
    pub(super) request: &'a Request,
    /// The caller's SPIFFE ID; `None` without a peer identity.
    pub(super) principal: Option<&'a str>,
    /// The port the caller addressed, when known.
    pub(super) port: Option<u16>,
}

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The request reaches the application.
    Allow,
    /// The sidecar answers 403 (or refuses the connection, for a strict-mTLS port).
    Deny,
}

impl Decision {
    /// `allow` or `deny`, as in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// The decision of one workload's sidecar and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The workload whose inbound policies were evaluated.
    pub workload: String,
    /// Allow or deny.
    pub decision: Decision,
    /// The policy that decided, with its source; `None` when no policy decided.
    pub policy: Option<(String, SourceLocation)>,
    /// One sentence saying why.
    pub reason: String,
    /// ALLOW policies tried without a match, when that is why the request is denied.
    pub allow_policies: Vec<String>,
    /// AUDIT policies that match the request.
    pub audited_by: Vec<String>,
    /// Attributes `explain` cannot know that some policy reads.
    pub notes: Vec<String>,
}

/// Evaluates `workload`'s inbound authorization (the workload `name`d so, as `--workload`
/// finds it) for a request with these attributes.
pub(super) fn evaluate(workload: &Workload, name: &str, attrs: Attributes<'_>) -> Verdict {
    let mut verdict = Verdict {
        workload: name.to_owned(),
        decision: Decision::Allow,
        policy: None,
        reason: String::new(),
        allow_policies: Vec::new(),
        audited_by: Vec::new(),
        notes: Vec::new(),
    };
    if !workload.jwt.is_empty() {
        let issuers: Vec<&str> = workload.jwt.iter().map(|j| j.issuer.as_str()).collect();
        verdict.notes.push(format!(
            "a JWT from {} is validated when the request carries one (an invalid token gets \
             401); explain sends none",
            issuers.join(", ")
        ));
    }
    let inbound = attrs
        .port
        .and_then(|p| workload.inbound.iter().find(|i| i.port == p));
    let mut attrs = attrs;
    match inbound.map(|i| i.tls) {
        Some(TlsMode::Strict) if attrs.principal.is_none() => {
            verdict.decision = Decision::Deny;
            verdict.reason = format!(
                "inbound port {} requires mutual TLS (strict) and the request has no peer \
                 identity (give the caller's with --from)",
                inbound.map_or(0, |i| i.port)
            );
            return verdict;
        }
        Some(TlsMode::Disable) if attrs.principal.is_some() => {
            verdict.notes.push(format!(
                "inbound port {} is plaintext only (tls disable): the caller has no peer \
                 identity there, so --from is ignored",
                inbound.map_or(0, |i| i.port)
            ));
            attrs.principal = None;
        }
        _ => {}
    }
    let request = AuthzRequest {
        method: attrs.request.method.clone(),
        host: Some(attrs.request.host.to_ascii_lowercase()),
        path: attrs.request.path.clone(),
        port: attrs.port,
        principal: attrs.principal.map(str::to_owned),
        source_ip: None,
        headers: attrs.request.headers.clone(),
        jwt: None,
        tcp: false,
    };
    let policies = &workload.authorization;
    for policy in policies {
        for attribute in unknowable_attributes(policy, attrs.port) {
            let note = format!(
                "policy {} reads {attribute}, which explain cannot know: treated as absent",
                policy.name
            );
            if !verdict.notes.contains(&note) {
                verdict.notes.push(note);
            }
        }
    }
    verdict.audited_by = authz_eval::audits(policies, &request)
        .map(|p| p.name.clone())
        .collect();
    let named = |p: &AuthorizationPolicy| (p.name.clone(), p.source.clone());
    match authz_eval::evaluate(policies, &request) {
        Outcome::Deny(Some(deny)) => {
            verdict.decision = Decision::Deny;
            verdict.policy = Some(named(deny));
            verdict.reason = format!("DENY policy {} matches", deny.name);
        }
        Outcome::Deny(None) => {
            let allow_names: Vec<String> = policies
                .iter()
                .filter(|p| p.action == AuthzAction::Allow)
                .map(|p| p.name.clone())
                .collect();
            verdict.decision = Decision::Deny;
            verdict.reason = format!("no ALLOW policy matched ({})", allow_names.join(", "));
            verdict.allow_policies = allow_names;
        }
        Outcome::Allow(Some(allow)) => {
            verdict.policy = Some(named(allow));
            verdict.reason = format!("ALLOW policy {} matches", allow.name);
        }
        Outcome::Allow(None) => {
            verdict.reason = if policies.is_empty() {
                "no authorization policy".to_owned()
            } else {
                "no DENY policy matches and there is no ALLOW policy".to_owned()
            };
        }
    }
    verdict
}

/// The attributes a policy reads that `explain` cannot know: JWT facts and the source address
/// always, the destination port when the request did not name one.
fn unknowable_attributes(policy: &AuthorizationPolicy, port: Option<u16>) -> Vec<String> {
    let mut out = Vec::new();
    for rule in &policy.rules {
        if rule
            .from
            .iter()
            .any(|s| !s.request_principals.is_empty() || !s.not_request_principals.is_empty())
        {
            out.push("request principals (JWT)".to_owned());
        }
        if rule
            .from
            .iter()
            .any(|s| !s.ip_blocks.is_empty() || !s.not_ip_blocks.is_empty())
        {
            out.push("ip blocks (the source address)".to_owned());
        }
        if port.is_none()
            && rule
                .to
                .iter()
                .any(|o| !o.ports.is_empty() || !o.not_ports.is_empty())
        {
            out.push("the destination port (give it in the --request URL)".to_owned());
        }
        for condition in &rule.when {
            out.push(match &condition.key {
                ConditionKey::JwtClaim(path) => {
                    format!("request.auth.claims[{}]", path.join("]["))
                }
                ConditionKey::RequestPrincipal => "request.auth.principal".to_owned(),
                ConditionKey::JwtAudience => "request.auth.audiences".to_owned(),
                ConditionKey::JwtPresenter => "request.auth.presenter".to_owned(),
                ConditionKey::SourceIp => "source.ip".to_owned(),
                ConditionKey::DestinationPort if port.is_none() => {
                    "destination.port (give the port in the --request URL)".to_owned()
                }
                _ => continue,
            });
        }
    }
    out
}
